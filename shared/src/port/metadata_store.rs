//! `MetadataStore`: batches, per-file status and variants, with conditional transitions.
//!
//! File status only moves forward: `awaiting_upload → received → done | failed` (a file may
//! also go straight to `done`/`failed` when the manifest arrives before the upload event). A
//! transition that does not apply (duplicate, late or out-of-order delivery) is
//! [`Transition::Unchanged`], never an error, so at-least-once delivery keeps counts exact. The
//! transition that makes the last file terminal completes the batch, exactly once.

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
}

/// Status of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl FileStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingUpload => "awaiting_upload",
            Self::Received => "received",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "awaiting_upload" => Self::AwaitingUpload,
            "received" => Self::Received,
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// `done` or `failed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

/// Status of a batch, derived from its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// No upload seen yet.
    Pending,
    /// Some uploads seen, some files not terminal.
    Processing,
    /// Every file done or failed.
    Complete,
}

/// Why a file failed (closed-set code + human message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileError {
    /// `shared::error::ErrorCode` as `snake_case`.
    pub code: String,
    /// Human-readable.
    pub message: String,
}

/// Facts about the source image, from the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// One rendered variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantRecord {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Format.
    pub format: OutputFormat,
    /// Encoded size.
    pub bytes: u64,
    /// Media-bucket key.
    pub key: String,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchCounts {
    /// Files in the batch.
    pub files: u64,
    /// Files whose upload has been seen (any status but `awaiting_upload`).
    pub received: u64,
    /// Files done.
    pub done: u64,
    /// Files failed.
    pub failed: u64,
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
    /// [`MetadataStoreError::AlreadyExists`] if the id is taken, else a classified failure.
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

    /// Files of `principal`'s unexpired batches still awaiting upload (the in-flight upload
    /// quota).
    ///
    /// # Errors
    /// A classified failure.
    async fn count_awaiting_uploads(
        &self,
        principal: &str,
        now: OffsetDateTime,
    ) -> Result<u64, MetadataStoreError>;

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
