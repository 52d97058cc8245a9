use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::adapter::local::SqliteQueue;
use crate::port::QueueSettings;
use crate::testing::eventually;

/// What the test handler does with a body, per attempt (1-based).
type Script = dyn Fn(&str, u32) -> Behaviour + Send + Sync;

#[derive(Clone, Copy)]
enum Behaviour {
    Ok,
    Sleep(Duration),
    Transient,
    Permanent,
    Panic,
}

struct TestHandler {
    script: Box<Script>,
    attempts: Mutex<HashMap<String, u32>>,
    done: Mutex<Vec<String>>,
}

impl TestHandler {
    fn new(script: impl Fn(&str, u32) -> Behaviour + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            script: Box::new(script),
            attempts: Mutex::default(),
            done: Mutex::default(),
        })
    }
    fn attempts(&self, body: &str) -> u32 {
        self.attempts
            .lock()
            .unwrap()
            .get(body)
            .copied()
            .unwrap_or(0)
    }
    fn done(&self) -> Vec<String> {
        self.done.lock().unwrap().clone()
    }
}

#[async_trait]
impl Handler for TestHandler {
    async fn handle(&self, m: &Message) -> Result<Outcome, HandlerError> {
        let n = {
            let mut a = self.attempts.lock().unwrap();
            let n = a.entry(m.body.clone()).or_default();
            *n += 1;
            *n
        };
        match (self.script)(&m.body, n) {
            Behaviour::Ok => {}
            Behaviour::Sleep(d) => tokio::time::sleep(d).await,
            Behaviour::Transient => {
                return Err(HandlerError::transient(ErrorCode::Throttled, "slow down"));
            }
            Behaviour::Permanent => {
                return Err(HandlerError::permanent(
                    ErrorCode::UndecodableImage,
                    "not an image",
                ));
            }
            Behaviour::Panic => panic!("handler exploded"),
        }
        self.done.lock().unwrap().push(m.body.clone());
        Ok(Outcome::Success)
    }
}

fn cfg(vis: u64) -> ConsumerConfig {
    ConsumerConfig {
        concurrency: 4,
        batch_size: 10,
        wait_time_secs: 1,
        visibility_timeout_secs: vis,
        backoff_base_secs: 1,
        backoff_cap_secs: 1,
    }
}

async fn queue(dir: &tempfile::TempDir, vis: u64, max: u32) -> Arc<SqliteQueue> {
    let mut s = QueueSettings::new("work");
    s.visibility_timeout = Duration::from_secs(vis);
    s.max_receive_count = max;
    Arc::new(
        SqliteQueue::open(&dir.path().join("q.sqlite"), s)
            .await
            .unwrap(),
    )
}

fn start(
    q: Arc<SqliteQueue>,
    h: Arc<TestHandler>,
    c: ConsumerConfig,
    drain: Duration,
) -> (CancellationToken, tokio::task::JoinHandle<RunReport>) {
    let token = CancellationToken::new();
    let consumer = Consumer::new("test", q, h, c);
    let t = token.clone();
    (
        token,
        tokio::spawn(async move { consumer.run(t, drain).await }),
    )
}

async fn empty(q: &SqliteQueue) -> bool {
    let s = q.stats().await.unwrap();
    s.visible == 0 && s.in_flight == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successes_are_acked_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir, 30, 5).await;
    for i in 0..25 {
        q.send(&format!("m{i}")).await.unwrap();
    }
    let h = TestHandler::new(|_, _| Behaviour::Ok);
    let (token, run) = start(q.clone(), h.clone(), cfg(30), Duration::from_secs(5));
    eventually(Duration::from_secs(10), "all handled", || async {
        (h.done().len() == 25).then_some(())
    })
    .await;
    eventually(Duration::from_secs(5), "queue empty", || async {
        empty(&q).await.then_some(())
    })
    .await;
    token.cancel();
    assert_eq!(run.await.unwrap().abandoned, 0);
    let mut done = h.done();
    done.sort();
    done.dedup();
    assert_eq!(done.len(), 25, "a message was handled twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_retry_after_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir, 30, 5).await;
    q.send("flaky").await.unwrap();
    let h = TestHandler::new(|_, n| {
        if n < 3 {
            Behaviour::Transient
        } else {
            Behaviour::Ok
        }
    });
    let (token, run) = start(q.clone(), h.clone(), cfg(30), Duration::from_secs(5));
    // Backoff is 1 s per retry (cap 1): far below the 30 s visibility timeout, so the message
    // reappears because the consumer set the backoff, not because visibility lapsed.
    eventually(
        Duration::from_secs(10),
        "third attempt succeeds",
        || async { (h.done() == ["flaky"]).then_some(()) },
    )
    .await;
    assert_eq!(h.attempts("flaky"), 3);
    eventually(Duration::from_secs(5), "acked", || async {
        empty(&q).await.then_some(())
    })
    .await;
    assert_eq!(q.stats().await.unwrap().dlq_visible, 0);
    token.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_are_dead_lettered_with_reason_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir, 30, 5).await;
    q.send("poison").await.unwrap();
    q.send("fine").await.unwrap();
    let h = TestHandler::new(|b, _| {
        if b == "poison" {
            Behaviour::Permanent
        } else {
            Behaviour::Ok
        }
    });
    let (token, run) = start(q.clone(), h.clone(), cfg(30), Duration::from_secs(5));
    let dl = eventually(Duration::from_secs(10), "dead letter", || async {
        let d = q.dead_letters(10).await.unwrap();
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(dl[0].body, "poison");
    let info = dl[0].info.clone().unwrap();
    assert_eq!(info.error_code, ErrorCode::UndecodableImage);
    assert_eq!(info.worker, "test");
    assert!(info.reason.contains("not an image"));
    eventually(Duration::from_secs(5), "neighbour handled", || async {
        (h.done() == ["fine"]).then_some(())
    })
    .await;
    assert_eq!(h.attempts("poison"), 1, "poison burned retries");
    token.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_retried_and_the_worker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir, 30, 5).await;
    q.send("boom").await.unwrap();
    q.send("calm").await.unwrap();
    let h = TestHandler::new(|b, n| {
        if b == "boom" && n == 1 {
            Behaviour::Panic
        } else {
            Behaviour::Ok
        }
    });
    let (token, run) = start(q.clone(), h.clone(), cfg(30), Duration::from_secs(5));
    eventually(Duration::from_secs(10), "both handled", || async {
        (h.done().len() == 2).then_some(())
    })
    .await;
    assert_eq!(h.attempts("boom"), 2);
    eventually(Duration::from_secs(5), "acked", || async {
        empty(&q).await.then_some(())
    })
    .await;
    token.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_keeps_long_work_invisible_to_other_consumers() {
    let dir = tempfile::tempdir().unwrap();
    // Visibility 2 s; the handler takes 5 s. Without the heartbeat a second consumer would
    // receive the message after 2 s.
    let q = queue(&dir, 2, 5).await;
    q.send("long").await.unwrap();
    let h = TestHandler::new(|_, _| Behaviour::Sleep(Duration::from_secs(5)));
    let (t1, r1) = start(q.clone(), h.clone(), cfg(2), Duration::from_secs(10));
    eventually(Duration::from_secs(5), "first attempt started", || async {
        (h.attempts("long") == 1).then_some(())
    })
    .await;
    let (t2, r2) = start(q.clone(), h.clone(), cfg(2), Duration::from_secs(10));
    eventually(Duration::from_secs(15), "handled", || async {
        (h.done().len() == 1).then_some(())
    })
    .await;
    assert_eq!(
        h.attempts("long"),
        1,
        "a second consumer received the message while it was being handled"
    );
    t1.cancel();
    t2.cancel();
    r1.await.unwrap();
    r2.await.unwrap();
    assert!(empty(&q).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_handlers_within_the_drain_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir, 30, 5).await;
    q.send("finishing").await.unwrap();
    let h = TestHandler::new(|_, _| Behaviour::Sleep(Duration::from_millis(500)));
    let (token, run) = start(q.clone(), h.clone(), cfg(30), Duration::from_secs(5));
    eventually(Duration::from_secs(5), "started", || async {
        (h.attempts("finishing") == 1).then_some(())
    })
    .await;
    token.cancel();
    assert_eq!(run.await.unwrap().abandoned, 0);
    assert_eq!(h.done(), ["finishing"]);
    assert!(empty(&q).await, "a drained message was not acked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_mid_handler_past_the_deadline_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir, 2, 5).await;
    q.send("interrupted").await.unwrap();
    let slow = TestHandler::new(|_, _| Behaviour::Sleep(Duration::from_secs(30)));
    let (token, run) = start(q.clone(), slow.clone(), cfg(2), Duration::from_millis(200));
    eventually(Duration::from_secs(5), "started", || async {
        (slow.attempts("interrupted") == 1).then_some(())
    })
    .await;
    token.cancel();
    let report = run.await.unwrap();
    assert_eq!(report.abandoned, 1);
    assert!(slow.done().is_empty());
    // Not acked: it reappears after the visibility timeout and a new consumer handles it.
    let fresh = TestHandler::new(|_, _| Behaviour::Ok);
    let (t2, r2) = start(q.clone(), fresh.clone(), cfg(2), Duration::from_secs(5));
    eventually(
        Duration::from_secs(10),
        "redelivered and handled",
        || async { (fresh.done() == ["interrupted"]).then_some(()) },
    )
    .await;
    t2.cancel();
    r2.await.unwrap();
    assert!(empty(&q).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir, 30, 5).await;
    for i in 0..12 {
        q.send(&format!("c{i}")).await.unwrap();
    }
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    struct Counting(Arc<AtomicUsize>, Arc<AtomicUsize>);
    #[async_trait]
    impl Handler for Counting {
        async fn handle(&self, _: &Message) -> Result<Outcome, HandlerError> {
            let now = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            self.1.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.0.fetch_sub(1, Ordering::SeqCst);
            Ok(Outcome::Success)
        }
    }
    let token = CancellationToken::new();
    let mut c = cfg(30);
    c.concurrency = 3;
    let consumer = Consumer::new(
        "test",
        q.clone(),
        Arc::new(Counting(running, peak.clone())),
        c,
    );
    let t = token.clone();
    let run = tokio::spawn(async move { consumer.run(t, Duration::from_secs(5)).await });
    eventually(Duration::from_secs(10), "drained", || async {
        empty(&q).await.then_some(())
    })
    .await;
    token.cancel();
    run.await.unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 3);
}

#[test]
fn backoff_is_jittered_and_capped() {
    let c = ConsumerConfig {
        backoff_base_secs: 2,
        backoff_cap_secs: 60,
        ..ConsumerConfig::default()
    };
    for _ in 0..200 {
        assert!((1..=2).contains(&backoff(&c, 1).as_secs()));
        assert!((1..=16).contains(&backoff(&c, 4).as_secs()));
        assert!((1..=60).contains(&backoff(&c, 40).as_secs()));
    }
    let spread: std::collections::HashSet<u64> =
        (0..200).map(|_| backoff(&c, 6).as_secs()).collect();
    assert!(spread.len() > 10, "no jitter");
}

#[test]
fn config_ranges_are_checked() {
    assert!(ConsumerConfig::default().validate().is_ok());
    assert!(
        ConsumerConfig {
            batch_size: 11,
            ..Default::default()
        }
        .validate()
        .is_err()
    );
    assert!(
        ConsumerConfig {
            concurrency: 0,
            ..Default::default()
        }
        .validate()
        .is_err()
    );
    assert!(
        ConsumerConfig {
            wait_time_secs: 21,
            ..Default::default()
        }
        .validate()
        .is_err()
    );
    assert!(
        ConsumerConfig {
            backoff_cap_secs: 1,
            backoff_base_secs: 2,
            ..Default::default()
        }
        .validate()
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_metric_set_is_emitted() {
    let handle = crate::telemetry::metrics::install();
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir, 30, 5).await;
    q.send("ok").await.unwrap();
    q.send("bad").await.unwrap();
    let h = TestHandler::new(|b, _| {
        if b == "bad" {
            Behaviour::Permanent
        } else {
            Behaviour::Ok
        }
    });
    let (token, run) = start(q.clone(), h.clone(), cfg(30), Duration::from_secs(5));
    eventually(Duration::from_secs(10), "processed", || async {
        empty(&q).await.then_some(())
    })
    .await;
    token.cancel();
    run.await.unwrap();
    let text = handle.render();
    for needle in [
        "prism_messages_received_total{worker=\"test\"}",
        "prism_messages_processed_total{worker=\"test\",outcome=\"success\"}",
        "prism_messages_processed_total{worker=\"test\",outcome=\"dead_letter\"}",
        "prism_message_processing_duration_seconds_bucket{worker=\"test\"",
        "prism_message_age_seconds_bucket{worker=\"test\"",
        "prism_errors_total{worker=\"test\",stage=\"processing\",error_code=\"undecodable_image\"}",
        "prism_inflight_messages{worker=\"test\"}",
        "prism_build_info{",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

/// The metrics path on AWS: the recorder `install` sets up fans every metric out to the EMF
/// writer too, which (once switched on) turns a worker's real traffic into EMF documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_reach_cloudwatch_emf_through_the_installed_recorder() {
    let _handle = crate::telemetry::metrics::install();
    let emf = crate::telemetry::emf::global();
    emf.enable();
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir, 30, 5).await;
    q.send("ok").await.unwrap();
    q.send("ok").await.unwrap();
    q.send("bad").await.unwrap();
    let h = TestHandler::new(|b, _| {
        if b == "bad" {
            Behaviour::Permanent
        } else {
            Behaviour::Ok
        }
    });
    let (token, run) = start(q.clone(), h.clone(), cfg(30), Duration::from_secs(5));
    eventually(Duration::from_secs(10), "processed", || async {
        empty(&q).await.then_some(())
    })
    .await;
    token.cancel();
    run.await.unwrap();
    let settings = crate::telemetry::emf::EmfSettings {
        namespace: "prism/test".into(),
    };
    let mut out = Vec::new();
    emf.write(&settings, &mut out).unwrap();
    let docs: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(crate::telemetry::emf::tests::check_spec)
        .collect();
    let value = |name: &str, dims: &[(&str, &str)]| -> serde_json::Value {
        docs.iter()
            .find(|d| d.get(name).is_some() && dims.iter().all(|(k, v)| d[*k] == *v))
            .unwrap_or_else(|| panic!("no {name} {dims:?} in {docs:#?}"))[name]
            .clone()
    };
    use crate::telemetry::metrics as m;
    assert_eq!(
        value(
            m::MESSAGES_PROCESSED,
            &[("worker", "test"), ("outcome", "success")]
        ),
        2.0
    );
    assert_eq!(
        value(
            m::MESSAGES_PROCESSED,
            &[("worker", "test"), ("outcome", "dead_letter")]
        ),
        1.0
    );
    assert_eq!(value(m::MESSAGES_RECEIVED, &[("worker", "test")]), 3.0);
    assert_eq!(
        value(
            m::ERRORS,
            &[("worker", "test"), ("error_code", "undecodable_image")]
        ),
        1.0
    );
    let latency = value(
        m::MESSAGE_PROCESSING_DURATION,
        &[("worker", "test"), ("outcome", "success")],
    );
    assert_eq!(latency["Count"], 2.0);
    // build_info's labels are build metadata, not dimensions: never an EMF metric.
    assert!(docs.iter().all(|d| d.get(m::BUILD_INFO).is_none()));
}

#[tokio::test]
async fn the_depth_sampler_exports_the_queue_gauges() {
    let handle = crate::telemetry::metrics::install();
    let dir = tempfile::tempdir().unwrap();
    let mut s = QueueSettings::new("sampled");
    s.visibility_timeout = Duration::from_secs(30);
    let sampled: Arc<dyn Queue> = Arc::new(
        SqliteQueue::open(&dir.path().join("sampled.sqlite"), s)
            .await
            .unwrap(),
    );
    for i in 0..3 {
        sampled.send(&format!("m{i}")).await.unwrap();
    }
    let taken = sampled.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(taken.len(), 1);
    let stop = CancellationToken::new();
    let task = spawn_depth_sampler(sampled.clone(), Duration::from_millis(20), stop.clone());
    let text = eventually(Duration::from_secs(5), "gauges sampled", || {
        let t = handle.render();
        async move {
            (t.contains("prism_queue_visible_messages{queue=\"sampled\"} 2")
                && t.contains("prism_queue_inflight_messages{queue=\"sampled\"} 1"))
            .then_some(t)
        }
    })
    .await;
    assert!(
        text.contains("prism_queue_dlq_messages{queue=\"sampled\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("prism_queue_oldest_message_age_seconds{queue=\"sampled\"}"),
        "{text}"
    );
    stop.cancel();
    task.await.unwrap();
}
