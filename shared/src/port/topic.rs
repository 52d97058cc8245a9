//! `Topic`: publish one message to every subscribed queue whose filter matches.

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
