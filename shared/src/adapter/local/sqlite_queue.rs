//! `SqliteQueue`: an SQS-like queue in SQLite, safe for several processes on one data dir.
//!
//! All queues of a data dir share one table keyed by queue name (one table per queue would add
//! DDL per queue and gain nothing: every statement is indexed by `(queue, visible_at_ms)`).
//!
//! Semantics, matching SQS standard queues:
//! - `receive` hands out up to N messages whose visibility deadline has passed, sets a new
//!   deadline and a fresh receipt, and increments the receive count. Long polling waits up to
//!   `wait`; in-process senders wake waiters at once, other processes are seen by polling.
//! - A receipt is valid until the message is received again: ack or extend with an older
//!   receipt fails with `StaleReceipt` and changes nothing.
//! - Redrive: a message that becomes receivable after `max_receive_count` receives moves to the
//!   DLQ instead of being delivered (SQS does this lazily on receive too).
//! - `dead_letter` moves a message to the DLQ with a reason atomically (SQS needs send + delete).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use tokio::sync::Notify;

use super::db::{Db, DbFailure, from_ms, ms, now_ms};
use crate::port::queue::{
    DeadLetter, DeadLetterInfo, Message, Queue, QueueError, QueueSettings, QueueStats,
};

/// Most messages one receive returns (SQS allows 10; a local transaction can take many more,
/// which is what lets the archiver drain fast).
pub const MAX_RECEIVE_BATCH: usize = 1000;

/// Largest message body, as SQS: 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_config (
    name TEXT PRIMARY KEY,
    dlq TEXT,
    visibility_timeout_ms INTEGER NOT NULL,
    max_receive_count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    dead_letter TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_ready ON queue_messages (queue, visible_at_ms);
";

/// In-process wake-ups, keyed by database path and queue name, so `prism dev` (one process)
/// delivers with no polling delay.
type WakerMap = HashMap<(PathBuf, String), Arc<Notify>>;
static WAKERS: LazyLock<Mutex<WakerMap>> = LazyLock::new(|| Mutex::new(HashMap::new()));

pub(crate) fn waker(path: &Path, queue: &str) -> Arc<Notify> {
    let mut map = WAKERS.lock().unwrap_or_else(|p| p.into_inner());
    map.entry((path.to_path_buf(), queue.to_owned()))
        .or_default()
        .clone()
}

/// An SQS-like queue in SQLite.
#[derive(Clone)]
pub struct SqliteQueue {
    db: Db,
    settings: Arc<QueueSettings>,
    wake: Arc<Notify>,
    wake_dlq: Arc<Notify>,
    poll_interval: Duration,
}

fn err(f: DbFailure) -> QueueError {
    match f {
        DbFailure::Transient(m) => QueueError::Unavailable(m),
        DbFailure::Permanent(m) => QueueError::Other(m),
    }
}

fn new_receipt(seq: i64) -> String {
    format!("{seq}.{:016x}", rand::rng().random::<u64>())
}

fn receipt_seq(receipt: &str) -> Option<i64> {
    receipt.split_once('.')?.0.parse().ok()
}

/// SQS accepts only these characters (`#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF`).
fn valid_body(body: &str) -> Result<(), QueueError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(QueueError::Invalid(format!(
            "body is {} bytes, above the {MAX_MESSAGE_BYTES}-byte limit",
            body.len()
        )));
    }
    if body.is_empty() {
        return Err(QueueError::Invalid("body is empty".into()));
    }
    if let Some(c) = body.chars().find(|&c| {
        !matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
    }) {
        return Err(QueueError::Invalid(format!("character U+{:04X} is not allowed", c as u32)));
    }
    Ok(())
}

impl SqliteQueue {
    /// Open the queues database at `path` and declare the queue and its DLQ (idempotent; the
    /// latest settings win).
    ///
    /// # Errors
    /// A classified failure opening the database.
    pub async fn open(path: &Path, settings: QueueSettings) -> Result<Self, QueueError> {
        let db = Db::open(path, SCHEMA).map_err(err)?;
        let s = settings.clone();
        db.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO queue_config (name, dlq, visibility_timeout_ms, max_receive_count)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET dlq = ?2, visibility_timeout_ms = ?3,
                 max_receive_count = ?4",
                params![
                    s.name,
                    s.dlq_name,
                    ms(s.visibility_timeout),
                    s.max_receive_count
                ],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO queue_config (name, dlq, visibility_timeout_ms,
                 max_receive_count) VALUES (?1, NULL, ?2, 0)",
                params![s.dlq_name, ms(s.visibility_timeout)],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(err)?;
        Ok(Self {
            wake: waker(path, &settings.name),
            wake_dlq: waker(path, &settings.dlq_name),
            db,
            settings: Arc::new(settings),
            poll_interval: Duration::from_millis(50),
        })
    }

    /// The queue's settings.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// Send up to many messages in one transaction (used by benchmarks and replay).
    ///
    /// # Errors
    /// A classified failure; nothing is sent on error.
    pub async fn send_batch(&self, bodies: Vec<String>) -> Result<Vec<String>, QueueError> {
        for b in &bodies {
            valid_body(b)?;
        }
        let queue = self.settings.name.clone();
        let ids = self
            .db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = now_ms();
                let mut ids = Vec::with_capacity(bodies.len());
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO queue_messages (queue, id, body, sent_at_ms, visible_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?4)",
                    )?;
                    for body in &bodies {
                        let id = uuid::Uuid::new_v4().to_string();
                        stmt.execute(params![queue, id, body, now])?;
                        ids.push(id);
                    }
                }
                tx.commit()?;
                Ok(ids)
            })
            .await
            .map_err(err)?;
        self.wake.notify_waiters();
        Ok(ids)
    }

    async fn try_receive(&self, max: usize) -> Result<Vec<Message>, QueueError> {
        let s = self.settings.clone();
        let moved_to_dlq;
        let msgs;
        (msgs, moved_to_dlq) = self
            .db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = now_ms();
                let mut out = Vec::new();
                let mut moved = 0usize;
                {
                    let mut select = tx.prepare_cached(
                        "SELECT seq, id, body, receive_count, sent_at_ms FROM queue_messages
                         WHERE queue = ?1 AND visible_at_ms <= ?2
                         ORDER BY visible_at_ms, seq LIMIT ?3",
                    )?;
                    let mut take = tx.prepare_cached(
                        "UPDATE queue_messages SET receipt = ?2, visible_at_ms = ?3,
                         receive_count = receive_count + 1 WHERE seq = ?1",
                    )?;
                    let mut to_dlq = tx.prepare_cached(
                        "UPDATE queue_messages SET queue = ?2, visible_at_ms = ?3, receipt = NULL
                         WHERE seq = ?1",
                    )?;
                    // Messages past max_receive_count are moved, not delivered; keep selecting
                    // until `max` deliverable ones are found or none remain.
                    loop {
                        let want = max - out.len();
                        let rows: Vec<(i64, String, String, u32, i64)> = select
                            .query_map(params![s.name, now, want as i64], |r| {
                                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                            })?
                            .collect::<Result<_, _>>()?;
                        if rows.is_empty() {
                            break;
                        }
                        for (seq, id, body, count, sent) in rows {
                            if s.max_receive_count > 0 && count >= s.max_receive_count {
                                to_dlq.execute(params![seq, s.dlq_name, now])?;
                                moved += 1;
                                continue;
                            }
                            let receipt = new_receipt(seq);
                            take.execute(params![seq, receipt, now + ms(s.visibility_timeout)])?;
                            out.push(Message {
                                id,
                                receipt,
                                body,
                                receive_count: count + 1,
                                sent_at: from_ms(sent),
                            });
                        }
                        if out.len() >= max {
                            break;
                        }
                    }
                }
                tx.commit()?;
                Ok((out, moved))
            })
            .await
            .map_err(err)?;
        if moved_to_dlq > 0 {
            self.wake_dlq.notify_waiters();
        }
        Ok(msgs)
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn send(&self, body: &str) -> Result<String, QueueError> {
        let mut ids = self.send_batch(vec![body.to_owned()]).await?;
        Ok(ids.pop().expect("one body yields one id"))
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, QueueError> {
        let max = max.clamp(1, MAX_RECEIVE_BATCH);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for the wake-up before looking, so a send between the look and the
            // wait is not missed.
            let notified = self.wake.notified();
            let msgs = self.try_receive(max).await?;
            let now = tokio::time::Instant::now();
            if !msgs.is_empty() || now >= deadline {
                return Ok(msgs);
            }
            let nap = self.poll_interval.min(deadline - now);
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn extend_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        let seq = receipt_seq(receipt).ok_or(QueueError::StaleReceipt)?;
        let receipt = receipt.to_owned();
        let n = self
            .db
            .call(move |c| {
                Ok(c.execute(
                    "UPDATE queue_messages SET visible_at_ms = ?3 WHERE seq = ?1 AND receipt = ?2",
                    params![seq, receipt, now_ms() + ms(timeout)],
                )?)
            })
            .await
            .map_err(err)?;
        if n == 0 {
            return Err(QueueError::StaleReceipt);
        }
        if timeout.is_zero() {
            self.wake.notify_waiters();
        }
        Ok(())
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        let mut failed = self.ack_batch(&[receipt.to_owned()]).await?;
        match failed.pop() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    async fn ack_batch(
        &self,
        receipts: &[String],
    ) -> Result<Vec<(String, QueueError)>, QueueError> {
        let receipts = receipts.to_vec();
        let queue = self.settings.name.clone();
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut failed = Vec::new();
                {
                    let mut del = tx.prepare_cached(
                        "DELETE FROM queue_messages WHERE seq = ?1 AND receipt = ?2 AND queue = ?3",
                    )?;
                    for r in receipts {
                        let n = match receipt_seq(&r) {
                            Some(seq) => del.execute(params![seq, r, queue])?,
                            None => 0,
                        };
                        if n == 0 {
                            failed.push((r, QueueError::StaleReceipt));
                        }
                    }
                }
                tx.commit()?;
                Ok(failed)
            })
            .await
            .map_err(err)
    }

    async fn dead_letter(
        &self,
        message: &Message,
        info: &DeadLetterInfo,
    ) -> Result<(), QueueError> {
        let seq = receipt_seq(&message.receipt).ok_or(QueueError::StaleReceipt)?;
        let receipt = message.receipt.clone();
        let dlq = self.settings.dlq_name.clone();
        let info = serde_json::to_string(info).map_err(|e| QueueError::Other(e.to_string()))?;
        let n = self
            .db
            .call(move |c| {
                Ok(c.execute(
                    "UPDATE queue_messages SET queue = ?3, dead_letter = ?4, visible_at_ms = ?5,
                     receipt = NULL WHERE seq = ?1 AND receipt = ?2",
                    params![seq, receipt, dlq, info, now_ms()],
                )?)
            })
            .await
            .map_err(err)?;
        if n == 0 {
            return Err(QueueError::StaleReceipt);
        }
        self.wake_dlq.notify_waiters();
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let s = self.settings.clone();
        self.db
            .call(move |c| {
                let now = now_ms();
                let (visible, in_flight, oldest): (i64, i64, Option<i64>) = c.query_row(
                    "SELECT COALESCE(SUM(visible_at_ms <= ?2), 0), COALESCE(SUM(visible_at_ms > ?2), 0),
                     MIN(sent_at_ms) FROM queue_messages WHERE queue = ?1",
                    params![s.name, now],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                let dlq: i64 = c.query_row(
                    "SELECT COUNT(*) FROM queue_messages WHERE queue = ?1",
                    params![s.dlq_name],
                    |r| r.get(0),
                )?;
                Ok(QueueStats {
                    visible: visible.max(0) as u64,
                    in_flight: in_flight.max(0) as u64,
                    dlq_visible: dlq.max(0) as u64,
                    oldest_age: oldest.map(|t| Duration::from_millis((now - t).max(0) as u64)),
                })
            })
            .await
            .map_err(err)
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let dlq = self.settings.dlq_name.clone();
        self.db
            .call(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT id, body, receive_count, dead_letter, sent_at_ms FROM queue_messages
                     WHERE queue = ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = stmt
                    .query_map(params![dlq, max as i64], |r| {
                        let info: Option<String> = r.get(3)?;
                        Ok(DeadLetter {
                            id: r.get(0)?,
                            body: r.get(1)?,
                            receive_count: r.get(2)?,
                            info: info.and_then(|s| serde_json::from_str(&s).ok()),
                            sent_at: from_ms(r.get(4)?),
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
            .map_err(err)
    }

    async fn redrive(&self) -> Result<u64, QueueError> {
        let s = self.settings.clone();
        let n = self
            .db
            .call(move |c| {
                // Like SQS StartMessageMoveTask: a new id, receive count reset, visible now.
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let seqs: Vec<i64> = tx
                    .prepare("SELECT seq FROM queue_messages WHERE queue = ?1")?
                    .query_map(params![s.dlq_name], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                {
                    let mut up = tx.prepare(
                        "UPDATE queue_messages SET queue = ?2, id = ?3, receive_count = 0,
                         dead_letter = NULL, receipt = NULL, visible_at_ms = ?4 WHERE seq = ?1",
                    )?;
                    let now = now_ms();
                    for seq in &seqs {
                        up.execute(params![seq, s.name, uuid::Uuid::new_v4().to_string(), now])?;
                    }
                }
                tx.commit()?;
                Ok(seqs.len() as u64)
            })
            .await
            .map_err(err)?;
        self.wake.notify_waiters();
        Ok(n)
    }
}

/// Look up one message's receive count by id (tests and tooling).
///
/// # Errors
/// A classified failure.
pub async fn receive_count_of(queue: &SqliteQueue, id: &str) -> Result<Option<u32>, QueueError> {
    let id = id.to_owned();
    queue
        .db
        .call(move |c| {
            Ok(c.query_row(
                "SELECT receive_count FROM queue_messages WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_validation_matches_sqs() {
        assert!(valid_body("ok\t\n\r").is_ok());
        assert!(valid_body("\u{1}").is_err());
        assert!(valid_body("").is_err());
        assert!(valid_body(&"x".repeat(MAX_MESSAGE_BYTES + 1)).is_err());
        assert!(valid_body("emoji 🦀").is_ok());
    }

    #[test]
    fn receipts_parse() {
        let r = new_receipt(42);
        assert_eq!(receipt_seq(&r), Some(42));
        assert_eq!(receipt_seq("garbage"), None);
    }
}
