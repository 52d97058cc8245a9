//! `/v1` routes: create a batch, read a batch (long-poll), publish a client event.

use shared::api::ErrorCode;
use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest as _;
use shared::port::{
    BatchRecord, BatchStatus, FileStatus, IdempotencyKey, MetadataStoreError, NewBatch, NewFile,
    PresignedUpload, UploadMethod, UploadPolicy,
};
use shared::telemetry::trace::{self, TraceParent};
use shared::variant::{self, VariantRequest};
use time::OffsetDateTime;
use tracing::Instrument;

use crate::error::ApiError;
use crate::{AppState, Principal};

pub use shared::api::{
    BatchView, ClientEvent, CreateBatchRequest, CreatedBatch, ErrorBody, EventAccepted, FileSpec,
    FileView, UploadInstructions, UploadMethodSpec, VariantSpec, VariantView, WebhookView,
};

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn store_err(e: MetadataStoreError) -> ApiError {
    if let MetadataStoreError::QuotaExceeded { .. } = e {
        return ApiError {
            retry_after: Some(60),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::UploadQuotaExceeded,
                e.to_string(),
            )
        };
    }
    if e.is_transient() {
        ApiError::unavailable(e)
    } else {
        ApiError::internal(e)
    }
}

/// The caller's W3C `traceparent`, when it sent a valid one.
fn incoming_traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse)
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "each file name must be 1-255 bytes without control characters",
        ));
    }
    Ok(())
}

fn check_content_type(ct: &str) -> Result<(), ApiError> {
    let ok = ct.len() <= 100
        && ct.strip_prefix("image/").is_some_and(|sub| {
            !sub.is_empty()
                && sub
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "content_type {ct:?} is not an image/* type"
        )))
    }
}

/// Longest `callback_url` (it is stored with the batch and sent with every attempt).
const MAX_CALLBACK_URL_BYTES: usize = 2048;

/// The `201` of a create: the batch and `Location: /v1/batches/{batch_id}`.
pub struct Created(CreatedBatch);

impl IntoResponse for Created {
    fn into_response(self) -> Response {
        let location = format!("/v1/batches/{}", self.0.batch_id);
        let mut resp = (StatusCode::CREATED, Json(self.0)).into_response();
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp
    }
}

/// The request's `Idempotency-Key`: absent, or 1-255 printable ASCII characters sent once.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(shared::api::IDEMPOTENCY_KEY).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() || !shared::api::valid_idempotency_key(v.as_bytes()) {
        return Err(ApiError::invalid(
            "Idempotency-Key must be sent once, as 1-255 printable ASCII characters",
        ));
    }
    Ok(Some(String::from_utf8_lossy(v.as_bytes()).into_owned()))
}

/// SHA-256 (hex) of the normalised request: what a retry under the same key must match.
fn request_hash(req: &CreateBatchRequest, request: &VariantRequest) -> String {
    #[derive(Serialize)]
    struct Normalised<'a> {
        files: &'a [FileSpec],
        request: &'a VariantRequest,
        callback_url: Option<&'a str>,
        upload_method: UploadMethodSpec,
    }
    let canonical = serde_json::to_vec(&Normalised {
        files: &req.files,
        request,
        callback_url: req.callback_url.as_deref(),
        upload_method: req.upload_method,
    })
    .unwrap_or_default();
    hex::encode(sha2::Sha256::digest(canonical))
}

/// `POST /v1/batches`. The batch's trace continues the caller's `traceparent` when it sends
/// one; the `create_batch` span is the parent of everything the workers do with its files.
///
/// With an `Idempotency-Key`, a retry of the same request by the same principal answers the
/// batch the key created (fresh upload instructions for its files still awaiting upload), and a
/// different request under the key is refused (422 `idempotency_key_reused`), while the batch's
/// upload grants last.
#[utoipa::path(
    post,
    path = "/v1/batches",
    summary = "Create a batch and get one presigned upload per file",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "1-255 printable ASCII characters. A retry with the same key and the same request (same principal) answers the same batch (same `batch_id` and file ids) with fresh upload instructions for its files still awaiting upload (files already uploaded are left out of `uploads`); the same key with a different request is refused with 422 `idempotency_key_reused`. A key lasts as long as its batch's upload grants (`expires_at`)."),
    ),
    request_body = CreateBatchRequest,
    responses(
        (status = 201, description = "Created", body = CreatedBatch, headers(("Location" = String, description = "`/v1/batches/{batch_id}`"))),
        (status = 400, description = "Invalid request (or an invalid `Idempotency-Key`)", body = ErrorBody),
        (status = 401, description = "No valid token (the body is not read)", body = ErrorBody),
        (status = 408, description = "The body stalled or the request outlasted the request timeout", body = ErrorBody),
        (status = 413, description = "Body over `[limits] max_batch_body_bytes` (1 MiB)", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the `Idempotency-Key` was used for a different request", body = ErrorBody),
        (status = 429, description = "`rate_limited`, or `upload_quota_exceeded`: the principal's files awaiting upload plus this batch's would pass `[auth] max_inflight_uploads` (5000); a file stops counting once uploaded, failed or expired (see Retry-After)", body = ErrorBody),
        (status = 503, description = "Too many requests in progress, or a backend is unavailable (see Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn create_batch(
    State(s): State<AppState>,
    Extension(Principal(principal)): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Json<CreateBatchRequest>, JsonRejection>,
) -> Result<Created, ApiError> {
    let incoming = incoming_traceparent(&headers);
    let span = tracing::info_span!(target: trace::TARGET, "create_batch", trace_id = tracing::field::Empty, batch_id = tracing::field::Empty, files = tracing::field::Empty);
    if let Some(tp) = &incoming {
        trace::adopt(&span, tp);
    }
    let downstream = trace::downstream(&span, incoming.unwrap_or_else(TraceParent::random));
    if incoming.is_none() {
        span.record("trace_id", downstream.trace_id_hex());
    }
    let key = idempotency_key(&headers)?;
    create_batch_traced(s, principal, body, key, downstream)
        .instrument(span)
        .await
}

/// One file's presigned upload, granted until `expires_in` from now.
#[allow(clippy::too_many_arguments)]
async fn presign_file(
    s: &AppState,
    batch_id: &str,
    file: &NewFile,
    request_metadata: &str,
    focal_point: Option<variant::FocalPoint>,
    traceparent: &str,
    method: UploadMethod,
    expires_in: Duration,
) -> Result<UploadInstructions, ApiError> {
    let mut metadata = BTreeMap::from([
        (
            variant::META_REQUEST.to_owned(),
            request_metadata.to_owned(),
        ),
        (variant::META_BATCH_ID.to_owned(), batch_id.to_owned()),
        (variant::META_FILE_ID.to_owned(), file.file_id.clone()),
        (
            variant::META_FILE_NAME.to_owned(),
            percent_encoding::utf8_percent_encode(&file.name, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        ),
        (variant::META_TRACEPARENT.to_owned(), traceparent.to_owned()),
    ]);
    if let Some(p) = focal_point {
        metadata.insert(variant::META_FOCAL_POINT.to_owned(), p.to_metadata());
    }
    let policy = UploadPolicy {
        key: shared::keys::upload_key(batch_id, &file.file_id),
        content_type: file.content_type.clone(),
        max_bytes: file.size,
        metadata,
        expires_in,
        method,
    };
    let presign = tracing::info_span!(target: trace::TARGET, "presign", file_id = %file.file_id);
    let p: PresignedUpload = s
        .uploads
        .presign_upload(&policy)
        .instrument(presign)
        .await
        .map_err(|e| {
            if e.is_transient() {
                ApiError::unavailable(e)
            } else {
                ApiError::internal(e)
            }
        })?;
    Ok(UploadInstructions {
        file_id: file.file_id.clone(),
        name: file.name.clone(),
        method: p.method,
        url: p.url,
        fields: p.fields,
        headers: p.headers,
    })
}

async fn create_batch_traced(
    s: AppState,
    principal: String,
    body: Result<Json<CreateBatchRequest>, JsonRejection>,
    key: Option<String>,
    traceparent: TraceParent,
) -> Result<Created, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::body(e.status(), e.body_text(), &e))?;
    let limits = &s.cfg.limits;
    if req.files.is_empty() || req.files.len() > limits.max_files {
        return Err(ApiError::invalid(format!(
            "between 1 and {} files are required",
            limits.max_files
        )));
    }
    for f in &req.files {
        check_name(&f.name)?;
        check_content_type(&f.content_type)?;
        if f.size == 0 || f.size > limits.max_upload_bytes {
            return Err(ApiError::invalid(format!(
                "size of {:?} must be 1..={} bytes",
                f.name, limits.max_upload_bytes
            )));
        }
        if f.focal_point.is_some_and(|p| !p.is_valid()) {
            return Err(ApiError::invalid(format!(
                "focal_point of {:?} must have x and y within 0..=1",
                f.name
            )));
        }
    }
    if req.variants.quality.is_some()
        && (req.variants.webp_quality.is_some()
            || req.variants.avif_quality.is_some()
            || (matches!(req.variants.quality, Some(variant::Quality::Fixed(_)))
                && req.variants.jpeg_quality.is_some()))
    {
        return Err(ApiError::invalid(
            "quality sets every lossy format's quality: give it or webp_quality, avif_quality \
             and jpeg_quality, not both",
        ));
    }
    let request = VariantRequest {
        widths: req.variants.widths.clone(),
        formats: req.variants.formats.clone(),
        fit: req.variants.fit,
        sizes: req.variants.sizes.clone(),
        focal_point: None,
        webp_quality: req
            .variants
            .webp_quality
            .unwrap_or(variant::DEFAULT_WEBP_QUALITY),
        avif_quality: req
            .variants
            .avif_quality
            .unwrap_or(variant::DEFAULT_AVIF_QUALITY),
        keep_original: req.variants.keep_original,
        jpeg_quality: req
            .variants
            .jpeg_quality
            .unwrap_or(variant::DEFAULT_JPEG_QUALITY),
        lossless: req.variants.lossless,
        animated: req.variants.animated.unwrap_or(true),
        quality: req.variants.quality,
    }
    .normalise()
    .map_err(|e| ApiError::invalid(e.to_string()))?;
    if let Some(url) = &req.callback_url {
        if url.len() > MAX_CALLBACK_URL_BYTES {
            return Err(ApiError::invalid(format!(
                "callback_url is limited to {MAX_CALLBACK_URL_BYTES} bytes"
            )));
        }
        shared::callback::resolve_checked(url, s.local_mode())
            .await
            .map_err(|e| ApiError::invalid(format!("callback_url: {e}")))?;
    }
    // Whole microseconds, as the stores keep times: the answer's `expires_at` is the one a
    // read (or a retried create) answers later.
    let now = OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now);
    let expires_at = now + Duration::from_secs(limits.upload_expiry_secs);
    let method: UploadMethod = req.upload_method.into();
    let batch = NewBatch {
        batch_id: uuid::Uuid::now_v7().to_string(),
        principal,
        created_at: now,
        expires_at,
        request: request.clone(),
        callback_url: req.callback_url.clone(),
        traceparent: Some(traceparent.to_string()),
        files: req
            .files
            .iter()
            .map(|f| NewFile {
                file_id: uuid::Uuid::now_v7().to_string(),
                name: f.name.clone(),
                content_type: f.content_type.clone(),
                size: f.size,
            })
            .collect(),
        max_pending_uploads: Some(s.cfg.auth.max_inflight_uploads),
        idempotency: key.map(|key| IdempotencyKey {
            key,
            request_sha256: request_hash(&req, &request),
        }),
    };
    let request_metadata = request.to_metadata();
    let tp = batch.traceparent.clone().unwrap_or_default();
    let focal_points: Vec<_> = req.files.iter().map(|f| f.focal_point).collect();
    let mut uploads = Vec::with_capacity(batch.files.len());
    for (f, &focal_point) in batch.files.iter().zip(&focal_points) {
        uploads.push(
            presign_file(
                &s,
                &batch.batch_id,
                f,
                &request_metadata,
                focal_point,
                &tp,
                method,
                Duration::from_secs(limits.upload_expiry_secs),
            )
            .await?,
        );
    }
    match s.metadata.create_batch(&batch).await {
        Ok(()) => {}
        Err(MetadataStoreError::IdempotencyKeyTaken {
            batch_id,
            request_sha256,
        }) => {
            let ours = batch
                .idempotency
                .as_ref()
                .map(|i| i.request_sha256.as_str());
            if ours != Some(request_sha256.as_str()) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorCode::IdempotencyKeyReused,
                    "this Idempotency-Key was used for a different request",
                ));
            }
            return replay_created(&s, &batch.principal, &batch_id, method, &focal_points).await;
        }
        Err(e) => return Err(store_err(e)),
    }
    let span = tracing::Span::current();
    span.record("batch_id", batch.batch_id.as_str());
    span.record("files", batch.files.len());
    tracing::info!(batch_id = %batch.batch_id, files = batch.files.len(), "Batch created.");
    Ok(Created(CreatedBatch {
        batch_id: batch.batch_id,
        expires_at: rfc3339(expires_at),
        uploads,
    }))
}

/// The answer to a retried create: the batch its key created, with fresh upload instructions
/// (granted until the batch's own expiry) for the files still awaiting upload. The files'
/// focal points are not stored: they are the retry's own, in file order (the key's request
/// hash covers them).
async fn replay_created(
    s: &AppState,
    principal: &str,
    batch_id: &str,
    method: UploadMethod,
    focal_points: &[Option<variant::FocalPoint>],
) -> Result<Created, ApiError> {
    let b = s
        .metadata
        .get_batch(batch_id)
        .await
        .map_err(store_err)?
        .filter(|b| b.principal == principal)
        .ok_or_else(|| {
            ApiError::unavailable("the batch of an idempotency key is not readable yet")
        })?;
    let left = (b.expires_at - OffsetDateTime::now_utc()).unsigned_abs();
    let request_metadata = b.request.to_metadata();
    let tp = b.traceparent.clone().unwrap_or_default();
    let mut uploads = Vec::new();
    for (i, f) in b.files.iter().enumerate().filter(|(_, f)| {
        f.status == FileStatus::AwaitingUpload && b.expires_at > OffsetDateTime::now_utc()
    }) {
        let focal_point = focal_points.get(i).copied().flatten();
        let file = NewFile {
            file_id: f.file_id.clone(),
            name: f.name.clone(),
            content_type: f.content_type.clone(),
            size: f.size,
        };
        uploads.push(
            presign_file(
                s,
                &b.batch_id,
                &file,
                &request_metadata,
                focal_point,
                &tp,
                method,
                left,
            )
            .await?,
        );
    }
    tracing::info!(batch_id = %b.batch_id, uploads = uploads.len(), "Batch create retried under its idempotency key.");
    Ok(Created(CreatedBatch {
        batch_id: b.batch_id,
        expires_at: rfc3339(b.expires_at),
        uploads,
    }))
}

/// `?wait=SECONDS`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Long-poll until the batch completes or this many seconds pass (at most
    /// `[limits] max_wait_secs`, 60; longer waits are cut to it).
    #[param(minimum = 0, maximum = 60)]
    pub wait: Option<u64>,
}

/// `GET /v1/batches/{batch_id}`. With `?wait=`, answers when the batch completes or the wait
/// ends, whichever comes first; meanwhile it reads nothing itself but is woken by the batch's
/// watcher ([`crate::watch`]) when the batch changes.
#[utoipa::path(
    get,
    path = "/v1/batches/{batch_id}",
    summary = "Read a batch; `wait` long-polls until it completes",
    description = "A long-poll is woken by the batch's change counter, read once per `[limits] wait_check_interval_ms` (250 ms) per batch however many requests wait on it; it answers within that interval of the completion.",
    params(("batch_id" = String, Path, description = "The batch's id"), WaitQuery),
    responses(
        (status = 200, description = "The batch", body = BatchView),
        (status = 400, description = "`wait` is not a whole number of seconds", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such batch (or not yours)", body = ErrorBody),
        (status = 408, description = "Outlasted the request timeout (90 s, above the longest wait)", body = ErrorBody),
        (status = 429, description = "`rate_limited`, or `too_many_waiters`: more concurrent `wait` polls of this principal than `[limits] max_waiters_per_principal` (64); see Retry-After", body = ErrorBody),
        (status = 503, description = "Too many requests in progress, or a backend is unavailable (see Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get_batch(
    State(s): State<AppState>,
    Extension(Principal(principal)): Extension<Principal>,
    Path(batch_id): Path<String>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<BatchView>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid(e.body_text()))?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(s.cfg.limits.max_wait_secs));
    // A long-poll holds a place among its principal's waiters until it answers.
    let _waiter = if wait.is_zero() {
        None
    } else {
        Some(
            s.waiters
                .enter(&principal, s.cfg.limits.max_waiters_per_principal)?,
        )
    };
    let deadline = tokio::time::Instant::now() + wait;
    let read = || async {
        let batch = s.metadata.get_batch(&batch_id).await.map_err(store_err)?;
        // Another principal's batch is indistinguishable from a missing one.
        batch
            .filter(|b| b.principal == principal)
            .ok_or_else(ApiError::not_found)
    };
    let mut batch = read().await?;
    if batch.status == BatchStatus::Complete || wait.is_zero() {
        return Ok(Json(s.render_batch(&batch).await?));
    }
    let watch = s.watches.subscribe(&batch_id);
    let mut changes = watch.receiver();
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep_until(deadline) => break,
            () = s.shutdown.cancelled() => break,
        }
        let moved = changes
            .borrow_and_update()
            .as_ref()
            .is_some_and(|v| v.version != batch.version || v.complete);
        if moved {
            batch = read().await?;
            if batch.status == BatchStatus::Complete {
                break;
            }
        }
    }
    Ok(Json(s.render_batch(&batch).await?))
}

impl AppState {
    async fn render_batch(&self, b: &BatchRecord) -> Result<BatchView, ApiError> {
        let expiry = Duration::from_secs(self.cfg.limits.download_expiry_secs);
        let mut files = Vec::with_capacity(b.files.len());
        for f in &b.files {
            let mut variants = Vec::new();
            if let Some(r) = &f.rendered {
                for v in &r.variants {
                    variants.push(VariantView {
                        width: v.width,
                        height: v.height,
                        fit: v.fit,
                        format: v.format,
                        content_type: shared::api::content_type(v.format).to_owned(),
                        bytes: v.bytes,
                        url: self.media_url(&v.key, expiry).await?,
                        lossless: v.lossless,
                        animation: v.animation,
                        auto: v.auto,
                    });
                }
            }
            let original_url = match f.rendered.as_ref().and_then(|r| r.original_key.as_ref()) {
                Some(k) => Some(self.media_url(k, expiry).await?),
                None => None,
            };
            debug_assert!(f.status != FileStatus::Done || f.rendered.is_some());
            files.push(FileView {
                file_id: f.file_id.clone(),
                name: f.name.clone(),
                status: f.status,
                error: f.error.clone(),
                source: f.rendered.as_ref().map(|r| r.source.clone()),
                srcset: shared::api::srcset(&variants),
                variants,
                original_url,
                placeholder: f.rendered.as_ref().and_then(|r| r.placeholder.clone()),
                dominant_color: f.rendered.as_ref().and_then(|r| r.dominant_color.clone()),
                request_count: f.request_count,
                last_requested_at: f.last_requested_at.map(rfc3339),
            });
        }
        Ok(BatchView {
            batch_id: b.batch_id.clone(),
            status: b.status,
            created_at: rfc3339(b.created_at),
            expires_at: rfc3339(b.expires_at),
            completed_at: b.completed_at.map(rfc3339),
            counts: b.counts,
            webhook: b.webhook.as_ref().map(|w| WebhookView {
                status: w.status,
                attempts: w.attempts,
                last_attempt_at: w.last_attempt_at.map(rfc3339),
                last_status: w.last_status,
                last_error: w.last_error.clone(),
                next_attempt_at: w.next_attempt_at.map(rfc3339),
            }),
            files,
        })
    }

    async fn media_url(&self, key: &str, expiry: Duration) -> Result<String, ApiError> {
        if let Some(base) = &self.cfg.http.media_base_url {
            return Ok(format!(
                "{}/{}",
                base.trim_end_matches('/'),
                shared::adapter::local::signing::encode_path(key)
            ));
        }
        self.media.presign_download(key, expiry).await.map_err(|e| {
            if e.is_transient() {
                ApiError::unavailable(e)
            } else {
                ApiError::internal(e)
            }
        })
    }
}

/// Limits on a client event's shape: nesting, keys per object, key and string lengths, array
/// entries. Beyond the body limit, they keep one event from carrying a pathological structure
/// into every consumer.
const EVENT_MAX_DEPTH: usize = 4;
const EVENT_MAX_KEYS: usize = 64;
const EVENT_MAX_KEY_BYTES: usize = 128;
const EVENT_MAX_STRING_BYTES: usize = 1024;
const EVENT_MAX_ARRAY: usize = 64;
/// Longest client-supplied `event_id` and `image_id`.
const EVENT_MAX_ID_BYTES: usize = 128;

/// Check `v` against the event shape limits; `path` names the field in the error.
fn check_event_shape(v: &Value, path: &str, depth: usize) -> Result<(), ApiError> {
    if depth > EVENT_MAX_DEPTH {
        return Err(ApiError::invalid(format!(
            "{path}: events nest at most {EVENT_MAX_DEPTH} levels"
        )));
    }
    match v {
        Value::String(s) if s.len() > EVENT_MAX_STRING_BYTES => Err(ApiError::invalid(format!(
            "{path}: strings are limited to {EVENT_MAX_STRING_BYTES} bytes"
        ))),
        Value::Array(a) if a.len() > EVENT_MAX_ARRAY => Err(ApiError::invalid(format!(
            "{path}: arrays are limited to {EVENT_MAX_ARRAY} entries"
        ))),
        Value::Array(a) => a
            .iter()
            .try_for_each(|e| check_event_shape(e, &format!("{path}[]"), depth + 1)),
        Value::Object(o) if o.len() > EVENT_MAX_KEYS => Err(ApiError::invalid(format!(
            "{path}: objects are limited to {EVENT_MAX_KEYS} keys"
        ))),
        Value::Object(o) => o.iter().try_for_each(|(k, e)| {
            if k.len() > EVENT_MAX_KEY_BYTES {
                return Err(ApiError::invalid(format!(
                    "{path}: keys are limited to {EVENT_MAX_KEY_BYTES} bytes"
                )));
            }
            check_event_shape(e, &format!("{path}.{k}"), depth + 1)
        }),
        _ => Ok(()),
    }
}

/// A client id (`event_id`, `image_id`): 1 to 128 bytes of letters, digits and `-_.:`.
fn client_id(v: Option<&Value>, field: &str) -> Result<Option<String>, ApiError> {
    match v {
        None => Ok(None),
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= EVENT_MAX_ID_BYTES
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(ApiError::invalid(format!(
            "{field} must be 1 to {EVENT_MAX_ID_BYTES} letters, digits or -_.:"
        ))),
    }
}

/// `POST /v1/events`: a client event (a JSON object with a string `event_name`), stamped with
/// the principal, receive time and an event id, published to the topic.
///
/// The client's `event_id`, when given, is kept: it is the idempotency key (an event sent twice
/// counts once). `IMAGE_REQUESTED` must name an `image_id` the caller owns (404 otherwise,
/// nothing published). Every time the consumers use is the server's `received_at`; the
/// client's `timestamp` stays in the event as data.
#[utoipa::path(
    post,
    path = "/v1/events",
    summary = "Publish a client event (e.g. IMAGE_REQUESTED)",
    description = "The server adds `principal` and `received_at` (a client may not set them). A client `event_id` is kept as the idempotency key (one count per id per image); without one the server assigns one. IMAGE_REQUESTED must name an `image_id` (a file id) of the caller's own batches. Limits: nesting 4 levels, 64 keys per object, keys 128 bytes, strings 1024 bytes, arrays 64 entries; `event_id`/`image_id` 1-128 of letters, digits and -_.:",
    request_body = ClientEvent,
    responses(
        (status = 202, description = "Accepted", body = EventAccepted),
        (status = 400, description = "Not a JSON object with a string event_name, a field over its limit, or a reserved field", body = ErrorBody),
        (status = 401, description = "No valid token (the body is not read)", body = ErrorBody),
        (status = 404, description = "IMAGE_REQUESTED for an image that is not the caller's (or does not exist); nothing is published", body = ErrorBody),
        (status = 408, description = "The body stalled or the request outlasted the request timeout", body = ErrorBody),
        (status = 413, description = "Body over `[limits] max_event_bytes` (64 KiB)", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over `[auth] requests_per_minute` (see Retry-After)", body = ErrorBody),
        (status = 503, description = "Too many requests in progress, or a backend is unavailable (see Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn post_event(
    State(s): State<AppState>,
    Extension(Principal(principal)): Extension<Principal>,
    body: Result<bytes::Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<EventAccepted>), ApiError> {
    let body = body.map_err(|e| {
        let message = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "events are limited to {} bytes",
                s.cfg.limits.max_event_bytes
            )
        } else {
            e.body_text()
        };
        ApiError::body(e.status(), message, &e)
    })?;
    if body.len() > s.cfg.limits.max_event_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidRequest,
            format!(
                "events are limited to {} bytes",
                s.cfg.limits.max_event_bytes
            ),
        ));
    }
    let mut v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("body is not JSON: {e}")))?;
    let Value::Object(obj) = &mut v else {
        return Err(ApiError::invalid("an event must be a JSON object"));
    };
    match obj.get("event_name") {
        Some(Value::String(n)) if !n.is_empty() && n.len() <= 128 => {}
        _ => {
            return Err(ApiError::invalid(
                "event_name must be a non-empty string of at most 128 bytes",
            ));
        }
    }
    if obj.contains_key("Records") || obj.contains_key("Type") {
        return Err(ApiError::invalid(
            "client events may not impersonate storage events",
        ));
    }
    for reserved in ["principal", "received_at"] {
        if obj.contains_key(reserved) {
            return Err(ApiError::invalid(format!(
                "{reserved} is set by the server, not the client"
            )));
        }
    }
    check_event_shape(&Value::Object(obj.clone()), "event", 0)?;
    let event_id = client_id(obj.get("event_id"), "event_id")?
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    if obj.get("event_name").and_then(Value::as_str) == Some("IMAGE_REQUESTED") {
        let Some(image_id) = client_id(obj.get("image_id"), "image_id")? else {
            return Err(ApiError::invalid("IMAGE_REQUESTED needs an image_id"));
        };
        let owner = s.metadata.image_owner(&image_id).await.map_err(store_err)?;
        if owner.as_deref() != Some(principal.as_str()) {
            // Another principal's image looks exactly like a missing one.
            return Err(ApiError::not_found());
        }
    }
    obj.insert("principal".into(), Value::String(principal));
    obj.insert(
        "received_at".into(),
        Value::String(rfc3339(OffsetDateTime::now_utc())),
    );
    obj.insert("event_id".into(), Value::String(event_id.clone()));
    s.topic.publish(&v.to_string()).await.map_err(|e| {
        if e.is_transient() {
            ApiError::unavailable(e)
        } else {
            ApiError::invalid(e.to_string())
        }
    })?;
    Ok((StatusCode::ACCEPTED, Json(EventAccepted { event_id })))
}
