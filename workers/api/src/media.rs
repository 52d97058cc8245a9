//! `GET`/`HEAD /media/{key}`: the local media bucket served publicly and read-only, the way a
//! CDN in front of the bucket serves it (`[http] public_media`, local backend only).
//!
//! - Only keys under `media/` (variants, kept originals, manifests, failure records); anything
//!   else, and any key that names no object (a "directory" included), is 404: nothing is
//!   listed.
//! - A key is at most [`MAX_KEY_BYTES`] bytes (400 past it), checked before the store is
//!   touched; the store refuses dot and empty segments (400).
//! - Each answer carries the object's `Cache-Control` (variants and originals are immutable,
//!   records `no-cache`), `Content-Type`, `ETag`, `X-Content-Type-Options: nosniff` and a
//!   `Content-Security-Policy` that runs nothing ([`MEDIA_CSP`]: a kept SVG original opened
//!   directly can carry scripts); a matching `If-None-Match` gets 304 without the body.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::api::ErrorCode;
use shared::port::BlobStoreError;

use crate::AppState;
use crate::error::ApiError;

/// Longest key served (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;
/// The `Content-Security-Policy` of every media answer: no script, no fetch, a sandboxed
/// document (an image is unaffected; an SVG original opened on its own renders inertly).
pub const MEDIA_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; sandbox";
/// Longest `If-None-Match` value considered; a longer one is ignored (the object is sent).
const MAX_IF_NONE_MATCH_BYTES: usize = 4096;
/// Most entity tags of one `If-None-Match` compared.
const MAX_IF_NONE_MATCH_TAGS: usize = 64;

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such object")
}

/// `ETag` as HTTP sends it: a quoted string (the local store keeps it bare, S3 quoted).
fn quoted(e_tag: &str) -> String {
    if e_tag.starts_with('"') || e_tag.starts_with("W/\"") {
        e_tag.to_owned()
    } else {
        format!("\"{e_tag}\"")
    }
}

/// Whether `If-None-Match` matches `e_tag` (weak comparison, RFC 9110 §13.1.2).
fn none_match(headers: &HeaderMap, e_tag: &str) -> bool {
    let Some(value) = headers.get(header::IF_NONE_MATCH) else {
        return false;
    };
    if value.len() > MAX_IF_NONE_MATCH_BYTES {
        return false;
    }
    let Ok(value) = value.to_str() else {
        return false;
    };
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(e_tag);
    value
        .split(',')
        .take(MAX_IF_NONE_MATCH_TAGS)
        .any(|t| t.trim() == "*" || opaque(t) == ours)
}

/// `GET`/`HEAD /media/{*key}`.
///
/// # Errors
/// 404 `not_found` outside `media/` or for no object, 400 `invalid_request` for a key too
/// long or not storable, 503 `unavailable` when the store fails transiently.
pub async fn serve(
    State(s): State<AppState>,
    method: Method,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::invalid(format!(
            "a media key is at most {MAX_KEY_BYTES} bytes"
        )));
    }
    let under_media = key
        .strip_prefix(shared::keys::MEDIA_PREFIX)
        .is_some_and(|rest| !rest.is_empty() && !rest.ends_with('/'));
    let store = s.local.as_ref().map(|l| &l.media).filter(|_| under_media);
    let Some(store) = store else {
        return Err(not_found());
    };
    let (meta, body) = store.read(&key).await.map_err(|e| match e {
        BlobStoreError::NotFound(_) => not_found(),
        BlobStoreError::InvalidKey { reason, .. } => {
            ApiError::invalid(format!("not a media key: {reason}"))
        }
        e if e.is_transient() => ApiError::unavailable(e),
        e => ApiError::internal(e),
    })?;
    let e_tag = meta.e_tag.as_deref().map(quoted);
    let mut out = HeaderMap::new();
    let set = |out: &mut HeaderMap, name, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            out.insert(name, v);
        }
    };
    if let Some(cc) = &meta.cache_control {
        set(&mut out, header::CACHE_CONTROL, cc);
    }
    if let Some(t) = &e_tag {
        set(&mut out, header::ETAG, t);
    }
    set(&mut out, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut out, header::CONTENT_SECURITY_POLICY, MEDIA_CSP);
    if e_tag.as_deref().is_some_and(|t| none_match(&headers, t)) {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    set(
        &mut out,
        header::CONTENT_TYPE,
        meta.content_type
            .as_deref()
            .unwrap_or("application/octet-stream"),
    );
    set(&mut out, header::CONTENT_LENGTH, &body.len().to_string());
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    };
    Ok((StatusCode::OK, out, body).into_response())
}

/// Any other method on `/media/{*key}`: 405 with `Allow`.
pub async fn read_only() -> Response {
    let mut r = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidRequest,
        "the media endpoint is read-only: GET or HEAD",
    )
    .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn if_none_match_compares_weakly_and_stays_bounded() {
        let tag = quoted("abc");
        assert_eq!(tag, "\"abc\"");
        assert_eq!(quoted("\"abc\""), "\"abc\"");
        assert!(none_match(&with("\"abc\""), &tag));
        assert!(none_match(&with("W/\"abc\""), &tag));
        assert!(none_match(&with("\"x\", \"abc\""), &tag));
        assert!(none_match(&with("*"), &tag));
        assert!(!none_match(&with("\"abd\""), &tag));
        assert!(!none_match(&HeaderMap::new(), &tag));
        let long = format!("{}\"abc\"", "\"x\",".repeat(2000));
        assert!(!none_match(&with(&long), &tag));
        let many = format!("{}\"abc\"", "\"x\",".repeat(MAX_IF_NONE_MATCH_TAGS));
        assert!(!none_match(&with(&many), &tag));
    }
}
