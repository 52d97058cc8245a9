//! The operators' dashboard of `prism dev`: its JSON state over a real batch, and the page in a
//! real browser (headless Debian chromium driven by `tests/browser/dashboard.mjs` through
//! npm `playwright-core`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn test_image() -> PathBuf {
    repo_root().join("loadtest/images/photo-640x480.jpg")
}

async fn start() -> (tempfile::TempDir, prism::dev::DevStack, CancellationToken) {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let dev = prism::dev::start(
        dir.path(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
        shutdown.clone(),
    )
    .await
    .unwrap();
    (dir, dev, shutdown)
}

async fn state(http: &reqwest::Client, url: &str) -> Value {
    let r = http
        .get(format!("{url}/dashboard/api/state"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_shows_queues_workers_and_a_batch_with_thumbnail_and_reason() {
    let (dir, dev, _shutdown) = start().await;
    let http = reqwest::Client::new();

    // The page and its assets come from the binary.
    let page = http.get(format!("{}/", dev.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/dashboard/app.js"));
    for asset in ["/dashboard/app.js", "/dashboard/style.css"] {
        let r = http
            .get(format!("{}{asset}", dev.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
    }
    // The API is untouched.
    let r = http
        .get(format!("{}/healthz", dev.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The sampler's first pass (every queue's stats) may still be running on a loaded machine.
    let mut s = state(&http, &dev.url).await;
    for _ in 0..100 {
        if s["queues"].as_array().is_some_and(|q| q.len() == 3) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        s = state(&http, &dev.url).await;
    }
    let names: Vec<&str> = s["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["archive", "metadata", "resize"], "{s:#}");
    let workers: Vec<&str> = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    for w in ["resize", "metadata", "archiver"] {
        assert!(workers.contains(&w), "{workers:?}");
    }

    let fake = dir.path().join("not-an-image.jpg");
    std::fs::write(&fake, b"<html>not an image</html>").unwrap();
    let args = prism::upload::UploadArgs {
        paths: vec![test_image(), fake],
        api: dev.url.clone(),
        token: dev.token.clone(),
        widths: vec![160, 320],
        formats: vec!["webp".into()],
        keep_original: false,
        jpeg_quality: None,
        quality: None,
        lossless: shared::variant::Lossless::Off,
        wait_secs: 120,
        progress: false,
    };
    let batch = prism::upload::run(&args).await.unwrap();
    assert_eq!(batch["status"], "complete", "{batch:#}");
    let batch_id = batch["batch_id"].as_str().unwrap();

    // The sampler sees the processed messages within a few samples.
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = state(&http, &dev.url).await;
        let resize = s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == "resize")
            .unwrap()
            .clone();
        let seen = resize["outcomes"]["success"].as_f64().unwrap_or(0.0) >= 1.0
            && resize["p50_secs"].is_number()
            && resize["throughput_per_sec"].as_f64().unwrap() > 0.0;
        if seen {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "resize figures never showed: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let q = &s["queues"][0];
    assert!(q["history"].as_array().unwrap().len() >= 2, "{q:#}");
    assert!(q["visible"].is_u64() && q["dlq"].is_u64(), "{q:#}");

    let b = s["batches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["batch_id"] == batch_id)
        .unwrap();
    assert_eq!(b["status"], "complete");
    let files = b["files"].as_array().unwrap();
    let good = files.iter().find(|f| f["status"] == "done").unwrap();
    let bad = files.iter().find(|f| f["status"] == "failed").unwrap();
    assert_eq!(bad["error_code"], "unsupported_format", "{bad:#}");
    assert!(bad["error_message"].as_str().unwrap().len() > 3);
    // The thumbnail is the smallest WebP, through the presigned download path.
    let thumb_name = good["thumbnail_key"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    assert!(
        matches!(
            shared::keys::parse_variant_name(thumb_name),
            Some((160, _, shared::variant::OutputFormat::Webp))
        ),
        "{good:#}"
    );
    let url = good["thumbnail_url"].as_str().unwrap();
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(&bytes[8..12], b"WEBP");
    // The presigned URL is signed: tampering with it is refused.
    let r = http.get(format!("{url}x")).send().await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());

    // The sampler also publishes the queue depths on /metrics.
    let m = http
        .get(format!("{}/metrics", dev.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("prism_queue_visible_messages{queue=\"resize\"}"),
        "{m}"
    );
    dev.stop().await;
}

/// Where artifacts of the test run go: `PRISM_ARTIFACTS_DIR`, else `target/artifacts` at the
/// repository root.
fn artifacts_dir() -> PathBuf {
    std::env::var_os("PRISM_ARTIFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/artifacts"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_page_works_in_headless_chromium() {
    let browser_dir = repo_root().join("workers/cli/tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (listed in .ci/apt-packages.txt), or set CHROMIUM"
    );
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: (cd workers/cli/tests/browser && npm ci) — scripts/test.sh does this"
    );
    let (_dir, dev, _shutdown) = start().await;
    let screenshot = artifacts_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let out = tokio::process::Command::new("node")
        .arg(browser_dir.join("dashboard.mjs"))
        .current_dir(&browser_dir)
        .env("PRISM_URL", &dev.url)
        .env("PRISM_TOKEN", &dev.token)
        .env("PRISM_IMAGE", test_image())
        .env("PRISM_SCREENSHOT", &screenshot)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), out)
        .await
        .expect("the browser test finished within 3 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("thumbnail loaded"), "{stdout}");
    let png = std::fs::read(&screenshot).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    println!("screenshot saved to {}", screenshot.display());
    dev.stop().await;
}
