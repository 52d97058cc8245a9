//! Browser uploads against `prism dev`, in headless Debian chromium (npm `playwright-core`, the
//! scripts in `tests/browser/`):
//! - the `/upload` page, with each upload method;
//! - Uppy's AwsS3 plugin on a page of another, listed origin, with each upload method, while the
//!   same page on an unlisted origin is refused by the browser.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn browser_dir() -> PathBuf {
    let dir = repo_root().join("workers/cli/tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists() && dir.join("node_modules/uppy").exists(),
        "the browser test packages are missing: (cd workers/cli/tests/browser && npm ci) — scripts/test.sh does this"
    );
    dir
}

fn chromium() -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (listed in .ci/apt-packages.txt), or set CHROMIUM"
    );
    chromium
}

/// A JPEG photo and a PNG with alpha from the test corpus, joined for the scripts'
/// `PRISM_IMAGES`.
fn images() -> String {
    let root = std::env::var_os("PRISM_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("testdata/corpus"));
    [root.join("concert.jpg"), root.join("grey-8bit-alpha.png")]
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// Screenshots and other outputs: `PRISM_ARTIFACTS_DIR`, else `target/artifacts` under the
/// repository root.
fn artifacts_dir() -> PathBuf {
    std::env::var_os("PRISM_ARTIFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/artifacts"))
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `prism dev` on a temporary data dir with `options`.
async fn start(options: prism::dev::DevOptions) -> (tempfile::TempDir, prism::dev::DevStack) {
    let dir = tempfile::tempdir().unwrap();
    let dev = prism::dev::start_with(
        dir.path(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
        options,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    (dir, dev)
}

/// Run `node SCRIPT` in the browser dir with `envs`, within 4 minutes; its stdout.
async fn node(script: &str, envs: &[(&str, String)]) -> String {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(browser_dir().join(script))
        .current_dir(browser_dir())
        .env("CHROMIUM", chromium())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} finished within 4 minutes"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_upload_page_uploads_with_post_and_put_and_shows_the_results() {
    // Stable public variant URLs, as behind a CDN (`prism dev --public-media`).
    let (_dir, dev) = start(prism::dev::DevOptions {
        public_media: true,
        ..Default::default()
    })
    .await;
    let screenshot = artifacts_dir().join("uploader.png");
    let _ = std::fs::remove_file(&screenshot);
    let stdout = node(
        "uploader.mjs",
        &[
            ("PRISM_URL", dev.url.clone()),
            ("PRISM_TOKEN", dev.token.clone()),
            ("PRISM_IMAGES", images()),
            ("PRISM_SCREENSHOT", screenshot.display().to_string()),
        ],
    )
    .await;
    for method in ["post", "put"] {
        assert!(
            stdout.contains(&format!("{method}: 2 files done")),
            "{stdout}"
        );
    }
    let png = std::fs::read(&screenshot).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    println!("screenshot saved to {}", screenshot.display());
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uppy_uploads_from_a_listed_origin_and_an_unlisted_one_is_refused() {
    let port = free_port();
    // `localhost` and `127.0.0.1` are different origins: the page is served on both, only the
    // first is listed.
    let (_dir, dev) = start(prism::dev::DevOptions {
        cors_origins: vec![format!("http://localhost:{port}")],
        ..Default::default()
    })
    .await;
    let stdout = node(
        "uppy.mjs",
        &[
            ("PRISM_URL", dev.url.clone()),
            ("PRISM_TOKEN", dev.token.clone()),
            ("PRISM_IMAGES", images()),
            ("PAGE_PORT", port.to_string()),
        ],
    )
    .await;
    assert!(stdout.contains("post: {"), "{stdout}");
    assert!(stdout.contains("put: {"), "{stdout}");
    assert!(stdout.contains("unlisted origin: refused"), "{stdout}");
    dev.stop().await;
}
