//! `SqliteMetadataStore`: batches and files in SQLite, with the conditional semantics of the
//! DynamoDB adapter.
//!
//! Every transition is one `BEGIN IMMEDIATE` transaction: read the file's status, update it when
//! the move is allowed, bump the batch's version, take the file off its principal's pending
//! uploads when it leaves `awaiting_upload`, and, when it made the file terminal, check whether
//! any file of the batch is still open; the transaction that closes the last one sets
//! `completed_at`, and is the only one to report `batch_completed`. Counts are derived from the
//! file rows at read time, so duplicates and reordering cannot skew them.
//!
//! The upload quota is a counter per principal (`pending_uploads`), checked and raised in the
//! transaction that creates a batch. A batch's idempotency key is a row of `idempotency_keys`
//! (unique per principal and key) inserted in the same transaction, and expires with the batch's
//! upload grants. Webhook deliveries wait in `webhooks`; a claim moves a
//! delivery's `due_at` to the end of its lease, and recording an attempt is conditioned on that
//! value, so a claimer whose lease ran out cannot overwrite the next claimer's outcome.

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;

use super::db::{Db, DbFailure};
use crate::port::metadata_store::{
    BatchCounts, BatchRecord, BatchStatus, BatchTrace, BatchVersion, ExpiredFile, FileError,
    FileRecord, FileStatus, MetadataStore, MetadataStoreError, NewBatch, NewWebhook, RenderedFile,
    Transition, WebhookAttempt, WebhookJob, WebhookState, WebhookStatus,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    completed_at INTEGER,
    announced_at INTEGER,
    request TEXT NOT NULL,
    callback_url TEXT,
    traceparent TEXT
);
CREATE INDEX IF NOT EXISTS batches_created ON batches (created_at);
CREATE INDEX IF NOT EXISTS batches_principal ON batches (principal, expires_at);
CREATE TABLE IF NOT EXISTS files (
    batch_id TEXT NOT NULL REFERENCES batches (batch_id),
    file_id TEXT NOT NULL,
    ord INTEGER NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    rendered TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (batch_id, file_id)
);
CREATE INDEX IF NOT EXISTS files_id ON files (file_id);
CREATE TABLE IF NOT EXISTS image_requests (
    image_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (image_id, event_id)
);
CREATE INDEX IF NOT EXISTS files_awaiting ON files (batch_id) WHERE status = 'awaiting_upload';
CREATE INDEX IF NOT EXISTS batches_expires ON batches (expires_at);
CREATE TABLE IF NOT EXISTS batch_versions (
    batch_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_uploads (
    principal TEXT PRIMARY KEY,
    pending INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY);
INSERT OR IGNORE INTO pending_uploads (principal, pending)
    SELECT b.principal, COUNT(*) FROM files f JOIN batches b ON b.batch_id = f.batch_id
    WHERE f.status = 'awaiting_upload'
    AND NOT EXISTS (SELECT 1 FROM migrations WHERE name = 'pending_uploads')
    GROUP BY b.principal;
INSERT OR IGNORE INTO migrations (name) VALUES ('pending_uploads');
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    due_at INTEGER,
    last_at INTEGER,
    last_status INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhooks_due ON webhooks (due_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhooks_batch ON webhooks (batch_id);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expires ON idempotency_keys (expires_at);
";

fn err(f: DbFailure) -> MetadataStoreError {
    match f {
        DbFailure::Transient(m) => MetadataStoreError::Unavailable(m),
        DbFailure::Permanent(m) => MetadataStoreError::Other(m),
    }
}

fn ns(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

fn from_us(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn json_err(e: serde_json::Error) -> DbFailure {
    DbFailure::Permanent(format!("stored JSON is invalid: {e}"))
}

/// Batch and file metadata in SQLite.
#[derive(Clone)]
pub struct SqliteMetadataStore {
    db: Db,
}

impl SqliteMetadataStore {
    /// Open (creating) the metadata database at `path`.
    ///
    /// # Errors
    /// A classified failure opening the database.
    pub fn open(path: &Path) -> Result<Self, MetadataStoreError> {
        Ok(Self {
            db: Db::open(path, SCHEMA).map_err(err)?,
        })
    }

    async fn transition(
        &self,
        batch_id: &str,
        file_id: &str,
        to: FileStatus,
        error: Option<String>,
        rendered: Option<String>,
        at: OffsetDateTime,
    ) -> Result<Transition, MetadataStoreError> {
        let (b, f) = (batch_id.to_owned(), file_id.to_owned());
        let outcome = self
            .db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let t = transition_in(&tx, &b, &f, to, error, rendered, at)?;
                tx.commit()?;
                Ok(t)
            })
            .await
            .map_err(err)?;
        outcome.ok_or_else(|| MetadataStoreError::NotFound(format!("file {batch_id}/{file_id}")))
    }
}

/// One file transition inside the caller's transaction; `None` when the file does not exist.
fn transition_in(
    tx: &Connection,
    batch_id: &str,
    file_id: &str,
    to: FileStatus,
    error: Option<String>,
    rendered: Option<String>,
    at: OffsetDateTime,
) -> Result<Option<Transition>, DbFailure> {
    let current: Option<String> = tx
        .prepare_cached("SELECT status FROM files WHERE batch_id = ?1 AND file_id = ?2")?
        .query_row(params![batch_id, file_id], |r| r.get(0))
        .optional()?;
    let Some(current) = current else {
        return Ok(None);
    };
    let current = FileStatus::parse(&current)
        .ok_or_else(|| DbFailure::Permanent(format!("unknown status {current:?}")))?;
    if !current.may_become(to) {
        return Ok(Some(Transition::Unchanged));
    }
    tx.prepare_cached(
        "UPDATE files SET status = ?3, error = COALESCE(?4, error),
         rendered = COALESCE(?5, rendered), updated_at = ?6
         WHERE batch_id = ?1 AND file_id = ?2",
    )?
    .execute(params![
        batch_id,
        file_id,
        to.as_str(),
        error,
        rendered,
        ns(at)
    ])?;
    tx.prepare_cached(
        "INSERT INTO batch_versions (batch_id, version) VALUES (?1, 1)
         ON CONFLICT (batch_id) DO UPDATE SET version = version + 1",
    )?
    .execute(params![batch_id])?;
    if current == FileStatus::AwaitingUpload {
        tx.prepare_cached(
            "UPDATE pending_uploads SET pending = MAX(pending - 1, 0)
             WHERE principal = (SELECT principal FROM batches WHERE batch_id = ?1)",
        )?
        .execute(params![batch_id])?;
    }
    let mut completed = false;
    if to.is_terminal() {
        let open: i64 = tx
            .prepare_cached(
                "SELECT COUNT(*) FROM files WHERE batch_id = ?1
                 AND status IN ('awaiting_upload', 'received')",
            )?
            .query_row(params![batch_id], |r| r.get(0))?;
        if open == 0 {
            completed = tx
                .prepare_cached(
                    "UPDATE batches SET completed_at = ?2
                     WHERE batch_id = ?1 AND completed_at IS NULL",
                )?
                .execute(params![batch_id, ns(at)])?
                == 1;
        }
    }
    Ok(Some(Transition::Applied {
        batch_completed: completed,
    }))
}

/// The completion callback's delivery of a batch, if one was enqueued.
fn load_webhook(c: &Connection, batch_id: &str) -> Result<Option<WebhookState>, DbFailure> {
    let row = c
        .prepare_cached(
            "SELECT status, attempts, last_at, last_status, last_error, due_at FROM webhooks
             WHERE batch_id = ?1 ORDER BY created_at LIMIT 1",
        )?
        .query_row(params![batch_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })
        .optional()?;
    let Some((status, attempts, last_at, last_status, last_error, due)) = row else {
        return Ok(None);
    };
    let status = WebhookStatus::parse(&status)
        .ok_or_else(|| DbFailure::Permanent(format!("unknown webhook status {status:?}")))?;
    Ok(Some(WebhookState {
        status,
        attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        last_attempt_at: last_at.map(from_us),
        last_status: last_status.and_then(|s| u16::try_from(s).ok()),
        last_error,
        next_attempt_at: due
            .filter(|_| status == WebhookStatus::Pending)
            .map(from_us),
    }))
}

fn load_batch(c: &Connection, batch_id: &str) -> Result<Option<BatchRecord>, DbFailure> {
    let row = c
        .query_row(
            "SELECT b.principal, b.created_at, b.expires_at, b.completed_at, b.request,
             b.callback_url, b.traceparent, b.announced_at, COALESCE(v.version, 0)
             FROM batches b LEFT JOIN batch_versions v ON v.batch_id = b.batch_id
             WHERE b.batch_id = ?1",
            params![batch_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    r.get::<_, i64>(8)?,
                ))
            },
        )
        .optional()?;
    let Some((
        principal,
        created,
        expires,
        completed,
        request,
        callback_url,
        traceparent,
        announced,
        version,
    )) = row
    else {
        return Ok(None);
    };
    let mut stmt = c.prepare_cached(
        "SELECT f.file_id, f.name, f.content_type, f.size, f.status, f.error, f.rendered,
         (SELECT COUNT(*) FROM image_requests q WHERE q.image_id = f.file_id),
         (SELECT MAX(at) FROM image_requests q WHERE q.image_id = f.file_id)
         FROM files f WHERE f.batch_id = ?1 ORDER BY f.ord",
    )?;
    let rows = stmt
        .query_map(params![batch_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Option<i64>>(8)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut files = Vec::with_capacity(rows.len());
    let mut counts = BatchCounts::default();
    for (file_id, name, content_type, size, status, error, rendered, requests, last) in rows {
        let status = FileStatus::parse(&status)
            .ok_or_else(|| DbFailure::Permanent(format!("unknown status {status:?}")))?;
        counts.add(status);
        files.push(FileRecord {
            file_id,
            name,
            content_type,
            size: size.max(0) as u64,
            status,
            error: error
                .map(|e| serde_json::from_str(&e))
                .transpose()
                .map_err(json_err)?,
            rendered: rendered
                .map(|r| serde_json::from_str(&r))
                .transpose()
                .map_err(json_err)?,
            request_count: requests.max(0) as u64,
            last_requested_at: last.map(from_us),
        });
    }
    let status = BatchStatus::derive(completed.is_some(), &counts);
    Ok(Some(BatchRecord {
        batch_id: batch_id.to_owned(),
        principal,
        status,
        created_at: from_us(created),
        expires_at: from_us(expires),
        completed_at: completed.map(from_us),
        request: serde_json::from_str(&request).map_err(json_err)?,
        callback_url,
        traceparent,
        announced_at: announced.map(from_us),
        counts,
        files,
        version: version.max(0) as u64,
        webhook: load_webhook(c, batch_id)?,
    }))
}

#[async_trait]
impl MetadataStore for SqliteMetadataStore {
    async fn create_batch(&self, batch: &NewBatch) -> Result<(), MetadataStoreError> {
        enum Created {
            Yes,
            Exists,
            Quota(u64, u64),
            KeyTaken(String, String),
        }
        let b = batch.clone();
        let request = serde_json::to_string(&b.request)
            .map_err(|e| MetadataStoreError::Other(e.to_string()))?;
        let created = self
            .db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let n_files = b.files.len() as i64;
                if let Some(idem) = &b.idempotency {
                    // A key lives as long as its batch's upload grants: drop expired ones.
                    tx.execute(
                        "DELETE FROM idempotency_keys WHERE expires_at <= ?1",
                        params![ns(b.created_at)],
                    )?;
                    let taken: Option<(String, String)> = tx
                        .query_row(
                            "SELECT batch_id, request_sha256 FROM idempotency_keys
                             WHERE principal = ?1 AND key = ?2",
                            params![b.principal, idem.key],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()?;
                    if let Some((batch_id, hash)) = taken {
                        return Ok(Created::KeyTaken(batch_id, hash));
                    }
                }
                if let Some(quota) = b.max_pending_uploads {
                    let pending: i64 = tx
                        .query_row(
                            "SELECT pending FROM pending_uploads WHERE principal = ?1",
                            params![b.principal],
                            |r| r.get(0),
                        )
                        .optional()?
                        .unwrap_or(0);
                    let pending = pending.max(0) as u64;
                    if pending + n_files as u64 > quota {
                        return Ok(Created::Quota(pending, quota));
                    }
                }
                let n = tx.execute(
                    "INSERT OR IGNORE INTO batches (batch_id, principal, created_at, expires_at,
                     request, callback_url, traceparent) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![b.batch_id, b.principal, ns(b.created_at), ns(b.expires_at), request, b.callback_url, b.traceparent],
                )?;
                if n == 0 {
                    return Ok(Created::Exists);
                }
                {
                    let mut ins = tx.prepare_cached(
                        "INSERT INTO files (batch_id, file_id, ord, name, content_type, size,
                         status, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'awaiting_upload', ?7)",
                    )?;
                    for (i, f) in b.files.iter().enumerate() {
                        ins.execute(params![b.batch_id, f.file_id, i as i64, f.name, f.content_type, f.size as i64, ns(b.created_at)])?;
                    }
                }
                tx.execute(
                    "INSERT INTO pending_uploads (principal, pending) VALUES (?1, ?2)
                     ON CONFLICT (principal) DO UPDATE SET pending = pending + ?2",
                    params![b.principal, n_files],
                )?;
                tx.execute(
                    "INSERT OR IGNORE INTO batch_versions (batch_id, version) VALUES (?1, 0)",
                    params![b.batch_id],
                )?;
                if let Some(idem) = &b.idempotency {
                    tx.execute(
                        "INSERT INTO idempotency_keys (principal, key, batch_id, request_sha256,
                         expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![b.principal, idem.key, b.batch_id, idem.request_sha256, ns(b.expires_at)],
                    )?;
                }
                tx.commit()?;
                Ok(Created::Yes)
            })
            .await
            .map_err(err)?;
        match created {
            Created::Yes => Ok(()),
            Created::Exists => Err(MetadataStoreError::AlreadyExists(batch.batch_id.clone())),
            Created::Quota(pending, quota) => {
                Err(MetadataStoreError::QuotaExceeded { pending, quota })
            }
            Created::KeyTaken(batch_id, request_sha256) => {
                Err(MetadataStoreError::IdempotencyKeyTaken {
                    batch_id,
                    request_sha256,
                })
            }
        }
    }

    async fn get_batch(&self, batch_id: &str) -> Result<Option<BatchRecord>, MetadataStoreError> {
        let id = batch_id.to_owned();
        self.db.call(move |c| load_batch(c, &id)).await.map_err(err)
    }

    async fn batch_trace(&self, batch_id: &str) -> Result<Option<BatchTrace>, MetadataStoreError> {
        let id = batch_id.to_owned();
        self.db
            .call(move |c| {
                Ok(c.prepare_cached(
                    "SELECT created_at, traceparent FROM batches WHERE batch_id = ?1",
                )?
                .query_row(params![id], |r| {
                    Ok(BatchTrace {
                        created_at: from_us(r.get(0)?),
                        traceparent: r.get(1)?,
                    })
                })
                .optional()?)
            })
            .await
            .map_err(err)
    }

    async fn recent_batches(&self, limit: usize) -> Result<Vec<BatchRecord>, MetadataStoreError> {
        self.db
            .call(move |c| {
                let ids: Vec<String> = c
                    .prepare_cached("SELECT batch_id FROM batches ORDER BY created_at DESC, rowid DESC LIMIT ?1")?
                    .query_map(params![limit as i64], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(b) = load_batch(c, &id)? {
                        out.push(b);
                    }
                }
                Ok(out)
            })
            .await
            .map_err(err)
    }

    async fn mark_received(
        &self,
        batch_id: &str,
        file_id: &str,
        at: OffsetDateTime,
    ) -> Result<Transition, MetadataStoreError> {
        self.transition(batch_id, file_id, FileStatus::Received, None, None, at)
            .await
    }

    async fn mark_done(
        &self,
        batch_id: &str,
        file_id: &str,
        rendered: &RenderedFile,
        at: OffsetDateTime,
    ) -> Result<Transition, MetadataStoreError> {
        let r = serde_json::to_string(rendered)
            .map_err(|e| MetadataStoreError::Other(e.to_string()))?;
        self.transition(batch_id, file_id, FileStatus::Done, None, Some(r), at)
            .await
    }

    async fn mark_failed(
        &self,
        batch_id: &str,
        file_id: &str,
        error: &FileError,
        at: OffsetDateTime,
    ) -> Result<Transition, MetadataStoreError> {
        let e =
            serde_json::to_string(error).map_err(|e| MetadataStoreError::Other(e.to_string()))?;
        self.transition(batch_id, file_id, FileStatus::Failed, Some(e), None, at)
            .await
    }

    async fn replace_rendered(
        &self,
        batch_id: &str,
        file_id: &str,
        rendered: &RenderedFile,
        at: OffsetDateTime,
    ) -> Result<bool, MetadataStoreError> {
        let r = serde_json::to_string(rendered)
            .map_err(|e| MetadataStoreError::Other(e.to_string()))?;
        let (b, f) = (batch_id.to_owned(), file_id.to_owned());
        let outcome = self
            .db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let n = tx.execute(
                    "UPDATE files SET rendered = ?3, updated_at = ?4
                     WHERE batch_id = ?1 AND file_id = ?2 AND status = 'done'
                     AND rendered IS NOT ?3",
                    params![b, f, r, ns(at)],
                )?;
                if n == 1 {
                    tx.execute(
                        "INSERT INTO batch_versions (batch_id, version) VALUES (?1, 1)
                         ON CONFLICT (batch_id) DO UPDATE SET version = version + 1",
                        params![b],
                    )?;
                    tx.commit()?;
                    return Ok(Some(true));
                }
                let exists = tx
                    .query_row(
                        "SELECT 1 FROM files WHERE batch_id = ?1 AND file_id = ?2",
                        params![b, f],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                Ok(exists.then_some(false))
            })
            .await
            .map_err(err)?;
        outcome.ok_or_else(|| MetadataStoreError::NotFound(format!("file {batch_id}/{file_id}")))
    }

    async fn mark_announced(
        &self,
        batch_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, MetadataStoreError> {
        let b = batch_id.to_owned();
        let outcome = self
            .db
            .call(move |c| {
                let n = c.execute(
                    "UPDATE batches SET announced_at = ?2 WHERE batch_id = ?1 AND announced_at IS NULL",
                    params![b, ns(at)],
                )?;
                if n == 1 {
                    return Ok(Some(true));
                }
                let exists = c
                    .query_row("SELECT 1 FROM batches WHERE batch_id = ?1", params![b], |_| Ok(()))
                    .optional()?
                    .is_some();
                Ok(exists.then_some(false))
            })
            .await
            .map_err(err)?;
        outcome.ok_or_else(|| MetadataStoreError::NotFound(format!("batch {batch_id}")))
    }

    async fn pending_uploads(&self, principal: &str) -> Result<u64, MetadataStoreError> {
        let p = principal.to_owned();
        self.db
            .call(move |c| {
                let n: Option<i64> = c
                    .query_row(
                        "SELECT pending FROM pending_uploads WHERE principal = ?1",
                        params![p],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(n.unwrap_or(0).max(0) as u64)
            })
            .await
            .map_err(err)
    }

    async fn batch_version(
        &self,
        batch_id: &str,
    ) -> Result<Option<BatchVersion>, MetadataStoreError> {
        let id = batch_id.to_owned();
        self.db
            .call(move |c| {
                Ok(c.prepare_cached(
                    "SELECT b.principal, COALESCE(v.version, 0), b.completed_at IS NOT NULL
                     FROM batches b LEFT JOIN batch_versions v ON v.batch_id = b.batch_id
                     WHERE b.batch_id = ?1",
                )?
                .query_row(params![id], |r| {
                    Ok(BatchVersion {
                        principal: r.get(0)?,
                        version: r.get::<_, i64>(1)?.max(0) as u64,
                        complete: r.get(2)?,
                    })
                })
                .optional()?)
            })
            .await
            .map_err(err)
    }

    async fn expire_uploads(
        &self,
        cutoff: OffsetDateTime,
        at: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ExpiredFile>, MetadataStoreError> {
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let due: Vec<(String, String)> = tx
                    .prepare_cached(
                        "SELECT f.batch_id, f.file_id FROM files f
                         JOIN batches b ON b.batch_id = f.batch_id
                         WHERE f.status = 'awaiting_upload' AND b.expires_at < ?1
                         ORDER BY b.expires_at LIMIT ?2",
                    )?
                    .query_map(params![ns(cutoff), limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<Result<_, _>>()?;
                let mut out = Vec::with_capacity(due.len());
                for (batch_id, file_id) in due {
                    if let Some(Transition::Applied { batch_completed }) = transition_in(
                        &tx,
                        &batch_id,
                        &file_id,
                        FileStatus::Expired,
                        None,
                        None,
                        at,
                    )? {
                        out.push(ExpiredFile {
                            batch_id,
                            file_id,
                            batch_completed,
                        });
                    }
                }
                tx.commit()?;
                Ok(out)
            })
            .await
            .map_err(err)
    }

    async fn enqueue_webhook(&self, webhook: &NewWebhook) -> Result<bool, MetadataStoreError> {
        let w = webhook.clone();
        self.db
            .call(move |c| {
                Ok(c.execute(
                    "INSERT OR IGNORE INTO webhooks (id, batch_id, principal, url, body, status,
                     attempts, due_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)",
                    params![w.id, w.batch_id, w.principal, w.url, w.body, ns(w.due_at)],
                )? == 1)
            })
            .await
            .map_err(err)
    }

    async fn claim_webhooks(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<WebhookJob>, MetadataStoreError> {
        let until = ns(now + lease);
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut jobs: Vec<WebhookJob> = tx
                    .prepare_cached(
                        "SELECT id, batch_id, principal, url, body, attempts FROM webhooks
                         WHERE status = 'pending' AND due_at <= ?1 ORDER BY due_at LIMIT ?2",
                    )?
                    .query_map(params![ns(now), limit as i64], |r| {
                        Ok(WebhookJob {
                            id: r.get(0)?,
                            batch_id: r.get(1)?,
                            principal: r.get(2)?,
                            url: r.get(3)?,
                            body: r.get(4)?,
                            attempts: u32::try_from(r.get::<_, i64>(5)?.max(0)).unwrap_or(u32::MAX),
                            claim: until.to_string(),
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                for j in &mut jobs {
                    tx.prepare_cached("UPDATE webhooks SET due_at = ?2 WHERE id = ?1")?
                        .execute(params![j.id, until])?;
                }
                tx.commit()?;
                Ok(jobs)
            })
            .await
            .map_err(err)
    }

    async fn record_webhook_attempt(
        &self,
        job: &WebhookJob,
        attempt: &WebhookAttempt,
    ) -> Result<bool, MetadataStoreError> {
        let Ok(claim) = job.claim.parse::<i64>() else {
            return Ok(false);
        };
        let (id, a) = (job.id.clone(), attempt.clone());
        self.db
            .call(move |c| {
                Ok(c.execute(
                    "UPDATE webhooks SET status = ?3, attempts = attempts + 1, last_at = ?4,
                     last_status = ?5, last_error = ?6, due_at = ?7
                     WHERE id = ?1 AND due_at = ?2 AND status = 'pending'",
                    params![
                        id,
                        claim,
                        a.status.as_str(),
                        ns(a.at),
                        a.http_status.map(i64::from),
                        a.error,
                        a.next_attempt_at.map(ns)
                    ],
                )? == 1)
            })
            .await
            .map_err(err)
    }

    async fn image_owner(&self, image_id: &str) -> Result<Option<String>, MetadataStoreError> {
        use rusqlite::OptionalExtension as _;
        let i = image_id.to_owned();
        self.db
            .call(move |c| {
                Ok(c.query_row(
                    "SELECT b.principal FROM files f JOIN batches b ON b.batch_id = f.batch_id
                     WHERE f.file_id = ?1 LIMIT 1",
                    params![i],
                    |r| r.get(0),
                )
                .optional()?)
            })
            .await
            .map_err(err)
    }

    async fn record_image_request(
        &self,
        image_id: &str,
        event_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, MetadataStoreError> {
        let (i, e) = (image_id.to_owned(), event_id.to_owned());
        self.db
            .call(move |c| {
                Ok(c.execute(
                    "INSERT OR IGNORE INTO image_requests (image_id, event_id, at) VALUES (?1, ?2, ?3)",
                    params![i, e, ns(at)],
                )? == 1)
            })
            .await
            .map_err(err)
    }
}
