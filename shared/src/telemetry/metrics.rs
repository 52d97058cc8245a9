//! Every metric prism exports: names, descriptions, typed helpers, and the exporter.
//!
//! Names follow `prism_<subsystem>_<name>_<unit>[_total]` in base units; counters end in
//! `_total`, gauges and histograms never do. Labels take values from closed sets or config only
//! (`worker`, `outcome`, `stage`, `error_code`, `operation`, `backend`, `format`, `queue`).
//! The raw `metrics::counter!`/`gauge!`/`histogram!` macros are banned outside this module
//! (clippy `disallowed-macros`), so every name is defined here once.
//!
//! Histograms are rendered as real Prometheus histograms with buckets (the exporter's default
//! is summaries, which cannot be aggregated across a fleet).
#![allow(clippy::disallowed_macros)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Messages received from a queue.
pub const MESSAGES_RECEIVED: &str = "prism_messages_received_total";
/// Messages finished, by outcome (`success|duplicate|retry|dead_letter|abandoned`).
pub const MESSAGES_PROCESSED: &str = "prism_messages_processed_total";
/// Handler time per message, by outcome.
pub const MESSAGE_PROCESSING_DURATION: &str = "prism_message_processing_duration_seconds";
/// Time from a message's first send to the start of its handling (queue lag).
pub const MESSAGE_AGE: &str = "prism_message_age_seconds";
/// Errors by stage (`receiving|processing|sending`) and code.
pub const ERRORS: &str = "prism_errors_total";
/// Messages being handled now.
pub const INFLIGHT_MESSAGES: &str = "prism_inflight_messages";
/// Blob store call latency, by backend, operation and outcome.
pub const BLOB_STORE_REQUEST_DURATION: &str = "prism_blob_store_request_duration_seconds";
/// Queue call latency, by backend, operation and outcome.
pub const QUEUE_REQUEST_DURATION: &str = "prism_queue_request_duration_seconds";
/// Variants rendered, by format (not by width: widths are chosen by clients, an unbounded set).
pub const IMAGES_RENDERED: &str = "prism_images_rendered_total";
/// Encoded variant sizes, by format.
pub const RENDER_OUTPUT_SIZE: &str = "prism_render_output_size_bytes";
/// Build information (value 1).
pub const BUILD_INFO: &str = "prism_build_info";
/// Visible messages per queue (sampled).
pub const QUEUE_VISIBLE_MESSAGES: &str = "prism_queue_visible_messages";
/// In-flight messages per queue (sampled).
pub const QUEUE_INFLIGHT_MESSAGES: &str = "prism_queue_inflight_messages";
/// Dead-lettered messages per queue (sampled).
pub const QUEUE_DLQ_MESSAGES: &str = "prism_queue_dlq_messages";
/// Age of the oldest message per queue (sampled).
pub const QUEUE_OLDEST_MESSAGE_AGE: &str = "prism_queue_oldest_message_age_seconds";
/// Admission budget units in use (the resize worker: MiB of estimated render memory).
pub const ADMISSION_BUDGET_IN_USE: &str = "prism_admission_budget_in_use";
/// Admission budget capacity.
pub const ADMISSION_BUDGET_CAPACITY: &str = "prism_admission_budget_capacity";

/// HTTP requests served by the API, by route, method and status.
pub const HTTP_REQUESTS: &str = "prism_http_requests_total";
/// HTTP request latency, by route and method.
pub const HTTP_REQUEST_DURATION: &str = "prism_http_request_duration_seconds";
/// Request body bytes the API read, by route.
pub const HTTP_REQUEST_BODY_BYTES: &str = "prism_http_request_body_bytes_total";
/// Webhook delivery attempts, by outcome (`delivered|retrying|failed`).
pub const WEBHOOK_ATTEMPTS: &str = "prism_webhook_attempts_total";
/// Webhook attempt latency, by outcome.
pub const WEBHOOK_ATTEMPT_DURATION: &str = "prism_webhook_attempt_duration_seconds";
/// Files whose upload grant expired unused.
pub const UPLOADS_EXPIRED: &str = "prism_uploads_expired_total";

/// The Prometheus handle type.
pub type Handle = PrometheusHandle;

/// Every name, for tests that check dashboards only query exported metrics.
pub const ALL: &[&str] = &[
    MESSAGES_RECEIVED,
    MESSAGES_PROCESSED,
    MESSAGE_PROCESSING_DURATION,
    MESSAGE_AGE,
    ERRORS,
    INFLIGHT_MESSAGES,
    BLOB_STORE_REQUEST_DURATION,
    QUEUE_REQUEST_DURATION,
    IMAGES_RENDERED,
    RENDER_OUTPUT_SIZE,
    BUILD_INFO,
    QUEUE_VISIBLE_MESSAGES,
    QUEUE_INFLIGHT_MESSAGES,
    QUEUE_DLQ_MESSAGES,
    QUEUE_OLDEST_MESSAGE_AGE,
    ADMISSION_BUDGET_IN_USE,
    ADMISSION_BUDGET_CAPACITY,
    HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
    HTTP_REQUEST_BODY_BYTES,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_ATTEMPT_DURATION,
    UPLOADS_EXPIRED,
];

const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const BYTES_BUCKETS: &[f64] = &[
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// Describe every metric (units and help text). Called once by [`install`].
pub fn describe_all() {
    describe_counter!(
        MESSAGES_RECEIVED,
        Unit::Count,
        "Messages received from a queue."
    );
    describe_counter!(
        MESSAGES_PROCESSED,
        Unit::Count,
        "Messages finished, by outcome."
    );
    describe_histogram!(
        MESSAGE_PROCESSING_DURATION,
        Unit::Seconds,
        "Handler time per message."
    );
    describe_histogram!(
        MESSAGE_AGE,
        Unit::Seconds,
        "Time from first send to handling start."
    );
    describe_counter!(ERRORS, Unit::Count, "Errors by stage and closed-set code.");
    describe_gauge!(
        INFLIGHT_MESSAGES,
        Unit::Count,
        "Messages being handled now."
    );
    describe_histogram!(
        BLOB_STORE_REQUEST_DURATION,
        Unit::Seconds,
        "Blob store call latency."
    );
    describe_histogram!(QUEUE_REQUEST_DURATION, Unit::Seconds, "Queue call latency.");
    describe_counter!(IMAGES_RENDERED, Unit::Count, "Variants rendered.");
    describe_histogram!(RENDER_OUTPUT_SIZE, Unit::Bytes, "Encoded variant sizes.");
    describe_gauge!(BUILD_INFO, Unit::Count, "Build information; always 1.");
    describe_gauge!(
        QUEUE_VISIBLE_MESSAGES,
        Unit::Count,
        "Visible messages per queue."
    );
    describe_gauge!(
        QUEUE_INFLIGHT_MESSAGES,
        Unit::Count,
        "In-flight messages per queue."
    );
    describe_gauge!(
        QUEUE_DLQ_MESSAGES,
        Unit::Count,
        "Dead-lettered messages per queue."
    );
    describe_gauge!(
        QUEUE_OLDEST_MESSAGE_AGE,
        Unit::Seconds,
        "Age of the oldest message."
    );
    describe_gauge!(
        ADMISSION_BUDGET_IN_USE,
        Unit::Count,
        "Admission budget units in use."
    );
    describe_gauge!(
        ADMISSION_BUDGET_CAPACITY,
        Unit::Count,
        "Admission budget capacity."
    );
    describe_counter!(HTTP_REQUESTS, Unit::Count, "HTTP requests served.");
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency."
    );
    describe_counter!(
        HTTP_REQUEST_BODY_BYTES,
        Unit::Bytes,
        "Request body bytes the API read."
    );
    describe_counter!(
        WEBHOOK_ATTEMPTS,
        Unit::Count,
        "Webhook delivery attempts, by outcome."
    );
    describe_histogram!(
        WEBHOOK_ATTEMPT_DURATION,
        Unit::Seconds,
        "Webhook delivery attempt latency."
    );
    describe_counter!(
        UPLOADS_EXPIRED,
        Unit::Count,
        "Files whose upload grant expired unused."
    );
}

/// One webhook delivery attempt: `outcome` is `delivered`, `retrying` or `failed`.
pub fn webhook_attempt(outcome: &'static str, elapsed: Duration) {
    counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
    histogram!(WEBHOOK_ATTEMPT_DURATION, "outcome" => outcome).record(elapsed.as_secs_f64());
}

/// `n` files expired.
pub fn uploads_expired(n: usize) {
    counter!(UPLOADS_EXPIRED).increment(n as u64);
}

/// One HTTP request served (`route` is the matched route template, never the raw path).
pub fn http_request(route: String, method: String, status: u16, elapsed: Duration) {
    counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method.clone(), "status" => status.to_string()).increment(1);
    histogram!(HTTP_REQUEST_DURATION, "route" => route, "method" => method)
        .record(elapsed.as_secs_f64());
}

/// The counter of request body bytes read on `route` (a route template, never the raw path).
pub fn http_request_body_bytes(route: String) -> metrics::Counter {
    counter!(HTTP_REQUEST_BODY_BYTES, "route" => route)
}

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES_BUCKETS))
        .expect("bucket lists are non-empty")
}

/// Install the recorders once per process (later calls return the same handle, so `prism dev`
/// can start every component in one process) and describe every metric: the Prometheus recorder
/// behind `/metrics`, fanned out with the CloudWatch EMF recorder ([`super::emf`], which records
/// nothing until EMF is switched on).
///
/// # Panics
/// When another recorder was installed first (a programming error).
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder: PrometheusRecorder = builder().build_recorder();
            let handle = recorder.handle();
            let fanout = metrics_util::layers::FanoutBuilder::default()
                .add_recorder(recorder)
                .add_recorder(super::emf::global().clone())
                .build();
            metrics::set_global_recorder(fanout).expect("no other metrics recorder is installed");
            describe_all();
            build_info();
            handle
        })
        .clone()
}

/// A handle on a recorder that is not installed (tests of the ops endpoints).
pub fn test_handle() -> PrometheusHandle {
    builder().build_recorder().handle()
}

fn build_info() {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "git_sha" => option_env!("PRISM_GIT_SHA").unwrap_or("unknown")).set(1.0);
}

/// A message was received.
pub fn message_received(worker: &'static str, age: Duration) {
    counter!(MESSAGES_RECEIVED, "worker" => worker).increment(1);
    histogram!(MESSAGE_AGE, "worker" => worker).record(age.as_secs_f64());
}

/// A message finished with `outcome` after `elapsed`.
pub fn message_processed(worker: &'static str, outcome: &'static str, elapsed: Duration) {
    counter!(MESSAGES_PROCESSED, "worker" => worker, "outcome" => outcome).increment(1);
    histogram!(MESSAGE_PROCESSING_DURATION, "worker" => worker, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// An error at `stage` (`receiving|processing|sending`) with a closed-set `code`.
pub fn error(worker: &'static str, stage: &'static str, code: crate::error::ErrorCode) {
    counter!(ERRORS, "worker" => worker, "stage" => stage, "error_code" => code.as_str())
        .increment(1);
}

/// Messages being handled now.
pub fn inflight(worker: &'static str, n: usize) {
    gauge!(INFLIGHT_MESSAGES, "worker" => worker).set(n as f64);
}

/// A variant was rendered (labelled by format only; see [`IMAGES_RENDERED`]).
pub fn image_rendered(format: &'static str, bytes: usize) {
    counter!(IMAGES_RENDERED, "format" => format).increment(1);
    histogram!(RENDER_OUTPUT_SIZE, "format" => format).record(bytes as f64);
}

/// Sampled queue depths (by each worker for its queue, and by the `prism dev` dashboard).
pub fn queue_depths(queue: &str, s: &crate::port::queue::QueueStats) {
    let q = queue.to_owned();
    gauge!(QUEUE_VISIBLE_MESSAGES, "queue" => q.clone()).set(s.visible as f64);
    gauge!(QUEUE_INFLIGHT_MESSAGES, "queue" => q.clone()).set(s.in_flight as f64);
    gauge!(QUEUE_DLQ_MESSAGES, "queue" => q.clone()).set(s.dlq_visible as f64);
    // SQS reports no oldest age (a CloudWatch metric): leave the gauge absent, not 0.
    if let Some(age) = s.oldest_age {
        gauge!(QUEUE_OLDEST_MESSAGE_AGE, "queue" => q).set(age.as_secs_f64());
    }
}

/// Admission budget in use and capacity.
pub fn admission_budget(worker: &'static str, in_use: u64, capacity: u64) {
    gauge!(ADMISSION_BUDGET_IN_USE, "worker" => worker).set(in_use as f64);
    gauge!(ADMISSION_BUDGET_CAPACITY, "worker" => worker).set(capacity as f64);
}

/// Which adapter-call histogram a [`RequestTimer`] records to.
#[derive(Debug, Clone, Copy)]
pub enum Port {
    /// [`BLOB_STORE_REQUEST_DURATION`].
    BlobStore,
    /// [`QUEUE_REQUEST_DURATION`].
    Queue,
}

/// Times one adapter call; a timer dropped without [`RequestTimer::finish`] (the call's future
/// was cancelled) records `outcome="cancelled"` (pict-rs' drop-guard pattern).
#[must_use = "finish the timer with the call's outcome"]
pub struct RequestTimer {
    port: Port,
    backend: &'static str,
    operation: &'static str,
    start: Instant,
    done: bool,
}

impl RequestTimer {
    /// Start timing `operation` on `backend`.
    pub fn start(port: Port, backend: &'static str, operation: &'static str) -> Self {
        Self {
            port,
            backend,
            operation,
            start: Instant::now(),
            done: false,
        }
    }

    /// Record the call as `success` or `error`.
    pub fn finish(mut self, ok: bool) {
        self.record(if ok { "success" } else { "error" });
        self.done = true;
    }

    fn record(&self, outcome: &'static str) {
        let name = match self.port {
            Port::BlobStore => BLOB_STORE_REQUEST_DURATION,
            Port::Queue => QUEUE_REQUEST_DURATION,
        };
        histogram!(name, "backend" => self.backend, "operation" => self.operation, "outcome" => outcome)
            .record(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        if !self.done {
            self.record("cancelled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention() {
        for name in ALL {
            assert!(name.starts_with("prism_"), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
        let mut sorted = ALL.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ALL.len(), "duplicate names");
    }

    #[test]
    fn histograms_render_with_buckets() {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            message_processed("test", "success", Duration::from_millis(30));
            image_rendered("webp", 5000);
            image_rendered("webp", 7000);
            let t = RequestTimer::start(Port::Queue, "local", "receive");
            drop(t);
        });
        let text = handle.render();
        assert!(text.contains("prism_message_processing_duration_seconds_bucket{worker=\"test\",outcome=\"success\",le=\"0.05\"} 1"), "{text}");
        assert!(
            text.contains("prism_render_output_size_bytes_bucket{format=\"webp\",le=\"16384\"} 2"),
            "{text}"
        );
        assert!(text.contains("outcome=\"cancelled\""), "{text}");
        // Two widths, one series: no label carries the client-chosen width.
        assert!(
            text.contains("prism_images_rendered_total{format=\"webp\"} 2"),
            "{text}"
        );
        assert!(!text.contains("variant"), "{text}");
        assert!(
            !text.contains("quantile"),
            "summaries instead of histograms: {text}"
        );
    }
}
