//! The local upload and download endpoints (backend `local` only). On AWS producers upload to
//! S3 directly and prism-api never sees the bytes; locally prism-api plays S3, with a POST
//! policy as strict as S3's and a presigned PUT as strict as S3's signed headers (see
//! `shared::adapter::local::signing`). Both answer with S3's headers: `ETag` (the quoted hex
//! MD5 of the body) and, for a POST, `Location`.

use shared::api::ErrorCode;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::body::Body;
use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::StreamExt as _;
use shared::adapter::local::FsBlobStore;
use shared::adapter::local::fs_blob_store::StoredUpload;
use shared::adapter::local::signing::{GrantError, PostGrant};
use shared::port::BlobStoreError;

use crate::AppState;
use crate::error::ApiError;

fn bucket(s: &AppState, name: &str) -> Result<FsBlobStore, ApiError> {
    let stack = s.local.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such endpoint",
        )
    })?;
    [&stack.uploads, &stack.media, &stack.archive]
        .into_iter()
        .find(|b| shared::port::BlobStore::bucket(*b) == name)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such bucket"))
}

fn store_err(e: BlobStoreError) -> ApiError {
    match e {
        BlobStoreError::InvalidKey { .. } => ApiError::invalid(e.to_string()),
        BlobStoreError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such object")
        }
        e if e.is_transient() => ApiError::unavailable(e),
        e => ApiError::internal(e),
    }
}

/// Bytes of one form field before the file.
const MAX_FIELD_BYTES: usize = 16 * 1024;
/// Bytes of all the form fields before the file.
const MAX_FIELDS_BYTES: usize = 32 * 1024;
/// Bytes of the body read before the file part's data (fields, part headers, boundaries, and
/// the chunk crossing it): all an unverified client can make the endpoint read. The form
/// parser reads ahead; past this it waits until the file part is reached.
const MAX_FORM_BYTES_BEFORE_FILE: u64 = 64 * 1024;
/// Bytes read past the grant's size before the upload is refused (the last chunk and the
/// closing boundary).
const FILE_SLACK_BYTES: u64 = 64 * 1024;

/// The body sent more bytes than the form's stage allows, and no more were wanted in time.
#[derive(Debug, thiserror::Error)]
#[error("the form sent more than {0} bytes before its file")]
struct FormOverrun(u64);

fn grant_err(grant: GrantError) -> ApiError {
    let status = StatusCode::from_u16(grant.http_status()).unwrap_or(StatusCode::FORBIDDEN);
    let code = if status == StatusCode::FORBIDDEN {
        ErrorCode::AccessDenied
    } else {
        ErrorCode::InvalidRequest
    };
    ApiError::new(status, code, grant.to_string())
}

fn form_err(e: &MultipartError) -> ApiError {
    ApiError::body(e.status(), format!("malformed form: {}", e.body_text()), e)
}

/// The refusal of a second upload under one grant.
fn already_uploaded() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::AlreadyUploaded,
        "this file was already uploaded; an upload grant stores one object",
    )
}

/// One grant stores one object: a second upload of a received file is refused before its bytes
/// are read. (S3 cannot refuse it; there the resize worker keeps the file pinned to the first
/// object it processed, which also settles a race of two.)
async fn refuse_second_upload(store: &FsBlobStore, key: &str) -> Result<(), ApiError> {
    match shared::port::BlobStore::head(store, key).await {
        Ok(_) => Err(already_uploaded()),
        Err(BlobStoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(store_err(e)),
    }
}

/// S3's answer headers for a stored upload: the quoted `ETag`, and with `location` the
/// object's address.
fn stored_headers(stored: &StoredUpload, location: Option<String>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", stored.e_tag)) {
        h.insert(header::ETAG, v);
    }
    if let Some(v) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert(header::LOCATION, v);
    }
    h
}

/// `POST /local/upload/{bucket}`: an S3-style form upload. Fields come first, then `file`
/// (fields after the file are ignored, as S3 does). Answers 204 like S3, with its `ETag` and
/// `Location` headers.
///
/// Nothing but the form's policy authenticates it, so the endpoint reads about
/// [`MAX_FORM_BYTES_BEFORE_FILE`] (and the chunk crossing it) before the fields verify
/// (signature, expiry, conditions), then streams the file against the grant's size and refuses
/// it as soon as it is larger: it never holds more than the grant allows.
pub async fn upload(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let store = bucket(&s, &name)?;
    let limit = s.cfg.limits.max_upload_bytes;
    // What the body may deliver so far: the form before the file, then also the file's grant.
    // Past it the body waits (the parser reads ahead of what it needs); when nothing raises it
    // within the body timeout, the form is refused.
    let (allowance, allowed) = tokio::sync::watch::channel(MAX_FORM_BYTES_BEFORE_FILE);
    let wait = Duration::from_secs(s.cfg.http.body_timeout_secs);
    let req = {
        let mut seen = 0u64;
        req.map(|body| {
            Body::from_stream(body.into_data_stream().then(move |chunk| {
                let before = seen;
                seen += chunk.as_ref().map_or(0, |c| c.len() as u64);
                let mut allowed = allowed.clone();
                async move {
                    let chunk = chunk?;
                    let raised = tokio::time::timeout(wait, allowed.wait_for(|a| before < *a))
                        .await
                        .is_ok_and(|r| r.is_ok());
                    if raised {
                        Ok(chunk)
                    } else {
                        Err(axum::BoxError::from(FormOverrun(*allowed.borrow())))
                    }
                }
            }))
        })
    };
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::invalid(format!("malformed form: {}", e.body_text())))?;
    let mut fields = BTreeMap::new();
    let mut fields_bytes = 0;
    loop {
        let Some(mut field) = form.next_field().await.map_err(|e| form_err(&e))? else {
            return Err(ApiError::invalid("the form has no file field"));
        };
        let fname = field.name().unwrap_or_default().to_owned();
        if fname == "file" {
            let grant = match store.verify_post_form(&fields).map_err(store_err)? {
                Ok(g) => g,
                Err(e) => return Err(grant_err(e)),
            };
            refuse_second_upload(&store, &grant.upload.key).await?;
            let max = grant.max_bytes();
            allowance.send_modify(|a| *a = a.saturating_add(max).saturating_add(FILE_SLACK_BYTES));
            let mut buf = BytesMut::new();
            loop {
                let chunk = match field.chunk().await {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    // Past the allowance: the file is larger than its grant.
                    Err(e) if has_overrun(&e) => return Err(too_big(&grant, max + 1)),
                    Err(e) => return Err(form_err(&e)),
                };
                let size = (buf.len() + chunk.len()) as u64;
                if size > limit {
                    return Err(ApiError::invalid(format!(
                        "the file exceeds the {limit}-byte upload limit"
                    )));
                }
                if size > max {
                    return Err(too_big(&grant, size));
                }
                buf.extend_from_slice(&chunk);
            }
            return match store
                .store_post_upload(grant, buf.freeze())
                .await
                .map_err(store_err)?
            {
                Ok(stored) => {
                    tracing::debug!(key = %stored.key, "Upload stored.");
                    let location = store.object_url(&stored.key);
                    Ok((StatusCode::NO_CONTENT, stored_headers(&stored, location)).into_response())
                }
                Err(e) => Err(grant_err(e)),
            };
        }
        if fields.len() >= 64 {
            return Err(ApiError::invalid("too many form fields"));
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| {
            if has_overrun(&e) {
                ApiError::invalid(format!(
                    "the form sends more than {MAX_FORM_BYTES_BEFORE_FILE} bytes before its file"
                ))
            } else {
                form_err(&e)
            }
        })? {
            if value.len() + chunk.len() > MAX_FIELD_BYTES {
                return Err(ApiError::invalid(format!(
                    "form field {fname:?} is over {MAX_FIELD_BYTES} bytes"
                )));
            }
            fields_bytes += chunk.len();
            if fields_bytes > MAX_FIELDS_BYTES {
                return Err(ApiError::invalid(format!(
                    "the form fields are over {MAX_FIELDS_BYTES} bytes"
                )));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(value)
            .map_err(|_| ApiError::invalid(format!("form field {fname:?} is not UTF-8")))?;
        if fields.insert(fname.clone(), value).is_some() {
            return Err(ApiError::invalid(format!("field {fname:?} appears twice")));
        }
    }
}

/// `PUT /local/upload/{bucket}/{*key}?content-type=…&content-length=…&x-amz-meta-…&expires=…&signature=…`:
/// a presigned PUT of the raw body. Before a byte of the body is read it checks the URL's
/// signature and expiry, the `Content-Type` header (exactly the grant's), every `x-amz-meta-*`
/// header (exactly the grant's metadata, nothing beyond it) and the declared `Content-Length`
/// (exactly the grant's size; a PUT without one gets 411, as on S3), and refuses a second
/// upload (409 `already_uploaded`). It then reads the body against the grant's size, refusing
/// it as soon as it is longer, and answers 200 with the `ETag`.
pub async fn upload_put(
    State(s): State<AppState>,
    Path((name, key)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let store = bucket(&s, &name)?;
    let query = req.uri().query().unwrap_or_default();
    let grant = match store.verify_put_url(&key, query).map_err(store_err)? {
        Ok(g) => g,
        Err(e) => return Err(grant_err(e)),
    };
    let headers = req.headers();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let mut metadata = BTreeMap::new();
    for (name, value) in headers {
        let Some(m) = name.as_str().strip_prefix("x-amz-meta-") else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| grant_err(GrantError::ConditionFailed(name.as_str().to_owned())))?;
        if metadata.insert(m.to_owned(), value.to_owned()).is_some() {
            return Err(grant_err(GrantError::ConditionFailed(
                name.as_str().to_owned(),
            )));
        }
    }
    grant
        .check_headers(content_type, &metadata)
        .map_err(grant_err)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::LENGTH_REQUIRED,
                ErrorCode::InvalidRequest,
                "a PUT upload must declare its Content-Length (the file's exact size)",
            )
        })?;
    grant.check_size(declared).map_err(grant_err)?;
    let size = grant.size();
    if size > s.cfg.limits.max_upload_bytes {
        return Err(ApiError::invalid(format!(
            "the file exceeds the {}-byte upload limit",
            s.cfg.limits.max_upload_bytes
        )));
    }
    refuse_second_upload(&store, &grant.upload.key).await?;
    let mut body = req.into_body().into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::body(StatusCode::BAD_REQUEST, "reading the body", &e))?;
        let read = (buf.len() + chunk.len()) as u64;
        if read > size {
            return Err(grant_err(GrantError::SizeOutOfRange {
                size: read,
                min: size,
                max: size,
            }));
        }
        buf.extend_from_slice(&chunk);
    }
    match store
        .store_put_upload(grant, buf.freeze())
        .await
        .map_err(store_err)?
    {
        Ok(stored) => {
            tracing::debug!(key = %stored.key, "PUT upload stored.");
            Ok((StatusCode::OK, stored_headers(&stored, None)).into_response())
        }
        Err(e) => Err(grant_err(e)),
    }
}

/// The grant's refusal of a file of (at least) `size` bytes, over its maximum.
fn too_big(grant: &PostGrant, size: u64) -> ApiError {
    grant_err(
        grant
            .check_size(size)
            .err()
            .unwrap_or(GrantError::SizeOutOfRange {
                size,
                min: 1,
                max: grant.max_bytes(),
            }),
    )
}

/// Whether the form read failed because the body overran its allowance.
fn has_overrun(e: &MultipartError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<FormOverrun>() {
            return true;
        }
        cause = c.source();
    }
    false
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
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::AccessDenied,
                "missing expires",
            )
        })?;
    let sig = q.get("signature").ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::AccessDenied,
            "missing signature",
        )
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
                // The object's own, as S3 answers a presigned GET.
                (
                    header::CACHE_CONTROL,
                    meta.cache_control
                        .unwrap_or_else(|| "private, max-age=3600".into()),
                ),
            ],
            Body::from(body),
        )
            .into_response()),
        Err(e) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::AccessDenied,
            e.to_string(),
        )),
    }
}
