//! Layered configuration: compiled defaults → optional `--config` file (TOML) →
//! `PRISM__SECTION__KEY` environment variables → CLI overrides. Parsed into typed structs and
//! validated before any I/O; an invalid config exits non-zero. Nothing outside this module
//! reads the environment.
//!
//! Secrets are [`Secret`]s: they deserialize from strings and always serialize as
//! `"[redacted]"`, so logging or `--print-config` never leaks them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The standard OpenTelemetry exporter variables, for span export when `[trace]
/// otlp_endpoint` is unset: the traces URL from `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as is) or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/traces`); `None` when neither is set or
/// `OTEL_SDK_DISABLED=true`. Read here because this module is the one place that reads the
/// environment.
pub fn otel_traces_url_from_env() -> Option<String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| {
        env("OTEL_EXPORTER_OTLP_ENDPOINT")
            .map(|u| format!("{}/v1/traces", u.trim().trim_end_matches('/')))
    })
}

/// `[trace]`: where spans are exported.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceConfig {
    /// OTLP/HTTP base URL (e.g. `http://localhost:4318`; `/v1/traces` is appended). Unset: the
    /// `OTEL_EXPORTER_OTLP_*ENDPOINT` variables decide; none set means no export.
    pub otlp_endpoint: Option<url::Url>,
}

impl TraceConfig {
    /// The traces URL to export to, or `None` when export is off: the configured endpoint, else
    /// the `OTEL_EXPORTER_OTLP_*` variables ([`otel_traces_url_from_env`]).
    pub fn traces_url(&self) -> Option<String> {
        match &self.otlp_endpoint {
            Some(u) => Some(format!("{}/v1/traces", u.as_str().trim_end_matches('/'))),
            None => otel_traces_url_from_env(),
        }
    }
}

/// The ECS agent endpoint Fargate injects (`ECS_AGENT_URI`), for task scale-in protection;
/// `None` outside ECS. Read here because this module is the one place that reads the
/// environment.
pub fn ecs_agent_uri() -> Option<String> {
    std::env::var("ECS_AGENT_URI")
        .ok()
        .filter(|v| !v.is_empty())
}

/// A configuration failure.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or parsed.
    #[error("cannot load configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A top-level key no prism binary reads (a misspelling, or a key out of its section).
    #[error(
        "unknown configuration key `{key}` in {origin}: no prism binary reads it (this one reads {known})"
    )]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it was written: the file, the environment variable or the flag.
        origin: String,
        /// The keys this binary accepts there.
        known: String,
    },
    /// The config file holds a key or value its binary refuses (an unknown key inside a
    /// section among them).
    #[error("cannot load configuration: in {file}: {error}")]
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong in it.
        error: config::ConfigError,
    },
}

/// Every top-level key some prism binary reads: the common ones and the sections of
/// prism-api, prism-resize, prism-metadata and prism-archiver. One file may configure them all
/// (`prism dev` reads one file for the four), so a binary passes over the sections of the others
/// and refuses any other key it does not read itself; inside its own sections it refuses every
/// key it does not know (`deny_unknown_fields`). The `prism` crate's tests check this list
/// against the four configs.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "backend",
    "data_dir",
    "aws",
    "resources",
    "metrics",
    "shutdown",
    "log",
    "trace",
    "consumer",
    "max_receive_count",
    "http",
    "auth",
    "limits",
    "resize",
    "callback",
    "expiry",
    "flush",
];

/// The top-level keys `T` reads (the fields of its defaults, flattened sections included).
pub fn top_level_keys<T: Default + Serialize>() -> Vec<String> {
    match serde_json::to_value(T::default()) {
        Ok(serde_json::Value::Object(m)) => m.into_iter().map(|(k, _)| k).collect(),
        _ => Vec::new(),
    }
}

/// Refuse a top-level key that neither `T` nor any other prism binary reads, naming the file,
/// environment variable or flag it came from.
fn check_top_level_keys<T: Default + Serialize>(
    file: Option<(&Path, &config::Config)>,
    env: &std::collections::HashMap<String, String>,
    overrides: &[(&str, String)],
) -> Result<(), ConfigError> {
    let own = top_level_keys::<T>();
    let known = |k: &str| own.iter().any(|o| o == k) || TOP_LEVEL_KEYS.contains(&k);
    let unknown = |key: &str, origin: String| ConfigError::UnknownKey {
        key: key.to_owned(),
        origin,
        known: own.join(", "),
    };
    if let Some((path, table)) = file {
        let mut keys: Vec<String> = table
            .clone()
            .try_deserialize::<std::collections::HashMap<String, serde::de::IgnoredAny>>()?
            .into_keys()
            .collect();
        keys.sort();
        if let Some(k) = keys.iter().find(|k| !known(k)) {
            return Err(unknown(k, path.display().to_string()));
        }
    }
    let mut vars: Vec<&String> = env.keys().collect();
    vars.sort();
    for var in vars {
        let rest = var.strip_prefix("PRISM__").unwrap_or(var);
        let key = rest.split("__").next().unwrap_or(rest).to_lowercase();
        if !known(&key) {
            return Err(unknown(&key, format!("the environment variable {var}")));
        }
    }
    for (k, _) in overrides {
        let key = k.split('.').next().unwrap_or(k);
        if !known(key) {
            return Err(unknown(key, format!("the override {k}")));
        }
    }
    Ok(())
}

/// A secret string: redacted when serialized or debug-printed.
#[derive(Clone, Default)]
pub struct Secret(Option<SecretString>);

impl Secret {
    /// Wrap a value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(Some(SecretString::from(s.into())))
    }
    /// The value, for the one place that needs it.
    pub fn expose(&self) -> Option<&str> {
        self.0.as_ref().map(ExposeSecret::expose_secret)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "[redacted]"
        } else {
            "None"
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(_) => s.serialize_str("[redacted]"),
            None => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<String>::deserialize(d)?
            .map(Secret::new)
            .unwrap_or_default())
    }
}

/// Which adapters a binary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Files + SQLite under `data_dir`.
    #[default]
    Local,
    /// S3, SQS, SNS, DynamoDB.
    Aws,
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for local runs.
    #[default]
    Pretty,
    /// One JSON object per line, for AWS.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Pretty or JSON.
    pub format: LogFormat,
    /// `tracing` `EnvFilter` directives.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".into(),
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `/metrics` and `/healthz` are served (port 0 picks a free one).
    pub listen_addr: SocketAddr,
    /// Also write every metric to stdout in CloudWatch embedded metric format (one JSON line
    /// per series group and flush), for CloudWatch Logs to turn into CloudWatch metrics. Off
    /// locally; the CDK task definitions set `PRISM__METRICS__EMF=true`.
    pub emf: bool,
    /// CloudWatch namespace of the EMF metrics (1 to 255 characters, not starting with `AWS/`).
    /// The CDK app sets `prism` for the default stage and `prism/<stage>` for others.
    pub emf_namespace: String,
    /// Seconds between two EMF flushes (1..=3600): each flush writes counter increases,
    /// gauge values and the histogram samples of the interval.
    pub emf_interval_secs: u64,
}

impl MetricsConfig {
    /// `/metrics` and `/healthz` on loopback `port`. Each worker binary has its own default
    /// ([`METRICS_PORT_RESIZE`] and its siblings), so all of them run side by side on one
    /// machine with their defaults, the way Prometheus exporters each own a port.
    #[must_use]
    pub fn on_port(port: u16) -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            emf: false,
            emf_namespace: "prism".into(),
            emf_interval_secs: 60,
        }
    }

    /// The EMF settings are usable.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ns = &self.emf_namespace;
        if ns.is_empty()
            || ns.len() > 255
            || ns.starts_with("AWS/")
            || !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/#:".contains(&b))
        {
            return Err(ConfigError::Invalid(format!(
                "metrics.emf_namespace = {ns:?} must be 1..=255 of A-Z a-z 0-9 . _ - / # : and not start with AWS/"
            )));
        }
        if self.emf_interval_secs == 0 || self.emf_interval_secs > 3600 {
            return Err(ConfigError::Invalid(format!(
                "metrics.emf_interval_secs = {} must be 1..=3600",
                self.emf_interval_secs
            )));
        }
        Ok(())
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self::on_port(9090)
    }
}

/// The principal of the local dev token (`prism dev`).
pub const DEV_PRINCIPAL: &str = "dev";
/// prism-resize's default `/metrics` port.
pub const METRICS_PORT_RESIZE: u16 = 9091;
/// prism-metadata's default `/metrics` port.
pub const METRICS_PORT_METADATA: u16 = 9092;
/// prism-archiver's default `/metrics` port.
pub const METRICS_PORT_ARCHIVER: u16 = 9093;

impl CommonConfig {
    /// The defaults with `/metrics` on loopback `port` (a worker's own default port).
    #[must_use]
    pub fn with_metrics_port(port: u16) -> Self {
        Self {
            metrics: MetricsConfig::on_port(port),
            ..Self::default()
        }
    }
}

/// `[shutdown]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight work may run after SIGTERM. Must stay below the container stop
    /// timeout (ECS default 30 s) with slack.
    pub drain_timeout_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout_secs: 25,
        }
    }
}

/// `[aws]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// Region; the SDK's default chain when absent.
    pub region: Option<String>,
    /// A custom endpoint (moto, LocalStack); enables path-style S3 addressing.
    pub endpoint_url: Option<url::Url>,
}

/// `[resources]`: names of the buckets, topic, table and this worker's queues. Locally they are
/// names inside `data_dir`; on AWS bucket names, the topic ARN, the table name and queue URLs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Resources {
    /// Uploads bucket.
    pub uploads_bucket: String,
    /// Media bucket.
    pub media_bucket: String,
    /// Archive bucket.
    pub archive_bucket: String,
    /// Topic (ARN on AWS, name locally).
    pub topic_arn: String,
    /// Metadata table.
    pub table_name: String,
    /// This worker's queue (URL on AWS, name locally); defaults per worker.
    pub queue_url: Option<String>,
    /// This worker's dead-letter queue.
    pub dlq_url: Option<String>,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            uploads_bucket: "uploads".into(),
            media_bucket: "media".into(),
            archive_bucket: "archive".into(),
            topic_arn: "events".into(),
            table_name: "metadata".into(),
            queue_url: None,
            dlq_url: None,
        }
    }
}

/// The sections every binary has (flattened into each binary's config).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CommonConfig {
    /// Local or AWS adapters.
    pub backend: Backend,
    /// Root of the embedded backend's files.
    pub data_dir: PathBuf,
    /// AWS settings.
    pub aws: AwsConfig,
    /// Resource names.
    pub resources: Resources,
    /// Metrics endpoint.
    pub metrics: MetricsConfig,
    /// Shutdown.
    pub shutdown: ShutdownConfig,
    /// Logging.
    pub log: LogConfig,
    /// Span export (OTLP); off unless an endpoint is set.
    pub trace: TraceConfig,
}

impl Default for CommonConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Local,
            data_dir: PathBuf::from("prism-data"),
            aws: AwsConfig::default(),
            resources: Resources::default(),
            metrics: MetricsConfig::default(),
            shutdown: ShutdownConfig::default(),
            log: LogConfig::default(),
            trace: TraceConfig::default(),
        }
    }
}

impl CommonConfig {
    /// [`CommonConfig::validate`] plus what a queue worker needs (its queue URL on AWS).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad value.
    pub fn validate_worker(&self) -> Result<(), ConfigError> {
        self.validate()?;
        if self.backend == Backend::Aws
            && (self.resources.queue_url.is_none() || self.resources.dlq_url.is_none())
        {
            return Err(ConfigError::Invalid(
                "resources.queue_url and resources.dlq_url are required with backend = aws".into(),
            ));
        }
        Ok(())
    }

    /// Checks every binary shares.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.metrics.validate()?;
        if self.shutdown.drain_timeout_secs == 0 || self.shutdown.drain_timeout_secs > 110 {
            return Err(ConfigError::Invalid(format!(
                "shutdown.drain_timeout_secs = {} must be 1..=110 (below the 120 s ECS stop limit)",
                self.shutdown.drain_timeout_secs
            )));
        }
        if self.backend == Backend::Aws {
            let r = &self.resources;
            if !r.topic_arn.starts_with("arn:") {
                return Err(ConfigError::Invalid(format!(
                    "resources.topic_arn must be an ARN with backend = aws, got {:?}",
                    r.topic_arn
                )));
            }
        }
        Ok(())
    }
}

/// A binary's configuration type.
pub trait Validate {
    /// Check every value; called by [`load`].
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad value.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Load `T` from its defaults, `file`, the `PRISM__…` environment and `overrides`
/// (`("section.key", value)` pairs from CLI flags), then validate it.
///
/// # Errors
/// A source that cannot be read, a value of the wrong type, or a failed check.
pub fn load<T>(file: Option<&Path>, overrides: &[(&str, String)]) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned + Validate,
{
    load_from_env(file, overrides, std::env::vars())
}

/// [`load`] with an explicit environment (tests).
///
/// # Errors
/// As [`load`].
pub fn load_from_env<T, I>(
    file: Option<&Path>,
    overrides: &[(&str, String)],
    env: I,
) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned + Validate,
    I: IntoIterator<Item = (String, String)>,
{
    let defaults = config::Config::try_from(&T::default())?;
    let file_source = |f: &Path| config::File::from(f).format(config::FileFormat::Toml);
    let file_table = match file {
        Some(f) => Some(
            config::Config::builder()
                .add_source(file_source(f))
                .build()?,
        ),
        None => None,
    };
    let env: std::collections::HashMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("PRISM__"))
        .collect();
    check_top_level_keys::<T>(file.zip(file_table.as_ref()), &env, overrides)?;
    let mut builder = config::Config::builder().add_source(defaults.clone());
    if let Some(f) = file {
        builder = builder.add_source(file_source(f));
    }
    builder = builder.add_source(
        config::Environment::with_prefix("PRISM")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("auth.token_sha256s")
            .with_list_parse_key("http.cors_allowed_origins")
            .with_list_parse_key("resize.widths")
            .source(Some(env)),
    );
    for (k, v) in overrides {
        builder = builder.set_override(*k, v.clone())?;
    }
    let cfg: T = match builder.build()?.try_deserialize() {
        Ok(cfg) => cfg,
        Err(e) => {
            // Name the file when the file alone is refused (an unknown key in a section).
            if let Some(f) = file {
                let alone = config::Config::builder()
                    .add_source(defaults)
                    .add_source(file_source(f))
                    .build()?
                    .try_deserialize::<T>();
                if let Err(error) = alone {
                    return Err(ConfigError::File {
                        file: f.to_path_buf(),
                        error,
                    });
                }
            }
            return Err(e.into());
        }
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The effective config as JSON, secrets redacted (for the startup log and `--print-config`).
pub fn redacted_json<T: Serialize>(cfg: &T) -> String {
    serde_json::to_string(cfg).unwrap_or_else(|e| format!("<unserialisable config: {e}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct TestConfig {
        #[serde(flatten)]
        common: CommonConfig,
        token: Secret,
        worker: Worker,
    }

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Worker {
        concurrency: usize,
    }

    impl Default for Worker {
        fn default() -> Self {
            Self { concurrency: 2 }
        }
    }

    impl Validate for TestConfig {
        fn validate(&self) -> Result<(), ConfigError> {
            self.common.validate_worker()?;
            if self.worker.concurrency == 0 {
                return Err(ConfigError::Invalid(
                    "worker.concurrency must be at least 1".into(),
                ));
            }
            Ok(())
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prism.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from/file\"\n[worker]\nconcurrency = 3\n[log]\nfilter = \"debug\"\n",
        )
        .unwrap();
        let c: TestConfig = load_from_env(Some(&file), &[], env(&[])).unwrap();
        assert_eq!(c.worker.concurrency, 3);
        assert_eq!(c.common.data_dir, PathBuf::from("/from/file"));
        let c: TestConfig = load_from_env(
            Some(&file),
            &[("worker.concurrency", "7".into())],
            env(&[
                ("PRISM__WORKER__CONCURRENCY", "5"),
                ("PRISM__LOG__FORMAT", "json"),
                ("PRISM_IGNORED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.worker.concurrency, 7, "CLI beats env");
        assert_eq!(c.common.log.format, LogFormat::Json, "env beats defaults");
        assert_eq!(c.common.log.filter, "debug", "file beats defaults");
        let c: TestConfig =
            load_from_env(None, &[], env(&[("PRISM__WORKER__CONCURRENCY", "5")])).unwrap();
        assert_eq!(c.worker.concurrency, 5, "env beats defaults");
    }

    #[test]
    fn invalid_values_are_rejected_before_use() {
        let e =
            load_from_env::<TestConfig, _>(None, &[], env(&[("PRISM__WORKER__CONCURRENCY", "0")]))
                .unwrap_err();
        assert!(e.to_string().contains("worker.concurrency"), "{e}");
        let e = load_from_env::<TestConfig, _>(
            None,
            &[],
            env(&[("PRISM__WORKER__CONCURRENCY", "many")]),
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::Load(_)), "{e}");
        let e = load_from_env::<TestConfig, _>(None, &[], env(&[("PRISM__BACKEND", "aws")]))
            .unwrap_err();
        assert!(e.to_string().contains("topic_arn"), "{e}");
        let aws = [
            ("PRISM__BACKEND", "aws"),
            (
                "PRISM__RESOURCES__TOPIC_ARN",
                "arn:aws:sns:eu-west-1:1:events",
            ),
        ];
        let e = load_from_env::<TestConfig, _>(None, &[], env(&aws)).unwrap_err();
        assert!(e.to_string().contains("queue_url"), "{e}");
        let e = load_from_env::<TestConfig, _>(
            None,
            &[],
            env(&[("PRISM__SHUTDOWN__DRAIN_TIMEOUT_SECS", "600")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("drain_timeout_secs"), "{e}");
        let e =
            load_from_env::<TestConfig, _>(None, &[], env(&[("PRISM__BACKEND", "carrier-pigeon")]))
                .unwrap_err();
        assert!(matches!(e, ConfigError::Load(_)), "{e}");
    }

    #[test]
    fn unknown_keys_in_a_section_are_rejected() {
        let e =
            load_from_env::<TestConfig, _>(None, &[], env(&[("PRISM__WORKER__CONCURENCY", "3")]))
                .unwrap_err();
        assert!(e.to_string().contains("concurency"), "{e}");
    }

    #[test]
    fn a_misspelled_key_in_the_file_is_refused_naming_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prism.toml");
        let shown = file.display().to_string();
        // Inside a section this binary reads.
        std::fs::write(&file, "[worker]\nconcurency = 3\n").unwrap();
        let e = load_from_env::<TestConfig, _>(Some(&file), &[], env(&[])).unwrap_err();
        assert!(matches!(e, ConfigError::File { .. }), "{e}");
        let m = e.to_string();
        assert!(m.contains("concurency") && m.contains(&shown), "{m}");
        // At the top level, and a misspelled section.
        for text in ["max_pixel = 5\n", "[wroker]\nconcurrency = 3\n"] {
            std::fs::write(&file, text).unwrap();
            let e = load_from_env::<TestConfig, _>(Some(&file), &[], env(&[])).unwrap_err();
            assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e}");
            let m = e.to_string();
            let key = if text.starts_with('[') {
                "`wroker`"
            } else {
                "`max_pixel`"
            };
            assert!(m.contains(key) && m.contains(&shown), "{m}");
        }
        // The sections of the other prism binaries pass (one file may serve them all), and the
        // environment still overrides the file.
        std::fs::write(
            &file,
            "backend = \"local\"\n[worker]\nconcurrency = 3\n\
             [http]\nlisten_addr = \"127.0.0.1:1\"\n[resize.limits]\nmax_pixels = 1\n",
        )
        .unwrap();
        let c: TestConfig = load_from_env(
            Some(&file),
            &[],
            env(&[("PRISM__WORKER__CONCURRENCY", "9")]),
        )
        .unwrap();
        assert_eq!(c.worker.concurrency, 9);
    }

    #[test]
    fn a_misspelled_environment_variable_is_refused_naming_it() {
        let e =
            load_from_env::<TestConfig, _>(None, &[], env(&[("PRISM__WROKER__CONCURRENCY", "3")]))
                .unwrap_err();
        assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e}");
        assert!(e.to_string().contains("PRISM__WROKER__CONCURRENCY"), "{e}");
        let e =
            load_from_env::<TestConfig, _>(None, &[("wroker.concurrency", "3".into())], env(&[]))
                .unwrap_err();
        assert!(e.to_string().contains("wroker.concurrency"), "{e}");
    }

    #[test]
    fn secrets_are_redacted() {
        let c: TestConfig = load_from_env(None, &[], env(&[("PRISM__TOKEN", "hunter2")])).unwrap();
        assert_eq!(c.token.expose(), Some("hunter2"));
        let shown = redacted_json(&c);
        assert!(
            !shown.contains("hunter2") && shown.contains("[redacted]"),
            "{shown}"
        );
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn traces_url_from_config_appends_the_signal_path() {
        let c = TraceConfig {
            otlp_endpoint: Some("http://collector:4318/".parse().unwrap()),
        };
        assert_eq!(
            c.traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
    }
}
