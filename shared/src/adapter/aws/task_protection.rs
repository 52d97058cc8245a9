//! ECS task scale-in protection while a worker has messages in flight.
//!
//! Scaling on queue depth ignores in-flight work, so a scale-in (or a deployment) could stop a
//! task halfway through a 30-second encode. While the consumer holds at least one message the
//! task asks its ECS agent for protection (`PUT $ECS_AGENT_URI/task-protection/v1/state` with
//! `{"ProtectionEnabled":true,"ExpiresInMinutes":N}`), renews it before it lapses, and drops it
//! once idle. Fargate injects `ECS_AGENT_URI`; without it (local runs, tests) nothing is sent.
//!
//! The HTTP calls run on a background task fed by a watch channel, so the consumer never waits
//! on the agent; a failed call is logged and retried.

use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::busy::BusySignal;

/// How long one grant of protection lasts.
pub const EXPIRES_IN_MINUTES: u64 = 60;
/// Renew this long before a grant lapses.
const RENEW_BEFORE: Duration = Duration::from_secs(15 * 60);
/// Wait before retrying a failed agent call.
const RETRY: Duration = Duration::from_secs(5);

/// Keeps the task protected while busy.
#[derive(Debug)]
pub struct TaskProtection {
    signal: BusySignal,
}

impl TaskProtection {
    /// Protection through the agent at `agent_uri` (the value of `ECS_AGENT_URI`); the
    /// background task stops with `shutdown`, dropping protection on its way out.
    pub fn spawn(agent_uri: String, shutdown: CancellationToken) -> Self {
        let (signal, rx) = BusySignal::channel();
        tokio::spawn(run(agent_uri, rx, shutdown));
        Self { signal }
    }

    /// The handle the consumer reports in-flight counts to.
    pub fn signal(&self) -> BusySignal {
        self.signal.clone()
    }
}

async fn put_state(client: &reqwest::Client, uri: &str, enabled: bool) -> Result<(), String> {
    let body = if enabled {
        json!({"ProtectionEnabled": true, "ExpiresInMinutes": EXPIRES_IN_MINUTES})
    } else {
        json!({"ProtectionEnabled": false})
    };
    let url = format!("{}/task-protection/v1/state", uri.trim_end_matches('/'));
    let resp = client
        .put(&url)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("agent answered {}", resp.status()))
    }
}

async fn run(uri: String, mut rx: watch::Receiver<usize>, shutdown: CancellationToken) {
    let client = reqwest::Client::new();
    let grant = Duration::from_secs(EXPIRES_IN_MINUTES * 60);
    // `Some(when)` = protected, renew at `when`.
    let mut protected: Option<tokio::time::Instant> = None;
    loop {
        let busy = *rx.borrow_and_update() > 0;
        let now = tokio::time::Instant::now();
        let want_call = match (busy, protected) {
            (true, None) => true,
            (true, Some(renew_at)) => now >= renew_at,
            (false, Some(_)) => true,
            (false, None) => false,
        };
        let mut next_wake = protected;
        if want_call {
            match put_state(&client, &uri, busy).await {
                Ok(()) => {
                    protected = busy.then(|| now + grant - RENEW_BEFORE);
                    tracing::debug!(enabled = busy, "Task scale-in protection updated.");
                    next_wake = protected;
                }
                Err(e) => {
                    tracing::warn!(error = %e, enabled = busy, "Cannot update task scale-in protection; retrying.");
                    next_wake = Some(now + RETRY);
                }
            }
        }
        let sleep = async {
            match next_wake {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = rx.changed() => if changed.is_err() { break },
            () = sleep => {}
        }
    }
    if protected.is_some() {
        let _ = put_state(&client, &uri, false).await;
    }
}
