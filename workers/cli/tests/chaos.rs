//! Chaos: the stack as separate processes on one data dir (API, resize, metadata, archiver),
//! batches uploaded through the API's presigned instructions while the resize worker and the
//! metadata writer are killed with SIGKILL at random moments and restarted. Afterwards every
//! upload is accounted for: each file is `done` (or `failed` with its proper code) and appears
//! exactly once in its batch, the counts are exact, every variant the manifest lists exists and
//! decodes, no partial or temporary object is visible, and every queue and DLQ is empty.
//!
//! Each component runs in a child process that is this test binary re-executed with
//! `PRISM_CHAOS_CHILD=<component>`; the child does what the component's `main.rs` does (load
//! the layered config for the data dir, start telemetry and signal handling, open the embedded
//! backend, run). Using the test binary rather than `target/debug/prism-*` means the children
//! are always built from the same sources as the test, whichever packages cargo built.
//!
//! The run is seeded: the seed is printed, and `PRISM_CHAOS_SEED=<n>` replays its schedule of
//! kills (the timing of the processes themselves is not deterministic).
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

#[path = "support/batch_check.rs"]
mod batch_check;
#[path = "../../resize/tests/support/hostile_inputs.rs"]
mod hostile_inputs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shared::port::{BlobStore as _, Queue as _};

const CHILD: &str = "PRISM_CHAOS_CHILD";
const DATA: &str = "PRISM_CHAOS_DATA";
const LISTEN: &str = "PRISM_CHAOS_LISTEN";

/// Queue settings for the killed workers: a short visibility so a killed worker's messages
/// come back in seconds, and a receive limit far above the number of kills one message can
/// see (a message redriven to the DLQ because its workers kept dying is the redrive policy
/// working, not a lost upload, but it is not what this test is about).
const WORKER_ENV: [(&str, &str); 6] = [
    ("PRISM__CONSUMER__VISIBILITY_TIMEOUT_SECS", "4"),
    ("PRISM__CONSUMER__WAIT_TIME_SECS", "1"),
    ("PRISM__CONSUMER__BACKOFF_BASE_SECS", "1"),
    ("PRISM__CONSUMER__BACKOFF_CAP_SECS", "2"),
    ("PRISM__MAX_RECEIVE_COUNT", "50"),
    ("PRISM__SHUTDOWN__DRAIN_TIMEOUT_SECS", "10"),
];

// ---------------------------------------------------------------------------------------------
// The child processes.

/// The child: run one component until SIGTERM. A no-op when run as a test.
#[test]
fn chaos_child() {
    let (Ok(component), Ok(data)) = (std::env::var(CHILD), std::env::var(DATA)) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    if let Err(e) = rt.block_on(run_component(&component, &data)) {
        eprintln!("{component}: {e:#}");
        std::process::exit(1);
    }
}

async fn run_component(component: &str, data: &str) -> anyhow::Result<()> {
    let base = [
        ("data_dir", data.to_owned()),
        ("backend", "local".to_owned()),
    ];
    match component {
        "api" => {
            let mut o = base.to_vec();
            o.push(("http.listen_addr", std::env::var(LISTEN)?));
            let cfg: prism_api::Config = shared::config::load(None, &o)?;
            let rt = shared::cli::start("prism-api", &cfg, &cfg.common, false).await?;
            let public = format!("http://{}", cfg.http.listen_addr);
            let stack = shared::adapter::local::LocalStack::open(
                &cfg.common.data_dir,
                &cfg.common.resources,
                &public,
            )
            .await?;
            let deps = prism_api::Deps::local(&stack);
            prism_api::run(cfg, deps, rt.metrics, rt.health, rt.shutdown, |_| {}).await?;
        }
        "resize" => {
            let cfg: prism_resize::Config = shared::config::load(None, &base)?;
            let rt = shared::cli::start("prism-resize", &cfg, &cfg.common, false).await?;
            let stack = shared::cli::open_local_stack(&cfg.common).await?;
            let deps = prism_resize::local_deps(&cfg, &stack).await?;
            prism_resize::run(&cfg, deps, rt.shutdown).await;
        }
        "metadata" => {
            let cfg: prism_metadata::Config = shared::config::load(None, &base)?;
            let rt = shared::cli::start("prism-metadata", &cfg, &cfg.common, false).await?;
            let stack = shared::cli::open_local_stack(&cfg.common).await?;
            let deps = prism_metadata::local_deps(&cfg, &stack).await?;
            prism_metadata::run(&cfg, deps, rt.shutdown).await;
        }
        "archiver" => {
            let cfg: prism_archiver::Config = shared::config::load(None, &base)?;
            let rt = shared::cli::start("prism-archiver", &cfg, &cfg.common, false).await?;
            let stack = shared::cli::open_local_stack(&cfg.common).await?;
            let deps = prism_archiver::local_deps(&cfg, &stack).await?;
            prism_archiver::Archiver::new(&cfg, deps)
                .run(rt.shutdown)
                .await;
        }
        other => anyhow::bail!("unknown component {other}"),
    }
    Ok(())
}

/// One component's current process, restartable.
struct Proc {
    name: &'static str,
    data: PathBuf,
    env: Vec<(&'static str, String)>,
    child: Child,
    starts: u32,
    kills: u32,
    /// Kills that found messages of this component's queue in flight (received, not acked).
    busy_kills: u32,
}

impl Proc {
    fn spawn(
        name: &'static str,
        data: &Path,
        env: Vec<(&'static str, String)>,
        starts: u32,
    ) -> Child {
        let log = std::fs::File::create(data.join(format!("{name}-{starts}.log"))).unwrap();
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "chaos_child", "--nocapture", "--test-threads=1"])
            .env(CHILD, name)
            .env(DATA, data)
            .env("PRISM__LOG__FILTER", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn a component")
    }

    fn start(name: &'static str, data: &Path, env: Vec<(&'static str, String)>) -> Self {
        let child = Self::spawn(name, data, env.clone(), 0);
        Self {
            name,
            data: data.to_path_buf(),
            env,
            child,
            starts: 1,
            kills: 0,
            busy_kills: 0,
        }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited on its own ({status}); log:\n{}",
                self.name,
                self.log_tail()
            );
        }
    }

    /// SIGKILL, reap, start again.
    fn kill_and_restart(&mut self) {
        self.assert_running();
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.kills += 1;
        self.child = Self::spawn(self.name, &self.data, self.env.clone(), self.starts);
        self.starts += 1;
    }

    /// SIGTERM and wait for a clean exit.
    fn terminate(mut self) {
        self.assert_running();
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "{} exited with {status} after SIGTERM; log:\n{}",
                    self.name,
                    self.log_tail()
                );
                return;
            }
            assert!(Instant::now() < deadline, "{} ignored SIGTERM", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let path = self
            .data
            .join(format!("{}-{}.log", self.name, self.starts - 1));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut start = text.len().saturating_sub(4000);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_owned()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A failing test must not leave workers running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The schedule.

/// xorshift64*: a reproducible schedule from one seed.
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

/// What a file should end as.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Done,
    Failed(&'static str),
}

/// Files of one batch: valid images of every generated format and a few sizes, plus poison.
fn batch_files(dir: &Path, batch: usize, n: usize, rng: &mut Rng) -> Vec<(PathBuf, Expect)> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            // Big enough that a render takes a while (so kills land mid-render), small enough
            // that 66 of them finish in seconds on two cores.
            let (w, h) = (400 + rng.below(500) as u32, 300 + rng.below(400) as u32);
            let (ext, bytes, expect) = match i % 10 {
                0..=3 => ("png", hostile_inputs::png_solid(w, h), Expect::Done),
                4..=6 => ("jpg", hostile_inputs::jpeg_solid(w, h), Expect::Done),
                7 => ("gif", hostile_inputs::gif_frames(w, h, 2), Expect::Done),
                8 => (
                    "jpg",
                    hostile_inputs::noise(rng.next(), 300 + i),
                    Expect::Failed("unsupported_format"),
                ),
                _ => {
                    let full = hostile_inputs::jpeg_solid(w, h);
                    (
                        "jpg",
                        full[..full.len() * 2 / 3].to_vec(),
                        Expect::Failed("truncated_image"),
                    )
                }
            };
            let path = dir.join(format!("chaos b{batch} #{i:02}.{ext}"));
            std::fs::write(&path, bytes).unwrap();
            (path, expect)
        })
        .collect()
}

/// Messages of `queue` received and not yet acked (opening the queue with the settings its
/// consumer declared, since opening declares).
async fn in_flight(data: &Path, queue: &str) -> u64 {
    let settings = shared::port::QueueSettings {
        visibility_timeout: Duration::from_secs(4),
        max_receive_count: 50,
        ..shared::port::QueueSettings::new(queue)
    };
    let q = shared::adapter::local::SqliteQueue::open(&data.join("queues.sqlite"), settings)
        .await
        .unwrap();
    q.stats().await.unwrap().in_flight
}

async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let resp = http.get(url).bearer_auth(token).send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// The test.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upload_survives_sigkilled_workers() {
    let seed = std::env::var("PRISM_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("chaos seed {seed} (PRISM_CHAOS_SEED={seed} replays this schedule)");
    let mut rng = Rng(seed);
    let started = Instant::now();

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let api_url = format!("http://{listen}");
    let worker_env: Vec<(&'static str, String)> = WORKER_ENV
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect();
    let mut resize_env = worker_env.clone();
    // Two renders at a time, so the worker is busy for most of the run and kills land mid-render.
    resize_env.push(("PRISM__RESIZE__AVIF_SPEED", "8".into()));
    resize_env.push(("PRISM__CONSUMER__CONCURRENCY", "2".into()));

    // The API first: it creates the dev token and declares nothing the workers need.
    let api = Proc::start("api", &data, vec![(LISTEN, listen.to_string())]);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{api_url}/healthz"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(Instant::now() < deadline, "the API did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = std::fs::read_to_string(data.join("dev-token"))
        .unwrap()
        .trim()
        .to_owned();
    let archiver = Proc::start(
        "archiver",
        &data,
        vec![
            ("PRISM__FLUSH__MAX_AGE_SECS", "1".into()),
            ("PRISM__CONSUMER__WAIT_TIME_SECS", "1".into()),
        ],
    );
    let mut resize = Proc::start("resize", &data, resize_env);
    let mut metadata = Proc::start("metadata", &data, worker_env);

    // Three batches of 22 files, uploaded one after another while the killing goes on.
    let batches: Vec<Vec<(PathBuf, Expect)>> = (0..3)
        .map(|b| batch_files(&tmp.path().join(format!("in{b}")), b, 22, &mut rng))
        .collect();
    let total: usize = batches.iter().map(Vec::len).sum();
    assert!(total >= 60);
    let uploader = {
        let (api_url, token) = (api_url.clone(), token.clone());
        let batches = batches.clone();
        // `upload::run`'s future is not `Send` (its upload stream borrows), so it runs on a
        // blocking thread driving this runtime.
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            rt.block_on(async move {
                let mut ids = Vec::new();
                for files in batches {
                    let args = prism::upload::UploadArgs {
                        paths: files.iter().map(|(p, _)| p.clone()).collect(),
                        api: api_url.clone(),
                        token: token.clone(),
                        widths: vec![96, 320],
                        formats: vec!["webp".into(), "avif".into()],
                        keep_original: false,
                        jpeg_quality: None,
                        quality: None,
                        lossless: shared::variant::Lossless::Off,
                        wait_secs: 0,
                        progress: false,
                    };
                    let view = prism::upload::run(&args).await.unwrap();
                    ids.push(view["batch_id"].as_str().unwrap().to_owned());
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
                ids
            })
        })
    };

    // Kill at random moments until both workers have died at least five times each and the
    // uploads are in; then let the stack converge.
    const MIN_KILLS: u32 = 5;
    // Keep going until enough resize kills landed on work in flight too: on a loaded machine a
    // restarted worker can take a while to pick a message up again.
    while resize.kills < MIN_KILLS
        || resize.busy_kills < MIN_KILLS / 2
        || metadata.kills < MIN_KILLS
        || !uploader.is_finished()
    {
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "the chaos phase overran: {} kills of resize ({} with messages in flight), {} of \
             metadata, uploads {}",
            resize.kills,
            resize.busy_kills,
            metadata.kills,
            if uploader.is_finished() {
                "done"
            } else {
                "in progress"
            }
        );
        tokio::time::sleep(Duration::from_millis(200 + rng.below(1300))).await;
        // Resize work drains in seconds on a quiet machine: while too few resize kills have
        // interrupted a render, a render in flight makes resize the victim, so the schedule
        // cannot spend the work on metadata kills and then wait on an idle queue.
        let resize_short_of_busy_kills = resize.busy_kills < MIN_KILLS / 2;
        let victim = if (resize_short_of_busy_kills && in_flight(&data, "resize").await > 0)
            || rng.below(2) == 0
        {
            &mut resize
        } else {
            &mut metadata
        };
        if victim.name == "resize" {
            // Renders are short: aim at one. Wait (briefly) for a message to be taken, then
            // strike a random moment into its render.
            let until = Instant::now() + Duration::from_secs(10);
            while in_flight(&data, "resize").await == 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
        }
        if in_flight(&data, victim.name).await > 0 {
            victim.busy_kills += 1;
        }
        victim.kill_and_restart();
        // Sometimes both at once.
        if rng.below(4) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
            if in_flight(&data, metadata.name).await > 0 {
                metadata.busy_kills += 1;
            }
            metadata.kill_and_restart();
        }
    }
    let batch_ids = uploader.await.unwrap();
    println!(
        "chaos: {} kills of resize ({} with messages in flight), {} of metadata ({} in flight), uploads done after {:.1}s",
        resize.kills,
        resize.busy_kills,
        metadata.kills,
        metadata.busy_kills,
        started.elapsed().as_secs_f64()
    );
    // The point is to interrupt work: most resize kills must find messages in flight
    // (received and not acked; a message a previous kill orphaned counts until its
    // visibility lapses, so this is a lower bound on the intent, not an exact count).
    assert!(
        resize.busy_kills >= MIN_KILLS / 2,
        "only {} of {} resize kills interrupted work",
        resize.busy_kills,
        resize.kills
    );

    // Convergence: every batch completes.
    let mut views = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &batch_ids {
        loop {
            let v = get_json(&http, &format!("{api_url}/v1/batches/{id}?wait=5"), &token).await;
            if v["status"] == "complete" {
                views.push(v);
                break;
            }
            resize.assert_running();
            metadata.assert_running();
            assert!(
                Instant::now() < deadline,
                "batch {id} never completed: {:#}\nresize log:\n{}\nmetadata log:\n{}",
                v["counts"],
                resize.log_tail(),
                metadata.log_tail()
            );
        }
    }
    println!(
        "chaos: every batch complete after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // Let the archiver flush (max_age 1 s) and the queues settle, then stop everything cleanly.
    // The queues are opened with the settings their consumers declared (opening declares).
    let queues = [
        ("resize", Duration::from_secs(4), 50),
        ("metadata", Duration::from_secs(4), 50),
        ("archive", Duration::from_secs(180), 5),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut idle = true;
        for (name, visibility, max_receive_count) in queues {
            let settings = shared::port::QueueSettings {
                visibility_timeout: visibility,
                max_receive_count,
                ..shared::port::QueueSettings::new(name)
            };
            let q =
                shared::adapter::local::SqliteQueue::open(&data.join("queues.sqlite"), settings)
                    .await
                    .unwrap();
            let s = q.stats().await.unwrap();
            idle &= s.visible == 0 && s.in_flight == 0;
            assert_eq!(s.dlq_visible, 0, "{name}: messages were dead-lettered");
        }
        if idle {
            break;
        }
        assert!(Instant::now() < deadline, "the queues never drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kills = (resize.kills, metadata.kills);
    resize.terminate();
    metadata.terminate();
    archiver.terminate();
    api.terminate();

    // Everything stopped: open the backend to look (opening replays journals, so not before).
    let stack = shared::adapter::local::LocalStack::open(
        &data,
        &shared::config::Resources::default(),
        &api_url,
    )
    .await
    .unwrap();
    for (name, visibility, max_receive_count) in queues {
        let s = stack
            .queue(name, visibility, max_receive_count)
            .await
            .unwrap()
            .stats()
            .await
            .unwrap();
        assert_eq!(
            (s.visible, s.in_flight, s.dlq_visible),
            (0, 0, 0),
            "{name} after shutdown"
        );
    }

    // ---- Every upload is accounted for.
    let mut media_keys: BTreeSet<String> = stack
        .media
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let upload_keys: BTreeSet<String> = stack
        .uploads
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
        let want_done = files.iter().filter(|(_, e)| *e == Expect::Done).count();
        let by_name = batch_check::exact_listing(view, batch_id, n, want_done);

        for (path, expect) in files {
            let name = path.file_name().unwrap().to_str().unwrap();
            let f = by_name
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing"));
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
                Expect::Done => {
                    assert_eq!(f["status"], "done", "{name}: {f:#}");
                    assert!(media_keys.remove(&manifest_key), "{name}: no manifest");
                    assert!(!media_keys.contains(&failure_key), "{name}: both records");
                    let manifest: shared::manifest::Manifest =
                        serde_json::from_slice(&stack.media.get(&manifest_key).await.unwrap())
                            .unwrap();
                    let vs = &manifest.rendered.variants;
                    assert_eq!(
                        vs.len(),
                        f["variants"].as_array().unwrap().len(),
                        "{name}: the batch view and the manifest disagree"
                    );
                    assert!(!vs.is_empty(), "{name}: no variants");
                    for v in vs {
                        assert!(media_keys.remove(&v.key), "{name}: {} missing", v.key);
                        let bytes = stack.media.get(&v.key).await.unwrap();
                        assert_eq!(bytes.len() as u64, v.bytes, "{}", v.key);
                        let (w, h) = batch_check::decode_variant(&bytes, v.format);
                        assert_eq!((w, h), (v.width, v.height), "{}", v.key);
                        decoded += 1;
                    }
                }
            }
        }
    }
    // Nothing else in the media bucket: no partial variant of a file, no temp object.
    assert!(
        media_keys.is_empty(),
        "objects no manifest or failure record accounts for: {media_keys:#?}"
    );
    let mut leftovers = BTreeMap::new();
    for bucket in [&stack.uploads, &stack.media] {
        let tmp_dir = bucket.root().join(".tmp");
        let n = std::fs::read_dir(&tmp_dir).map_or(0, Iterator::count);
        leftovers.insert(bucket.bucket().to_owned(), n);
    }
    println!(
        "chaos: {total} files, {decoded} variants decoded, {} + {} kills, temp files left by killed writers (invisible): {leftovers:?}, {:.1}s",
        kills.0,
        kills.1,
        started.elapsed().as_secs_f64()
    );
}
