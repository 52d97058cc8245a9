//! `SqliteTopic`: SNS-like fan-out into `SqliteQueue`s of the same database.
//!
//! A publish evaluates every subscription's message-body filter policy and inserts one message
//! per matching queue in one transaction, so a publish reaches all matching queues or none.
//! Subscriptions with raw delivery get the message as published; the others get an SNS
//! envelope (`"Type":"Notification"`, `Message` a JSON string), as SNS sends to SQS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{TransactionBehavior, params};
use serde_json::Value;

use super::db::{Db, DbFailure, now_ms};
use super::filter_policy::FilterPolicy;
use super::sqlite_queue::{MAX_MESSAGE_BYTES, SCHEMA as QUEUE_SCHEMA, waker};
use crate::event::SnsEnvelope;
use crate::port::topic::{Topic, TopicError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS topic_subscriptions (
    topic TEXT NOT NULL,
    queue TEXT NOT NULL,
    filter_policy TEXT,
    raw_delivery INTEGER NOT NULL,
    PRIMARY KEY (topic, queue)
);
";

/// An SNS-like topic.
#[derive(Clone)]
pub struct SqliteTopic {
    db: Db,
    path: PathBuf,
    name: Arc<str>,
}

fn err(f: DbFailure) -> TopicError {
    match f {
        DbFailure::Transient(m) => TopicError::Unavailable(m),
        DbFailure::Permanent(m) => TopicError::Other(m),
    }
}

impl SqliteTopic {
    /// Open the queues database at `path` and address topic `name`.
    ///
    /// # Errors
    /// A classified failure opening the database.
    pub fn open(path: &Path, name: &str) -> Result<Self, TopicError> {
        let db = Db::open(path, &format!("{QUEUE_SCHEMA}{SCHEMA}")).map_err(err)?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            name: name.into(),
        })
    }

    /// The local ARN-like name shown in SNS envelopes.
    pub fn arn(&self) -> String {
        format!("arn:aws:sns:local:000000000000:{}", self.name)
    }

    /// Subscribe `queue` (idempotent; the latest policy wins). `filter_policy` is a
    /// message-body filter policy; `None` receives everything.
    ///
    /// # Errors
    /// [`TopicError::Invalid`] for a malformed policy, else a classified failure.
    pub async fn subscribe(
        &self,
        queue: &str,
        filter_policy: Option<Value>,
        raw_delivery: bool,
    ) -> Result<(), TopicError> {
        if let Some(p) = &filter_policy {
            FilterPolicy::parse(p).map_err(|e| TopicError::Invalid(e.to_string()))?;
        }
        let (topic, queue) = (self.name.to_string(), queue.to_owned());
        let policy = filter_policy.map(|p| p.to_string());
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO topic_subscriptions (topic, queue, filter_policy, raw_delivery)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT(topic, queue)
                     DO UPDATE SET filter_policy = ?3, raw_delivery = ?4",
                    params![topic, queue, policy, raw_delivery],
                )?;
                Ok(())
            })
            .await
            .map_err(err)
    }
}

#[async_trait]
impl Topic for SqliteTopic {
    async fn publish(&self, message: &str) -> Result<String, TopicError> {
        if message.is_empty() || message.len() > MAX_MESSAGE_BYTES {
            return Err(TopicError::Invalid(format!(
                "message of {} bytes",
                message.len()
            )));
        }
        let parsed: Option<Value> = serde_json::from_str(message).ok();
        let message_id = uuid::Uuid::new_v4().to_string();
        let (topic, arn, msg, mid) = (
            self.name.to_string(),
            self.arn(),
            message.to_owned(),
            message_id.clone(),
        );
        let delivered: Vec<String> = self
            .db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let subs: Vec<(String, Option<String>, bool)> = tx
                    .prepare_cached(
                        "SELECT queue, filter_policy, raw_delivery FROM topic_subscriptions
                         WHERE topic = ?1",
                    )?
                    .query_map(params![topic], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                let now = now_ms();
                let mut envelope_body: Option<String> = None;
                let mut delivered = Vec::new();
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO queue_messages (queue, id, body, sent_at_ms, visible_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?4)",
                    )?;
                    for (queue, policy, raw) in subs {
                        let matches = match policy {
                            None => true,
                            Some(p) => {
                                let policy = serde_json::from_str::<Value>(&p)
                                    .ok()
                                    .and_then(|v| FilterPolicy::parse(&v).ok());
                                match (policy, &parsed) {
                                    (Some(policy), Some(m)) => policy.matches(m),
                                    _ => false,
                                }
                            }
                        };
                        if !matches {
                            continue;
                        }
                        let body = if raw {
                            msg.clone()
                        } else {
                            envelope_body
                                .get_or_insert_with(|| envelope(&arn, &mid, &msg))
                                .clone()
                        };
                        insert.execute(params![
                            queue,
                            uuid::Uuid::new_v4().to_string(),
                            body,
                            now
                        ])?;
                        delivered.push(queue);
                    }
                }
                tx.commit()?;
                Ok(delivered)
            })
            .await
            .map_err(err)?;
        for q in delivered {
            waker(&self.path, &q).notify_waiters();
        }
        Ok(message_id)
    }
}

fn envelope(arn: &str, message_id: &str, message: &str) -> String {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("now formats as RFC 3339");
    let mut extra = serde_json::Map::new();
    for (k, v) in [
        ("SignatureVersion", "1"),
        ("Signature", ""),
        ("SigningCertURL", ""),
        ("UnsubscribeURL", ""),
    ] {
        extra.insert(k.into(), Value::String(v.into()));
    }
    let env = SnsEnvelope {
        kind: "Notification".into(),
        message_id: message_id.into(),
        topic_arn: Some(arn.into()),
        subject: None,
        message: message.into(),
        timestamp: Some(now),
        extra,
    };
    serde_json::to_string(&env).expect("an envelope always serialises")
}
