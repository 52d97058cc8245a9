//! Benchmark (not a test): what long-polls and batch creation cost the metadata store, on the
//! embedded backend (SQLite) and on DynamoDB (moto).
//!
//! ```sh
//! PATH=~/.cache/prism-venv/bin:$PATH cargo run --release -p prism-api --example waiters
//! ```
//!
//! The API runs in this process on loopback, its metadata store wrapped in a counter of calls.
//! Printed per backend:
//! - store reads per second while W requests long-poll (`?wait=`) pending batches: W on one
//!   batch and W on W batches, for W = 1, 16, 64, split into whole-batch reads (`get_batch`,
//!   one per waiter when it arrives) and change-counter reads (`batch_version`, one item);
//! - wake-up latency: how long after a batch completes its waiting request answers;
//! - `POST /v1/batches` latency (p50/p95 of 30) with 0, 1,000 and 10,000 earlier batches of the
//!   same principal (seeded directly in the store, each counted in the upload quota).
//!
//! DynamoDB needs `moto_server` on PATH (`pip install -r .ci/requirements.txt`); without it
//! only SQLite is measured. `PRISM_BENCH_BACKENDS=sqlite` or `=dynamodb` measures one.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a benchmark: a panic is the report

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::port::{FileError, MetadataStore};
use shared::testing::counting::CountingMetadataStore;
use shared::testing::metadata_store::new_batch;
use tokio_util::sync::CancellationToken;

const WINDOW: Duration = Duration::from_secs(5);
const CHECK_MS: u64 = 250;

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
    store: Arc<CountingMetadataStore>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start(metadata: Option<Arc<dyn MetadataStore>>) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = prism_api::Config::default();
    cfg.common.data_dir = dir.path().to_path_buf();
    cfg.http.listen_addr = addr;
    cfg.limits.wait_check_interval_ms = CHECK_MS;
    cfg.auth.requests_per_minute = 1_000_000;
    cfg.auth.max_inflight_uploads = 10_000_000;
    let base = format!("http://{addr}");
    let stack = shared::adapter::local::LocalStack::open(
        dir.path(),
        &shared::config::Resources::default(),
        &base,
    )
    .await
    .unwrap();
    let mut deps = prism_api::Deps::local(&stack);
    let store = Arc::new(CountingMetadataStore::new(
        metadata.unwrap_or_else(|| deps.metadata.clone()),
    ));
    deps.metadata = store.clone();
    let stop = CancellationToken::new();
    prism_api::spawn(cfg, deps, stop.clone()).await.unwrap();
    let token = prism_api::dev_token(dir.path()).unwrap();
    Api {
        base,
        token,
        http: reqwest::Client::new(),
        store,
        stop,
        _dir: dir,
    }
}

impl Api {
    async fn create(&self) -> (String, String) {
        let r = self
            .http
            .post(format!("{}/v1/batches", self.base))
            .bearer_auth(&self.token)
            .json(
                &json!({"files": [{"name": "a.jpg", "content_type": "image/jpeg", "size": 10}],
                          "variants": {"widths": [320], "formats": ["webp"]}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        (
            v["batch_id"].as_str().unwrap().to_owned(),
            v["uploads"][0]["file_id"].as_str().unwrap().to_owned(),
        )
    }

    async fn wait(&self, batch: &str, secs: u64) -> Value {
        self.http
            .get(format!("{}/v1/batches/{batch}?wait={secs}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Store reads per second while `waiters` requests wait on `batches` distinct batches.
    async fn reads_while_waiting(&self, waiters: usize, batches: usize) -> (f64, f64) {
        let mut ids = Vec::new();
        for _ in 0..batches {
            ids.push(self.create().await.0);
        }
        let (g0, v0) = (
            self.store.calls("get_batch"),
            self.store.calls("batch_version"),
        );
        let t = Instant::now();
        let polls: Vec<_> = (0..waiters)
            .map(|i| self.wait(&ids[i % batches], WINDOW.as_secs()))
            .collect();
        futures::future::join_all(polls).await;
        let secs = t.elapsed().as_secs_f64();
        (
            (self.store.calls("get_batch") - g0) as f64 / secs,
            (self.store.calls("batch_version") - v0) as f64 / secs,
        )
    }

    /// Median and worst lag between a batch completing and its waiting request answering.
    async fn wake_up(&self, trials: usize) -> (Duration, Duration) {
        let mut lags = Vec::new();
        for _ in 0..trials {
            let (batch, file) = self.create().await;
            let store = self.store.clone();
            let (b, f) = (batch.clone(), file.clone());
            let done = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(600)).await;
                let err = FileError {
                    code: shared::error::ErrorCode::UndecodableImage,
                    message: "bench".into(),
                };
                store
                    .mark_failed(&b, &f, &err, time::OffsetDateTime::now_utc())
                    .await
                    .unwrap();
                Instant::now()
            });
            let v = self.wait(&batch, 10).await;
            let answered = Instant::now();
            assert_eq!(v["status"], "complete");
            lags.push(answered.duration_since(done.await.unwrap()));
        }
        lags.sort();
        (lags[lags.len() / 2], *lags.last().unwrap())
    }

    /// p50 and p95 of `n` `POST /v1/batches`.
    async fn create_latency(&self, n: usize) -> (Duration, Duration) {
        let mut t = Vec::with_capacity(n);
        for _ in 0..n {
            let s = Instant::now();
            self.create().await;
            t.push(s.elapsed());
        }
        t.sort();
        (t[n / 2], t[(n * 95 / 100).min(n - 1)])
    }

    /// Create `n` more batches of the dev principal directly in the store, `at_once` at a time.
    async fn seed(&self, n: usize, at_once: usize) {
        let store = self.store.clone();
        futures::future::join_all((0..at_once).map(|w| {
            let store = store.clone();
            async move {
                for _ in (w..n).step_by(at_once) {
                    let mut b = new_batch(1);
                    b.principal = shared::config::DEV_PRINCIPAL.into();
                    b.callback_url = None;
                    store.create_batch(&b).await.unwrap();
                }
            }
        }))
        .await;
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn bench(name: &str, metadata: Option<Arc<dyn MetadataStore>>, seed_at_once: usize) {
    let api = start(metadata).await;
    println!("\n== {name}");
    println!(
        "long-polls for {} s (change counter read every {CHECK_MS} ms per batch):",
        WINDOW.as_secs()
    );
    println!(
        "{:>8} {:>8} | {:>16} {:>16} | {:>20}",
        "waiters", "batches", "get_batch /s", "batch_version /s", "reads/s per waiter"
    );
    for (w, b) in [(1, 1), (16, 1), (64, 1), (16, 16), (64, 64)] {
        let (gets, versions) = api.reads_while_waiting(w, b).await;
        println!(
            "{w:>8} {b:>8} | {gets:>16.2} {versions:>16.2} | {:>20.3}",
            (gets + versions) / w as f64
        );
    }
    println!(
        "(before: every waiter re-read its whole batch every 25-500 ms: about 3.2 whole-batch reads/s per waiter over {} s)",
        WINDOW.as_secs()
    );
    let (p50, worst) = api.wake_up(10).await;
    println!(
        "wake-up after completion: median {}, worst {} (10 trials)",
        ms(p50),
        ms(worst)
    );
    println!("POST /v1/batches latency with earlier batches of the same principal:");
    let mut seeded = 0;
    for target in [0, 1_000, 10_000] {
        let t = Instant::now();
        api.seed(target - seeded, seed_at_once).await;
        let seeding = t.elapsed();
        seeded = target;
        let pending = api
            .store
            .pending_uploads(shared::config::DEV_PRINCIPAL)
            .await
            .unwrap();
        let (p50, p95) = api.create_latency(30).await;
        println!(
            "  {target:>6} earlier batches ({pending} uploads pending; seeded in {:.1} s): p50 {}, p95 {}",
            seeding.as_secs_f64(),
            ms(p50),
            ms(p95)
        );
    }
    api.stop.cancel();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // PRISM_BENCH_BACKENDS=sqlite or =dynamodb measures one of them.
        let only = std::env::var("PRISM_BENCH_BACKENDS").unwrap_or_default();
        if only != "dynamodb" {
            bench("SQLite (embedded backend)", None, 32).await;
        }
        if only == "sqlite" {
            return;
        }
        let has_moto = std::process::Command::new("moto_server")
            .arg("--help")
            .output()
            .is_ok();
        if !has_moto {
            println!("\n(moto_server not on PATH: DynamoDB skipped)");
            return;
        }
        let moto = shared::testing::moto::Moto::start();
        let c = moto.clients().await;
        shared::adapter::aws::provision::ensure_table(&c, "prism-bench")
            .await
            .unwrap();
        let store = shared::adapter::aws::DynamoMetadataStore::new(&c, "prism-bench");
        // moto serves one request at a time and times out under concurrent transactions:
        // seed it one batch at a time.
        bench("DynamoDB (moto)", Some(Arc::new(store)), 1).await;
    });
}
