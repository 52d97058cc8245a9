//! The API's answers against its own OpenAPI document: each body a real request gets is
//! validated (JSON Schema 2020-12, the dialect of OpenAPI 3.1) against the schema the served
//! `/v1/openapi.json` declares for that route and status; and `Idempotency-Key` on creates.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::time::Duration;

mod support;
use support::{App, spawn_app_with};

use serde_json::{Value, json};
use shared::api::{
    ClientEvent, CreateBatchRequest, ErrorCode, FileSpec, OutputFormat, VariantSpec,
};
use shared::port::{FileError, MetadataStore, NewWebhook, WebhookAttempt, WebhookStatus};
use time::OffsetDateTime;

async fn spawn_app() -> App {
    spawn_app_with(|cfg| {
        cfg.limits.max_batch_body_bytes = 4096;
        cfg.limits.max_files = 50;
    })
    .await
}

/// The served document and a validator per (path, method, status).
struct Contract(Value);

impl Contract {
    async fn fetch(app: &App) -> Self {
        let r = app
            .http
            .get(format!("{}/v1/openapi.json", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        Self(r.json().await.unwrap())
    }

    /// Validate `body` against the schema of `path`/`method`/`status`; panics listing every
    /// violation.
    fn check(&self, path: &str, method: &str, status: u16, body: &Value) {
        let response = &self.0["paths"][path][method]["responses"][status.to_string()];
        assert!(
            !response.is_null(),
            "{method} {path} does not declare {status}"
        );
        let mut schema = response["content"]["application/json"]["schema"].clone();
        assert!(
            !schema.is_null(),
            "{method} {path} {status} declares no JSON schema"
        );
        schema["components"] = self.0["components"].clone();
        let v = jsonschema::draft202012::new(&schema).unwrap();
        let errors: Vec<String> = v
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: {errors:#?}\n{body:#}"
        );
    }

    /// Send `req`, check its status is `status`, and validate its body.
    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        path: &str,
        method: &str,
        status: u16,
    ) -> (reqwest::header::HeaderMap, Value) {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        assert_eq!(
            r.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{method} {path} {status}"
        );
        let headers = r.headers().clone();
        let body: Value = r.json().await.unwrap();
        self.check(path, method, status, &body);
        (headers, body)
    }
}

fn request(files: usize) -> CreateBatchRequest {
    CreateBatchRequest {
        files: (0..files)
            .map(|i| FileSpec {
                name: format!("photo {i}.jpg"),
                content_type: "image/jpeg".into(),
                size: 1000,
                focal_point: None,
            })
            .collect(),
        variants: VariantSpec::new(vec![640, 320], vec![OutputFormat::Webp, OutputFormat::Avif]),
        callback_url: None,
        upload_method: Default::default(),
    }
}

#[tokio::test]
async fn the_document_is_generated_and_carries_the_rules() {
    let app = spawn_app().await;
    let doc = Contract::fetch(&app).await.0;
    assert_eq!(doc["openapi"], "3.1.0");
    let s = &doc["components"]["schemas"];
    // Requests refuse unknown fields, and their bounds are in the schema.
    for name in ["CreateBatchRequest", "FileSpec", "VariantSpec"] {
        assert_eq!(s[name]["additionalProperties"], false, "{name}");
    }
    // The served document states this server's configured limits.
    assert_eq!(
        s["CreateBatchRequest"]["properties"]["files"]["maxItems"],
        50
    );
    assert_eq!(
        s["FileSpec"]["properties"]["size"]["maximum"],
        50 * 1024 * 1024
    );
    let wait = doc["paths"]["/v1/batches/{batch_id}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "wait")
        .unwrap();
    assert_eq!(wait["schema"]["maximum"], 60);
    let widths = &s["VariantSpec"]["properties"]["widths"];
    // Sizes: their bounds, fits, focuses and the focal point's range.
    let size = &s["SizeSpec"]["properties"];
    assert_eq!(size["width"]["minimum"], 16, "{:#}", s["SizeSpec"]);
    assert_eq!(size["height"]["maximum"], 8192);
    assert_eq!(s["VariantSpec"]["properties"]["sizes"]["maxItems"], 8);
    assert_eq!(s["Fit"]["enum"], json!(["inside", "cover", "contain"]));
    assert_eq!(s["Focus"]["enum"], json!(["center", "auto", "focal_point"]));
    assert_eq!(s["FocalPoint"]["properties"]["x"]["maximum"], 1.0);
    assert!(
        s["VariantView"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!("fit"))
            || s["VariantView"]["properties"]["fit"].is_object()
    );
    assert_eq!(widths["maxItems"], 8);
    assert_eq!(widths["items"]["minimum"], 16);
    assert_eq!(widths["items"]["maximum"], 8192);
    assert_eq!(
        s["UploadMethodSpec"]["enum"],
        json!(["post", "put"]),
        "{:#}",
        s["UploadMethodSpec"]
    );
    assert_eq!(s["UploadMethod"]["enum"], json!(["POST", "PUT"]));
    let codes: Vec<&str> = s["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for c in ErrorCode::ALL {
        assert!(codes.contains(&c.as_str()), "{c:?}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let create = &doc["paths"]["/v1/batches"]["post"];
    assert!(!create["responses"]["201"]["headers"]["Location"].is_null());
    assert!(
        create["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
    );
    assert!(!doc["paths"]["/healthz"]["get"].is_null());
    assert!(
        doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("max_batch_body_bytes")
    );
}

#[tokio::test]
async fn real_answers_match_the_document() {
    let app = spawn_app().await;
    let c = Contract::fetch(&app).await;
    let auth = |r: reqwest::RequestBuilder| r.bearer_auth(&app.token);

    // Create: 201 with Location.
    let mut body = serde_json::to_value(request(3)).unwrap();
    body["callback_url"] = json!("http://127.0.0.1:9/hook");
    let (headers, created) = c
        .call(
            auth(app.http.post(format!("{}/v1/batches", app.base))).json(&body),
            "/v1/batches",
            "post",
            201,
        )
        .await;
    let id = created["batch_id"].as_str().unwrap().to_owned();
    assert_eq!(
        headers.get("location").unwrap().to_str().unwrap(),
        format!("/v1/batches/{id}")
    );
    // A PUT batch validates too (whatever method the backend answers with).
    let mut put = serde_json::to_value(request(1)).unwrap();
    put["upload_method"] = json!("put");
    c.call(
        auth(app.http.post(format!("{}/v1/batches", app.base))).json(&put),
        "/v1/batches",
        "post",
        201,
    )
    .await;

    // Read it pending.
    let path = "/v1/batches/{batch_id}";
    let get = || auth(app.http.get(format!("{}/v1/batches/{id}", app.base)));
    let (_, pending) = c.call(get(), path, "get", 200).await;
    assert_eq!(pending["status"], "pending");

    // Complete it through the metadata store: one done (variants), one failed, one expired
    // later; plus a webhook attempt, so every optional part of the view is present.
    let files: Vec<String> = created["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["file_id"].as_str().unwrap().to_owned())
        .collect();
    let now = OffsetDateTime::now_utc();
    let mut rendered = shared::testing::metadata_store::rendered(&id, &files[0]);
    for (w, f) in [
        (640, OutputFormat::Webp),
        (320, OutputFormat::Avif),
        (640, OutputFormat::Avif),
    ] {
        rendered.variants.push(shared::port::VariantRecord {
            width: w,
            height: w * 3 / 4,
            fit: shared::variant::Fit::Inside,
            format: f,
            bytes: 100,
            key: shared::keys::variant_key(&id, &files[0], w, "0123456789", f),
            lossless: false,
            animation: None,
            // One variant as `"quality": "auto"` records it, for the view's schema.
            auto: (f == OutputFormat::Avif && w == 640).then_some(shared::variant::AutoChoice {
                quality: 47,
                ssimulacra2: 65.25,
            }),
        });
    }
    rendered.original_key = Some(format!("media/{id}/{}/original", files[0]));
    app.stack
        .metadata
        .mark_done(&id, &files[0], &rendered, now)
        .await
        .unwrap();
    app.stack
        .metadata
        .mark_failed(
            &id,
            &files[1],
            &FileError {
                code: shared::error::ErrorCode::UndecodableImage,
                message: "not an image".into(),
            },
            now,
        )
        .await
        .unwrap();
    app.stack
        .metadata
        .record_image_request(&files[0], "ev-1", now)
        .await
        .unwrap();
    let (_, processing) = c.call(get(), path, "get", 200).await;
    assert_eq!(processing["status"], "processing");
    let done = &processing["files"][0];
    assert_eq!(done["variants"][0]["content_type"], "image/webp");
    let srcset = done["srcset"].as_object().unwrap();
    assert_eq!(srcset.len(), 2);
    let webp = srcset["webp"].as_str().unwrap();
    assert!(webp.ends_with(" 640w"), "{webp}");
    let avif: Vec<&str> = srcset["avif"].as_str().unwrap().split(", ").collect();
    assert!(
        avif[0].ends_with(" 320w") && avif[1].ends_with(" 640w"),
        "{avif:?}"
    );
    assert!(done["original_url"].is_string());
    assert!(done["last_requested_at"].is_string());
    assert_eq!(processing["files"][1]["error"]["code"], "undecodable_image");

    // Expire the last one: the batch completes.
    let later = now + Duration::from_secs(3600);
    let expired = app
        .stack
        .metadata
        .expire_uploads(later, now, 10)
        .await
        .unwrap();
    assert!(
        expired
            .iter()
            .any(|e| e.batch_id == id && e.batch_completed)
    );
    let webhook = NewWebhook {
        id: format!("msg_{id}"),
        batch_id: id.clone(),
        principal: "dev".into(),
        url: "http://127.0.0.1:9/hook".into(),
        body: "{}".into(),
        due_at: now,
    };
    app.stack.metadata.enqueue_webhook(&webhook).await.unwrap();
    let jobs = app
        .stack
        .metadata
        .claim_webhooks(now + Duration::from_secs(1), Duration::from_secs(60), 10)
        .await
        .unwrap();
    let job = jobs.iter().find(|j| j.batch_id == id).unwrap();
    app.stack
        .metadata
        .record_webhook_attempt(
            job,
            &WebhookAttempt {
                at: now,
                status: WebhookStatus::Pending,
                http_status: Some(500),
                error: Some("HTTP 500".into()),
                next_attempt_at: Some(later),
            },
        )
        .await
        .unwrap();
    let (_, complete) = c
        .call(
            auth(app.http.get(format!("{}/v1/batches/{id}?wait=5", app.base))),
            path,
            "get",
            200,
        )
        .await;
    assert_eq!(complete["status"], "complete");
    assert_eq!(complete["counts"]["expired"], 1);
    assert_eq!(complete["webhook"]["last_status"], 500);
    // The typed client reads the same view.
    let typed = app.client().get_batch(&id, None).await.unwrap();
    assert!(typed.is_complete());
    assert_eq!(serde_json::to_value(&typed).unwrap(), complete);

    // Events: 202.
    let event = ClientEvent::image_requested(files[0].clone());
    c.call(
        auth(app.http.post(format!("{}/v1/events", app.base))).json(&event),
        "/v1/events",
        "post",
        202,
    )
    .await;

    // Errors, each against its declared status.
    let batches = || app.http.post(format!("{}/v1/batches", app.base));
    c.call(batches().json(&body), "/v1/batches", "post", 401)
        .await;
    let (_, e) = c
        .call(
            auth(batches())
                .json(&json!({"files": [], "variants": {"widths": [320], "formats": ["webp"]}})),
            "/v1/batches",
            "post",
            400,
        )
        .await;
    assert_eq!(e["error"]["code"], "invalid_request");
    c.call(
        auth(batches())
            .header("content-type", "application/json")
            .body("{not json"),
        "/v1/batches",
        "post",
        400,
    )
    .await;
    c.call(
        auth(batches())
            .header("content-type", "application/json")
            .body(vec![b' '; 8192]),
        "/v1/batches",
        "post",
        413,
    )
    .await;
    let mut long_callback = body.clone();
    long_callback["callback_url"] = json!(format!("https://example.com/{}", "a".repeat(2100)));
    let (_, e) = c
        .call(
            auth(batches()).json(&long_callback),
            "/v1/batches",
            "post",
            400,
        )
        .await;
    assert!(
        e["error"]["message"].as_str().unwrap().contains("2048"),
        "{e}"
    );
    c.call(
        auth(batches()).header("idempotency-key", "").json(&body),
        "/v1/batches",
        "post",
        400,
    )
    .await;
    c.call(
        auth(app.http.get(format!("{}/v1/batches/nope", app.base))),
        path,
        "get",
        404,
    )
    .await;
    c.call(
        auth(
            app.http
                .get(format!("{}/v1/batches/{id}?wait=soon", app.base)),
        ),
        path,
        "get",
        400,
    )
    .await;
    c.call(
        auth(app.http.post(format!("{}/v1/events", app.base))).json(&json!({"name": 1})),
        "/v1/events",
        "post",
        400,
    )
    .await;
    c.call(
        auth(app.http.post(format!("{}/v1/events", app.base)))
            .json(&ClientEvent::image_requested("not-a-file")),
        "/v1/events",
        "post",
        404,
    )
    .await;
    c.call(
        app.http
            .post(format!("{}/v1/events", app.base))
            .json(&event),
        "/v1/events",
        "post",
        401,
    )
    .await;
}

#[tokio::test]
async fn a_create_retried_with_its_idempotency_key_answers_the_same_batch() {
    let app = spawn_app().await;
    let c = Contract::fetch(&app).await;
    let req = request(2);
    let first = app
        .client()
        .create_batch_with(&req, Some("order-7 attempt"))
        .await
        .unwrap();
    assert_eq!(
        first.location.as_deref(),
        Some(format!("/v1/batches/{}", first.batch.batch_id).as_str())
    );
    // The same request again: the same batch and files, fresh instructions.
    let again = app
        .client()
        .create_batch_with(&req, Some("order-7 attempt"))
        .await
        .unwrap();
    assert_eq!(again.batch.batch_id, first.batch.batch_id);
    assert_eq!(again.location, first.location);
    let ids = |b: &shared::api::CreatedBatch| -> Vec<String> {
        b.uploads.iter().map(|u| u.file_id.clone()).collect()
    };
    assert_eq!(ids(&again.batch), ids(&first.batch));
    assert_eq!(again.batch.expires_at, first.batch.expires_at);
    c.check(
        "/v1/batches",
        "post",
        201,
        &serde_json::to_value(&again.batch).unwrap(),
    );
    // The widths in another order normalise to the same request.
    let mut reordered = req.clone();
    reordered.variants.widths.reverse();
    let same = app
        .client()
        .create_batch_with(&reordered, Some("order-7 attempt"))
        .await
        .unwrap();
    assert_eq!(same.batch.batch_id, first.batch.batch_id);
    // Upload one file with the retry's fresh instructions: a later retry leaves it out.
    app.client()
        .upload(&again.batch.uploads[0], vec![0_u8; 1000], "image/jpeg")
        .await
        .unwrap();
    // (No metadata worker runs here: record the receipt it would.)
    app.stack
        .metadata
        .mark_received(
            &first.batch.batch_id,
            &first.batch.uploads[0].file_id,
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let left = app
        .client()
        .create_batch_with(&req, Some("order-7 attempt"))
        .await
        .unwrap();
    assert_eq!(
        left.batch.uploads.len(),
        1,
        "the uploaded file leaves the retry's uploads"
    );
    assert_eq!(
        left.batch.uploads[0].file_id,
        first.batch.uploads[1].file_id
    );
    // Only one batch exists for the key.
    let recent = app.stack.metadata.recent_batches(10).await.unwrap();
    assert_eq!(recent.len(), 1);

    // The same key with a different request: 422.
    let mut other = req.clone();
    other.files[0].size = 999;
    let e = app
        .client()
        .create_batch_with(&other, Some("order-7 attempt"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::IdempotencyKeyReused), "{e}");
    let r = app
        .http
        .post(format!("{}/v1/batches", app.base))
        .bearer_auth(&app.token)
        .header("idempotency-key", "order-7 attempt")
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    c.check("/v1/batches", "post", 422, &r.json().await.unwrap());
    // Another key is another batch.
    let fresh = app
        .client()
        .create_batch_with(&req, Some("order-8"))
        .await
        .unwrap();
    assert_ne!(fresh.batch.batch_id, first.batch.batch_id);
    // Keys that are not 1-255 printable ASCII: 400, nothing created.
    for bad in ["x".repeat(256), "tab\tkey".to_owned(), String::new()] {
        let e = app
            .client()
            .create_batch_with(&req, Some(&bad))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::InvalidRequest), "{bad:?}: {e}");
    }
    let ok_long = "k".repeat(255);
    app.client()
        .create_batch_with(&req, Some(&ok_long))
        .await
        .unwrap();
    assert_eq!(
        app.stack.metadata.recent_batches(10).await.unwrap().len(),
        3
    );
}

/// The document's `VariantSpec` accepts exactly the output options the server accepts: JPEG and
/// PNG formats, `jpeg_quality` 1-100, `lossless` true, false or "auto".
#[tokio::test]
async fn the_document_describes_jpeg_png_and_lossless_as_the_server_checks_them() {
    let app = spawn_app().await;
    let doc = Contract::fetch(&app).await.0;
    let mut schema = json!({"$ref": "#/components/schemas/VariantSpec"});
    schema["components"] = doc["components"].clone();
    let v = jsonschema::draft202012::new(&schema).unwrap();
    let spec = |extra: Value| {
        let mut s = json!({"widths": [320], "formats": ["jpeg", "png", "webp"]});
        for (k, x) in extra.as_object().unwrap() {
            s[k] = x.clone();
        }
        s
    };
    let file = json!([{"name": "a.jpg", "content_type": "image/jpeg", "size": 5}]);
    for (extra, ok) in [
        (json!({}), true),
        (json!({"jpeg_quality": 70, "lossless": "auto"}), true),
        (json!({"lossless": true}), true),
        (json!({"lossless": false}), true),
        (json!({"jpeg_quality": 0}), false),
        (json!({"jpeg_quality": 101}), false),
        (json!({"lossless": "yes"}), false),
        (json!({"lossless": 1}), false),
        (json!({"formats": ["jpg"]}), false),
        (json!({"quality": "auto"}), true),
        (json!({"quality": "auto:high"}), true),
        (json!({"quality": "auto:eco", "jpeg_quality": 70}), true),
        (json!({"quality": 60}), true),
        (json!({"quality": "auto:wrong"}), false),
        (json!({"quality": 0}), false),
        (json!({"quality": 101}), false),
        (json!({"quality": "60"}), false),
    ] {
        let body = spec(extra);
        assert_eq!(v.is_valid(&body), ok, "schema on {body}");
        let r = app
            .http
            .post(format!("{}/v1/batches", app.base))
            .bearer_auth(&app.token)
            .json(&json!({"files": file, "variants": body}))
            .send()
            .await
            .unwrap();
        let want = if ok { 201 } else { 400 };
        assert_eq!(r.status().as_u16(), want, "server on {body}");
    }
}
