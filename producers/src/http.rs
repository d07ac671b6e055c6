//! HTTP push endpoints: `POST`/`PUT` on `/api/v1/push` and the legacy
//! `/api/prom/push`, snappy-compressed remote write 1.0 and 2.0 (chosen by
//! the `proto` parameter of `Content-Type`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use crate::distributor::Distributor;
use crate::error::PushError;
use crate::metrics::StatusLabels;
use tidemark_storage::tenant::{tenant_from_header, ORG_ID_HEADER};

#[derive(Clone)]
pub struct PushState {
    pub distributor: Arc<Distributor>,
    pub multitenancy_enabled: bool,
}

/// Routes of the write path.
pub fn router(state: PushState) -> Router {
    Router::new()
        .route("/api/v1/push", post(push).put(push))
        .route("/api/prom/push", post(push).put(push))
        .with_state(state)
}

impl IntoResponse for PushError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "push failed");
        }
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{self}\n"),
        )
            .into_response()
    }
}

/// The remote write protocol of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `prometheus.WriteRequest`.
    V1,
    /// `io.prometheus.write.v2.Request`.
    V2,
}

/// Response headers of remote write 2.0 that report what was written.
pub const SAMPLES_WRITTEN: &str = "X-Prometheus-Remote-Write-Samples-Written";
pub const HISTOGRAMS_WRITTEN: &str = "X-Prometheus-Remote-Write-Histograms-Written";
pub const EXEMPLARS_WRITTEN: &str = "X-Prometheus-Remote-Write-Exemplars-Written";

async fn push(State(state): State<PushState>, headers: HeaderMap, body: Body) -> Response {
    let (protocol, result) = match check_content_type(&headers) {
        Ok(protocol) => (
            Some(protocol),
            handle(&state, &headers, body, protocol).await,
        ),
        Err(e) => (None, Err(e)),
    };
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status(),
    };
    state
        .distributor
        .metrics()
        .requests
        .get_or_create(&StatusLabels {
            status: status.as_u16(),
        })
        .inc();
    // Remote write 2.0 senders learn what was written, also when some
    // series were refused. Tidemark stores no native histograms nor
    // exemplars, so those counts are 0.
    let written = match &result {
        Ok(samples) => Some(*samples),
        Err(PushError::Validation { written, .. }) => Some(*written),
        Err(_) => None,
    };
    let mut response = match result {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    };
    if let (Some(Protocol::V2), Some(samples)) = (protocol, written) {
        let h = response.headers_mut();
        h.insert(SAMPLES_WRITTEN, samples.into());
        h.insert(HISTOGRAMS_WRITTEN, 0.into());
        h.insert(EXEMPLARS_WRITTEN, 0.into());
    }
    response
}

/// Handles a push; the number of samples written.
async fn handle(
    state: &PushState,
    headers: &HeaderMap,
    body: Body,
    protocol: Protocol,
) -> Result<usize, PushError> {
    let tenant = tenant_from_header(
        headers.get(ORG_ID_HEADER).and_then(|v| v.to_str().ok()),
        state.multitenancy_enabled,
    )?;
    let limit = state.distributor.config().max_recv_msg_size;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(PushError::TooLarge { size: len, limit });
        }
    }
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| PushError::TooLarge {
            size: limit + 1,
            limit,
        })?;
    let body = decode_body(&raw, limit)?;
    let outcome = match protocol {
        Protocol::V1 => state.distributor.push(&tenant, &body).await?,
        Protocol::V2 => state.distributor.push_v2(&tenant, &body).await?,
    };
    Ok(outcome.samples)
}

/// The protocol of a request from its `Content-Type`: remote write 1.0 is
/// `application/x-protobuf` with no `proto` or
/// `proto=prometheus.WriteRequest`, 2.0 is
/// `proto=io.prometheus.write.v2.Request`; any other message is refused
/// with 415, so that a sender can fall back to a protocol we accept.
pub fn check_content_type(headers: &HeaderMap) -> Result<Protocol, PushError> {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(Protocol::V1);
    };
    let proto = ct
        .split(';')
        .skip(1)
        .filter_map(|p| p.trim().strip_prefix("proto="))
        .next()
        .map(|p| p.trim_matches('"'));
    match proto {
        None | Some("prometheus.WriteRequest") => Ok(Protocol::V1),
        Some("io.prometheus.write.v2.Request") => Ok(Protocol::V2),
        Some(other) => Err(PushError::UnsupportedMediaType(format!(
            "unsupported remote write protobuf message {other:?}: this endpoint accepts prometheus.WriteRequest (remote write 1.0) and io.prometheus.write.v2.Request (2.0)"
        ))),
    }
}

/// Decompresses a remote-write body. The decompressed size is checked from
/// snappy's header before anything is allocated.
pub fn decode_body(raw: &[u8], limit: usize) -> Result<Vec<u8>, PushError> {
    let len = snap::raw::decompress_len(raw).map_err(|e| PushError::BadSnappy(e.to_string()))?;
    if len > limit {
        return Err(PushError::TooLarge { size: len, limit });
    }
    let mut buf = vec![0u8; len];
    let n = snap::raw::Decoder::new()
        .decompress(raw, &mut buf)
        .map_err(|e| PushError::BadSnappy(e.to_string()))?;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DistributorConfig;
    use crate::metrics::DistributorMetrics;
    use axum::http::Request;
    use bytes::Bytes;
    use prost::Message;
    use tidemark_ingest_log::embedded::{EmbeddedConfig, EmbeddedLog};
    use tidemark_ingest_log::IngestLog;
    use tidemark_schemas::prometheus::{Label, Sample, TimeSeries, WriteRequest};
    use tower::ServiceExt;

    fn app(dir: &std::path::Path, multitenancy: bool) -> (Router, Arc<dyn IngestLog>) {
        let log: Arc<dyn IngestLog> = Arc::new(
            EmbeddedLog::open(EmbeddedConfig {
                dir: dir.to_path_buf(),
                partitions: 2,
                ..Default::default()
            })
            .unwrap(),
        );
        let cfg = DistributorConfig {
            max_recv_msg_size: 64 << 10,
            ..Default::default()
        };
        let d = Distributor::new(
            log.clone(),
            cfg,
            Arc::new(DistributorMetrics::unregistered()),
        );
        (
            router(PushState {
                distributor: Arc::new(d),
                multitenancy_enabled: multitenancy,
            }),
            log,
        )
    }

    fn body(series: Vec<Vec<(&str, &str)>>) -> Vec<u8> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let req = WriteRequest {
            timeseries: series
                .into_iter()
                .map(|ls| TimeSeries {
                    labels: ls
                        .into_iter()
                        .map(|(n, v)| Label {
                            name: Bytes::copy_from_slice(n.as_bytes()),
                            value: Bytes::copy_from_slice(v.as_bytes()),
                        })
                        .collect(),
                    samples: vec![Sample {
                        value: 1.0,
                        timestamp: now,
                    }],
                    exemplars: vec![],
                })
                .collect(),
            metadata: vec![],
        };
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap()
    }

    async fn send(
        app: &Router,
        method: &str,
        path: &str,
        tenant: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, String) {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("Content-Type", "application/x-protobuf");
        if let Some(t) = tenant {
            b = b.header(ORG_ID_HEADER, t);
        }
        let resp = app
            .clone()
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let text = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&text).into_owned())
    }

    async fn total_records(log: &Arc<dyn IngestLog>) -> i64 {
        let mut n = 0;
        for p in 0..log.partition_count() {
            n += log.latest_offset(p).await.unwrap();
        }
        n
    }

    #[tokio::test]
    async fn push_post_and_put_on_both_paths() {
        let dir = tempfile::tempdir().unwrap();
        let (app, log) = app(dir.path(), true);
        for (m, p) in [
            ("POST", "/api/v1/push"),
            ("PUT", "/api/v1/push"),
            ("POST", "/api/prom/push"),
        ] {
            let (s, t) = send(
                &app,
                m,
                p,
                Some("t1"),
                body(vec![vec![("__name__", "up"), ("job", "a")]]),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{m} {p}: {t}");
        }
        assert_eq!(total_records(&log).await, 3);
    }

    #[tokio::test]
    async fn bad_input_statuses() {
        let dir = tempfile::tempdir().unwrap();
        let (app, log) = app(dir.path(), true);
        let good = || body(vec![vec![("__name__", "up")]]);
        assert_eq!(
            send(&app, "POST", "/api/v1/push", None, good()).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            send(&app, "POST", "/api/v1/push", Some("a/b"), good())
                .await
                .0,
            StatusCode::BAD_REQUEST
        );
        let (s, t) = send(
            &app,
            "POST",
            "/api/v1/push",
            Some("t"),
            b"not snappy at all".to_vec(),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{t}");
        let garbage = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
        let (s, t) = send(&app, "POST", "/api/v1/push", Some("t"), garbage).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(t.contains("not a valid remote write request"), "{t}");
        // Compressed small, declared large: refused before decompressing.
        let huge = snap::raw::Encoder::new()
            .compress_vec(&vec![0u8; 1 << 20])
            .unwrap();
        assert!(huge.len() < 64 << 10);
        assert_eq!(
            send(&app, "POST", "/api/v1/push", Some("t"), huge).await.0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            send(
                &app,
                "POST",
                "/api/v1/push",
                Some("t"),
                vec![0u8; 100 << 10]
            )
            .await
            .0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            total_records(&log).await,
            0,
            "nothing written for refused requests"
        );
    }

    #[tokio::test]
    async fn invalid_series_refused_valid_ones_written() {
        let dir = tempfile::tempdir().unwrap();
        let (app, log) = app(dir.path(), true);
        let b = body(vec![
            vec![("__name__", "ok_metric")],
            vec![("__name__", "bad"), ("in-valid", "x")],
        ]);
        let (s, t) = send(&app, "POST", "/api/v1/push", Some("t"), b).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(t.contains("in-valid") && t.contains("bad{"), "{t}");
        assert_eq!(total_records(&log).await, 1, "the valid series was written");
    }

    fn rw2_body(symbols: &[&str], series: Vec<(Vec<u32>, usize)>) -> Vec<u8> {
        use tidemark_schemas::write_v2;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let req = write_v2::Request {
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            timeseries: series
                .into_iter()
                .map(|(refs, histograms)| write_v2::TimeSeries {
                    labels_refs: refs,
                    samples: vec![write_v2::Sample {
                        value: 1.0,
                        timestamp: now,
                        start_timestamp: 0,
                    }],
                    histograms: vec![write_v2::Histogram::default(); histograms],
                    ..Default::default()
                })
                .collect(),
        };
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap()
    }

    async fn send_v2(app: &Router, proto: &str, body: Vec<u8>) -> Response {
        let req = Request::builder()
            .method("POST")
            .uri("/api/v1/push")
            .header("Content-Type", format!("application/x-protobuf;proto={proto}"))
            .header(ORG_ID_HEADER, "t")
            .body(Body::from(body))
            .unwrap();
        app.clone().oneshot(req).await.unwrap()
    }

    fn header(r: &Response, name: &str) -> Option<String> {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn remote_write_2_is_written_and_reports_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (app, log) = app(dir.path(), true);
        let v2 = "io.prometheus.write.v2.Request";
        let r = send_v2(
            &app,
            v2,
            rw2_body(
                &["", "__name__", "up", "job", "a", "b"],
                vec![(vec![1, 2, 3, 4], 0), (vec![1, 2, 3, 5], 0)],
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, SAMPLES_WRITTEN).as_deref(), Some("2"));
        assert_eq!(header(&r, HISTOGRAMS_WRITTEN).as_deref(), Some("0"));
        assert_eq!(header(&r, EXEMPLARS_WRITTEN).as_deref(), Some("0"));
        assert!(total_records(&log).await >= 1);

        // A native histogram is refused (400), the float sample written.
        let r = send_v2(
            &app,
            v2,
            rw2_body(&["", "__name__", "h"], vec![(vec![1, 2], 1)]),
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(header(&r, SAMPLES_WRITTEN).as_deref(), Some("1"));

        // A reference outside the symbol table refuses the whole request.
        let before = total_records(&log).await;
        let r = send_v2(&app, v2, rw2_body(&["", "__name__"], vec![(vec![1, 7], 0)])).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let text = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        assert!(
            String::from_utf8_lossy(&text).contains("outside the symbol table"),
            "{text:?}"
        );
        // symbols[0] must be the empty string.
        let r = send_v2(&app, v2, rw2_body(&["x", "__name__", "up"], vec![(vec![1, 2], 0)])).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(total_records(&log).await, before, "nothing written");
    }

    #[tokio::test]
    async fn unknown_protobuf_messages_are_refused_with_415() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _log) = app(dir.path(), false);
        let resp = send_v2(
            &app,
            "io.prometheus.write.v3.Request",
            body(vec![vec![("__name__", "up")]]),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
