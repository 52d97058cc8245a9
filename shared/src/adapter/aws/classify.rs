//! Classify an SDK failure as throttled, unavailable, timed out or permanent.
//!
//! Adapters first match the modelled error variants that mean something specific to them
//! (`NoSuchKey`, `ReceiptHandleIsInvalid`, `ConditionalCheckFailedException`, …) and fall back
//! to [`classify`] for the rest. The decision uses the error *kind* (`SdkError` variant), the
//! HTTP status and the protocol error *code*; never the human-readable message.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What a failure means for a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The service asked us to slow down. Transient.
    Throttled,
    /// The service or the network failed (5xx, connection reset, unparseable response).
    /// Transient.
    Unavailable,
    /// The attempt or operation timed out. Transient.
    Timeout,
    /// The request is wrong and will stay wrong (modelled 4xx, construction failure).
    Permanent,
}

/// Error codes AWS services use for throttling (the SDK's own retry classifier's list).
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "KMS.ThrottlingException",
];

/// Error codes that mean a transient server-side failure whatever the status says.
pub const TRANSIENT_CODES: &[&str] = &[
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
];

/// Classify `err` by kind, HTTP status and error code.
pub fn classify<E: ProvideErrorMetadata>(err: &SdkError<E, Response>) -> Fault {
    match err {
        SdkError::ConstructionFailure(_) => Fault::Permanent,
        SdkError::TimeoutError(_) => Fault::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => Fault::Timeout,
        SdkError::DispatchFailure(d) if d.is_user() => Fault::Permanent,
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Fault::Unavailable,
        SdkError::ServiceError(s) => by_status_and_code(s.raw().status().as_u16(), s.err().code()),
        _ => Fault::Unavailable,
    }
}

/// The service-error half of [`classify`], for errors already unwrapped.
pub fn by_status_and_code(status: u16, code: Option<&str>) -> Fault {
    if let Some(code) = code {
        if THROTTLING_CODES.contains(&code) {
            return Fault::Throttled;
        }
        if TRANSIENT_CODES.contains(&code) {
            return Fault::Unavailable;
        }
    }
    match status {
        429 => Fault::Throttled,
        503 => Fault::Throttled,
        500..=599 => Fault::Unavailable,
        _ => Fault::Permanent,
    }
}

/// A one-line description of `err` for logs and error values: the code and message when the
/// service answered, else the error chain.
pub fn describe<E>(err: &SdkError<E, Response>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(s) => {
            let e = s.err();
            format!(
                "{} (HTTP {}): {}",
                e.code().unwrap_or("unknown error"),
                s.raw().status().as_u16(),
                e.message().unwrap_or("no message")
            )
        }
        other => {
            let mut s = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                s.push_str(": ");
                s.push_str(&cause.to_string());
                source = cause.source();
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_classify() {
        assert_eq!(by_status_and_code(400, Some("SlowDown")), Fault::Throttled);
        assert_eq!(
            by_status_and_code(400, Some("ThrottlingException")),
            Fault::Throttled
        );
        assert_eq!(by_status_and_code(429, None), Fault::Throttled);
        assert_eq!(by_status_and_code(503, None), Fault::Throttled);
        assert_eq!(by_status_and_code(500, None), Fault::Unavailable);
        assert_eq!(
            by_status_and_code(502, Some("Whatever")),
            Fault::Unavailable
        );
        assert_eq!(
            by_status_and_code(400, Some("RequestTimeout")),
            Fault::Unavailable
        );
        assert_eq!(
            by_status_and_code(400, Some("ValidationException")),
            Fault::Permanent
        );
        assert_eq!(
            by_status_and_code(403, Some("AccessDenied")),
            Fault::Permanent
        );
        assert_eq!(by_status_and_code(404, None), Fault::Permanent);
    }
}
