//! Query errors and the API error class each maps to.

use tidemark_storage::StorageError;

/// The class of an error, as the Prometheus HTTP API reports it in
/// `errorType` (and through the HTTP status code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed: HTTP 400, `bad_data`.
    BadData,
    /// The query could not be executed: HTTP 422, `execution`.
    Execution,
    /// The query ran out of time: HTTP 503, `timeout`.
    Timeout,
    /// A store could not be reached: HTTP 503, `unavailable`.
    Unavailable,
    /// A bug or a broken store: HTTP 500, `internal`.
    Internal,
}

impl ErrorKind {
    /// The `errorType` string of the Prometheus API.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadData => "bad_data",
            ErrorKind::Execution => "execution",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }

    /// The HTTP status code Prometheus answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadData => 400,
            ErrorKind::Execution => 422,
            ErrorKind::Timeout | ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

/// Message Prometheus gives when a query exceeds its sample limit.
pub const TOO_MANY_SAMPLES: &str =
    "query processing would load too many samples into memory in query execution";

/// Message Prometheus gives when two output series share a label set.
pub const DUPLICATE_LABELSET: &str = "vector cannot contain metrics with the same labelset";

/// Message Prometheus gives when a range query asks for too many steps.
pub const TOO_MANY_POINTS: &str = "exceeded maximum resolution of 11,000 points per timeseries. \
     Try decreasing the query resolution (?step=XX)";

/// Why a query failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// The query text is not valid PromQL.
    #[error("parse error: {0}")]
    Parse(String),
    /// A query parameter is invalid (time range, step, ...).
    #[error("{0}")]
    BadData(String),
    /// Valid PromQL that this engine does not evaluate yet.
    #[error("{0} is not supported yet")]
    Unsupported(String),
    /// Evaluation failed: a limit was hit or the result is not well formed.
    #[error("{0}")]
    Execution(String),
    /// The query did not finish within its timeout.
    #[error("query timed out in query execution")]
    Timeout,
    /// Reading series from storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl QueryError {
    /// The API error class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::Parse(_) | QueryError::BadData(_) => ErrorKind::BadData,
            QueryError::Unsupported(_) | QueryError::Execution(_) => ErrorKind::Execution,
            QueryError::Timeout => ErrorKind::Timeout,
            QueryError::Storage(e) => match e {
                StorageError::Unavailable(_) => ErrorKind::Unavailable,
                StorageError::BadRequest(_) => ErrorKind::BadData,
                StorageError::Limit(_) => ErrorKind::Execution,
                StorageError::Internal(_) => ErrorKind::Internal,
            },
        }
    }

    pub(crate) fn unsupported(what: impl Into<String>) -> Self {
        QueryError::Unsupported(what.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_prometheus_statuses() {
        assert_eq!(QueryError::Parse("x".into()).kind().http_status(), 400);
        assert_eq!(QueryError::unsupported("x").kind().as_str(), "execution");
        assert_eq!(QueryError::Timeout.kind().http_status(), 503);
        let e = QueryError::from(StorageError::Unavailable("down".into()));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let e = QueryError::from(StorageError::BadRequest("bad".into()));
        assert_eq!(e.kind(), ErrorKind::BadData);
        let e = QueryError::from(StorageError::Internal("bug".into()));
        assert_eq!(e.kind().http_status(), 500);
    }

    #[test]
    fn unsupported_message_says_so() {
        assert_eq!(
            QueryError::unsupported("function \"abs\"").to_string(),
            "function \"abs\" is not supported yet"
        );
    }
}
