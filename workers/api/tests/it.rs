//! prism-api over real HTTP on port 0, on the embedded backend.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::time::Duration;

use prism_api::{Config, Deps};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::adapter::local::LocalStack;
use shared::config::Resources;
use shared::port::{BlobStore, Queue};
use tokio_util::sync::CancellationToken;

struct App {
    dir: tempfile::TempDir,
    base: String,
    token: String,
    stack: LocalStack,
    http: reqwest::Client,
    stop: CancellationToken,
}

async fn spawn_app_with(tune: impl FnOnce(&mut Config)) -> App {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = Config::default();
    cfg.common.data_dir = dir.path().to_path_buf();
    cfg.http.listen_addr = addr;
    tune(&mut cfg);
    let base = format!("http://{addr}");
    let stack = LocalStack::open(dir.path(), &Resources::default(), &base)
        .await
        .unwrap();
    let deps = Deps::local(&stack);
    let stop = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let s = stop.clone();
    tokio::spawn(async move {
        prism_api::run(
            cfg,
            deps,
            shared::telemetry::metrics::install(),
            shared::telemetry::Health::new(),
            s,
            |a| {
                let _ = tx.send(a);
            },
        )
        .await
        .unwrap();
    });
    rx.await.unwrap();
    let token = prism_api::dev_token(dir.path()).unwrap();
    App {
        dir,
        base,
        token,
        stack,
        http: reqwest::Client::new(),
        stop,
    }
}

async fn spawn_app() -> App {
    spawn_app_with(|_| {}).await
}

fn batch_body(files: Value) -> Value {
    json!({"files": files, "variants": {"widths": [320, 640], "formats": ["webp", "avif"]}})
}

impl App {
    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap()
    }
    async fn create(&self, files: Value) -> Value {
        let r = self.post("/v1/batches", &batch_body(files)).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.unwrap()
    }
    /// Upload `bytes` following presigned instructions, with optional tampering.
    async fn upload(
        &self,
        up: &Value,
        bytes: Vec<u8>,
        tamper: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> reqwest::Response {
        let mut fields: BTreeMap<String, String> =
            serde_json::from_value(up["fields"].clone()).unwrap();
        tamper(&mut fields);
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k, v);
        }
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("x"),
        );
        self.http
            .post(up["url"].as_str().unwrap())
            .multipart(form)
            .send()
            .await
            .unwrap()
    }
    async fn uploads_stored(&self) -> usize {
        self.stack.uploads.list("uploads/").await.unwrap().len()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = &self.dir;
    }
}

/// What a test does to the form, what it uploads, what it expects.
type TamperCase<'a> = (
    &'static str,
    Box<dyn FnOnce(&mut BTreeMap<String, String>) + 'a>,
    Vec<u8>,
    StatusCode,
);

fn file(name: &str, size: u64) -> Value {
    json!({"name": name, "content_type": "image/jpeg", "size": size})
}

#[tokio::test]
async fn requests_need_a_valid_token() {
    let app = spawn_app().await;
    let url = format!("{}/v1/batches", app.base);
    let r = app
        .http
        .post(&url)
        .json(&batch_body(json!([file("a.jpg", 10)])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let r = app
        .http
        .post(&url)
        .bearer_auth("prism_dev_wrong")
        .json(&batch_body(json!([file("a.jpg", 10)])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .http
        .get(format!("{}/v1/batches/x", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The ops endpoints and the OpenAPI document need no token... the document does need one.
    assert_eq!(
        app.http
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let doc: Value = app
        .http
        .get(format!("{}/v1/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/batches"]["post"].is_object());
}

#[tokio::test]
async fn batches_are_visible_only_to_their_principal() {
    let dir_token = "another-token";
    let digest = prism_api::auth::token_digest(dir_token);
    let app = spawn_app_with(|c| {
        c.auth.token_sha256s = vec![
            format!("dev:{}", prism_api::auth::token_digest("dev-token-value")),
            format!("bob:{digest}"),
        ]
    })
    .await;
    let mut app = app;
    app.token = "dev-token-value".into();
    let created = app.create(json!([file("a.jpg", 10)])).await;
    let id = created["batch_id"].as_str().unwrap();
    let mine = app
        .http
        .get(format!("{}/v1/batches/{id}", app.base))
        .bearer_auth("dev-token-value")
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), StatusCode::OK);
    let body: Value = mine.json().await.unwrap();
    assert_eq!(body["status"], "pending");
    assert_eq!(body["files"][0]["status"], "awaiting_upload");
    let theirs = app
        .http
        .get(format!("{}/v1/batches/{id}", app.base))
        .bearer_auth(dir_token)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    let missing = app
        .http
        .get(format!("{}/v1/batches/nope", app.base))
        .bearer_auth(dir_token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_batches_get_400_with_a_code() {
    let app = spawn_app().await;
    let cases = [
        json!({"files": [], "variants": {"widths": [320], "formats": ["webp"]}}),
        json!({"files": (0..501).map(|i| file(&format!("{i}.jpg"), 1)).collect::<Vec<_>>(), "variants": {"widths": [320], "formats": ["webp"]}}),
        json!({"files": [file("a.jpg", 0)], "variants": {"widths": [320], "formats": ["webp"]}}),
        json!({"files": [file("a.jpg", 50 * 1024 * 1024 + 1)], "variants": {"widths": [320], "formats": ["webp"]}}),
        json!({"files": [{"name": "a.html", "content_type": "text/html", "size": 5}], "variants": {"widths": [320], "formats": ["webp"]}}),
        json!({"files": [file("", 5)], "variants": {"widths": [320], "formats": ["webp"]}}),
        json!({"files": [file("a\nb.jpg", 5)], "variants": {"widths": [320], "formats": ["webp"]}}),
        json!({"files": [file("a.jpg", 5)], "variants": {"widths": [8], "formats": ["webp"]}}),
        json!({"files": [file("a.jpg", 5)], "variants": {"widths": [320, 400, 500, 600, 700, 800, 900, 1000, 1100], "formats": ["webp"]}}),
        json!({"files": [file("a.jpg", 5)], "variants": {"widths": [320], "formats": []}}),
        json!({"files": [file("a.jpg", 5)], "variants": {"widths": [320], "formats": ["gif"]}}),
        json!({"files": [file("a.jpg", 5)], "variants": {"widths": [320], "formats": ["webp"]}, "extra": 1}),
        json!({"files": [file("a.jpg", 5)], "variants": {"widths": [320], "formats": ["webp"]}, "callback_url": "https://169.254.169.254/latest/meta-data"}),
        json!({"files": [file("a.jpg", 5)], "variants": {"widths": [320], "formats": ["webp"]}, "callback_url": "http://10.0.0.1/hook"}),
        json!("not an object"),
    ];
    for case in cases {
        let r = app.post("/v1/batches", &case).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{case}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request", "{case}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    let r = app
        .http
        .post(format!("{}/v1/batches", app.base))
        .bearer_auth(&app.token)
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_faithful_upload_is_stored_and_starts_the_pipeline() {
    let app = spawn_app().await;
    let created = app.create(json!([file("my photo+1 %é.jpg", 4)])).await;
    let up = &created["uploads"][0];
    assert_eq!(up["method"], "POST");
    assert!(up["headers"].is_null());
    let r = app.upload(up, b"\xFF\xD8\xFF\xE0".to_vec(), |_| {}).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let key = format!(
        "uploads/{}/{}",
        created["batch_id"].as_str().unwrap(),
        up["file_id"].as_str().unwrap()
    );
    let head = app.stack.uploads.head(&key).await.unwrap();
    assert_eq!(head.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(
        head.metadata["prism-file-name"],
        "my%20photo%2B1%20%25%C3%A9%2Ejpg"
    );
    assert!(head.metadata["prism-request"].contains("\"widths\":[320,640]"));
    // The upload's event reached the resize queue.
    let q = app
        .stack
        .queue("resize", Duration::from_secs(30), 5)
        .await
        .unwrap();
    let m = q.receive(1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(m.len(), 1);
    assert!(m[0].body.contains("ObjectCreated:Post"));
}

#[tokio::test]
async fn tampered_uploads_are_refused_and_store_nothing() {
    let app = spawn_app_with(|c| c.limits.upload_expiry_secs = 2).await;
    let created = app
        .create(json!([file("a.jpg", 4), file("b.jpg", 4)]))
        .await;
    let (up, other) = (&created["uploads"][0], &created["uploads"][1]);
    let img = || b"\xFF\xD8\xFF\xE0".to_vec();
    let cases: Vec<TamperCase> = vec![
        (
            "tampered signature",
            Box::new(|f| {
                f.insert("x-prism-signature".into(), "00".repeat(32));
            }),
            img(),
            StatusCode::FORBIDDEN,
        ),
        (
            "swapped key",
            Box::new(|f| {
                f.insert(
                    "key".into(),
                    other["fields"]["key"].as_str().unwrap().into(),
                );
            }),
            img(),
            StatusCode::FORBIDDEN,
        ),
        (
            "traversal key",
            Box::new(|f| {
                f.insert("key".into(), "uploads/../../etc/passwd".into());
            }),
            img(),
            StatusCode::FORBIDDEN,
        ),
        (
            "wrong type",
            Box::new(|f| {
                f.insert("Content-Type".into(), "text/html".into());
            }),
            img(),
            StatusCode::FORBIDDEN,
        ),
        (
            "forged metadata",
            Box::new(|f| {
                f.insert("x-amz-meta-prism-request".into(), "{}".into());
            }),
            img(),
            StatusCode::FORBIDDEN,
        ),
        (
            "extra field",
            Box::new(|f| {
                f.insert("x-amz-meta-evil".into(), "1".into());
            }),
            img(),
            StatusCode::FORBIDDEN,
        ),
        (
            "oversize",
            Box::new(|_| {}),
            vec![0u8; 5],
            StatusCode::BAD_REQUEST,
        ),
        ("empty", Box::new(|_| {}), vec![], StatusCode::BAD_REQUEST),
        (
            "no policy",
            Box::new(|f| {
                f.remove("policy");
            }),
            img(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, tamper, bytes, want) in cases {
        let r = app.upload(up, bytes, tamper).await;
        assert_eq!(r.status(), want, "{what}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{what}");
    }
    assert_eq!(
        app.uploads_stored().await,
        0,
        "a refused upload stored something"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = app.upload(up, img(), |_| {}).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "expired");
    assert_eq!(app.uploads_stored().await, 0);
    // A form without a file, or an unknown bucket.
    let r = app
        .http
        .post(up["url"].as_str().unwrap())
        .multipart(reqwest::multipart::Form::new().text("key", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .http
        .post(format!("{}/local/upload/nope", app.base))
        .multipart(reqwest::multipart::Form::new().text("key", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hostile_file_names_never_reach_keys() {
    let app = spawn_app().await;
    let names = [
        "../../etc/passwd",
        "a/b/c.jpg",
        "..",
        "名前 +%20.jpg",
        "x\u{202e}gpj.exe",
        "con.jpg",
    ];
    let created = app
        .create(json!(names.iter().map(|n| file(n, 4)).collect::<Vec<_>>()))
        .await;
    for (i, up) in created["uploads"].as_array().unwrap().iter().enumerate() {
        assert_eq!(up["name"], names[i]);
        let key = up["fields"]["key"].as_str().unwrap();
        assert!(shared::keys::parse_upload_key(key).is_some(), "{key}");
        let r = app.upload(up, b"\xFF\xD8\xFF\xE0".to_vec(), |_| {}).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(app.uploads_stored().await, names.len());
    let got: Value = app
        .http
        .get(format!(
            "{}/v1/batches/{}",
            app.base,
            created["batch_id"].as_str().unwrap()
        ))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let back: Vec<&str> = got["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(back, names);
}

#[tokio::test]
async fn rate_and_upload_quotas_answer_429_with_retry_after() {
    let app = spawn_app_with(|c| {
        c.auth.requests_per_minute = 3;
    })
    .await;
    for _ in 0..3 {
        let r = app
            .http
            .get(format!("{}/v1/batches/x", app.base))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let r = app
        .http
        .get(format!("{}/v1/batches/x", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());

    let app = spawn_app_with(|c| c.auth.max_inflight_uploads = 3).await;
    app.create(json!([file("a.jpg", 4), file("b.jpg", 4)]))
        .await;
    let r = app
        .post(
            "/v1/batches",
            &batch_body(json!([file("c.jpg", 4), file("d.jpg", 4)])),
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers().get("retry-after").unwrap(), "60");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upload_quota_exceeded");
    app.create(json!([file("c.jpg", 4)])).await;
}

#[tokio::test]
async fn client_events_are_validated_stamped_and_published() {
    let app = spawn_app().await;
    let ev = json!({"event_name": "IMAGE_REQUESTED", "user_id": "42", "image_id": "abc", "timestamp": "2026-11-23T20:00:00Z"});
    let r = app.post("/v1/events", &ev).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for bad in [
        json!([1]),
        json!({"x": 1}),
        json!({"event_name": 5}),
        json!({"event_name": ""}),
        json!({"event_name": "x", "Records": []}),
    ] {
        assert_eq!(
            app.post("/v1/events", &bad).await.status(),
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    let big = json!({"event_name": "x", "pad": "a".repeat(70_000)});
    assert_eq!(
        app.post("/v1/events", &big).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let r = app
        .http
        .post(format!("{}/v1/events", app.base))
        .bearer_auth(&app.token)
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .http
        .post(format!("{}/v1/events", app.base))
        .json(&ev)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The archive queue gets everything on the topic; exactly the one valid event.
    let archive = app
        .stack
        .queue("archive", Duration::from_secs(30), 5)
        .await
        .unwrap();
    let msgs = archive.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(msgs.len(), 1);
    let got: Value = serde_json::from_str(&msgs[0].body).unwrap();
    assert_eq!(got["event_name"], "IMAGE_REQUESTED");
    assert_eq!(got["principal"], "dev");
    assert_eq!(got["event_id"], id);
    assert!(got["received_at"].is_string());
    // And the metadata queue gets it too (its filter takes IMAGE_REQUESTED).
    let meta = app
        .stack
        .queue("metadata", Duration::from_secs(30), 5)
        .await
        .unwrap();
    assert_eq!(
        meta.receive(10, Duration::from_secs(1))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let app = spawn_app().await;
    app.create(json!([file("a.jpg", 4)])).await;
    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "prism_http_requests_total{route=\"/v1/batches\",method=\"POST\",status=\"201\"}"
        ),
        "{text}"
    );
    assert!(text.contains("prism_http_request_duration_seconds_bucket{route=\"/v1/batches\""));
}

#[tokio::test]
async fn long_polls_end_at_completion_or_at_their_deadline() {
    use shared::port::{FileError, MetadataStore};
    let app = spawn_app().await;
    let created = app.create(json!([file("a.jpg", 10)])).await;
    let batch = created["batch_id"].as_str().unwrap().to_owned();
    let file_id = created["uploads"][0]["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let get = |wait: u64| {
        app.http
            .get(format!("{}/v1/batches/{batch}?wait={wait}", app.base))
            .bearer_auth(&app.token)
            .send()
    };

    // Nothing happens: the answer comes at the deadline, not long after it.
    let t = std::time::Instant::now();
    let v: Value = get(2).await.unwrap().json().await.unwrap();
    let took = t.elapsed();
    assert_eq!(v["status"], "pending", "{v:#}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(2600),
        "a 2 s long-poll took {took:?}"
    );

    // The batch completes while a long-poll waits: it answers soon after.
    let store = app.stack.metadata.clone();
    let (b, f) = (batch.clone(), file_id.clone());
    let completes = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = time::OffsetDateTime::now_utc();
        store.mark_received(&b, &f, now).await.unwrap();
        let err = FileError {
            code: "undecodable_image".into(),
            message: "test".into(),
        };
        store.mark_failed(&b, &f, &err, now).await.unwrap();
        std::time::Instant::now()
    });
    let v: Value = get(30).await.unwrap().json().await.unwrap();
    let answered = std::time::Instant::now();
    let completed = completes.await.unwrap();
    assert_eq!(v["status"], "complete", "{v:#}");
    let lag = answered.duration_since(completed);
    assert!(
        lag < Duration::from_millis(900),
        "answered {lag:?} after completion"
    );
}
