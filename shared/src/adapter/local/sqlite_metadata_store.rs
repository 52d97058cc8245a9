//! `SqliteMetadataStore`: batches and files in SQLite, with the conditional semantics of the
//! DynamoDB adapter.
//!
//! Every transition is one `BEGIN IMMEDIATE` transaction: a conditional `UPDATE … WHERE status
//! IN (…)` on the file, then, when it applied and made the file terminal, a check whether any
//! file of the batch is still open; the transaction that closes the last one sets
//! `completed_at`, and is the only one to report `batch_completed`. Counts are derived from the
//! file rows at read time, so duplicates and reordering cannot skew them.

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;

use super::db::{Db, DbFailure};
use crate::port::metadata_store::{
    BatchCounts, BatchRecord, BatchStatus, BatchTrace, FileError, FileRecord, FileStatus,
    MetadataStore, MetadataStoreError, NewBatch, RenderedFile, Transition,
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
CREATE INDEX IF NOT EXISTS files_by_id ON files (file_id);
CREATE INDEX IF NOT EXISTS files_id ON files (file_id);
CREATE TABLE IF NOT EXISTS image_requests (
    image_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (image_id, event_id)
);
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
                let from: &[&str] = match to {
                    FileStatus::Received => &["awaiting_upload"],
                    _ => &["awaiting_upload", "received"],
                };
                let n = tx.execute(
                    "UPDATE files SET status = ?3, error = COALESCE(?4, error),
                     rendered = COALESCE(?5, rendered), updated_at = ?6
                     WHERE batch_id = ?1 AND file_id = ?2 AND status IN (?7, ?8)",
                    params![
                        b,
                        f,
                        to.as_str(),
                        error,
                        rendered,
                        ns(at),
                        from[0],
                        from[from.len() - 1]
                    ],
                )?;
                if n == 0 {
                    let exists: bool = tx
                        .query_row(
                            "SELECT 1 FROM files WHERE batch_id = ?1 AND file_id = ?2",
                            params![b, f],
                            |_| Ok(()),
                        )
                        .optional()?
                        .is_some();
                    return Ok(if exists {
                        Some(Transition::Unchanged)
                    } else {
                        None
                    });
                }
                let mut completed = false;
                if to.is_terminal() {
                    let open: i64 = tx.query_row(
                        "SELECT COUNT(*) FROM files WHERE batch_id = ?1
                         AND status IN ('awaiting_upload', 'received')",
                        params![b],
                        |r| r.get(0),
                    )?;
                    if open == 0 {
                        completed = tx.execute(
                            "UPDATE batches SET completed_at = ?2
                             WHERE batch_id = ?1 AND completed_at IS NULL",
                            params![b, ns(at)],
                        )? == 1;
                    }
                }
                tx.commit()?;
                Ok(Some(Transition::Applied {
                    batch_completed: completed,
                }))
            })
            .await
            .map_err(err)?;
        outcome.ok_or_else(|| MetadataStoreError::NotFound(format!("file {batch_id}/{file_id}")))
    }
}

fn load_batch(c: &Connection, batch_id: &str) -> Result<Option<BatchRecord>, DbFailure> {
    let row = c
        .query_row(
            "SELECT principal, created_at, expires_at, completed_at, request, callback_url,
             traceparent, announced_at FROM batches WHERE batch_id = ?1",
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
    }))
}

#[async_trait]
impl MetadataStore for SqliteMetadataStore {
    async fn create_batch(&self, batch: &NewBatch) -> Result<(), MetadataStoreError> {
        let b = batch.clone();
        let request = serde_json::to_string(&b.request)
            .map_err(|e| MetadataStoreError::Other(e.to_string()))?;
        let created = self
            .db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let n = tx.execute(
                    "INSERT OR IGNORE INTO batches (batch_id, principal, created_at, expires_at,
                     request, callback_url, traceparent) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![b.batch_id, b.principal, ns(b.created_at), ns(b.expires_at), request, b.callback_url, b.traceparent],
                )?;
                if n == 0 {
                    return Ok(false);
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
                tx.commit()?;
                Ok(true)
            })
            .await
            .map_err(err)?;
        if created {
            Ok(())
        } else {
            Err(MetadataStoreError::AlreadyExists(batch.batch_id.clone()))
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

    async fn count_awaiting_uploads(
        &self,
        principal: &str,
        now: OffsetDateTime,
    ) -> Result<u64, MetadataStoreError> {
        let p = principal.to_owned();
        self.db
            .call(move |c| {
                let n: i64 = c.query_row(
                    "SELECT COUNT(*) FROM files f JOIN batches b ON b.batch_id = f.batch_id
                     WHERE b.principal = ?1 AND b.expires_at > ?2 AND f.status = 'awaiting_upload'",
                    params![p, ns(now)],
                    |r| r.get(0),
                )?;
                Ok(n.max(0) as u64)
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
