//! prism-archiver: keeps every event that crosses the topic, so any upload can be re-driven later
//! without asking the producer again.
//!
//! The archive queue is subscribed to everything. The archiver buffers message bodies exactly as
//! received and writes them as one gzip-compressed NDJSON object per flush, under
//! `raw/dt=YYYY-MM-DD/hour=HH/<first-received-at>-<uuid>.ndjson.gz`; each line is
//! `{"received_at","message_id","body"}`. A flush happens at `max_messages`, `max_bytes` or
//! `max_age_secs` after the first buffered message, whichever comes first, and on shutdown.
//!
//! Invariant: a message is acked only after the object holding it is durably written. A crash
//! before that loses nothing (the messages reappear after their visibility timeout); a crash
//! after it, before the ack, duplicates lines, which replay tolerates (it deduplicates by
//! content hash). This worker runs its own loop rather than `shared::consumer` because it acks a
//! whole flush at once, in batches, which is what makes it fast.
//!
//! [`replay`] reads the archive for a time range and re-publishes each distinct event.

pub mod config;
pub mod handler;
pub mod replay;

use std::sync::Arc;
use std::time::Duration;

use shared::port::{BlobStore, Queue};
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use handler::Archiver;

/// The adapters the archiver uses.
pub struct Deps {
    /// The archive queue.
    pub queue: Arc<dyn Queue>,
    /// The archive bucket.
    pub store: Arc<dyn BlobStore>,
    /// Told how many messages are buffered (ECS task scale-in protection while non-zero).
    pub busy: Option<shared::busy::BusySignal>,
}

/// Build the local-backend adapters.
///
/// # Errors
/// When the queue cannot be opened.
pub async fn local_deps(
    cfg: &Config,
    stack: &shared::adapter::local::LocalStack,
) -> anyhow::Result<Deps> {
    let queue = stack
        .queue(
            shared::topology::ARCHIVE_QUEUE,
            Duration::from_secs(cfg.consumer.visibility_timeout_secs),
            cfg.max_receive_count,
        )
        .await?;
    Ok(Deps {
        queue: Arc::new(queue),
        store: Arc::new(stack.archive.clone()),
        busy: None,
    })
}

/// Build the AWS adapters: the archive queue from `resources.queue_url`/`dlq_url`, the archive
/// bucket, and task protection when `busy` is given.
///
/// # Errors
/// When the queue URLs are missing.
pub fn aws_deps(
    cfg: &Config,
    stack: &shared::adapter::aws::AwsStack,
    busy: Option<shared::busy::BusySignal>,
) -> anyhow::Result<Deps> {
    Ok(Deps {
        queue: Arc::new(stack.worker_queue(shared::topology::ARCHIVE_QUEUE, &cfg.common)?),
        store: Arc::new(stack.archive.clone()),
        busy,
    })
}

/// The archiver, for [`shared::cli::run_worker`].
pub struct ArchiverWorker;

impl shared::cli::Worker for ArchiverWorker {
    const NAME: &'static str = "prism-archiver";
    type Config = Config;
    type Deps = Deps;

    fn common(cfg: &Config) -> &shared::config::CommonConfig {
        &cfg.common
    }
    async fn local_deps(
        cfg: &Config,
        stack: &shared::adapter::local::LocalStack,
    ) -> anyhow::Result<Deps> {
        local_deps(cfg, stack).await
    }
    fn aws_deps(
        cfg: &Config,
        stack: &shared::adapter::aws::AwsStack,
        busy: Option<shared::busy::BusySignal>,
    ) -> anyhow::Result<Deps> {
        aws_deps(cfg, stack, busy)
    }
    async fn run(cfg: &Config, deps: Deps, shutdown: CancellationToken) {
        Archiver::new(cfg, deps).run(shutdown).await;
    }
}
