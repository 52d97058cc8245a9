//! The one queue loop every worker runs (docs/architecture.md, "The worker runtime"): long-poll receive → bounded
//! concurrency → handler → visibility heartbeat while it runs → ack, retry with jittered
//! backoff, or dead-letter → metrics. Workers only write a [`Handler`].
//!
//! Invariants:
//! - A message is deleted only after its handler succeeded (or said the delivery was a
//!   duplicate, or skipped it as a test event). Everything else leaves it on the queue.
//! - `Retry` sets the message's visibility to `min(base · 2^(receives-1), cap)` with full
//!   jitter; the queue's redrive policy moves it to the DLQ after `max_receive_count` receives.
//! - `DeadLetter` moves it to the DLQ with its code at once, so poison never burns retries.
//! - A panicking handler is caught at the task boundary and treated as transient.
//! - While a handler runs, a heartbeat extends visibility every `visibility_timeout / 2`, so
//!   long work is never handed to a second consumer.
//! - On shutdown the loop stops receiving at once; in-flight handlers get `drain` to finish;
//!   those still running after it are abandoned unacked (their heartbeats stop), so their
//!   messages reappear after the visibility timeout. Nothing accepted is lost.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::FutureExt as _;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, error, info, info_span, warn};

use crate::error::{Disposition, ErrorCode, HandlerError};
use crate::port::queue::{DeadLetterInfo, Message, Queue, QueueError};
use crate::telemetry::metrics;

/// What a handler made of a message; every variant acks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// Already done before (a duplicate delivery): a success.
    Duplicate,
    /// Nothing to do (e.g. `s3:TestEvent`, an event for another bucket).
    Skipped,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Duplicate => "duplicate",
            Outcome::Skipped => "skipped",
        }
    }
}

/// A worker's message handler.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handle one message. CPU-heavy work belongs on `spawn_blocking` or rayon, never on the
    /// reactor, so heartbeats keep firing.
    ///
    /// # Errors
    /// A [`HandlerError`] whose disposition says retry or dead-letter.
    async fn handle(&self, message: &Message) -> Result<Outcome, HandlerError>;
}

/// `[consumer]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Messages handled at once.
    pub concurrency: usize,
    /// Messages asked for per receive (1-10).
    pub batch_size: usize,
    /// Long-poll wait per receive (0-20 s).
    pub wait_time_secs: u64,
    /// Visibility a heartbeat extends to; the heartbeat runs every half of it.
    pub visibility_timeout_secs: u64,
    /// First retry backoff.
    pub backoff_base_secs: u64,
    /// Largest retry backoff.
    pub backoff_cap_secs: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            batch_size: 10,
            wait_time_secs: 20,
            visibility_timeout_secs: 60,
            backoff_base_secs: 2,
            backoff_cap_secs: 300,
        }
    }
}

impl ConsumerConfig {
    /// Check ranges.
    ///
    /// # Errors
    /// [`crate::config::ConfigError::Invalid`] naming the bad key.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        let bad = |m: String| Err(crate::config::ConfigError::Invalid(m));
        if !(1..=256).contains(&self.concurrency) {
            return bad(format!(
                "consumer.concurrency = {} must be 1..=256",
                self.concurrency
            ));
        }
        if !(1..=10).contains(&self.batch_size) {
            return bad(format!(
                "consumer.batch_size = {} must be 1..=10",
                self.batch_size
            ));
        }
        if self.wait_time_secs > 20 {
            return bad(format!(
                "consumer.wait_time_secs = {} must be 0..=20",
                self.wait_time_secs
            ));
        }
        if !(2..=43_200).contains(&self.visibility_timeout_secs) {
            return bad(format!(
                "consumer.visibility_timeout_secs = {} must be 2..=43200",
                self.visibility_timeout_secs
            ));
        }
        if self.backoff_base_secs == 0
            || self.backoff_cap_secs < self.backoff_base_secs
            || self.backoff_cap_secs > 43_200
        {
            return bad(
                "consumer.backoff_base_secs must be >= 1 and <= backoff_cap_secs <= 43200".into(),
            );
        }
        Ok(())
    }
}

/// Retry backoff for the `receive_count`-th receive: full jitter over
/// `min(base · 2^(receive_count-1), cap)`, at least one second.
pub fn backoff(cfg: &ConsumerConfig, receive_count: u32) -> Duration {
    let exp = receive_count.saturating_sub(1).min(30);
    let ceiling = cfg
        .backoff_base_secs
        .saturating_mul(1u64 << exp)
        .min(cfg.backoff_cap_secs);
    Duration::from_secs(rand::rng().random_range(1..=ceiling.max(1)))
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Messages still in flight when the drain deadline passed (they will reappear).
    pub abandoned: usize,
}

/// A queue consumer.
pub struct Consumer {
    worker: &'static str,
    queue: Arc<dyn Queue>,
    handler: Arc<dyn Handler>,
    cfg: ConsumerConfig,
    busy: Option<crate::busy::BusySignal>,
}

impl Consumer {
    /// A consumer named `worker` (a metric label) of `queue`.
    pub fn new(
        worker: &'static str,
        queue: Arc<dyn Queue>,
        handler: Arc<dyn Handler>,
        cfg: ConsumerConfig,
    ) -> Self {
        Self {
            worker,
            queue,
            handler,
            cfg,
            busy: None,
        }
    }

    /// Report the in-flight count to `busy` (ECS task scale-in protection while non-zero).
    #[must_use]
    pub fn with_busy_signal(mut self, busy: Option<crate::busy::BusySignal>) -> Self {
        self.busy = busy;
        self
    }

    /// Run until `shutdown` is cancelled, then drain for at most `drain`.
    pub async fn run(self, shutdown: CancellationToken, drain: Duration) -> RunReport {
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.cfg.concurrency));
        let tracker = TaskTracker::new();
        // Cancelled when the drain deadline passes: abandons handlers without acking.
        let hard_stop = CancellationToken::new();
        let inflight = Arc::new(AtomicUsize::new(0));
        let mut receive_failures = 0u32;
        info!(
            worker = this.worker,
            queue = this.queue.name(),
            concurrency = this.cfg.concurrency,
            "Consumer started."
        );
        spawn_depth_sampler(this.queue.clone(), QUEUE_SAMPLE_INTERVAL, shutdown.clone());
        loop {
            // Wait for one free slot, then take as many more as are free, up to a batch.
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let mut slots = vec![first];
            while slots.len() < this.cfg.batch_size {
                match permits.clone().try_acquire_owned() {
                    Ok(p) => slots.push(p),
                    Err(_) => break,
                }
            }
            let wait = Duration::from_secs(this.cfg.wait_time_secs);
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                r = this.queue.receive(slots.len(), wait) => r,
            };
            let messages = match received {
                Ok(m) => {
                    receive_failures = 0;
                    m
                }
                Err(e) => {
                    receive_failures += 1;
                    let code = e.code();
                    metrics::error(this.worker, "receiving", code);
                    let pause = Duration::from_millis(200 * u64::from(receive_failures.min(25)));
                    warn!(worker = this.worker, error = %e, retry_in_ms = pause.as_millis() as u64, "Receive failed; retrying.");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            for message in messages {
                let slot = slots.pop().expect("never more messages than slots");
                let (this, hard_stop, inflight) =
                    (this.clone(), hard_stop.clone(), inflight.clone());
                tracker.spawn(async move {
                    let n = inflight.fetch_add(1, Ordering::Relaxed) + 1;
                    metrics::inflight(this.worker, n);
                    if let Some(b) = &this.busy {
                        b.set(n);
                    }
                    tokio::select! {
                        () = this.process(message) => {}
                        () = hard_stop.cancelled() => {
                            metrics::message_processed(this.worker, "abandoned", Duration::ZERO);
                        }
                    }
                    let n = inflight.fetch_sub(1, Ordering::Relaxed) - 1;
                    metrics::inflight(this.worker, n);
                    if let Some(b) = &this.busy {
                        b.set(n);
                    }
                    drop(slot);
                });
            }
        }
        tracker.close();
        let in_flight = tracker.len();
        info!(
            worker = this.worker,
            in_flight, "Receiving stopped; draining."
        );
        if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
            let left = tracker.len();
            warn!(
                worker = this.worker,
                in_flight = left,
                "Drain deadline exceeded; unacked messages will be redelivered."
            );
            hard_stop.cancel();
            tracker.wait().await;
            return RunReport { abandoned: left };
        }
        info!(worker = this.worker, "Drained.");
        RunReport { abandoned: 0 }
    }

    async fn process(&self, message: Message) {
        let start = Instant::now();
        let age = (time::OffsetDateTime::now_utc() - message.sent_at).unsigned_abs();
        metrics::message_received(self.worker, age);
        let span = info_span!("message", worker = self.worker, message_id = %message.id, receive_count = message.receive_count);
        async {
            // A drop guard, so an abandoned handler (its future dropped at the drain
            // deadline) stops extending visibility and its message reappears.
            let heartbeat = self.spawn_heartbeat(&message).drop_guard();
            let result = AssertUnwindSafe(self.handler.handle(&message))
                .catch_unwind()
                .await;
            drop(heartbeat);
            let result = result.unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                error!(panic = %what, "Handler panicked; the message will be retried.");
                Err(HandlerError::transient(ErrorCode::Panic, what))
            });
            let outcome = match result {
                Ok(o) => self.ack(&message, o).await,
                Err(e) => self.fail(&message, e).await,
            };
            metrics::message_processed(self.worker, outcome, start.elapsed());
        }
        .instrument(span)
        .await;
    }

    fn spawn_heartbeat(&self, message: &Message) -> CancellationToken {
        let stop = CancellationToken::new();
        let (queue, receipt, stop2) = (self.queue.clone(), message.receipt.clone(), stop.clone());
        let vt = Duration::from_secs(self.cfg.visibility_timeout_secs);
        let worker = self.worker;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(vt / 2);
            tick.tick().await;
            loop {
                tokio::select! {
                    () = stop2.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match queue.extend_visibility(&receipt, vt).await {
                    Ok(()) => debug!("Visibility extended."),
                    Err(QueueError::StaleReceipt) => {
                        warn!(
                            "Heartbeat found the receipt stale; another consumer owns the message now."
                        );
                        return;
                    }
                    Err(e) => {
                        metrics::error(worker, "processing", e.code());
                        warn!(error = %e, "Heartbeat failed; will try again.");
                    }
                }
            }
        });
        stop
    }

    async fn ack(&self, message: &Message, outcome: Outcome) -> &'static str {
        match self.queue.ack(&message.receipt).await {
            Ok(()) => {}
            Err(QueueError::StaleReceipt) => {
                // Redelivered while we worked (visibility lapsed): the other delivery is a
                // duplicate and idempotent, so this is still a success.
                warn!("Ack found the receipt stale; the message was redelivered.");
            }
            Err(e) => {
                metrics::error(self.worker, "sending", e.code());
                warn!(error = %e, "Ack failed; the message will be redelivered and handled idempotently.");
            }
        }
        outcome.label()
    }

    async fn fail(&self, message: &Message, e: HandlerError) -> &'static str {
        metrics::error(self.worker, "processing", e.code);
        match e.disposition {
            Disposition::Retry => {
                let delay = backoff(&self.cfg, message.receive_count);
                warn!(error_code = %e.code, error = %e, retry_in_secs = delay.as_secs(), "Handler failed; retrying later.");
                if let Err(err) = self.queue.extend_visibility(&message.receipt, delay).await {
                    warn!(error = %err, "Could not set the retry backoff; the message reappears after its visibility timeout.");
                }
                "retry"
            }
            Disposition::DeadLetter => {
                let info = DeadLetterInfo {
                    error_code: e.code,
                    worker: self.worker.to_owned(),
                    reason: e.to_string(),
                };
                match self.queue.dead_letter(message, &info).await {
                    Ok(()) => {
                        warn!(error_code = %e.code, error = %e, "Message dead-lettered.");
                        "dead_letter"
                    }
                    Err(err) => {
                        metrics::error(self.worker, "sending", err.code());
                        warn!(error = %err, "Dead-lettering failed; the message will be retried.");
                        "retry"
                    }
                }
            }
        }
    }
}

/// How often a worker samples its queue's depths into the `prism_queue_*` gauges.
pub const QUEUE_SAMPLE_INTERVAL: Duration = Duration::from_secs(15);

/// Sample `queue`'s depths (visible, in flight, DLQ, oldest age where the backend reports it)
/// into the `prism_queue_*` gauges every `every` until `shutdown`, so every worker exports its
/// queue's depth on any backend (several tasks of one worker report the same figures: dashboards
/// take the max per queue). A failed sample is logged at debug and skipped.
pub fn spawn_depth_sampler(
    queue: Arc<dyn Queue>,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match queue.stats().await {
                Ok(s) => metrics::queue_depths(queue.name(), &s),
                Err(e) => {
                    debug!(queue = queue.name(), error = %e, "Cannot sample the queue's depth.")
                }
            }
        }
    })
}

#[cfg(test)]
mod tests;
