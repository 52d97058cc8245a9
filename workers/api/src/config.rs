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
    /// Local backend only: serve the media bucket publicly and read-only at
    /// `/media/{key}` (keys under `media/`), as a CDN would; `media_base_url` then defaults to
    /// `{public_base_url}/media`.
    pub public_media: bool,
    /// A connection must send a request's whole head (request line and headers) within this
    /// many seconds of starting it, or it is closed.
    pub header_read_timeout_secs: u64,
    /// A request body that sends nothing for this many seconds is abandoned (408) and its
    /// connection closed.
    pub body_timeout_secs: u64,
    /// A request that has not been answered after this many seconds gets 408; must exceed
    /// `[limits] max_wait_secs`, the longest long-poll.
    pub request_timeout_secs: u64,
    /// Requests handled at once across the API (the ops endpoints aside); past it, 503 with
    /// `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Origins (`scheme://host[:port]`, exactly as browsers send them) whose pages may call
    /// the API and the local upload and download endpoints; empty: no CORS (cross-origin
    /// pages are refused by the browser).
    pub cors_allowed_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_base_url: None,
            media_base_url: None,
            public_media: false,
            header_read_timeout_secs: 10,
            body_timeout_secs: 30,
            request_timeout_secs: 90,
            max_concurrent_requests: 1024,
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// Most entries of `[http] cors_allowed_origins`.
pub const MAX_CORS_ORIGINS: usize = 64;

/// Whether `o` is an origin as a browser sends it in `Origin`: `http` or `https`, a host,
/// an optional port, nothing else (no path, no trailing slash, no wildcard).
///
/// # Errors
/// Why it is not.
pub fn check_origin(o: &str) -> Result<(), &'static str> {
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
        .ok_or("it must start with http:// or https://")?;
    let port = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("an unclosed [IPv6] address")?;
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
        {
            return Err("not an [IPv6] address");
        }
        if addr.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("browsers send the host in lower case");
        }
        match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("junk after the address")?),
        }
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        if host.is_empty() {
            return Err("it has no host");
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        {
            return Err("the host may hold only letters, digits, '-' and '.'");
        }
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("browsers send the host in lower case");
        }
        port
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the port must be digits");
    }
    Ok(())
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
    /// Concurrent `?wait=` long-polls per principal; past it 429 with `Retry-After`.
    pub max_waiters_per_principal: usize,
    /// How often a waited-on batch's change counter is read (one small read per batch,
    /// shared by all its waiters): the longest a long-poll answers after a change.
    pub wait_check_interval_ms: u64,
    /// Largest client event (the `/v1/events` body).
    pub max_event_bytes: usize,
    /// Largest `POST /v1/batches` body.
    pub max_batch_body_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 50 * 1024 * 1024,
            max_files: 500,
            upload_expiry_secs: 900,
            download_expiry_secs: 3600,
            max_wait_secs: 60,
            max_waiters_per_principal: 64,
            wait_check_interval_ms: 250,
            max_event_bytes: 64 * 1024,
            max_batch_body_bytes: 1024 * 1024,
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
        if self.limits.max_waiters_per_principal == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_waiters_per_principal must be at least 1".into(),
            ));
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
        if l.max_event_bytes < 1024 || l.max_batch_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "limits: max_event_bytes and max_batch_body_bytes must be at least 1024".into(),
            ));
        }
        let h = &self.http;
        if h.header_read_timeout_secs == 0
            || h.body_timeout_secs == 0
            || h.max_concurrent_requests == 0
        {
            return Err(ConfigError::Invalid(
                "http: header_read_timeout_secs, body_timeout_secs and max_concurrent_requests \
                 must be at least 1"
                    .into(),
            ));
        }
        if h.cors_allowed_origins.len() > MAX_CORS_ORIGINS {
            return Err(ConfigError::Invalid(format!(
                "http.cors_allowed_origins: at most {MAX_CORS_ORIGINS} origins"
            )));
        }
        for o in &h.cors_allowed_origins {
            check_origin(o).map_err(|why| {
                ConfigError::Invalid(format!(
                    "http.cors_allowed_origins: {o:?} is not an origin ({why}); write \
                     scheme://host[:port], e.g. http://localhost:5173"
                ))
            })?;
        }
        if h.public_media && self.common.backend != shared::config::Backend::Local {
            return Err(ConfigError::Invalid(
                "http.public_media serves the local media bucket: it needs backend = local (on \
                 AWS, put a CDN in front of the media bucket and set http.media_base_url)"
                    .into(),
            ));
        }
        if let Some(base) = &h.media_base_url
            && !(base.starts_with("https://") || base.starts_with("http://"))
        {
            return Err(ConfigError::Invalid(format!(
                "http.media_base_url must be an http(s) URL, got {base:?}"
            )));
        }
        if h.request_timeout_secs <= l.max_wait_secs {
            return Err(ConfigError::Invalid(format!(
                "http.request_timeout_secs ({}) must exceed limits.max_wait_secs ({}), the \
                 longest long-poll",
                h.request_timeout_secs, l.max_wait_secs
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact_scheme_host_port() {
        for ok in [
            "http://localhost:5173",
            "https://app.example.com",
            "http://127.0.0.1:8080",
            "http://[::1]:3000",
            "http://[::1]",
        ] {
            assert_eq!(check_origin(ok), Ok(()), "{ok}");
        }
        for bad in [
            "*",
            "localhost:5173",
            "http://localhost:5173/",
            "https://app.example.com/path",
            "https://",
            "http://App.example.com",
            "http://host:port",
            "null",
            "ftp://x",
            "http://a b",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
        let mut cfg = Config::default();
        cfg.http.cors_allowed_origins = vec!["http://localhost:5173/".into()];
        assert!(cfg.validate().is_err());
        cfg.http.cors_allowed_origins = vec!["http://localhost:5173".into()];
        cfg.validate().unwrap();
    }

    #[test]
    fn origins_come_from_a_toml_list_or_a_comma_separated_variable() {
        // The CDK app sets PRISM__HTTP__CORS_ALLOWED_ORIGINS=a,b on the API task.
        let env = [(
            "PRISM__HTTP__CORS_ALLOWED_ORIGINS".to_owned(),
            "https://app.example.com,http://localhost:5173".to_owned(),
        )];
        let cfg: Config = shared::config::load_from_env(None, &[], env).unwrap();
        assert_eq!(
            cfg.http.cors_allowed_origins,
            ["https://app.example.com", "http://localhost:5173"]
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("api.toml");
        std::fs::write(
            &file,
            "[http]\ncors_allowed_origins = [\"http://localhost:5173\"]\n",
        )
        .unwrap();
        let cfg: Config = shared::config::load_from_env(Some(&file), &[], []).unwrap();
        assert_eq!(cfg.http.cors_allowed_origins, ["http://localhost:5173"]);
        let env = [(
            "PRISM__HTTP__CORS_ALLOWED_ORIGINS".to_owned(),
            "http://localhost:5173/".to_owned(),
        )];
        assert!(shared::config::load_from_env::<Config, _>(None, &[], env).is_err());
    }
}
