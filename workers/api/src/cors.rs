//! CORS for browser pages on other origins (`[http] cors_allowed_origins`; none: no CORS).
//!
//! One policy per kind of endpoint, chosen by path, outside every other layer: a preflight
//! (`OPTIONS` with `Access-Control-Request-Method`) is answered here, before authentication, so
//! it never gets 401 or 405; and every answer to a listed origin carries the grant, errors
//! included (a 401, a 403, a 503 from the concurrency limit), so the page can read them.
//!
//! | path | methods | request headers | exposed response headers |
//! |---|---|---|---|
//! | `/v1/…` | GET, POST | `authorization`, `content-type`, `idempotency-key`, `traceparent` | `location`, `retry-after`, `etag` |
//! | `/local/upload/…` | POST, PUT | `content-type` and the `x-amz-meta-*` headers prism's PUT instructions name | `etag`, `location` |
//! | `/local/object/…`, `/media/…` | GET | none | none |
//!
//! An origin not in the list gets no `Access-Control-Allow-Origin`, so the browser refuses the
//! answer to its page. Other paths (the dashboard, `/metrics`) answer no CORS.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use shared::variant::{
    META_BATCH_ID, META_FILE_ID, META_FILE_NAME, META_FOCAL_POINT, META_REQUEST, META_TRACEPARENT,
};
use tower::{Layer as _, ServiceExt as _};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE_SECS: u64 = 600;

/// The request headers a PUT upload's instructions name beside `content-type`: the metadata
/// prism grants.
pub fn upload_metadata_headers() -> Vec<String> {
    [
        META_REQUEST,
        META_BATCH_ID,
        META_FILE_ID,
        META_FILE_NAME,
        META_TRACEPARENT,
        META_FOCAL_POINT,
    ]
    .iter()
    .map(|m| format!("x-amz-meta-{m}"))
    .collect()
}

/// The three policies.
#[derive(Clone)]
pub struct CorsPolicies {
    api: CorsLayer,
    upload: CorsLayer,
    object: CorsLayer,
}

fn names(list: &[&'static str]) -> Vec<HeaderName> {
    list.iter().copied().map(HeaderName::from_static).collect()
}

impl CorsPolicies {
    /// Policies granting `origins` (already validated), or `None` when there are none.
    pub fn new(origins: &[String]) -> Option<Arc<Self>> {
        let origins: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        if origins.is_empty() {
            return None;
        }
        let base = || {
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins.clone()))
                .max_age(std::time::Duration::from_secs(PREFLIGHT_MAX_AGE_SECS))
        };
        let mut upload_headers = vec![HeaderName::from_static("content-type")];
        upload_headers.extend(
            upload_metadata_headers()
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        );
        Some(Arc::new(Self {
            api: base()
                .allow_methods([Method::GET, Method::POST])
                .allow_headers(names(&[
                    "authorization",
                    "content-type",
                    "idempotency-key",
                    "traceparent",
                ]))
                .expose_headers(names(&["location", "retry-after", "etag"])),
            upload: base()
                .allow_methods([Method::POST, Method::PUT])
                .allow_headers(upload_headers)
                .expose_headers(names(&["etag", "location"])),
            object: base().allow_methods([Method::GET]),
        }))
    }

    fn for_path(&self, path: &str) -> Option<&CorsLayer> {
        if path.starts_with("/v1/") {
            Some(&self.api)
        } else if path.starts_with("/local/upload/") {
            Some(&self.upload)
        } else if path.starts_with("/local/object/") || path.starts_with("/media/") {
            Some(&self.object)
        } else {
            None
        }
    }
}

/// The middleware: the path's policy around everything else.
pub async fn middleware(State(p): State<Arc<CorsPolicies>>, req: Request, next: Next) -> Response {
    let Some(layer) = p.for_path(req.uri().path()) else {
        return next.run(req).await;
    };
    let mut resp = match layer.layer(next).oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    // An unlisted origin gets nothing of the policy (tower-http still lists the methods,
    // headers and max age of a preflight it does not grant).
    if !resp.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
        let h = resp.headers_mut();
        for name in [
            ACCESS_CONTROL_ALLOW_METHODS,
            ACCESS_CONTROL_ALLOW_HEADERS,
            ACCESS_CONTROL_EXPOSE_HEADERS,
            ACCESS_CONTROL_MAX_AGE,
        ] {
            h.remove(name);
        }
    }
    resp
}
