//! Logs, metrics and the ops endpoints every binary serves.
//!
//! - [`tracing`]: subscriber setup (JSON on AWS, pretty locally, OTLP span export when configured).
//! - [`trace`]: the W3C trace context every file carries through the pipeline.
//! - [`metrics`]: every metric name, its description, typed helpers, the Prometheus exporter
//!   with real histogram buckets.
//! - [`emf`]: the same metrics as CloudWatch embedded metric format lines on stdout (AWS).
//! - [`serve_ops`] / [`ops_router`]: `/metrics` and `/healthz`; [`healthcheck`]: the
//!   `healthcheck` subcommand container health checks run.

pub mod emf;
pub mod metrics;
pub mod trace;
pub mod tracing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Health of a process: `/healthz` answers 200 while healthy, 503 otherwise (e.g. draining).
#[derive(Clone, Default)]
pub struct Health(Arc<AtomicBool>);

impl Health {
    /// A healthy state.
    pub fn new() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
    /// Set health.
    pub fn set(&self, healthy: bool) {
        self.0.store(healthy, Ordering::Relaxed);
    }
    /// Current health.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct OpsState {
    handle: PrometheusHandle,
    health: Health,
}

/// `/metrics` and `/healthz`, to merge into a binary's own router.
pub fn ops_router<S>(handle: PrometheusHandle, health: Health) -> Router<S> {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .with_state(OpsState { handle, health })
}

async fn render_metrics(State(s): State<OpsState>) -> String {
    s.handle.render()
}

async fn healthz(State(s): State<OpsState>) -> (StatusCode, &'static str) {
    if s.health.get() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    }
}

/// Serve the ops endpoints on `addr` until `shutdown`; returns the bound address.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve_ops(
    addr: SocketAddr,
    handle: PrometheusHandle,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app: Router = ops_router(handle, health);
    tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = r {
            ::tracing::error!(error = %e, "Ops server failed.");
        }
    });
    Ok(bound)
}

/// The `healthcheck` subcommand: GET `/healthz` on `addr` (an unspecified address means this
/// host) and report whether it answered 200 within 3 s.
pub async fn healthcheck(addr: SocketAddr) -> bool {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(target).await?;
        s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(
            buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200"),
        )
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), attempt).await,
        Ok(Ok(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ops_endpoints_serve_and_healthcheck_follows_health() {
        let handle = metrics::test_handle();
        let health = Health::new();
        let token = CancellationToken::new();
        let addr = serve_ops(
            "127.0.0.1:0".parse().unwrap(),
            handle,
            health.clone(),
            token.clone(),
        )
        .await
        .unwrap();
        assert!(healthcheck(addr).await);
        let unspecified = SocketAddr::from(([0, 0, 0, 0], addr.port()));
        assert!(healthcheck(unspecified).await);
        health.set(false);
        assert!(!healthcheck(addr).await);
        token.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!healthcheck(addr).await, "server stopped");
    }
}
