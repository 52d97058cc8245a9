//! ECS task scale-in protection against a fake ECS agent on loopback: protected while messages
//! are in flight (through the consumer), unprotected once idle, retried when the agent fails.

#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::put;
use serde_json::Value;
use shared::adapter::aws::task_protection::TaskProtection;
use shared::consumer::{Consumer, ConsumerConfig, Handler, Outcome};
use shared::error::HandlerError;
use shared::port::{Message, Queue, QueueSettings};
use shared::testing::eventually;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
struct Agent {
    calls: Arc<Mutex<Vec<Value>>>,
    fail_first: Arc<AtomicUsize>,
}

async fn agent(State(a): State<Agent>, Json(body): Json<Value>) -> StatusCode {
    if a.fail_first.load(Ordering::SeqCst) > 0 {
        a.fail_first.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    a.calls.lock().unwrap().push(body);
    StatusCode::OK
}

async fn start_agent(fail_first: usize) -> (String, Agent) {
    let a = Agent::default();
    a.fail_first.store(fail_first, Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/task-protection/v1/state", put(agent))
        .with_state(a.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (uri, a)
}

fn enabled(v: &Value) -> bool {
    v["ProtectionEnabled"].as_bool().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protection_follows_the_in_flight_count() {
    let (uri, agent) = start_agent(0).await;
    let stop = CancellationToken::new();
    let p = TaskProtection::spawn(uri, stop.clone());
    let busy = p.signal();
    busy.set(2);
    busy.set(3);
    eventually(Duration::from_secs(5), "protection enabled", || async {
        (agent.calls.lock().unwrap().len() == 1).then_some(())
    })
    .await;
    let first = agent.calls.lock().unwrap()[0].clone();
    assert!(enabled(&first));
    assert_eq!(first["ExpiresInMinutes"], 60);
    busy.set(0);
    eventually(Duration::from_secs(5), "protection dropped", || async {
        let c = agent.calls.lock().unwrap();
        (c.len() == 2 && !enabled(&c[1])).then_some(())
    })
    .await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_agent_is_retried() {
    let (uri, agent) = start_agent(1).await;
    let stop = CancellationToken::new();
    let busy = TaskProtection::spawn(uri, stop.clone()).signal();
    busy.set(1);
    eventually(
        Duration::from_secs(15),
        "protection after a retry",
        || async {
            let c = agent.calls.lock().unwrap();
            (c.len() == 1 && enabled(&c[0])).then_some(())
        },
    )
    .await;
    stop.cancel();
}

struct Slow;

#[async_trait]
impl Handler for Slow {
    async fn handle(&self, _m: &Message) -> Result<Outcome, HandlerError> {
        tokio::time::sleep(Duration::from_millis(600)).await;
        Ok(Outcome::Success)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_holds_protection_while_handling() {
    let (uri, agent) = start_agent(0).await;
    let dir = tempfile::tempdir().unwrap();
    let q: Arc<dyn Queue> = Arc::new(
        shared::adapter::local::SqliteQueue::open(
            &dir.path().join("q.sqlite"),
            QueueSettings::new("work"),
        )
        .await
        .unwrap(),
    );
    q.send("job").await.unwrap();
    let stop = CancellationToken::new();
    let busy = TaskProtection::spawn(uri, stop.clone()).signal();
    let consumer = Consumer::new("test", q.clone(), Arc::new(Slow), ConsumerConfig::default())
        .with_busy_signal(Some(busy));
    let run = tokio::spawn(consumer.run(stop.clone(), Duration::from_secs(5)));
    eventually(Duration::from_secs(10), "on, then off", || async {
        let c = agent.calls.lock().unwrap();
        (c.len() == 2).then(|| (enabled(&c[0]), enabled(&c[1])))
    })
    .await;
    let c = agent.calls.lock().unwrap().clone();
    assert!(enabled(&c[0]) && !enabled(&c[1]), "{c:?}");
    stop.cancel();
    run.await.unwrap();
}
