//! `prism dlq list|show|redrive QUEUE`: inspect and redrive a worker queue's dead letters, on
//! the embedded backend (a data dir) or on AWS (queues from a deployment's stack outputs with
//! `--stack`, else looked up by name; `--aws-endpoint` for moto/LocalStack). Redrive is `StartMessageMoveTask` on SQS and a re-enqueue locally.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::{Value, json};
use shared::port::{DeadLetter, Queue};

/// Where the queues live.
pub enum Backend<'a> {
    /// The embedded backend of a data dir.
    Local(&'a Path),
    /// SQS, through the default credential chain, optionally at a custom endpoint.
    Aws {
        /// Custom endpoint (emulators).
        endpoint: Option<url::Url>,
        /// Region.
        region: Option<String>,
        /// The deployment whose CloudFormation outputs name the queues; without it the queues
        /// are looked up by name (`resize`, `resize-dlq`, as `prism dev --aws-endpoint` makes
        /// them).
        stack: Option<String>,
    },
}

/// Open worker queue `name` (`resize`, `metadata`, `archive`, or any provisioned name) with its
/// DLQ.
///
/// # Errors
/// An unknown queue or an unreachable backend.
pub async fn open(backend: Backend<'_>, name: &str) -> anyhow::Result<Arc<dyn Queue>> {
    match backend {
        Backend::Local(dir) => {
            let db = dir.join(shared::adapter::local::QUEUES_DB);
            anyhow::ensure!(
                db.exists(),
                "no queues in {} (is it a prism data dir?)",
                dir.display()
            );
            let q = shared::adapter::local::SqliteQueue::open(
                &db,
                shared::port::QueueSettings::new(name),
            )
            .await?;
            Ok(Arc::new(q))
        }
        Backend::Aws {
            endpoint,
            region,
            stack,
        } => {
            let clients = shared::adapter::aws::Clients::new(&shared::config::AwsConfig {
                region,
                endpoint_url: endpoint,
            })
            .await;
            if let Some(stack) = stack {
                let d = crate::stack::discover(&clients, &stack).await?;
                let q = d.queue(name)?;
                return Ok(Arc::new(shared::adapter::aws::SqsQueue::new(
                    &clients, name, &q.url, &q.dlq_url,
                )));
            }
            let url = |n: String| {
                let c = clients.sqs.clone();
                async move {
                    c.get_queue_url()
                        .queue_name(&n)
                        .send()
                        .await
                        .with_context(|| format!("no SQS queue named {n}"))
                        .map(|o| o.queue_url.unwrap_or_default())
                }
            };
            let (q, dlq) = (
                url(name.to_owned()).await?,
                url(format!("{name}-dlq")).await?,
            );
            Ok(Arc::new(shared::adapter::aws::SqsQueue::new(
                &clients, name, &q, &dlq,
            )))
        }
    }
}

/// One dead letter as JSON.
pub fn to_json(d: &DeadLetter) -> Value {
    let body: Value =
        serde_json::from_str(&d.body).unwrap_or_else(|_| Value::String(d.body.clone()));
    json!({
        "id": d.id,
        "receive_count": d.receive_count,
        "sent_at": d.sent_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "error_code": d.info.as_ref().map(|i| i.error_code),
        "worker": d.info.as_ref().map(|i| i.worker.clone()),
        "reason": d.info.as_ref().map_or_else(
            || "moved by the redrive policy (max receives exceeded)".to_owned(),
            |i| i.reason.clone()),
        "body": body,
    })
}

/// A line per dead letter: id, receives, code, reason.
pub fn table(letters: &[DeadLetter]) -> String {
    let mut out = String::new();
    for d in letters {
        let code = d.reason();
        let reason = d
            .info
            .as_ref()
            .map_or("moved by the redrive policy", |i| i.reason.as_str());
        out.push_str(&format!(
            "{}  receives={}  {code}  {reason}\n",
            d.id, d.receive_count
        ));
    }
    if letters.is_empty() {
        out.push_str("(no dead letters)\n");
    }
    out
}

/// The dead letter with `id`, looking at up to 1000.
///
/// # Errors
/// When the DLQ cannot be read.
pub async fn find(q: &dyn Queue, id: &str) -> anyhow::Result<Option<DeadLetter>> {
    Ok(q.dead_letters(1000).await?.into_iter().find(|d| d.id == id))
}
