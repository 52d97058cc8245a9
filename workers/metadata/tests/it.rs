//! prism-metadata end to end on the embedded backend: objects written to the buckets publish
//! events through the topic into the metadata queue, and the worker turns them into status.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use bytes::Bytes;
use prism_metadata::Config;
use serde_json::{Value, json};
use shared::adapter::local::LocalStack;
use shared::config::Resources;
use shared::keys;
use shared::manifest::{FailureRecord, Manifest, SCHEMA_VERSION};
use shared::port::{
    BatchStatus, BlobStore, FileError, FileStatus, MetadataStore, NewBatch, PutOptions, Queue,
    Topic,
};
use shared::testing::eventually;
use shared::testing::metadata_store::{new_batch, rendered};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

struct App {
    _dir: tempfile::TempDir,
    stack: LocalStack,
    token: CancellationToken,
    run: tokio::task::JoinHandle<()>,
    /// Subscribed to everything: sees `batch.completed`.
    archive: shared::adapter::local::SqliteQueue,
    metadata_queue: shared::adapter::local::SqliteQueue,
}

async fn spawn_worker() -> App {
    spawn_worker_with(|_| {}).await
}

async fn spawn_worker_with(tune: impl FnOnce(&mut Config)) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.common.data_dir = dir.path().to_path_buf();
    cfg.consumer.wait_time_secs = 1;
    cfg.consumer.backoff_base_secs = 1;
    cfg.consumer.backoff_cap_secs = 1;
    cfg.callback.allow_loopback_http = true;
    cfg.callback.backoff_base_ms = 50;
    cfg.callback.poll_interval_ms = 50;
    tune(&mut cfg);
    let stack = LocalStack::open(dir.path(), &Resources::default(), "http://127.0.0.1:1")
        .await
        .unwrap();
    let deps = prism_metadata::local_deps(&cfg, &stack).await.unwrap();
    let token = CancellationToken::new();
    let t = token.clone();
    let run = tokio::spawn(async move {
        prism_metadata::run(&cfg, deps, t).await;
    });
    let archive = stack
        .queue("archive", Duration::from_secs(30), 5)
        .await
        .unwrap();
    let metadata_queue = stack
        .queue("metadata", Duration::from_secs(60), 5)
        .await
        .unwrap();
    App {
        _dir: dir,
        stack,
        token,
        run,
        archive,
        metadata_queue,
    }
}

impl App {
    async fn create(&self, b: &NewBatch) {
        self.stack.metadata.create_batch(b).await.unwrap();
    }
    async fn upload(&self, b: &NewBatch, i: usize) {
        let key = keys::upload_key(&b.batch_id, &b.files[i].file_id);
        self.stack
            .uploads
            .put(&key, Bytes::from_static(b"jpeg"), PutOptions::default())
            .await
            .unwrap();
    }
    async fn manifest(&self, b: &NewBatch, i: usize) {
        let f = &b.files[i].file_id;
        let m = Manifest {
            schema_version: SCHEMA_VERSION,
            batch_id: b.batch_id.clone(),
            file_id: f.clone(),
            rendered_at: OffsetDateTime::now_utc(),
            rendered: rendered(&b.batch_id, f),
            request_sha256: None,
        };
        let key = keys::manifest_key(&b.batch_id, f);
        self.stack
            .media
            .put(
                &key,
                Bytes::from(serde_json::to_vec(&m).unwrap()),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }
    async fn failure(&self, b: &NewBatch, i: usize) {
        let f = &b.files[i].file_id;
        let r = FailureRecord {
            schema_version: SCHEMA_VERSION,
            batch_id: b.batch_id.clone(),
            file_id: f.clone(),
            failed_at: OffsetDateTime::now_utc(),
            error: FileError {
                code: shared::error::ErrorCode::TruncatedImage,
                message: "ends early".into(),
            },
            source_sha256: None,
        };
        let key = keys::failure_key(&b.batch_id, f);
        self.stack
            .media
            .put(
                &key,
                Bytes::from(serde_json::to_vec(&r).unwrap()),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }
    async fn batch(&self, b: &NewBatch) -> shared::port::BatchRecord {
        self.stack
            .metadata
            .get_batch(&b.batch_id)
            .await
            .unwrap()
            .unwrap()
    }
    async fn settled(&self) {
        eventually(
            Duration::from_secs(10),
            "metadata queue drained",
            || async {
                let s = self.metadata_queue.stats().await.unwrap();
                (s.visible == 0 && s.in_flight == 0).then_some(())
            },
        )
        .await;
    }
    async fn completions(&self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let msgs = self
                .archive
                .receive(10, Duration::from_millis(200))
                .await
                .unwrap();
            if msgs.is_empty() {
                return out;
            }
            for m in msgs {
                self.archive.ack(&m.receipt).await.unwrap();
                let v: Value = serde_json::from_str(&m.body).unwrap_or(Value::Null);
                if v["event_name"] == "batch.completed" {
                    out.push(v);
                }
            }
        }
    }
    async fn stop(self) {
        self.token.cancel();
        self.run.await.unwrap();
    }
}

/// A loopback receiver that records callbacks.
async fn callback_receiver() -> (String, Arc<Mutex<Vec<(HeaderMap, String)>>>) {
    let got: Arc<Mutex<Vec<(HeaderMap, String)>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://127.0.0.1:{}/hook", addr.port()), got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_manifests_and_failures_drive_status_and_complete_once() {
    let app = spawn_worker().await;
    let (url, hooks) = callback_receiver().await;
    let mut b = new_batch(3);
    // The dev principal: its secret is the one `DATA_DIR/webhook-secret` holds.
    b.principal = shared::config::DEV_PRINCIPAL.into();
    b.callback_url = Some(url);
    app.create(&b).await;

    app.upload(&b, 0).await;
    eventually(Duration::from_secs(10), "received", || async {
        (app.batch(&b).await.files[0].status == FileStatus::Received).then_some(())
    })
    .await;
    assert_eq!(app.batch(&b).await.status, BatchStatus::Processing);

    app.manifest(&b, 0).await;
    app.upload(&b, 1).await;
    app.failure(&b, 1).await;
    app.upload(&b, 2).await;
    app.manifest(&b, 2).await;
    eventually(Duration::from_secs(10), "complete", || async {
        (app.batch(&b).await.status == BatchStatus::Complete).then_some(())
    })
    .await;
    // Duplicates and late events after completion change nothing and announce nothing more.
    app.manifest(&b, 0).await;
    app.upload(&b, 2).await;
    app.failure(&b, 2).await;
    app.settled().await;

    let got = app.batch(&b).await;
    assert_eq!(
        (
            got.counts.files,
            got.counts.received,
            got.counts.done,
            got.counts.failed
        ),
        (3, 3, 2, 1)
    );
    assert_eq!(
        got.files[0].rendered,
        Some(rendered(&b.batch_id, &b.files[0].file_id))
    );
    assert_eq!(
        got.files[1].error.as_ref().unwrap().code,
        shared::error::ErrorCode::TruncatedImage
    );
    assert_eq!(
        got.files[2].status,
        FileStatus::Done,
        "a late failure record overrode done"
    );
    assert!(got.announced_at.is_some());

    let completions = app.completions().await;
    assert_eq!(completions.len(), 1, "{completions:?}");
    assert_eq!(completions[0]["batch_id"], json!(b.batch_id));
    assert_eq!(completions[0]["counts"]["failed"], json!(1));

    let got = eventually(Duration::from_secs(5), "callback", || async {
        let h = hooks.lock().unwrap().clone();
        (!h.is_empty()).then_some(h)
    })
    .await;
    assert_eq!(got.len(), 1, "callback delivered more than once");
    let (headers, body) = &got[0];
    // The receiver's view: the secret as written for it, and the Standard Webhooks headers.
    let whsec =
        std::fs::read_to_string(app.stack.data_dir.join(prism_metadata::WEBHOOK_SECRET_FILE))
            .unwrap();
    let whsec = whsec.trim();
    assert!(whsec.starts_with("whsec_"), "{whsec}");
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    let (id, ts, sig) = (
        header(shared::callback::WEBHOOK_ID_HEADER),
        header(shared::callback::WEBHOOK_TIMESTAMP_HEADER),
        header(shared::callback::WEBHOOK_SIGNATURE_HEADER),
    );
    assert_eq!(id, format!("msg_{}_completed", b.batch_id));
    assert!(
        shared::callback::verify(
            &shared::callback::webhook_key(whsec),
            &id,
            ts.parse().unwrap(),
            &sig,
            body.as_bytes()
        ),
        "bad callback signature"
    );
    // And an independent implementation of the specification agrees.
    standard_webhooks_verify(whsec, &id, &ts, &sig, body).unwrap();
    let tampered = body.replace("complete", "failed");
    assert!(standard_webhooks_verify(whsec, &id, &ts, &sig, &tampered).is_err());
    let state = app.batch(&b).await.webhook.expect("delivery state");
    assert_eq!(state.status, shared::port::WebhookStatus::Delivered);
    assert_eq!((state.attempts, state.last_status), (1, Some(200)));

    // Another principal's callback is signed with its own key: the dev secret does not
    // verify it, the key `prism webhooks secret --principal alice` prints does.
    let mut other = new_batch(1);
    other.callback_url = b.callback_url.clone();
    app.create(&other).await;
    app.failure(&other, 0).await;
    let hooks = eventually(Duration::from_secs(5), "second callback", || async {
        let h = hooks.lock().unwrap().clone();
        (h.len() >= 2).then_some(h)
    })
    .await;
    let (headers, body) = &hooks[1];
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    let (id, ts, sig) = (
        header(shared::callback::WEBHOOK_ID_HEADER),
        header(shared::callback::WEBHOOK_TIMESTAMP_HEADER),
        header(shared::callback::WEBHOOK_SIGNATURE_HEADER),
    );
    assert!(standard_webhooks_verify(whsec, &id, &ts, &sig, body).is_err());
    let alice =
        prism_metadata::principal_whsec(&Config::default(), &app.stack.data_dir, "alice").unwrap();
    assert_ne!(alice, whsec);
    standard_webhooks_verify(&alice, &id, &ts, &sig, body).unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_never_uploaded_expire_and_complete_their_batch() {
    let app = spawn_worker_with(|c| {
        c.expiry.sweep_interval_secs = 1;
        c.expiry.grace_secs = 0;
    })
    .await;
    let (url, hooks) = callback_receiver().await;
    let mut b = new_batch(3);
    b.callback_url = Some(url);
    // Grants that expire in a moment.
    b.expires_at = time::OffsetDateTime::now_utc() + Duration::from_secs(1);
    app.create(&b).await;
    app.upload(&b, 0).await;
    app.manifest(&b, 0).await;
    let started = std::time::Instant::now();
    let got = eventually(
        Duration::from_secs(10),
        "batch complete by expiry",
        || async {
            let got = app.batch(&b).await;
            (got.status == BatchStatus::Complete).then_some(got)
        },
    )
    .await;
    // Within a sweep interval or two of the expiry, not minutes.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (got.counts.done, got.counts.expired),
        (1, 2),
        "{:?}",
        got.counts
    );
    assert_eq!(got.files[1].status, shared::port::FileStatus::Expired);
    let hooks = eventually(Duration::from_secs(5), "callback", || async {
        let h = hooks.lock().unwrap().clone();
        (!h.is_empty()).then_some(h)
    })
    .await;
    let body: Value = serde_json::from_str(&hooks[0].1).unwrap();
    assert_eq!(body["counts"]["expired"], json!(2), "{body}");
    let completions = app.completions().await;
    assert_eq!(completions.len(), 1, "{completions:?}");
    assert_eq!(completions[0]["counts"]["expired"], json!(2));
    // A late upload of an expired file changes nothing.
    app.upload(&b, 1).await;
    app.settled().await;
    assert_eq!(app.batch(&b).await.counts.expired, 2);
    app.stop().await;
}

/// A receiver that accepts connections and never answers.
async fn tarpit() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let a = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(sock);
        }
    });
    // `localhost`, not the address: the per-host limit keys on the URL's host.
    (format!("http://localhost:{}/hook", addr.port()), accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tarpit_callback_delays_only_its_own_deliveries() {
    let app = spawn_worker_with(|c| {
        c.callback.timeout_secs = 5;
        c.callback.backoff_base_ms = 60_000;
        c.callback.per_host_concurrency = 2;
    })
    .await;
    let (pit, accepted) = tarpit().await;
    // Twelve batches whose callbacks hang.
    let mut stuck = Vec::new();
    for _ in 0..12 {
        let mut b = new_batch(1);
        b.callback_url = Some(pit.clone());
        app.create(&b).await;
        app.failure(&b, 0).await;
        stuck.push(b);
    }
    eventually(Duration::from_secs(5), "tarpit reached", || async {
        (accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    // An unrelated batch without a callback, and one whose receiver answers: both complete,
    // and the callback arrives, while the tarpit holds its connections.
    let (url, hooks) = callback_receiver().await;
    let t = std::time::Instant::now();
    let plain = new_batch(1);
    app.create(&plain).await;
    app.failure(&plain, 0).await;
    let mut good = new_batch(1);
    good.callback_url = Some(url);
    app.create(&good).await;
    app.failure(&good, 0).await;
    eventually(
        Duration::from_secs(5),
        "callback past the tarpit",
        || async { (!hooks.lock().unwrap().is_empty()).then_some(()) },
    )
    .await;
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "delayed {took:?} by the tarpit"
    );
    assert_eq!(app.batch(&plain).await.status, BatchStatus::Complete);
    // The tarpit holds at most its per-host share of connections.
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) <= 2);
    // Its attempts time out and are visible, with the next one scheduled.
    let state = eventually(Duration::from_secs(10), "a timed-out attempt", || async {
        app.batch(&stuck[0])
            .await
            .webhook
            .filter(|w| w.attempts >= 1)
    })
    .await;
    assert_eq!(state.status, shared::port::WebhookStatus::Pending);
    assert!(state.next_attempt_at.is_some());
    assert!(
        state
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("no answer"),
        "{state:?}"
    );
    assert!(!state.last_error.unwrap().contains("127.0.0.1"));
    app.stop().await;
}

/// Verify one delivery with the reference Python library of the Standard Webhooks
/// specification (`standardwebhooks` on PyPI, installed by `.ci/requirements.txt`).
fn standard_webhooks_verify(
    whsec: &str,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &str,
) -> Result<(), String> {
    use std::io::Write as _;
    const SCRIPT: &str = "import os, sys\n\
from standardwebhooks.webhooks import Webhook\n\
headers = {'webhook-id': os.environ['WH_ID'], 'webhook-timestamp': os.environ['WH_TS'],\n\
           'webhook-signature': os.environ['WH_SIG']}\n\
Webhook(os.environ['WH_SECRET']).verify(sys.stdin.buffer.read(), headers)\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .env("WH_SECRET", whsec)
        .env("WH_ID", id)
        .env("WH_TS", timestamp)
        .env("WH_SIG", signature)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 on PATH (with .ci/requirements.txt installed)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the standardwebhooks package is missing: pip install -r .ci/requirements.txt\n{stderr}"
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(stderr.into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_and_duplicated_delivery_keeps_counts_exact() {
    let app = spawn_worker().await;
    let b = new_batch(2);
    app.create(&b).await;
    // The manifests arrive before the uploads; each upload event arrives three times.
    app.manifest(&b, 0).await;
    app.manifest(&b, 1).await;
    for _ in 0..3 {
        app.upload(&b, 0).await;
        app.upload(&b, 1).await;
    }
    app.settled().await;
    let got = app.batch(&b).await;
    assert_eq!(got.status, BatchStatus::Complete);
    assert_eq!(
        (got.counts.received, got.counts.done, got.counts.failed),
        (2, 2, 0)
    );
    assert_eq!(app.completions().await.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_lost_to_a_crash_is_announced_on_redelivery() {
    let app = spawn_worker().await;
    let b = new_batch(1);
    app.create(&b).await;
    // The transition happened, but the process died before announcing.
    let now = OffsetDateTime::now_utc();
    app.stack
        .metadata
        .mark_done(
            &b.batch_id,
            &b.files[0].file_id,
            &rendered(&b.batch_id, &b.files[0].file_id),
            now,
        )
        .await
        .unwrap();
    assert!(app.batch(&b).await.announced_at.is_none());
    app.manifest(&b, 0).await;
    app.settled().await;
    assert!(app.batch(&b).await.announced_at.is_some());
    assert_eq!(app.completions().await.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_and_test_events_are_skipped() {
    let app = spawn_worker().await;
    let b = new_batch(1);
    app.create(&b).await;
    // A manifest event whose object is gone; garbage; an upload for an unknown batch.
    let q = &app.metadata_queue;
    let gone = shared::event::object_created_event(
        "local",
        "media",
        &keys::manifest_key(&b.batch_id, &b.files[0].file_id),
        1,
        "e",
        "ObjectCreated:Put",
        "1",
        OffsetDateTime::now_utc(),
    );
    q.send(&serde_json::to_string(&gone).unwrap())
        .await
        .unwrap();
    q.send("{not json").await.unwrap();
    q.send(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"uploads"}"#)
        .await
        .unwrap();
    app.stack
        .uploads
        .put(
            &keys::upload_key("unknown-batch", "f"),
            Bytes::from_static(b"x"),
            PutOptions::default(),
        )
        .await
        .unwrap();
    let dead = eventually(Duration::from_secs(10), "three dead letters", || async {
        let d = q.dead_letters(10).await.unwrap();
        (d.len() == 3).then_some(d)
    })
    .await;
    let mut codes: Vec<&str> = dead
        .iter()
        .map(|d| d.info.clone().unwrap().error_code.as_str())
        .collect();
    codes.sort();
    assert_eq!(codes, ["invalid_event", "invalid_event", "source_missing"]);
    app.settled().await;
    assert_eq!(
        app.batch(&b).await.files[0].status,
        FileStatus::AwaitingUpload
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_requests_count_once_per_event() {
    let app = spawn_worker().await;
    let b = new_batch(1);
    app.create(&b).await;
    let fid = &b.files[0].file_id;
    let received = "2026-12-05T10:00:00Z";
    // As the API publishes them: stamped with the principal and the receive time; the client's
    // own `timestamp` (here year 9999) is data, never the request time.
    let ev = |id: &str, principal: &str| {
        json!({"event_name": "IMAGE_REQUESTED", "image_id": fid, "user_id": "42", "event_id": id,
               "timestamp": "9999-12-31T23:59:59Z", "principal": principal, "received_at": received})
        .to_string()
    };
    for body in [ev("e1", "alice"), ev("e1", "alice"), ev("e2", "alice")] {
        app.stack.topic.publish(&body).await.unwrap();
    }
    // Another principal's requests for alice's image, and unstamped ones, count nothing.
    app.stack.topic.publish(&ev("e3", "mallory")).await.unwrap();
    let bare = json!({"event_name": "IMAGE_REQUESTED", "image_id": fid}).to_string();
    app.stack.topic.publish(&bare).await.unwrap();
    // An id-less event redelivered is still counted once.
    let no_id = json!({"event_name": "IMAGE_REQUESTED", "image_id": fid, "principal": "alice",
                       "received_at": received})
    .to_string();
    app.stack.topic.publish(&no_id).await.unwrap();
    app.stack.topic.publish(&no_id).await.unwrap();
    app.settled().await;
    let got = app.batch(&b).await;
    assert_eq!(got.files[0].request_count, 3);
    assert_eq!(
        got.files[0].last_requested_at,
        Some(
            OffsetDateTime::parse(received, &time::format_description::well_known::Rfc3339)
                .unwrap()
        )
    );
    app.stop().await;
}
