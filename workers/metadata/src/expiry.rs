//! The expiry sweep: files still awaiting upload when their batch's grants expired become
//! `expired`, so a batch with a file that never arrives still completes (and is announced).
//!
//! Every `sweep_interval_secs` the sweep asks the store to expire the files whose grants
//! expired more than `grace_secs` ago (an upload that began before the expiry may still be
//! landing), `batch_size` per call until none are left. Each expiry is a conditional
//! transition in the store, so several writer processes may sweep at once: a file expires
//! once, and the one transition that closes a batch announces it. An announcement that fails
//! is logged; a later record of the batch's files announces it (the handler announces complete,
//! unannounced batches).

use std::sync::Arc;
use std::time::Duration;

use shared::port::MetadataStore;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::ExpiryConfig;
use crate::handler::Announcer;

/// One pass: expire every due file and announce the batches that completed. Returns how many
/// files expired.
///
/// # Errors
/// The store's failure (files expired before it stay expired; the next pass goes on).
pub async fn sweep_once(
    cfg: &ExpiryConfig,
    store: &dyn MetadataStore,
    announcer: &Announcer,
) -> Result<usize, shared::port::MetadataStoreError> {
    let mut total = 0;
    loop {
        let now = OffsetDateTime::now_utc();
        let cutoff = now - Duration::from_secs(cfg.grace_secs);
        let expired = store.expire_uploads(cutoff, now, cfg.batch_size).await?;
        total += expired.len();
        shared::telemetry::metrics::uploads_expired(expired.len());
        for f in expired.iter().filter(|f| f.batch_completed) {
            if let Err(e) = announcer.announce(&f.batch_id).await {
                warn!(batch_id = %f.batch_id, error = %e, "Announcing a batch completed by expiry failed; a later record or sweep retries.");
            }
        }
        if expired.len() < cfg.batch_size {
            return Ok(total);
        }
    }
}

/// Sweep every `sweep_interval_secs` until `shutdown`.
pub async fn run(
    cfg: ExpiryConfig,
    store: Arc<dyn MetadataStore>,
    announcer: Announcer,
    shutdown: CancellationToken,
) {
    let interval = Duration::from_secs(cfg.sweep_interval_secs);
    loop {
        match sweep_once(&cfg, &*store, &announcer).await {
            Ok(0) => {}
            Ok(n) => info!(files = n, "Expired uploads that never arrived."),
            Err(e) => warn!(error = %e, "The expiry sweep failed; the next one retries."),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
