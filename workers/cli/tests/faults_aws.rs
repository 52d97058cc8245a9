//! Fault injection on the AWS path: the whole stack (API, resize, metadata, archiver) runs on
//! AWS backends against moto, with every SDK call going through
//! [`shared::testing::fault_proxy`], which fails a seeded ~16 % of them with each service's
//! real throttling and 5xx answers and with connection resets before and after forwarding (the
//! call took effect, the client saw a reset and retried it). One upload's `GetObject` is
//! denied permanently (S3 `AccessDenied`).
//!
//! Afterwards nothing is lost: every file is `done` (or `failed` with its proper code), exactly
//! once in its batch, with exact counts and every variant present and decodable; the denied
//! file was dead-lettered once-or-more with its code and reason instead of retried forever,
//! and after the rule is lifted and the DLQ redriven it completes too; every queue and DLQ ends
//! empty; and the proxy's counters show every fault kind on every service.
//!
//! The test's own traffic: batch creation, client events and batch reads go through the API
//! (whose SDK calls are faulted, so the test retries a 5xx as any client would); uploads are the
//! presigned POSTs, which the proxy passes through unfaulted; the final inspection (media
//! bucket, queues, DLQ redrive) uses clients straight to moto.
//!
//! Seeded: the seed is printed, and `PRISM_FAULTS_SEED=<n>` replays the draws (which request
//! meets which draw still depends on timing).
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

#[path = "support/batch_check.rs"]
mod batch_check;
#[path = "../../resize/tests/support/hostile_inputs.rs"]
mod hostile_inputs;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::adapter::aws::{S3BlobStore, SqsQueue};
use shared::port::{BlobStore as _, Queue as _};
use shared::testing::fault_proxy::{FaultKind, FaultPlan, FaultProxy, Service};
use shared::testing::moto::Moto;
use tokio_util::sync::CancellationToken;

/// Fraction of SDK calls that fail, spread evenly over the four random kinds.
const FAULT_RATE: f64 = 0.16;

/// Worker settings for the run (one file serves every component, as with `prism dev`): short
/// backoffs, and a visibility just above the archiver's floor (2 × flush age + 30 s) so a
/// message whose `ReceiveMessage` answer was reset comes back within the run. The receive
/// limit is far above what faults can cost one message: a message redriven because it kept
/// meeting faults would be the redrive policy working, not what this test is about.
const CONFIG: &str = r#"
max_receive_count = 30

[consumer]
visibility_timeout_secs = 32
backoff_base_secs = 1
backoff_cap_secs = 2

[flush]
max_age_secs = 1

[resize]
avif_speed = 8
"#;

/// What a file should end as.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Done,
    Failed(&'static str),
    /// Its `GetObject` is denied: dead-lettered, then done after the redrive.
    Denied,
}

/// xorshift64*: reproducible file sizes and noise.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn batch_files(dir: &Path, batch: usize, n: usize, rng: &mut Rng) -> Vec<(PathBuf, Expect)> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            // Wider than the largest width, so every file renders all four variants.
            let (w, h) = (340 + rng.below(260) as u32, 150 + rng.below(250) as u32);
            let (ext, bytes, expect) = match i % 6 {
                0 | 3 => ("png", hostile_inputs::png_solid(w, h), Expect::Done),
                1 | 4 => ("jpg", hostile_inputs::jpeg_solid(w, h), Expect::Done),
                2 => ("gif", hostile_inputs::gif_frames(w, h, 2), Expect::Done),
                _ => {
                    if i % 12 == 5 {
                        (
                            "jpg",
                            hostile_inputs::noise(rng.next(), 300 + i),
                            Expect::Failed("unsupported_format"),
                        )
                    } else {
                        let full = hostile_inputs::jpeg_solid(w, h);
                        (
                            "jpg",
                            full[..full.len() * 2 / 3].to_vec(),
                            Expect::Failed("truncated_image"),
                        )
                    }
                }
            };
            // The second file of the first batch is the one whose reads are denied.
            let expect = if batch == 0 && i == 1 {
                Expect::Denied
            } else {
                expect
            };
            let path = dir.join(format!("faults b{batch} #{i:02}.{ext}"));
            std::fs::write(&path, bytes).unwrap();
            (path, expect)
        })
        .collect()
}

/// Call the API until it answers 2xx: the API's own SDK calls meet faults too, and a 5xx from
/// it is what a client retries. Returns the JSON body.
async fn api_call(what: &str, mut send: impl FnMut() -> reqwest::RequestBuilder) -> (Value, u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut retries = 0;
    loop {
        match send().send().await {
            Ok(r) if r.status().is_success() => return (r.json().await.unwrap(), retries),
            Ok(r) if r.status().is_server_error() => {}
            Ok(r) => panic!("{what}: {} {}", r.status(), r.text().await.unwrap()),
            Err(e) => panic!("{what}: {e}"),
        }
        retries += 1;
        assert!(Instant::now() < deadline, "{what}: the API kept failing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_is_lost_when_aws_calls_fail() {
    let seed = std::env::var("PRISM_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("faults seed {seed} (PRISM_FAULTS_SEED={seed} replays the draws)");
    let started = Instant::now();
    let mut rng = Rng(seed);
    // Warnings (every fault a worker meets) go to stderr, which nextest shows on failure.
    shared::telemetry::tracing::init(&shared::config::LogConfig {
        filter: std::env::var("PRISM_FAULTS_LOG").unwrap_or_else(|_| "warn".into()),
        ..shared::config::LogConfig::default()
    });

    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint, FaultPlan::even(seed, FAULT_RATE)).await;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("prism.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let shutdown = CancellationToken::new();
    let endpoint: url::Url = proxy.endpoint.parse().unwrap();
    // Provisioning runs through the proxy with injection still off.
    let dev = prism::dev_aws::start_aws(
        &endpoint,
        Some("us-east-1"),
        &tmp.path().join("data"),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(&config),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let resources = dev.provisioned.resources.clone();
    proxy.set_enabled(true);

    let http = reqwest::Client::new();
    let (api, token) = (dev.url.clone(), dev.token.clone());
    let batches: Vec<Vec<(PathBuf, Expect)>> = (0..2)
        .map(|b| batch_files(&tmp.path().join(format!("in{b}")), b, 12, &mut rng))
        .collect();
    let total: usize = batches.iter().map(Vec::len).sum();
    assert!(total >= 20);

    // Create each batch, deny the chosen file's reads, upload every file.
    let mut batch_ids = Vec::new();
    let mut api_retries = 0;
    let mut denied_key = None;
    let mut image_ids = Vec::new();
    for files in &batches {
        let body = json!({
            "files": files.iter().map(|(p, _)| json!({
                "name": p.file_name().unwrap().to_str().unwrap(),
                "content_type": if p.extension().unwrap() == "png" { "image/png" } else if p.extension().unwrap() == "gif" { "image/gif" } else { "image/jpeg" },
                "size": std::fs::metadata(p).unwrap().len(),
            })).collect::<Vec<_>>(),
            "variants": {"widths": [96, 320], "formats": ["webp", "avif"]},
        });
        let (created, r) = api_call("creating a batch", || {
            http.post(format!("{api}/v1/batches"))
                .bearer_auth(&token)
                .json(&body)
        })
        .await;
        api_retries += r;
        let batch_id = created["batch_id"].as_str().unwrap().to_owned();
        let uploads = created["uploads"].as_array().unwrap();
        assert_eq!(uploads.len(), files.len());
        for ((path, expect), up) in files.iter().zip(uploads) {
            image_ids.push(up["file_id"].as_str().unwrap().to_owned());
            if *expect == Expect::Denied {
                let key = shared::keys::upload_key(&batch_id, up["file_id"].as_str().unwrap());
                proxy.deny_s3_get(&resources.uploads_bucket, &key);
                denied_key = Some(key);
            }
            let ct = match path.extension().unwrap().to_str().unwrap() {
                "png" => "image/png",
                "gif" => "image/gif",
                _ => "image/jpeg",
            };
            prism::upload::upload_one(&http, up, std::fs::read(path).unwrap(), ct)
                .await
                .unwrap();
        }
        batch_ids.push(batch_id);
    }
    let denied_key = denied_key.unwrap();

    // Client events: SNS traffic through the API (each accepted event is on the topic), for
    // images this principal owns (the API answers 404 for any other).
    for i in 0..24 {
        let image_id = &image_ids[i % image_ids.len()];
        let (_, r) = api_call("posting an event", || {
            http.post(format!("{api}/v1/events"))
                .bearer_auth(&token)
                .json(&json!({"event_name": "IMAGE_REQUESTED", "image_id": image_id, "event_id": format!("ev-{i}")}))
        })
        .await;
        api_retries += r;
    }
    println!(
        "faults: {total} files uploaded in {} batches after {:.1}s",
        batch_ids.len(),
        started.elapsed().as_secs_f64()
    );

    // Direct clients (no faults) for what the test inspects itself.
    let direct = moto.clients().await;
    let queue = |name: &str| {
        let q = &dev.provisioned.queues[name];
        SqsQueue::new(&direct, name, &q.url, &q.dlq_url)
    };
    let resize_q = queue(shared::topology::RESIZE_QUEUE);

    // Every file but the denied one reaches its final state; the denied one is dead-lettered.
    let settled = |v: &Value, files: &[(PathBuf, Expect)]| {
        let by_name: HashMap<&str, &Value> = v["files"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| (f["name"].as_str().unwrap_or_default(), f))
            .collect();
        files.iter().all(|(p, e)| {
            let name = p.file_name().unwrap().to_str().unwrap();
            let status = by_name.get(name).map(|f| f["status"].clone());
            match e {
                Expect::Denied => true,
                _ => status.is_some_and(|s| s == "done" || s == "failed"),
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    for (id, files) in batch_ids.iter().zip(&batches) {
        loop {
            let (v, r) = api_call("reading a batch", || {
                http.get(format!("{api}/v1/batches/{id}?wait=2"))
                    .bearer_auth(&token)
            })
            .await;
            api_retries += r;
            if settled(&v, files) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "batch {id} never settled: {:#}\nproxy:\n{}",
                v["counts"],
                proxy.counts()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let dead = shared::testing::eventually(
        Duration::from_secs(120),
        "the denied upload dead-lettered",
        || async {
            let d = resize_q.dead_letters(10).await.unwrap();
            (!d.is_empty()).then_some(d)
        },
    )
    .await;
    println!(
        "faults: all but the denied file settled after {:.1}s; {} dead letter(s)",
        started.elapsed().as_secs_f64(),
        dead.len()
    );
    for d in &dead {
        // At least once: a reset after the DLQ `SendMessage` took effect makes the SDK send it
        // again, so the one poison message may be dead-lettered twice, never for another file.
        assert!(
            d.body.contains(&denied_key.replace('/', "%2F")) || d.body.contains(&denied_key),
            "an unexpected dead letter: {d:?}"
        );
        let info = d.info.as_ref().expect("dead-lettered with its reason");
        assert_eq!(info.error_code, shared::error::ErrorCode::Internal, "{d:?}");
        assert_eq!(info.worker, "resize", "{d:?}");
        assert!(info.reason.contains("AccessDenied"), "{d:?}");
    }
    // The denied file is neither done nor failed: its message waits in the DLQ.
    let (v, _) = api_call("reading a batch", || {
        http.get(format!("{api}/v1/batches/{}", batch_ids[0]))
            .bearer_auth(&token)
    })
    .await;
    let denied_name = batches[0]
        .iter()
        .find(|(_, e)| *e == Expect::Denied)
        .map(|(p, _)| p.file_name().unwrap().to_str().unwrap().to_owned())
        .unwrap();
    let f = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == denied_name.as_str())
        .unwrap();
    assert!(
        f["status"] != "done" && f["status"] != "failed",
        "the denied file: {f:#}"
    );
    assert_ne!(v["status"], "complete");

    // The operator fixes the permission and redrives: the file completes.
    proxy.lift_permanent();
    let moved = resize_q.redrive().await.unwrap();
    assert!(moved >= 1);

    let mut views = Vec::new();
    for id in &batch_ids {
        loop {
            let (v, r) = api_call("reading a batch", || {
                http.get(format!("{api}/v1/batches/{id}?wait=5"))
                    .bearer_auth(&token)
            })
            .await;
            api_retries += r;
            if v["status"] == "complete" {
                views.push(v);
                break;
            }
            assert!(
                Instant::now() < deadline + Duration::from_secs(60),
                "batch {id} never completed: {:#}\nproxy:\n{}",
                v["counts"],
                proxy.counts()
            );
        }
    }
    println!(
        "faults: every batch complete after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // Every queue drains and every DLQ is empty (the archiver flushes every second).
    for name in [
        shared::topology::RESIZE_QUEUE,
        shared::topology::METADATA_QUEUE,
        shared::topology::ARCHIVE_QUEUE,
    ] {
        let q = queue(name);
        let until = Instant::now() + Duration::from_secs(90);
        loop {
            let s = q.stats().await.unwrap();
            if s.visible == 0 && s.in_flight == 0 && s.dlq_visible == 0 {
                break;
            }
            assert!(
                Instant::now() < until,
                "{name} never drained: {s:?}\ndead letters: {:#?}\nproxy:\n{}",
                q.dead_letters(10).await.unwrap(),
                proxy.counts()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    dev.stop().await;
    let counts = proxy.counts();
    drop(proxy);

    // ---- Every upload is accounted for (read straight from moto).
    let media = S3BlobStore::new(&direct, &resources.media_bucket);
    let uploads = S3BlobStore::new(&direct, &resources.uploads_bucket);
    let mut media_keys: BTreeSet<String> = media
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let upload_keys: BTreeSet<String> = uploads
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(upload_keys.len(), total, "uploads bucket: {upload_keys:#?}");
    let mut decoded = 0;
    for ((view, files), batch_id) in views.iter().zip(&batches).zip(&batch_ids) {
        let n = files.len();
        let want_done = files
            .iter()
            .filter(|(_, e)| matches!(e, Expect::Done | Expect::Denied))
            .count();
        let by_name = batch_check::exact_listing(view, batch_id, n, want_done);
        for (path, expect) in files {
            let name = path.file_name().unwrap().to_str().unwrap();
            let f = by_name[name];
            let file_id = f["file_id"].as_str().unwrap();
            assert!(upload_keys.contains(&shared::keys::upload_key(batch_id, file_id)));
            let manifest_key = shared::keys::manifest_key(batch_id, file_id);
            let failure_key = shared::keys::failure_key(batch_id, file_id);
            match expect {
                Expect::Failed(code) => {
                    assert_eq!(f["status"], "failed", "{name}: {f:#}");
                    assert_eq!(f["error"]["code"], *code, "{name}: {f:#}");
                    assert!(media_keys.remove(&failure_key), "{name}: no failure.json");
                    assert!(!media_keys.contains(&manifest_key), "{name}: both records");
                }
                Expect::Done | Expect::Denied => {
                    assert_eq!(f["status"], "done", "{name}: {f:#}");
                    assert!(media_keys.remove(&manifest_key), "{name}: no manifest");
                    assert!(!media_keys.contains(&failure_key), "{name}: both records");
                    let manifest: shared::manifest::Manifest =
                        serde_json::from_slice(&media.get(&manifest_key).await.unwrap()).unwrap();
                    let vs = &manifest.rendered.variants;
                    assert_eq!(
                        vs.len(),
                        f["variants"].as_array().unwrap().len(),
                        "{name}: the batch view and the manifest disagree"
                    );
                    assert_eq!(vs.len(), 4, "{name}: 2 widths × 2 formats");
                    for v in vs {
                        assert!(media_keys.remove(&v.key), "{name}: {} missing", v.key);
                        let bytes = media.get(&v.key).await.unwrap();
                        assert_eq!(bytes.len() as u64, v.bytes, "{}", v.key);
                        assert_eq!(
                            batch_check::decode_variant(&bytes, v.format),
                            (v.width, v.height)
                        );
                        decoded += 1;
                    }
                }
            }
        }
    }
    assert!(
        media_keys.is_empty(),
        "objects no manifest or failure record accounts for: {media_keys:#?}"
    );
    let archived = S3BlobStore::new(&direct, &resources.archive_bucket)
        .list("")
        .await
        .unwrap();
    assert!(!archived.is_empty(), "nothing archived");

    // ---- The faults really happened, of every kind on every service.
    println!("{counts}");
    println!(
        "faults: {total} files, {decoded} variants decoded, {} dead letter(s) redriven, {api_retries} API retries by the client, {:.1}s",
        dead.len(),
        started.elapsed().as_secs_f64()
    );
    for s in Service::ALL {
        for k in FaultKind::RANDOM {
            assert!(
                counts.get(s, k) > 0,
                "no {} injected on {}:\n{counts}",
                k.as_str(),
                s.as_str()
            );
        }
    }
    assert!(counts.get(Service::S3, FaultKind::Permanent) >= 1);
    let rate = counts.total_injected() as f64 / counts.total_requests() as f64;
    assert!(
        (0.08..=0.25).contains(&rate),
        "fault rate {rate:.3} outside the plan's range:\n{counts}"
    );
}
