//! prism-archiver configuration: `[flush]`, `[consumer]` and the common sections.

use serde::{Deserialize, Serialize};
use shared::config::{CommonConfig, ConfigError, Validate};
use shared::consumer::ConsumerConfig;

/// `[flush]`: when a buffer becomes an archive object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlushConfig {
    /// Messages per object.
    pub max_messages: usize,
    /// Uncompressed bytes per object.
    pub max_bytes: usize,
    /// Seconds after the first buffered message.
    pub max_age_secs: u64,
}

impl Default for FlushConfig {
    fn default() -> Self {
        Self {
            max_messages: 1000,
            max_bytes: 8 * 1024 * 1024,
            max_age_secs: 60,
        }
    }
}

/// The archiver's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Common sections.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Receiving: the archiver runs its own loop (see the crate docs) and uses
    /// `wait_time_secs` and `visibility_timeout_secs`; the section is the one every worker
    /// shares, so one config file serves `prism dev`.
    pub consumer: ConsumerConfig,
    /// Flush triggers.
    pub flush: FlushConfig,
    /// Receives before the redrive policy dead-letters a message (local queue declaration).
    pub max_receive_count: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            common: CommonConfig::with_metrics_port(shared::config::METRICS_PORT_ARCHIVER),
            consumer: ConsumerConfig {
                visibility_timeout_secs: 180,
                ..ConsumerConfig::default()
            },
            flush: FlushConfig::default(),
            max_receive_count: 5,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.common.validate_worker()?;
        let f = &self.flush;
        if f.max_messages == 0
            || f.max_messages > 100_000
            || f.max_bytes < 1024
            || f.max_age_secs == 0
        {
            return Err(ConfigError::Invalid(
                "flush: max_messages 1..=100000, max_bytes >= 1024, max_age_secs >= 1".into(),
            ));
        }
        if self.consumer.wait_time_secs > 20 {
            return Err(ConfigError::Invalid(
                "consumer.wait_time_secs must be 0..=20".into(),
            ));
        }
        // Buffered messages are in flight until the flush acks them: their visibility must
        // outlast the longest buffering plus a slow write, or they would be delivered twice.
        if self.consumer.visibility_timeout_secs < f.max_age_secs * 2 + 30 {
            return Err(ConfigError::Invalid(format!(
                "consumer.visibility_timeout_secs ({}) must be at least 2 x flush.max_age_secs + 30 ({})",
                self.consumer.visibility_timeout_secs,
                f.max_age_secs * 2 + 30
            )));
        }
        Ok(())
    }
}
