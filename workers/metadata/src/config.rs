//! prism-metadata configuration: `[consumer]`, `[callback]`, `[expiry]` and the common sections.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::config::{CommonConfig, ConfigError, Secret, Validate};
use shared::consumer::ConsumerConfig;

/// `[callback]`: completion callbacks, delivered from an outbox by their own loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackConfig {
    /// Per-attempt timeout, name resolution included.
    pub timeout_secs: u64,
    /// Attempts before a delivery is given up (`failed`).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `max_backoff_secs`.
    pub backoff_base_ms: u64,
    /// Longest delay between two attempts.
    pub max_backoff_secs: u64,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Deliveries in flight at once to one host: a receiver that hangs holds at most this many.
    pub per_host_concurrency: usize,
    /// How often the outbox is checked for due deliveries.
    pub poll_interval_ms: u64,
    /// Master secret (Standard Webhooks): `whsec_<base64>`, or any other string, whose bytes
    /// are then the key. Each principal's key is derived from it unless `principal_secrets`
    /// names one. Local default: a generated key; the dev principal's secret is written for
    /// receivers to `DATA_DIR/webhook-secret`.
    pub signing_secret: Secret,
    /// Secrets of particular principals (`principal = "whsec_…"`), replacing derived ones.
    pub principal_secrets: BTreeMap<String, Secret>,
    /// Allow plain http to loopback hosts (local mode only).
    pub allow_loopback_http: bool,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            timeout_secs: 10,
            max_attempts: 12,
            backoff_base_ms: 30_000,
            max_backoff_secs: 4 * 3600,
            concurrency: 16,
            per_host_concurrency: 2,
            poll_interval_ms: 1000,
            signing_secret: Secret::default(),
            principal_secrets: BTreeMap::new(),
            allow_loopback_http: false,
        }
    }
}

impl CallbackConfig {
    /// The delay before attempt `attempt + 1` after `attempt` failed ones (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = Duration::from_millis(self.backoff_base_ms);
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        base.saturating_mul(factor)
            .min(Duration::from_secs(self.max_backoff_secs))
    }
}

/// `[expiry]`: files whose upload grant expired unused become `expired`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExpiryConfig {
    /// How often the sweep runs.
    pub sweep_interval_secs: u64,
    /// How long after a grant's expiry its file may still arrive (an upload that started
    /// before the expiry and is still being stored).
    pub grace_secs: u64,
    /// Files expired per store call.
    pub batch_size: usize,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        Self {
            sweep_interval_secs: 30,
            grace_secs: 30,
            batch_size: 200,
        }
    }
}

/// The writer's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Common sections.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Queue loop.
    pub consumer: ConsumerConfig,
    /// Receives before the redrive policy dead-letters a message (local queue declaration).
    pub max_receive_count: u32,
    /// Completion callbacks.
    pub callback: CallbackConfig,
    /// Upload expiry.
    pub expiry: ExpiryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            common: CommonConfig::with_metrics_port(shared::config::METRICS_PORT_METADATA),
            consumer: ConsumerConfig {
                concurrency: 8,
                visibility_timeout_secs: 60,
                ..ConsumerConfig::default()
            },
            max_receive_count: 5,
            callback: CallbackConfig::default(),
            expiry: ExpiryConfig::default(),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.common.validate_worker()?;
        self.consumer.validate()?;
        if self.max_receive_count == 0 {
            return Err(ConfigError::Invalid(
                "max_receive_count must be at least 1".into(),
            ));
        }
        let c = &self.callback;
        if !(1..=60).contains(&c.timeout_secs) || !(1..=30).contains(&c.max_attempts) {
            return Err(ConfigError::Invalid(
                "callback.timeout_secs must be 1..=60 and callback.max_attempts 1..=30".into(),
            ));
        }
        if c.concurrency == 0 || c.per_host_concurrency == 0 || c.poll_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "callback.concurrency, per_host_concurrency and poll_interval_ms must be positive"
                    .into(),
            ));
        }
        if self.expiry.sweep_interval_secs == 0 || self.expiry.batch_size == 0 {
            return Err(ConfigError::Invalid(
                "expiry.sweep_interval_secs and expiry.batch_size must be positive".into(),
            ));
        }
        Ok(())
    }
}
