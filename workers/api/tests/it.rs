//! prism-api over real HTTP on port 0, on the embedded backend.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::time::Duration;

mod support;
use support::{App, spawn_app, spawn_app_with, spawn_app_wrapped};

use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::port::{BlobStore, Queue};

fn batch_body(files: Value) -> Value {
    json!({"files": files, "variants": {"widths": [320, 640], "formats": ["webp", "avif"]}})
}

impl App {
    /// The `/metrics` exposition.
    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap()
    }
    /// Create a batch of `files` through the typed client (a well-behaved producer).
    async fn create(&self, files: Value) -> Value {
        let req: shared::api::CreateBatchRequest =
            serde_json::from_value(batch_body(files)).unwrap();
        let created = shared::api::Client::new(&self.base, &self.token)
            .unwrap()
            .create_batch(&req)
            .await
            .unwrap();
        serde_json::to_value(created).unwrap()
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
async fn jpeg_png_and_lossless_options_are_validated_and_signed() {
    let app = spawn_app().await;
    let variants = |extra: Value| {
        let mut v = json!({"widths": [320], "formats": ["webp", "jpeg", "png"]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        json!({"files": [file("a.jpg", 5)], "variants": v})
    };
    for extra in [
        json!({"jpeg_quality": 0}),
        json!({"jpeg_quality": 101}),
        json!({"jpeg_quality": 1.5}),
        json!({"jpeg_quality": "80"}),
        json!({"lossless": "yes"}),
        json!({"lossless": 1}),
        json!({"lossless": null}),
        json!({"formats": ["jpg"]}),
        json!({"png_quality": 80}),
    ] {
        let case = variants(extra);
        let r = app.post("/v1/batches", &case).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{case}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request", "{case}");
    }
    for (extra, signed) in [
        (
            json!({"jpeg_quality": 70, "lossless": "auto"}),
            vec![r#""jpeg_quality":70"#, r#""lossless":"auto""#],
        ),
        (json!({"lossless": true}), vec![r#""lossless":true"#]),
        (json!({"lossless": false, "jpeg_quality": 80}), vec![]),
    ] {
        let case = variants(extra);
        let r = app.post("/v1/batches", &case).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{case}");
        let created: Value = r.json().await.unwrap();
        let meta = created["uploads"][0]["fields"]["x-amz-meta-prism-request"]
            .as_str()
            .unwrap_or_else(|| panic!("{created:#}"));
        assert!(
            meta.contains(r#""formats":["webp","jpeg","png"]"#),
            "{meta}"
        );
        for s in &signed {
            assert!(meta.contains(s), "{meta} lacks {s}");
        }
        if signed.is_empty() {
            // Defaults stay out of the 2 KiB of signed metadata.
            assert!(
                !meta.contains("lossless") && !meta.contains("jpeg_quality"),
                "{meta}"
            );
        }
    }
}

#[tokio::test]
async fn quality_auto_is_validated_and_signed() {
    let app = spawn_app().await;
    let variants = |extra: Value| {
        let mut v = json!({"widths": [320], "formats": ["webp", "avif"]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        json!({"files": [file("a.jpg", 5)], "variants": v})
    };
    for extra in [
        json!({"quality": "auto:wrong"}),
        json!({"quality": "Auto"}),
        json!({"quality": 0}),
        json!({"quality": 101}),
        json!({"quality": 1.5}),
        json!({"quality": "auto", "webp_quality": 70}),
        json!({"quality": "auto:eco", "avif_quality": 40}),
        json!({"quality": 70, "jpeg_quality": 70}),
    ] {
        let case = variants(extra);
        let r = app.post("/v1/batches", &case).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{case}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request", "{case}");
    }
    for (extra, signed, absent) in [
        (json!({"quality": "auto"}), r#""quality":"auto:good""#, ""),
        (
            json!({"quality": "auto:high"}),
            r#""quality":"auto:high""#,
            "",
        ),
        (
            json!({"quality": "auto:eco", "jpeg_quality": 60}),
            r#""quality":"auto:eco""#,
            "",
        ),
        // A number is each format's quality, signed as such.
        (
            json!({"quality": 62}),
            r#""webp_quality":62,"avif_quality":62"#,
            r#""quality""#,
        ),
    ] {
        let case = variants(extra);
        let r = app.post("/v1/batches", &case).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{case}");
        let created: Value = r.json().await.unwrap();
        let meta = created["uploads"][0]["fields"]["x-amz-meta-prism-request"]
            .as_str()
            .unwrap_or_else(|| panic!("{created:#}"));
        assert!(meta.contains(signed), "{meta} lacks {signed}");
        assert!(absent.is_empty() || !meta.contains(absent), "{meta}");
    }
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
    // The grant is single-use: a replay is refused and stores nothing.
    let replay = app.upload(up, b"\xFF\xD8\xFF\xE1".to_vec(), |_| {}).await;
    assert_eq!(replay.status(), StatusCode::CONFLICT);
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["error"]["code"], "already_uploaded");
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
    let created = app.create(json!([file("a.jpg", 4)])).await;
    let image = created["uploads"][0]["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ev = json!({"event_name": "IMAGE_REQUESTED", "user_id": "42", "image_id": image, "timestamp": "9999-12-31T23:59:59Z"});
    let r = app.post("/v1/events", &ev).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deep = json!({"event_name": "x", "a": {"b": {"c": {"d": {"e": 1}}}}});
    let wide: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!(i))).collect();
    let mut wide = Value::Object(wide);
    wide["event_name"] = json!("x");
    for bad in [
        json!([1]),
        json!({"x": 1}),
        json!({"event_name": 5}),
        json!({"event_name": ""}),
        json!({"event_name": "x", "Records": []}),
        json!({"event_name": "x", "principal": "someone-else"}),
        json!({"event_name": "x", "received_at": "0001-01-01T00:00:00Z"}),
        json!({"event_name": "x", "event_id": "has spaces"}),
        json!({"event_name": "x", "event_id": "e".repeat(129)}),
        json!({"event_name": "x", "note": "n".repeat(1025)}),
        json!({"event_name": "x", "list": vec![0; 65]}),
        json!({"event_name": "x", "k".repeat(129): 1}),
        json!({"event_name": "IMAGE_REQUESTED"}),
        json!({"event_name": "IMAGE_REQUESTED", "image_id": 7}),
        deep,
        wide,
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
    // The client's timestamp is kept as data, beside the server's receive time.
    assert_eq!(got["timestamp"], "9999-12-31T23:59:59Z");
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
async fn long_polls_are_capped_per_principal() {
    let bob = "bob-token-value";
    let mut app = spawn_app_with(|c| {
        c.limits.max_waiters_per_principal = 2;
        c.auth.token_sha256s = vec![
            format!("dev:{}", prism_api::auth::token_digest("dev-token-value")),
            format!("bob:{}", prism_api::auth::token_digest(bob)),
        ];
    })
    .await;
    app.token = "dev-token-value".into();
    let created = app.create(json!([file("a.jpg", 4)])).await;
    let id = created["batch_id"].as_str().unwrap().to_owned();
    let get = |token: &str, wait: u32| {
        app.http
            .get(format!("{}/v1/batches/{id}?wait={wait}", app.base))
            .bearer_auth(token.to_owned())
            .send()
    };
    // Two long-polls of a pending batch hold dev's two places...
    let polls = [get("dev-token-value", 3), get("dev-token-value", 3)];
    let polls = tokio::spawn(futures::future::join_all(polls));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ...so a third is refused at once, while a plain read still answers.
    let third = get("dev-token-value", 3).await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.headers().get("retry-after").unwrap(), "1");
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_waiters");
    assert_eq!(
        get("dev-token-value", 0).await.unwrap().status(),
        StatusCode::OK
    );
    // Another principal's waits are its own (bob gets 404: the batch is not his).
    assert_eq!(get(bob, 1).await.unwrap().status(), StatusCode::NOT_FOUND);
    for r in polls.await.unwrap() {
        assert_eq!(r.unwrap().status(), StatusCode::OK);
    }
    // The places are given back when the polls answer.
    assert_eq!(
        get("dev-token-value", 1).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn image_requests_are_scoped_to_the_owner_and_keep_the_client_event_id() {
    let bob = "bob-token-value";
    let mut app = spawn_app_with(|c| {
        c.auth.token_sha256s = vec![
            format!("dev:{}", prism_api::auth::token_digest("dev-token-value")),
            format!("bob:{}", prism_api::auth::token_digest(bob)),
        ]
    })
    .await;
    app.token = "dev-token-value".into();
    let created = app.create(json!([file("a.jpg", 4)])).await;
    let image = created["uploads"][0]["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The owner's event keeps its own id, which is the idempotency key downstream.
    let ev = json!({"event_name": "IMAGE_REQUESTED", "image_id": image, "event_id": "client-1"});
    let r = app.post("/v1/events", &ev).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.json::<Value>().await.unwrap()["event_id"], "client-1");
    // Another principal naming the image, and anyone naming an unknown one: 404, nothing sent.
    let r = app
        .http
        .post(format!("{}/v1/events", app.base))
        .bearer_auth(bob)
        .json(&ev)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let unknown = json!({"event_name": "IMAGE_REQUESTED", "image_id": "no-such-image"});
    assert_eq!(
        app.post("/v1/events", &unknown).await.status(),
        StatusCode::NOT_FOUND
    );
    let archive = app
        .stack
        .queue("archive", Duration::from_secs(30), 5)
        .await
        .unwrap();
    let msgs = archive.receive(10, Duration::from_secs(1)).await.unwrap();
    let events: Vec<Value> = msgs
        .iter()
        .map(|m| serde_json::from_str::<Value>(&m.body).unwrap())
        .filter(|v| v["event_name"] == "IMAGE_REQUESTED")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event_id"], "client-1");
    assert_eq!(events[0]["principal"], "dev");
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let app = spawn_app().await;
    app.create(json!([file("a.jpg", 4)])).await;
    let text = app.metrics().await;
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
            code: shared::error::ErrorCode::UndecodableImage,
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

/// A failure stored by another version under a code this version does not know shows in the
/// batch view as `internal` with its message: the view never fails on a stored record, and the
/// codes it shows stay the closed set.
#[tokio::test]
async fn a_stored_failure_with_a_code_this_version_does_not_know_shows_as_internal() {
    use shared::port::{FileError, MetadataStore};
    let app = spawn_app().await;
    let created = app
        .create(json!([file("old.jpg", 10), file("new.jpg", 10)]))
        .await;
    let batch = created["batch_id"].as_str().unwrap().to_owned();
    let ids: Vec<String> = created["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["file_id"].as_str().unwrap().to_owned())
        .collect();
    let now = time::OffsetDateTime::now_utc();
    for id in &ids {
        let err = FileError {
            code: shared::error::ErrorCode::TruncatedImage,
            message: "ends early".into(),
        };
        app.stack
            .metadata
            .mark_failed(&batch, id, &err, now)
            .await
            .unwrap();
    }
    let db = rusqlite::Connection::open(app.dir.path().join(shared::adapter::local::METADATA_DB))
        .unwrap();
    let n = db
        .execute(
            "UPDATE files SET error = ?2 WHERE file_id = ?1",
            [
                ids[0].as_str(),
                r#"{"code":"decode_failed","message":"an old failure"}"#,
            ],
        )
        .unwrap();
    assert_eq!(n, 1);
    let resp = app
        .http
        .get(format!("{}/v1/batches/{batch}", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    let errors: BTreeMap<&str, &Value> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), &f["error"]))
        .collect();
    assert_eq!(
        errors["old.jpg"],
        &json!({"code": "internal", "message": "an old failure"}),
        "{v:#}"
    );
    assert_eq!(
        errors["new.jpg"],
        &json!({"code": "truncated_image", "message": "ends early"}),
        "{v:#}"
    );
    assert_eq!(v["status"], "complete", "{v:#}");
}

#[tokio::test]
async fn waiters_share_one_small_read_per_batch_instead_of_polling_it() {
    use shared::testing::counting::CountingMetadataStore;
    let counting: Arc<std::sync::OnceLock<Arc<CountingMetadataStore>>> = Arc::default();
    let slot = counting.clone();
    let app = spawn_app_wrapped(
        |c| c.limits.wait_check_interval_ms = 100,
        move |d| {
            let c = Arc::new(CountingMetadataStore::new(d.metadata.clone()));
            let _ = slot.set(c.clone());
            d.metadata = c;
        },
    )
    .await;
    let store = counting.get().unwrap().clone();
    let created = app.create(json!([file("a.jpg", 10)])).await;
    let batch = created["batch_id"].as_str().unwrap().to_owned();
    let (gets0, versions0) = (store.calls("get_batch"), store.calls("batch_version"));

    // 20 waiters on one pending batch for 2 s.
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            app.http
                .get(format!("{}/v1/batches/{batch}?wait=2", app.base))
                .bearer_auth(&app.token)
                .send()
        })
        .collect();
    for r in futures::future::join_all(waiters).await {
        assert_eq!(r.unwrap().status(), StatusCode::OK);
    }
    let gets = store.calls("get_batch") - gets0;
    let versions = store.calls("batch_version") - versions0;
    // Each waiter reads the batch once when it arrives; then one watcher reads the version
    // every 100 ms for all of them (about 20 reads in 2 s), where polling each waiter would
    // have read the whole batch 20 x ~6 times.
    assert_eq!(gets, 20, "whole-batch reads: {:?}", store.snapshot());
    assert!(
        (10..=30).contains(&versions),
        "version reads: {versions} ({:?})",
        store.snapshot()
    );
}

// ---- Bodies and time: driven from outside over raw TCP. ----

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

impl App {
    /// `prism_http_request_body_bytes_total` of `route`: body bytes the server read there.
    async fn body_bytes_read(&self, route: &str) -> u64 {
        let text = self.metrics().await;
        let prefix = format!("prism_http_request_body_bytes_total{{route=\"{route}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.trim().parse().unwrap())
    }
}

/// The status and body of the HTTP/1.1 response on `r`, reading until the head and
/// `Content-Length` bytes of body arrived; `None` when the connection closed first.
async fn read_response(r: &mut (impl AsyncReadExt + Unpin)) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                return Some((status, body));
            }
        }
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Send `head` then up to `body_len` bytes of `fill` while reading the answer. Returns the
/// answer and how many body bytes the client managed to send by the time it arrived.
async fn race_body(
    addr: std::net::SocketAddr,
    head: String,
    prefix: Vec<u8>,
    body_len: u64,
) -> (Option<(u16, String)>, u64) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let writer = tokio::spawn(async move {
        w.write_all(head.as_bytes()).await?;
        w.write_all(&prefix).await?;
        counter.fetch_add(prefix.len() as u64, Ordering::Relaxed);
        let block = vec![b'a'; 64 * 1024];
        let mut left = body_len - prefix.len() as u64;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            w.write_all(&block[..n]).await?;
            counter.fetch_add(n as u64, Ordering::Relaxed);
            left -= n as u64;
        }
        std::io::Result::Ok(w)
    });
    let answer = tokio::time::timeout(Duration::from_secs(30), read_response(&mut r))
        .await
        .expect("the server answered");
    let sent_then = sent.load(Ordering::Relaxed);
    writer.abort();
    (answer, sent_then)
}

const FIFTY_MB: u64 = 50_000_000;

#[tokio::test]
async fn unauthenticated_bodies_are_refused_before_they_are_read() {
    let app = spawn_app().await;
    for route in ["/v1/events", "/v1/batches"] {
        for auth in ["", "Authorization: Bearer prism_dev_wrong\r\n"] {
            let head = format!(
                "POST {route} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {FIFTY_MB}\r\n\r\n"
            );
            let (answer, sent) = race_body(app.addr, head, b"{".to_vec(), FIFTY_MB).await;
            let (status, body) = answer.expect("a 401 before the connection closed");
            assert_eq!(status, 401, "{route}: {body}");
            assert!(body.contains("unauthorized"), "{body}");
            // The answer came while most of the body was still unsent (what was sent sits in
            // socket buffers), and the server read none of it.
            assert!(
                sent < FIFTY_MB / 4,
                "{route}: {sent} bytes sent before the 401"
            );
        }
        assert_eq!(app.body_bytes_read(route).await, 0, "{route}");
    }
}

#[tokio::test]
async fn authenticated_bodies_over_the_route_limit_get_413() {
    let app = spawn_app().await;
    let eight_mib = 8 << 20;
    // Declared length over the limit: refused before anything is read.
    let r = app
        .http
        .post(format!("{}/v1/batches", app.base))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(vec![b' '; eight_mib])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1048576"),
        "{body}"
    );
    assert_eq!(app.body_bytes_read("/v1/batches").await, 0);
    // Chunked, no length: refused once the body passes the limit, having read about that.
    let head = format!(
        "POST /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        app.token
    );
    let stream = TcpStream::connect(app.addr).await.unwrap();
    let (mut rd, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(head.as_bytes()).await?;
        let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
        for _ in 0..128 {
            w.write_all(chunk.as_bytes()).await?;
        }
        std::io::Result::Ok(w)
    });
    let (status, body) = read_response(&mut rd).await.unwrap();
    writer.abort();
    assert_eq!(status, 413, "{body}");
    let read = app.body_bytes_read("/v1/batches").await;
    assert!(read <= (1 << 20) + (512 << 10), "read {read} bytes");
    // Events keep their own limit, and a body within the limits is still fine.
    let big = json!({"event_name": "x", "pad": "a".repeat(70_000)});
    let r = app.post("/v1/events", &big).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("65536"),
        "{body}"
    );
    app.create(json!([file("a.jpg", 4)])).await;
}

/// A multipart form: every presigned field of `up`, then the head of a `file` part whose
/// `file_len` bytes follow; returns the request head and the form up to the file's bytes.
fn upload_request(app: &App, up: &Value, file_len: u64) -> (String, Vec<u8>, u64) {
    let boundary = "prism-test-boundary";
    let mut pre = Vec::new();
    let fields: BTreeMap<String, String> = serde_json::from_value(up["fields"].clone()).unwrap();
    for (k, v) in fields {
        pre.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    pre.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\nContent-Type: image/jpeg\r\n\r\n").as_bytes(),
    );
    let total = pre.len() as u64 + file_len + format!("\r\n--{boundary}--\r\n").len() as u64;
    let path = up["url"]
        .as_str()
        .unwrap()
        .strip_prefix(&app.base)
        .unwrap()
        .to_owned();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\n\r\n"
    );
    (head, pre, total)
}

#[tokio::test]
async fn an_upload_larger_than_its_grant_is_refused_having_read_little_more() {
    let app = spawn_app().await;
    let route = "/local/upload/{bucket}";
    let created = app.create(json!([file("a.jpg", 1000)])).await;
    let up = &created["uploads"][0];
    let forty_mib = 40 << 20;
    let (head, pre, total) = upload_request(&app, up, forty_mib);
    let (answer, sent) = race_body(app.addr, head, pre.clone(), total).await;
    let (status, body) = answer.expect("an answer before the connection closed");
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "invalid_request");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("1..=1000"),
        "{v}"
    );
    assert!(sent < forty_mib / 2, "{sent} bytes sent before the 400");
    // Server side: the form, the grant's 1,000 bytes and at most about one read buffer more.
    let read = app.body_bytes_read(route).await;
    assert!(
        read <= pre.len() as u64 + 1000 + (1 << 20),
        "read {read} bytes of an upload granted 1000"
    );
    assert_eq!(app.uploads_stored().await, 0);

    // A forged form (bad signature) is refused before its file is read.
    let before = app.body_bytes_read(route).await;
    let mut forged = up.clone();
    forged["fields"]["x-prism-signature"] = json!("00".repeat(32));
    let (head, pre, total) = upload_request(&app, &forged, forty_mib);
    let (answer, _) = race_body(app.addr, head, pre.clone(), total).await;
    assert_eq!(answer.unwrap().0, 403);
    let read = app.body_bytes_read(route).await - before;
    assert!(read <= pre.len() as u64 + (1 << 20), "read {read} bytes");

    // Fields before the file are capped too: a 40 MiB "policy" is refused early.
    let before = app.body_bytes_read(route).await;
    let head = format!(
        "POST /local/upload/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {forty_mib}\r\n\r\n"
    );
    let pre = b"--b\r\nContent-Disposition: form-data; name=\"policy\"\r\n\r\n".to_vec();
    let (answer, _) = race_body(app.addr, head, pre, forty_mib).await;
    assert_eq!(answer.unwrap().0, 400);
    let read = app.body_bytes_read(route).await - before;
    assert!(read <= 1 << 20, "read {read} bytes of fields");

    // The faithful upload still works after all that.
    let r = app.upload(up, vec![0xFF; 1000], |_| {}).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // Forms whose first chunks carry the fields and much of the file together are read whole:
    // as one write, and as reqwest (and so the CLI) sends them.
    let size = 600_000;
    let created = app
        .create(json!([file("b.jpg", size), file("c.jpg", size)]))
        .await;
    let (head, mut req, total) = upload_request(&app, &created["uploads"][0], size);
    req.extend(std::iter::repeat_n(0xFF, size as usize));
    req.extend_from_slice(b"\r\n--prism-test-boundary--\r\n");
    assert_eq!(req.len() as u64, total);
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(&[head.as_bytes(), &req].concat())
        .await
        .unwrap();
    let (status, body) = read_response(&mut s).await.unwrap();
    assert_eq!(status, 204, "{body}");
    let r = app
        .upload(&created["uploads"][1], vec![0xFF; size as usize], |_| {})
        .await;
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "{}",
        r.text().await.unwrap()
    );
}

/// Wait until the server closes the connection (EOF or reset), returning when that happened
/// and the response it sent first, if any.
async fn closed_by_server(
    r: &mut tokio::net::tcp::OwnedReadHalf,
) -> (std::time::Instant, Option<(u16, String)>) {
    let answer = read_response(r).await;
    let mut buf = [0u8; 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return (std::time::Instant::now(), answer),
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn a_connection_trickling_its_headers_is_closed_at_the_header_timeout() {
    let app = spawn_app_with(|c| c.http.header_read_timeout_secs = 1).await;
    let (mut r, mut w) = TcpStream::connect(app.addr).await.unwrap().into_split();
    let start = std::time::Instant::now();
    w.write_all(b"GET /v1/batches/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One header byte every 100 ms, for up to 20 s, while watching for the close.
    let trickle = async {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if w.write_all(b"X").await.is_err() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    };
    let (closed, answer) = tokio::select! {
        () = trickle => unreachable!(),
        c = closed_by_server(&mut r) => c,
    };
    let took = closed.duration_since(start);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "closed after {took:?}"
    );
    // Either no answer at all, or a 408.
    assert!(answer.as_ref().is_none_or(|(s, _)| *s == 408), "{answer:?}");
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_its_connection_closed_at_the_body_timeout() {
    let app = spawn_app_with(|c| c.http.body_timeout_secs = 1).await;
    for (route, what) in [
        ("/v1/batches", "application/json"),
        ("/v1/events", "application/json"),
    ] {
        let (mut r, mut w) = TcpStream::connect(app.addr).await.unwrap().into_split();
        let start = std::time::Instant::now();
        w.write_all(
            format!(
                "POST {route} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: {what}\r\nContent-Length: 1000\r\n\r\n{{\"files\"",
                app.token
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        // Then nothing: the connection stays open from this side.
        let (closed, answer) =
            tokio::time::timeout(Duration::from_secs(20), closed_by_server(&mut r))
                .await
                .expect("the server closed the stalled connection");
        let took = closed.duration_since(start);
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(10),
            "{route}: closed after {took:?}"
        );
        let (status, body) = answer.expect("a 408 before the close");
        assert_eq!(status, 408, "{route}: {body}");
        assert!(body.contains("request_timeout"), "{body}");
        drop(w);
    }
    // A stalled upload too.
    let created = app.create(json!([file("a.jpg", 1000)])).await;
    let (head, pre, _) = upload_request(&app, &created["uploads"][0], 1000);
    let (mut r, mut w) = TcpStream::connect(app.addr).await.unwrap().into_split();
    w.write_all(head.as_bytes()).await.unwrap();
    w.write_all(&pre).await.unwrap();
    w.write_all(&[0xFF; 10]).await.unwrap();
    let (_, answer) = tokio::time::timeout(Duration::from_secs(20), closed_by_server(&mut r))
        .await
        .expect("the server closed the stalled upload");
    assert_eq!(answer.unwrap().0, 408);
    assert_eq!(app.uploads_stored().await, 0);

    // A form that never finishes a part's headers is not buffered: it is read up to the form's
    // allowance, then refused once nothing more is wanted for the body timeout.
    let route = "/local/upload/{bucket}";
    let before = app.body_bytes_read(route).await;
    let len = 40u64 << 20;
    let head = format!(
        "POST /local/upload/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {len}\r\n\r\n"
    );
    let (answer, _) = race_body(app.addr, head, b"--b\r\nX-Junk: ".to_vec(), len).await;
    let (status, body) = answer.unwrap();
    assert_eq!(status, 400, "{body}");
    let read = app.body_bytes_read(route).await - before;
    assert!(read <= 1 << 20, "read {read} bytes of part headers");
}

#[tokio::test]
async fn a_request_past_the_request_timeout_gets_408() {
    let app = spawn_app_with(|c| c.http.request_timeout_secs = 1).await;
    let created = app.create(json!([file("a.jpg", 4)])).await;
    let r = app
        .http
        .get(format!(
            "{}/v1/batches/{}?wait=30",
            app.base,
            created["batch_id"].as_str().unwrap()
        ))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "request_timeout");
}

#[tokio::test]
async fn past_the_concurrency_limit_requests_get_503_and_ops_endpoints_still_answer() {
    let app = spawn_app_with(|c| c.http.max_concurrent_requests = 2).await;
    let created = app.create(json!([file("a.jpg", 4)])).await;
    let url = format!(
        "{}/v1/batches/{}",
        app.base,
        created["batch_id"].as_str().unwrap()
    );
    // Two long-polls hold both slots.
    let polls: Vec<_> = (0..2)
        .map(|_| {
            app.http
                .get(format!("{url}?wait=3"))
                .bearer_auth(&app.token)
                .send()
        })
        .collect();
    let polls = tokio::spawn(futures::future::join_all(polls));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = app
        .http
        .get(&url)
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers().get("retry-after").unwrap(), "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    let health = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    for p in polls.await.unwrap() {
        assert_eq!(p.unwrap().status(), StatusCode::OK);
    }
    let r = app
        .http
        .get(&url)
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn sizes_and_focal_points_are_checked_then_signed_per_file() {
    let app = spawn_app().await;
    let f = |focal: Value| json!({"name": "a.jpg", "content_type": "image/jpeg", "size": 5, "focal_point": focal});
    let with = |sizes: Value| json!({"files": [file("a.jpg", 5)], "variants": {"sizes": sizes, "formats": ["webp"]}});
    let cover = json!({"width": 256, "height": 256, "fit": "cover"});
    let bad = [
        with(json!([{"width": 256, "height": 256, "fit": "fill"}])),
        with(json!([{"width": 256, "height": 8, "fit": "cover"}])),
        with(json!([{"width": 9000, "height": 256}])),
        with(json!([{"width": 256}])),
        with(json!([cover, cover])),
        with(json!([{"width": 256, "height": 256, "fit": "contain", "focus": "auto"}])),
        with(json!([{"width": 256, "height": 256, "fit": "cover", "background": "#ffffff"}])),
        with(json!([{"width": 256, "height": 256, "fit": "contain", "background": "white"}])),
        with(json!([{"width": 256, "height": 256, "fit": "cover", "focus": "faces"}])),
        with(json!([{"width": 256, "height": 256, "extra": 1}])),
        with(json!([])),
        json!({"files": [file("a.jpg", 5)], "variants": {"widths": [100, 200, 300, 400, 500, 600, 700], "sizes": [cover, {"width": 64, "height": 64}], "formats": ["webp"]}}),
        json!({"files": [file("a.jpg", 5)], "variants": {"widths": [320], "fit": "cover", "formats": ["webp"]}}),
        json!({"files": [f(json!({"x": 1.5, "y": 0.5}))], "variants": {"widths": [320], "formats": ["webp"]}}),
        json!({"files": [f(json!({"x": -0.1, "y": 0.5}))], "variants": {"widths": [320], "formats": ["webp"]}}),
        json!({"files": [f(json!({"x": 0.5}))], "variants": {"widths": [320], "formats": ["webp"]}}),
        json!({"files": [f(json!({"x": 0.5, "y": 0.5, "z": 0}))], "variants": {"widths": [320], "formats": ["webp"]}}),
    ];
    for case in bad {
        let r = app.post("/v1/batches", &case).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{case}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request", "{case}");
    }
    // Eight together is the most; the focal point is signed for its own file only.
    let ok = json!({
        "files": [f(json!({"x": 0.25, "y": 0.75})), file("b.jpg", 5)],
        "variants": {
            "widths": [100, 200, 300, 400, 500, 600],
            "sizes": [
                {"width": 256, "height": 256, "fit": "cover", "focus": "focal_point"},
                {"width": 8192, "height": 8192, "fit": "contain", "background": "#ff00ff80"},
            ],
            "formats": ["webp", "avif"],
        },
    });
    let r = app.post("/v1/batches", &ok).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let fields = |i: usize| created["uploads"][i]["fields"].as_object().unwrap().clone();
    assert_eq!(fields(0)["x-amz-meta-prism-focal-point"], "0.2500,0.7500");
    assert!(!fields(1).contains_key("x-amz-meta-prism-focal-point"));
    let request = fields(0)["x-amz-meta-prism-request"]
        .as_str()
        .unwrap()
        .to_owned();
    let parsed = shared::variant::VariantRequest::from_metadata(&request).unwrap();
    assert_eq!(parsed.sizes.len(), 2);
    assert_eq!(parsed.focal_point, None);
    assert!(
        request.contains(r##""background":"#ff00ff80""##),
        "{request}"
    );
}

#[tokio::test]
async fn animated_is_validated_and_signed_into_the_upload() {
    let app = spawn_app().await;
    for bad in [json!("yes"), json!(1), json!([true]), json!({"on": true})] {
        let case = json!({"files": [file("a.gif", 5)], "variants": {"widths": [320], "formats": ["webp"], "animated": bad}});
        let r = app.post("/v1/batches", &case).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{case}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request", "{case}");
    }
    for (animated, signed) in [(Some(false), true), (Some(true), false), (None, false)] {
        let mut variants = json!({"widths": [320], "formats": ["webp"]});
        if let Some(a) = animated {
            variants["animated"] = json!(a);
        }
        let r = app
            .post(
                "/v1/batches",
                &json!({"files": [file("a.gif", 5)], "variants": variants}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{animated:?}");
        let body: Value = r.json().await.unwrap();
        let upload = body["uploads"][0].to_string();
        assert!(upload.contains("prism-request"), "{upload}");
        assert_eq!(
            upload.contains(r#"\"animated\":false"#) || upload.contains("animated%22%3Afalse"),
            signed,
            "{animated:?}: {upload}"
        );
    }
}
