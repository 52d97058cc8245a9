//! `/v1` routes: create a batch, read a batch (long-poll), publish a client event.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Json, extract::rejection::BytesRejection, extract::rejection::JsonRejection};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::port::{
    BatchRecord, BatchStatus, FileStatus, MetadataStoreError, NewBatch, NewFile, PresignedUpload,
    UploadMethod, UploadPolicy,
};
use shared::telemetry::trace::{self, TraceParent};
use shared::variant::{self, Fit, OutputFormat, VariantRequest};
use time::OffsetDateTime;
use tracing::Instrument;

use crate::error::ApiError;
use crate::{AppState, Principal};

/// One file of a batch request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Client file name (metadata only; never part of a key).
    pub name: String,
    /// `image/*`.
    pub content_type: String,
    /// Exact size in bytes.
    pub size: u64,
}

/// `variants` of a batch request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// 1-8 widths, each 16-8192.
    pub widths: Vec<u32>,
    /// Non-empty subset of webp, avif.
    pub formats: Vec<OutputFormat>,
    /// Keep the original in the media bucket.
    #[serde(default)]
    pub keep_original: bool,
    /// Fit mode (only `inside`).
    #[serde(default)]
    pub fit: Fit,
    /// WebP quality.
    pub webp_quality: Option<u8>,
    /// AVIF quality.
    pub avif_quality: Option<u8>,
}

/// `POST /v1/batches` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// 1-500 files.
    pub files: Vec<FileSpec>,
    /// What to render.
    pub variants: VariantSpec,
    /// Completion callback (https; SSRF-checked).
    pub callback_url: Option<String>,
    /// How the producer uploads: `post` (a form, the default) or `put` (the raw body).
    #[serde(default)]
    pub upload_method: UploadMethodSpec,
}

/// `upload_method` of a batch request.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadMethodSpec {
    /// A multipart form POST (browsers' `FormData`, S3 POST policies).
    #[default]
    Post,
    /// A PUT of the raw body with the headers the instructions name.
    Put,
}

impl From<UploadMethodSpec> for UploadMethod {
    fn from(m: UploadMethodSpec) -> Self {
        match m {
            UploadMethodSpec::Post => UploadMethod::Post,
            UploadMethodSpec::Put => UploadMethod::Put,
        }
    }
}

#[derive(Serialize)]
struct UploadOut {
    file_id: String,
    name: String,
    method: UploadMethod,
    url: String,
    fields: Option<BTreeMap<String, String>>,
    headers: Option<BTreeMap<String, String>>,
}

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
                "upload_quota_exceeded",
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

/// `POST /v1/batches`. The batch's trace continues the caller's `traceparent` when it sends
/// one; the `create_batch` span is the parent of everything the workers do with its files.
pub async fn create_batch(
    State(s): State<AppState>,
    Extension(Principal(principal)): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Json<CreateBatch>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let incoming = incoming_traceparent(&headers);
    let span = tracing::info_span!(target: trace::TARGET, "create_batch", trace_id = tracing::field::Empty, batch_id = tracing::field::Empty, files = tracing::field::Empty);
    if let Some(tp) = &incoming {
        trace::adopt(&span, tp);
    }
    let downstream = trace::downstream(&span, incoming.unwrap_or_else(TraceParent::random));
    if incoming.is_none() {
        span.record("trace_id", downstream.trace_id_hex());
    }
    create_batch_traced(s, principal, body, downstream)
        .instrument(span)
        .await
}

async fn create_batch_traced(
    s: AppState,
    principal: String,
    body: Result<Json<CreateBatch>, JsonRejection>,
    traceparent: TraceParent,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
    }
    let request = VariantRequest {
        widths: req.variants.widths,
        formats: req.variants.formats,
        fit: req.variants.fit,
        webp_quality: req
            .variants
            .webp_quality
            .unwrap_or(variant::DEFAULT_WEBP_QUALITY),
        avif_quality: req
            .variants
            .avif_quality
            .unwrap_or(variant::DEFAULT_AVIF_QUALITY),
        keep_original: req.variants.keep_original,
    }
    .normalise()
    .map_err(|e| ApiError::invalid(e.to_string()))?;
    if let Some(url) = &req.callback_url {
        shared::callback::resolve_checked(url, s.local_mode())
            .await
            .map_err(|e| ApiError::invalid(format!("callback_url: {e}")))?;
    }
    let now = OffsetDateTime::now_utc();
    let expires_at = now + Duration::from_secs(limits.upload_expiry_secs);
    let batch = NewBatch {
        batch_id: uuid::Uuid::now_v7().to_string(),
        principal,
        created_at: now,
        expires_at,
        request: request.clone(),
        callback_url: req.callback_url,
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
    };
    let mut uploads = Vec::with_capacity(batch.files.len());
    for f in &batch.files {
        let metadata = BTreeMap::from([
            (variant::META_REQUEST.to_owned(), request.to_metadata()),
            (variant::META_BATCH_ID.to_owned(), batch.batch_id.clone()),
            (variant::META_FILE_ID.to_owned(), f.file_id.clone()),
            (
                variant::META_FILE_NAME.to_owned(),
                percent_encoding::utf8_percent_encode(&f.name, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            ),
            (
                variant::META_TRACEPARENT.to_owned(),
                batch.traceparent.clone().unwrap_or_default(),
            ),
        ]);
        let policy = UploadPolicy {
            key: shared::keys::upload_key(&batch.batch_id, &f.file_id),
            content_type: f.content_type.clone(),
            max_bytes: f.size,
            metadata,
            expires_in: Duration::from_secs(limits.upload_expiry_secs),
            method: req.upload_method.into(),
        };
        let presign = tracing::info_span!(target: trace::TARGET, "presign", file_id = %f.file_id);
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
        uploads.push(UploadOut {
            file_id: f.file_id.clone(),
            name: f.name.clone(),
            method: p.method,
            url: p.url,
            fields: p.fields,
            headers: p.headers,
        });
    }
    s.metadata.create_batch(&batch).await.map_err(store_err)?;
    let span = tracing::Span::current();
    span.record("batch_id", batch.batch_id.as_str());
    span.record("files", batch.files.len());
    tracing::info!(batch_id = %batch.batch_id, files = batch.files.len(), "Batch created.");
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"batch_id": batch.batch_id, "expires_at": rfc3339(expires_at), "uploads": uploads}),
        ),
    ))
}

/// `?wait=SECONDS`.
#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    /// Long-poll until complete or this many seconds pass.
    pub wait: Option<u64>,
}

/// `GET /v1/batches/{batch_id}`. With `?wait=`, answers when the batch completes or the wait
/// ends, whichever comes first; meanwhile it reads nothing itself but is woken by the batch's
/// watcher ([`crate::watch`]) when the batch changes.
pub async fn get_batch(
    State(s): State<AppState>,
    Extension(Principal(principal)): Extension<Principal>,
    Path(batch_id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
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
    async fn render_batch(&self, b: &BatchRecord) -> Result<Value, ApiError> {
        let expiry = Duration::from_secs(self.cfg.limits.download_expiry_secs);
        let mut files = Vec::with_capacity(b.files.len());
        for f in &b.files {
            let mut variants = Vec::new();
            if let Some(r) = &f.rendered {
                for v in &r.variants {
                    variants.push(json!({"width": v.width, "height": v.height, "format": v.format, "bytes": v.bytes, "url": self.media_url(&v.key, expiry).await?}));
                }
            }
            let original = match f.rendered.as_ref().and_then(|r| r.original_key.as_ref()) {
                Some(k) => Some(self.media_url(k, expiry).await?),
                None => None,
            };
            files.push(json!({
                "file_id": f.file_id,
                "name": f.name,
                "status": f.status,
                "error": f.error,
                "source": f.rendered.as_ref().map(|r| &r.source),
                "variants": variants,
                "original_url": original,
                "placeholder": f.rendered.as_ref().and_then(|r| r.placeholder.clone()),
                "dominant_color": f.rendered.as_ref().and_then(|r| r.dominant_color.clone()),
                "request_count": f.request_count,
                "last_requested_at": f.last_requested_at.map(rfc3339),
            }));
            debug_assert!(f.status != FileStatus::Done || f.rendered.is_some());
        }
        Ok(json!({
            "batch_id": b.batch_id,
            "status": b.status,
            "created_at": rfc3339(b.created_at),
            "expires_at": rfc3339(b.expires_at),
            "completed_at": b.completed_at.map(rfc3339),
            "counts": b.counts,
            "webhook": b.webhook.as_ref().map(|w| json!({
                "status": w.status,
                "attempts": w.attempts,
                "last_attempt_at": w.last_attempt_at.map(rfc3339),
                "last_status": w.last_status,
                "last_error": w.last_error,
                "next_attempt_at": w.next_attempt_at.map(rfc3339),
            })),
            "files": files,
        }))
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
pub async fn post_event(
    State(s): State<AppState>,
    Extension(Principal(principal)): Extension<Principal>,
    body: Result<bytes::Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
            "invalid_request",
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
    Ok((StatusCode::ACCEPTED, Json(json!({"event_id": event_id}))))
}
