//! The OTLP/JSON encoding of `ExportMetricsServiceRequest` (protobuf's JSON
//! mapping with OTLP's exceptions): field names in lowerCamelCase (the
//! original snake_case names are accepted too), 64-bit integers as decimal
//! strings or numbers, enums as integers (names accepted too), doubles as
//! numbers or `"NaN"`/`"Infinity"`/`"-Infinity"`, bytes as base64, unknown
//! fields ignored. Exemplars are skipped: Tidemark does not store them.
//!
//! Decoding walks a parsed `serde_json::Value`, whose nesting serde_json
//! bounds (128 levels).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile, ExponentialHistogram, ExponentialHistogramDataPoint,
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{Map, Value};

/// Why a JSON body is not an export request; names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

type Obj = Map<String, Value>;

fn err<T>(field: &str, what: &str) -> Result<T, JsonError> {
    Err(JsonError(format!("field {field:?}: {what}")))
}

/// Field `camel` (or its snake_case `snake`), `null` counting as absent.
fn get<'a>(o: &'a Obj, camel: &str, snake: &str) -> Option<&'a Value> {
    o.get(camel)
        .or_else(|| o.get(snake))
        .filter(|v| !v.is_null())
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Obj, JsonError> {
    v.as_object()
        .map_or_else(|| err(field, "expected an object"), Ok)
}

fn array<'a>(o: &'a Obj, camel: &str, snake: &str) -> Result<&'a [Value], JsonError> {
    match get(o, camel, snake) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => err(camel, "expected an array"),
    }
}

fn string(o: &Obj, camel: &str, snake: &str) -> Result<String, JsonError> {
    match get(o, camel, snake) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => err(camel, "expected a string"),
    }
}

fn boolean(o: &Obj, camel: &str, snake: &str) -> Result<bool, JsonError> {
    match get(o, camel, snake) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => err(camel, "expected a boolean"),
    }
}

fn u64_value(v: &Value, field: &str) -> Result<u64, JsonError> {
    let parsed = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    parsed.map_or_else(|| err(field, "expected an unsigned 64-bit integer"), Ok)
}

fn u64_field(o: &Obj, camel: &str, snake: &str) -> Result<u64, JsonError> {
    get(o, camel, snake).map_or(Ok(0), |v| u64_value(v, camel))
}

fn i64_value(v: &Value, field: &str) -> Result<i64, JsonError> {
    let parsed = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.map_or_else(|| err(field, "expected a signed 64-bit integer"), Ok)
}

fn u32_field(o: &Obj, camel: &str, snake: &str) -> Result<u32, JsonError> {
    let v = u64_field(o, camel, snake)?;
    u32::try_from(v).map_or_else(|_| err(camel, "out of range for a 32-bit integer"), Ok)
}

fn f64_value(v: &Value, field: &str) -> Result<f64, JsonError> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .map_or_else(|| err(field, "expected a number"), Ok),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other
                .trim()
                .parse::<f64>()
                .map_or_else(|_| err(field, "expected a number"), Ok),
        },
        _ => err(field, "expected a number"),
    }
}

fn f64_field(o: &Obj, camel: &str, snake: &str) -> Result<Option<f64>, JsonError> {
    get(o, camel, snake)
        .map(|v| f64_value(v, camel))
        .transpose()
}

/// An enum: its number or its name.
fn enum_field(o: &Obj, camel: &str, snake: &str, names: &[&str]) -> Result<i32, JsonError> {
    match get(o, camel, snake) {
        None => Ok(0),
        Some(Value::String(s)) if names.contains(&s.as_str()) => {
            Ok(names.iter().position(|n| n == s).unwrap_or(0) as i32)
        }
        Some(v @ (Value::Number(_) | Value::String(_))) => {
            let n = i64_value(v, camel)?;
            i32::try_from(n).map_or_else(|_| err(camel, "enum value out of range"), Ok)
        }
        Some(_) => err(camel, "expected an enum number"),
    }
}

const TEMPORALITY: &[&str] = &[
    "AGGREGATION_TEMPORALITY_UNSPECIFIED",
    "AGGREGATION_TEMPORALITY_DELTA",
    "AGGREGATION_TEMPORALITY_CUMULATIVE",
];

/// Parses an OTLP/JSON `ExportMetricsServiceRequest`.
pub fn decode_request(body: &[u8]) -> Result<ExportMetricsServiceRequest, JsonError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| JsonError(format!("invalid JSON: {e}")))?;
    let o = object(&v, "(request)")?;
    let resource_metrics = array(o, "resourceMetrics", "resource_metrics")?
        .iter()
        .map(resource_metrics)
        .collect::<Result<_, _>>()?;
    Ok(ExportMetricsServiceRequest { resource_metrics })
}

fn resource_metrics(v: &Value) -> Result<ResourceMetrics, JsonError> {
    let o = object(v, "resourceMetrics")?;
    let resource = match get(o, "resource", "resource") {
        None => None,
        Some(r) => {
            let r = object(r, "resource")?;
            Some(Resource {
                attributes: attributes(r)?,
                dropped_attributes_count: u32_field(
                    r,
                    "droppedAttributesCount",
                    "dropped_attributes_count",
                )?,
                ..Default::default()
            })
        }
    };
    Ok(ResourceMetrics {
        resource,
        scope_metrics: array(o, "scopeMetrics", "scope_metrics")?
            .iter()
            .map(scope_metrics)
            .collect::<Result<_, _>>()?,
        schema_url: string(o, "schemaUrl", "schema_url")?,
    })
}

fn scope_metrics(v: &Value) -> Result<ScopeMetrics, JsonError> {
    let o = object(v, "scopeMetrics")?;
    let scope = match get(o, "scope", "scope") {
        None => None,
        Some(s) => {
            let s = object(s, "scope")?;
            Some(InstrumentationScope {
                name: string(s, "name", "name")?,
                version: string(s, "version", "version")?,
                attributes: attributes(s)?,
                dropped_attributes_count: u32_field(
                    s,
                    "droppedAttributesCount",
                    "dropped_attributes_count",
                )?,
            })
        }
    };
    Ok(ScopeMetrics {
        scope,
        metrics: array(o, "metrics", "metrics")?
            .iter()
            .map(metric)
            .collect::<Result<_, _>>()?,
        schema_url: string(o, "schemaUrl", "schema_url")?,
    })
}

fn metric(v: &Value) -> Result<Metric, JsonError> {
    let o = object(v, "metrics")?;
    let data = if let Some(g) = get(o, "gauge", "gauge") {
        let g = object(g, "gauge")?;
        Some(Data::Gauge(Gauge {
            data_points: points(g, number_point)?,
        }))
    } else if let Some(s) = get(o, "sum", "sum") {
        let s = object(s, "sum")?;
        Some(Data::Sum(Sum {
            data_points: points(s, number_point)?,
            aggregation_temporality: enum_field(
                s,
                "aggregationTemporality",
                "aggregation_temporality",
                TEMPORALITY,
            )?,
            is_monotonic: boolean(s, "isMonotonic", "is_monotonic")?,
        }))
    } else if let Some(h) = get(o, "histogram", "histogram") {
        let h = object(h, "histogram")?;
        Some(Data::Histogram(Histogram {
            data_points: points(h, histogram_point)?,
            aggregation_temporality: enum_field(
                h,
                "aggregationTemporality",
                "aggregation_temporality",
                TEMPORALITY,
            )?,
        }))
    } else if let Some(h) = get(o, "exponentialHistogram", "exponential_histogram") {
        let h = object(h, "exponentialHistogram")?;
        Some(Data::ExponentialHistogram(ExponentialHistogram {
            data_points: points(h, exponential_point)?,
            aggregation_temporality: enum_field(
                h,
                "aggregationTemporality",
                "aggregation_temporality",
                TEMPORALITY,
            )?,
        }))
    } else if let Some(s) = get(o, "summary", "summary") {
        let s = object(s, "summary")?;
        Some(Data::Summary(Summary {
            data_points: points(s, summary_point)?,
        }))
    } else {
        None
    };
    Ok(Metric {
        name: string(o, "name", "name")?,
        description: string(o, "description", "description")?,
        unit: string(o, "unit", "unit")?,
        metadata: Vec::new(),
        data,
    })
}

fn points<T>(o: &Obj, f: fn(&Obj) -> Result<T, JsonError>) -> Result<Vec<T>, JsonError> {
    array(o, "dataPoints", "data_points")?
        .iter()
        .map(|p| f(object(p, "dataPoints")?))
        .collect()
}

fn times(o: &Obj) -> Result<(u64, u64), JsonError> {
    Ok((
        u64_field(o, "startTimeUnixNano", "start_time_unix_nano")?,
        u64_field(o, "timeUnixNano", "time_unix_nano")?,
    ))
}

fn number_point(o: &Obj) -> Result<NumberDataPoint, JsonError> {
    let (start, time) = times(o)?;
    let value = if let Some(v) = get(o, "asDouble", "as_double") {
        Some(number_data_point::Value::AsDouble(f64_value(
            v, "asDouble",
        )?))
    } else if let Some(v) = get(o, "asInt", "as_int") {
        Some(number_data_point::Value::AsInt(i64_value(v, "asInt")?))
    } else {
        None
    };
    Ok(NumberDataPoint {
        attributes: attributes(o)?,
        start_time_unix_nano: start,
        time_unix_nano: time,
        exemplars: Vec::new(),
        flags: u32_field(o, "flags", "flags")?,
        value,
    })
}

fn histogram_point(o: &Obj) -> Result<HistogramDataPoint, JsonError> {
    let (start, time) = times(o)?;
    Ok(HistogramDataPoint {
        attributes: attributes(o)?,
        start_time_unix_nano: start,
        time_unix_nano: time,
        count: u64_field(o, "count", "count")?,
        sum: f64_field(o, "sum", "sum")?,
        bucket_counts: array(o, "bucketCounts", "bucket_counts")?
            .iter()
            .map(|v| u64_value(v, "bucketCounts"))
            .collect::<Result<_, _>>()?,
        explicit_bounds: array(o, "explicitBounds", "explicit_bounds")?
            .iter()
            .map(|v| f64_value(v, "explicitBounds"))
            .collect::<Result<_, _>>()?,
        exemplars: Vec::new(),
        flags: u32_field(o, "flags", "flags")?,
        min: f64_field(o, "min", "min")?,
        max: f64_field(o, "max", "max")?,
    })
}

/// Exponential histograms are dropped whole; only what identifies the
/// point is read.
fn exponential_point(o: &Obj) -> Result<ExponentialHistogramDataPoint, JsonError> {
    let (start, time) = times(o)?;
    Ok(ExponentialHistogramDataPoint {
        attributes: attributes(o)?,
        start_time_unix_nano: start,
        time_unix_nano: time,
        count: u64_field(o, "count", "count")?,
        sum: f64_field(o, "sum", "sum")?,
        positive: None::<exponential_histogram_data_point::Buckets>,
        flags: u32_field(o, "flags", "flags")?,
        ..Default::default()
    })
}

fn summary_point(o: &Obj) -> Result<SummaryDataPoint, JsonError> {
    let (start, time) = times(o)?;
    Ok(SummaryDataPoint {
        attributes: attributes(o)?,
        start_time_unix_nano: start,
        time_unix_nano: time,
        count: u64_field(o, "count", "count")?,
        sum: f64_field(o, "sum", "sum")?.unwrap_or(0.0),
        quantile_values: array(o, "quantileValues", "quantile_values")?
            .iter()
            .map(|q| {
                let q = object(q, "quantileValues")?;
                Ok(ValueAtQuantile {
                    quantile: f64_field(q, "quantile", "quantile")?.unwrap_or(0.0),
                    value: f64_field(q, "value", "value")?.unwrap_or(0.0),
                })
            })
            .collect::<Result<_, JsonError>>()?,
        flags: u32_field(o, "flags", "flags")?,
    })
}

fn attributes(o: &Obj) -> Result<Vec<KeyValue>, JsonError> {
    key_values(array(o, "attributes", "attributes")?)
}

fn key_values(a: &[Value]) -> Result<Vec<KeyValue>, JsonError> {
    a.iter()
        .map(|kv| {
            let kv = object(kv, "attributes")?;
            Ok(KeyValue {
                key: string(kv, "key", "key")?,
                value: get(kv, "value", "value").map(any_value).transpose()?,
                key_strindex: 0,
            })
        })
        .collect()
}

fn any_value(v: &Value) -> Result<AnyValue, JsonError> {
    let o = object(v, "value")?;
    let value = if let Some(s) = get(o, "stringValue", "string_value") {
        match s {
            Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
            _ => return err("stringValue", "expected a string"),
        }
    } else if let Some(b) = get(o, "boolValue", "bool_value") {
        match b {
            Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
            _ => return err("boolValue", "expected a boolean"),
        }
    } else if let Some(i) = get(o, "intValue", "int_value") {
        Some(any_value::Value::IntValue(i64_value(i, "intValue")?))
    } else if let Some(d) = get(o, "doubleValue", "double_value") {
        Some(any_value::Value::DoubleValue(f64_value(d, "doubleValue")?))
    } else if let Some(a) = get(o, "arrayValue", "array_value") {
        let a = object(a, "arrayValue")?;
        Some(any_value::Value::ArrayValue(ArrayValue {
            values: array(a, "values", "values")?
                .iter()
                .map(any_value)
                .collect::<Result<_, _>>()?,
        }))
    } else if let Some(kv) = get(o, "kvlistValue", "kvlist_value") {
        let kv = object(kv, "kvlistValue")?;
        Some(any_value::Value::KvlistValue(KeyValueList {
            values: key_values(array(kv, "values", "values")?)?,
        }))
    } else if let Some(b) = get(o, "bytesValue", "bytes_value") {
        match b {
            Value::String(s) => Some(any_value::Value::BytesValue(
                base64_decode(s).map_or_else(|| err("bytesValue", "invalid base64"), Ok)?,
            )),
            _ => return err("bytesValue", "expected a base64 string"),
        }
    } else {
        None
    };
    Ok(AnyValue { value })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard or URL-safe base64, padding optional; `None` if invalid.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return None;
    }
    Some(out)
}

/// The JSON `ExportMetricsServiceResponse`.
pub fn encode_response(rejected: u64, message: &str) -> Vec<u8> {
    let v = if rejected == 0 && message.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({
            "partialSuccess": {
                "rejectedDataPoints": rejected.to_string(),
                "errorMessage": message,
            }
        })
    };
    v.to_string().into_bytes()
}

/// A JSON `google.rpc.Status`.
pub fn encode_status(code: i32, message: &str) -> Vec<u8> {
    serde_json::json!({ "code": code, "message": message })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_decodes() {
        // Shaped as the OTLP/JSON examples of the specification.
        let body = br#"{
          "resourceMetrics": [{
            "resource": {"attributes": [
              {"key": "service.name", "value": {"stringValue": "my.service"}},
              {"key": "n", "value": {"intValue": "42"}},
              {"key": "b", "value": {"bytesValue": "aGkh"}},
              {"key": "arr", "value": {"arrayValue": {"values": [{"doubleValue": 1.5}]}}}
            ]},
            "scopeMetrics": [{
              "scope": {"name": "my.library", "version": "1.0.0"},
              "metrics": [
                {"name": "my.counter", "unit": "1", "description": "I am a Counter",
                 "sum": {"aggregationTemporality": 2, "isMonotonic": true,
                   "dataPoints": [{"asDouble": 5, "startTimeUnixNano": "1544712660300000000",
                     "timeUnixNano": "1544712660300000000",
                     "attributes": [{"key": "my.counter.attr", "value": {"stringValue": "some value"}}],
                     "exemplars": [{"timeUnixNano": "1", "asDouble": 1, "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"}]}]}},
                {"name": "my.gauge", "gauge": {"dataPoints": [{"asInt": "-7", "timeUnixNano": 1544712660300000000}]}},
                {"name": "my.histogram", "histogram": {"aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
                   "dataPoints": [{"timeUnixNano": "1544712660300000000", "count": "2", "sum": 2,
                     "bucketCounts": ["1", 1], "explicitBounds": [1], "min": 0, "max": 2}]}},
                {"name": "my.summary", "summary": {"dataPoints": [{"timeUnixNano": "1", "count": "1", "sum": "NaN",
                   "quantileValues": [{"quantile": 0.5, "value": "Infinity"}]}]}},
                {"name": "snake", "gauge": {"data_points": [{"as_double": 1.0, "time_unix_nano": "5"}]}}
              ]
            }]
          }]
        }"#;
        let req = decode_request(body).unwrap();
        let rm = &req.resource_metrics[0];
        let attrs = &rm.resource.as_ref().unwrap().attributes;
        assert_eq!(attrs.len(), 4);
        assert_eq!(
            attrs[1].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(42))
        );
        assert_eq!(
            attrs[2].value.as_ref().unwrap().value,
            Some(any_value::Value::BytesValue(b"hi!".to_vec()))
        );
        let m = &rm.scope_metrics[0].metrics;
        assert_eq!(
            rm.scope_metrics[0].scope.as_ref().unwrap().name,
            "my.library"
        );
        let Some(Data::Sum(s)) = &m[0].data else {
            panic!()
        };
        assert!(s.is_monotonic);
        assert_eq!(s.aggregation_temporality, 2);
        assert_eq!(s.data_points[0].time_unix_nano, 1544712660300000000);
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsDouble(5.0))
        );
        let Some(Data::Gauge(g)) = &m[1].data else {
            panic!()
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsInt(-7))
        );
        let Some(Data::Histogram(h)) = &m[2].data else {
            panic!()
        };
        assert_eq!(h.aggregation_temporality, 2);
        assert_eq!(h.data_points[0].bucket_counts, vec![1, 1]);
        assert_eq!(h.data_points[0].explicit_bounds, vec![1.0]);
        let Some(Data::Summary(su)) = &m[3].data else {
            panic!()
        };
        assert!(su.data_points[0].sum.is_nan());
        assert_eq!(su.data_points[0].quantile_values[0].value, f64::INFINITY);
        let Some(Data::Gauge(g)) = &m[4].data else {
            panic!()
        };
        assert_eq!(g.data_points[0].time_unix_nano, 5);
    }

    #[test]
    fn bad_json_is_an_error() {
        for body in [
            &b"not json"[..],
            b"[]",
            br#"{"resourceMetrics": 3}"#,
            br#"{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"gauge": {"dataPoints": [{"timeUnixNano": "x"}]}}]}]}]}"#,
            br#"{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"sum": {"aggregationTemporality": 99999999999}}]}]}]}"#,
            br#"{"resourceMetrics": [{"resource": {"attributes": [{"key": "k", "value": {"bytesValue": "!!"}}]}}]}"#,
        ] {
            assert!(decode_request(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(
            decode_request(b"{}").unwrap(),
            ExportMetricsServiceRequest::default()
        );
    }

    #[test]
    fn base64_round_trips() {
        for n in 0..20u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"hi!"), "aGkh");
        assert_eq!(base64_encode(b"h"), "aA==");
    }

    #[test]
    fn responses() {
        assert_eq!(encode_response(0, ""), b"{}");
        let v: Value = serde_json::from_slice(&encode_response(3, "dropped")).unwrap();
        assert_eq!(v["partialSuccess"]["rejectedDataPoints"], "3");
        assert_eq!(v["partialSuccess"]["errorMessage"], "dropped");
    }
}
