//! The store-gateway's internal query API: the ingesters' protocol (see
//! `tidemark_query::IngesterClient`) under `/internal/store-gateway/v1`.
//! Series stream as length-delimited `SeriesBatch` frames, their samples in
//! XOR chunks; the tenant is in `X-Scope-OrgID`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use prost::Message;
use tidemark_schemas::ingester::{
    LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse,
    MetadataResponse, SeriesRequest,
};
use tidemark_storage::wire::{
    matchers_from_proto, series_frames, series_to_proto, DEFAULT_SAMPLES_PER_CHUNK, FRAME_TARGET_BYTES,
    STORE_GATEWAY_API_PREFIX,
};
use tidemark_storage::{Queryable, SelectHints, StorageError};

use crate::store::BlockStore;

const ORG_ID_HEADER: &str = "X-Scope-OrgID";

pub fn router(store: BlockStore) -> Router {
    let p = STORE_GATEWAY_API_PREFIX;
    Router::new()
        .route(&format!("{p}/series"), post(series))
        .route(&format!("{p}/label_names"), post(label_names))
        .route(&format!("{p}/label_values"), post(label_values))
        .route(&format!("{p}/metadata"), post(metadata))
        .with_state(store)
}

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], self.1).into_response()
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
    ([(header::CONTENT_TYPE, "application/x-protobuf")], msg.encode_to_vec()).into_response()
}

async fn series(State(store): State<BlockStore>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let req: SeriesRequest = decode(&body)?;
    let matchers = matchers_from_proto(&req.matchers)?;
    let hints = SelectHints {
        start_ms: req.start_ms,
        end_ms: req.end_ms,
        labels_only: req.skip_chunks,
    };
    let stream = store.select(&tenant, &matchers, hints).await?;
    let series = stream.map(|s| {
        s.and_then(|s| series_to_proto(&s, DEFAULT_SAMPLES_PER_CHUNK)).map_err(std::io::Error::other)
    });
    let frames = series_frames(series, FRAME_TARGET_BYTES);
    Ok(([(header::CONTENT_TYPE, "application/x-protobuf")], Body::from_stream(frames)).into_response())
}

async fn label_names(State(store): State<BlockStore>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let req: LabelNamesRequest = decode(&body)?;
    let matchers = matchers_from_proto(&req.matchers)?;
    let names = store.label_names(&tenant, &matchers, req.start_ms, req.end_ms).await?;
    Ok(protobuf(&LabelNamesResponse { names }))
}

async fn label_values(State(store): State<BlockStore>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let tenant = tenant(&headers)?;
    let req: LabelValuesRequest = decode(&body)?;
    let matchers = matchers_from_proto(&req.matchers)?;
    let values = store
        .label_values(&tenant, &req.name, &matchers, req.start_ms, req.end_ms)
        .await?;
    Ok(protobuf(&LabelValuesResponse { values }))
}

/// Blocks keep no metric metadata; ingesters answer for it.
async fn metadata(headers: HeaderMap) -> Result<Response, ApiError> {
    tenant(&headers)?;
    Ok(protobuf(&MetadataResponse { metadata: Vec::new() }))
}
