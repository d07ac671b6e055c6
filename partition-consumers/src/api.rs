//! The partition consumers' internal query API, for queriers.
//!
//! Protobuf, not JSON: `POST {INGESTER_API_PREFIX}/series` answers with a
//! stream of length-delimited `SeriesBatch` frames holding the heads' XOR
//! chunks as they are; `label_names` and `label_values` answer with one
//! message. The tenant is in `X-Scope-OrgID`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use prost::Message;
use tidemark_schemas::ingester::{
    chunk, Chunk, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse,
    MetadataRequest, MetadataResponse, SeriesRequest, StreamSeries,
};
use tidemark_storage::queryable::{merge_sorted_strings, Queryable};
use tidemark_storage::wire::{
    labels_to_proto, matchers_from_proto, series_frames, FRAME_TARGET_BYTES, INGESTER_API_PREFIX,
};
use tidemark_storage::{Matcher, SelectHints, StorageError};

use crate::service::Ingester;

const ORG_ID_HEADER: &str = "X-Scope-OrgID";

/// Routes of the internal API.
pub fn router(ingester: Arc<Ingester>) -> Router {
    Router::new()
        .route(&format!("{INGESTER_API_PREFIX}/series"), post(series))
        .route(
            &format!("{INGESTER_API_PREFIX}/label_names"),
            post(label_names),
        )
        .route(&format!("{INGESTER_API_PREFIX}/metadata"), post(metadata))
        .route(&format!("{INGESTER_API_PREFIX}/wait"), post(wait))
        .route(
            &format!("{INGESTER_API_PREFIX}/label_values"),
            post(label_values),
        )
        .layer(axum::middleware::map_response_with_state(
            ingester.clone(),
            add_coverage,
        ))
        .with_state(ingester)
}

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.1,
        )
            .into_response()
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError(status, e.to_string())
    }
}

fn tenant(headers: &HeaderMap) -> Result<String, ApiError> {
    tidemark_storage::wire::internal_tenant(headers.get(ORG_ID_HEADER).and_then(|v| v.to_str().ok()))
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))
}

fn decode<M: Message + Default>(body: &Bytes) -> Result<M, ApiError> {
    tidemark_storage::wire::decode_internal(body).map_err(|(status, message)| {
        ApiError(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), message)
    })
}

fn protobuf(msg: &impl Message) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        msg.encode_to_vec(),
    )
        .into_response()
}

/// Streams matching series with their chunks, a batch per frame.
async fn series(
    State(ing): State<Arc<Ingester>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let req: SeriesRequest = decode(&body)?;
    let matchers: Vec<Matcher> = matchers_from_proto(&req.matchers)?;
    let hints = SelectHints {
        start_ms: req.start_ms,
        end_ms: req.end_ms,
        labels_only: req.skip_chunks,
    };
    let series = ing.merged_chunk_stream(&tenant, &matchers, hints);
    let series = series.map(|(labels, chunks)| {
        Ok::<_, std::io::Error>(StreamSeries {
            labels: labels_to_proto(&labels),
            chunks: chunks
                .into_iter()
                .map(|c| Chunk {
                    min_time_ms: c.min_t,
                    max_time_ms: c.max_t,
                    encoding: chunk::Encoding::Xor as i32,
                    data: Bytes::copy_from_slice(&c.data),
                })
                .collect(),
        })
    });
    let frames = series_frames(series, FRAME_TARGET_BYTES);
    Ok((
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        Body::from_stream(frames),
    )
        .into_response())
}

async fn label_names(
    State(ing): State<Arc<Ingester>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let req: LabelNamesRequest = decode(&body)?;
    let matchers = matchers_from_proto(&req.matchers)?;
    let names = ing
        .label_names(&tenant, &matchers, req.start_ms, req.end_ms)
        .await?;
    Ok(protobuf(&LabelNamesResponse { names }))
}

async fn label_values(
    State(ing): State<Arc<Ingester>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let req: LabelValuesRequest = decode(&body)?;
    let matchers = matchers_from_proto(&req.matchers)?;
    let values = ing
        .label_values(&tenant, &req.name, &matchers, req.start_ms, req.end_ms)
        .await?;
    Ok(protobuf(&LabelValuesResponse {
        values: merge_sorted_strings(vec![values]),
    }))
}

async fn metadata(
    State(ing): State<Arc<Ingester>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let req: MetadataRequest = decode(&body)?;
    let metric = (!req.metric.is_empty()).then_some(req.metric.as_str());
    let metadata = ing.metadata(&tenant, metric).await?;
    Ok(protobuf(&MetadataResponse {
        metadata: metadata
            .into_iter()
            .map(tidemark_storage::wire::metadata_to_proto)
            .collect(),
    }))
}

/// Read-after-write consistency: answers once every owned partition has
/// been consumed past the offsets in the body (`partition:offset`,
/// comma-separated; a partition not named waits for the end of the log as
/// it is now), or 503 after `timeout_ms` (query parameter, default 10s).
async fn wait(
    State(ing): State<Arc<Ingester>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let offsets = std::str::from_utf8(&body)
        .ok()
        .and_then(|s| tidemark_storage::wire::parse_offsets(s).ok())
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "bad offsets: want partition:offset,...".into()))?;
    let timeout_ms = query
        .as_deref()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("timeout_ms=")))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(10_000)
        .min(600_000);
    ing.wait_consistent(&offsets, std::time::Duration::from_millis(timeout_ms))
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// Names the partitions this ingester serves on every internal answer
/// (`X-Tidemark-Partitions`, `X-Tidemark-Partition-Count`).
async fn add_coverage(State(ing): State<Arc<Ingester>>, mut response: Response) -> Response {
    let (owned, count) = ing.coverage();
    let h = response.headers_mut();
    if let Ok(v) = axum::http::HeaderValue::from_str(&owned) {
        h.insert(tidemark_storage::wire::PARTITIONS_HEADER, v);
    }
    h.insert(tidemark_storage::wire::PARTITION_COUNT_HEADER, count.into());
    response
}
