//! CloudWatch embedded metric format (EMF): the metrics of [`super::metrics`], written to stdout
//! as one JSON document per line, which CloudWatch Logs turns into CloudWatch metrics. On ECS the
//! awslogs driver already ships stdout, so no agent, sidecar or `PutMetricData` permission is
//! needed. Off by default (`[metrics] emf = false`); the CDK task definitions switch it on with
//! `PRISM__METRICS__EMF=true`.
//!
//! Every metric call goes to both the Prometheus recorder (`/metrics`, unchanged) and this one
//! (a fan-out installed by [`super::metrics::install`]). While EMF is off, this recorder hands out
//! no-op handles. While on, it keeps per series a counter total, a gauge value or a histogram of
//! the samples since the last flush, and every `emf_interval_secs` writes:
//!
//! - counters as the increase since the previous flush (so `Sum` per period is throughput);
//! - gauges as their current value;
//! - histograms as `{"Values": [...], "Counts": [...], "Max", "Min", "Count", "Sum"}`: samples
//!   rounded to two significant digits (at most 5% off), so CloudWatch computes percentiles
//!   (p50/p95/p99) from the distribution rather than from averages.
//!
//! Bounds (hostile or buggy label values must not turn into unbounded CloudWatch cost):
//! - dimensions come only from the closed key set [`DIMENSION_KEYS`]; other labels are dropped
//!   (the series merge, which is the right aggregation for counters and histograms), values
//!   longer than [`MAX_DIMENSION_VALUE_LEN`] or outside printable ASCII become `other`;
//! - at most [`MAX_SERIES`] series; samples of further series are dropped and counted in the
//!   next flush's `dropped_series` log line;
//! - at most [`MAX_HISTOGRAM_BINS`] distinct values per histogram series between two flushes
//!   (further samples go to the nearest existing value);
//! - at most [`MAX_METRICS_PER_DOCUMENT`] metrics, [`MAX_VALUES_PER_METRIC`] values per metric and
//!   about [`MAX_DOCUMENT_BYTES`] per line (the EMF specification's limits are 100 metrics per
//!   directive and 100 values per metric; CloudWatch Logs events are limited to 256 KiB).
//!
//! Dimension sets: each document declares its full label set and, when it has a `worker` label
//! and others, also `["worker"]`, so CloudWatch keeps a per-worker roll-up (e.g. all messages a
//! worker processed, whatever the outcome) that alarms can divide by.
#![allow(clippy::disallowed_macros)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

/// Label keys that may become CloudWatch dimensions: each takes values from a closed set or from
/// configuration (worker names, outcomes, stages, error codes, formats, queue names, adapter
/// operations and backends, route templates, HTTP methods and status codes).
pub const DIMENSION_KEYS: &[&str] = &[
    "worker",
    "outcome",
    "stage",
    "error_code",
    "format",
    "queue",
    "operation",
    "backend",
    "route",
    "method",
    "status",
];
/// Metrics never written as EMF (their labels are build metadata, not dimensions).
pub const EXCLUDED: &[&str] = &[super::metrics::BUILD_INFO];
/// Most series kept between flushes.
pub const MAX_SERIES: usize = 1000;
/// Most distinct sample values one histogram series keeps between flushes.
pub const MAX_HISTOGRAM_BINS: usize = 400;
/// Most metrics in one document (the EMF limit per metric directive).
pub const MAX_METRICS_PER_DOCUMENT: usize = 100;
/// Most `Values` entries of one metric in one document (the EMF limit).
pub const MAX_VALUES_PER_METRIC: usize = 100;
/// A document is closed once it reaches this many bytes (well under the log event limit).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Longest dimension value kept; longer ones become `other`.
pub const MAX_DIMENSION_VALUE_LEN: usize = 64;
/// Dimensions per set allowed by EMF.
pub const MAX_DIMENSIONS_PER_SET: usize = 30;

/// What is written per flush.
#[derive(Debug, Clone)]
pub struct EmfSettings {
    /// CloudWatch namespace (`[metrics] emf_namespace`).
    pub namespace: String,
}

/// Dimension name/value pairs, sorted by name.
type Dimensions = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    dims: Dimensions,
    name: String,
}

#[derive(Default)]
struct Bins {
    /// Rounded value (as f64 bits: non-negative floats order like their bits) → count.
    bins: BTreeMap<u64, u64>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

enum Series {
    Counter {
        total: AtomicU64,
        flushed: AtomicU64,
    },
    Gauge {
        bits: AtomicU64,
    },
    Histogram(Mutex<Bins>),
}

impl CounterFn for Series {
    fn increment(&self, value: u64) {
        if let Series::Counter { total, .. } = self {
            total.fetch_add(value, Ordering::Relaxed);
        }
    }
    fn absolute(&self, value: u64) {
        if let Series::Counter { total, .. } = self {
            total.fetch_max(value, Ordering::Relaxed);
        }
    }
}

impl GaugeFn for Series {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        if let Series::Gauge { bits } = self {
            bits.store(value.to_bits(), Ordering::Relaxed);
        }
    }
}

impl Series {
    fn update(&self, f: impl Fn(f64) -> f64) {
        if let Series::Gauge { bits } = self {
            let _ = bits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(f(f64::from_bits(b)).to_bits())
            });
        }
    }
}

impl HistogramFn for Series {
    fn record(&self, value: f64) {
        let Series::Histogram(bins) = self else {
            return;
        };
        // Durations and sizes only: negative, NaN and infinite samples are bugs, not data.
        if !value.is_finite() || value < 0.0 {
            return;
        }
        let rounded = round2(value);
        let mut b = bins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = if b.bins.len() < MAX_HISTOGRAM_BINS || b.bins.contains_key(&rounded.to_bits()) {
            rounded.to_bits()
        } else {
            nearest(&b.bins, rounded)
        };
        *b.bins.entry(key).or_insert(0) += 1;
        if b.count == 0 {
            b.min = value;
            b.max = value;
        } else {
            b.min = b.min.min(value);
            b.max = b.max.max(value);
        }
        b.count += 1;
        b.sum += value;
    }
}

/// `v` rounded to two significant digits (0 stays 0).
fn round2(v: f64) -> f64 {
    if v == 0.0 {
        return 0.0;
    }
    let exp = v.log10().floor() - 1.0;
    let scale = 10f64.powf(exp);
    let r = (v / scale).round() * scale;
    if r.is_finite() { r } else { v }
}

/// The existing bin closest to `v` (the map is non-empty when called).
fn nearest(bins: &BTreeMap<u64, u64>, v: f64) -> u64 {
    let bits = v.to_bits();
    let below = bins.range(..=bits).next_back().map(|(k, _)| *k);
    let above = bins.range(bits..).next().map(|(k, _)| *k);
    match (below, above) {
        (Some(b), Some(a)) => {
            if v - f64::from_bits(b) <= f64::from_bits(a) - v {
                b
            } else {
                a
            }
        }
        (Some(k), None) | (None, Some(k)) => k,
        (None, None) => bits,
    }
}

#[derive(Default)]
struct Registry {
    series: HashMap<SeriesKey, Arc<Series>>,
    dropped: u64,
}

/// The EMF side of the metrics fan-out: a recorder and the state its flushes read.
#[derive(Clone, Default)]
pub struct EmfRecorder {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    enabled: AtomicBool,
    registry: Mutex<Registry>,
}

impl EmfRecorder {
    /// A recorder that records nothing until [`EmfRecorder::enable`].
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Start keeping series (handles registered before stay no-ops).
    pub fn enable(&self) {
        self.inner.enabled.store(true, Ordering::Relaxed);
    }

    /// Whether series are kept.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Relaxed)
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn series(&self, key: &Key, make: impl FnOnce() -> Series) -> Option<Arc<Series>> {
        if !self.is_enabled() || EXCLUDED.contains(&key.name()) {
            return None;
        }
        let mut dims: Vec<(String, String)> = key
            .labels()
            .filter(|l| DIMENSION_KEYS.contains(&l.key()))
            .map(|l| (l.key().to_owned(), dimension_value(l.value())))
            .collect();
        dims.sort();
        dims.dedup_by(|a, b| a.0 == b.0);
        let k = SeriesKey {
            dims,
            name: key.name().to_owned(),
        };
        let mut reg = self.registry();
        if let Some(s) = reg.series.get(&k) {
            return Some(s.clone());
        }
        if reg.series.len() >= MAX_SERIES {
            reg.dropped += 1;
            return None;
        }
        let s = Arc::new(make());
        reg.series.insert(k, s.clone());
        Some(s)
    }

    /// The documents of one flush, one JSON object per entry, each at most
    /// [`MAX_METRICS_PER_DOCUMENT`] metrics and about [`MAX_DOCUMENT_BYTES`].
    pub fn flush(&self, settings: &EmfSettings, timestamp_ms: u64) -> Vec<String> {
        // Gather the values under the lock, serialise after.
        let (groups, dropped) = {
            let mut reg = self.registry();
            let mut groups: BTreeMap<Dimensions, Vec<(String, Value)>> = BTreeMap::new();
            let mut keys: Vec<&SeriesKey> = reg.series.keys().collect();
            keys.sort();
            for k in keys {
                let s = &reg.series[k];
                for v in values(s) {
                    groups
                        .entry(k.dims.clone())
                        .or_default()
                        .push((k.name.clone(), v));
                }
            }
            (groups, std::mem::take(&mut reg.dropped))
        };
        if dropped > 0 {
            tracing::warn!(
                dropped_series = dropped,
                max_series = MAX_SERIES,
                "EMF: samples of series beyond the limit were dropped."
            );
        }
        let mut docs = Vec::new();
        for (dims, metrics) in groups {
            let mut doc = Document::new(&dims);
            for (name, value) in metrics {
                let size = name.len() + value.to_string().len() + 40;
                if doc.len() >= MAX_METRICS_PER_DOCUMENT
                    || (doc.len() > 0 && doc.bytes + size > MAX_DOCUMENT_BYTES)
                    || doc.has(&name)
                {
                    docs.push(doc.render(settings, timestamp_ms));
                    doc = Document::new(&dims);
                }
                doc.push(name, value, size);
            }
            if doc.len() > 0 {
                docs.push(doc.render(settings, timestamp_ms));
            }
        }
        docs
    }

    /// Write one flush to `out`, one document per line.
    ///
    /// # Errors
    /// When `out` fails.
    pub fn write(&self, settings: &EmfSettings, out: &mut impl Write) -> std::io::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        for doc in self.flush(settings, u64::try_from(now).unwrap_or(u64::MAX)) {
            let mut line = doc.into_bytes();
            line.push(b'\n');
            out.write_all(&line)?;
        }
        out.flush()
    }
}

/// A label value as a dimension value: printable ASCII up to [`MAX_DIMENSION_VALUE_LEN`], else
/// `other` (CloudWatch dimension values must be non-empty).
fn dimension_value(v: &str) -> String {
    if v.is_empty()
        || v.len() > MAX_DIMENSION_VALUE_LEN
        || !v.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        "other".into()
    } else {
        v.to_owned()
    }
}

/// The CloudWatch unit of a metric, from its name's unit suffix.
#[must_use]
pub fn unit_of(name: &str) -> &'static str {
    let base = name.strip_suffix("_total").unwrap_or(name);
    if base.ends_with("_seconds") {
        "Seconds"
    } else if base.ends_with("_bytes") {
        "Bytes"
    } else {
        "Count"
    }
}

#[allow(clippy::cast_precision_loss)]
/// A series' values for one flush (a histogram with more than [`MAX_VALUES_PER_METRIC`] distinct
/// values gives several, each written to its own document); resets what a flush consumes.
fn values(s: &Series) -> Vec<Value> {
    match s {
        Series::Counter { total, flushed } => {
            let t = total.load(Ordering::Relaxed);
            let before = flushed.swap(t, Ordering::Relaxed);
            #[allow(clippy::cast_precision_loss)]
            let delta = t.saturating_sub(before) as f64;
            vec![json!(delta)]
        }
        Series::Gauge { bits } => {
            let v = f64::from_bits(bits.load(Ordering::Relaxed));
            if v.is_finite() {
                vec![json!(v)]
            } else {
                vec![]
            }
        }
        Series::Histogram(bins) => {
            let b = std::mem::take(
                &mut *bins
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            if b.count == 0 {
                return vec![];
            }
            let entries: Vec<(f64, u64)> = b
                .bins
                .iter()
                .map(|(k, c)| (f64::from_bits(*k), *c))
                .collect();
            let chunks: Vec<&[(f64, u64)]> = entries.chunks(MAX_VALUES_PER_METRIC).collect();
            let single = chunks.len() == 1;
            chunks
                .into_iter()
                .map(|chunk| {
                    let (count, sum, min, max) = if single {
                        (b.count as f64, b.sum, b.min, b.max)
                    } else {
                        (
                            chunk.iter().map(|(_, c)| *c as f64).sum::<f64>(),
                            chunk.iter().map(|(v, c)| v * *c as f64).sum::<f64>(),
                            chunk.first().map_or(0.0, |e| e.0),
                            chunk.last().map_or(0.0, |e| e.0),
                        )
                    };
                    json!({
                        "Values": chunk.iter().map(|e| e.0).collect::<Vec<_>>(),
                        "Counts": chunk.iter().map(|e| e.1 as f64).collect::<Vec<_>>(),
                        "Max": max,
                        "Min": min,
                        "Count": count,
                        "Sum": sum,
                    })
                })
                .collect()
        }
    }
}

struct Document<'a> {
    dims: &'a [(String, String)],
    metrics: Vec<(String, Value)>,
    bytes: usize,
}

impl<'a> Document<'a> {
    fn new(dims: &'a [(String, String)]) -> Self {
        Self {
            dims,
            metrics: Vec::new(),
            bytes: 200
                + dims
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 8)
                    .sum::<usize>(),
        }
    }
    fn len(&self) -> usize {
        self.metrics.len()
    }
    fn has(&self, name: &str) -> bool {
        self.metrics.iter().any(|(n, _)| n == name)
    }
    fn push(&mut self, name: String, value: Value, size: usize) {
        self.bytes += size;
        self.metrics.push((name, value));
    }
    fn render(self, settings: &EmfSettings, timestamp_ms: u64) -> String {
        let keys: Vec<&str> = self
            .dims
            .iter()
            .map(|(k, _)| k.as_str())
            .take(MAX_DIMENSIONS_PER_SET)
            .collect();
        let mut sets = vec![keys.clone()];
        if keys.len() > 1 && keys.contains(&"worker") {
            sets.push(vec!["worker"]);
        }
        let definitions: Vec<Value> = self
            .metrics
            .iter()
            .map(|(n, _)| json!({"Name": n, "Unit": unit_of(n)}))
            .collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": settings.namespace,
                    "Dimensions": sets,
                    "Metrics": definitions,
                }],
            }),
        );
        for (k, v) in self.dims {
            root.insert(k.clone(), Value::String(v.clone()));
        }
        for (n, v) in self.metrics {
            root.insert(n, v);
        }
        Value::Object(root).to_string()
    }
}

impl Recorder for EmfRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.series(key, || Series::Counter {
            total: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
        })
        .map_or_else(Counter::noop, Counter::from_arc)
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.series(key, || Series::Gauge {
            bits: AtomicU64::new(0f64.to_bits()),
        })
        .map_or_else(Gauge::noop, Gauge::from_arc)
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.series(key, || Series::Histogram(Mutex::new(Bins::default())))
            .map_or_else(Histogram::noop, Histogram::from_arc)
    }
}

/// The process-wide EMF recorder (part of the fan-out [`super::metrics::install`] sets up).
pub fn global() -> &'static EmfRecorder {
    static GLOBAL: OnceLock<EmfRecorder> = OnceLock::new();
    GLOBAL.get_or_init(EmfRecorder::new)
}

/// Switch EMF on for this process and write a flush to stdout every `interval` until `shutdown`,
/// then once more (the last partial interval). Returns the task's handle.
pub fn spawn(
    settings: EmfSettings,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let recorder = global().clone();
    recorder.enable();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let last = tokio::select! {
                () = shutdown.cancelled() => true,
                _ = tick.tick() => false,
            };
            let r = recorder.write(&settings, &mut std::io::stdout().lock());
            if let Err(e) = r {
                tracing::warn!(error = %e, "EMF: writing metrics to stdout failed.");
            }
            if last {
                return;
            }
        }
    })
}

#[cfg(test)]
pub(crate) mod tests;
