//! One trace per batch, across the whole pipeline: `prism dev` exports spans over OTLP/HTTP to a
//! collector started by the test; two batches are uploaded (one continuing a caller's
//! `traceparent`, one starting its own trace), and every span of every file — presign, upload,
//! queue wait (resize and metadata), resize, render, metadata — carries its batch's trace id and
//! hangs under the batch's `create_batch` span.
//!
//! The images are `testdata/corpus` in the repository (or `$PRISM_CORPUS`).
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use shared::config::TraceConfig;
use shared::testing::otlp::{CollectedSpan, Collector};
use tokio_util::sync::CancellationToken;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// Create a batch (with `traceparent` when given), upload `files`, wait for completion, through
/// the typed API client; the batch view as JSON.
async fn batch(api: &str, token: &str, traceparent: Option<String>, files: &[PathBuf]) -> Value {
    use shared::api::{Client, CreateBatchRequest, FileSpec, OutputFormat, VariantSpec};
    // The caller's `traceparent` rides on every request of this client.
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(tp) = traceparent {
        headers.insert("traceparent", tp.parse().unwrap());
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let client = Client::with_http(http, api, token);
    let req = CreateBatchRequest {
        files: files
            .iter()
            .map(|p| FileSpec {
                name: p.file_name().unwrap().to_string_lossy().into_owned(),
                content_type: prism::upload::content_type(p).to_owned(),
                size: std::fs::metadata(p).unwrap().len(),
                focal_point: None,
            })
            .collect(),
        variants: VariantSpec::new(vec![320, 640], vec![OutputFormat::Webp]),
        callback_url: None,
        upload_method: Default::default(),
    };
    let created = client.create_batch(&req).await.unwrap();
    for (up, path) in created.uploads.iter().zip(files) {
        let ct = prism::upload::content_type(path);
        client
            .upload(up, std::fs::read(path).unwrap(), ct)
            .await
            .unwrap();
    }
    let done = client
        .get_batch(&created.batch_id, Some(120))
        .await
        .unwrap();
    let done = serde_json::to_value(done).unwrap();
    assert_eq!(done["status"], "complete", "{done:#}");
    done
}

fn file_of(s: &CollectedSpan) -> Option<&str> {
    s.attributes
        .get("file_id")
        .or_else(|| s.attributes.get("prism.file_id"))
        .map(String::as_str)
}

/// Check one batch's spans: one `create_batch` (child of `caller` when given), and for every
/// file the full set of spans, all in the batch's trace, hanging under `create_batch`.
fn check_batch(spans: &[CollectedSpan], done: &Value, caller: Option<(&str, &str)>) -> String {
    let id = done["batch_id"].as_str().unwrap();
    let roots: Vec<&CollectedSpan> = spans
        .iter()
        .filter(|s| {
            s.name == "create_batch" && s.attributes.get("batch_id").map(String::as_str) == Some(id)
        })
        .collect();
    assert_eq!(roots.len(), 1, "one create_batch span for {id}: {roots:#?}");
    let root = roots[0];
    assert_eq!(root.service, "prism-dev");
    match caller {
        Some((trace, span)) => {
            assert_eq!(root.trace_id, trace, "the caller's trace is continued");
            assert_eq!(
                root.parent_span_id, span,
                "create_batch is the caller's child"
            );
        }
        None => {
            assert!(root.parent_span_id.is_empty() || root.parent_span_id == "0000000000000000");
            assert_ne!(root.trace_id, CALLER_TRACE);
        }
    }
    let by_id = |sid: &str| spans.iter().find(|s| s.span_id == sid);
    for f in done["files"].as_array().unwrap() {
        let fid = f["file_id"].as_str().unwrap();
        let name = f["name"].as_str().unwrap();
        let mine: Vec<&CollectedSpan> = spans.iter().filter(|s| file_of(s) == Some(fid)).collect();
        for s in &mine {
            assert_eq!(
                s.trace_id, root.trace_id,
                "{name}: span {} left the batch's trace",
                s.name
            );
            assert!(
                s.start_ns <= s.end_ns,
                "{name}: span {} ends before it starts",
                s.name
            );
        }
        let names: BTreeSet<&str> = mine.iter().map(|s| s.name.as_str()).collect();
        for want in ["presign", "upload", "queue wait", "resize", "metadata"] {
            assert!(
                names.contains(want),
                "{name}: no {want:?} span; got {names:?}"
            );
        }
        let waits: BTreeSet<&str> = mine
            .iter()
            .filter(|s| s.name == "queue wait")
            .filter_map(|s| s.attributes.get("prism.worker").map(String::as_str))
            .collect();
        assert_eq!(
            waits,
            BTreeSet::from(["metadata", "resize"]),
            "{name}: queue waits"
        );
        // Two metadata spans at least: the upload event and the manifest (or failure) event.
        assert!(
            mine.iter().filter(|s| s.name == "metadata").count() >= 2,
            "{name}"
        );
        for s in mine.iter().filter(|s| s.name != "render") {
            assert_eq!(
                s.parent_span_id, root.span_id,
                "{name}: {} is not a child of create_batch",
                s.name
            );
        }
        let resize = mine.iter().find(|s| s.name == "resize").unwrap();
        let upload = mine.iter().find(|s| s.name == "upload").unwrap();
        assert!(
            upload.end_ns <= resize.start_ns,
            "{name}: the upload ends before the resize starts"
        );
        // The engine's span hangs under the resize span (ok files only).
        if f["status"] == "done" {
            let render = spans
                .iter()
                .find(|s| s.name == "render" && s.parent_span_id == resize.span_id)
                .unwrap_or_else(|| panic!("{name}: no render span under resize"));
            assert_eq!(render.trace_id, root.trace_id);
            assert!(by_id(&render.parent_span_id).is_some());
        }
    }
    root.trace_id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spans_of_one_file_share_its_batch_trace() {
    let corpus = shared::testing::corpus();
    let collector = Collector::start().await;
    let mut guard = shared::telemetry::tracing::init_with(
        &shared::config::LogConfig::default(),
        &TraceConfig {
            otlp_endpoint: Some(collector.endpoint.parse().unwrap()),
        },
        "prism-dev",
    );
    assert!(shared::telemetry::trace::exporting(), "export is on");
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
    let api = dev.url.to_string();
    let api = api.trim_end_matches('/');

    // A caller's trace, continued: two good files and one the engine rejects.
    let a = batch(
        api,
        &dev.token,
        Some(format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")),
        &[
            corpus.join("Landscape_6.jpg"),
            corpus.join("p3.png"),
            corpus.join("truncated.jpg"),
        ],
    )
    .await;
    // No traceparent: the batch starts its own trace.
    let b = batch(api, &dev.token, None, &[corpus.join("concert.jpg")]).await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), dev.wait())
        .await
        .expect("prism dev stops");
    // Flush the batch exporter (it runs on its own thread and posts synchronously).
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap();

    let spans = collector.spans();
    assert!(!spans.is_empty(), "the collector received spans");
    let ta = check_batch(&spans, &a, Some((CALLER_TRACE, CALLER_SPAN)));
    let tb = check_batch(&spans, &b, None);
    assert_ne!(ta, tb, "each batch has its own trace");
    let per_trace = |t: &str| spans.iter().filter(|s| s.trace_id == t).count();
    println!(
        "spans received: {} ({} in the caller's trace, {} in the second batch's)",
        spans.len(),
        per_trace(&ta),
        per_trace(&tb)
    );
}
