//! prism-api: presigned batches, batch queries, client events, and — on the local backend —
//! the upload and download endpoints that stand in for S3.
//!
//! Uploads never pass through prism-api on AWS: `POST /v1/batches` answers with presigned S3
//! instructions. Locally the same answer points at `/local/upload/{bucket}`, which verifies a
//! POST policy as strictly as S3 (signature, expiry, exact key, content type, metadata,
//! content-length range) and stores the object through the blob store, whose notification
//! starts the pipeline; or, for a batch created with `"upload_method": "put"`, at
//! `/local/upload/{bucket}/{key}?…&signature=…`, a presigned PUT of the raw body with the
//! content type, metadata and exact length the grant names. With `[http] cors_allowed_origins`
//! pages on those origins may call the API and these endpoints (see [`cors`]).
//!
//! Variant URLs in the batch view are presigned GETs, or `{media_base_url}/{key}` when
//! `[http] media_base_url` names a CDN. With `[http] public_media` (local backend only),
//! [`media`] serves the media bucket publicly and read-only at `/media/{key}` and
//! `media_base_url` defaults to it.
//!
//! Request and response bodies are the wire types of [`shared::api`]; the OpenAPI 3.1 document
//! served at `/v1/openapi.json` is generated from them and the handlers' `#[utoipa::path]`
//! annotations ([`openapi`]), with this server's configured limits filled in.

pub mod auth;
pub mod config;
pub mod cors;
pub mod error;
pub mod local;
pub mod media;
pub mod openapi;
pub mod routes;
pub mod watch;

use shared::api::ErrorCode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http_body_util::BodyExt as _;
use shared::adapter::local::LocalStack;
use shared::config::Backend;
use shared::port::{BlobStore, MetadataStore, Topic};
use shared::telemetry::{Health, ops_router};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

pub use config::Config;

use crate::auth::{RateLimiter, Tokens};
use crate::error::ApiError;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    cfg: Arc<Config>,
    tokens: Arc<Tokens>,
    limiter: Arc<RateLimiter>,
    waiters: Arc<auth::Waiters>,
    watches: Arc<watch::Watches>,
    uploads: Arc<dyn BlobStore>,
    media: Arc<dyn BlobStore>,
    metadata: Arc<dyn MetadataStore>,
    topic: Arc<dyn Topic>,
    local: Option<LocalStack>,
    shutdown: CancellationToken,
}

/// The principal a request authenticated as, put in its extensions by the authentication
/// middleware before any extractor runs.
#[derive(Debug, Clone)]
pub struct Principal(pub String);

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

/// Count and time every request by its route template, and count the body bytes it reads.
async fn http_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let read = shared::telemetry::metrics::http_request_body_bytes(route.clone());
    let req = req.map(|b| {
        Body::new(b.map_frame(move |f| {
            if let Some(d) = f.data_ref() {
                read.increment(d.len() as u64);
            }
            f
        }))
    });
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

async fn openapi(State(s): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(openapi::document_for(&s.cfg.limits))
}

/// Authenticate a request from its headers alone, before any extractor reads its body: 401
/// (or 429) without touching the body, and then the connection is closed rather than drained.
async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    match s.authorize(req.headers()) {
        Ok(p) => {
            req.extensions_mut().insert(Principal(p));
            next.run(req).await
        }
        Err(e) => {
            let sends_body = req.headers().contains_key(header::TRANSFER_ENCODING)
                || req
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .is_some_and(|v| v.as_bytes() != b"0");
            let mut resp = e.into_response();
            if sends_body {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
    }
}

/// Form fields, part headers and boundaries the upload endpoint reads beside the file.
pub const UPLOAD_FORM_SLACK: u64 = 1 << 20;

/// A route's body limit: a declared `Content-Length` over `limit` is refused with 413 before
/// anything is read, and a body that grows past it fails as it is read (413).
fn body_limit(
    limit: usize,
) -> impl tower::Layer<
    axum::routing::Route,
    Service = impl tower::Service<
        Request,
        Response = Response,
        Error = std::convert::Infallible,
        Future = impl Send + 'static,
    > + Clone
              + Send
              + Sync
              + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    ServiceBuilder::new()
        .map_response(move |r: Response<tower_http::limit::ResponseBody<Body>>| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE
                && r.headers()
                    .get(header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"))
            {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::InvalidRequest,
                    format!("this endpoint accepts bodies of at most {limit} bytes"),
                )
                .into_response()
            } else {
                r.map(Body::new)
            }
        })
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
        .map_request(|r: Request<tower_http::body::Limited<Body>>| r.map(Body::new))
        .layer(DefaultBodyLimit::disable())
}

/// The router.
pub fn router(
    state: AppState,
    metrics: shared::telemetry::metrics::Handle,
    health: Health,
) -> Router {
    let (limits, http) = (&state.cfg.limits, &state.cfg.http);
    let upload_limit = usize::try_from(limits.max_upload_bytes.saturating_add(UPLOAD_FORM_SLACK))
        .unwrap_or(usize::MAX);
    let authenticated = Router::new()
        .route(
            "/v1/batches",
            post(routes::create_batch).layer(body_limit(limits.max_batch_body_bytes)),
        )
        .route("/v1/batches/{batch_id}", get(routes::get_batch))
        .route(
            "/v1/events",
            post(routes::post_event).layer(body_limit(limits.max_event_bytes)),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let open = Router::new()
        .route("/v1/openapi.json", get(openapi))
        // Authenticated by the form's policy and signature, checked before the file is read.
        .route(
            "/local/upload/{bucket}",
            post(local::upload).layer(body_limit(upload_limit)),
        )
        // Authenticated by the URL's grant, checked with the headers before the body is read.
        .route(
            "/local/upload/{bucket}/{*key}",
            put(local::upload_put).layer(body_limit(upload_limit)),
        )
        .route("/local/object/{bucket}/{*key}", get(local::download));
    let open = if http.public_media && state.local.is_some() {
        open.route(
            "/media/{*key}",
            get(media::serve).fallback(media::read_only),
        )
    } else {
        open
    };
    let cors = cors::CorsPolicies::new(&http.cors_allowed_origins);
    let request_timeout = Duration::from_secs(http.request_timeout_secs);
    let api = authenticated
        .merge(open)
        // Any other extractor that reads a body reads at most this much.
        .layer(DefaultBodyLimit::max(64 * 1024))
        .route_layer(middleware::from_fn(http_metrics))
        .layer(
            ServiceBuilder::new()
                .map_response(move |r: Response| {
                    if r.status() == StatusCode::REQUEST_TIMEOUT
                        && !r.headers().contains_key(header::CONTENT_TYPE)
                    {
                        ApiError::new(
                            StatusCode::REQUEST_TIMEOUT,
                            ErrorCode::RequestTimeout,
                            format!(
                                "the request was not answered within {} s",
                                request_timeout.as_secs()
                            ),
                        )
                        .into_response()
                    } else {
                        r
                    }
                })
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    request_timeout,
                ))
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    ApiError {
                        retry_after: Some(1),
                        ..ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            ErrorCode::Overloaded,
                            "too many requests in progress; retry",
                        )
                    }
                }))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    http.max_concurrent_requests,
                ))
                .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                    Duration::from_secs(http.body_timeout_secs),
                ))
                .map_request(|r: Request<tower_http::timeout::TimeoutBody<Body>>| r.map(Body::new)),
        )
        .with_state(state);
    // Outside every other layer: preflights before authentication, grants on every answer.
    let api = match cors {
        Some(c) => api.layer(middleware::from_fn_with_state(c, cors::middleware)),
        None => api,
    };
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

/// Start [`run`] on a task (with its own metrics handle and health) and return the address
/// once it listens: the in-process API of tests and benchmarks. It serves until `shutdown`.
///
/// # Errors
/// When the listener cannot be bound (the server's error is logged by the task).
pub async fn spawn(
    cfg: Config,
    deps: Deps,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let served = run(
            cfg,
            deps,
            shared::telemetry::metrics::install(),
            Health::new(),
            shutdown,
            |a| {
                let _ = tx.send(a);
            },
        )
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "The in-process API stopped.");
        }
    });
    rx.await
        .map_err(|_| anyhow::anyhow!("the API did not start (its listener could not be bound)"))
}

/// [`run`], serving `extra` beside the API's own routes on the same address (`prism dev`
/// mounts its operators' dashboard this way). `extra` must not claim the API's paths.
///
/// # Errors
/// When the listener cannot be bound or the server fails.
pub async fn run_with(
    mut cfg: Config,
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
    if cfg.http.public_media && cfg.http.media_base_url.is_none() {
        let base = cfg
            .http
            .public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        cfg.http.media_base_url = Some(format!("{}/media", base.trim_end_matches('/')));
    }
    let mut tokens = cfg.auth.token_sha256s.clone();
    if tokens.is_empty() && cfg.common.backend == Backend::Local {
        let token = dev_token(&cfg.common.data_dir)?;
        tokens.push(format!(
            "{}:{}",
            shared::config::DEV_PRINCIPAL,
            auth::token_digest(&token)
        ));
        tracing::info!(path = %cfg.common.data_dir.join(DEV_TOKEN_FILE).display(), "No tokens configured; accepting the local dev token.");
    }
    if tokens.is_empty() {
        tracing::warn!("No tokens configured: every /v1 request will be refused with 401.");
    }
    let state = AppState {
        tokens: Arc::new(Tokens::new(&tokens)),
        limiter: Arc::new(RateLimiter::new(cfg.auth.requests_per_minute)),
        waiters: Arc::default(),
        watches: Arc::new(watch::Watches::new(
            deps.metadata.clone(),
            Duration::from_millis(cfg.limits.wait_check_interval_ms),
        )),
        cfg: Arc::new(cfg),
        uploads: deps.uploads,
        media: deps.media,
        metadata: deps.metadata,
        topic: deps.topic,
        local: deps.local,
        shutdown: shutdown.clone(),
    };
    tracing::info!(%addr, "API listening.");
    let header_read_timeout = Duration::from_secs(state.cfg.http.header_read_timeout_secs);
    serve(
        listener,
        router(state, rt_metrics, health).merge(extra),
        header_read_timeout,
        shutdown,
    )
    .await;
    Ok(())
}

/// Serve HTTP/1.1 on `listener` until `shutdown`, then let the connections in progress finish.
/// A connection that has not sent a request's whole head `header_read_timeout` after starting
/// it is closed.
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "Accepting a connection failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn =
            graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "Connection ended with an error.");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
