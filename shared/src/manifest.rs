//! The records the resize worker writes last for each file, and the metadata writer reads:
//! `manifest.json` (every variant written) or `failure.json` (a permanent failure).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::port::metadata_store::{FileError, RenderedFile};

/// Current schema version of both records.
pub const SCHEMA_VERSION: u32 = 1;

/// `media/{batch}/{file}/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Batch.
    pub batch_id: String,
    /// File.
    pub file_id: String,
    /// When rendering finished.
    #[serde(with = "time::serde::rfc3339")]
    pub rendered_at: OffsetDateTime,
    /// Facts and variants.
    #[serde(flatten)]
    pub rendered: RenderedFile,
    /// [`crate::rerender::request_sha256`] of the spec these variants were rendered with
    /// (absent in manifests written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_sha256: Option<String>,
}

/// `media/{batch}/{file}/failure.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Batch.
    pub batch_id: String,
    /// File.
    pub file_id: String,
    /// When it failed.
    #[serde(with = "time::serde::rfc3339")]
    pub failed_at: OffsetDateTime,
    /// Code and message.
    #[serde(flatten)]
    pub error: FileError,
    /// SHA-256 (hex) of the upload that failed, when it was read: the resize worker pins a
    /// file to the first upload it processed, as it does through the manifest's
    /// `source.sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<String>,
}

/// Why a record cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not JSON of the expected shape.
    #[error("malformed record: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A schema version this build does not know.
    #[error("unsupported schema_version {0}")]
    UnsupportedSchema(u32),
}

/// Parse a manifest, checking its schema version.
///
/// # Errors
/// [`RecordError`] for bad JSON or an unknown version.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, RecordError> {
    let m: Manifest = serde_json::from_slice(bytes)?;
    if m.schema_version != SCHEMA_VERSION {
        return Err(RecordError::UnsupportedSchema(m.schema_version));
    }
    Ok(m)
}

/// Parse a failure record, checking its schema version.
///
/// # Errors
/// [`RecordError`] for bad JSON or an unknown version.
pub fn parse_failure(bytes: &[u8]) -> Result<FailureRecord, RecordError> {
    let f: FailureRecord = serde_json::from_slice(bytes)?;
    if f.schema_version != SCHEMA_VERSION {
        return Err(RecordError::UnsupportedSchema(f.schema_version));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::metadata_store::rendered;

    #[test]
    fn records_round_trip_and_check_versions() {
        let m = Manifest {
            schema_version: SCHEMA_VERSION,
            batch_id: "b".into(),
            file_id: "f".into(),
            rendered_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            rendered: rendered("b", "f"),
            request_sha256: None,
        };
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(parse_manifest(&bytes).unwrap(), m);
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["schema_version"] = 2.into();
        assert!(matches!(
            parse_manifest(v.to_string().as_bytes()),
            Err(RecordError::UnsupportedSchema(2))
        ));
        assert!(parse_manifest(b"{}").is_err());
        let f = FailureRecord {
            schema_version: 1,
            batch_id: "b".into(),
            file_id: "f".into(),
            failed_at: OffsetDateTime::from_unix_timestamp(0).unwrap(),
            error: FileError {
                code: crate::error::ErrorCode::TruncatedImage,
                message: "ends early".into(),
            },
            source_sha256: None,
        };
        assert_eq!(parse_failure(&serde_json::to_vec(&f).unwrap()).unwrap(), f);
    }
}
