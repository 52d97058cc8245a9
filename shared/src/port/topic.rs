//! `Topic`: publish one message to every subscribed queue whose filter matches.

use crate::error::{ErrorCode, HandlerError, PortError};
use async_trait::async_trait;

/// Failures of a topic call, classified.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The message is not acceptable (too large, invalid characters). Permanent.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The backend throttled us. Transient.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The backend is unavailable. Transient.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Any other failure. Permanent.
    #[error("{0}")]
    Other(String),
}

impl TopicError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Throttled(_) | Self::Unavailable(_))
    }

    /// The closed-set code: throttling is told apart from outages; anything else is
    /// `internal`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Throttled(_) => ErrorCode::Throttled,
            Self::Unavailable(_) => ErrorCode::StoreUnavailable,
            Self::Invalid(_) | Self::Other(_) => ErrorCode::Internal,
        }
    }
}

impl PortError for TopicError {
    fn code(&self) -> ErrorCode {
        TopicError::code(self)
    }
    fn is_transient(&self) -> bool {
        TopicError::is_transient(self)
    }
}

impl From<TopicError> for HandlerError {
    fn from(e: TopicError) -> Self {
        HandlerError::from_port(e)
    }
}

/// A fan-out topic.
#[async_trait]
pub trait Topic: Send + Sync + 'static {
    /// Publish `message` (usually JSON) to every subscription whose filter policy matches, and
    /// return the topic's message id. All or nothing: a failed publish delivered to no queue.
    ///
    /// # Errors
    /// A classified failure.
    async fn publish(&self, message: &str) -> Result<String, TopicError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Disposition;

    /// Every variant; the match has no wildcard, so a new variant must be listed here.
    fn every_variant() -> Vec<TopicError> {
        let all = vec![
            TopicError::Invalid("x".into()),
            TopicError::Throttled("x".into()),
            TopicError::Unavailable("x".into()),
            TopicError::Other("x".into()),
        ];
        for e in &all {
            match e {
                TopicError::Invalid(_)
                | TopicError::Throttled(_)
                | TopicError::Unavailable(_)
                | TopicError::Other(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_variant_maps_to_a_closed_set_code() {
        crate::error::check_port_error_codes(every_variant());
    }

    #[test]
    fn topic_errors_keep_their_transient_codes() {
        let cases = [
            (
                TopicError::Throttled("x".into()),
                Disposition::Retry,
                ErrorCode::Throttled,
            ),
            (
                TopicError::Unavailable("x".into()),
                Disposition::Retry,
                ErrorCode::StoreUnavailable,
            ),
            (
                TopicError::Invalid("x".into()),
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
