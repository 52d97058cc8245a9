//! `prism upload --formats jpeg,png,webp --jpeg-quality 70 --lossless auto`: the flags reach
//! the batch request, the pipeline renders `.jpg`, `.png` and WebP variants (lossless for line
//! art where that is smaller, lossy for a photo), the batch view says which are lossless, and the media route serves
//! each with its content type. Bad flag values are refused before anything is sent.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::process::Command;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_flags_choose_jpeg_png_and_auto_lossless() {
    let corpus = shared::testing::corpus();
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

    let upload = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_prism"));
        cmd.args(["upload", "--api", &dev.url, "--token", &dev.token])
            // At 640 px the drawing's lossless WebP is smaller than its lossy one (5,890 against
            // 6,530 bytes), so `auto` keeps it lossless; the photo's never is.
            .args(["--widths", "640", "--json", "--wait", "240"])
            .args(extra)
            .arg(corpus.join("blackbug.png"))
            .arg(corpus.join("Landscape_8.jpg"));
        cmd
    };
    for bad in [
        &["--jpeg-quality", "0"][..],
        &["--jpeg-quality", "101"],
        &["--lossless", "maybe"],
        &["--formats", "jpg"],
    ] {
        let out = tokio::task::spawn_blocking({
            let mut cmd = upload(bad);
            move || cmd.output().unwrap()
        })
        .await
        .unwrap();
        assert!(!out.status.success(), "{bad:?} was accepted");
    }

    let mut cmd = upload(&[
        "--formats",
        "jpeg,png,webp",
        "--jpeg-quality",
        "70",
        "--lossless",
        "auto",
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batch: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(batch["counts"]["done"], 2, "{batch:#}");
    let http = reqwest::Client::new();
    for f in batch["files"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let line_art = name.ends_with(".png");
        let variants = f["variants"].as_array().unwrap();
        assert_eq!(variants.len(), 3, "{name}: {variants:#?}");
        for v in variants {
            let format = v["format"].as_str().unwrap();
            let url = v["url"].as_str().unwrap();
            let (ext, ct, lossless) = match format {
                "jpeg" => (".jpg", "image/jpeg", false),
                "png" => (".png", "image/png", true),
                "webp" => (".webp", "image/webp", line_art),
                other => panic!("{other} was not asked for"),
            };
            assert_eq!(v["content_type"], ct, "{name}");
            assert_eq!(v["lossless"], lossless, "{name} {format}");
            let path = url.split('?').next().unwrap();
            assert!(path.ends_with(ext), "{url}");
            let resp = http.get(url).send().await.unwrap();
            assert!(resp.status().is_success(), "{url}");
            assert_eq!(resp.headers()["content-type"], ct, "{url}");
            let bytes = resp.bytes().await.unwrap();
            let img = image::load_from_memory(&bytes).unwrap();
            assert_eq!(u64::from(img.width()), v["width"].as_u64().unwrap());
            if format == "webp" {
                assert_eq!(bytes.windows(4).any(|w| w == b"VP8L"), lossless, "{name}");
            }
        }
    }
    shutdown.cancel();
}
