//! `SqsQueue`: a standard SQS queue and its dead-letter queue on aws-sdk-sqs.
//!
//! - `receive` long-polls (`WaitTimeSeconds` ≤ 20, the client's attempt timeout is 30 s) for at
//!   most 10 messages, asking for `ApproximateReceiveCount` and `SentTimestamp`.
//! - `ack_batch` sends `DeleteMessageBatch` in chunks of 10 and reports every `Failed[]` entry:
//!   the call answers 200 even when entries fail.
//! - `dead_letter` sends the body to the DLQ with the reason as message attributes
//!   (`prism-error-code`, `prism-worker`, `prism-reason`, `prism-receive-count`,
//!   `prism-sent-at`), then deletes the original with its latest receipt.
//! - `redrive` starts an SQS `StartMessageMoveTask` from the DLQ back to the source queue; where
//!   the endpoint does not implement it (moto), it moves the messages itself.
//! - `stats` reads the approximate depths; SQS has no API for the oldest message's age (it is a
//!   CloudWatch metric), so `oldest_age` is `None`.
//!
//! A stale or unknown receipt (`ReceiptHandleIsInvalid`, `MessageNotInflight`,
//! `InvalidIdFormat`) is [`QueueError::StaleReceipt`]; other failures go through
//! [`super::classify`].

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName,
};
use time::OffsetDateTime;

use aws_smithy_types::error::metadata::ProvideErrorMetadata as _;

use super::Clients;
use super::classify::{Fault, by_status_and_code, classify, describe};
use crate::error::ErrorCode;
use crate::port::queue::{DeadLetter, DeadLetterInfo, Message, Queue, QueueError, QueueStats};
use crate::telemetry::metrics::{Port, RequestTimer};

/// Most messages one `ReceiveMessage` or `DeleteMessageBatch` handles.
pub const SQS_BATCH: usize = 10;
/// Longest long-poll wait SQS accepts.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// Largest body SQS accepts.
pub const MAX_BODY: usize = 1_048_576;

const ATTR_CODE: &str = "prism-error-code";
const ATTR_WORKER: &str = "prism-worker";
const ATTR_REASON: &str = "prism-reason";
const ATTR_RECEIVES: &str = "prism-receive-count";
const ATTR_SENT: &str = "prism-sent-at";

type SdkError<E> = aws_sdk_sqs::error::SdkError<E, aws_smithy_runtime_api::http::Response>;

fn classified<E>(op: &str, e: &SdkError<E>) -> QueueError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    let what = format!("SQS {op}: {}", describe(e));
    match classify(e) {
        Fault::Throttled => QueueError::Throttled(what),
        Fault::Unavailable => QueueError::Unavailable(what),
        Fault::Timeout => QueueError::Timeout(what),
        Fault::Permanent => QueueError::Other(what),
    }
}

/// Whether `body` is something SQS accepts: non-empty, at most 1 MiB, and only the characters
/// `#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF`.
pub fn check_body(body: &str) -> Result<(), QueueError> {
    if body.is_empty() {
        return Err(QueueError::Invalid("empty message body".into()));
    }
    if body.len() > MAX_BODY {
        return Err(QueueError::Invalid(format!(
            "message body of {} bytes exceeds SQS's {MAX_BODY}",
            body.len()
        )));
    }
    if let Some(c) = body.chars().find(|c| {
        let c = u32::from(*c);
        !(c == 0x9
            || c == 0xA
            || c == 0xD
            || (0x20..=0xD7FF).contains(&c)
            || (0xE000..=0xFFFD).contains(&c)
            || c >= 0x10000)
    }) {
        return Err(QueueError::Invalid(format!(
            "message body contains U+{:04X}, which SQS rejects",
            u32::from(c)
        )));
    }
    Ok(())
}

/// Whole seconds for a visibility timeout or wait, rounded up (SQS has 1 s granularity).
fn ceil_secs(d: Duration) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(s).unwrap_or(i32::MAX)
}

/// A standard SQS queue with its DLQ.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    sqs: aws_sdk_sqs::Client,
    name: String,
    url: String,
    dlq_url: String,
}

impl SqsQueue {
    /// The queue at `url` whose redrive policy points to `dlq_url`; `name` labels metrics.
    pub fn new(clients: &Clients, name: &str, url: &str, dlq_url: &str) -> Self {
        Self {
            sqs: clients.sqs.clone(),
            name: name.to_owned(),
            url: url.to_owned(),
            dlq_url: dlq_url.to_owned(),
        }
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The DLQ URL.
    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    async fn attributes(
        &self,
        url: &str,
        names: &[QueueAttributeName],
    ) -> Result<HashMap<QueueAttributeName, String>, QueueError> {
        let timer = RequestTimer::start(Port::Queue, "sqs", "get_queue_attributes");
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await;
        timer.finish(out.is_ok());
        match out {
            Ok(o) => Ok(o.attributes().cloned().unwrap_or_default()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) =>
            {
                Err(QueueError::NotFound(url.to_owned()))
            }
            Err(e) => Err(classified("GetQueueAttributes", &e)),
        }
    }

    async fn count(&self, url: &str, name: QueueAttributeName) -> Result<u64, QueueError> {
        let attrs = self.attributes(url, std::slice::from_ref(&name)).await?;
        Ok(attrs.get(&name).and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    async fn receive_from(
        &self,
        url: &str,
        max: usize,
        wait: Duration,
        visibility: Option<Duration>,
    ) -> Result<Vec<aws_sdk_sqs::types::Message>, QueueError> {
        let timer = RequestTimer::start(Port::Queue, "sqs", "receive");
        let mut req = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::try_from(max.clamp(1, SQS_BATCH)).unwrap_or(10))
            .wait_time_seconds(ceil_secs(wait.min(MAX_WAIT)))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All");
        if let Some(v) = visibility {
            req = req.visibility_timeout(ceil_secs(v));
        }
        let out = req.send().await;
        timer.finish(out.is_ok());
        match out {
            Ok(o) => Ok(o.messages.unwrap_or_default()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) =>
            {
                Err(QueueError::NotFound(url.to_owned()))
            }
            Err(e) => Err(classified("ReceiveMessage", &e)),
        }
    }

    async fn delete_from(&self, url: &str, receipt: &str) -> Result<(), QueueError> {
        let timer = RequestTimer::start(Port::Queue, "sqs", "delete");
        let out = self
            .sqs
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await;
        timer.finish(out.is_ok());
        match out {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_receipt_handle_is_invalid() || s.is_invalid_id_format()
                }) =>
            {
                Err(QueueError::StaleReceipt)
            }
            Err(e) => Err(classified("DeleteMessage", &e)),
        }
    }

    async fn send_to(
        &self,
        url: &str,
        body: &str,
        attributes: Option<HashMap<String, MessageAttributeValue>>,
    ) -> Result<String, QueueError> {
        check_body(body)?;
        let timer = RequestTimer::start(Port::Queue, "sqs", "send");
        let out = self
            .sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .set_message_attributes(attributes)
            .send()
            .await;
        timer.finish(out.is_ok());
        match out {
            Ok(o) => Ok(o.message_id.unwrap_or_default()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) =>
            {
                Err(QueueError::NotFound(url.to_owned()))
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_invalid_message_contents()) =>
            {
                Err(QueueError::Invalid(describe(&e)))
            }
            Err(e) => Err(classified("SendMessage", &e)),
        }
    }

    /// Move every DLQ message back by receiving, re-sending and deleting it (the fallback where
    /// `StartMessageMoveTask` is not implemented).
    async fn move_back_by_hand(&self) -> Result<u64, QueueError> {
        let mut moved = 0;
        loop {
            let batch = self
                .receive_from(
                    &self.dlq_url,
                    SQS_BATCH,
                    Duration::ZERO,
                    Some(Duration::from_secs(30)),
                )
                .await?;
            if batch.is_empty() {
                return Ok(moved);
            }
            for m in batch {
                let body = m.body().unwrap_or_default();
                if !body.is_empty() {
                    self.send_to(&self.url, body, None).await?;
                }
                if let Some(r) = m.receipt_handle() {
                    self.delete_from(&self.dlq_url, r).await?;
                }
                moved += 1;
            }
        }
    }
}

fn string_attr(v: &str) -> Option<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .ok()
}

fn number_attr(v: i128) -> Option<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(v.to_string())
        .build()
        .ok()
}

fn system_attr(m: &aws_sdk_sqs::types::Message, name: MessageSystemAttributeName) -> Option<&str> {
    m.attributes()
        .and_then(|a| a.get(&name))
        .map(String::as_str)
}

fn sent_at(ms: Option<&str>) -> OffsetDateTime {
    ms.and_then(|v| v.parse::<i128>().ok())
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok())
        .unwrap_or_else(OffsetDateTime::now_utc)
}

fn user_attr<'a>(m: &'a aws_sdk_sqs::types::Message, name: &str) -> Option<&'a str> {
    m.message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value())
}

fn to_message(m: aws_sdk_sqs::types::Message) -> Option<Message> {
    let receipt = m.receipt_handle()?.to_owned();
    Some(Message {
        id: m.message_id().unwrap_or_default().to_owned(),
        receive_count: system_attr(&m, MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
        sent_at: sent_at(system_attr(&m, MessageSystemAttributeName::SentTimestamp)),
        body: m.body.unwrap_or_default(),
        receipt,
    })
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, body: &str) -> Result<String, QueueError> {
        self.send_to(&self.url, body, None).await
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, QueueError> {
        Ok(self
            .receive_from(&self.url, max, wait, None)
            .await?
            .into_iter()
            .filter_map(to_message)
            .collect())
    }

    async fn extend_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        let timer = RequestTimer::start(Port::Queue, "sqs", "extend_visibility");
        let out = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(ceil_secs(timeout).min(43_200))
            .send()
            .await;
        timer.finish(out.is_ok());
        match out {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_receipt_handle_is_invalid() || s.is_message_not_inflight()
                }) =>
            {
                Err(QueueError::StaleReceipt)
            }
            Err(e) => Err(classified("ChangeMessageVisibility", &e)),
        }
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.delete_from(&self.url, receipt).await
    }

    async fn ack_batch(
        &self,
        receipts: &[String],
    ) -> Result<Vec<(String, QueueError)>, QueueError> {
        let mut failed = Vec::new();
        for chunk in receipts.chunks(SQS_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .map_err(|e| QueueError::Other(format!("batch entry: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let timer = RequestTimer::start(Port::Queue, "sqs", "ack_batch");
            let out = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await;
            timer.finish(out.is_ok());
            let out = out.map_err(|e| classified("DeleteMessageBatch", &e))?;
            // 200 even when entries fail: every Failed[] entry is reported.
            for f in out.failed() {
                let Some(receipt) = f.id().parse::<usize>().ok().and_then(|i| chunk.get(i)) else {
                    continue;
                };
                let err = match f.code() {
                    "ReceiptHandleIsInvalid" | "InvalidIdFormat" | "MessageNotInflight" => {
                        QueueError::StaleReceipt
                    }
                    code => {
                        let what = format!(
                            "SQS DeleteMessageBatch entry: {code}: {}",
                            f.message().unwrap_or("no message")
                        );
                        if f.sender_fault() {
                            QueueError::Other(what)
                        } else {
                            match by_status_and_code(500, Some(code)) {
                                Fault::Throttled => QueueError::Throttled(what),
                                _ => QueueError::Unavailable(what),
                            }
                        }
                    }
                };
                failed.push((receipt.clone(), err));
            }
        }
        Ok(failed)
    }

    async fn dead_letter(
        &self,
        message: &Message,
        info: &DeadLetterInfo,
    ) -> Result<(), QueueError> {
        let attrs: HashMap<String, MessageAttributeValue> = [
            (ATTR_CODE, string_attr(info.error_code.as_str())),
            (ATTR_WORKER, string_attr(&info.worker)),
            // Attribute values share the 256 KiB message limit: keep reasons short.
            (
                ATTR_REASON,
                string_attr(&info.reason.chars().take(4096).collect::<String>()),
            ),
            (
                ATTR_RECEIVES,
                number_attr(i128::from(message.receive_count)),
            ),
            (
                ATTR_SENT,
                number_attr(message.sent_at.unix_timestamp_nanos() / 1_000_000),
            ),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
        self.send_to(&self.dlq_url, &message.body, Some(attrs))
            .await?;
        self.delete_from(&self.url, &message.receipt).await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let attrs = self
            .attributes(
                &self.url,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ],
            )
            .await?;
        let get = |n: &QueueAttributeName| {
            attrs
                .get(n)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(QueueStats {
            visible: get(&QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            dlq_visible: self
                .count(
                    &self.dlq_url,
                    QueueAttributeName::ApproximateNumberOfMessages,
                )
                .await?,
            oldest_age: None,
        })
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        // Peek: receive with visibility 0 so the messages stay where they are (SQS counts the
        // peek as a receive, like the console does), until a round brings nothing new.
        let mut out: Vec<DeadLetter> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..(max / SQS_BATCH + 5) {
            if out.len() >= max {
                break;
            }
            let batch = self
                .receive_from(
                    &self.dlq_url,
                    SQS_BATCH,
                    Duration::ZERO,
                    Some(Duration::ZERO),
                )
                .await?;
            let mut new = 0;
            for m in batch {
                let id = m.message_id().unwrap_or_default().to_owned();
                if !seen.insert(id.clone()) || out.len() >= max {
                    continue;
                }
                new += 1;
                let info = user_attr(&m, ATTR_CODE).map(|code| DeadLetterInfo {
                    error_code: ErrorCode::from_label_or_internal(code),
                    worker: user_attr(&m, ATTR_WORKER).unwrap_or_default().to_owned(),
                    reason: user_attr(&m, ATTR_REASON).unwrap_or_default().to_owned(),
                });
                let receives = user_attr(&m, ATTR_RECEIVES)
                    .and_then(|v| v.parse().ok())
                    .or_else(|| {
                        system_attr(&m, MessageSystemAttributeName::ApproximateReceiveCount)
                            .and_then(|v| v.parse::<u32>().ok())
                            .map(|n| n.saturating_sub(1))
                    })
                    .unwrap_or(0);
                let sent = user_attr(&m, ATTR_SENT)
                    .or_else(|| system_attr(&m, MessageSystemAttributeName::SentTimestamp));
                out.push(DeadLetter {
                    id,
                    receive_count: receives,
                    sent_at: sent_at(sent),
                    info,
                    body: m.body.unwrap_or_default(),
                });
            }
            if new == 0 {
                break;
            }
        }
        Ok(out)
    }

    async fn redrive(&self) -> Result<u64, QueueError> {
        let pending = self
            .count(
                &self.dlq_url,
                QueueAttributeName::ApproximateNumberOfMessages,
            )
            .await?;
        if pending == 0 {
            return Ok(0);
        }
        let arn = |attrs: HashMap<QueueAttributeName, String>| {
            attrs
                .get(&QueueAttributeName::QueueArn)
                .cloned()
                .ok_or_else(|| QueueError::Other("queue has no ARN attribute".into()))
        };
        let dlq_arn = arn(self
            .attributes(&self.dlq_url, &[QueueAttributeName::QueueArn])
            .await?)?;
        let source_arn = arn(self
            .attributes(&self.url, &[QueueAttributeName::QueueArn])
            .await?)?;
        let out = self
            .sqs
            .start_message_move_task()
            .source_arn(dlq_arn)
            .destination_arn(source_arn)
            .send()
            .await;
        match out {
            Ok(_) => Ok(pending),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_unsupported_operation()) =>
            {
                self.move_back_by_hand().await
            }
            Err(aws_sdk_sqs::error::SdkError::ServiceError(s))
                if matches!(s.raw().status().as_u16(), 404 | 405 | 501)
                    || s.err().code().is_none() =>
            {
                // An emulator without the action (moto answers it as an unknown operation).
                tracing::warn!(
                    queue = %self.name,
                    "StartMessageMoveTask is not available here; moving the messages by hand."
                );
                self.move_back_by_hand().await
            }
            Err(e) => Err(classified("StartMessageMoveTask", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked_like_sqs_does() {
        assert!(matches!(check_body(""), Err(QueueError::Invalid(_))));
        assert!(check_body("{\"k\":\"ünï 🦀\\n\",\"tab\":\"\t\"}").is_ok());
        assert!(matches!(check_body("a\u{1}b"), Err(QueueError::Invalid(_))));
        assert!(matches!(
            check_body("\u{FFFE}"),
            Err(QueueError::Invalid(_))
        ));
        assert!(matches!(
            check_body(&"x".repeat(MAX_BODY + 1)),
            Err(QueueError::Invalid(_))
        ));
        assert!(check_body(&"x".repeat(MAX_BODY)).is_ok());
    }

    #[test]
    fn durations_round_up_to_whole_seconds() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(25)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(20)), 20);
        assert_eq!(ceil_secs(Duration::from_millis(20_001)), 21);
    }
}
