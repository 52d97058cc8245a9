//! Long-poll wake-ups. A `GET /v1/batches/{id}?wait=` request does not re-read its batch on a
//! timer: one watcher per waited-on batch reads the batch's change counter
//! ([`MetadataStore::batch_version`], one small read: a row, or one DynamoDB item) every
//! `interval`, however many requests wait on that batch, and wakes them when it moves; each
//! woken request then reads the batch once. The watcher stops when its last waiter leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use shared::port::{BatchVersion, MetadataStore};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// The watchers of one API process.
pub struct Watches {
    store: Arc<dyn MetadataStore>,
    interval: Duration,
    live: Mutex<HashMap<String, Weak<Watch>>>,
}

/// A subscription to one batch's changes; the watcher runs while any is held.
pub struct Watch {
    rx: watch::Receiver<Option<BatchVersion>>,
    _stop: DropGuard,
}

impl Watch {
    /// A receiver of the batch's latest version (`None` until the first read, or while the
    /// batch cannot be found).
    pub fn receiver(&self) -> watch::Receiver<Option<BatchVersion>> {
        self.rx.clone()
    }
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Watches {
    /// Watchers reading `store` every `interval`.
    pub fn new(store: Arc<dyn MetadataStore>, interval: Duration) -> Self {
        Self {
            store,
            interval: interval.max(Duration::from_millis(10)),
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Subscribe to `batch_id`'s changes, starting its watcher if none runs.
    pub fn subscribe(&self, batch_id: &str) -> Arc<Watch> {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(w) = live.get(batch_id).and_then(Weak::upgrade) {
            return w;
        }
        live.retain(|_, w| w.strong_count() > 0);
        let (tx, rx) = watch::channel(None);
        let stop = CancellationToken::new();
        tokio::spawn(poll(
            self.store.clone(),
            batch_id.to_owned(),
            self.interval,
            tx,
            stop.clone(),
        ));
        let w = Arc::new(Watch {
            rx,
            _stop: stop.drop_guard(),
        });
        live.insert(batch_id.to_owned(), Arc::downgrade(&w));
        w
    }

    /// Batches watched now (for tests and metrics).
    pub fn watched(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

async fn poll(
    store: Arc<dyn MetadataStore>,
    batch_id: String,
    interval: Duration,
    tx: watch::Sender<Option<BatchVersion>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match store.batch_version(&batch_id).await {
            Ok(v) => {
                tx.send_if_modified(|cur| {
                    if *cur == v {
                        false
                    } else {
                        *cur = v;
                        true
                    }
                });
            }
            // A failed read wakes nobody; the next one may succeed.
            Err(e) => tracing::debug!(batch_id, error = %e, "Reading a batch's version failed."),
        }
    }
}
