//! Completion callbacks: a POST signed per the Standard Webhooks specification, SSRF-checked
//! at delivery, retried with backoff.

use std::time::Duration;

use serde_json::Value;
use shared::callback::{
    WEBHOOK_ID_HEADER, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, resolve_checked, sign,
};
use tracing::{info, warn};

use crate::config::CallbackConfig;

/// Delivers completion notices.
pub struct CallbackSender {
    cfg: CallbackConfig,
    secret: Vec<u8>,
}

impl CallbackSender {
    /// A sender signing with the HMAC key `secret`.
    pub fn new(cfg: &CallbackConfig, secret: Vec<u8>) -> Self {
        Self {
            cfg: cfg.clone(),
            secret,
        }
    }

    /// POST `event` to `url` as delivery `msg_id` (the `webhook-id`, the same on every
    /// attempt), up to `max_attempts` times with doubling backoff. Returns whether a 2xx answer
    /// was received. Never follows redirects; connects only to addresses that passed the SSRF
    /// check (resolution is pinned, so DNS rebinding cannot swap them).
    pub async fn deliver(&self, url: &str, msg_id: &str, event: &Value) -> bool {
        let body = event.to_string();
        let mut delay = Duration::from_millis(self.cfg.backoff_base_ms);
        for attempt in 1..=self.cfg.max_attempts {
            match self.attempt(url, msg_id, &body).await {
                Ok(status) if (200..300).contains(&status) => {
                    info!(attempt, status, "Callback delivered.");
                    return true;
                }
                Ok(status) if (400..500).contains(&status) && status != 408 && status != 429 => {
                    warn!(status, "Callback refused by the receiver; not retrying.");
                    return false;
                }
                Ok(status) => warn!(attempt, status, "Callback failed; retrying."),
                Err(AttemptError::Refused(e)) => {
                    warn!(error = %e, "Callback URL refused at delivery; not retrying.");
                    return false;
                }
                Err(AttemptError::Transport(e)) => {
                    warn!(attempt, error = %e, "Callback failed; retrying.")
                }
            }
            if attempt < self.cfg.max_attempts {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        warn!(attempts = self.cfg.max_attempts, "Callback gave up.");
        false
    }

    async fn attempt(&self, url: &str, msg_id: &str, body: &str) -> Result<u16, AttemptError> {
        let (parsed, addrs) = resolve_checked(url, self.cfg.allow_loopback_http)
            .await
            .map_err(|e| AttemptError::Refused(e.to_string()))?;
        let host = parsed
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(self.cfg.timeout_secs))
            .no_proxy();
        for a in &addrs {
            builder = builder.resolve(&host, *a);
        }
        let client = builder
            .build()
            .map_err(|e| AttemptError::Transport(e.to_string()))?;
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        let resp = client
            .post(parsed)
            .header("content-type", "application/json")
            .header(WEBHOOK_ID_HEADER, msg_id)
            .header(WEBHOOK_TIMESTAMP_HEADER, ts.to_string())
            .header(
                WEBHOOK_SIGNATURE_HEADER,
                sign(&self.secret, msg_id, ts, body.as_bytes()),
            )
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| AttemptError::Transport(e.to_string()))?;
        Ok(resp.status().as_u16())
    }
}

enum AttemptError {
    Refused(String),
    Transport(String),
}
