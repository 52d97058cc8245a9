//! SqliteQueue throughput: send (single and batched), and receive+ack in batches of 10 with 1
//! and 4 consumers (each with its own connection, as separate workers would have).
//!
//! `cargo run --release -p shared --example queue_bench -- [MESSAGES]`

#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::adapter::local::SqliteQueue;
use shared::port::{Queue, QueueSettings};

const BODY: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"local","eventTime":"2026-11-23T20:00:00Z","eventName":"ObjectCreated:Post","s3":{"s3SchemaVersion":"1.0","bucket":{"name":"uploads"},"object":{"key":"uploads/0193a5b2-7c1e-7d00-8000-000000000001/0193a5b2-7c1e-7d00-8000-0000000000f1","size":829183,"eTag":"d41d8cd98f00b204e9800998ecf8427e"}}}]}"#;

async fn open(db: &std::path::Path, name: &str) -> SqliteQueue {
    SqliteQueue::open(db, QueueSettings::new(name))
        .await
        .expect("open queue")
}

async fn fill(q: &SqliteQueue, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        q.send_batch(chunk.iter().map(|_| BODY.to_owned()).collect())
            .await
            .expect("send");
    }
}

async fn drain(db: &std::path::Path, name: &str, consumers: usize, n: usize) -> f64 {
    let mut qs = Vec::new();
    for _ in 0..consumers {
        qs.push(Arc::new(open(db, name).await));
    }
    let start = Instant::now();
    let tasks: Vec<_> = qs
        .into_iter()
        .map(|q| {
            tokio::spawn(async move {
                let mut handled = 0usize;
                loop {
                    let batch = q.receive(10, Duration::ZERO).await.expect("receive");
                    if batch.is_empty() {
                        return handled;
                    }
                    let receipts: Vec<String> = batch.iter().map(|m| m.receipt.clone()).collect();
                    let failed = q.ack_batch(&receipts).await.expect("ack");
                    assert!(failed.is_empty());
                    handled += batch.len();
                }
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("consumer");
    }
    assert_eq!(total, n, "every message handled once");
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("queues.sqlite");

    let q = open(&db, "single").await;
    let singles = n.min(5_000);
    let start = Instant::now();
    for _ in 0..singles {
        q.send(BODY).await.expect("send");
    }
    let send_single = singles as f64 / start.elapsed().as_secs_f64();

    let q = open(&db, "batched").await;
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        q.send_batch(chunk.iter().map(|_| BODY.to_owned()).collect())
            .await
            .expect("send");
    }
    let send_batched = n as f64 / start.elapsed().as_secs_f64();

    let one = drain(&db, "batched", 1, n).await;
    let q4 = open(&db, "four").await;
    fill(&q4, n).await;
    let four = drain(&db, "four", 4, n).await;

    println!(
        "SqliteQueue throughput ({n} messages of {} bytes, WAL, synchronous=NORMAL)",
        BODY.len()
    );
    println!("  send, one per transaction        {send_single:>10.0} msg/s");
    println!("  send, batches of 10              {send_batched:>10.0} msg/s");
    println!("  receive+ack, 1 consumer, x10     {one:>10.0} msg/s");
    println!("  receive+ack, 4 consumers, x10    {four:>10.0} msg/s");
    println!(
        "  target                           {:>10} msg/s receive+ack",
        10_000
    );
}
