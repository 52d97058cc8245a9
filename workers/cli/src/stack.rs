//! `--stack NAME`: find a deployment's resources from the outputs of the CloudFormation stacks
//! the CDK app deployed, so operator commands need no hand-copied bucket names or queue URLs.
//!
//! The CDK app deploys two stacks per stage: `PrismStateful` and `PrismCompute` without a stage,
//! `Prism-{stage}-Stateful` and `Prism-{stage}-Compute` with `-c stage={stage}`. `NAME` may be
//! either stack's full name or the part before `Stateful`/`Compute` (`Prism`, `Prism-dev`).
//! The stateful stack's outputs name the buckets, topic, table and queues; the compute stack's
//! (optional: a stateful stack alone is enough for every command but `prism batch`) the API URL
//! and the dashboard.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use aws_sdk_cloudformation::types::StackStatus;
use shared::adapter::aws::provision::{Provisioned, ProvisionedQueue};
use shared::config::Resources;
use shared::topology;

/// Output keys of the stateful stack (declared in `cdk/lib/stacks/stateful.ts`).
pub mod outputs {
    /// The uploads bucket's name.
    pub const UPLOADS_BUCKET: &str = "UploadsBucketName";
    /// The media bucket's name.
    pub const MEDIA_BUCKET: &str = "MediaBucketName";
    /// The archive bucket's name.
    pub const ARCHIVE_BUCKET: &str = "ArchiveBucketName";
    /// The events topic's ARN.
    pub const TOPIC_ARN: &str = "EventsTopicArn";
    /// The metadata table's name.
    pub const TABLE: &str = "TableName";
    /// The compute stack's API URL.
    pub const API_URL: &str = "ApiUrl";
    /// The compute stack's CloudWatch dashboard URL.
    pub const DASHBOARD_URL: &str = "DashboardUrl";

    /// The output keys of a worker queue's URL and its DLQ's URL.
    pub fn queue(queue: &str) -> Option<(&'static str, &'static str)> {
        match queue {
            shared::topology::RESIZE_QUEUE => Some(("ResizeQueueUrl", "ResizeDlqUrl")),
            shared::topology::METADATA_QUEUE => Some(("MetadataQueueUrl", "MetadataDlqUrl")),
            shared::topology::ARCHIVE_QUEUE => Some(("ArchiveQueueUrl", "ArchiveDlqUrl")),
            _ => None,
        }
    }
}

/// A worker queue's URL and its DLQ's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrls {
    /// The queue.
    pub url: String,
    /// Its dead-letter queue.
    pub dlq_url: String,
}

/// What one deployment's stacks say about it.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The stateful stack's name.
    pub stateful_stack: String,
    /// The compute stack's name, when it is deployed.
    pub compute_stack: Option<String>,
    /// Buckets, topic and table.
    pub resources: Resources,
    /// The three worker queues by name ([`topology::RESIZE_QUEUE`], …).
    pub queues: BTreeMap<&'static str, QueueUrls>,
    /// The API's base URL (compute stack).
    pub api_url: Option<String>,
    /// The CloudWatch dashboard (compute stack).
    pub dashboard_url: Option<String>,
}

/// The worker queues whose URLs the stateful stack outputs.
const WORKER_QUEUES: [&str; 3] = [
    topology::RESIZE_QUEUE,
    topology::METADATA_QUEUE,
    topology::ARCHIVE_QUEUE,
];

/// Longest stack name CloudFormation accepts.
const MAX_STACK_NAME: usize = 128;

/// The stack names `name` may mean, stateful and compute, most specific first.
///
/// # Errors
/// A name CloudFormation could not hold (1-128 characters, a letter first, then letters, digits
/// and hyphens).
pub fn candidates(name: &str) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    anyhow::ensure!(
        !name.is_empty()
            && name.len() <= MAX_STACK_NAME
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "--stack {name:?} is not a CloudFormation stack name (a letter, then letters, digits \
         and hyphens, at most {MAX_STACK_NAME})"
    );
    for (suffix, other) in [("Stateful", "Compute"), ("Compute", "Stateful")] {
        if let Some(base) = name.strip_suffix(suffix) {
            let sibling = format!("{base}{other}");
            return Ok(if suffix == "Stateful" {
                (vec![name.to_owned()], vec![sibling])
            } else {
                (vec![sibling], vec![name.to_owned()])
            });
        }
    }
    let both = |suffix: &str| vec![format!("{name}-{suffix}"), format!("{name}{suffix}")];
    Ok((both("Stateful"), both("Compute")))
}

/// Build a [`Deployment`] from the stacks' outputs.
///
/// # Errors
/// An output the stateful stack must have is missing (a stack still being created, or not one
/// of prism's).
pub fn from_outputs(
    stateful_stack: &str,
    stateful: &HashMap<String, String>,
    compute: Option<(&str, &HashMap<String, String>)>,
) -> anyhow::Result<Deployment> {
    let missing: Vec<&str> = [
        outputs::UPLOADS_BUCKET,
        outputs::MEDIA_BUCKET,
        outputs::ARCHIVE_BUCKET,
        outputs::TOPIC_ARN,
        outputs::TABLE,
    ]
    .into_iter()
    .chain(
        WORKER_QUEUES
            .iter()
            .filter_map(|q| outputs::queue(q))
            .flat_map(|(a, b)| [a, b]),
    )
    .filter(|k| stateful.get(*k).is_none_or(|v| v.is_empty()))
    .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "stack {stateful_stack} lacks the outputs {} (is it prism's stateful stack, and is its \
         deployment complete?)",
        missing.join(", ")
    );
    let get = |k: &str| stateful[k].clone();
    let queues = WORKER_QUEUES
        .iter()
        .filter_map(|&q| {
            let (url, dlq) = outputs::queue(q)?;
            Some((
                q,
                QueueUrls {
                    url: get(url),
                    dlq_url: get(dlq),
                },
            ))
        })
        .collect();
    Ok(Deployment {
        stateful_stack: stateful_stack.to_owned(),
        compute_stack: compute.map(|(n, _)| n.to_owned()),
        resources: Resources {
            uploads_bucket: get(outputs::UPLOADS_BUCKET),
            media_bucket: get(outputs::MEDIA_BUCKET),
            archive_bucket: get(outputs::ARCHIVE_BUCKET),
            topic_arn: get(outputs::TOPIC_ARN),
            table_name: get(outputs::TABLE),
            queue_url: None,
            dlq_url: None,
        },
        queues,
        api_url: compute.and_then(|(_, o)| o.get(outputs::API_URL).cloned()),
        dashboard_url: compute.and_then(|(_, o)| o.get(outputs::DASHBOARD_URL).cloned()),
    })
}

/// Outputs of stack `name`; `None` when no such stack exists (or it was deleted).
async fn stack_outputs(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
) -> anyhow::Result<Option<HashMap<String, String>>> {
    let out = match cfn.describe_stacks().stack_name(name).send().await {
        Ok(o) => o,
        // CloudFormation answers a missing stack with a ValidationError ("Stack with id …
        // does not exist").
        Err(e)
            if e.as_service_error()
                .and_then(|s| aws_sdk_cloudformation::error::ProvideErrorMetadata::code(s))
                == Some("ValidationError") =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "DescribeStacks {name}: {}",
                shared::adapter::aws::classify::describe(&e)
            ));
        }
    };
    let Some(stack) = out.stacks().first() else {
        return Ok(None);
    };
    if stack.stack_status() == Some(&StackStatus::DeleteComplete) {
        return Ok(None);
    }
    Ok(Some(
        stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect(),
    ))
}

/// Find deployment `name` through CloudFormation (the clients' region, credentials and
/// endpoint).
///
/// # Errors
/// No stateful stack by any name `name` may mean, a stack that is not prism's, or
/// CloudFormation unreachable.
pub async fn discover(
    clients: &shared::adapter::aws::Clients,
    name: &str,
) -> anyhow::Result<Deployment> {
    let (stateful_names, compute_names) = candidates(name)?;
    let cfn = aws_sdk_cloudformation::Client::new(&clients.sdk);
    let mut stateful = None;
    for n in &stateful_names {
        if let Some(o) = stack_outputs(&cfn, n).await? {
            stateful = Some((n.clone(), o));
            break;
        }
    }
    let (stateful_name, stateful) = stateful.with_context(|| {
        format!(
            "no CloudFormation stack named {} in {}",
            stateful_names.join(" or "),
            clients.region
        )
    })?;
    let mut compute = None;
    for n in &compute_names {
        if let Some(o) = stack_outputs(&cfn, n).await? {
            compute = Some((n.clone(), o));
            break;
        }
    }
    from_outputs(
        &stateful_name,
        &stateful,
        compute.as_ref().map(|(n, o)| (n.as_str(), o)),
    )
}

impl Deployment {
    /// The queue URLs of worker queue `name`.
    ///
    /// # Errors
    /// A name that is not one of the three worker queues.
    pub fn queue(&self, name: &str) -> anyhow::Result<&QueueUrls> {
        self.queues.get(name).with_context(|| {
            format!(
                "no worker queue named {name} (one of {})",
                WORKER_QUEUES.join(", ")
            )
        })
    }

    /// The deployment as [`Provisioned`], for running the components against it (`prism dev
    /// --aws-endpoint URL --stack NAME`): the queue ARNs are read from SQS.
    ///
    /// # Errors
    /// SQS refuses `GetQueueAttributes`.
    pub async fn provisioned(
        &self,
        clients: &shared::adapter::aws::Clients,
    ) -> anyhow::Result<Provisioned> {
        let mut queues = std::collections::HashMap::new();
        for (&name, q) in &self.queues {
            let attrs = clients
                .sqs
                .get_queue_attributes()
                .queue_url(&q.url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "GetQueueAttributes {}: {}",
                        q.url,
                        shared::adapter::aws::classify::describe(&e)
                    )
                })?;
            let arn = attrs
                .attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
                .cloned()
                .with_context(|| format!("queue {} has no QueueArn", q.url))?;
            queues.insert(
                name,
                ProvisionedQueue {
                    url: q.url.clone(),
                    arn,
                    dlq_url: q.dlq_url.clone(),
                },
            );
        }
        Ok(Provisioned {
            resources: self.resources.clone(),
            queues,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_mean_the_stage_prefix_or_either_stack() {
        let (s, c) = candidates("Prism-dev").unwrap();
        assert_eq!(s, ["Prism-dev-Stateful", "Prism-devStateful"]);
        assert_eq!(c, ["Prism-dev-Compute", "Prism-devCompute"]);
        let (s, c) = candidates("Prism").unwrap();
        assert!(s.contains(&"PrismStateful".to_owned()), "{s:?}");
        assert!(c.contains(&"PrismCompute".to_owned()), "{c:?}");
        assert_eq!(
            candidates("Prism-dev-Compute").unwrap(),
            (
                vec!["Prism-dev-Stateful".to_owned()],
                vec!["Prism-dev-Compute".to_owned()]
            )
        );
        assert_eq!(
            candidates("PrismStateful").unwrap(),
            (
                vec!["PrismStateful".to_owned()],
                vec!["PrismCompute".to_owned()]
            )
        );
        for bad in ["", "9lives", "a b", "x/y", &"a".repeat(129)] {
            assert!(candidates(bad).is_err(), "{bad:?}");
        }
    }

    fn stateful() -> HashMap<String, String> {
        let mut o: HashMap<String, String> = [
            (outputs::UPLOADS_BUCKET, "up-1"),
            (outputs::MEDIA_BUCKET, "media-1"),
            (outputs::ARCHIVE_BUCKET, "arch-1"),
            (outputs::TOPIC_ARN, "arn:aws:sns:eu-west-1:1:t"),
            (outputs::TABLE, "table-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for q in WORKER_QUEUES {
            let (u, d) = outputs::queue(q).unwrap();
            o.insert(u.into(), format!("https://sqs/1/{q}-x"));
            o.insert(d.into(), format!("https://sqs/1/{q}-dlq-x"));
        }
        o
    }

    #[test]
    fn outputs_become_the_deployment() {
        let compute: HashMap<String, String> = [(
            outputs::API_URL.to_owned(),
            "https://api.example".to_owned(),
        )]
        .into();
        let d = from_outputs("S", &stateful(), Some(("C", &compute))).unwrap();
        assert_eq!(d.resources.uploads_bucket, "up-1");
        assert_eq!(d.resources.table_name, "table-1");
        assert_eq!(
            d.queue("resize").unwrap().dlq_url,
            "https://sqs/1/resize-dlq-x"
        );
        assert_eq!(d.api_url.as_deref(), Some("https://api.example"));
        assert_eq!(d.compute_stack.as_deref(), Some("C"));
        assert!(d.queue("nope").is_err());
    }

    #[test]
    fn a_stack_without_prism_outputs_is_named_with_what_it_lacks() {
        let mut o = stateful();
        o.remove(outputs::TABLE);
        o.insert("ResizeDlqUrl".into(), String::new());
        let e = from_outputs("Other", &o, None).unwrap_err().to_string();
        assert!(e.contains("TableName") && e.contains("ResizeDlqUrl"), "{e}");
    }
}
