//! One SQLite connection per adapter, used from async code through `spawn_blocking`.
//!
//! WAL mode lets readers run beside one writer, across processes; `busy_timeout` makes a writer
//! wait for another process's transaction instead of failing at once. Writes that must be atomic
//! use `BEGIN IMMEDIATE` so two processes never both read-then-write the same rows.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode as SqlCode};

/// A shared connection.
#[derive(Clone)]
pub(crate) struct Db {
    conn: Arc<Mutex<Connection>>,
}

/// How a SQLite failure is classified: busy/locked/I/O are transient, the rest permanent.
pub(crate) enum DbFailure {
    Transient(String),
    Permanent(String),
}

impl From<rusqlite::Error> for DbFailure {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(
                SqlCode::DatabaseBusy
                | SqlCode::DatabaseLocked
                | SqlCode::SystemIoFailure
                | SqlCode::DiskFull
                | SqlCode::CannotOpen,
            ) => DbFailure::Transient(e.to_string()),
            _ => DbFailure::Permanent(e.to_string()),
        }
    }
}

impl Db {
    /// Open (creating) the database at `path` and run `schema` once.
    pub(crate) fn open(path: &Path, schema: &str) -> Result<Self, DbFailure> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| DbFailure::Transient(format!("create {}: {e}", dir.display())))?;
        }
        // Several processes opening a new database at once (`prism dev`'s binaries started
        // side by side) can get SQLITE_BUSY from the switch to WAL without SQLite waiting on
        // its busy handler: the open is retried, for as long as the busy timeout.
        let deadline = std::time::Instant::now() + OPEN_BUSY_TIMEOUT;
        loop {
            match Self::open_once(path, schema) {
                Err(e)
                    if is_busy(&e) && std::time::Instant::now() + OPEN_RETRY_PAUSE < deadline =>
                {
                    std::thread::sleep(OPEN_RETRY_PAUSE);
                }
                result => {
                    return result.map_err(DbFailure::from).map(|conn| Self {
                        conn: Arc::new(Mutex::new(conn)),
                    });
                }
            }
        }
    }

    fn open_once(path: &Path, schema: &str) -> Result<Connection, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(OPEN_BUSY_TIMEOUT)?;
        // WAL: concurrent readers and one writer across processes. NORMAL sync is durable
        // against process crashes (the WAL is fsynced at checkpoints, not every commit), which
        // is the failure this backend must survive; power loss may drop the last commits.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(schema)?;
        Ok(conn)
    }

    /// Run `f` with the connection on the blocking pool.
    pub(crate) async fn call<R, F>(&self, f: F) -> Result<R, DbFailure>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, DbFailure> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock poisons it; the connection itself is still sound
            // (SQLite rolls back an unfinished transaction when the next one begins).
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| DbFailure::Transient(format!("database task failed: {e}")))?
    }
}

/// How long a statement waits for another process's lock, and how long opening retries.
const OPEN_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between two tries at opening a busy database.
const OPEN_RETRY_PAUSE: Duration = Duration::from_millis(25);

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(SqlCode::DatabaseBusy | SqlCode::DatabaseLocked)
    )
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds of a duration, saturating.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `OffsetDateTime` from epoch milliseconds.
pub(crate) fn from_ms(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}
