//! The operators' dashboard `prism dev` serves at `/` on the API's address.
//!
//! - `/` (and `/dashboard/app.js`, `/dashboard/style.css`): one page, its assets compiled into
//!   the binary (no CDN, no network). Its script polls the state endpoint every second and
//!   draws the history graphs as plain SVG.
//! - `/dashboard/api/state`: one JSON document with the queues (visible, in flight, DLQ, age of
//!   the oldest message, and a short history of each), the workers (throughput, p50/p95
//!   processing time, outcomes, errors by code) and the recent batches with a thumbnail URL of
//!   each done file and the reason of each failed one.
//!
//! Every figure comes through the ports — [`Queue::stats`], [`MetadataStore::recent_batches`],
//! [`BlobStore::presign_download`] — and the in-process Prometheus recorder, never through the
//! SQLite types, so the same dashboard works whatever backend the stack runs on. A sampler task
//! reads the queues and the recorder once a second into a bounded history (and publishes the
//! queue depths as the `prism_queue_*` gauges); a failing source is reported in the JSON next
//! to the figures it could not read instead of failing the page.
//!
//! The dashboard has no authentication of its own: like `/metrics`, it is meant for the
//! machine `prism dev` runs on (which listens on loopback by default). Thumbnail URLs are
//! presigned downloads that expire after [`THUMBNAIL_URL_TTL`].

pub mod prom;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use shared::port::metadata_store::{BatchRecord, FileStatus};
use shared::port::{BlobStore, MetadataStore, Queue};
use shared::telemetry::metrics;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the sampler reads the queues and the recorder.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// How many samples each history keeps (two minutes at one per second).
pub const HISTORY_LEN: usize = 120;
/// The window of the throughput and latency figures.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Samples each point of a throughput history spans.
pub const RATE_SPAN: usize = 5;
/// How many recent batches the page shows.
pub const RECENT_BATCHES: usize = 8;
/// Lifetime of a thumbnail's presigned URL.
pub const THUMBNAIL_URL_TTL: Duration = Duration::from_secs(600);
/// Workers shown even before they record anything.
pub const WORKERS: &[&str] = &["resize", "metadata", "archiver"];

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// One sample of one queue.
#[derive(Debug, Clone, Serialize)]
struct QueuePoint {
    /// Seconds since the Unix epoch.
    t: f64,
    visible: u64,
    in_flight: u64,
    dlq: u64,
    oldest_age_secs: Option<f64>,
}

#[derive(Debug, Default)]
struct QueueHistory {
    points: VecDeque<QueuePoint>,
    error: Option<String>,
}

/// Cumulative figures of one worker at one instant.
#[derive(Debug, Clone, Default)]
struct WorkerPoint {
    t: f64,
    processed: f64,
    buckets: Vec<(f64, f64)>,
}

#[derive(Debug, Default)]
struct Sampled {
    queues: BTreeMap<String, QueueHistory>,
    workers: BTreeMap<String, VecDeque<WorkerPoint>>,
}

/// The dashboard: what it reads, and what its sampler has seen.
#[derive(Clone)]
pub struct Dashboard {
    metadata: Arc<dyn MetadataStore>,
    media: Arc<dyn BlobStore>,
    metrics: metrics::Handle,
    queues: Arc<Mutex<Vec<Arc<dyn Queue>>>>,
    sampled: Arc<Mutex<Sampled>>,
}

impl Dashboard {
    /// A dashboard over the batches in `metadata`, thumbnails presigned by `media`, and the
    /// process's recorder `metrics`. Add queues with [`Dashboard::watch_queue`].
    pub fn new(
        metadata: Arc<dyn MetadataStore>,
        media: Arc<dyn BlobStore>,
        metrics: metrics::Handle,
    ) -> Self {
        Self {
            metadata,
            media,
            metrics,
            queues: Arc::default(),
            sampled: Arc::default(),
        }
    }

    /// Show `queue` (its name is [`Queue::name`]).
    pub fn watch_queue(&self, queue: Arc<dyn Queue>) {
        self.queues
            .lock()
            .expect("the queue list lock is never poisoned")
            .push(queue);
    }

    /// The page, its assets and the state endpoint.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(index))
            .route("/dashboard/app.js", get(app_js))
            .route("/dashboard/style.css", get(style_css))
            .route("/dashboard/api/state", get(state))
            .with_state(self.clone())
    }

    /// Sample every [`SAMPLE_INTERVAL`] until `shutdown`.
    pub fn spawn_sampler(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => this.sample().await,
                }
            }
        })
    }

    /// Read every queue's stats and the recorder once.
    pub async fn sample(&self) {
        let queues: Vec<Arc<dyn Queue>> = self
            .queues
            .lock()
            .expect("the queue list lock is never poisoned")
            .clone();
        let mut stats = Vec::with_capacity(queues.len());
        for q in &queues {
            let started = Instant::now();
            // A slow backend must not stall the sampler: give each call a bound.
            let r = tokio::time::timeout(Duration::from_secs(5), q.stats()).await;
            let r = match r {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("stats timed out after {:?}", started.elapsed())),
            };
            if let Ok(s) = &r {
                metrics::queue_depths(q.name(), s);
            }
            stats.push((q.name().to_owned(), r));
        }
        let t = now_secs();
        let samples = prom::parse(&self.metrics.render());
        let mut sampled = self
            .sampled
            .lock()
            .expect("the sample lock is never poisoned");
        for (name, r) in stats {
            let h = sampled.queues.entry(name).or_default();
            match r {
                Ok(s) => {
                    h.error = None;
                    push_bounded(
                        &mut h.points,
                        QueuePoint {
                            t,
                            visible: s.visible,
                            in_flight: s.in_flight,
                            dlq: s.dlq_visible,
                            oldest_age_secs: s.oldest_age.map(|a| a.as_secs_f64()),
                        },
                    );
                }
                Err(e) => h.error = Some(e),
            }
        }
        for worker in worker_names(&samples) {
            let processed = prom::sum_by(
                &samples,
                metrics::MESSAGES_PROCESSED,
                ("worker", &worker),
                "worker",
            )
            .values()
            .sum();
            let buckets = prom::buckets(
                &samples,
                metrics::MESSAGE_PROCESSING_DURATION,
                ("worker", &worker),
            );
            push_bounded(
                sampled.workers.entry(worker).or_default(),
                WorkerPoint {
                    t,
                    processed,
                    buckets,
                },
            );
        }
    }

    /// The state document the page renders.
    pub async fn snapshot(&self) -> StateDoc {
        let samples = prom::parse(&self.metrics.render());
        let (queues, workers) = {
            let sampled = self
                .sampled
                .lock()
                .expect("the sample lock is never poisoned");
            let queues = sampled
                .queues
                .iter()
                .map(|(name, h)| queue_view(name, h))
                .collect();
            let workers = worker_names(&samples)
                .into_iter()
                .map(|w| worker_view(&w, sampled.workers.get(&w), &samples))
                .collect();
            (queues, workers)
        };
        let (batches, batches_error) = match self.metadata.recent_batches(RECENT_BATCHES).await {
            Ok(list) => {
                let mut out = Vec::with_capacity(list.len());
                for b in &list {
                    out.push(self.batch_view(b).await);
                }
                (out, None)
            }
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        StateDoc {
            generated_at: now_secs(),
            sample_interval_secs: SAMPLE_INTERVAL.as_secs_f64(),
            window_secs: WINDOW.as_secs_f64(),
            queues,
            workers,
            batches,
            batches_error,
        }
    }

    async fn batch_view(&self, b: &BatchRecord) -> BatchView {
        let mut files = Vec::with_capacity(b.files.len());
        for f in &b.files {
            // The smallest WebP (else the smallest of any format) is the thumbnail.
            let thumb = f.rendered.as_ref().and_then(|r| {
                r.variants
                    .iter()
                    .min_by_key(|v| (v.format != shared::variant::OutputFormat::Webp, v.width))
            });
            let (thumbnail_key, thumbnail_url, thumbnail_error) = match thumb {
                Some(v) => match self.media.presign_download(&v.key, THUMBNAIL_URL_TTL).await {
                    Ok(url) => (Some(v.key.clone()), Some(url), None),
                    Err(e) => (Some(v.key.clone()), None, Some(e.to_string())),
                },
                None => (None, None, None),
            };
            files.push(FileView {
                file_id: f.file_id.clone(),
                name: f.name.clone(),
                status: f.status,
                error_code: f.error.as_ref().map(|e| e.code),
                error_message: f.error.as_ref().map(|e| e.message.clone()),
                variants: f.rendered.as_ref().map_or(0, |r| r.variants.len()),
                thumbnail_key,
                thumbnail_url,
                thumbnail_error,
            });
        }
        BatchView {
            batch_id: b.batch_id.clone(),
            status: b.status,
            created_at: b.created_at.unix_timestamp_nanos() as f64 / 1e9,
            completed_at: b
                .completed_at
                .map(|t| t.unix_timestamp_nanos() as f64 / 1e9),
            files_total: b.counts.files,
            received: b.counts.received,
            done: b.counts.done,
            failed: b.counts.failed,
            expired: b.counts.expired,
            files,
        }
    }
}

/// What `/dashboard/api/state` answers.
#[derive(Debug, Serialize)]
pub struct StateDoc {
    /// Seconds since the Unix epoch.
    pub generated_at: f64,
    /// Seconds between history points.
    pub sample_interval_secs: f64,
    /// Window of throughput and latency figures.
    pub window_secs: f64,
    /// One per watched queue, by name.
    pub queues: Vec<QueueView>,
    /// One per worker.
    pub workers: Vec<WorkerView>,
    /// Newest first.
    pub batches: Vec<BatchView>,
    /// Why the batches could not be read, when they could not.
    pub batches_error: Option<String>,
}

/// One queue.
#[derive(Debug, Serialize)]
pub struct QueueView {
    /// Queue name.
    pub name: String,
    /// Messages ready to be received (latest sample).
    pub visible: Option<u64>,
    /// Messages received and not yet acked.
    pub in_flight: Option<u64>,
    /// Messages in its dead-letter queue.
    pub dlq: Option<u64>,
    /// Age of the oldest message, seconds.
    pub oldest_age_secs: Option<f64>,
    /// The last samples, oldest first.
    history: Vec<QueuePoint>,
    /// Why the latest sample failed, when it did.
    pub error: Option<String>,
}

/// One worker.
#[derive(Debug, Serialize)]
pub struct WorkerView {
    /// Worker name (the metrics' `worker` label).
    pub name: String,
    /// Messages finished per second over the window.
    pub throughput_per_sec: f64,
    /// Messages finished since the process started, by outcome.
    pub outcomes: BTreeMap<String, f64>,
    /// Median processing time over the window, seconds.
    pub p50_secs: Option<f64>,
    /// 95th percentile processing time over the window, seconds.
    pub p95_secs: Option<f64>,
    /// Messages being handled now.
    pub inflight: f64,
    /// Errors since the process started, by `stage/error_code`.
    pub errors: BTreeMap<String, f64>,
    /// Messages finished per second, per sample interval, oldest first: `[t, rate]`.
    pub throughput_history: Vec<(f64, f64)>,
}

/// One recent batch.
#[derive(Debug, Serialize)]
pub struct BatchView {
    /// Id.
    pub batch_id: String,
    /// Derived status.
    pub status: shared::port::metadata_store::BatchStatus,
    /// Seconds since the Unix epoch.
    pub created_at: f64,
    /// Seconds since the Unix epoch.
    pub completed_at: Option<f64>,
    /// Files in the batch.
    pub files_total: u64,
    /// Uploads seen.
    pub received: u64,
    /// Files done.
    pub done: u64,
    /// Files failed.
    pub failed: u64,
    /// Files never uploaded before their grant expired.
    pub expired: u64,
    /// The files.
    pub files: Vec<FileView>,
}

/// One file of a recent batch.
#[derive(Debug, Serialize)]
pub struct FileView {
    /// Id.
    pub file_id: String,
    /// Client's name.
    pub name: String,
    /// Status.
    pub status: FileStatus,
    /// Closed-set code of a failure.
    pub error_code: Option<shared::error::ErrorCode>,
    /// Why it failed.
    pub error_message: Option<String>,
    /// Variants rendered.
    pub variants: usize,
    /// Media key of the thumbnail variant (stable across polls; the URL is not).
    pub thumbnail_key: Option<String>,
    /// Presigned download URL of the thumbnail variant.
    pub thumbnail_url: Option<String>,
    /// Why the thumbnail could not be presigned.
    pub thumbnail_error: Option<String>,
}

fn queue_view(name: &str, h: &QueueHistory) -> QueueView {
    let last = h.points.back();
    QueueView {
        name: name.to_owned(),
        visible: last.map(|p| p.visible),
        in_flight: last.map(|p| p.in_flight),
        dlq: last.map(|p| p.dlq),
        oldest_age_secs: last.and_then(|p| p.oldest_age_secs),
        history: h.points.iter().cloned().collect(),
        error: h.error.clone(),
    }
}

fn worker_view(
    name: &str,
    history: Option<&VecDeque<WorkerPoint>>,
    samples: &[prom::Sample],
) -> WorkerView {
    let empty = VecDeque::new();
    let history = history.unwrap_or(&empty);
    let latest = history.back().cloned().unwrap_or_default();
    // The oldest point still inside the window is the baseline of the window's figures.
    let base = history
        .iter()
        .find(|p| latest.t - p.t <= WINDOW.as_secs_f64())
        .cloned()
        .unwrap_or_default();
    let span = latest.t - base.t;
    let throughput_per_sec = if span > 0.0 {
        (latest.processed - base.processed) / span
    } else {
        0.0
    };
    let window = prom::bucket_delta(&latest.buckets, &base.buckets);
    // Each point is the rate over the preceding RATE_SPAN samples: per-second rates of a
    // steady trickle alternate between 0 and a few, which hides the trend.
    let points: Vec<&WorkerPoint> = history.iter().collect();
    let throughput_history = (1..points.len())
        .map(|i| {
            let (a, b) = (points[i.saturating_sub(RATE_SPAN)], points[i]);
            let dt = b.t - a.t;
            let rate = if dt > 0.0 {
                (b.processed - a.processed) / dt
            } else {
                0.0
            };
            (b.t, rate.max(0.0))
        })
        .collect();
    let errors = samples
        .iter()
        .filter(|s| s.name == metrics::ERRORS && s.label("worker") == name)
        .fold(BTreeMap::new(), |mut m, s| {
            *m.entry(format!("{}/{}", s.label("stage"), s.label("error_code")))
                .or_insert(0.0) += s.value;
            m
        });
    WorkerView {
        name: name.to_owned(),
        throughput_per_sec,
        outcomes: prom::sum_by(
            samples,
            metrics::MESSAGES_PROCESSED,
            ("worker", name),
            "outcome",
        ),
        p50_secs: prom::quantile(0.5, &window),
        p95_secs: prom::quantile(0.95, &window),
        inflight: prom::sum_by(
            samples,
            metrics::INFLIGHT_MESSAGES,
            ("worker", name),
            "worker",
        )
        .values()
        .sum(),
        errors,
        throughput_history,
    }
}

/// The known workers plus any other the recorder has seen.
fn worker_names(samples: &[prom::Sample]) -> Vec<String> {
    let mut names: Vec<String> = WORKERS.iter().map(|w| (*w).to_owned()).collect();
    for s in samples {
        let w = s.label("worker");
        if !w.is_empty()
            && (s.name == metrics::MESSAGES_PROCESSED || s.name == metrics::MESSAGES_RECEIVED)
            && !names.iter().any(|n| n == w)
        {
            names.push(w.to_owned());
        }
    }
    names
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() == HISTORY_LEN {
        q.pop_front();
    }
    q.push_back(v);
}

fn now_secs() -> f64 {
    OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9
}

async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
}

async fn app_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
}

async fn style_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLE_CSS,
    )
}

async fn state(State(d): State<Dashboard>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(d.snapshot().await),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: f64, processed: f64, buckets: Vec<(f64, f64)>) -> WorkerPoint {
        WorkerPoint {
            t,
            processed,
            buckets,
        }
    }

    #[test]
    fn worker_figures_cover_the_window_only() {
        let mut h = VecDeque::new();
        // Ten messages long before the window, all slow; then 30 fast ones in the last 60 s.
        h.push_back(point(0.0, 10.0, vec![(0.1, 0.0), (10.0, 10.0)]));
        h.push_back(point(100.0, 10.0, vec![(0.1, 0.0), (10.0, 10.0)]));
        h.push_back(point(130.0, 25.0, vec![(0.1, 15.0), (10.0, 25.0)]));
        h.push_back(point(160.0, 40.0, vec![(0.1, 30.0), (10.0, 40.0)]));
        let v = worker_view("resize", Some(&h), &[]);
        assert!((v.throughput_per_sec - 0.5).abs() < 1e-9, "{v:?}");
        // Every message of the window took at most 0.1 s.
        assert!(v.p95_secs.unwrap() <= 0.1, "{v:?}");
        assert_eq!(v.throughput_history.len(), 3);
        // Each history point spans up to RATE_SPAN samples back (here: all of them).
        assert_eq!(v.throughput_history[0], (100.0, 0.0));
        assert!((v.throughput_history[2].1 - 30.0 / 160.0).abs() < 1e-9);
    }

    #[test]
    fn an_idle_worker_has_no_latency_and_zero_throughput() {
        let v = worker_view("metadata", None, &[]);
        assert_eq!(v.throughput_per_sec, 0.0);
        assert_eq!(v.p50_secs, None);
        assert!(v.throughput_history.is_empty());
    }

    #[test]
    fn histories_are_bounded() {
        let mut q = VecDeque::new();
        for i in 0..HISTORY_LEN + 10 {
            push_bounded(&mut q, i);
        }
        assert_eq!(q.len(), HISTORY_LEN);
        assert_eq!(q.front(), Some(&10));
    }

    #[test]
    fn assets_are_embedded_and_reference_each_other() {
        assert!(INDEX_HTML.contains("/dashboard/app.js"));
        assert!(INDEX_HTML.contains("/dashboard/style.css"));
        assert!(APP_JS.contains("/dashboard/api/state"));
        // No network beyond this origin.
        for a in [INDEX_HTML, APP_JS, STYLE_CSS] {
            assert!(
                !a.contains("http://") && !a.contains("https://"),
                "external URL in an asset"
            );
        }
    }
}
