//! prism-metadata configuration: `[consumer]`, `[callback]` and the common sections.

use serde::{Deserialize, Serialize};
use shared::config::{CommonConfig, ConfigError, Secret, Validate};
use shared::consumer::ConsumerConfig;

/// `[callback]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackConfig {
    /// Per-attempt timeout.
    pub timeout_secs: u64,
    /// Attempts before giving up on one delivery.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub backoff_base_ms: u64,
    /// Secret the callbacks are signed with (Standard Webhooks): `whsec_<base64>`, or any
    /// other string, whose bytes are then the key (receivers configure `whsec_` + its base64).
    /// Local default: a generated key, written for receivers to `DATA_DIR/webhook-secret`.
    pub signing_secret: Secret,
    /// Allow plain http to loopback hosts (local mode only).
    pub allow_loopback_http: bool,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            timeout_secs: 5,
            max_attempts: 4,
            backoff_base_ms: 500,
            signing_secret: Secret::default(),
            allow_loopback_http: false,
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
        if !(1..=30).contains(&self.callback.timeout_secs)
            || !(1..=10).contains(&self.callback.max_attempts)
        {
            return Err(ConfigError::Invalid(
                "callback.timeout_secs must be 1..=30 and callback.max_attempts 1..=10".into(),
            ));
        }
        Ok(())
    }
}
