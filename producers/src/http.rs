//! HTTP push endpoints: `POST`/`PUT` on `/api/v1/push` and the legacy
//! `/api/prom/push`, snappy-compressed remote write 1.0 and 2.0 (chosen by
//! the `proto` parameter of `Content-Type`), and OTLP/HTTP metrics on
//! `/otlp/v1/metrics` ([`crate::otlp`]).

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
use crate::otlp;
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
        .route("/otlp/v1/metrics", post(otlp_push))
        .with_state(state)
}

impl IntoResponse for PushError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "push failed");
        }
        let retry_after = self.retry_after_secs();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{self}\n"),
        )
            .into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        response
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

/// Counts a request by the status it gets.
fn count_request(state: &PushState, error: Option<&PushError>) {
    let status = error.map_or(StatusCode::OK, PushError::status);
    state
        .distributor
        .metrics()
        .requests
        .get_or_create(&StatusLabels {
            status: status.as_u16(),
        })
        .inc();
}

async fn push(State(state): State<PushState>, headers: HeaderMap, body: Body) -> Response {
    let (protocol, result) = match check_content_type(&headers) {
        Ok(protocol) => (
            Some(protocol),
            handle(&state, &headers, body, protocol).await,
        ),
        Err(e) => (None, Err(e)),
    };
    count_request(&state, result.as_ref().err());
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

/// `POST /otlp/v1/metrics`: answers as OTLP/HTTP says, an
/// `ExportMetricsServiceResponse` (with a partial success naming what was
/// dropped) or a `google.rpc.Status`, in the request's format.
async fn otlp_push(State(state): State<PushState>, headers: HeaderMap, body: Body) -> Response {
    let (format, result) = match otlp::request_format(&headers) {
        Ok(f) => (Some(f), handle_otlp(&state, &headers, body, f).await),
        Err(e) => (None, Err(e)),
    };
    count_request(&state, result.as_ref().err());
    match result {
        Ok(t) => {
            let f = format.unwrap_or(otlp::Format::Protobuf);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, f.content_type())],
                otlp::encode_response(f, t.rejected_points, &t.rejection_message()),
            )
                .into_response()
        }
        Err(e) => {
            let status = e.status();
            if status.is_server_error() {
                tracing::warn!(error = %e, "OTLP push failed");
            }
            let (content_type, body) = otlp::encode_status(format, status, &e.to_string());
            let mut response =
                (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
            if let Some(secs) = e.retry_after_secs() {
                response.headers_mut().insert(header::RETRY_AFTER, secs.into());
            }
            response
        }
    }
}

/// Reads, decompresses, decodes and translates an OTLP request and pushes
/// the result; what the translation dropped.
async fn handle_otlp(
    state: &PushState,
    headers: &HeaderMap,
    body: Body,
    format: otlp::Format,
) -> Result<otlp::Translated, PushError> {
    let tenant = tenant_from_header(
        headers.get(ORG_ID_HEADER).and_then(|v| v.to_str().ok()),
        state.multitenancy_enabled,
    )?;
    let encoding = otlp::request_encoding(headers)?;
    let cfg = state.distributor.config();
    let raw = read_limited(headers, body, cfg.max_recv_msg_size).await?;
    let body = otlp::decompress(raw, encoding, cfg.max_recv_msg_size)?;
    let budget = cfg
        .max_recv_msg_size
        .saturating_mul(otlp::TRANSLATED_SIZE_FACTOR);
    let mut translated = otlp::translate_body(
        &body,
        format,
        &cfg.otel_promote_resource_attributes,
        budget,
    )?;
    drop(body);
    if translated.over_budget {
        return Err(PushError::TranslatedTooLarge { limit: budget });
    }
    let write = std::mem::take(&mut translated.body);
    if !write.is_empty() {
        match state.distributor.push(&tenant, &write).await {
            Ok(_) => {}
            // Some series written, some refused: OTLP/HTTP calls that a
            // partial success (200). Each translated series carries one
            // sample, counted as one rejected data point.
            Err(
                e @ PushError::Validation {
                    written, failed, ..
                },
            ) if written > 0 => {
                translated.rejected_points += failed as u64;
                translated.rejections.insert(0, e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(translated)
}

/// The body, refused with 413 past `limit` bytes.
async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, PushError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(PushError::TooLarge { size: len, limit });
        }
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| PushError::TooLarge {
            size: limit + 1,
            limit,
        })
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
    let raw = read_limited(headers, body, limit).await?;
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

    fn app_with_overrides(
        dir: &std::path::Path,
        runtime_yaml: &str,
    ) -> (Router, Arc<dyn IngestLog>, Arc<Distributor>) {
        let log: Arc<dyn IngestLog> = Arc::new(
            EmbeddedLog::open(EmbeddedConfig {
                dir: dir.join("log"),
                partitions: 2,
                ..Default::default()
            })
            .unwrap(),
        );
        let file = dir.join("runtime.yaml");
        std::fs::write(&file, runtime_yaml).unwrap();
        let overrides = tidemark_limits::Overrides::load(
            tidemark_limits::Limits::default(),
            &tidemark_limits::RuntimeConfigSettings {
                file: Some(file),
                ..Default::default()
            },
            Default::default(),
        )
        .unwrap();
        let d = Arc::new(
            Distributor::new(
                log.clone(),
                DistributorConfig::default(),
                Arc::new(DistributorMetrics::unregistered()),
            )
            .with_overrides(overrides),
        );
        (
            router(PushState {
                distributor: d.clone(),
                multitenancy_enabled: true,
            }),
            log,
            d,
        )
    }

    async fn send_full(app: &Router, tenant: &str, body: Vec<u8>) -> Response {
        app.clone()
            .oneshot(
                Request::post("/api/v1/push")
                    .header("Content-Type", "application/x-protobuf")
                    .header(ORG_ID_HEADER, tenant)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap()
    }

    fn many(n: usize) -> Vec<u8> {
        let names: Vec<String> = (0..n).map(|i| format!("{i}")).collect();
        body(
            names
                .iter()
                .map(|i| vec![("__name__", "m"), ("i", i.as_str())])
                .collect(),
        )
    }

    #[tokio::test]
    async fn ingestion_rate_limit_refuses_whole_request_with_retry_after() {
        let dir = tempfile::tempdir().unwrap();
        // 1 sample/s with a burst of 5: a 10-sample push never fits, a
        // 5-sample push fits once.
        let (app, log, d) = app_with_overrides(
            dir.path(),
            "overrides:\n  slow:\n    ingestion_rate: 1\n    ingestion_burst_size: 5\n",
        );
        let r = send_full(&app, "slow", many(10)).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = r.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1);
        let text = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains("err-tidemark-rate-limited"), "{text}");
        assert!(text.contains("-distributor.ingestion-rate-limit"), "{text}");
        assert_eq!(total_records(&log).await, 0, "nothing written");

        let r = send_full(&app, "slow", many(5)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let written = total_records(&log).await;
        assert!(written > 0);
        let r = send_full(&app, "slow", many(5)).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = r.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=5).contains(&retry), "{retry}");
        assert_eq!(total_records(&log).await, written, "nothing more written");

        // Another tenant has the default limits.
        let r = send_full(&app, "other", many(10)).await;
        assert_eq!(r.status(), StatusCode::OK);

        let m = d.metrics();
        let discarded = m
            .discarded_samples
            .get_or_create(&crate::metrics::DiscardLabels {
                tenant: "slow".into(),
                reason: "rate_limited".into(),
            })
            .get();
        assert_eq!(discarded, 15);
    }

    #[tokio::test]
    async fn request_rate_limit_refuses_with_429() {
        let dir = tempfile::tempdir().unwrap();
        let (app, log, _) = app_with_overrides(
            dir.path(),
            "overrides:\n  chatty:\n    request_rate: 0.001\n    request_burst_size: 2\n",
        );
        for _ in 0..2 {
            assert_eq!(send_full(&app, "chatty", many(1)).await.status(), StatusCode::OK);
        }
        let before = total_records(&log).await;
        let r = send_full(&app, "chatty", many(1)).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
        let text = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        assert!(String::from_utf8_lossy(&text).contains("err-tidemark-request-rate-limited"));
        assert_eq!(total_records(&log).await, before);
    }

    #[tokio::test]
    async fn per_tenant_validation_limits_and_past_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _, _) = app_with_overrides(
            dir.path(),
            "overrides:\n  strict:\n    max_label_names_per_series: 2\n    past_grace_period: 1h\n",
        );
        let three = || body(vec![vec![("__name__", "m"), ("a", "1"), ("b", "2")]]);
        let r = send_full(&app, "strict", three()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = send_full(&app, "lenient", three()).await;
        assert_eq!(r.status(), StatusCode::OK);
        // A sample two hours old.
        let old = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: Bytes::from_static(b"__name__"),
                    value: Bytes::from_static(b"m"),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis() as i64
                        - 2 * 3_600_000,
                }],
                exemplars: vec![],
            }],
            metadata: vec![],
        };
        let old = || {
            snap::raw::Encoder::new()
                .compress_vec(&old.encode_to_vec())
                .unwrap()
        };
        let r = send_full(&app, "strict", old()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let text = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains("err-tidemark-too-far-in-past"), "{text}");
        assert!(text.contains("-validation.past-grace-period"), "{text}");
        assert_eq!(send_full(&app, "lenient", old()).await.status(), StatusCode::OK);
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

    // --- OTLP

    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, ExponentialHistogram, ExponentialHistogramDataPoint,
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use std::io::Write;

    fn now_nanos() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    fn otlp_request(exponential: bool) -> ExportMetricsServiceRequest {
        let mut metrics = vec![Metric {
            name: "queue.depth".into(),
            unit: "{item}".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    time_unix_nano: now_nanos(),
                    value: Some(number_data_point::Value::AsInt(3)),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        }];
        if exponential {
            metrics.push(Metric {
                name: "latency".into(),
                unit: "s".into(),
                data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint::default(); 2],
                    aggregation_temporality: 2,
                })),
                ..Default::default()
            });
        }
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("svc".into())),
                        }),
                        key_strindex: 0,
                    }],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn otlp_json(exponential: bool) -> Vec<u8> {
        let t = now_nanos().to_string();
        let exp = if exponential {
            r#",{"name":"latency","exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[{"timeUnixNano":"1","count":"1"}]}}"#
        } else {
            ""
        };
        format!(
            r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}}]}},"scopeMetrics":[{{"metrics":[{{"name":"queue.depth","gauge":{{"dataPoints":[{{"asInt":"3","timeUnixNano":"{t}"}}]}}}}{exp}]}}]}}]}}"#
        )
        .into_bytes()
    }

    async fn send_otlp(
        app: &Router,
        content_type: &str,
        encoding: Option<&str>,
        tenant: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, String, Bytes) {
        let mut b = Request::builder()
            .method("POST")
            .uri("/otlp/v1/metrics")
            .header("Content-Type", content_type);
        if let Some(e) = encoding {
            b = b.header("Content-Encoding", e);
        }
        if let Some(t) = tenant {
            b = b.header(ORG_ID_HEADER, t);
        }
        let resp = app
            .clone()
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, ct, body)
    }

    const PB: &str = "application/x-protobuf";
    const JSON: &str = "application/json";

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    #[tokio::test]
    async fn otlp_rate_limited_gets_429_resource_exhausted_with_retry_after() {
        let dir = tempfile::tempdir().unwrap();
        let (app, log, _) = app_with_overrides(
            dir.path(),
            "overrides:\n  slow:\n    request_rate: 0.001\n    request_burst_size: 1\n",
        );
        let send = || {
            app.clone().oneshot(
                Request::post("/otlp/v1/metrics")
                    .header("Content-Type", "application/json")
                    .header(ORG_ID_HEADER, "slow")
                    .body(Body::from(otlp_json(false)))
                    .unwrap(),
            )
        };
        assert_eq!(send().await.unwrap().status(), StatusCode::OK);
        let before = total_records(&log).await;
        let r = send().await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], 8, "RESOURCE_EXHAUSTED: {v}");
        assert_eq!(total_records(&log).await, before);
    }

    #[tokio::test]
    async fn otlp_protobuf_and_json_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let (app, log) = app(dir.path(), true);
        let (s, ct, body) = send_otlp(
            &app,
            PB,
            None,
            Some("t"),
            otlp_request(false).encode_to_vec(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body:?}");
        assert_eq!(ct, PB);
        assert_eq!(
            ExportMetricsServiceResponse::decode(body).unwrap(),
            ExportMetricsServiceResponse::default()
        );
        let after_pb = total_records(&log).await;
        assert!(after_pb >= 1);

        let (s, ct, body) = send_otlp(
            &app,
            "application/json; charset=utf-8",
            None,
            Some("t"),
            otlp_json(false),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body:?}");
        assert_eq!(ct, JSON);
        assert_eq!(&body[..], b"{}");
        assert!(total_records(&log).await > after_pb);
    }

    #[tokio::test]
    async fn otlp_partial_success_names_what_was_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (app, log) = app(dir.path(), true);
        let (s, _, body) = send_otlp(
            &app,
            PB,
            None,
            Some("t"),
            otlp_request(true).encode_to_vec(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let ps = ExportMetricsServiceResponse::decode(body)
            .unwrap()
            .partial_success
            .unwrap();
        assert_eq!(ps.rejected_data_points, 2);
        assert!(
            ps.error_message
                .contains("exponential histogram \"latency\""),
            "{}",
            ps.error_message
        );
        assert!(total_records(&log).await >= 1, "the gauge was written");

        let (s, _, body) = send_otlp(&app, JSON, None, Some("t"), otlp_json(true)).await;
        assert_eq!(s, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["partialSuccess"]["rejectedDataPoints"], "1");
        assert!(v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("native histograms"));
    }

    #[tokio::test]
    async fn otlp_gzip_and_zstd() {
        let dir = tempfile::tempdir().unwrap();
        let (app, log) = app(dir.path(), true);
        let pb = otlp_request(false).encode_to_vec();
        let (s, _, _) = send_otlp(&app, PB, Some("gzip"), Some("t"), gzip(&pb)).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _, _) = send_otlp(
            &app,
            PB,
            Some("zstd"),
            Some("t"),
            zstd::encode_all(&pb[..], 3).unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _, _) =
            send_otlp(&app, JSON, Some("gzip"), Some("t"), gzip(&otlp_json(false))).await;
        assert_eq!(s, StatusCode::OK);
        assert!(total_records(&log).await >= 3);
    }

    #[tokio::test]
    async fn otlp_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let (app, log) = app(dir.path(), true);
        let pb = otlp_request(false).encode_to_vec();
        // Compression bombs: small on the wire, past the 64 KiB limit inflated.
        let bomb = vec![0u8; 10 << 20];
        let gz = gzip(&bomb);
        assert!(gz.len() < 64 << 10);
        let (s, ct, body) = send_otlp(&app, PB, Some("gzip"), Some("t"), gz).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(ct, PB);
        let status = otlp::RpcStatus::decode(body).unwrap();
        assert!(status.message.contains("exceeds the limit"), "{status:?}");
        let zs = zstd::encode_all(&bomb[..], 3).unwrap();
        assert!(zs.len() < 64 << 10);
        let (s, ct, body) = send_otlp(&app, JSON, Some("zstd"), Some("t"), zs).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(ct, JSON);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["message"].as_str().unwrap().contains("exceeds the limit"));
        // Small, but expanding past 10 x the limit once translated.
        let mut wide = otlp_request(false);
        wide.resource_metrics[0].scope_metrics[0].metrics = vec![Metric {
            name: "h".into(),
            data: Some(Data::Histogram(
                opentelemetry_proto::tonic::metrics::v1::Histogram {
                    data_points: vec![
                        opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint {
                            attributes: (0..20)
                                .map(|i| KeyValue {
                                    key: format!("a{i}"),
                                    value: Some(AnyValue {
                                        value: Some(any_value::Value::StringValue("v".repeat(200))),
                                    }),
                                    key_strindex: 0,
                                })
                                .collect(),
                            bucket_counts: vec![1; 3001],
                            explicit_bounds: (0..3000).map(f64::from).collect(),
                            ..Default::default()
                        },
                    ],
                    aggregation_temporality: 2,
                },
            )),
            ..Default::default()
        }];
        let wide = wide.encode_to_vec();
        assert!(wide.len() < 64 << 10);
        let (s, _, body) = send_otlp(&app, PB, None, Some("t"), wide).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(otlp::RpcStatus::decode(body)
            .unwrap()
            .message
            .contains("smaller batches"));
        // Too large on the wire.
        let (s, _, _) = send_otlp(&app, PB, None, Some("t"), vec![0u8; 100 << 10]).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        // Unsupported media types and encodings.
        let (s, ct, _) = send_otlp(&app, "text/plain", None, Some("t"), pb.clone()).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(ct.starts_with("text/plain"));
        let (s, _, _) = send_otlp(
            &app,
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            Some("br"),
            Some("t"),
            pb.clone(),
        )
        .await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let (s, _, body) = send_otlp(&app, PB, Some("br"), Some("t"), pb.clone()).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(otlp::RpcStatus::decode(body)
            .unwrap()
            .message
            .contains("Content-Encoding"));
        // Tenant.
        let (s, _, body) = send_otlp(&app, PB, None, None, pb.clone()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(otlp::RpcStatus::decode(body).unwrap().code, 16);
        // Bad bodies.
        let (s, _, body) = send_otlp(&app, PB, None, Some("t"), vec![0xff; 32]).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(otlp::RpcStatus::decode(body)
            .unwrap()
            .message
            .contains("not a valid OTLP"));
        let (s, _, body) = send_otlp(
            &app,
            JSON,
            None,
            Some("t"),
            b"{\"resourceMetrics\": 1}".to_vec(),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], 3);
        let (s, _, _) = send_otlp(&app, PB, Some("gzip"), Some("t"), pb.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "not gzip");
        assert_eq!(total_records(&log).await, 0, "nothing written");
    }

    #[tokio::test]
    async fn otlp_invalid_series_keep_error_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _log) = app(dir.path(), true);
        // 40 attributes: over the 30-label limit.
        let mut req = otlp_request(false);
        let Some(Data::Gauge(g)) = &mut req.resource_metrics[0].scope_metrics[0].metrics[0].data
        else {
            unreachable!()
        };
        g.data_points[0].attributes = (0..40)
            .map(|i| KeyValue {
                key: format!("a{i}"),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(i)),
                }),
                key_strindex: 0,
            })
            .collect();
        let (s, _, body) = send_otlp(&app, PB, None, Some("t"), req.encode_to_vec()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "nothing written: an error");
        let msg = otlp::RpcStatus::decode(body).unwrap().message;
        assert!(
            msg.contains("err-tidemark-max-label-names-per-series"),
            "{msg}"
        );
        // With a valid series next to it: a partial success.
        let good = otlp_request(false).resource_metrics[0].scope_metrics[0].metrics[0].clone();
        req.resource_metrics[0].scope_metrics[0].metrics.push(good);
        let (s, _, body) = send_otlp(&app, PB, None, Some("t"), req.encode_to_vec()).await;
        assert_eq!(s, StatusCode::OK);
        let ps = ExportMetricsServiceResponse::decode(body)
            .unwrap()
            .partial_success
            .unwrap();
        assert_eq!(ps.rejected_data_points, 1);
        assert!(
            ps.error_message
                .contains("err-tidemark-max-label-names-per-series"),
            "{}",
            ps.error_message
        );
    }

    #[tokio::test]
    async fn otlp_garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let (app, _log) = app(dir.path(), true);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x07_1d_e3);
        let valid = otlp_request(true).encode_to_vec();
        let json = otlp_json(true);
        let mut client_errors = 0;
        for i in 0..300 {
            let (ct, base) = if i % 2 == 0 {
                (PB, &valid)
            } else {
                (JSON, &json)
            };
            let mut body: Vec<u8> = match i % 3 {
                // Pure noise.
                0 => (0..rng.random_range(0..512))
                    .map(|_| rng.random())
                    .collect(),
                // A valid body with bytes flipped.
                1 => {
                    let mut b = base.clone();
                    for _ in 0..rng.random_range(1..8) {
                        let at = rng.random_range(0..b.len());
                        b[at] = rng.random();
                    }
                    b
                }
                // A valid body cut short.
                _ => base[..rng.random_range(0..base.len())].to_vec(),
            };
            let encoding = match i % 5 {
                0 => Some("gzip"),
                1 => Some("zstd"),
                _ => None,
            };
            if encoding.is_some() && rng.random_bool(0.5) {
                // A valid stream of garbage, or garbage claiming a codec.
                body = if encoding == Some("gzip") {
                    gzip(&body)
                } else {
                    zstd::encode_all(&body[..], 1).unwrap()
                };
            }
            let (s, _, text) = send_otlp(&app, ct, encoding, Some("t"), body).await;
            assert!(
                s == StatusCode::OK || s.is_client_error(),
                "{i}: {s} {text:?}"
            );
            if s.is_client_error() {
                client_errors += 1;
            }
        }
        assert!(
            client_errors > 150,
            "most garbage is refused: {client_errors}"
        );
    }
}
