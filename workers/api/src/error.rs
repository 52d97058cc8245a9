//! API errors: a status and `{"error":{"code","message"}}` ([`shared::api::ErrorBody`]), the
//! code one of the closed set [`shared::api::ErrorCode`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::api::{ErrorBody, ErrorCode, ErrorDetail};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human message.
    pub message: String,
    /// `Retry-After` seconds (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }
    /// Any status and code.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// A request body that could not be read or parsed: 408 `request_timeout` when it stalled
    /// past the body timeout (somewhere in `err`'s chain), else `status` (413 past the route's
    /// limit, 400 otherwise) with `invalid_request`.
    pub fn body(
        status: StatusCode,
        message: impl Into<String>,
        err: &(dyn std::error::Error + 'static),
    ) -> Self {
        let mut cause = Some(err);
        while let Some(e) = cause {
            if e.is::<tower_http::timeout::TimeoutError>() {
                return Self::new(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorCode::RequestTimeout,
                    "the request body stalled",
                );
            }
            cause = e.source();
        }
        let status = if status == StatusCode::PAYLOAD_TOO_LARGE {
            status
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(status, ErrorCode::InvalidRequest, message)
    }
    /// 404 `not_found`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such batch")
    }
    /// 503 for a transient backend failure.
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "Backend unavailable.");
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "a backend is unavailable; retry",
            )
        }
    }
    /// 500 for anything else.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "Internal error.");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}
