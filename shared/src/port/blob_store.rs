//! `BlobStore`: object storage (S3, or files under a data dir).

use crate::error::{ErrorCode, HandlerError, PortError};
use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Failures of a blob store call, classified.
#[derive(Debug, thiserror::Error)]
pub enum BlobStoreError {
    /// The object does not exist (S3 `NoSuchKey`). Permanent: S3 reads are strongly consistent.
    #[error("object not found: {0}")]
    NotFound(String),
    /// The key is not acceptable (escapes the root, NUL, too long, …). Permanent.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// The backend throttled us. Transient.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The backend is unreachable or failing (5xx, I/O). Transient.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The call timed out. Transient.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A permanent failure (bad request, access denied, …).
    #[error("{0}")]
    Other(String),
}

impl BlobStoreError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Throttled(_) | Self::Unavailable(_) | Self::Timeout(_)
        )
    }

    /// The closed-set code: a missing object is the source a message names; throttling and
    /// timeouts are told apart from outages; anything else is `internal`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::SourceMissing,
            Self::Throttled(_) => ErrorCode::Throttled,
            Self::Timeout(_) => ErrorCode::Timeout,
            Self::Unavailable(_) => ErrorCode::StoreUnavailable,
            Self::InvalidKey { .. } | Self::Other(_) => ErrorCode::Internal,
        }
    }
}

impl PortError for BlobStoreError {
    fn code(&self) -> ErrorCode {
        BlobStoreError::code(self)
    }
    fn is_transient(&self) -> bool {
        BlobStoreError::is_transient(self)
    }
}

impl From<BlobStoreError> for HandlerError {
    fn from(e: BlobStoreError) -> Self {
        HandlerError::from_port(e)
    }
}

/// Options for [`BlobStore::put`].
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// `Content-Type` to store.
    pub content_type: Option<String>,
    /// User metadata (keys without `x-amz-meta-`, lower-case ASCII).
    pub metadata: BTreeMap<String, String>,
    /// `Cache-Control` to store and serve with the object (S3's object `Cache-Control`), e.g.
    /// [`CACHE_IMMUTABLE`] for content-addressed media.
    pub cache_control: Option<String>,
}

/// `Cache-Control` of objects whose key changes whenever their bytes can (variants, kept
/// originals): any cache may keep them for a year without revalidating.
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of records rewritten in place (manifest, failure record): caches revalidate
/// on every use.
pub const CACHE_REVALIDATE: &str = "no-cache";

/// What [`BlobStore::head`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
    /// Stored content type.
    pub content_type: Option<String>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Opaque version token.
    pub e_tag: Option<String>,
    /// Stored `Cache-Control`.
    pub cache_control: Option<String>,
}

/// One entry of [`BlobStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// The constraints a presigned upload enforces (as strict as an S3 POST policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPolicy {
    /// The exact key.
    pub key: String,
    /// The exact content type the upload must declare.
    pub content_type: String,
    /// Largest accepted body (the range is 1..=max_bytes).
    pub max_bytes: u64,
    /// User metadata the upload must carry, exactly.
    pub metadata: BTreeMap<String, String>,
    /// How long the grant lasts.
    pub expires_in: Duration,
    /// How the producer sends the bytes: a form POST (size within `1..=max_bytes`) or a raw
    /// PUT (exactly `max_bytes`, with the content type and metadata as headers).
    pub method: UploadMethod,
}

/// HTTP method of a presigned upload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum UploadMethod {
    #[default]
    /// A multipart form POST with `fields` then the file.
    Post,
    /// A PUT of the raw body with `headers`.
    Put,
}

/// Instructions a producer follows to upload one file without going through prism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresignedUpload {
    /// POST or PUT.
    pub method: UploadMethod,
    /// Where to send it.
    pub url: String,
    /// Form fields to send before the `file` field (POST only).
    pub fields: Option<BTreeMap<String, String>>,
    /// Headers to send (PUT only).
    pub headers: Option<BTreeMap<String, String>>,
    /// When the grant expires.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Object storage. Puts are atomically visible: a reader sees the whole object or none.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// The bucket this store addresses.
    fn bucket(&self) -> &str;

    /// Read a whole object.
    ///
    /// # Errors
    /// [`BlobStoreError::NotFound`] when absent, else a classified failure.
    async fn get(&self, key: &str) -> Result<Bytes, BlobStoreError>;

    /// Size, content type and user metadata of an object.
    ///
    /// # Errors
    /// [`BlobStoreError::NotFound`] when absent, else a classified failure.
    async fn head(&self, key: &str) -> Result<ObjectMeta, BlobStoreError>;

    /// Write an object, replacing any existing one, visible atomically once this returns.
    ///
    /// # Errors
    /// A classified failure; nothing is visible after an error.
    async fn put(&self, key: &str, body: Bytes, options: PutOptions) -> Result<(), BlobStoreError>;

    /// Keys under `prefix`, in lexicographic order.
    ///
    /// # Errors
    /// A classified failure.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BlobStoreError>;

    /// Delete an object; deleting a missing object succeeds.
    ///
    /// # Errors
    /// A classified failure.
    async fn delete(&self, key: &str) -> Result<(), BlobStoreError>;

    /// Instructions to upload one object under `policy` without passing through prism.
    ///
    /// # Errors
    /// A classified failure (e.g. no credentials to sign with).
    async fn presign_upload(
        &self,
        policy: &UploadPolicy,
    ) -> Result<PresignedUpload, BlobStoreError>;

    /// A URL that reads one object until `expires_in` passes.
    ///
    /// # Errors
    /// A classified failure.
    async fn presign_download(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, BlobStoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Disposition;

    /// Every variant; the match has no wildcard, so a new variant must be listed here.
    fn every_variant() -> Vec<BlobStoreError> {
        let all = vec![
            BlobStoreError::NotFound("k".into()),
            BlobStoreError::InvalidKey {
                key: "k".into(),
                reason: "r",
            },
            BlobStoreError::Throttled("x".into()),
            BlobStoreError::Unavailable("x".into()),
            BlobStoreError::Timeout("x".into()),
            BlobStoreError::Other("x".into()),
        ];
        for e in &all {
            match e {
                BlobStoreError::NotFound(_)
                | BlobStoreError::InvalidKey { .. }
                | BlobStoreError::Throttled(_)
                | BlobStoreError::Unavailable(_)
                | BlobStoreError::Timeout(_)
                | BlobStoreError::Other(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_variant_maps_to_a_closed_set_code() {
        crate::error::check_port_error_codes(every_variant());
    }

    #[test]
    fn blob_errors_keep_their_transient_codes() {
        let cases = [
            (
                BlobStoreError::NotFound("x".into()),
                Disposition::DeadLetter,
                ErrorCode::SourceMissing,
            ),
            (
                BlobStoreError::Throttled("x".into()),
                Disposition::Retry,
                ErrorCode::Throttled,
            ),
            (
                BlobStoreError::Timeout("x".into()),
                Disposition::Retry,
                ErrorCode::Timeout,
            ),
            (
                BlobStoreError::Unavailable("x".into()),
                Disposition::Retry,
                ErrorCode::StoreUnavailable,
            ),
            (
                BlobStoreError::Other("x".into()),
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
