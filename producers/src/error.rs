//! Errors of the write path and the HTTP status each maps to.
//!
//! 4xx means the request itself is at fault and retrying will not help;
//! 5xx means we or the log failed and the client should retry.

use axum::http::StatusCode;
use tidemark_ingest_log::LogError;

use tidemark_storage::tenant::TenantError;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error("request of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("request body is not valid snappy: {0}")]
    BadSnappy(String),
    #[error("request body is not a valid remote write request: {0}")]
    BadProtobuf(String),
    #[error("request body is not a valid OTLP metrics export request: {0}")]
    BadOtlp(String),
    #[error("OTLP request translates to more than {limit} bytes of remote write series; send smaller batches")]
    TranslatedTooLarge { limit: usize },
    #[error("request body could not be decompressed: {0}")]
    BadCompression(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Some series were refused; the valid ones (`written` samples) were
    /// written.
    #[error("{first}{}", if *.failed > 1 { format!(" (and {} more invalid series)", .failed - 1) } else { String::new() })]
    Validation {
        first: String,
        failed: usize,
        written: usize,
    },
    /// The tenant is over a rate limit: nothing was written; retry after
    /// `retry_after`.
    #[error("{message}")]
    RateLimited {
        reason: &'static str,
        message: String,
        retry_after: std::time::Duration,
    },
    #[error("failed pushing to the ingest log: {0}")]
    Log(#[from] LogError),
    /// The partition ring has no active partition to write to (the
    /// cluster is starting, or every partition is being scaled down).
    #[error("no active partition in the partition ring: ingesters activate a new partition once it has had an owner for -ingester.partition-ring.min-partition-owners-duration; retry")]
    NoActivePartitions,
}

impl PushError {
    /// Seconds for a `Retry-After` header (at least 1), for a rate limit.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            PushError::RateLimited { retry_after, .. } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            _ => None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            PushError::Tenant(TenantError::Missing) => StatusCode::UNAUTHORIZED,
            PushError::Tenant(_) => StatusCode::BAD_REQUEST,
            PushError::TooLarge { .. } | PushError::TranslatedTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            PushError::BadSnappy(_)
            | PushError::BadProtobuf(_)
            | PushError::BadOtlp(_)
            | PushError::BadCompression(_)
            | PushError::Validation { .. } => StatusCode::BAD_REQUEST,
            PushError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            PushError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PushError::Log(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            PushError::Log(_) => StatusCode::INTERNAL_SERVER_ERROR,
            PushError::NoActivePartitions => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(
            PushError::Tenant(TenantError::Missing).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            PushError::TooLarge { size: 2, limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            PushError::TranslatedTooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            PushError::BadOtlp("x".into()).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            PushError::BadCompression("x".into()).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            PushError::Log(LogError::Unavailable("x".into())).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let v = PushError::Validation {
            written: 0,
            first: "bad".into(),
            failed: 3,
        };
        assert_eq!(v.status(), StatusCode::BAD_REQUEST);
        assert_eq!(v.to_string(), "bad (and 2 more invalid series)");
        let r = PushError::RateLimited {
            reason: "rate_limited",
            message: "slow down".into(),
            retry_after: std::time::Duration::from_millis(1500),
        };
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.retry_after_secs(), Some(2));
        let r = PushError::RateLimited {
            reason: "rate_limited",
            message: "slow down".into(),
            retry_after: std::time::Duration::ZERO,
        };
        assert_eq!(r.retry_after_secs(), Some(1));
        assert_eq!(v.retry_after_secs(), None);
    }
}
