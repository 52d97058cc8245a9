//! prism-api configuration: `[http]`, `[auth]`, `[limits]` and the common sections.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use shared::config::{CommonConfig, ConfigError, Validate};

/// `[http]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Where the API listens (port 0 picks a free one).
    pub listen_addr: SocketAddr,
    /// The address clients reach this API at, for local presigned URLs (default: the bound
    /// address).
    pub public_base_url: Option<String>,
    /// Serve variant URLs as `{media_base_url}/{key}` (a CDN) instead of presigned GETs.
    pub media_base_url: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_base_url: None,
            media_base_url: None,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted bearer tokens as SHA-256 hex digests, each optionally `principal:digest`.
    /// Hashes, not tokens: the config never holds a usable credential.
    pub token_sha256s: Vec<String>,
    /// Requests per minute per principal (token bucket).
    pub requests_per_minute: u32,
    /// Files awaiting upload per principal across unexpired batches.
    pub max_inflight_uploads: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_sha256s: Vec::new(),
            requests_per_minute: 1200,
            max_inflight_uploads: 5000,
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest upload accepted.
    pub max_upload_bytes: u64,
    /// Files per batch.
    pub max_files: usize,
    /// How long upload grants last.
    pub upload_expiry_secs: u64,
    /// How long variant URLs last.
    pub download_expiry_secs: u64,
    /// Longest `?wait=` on a batch query.
    pub max_wait_secs: u64,
    /// Largest client event.
    pub max_event_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 50 * 1024 * 1024,
            max_files: 500,
            upload_expiry_secs: 900,
            download_expiry_secs: 3600,
            max_wait_secs: 60,
            max_event_bytes: 64 * 1024,
        }
    }
}

/// The API's config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Common sections.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Listener.
    pub http: HttpConfig,
    /// Tokens and quotas.
    pub auth: AuthConfig,
    /// Request limits.
    pub limits: LimitsConfig,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.common.validate()?;
        for t in &self.auth.token_sha256s {
            let digest = t.rsplit_once(':').map_or(t.as_str(), |(_, d)| d);
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(
                    "auth.token_sha256s entries must be [principal:]<64 hex digits>".into(),
                ));
            }
        }
        if self.auth.requests_per_minute == 0 {
            return Err(ConfigError::Invalid(
                "auth.requests_per_minute must be at least 1".into(),
            ));
        }
        let l = &self.limits;
        if l.max_upload_bytes == 0
            || !(1..=500).contains(&l.max_files)
            || l.upload_expiry_secs == 0
            || l.upload_expiry_secs > 7 * 86_400
        {
            return Err(ConfigError::Invalid(
                "limits: max_upload_bytes >= 1, max_files 1..=500, upload_expiry_secs 1..=604800"
                    .into(),
            ));
        }
        Ok(())
    }
}
