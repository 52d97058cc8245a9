//! Completion callbacks per the Standard Webhooks specification, delivered from an outbox.
//!
//! Announcing a batch only puts its delivery in the outbox (the metadata store); the queue
//! message is then done. [`run_outbox`] is a loop of its own: it claims due deliveries for a
//! lease, posts each with one timeout covering name resolution, connection and answer, and
//! records the attempt: delivered (2xx), failed for good (a 4xx other than 408/429, a URL that
//! no longer passes the SSRF check, or the last attempt), or due again after a backoff that
//! doubles from `backoff_base_ms` up to `max_backoff_secs` (with the defaults: 30 s, 1 min,
//! 2 min, … 4 h; 12 attempts over about 16 hours). At most `concurrency` deliveries are in
//! flight, and at most `per_host_concurrency` to one host, so a receiver that never answers
//! delays only its own deliveries. A loop that dies mid-attempt loses nothing: the lease ends
//! and the delivery is due again.
//!
//! Each principal signs with its own key: the one `principal_secrets` names, else one derived
//! from the master secret ([`shared::callback::principal_key`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::callback::{
    WEBHOOK_ID_HEADER, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, principal_key,
    resolve_checked, sign, webhook_key,
};
use shared::port::{MetadataStore, WebhookAttempt, WebhookJob, WebhookStatus};
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::CallbackConfig;

/// The signing keys: one per principal.
#[derive(Clone)]
pub struct Keys {
    master: Vec<u8>,
    configured: HashMap<String, Vec<u8>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("configured", &self.configured.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Keys derived from `master`, replaced by `cfg.principal_secrets` where it names one.
    pub fn new(master: Vec<u8>, cfg: &CallbackConfig) -> Self {
        Self {
            master,
            configured: cfg
                .principal_secrets
                .iter()
                .filter_map(|(p, s)| s.expose().map(|s| (p.clone(), webhook_key(s))))
                .collect(),
        }
    }

    /// `principal`'s signing key.
    pub fn for_principal(&self, principal: &str) -> Vec<u8> {
        self.configured
            .get(principal)
            .cloned()
            .unwrap_or_else(|| principal_key(&self.master, principal))
    }
}

/// Why an attempt did not get a 2xx.
#[derive(Debug)]
enum AttemptError {
    /// The URL no longer passes the SSRF check: never retried.
    Refused(String),
    /// No answer (resolution, connection, timeout).
    Transport(String),
}

/// One POST of `job`, signed with `key`; the timeout covers resolution too.
async fn attempt(cfg: &CallbackConfig, key: &[u8], job: &WebhookJob) -> Result<u16, AttemptError> {
    let timeout = Duration::from_secs(cfg.timeout_secs);
    match tokio::time::timeout(timeout, attempt_inner(cfg, key, job)).await {
        Ok(r) => r,
        Err(_) => Err(AttemptError::Transport(format!(
            "no answer within {} s",
            cfg.timeout_secs
        ))),
    }
}

async fn attempt_inner(
    cfg: &CallbackConfig,
    key: &[u8],
    job: &WebhookJob,
) -> Result<u16, AttemptError> {
    let (parsed, addrs) = resolve_checked(&job.url, cfg.allow_loopback_http)
        .await
        .map_err(|e| AttemptError::Refused(e.to_string()))?;
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    // No timeout of its own: `attempt`'s covers resolution, connection and answer.
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    // Connect only to the addresses that passed the check (DNS rebinding cannot swap them).
    for a in &addrs {
        builder = builder.resolve(&host, *a);
    }
    let client = builder
        .build()
        .map_err(|e| AttemptError::Transport(e.to_string()))?;
    let ts = OffsetDateTime::now_utc().unix_timestamp();
    let resp = client
        .post(parsed)
        .header("content-type", "application/json")
        .header(WEBHOOK_ID_HEADER, &job.id)
        .header(WEBHOOK_TIMESTAMP_HEADER, ts.to_string())
        .header(
            WEBHOOK_SIGNATURE_HEADER,
            sign(key, &job.id, ts, job.body.as_bytes()),
        )
        .body(job.body.clone())
        .send()
        .await
        // Without the URL: reqwest's message names the connected address otherwise.
        .map_err(|e| AttemptError::Transport(transport_reason(&e)))?;
    Ok(resp.status().as_u16())
}

fn transport_reason(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    kind.to_owned()
}

/// What one attempt's result means for the delivery.
fn judge(
    cfg: &CallbackConfig,
    job: &WebhookJob,
    result: Result<u16, AttemptError>,
) -> WebhookAttempt {
    let at = OffsetDateTime::now_utc();
    let made = job.attempts.saturating_add(1);
    let retry = |http_status: Option<u16>, error: Option<String>| {
        if made >= cfg.max_attempts {
            WebhookAttempt {
                at,
                status: WebhookStatus::Failed,
                http_status,
                error,
                next_attempt_at: None,
            }
        } else {
            WebhookAttempt {
                at,
                status: WebhookStatus::Pending,
                http_status,
                error,
                next_attempt_at: Some(at + cfg.backoff(made)),
            }
        }
    };
    match result {
        Ok(status) if (200..300).contains(&status) => WebhookAttempt {
            at,
            status: WebhookStatus::Delivered,
            http_status: Some(status),
            error: None,
            next_attempt_at: None,
        },
        Ok(status) if (400..500).contains(&status) && status != 408 && status != 429 => {
            WebhookAttempt {
                at,
                status: WebhookStatus::Failed,
                http_status: Some(status),
                error: Some("refused by the receiver".into()),
                next_attempt_at: None,
            }
        }
        Ok(status) => retry(Some(status), Some(format!("answered {status}"))),
        Err(AttemptError::Refused(e)) => WebhookAttempt {
            at,
            status: WebhookStatus::Failed,
            http_status: None,
            error: Some(format!("callback URL refused: {e}")),
            next_attempt_at: None,
        },
        Err(AttemptError::Transport(e)) => retry(None, Some(e)),
    }
}

/// In-flight deliveries per host.
#[derive(Default)]
struct Hosts(Mutex<HashMap<String, usize>>);

impl Hosts {
    fn try_enter(self: &Arc<Self>, host: &str, max: usize) -> Option<HostSlot> {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(host.to_owned()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(HostSlot {
            hosts: self.clone(),
            host: host.to_owned(),
        })
    }
}

struct HostSlot {
    hosts: Arc<Hosts>,
    host: String,
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        let mut m = self
            .hosts
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.host);
            }
        }
    }
}

/// The lease a claim holds: long enough for one attempt and its record.
fn lease(cfg: &CallbackConfig) -> Duration {
    Duration::from_secs(cfg.timeout_secs * 2 + 10)
}

/// Deliver due webhooks from `store` until `shutdown`. Attempts in flight at shutdown are
/// dropped; their leases end and they are due again.
pub async fn run_outbox(
    cfg: CallbackConfig,
    keys: Arc<Keys>,
    store: Arc<dyn MetadataStore>,
    shutdown: CancellationToken,
) {
    let cfg = Arc::new(cfg);
    let hosts = Arc::new(Hosts::default());
    let mut in_flight = JoinSet::new();
    let poll = Duration::from_millis(cfg.poll_interval_ms);
    loop {
        while in_flight.try_join_next().is_some() {}
        let free = cfg.concurrency.saturating_sub(in_flight.len());
        if free > 0 {
            match store
                .claim_webhooks(OffsetDateTime::now_utc(), lease(&cfg), free)
                .await
            {
                Ok(jobs) => {
                    for job in jobs {
                        let host = reqwest::Url::parse(&job.url)
                            .ok()
                            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                            .unwrap_or_default();
                        // A host at its limit keeps this delivery claimed until the lease ends;
                        // only that host's deliveries wait.
                        let Some(slot) = hosts.try_enter(&host, cfg.per_host_concurrency) else {
                            continue;
                        };
                        let (cfg, keys, store) = (cfg.clone(), keys.clone(), store.clone());
                        in_flight.spawn(async move {
                            let _slot = slot;
                            deliver(&cfg, &keys, &*store, job).await;
                        });
                    }
                }
                Err(e) => warn!(error = %e, "Claiming webhook deliveries failed; retrying."),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(poll) => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    in_flight.shutdown().await;
}

async fn deliver(cfg: &CallbackConfig, keys: &Keys, store: &dyn MetadataStore, job: WebhookJob) {
    let started = Instant::now();
    let result = attempt(cfg, &keys.for_principal(&job.principal), &job).await;
    let outcome = judge(cfg, &job, result);
    let label = match outcome.status {
        WebhookStatus::Delivered => "delivered",
        WebhookStatus::Pending => "retrying",
        WebhookStatus::Failed => "failed",
    };
    shared::telemetry::metrics::webhook_attempt(label, started.elapsed());
    let attempt_no = job.attempts + 1;
    match outcome.status {
        WebhookStatus::Delivered => info!(
            batch_id = %job.batch_id,
            attempt = attempt_no,
            status = outcome.http_status,
            "Callback delivered."
        ),
        WebhookStatus::Pending => warn!(
            batch_id = %job.batch_id,
            attempt = attempt_no,
            status = outcome.http_status,
            error = outcome.error.as_deref().unwrap_or(""),
            "Callback failed; retrying later."
        ),
        WebhookStatus::Failed => warn!(
            batch_id = %job.batch_id,
            attempt = attempt_no,
            status = outcome.http_status,
            error = outcome.error.as_deref().unwrap_or(""),
            "Callback given up."
        ),
    }
    match store.record_webhook_attempt(&job, &outcome).await {
        Ok(true) => {}
        Ok(false) => {
            warn!(batch_id = %job.batch_id, "A webhook attempt outlived its lease; its record was dropped.")
        }
        Err(e) => {
            warn!(batch_id = %job.batch_id, error = %e, "Recording a webhook attempt failed; it will be retried when its lease ends.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(attempts: u32) -> WebhookJob {
        WebhookJob {
            id: "msg_1".into(),
            batch_id: "b".into(),
            principal: "alice".into(),
            url: "https://example.com/".into(),
            body: "{}".into(),
            attempts,
            claim: String::new(),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_over_hours() {
        let cfg = CallbackConfig::default();
        assert_eq!(cfg.backoff(1), Duration::from_secs(30));
        assert_eq!(cfg.backoff(2), Duration::from_secs(60));
        assert_eq!(cfg.backoff(9), Duration::from_secs(30 << 8));
        assert_eq!(cfg.backoff(10), Duration::from_secs(4 * 3600));
        assert_eq!(cfg.backoff(40), Duration::from_secs(4 * 3600));
        let total: Duration = (1..cfg.max_attempts).map(|a| cfg.backoff(a)).sum();
        assert!(total > Duration::from_secs(8 * 3600), "{total:?}");
    }

    #[test]
    fn outcomes_are_judged_like_standard_senders() {
        let cfg = CallbackConfig::default();
        assert_eq!(
            judge(&cfg, &job(0), Ok(204)).status,
            WebhookStatus::Delivered
        );
        assert_eq!(judge(&cfg, &job(0), Ok(410)).status, WebhookStatus::Failed);
        let again = judge(&cfg, &job(0), Ok(503));
        assert_eq!(again.status, WebhookStatus::Pending);
        assert!(again.next_attempt_at.is_some());
        assert_eq!(judge(&cfg, &job(0), Ok(429)).status, WebhookStatus::Pending);
        let last = judge(
            &cfg,
            &job(cfg.max_attempts - 1),
            Err(AttemptError::Transport("timed out".into())),
        );
        assert_eq!(last.status, WebhookStatus::Failed);
        assert_eq!(
            judge(&cfg, &job(0), Err(AttemptError::Refused("private".into()))).status,
            WebhookStatus::Failed
        );
    }

    #[test]
    fn principals_sign_with_their_own_keys() {
        let mut cfg = CallbackConfig::default();
        cfg.principal_secrets.insert(
            "carol".into(),
            shared::config::Secret::new("whsec_c2VjcmV0"),
        );
        let keys = Keys::new(b"master".to_vec(), &cfg);
        assert_ne!(keys.for_principal("alice"), keys.for_principal("bob"));
        assert_eq!(keys.for_principal("carol"), b"secret".to_vec());
    }
}
