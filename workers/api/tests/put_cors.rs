//! Presigned PUT uploads on the local upload endpoint, S3's answer headers, and CORS, over real
//! HTTP on port 0 on the embedded backend.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::time::Duration;

mod support;
use support::{App, spawn_app_with};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use shared::port::{BlobStore, Queue};

const ORIGIN: &str = "http://localhost:5173";

async fn spawn_app(origins: &[&str]) -> App {
    spawn_app_with(|cfg| {
        cfg.http.cors_allowed_origins = origins.iter().map(|o| (*o).to_owned()).collect();
    })
    .await
}

impl App {
    async fn create(&self, method: &str, size: usize) -> Value {
        let r = self
            .http
            .post(format!("{}/v1/batches", self.base))
            .bearer_auth(&self.token)
            .json(&json!({
                "files": [{"name": "a b.jpg", "content_type": "image/jpeg", "size": size}],
                "variants": {"widths": [320], "formats": ["webp"]},
                "upload_method": method,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.unwrap()
    }

    async fn put(&self, up: &Value, body: Vec<u8>) -> reqwest::Response {
        let mut req = self.http.put(up["url"].as_str().unwrap()).body(body);
        for (k, v) in up["headers"].as_object().unwrap() {
            req = req.header(k, v.as_str().unwrap());
        }
        req.send().await.unwrap()
    }

    async fn preflight(
        &self,
        path: &str,
        origin: &str,
        method: &str,
        headers: &str,
    ) -> reqwest::Response {
        self.http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", self.base))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
            .await
            .unwrap()
    }
}

fn key(created: &Value) -> String {
    format!(
        "uploads/{}/{}",
        created["batch_id"].as_str().unwrap(),
        created["uploads"][0]["file_id"].as_str().unwrap()
    )
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// A comma-separated header's entries, lower-cased.
fn list(h: &HeaderMap, name: &str) -> Vec<String> {
    header(h, name)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn md5_hex(b: &[u8]) -> String {
    shared::adapter::local::fs_blob_store::e_tag_of(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_local_put_endpoint_passes_the_presigned_put_contract() {
    let app = spawn_app(&[]).await;
    shared::testing::blob_store::presigned_put_contract(&app.stack.uploads, true).await;
}

#[tokio::test]
async fn a_put_upload_is_stored_like_a_post_and_is_single_use() {
    let app = spawn_app(&[]).await;
    let body = b"\xFF\xD8\xFF\xE0 put".to_vec();
    let created = app.create("put", body.len()).await;
    let up = &created["uploads"][0];
    assert_eq!(up["method"], "PUT");
    assert!(up["fields"].is_null());
    let headers = up["headers"].as_object().unwrap();
    assert_eq!(headers["content-type"], "image/jpeg");
    // Optional headers: the trace context, and a focal point only for a file that gives one.
    let optional = [
        "x-amz-meta-prism-traceparent".to_owned(),
        format!("x-amz-meta-{}", shared::variant::META_FOCAL_POINT),
    ];
    for m in prism_api::cors::upload_metadata_headers() {
        if !optional.contains(&m) {
            assert!(headers.contains_key(&m), "{m} missing from {headers:?}");
        }
    }
    assert!(
        headers
            .keys()
            .all(|k| k == "content-type" || k.starts_with("x-amz-meta-"))
    );
    let r = app.put(up, body.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(r.headers(), "etag"),
        Some(format!("\"{}\"", md5_hex(&body)).as_str())
    );
    let again = app.put(up, body.clone()).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let e: Value = again.json().await.unwrap();
    assert_eq!(e["error"]["code"], "already_uploaded");
    // The same object a POST stores: content type and every metadata entry.
    let head = app.stack.uploads.head(&key(&created)).await.unwrap();
    assert_eq!(head.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(head.metadata["prism-file-name"], "a%20b%2Ejpg");
    assert!(head.metadata["prism-request"].contains("\"widths\":[320]"));
    assert_eq!(head.e_tag.as_deref(), Some(md5_hex(&body).as_str()));
    let q = app
        .stack
        .queue("resize", Duration::from_secs(30), 5)
        .await
        .unwrap();
    let m = q.receive(1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(m.len(), 1);
    assert!(m[0].body.contains("ObjectCreated:Put"));
}

#[tokio::test]
async fn a_put_must_declare_its_exact_length() {
    let app = spawn_app(&[]).await;
    let created = app.create("put", 4).await;
    let up = &created["uploads"][0];
    // A streamed body (chunked, no Content-Length) is refused before it is read, as on S3.
    let mut req = app.http.put(up["url"].as_str().unwrap());
    for (k, v) in up["headers"].as_object().unwrap() {
        req = req.header(k, v.as_str().unwrap());
    }
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(b"\xFF\xD8".to_vec()), Ok(b"\xFF\xE0".to_vec())];
    let r = req
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::LENGTH_REQUIRED);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_request");
    let r = app.put(up, vec![1; 5]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(app.stack.uploads.head(&key(&created)).await.is_err());
}

#[tokio::test]
async fn post_answers_carry_s3s_etag_and_location() {
    let app = spawn_app(&[]).await;
    let body = b"\xFF\xD8\xFF\xE0".to_vec();
    let created = app.create("post", body.len()).await;
    let up = &created["uploads"][0];
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in up["fields"].as_object().unwrap() {
        form = form.text(k.clone(), v.as_str().unwrap().to_owned());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(body.clone()).file_name("x"),
    );
    let r = app
        .http
        .post(up["url"].as_str().unwrap())
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(r.headers(), "etag"),
        Some(format!("\"{}\"", md5_hex(&body)).as_str())
    );
    assert_eq!(
        header(r.headers(), "location"),
        Some(format!("{}/local/object/uploads/{}", app.base, key(&created)).as_str())
    );
}

#[tokio::test]
async fn preflights_from_a_listed_origin_are_granted_before_authentication() {
    let app = spawn_app(&[ORIGIN, "https://app.example.com"]).await;
    let r = app
        .preflight(
            "/v1/batches",
            ORIGIN,
            "POST",
            "authorization,content-type,idempotency-key,traceparent",
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(header(h, "access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(list(h, "access-control-allow-methods"), ["get", "post"]);
    assert_eq!(
        list(h, "access-control-allow-headers"),
        [
            "authorization",
            "content-type",
            "idempotency-key",
            "traceparent"
        ]
    );
    assert!(list(h, "vary").iter().any(|v| v == "origin"));
    // A batch view (GET) too, with no token.
    let r = app
        .preflight(
            "/v1/batches/0193a5b2-7c1e-7d00-8000-000000000001",
            ORIGIN,
            "GET",
            "authorization",
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some(ORIGIN)
    );

    // The upload endpoint: POST and PUT with the headers its instructions name.
    let mut meta = prism_api::cors::upload_metadata_headers();
    let r = app
        .preflight(
            "/local/upload/uploads/uploads/b/f",
            "https://app.example.com",
            "PUT",
            &format!("content-type,{}", meta.join(",")),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(
        header(h, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(list(h, "access-control-allow-methods"), ["post", "put"]);
    let mut want = vec!["content-type".to_owned()];
    want.append(&mut meta);
    assert_eq!(list(h, "access-control-allow-headers"), want);
    let r = app
        .preflight("/local/upload/uploads", ORIGIN, "POST", "")
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some(ORIGIN)
    );

    // The download endpoint: GET.
    let r = app
        .preflight("/local/object/media/a/b.webp", ORIGIN, "GET", "")
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(list(r.headers(), "access-control-allow-methods"), ["get"]);
}

#[tokio::test]
async fn unlisted_origins_get_no_grant() {
    let app = spawn_app(&[ORIGIN]).await;
    for path in [
        "/v1/batches",
        "/local/upload/uploads/uploads/b/f",
        "/local/object/media/a",
    ] {
        let r = app
            .preflight(path, "http://evil.example", "POST", "authorization")
            .await;
        assert_ne!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_ne!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{path}"
        );
        assert!(
            r.headers().get("access-control-allow-methods").is_none(),
            "{path}"
        );
    }
    // An actual request from it is answered as ever, without a grant the browser would honour.
    let r = app
        .http
        .get(format!("{}/v1/batches/x", app.base))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn cross_origin_answers_errors_included_carry_the_grant_and_exposed_headers() {
    let app = spawn_app(&[ORIGIN]).await;
    // A 401 from authentication.
    let r = app
        .http
        .get(format!("{}/v1/batches/x", app.base))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some(ORIGIN)
    );
    // A created batch: the page can read Location and friends.
    let r = app
        .http
        .post(format!("{}/v1/batches", app.base))
        .bearer_auth(&app.token)
        .header("origin", ORIGIN)
        .json(&json!({
            "files": [{"name": "a.jpg", "content_type": "image/jpeg", "size": 4}],
            "variants": {"widths": [320], "formats": ["webp"]},
            "upload_method": "put",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some(ORIGIN)
    );
    assert_eq!(
        list(r.headers(), "access-control-expose-headers"),
        ["location", "retry-after", "etag"]
    );
    let created: Value = r.json().await.unwrap();
    let up = &created["uploads"][0];
    // The upload: the ETag is exposed (Uppy reads it to finish).
    let mut req = app
        .http
        .put(up["url"].as_str().unwrap())
        .header("origin", ORIGIN)
        .body(b"\xFF\xD8\xFF\xE0".to_vec());
    for (k, v) in up["headers"].as_object().unwrap() {
        req = req.header(k, v.as_str().unwrap());
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some(ORIGIN)
    );
    assert_eq!(
        list(r.headers(), "access-control-expose-headers"),
        ["etag", "location"]
    );
    assert!(r.headers().get("etag").is_some());
    // A refused upload (403 from the grant) carries the grant too.
    let r = app
        .http
        .put(
            up["url"]
                .as_str()
                .unwrap()
                .replace("signature=", "signature=00"),
        )
        .header("origin", ORIGIN)
        .body(b"\xFF\xD8\xFF\xE0".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some(ORIGIN)
    );
    // Paths outside the three kinds (the ops endpoints) answer no CORS.
    let r = app
        .http
        .get(format!("{}/healthz", app.base))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn without_origins_there_is_no_cors() {
    let app = spawn_app(&[]).await;
    // Today's answers: the API's authentication refuses the OPTIONS, the upload endpoint has
    // no such method; no grant either way.
    let r = app
        .preflight("/v1/batches", ORIGIN, "POST", "authorization")
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = app
        .preflight("/local/upload/uploads", ORIGIN, "POST", "")
        .await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
