//! The whole local pipeline over real HTTP: `prism dev` on a temp dir and port 0, a batch of
//! corpus files uploaded through the presigned POST flow, long-polled to completion; statuses,
//! failure codes, and every variant downloaded through its URL and decoded.
//!
//! The images are `testdata/corpus` in the repository (or `$PRISM_CORPUS`).
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Decode a variant's dimensions from its bytes (WebP with the image crate, AVIF with the
/// engine's libheif-backed probe).
fn dimensions(bytes: &[u8], format: &str) -> (u32, u32) {
    match format {
        "webp" => {
            let img = image::load_from_memory_with_format(bytes, image::ImageFormat::WebP).unwrap();
            (img.width(), img.height())
        }
        "avif" => {
            let p = prism_resize::render::decode::probe(
                bytes,
                &prism_resize::render::Limits::default(),
            )
            .unwrap();
            (p.width, p.height)
        }
        other => panic!("unexpected format {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corpus_batch_flows_through_the_local_pipeline() {
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

    // Orientation, colour, alpha, palette, 16-bit, animated, HEIC, CMYK, and the reject cases.
    let good = [
        "Landscape_3.jpg",
        "Landscape_6.jpg",
        "Landscape_8.jpg",
        "Channel_digital_image_CMYK_color.jpg",
        "concert.jpg",
        "p3.png",
        "tbgn2c16.png",
        "swiss.png",
        "grey-8bit-alpha.png",
        "rotating-squares.gif",
        "5_webp_a.webp",
        "tifftag-photoshop.tiff",
        "iphone_7.heic",
    ];
    let bad = [
        ("truncated.jpg", "truncated_image"),
        ("giant-image.jpg", "image_too_large"),
    ];
    let mut paths: Vec<PathBuf> = good
        .iter()
        .chain(bad.iter().map(|(n, _)| n))
        .map(|n| corpus.join(n))
        .collect();
    // Not an image at all, under an image name.
    let fake = dir.path().join("not-an-image.jpg");
    std::fs::write(&fake, b"<html><body>hello</body></html>").unwrap();
    paths.push(fake);

    let args = prism::upload::UploadArgs {
        paths,
        api: dev.url.clone(),
        token: dev.token.clone(),
        widths: vec![320, 640],
        formats: vec!["webp".into(), "avif".into()],
        keep_original: true,
        jpeg_quality: None,
        quality: None,
        lossless: shared::variant::Lossless::Off,
        wait_secs: 240,
        progress: false,
    };
    let batch = prism::upload::run(&args).await.unwrap();
    assert_eq!(batch["status"], "complete", "{batch:#}");
    let n = good.len() + bad.len() + 1;
    assert_eq!(batch["counts"]["files"], n);
    assert_eq!(batch["counts"]["received"], n);
    assert_eq!(batch["counts"]["done"], good.len());
    assert_eq!(batch["counts"]["failed"], bad.len() + 1);

    let http = reqwest::Client::new();
    let files = batch["files"].as_array().unwrap();
    for f in files {
        let name = f["name"].as_str().unwrap();
        if let Some((_, code)) = bad.iter().find(|(n, _)| *n == name) {
            assert_eq!(f["status"], "failed", "{name}");
            assert_eq!(f["error"]["code"], *code, "{name}");
            continue;
        }
        if name == "not-an-image.jpg" {
            assert_eq!(f["error"]["code"], "unsupported_format", "{f:#}");
            continue;
        }
        assert_eq!(f["status"], "done", "{name}: {f:#}");
        for v in f["variants"].as_array().unwrap() {
            let ct = format!("image/{}", v["format"].as_str().unwrap());
            assert_eq!(v["content_type"], ct.as_str(), "{name}");
            let srcset = f["srcset"][v["format"].as_str().unwrap()].as_str().unwrap();
            assert!(
                srcset.contains(v["url"].as_str().unwrap()),
                "{name}: {srcset}"
            );
        }
        let (sw, sh) = (
            f["source"]["width"].as_u64().unwrap() as u32,
            f["source"]["height"].as_u64().unwrap() as u32,
        );
        let variants = f["variants"].as_array().unwrap();
        let expected = if sw > 320 {
            if sw > 640 { 4 } else { 2 }
        } else {
            2
        };
        assert_eq!(variants.len(), expected, "{name}: {variants:#?}");
        for v in variants {
            let url = v["url"].as_str().unwrap();
            let resp = http.get(url).send().await.unwrap();
            assert!(resp.status().is_success(), "{name} {url}");
            let bytes = resp.bytes().await.unwrap();
            assert_eq!(bytes.len() as u64, v["bytes"].as_u64().unwrap());
            let format = v["format"].as_str().unwrap();
            let (w, h) = dimensions(&bytes, format);
            assert_eq!(
                (w, h),
                (
                    v["width"].as_u64().unwrap() as u32,
                    v["height"].as_u64().unwrap() as u32
                ),
                "{name} {format}"
            );
            assert!(
                w <= sw && h <= sh && w > 0 && h > 0,
                "{name}: upscaled or empty {w}x{h} from {sw}x{sh}"
            );
            // Aspect ratio kept within a pixel of rounding.
            let want_h = (f64::from(sh) * f64::from(w) / f64::from(sw)).round();
            assert!(
                (f64::from(h) - want_h).abs() <= 1.0,
                "{name}: {w}x{h} from {sw}x{sh}"
            );
        }
        // Portrait-tagged JPEGs come out landscape (their stored pixels are portrait).
        if name.starts_with("Landscape_") {
            assert!(sw > sh, "{name} not oriented: {sw}x{sh}");
        }
        assert!(
            f["placeholder"].is_string() && f["dominant_color"].as_str().unwrap().starts_with('#'),
            "{name}"
        );
        assert!(
            f["original_url"].is_string(),
            "{name}: the original was not kept"
        );
    }
    // The original is byte-identical to the upload.
    let heic = files.iter().find(|f| f["name"] == "iphone_7.heic").unwrap();
    let original = http
        .get(heic["original_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        original.as_ref(),
        std::fs::read(corpus.join("iphone_7.heic"))
            .unwrap()
            .as_slice()
    );

    // Every queue is drained and nothing was dead-lettered.
    for q in ["resize", "metadata"] {
        let queue = dev
            .stack
            .queue(q, std::time::Duration::from_secs(60), 5)
            .await
            .unwrap();
        let s = shared::port::Queue::stats(&queue).await.unwrap();
        assert_eq!((s.visible, s.in_flight, s.dlq_visible), (0, 0, 0), "{q}");
    }
    let _: &Value = &batch;
    dev.stop().await;
}

/// The same pipeline with presigned PUT uploads, from a page's origin (`prism dev
/// --cors-origin`): the page's preflight is granted, each file is PUT with exactly the headers
/// its instructions name, and the batch completes as with POST (the objects carry the same
/// metadata).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_uploads_from_a_page_origin_flow_through_the_local_pipeline() {
    const ORIGIN: &str = "http://localhost:5173";
    let corpus = shared::testing::corpus();
    let dir = tempfile::tempdir().unwrap();
    let dev = prism::dev::start_with(
        dir.path(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
        prism::dev::DevOptions {
            cors_origins: vec![ORIGIN.to_owned()],
            ..Default::default()
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/batches", dev.url))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        ORIGIN,
        "the listed origin is granted"
    );

    let args = prism::upload::UploadArgs {
        paths: ["Landscape_6.jpg", "p3.png", "truncated.jpg"]
            .iter()
            .map(|n| corpus.join(n))
            .collect(),
        api: dev.url.clone(),
        token: dev.token.clone(),
        widths: vec![320],
        formats: vec!["webp".into()],
        keep_original: false,
        jpeg_quality: None,
        quality: None,
        lossless: shared::variant::Lossless::Off,
        wait_secs: 240,
        progress: false,
    };
    let batch = prism::upload::run_as(&args, shared::api::UploadMethodSpec::Put)
        .await
        .unwrap();
    assert_eq!(batch["status"], "complete", "{batch:#}");
    assert_eq!(batch["counts"]["done"], 2, "{batch:#}");
    assert_eq!(batch["counts"]["failed"], 1, "{batch:#}");
    for f in batch["files"].as_array().unwrap() {
        if f["name"] == "truncated.jpg" {
            assert_eq!(f["error"]["code"], "truncated_image", "{f:#}");
            continue;
        }
        assert_eq!(f["status"], "done", "{f:#}");
        let v = &f["variants"][0];
        let resp = http
            .get(v["url"].as_str().unwrap())
            .header("origin", ORIGIN)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
        assert_eq!(resp.headers()["access-control-allow-origin"], ORIGIN);
        let bytes = resp.bytes().await.unwrap();
        let (w, h) = dimensions(&bytes, "webp");
        assert_eq!(
            (u64::from(w), u64::from(h)),
            (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap())
        );
    }
    // The objects arrived as PUTs.
    let id = batch["batch_id"].as_str().unwrap();
    let stored = shared::port::BlobStore::list(&dev.stack.uploads, &format!("uploads/{id}/"))
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    dev.stop().await;
}

/// `prism rerender` on the embedded backend, run as the operator runs it (the binary, against
/// the data dir the running `prism dev` serves): every file of a batch is rendered once with the
/// new spec, under new keys, and a second run finds nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rerender_on_the_local_backend_renders_each_file_once_with_the_new_spec() {
    use shared::port::MetadataStore;
    let corpus = shared::testing::corpus();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let shutdown = CancellationToken::new();
    let dev = prism::dev::start(
        &data,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let names = ["Landscape_6.jpg", "4.webp"];
    let batch = prism::upload::run(&prism::upload::UploadArgs {
        paths: names.iter().map(|n| corpus.join(n)).collect(),
        api: dev.url.clone(),
        token: dev.token.clone(),
        widths: vec![320],
        formats: vec!["webp".into()],
        keep_original: false,
        wait_secs: 120,
        progress: false,
        jpeg_quality: None,
        quality: None,
        lossless: shared::variant::Lossless::Off,
    })
    .await
    .unwrap();
    assert_eq!(batch["counts"]["done"], 2, "{batch:#}");
    let id = batch["batch_id"].as_str().unwrap().to_owned();
    let before = dev.stack.metadata.get_batch(&id).await.unwrap().unwrap();

    let run = |state: &str| {
        let (id, data, state) = (id.clone(), data.clone(), dir.path().join(state));
        tokio::task::spawn_blocking(move || rerender_cli(&id, &data, &state))
    };
    let first = run("first.json");
    let first = first.await.unwrap();
    assert_eq!(
        (&first["selected"], &first["rendered"], &first["failed"]),
        (
            &serde_json::json!(2),
            &serde_json::json!(2),
            &serde_json::json!(0)
        ),
        "{first}"
    );
    let after = shared::testing::eventually(
        std::time::Duration::from_secs(60),
        "metadata records the re-render",
        || async {
            let b = dev.stack.metadata.get_batch(&id).await.unwrap().unwrap();
            b.files
                .iter()
                .all(|f| {
                    f.rendered
                        .as_ref()
                        .is_some_and(|r| r.variants.iter().map(|v| v.width).eq([200, 400]))
                })
                .then_some(b)
        },
    )
    .await;
    for (old, new) in before.files.iter().zip(&after.files) {
        let (old, new) = (
            old.rendered.as_ref().unwrap(),
            new.rendered.as_ref().unwrap(),
        );
        for v in &new.variants {
            assert!(old.variants.iter().all(|o| o.key != v.key), "{}", v.key);
        }
    }
    let second = run("second.json").await.unwrap();
    assert_eq!(
        (&second["sent"], &second["already"]),
        (&serde_json::json!(0), &serde_json::json!(2)),
        "{second}"
    );
    shutdown.cancel();
}

/// `prism rerender --batch ID --widths 200,400 --formats webp` on a data dir; its totals.
fn rerender_cli(id: &str, data: &std::path::Path, state: &std::path::Path) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prism"))
        .args([
            "rerender",
            "--batch",
            id,
            "--widths",
            "200,400",
            "--formats",
            "webp",
        ])
        .arg("--data-dir")
        .arg(data)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
