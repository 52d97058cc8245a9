//! The HTTP API's wire contract: every request and response body of `/v1` as a Rust type, and
//! [`Client`], the one typed client of it.
//!
//! prism-api builds its answers from these types and generates its OpenAPI 3.1 document
//! (`GET /v1/openapi.json`) from their [`utoipa::ToSchema`] derives, so the document, the
//! server and every client (the `prism` CLI, the tests) share one definition. Validation rules
//! the server enforces are part of the schema: item counts, ranges, patterns, enums, and
//! `additionalProperties: false` on request bodies.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};

pub use crate::port::{
    BatchCounts, BatchStatus, FileError, FileStatus, SourceFacts, UploadMethod, WebhookStatus,
};
pub use crate::variant::{Fit, FocalPoint, Lossless, OutputFormat, SizeSpec};

/// Fewest and most variant widths per batch.
pub const WIDTHS: (usize, usize) = (1, crate::variant::MAX_WIDTHS);
/// The `Idempotency-Key` header of `POST /v1/batches`.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// Whether `key` is a valid `Idempotency-Key`: 1 to 255 printable ASCII characters (space to
/// `~`).
pub fn valid_idempotency_key(key: &[u8]) -> bool {
    !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_BYTES
        && key.iter().all(|b| (0x20..=0x7e).contains(b))
}

fn widths_schema() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(crate::variant::MIN_WIDTH))
                .maximum(Some(crate::variant::MAX_WIDTH)),
        )
        .min_items(Some(0))
        .max_items(Some(WIDTHS.1))
        .description(Some(
            "Widths in pixels, each 16-8192 (duplicates ignored); a variant is never wider than its source. At least one unless `sizes` has one",
        ))
}

fn formats_schema() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(utoipa::openapi::RefOr::Ref(
            utoipa::openapi::Ref::from_schema_name("OutputFormat"),
        ))
        .min_items(Some(1))
        .description(Some(
            "Non-empty subset of webp, avif, jpeg, png (duplicates ignored)",
        ))
}

fn quality_schema() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(100)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["auto", "auto:high", "auto:good", "auto:eco"])),
        )
        .description(Some(
            "Quality of every lossy format: a number 1-100, or a perceptual level: \"auto:high\" \
             (SSIMULACRA 2 about 90, visually lossless), \"auto:good\" (= \"auto\", about 80), \
             \"auto:eco\" (about 70); the WebP and AVIF quality is then searched per file and \
             each variant records the chosen quality and its score",
        ))
        .build()
        .into()
}

fn lossless_schema() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["auto"])),
        )
        .description(Some(
            "WebP variants lossless: false (lossy, the default), true, or \"auto\" (per variant: \
             lossless WebP where it is no larger than the lossy WebP at the request's quality, \
             searched or fixed, else lossy; only variants that look like screenshots, charts or \
             line art pay the extra lossless encode, photos are encoded lossy only). PNG is \
             always lossless; JPEG and AVIF ignore it",
        ))
        .build()
        .into()
}

/// Whole numbers as JSON Schema counts them: `2` and `2.0` alike (an `integer` is any number
/// with a zero fractional part), so a client that writes `2.0` is not refused for it.
mod whole {
    use serde::de::{Deserialize, Deserializer, Error};

    fn of<T: TryFrom<u64>, E: Error>(n: &serde_json::Number) -> Result<T, E> {
        let v = n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && (0.0..=9.007_199_254_740_992e15).contains(f))
                    .map(|f| f as u64)
            })
            .ok_or_else(|| E::custom(format!("expected a whole number, got {n}")))?;
        T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
    }

    pub(super) fn one<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
        of(&serde_json::Number::deserialize(d)?)
    }

    pub(super) fn many<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        Vec::<serde_json::Number>::deserialize(d)?
            .iter()
            .map(of)
            .collect()
    }

    pub(super) fn optional<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?
            .as_ref()
            .map(of)
            .transpose()
    }
}

/// One file of a batch request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Client file name (metadata only; never part of a key): 1-255 bytes without control
    /// characters.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00-\x1f\x7f]+$")]
    pub name: String,
    /// Declared content type, `image/*` (a hint: the worker sniffs the bytes).
    #[schema(
        max_length = 100,
        pattern = r"^image/[A-Za-z0-9+.\-]+$",
        example = "image/jpeg"
    )]
    pub content_type: String,
    /// Exact size in bytes, 1 up to `[limits] max_upload_bytes` (50 MiB by default).
    #[serde(deserialize_with = "whole::one")]
    #[schema(minimum = 1)]
    pub size: u64,
    /// Where a `cover` size with `focus: focal_point` centres its crop: `{x, y}`, each 0..1,
    /// relative to the upright image (after EXIF orientation), from its top-left corner.
    /// Without one such sizes centre on the middle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focal_point: Option<FocalPoint>,
}

/// `variants` of a batch request: what to render for every file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// 1-8 widths, each 16-8192 (may be empty, or left out, when `sizes` is not; `widths`
    /// and `sizes` together are at most 8).
    #[serde(default, deserialize_with = "whole::many")]
    #[schema(schema_with = widths_schema)]
    pub widths: Vec<u32>,
    /// Variants of a given width × height: `inside` (fit within the box, never upscaled),
    /// `cover` (exactly the size, cropped around `focus`) or `contain` (exactly the size, the
    /// image fitted inside and padded with `background`). `cover` and `contain` upscale a
    /// smaller source to the exact size. At most 8 together with `widths`; no two with the same
    /// width, height and fit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 8)]
    pub sizes: Vec<SizeSpec>,
    /// Non-empty subset of webp, avif.
    #[schema(schema_with = formats_schema)]
    pub formats: Vec<OutputFormat>,
    /// Keep the original in the media bucket (`original_url` in the batch view).
    #[serde(default)]
    pub keep_original: bool,
    /// Fit mode of `widths` (only `inside`: scale to the width, keep the aspect ratio, never
    /// upscale; other fits are asked for in `sizes`).
    #[serde(default)]
    pub fit: Fit,
    /// WebP quality (default 80).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::optional"
    )]
    #[schema(minimum = 1, maximum = 100)]
    pub webp_quality: Option<u8>,
    /// AVIF quality (default 50).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::optional"
    )]
    #[schema(minimum = 1, maximum = 100)]
    pub avif_quality: Option<u8>,
    /// JPEG quality (default 80).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::optional"
    )]
    #[schema(minimum = 1, maximum = 100)]
    pub jpeg_quality: Option<u8>,
    /// Lossless WebP: `false` (default), `true` or `"auto"`.
    #[serde(default, skip_serializing_if = "Lossless::is_off")]
    #[schema(schema_with = lossless_schema)]
    pub lossless: Lossless,
    /// Render animated GIF, APNG and WebP uploads as animated WebP variants, every frame kept
    /// with its timing and loop count (default `true`); `false` renders the first frame only.
    /// AVIF, JPEG and PNG variants are always the first frame (only WebP is animated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub animated: Option<bool>,
    /// Quality of every lossy format: a number 1-100 (WebP, AVIF and JPEG at that quality; not
    /// with `webp_quality`, `avif_quality` or `jpeg_quality`), or `"auto"`, `"auto:high"`,
    /// `"auto:good"` (= `"auto"`), `"auto:eco"`: per file, the WebP and AVIF quality that
    /// reaches the level's SSIMULACRA 2 score (not with `webp_quality` or `avif_quality`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = quality_schema)]
    pub quality: Option<crate::variant::Quality>,
}

impl VariantSpec {
    /// These widths and formats with every other setting at its default.
    pub fn new(widths: Vec<u32>, formats: Vec<OutputFormat>) -> Self {
        Self {
            widths,
            formats,
            keep_original: false,
            fit: Fit::Inside,
            sizes: Vec::new(),
            webp_quality: None,
            avif_quality: None,
            jpeg_quality: None,
            lossless: Lossless::Off,
            animated: None,
            quality: None,
        }
    }
}

/// `upload_method` of a batch request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

/// `POST /v1/batches` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatchRequest {
    /// 1-500 files (`[limits] max_files`).
    #[schema(min_items = 1, max_items = 500)]
    pub files: Vec<FileSpec>,
    /// What to render.
    pub variants: VariantSpec,
    /// Completion callback: an https URL (http allowed on the local backend) whose host
    /// resolves to public addresses only (SSRF-checked at creation and at every attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = Uri, max_length = 2048, pattern = "^https?://")]
    pub callback_url: Option<String>,
    /// How the producer uploads: `post` (a form, the default) or `put` (the raw body).
    #[serde(default)]
    pub upload_method: UploadMethodSpec,
}

/// Instructions to upload one file straight to object storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UploadInstructions {
    /// The file's id (also `image_id` of its `IMAGE_REQUESTED` events).
    pub file_id: String,
    /// The client's file name, as sent.
    pub name: String,
    /// `POST`: a multipart form of `fields`, then the file as part `file` (answered `204` with
    /// `ETag` and `Location`). `PUT`: the raw bytes, exactly the file's declared `size`, with
    /// exactly `headers` (answered `200` with `ETag`). The length is signed too but is not in
    /// `headers`: every HTTP client sends `Content-Length` itself, and browsers forbid setting
    /// it.
    pub method: UploadMethod,
    /// Where to send it.
    pub url: String,
    /// POST: form fields to send before the `file` field.
    #[schema(required = true)]
    pub fields: Option<BTreeMap<String, String>>,
    /// PUT: the headers to send, no more and no fewer: `content-type` and the signed
    /// `x-amz-meta-*` entries.
    #[schema(required = true)]
    pub headers: Option<BTreeMap<String, String>>,
}

/// `201` of `POST /v1/batches` (`Location: /v1/batches/{batch_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedBatch {
    /// The batch's id.
    pub batch_id: String,
    /// When the upload grants expire.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// One upload per file, in request order.
    pub uploads: Vec<UploadInstructions>,
}

/// One rendered variant of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VariantView {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// How it fits what was asked: `inside` (every `widths` variant, and `inside` sizes),
    /// `cover` or `contain` (exactly the size's width × height).
    #[serde(default)]
    pub fit: Fit,
    /// Format.
    pub format: OutputFormat,
    /// Its media type, e.g. `image/webp` (the `type` of a `<source>`).
    #[schema(example = "image/webp")]
    pub content_type: String,
    /// Encoded size in bytes.
    pub bytes: u64,
    /// Where to download it.
    pub url: String,
    /// Whether its pixels are exactly the resized image's: PNG, and WebP made lossless (by
    /// `"lossless": true`, or chosen by `"auto"` for this variant).
    #[serde(default)]
    pub lossless: bool,
    /// For an animated WebP variant: its frames, duration and loop count; absent for stills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub animation: Option<crate::port::AnimationFacts>,
    /// `"quality": "auto"` only: the encoder quality chosen for this variant and its measured
    /// SSIMULACRA 2 score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<crate::variant::AutoChoice>,
}

/// One file of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileView {
    /// Id.
    pub file_id: String,
    /// The client's file name.
    pub name: String,
    /// Status.
    pub status: FileStatus,
    /// Why it failed (`failed` only): a closed-set code and a message.
    #[schema(required = true)]
    pub error: Option<FileError>,
    /// Facts about the uploaded source (`done` only).
    #[schema(required = true)]
    pub source: Option<SourceFacts>,
    /// Every variant (`done` only), by format then width.
    pub variants: Vec<VariantView>,
    /// One `srcset` value per format present, widths ascending (`inside` variants only):
    /// `{"webp": "URL 320w, URL 640w"}`.
    #[serde(default)]
    pub srcset: BTreeMap<OutputFormat, String>,
    /// The kept original, when the batch asked for it.
    #[schema(required = true)]
    pub original_url: Option<String>,
    /// A compact placeholder of the image (ThumbHash, base64).
    #[schema(required = true)]
    pub placeholder: Option<String>,
    /// Dominant colour, `#rrggbb`.
    #[schema(required = true)]
    pub dominant_color: Option<String>,
    /// `IMAGE_REQUESTED` events counted for this file.
    pub request_count: u64,
    /// Receive time of the latest counted request.
    #[schema(required = true, format = DateTime)]
    pub last_requested_at: Option<String>,
}

/// The completion callback's delivery (Standard Webhooks; retried with backoff over hours),
/// once the batch completed with a `callback_url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    /// Where it stands.
    pub status: WebhookStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When the latest attempt was made.
    #[schema(required = true, format = DateTime)]
    pub last_attempt_at: Option<String>,
    /// The receiver's HTTP status on the latest attempt.
    #[schema(required = true)]
    pub last_status: Option<u16>,
    /// Why the latest attempt failed.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// When the next attempt is due (`pending` only).
    #[schema(required = true, format = DateTime)]
    pub next_attempt_at: Option<String>,
}

/// `GET /v1/batches/{batch_id}`: a batch and its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchView {
    /// Id.
    pub batch_id: String,
    /// `complete` once every file is done, failed or expired.
    pub status: BatchStatus,
    /// Creation time.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When the upload grants expire; a file not uploaded by then becomes `expired` within
    /// about a minute (`[expiry]` of prism-metadata).
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// When the last file became terminal.
    #[schema(required = true, format = DateTime)]
    pub completed_at: Option<String>,
    /// File counts.
    pub counts: BatchCounts,
    /// The completion callback's delivery, once there is one.
    #[schema(required = true)]
    pub webhook: Option<WebhookView>,
    /// Files in request order.
    pub files: Vec<FileView>,
}

impl BatchView {
    /// Whether the batch is complete.
    pub fn is_complete(&self) -> bool {
        self.status == BatchStatus::Complete
    }
}

/// `POST /v1/events` body: a JSON object with a string `event_name` (64 KiB at most; nesting 4
/// levels, 64 keys per object, keys 128 bytes, strings 1024 bytes, arrays 64 entries). The
/// server adds `principal` and `received_at`; a client may not set them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClientEvent {
    /// The event's name, e.g. `IMAGE_REQUESTED`.
    #[schema(min_length = 1, max_length = 128, example = "IMAGE_REQUESTED")]
    pub event_name: String,
    /// The idempotency key (one count per id per image); assigned by the server when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9._:-]+$"
    )]
    pub event_id: Option<String>,
    /// `IMAGE_REQUESTED`: a `file_id` of one of the caller's own batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9._:-]+$"
    )]
    pub image_id: Option<String>,
    /// Kept as data; counts and TTLs use the server's receive time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 1024)]
    pub timestamp: Option<String>,
    /// Any other fields, kept as sent.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ClientEvent {
    /// An event named `name` with no other field.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            event_name: name.into(),
            event_id: None,
            image_id: None,
            timestamp: None,
            extra: serde_json::Map::new(),
        }
    }

    /// `IMAGE_REQUESTED` of `image_id`.
    pub fn image_requested(image_id: impl Into<String>) -> Self {
        Self {
            image_id: Some(image_id.into()),
            ..Self::named("IMAGE_REQUESTED")
        }
    }
}

/// `202` of `POST /v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventAccepted {
    /// The client's `event_id`, or the one the server assigned.
    pub event_id: String,
}

/// The closed set of API error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A malformed or out-of-bounds request (400), or a body over its limit (413).
    InvalidRequest,
    /// No valid bearer token (401).
    Unauthorized,
    /// No such batch or image, or not the caller's (404).
    NotFound,
    /// An `Idempotency-Key` reused with a different request (422).
    IdempotencyKeyReused,
    /// Over the principal's requests per minute (429).
    RateLimited,
    /// Too many concurrent `wait` polls of the principal (429).
    TooManyWaiters,
    /// The principal's files awaiting upload would pass its quota (429).
    UploadQuotaExceeded,
    /// The body stalled, or the request outlasted the request timeout (408).
    RequestTimeout,
    /// Too many requests in progress (503).
    Overloaded,
    /// A backend is unavailable (503).
    Unavailable,
    /// An unexpected failure (500).
    Internal,
    /// The local upload endpoint refused the grant (403).
    AccessDenied,
    /// The local upload endpoint already holds this file (409).
    AlreadyUploaded,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [Self; 13] = [
        Self::InvalidRequest,
        Self::Unauthorized,
        Self::NotFound,
        Self::IdempotencyKeyReused,
        Self::RateLimited,
        Self::TooManyWaiters,
        Self::UploadQuotaExceeded,
        Self::RequestTimeout,
        Self::Overloaded,
        Self::Unavailable,
        Self::Internal,
        Self::AccessDenied,
        Self::AlreadyUploaded,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::RateLimited => "rate_limited",
            Self::TooManyWaiters => "too_many_waiters",
            Self::UploadQuotaExceeded => "upload_quota_exceeded",
            Self::RequestTimeout => "request_timeout",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::AccessDenied => "access_denied",
            Self::AlreadyUploaded => "already_uploaded",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// `error` of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable, from a closed set.
    pub code: ErrorCode,
    /// Human-readable.
    pub message: String,
}

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The media type of a variant format.
pub fn content_type(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Webp => "image/webp",
        OutputFormat::Avif => "image/avif",
        OutputFormat::Jpeg => "image/jpeg",
        OutputFormat::Png => "image/png",
    }
}

/// One `srcset` value per format present in `variants`, widths ascending; `cover` and
/// `contain` variants are left out (another aspect ratio).
pub fn srcset(variants: &[VariantView]) -> BTreeMap<OutputFormat, String> {
    let mut by_format: BTreeMap<OutputFormat, Vec<&VariantView>> = BTreeMap::new();
    // Cropped and padded sizes have another aspect ratio: not candidates of the same image.
    for v in variants.iter().filter(|v| v.fit == Fit::Inside) {
        by_format.entry(v.format).or_default().push(v);
    }
    by_format
        .into_iter()
        .map(|(f, mut vs)| {
            vs.sort_by_key(|v| v.width);
            let value = vs
                .iter()
                .map(|v| format!("{} {}w", v.url, v.width))
                .collect::<Vec<_>>()
                .join(", ");
            (f, value)
        })
        .collect()
}

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an error body.
    #[error("{status}: {code:?}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
        /// `Retry-After` seconds, when given.
        retry_after: Option<u64>,
    },
    /// An answer that is not the contract's (status or body).
    #[error("unexpected answer {status}: {body}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// The body, cut to 4 KiB.
        body: String,
    },
    /// The request could not be sent or its answer read.
    #[error("{0}")]
    Http(#[from] reqwest::Error),
}

impl ClientError {
    /// The API error code, when the API answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Longest error or unexpected body the client reads.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The one typed client of the API (bearer auth).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// What [`Client::create_batch_with`] answers: the batch and where to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The body.
    pub batch: CreatedBatch,
    /// The `Location` header.
    pub location: Option<String>,
}

impl Client {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:8080`) with a 5-minute timeout per
    /// request.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base: &str, token: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()?;
        Ok(Self::with_http(http, base, token))
    }

    /// A client over an existing `reqwest` client.
    pub fn with_http(http: reqwest::Client, base: &str, token: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// The API base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /v1/batches`.
    ///
    /// # Errors
    /// An API refusal or a transport failure.
    pub async fn create_batch(
        &self,
        req: &CreateBatchRequest,
    ) -> Result<CreatedBatch, ClientError> {
        Ok(self.create_batch_with(req, None).await?.batch)
    }

    /// `POST /v1/batches` with an optional `Idempotency-Key`: a retry with the same key and body
    /// answers the same batch.
    ///
    /// # Errors
    /// An API refusal or a transport failure.
    pub async fn create_batch_with(
        &self,
        req: &CreateBatchRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Created, ClientError> {
        let mut r = self
            .http
            .post(format!("{}/v1/batches", self.base))
            .bearer_auth(&self.token)
            .json(req);
        if let Some(k) = idempotency_key {
            r = r.header(IDEMPOTENCY_KEY, k);
        }
        let resp = expect(r.send().await?, 201).await?;
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Created {
            batch: resp.json().await?,
            location,
        })
    }

    /// `GET /v1/batches/{id}`, long-polling up to `wait` seconds when given.
    ///
    /// # Errors
    /// An API refusal or a transport failure.
    pub async fn get_batch(&self, id: &str, wait: Option<u64>) -> Result<BatchView, ClientError> {
        let id = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
        let mut r = self
            .http
            .get(format!("{}/v1/batches/{id}", self.base))
            .bearer_auth(&self.token);
        if let Some(w) = wait {
            r = r.query(&[("wait", w)]);
        }
        Ok(expect(r.send().await?, 200).await?.json().await?)
    }

    /// `POST /v1/events`.
    ///
    /// # Errors
    /// An API refusal or a transport failure.
    pub async fn post_event(&self, event: &ClientEvent) -> Result<EventAccepted, ClientError> {
        let r = self
            .http
            .post(format!("{}/v1/events", self.base))
            .bearer_auth(&self.token)
            .json(event);
        Ok(expect(r.send().await?, 202).await?.json().await?)
    }

    /// Upload `bytes` as `instructions` say: a multipart form of its fields then the file (as
    /// `content_type`) for `POST`, or the raw bytes with its headers for `PUT`. Storage
    /// answers are not the API's: any 2xx is success, anything else
    /// [`ClientError::Unexpected`].
    ///
    /// # Errors
    /// A refused upload or a transport failure.
    pub async fn upload(
        &self,
        instructions: &UploadInstructions,
        bytes: impl Into<bytes::Bytes>,
        content_type: &str,
    ) -> Result<(), ClientError> {
        upload(&self.http, instructions, bytes, content_type).await
    }
}

/// [`Client::upload`] over any `reqwest` client: presigned uploads need no token.
///
/// # Errors
/// A refused upload or a transport failure.
pub async fn upload(
    http: &reqwest::Client,
    instructions: &UploadInstructions,
    bytes: impl Into<bytes::Bytes>,
    content_type: &str,
) -> Result<(), ClientError> {
    let bytes: bytes::Bytes = bytes.into();
    let r = match instructions.method {
        UploadMethod::Post => {
            let mut form = reqwest::multipart::Form::new();
            for (k, v) in instructions.fields.iter().flatten() {
                form = form.text(k.clone(), v.clone());
            }
            let part = reqwest::multipart::Part::stream_with_length(
                reqwest::Body::from(bytes.clone()),
                bytes.len() as u64,
            )
            .file_name("upload")
            .mime_str(content_type)?;
            http.post(&instructions.url)
                .multipart(form.part("file", part))
        }
        UploadMethod::Put => {
            let mut r = http.put(&instructions.url).body(bytes);
            for (k, v) in instructions.headers.iter().flatten() {
                r = r.header(k.as_str(), v.as_str());
            }
            r
        }
    };
    let resp = r.send().await?;
    if resp.status().is_success() {
        return Ok(());
    }
    let status = resp.status().as_u16();
    Err(ClientError::Unexpected {
        status,
        body: read_capped(resp).await,
    })
}

async fn read_capped(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_ERROR_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// `resp` when its status is `want`, else the error it carries.
async fn expect(resp: reqwest::Response, want: u16) -> Result<reqwest::Response, ClientError> {
    let status = resp.status().as_u16();
    if status == want {
        return Ok(resp);
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = read_capped(resp).await;
    match serde_json::from_str::<ErrorBody>(&body) {
        Ok(e) => Err(ClientError::Api {
            status,
            code: e.error.code,
            message: e.error.message,
            retry_after,
        }),
        Err(_) => Err(ClientError::Unexpected { status, body }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srcset_lists_each_format_by_ascending_width() {
        let v = |width, format| VariantView {
            width,
            height: width / 2,
            fit: Fit::Inside,
            format,
            content_type: content_type(format).to_owned(),
            bytes: 1,
            url: format!("u/{width}.{}", format.as_str()),
            animation: None,
            lossless: false,
            auto: None,
        };
        let cover = VariantView {
            fit: Fit::Cover,
            ..v(256, OutputFormat::Webp)
        };
        let s = srcset(&[
            v(640, OutputFormat::Webp),
            v(320, OutputFormat::Avif),
            cover,
            v(320, OutputFormat::Webp),
        ]);
        assert_eq!(s[&OutputFormat::Webp], "u/320.webp 320w, u/640.webp 640w");
        assert_eq!(s[&OutputFormat::Avif], "u/320.avif 320w");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn idempotency_keys_are_bounded_printable_ascii() {
        assert!(valid_idempotency_key(b"a"));
        assert!(valid_idempotency_key(b"order 42 ~retry"));
        assert!(valid_idempotency_key(&[b'k'; 255]));
        assert!(!valid_idempotency_key(b""));
        assert!(!valid_idempotency_key(&[b'k'; 256]));
        assert!(!valid_idempotency_key(b"tab\there"));
        assert!(!valid_idempotency_key("café".as_bytes()));
    }

    #[test]
    fn whole_numbers_may_be_written_as_floats() {
        let spec: FileSpec = serde_json::from_value(
            serde_json::json!({"name": "a", "content_type": "image/png", "size": 277.0}),
        )
        .unwrap();
        assert_eq!(spec.size, 277);
        let v: VariantSpec = serde_json::from_value(
            serde_json::json!({"widths": [320.0, 640], "formats": ["webp"], "webp_quality": 80.0}),
        )
        .unwrap();
        assert_eq!((v.widths, v.webp_quality), (vec![320, 640], Some(80)));
        for bad in [
            serde_json::json!(1.5),
            serde_json::json!(-1),
            serde_json::json!(1e300),
            serde_json::json!("1"),
        ] {
            let r = serde_json::from_value::<FileSpec>(
                serde_json::json!({"name": "a", "content_type": "image/png", "size": bad}),
            );
            assert!(r.is_err(), "{bad}");
        }
        let r = serde_json::from_value::<VariantSpec>(
            serde_json::json!({"widths": [320], "formats": ["webp"], "webp_quality": 300}),
        );
        assert!(r.is_err(), "u8 range");
    }

    #[test]
    fn error_codes_round_trip() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::Value::String(c.as_str().into())
            );
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }
}
