//! Archiver throughput on the embedded backend: N S3-shaped events already in the archive queue,
//! drained by one archiver with the default flush settings; events archived and acked per second.
//!
//! `cargo run --release -p prism-archiver --example archiver_bench -- [EVENTS]`
#![allow(clippy::unwrap_used, missing_docs)] // a measurement tool

use std::sync::Arc;
use std::time::{Duration, Instant};

use prism_archiver::{Archiver, Config, Deps};
use shared::adapter::local::LocalStack;
use shared::config::Resources;
use shared::port::Queue;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::open(dir.path(), &Resources::default(), "http://127.0.0.1:1")
        .await
        .unwrap();
    let cfg = Config::default();
    let queue = stack
        .queue(
            "archive",
            Duration::from_secs(cfg.consumer.visibility_timeout_secs),
            5,
        )
        .await
        .unwrap();
    let at = time::OffsetDateTime::now_utc();
    let bodies: Vec<String> = (0..n)
        .map(|i| {
            serde_json::to_string(&shared::event::object_created_event(
                "local",
                "uploads",
                &format!("uploads/batch-{}/file-{i}", i / 100),
                829_183,
                "d41d8cd98f00b204e9800998ecf8427e",
                "ObjectCreated:Post",
                "01",
                at,
            ))
            .unwrap()
        })
        .collect();
    let bytes: usize = bodies.iter().map(String::len).sum();
    for chunk in bodies.chunks(1000) {
        queue.send_batch(chunk.to_vec()).await.unwrap();
    }
    let deps = Deps {
        queue: Arc::new(queue),
        store: Arc::new(stack.archive.clone()),
        busy: None,
    };
    // Watch progress on a connection of its own, rarely: a stats scan must not compete with the
    // archiver for its connection.
    let watch = stack
        .queue("archive", Duration::from_secs(180), 5)
        .await
        .unwrap();
    let token = CancellationToken::new();
    let t = token.clone();
    let start = Instant::now();
    let run = tokio::spawn(async move { Archiver::new(&cfg, deps).run(t).await });
    loop {
        let s = watch.stats().await.unwrap();
        if s.visible == 0 && s.in_flight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let wall = start.elapsed().as_secs_f64();
    token.cancel();
    let archived = run.await.unwrap();
    assert_eq!(archived as usize, n);
    let objects = shared::port::BlobStore::list(&stack.archive, "raw/")
        .await
        .unwrap();
    let stored: u64 = objects.iter().map(|o| o.size).sum();
    println!(
        "archiver: {n} events ({:.1} MB of bodies) in {wall:.2} s = {:.0} events/s (target >= 20000)",
        bytes as f64 / 1e6,
        n as f64 / wall
    );
    println!(
        "          {} objects, {:.1} MB gzip ({:.1}x smaller)",
        objects.len(),
        stored as f64 / 1e6,
        bytes as f64 / stored as f64
    );
}
