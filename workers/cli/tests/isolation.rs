//! Crash isolation through the real pipeline: one batch on `prism dev`'s in-process stack with a
//! file whose render process aborts (a valid PNG carrying the `test-hooks` abort marker) beside
//! valid neighbours, and a file whose render never ends (the spin marker) under a 4 s
//! `render_timeout_secs`. The batch completes; every neighbour is `done`; the crashing file is
//! `failed` with `render_crashed`, the stuck one with `render_timeout` (its process killed, so
//! its message is acked rather than kept invisible by heartbeats); no message is retried or
//! dead-lettered; the stack keeps serving (a second batch renders afterwards).
//!
//! The worker runs inside this test process, so its render processes are the `prism` binary
//! (`prism render-child`, named by `resize.render_child_program`); built with `test-hooks` (this
//! test's required feature) it honours the marker.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

#[path = "../../resize/tests/support/hostile_inputs.rs"]
mod hostile_inputs;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use hostile_inputs as gen_;
use prism_resize::isolate::test_hooks;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

async fn run_batch(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    cases: &[(String, Vec<u8>)],
) -> Value {
    let client = shared::api::Client::with_http(http.clone(), api, token);
    let req = shared::api::CreateBatchRequest {
        files: cases
            .iter()
            .map(|(name, bytes)| shared::api::FileSpec {
                name: name.clone(),
                content_type: "image/png".into(),
                size: bytes.len() as u64,
                focal_point: None,
            })
            .collect(),
        variants: shared::api::VariantSpec::new(
            vec![32, 64],
            vec![shared::api::OutputFormat::Webp],
        ),
        callback_url: None,
        upload_method: Default::default(),
    };
    let created = client.create_batch(&req).await.unwrap();
    for ((name, bytes), up) in cases.iter().zip(&created.uploads) {
        client
            .upload(up, bytes.clone(), "image/png")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    let mut view = None;
    for _ in 0..30 {
        let v = client.get_batch(&created.batch_id, Some(10)).await.unwrap();
        let complete = v.is_complete();
        view = Some(v);
        if complete {
            break;
        }
    }
    let view = serde_json::to_value(view.unwrap()).unwrap();
    assert_eq!(view["status"], "complete", "{view:#}");
    view
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_render_fails_only_its_file_and_the_stack_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prism.toml");
    std::fs::write(
        &config,
        format!(
            "[resize]\nisolation = \"process\"\nrender_timeout_secs = 4\n\
             render_child_program = {:?}\n",
            env!("CARGO_BIN_EXE_prism")
        ),
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let dev = prism::dev::start(
        &dir.path().join("data"),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(&config),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let api = dev.url.trim_end_matches('/').to_owned();

    let mut cases: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("neighbour {i}.png"), gen_::png_solid(90 + i, 60)))
        .collect();
    let mut bad = gen_::png_solid(80, 80);
    bad.extend_from_slice(test_hooks::ABORT);
    cases.insert(2, ("crashes its renderer.png".into(), bad));
    let mut stuck = gen_::png_solid(70, 70);
    stuck.extend_from_slice(test_hooks::SPIN);
    cases.insert(4, ("never finishes.png".into(), stuck));

    let view = run_batch(&http, &api, &dev.token, &cases).await;
    let listed: HashMap<&str, &Value> = view["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f))
        .collect();
    assert_eq!(listed.len(), cases.len());
    for (name, _) in &cases {
        let f = listed[name.as_str()];
        if name.starts_with("never") {
            assert_eq!(f["status"], "failed", "{f:#}");
            assert_eq!(f["error"]["code"], "render_timeout", "{f:#}");
        } else if name.starts_with("crashes") {
            assert_eq!(f["status"], "failed", "{f:#}");
            assert_eq!(f["error"]["code"], "render_crashed", "{f:#}");
            assert!(
                f["error"]["message"].as_str().unwrap().contains("SIGABRT"),
                "{f:#}"
            );
        } else {
            assert_eq!(f["status"], "done", "{name}: {f:#}");
            assert!(!f["variants"].as_array().unwrap().is_empty(), "{name}");
        }
    }

    // The worker is still there: another batch renders.
    let again = vec![("after.png".to_owned(), gen_::png_solid(100, 70))];
    let view = run_batch(&http, &api, &dev.token, &again).await;
    assert_eq!(view["files"][0]["status"], "done", "{view:#}");

    // Nothing retried, nothing dead-lettered, no panic.
    let metrics = http
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            !(line.contains("outcome=\"retry\"") || line.contains("outcome=\"dead_letter\""))
                || line.ends_with(" 0"),
            "{line}"
        );
        assert!(!line.contains("error_code=\"panic\""), "{line}");
    }
    for q in ["resize", "metadata"] {
        let queue = dev
            .stack
            .queue(q, Duration::from_secs(60), 5)
            .await
            .unwrap();
        let s = shared::port::Queue::stats(&queue).await.unwrap();
        assert_eq!((s.visible, s.in_flight, s.dlq_visible), (0, 0, 0), "{q}");
    }
    dev.stop().await;
}
