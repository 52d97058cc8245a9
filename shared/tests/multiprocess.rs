//! The embedded backends shared by several processes on one data dir: two consumer processes
//! on one SQLite queue never handle a message twice while its visibility lasts, and nothing is
//! lost. The test binary re-executes itself as the child consumers.

#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shared::adapter::local::SqliteQueue;
use shared::consumer::{Consumer, ConsumerConfig, Handler, Outcome};
use shared::error::HandlerError;
use shared::port::{Message, Queue, QueueSettings};
use tokio_util::sync::CancellationToken;

const CHILD_DB: &str = "PRISM_TEST_CHILD_DB";
const CHILD_LOG: &str = "PRISM_TEST_CHILD_LOG";

struct Logging(PathBuf);

#[async_trait]
impl Handler for Logging {
    async fn handle(&self, m: &Message) -> Result<Outcome, HandlerError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let line = format!("{} {}\n", std::process::id(), m.body);
        // O_APPEND writes of one short line are atomic across processes.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.0)
            .expect("log");
        f.write_all(line.as_bytes()).expect("append");
        Ok(Outcome::Success)
    }
}

/// The child: consume until the queue has been empty for a second. A no-op when run as a test.
#[test]
fn child_consumer() {
    let (Ok(db), Ok(log)) = (std::env::var(CHILD_DB), std::env::var(CHILD_LOG)) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let q = Arc::new(
            SqliteQueue::open(&PathBuf::from(db), QueueSettings::new("shared"))
                .await
                .unwrap(),
        );
        let cfg = ConsumerConfig {
            concurrency: 4,
            wait_time_secs: 1,
            visibility_timeout_secs: 30,
            ..ConsumerConfig::default()
        };
        let token = CancellationToken::new();
        let consumer = Consumer::new("child", q.clone(), Arc::new(Logging(log.into())), cfg);
        let run = tokio::spawn(consumer.run(token.clone(), Duration::from_secs(10)));
        let mut idle = 0;
        while idle < 10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let s = q.stats().await.unwrap();
            idle = if s.visible == 0 && s.in_flight == 0 {
                idle + 1
            } else {
                0
            };
        }
        token.cancel();
        run.await.unwrap();
    });
}

#[tokio::test]
async fn two_processes_share_one_queue_without_double_handling() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queues.sqlite");
    let log = dir.path().join("handled.log");
    let q = SqliteQueue::open(&db, QueueSettings::new("shared"))
        .await
        .unwrap();
    let n = 400;
    q.send_batch((0..n).map(|i| format!("m{i}")).collect())
        .await
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_consumer",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DB, &db)
                .env(CHILD_LOG, &log)
                .spawn()
                .expect("spawn child")
        })
        .collect();
    for mut c in children {
        let status = tokio::task::spawn_blocking(move || c.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "child failed: {status}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let mut bodies: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    let pids: std::collections::HashSet<&str> =
        text.lines().map(|l| l.split_once(' ').unwrap().0).collect();
    bodies.sort_unstable();
    let total = bodies.len();
    bodies.dedup();
    assert_eq!(total, n, "{} handled twice", total - bodies.len());
    assert_eq!(bodies.len(), n, "messages lost");
    assert_eq!(pids.len(), 2, "both processes should have taken work");
    let s = q.stats().await.unwrap();
    assert_eq!((s.visible, s.in_flight, s.dlq_visible), (0, 0, 0));
}
