//! The Prometheus HTTP API, served under both `/api/v1/` and
//! `/prometheus/api/v1/`:
//!
//! * `query`, `query_range` (GET, or POST with a form body)
//! * `labels`, `label/{name}/values`, `series` (`match[]`, `start`, `end`,
//!   `limit`; GET or POST)
//! * `status/buildinfo`
//!
//! Bodies and errors have Prometheus' exact JSON shapes; the tenant comes
//! from the `X-Scope-OrgID` header.

mod endpoints;
pub mod metrics;
pub mod params;
pub mod response;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use endpoints::QueryText;
use prometheus_client::registry::Registry;
use tidemark_storage::tenant::{tenant_from_header, TenantError, ORG_ID_HEADER};
use tidemark_storage::Queryable;

use crate::engine::{Engine, EngineOptions, QueryResult};
use metrics::ApiMetrics;
use response::ApiError;

/// Header asking for read-after-write consistency (`strong`) or not
/// (`eventual`).
pub const READ_CONSISTENCY_HEADER: &str = "X-Read-Consistency";
/// Header naming the log offsets a query must see (`partition:offset,...`).
pub const READ_CONSISTENCY_OFFSETS_HEADER: &str = "X-Read-Consistency-Offsets";

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    queryable: Arc<dyn Queryable>,
    engine: Engine,
    multitenancy_enabled: bool,
    metrics: ApiMetrics,
    /// Queries without `X-Read-Consistency` wait for the ingesters to
    /// have consumed what was written before them.
    strong_by_default: bool,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("engine", &self.inner.engine)
            .field("multitenancy_enabled", &self.inner.multitenancy_enabled)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State over `queryable`, evaluating queries with `options`.
    /// With `multitenancy_enabled`, requests without `X-Scope-OrgID` are
    /// refused (401); without it they read tenant `anonymous`. Registers
    /// the API's metrics in `registry`.
    pub fn new(
        queryable: Arc<dyn Queryable>,
        options: EngineOptions,
        multitenancy_enabled: bool,
        registry: &mut Registry,
    ) -> Self {
        let engine = Engine::new(queryable.clone(), options);
        let metrics = ApiMetrics::new(registry);
        ApiState {
            inner: Arc::new(Inner {
                queryable,
                engine,
                multitenancy_enabled,
                metrics,
                strong_by_default: false,
            }),
        }
    }

    /// The same state, with strong read consistency as the default
    /// (`-ingest-storage.read-consistency=strong`).
    pub fn with_strong_read_consistency(self, strong: bool) -> Self {
        let i = &self.inner;
        ApiState {
            inner: Arc::new(Inner {
                queryable: i.queryable.clone(),
                engine: i.engine.clone(),
                multitenancy_enabled: i.multitenancy_enabled,
                metrics: i.metrics.clone(),
                strong_by_default: strong,
            }),
        }
    }

    /// Read-after-write consistency, as Mimir's ingest storage offers it:
    /// with `X-Read-Consistency: strong` (or that default), the query first
    /// waits until the ingesters have consumed everything written to the
    /// log before it arrived; `X-Read-Consistency-Offsets:
    /// partition:offset,...` waits for those offsets instead (and implies
    /// strong). Bounded by the query timeout; past it, 503.
    async fn read_consistency(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let offsets = match header(READ_CONSISTENCY_OFFSETS_HEADER) {
            Some(v) => Some(
                tidemark_storage::wire::parse_offsets(v)
                    .map_err(|e| ApiError::bad_data(format!("invalid {READ_CONSISTENCY_OFFSETS_HEADER}: {e}")))?,
            ),
            None => None,
        };
        let strong = match header(READ_CONSISTENCY_HEADER) {
            Some(v) if v.eq_ignore_ascii_case("strong") => true,
            Some(v) if v.eq_ignore_ascii_case("eventual") => offsets.is_some(),
            Some(v) => {
                return Err(ApiError::bad_data(format!(
                    "invalid {READ_CONSISTENCY_HEADER} {v:?}: want strong or eventual"
                )))
            }
            None => self.inner.strong_by_default || offsets.is_some(),
        };
        if !strong {
            return Ok(());
        }
        let timeout = self.inner.engine.options().timeout;
        self.inner
            .queryable
            .wait_consistent(offsets.as_deref().unwrap_or(&[]), timeout)
            .await
            .map_err(ApiError::from)
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn queryable(&self) -> &Arc<dyn Queryable> {
        &self.inner.queryable
    }

    pub fn multitenancy_enabled(&self) -> bool {
        self.inner.multitenancy_enabled
    }

    /// The tenant of a request.
    fn tenant(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let header = headers.get(ORG_ID_HEADER).and_then(|v| v.to_str().ok());
        tenant_from_header(header, self.inner.multitenancy_enabled).map_err(|e| match e {
            TenantError::Missing => ApiError::unauthorized(e.to_string()),
            other => ApiError::bad_data(other.to_string()),
        })
    }

    /// Awaits an endpoint, records metrics and renders its answer.
    async fn respond<R: Into<Reply>>(
        &self,
        endpoint: &'static str,
        f: impl Future<Output = Result<R, ApiError>>,
    ) -> Response {
        let started = Instant::now();
        let (status, body) = match f.await {
            Ok(reply) => (StatusCode::OK, reply.into().into_body()),
            Err(e) => {
                if e.status.is_server_error() {
                    tracing::warn!(endpoint, status = e.status.as_u16(), error = %e.message, "request failed");
                } else {
                    tracing::debug!(endpoint, status = e.status.as_u16(), error = %e.message, "request refused");
                }
                (e.status, Body::from(e.body()))
            }
        };
        self.inner
            .metrics
            .observe(endpoint, status.as_u16(), started.elapsed());
        (status, [(CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// What an endpoint answers with.
pub(super) enum Reply {
    /// A JSON text.
    Json(String),
    /// A query's result, rendered as it is sent (see
    /// [`response::query_answer`]); `true` adds the `stats` object.
    Query(QueryResult, bool),
}

impl From<String> for Reply {
    fn from(s: String) -> Self {
        Reply::Json(s)
    }
}

impl Reply {
    fn into_body(self) -> Body {
        match self {
            Reply::Json(s) => Body::from(s),
            Reply::Query(result, stats) => {
                let mut pieces = response::query_answer(result, stats, response::ANSWER_CHUNK_BYTES);
                let first = pieces.next().unwrap_or_default();
                match pieces.next() {
                    // A small answer goes whole, with its length.
                    None => Body::from(first),
                    Some(second) => Body::from_stream(futures::stream::iter(
                        [first, second].into_iter().chain(pieces).map(Ok::<_, std::convert::Infallible>),
                    )),
                }
            }
        }
    }
}

/// The API's routes, under `/api/v1` and `/prometheus/api/v1`.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/query", get(query).post(query))
        .route("/query_range", get(query_range).post(query_range))
        .route("/labels", get(labels).post(labels))
        .route("/label/{name}/values", get(label_values))
        .route("/series", get(series).post(series))
        .route("/metadata", get(metadata))
        .route("/format_query", get(format_query).post(format_query))
        .route("/parse_query", get(parse_query).post(parse_query))
        .route("/status/buildinfo", get(buildinfo))
        .with_state(state);
    Router::new()
        .nest("/api/v1", v1.clone())
        .nest("/prometheus/api/v1", v1)
}

async fn query(
    State(st): State<ApiState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    st.respond(
        "query",
        endpoints::query(&st, &headers, q.as_deref(), &body),
    )
    .await
}

async fn query_range(
    State(st): State<ApiState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    st.respond(
        "query_range",
        endpoints::query_range(&st, &headers, q.as_deref(), &body),
    )
    .await
}

async fn labels(
    State(st): State<ApiState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    st.respond(
        "labels",
        endpoints::labels(&st, &headers, q.as_deref(), &body),
    )
    .await
}

async fn metadata(
    State(st): State<ApiState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    st.respond("metadata", endpoints::metadata(&st, &headers, q.as_deref()))
        .await
}

async fn label_values(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    st.respond(
        "label_values",
        endpoints::label_values(&st, &name, &headers, q.as_deref()),
    )
    .await
}

async fn series(
    State(st): State<ApiState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    st.respond(
        "series",
        endpoints::series(&st, &headers, q.as_deref(), &body),
    )
    .await
}

async fn format_query(
    State(st): State<ApiState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    query_text(st, headers, q, body, "format_query", QueryText::Formatted).await
}

async fn parse_query(
    State(st): State<ApiState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    query_text(st, headers, q, body, "parse_query", QueryText::Tree).await
}

async fn query_text(
    st: ApiState,
    headers: HeaderMap,
    q: Option<String>,
    body: Bytes,
    endpoint: &'static str,
    what: QueryText,
) -> Response {
    st.respond(endpoint, async {
        endpoints::query_text(&st, &headers, q.as_deref(), &body, what)
    })
    .await
}

async fn buildinfo(State(st): State<ApiState>) -> Response {
    st.respond("buildinfo", async { Ok(endpoints::buildinfo()) })
        .await
}
