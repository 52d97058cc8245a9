//! prism-resize's config: the common sections, the queue loop and `[resize]` (the engine's
//! limits, admission budget, isolation and render deadlines).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use shared::config::{CommonConfig, ConfigError, Validate};
use shared::consumer::ConsumerConfig;

use crate::isolate::Isolation;
use crate::render::{EncodeSettings, Limits};

/// `[resize]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResizeConfig {
    /// Input limits, checked from the header before decoding.
    pub limits: Limits,
    /// MiB of render memory in flight at once (each render charged its estimated peak); a
    /// render estimated above it is refused.
    pub admission_mib: u32,
    /// rav1e speed (1 slowest/smallest … 10 fastest); `None` keeps the engine default.
    pub avif_speed: Option<u8>,
    /// The AVIF encoder, `"rav1e"` or `"aom"` (libaom through libheif: better quality per byte
    /// and less CPU, more memory per encode); `None` keeps the engine default (rav1e).
    pub avif_encoder: Option<crate::render::AvifEncoder>,
    /// libwebp method (0-6); `None` keeps the engine default (4).
    pub webp_method: Option<u8>,
    /// Where renders run: `process` (a pool of child processes, one per concurrent render:
    /// crash isolation, deadlines that free the CPU) or `none` (blocking threads of this
    /// process).
    pub isolation: Isolation,
    /// A fixed deadline for every render, in seconds; `None` derives one from the header
    /// ([`crate::handler::render_deadline`]).
    pub render_timeout_secs: Option<u64>,
    /// The derived deadline's floor, in seconds.
    pub render_timeout_floor_secs: u64,
    /// The derived deadline's seconds per megapixel of work.
    pub render_timeout_secs_per_megapixel: f64,
    /// The executable run as `PROGRAM render-child`; `None` finds it
    /// ([`crate::isolate::locate_child_program`]).
    pub render_child_program: Option<PathBuf>,
    /// Each render process's address-space limit (`RLIMIT_AS`) in MiB; `None` is
    /// `admission_mib` + 2048 (an admitted render's estimate never exceeds the whole budget;
    /// the rest is the executable, thread stacks and allocator arenas, which reserve address
    /// space they do not touch).
    pub child_address_space_mib: Option<u64>,
}

impl ResizeConfig {
    /// `RLIMIT_AS` for each render process, in MiB.
    pub fn child_address_space_mib(&self) -> u64 {
        self.child_address_space_mib
            .unwrap_or(2048 + u64::from(self.admission_mib))
    }
}

impl Default for ResizeConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            admission_mib: 2560,
            avif_speed: None,
            avif_encoder: None,
            webp_method: None,
            isolation: Isolation::Process,
            render_timeout_secs: None,
            render_timeout_floor_secs: 30,
            render_timeout_secs_per_megapixel: 1.0,
            render_child_program: None,
            child_address_space_mib: None,
        }
    }
}

/// prism-resize's worker config.
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
    /// Engine settings.
    pub resize: ResizeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            common: CommonConfig::with_metrics_port(shared::config::METRICS_PORT_RESIZE),
            // Long AVIF encodes: visibility covers the worst case with heartbeats anyway.
            consumer: ConsumerConfig {
                concurrency: 4,
                visibility_timeout_secs: 120,
                ..ConsumerConfig::default()
            },
            max_receive_count: 5,
            resize: ResizeConfig::default(),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.common.validate_worker()?;
        self.consumer.validate()?;
        if self.max_receive_count == 0 || self.resize.admission_mib == 0 {
            return Err(ConfigError::Invalid(
                "max_receive_count and resize.admission_mib must be at least 1".into(),
            ));
        }
        if self
            .resize
            .avif_speed
            .is_some_and(|s| !(1..=10).contains(&s))
            || self.resize.webp_method.is_some_and(|m| m > 6)
        {
            return Err(ConfigError::Invalid(
                "resize.avif_speed must be 1..=10 and resize.webp_method 0..=6".into(),
            ));
        }
        if self.resize.render_timeout_secs == Some(0)
            || !self.resize.render_timeout_secs_per_megapixel.is_finite()
            || self.resize.render_timeout_secs_per_megapixel < 0.0
        {
            return Err(ConfigError::Invalid(
                "resize.render_timeout_secs must be at least 1 and \
                 resize.render_timeout_secs_per_megapixel a non-negative number"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The engine's encode settings with this config's overrides.
    pub fn encode_settings(&self) -> EncodeSettings {
        let mut s = EncodeSettings::default();
        if let Some(v) = self.resize.avif_speed {
            s.avif_speed = v;
        }
        if let Some(e) = self.resize.avif_encoder {
            s.aom = e.aom();
        }
        if let Some(m) = self.resize.webp_method {
            s.webp_method = m;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avif_encoder_is_chosen_in_the_resize_section() {
        let default = Config::default().encode_settings();
        assert_eq!(default.aom, None);
        // The default settings' engine id (every variant key's engine part) does not name the
        // option, so keys made before it existed stay the keys of the default engine.
        assert!(!crate::render::engine_id(&default).contains("aom"));
        let resize: ResizeConfig = toml::from_str("avif_encoder = \"aom\"").unwrap();
        let config = Config {
            resize,
            ..Config::default()
        };
        let aom = config.encode_settings();
        assert_eq!(aom.aom, Some(crate::render::AomSettings::default()));
        assert!(crate::render::engine_id(&aom).contains("\"aom\":{\"speed\":6"));
        assert!(toml::from_str::<ResizeConfig>("avif_encoder = \"x265\"").is_err());
    }
}
