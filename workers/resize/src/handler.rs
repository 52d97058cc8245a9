//! The resize worker: consumes upload `ObjectCreated` events, renders every variant through the
//! engine, writes them, then the manifest — or, on a permanent failure, `failure.json` — and
//! acks. Keys are deterministic, so a redelivery overwrites the same objects (and replay
//! re-renders on purpose, e.g. after a new width).
//!
//! Admission is by memory, not count: before decoding, the header is probed and the job takes
//! one unit per MiB of the peak its render will need ([`render::memory::estimate`]: the decoded
//! frame, every variant, the resize scratch and the encoders' working memory), so a 24 MP photo
//! asked for large widths cannot run beside five others on a small box. A request that cannot
//! fit even alone, or whose variants add up to more than `max_output_pixels`, is refused with
//! `image_too_large` before anything is decoded. CPU work runs on the blocking pool (the engine parallelises
//! encodes on rayon), never on the reactor, so visibility heartbeats keep firing.
//!
//! | failure | disposition |
//! |---|---|
//! | body not an event, unknown schema | dead-letter |
//! | upload missing, no/invalid variant request, not an image, too large, truncated, … | `failure.json`, ack |
//! | render past its deadline | `failure.json` (`render_timeout`), ack |
//! | render process died on the file twice | `failure.json` (`render_crashed`), ack |
//! | storage throttled/unavailable/timeout, worker panic | retry |
//!
//! Renders run in a pool of child processes by default (`[resize] isolation`, see
//! [`crate::isolate`]): a codec crash fails only its file, and a render past its deadline
//! ([`render_deadline`]) is killed. The handler returns at the deadline either way, so the
//! consumer's visibility heartbeat (and ECS task protection) stop with it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use shared::admission::Budget;
use shared::consumer::{Handler, Outcome};
use shared::error::{ErrorCode, HandlerError, ResultExt};
use shared::event::{EventBody, S3EventRecord, parse_body};
use shared::keys;
use shared::manifest::parse_manifest;
use shared::manifest::{FailureRecord, Manifest, SCHEMA_VERSION};
use shared::port::blob_store::{CACHE_IMMUTABLE, CACHE_REVALIDATE};
use shared::port::{
    AnimationFacts, BlobStore, BlobStoreError, FileError, HdrFacts, Message, ObjectMeta,
    PutOptions, RenderedFile, SourceFacts, VariantRecord,
};
use shared::rerender::{self, RerenderMessage, RerenderRecord, RerenderStatus};
use shared::telemetry::trace::{self, KeyValue, TraceParent};
use shared::variant::{self, FocalPoint, META_FOCAL_POINT, META_REQUEST, VariantRequest};
use time::OffsetDateTime;
use tracing::{Instrument, error, info, warn};

use crate::Deps;
use crate::config::{Config, ResizeConfig};
use crate::isolate::{self, Isolation, PoolError};
use crate::render::{self, EncodeSettings, Limits, RenderError};

/// The deadline of one render: `render_timeout_secs` when set, else the floor plus
/// `render_timeout_secs_per_megapixel` for each megapixel of work the header promises: the
/// decoded frame (`decode_pixels`) plus every planned variant, counted once per WebP and four
/// times per AVIF (rav1e takes several times libwebp's CPU per pixel). A 24 MP photo asked for
/// the four default widths in WebP+AVIF gets 30 + 24 + 5 × 4.2 ≈ 75 s; a 64×64 image doing
/// pathological work (thousands of progressive scans) gets the 30 s floor.
pub fn render_deadline(
    cfg: &ResizeConfig,
    decode_pixels: u64,
    oriented: (u32, u32),
    request: &VariantRequest,
) -> Duration {
    if let Some(s) = cfg.render_timeout_secs {
        return Duration::from_secs(s);
    }
    let (w, h) = oriented;
    let per_format: u64 = request
        .formats
        .iter()
        .map(|f| match f {
            variant::OutputFormat::Webp if !request.lossless.is_off() => 4,
            variant::OutputFormat::Webp
            | variant::OutputFormat::Jpeg
            | variant::OutputFormat::Png => 1,
            variant::OutputFormat::Avif => 4,
        })
        .sum();
    let output: u64 = render::planned_outputs(request, w, h)
        .iter()
        .map(|&(vw, vh)| u64::from(vw) * u64::from(vh))
        .sum();
    let megapixels = (decode_pixels as f64 + (output * per_format) as f64) / 1e6;
    let secs = cfg.render_timeout_floor_secs as f64
        + cfg.render_timeout_secs_per_megapixel.max(0.0) * megapixels;
    Duration::from_secs_f64(secs.min(86_400.0))
}

/// The render's estimated peak memory ([`render::memory::estimate`], on this process's rayon
/// pool size: a render process has the same), or why it may not run at all: variants over
/// `max_output_pixels`, or a peak larger than the whole admission budget.
///
/// # Errors
/// [`RenderError::TooLarge`] (`image_too_large`) in either case.
pub fn admit(
    cfg: &ResizeConfig,
    settings: &EncodeSettings,
    probe: &render::decode::Probe,
    input_len: u64,
    request: &VariantRequest,
) -> Result<render::memory::MemoryEstimate, RenderError> {
    render::check_output(probe, request, &cfg.limits)?;
    let memory = render::memory::estimate(
        probe,
        input_len,
        request,
        settings,
        rayon::current_num_threads(),
    );
    if memory.total_mib() > u64::from(cfg.admission_mib) {
        return Err(RenderError::TooLarge(format!(
            "the render needs about {} MiB, more than the admission budget of {} MiB",
            memory.total_mib(),
            cfg.admission_mib
        )));
    }
    Ok(memory)
}

/// Handles one resize-queue message.
pub struct ResizeHandler {
    deps: Deps,
    limits: Limits,
    settings: EncodeSettings,
    /// [`render::engine_id`] of `settings`, part of every variant's tag.
    engine: String,
    budget: Budget,
    resize: ResizeConfig,
    /// The render processes; `None` renders in this process.
    pool: Option<Arc<isolate::Pool>>,
}

/// What [`ResizeHandler::render_variants`] wrote.
struct RenderedVariants {
    facts: render::SourceFacts,
    variants: Vec<VariantRecord>,
    content_type: &'static str,
}

/// The manifest's record of the source, from the engine's facts.
fn source_record(f: &render::SourceFacts, focal_point: Option<FocalPoint>) -> SourceFacts {
    SourceFacts {
        format: f.format.as_str().to_owned(),
        width: f.width,
        height: f.height,
        bytes: f.bytes,
        sha256: f.sha256.clone(),
        has_alpha: f.has_alpha,
        color_profile: f.color_profile.clone(),
        orientation: f.orientation,
        hdr: f.hdr.as_ref().map(|h| HdrFacts {
            transfer: h.transfer.as_str().to_owned(),
            content_peak_nits: h.content_peak_nits,
        }),
        focal_point,
        animation: f.animation.map(animation_record),
    }
}

/// The manifest's record of an animation.
fn animation_record(a: render::animation::AnimationFacts) -> AnimationFacts {
    AnimationFacts {
        frames: a.frames,
        duration_ms: a.duration_ms,
        loop_count: a.loop_count,
    }
}

/// A permanent failure of one file, recorded in `failure.json`.
struct FileFailure(ErrorCode, String);

/// How one upload ended.
enum FileOutcome {
    /// Variants and manifest written.
    Rendered,
    /// Failed permanently; `failure.json` records it, with the SHA-256 of the upload when it
    /// was read.
    Failed(FileFailure, Option<String>),
    /// A different object than the one this file was first processed from (a replayed upload
    /// grant): left alone, so a later object at the same key never replaces the variants or
    /// the recorded hash.
    Superseded {
        /// SHA-256 the file is pinned to.
        pinned: String,
        /// SHA-256 of the object found now.
        found: String,
    },
}

/// How rendering one file ended when nothing transient went wrong (a transient failure is the
/// `Err` beside it: retry).
enum RenderOutcome<T> {
    /// Rendered (for [`ResizeHandler::render_variants`], every variant written too).
    Done(T),
    /// The file failed permanently: its `failure.json` (or re-render record) says why.
    Failed(FileFailure),
}

impl From<FileFailure> for FileOutcome {
    fn from(f: FileFailure) -> Self {
        FileOutcome::Failed(f, None)
    }
}

impl ResizeHandler {
    /// A handler over `deps`.
    pub fn new(cfg: &Config, deps: Deps) -> Self {
        let pool = match cfg.resize.isolation {
            Isolation::None => {
                // What a render process builds before its first request, off the first
                // messages' path.
                std::thread::spawn(render::color::prepare);
                None
            }
            Isolation::Process => {
                match isolate::locate_child_program(cfg.resize.render_child_program.as_deref()) {
                    Ok(program) => {
                        info!(program = %program.display(), processes = cfg.consumer.concurrency, "Renders run in child processes.");
                        let pool = Arc::new(isolate::Pool::new(
                            program,
                            cfg.resize.child_address_space_mib(),
                            cfg.consumer.concurrency,
                        ));
                        // Start and warm the children now, off the first messages' path.
                        if let Ok(rt) = tokio::runtime::Handle::try_current() {
                            let (p, settings) = (pool.clone(), cfg.encode_settings());
                            rt.spawn(async move {
                                let ready = p
                                    .warm(
                                        &[variant::OutputFormat::Webp, variant::OutputFormat::Avif],
                                        &settings,
                                    )
                                    .await;
                                info!(ready, "Render processes started.");
                            });
                        }
                        Some(pool)
                    }
                    Err(e) => {
                        error!(error = %e, "No render-child executable; rendering in this process, WITHOUT crash isolation.");
                        None
                    }
                }
            }
        };
        Self {
            deps,
            limits: cfg.resize.limits,
            settings: cfg.encode_settings(),
            engine: render::engine_id(&cfg.encode_settings()),
            budget: Budget::new("resize", cfg.resize.admission_mib),
            resize: cfg.resize.clone(),
            pool,
        }
    }

    /// Render in a child (or in-process when isolation is off) within `deadline`. The permit
    /// is held until the render's CPU work has really ended.
    async fn render_bounded(
        &self,
        permit: shared::admission::BudgetPermit,
        input: Bytes,
        request: &VariantRequest,
        deadline: Duration,
    ) -> Result<RenderOutcome<render::Rendered>, HandlerError> {
        let timeout = |d: Duration| {
            FileFailure(
                ErrorCode::RenderTimeout,
                format!(
                    "the render did not finish within its {:.0} s deadline",
                    d.as_secs_f64()
                ),
            )
        };
        if let Some(pool) = &self.pool {
            let r = pool
                .render(&input, request, &self.limits, &self.settings, deadline)
                .await;
            drop(permit);
            return match r {
                Ok(r) => Ok(RenderOutcome::Done(r)),
                Err(PoolError::Render(e)) => Ok(RenderOutcome::Failed(render_failure(e))),
                Err(PoolError::Timeout(d)) => Ok(RenderOutcome::Failed(timeout(d))),
                Err(e @ PoolError::Crashed(_)) => Ok(RenderOutcome::Failed(FileFailure(
                    ErrorCode::RenderCrashed,
                    e.to_string(),
                ))),
                Err(e @ PoolError::Unavailable(_)) => {
                    Err(HandlerError::transient(ErrorCode::Internal, e.to_string()))
                }
            };
        }
        // In-process: past the deadline the file fails and the handler returns, but the thread
        // cannot be stopped; it keeps the permit until it ends, so admission stays honest.
        let (limits, settings, req) = (self.limits, self.settings, request.clone());
        let span = tracing::Span::current();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(|| render::render(&input, &req, &limits, &settings))
        });
        match tokio::time::timeout(deadline, task).await {
            Err(_) => Ok(RenderOutcome::Failed(timeout(deadline))),
            Ok(Err(e)) => Err(HandlerError::transient(
                ErrorCode::Panic,
                format!("render task failed: {e}"),
            )),
            Ok(Ok(Ok(r))) => Ok(RenderOutcome::Done(r)),
            Ok(Ok(Err(e))) => Ok(RenderOutcome::Failed(render_failure(e))),
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
            Err(e) => return Err(HandlerError::from(e)),
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
            FileOutcome::Rendered => {
                info!(
                    batch_id = batch,
                    file_id = file,
                    ms = started.elapsed().as_millis() as u64,
                    "File rendered."
                );
                Ok(Outcome::Success)
            }
            FileOutcome::Superseded { pinned, found } => {
                warn!(
                    batch_id = batch,
                    file_id = file,
                    pinned,
                    found,
                    "A later object at this upload's key; the file stays with the first one processed."
                );
                Ok(Outcome::Duplicate)
            }
            FileOutcome::Failed(FileFailure(code, message), source_sha256) => {
                shared::telemetry::metrics::error("resize", "processing", code);
                warn!(batch_id = batch, file_id = file, error_code = %code, error = %message, "File failed permanently; recorded.");
                let record = FailureRecord {
                    schema_version: SCHEMA_VERSION,
                    batch_id: batch.to_owned(),
                    file_id: file.to_owned(),
                    failed_at: OffsetDateTime::now_utc(),
                    error: FileError { code, message },
                    source_sha256,
                };
                let body = serde_json::to_vec(&record).expect("a failure record serialises");
                self.put_json(&keys::failure_key(batch, file), body).await?;
                Ok(Outcome::Success)
            }
        }
    }

    /// The SHA-256 of the upload this file was first processed from: the manifest's
    /// `source.sha256`, else the failure record's; `None` before any.
    async fn pinned_source(&self, batch: &str, file: &str) -> Result<Option<String>, HandlerError> {
        match self.deps.media.get(&keys::manifest_key(batch, file)).await {
            Ok(body) => {
                // An unreadable record pins nothing: it is rewritten by this render.
                return Ok(serde_json::from_slice::<Manifest>(&body)
                    .ok()
                    .map(|m| m.rendered.source.sha256));
            }
            Err(BlobStoreError::NotFound(_)) => {}
            Err(e) => return Err(HandlerError::from(e)),
        }
        match self.deps.media.get(&keys::failure_key(batch, file)).await {
            Ok(body) => Ok(serde_json::from_slice::<FailureRecord>(&body)
                .ok()
                .and_then(|f| f.source_sha256)),
            Err(BlobStoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(HandlerError::from(e)),
        }
    }

    async fn put_json(&self, key: &str, body: Vec<u8>) -> Result<(), HandlerError> {
        let opts = PutOptions {
            content_type: Some("application/json".into()),
            metadata: BTreeMap::new(),
            // Rewritten in place (a retried render, a superseding failure): never immutable.
            cache_control: Some(CACHE_REVALIDATE.into()),
        };
        self.deps
            .media
            .put(key, Bytes::from(body), opts)
            .await
            .map_err(HandlerError::from)
    }

    /// Render one upload. The error is transient (retry); [`FileOutcome::Failed`] is the file's
    /// permanent failure.
    async fn render_file(
        &self,
        key: &str,
        batch: &str,
        file: &str,
        head: Option<ObjectMeta>,
    ) -> Result<FileOutcome, HandlerError> {
        let Some(head) = head else {
            return Ok(FileOutcome::from(FileFailure(
                ErrorCode::SourceMissing,
                format!("the upload {key} no longer exists"),
            )));
        };
        if head.size > self.limits.max_input_bytes {
            return Ok(FileOutcome::from(FileFailure(
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
            Some(Ok(mut r)) => {
                // The file's focal point travels under its own key (the request is the batch's).
                match head.metadata.get(META_FOCAL_POINT) {
                    None => {}
                    Some(p) => match FocalPoint::from_metadata(p) {
                        Some(p) => r.focal_point = Some(p),
                        None => {
                            return Ok(FileOutcome::from(FileFailure(
                                ErrorCode::InvalidRequest,
                                "the upload's focal point is not x,y within 0..=1".into(),
                            )));
                        }
                    },
                }
                r
            }
            Some(Err(e)) => {
                return Ok(FileOutcome::from(FileFailure(
                    ErrorCode::InvalidRequest,
                    e.to_string(),
                )));
            }
            None => {
                return Ok(FileOutcome::from(FileFailure(
                    ErrorCode::InvalidRequest,
                    "the upload carries no variant request".into(),
                )));
            }
        };
        let bytes = match self.deps.uploads.get(key).await {
            Ok(b) => b,
            Err(BlobStoreError::NotFound(_)) => {
                return Ok(FileOutcome::from(FileFailure(
                    ErrorCode::SourceMissing,
                    format!("the upload {key} no longer exists"),
                )));
            }
            Err(e) => return Err(HandlerError::from(e)),
        };
        // One upload grant stores one object: the first one processed wins. A later object at
        // the same key (a replayed presigned POST; S3 cannot refuse it) is left alone.
        let sha = {
            let b = bytes.clone();
            tokio::task::spawn_blocking(move || render::facts::sha256_hex(&b))
                .await
                .map_err(|e| {
                    HandlerError::transient(ErrorCode::Panic, format!("hash task failed: {e}"))
                })?
        };
        if let Some(pinned) = self.pinned_source(batch, file).await?
            && pinned != sha
        {
            return Ok(FileOutcome::Superseded { pinned, found: sha });
        }
        let failed = |code: ErrorCode, message: String| {
            Ok(FileOutcome::Failed(
                FileFailure(code, message),
                Some(sha.clone()),
            ))
        };
        let rendered = match self
            .render_variants(batch, file, bytes.clone(), &request)
            .await?
        {
            RenderOutcome::Done(r) => r,
            RenderOutcome::Failed(FileFailure(code, message)) => return failed(code, message),
        };
        let (f, variants) = (rendered.facts, rendered.variants);
        let original_key = if request.keep_original {
            let okey = keys::original_key(batch, file);
            let opts = PutOptions {
                content_type: Some(rendered.content_type.into()),
                metadata: BTreeMap::new(),
                // A file is pinned to its first upload, so its original never changes.
                cache_control: Some(CACHE_IMMUTABLE.into()),
            };
            self.deps
                .media
                .put(&okey, bytes, opts)
                .await
                .map_err(HandlerError::from)?;
            Some(okey)
        } else {
            None
        };
        let manifest = Manifest {
            schema_version: SCHEMA_VERSION,
            batch_id: batch.to_owned(),
            file_id: file.to_owned(),
            rendered_at: OffsetDateTime::now_utc(),
            rendered: RenderedFile {
                source: source_record(&f, request.focal_point),
                variants,
                original_key,
                placeholder: Some(f.thumbhash),
                dominant_color: Some(f.dominant_color),
            },
            request_sha256: Some(shared::rerender::request_sha256(&request)),
        };
        // The manifest goes last: its event tells the metadata writer every variant exists.
        let body = serde_json::to_vec(&manifest).expect("a manifest serialises");
        self.put_json(&keys::manifest_key(batch, file), body)
            .await?;
        Ok(FileOutcome::Rendered)
    }

    /// Probe, admit and render `bytes` with `request`, then write every variant under its
    /// tagged key. The error is transient (retry); [`RenderOutcome::Failed`] the file's
    /// permanent failure.
    async fn render_variants(
        &self,
        batch: &str,
        file: &str,
        bytes: Bytes,
        request: &VariantRequest,
    ) -> Result<RenderOutcome<RenderedVariants>, HandlerError> {
        // The header probe parses metadata (PNG iCCP, TIFF IFDs, HEIF boxes): off the reactor.
        let (header, limits) = (bytes.clone(), self.limits);
        let probed = tokio::task::spawn_blocking(move || render::decode::probe(&header, &limits))
            .await
            .map_err(|e| {
                HandlerError::transient(ErrorCode::Panic, format!("probe task failed: {e}"))
            })?;
        let probe = match probed {
            Ok(p) => p,
            Err(e) => return Ok(RenderOutcome::Failed(FileFailure(e.code(), e.to_string()))),
        };
        let memory = match admit(
            &self.resize,
            &self.settings,
            &probe,
            bytes.len() as u64,
            request,
        ) {
            Ok(m) => m,
            Err(e) => return Ok(RenderOutcome::Failed(FileFailure(e.code(), e.to_string()))),
        };
        let permit = self
            .budget
            .acquire(u32::try_from(memory.total_mib()).unwrap_or(u32::MAX))
            .await;
        let deadline = render_deadline(
            &self.resize,
            probe.decode_pixels(),
            probe.oriented_dimensions(),
            request,
        );
        let span = tracing::info_span!(target: trace::TARGET, "render", format = probe.format.as_str(), width = probe.width, height = probe.height, memory_mib = memory.total_mib());
        let rendered = self
            .render_bounded(permit, bytes, request, deadline)
            .instrument(span)
            .await?;
        let rendered = match rendered {
            RenderOutcome::Done(r) => r,
            RenderOutcome::Failed(failure) => return Ok(RenderOutcome::Failed(failure)),
        };
        let mut variants = Vec::with_capacity(rendered.variants.len());
        for v in rendered.variants {
            let vkey = match &v.size {
                None => {
                    let tag = keys::variant_tag_auto(
                        &keys::tag_engine(&self.engine, v.animation.is_some()),
                        v.format,
                        request.quality(v.format),
                        request.fit,
                        v.target_width,
                        request.lossless_for(v.format),
                        v.animation
                            .is_none()
                            .then(|| auto_tag(request, v.format))
                            .flatten()
                            .as_deref(),
                    );
                    keys::variant_key(batch, file, v.target_width, &tag, v.format)
                }
                Some(size) => {
                    let tag = keys::size_variant_tag_auto(
                        &keys::tag_engine(&self.engine, v.animation.is_some()),
                        v.format,
                        request.quality(v.format),
                        size,
                        request.focal_point,
                        request.lossless_for(v.format),
                        v.animation
                            .is_none()
                            .then(|| auto_tag(request, v.format))
                            .flatten()
                            .as_deref(),
                    );
                    keys::size_variant_key(batch, file, size, &tag, v.format)
                }
            };
            let n = v.bytes.len();
            let opts = PutOptions {
                content_type: Some(v.format.content_type().into()),
                metadata: BTreeMap::new(),
                // The key names everything that determines these bytes.
                cache_control: Some(CACHE_IMMUTABLE.into()),
            };
            self.deps
                .media
                .put(&vkey, Bytes::from(v.bytes), opts)
                .await
                .map_err(HandlerError::from)?;
            shared::telemetry::metrics::image_rendered(v.format.as_str(), n);
            variants.push(VariantRecord {
                width: v.width,
                height: v.height,
                fit: v.size.map_or(variant::Fit::Inside, |s| s.fit),
                format: v.format,
                bytes: n as u64,
                key: vkey,
                lossless: v.lossless,
                animation: v.animation.map(animation_record),
                auto: v.auto.map(|c| variant::AutoChoice {
                    quality: c.quality,
                    ssimulacra2: c.score,
                }),
            });
        }
        Ok(RenderOutcome::Done(RenderedVariants {
            facts: rendered.facts,
            variants,
            content_type: probe.format.content_type(),
        }))
    }

    /// The focal point signed into the file's upload, while the upload exists.
    async fn upload_focal_point(
        &self,
        batch: &str,
        file: &str,
    ) -> Result<Option<FocalPoint>, HandlerError> {
        match self.deps.uploads.head(&keys::upload_key(batch, file)).await {
            Ok(head) => Ok(head
                .metadata
                .get(META_FOCAL_POINT)
                .and_then(|p| FocalPoint::from_metadata(p))),
            Err(BlobStoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(HandlerError::from(e)),
        }
    }

    /// Read `key` from `store` when it is at most `limit` bytes; `None` when it does not exist.
    async fn get_bounded(
        store: &dyn BlobStore,
        key: &str,
        limit: u64,
    ) -> Result<Option<Bytes>, HandlerError> {
        match store.head(key).await {
            Ok(h) if h.size > limit => {
                return Err(HandlerError::permanent(
                    ErrorCode::InvalidEvent,
                    format!("{key}: {} bytes exceed {limit}", h.size),
                ));
            }
            Ok(_) => {}
            Err(BlobStoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(HandlerError::from(e)),
        }
        match store.get(key).await {
            Ok(b) if b.len() as u64 > limit => Err(HandlerError::permanent(
                ErrorCode::InvalidEvent,
                format!("{key}: {} bytes exceed {limit}", b.len()),
            )),
            Ok(b) => Ok(Some(b)),
            Err(BlobStoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(HandlerError::from(e)),
        }
    }

    /// Whether `manifest` holds variants rendered with `request` by this engine: it names the
    /// spec's hash and every variant key carries the tag this engine gives that spec.
    fn rendered_with(&self, manifest: &Manifest, request: &VariantRequest, sha: &str) -> bool {
        manifest.request_sha256.as_deref() == Some(sha)
            && !manifest.rendered.variants.is_empty()
            && manifest.rendered.variants.iter().all(|v| {
                let name = v.key.rsplit('/').next().unwrap_or_default();
                keys::parse_variant_label(name).is_some_and(|(label, tag, format)| {
                    format == v.format
                        && match label {
                            keys::VariantLabel::Width(width) => {
                                tag == keys::variant_tag_auto(
                                    &keys::tag_engine(&self.engine, v.animation.is_some()),
                                    format,
                                    request.quality(format),
                                    request.fit,
                                    width,
                                    request.lossless_for(format),
                                    v.animation
                                        .is_none()
                                        .then(|| auto_tag(request, format))
                                        .flatten()
                                        .as_deref(),
                                )
                            }
                            keys::VariantLabel::Size { width, height, fit } => {
                                request.sizes.iter().any(|s| {
                                    (s.width, s.height, s.fit) == (width, height, fit)
                                        && tag
                                            == keys::size_variant_tag_auto(
                                                &keys::tag_engine(
                                                    &self.engine,
                                                    v.animation.is_some(),
                                                ),
                                                format,
                                                request.quality(format),
                                                s,
                                                request.focal_point,
                                                request.lossless_for(format),
                                                v.animation
                                                    .is_none()
                                                    .then(|| auto_tag(request, format))
                                                    .flatten()
                                                    .as_deref(),
                                            )
                                })
                            }
                        }
                })
            })
    }

    async fn put_rerender_record(
        &self,
        m: &RerenderMessage,
        sha: &str,
        status: RerenderStatus,
        error: Option<FileError>,
    ) -> Result<(), HandlerError> {
        let record = RerenderRecord {
            schema_version: rerender::SCHEMA_VERSION,
            batch_id: m.batch_id.clone(),
            file_id: m.file_id.clone(),
            request_sha256: sha.to_owned(),
            status,
            error,
            nonce: m.nonce.clone(),
            at: OffsetDateTime::now_utc(),
        };
        let body = serde_json::to_vec(&record).expect("a re-render record serialises");
        self.put_json(&rerender::record_key(&m.batch_id, &m.file_id), body)
            .await
    }

    /// Re-render one `done` file with the message's spec, from its kept original or its
    /// upload; a file already rendered with the spec is skipped. The outcome is written to
    /// `rerender.json` (after the new manifest), a permanent failure included: the file keeps
    /// its variants then.
    async fn on_rerender(&self, m: &RerenderMessage) -> Result<Outcome, HandlerError> {
        const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
        let (batch, file) = (m.batch_id.as_str(), m.file_id.as_str());
        let sha = rerender::request_sha256(&m.request);
        let span = tracing::info_span!(target: trace::TARGET, "rerender", batch_id = batch, file_id = file);
        let fail = |code: ErrorCode, message: String| {
            shared::telemetry::metrics::error("resize", "rerender", code);
            warn!(batch_id = batch, file_id = file, error_code = %code, error = %message, "Re-render failed; the file keeps its variants.");
            Some(FileError { code, message })
        };
        let manifest = Self::get_bounded(
            &*self.deps.media,
            &keys::manifest_key(batch, file),
            MAX_MANIFEST_BYTES,
        )
        .await?
        .and_then(|b| parse_manifest(&b).ok());
        let Some(manifest) = manifest else {
            let e = fail(
                ErrorCode::SourceMissing,
                "the file has no readable manifest: only rendered files can be re-rendered".into(),
            );
            self.put_rerender_record(m, &sha, RerenderStatus::Failed, e)
                .await?;
            return Ok(Outcome::Success);
        };
        // The file's focal point is the file's, not the spec's: the one it was rendered with
        // (or, from a manifest that predates recording it, the upload's), unless the spec
        // names one.
        let mut request = m.request.clone();
        if request.focal_point.is_none() {
            request.focal_point = match manifest.rendered.source.focal_point {
                Some(p) => Some(p),
                None => self.upload_focal_point(batch, file).await?,
            };
        }
        if self.rendered_with(&manifest, &request, &sha) {
            self.put_rerender_record(m, &sha, RerenderStatus::AlreadyRendered, None)
                .await?;
            return Ok(Outcome::Duplicate);
        }
        let limit = self.limits.max_input_bytes;
        let source =
            match Self::get_bounded(&*self.deps.media, &keys::original_key(batch, file), limit)
                .await
            {
                Ok(Some(b)) => Some(b),
                Ok(None) => {
                    Self::get_bounded(&*self.deps.uploads, &keys::upload_key(batch, file), limit)
                        .await?
                }
                Err(e) if e.code == ErrorCode::InvalidEvent => None,
                Err(e) => return Err(e),
            };
        let Some(bytes) = source else {
            let e = fail(
                ErrorCode::SourceMissing,
                "neither a kept original nor the upload of this file exists (or it is over the input limit)".into(),
            );
            self.put_rerender_record(m, &sha, RerenderStatus::Failed, e)
                .await?;
            return Ok(Outcome::Success);
        };
        let found = {
            let b = bytes.clone();
            tokio::task::spawn_blocking(move || render::facts::sha256_hex(&b))
                .await
                .map_err(|e| {
                    HandlerError::transient(ErrorCode::Panic, format!("hash task failed: {e}"))
                })?
        };
        if found != manifest.rendered.source.sha256 {
            let e = fail(
                ErrorCode::SourceMissing,
                format!(
                    "the source found (sha256 {found}) is not the one the file was rendered from"
                ),
            );
            self.put_rerender_record(m, &sha, RerenderStatus::Failed, e)
                .await?;
            return Ok(Outcome::Success);
        }
        let started = Instant::now();
        let rendered = self
            .render_variants(batch, file, bytes, &request)
            .instrument(span)
            .await?;
        let rendered = match rendered {
            RenderOutcome::Done(r) => r,
            RenderOutcome::Failed(FileFailure(code, message)) => {
                let e = fail(code, message);
                self.put_rerender_record(m, &sha, RerenderStatus::Failed, e)
                    .await?;
                return Ok(Outcome::Success);
            }
        };
        let f = rendered.facts;
        let next = Manifest {
            schema_version: SCHEMA_VERSION,
            batch_id: batch.to_owned(),
            file_id: file.to_owned(),
            rendered_at: OffsetDateTime::now_utc(),
            rendered: RenderedFile {
                source: source_record(&f, request.focal_point),
                variants: rendered.variants,
                original_key: manifest.rendered.original_key,
                placeholder: Some(f.thumbhash),
                dominant_color: Some(f.dominant_color),
            },
            request_sha256: Some(sha.clone()),
        };
        // Variants, then the manifest (whose event updates the metadata), then the record.
        let body = serde_json::to_vec(&next).expect("a manifest serialises");
        self.put_json(&keys::manifest_key(batch, file), body)
            .await?;
        self.put_rerender_record(m, &sha, RerenderStatus::Rendered, None)
            .await?;
        info!(
            batch_id = batch,
            file_id = file,
            ms = started.elapsed().as_millis() as u64,
            "File re-rendered."
        );
        Ok(Outcome::Success)
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
            EventBody::Json(v) if RerenderMessage::is_rerender(&v) => {
                let inner = parsed
                    .envelope
                    .as_ref()
                    .map_or(message.body.as_str(), |e| e.message.as_str());
                let m = RerenderMessage::parse(inner).permanent(ErrorCode::InvalidEvent)?;
                self.on_rerender(&m).await
            }
            EventBody::TestEvent(_) | EventBody::Json(_) => Ok(Outcome::Skipped),
            EventBody::S3(event) => {
                let mut outcome = Outcome::Skipped;
                for r in &event.records {
                    match self.on_record(r, message.sent_at).await? {
                        Outcome::Success => outcome = Outcome::Success,
                        Outcome::Duplicate if outcome != Outcome::Success => {
                            outcome = Outcome::Duplicate;
                        }
                        _ => {}
                    }
                }
                Ok(outcome)
            }
        }
    }
}

/// What a variant tag hashes for a format whose quality is searched (`"quality": "auto"`):
/// the level and the engine's search method; `None` for a fixed quality.
fn auto_tag(request: &VariantRequest, format: variant::OutputFormat) -> Option<String> {
    request
        .auto_quality_for(format)
        .map(render::perceptual::tag_input)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the failure report
mod tests {
    use super::*;
    use shared::variant::OutputFormat;

    fn request(formats: Vec<OutputFormat>) -> VariantRequest {
        VariantRequest {
            widths: vec![320, 640, 1280, 2048],
            formats,
            ..VariantRequest::default()
        }
    }

    #[test]
    fn the_deadline_grows_with_the_promised_work_above_its_floor() {
        let cfg = ResizeConfig::default();
        let both = request(vec![OutputFormat::Webp, OutputFormat::Avif]);
        // A tiny image gets the floor (plus well under a second).
        let tiny = render_deadline(&cfg, 64 * 64, (64, 64), &both);
        assert!(tiny >= Duration::from_secs(30) && tiny < Duration::from_secs(31));
        // A 24 MP photo, four widths in WebP+AVIF: 30 + 24 + 5 × (0.07+0.27+1.09+2.80) MP.
        let photo = render_deadline(&cfg, 6000 * 4000, (6000, 4000), &both);
        assert!(
            photo > Duration::from_secs(70) && photo < Duration::from_secs(80),
            "{photo:?}"
        );
        // Six widths of 7000-8000 from 8000×6000 in WebP+AVIF still get their time.
        let big = VariantRequest {
            widths: vec![7000, 7200, 7400, 7600, 7800, 7999],
            ..both.clone()
        };
        let large = render_deadline(&cfg, 8000 * 6000, (8000, 6000), &big);
        assert!(large > Duration::from_secs(1000), "{large:?}");
        // A fixed deadline wins.
        let fixed = ResizeConfig {
            render_timeout_secs: Some(7),
            ..ResizeConfig::default()
        };
        assert_eq!(
            render_deadline(&fixed, 8000 * 6000, (8000, 6000), &big),
            Duration::from_secs(7)
        );
    }

    fn jpeg_probe(width: u32, height: u32) -> (render::decode::Probe, u64) {
        let pixels = vec![128_u8; width as usize * height as usize * 3];
        let image = turbojpeg::Image {
            pixels: pixels.as_slice(),
            width: width as usize,
            pitch: width as usize * 3,
            height: height as usize,
            format: turbojpeg::PixelFormat::RGB,
        };
        let bytes = turbojpeg::compress(image, 80, turbojpeg::Subsamp::Sub2x2).unwrap();
        let probe = render::decode::probe(&bytes, &Limits::default()).unwrap();
        (probe, bytes.len() as u64)
    }

    #[test]
    fn admission_charges_the_whole_render_and_refuses_what_cannot_fit_alone() {
        let (probe, len) = jpeg_probe(8000, 6000);
        let settings = EncodeSettings::default();
        let cfg = ResizeConfig::default();
        // The default request on a 48 MP photo fits, and is charged more than its frame.
        let default = VariantRequest::default().normalise().unwrap();
        let m = admit(&cfg, &settings, &probe, len, &default).unwrap();
        assert!(m.total_mib() > 48 * 3 && m.total_mib() < 2560, "{m:?}");
        assert!(
            m.encoders > 0 && m.variants > 0 && m.resize_scratch > 0,
            "{m:?}"
        );
        // Six widths near full size in WebP+AVIF: over the output cap.
        let huge = VariantRequest {
            widths: vec![7000, 7200, 7400, 7600, 7800, 8000],
            ..VariantRequest::default()
        }
        .normalise()
        .unwrap();
        let err = admit(&cfg, &settings, &probe, len, &huge).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ImageTooLarge);
        assert!(err.to_string().contains("variants add up to"), "{err}");
        // With the cap lifted, the memory budget refuses it.
        let mut lifted = cfg.clone();
        lifted.limits.max_output_pixels = u64::MAX;
        let err = admit(&lifted, &settings, &probe, len, &huge).unwrap_err();
        assert!(err.to_string().contains("admission budget"), "{err}");
        // And a budget large enough admits it.
        lifted.admission_mib = u32::MAX;
        assert!(admit(&lifted, &settings, &probe, len, &huge).is_ok());
    }

    #[test]
    fn the_child_address_space_follows_the_admission_budget() {
        let cfg = ResizeConfig::default();
        assert_eq!(cfg.child_address_space_mib(), 2048 + 2560);
        let set = ResizeConfig {
            child_address_space_mib: Some(2048),
            ..ResizeConfig::default()
        };
        assert_eq!(set.child_address_space_mib(), 2048);
    }

    #[test]
    fn isolation_is_on_by_default_and_configurable() {
        let cfg: ResizeConfig = serde_json::from_str(r#"{"isolation": "none"}"#).unwrap();
        assert_eq!(cfg.isolation, Isolation::None);
        assert_eq!(ResizeConfig::default().isolation, Isolation::Process);
    }
}
