//! `/media/{key}` of the local backend (`[http] public_media`): public, read-only, keys under
//! `media/` only, with the object's Cache-Control, Content-Type and ETag, and 304 on a
//! matching `If-None-Match`. Over real HTTP on port 0.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use bytes::Bytes;
use prism_api::Config;
use reqwest::StatusCode;
use reqwest::header;
use shared::port::blob_store::{CACHE_IMMUTABLE, CACHE_REVALIDATE};
use shared::port::{BlobStore, PutOptions};

mod support;
use support::{App, spawn_app_with};

async fn spawn(public_media: bool) -> App {
    spawn_app_with(|cfg| cfg.http.public_media = public_media).await
}

impl App {
    async fn put(&self, bucket: &str, key: &str, body: &'static [u8], ct: &str, cc: Option<&str>) {
        let store = if bucket == "media" {
            &self.stack.media
        } else {
            &self.stack.uploads
        };
        store
            .put(
                key,
                Bytes::from_static(body),
                PutOptions {
                    content_type: Some(ct.into()),
                    cache_control: cc.map(str::to_owned),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }

    fn url(&self, key: &str) -> String {
        format!("{}/media/{key}", self.base)
    }
}

/// The status of a GET of `path` exactly as given, over a plain socket.
async fn raw_get(base: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let head = String::from_utf8_lossy(&out[..out.len().min(12)]).into_owned();
    head[9..12].parse().unwrap()
}

fn header_of(r: &reqwest::Response, name: header::HeaderName) -> Option<&str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_objects_are_served_with_their_cache_control_and_etag() {
    let app = spawn(true).await;
    let variant = "media/b1/f1/320w.0123456789.webp";
    let manifest = "media/b1/f1/manifest.json";
    app.put(
        "media",
        variant,
        b"RIFF....WEBPVP8 ",
        "image/webp",
        Some(CACHE_IMMUTABLE),
    )
    .await;
    app.put(
        "media",
        manifest,
        b"{}",
        "application/json",
        Some(CACHE_REVALIDATE),
    )
    .await;

    let r = app.http.get(app.url(variant)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CACHE_CONTROL), Some(CACHE_IMMUTABLE));
    assert_eq!(header_of(&r, header::CONTENT_TYPE), Some("image/webp"));
    assert_eq!(
        header_of(&r, header::X_CONTENT_TYPE_OPTIONS),
        Some("nosniff")
    );
    assert_eq!(
        header_of(&r, header::CONTENT_SECURITY_POLICY),
        Some(prism_api::media::MEDIA_CSP)
    );
    let etag = header_of(&r, header::ETAG).unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "{etag}"
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"RIFF....WEBPVP8 ");

    // Revalidation: the same ETag gets 304 with the headers and no body; another gets 200.
    let r = app
        .http
        .get(app.url(variant))
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header_of(&r, header::CACHE_CONTROL), Some(CACHE_IMMUTABLE));
    assert_eq!(header_of(&r, header::ETAG), Some(etag.as_str()));
    assert!(r.bytes().await.unwrap().is_empty());
    let r = app
        .http
        .get(app.url(variant))
        .header(header::IF_NONE_MATCH, "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // HEAD: the headers and length, no body.
    let r = app.http.head(app.url(variant)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CONTENT_LENGTH), Some("16"));
    assert_eq!(header_of(&r, header::CACHE_CONTROL), Some(CACHE_IMMUTABLE));
    assert!(r.bytes().await.unwrap().is_empty());

    // A manifest is rewritten in place: never immutable.
    let r = app.http.get(app.url(manifest)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cc = header_of(&r, header::CACHE_CONTROL).unwrap();
    assert!(!cc.contains("immutable") && cc.contains("no-cache"), "{cc}");
    app.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_media_keys_are_served_read_only_and_nothing_is_listed() {
    let app = spawn(true).await;
    app.put(
        "media",
        "media/b1/f1/original",
        b"jpeg",
        "image/jpeg",
        Some(CACHE_IMMUTABLE),
    )
    .await;
    app.put("media", "private/x", b"secret", "text/plain", None)
        .await;
    app.put("uploads", "uploads/b1/f1", b"upload", "image/jpeg", None)
        .await;

    let status = |path: String| {
        let http = app.http.clone();
        async move { http.get(path).send().await.unwrap() }
    };
    // Keys outside media/, in this bucket or another, and "directories": 404 with a code.
    for key in [
        "private/x",
        "uploads/b1/f1",
        "media/b1/f1",
        "media/b1/f1/",
        "media/b1/",
        "media/",
        "media/b1/f1/missing.webp",
    ] {
        let r = status(app.url(key)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{key}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{key}");
    }
    // Dot segments are refused, even percent-encoded (sent raw: HTTP clients normalise them).
    for path in [
        "/media/media/b1/%2e%2e/f1/original",
        "/media/media/b1/../b1/f1/original",
        "/media/media/b1/./f1/original",
        "/media/media/b1//f1/original",
    ] {
        let status = raw_get(&app.base, path).await;
        assert!(status == 400 || status == 404, "{path}: {status}");
    }
    // A key past 1024 bytes is refused before the store is touched.
    let r = status(app.url(&format!("media/{}", "a".repeat(1100)))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
    // Read-only.
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
    ] {
        let r = app
            .http
            .request(method.clone(), app.url("media/b1/f1/original"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(header_of(&r, header::ALLOW), Some("GET, HEAD"));
    }
    assert_eq!(
        app.stack
            .media
            .get("media/b1/f1/original")
            .await
            .unwrap()
            .as_ref(),
        b"jpeg"
    );
    // Still served, without any credentials.
    let r = status(app.url("media/b1/f1/original")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CONTENT_TYPE), Some("image/jpeg"));
    app.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_public_media_nothing_is_served() {
    let app = spawn(false).await;
    app.put(
        "media",
        "media/b1/f1/original",
        b"jpeg",
        "image/jpeg",
        Some(CACHE_IMMUTABLE),
    )
    .await;
    let r = app
        .http
        .get(app.url("media/b1/f1/original"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.stop.cancel();
}

#[test]
fn public_media_needs_the_local_backend() {
    use shared::config::Validate as _;
    let mut cfg = Config::default();
    cfg.http.public_media = true;
    assert!(cfg.validate().is_ok());
    cfg.common.backend = shared::config::Backend::Aws;
    cfg.common.resources.topic_arn = "arn:aws:sns:eu-west-1:123456789012:prism".into();
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("http.public_media"), "{e}");
    cfg.http.public_media = false;
    assert!(cfg.validate().is_ok());
    let mut cfg = Config::default();
    cfg.http.media_base_url = Some("cdn.example.com".into());
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("http.media_base_url"), "{e}");
    cfg.http.media_base_url = Some("https://cdn.example.com".into());
    assert!(cfg.validate().is_ok());
}
