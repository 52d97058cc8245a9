//! Stable delivery on the local stack: `prism dev --public-media` hands out `{url}/media/{key}`
//! URLs that stay the same across reads of a batch and are fetchable without credentials with
//! the immutable `Cache-Control`; the manifest next to them is not immutable; a re-read of a
//! variant revalidates to 304.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::net::SocketAddr;

use reqwest::header;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn variant_urls_are_stable_public_and_immutable() {
    let corpus = shared::testing::corpus();
    let dir = tempfile::tempdir().unwrap();
    let dev = prism::dev::start_with(
        dir.path(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
        prism::dev::DevOptions {
            public_media: true,
            ..Default::default()
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let args = prism::upload::UploadArgs {
        paths: vec![corpus.join("swiss.png")],
        api: dev.url.clone(),
        token: dev.token.clone(),
        widths: vec![16, 32],
        formats: vec!["webp".into(), "avif".into()],
        keep_original: true,
        jpeg_quality: None,
        quality: None,
        lossless: shared::variant::Lossless::Off,
        wait_secs: 120,
        progress: false,
    };
    let batch = prism::upload::run(&args).await.unwrap();
    assert_eq!(batch["status"], "complete", "{batch:#}");
    let batch_id = batch["batch_id"].as_str().unwrap();

    let http = reqwest::Client::new();
    let read = || async {
        http.get(format!("{}/v1/batches/{batch_id}", dev.url))
            .bearer_auth(&dev.token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let urls = |b: &Value| -> Vec<String> {
        let f = &b["files"][0];
        let mut u: Vec<String> = f["variants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["url"].as_str().unwrap().to_owned())
            .collect();
        u.push(f["original_url"].as_str().unwrap().to_owned());
        u
    };
    let first = urls(&read().await);
    // Same URLs on every read (a presigned GET would change with its expiry).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(urls(&read().await), first);
    assert_eq!(urls(&batch), first);
    assert_eq!(first.len(), 5, "{first:#?}");

    let prefix = format!("{}/media/media/{batch_id}/", dev.url);
    for url in &first {
        assert!(url.starts_with(&prefix), "{url}");
        assert!(
            !url.contains('?'),
            "a stable URL carries no signature: {url}"
        );
        let r = http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let h = r.headers().clone();
        assert_eq!(h[header::CACHE_CONTROL], IMMUTABLE, "{url}");
        let ct = h[header::CONTENT_TYPE].to_str().unwrap();
        assert!(ct.starts_with("image/"), "{url}: {ct}");
        assert!(!r.bytes().await.unwrap().is_empty());
        // The same object revalidates to 304.
        let etag = h[header::ETAG].to_str().unwrap();
        let r = http
            .get(url)
            .header(header::IF_NONE_MATCH, etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304, "{url}");
    }
    // Variant keys name their width, tag and format.
    let name = first[0].rsplit('/').next().unwrap();
    assert!(shared::keys::parse_variant_name(name).is_some(), "{name}");

    // The manifest lives beside the variants, rewritten in place: not immutable.
    let file_id = batch["files"][0]["file_id"].as_str().unwrap();
    let manifest = format!(
        "{}/media/{}",
        dev.url,
        shared::keys::manifest_key(batch_id, file_id)
    );
    let r = http.get(&manifest).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cc = r.headers()[header::CACHE_CONTROL].to_str().unwrap();
    assert!(!cc.contains("immutable"), "{cc}");
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["file_id"], file_id);
    // The upload itself is not public.
    let r = http
        .get(format!(
            "{}/media/{}",
            dev.url,
            shared::keys::upload_key(batch_id, file_id)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    dev.stop().await;
}
