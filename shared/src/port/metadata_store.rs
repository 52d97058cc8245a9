//! `MetadataStore`: batches, per-file status and variants, with conditional transitions.
//!
//! File status only moves forward: `awaiting_upload → received → done | failed` (a file may
//! also go straight to `done`/`failed` when the manifest arrives before the upload event), or
//! `awaiting_upload → expired` once its upload grant has expired unused. A
//! transition that does not apply (duplicate, late or out-of-order delivery) is
//! [`Transition::Unchanged`], never an error, so at-least-once delivery keeps counts exact. The
//! transition that makes the last file terminal completes the batch, exactly once.

use crate::error::{ErrorCode, HandlerError, PortError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::variant::{OutputFormat, VariantRequest};

/// Failures of a metadata call, classified.
#[derive(Debug, thiserror::Error)]
pub enum MetadataStoreError {
    /// A batch with that id exists already. Permanent.
    #[error("batch already exists: {0}")]
    AlreadyExists(String),
    /// The batch or file does not exist. Permanent.
    #[error("not found: {0}")]
    NotFound(String),
    /// The backend throttled us. Transient.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The backend is unavailable (5xx, I/O, database busy). Transient.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The call timed out. Transient.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Creating the batch would take its principal past the quota of files awaiting upload.
    /// Permanent (for this request).
    #[error("{pending} uploads already pending; the quota is {quota}")]
    QuotaExceeded {
        /// Files of the principal awaiting upload now.
        pending: u64,
        /// The quota the batch was checked against.
        quota: u64,
    },
    /// The batch's idempotency key is already recorded (and unexpired) for its principal:
    /// nothing was created. `batch_id` is the batch that key created and `request_sha256` the
    /// hash of the request recorded with it, so the caller can answer a retry of the same
    /// request with that batch and refuse a different one. Permanent.
    #[error("idempotency key already used for batch {batch_id}")]
    IdempotencyKeyTaken {
        /// The batch created under the key.
        batch_id: String,
        /// [`IdempotencyKey::request_sha256`] recorded with it.
        request_sha256: String,
    },
    /// Any other failure. Permanent.
    #[error("{0}")]
    Other(String),
}

impl MetadataStoreError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Throttled(_) | Self::Unavailable(_) | Self::Timeout(_)
        )
    }

    /// The closed-set code: a missing batch or file means the event naming it is not one we
    /// can apply; throttling and timeouts are told apart from outages; anything else is
    /// `internal`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::InvalidEvent,
            Self::Throttled(_) => ErrorCode::Throttled,
            Self::Timeout(_) => ErrorCode::Timeout,
            Self::Unavailable(_) => ErrorCode::StoreUnavailable,
            Self::AlreadyExists(_)
            | Self::QuotaExceeded { .. }
            | Self::IdempotencyKeyTaken { .. }
            | Self::Other(_) => ErrorCode::Internal,
        }
    }
}

impl PortError for MetadataStoreError {
    fn code(&self) -> ErrorCode {
        MetadataStoreError::code(self)
    }
    fn is_transient(&self) -> bool {
        MetadataStoreError::is_transient(self)
    }
}

impl From<MetadataStoreError> for HandlerError {
    fn from(e: MetadataStoreError) -> Self {
        HandlerError::from_port(e)
    }
}

/// A file announced at batch creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFile {
    /// Server-chosen id (the upload key's last segment).
    pub file_id: String,
    /// The client's file name.
    pub name: String,
    /// Declared content type.
    pub content_type: String,
    /// Declared size in bytes.
    pub size: u64,
}

/// A batch to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBatch {
    /// Server-chosen id.
    pub batch_id: String,
    /// Who created it; only they may read it.
    pub principal: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the upload grants expire.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// What to render for every file.
    pub request: VariantRequest,
    /// Where to POST the completion notice.
    pub callback_url: Option<String>,
    /// W3C trace context of the batch.
    pub traceparent: Option<String>,
    /// The files.
    pub files: Vec<NewFile>,
    /// Refuse the batch ([`MetadataStoreError::QuotaExceeded`]) when the principal's files
    /// awaiting upload plus this batch's would exceed this; checked and counted in the same
    /// transaction that creates the batch. `None`: no quota.
    #[serde(default)]
    pub max_pending_uploads: Option<u64>,
    /// Record this client idempotency key with the batch, atomically: while the batch's
    /// upload grants last (until `expires_at`), another create of the same principal with the
    /// same key creates nothing and fails with [`MetadataStoreError::IdempotencyKeyTaken`].
    #[serde(default)]
    pub idempotency: Option<IdempotencyKey>,
}

/// A client's idempotency key for creating a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyKey {
    /// The key as the client sent it (1-255 printable ASCII), scoped to the batch's principal.
    pub key: String,
    /// A hash of the normalised request, hex: a retry must carry the same.
    pub request_sha256: String,
}

/// Status of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Announced; no upload seen yet.
    AwaitingUpload,
    /// Upload seen; rendering.
    Received,
    /// Variants written.
    Done,
    /// Permanently failed.
    Failed,
    /// Never uploaded: its upload grant expired.
    Expired,
}

impl FileStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingUpload => "awaiting_upload",
            Self::Received => "received",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "awaiting_upload" => Self::AwaitingUpload,
            "received" => Self::Received,
            "done" => Self::Done,
            "failed" => Self::Failed,
            "expired" => Self::Expired,
            _ => return None,
        })
    }

    /// `done`, `failed` or `expired`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Expired)
    }

    /// Whether a file may move from `self` to `to`: forward only, `expired` only from
    /// `awaiting_upload`, and nothing leaves a terminal status.
    pub fn may_become(self, to: Self) -> bool {
        match to {
            Self::AwaitingUpload => false,
            Self::Received | Self::Expired => self == Self::AwaitingUpload,
            Self::Done | Self::Failed => matches!(self, Self::AwaitingUpload | Self::Received),
        }
    }
}

/// Status of a batch, derived from its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// No upload seen yet.
    Pending,
    /// Some uploads seen, some files not terminal.
    Processing,
    /// Every file done, failed or expired.
    Complete,
}

/// Why a file failed (closed-set code + human message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileError {
    /// `shared::error::ErrorCode` as `snake_case`. A record holding a label this version does
    /// not know reads as `internal`.
    #[schema(value_type = String)]
    pub code: ErrorCode,
    /// Human-readable.
    pub message: String,
}

/// Facts about the source image, from the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceFacts {
    /// Sniffed format (`jpeg`, `png`, `heic`, …).
    pub format: String,
    /// Width after orientation.
    pub width: u32,
    /// Height after orientation.
    pub height: u32,
    /// Upload size in bytes.
    pub bytes: u64,
    /// SHA-256 of the upload, hex.
    pub sha256: String,
    /// Whether the source has an alpha channel.
    pub has_alpha: bool,
    /// Description of the embedded colour profile, if any.
    pub color_profile: Option<String>,
    /// EXIF orientation that was applied (1-8).
    pub orientation: u8,
    /// For an HDR source (PQ or HLG), which transfer it had and the peak it was tone-mapped
    /// from; absent for SDR sources (and in manifests written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdr: Option<HdrFacts>,
    /// The focal point given for the file at batch creation, which a re-render keeps; absent
    /// without one (and in manifests written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focal_point: Option<crate::variant::FocalPoint>,
    /// For an animated source (GIF, APNG, WebP) rendered as animated WebP: its frames,
    /// duration and loop count; absent for stills and first-frame renders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub animation: Option<AnimationFacts>,
}

/// How an animation plays, e.g. `{"frames": 12, "duration_ms": 1200, "loop_count": 0}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnimationFacts {
    /// Frames.
    pub frames: u32,
    /// Duration of one play in milliseconds (frames of 10 ms or less count 100 ms, as
    /// browsers play them).
    pub duration_ms: u64,
    /// Times the animation plays; 0 = forever.
    pub loop_count: u32,
}

/// How an HDR source was signalled, e.g. `{"transfer": "pq", "content_peak_nits": 1000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HdrFacts {
    /// Transfer characteristic: `pq` (SMPTE ST 2084) or `hlg` (ARIB STD-B67).
    pub transfer: String,
    /// The content peak the engine tone-mapped from, in cd/m² (MaxCLL, else the mastering
    /// display's peak, else 1000; HLG: 1000).
    pub content_peak_nits: u32,
}

/// One rendered variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantRecord {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// How it fits what was asked (`inside` for `widths`; a size's own fit). Records written
    /// before sizes existed read as `inside`.
    #[serde(default)]
    pub fit: crate::variant::Fit,
    /// Format.
    pub format: OutputFormat,
    /// Encoded size.
    pub bytes: u64,
    /// Media-bucket key.
    pub key: String,
    /// Whether the pixels are stored exactly (PNG, lossless WebP; `"lossless": "auto"` decides
    /// per variant). Absent in records written before lossless output existed: `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lossless: bool,
    /// For an animated WebP variant: its frames, duration and loop count (libwebp merges
    /// identical consecutive frames, so it may have fewer frames than the source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub animation: Option<AnimationFacts>,
    /// The quality `"quality": "auto"` chose and the score it measured (absent for a fixed
    /// quality, a lossless variant, and records written before auto quality existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<crate::variant::AutoChoice>,
}

/// What the manifest says about a done file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedFile {
    /// Source facts.
    pub source: SourceFacts,
    /// Every variant.
    pub variants: Vec<VariantRecord>,
    /// Key of the kept original, when the batch asked for it.
    pub original_key: Option<String>,
    /// BlurHash/ThumbHash placeholder.
    pub placeholder: Option<String>,
    /// Dominant colour, `#rrggbb`.
    pub dominant_color: Option<String>,
}

/// One file of a batch, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Id.
    pub file_id: String,
    /// Client's name.
    pub name: String,
    /// Declared content type.
    pub content_type: String,
    /// Declared size.
    pub size: u64,
    /// Status.
    pub status: FileStatus,
    /// Why it failed.
    pub error: Option<FileError>,
    /// What was rendered.
    pub rendered: Option<RenderedFile>,
    /// `IMAGE_REQUESTED` events counted for this file.
    pub request_count: u64,
    /// Time of the latest counted request.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_requested_at: Option<OffsetDateTime>,
}

/// File counts of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchCounts {
    /// Files in the batch.
    pub files: u64,
    /// Files whose upload has been seen (any status but `awaiting_upload`).
    pub received: u64,
    /// Files done.
    pub done: u64,
    /// Files failed.
    pub failed: u64,
    /// Files never uploaded before their grant expired.
    pub expired: u64,
}

impl BatchCounts {
    /// Count one file of status `s`.
    pub fn add(&mut self, s: FileStatus) {
        self.files += 1;
        match s {
            FileStatus::AwaitingUpload => {}
            FileStatus::Received => self.received += 1,
            FileStatus::Done => {
                self.received += 1;
                self.done += 1;
            }
            FileStatus::Failed => {
                self.received += 1;
                self.failed += 1;
            }
            FileStatus::Expired => self.expired += 1,
        }
    }
}

impl BatchStatus {
    /// A batch's status: complete once its completion was recorded (`completed_at`), else
    /// processing once any upload was seen, else pending.
    pub fn derive(completed: bool, counts: &BatchCounts) -> Self {
        if completed {
            Self::Complete
        } else if counts.received > 0 {
            Self::Processing
        } else {
            Self::Pending
        }
    }
}

/// A batch with its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// Id.
    pub batch_id: String,
    /// Owner.
    pub principal: String,
    /// Derived status.
    pub status: BatchStatus,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Upload grant expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// When the last file became terminal.
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    /// Variant request.
    pub request: VariantRequest,
    /// Completion callback.
    pub callback_url: Option<String>,
    /// Trace context.
    pub traceparent: Option<String>,
    /// When the completion was announced (event published, callback attempted).
    #[serde(with = "time::serde::rfc3339::option")]
    pub announced_at: Option<OffsetDateTime>,
    /// Counts derived from the files.
    pub counts: BatchCounts,
    /// Files in creation order.
    pub files: Vec<FileRecord>,
    /// Change counter: bumped by every file transition and by completion, so a waiter can
    /// watch [`MetadataStore::batch_version`] instead of re-reading the batch.
    pub version: u64,
    /// The completion callback's delivery, once the batch was announced with a callback.
    pub webhook: Option<WebhookState>,
}

/// What a waiter needs to know whether a batch changed: one small read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchVersion {
    /// Owner.
    pub principal: String,
    /// [`BatchRecord::version`].
    pub version: u64,
    /// Whether the batch is complete.
    pub complete: bool,
}

/// A file the expiry sweep moved to `expired`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredFile {
    /// Batch.
    pub batch_id: String,
    /// File.
    pub file_id: String,
    /// Whether this expiry completed the batch (exactly one transition per batch reports it).
    pub batch_completed: bool,
}

/// Where a webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    /// Not delivered yet; another attempt is scheduled.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Given up (a permanent refusal, or every attempt failed).
    Failed,
}

impl WebhookStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// A batch's completion callback delivery, as the batch view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookState {
    /// Where it stands.
    pub status: WebhookStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When the latest attempt was made.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
    /// The receiver's HTTP status on the latest attempt, when it answered.
    pub last_status: Option<u16>,
    /// Why the latest attempt failed, when it did (never a resolved address).
    pub last_error: Option<String>,
    /// When the next attempt is due (`pending` only).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// A webhook delivery to put in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    /// The `webhook-id`: the outbox holds one delivery per id.
    pub id: String,
    /// The batch it announces.
    pub batch_id: String,
    /// The batch's owner (whose secret signs it).
    pub principal: String,
    /// Where to POST.
    pub url: String,
    /// The JSON body.
    pub body: String,
    /// When the first attempt is due.
    pub due_at: OffsetDateTime,
}

/// A delivery claimed from the outbox: the claimer holds it until its lease ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookJob {
    /// The `webhook-id`.
    pub id: String,
    /// The batch it announces.
    pub batch_id: String,
    /// Whose secret signs it.
    pub principal: String,
    /// Where to POST.
    pub url: String,
    /// The JSON body.
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// Identifies this claim; recording an attempt with a stale claim changes nothing.
    pub claim: String,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttempt {
    /// When it was made.
    pub at: OffsetDateTime,
    /// Where the delivery stands after it.
    pub status: WebhookStatus,
    /// The receiver's HTTP status, when it answered.
    pub http_status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
    /// When to try again (`Pending` only).
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// What tracing needs of a batch, read without its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTrace {
    /// Creation time (when its uploads were presigned).
    pub created_at: OffsetDateTime,
    /// Trace context.
    pub traceparent: Option<String>,
}

/// Result of a conditional transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The file moved. `batch_completed` is true for exactly one transition per batch: the one
    /// that made its last file terminal.
    Applied {
        /// Whether this transition completed the batch.
        batch_completed: bool,
    },
    /// Nothing changed: a duplicate, late or out-of-order delivery.
    Unchanged,
}

/// Batch and file metadata.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Create a batch and its files (all `awaiting_upload`).
    ///
    /// # Errors
    /// [`MetadataStoreError::AlreadyExists`] if the id is taken,
    /// [`MetadataStoreError::IdempotencyKeyTaken`] if [`NewBatch::idempotency`]'s key is (then
    /// nothing is created and the quota is not checked), else a classified failure.
    async fn create_batch(&self, batch: &NewBatch) -> Result<(), MetadataStoreError>;

    /// Read a batch with its files; `None` when it does not exist.
    ///
    /// # Errors
    /// A classified failure.
    async fn get_batch(&self, batch_id: &str) -> Result<Option<BatchRecord>, MetadataStoreError>;

    /// A batch's creation time and trace context, without reading its files (one small read);
    /// `None` when it does not exist.
    ///
    /// # Errors
    /// A classified failure.
    async fn batch_trace(&self, batch_id: &str) -> Result<Option<BatchTrace>, MetadataStoreError>;

    /// The most recently created batches, newest first.
    ///
    /// # Errors
    /// A classified failure.
    async fn recent_batches(&self, limit: usize) -> Result<Vec<BatchRecord>, MetadataStoreError>;

    /// `awaiting_upload → received`.
    ///
    /// # Errors
    /// [`MetadataStoreError::NotFound`] for an unknown batch or file.
    async fn mark_received(
        &self,
        batch_id: &str,
        file_id: &str,
        at: OffsetDateTime,
    ) -> Result<Transition, MetadataStoreError>;

    /// `awaiting_upload | received → done`, recording variants and facts.
    ///
    /// # Errors
    /// [`MetadataStoreError::NotFound`] for an unknown batch or file.
    async fn mark_done(
        &self,
        batch_id: &str,
        file_id: &str,
        rendered: &RenderedFile,
        at: OffsetDateTime,
    ) -> Result<Transition, MetadataStoreError>;

    /// `awaiting_upload | received → failed`, recording why.
    ///
    /// # Errors
    /// [`MetadataStoreError::NotFound`] for an unknown batch or file.
    async fn mark_failed(
        &self,
        batch_id: &str,
        file_id: &str,
        error: &FileError,
        at: OffsetDateTime,
    ) -> Result<Transition, MetadataStoreError>;

    /// Replace the recorded variants and facts of a `done` file (a re-render rewrote its
    /// manifest). Returns `true` when the record changed, `false` when the file is not `done`
    /// or already records exactly `rendered`; bumps the batch's version when it changed.
    ///
    /// # Errors
    /// [`MetadataStoreError::NotFound`] for an unknown batch or file.
    async fn replace_rendered(
        &self,
        batch_id: &str,
        file_id: &str,
        rendered: &RenderedFile,
        at: OffsetDateTime,
    ) -> Result<bool, MetadataStoreError>;

    /// Record that a complete batch's completion was announced. Returns `false` when it was
    /// already recorded (another delivery announced it).
    ///
    /// # Errors
    /// [`MetadataStoreError::NotFound`] for an unknown batch.
    async fn mark_announced(
        &self,
        batch_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, MetadataStoreError>;

    /// Files of `principal` awaiting upload: the counter that [`NewBatch::max_pending_uploads`]
    /// is checked against (one small read). A file leaves it when it is received, rendered,
    /// failed or expired.
    ///
    /// # Errors
    /// A classified failure.
    async fn pending_uploads(&self, principal: &str) -> Result<u64, MetadataStoreError>;

    /// A batch's owner, change counter and completeness, without its files (one small read);
    /// `None` when it does not exist.
    ///
    /// # Errors
    /// A classified failure.
    async fn batch_version(
        &self,
        batch_id: &str,
    ) -> Result<Option<BatchVersion>, MetadataStoreError>;

    /// Move up to `limit` files still awaiting upload whose batch's grants expired before
    /// `cutoff` to `expired` (at `at`), each by a conditional transition, so several sweepers
    /// may run at once: each file expires once, and the transition that closes a batch reports
    /// it.
    ///
    /// # Errors
    /// A classified failure (files expired before it stay expired).
    async fn expire_uploads(
        &self,
        cutoff: OffsetDateTime,
        at: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ExpiredFile>, MetadataStoreError>;

    /// Put a delivery in the outbox, due at `due_at`. Returns `false` when a delivery with
    /// that id exists already (nothing changes).
    ///
    /// # Errors
    /// A classified failure.
    async fn enqueue_webhook(&self, webhook: &NewWebhook) -> Result<bool, MetadataStoreError>;

    /// Claim up to `limit` deliveries due at `now`, oldest first, for `lease`: until it ends no
    /// other claimer gets them (then they are due again, so a claimer that died loses nothing).
    ///
    /// # Errors
    /// A classified failure.
    async fn claim_webhooks(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<WebhookJob>, MetadataStoreError>;

    /// Record an attempt of a claimed delivery: delivered, failed for good, or due again at
    /// `next_attempt_at`; the batch view shows it. Returns `false` when the claim was stale
    /// (its lease ended and another claimer took the delivery): nothing changes.
    ///
    /// # Errors
    /// A classified failure.
    async fn record_webhook_attempt(
        &self,
        job: &WebhookJob,
        attempt: &WebhookAttempt,
    ) -> Result<bool, MetadataStoreError>;

    /// The principal owning the batch that holds file `image_id`; `None` for an unknown (or
    /// expired and deleted) file. Scopes client events to their owner.
    ///
    /// # Errors
    /// A classified failure.
    async fn image_owner(&self, image_id: &str) -> Result<Option<String>, MetadataStoreError>;

    /// Count one `IMAGE_REQUESTED` event for `image_id` (a file id). Idempotent per `event_id`:
    /// returns `false` when that event was counted before. `at` is the server's receive time.
    ///
    /// # Errors
    /// A classified failure.
    async fn record_image_request(
        &self,
        image_id: &str,
        event_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, MetadataStoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_error_keeps_its_wire_form_and_reads_an_unknown_code_as_internal() {
        let e = FileError {
            code: ErrorCode::ImageTooLarge,
            message: "too big".into(),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "image_too_large", "message": "too big"})
        );
        assert_eq!(serde_json::from_value::<FileError>(json).unwrap(), e);
        let old: FileError =
            serde_json::from_str(r#"{"code":"decode_failed","message":"old"}"#).unwrap();
        assert_eq!(
            (old.code, old.message.as_str()),
            (ErrorCode::Internal, "old")
        );
    }
    use crate::error::Disposition;

    /// Every variant; the match has no wildcard, so a new variant must be listed here.
    fn every_variant() -> Vec<MetadataStoreError> {
        let all = vec![
            MetadataStoreError::AlreadyExists("b".into()),
            MetadataStoreError::NotFound("b".into()),
            MetadataStoreError::Throttled("x".into()),
            MetadataStoreError::Unavailable("x".into()),
            MetadataStoreError::Timeout("x".into()),
            MetadataStoreError::QuotaExceeded {
                pending: 2,
                quota: 1,
            },
            MetadataStoreError::IdempotencyKeyTaken {
                batch_id: "b".into(),
                request_sha256: "h".into(),
            },
            MetadataStoreError::Other("x".into()),
        ];
        for e in &all {
            match e {
                MetadataStoreError::AlreadyExists(_)
                | MetadataStoreError::NotFound(_)
                | MetadataStoreError::Throttled(_)
                | MetadataStoreError::Unavailable(_)
                | MetadataStoreError::Timeout(_)
                | MetadataStoreError::QuotaExceeded { .. }
                | MetadataStoreError::IdempotencyKeyTaken { .. }
                | MetadataStoreError::Other(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_variant_maps_to_a_closed_set_code() {
        crate::error::check_port_error_codes(every_variant());
    }

    #[test]
    fn store_errors_keep_their_transient_codes() {
        let cases = [
            (
                MetadataStoreError::Throttled("x".into()),
                Disposition::Retry,
                ErrorCode::Throttled,
            ),
            (
                MetadataStoreError::Timeout("x".into()),
                Disposition::Retry,
                ErrorCode::Timeout,
            ),
            (
                MetadataStoreError::Unavailable("x".into()),
                Disposition::Retry,
                ErrorCode::StoreUnavailable,
            ),
            (
                MetadataStoreError::NotFound("x".into()),
                Disposition::DeadLetter,
                ErrorCode::InvalidEvent,
            ),
            (
                MetadataStoreError::Other("x".into()),
                Disposition::DeadLetter,
                ErrorCode::Internal,
            ),
        ];
        for (e, disposition, code) in cases {
            let what = format!("{e:?}");
            let h = HandlerError::from(e);
            assert_eq!((h.disposition, h.code), (disposition, code), "{what}");
        }
    }
}
