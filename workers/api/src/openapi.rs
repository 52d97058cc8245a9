//! The OpenAPI 3.1 document served at `/v1/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` annotations and the wire types of [`shared::api`], so it describes what
//! the handlers answer.

use serde_json::Value;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// `/healthz` (served by the ops router beside the API).
#[utoipa::path(
    get,
    path = "/healthz",
    summary = "Health: 200 while serving, 503 while draining",
    responses(
        (status = 200, description = "Healthy", body = String, content_type = "text/plain"),
        (status = 503, description = "Draining", body = String, content_type = "text/plain"),
    ),
    security(()),
)]
#[allow(dead_code)]
fn healthz() {}

/// `/metrics` (served by the ops router beside the API).
#[utoipa::path(
    get,
    path = "/metrics",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")),
    security(()),
)]
#[allow(dead_code)]
fn metrics() {}

/// `/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)),
    security(()),
)]
#[allow(dead_code)]
fn openapi() {}

#[derive(OpenApi)]
#[openapi(
    paths(crate::routes::create_batch, crate::routes::get_batch, crate::routes::post_event, healthz, metrics, openapi),
    components(schemas(shared::api::ErrorBody, shared::api::ErrorCode, shared::api::OutputFormat)),
    security(("bearer" = [])),
)]
struct Doc;

const DESCRIPTION: &str = "Presigned image uploads rendered to WebP and AVIF variants. The bearer token is checked before a request body is read (401 without reading it). Limits (defaults, configurable): request head within 10 s (`[http] header_read_timeout_secs`, else the connection is closed), at most 30 s of silence inside a body (`body_timeout_secs`, else 408), an answer within 90 s (`request_timeout_secs`, else 408), 1024 requests in progress (`max_concurrent_requests`, else 503 with Retry-After); bodies: `POST /v1/batches` 1 MiB (`[limits] max_batch_body_bytes`), `POST /v1/events` 64 KiB (`max_event_bytes`), 413 past them. Every error answers `{\"error\": {\"code\", \"message\"}}` with a code of the closed set `ErrorCode`.";

/// The document, as a typed value.
pub fn openapi_doc() -> utoipa::openapi::OpenApi {
    let mut doc = Doc::openapi();
    doc.info.title = "prism".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(DESCRIPTION.into());
    doc.info.license = None;
    doc.info.contact = None;
    if let Some(c) = doc.components.as_mut() {
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
    doc
}

/// The document as JSON, with the compiled-in default limits.
pub fn document() -> Value {
    document_for(&crate::config::LimitsConfig::default())
}

/// The document as JSON, with this server's configured limits where the schema states them:
/// the files per batch (`maxItems`), a file's size (`maximum`) and the longest `wait`.
pub fn document_for(limits: &crate::config::LimitsConfig) -> Value {
    let mut doc = serde_json::to_value(openapi_doc()).unwrap_or(Value::Null);
    let schemas = &mut doc["components"]["schemas"];
    schemas["CreateBatchRequest"]["properties"]["files"]["maxItems"] = limits.max_files.into();
    schemas["FileSpec"]["properties"]["size"]["maximum"] = limits.max_upload_bytes.into();
    if let Some(params) = doc["paths"]["/v1/batches/{batch_id}"]["get"]["parameters"].as_array_mut()
    {
        for p in params.iter_mut().filter(|p| p["name"] == "wait") {
            p["schema"]["maximum"] = limits.max_wait_secs.into();
        }
    }
    doc
}
