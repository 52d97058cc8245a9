//! The error model of every worker (docs/architecture.md, "The failure model").
//!
//! Adapters classify their failures (each port error says whether it is transient); handlers
//! decide what the consumer loop does with a message through [`Disposition`]. [`ErrorCode`] is a
//! closed set because it labels metrics and is shown to producers in the batch status.

use std::fmt;

/// What the consumer loop does with a message whose handler failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// Leave the message; it reappears after a jittered backoff. The queue's redrive policy
    /// bounds the number of attempts.
    Retry,
    /// Send the message to the dead-letter queue with its code, then delete it, so poison
    /// never burns retries.
    DeadLetter,
}

/// The closed set of failure codes. Rendered as `snake_case` on the wire and in metrics.
///
/// [`ErrorCode::as_str`] is the one conversion to a label and [`ErrorCode::from_label`] the one
/// conversion back; serde goes through them. Reading is lenient: a label this version does not
/// know (a record written by another version, an attribute someone else set) reads as
/// [`ErrorCode::Internal`] instead of failing the read, so no stored failure can break a batch
/// view or a dead-letter listing, and the set that reaches metrics and producers stays closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The message body is not an event we understand.
    InvalidEvent,
    /// The event carries a schema version we do not support.
    UnsupportedSchema,
    /// The object an event names does not exist.
    SourceMissing,
    /// The upload carries no valid variant request.
    InvalidRequest,
    /// The bytes are not any image format we read.
    UnsupportedFormat,
    /// The bytes claim a supported format but cannot be decoded.
    UndecodableImage,
    /// The image data ends early.
    TruncatedImage,
    /// The image exceeds the configured pixel, dimension or byte limits.
    ImageTooLarge,
    /// The image has more frames than the configured limit.
    TooManyFrames,
    /// The embedded colour profile cannot be used.
    InvalidColorProfile,
    /// Encoding a variant failed.
    EncodeFailed,
    /// The render ran past its deadline and was stopped (permanent: the same bytes would).
    RenderTimeout,
    /// The render's process died (abort, signal, out of memory) twice on the same file.
    RenderCrashed,
    /// A storage backend is unavailable.
    StoreUnavailable,
    /// A backend throttled the request.
    Throttled,
    /// A call timed out.
    Timeout,
    /// The handler panicked.
    Panic,
    /// Anything else; kept bounded so metrics stay bounded.
    Internal,
}

impl ErrorCode {
    /// Every code, for metric descriptions and exhaustive tests.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::InvalidEvent,
        ErrorCode::UnsupportedSchema,
        ErrorCode::SourceMissing,
        ErrorCode::InvalidRequest,
        ErrorCode::UnsupportedFormat,
        ErrorCode::UndecodableImage,
        ErrorCode::TruncatedImage,
        ErrorCode::ImageTooLarge,
        ErrorCode::TooManyFrames,
        ErrorCode::InvalidColorProfile,
        ErrorCode::EncodeFailed,
        ErrorCode::RenderTimeout,
        ErrorCode::RenderCrashed,
        ErrorCode::StoreUnavailable,
        ErrorCode::Throttled,
        ErrorCode::Timeout,
        ErrorCode::Panic,
        ErrorCode::Internal,
    ];

    /// The `snake_case` name used on the wire and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidEvent => "invalid_event",
            ErrorCode::UnsupportedSchema => "unsupported_schema",
            ErrorCode::SourceMissing => "source_missing",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::UnsupportedFormat => "unsupported_format",
            ErrorCode::UndecodableImage => "undecodable_image",
            ErrorCode::TruncatedImage => "truncated_image",
            ErrorCode::ImageTooLarge => "image_too_large",
            ErrorCode::TooManyFrames => "too_many_frames",
            ErrorCode::InvalidColorProfile => "invalid_color_profile",
            ErrorCode::EncodeFailed => "encode_failed",
            ErrorCode::RenderTimeout => "render_timeout",
            ErrorCode::RenderCrashed => "render_crashed",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::Throttled => "throttled",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Panic => "panic",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code whose label is `label`; `None` when no code has it.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == label)
    }

    /// The code a stored or received label reads as: its own code, or
    /// [`ErrorCode::Internal`] for a label this version does not know.
    pub fn from_label_or_internal(label: &str) -> Self {
        Self::from_label(label).unwrap_or(ErrorCode::Internal)
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Label;
        impl serde::de::Visitor<'_> for Label {
            type Value = ErrorCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error code label")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ErrorCode, E> {
                Ok(ErrorCode::from_label_or_internal(v))
            }
        }
        d.deserialize_str(Label)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A boxed error for sources that are only reported, never matched on.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A handler failure: what went wrong ([`ErrorCode`]), why ([`source`](Self::source)) and what
/// the consumer loop should do about it ([`Disposition`]).
#[derive(Debug, thiserror::Error)]
#[error("{code}: {source}")]
pub struct HandlerError {
    /// Retry or dead-letter.
    pub disposition: Disposition,
    /// The closed-set code (a metric label).
    pub code: ErrorCode,
    /// The underlying error.
    #[source]
    pub source: BoxError,
}

impl HandlerError {
    /// A failure that a later attempt may not repeat (throttling, outage, timeout).
    pub fn transient(code: ErrorCode, source: impl Into<BoxError>) -> Self {
        Self {
            disposition: Disposition::Retry,
            code,
            source: source.into(),
        }
    }

    /// A failure that every attempt would repeat (poison input).
    pub fn permanent(code: ErrorCode, source: impl Into<BoxError>) -> Self {
        Self {
            disposition: Disposition::DeadLetter,
            code,
            source: source.into(),
        }
    }
}

/// A port's failure: its closed-set code and whether a later attempt may succeed. Each port
/// error (`BlobStoreError`, `MetadataStoreError`, `QueueError`, `TopicError`) implements it
/// beside its variants, so the mapping to a code is written once, where the variants are.
pub trait PortError: std::error::Error + Send + Sync + 'static {
    /// The closed-set code this failure is counted and reported under.
    fn code(&self) -> ErrorCode;
    /// Whether a later attempt may succeed (retry) or every attempt would fail (dead-letter).
    fn is_transient(&self) -> bool;
}

impl HandlerError {
    /// The one conversion of a port failure: its own code, retried when transient and
    /// dead-lettered when permanent.
    pub fn from_port(e: impl PortError) -> Self {
        let code = e.code();
        if e.is_transient() {
            Self::transient(code, e)
        } else {
            Self::permanent(code, e)
        }
    }
}

/// Decide the disposition where the knowledge is (pict-rs' `.retry()` / `.abort()`).
pub trait ResultExt<T> {
    /// Map an error to a transient [`HandlerError`] with `code`.
    ///
    /// # Errors
    /// Returns the mapped error when `self` is `Err`.
    fn transient(self, code: ErrorCode) -> Result<T, HandlerError>;
    /// Map an error to a permanent [`HandlerError`] with `code`.
    ///
    /// # Errors
    /// Returns the mapped error when `self` is `Err`.
    fn permanent(self, code: ErrorCode) -> Result<T, HandlerError>;
}

impl<T, E: Into<BoxError>> ResultExt<T> for Result<T, E> {
    fn transient(self, code: ErrorCode) -> Result<T, HandlerError> {
        self.map_err(|e| HandlerError::transient(code, e))
    }
    fn permanent(self, code: ErrorCode) -> Result<T, HandlerError> {
        self.map_err(|e| HandlerError::permanent(code, e))
    }
}

/// Check that every error in `all` (one of each variant of a port error) maps to a code of
/// [`ErrorCode::ALL`] and converts to a [`HandlerError`] with that code, retried when
/// transient and dead-lettered when permanent. Each port error's tests call it.
#[cfg(test)]
pub(crate) fn check_port_error_codes<E: PortError + fmt::Debug>(all: Vec<E>) {
    for e in all {
        let what = format!("{e:?}");
        let code = e.code();
        assert!(ErrorCode::ALL.contains(&code), "{what} -> {code:?}");
        let want = if e.is_transient() {
            Disposition::Retry
        } else {
            Disposition::DeadLetter
        };
        let h = HandlerError::from_port(e);
        assert_eq!((h.code, h.disposition), (code, want), "{what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_serialises_as_its_label() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
        }
    }

    #[test]
    fn labels_convert_both_ways() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_label(code.as_str()), Some(code));
            assert_eq!(code.to_string(), code.as_str());
        }
        assert_eq!(ErrorCode::from_label("Internal"), None, "labels are exact");
        assert_eq!(ErrorCode::from_label(""), None);
    }

    #[test]
    fn a_label_this_version_does_not_know_reads_as_internal() {
        for old in [
            "decode_failed",
            "max_receive_count_exceeded",
            "",
            "UNDECODABLE_IMAGE",
        ] {
            let json = serde_json::to_string(old).unwrap();
            let code: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(code, ErrorCode::Internal, "{old:?}");
            assert_eq!(ErrorCode::from_label_or_internal(old), ErrorCode::Internal);
        }
        // Not a label at all is still malformed.
        assert!(serde_json::from_str::<ErrorCode>("17").is_err());
        assert!(serde_json::from_str::<ErrorCode>("null").is_err());
    }

    #[test]
    fn render_failure_codes_are_closed_set_labels() {
        assert_eq!(ErrorCode::RenderTimeout.as_str(), "render_timeout");
        assert_eq!(ErrorCode::RenderCrashed.as_str(), "render_crashed");
        let labels: std::collections::BTreeSet<_> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels.len(), ErrorCode::ALL.len(), "labels are distinct");
    }

    #[test]
    fn result_ext_sets_disposition() {
        let r: Result<(), std::io::Error> = Err(std::io::Error::other("boom"));
        let e = r.transient(ErrorCode::Timeout).unwrap_err();
        assert_eq!(e.disposition, Disposition::Retry);
        assert_eq!(e.code, ErrorCode::Timeout);
        let r: Result<(), std::io::Error> = Err(std::io::Error::other("bad"));
        let e = r.permanent(ErrorCode::UndecodableImage).unwrap_err();
        assert_eq!(e.disposition, Disposition::DeadLetter);
        assert_eq!(e.to_string(), "undecodable_image: bad");
    }
}
