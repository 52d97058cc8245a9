//! `prism dlq list|show|redrive` on both backends, driven as a user would: the real binary.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use shared::port::{DeadLetterInfo, Queue};

fn prism(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() || args.contains(&"show"),
        "prism {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn dead_letter_one(q: &dyn Queue) {
    q.send("{\"Records\":[]}").await.unwrap();
    let m = q
        .receive(1, Duration::from_secs(2))
        .await
        .unwrap()
        .pop()
        .unwrap();
    let info = DeadLetterInfo {
        error_code: shared::error::ErrorCode::UndecodableImage,
        worker: "resize".into(),
        reason: "not an image".into(),
    };
    q.dead_letter(&m, &info).await.unwrap();
}

fn check_cli(backend: &[&str], q: &dyn Queue, rt: &tokio::runtime::Handle) {
    let mut args = vec!["dlq", "list", "resize", "--json"];
    args.extend_from_slice(backend);
    let (_, out) = prism(&args);
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(list.len(), 1, "{out}");
    assert_eq!(list[0]["error_code"], "undecodable_image");
    assert_eq!(list[0]["reason"], "not an image");
    let id = list[0]["id"].as_str().unwrap().to_owned();

    let mut args = vec!["dlq", "show", "resize", &id];
    args.extend_from_slice(backend);
    let (ok, out) = prism(&args);
    assert!(ok, "{out}");
    let one: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(one["body"]["Records"], serde_json::json!([]));

    let mut args = vec!["dlq", "redrive", "resize"];
    args.extend_from_slice(backend);
    let (_, out) = prism(&args);
    assert!(out.contains("redriving 1"), "{out}");
    let back = rt.block_on(async {
        shared::testing::eventually(Duration::from_secs(10), "the message back", || async {
            q.receive(1, Duration::from_secs(1)).await.unwrap().pop()
        })
        .await
    });
    assert_eq!(back.body, "{\"Records\":[]}");
}

#[test]
fn dlq_commands_on_the_local_backend() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let q = rt.block_on(async {
        let stack = shared::adapter::local::LocalStack::open(
            dir.path(),
            &shared::config::Resources::default(),
            "http://127.0.0.1:1",
        )
        .await
        .unwrap();
        let q = stack
            .queue("resize", Duration::from_secs(30), 5)
            .await
            .unwrap();
        dead_letter_one(&q).await;
        q
    });
    let d = dir.path().display().to_string();
    check_cli(&["--data-dir", &d], &q, rt.handle());
}

#[test]
fn dlq_commands_on_sqs() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let moto = shared::testing::moto::Moto::start();
    let q = rt.block_on(async {
        let c = moto.clients().await;
        let p = shared::adapter::aws::provision::ensure_queue(
            &c,
            &shared::port::QueueSettings::new("resize"),
        )
        .await
        .unwrap();
        let q = shared::adapter::aws::SqsQueue::new(&c, "resize", &p.url, &p.dlq_url);
        dead_letter_one(&q).await;
        q
    });
    check_cli(&["--aws-endpoint", &moto.endpoint], &q, rt.handle());
}
