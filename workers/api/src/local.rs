//! The local upload and download endpoints (backend `local` only). On AWS producers upload to
//! S3 directly and prism-api never sees the bytes; locally prism-api plays S3, with a POST
//! policy as strict as S3's (see `shared::adapter::local::signing`).

use std::collections::{BTreeMap, HashMap};

use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use shared::adapter::local::FsBlobStore;
use shared::port::BlobStoreError;

use crate::AppState;
use crate::error::ApiError;

fn bucket(s: &AppState, name: &str) -> Result<FsBlobStore, ApiError> {
    let stack = s
        .local
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint"))?;
    [&stack.uploads, &stack.media, &stack.archive]
        .into_iter()
        .find(|b| shared::port::BlobStore::bucket(*b) == name)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such bucket"))
}

fn store_err(e: BlobStoreError) -> ApiError {
    match e {
        BlobStoreError::InvalidKey { .. } => ApiError::invalid(e.to_string()),
        BlobStoreError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such object")
        }
        e if e.is_transient() => ApiError::unavailable(e),
        e => ApiError::internal(e),
    }
}

/// `POST /local/upload/{bucket}`: an S3-style form upload. Fields come first, then `file`
/// (fields after the file are ignored, as S3 does). Answers 204 like S3.
pub async fn upload(
    State(s): State<AppState>,
    Path(name): Path<String>,
    mut form: Multipart,
) -> Result<StatusCode, ApiError> {
    let store = bucket(&s, &name)?;
    let limit = s.cfg.limits.max_upload_bytes;
    let mut fields = BTreeMap::new();
    let mut file: Option<Bytes> = None;
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::invalid(format!("malformed form: {e}")))?
    {
        let fname = field.name().unwrap_or_default().to_owned();
        if fname == "file" {
            let mut buf = BytesMut::new();
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| ApiError::invalid(format!("malformed form: {e}")))?
            {
                if (buf.len() + chunk.len()) as u64 > limit {
                    return Err(ApiError::invalid(format!(
                        "the file exceeds the {limit}-byte upload limit"
                    )));
                }
                buf.extend_from_slice(&chunk);
            }
            file = Some(buf.freeze());
            break;
        }
        if fields.len() >= 64 {
            return Err(ApiError::invalid("too many form fields"));
        }
        let value = field
            .text()
            .await
            .map_err(|e| ApiError::invalid(format!("malformed form: {e}")))?;
        if fields.insert(fname.clone(), value).is_some() {
            return Err(ApiError::invalid(format!("field {fname:?} appears twice")));
        }
    }
    let body = file.ok_or_else(|| ApiError::invalid("the form has no file field"))?;
    match store
        .accept_post_upload(&fields, body)
        .await
        .map_err(store_err)?
    {
        Ok(key) => {
            tracing::debug!(key = %key, "Upload stored.");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(grant) => {
            let status = StatusCode::from_u16(grant.http_status()).unwrap_or(StatusCode::FORBIDDEN);
            let code = if status == StatusCode::FORBIDDEN {
                "access_denied"
            } else {
                "invalid_request"
            };
            Err(ApiError::new(status, code, grant.to_string()))
        }
    }
}

/// `GET /local/object/{bucket}/{*key}?expires=…&signature=…`: a presigned download.
pub async fn download(
    State(s): State<AppState>,
    Path((name, key)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let store = bucket(&s, &name)?;
    let expires: i64 = q
        .get("expires")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "access_denied", "missing expires"))?;
    let sig = q.get("signature").ok_or_else(|| {
        ApiError::new(StatusCode::FORBIDDEN, "access_denied", "missing signature")
    })?;
    match store
        .serve_presigned_get(&key, expires, sig)
        .await
        .map_err(store_err)?
    {
        Ok((meta, body)) => Ok((
            [
                (
                    header::CONTENT_TYPE,
                    meta.content_type
                        .unwrap_or_else(|| "application/octet-stream".into()),
                ),
                (header::CACHE_CONTROL, "private, max-age=3600".into()),
            ],
            Body::from(body),
        )
            .into_response()),
        Err(e) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            e.to_string(),
        )),
    }
}
