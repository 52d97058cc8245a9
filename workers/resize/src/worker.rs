//! The resize worker: consumes upload `ObjectCreated` events, renders every variant through the
//! engine, writes them, then the manifest — or, on a permanent failure, `failure.json` — and
//! acks. Keys are deterministic, so a redelivery overwrites the same objects (and replay
//! re-renders on purpose, e.g. after a new width).
//!
//! Admission is by pixel budget, not count: before decoding, the header is probed and the job
//! takes one unit per started megapixel of the decoded frame, so a 24 MP photo cannot run beside
//! five others on a small box. CPU work runs on the blocking pool (the engine parallelises
//! encodes on rayon), never on the reactor, so visibility heartbeats keep firing.
//!
//! | failure | disposition |
//! |---|---|
//! | body not an event, unknown schema | dead-letter |
//! | upload missing, no/invalid variant request, not an image, too large, truncated, … | `failure.json`, ack |
//! | storage throttled/unavailable/timeout, worker panic | retry |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shared::admission::Budget;
use shared::config::{CommonConfig, ConfigError, Validate};
use shared::consumer::{Consumer, ConsumerConfig, Handler, Outcome, RunReport};
use shared::error::{ErrorCode, HandlerError, ResultExt};
use shared::event::{EventBody, S3EventRecord, parse_body};
use shared::keys;
use shared::manifest::{FailureRecord, Manifest, SCHEMA_VERSION};
use shared::port::{
    BlobStore, BlobStoreError, FileError, Message, ObjectMeta, PutOptions, Queue, RenderedFile,
    SourceFacts, VariantRecord,
};
use shared::telemetry::trace::{self, KeyValue, TraceParent};
use shared::variant::{self, META_REQUEST, VariantRequest};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::render::{self, EncodeSettings, Limits, RenderError};

/// `[resize]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResizeConfig {
    /// Input limits, checked from the header before decoding.
    pub limits: Limits,
    /// Megapixels of decoded frames in flight at once.
    pub admission_megapixels: u32,
    /// rav1e speed (1 slowest/smallest … 10 fastest); `None` keeps the engine default.
    pub avif_speed: Option<u8>,
    /// libwebp method (0-6); `None` keeps the engine default (4).
    pub webp_method: Option<u8>,
}

impl Default for ResizeConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            admission_megapixels: 64,
            avif_speed: None,
            webp_method: None,
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
            common: CommonConfig::default(),
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
        if self.max_receive_count == 0 || self.resize.admission_megapixels == 0 {
            return Err(ConfigError::Invalid(
                "max_receive_count and resize.admission_megapixels must be at least 1".into(),
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
        if let Some(m) = self.resize.webp_method {
            s.webp_method = m;
        }
        s
    }
}

/// The adapters the worker uses.
pub struct Deps {
    /// The resize queue.
    pub queue: Arc<dyn Queue>,
    /// Uploads bucket (read).
    pub uploads: Arc<dyn BlobStore>,
    /// Media bucket (write).
    pub media: Arc<dyn BlobStore>,
    /// Told the in-flight count (ECS task scale-in protection while non-zero).
    pub busy: Option<shared::adapter::aws::task_protection::BusySignal>,
}

/// Build the local-backend adapters.
///
/// # Errors
/// When the queue cannot be opened.
pub async fn local_deps(
    cfg: &Config,
    stack: &shared::adapter::local::LocalStack,
) -> anyhow::Result<Deps> {
    let queue = stack
        .queue(
            shared::topology::RESIZE_QUEUE,
            Duration::from_secs(cfg.consumer.visibility_timeout_secs),
            cfg.max_receive_count,
        )
        .await?;
    Ok(Deps {
        queue: Arc::new(queue),
        uploads: Arc::new(stack.uploads.clone()),
        media: Arc::new(stack.media.clone()),
        busy: None,
    })
}

/// Build the AWS adapters: the resize queue from `resources.queue_url`/`dlq_url` and the two
/// buckets.
///
/// # Errors
/// When the queue URLs are missing.
pub fn aws_deps(
    cfg: &Config,
    stack: &shared::adapter::aws::AwsStack,
    busy: Option<shared::adapter::aws::task_protection::BusySignal>,
) -> anyhow::Result<Deps> {
    Ok(Deps {
        queue: Arc::new(stack.worker_queue(shared::topology::RESIZE_QUEUE, &cfg.common)?),
        uploads: Arc::new(stack.uploads.clone()),
        media: Arc::new(stack.media.clone()),
        busy,
    })
}

/// Run the worker until `shutdown`, then drain.
pub async fn run(cfg: &Config, deps: Deps, shutdown: CancellationToken) -> RunReport {
    let (queue, busy) = (deps.queue.clone(), deps.busy.clone());
    let handler = ResizeHandler::new(cfg, deps);
    Consumer::new("resize", queue, Arc::new(handler), cfg.consumer.clone())
        .with_busy_signal(busy)
        .run(
            shutdown,
            Duration::from_secs(cfg.common.shutdown.drain_timeout_secs),
        )
        .await
}

/// Handles one resize-queue message.
pub struct ResizeHandler {
    deps: Deps,
    limits: Limits,
    settings: EncodeSettings,
    budget: Budget,
}

fn blob_err(e: BlobStoreError) -> HandlerError {
    match e {
        BlobStoreError::Throttled(_) => HandlerError::transient(ErrorCode::Throttled, e),
        BlobStoreError::Timeout(_) => HandlerError::transient(ErrorCode::Timeout, e),
        e if e.is_transient() => HandlerError::transient(ErrorCode::StoreUnavailable, e),
        e => HandlerError::permanent(ErrorCode::Internal, e),
    }
}

/// A permanent failure of one file, recorded in `failure.json`.
struct FileFailure(ErrorCode, String);

impl ResizeHandler {
    /// A handler over `deps`.
    pub fn new(cfg: &Config, deps: Deps) -> Self {
        Self {
            deps,
            limits: cfg.resize.limits,
            settings: cfg.encode_settings(),
            budget: Budget::new("resize", cfg.resize.admission_megapixels),
        }
    }

    async fn on_record(
        &self,
        r: &S3EventRecord,
        enqueued_at: OffsetDateTime,
    ) -> Result<Outcome, HandlerError> {
        r.check_version().permanent(ErrorCode::UnsupportedSchema)?;
        if !r.is_object_created() || r.s3.bucket.name != self.deps.uploads.bucket() {
            return Ok(Outcome::Skipped);
        }
        let key =
            r.s3.object
                .decoded_key()
                .permanent(ErrorCode::InvalidEvent)?;
        let Some((batch, file)) = keys::parse_upload_key(&key) else {
            warn!(key = %key, "Upload key outside the uploads/{{batch}}/{{file}} layout; skipped.");
            return Ok(Outcome::Skipped);
        };
        let started = Instant::now();
        let span = tracing::info_span!(target: trace::TARGET, "resize", trace_id = tracing::field::Empty, batch_id = batch, file_id = file);
        let head = match self.deps.uploads.head(&key).await {
            Ok(h) => Some(h),
            Err(BlobStoreError::NotFound(_)) => None,
            Err(e) => return Err(blob_err(e)),
        };
        if let Some(tp) = head.as_ref().and_then(|h| {
            h.metadata
                .get(variant::META_TRACEPARENT)
                .and_then(|v| TraceParent::parse(v))
        }) {
            trace::record_span(
                "queue wait",
                &tp,
                enqueued_at.into(),
                std::time::SystemTime::now(),
                vec![
                    KeyValue::new("prism.worker", "resize"),
                    KeyValue::new("prism.file_id", file.to_owned()),
                ],
            );
            trace::adopt(&span, &tp);
        }
        let outcome = self
            .render_file(&key, batch, file, head)
            .instrument(span)
            .await?;
        match outcome {
            Ok(()) => {
                info!(
                    batch_id = batch,
                    file_id = file,
                    ms = started.elapsed().as_millis() as u64,
                    "File rendered."
                );
                Ok(Outcome::Success)
            }
            Err(FileFailure(code, message)) => {
                shared::telemetry::metrics::error("resize", "processing", code.as_str());
                warn!(batch_id = batch, file_id = file, error_code = %code, error = %message, "File failed permanently; recorded.");
                let record = FailureRecord {
                    schema_version: SCHEMA_VERSION,
                    batch_id: batch.to_owned(),
                    file_id: file.to_owned(),
                    failed_at: OffsetDateTime::now_utc(),
                    error: FileError {
                        code: code.as_str().to_owned(),
                        message,
                    },
                };
                let body = serde_json::to_vec(&record).expect("a failure record serialises");
                self.put_json(&keys::failure_key(batch, file), body).await?;
                Ok(Outcome::Success)
            }
        }
    }

    async fn put_json(&self, key: &str, body: Vec<u8>) -> Result<(), HandlerError> {
        let opts = PutOptions {
            content_type: Some("application/json".into()),
            metadata: BTreeMap::new(),
        };
        self.deps
            .media
            .put(key, Bytes::from(body), opts)
            .await
            .map_err(blob_err)
    }

    /// Render one upload. The outer error is transient (retry); the inner one is the file's
    /// permanent failure.
    async fn render_file(
        &self,
        key: &str,
        batch: &str,
        file: &str,
        head: Option<ObjectMeta>,
    ) -> Result<Result<(), FileFailure>, HandlerError> {
        let Some(head) = head else {
            return Ok(Err(FileFailure(
                ErrorCode::SourceMissing,
                format!("the upload {key} no longer exists"),
            )));
        };
        if head.size > self.limits.max_input_bytes {
            return Ok(Err(FileFailure(
                ErrorCode::ImageTooLarge,
                format!(
                    "{} bytes exceed the {}-byte input limit",
                    head.size, self.limits.max_input_bytes
                ),
            )));
        }
        let request = match head
            .metadata
            .get(META_REQUEST)
            .map(|m| VariantRequest::from_metadata(m))
        {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Ok(Err(FileFailure(ErrorCode::InvalidRequest, e.to_string()))),
            None => {
                return Ok(Err(FileFailure(
                    ErrorCode::InvalidRequest,
                    "the upload carries no variant request".into(),
                )));
            }
        };
        let bytes = match self.deps.uploads.get(key).await {
            Ok(b) => b,
            Err(BlobStoreError::NotFound(_)) => {
                return Ok(Err(FileFailure(
                    ErrorCode::SourceMissing,
                    format!("the upload {key} no longer exists"),
                )));
            }
            Err(e) => return Err(blob_err(e)),
        };
        // The header probe parses metadata (PNG iCCP, TIFF IFDs, HEIF boxes): off the reactor.
        let (header, limits) = (bytes.clone(), self.limits);
        let probed = tokio::task::spawn_blocking(move || render::decode::probe(&header, &limits))
            .await
            .map_err(|e| {
                HandlerError::transient(ErrorCode::Panic, format!("probe task failed: {e}"))
            })?;
        let probe = match probed {
            Ok(p) => p,
            Err(e) => return Ok(Err(FileFailure(e.code(), e.to_string()))),
        };
        let megapixels = probe.decode_pixels().div_ceil(1_000_000) + 1;
        let _permit = self
            .budget
            .acquire(u32::try_from(megapixels).unwrap_or(u32::MAX))
            .await;
        let (limits, settings, req, input) =
            (self.limits, self.settings, request.clone(), bytes.clone());
        let span = tracing::info_span!(target: trace::TARGET, "render", format = probe.format.as_str(), width = probe.width, height = probe.height);
        let rendered = tokio::task::spawn_blocking(move || {
            span.in_scope(|| render::render(&input, &req, &limits, &settings))
        })
        .await
        .map_err(|e| {
            HandlerError::transient(ErrorCode::Panic, format!("render task failed: {e}"))
        })?;
        let rendered = match rendered {
            Ok(r) => r,
            Err(e) => return Ok(Err(render_failure(e))),
        };
        let mut variants = Vec::with_capacity(rendered.variants.len());
        for v in rendered.variants {
            let vkey = keys::variant_key(batch, file, v.target_width, v.format);
            let n = v.bytes.len();
            let opts = PutOptions {
                content_type: Some(v.format.content_type().into()),
                metadata: BTreeMap::new(),
            };
            self.deps
                .media
                .put(&vkey, Bytes::from(v.bytes), opts)
                .await
                .map_err(blob_err)?;
            shared::telemetry::metrics::image_rendered(v.format.as_str(), v.target_width, n);
            variants.push(VariantRecord {
                width: v.width,
                height: v.height,
                format: v.format,
                bytes: n as u64,
                key: vkey,
            });
        }
        let original_key = if request.keep_original {
            let okey = keys::original_key(batch, file);
            let opts = PutOptions {
                content_type: Some(probe.format.content_type().into()),
                metadata: BTreeMap::new(),
            };
            self.deps
                .media
                .put(&okey, bytes, opts)
                .await
                .map_err(blob_err)?;
            Some(okey)
        } else {
            None
        };
        let f = rendered.facts;
        let manifest = Manifest {
            schema_version: SCHEMA_VERSION,
            batch_id: batch.to_owned(),
            file_id: file.to_owned(),
            rendered_at: OffsetDateTime::now_utc(),
            rendered: RenderedFile {
                source: SourceFacts {
                    format: f.format.as_str().to_owned(),
                    width: f.width,
                    height: f.height,
                    bytes: f.bytes,
                    sha256: f.sha256,
                    has_alpha: f.has_alpha,
                    color_profile: f.color_profile,
                    orientation: f.orientation,
                },
                variants,
                original_key,
                placeholder: Some(f.thumbhash),
                dominant_color: Some(f.dominant_color),
            },
        };
        // The manifest goes last: its event tells the metadata writer every variant exists.
        let body = serde_json::to_vec(&manifest).expect("a manifest serialises");
        self.put_json(&keys::manifest_key(batch, file), body)
            .await?;
        Ok(Ok(()))
    }
}

fn render_failure(e: RenderError) -> FileFailure {
    FileFailure(e.code(), e.to_string())
}

#[async_trait]
impl Handler for ResizeHandler {
    async fn handle(&self, message: &Message) -> Result<Outcome, HandlerError> {
        let parsed = parse_body(&message.body).permanent(ErrorCode::InvalidEvent)?;
        match parsed.body {
            EventBody::TestEvent(_) | EventBody::Json(_) => Ok(Outcome::Skipped),
            EventBody::S3(event) => {
                let mut outcome = Outcome::Skipped;
                for r in &event.records {
                    if self.on_record(r, message.sent_at).await? == Outcome::Success {
                        outcome = Outcome::Success;
                    }
                }
                Ok(outcome)
            }
        }
    }
}
