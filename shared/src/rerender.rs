//! Re-rendering existing files with a new variant spec (`prism rerender`).
//!
//! The CLI sends one [`RerenderMessage`] per file straight to the resize queue (not through the
//! topic: the resize subscription takes upload events only, and a re-render is no event the
//! archive should keep). The resize worker renders the file from its kept original
//! (`media/{batch}/{file}/original`) or, while the uploads bucket still holds it, from the
//! upload, checking the bytes are the ones the file was first rendered from. It writes the new
//! variants under new keys (the key's tag names the spec), rewrites `manifest.json` (whose event
//! makes the metadata writer replace the file's recorded variants) and then writes
//! `media/{batch}/{file}/rerender.json`, a [`RerenderRecord`] the CLI polls to learn the
//! outcome.
//!
//! Idempotence: a manifest records the [`request_sha256`] of the spec it was rendered with, so
//! a file already rendered with a spec (by the engine now running) is skipped, by the CLI
//! before it sends and by the worker when a message arrives twice.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::port::metadata_store::FileError;
use crate::variant::{VariantRequest, VariantRequestError};

/// `event_name` of a [`RerenderMessage`].
pub const EVENT_NAME: &str = "prism.rerender";
/// `schema_version` of both records.
pub const SCHEMA_VERSION: u32 = 1;
/// File name of the [`RerenderRecord`] in a file's media directory.
pub const RECORD_NAME: &str = "rerender.json";
/// The largest message or record body read; anything longer is refused before parsing.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// `media/{batch_id}/{file_id}/rerender.json`.
pub fn record_key(batch_id: &str, file_id: &str) -> String {
    format!("{}{RECORD_NAME}", crate::keys::media_dir(batch_id, file_id))
}

/// The hex SHA-256 naming a spec: of its normalised metadata form, with `keep_original` left
/// out (it changes no variant's bytes, and a re-render never changes what is kept).
pub fn request_sha256(request: &VariantRequest) -> String {
    let spec = VariantRequest {
        keep_original: false,
        ..request.clone()
    };
    hex::encode(Sha256::digest(spec.to_metadata().as_bytes()))
}

/// One file to re-render, as sent to the resize queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerenderMessage {
    /// [`EVENT_NAME`].
    pub event_name: String,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Batch.
    pub batch_id: String,
    /// File.
    pub file_id: String,
    /// The new spec.
    pub request: VariantRequest,
    /// Chosen by the sender and echoed in the [`RerenderRecord`], so the sender tells its own
    /// message's outcome from an older one (at most 64 safe characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// Why a re-render message or record cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RerenderError {
    /// Longer than [`MAX_BODY_BYTES`].
    #[error("{0} bytes exceed the {MAX_BODY_BYTES}-byte limit")]
    TooLong(usize),
    /// Not JSON of the expected shape.
    #[error("malformed: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Another event name or schema version.
    #[error("not a {EVENT_NAME} message of schema version {SCHEMA_VERSION}")]
    Unsupported,
    /// A batch or file id outside the safe alphabet.
    #[error("invalid batch or file id")]
    InvalidId,
    /// The spec breaks a bound.
    #[error("invalid variant request: {0}")]
    Request(#[from] VariantRequestError),
}

impl RerenderMessage {
    /// A message for one file, with `request` normalised.
    ///
    /// # Errors
    /// An invalid id or spec.
    pub fn new(
        batch_id: &str,
        file_id: &str,
        request: &VariantRequest,
    ) -> Result<Self, RerenderError> {
        let m = Self {
            event_name: EVENT_NAME.to_owned(),
            schema_version: SCHEMA_VERSION,
            batch_id: batch_id.to_owned(),
            file_id: file_id.to_owned(),
            request: request.clone().normalise()?,
            nonce: None,
        };
        m.check()
    }

    fn check(mut self) -> Result<Self, RerenderError> {
        if self.event_name != EVENT_NAME || self.schema_version != SCHEMA_VERSION {
            return Err(RerenderError::Unsupported);
        }
        if !crate::keys::is_valid_id(&self.batch_id)
            || !crate::keys::is_valid_id(&self.file_id)
            || self
                .nonce
                .as_deref()
                .is_some_and(|n| !crate::keys::is_valid_id(n))
        {
            return Err(RerenderError::InvalidId);
        }
        self.request = self.request.normalise()?;
        Ok(self)
    }

    /// Parse and check a message body (bounded before parsing).
    ///
    /// # Errors
    /// [`RerenderError`] for anything but a valid message.
    pub fn parse(body: &str) -> Result<Self, RerenderError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(RerenderError::TooLong(body.len()));
        }
        serde_json::from_str::<Self>(body)?.check()
    }

    /// `true` when a JSON value is addressed to the re-render handler (its `event_name`).
    pub fn is_rerender(v: &serde_json::Value) -> bool {
        v.get("event_name").and_then(serde_json::Value::as_str) == Some(EVENT_NAME)
    }

    /// The body to send.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a re-render message serialises")
    }
}

/// How one re-render ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RerenderStatus {
    /// New variants and manifest written.
    Rendered,
    /// The file was already rendered with this spec; nothing written but this record.
    AlreadyRendered,
    /// Failed permanently; the file keeps its variants and manifest.
    Failed,
}

/// `media/{batch}/{file}/rerender.json`: the outcome of the last re-render of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerenderRecord {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Batch.
    pub batch_id: String,
    /// File.
    pub file_id: String,
    /// [`request_sha256`] of the spec.
    pub request_sha256: String,
    /// Outcome.
    pub status: RerenderStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<FileError>,
    /// The message's [`RerenderMessage::nonce`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// When it ended.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl RerenderRecord {
    /// Parse a record (bounded before parsing).
    ///
    /// # Errors
    /// [`RerenderError`] for anything but a record of this schema.
    pub fn parse(bytes: &[u8]) -> Result<Self, RerenderError> {
        if bytes.len() > MAX_BODY_BYTES {
            return Err(RerenderError::TooLong(bytes.len()));
        }
        let r: Self = serde_json::from_slice(bytes)?;
        if r.schema_version != SCHEMA_VERSION {
            return Err(RerenderError::Unsupported);
        }
        Ok(r)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the failure report
mod tests {
    use super::*;
    use crate::variant::OutputFormat;

    #[test]
    fn messages_round_trip_and_refuse_what_is_not_theirs() {
        let req = VariantRequest {
            widths: vec![640, 200, 200],
            formats: vec![OutputFormat::Webp],
            ..VariantRequest::default()
        };
        let m = RerenderMessage::new("b-1", "f_1", &req).unwrap();
        assert_eq!(m.request.widths, [200, 640], "normalised");
        let body = m.to_body();
        assert!(RerenderMessage::is_rerender(
            &serde_json::from_str(&body).unwrap()
        ));
        assert_eq!(RerenderMessage::parse(&body).unwrap(), m);
        for bad in [
            body.replace("b-1", "../x"),
            body.replace("prism.rerender", "prism.other"),
            body.replace("\"schema_version\":1", "\"schema_version\":2"),
            body.replace("[200,640]", "[2]"),
            body.replace("}", ",\"extra\":1}"),
            body.replace("\"file_id\"", "\"nonce\":\"a/b\",\"file_id\""),
            "[]".to_owned(),
            format!("{}{}", body, " ".repeat(MAX_BODY_BYTES)),
        ] {
            assert!(RerenderMessage::parse(&bad).is_err(), "{bad:.200}");
        }
    }

    #[test]
    fn the_spec_hash_ignores_order_and_keep_original_but_nothing_else() {
        let a = VariantRequest {
            widths: vec![320, 640],
            ..VariantRequest::default()
        };
        let b = VariantRequest {
            widths: vec![640, 320],
            keep_original: true,
            ..VariantRequest::default()
        }
        .normalise()
        .unwrap();
        assert_eq!(request_sha256(&a), request_sha256(&b));
        let c = VariantRequest {
            webp_quality: 81,
            ..a.clone()
        };
        assert_ne!(request_sha256(&a), request_sha256(&c));
        assert_eq!(request_sha256(&a).len(), 64);
    }
}
