//! `Queue`: at-least-once delivery with visibility timeouts, receipts and a dead-letter queue.
//!
//! Semantics follow SQS standard queues: a received message is invisible until its visibility
//! deadline, then reappears with a higher receive count; it is deleted only with its *latest*
//! receipt; after `max_receive_count` receives the redrive policy moves it to the DLQ.

use crate::error::{ErrorCode, HandlerError, PortError};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Failures of a queue call, classified.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The receipt is not the message's latest one (it was redelivered, or deleted). Permanent:
    /// the newer receiver owns the message now.
    #[error("receipt is stale or unknown")]
    StaleReceipt,
    /// The message cannot be sent (too large, invalid characters). Permanent.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The queue does not exist. Permanent.
    #[error("queue not found: {0}")]
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

impl QueueError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Throttled(_) | Self::Unavailable(_) | Self::Timeout(_)
        )
    }

    /// The closed-set code: throttling and timeouts are told apart from outages; anything
    /// else is `internal`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Throttled(_) => ErrorCode::Throttled,
            Self::Timeout(_) => ErrorCode::Timeout,
            Self::Unavailable(_) => ErrorCode::StoreUnavailable,
            Self::StaleReceipt | Self::Invalid(_) | Self::NotFound(_) | Self::Other(_) => {
                ErrorCode::Internal
            }
        }
    }
}

impl PortError for QueueError {
    fn code(&self) -> ErrorCode {
        QueueError::code(self)
    }
    fn is_transient(&self) -> bool {
        QueueError::is_transient(self)
    }
}

impl From<QueueError> for HandlerError {
    fn from(e: QueueError) -> Self {
        HandlerError::from_port(e)
    }
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Queue message id (changes on DLQ redrive; never an idempotency key).
    pub id: String,
    /// The handle for this delivery: ack and extend with it.
    pub receipt: String,
    /// The body, exactly as sent.
    pub body: String,
    /// How many times it has been received, this delivery included.
    pub receive_count: u32,
    /// When it was first sent (SQS `SentTimestamp`); queue lag is `now - sent_at`.
    pub sent_at: OffsetDateTime,
}

/// Why a message was dead-lettered, stored with it in the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterInfo {
    /// The closed-set code of the failure that dead-lettered it. A stored label this version
    /// does not know reads as `internal`.
    pub error_code: ErrorCode,
    /// Which worker gave up on it.
    pub worker: String,
    /// A human-readable reason.
    pub reason: String,
}

/// Why a message is in a dead-letter queue: a handler dead-lettered it with a closed-set code,
/// or the queue's redrive policy moved it after too many receives.
///
/// A separate type, not an [`ErrorCode`] variant: running out of receives is not a failure of
/// the file (the failures behind the receives were each counted under their own code), so it
/// belongs to no metric label and no batch view, only to the dead-letter listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// Dead-lettered explicitly, with the failure's code.
    Failed(ErrorCode),
    /// Moved by the redrive policy after `max_receive_count` receives.
    MaxReceiveCountExceeded,
}

impl DeadLetterReason {
    /// Its label: the code's own, or `max_receive_count_exceeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed(code) => code.as_str(),
            Self::MaxReceiveCountExceeded => "max_receive_count_exceeded",
        }
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message sitting in a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Message id in the DLQ.
    pub id: String,
    /// The original body.
    pub body: String,
    /// Receives before it was dead-lettered.
    pub receive_count: u32,
    /// Why, when it was dead-lettered explicitly; `None` when the redrive policy moved it.
    pub info: Option<DeadLetterInfo>,
    /// When it was first sent to the source queue.
    pub sent_at: OffsetDateTime,
}

impl DeadLetter {
    /// Why it is there: the code it was dead-lettered with, or the redrive policy.
    pub fn reason(&self) -> DeadLetterReason {
        self.info
            .as_ref()
            .map_or(DeadLetterReason::MaxReceiveCountExceeded, |i| {
                DeadLetterReason::Failed(i.error_code)
            })
    }
}

/// Depths and age for dashboards and autoscaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Messages ready to be received.
    pub visible: u64,
    /// Messages received and not yet acked or reappeared.
    pub in_flight: u64,
    /// Messages in the dead-letter queue.
    pub dlq_visible: u64,
    /// Age of the oldest message in the queue (visible or in flight).
    pub oldest_age: Option<Duration>,
}

/// Settings of one queue and its DLQ.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Queue name.
    pub name: String,
    /// Name of its dead-letter queue.
    pub dlq_name: String,
    /// Default visibility timeout of a receive.
    pub visibility_timeout: Duration,
    /// Receives after which the redrive policy moves a message to the DLQ.
    pub max_receive_count: u32,
}

impl QueueSettings {
    /// `name` with DLQ `name-dlq`, 30 s visibility and 5 receives.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            dlq_name: format!("{name}-dlq"),
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 5,
        }
    }
}

/// A work queue with a dead-letter queue.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Queue name (a metric label; from config).
    fn name(&self) -> &str;

    /// Enqueue one message; returns its id.
    ///
    /// # Errors
    /// A classified failure.
    async fn send(&self, body: &str) -> Result<String, QueueError>;

    /// Receive up to `max` messages, waiting up to `wait` for the first one. Adapters clamp
    /// `max` to what their backend serves per call (SQS: 10; SQLite: 1000). Returns an empty vec
    /// when none arrived in time.
    ///
    /// # Errors
    /// A classified failure.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, QueueError>;

    /// Make a received message invisible for `timeout` from now (0 makes it visible at once).
    ///
    /// # Errors
    /// [`QueueError::StaleReceipt`] when the receipt is no longer the latest.
    async fn extend_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError>;

    /// Delete a received message.
    ///
    /// # Errors
    /// [`QueueError::StaleReceipt`] when the receipt is no longer the latest: the message was
    /// redelivered, and is not deleted. (SQS only promises the stale delete "might not" delete:
    /// handlers stay idempotent, so either outcome is safe.)
    async fn ack(&self, receipt: &str) -> Result<(), QueueError>;

    /// Delete any number of received messages; returns the per-entry failures (SQS
    /// `DeleteMessageBatch` answers 200 even when entries fail). Adapters split the call as
    /// their backend needs (SQS: 10 entries per request).
    ///
    /// # Errors
    /// A classified failure of the whole call.
    async fn ack_batch(&self, receipts: &[String])
    -> Result<Vec<(String, QueueError)>, QueueError>;

    /// Move a received message to the dead-letter queue with `info`, then delete it.
    ///
    /// # Errors
    /// A classified failure; on error the message stays where it was.
    async fn dead_letter(&self, message: &Message, info: &DeadLetterInfo)
    -> Result<(), QueueError>;

    /// Depths and oldest age.
    ///
    /// # Errors
    /// A classified failure.
    async fn stats(&self) -> Result<QueueStats, QueueError>;

    /// Up to `max` messages in the dead-letter queue, without changing them.
    ///
    /// # Errors
    /// A classified failure.
    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError>;

    /// Move every dead-lettered message back to the source queue; returns how many moved.
    ///
    /// # Errors
    /// A classified failure.
    async fn redrive(&self) -> Result<u64, QueueError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_says_why_it_is_there() {
        let mut d = DeadLetter {
            id: "m".into(),
            body: "{}".into(),
            receive_count: 5,
            info: None,
            sent_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(d.reason(), DeadLetterReason::MaxReceiveCountExceeded);
        assert_eq!(d.reason().to_string(), "max_receive_count_exceeded");
        for code in ErrorCode::ALL {
            d.info = Some(DeadLetterInfo {
                error_code: code,
                worker: "resize".into(),
                reason: "why".into(),
            });
            assert_eq!(d.reason(), DeadLetterReason::Failed(code));
            assert_eq!(d.reason().as_str(), code.as_str());
        }
        assert!(
            ErrorCode::from_label(DeadLetterReason::MaxReceiveCountExceeded.as_str()).is_none(),
            "the redrive label is no failure code"
        );
    }

    #[test]
    fn dead_letter_info_keeps_its_wire_form() {
        let info = DeadLetterInfo {
            error_code: ErrorCode::SourceMissing,
            worker: "metadata".into(),
            reason: "gone".into(),
        };
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error_code": "source_missing", "worker": "metadata", "reason": "gone"})
        );
        assert_eq!(
            serde_json::from_value::<DeadLetterInfo>(json).unwrap(),
            info
        );
    }

    /// Every variant; the match has no wildcard, so a new variant must be listed here.
    fn every_variant() -> Vec<QueueError> {
        let all = vec![
            QueueError::StaleReceipt,
            QueueError::Invalid("x".into()),
            QueueError::NotFound("q".into()),
            QueueError::Throttled("x".into()),
            QueueError::Unavailable("x".into()),
            QueueError::Timeout("x".into()),
            QueueError::Other("x".into()),
        ];
        for e in &all {
            match e {
                QueueError::StaleReceipt
                | QueueError::Invalid(_)
                | QueueError::NotFound(_)
                | QueueError::Throttled(_)
                | QueueError::Unavailable(_)
                | QueueError::Timeout(_)
                | QueueError::Other(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_variant_maps_to_a_closed_set_code() {
        crate::error::check_port_error_codes(every_variant());
    }

    #[test]
    fn queue_errors_keep_their_transient_codes() {
        let cases = [
            (QueueError::Throttled("x".into()), ErrorCode::Throttled),
            (QueueError::Timeout("x".into()), ErrorCode::Timeout),
            (
                QueueError::Unavailable("x".into()),
                ErrorCode::StoreUnavailable,
            ),
            (QueueError::StaleReceipt, ErrorCode::Internal),
            (QueueError::Other("x".into()), ErrorCode::Internal),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e:?}");
        }
    }
}
