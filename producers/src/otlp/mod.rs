//! OTLP/HTTP metrics ingestion (`POST /otlp/v1/metrics`): protobuf or JSON
//! `ExportMetricsServiceRequest`s, plain, gzip or zstd, translated into a
//! remote write 1.0 request ([`translate`](mod@translate)) that the distributor then
//! validates, shards and writes like any other push.
//!
//! Protobuf bodies are read in place ([`wire`], [`schema`],
//! [`attributes`]); JSON bodies are decoded into the generated types
//! ([`json`]) and encoded to protobuf ([`reencode`]), so that one
//! translator serves both. Attributes met earlier in a request are found
//! again by their bytes rather than read again (`memo`).

pub mod attributes;
#[cfg(test)]
mod differential;
pub mod json;
mod memo;
pub mod names;
#[cfg(test)]
mod oracle;
pub mod reencode;
pub mod schema;
pub mod translate;
pub mod wire;

use std::io::Read;

use axum::http::{header, HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use prost::Message;

use crate::error::PushError;

pub use translate::{translate, Translated};

/// The translated remote write request may be this many times
/// `-distributor.max-recv-msg-size`: OTLP is more compact than remote write
/// (a histogram point becomes a series per bucket, each with every label),
/// but a small request must not expand without bound.
pub const TRANSLATED_SIZE_FACTOR: usize = 10;

/// The encoding of a request body, and so of its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// The body format from `Content-Type`; anything but
/// `application/x-protobuf` and `application/json` is refused with 415.
pub fn request_format(headers: &HeaderMap) -> Result<Format, PushError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/x-protobuf") {
        Ok(Format::Protobuf)
    } else if media.eq_ignore_ascii_case("application/json") {
        Ok(Format::Json)
    } else {
        Err(PushError::UnsupportedMediaType(format!(
            "unsupported Content-Type {ct:?}: OTLP/HTTP metrics are accepted as application/x-protobuf or application/json"
        )))
    }
}

/// The body compression from `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

pub fn request_encoding(headers: &HeaderMap) -> Result<Encoding, PushError> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let v = v.to_str().unwrap_or("").trim();
    if v.is_empty() || v.eq_ignore_ascii_case("identity") {
        Ok(Encoding::Identity)
    } else if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") {
        Ok(Encoding::Gzip)
    } else if v.eq_ignore_ascii_case("zstd") {
        Ok(Encoding::Zstd)
    } else {
        Err(PushError::UnsupportedMediaType(format!(
            "unsupported Content-Encoding {v:?}: OTLP/HTTP metrics are accepted uncompressed, gzip or zstd"
        )))
    }
}

/// Reads at most `limit` bytes from `r`: more is 413, a corrupt stream 400.
fn read_bounded(r: impl Read, limit: usize) -> Result<Vec<u8>, PushError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| PushError::BadCompression(e.to_string()))?;
    if out.len() > limit {
        return Err(PushError::TooLarge {
            size: out.len(),
            limit,
        });
    }
    Ok(out)
}

/// The largest zstd window accepted: enough for any frame whose content
/// fits `limit`, never more than zstd's own default cap (128 MiB).
fn zstd_window_log(limit: usize) -> u32 {
    let needed = usize::BITS - limit.saturating_sub(1).leading_zeros();
    needed.clamp(23, 27)
}

/// Decompresses a body, never to more than `limit` bytes.
pub fn decompress(
    raw: bytes::Bytes,
    encoding: Encoding,
    limit: usize,
) -> Result<bytes::Bytes, PushError> {
    match encoding {
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => {
            read_bounded(flate2::read::MultiGzDecoder::new(&raw[..]), limit).map(Into::into)
        }
        Encoding::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(&raw[..])
                .map_err(|e| PushError::BadCompression(e.to_string()))?;
            d.window_log_max(zstd_window_log(limit))
                .map_err(|e| PushError::BadCompression(e.to_string()))?;
            read_bounded(d, limit).map(Into::into)
        }
    }
}

/// Reads a decompressed body and translates it ([`translate()`]): a body
/// that is not an export request in `format` is refused (400).
pub fn translate_body(
    body: &[u8],
    format: Format,
    promote: &[String],
    budget: usize,
) -> Result<Translated, PushError> {
    let bad = |e: wire::WireError| PushError::BadOtlp(e.to_string());
    match format {
        Format::Protobuf => translate(body, promote, budget).map_err(bad),
        Format::Json => {
            let req = json::decode_request(body).map_err(|e| PushError::BadOtlp(e.0))?;
            translate(&reencode::encode(req), promote, budget).map_err(bad)
        }
    }
}

/// The success response body, with a partial success when points were
/// dropped.
pub fn encode_response(format: Format, rejected: u64, message: &str) -> Vec<u8> {
    match format {
        Format::Protobuf => {
            let partial_success =
                (rejected > 0 || !message.is_empty()).then(|| ExportMetricsPartialSuccess {
                    rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
                    error_message: message.to_owned(),
                });
            ExportMetricsServiceResponse { partial_success }.encode_to_vec()
        }
        Format::Json => json::encode_response(rejected, message),
    }
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The gRPC code closest to an HTTP status.
pub fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        _ => 13,              // INTERNAL
    }
}

/// An error response body in the request's format (plain text when the
/// format itself was refused).
pub fn encode_status(
    format: Option<Format>,
    status: StatusCode,
    message: &str,
) -> (&'static str, Vec<u8>) {
    let code = grpc_code(status);
    match format {
        Some(Format::Protobuf) => (
            Format::Protobuf.content_type(),
            RpcStatus {
                code,
                message: message.to_owned(),
            }
            .encode_to_vec(),
        ),
        Some(Format::Json) => (
            Format::Json.content_type(),
            json::encode_status(code, message),
        ),
        None => (
            "text/plain; charset=utf-8",
            format!("{message}\n").into_bytes(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn bounded_gzip_and_zstd() {
        let data = vec![7u8; 10_000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&data).unwrap();
        let gz = bytes::Bytes::from(gz.finish().unwrap());
        assert_eq!(
            decompress(gz.clone(), Encoding::Gzip, 10_000).unwrap(),
            data
        );
        assert!(matches!(
            decompress(gz, Encoding::Gzip, 9_999),
            Err(PushError::TooLarge { .. })
        ));
        let zs = bytes::Bytes::from(zstd::encode_all(&data[..], 3).unwrap());
        assert_eq!(
            decompress(zs.clone(), Encoding::Zstd, 10_000).unwrap(),
            data
        );
        assert!(matches!(
            decompress(zs, Encoding::Zstd, 9_999),
            Err(PushError::TooLarge { .. })
        ));
        for enc in [Encoding::Gzip, Encoding::Zstd] {
            assert!(matches!(
                decompress(bytes::Bytes::from_static(b"garbage!"), enc, 100),
                Err(PushError::BadCompression(_))
            ));
        }
    }

    #[test]
    fn window_logs() {
        assert_eq!(zstd_window_log(64 << 10), 23);
        assert_eq!(zstd_window_log(100 << 20), 27);
        assert_eq!(zstd_window_log(usize::MAX), 27);
        assert_eq!(zstd_window_log(0), 23);
    }

    #[test]
    fn formats() {
        let h = |ct: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            request_format(&m)
        };
        assert_eq!(h("application/x-protobuf").unwrap(), Format::Protobuf);
        assert_eq!(h("application/json; charset=utf-8").unwrap(), Format::Json);
        assert!(h("text/plain").is_err());
        assert!(request_format(&HeaderMap::new()).is_err());
    }

    /// Rough throughput of OTLP (decode, translate, shard) against remote
    /// write 1.0 (shard) on the same series: `cargo test -p
    /// tidemark-producers --lib otlp_vs_rw1 -- --ignored --nocapture`
    /// (debug builds only hint at the ratio).
    #[test]
    #[ignore]
    fn otlp_vs_rw1_throughput() {
        use crate::config::DistributorConfig;
        use crate::distributor::prepare;
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
        use opentelemetry_proto::tonic::metrics::v1::{
            metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics,
            ScopeMetrics,
        };
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use std::time::Instant;

        let kv = |k: &str, v: String| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v)),
            }),
            key_strindex: 0,
        };
        let ts_ns = 1_700_000_000_000_000_000u64;
        let metrics: Vec<Metric> = (0..100)
            .map(|m| Metric {
                name: format!("metric.{m}"),
                unit: "s".into(),
                data: Some(Data::Gauge(Gauge {
                    data_points: (0..100)
                        .map(|p| NumberDataPoint {
                            attributes: vec![
                                kv("pod", format!("pod-{p}")),
                                kv("namespace", "default".into()),
                                kv("container", "app".into()),
                                kv("path", format!("/api/v1/{}", p % 7)),
                            ],
                            time_unix_nano: ts_ns,
                            value: Some(number_data_point::Value::AsDouble(p as f64)),
                            ..Default::default()
                        })
                        .collect(),
                })),
                ..Default::default()
            })
            .collect();
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "svc".into()),
                        kv("service.instance.id", "i-1".into()),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
        };
        let otlp_body = req.encode_to_vec();
        let rw1_body = translate(&otlp_body, &[], usize::MAX).unwrap().body;
        let cfg = DistributorConfig::default();
        let now = 1_700_000_000_000;
        let rounds = 20;
        let started = Instant::now();
        let mut samples = 0;
        for _ in 0..rounds {
            samples += prepare("t", &rw1_body, 8, &cfg, now)
                .unwrap()
                .outcome
                .samples;
        }
        let rw1 = samples as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut samples = 0;
        for _ in 0..rounds {
            let t = translate_body(&otlp_body, Format::Protobuf, &[], usize::MAX).unwrap();
            samples += prepare("t", &t.body, 8, &cfg, now).unwrap().outcome.samples;
        }
        let otlp = samples as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(translate(&otlp_body, &[], usize::MAX).unwrap());
        }
        let translate_s = started.elapsed().as_secs_f64();
        println!("read and translate {translate_s:.3}s for {rounds} rounds");
        println!(
            "rw1 {rw1:.0} samples/s, otlp {otlp:.0} samples/s, ratio {:.2}",
            otlp / rw1
        );
    }
}
