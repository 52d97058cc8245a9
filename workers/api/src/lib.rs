//! prism-api: presigned batches, batch queries, client events, and — on the local backend —
//! the upload and download endpoints that stand in for S3.
//!
//! Uploads never pass through prism-api on AWS: `POST /v1/batches` answers with presigned S3
//! instructions. Locally the same answer points at `/local/upload/{bucket}`, which verifies a
//! POST policy as strictly as S3 (signature, expiry, exact key, content type, metadata,
//! content-length range) and stores the object through the blob store, whose notification
//! starts the pipeline.

pub mod auth;
pub mod config;
pub mod error;
pub mod local;
pub mod openapi;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use shared::adapter::local::LocalStack;
use shared::config::Backend;
use shared::port::{BlobStore, MetadataStore, Topic};
use shared::telemetry::{Health, ops_router};
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::auth::{RateLimiter, Tokens};
use crate::error::ApiError;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    cfg: Arc<Config>,
    tokens: Arc<Tokens>,
    limiter: Arc<RateLimiter>,
    uploads: Arc<dyn BlobStore>,
    media: Arc<dyn BlobStore>,
    metadata: Arc<dyn MetadataStore>,
    topic: Arc<dyn Topic>,
    local: Option<LocalStack>,
    shutdown: CancellationToken,
}

impl AppState {
    fn authorize(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let p = self.tokens.principal(headers)?;
        self.limiter.check(&p)?;
        Ok(p)
    }

    fn local_mode(&self) -> bool {
        self.cfg.common.backend == Backend::Local
    }
}

/// The adapters the API uses.
pub struct Deps {
    /// Uploads bucket (presigns uploads).
    pub uploads: Arc<dyn BlobStore>,
    /// Media bucket (presigns variant downloads).
    pub media: Arc<dyn BlobStore>,
    /// Batches.
    pub metadata: Arc<dyn MetadataStore>,
    /// Client events go here.
    pub topic: Arc<dyn Topic>,
    /// The local backend, which enables `/local/*`.
    pub local: Option<LocalStack>,
}

impl Deps {
    /// The local backend's adapters.
    pub fn local(stack: &LocalStack) -> Self {
        Self {
            uploads: Arc::new(stack.uploads.clone()),
            media: Arc::new(stack.media.clone()),
            metadata: stack.metadata.clone(),
            topic: stack.topic.clone(),
            local: Some(stack.clone()),
        }
    }

    /// The AWS backend's adapters.
    pub fn aws(stack: &shared::adapter::aws::AwsStack) -> Self {
        Self {
            uploads: Arc::new(stack.uploads.clone()),
            media: Arc::new(stack.media.clone()),
            metadata: stack.metadata.clone(),
            topic: stack.topic.clone(),
            local: None,
        }
    }
}

/// File in the data dir holding the local dev token.
pub const DEV_TOKEN_FILE: &str = "dev-token";

/// The local dev token: read `DATA_DIR/dev-token`, or create it (mode 0600). Its digest is
/// what the API accepts, under principal `dev`.
///
/// # Errors
/// I/O failures.
pub fn dev_token(data_dir: &std::path::Path) -> std::io::Result<String> {
    let path = data_dir.join(DEV_TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&path)
        && t.trim().len() >= 32
    {
        return Ok(t.trim().to_owned());
    }
    let key = shared::adapter::local::signing::load_or_create_key(data_dir, ".dev-token-seed")?;
    let token = format!("prism_dev_{}", hex::encode(&key[..24]));
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(&path, format!("{token}\n"))?;
    #[cfg(unix)]
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(token)
}

/// Count and time every request by its route template.
async fn http_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    shared::telemetry::metrics::http_request(
        route,
        method,
        resp.status().as_u16(),
        start.elapsed(),
    );
    resp
}

async fn openapi(State(_): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(openapi::document())
}

/// The router.
pub fn router(
    state: AppState,
    metrics: shared::telemetry::metrics::Handle,
    health: Health,
) -> Router {
    let body_limit = usize::try_from(state.cfg.limits.max_upload_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(1 << 20);
    let api = Router::new()
        .route("/v1/batches", post(routes::create_batch))
        .route("/v1/batches/{batch_id}", get(routes::get_batch))
        .route("/v1/events", post(routes::post_event))
        .route("/v1/openapi.json", get(openapi))
        .route("/local/upload/{bucket}", post(local::upload))
        .route("/local/object/{bucket}/{*key}", get(local::download))
        .layer(DefaultBodyLimit::max(body_limit))
        .route_layer(middleware::from_fn(http_metrics))
        .with_state(state);
    api.merge(ops_router(metrics, health))
}

/// Bind, serve until `shutdown`, and return when the server has stopped. Calls `on_bound` with
/// the bound address (port 0 picks one) before serving.
///
/// # Errors
/// When the listener cannot be bound or the server fails.
pub async fn run(
    cfg: Config,
    deps: Deps,
    rt_metrics: shared::telemetry::metrics::Handle,
    health: Health,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    run_with(
        cfg,
        deps,
        rt_metrics,
        health,
        shutdown,
        Router::new(),
        on_bound,
    )
    .await
}

/// [`run`], serving `extra` beside the API's own routes on the same address (`prism dev`
/// mounts its operators' dashboard this way). `extra` must not claim the API's paths.
///
/// # Errors
/// When the listener cannot be bound or the server fails.
pub async fn run_with(
    cfg: Config,
    deps: Deps,
    rt_metrics: shared::telemetry::metrics::Handle,
    health: Health,
    shutdown: CancellationToken,
    extra: Router,
    on_bound: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.http.listen_addr)
        .await
        .map_err(|e| {
            shared::cli::bind_error(
                e,
                "the API",
                cfg.http.listen_addr,
                "--listen ADDR, [http] listen_addr or PRISM__HTTP__LISTEN_ADDR",
            )
        })?;
    let addr = listener.local_addr()?;
    on_bound(addr);
    let mut tokens = cfg.auth.token_sha256s.clone();
    if tokens.is_empty() && cfg.common.backend == Backend::Local {
        let token = dev_token(&cfg.common.data_dir)?;
        tokens.push(format!("dev:{}", auth::token_digest(&token)));
        tracing::info!(path = %cfg.common.data_dir.join(DEV_TOKEN_FILE).display(), "No tokens configured; accepting the local dev token.");
    }
    if tokens.is_empty() {
        tracing::warn!("No tokens configured: every /v1 request will be refused with 401.");
    }
    let state = AppState {
        tokens: Arc::new(Tokens::new(&tokens)),
        limiter: Arc::new(RateLimiter::new(cfg.auth.requests_per_minute)),
        cfg: Arc::new(cfg),
        uploads: deps.uploads,
        media: deps.media,
        metadata: deps.metadata,
        topic: deps.topic,
        local: deps.local,
        shutdown: shutdown.clone(),
    };
    tracing::info!(%addr, "API listening.");
    axum::serve(listener, router(state, rt_metrics, health).merge(extra))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}
