//! JSON bodies in the exact shapes of the Prometheus HTTP API.

use std::fmt::Write as _;

use axum::http::StatusCode;
use tidemark_storage::{Labels, StorageError};

use crate::engine::{ErrorKind, InstantSample, QueryError, QueryResult, QueryValue, RangeSeries};

/// A failed request: status, `errorType` and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(kind.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error_type: kind.as_str(),
            message: message.into(),
        }
    }

    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::BadData, message)
    }

    /// `invalid parameter "name": reason`, as Prometheus words it.
    pub fn invalid_param(name: &str, reason: impl std::fmt::Display) -> Self {
        ApiError::bad_data(format!("invalid parameter {name:?}: {reason}"))
    }

    /// A missing or invalid tenant: 401, as Mimir answers.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            error_type: ErrorKind::BadData.as_str(),
            message: message.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        let mut out = String::from(r#"{"status":"error","errorType":"#);
        push_json_str(&mut out, self.error_type);
        out.push_str(r#","error":"#);
        push_json_str(&mut out, &self.message);
        out.push('}');
        out
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            // Prometheus reports queries that do not parse as a bad parameter.
            QueryError::Parse(_) => ApiError::invalid_param("query", &e),
            e => ApiError::new(e.kind(), e.to_string()),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::from(QueryError::from(e))
    }
}

/// `{"status":"success","data":<data>}`, with `warnings` when there are any.
pub fn success(data: &str, warnings: &[String]) -> String {
    let mut out = String::with_capacity(data.len() + 32);
    out.push_str(r#"{"status":"success","data":"#);
    out.push_str(data);
    push_annotations(&mut out, warnings, &[]);
    out.push('}');
    out
}

/// `,"warnings":[...]` and `,"infos":[...]`, each when not empty.
fn push_annotations(out: &mut String, warnings: &[String], infos: &[String]) {
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if list.is_empty() {
            continue;
        }
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":[");
        for (i, w) in list.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_str(out, w);
        }
        out.push(']');
    }
}

/// Size of the pieces a query answer is sent in.
pub const ANSWER_CHUNK_BYTES: usize = 64 << 10;

/// A query answer (`{"status":"success","data":{"resultType":...,
/// "result":...}}`, with Prometheus' `stats` object when `with_stats`,
/// warnings and infos) rendered in pieces of about `chunk_bytes`: a
/// series is written, and its memory freed, only when the piece before it
/// has been taken, so that a large answer is never in memory twice (as
/// values and as JSON) nor whole as JSON.
pub fn query_answer(result: QueryResult, with_stats: bool, chunk_bytes: usize) -> impl Iterator<Item = String> + Send {
    enum Items {
        Vector(std::vec::IntoIter<InstantSample>),
        Matrix(std::vec::IntoIter<RangeSeries>),
        Written,
    }
    let QueryResult { value, annotations, stats } = result;
    let mut out = String::with_capacity(chunk_bytes.min(1 << 20) + 1024);
    out.push_str(r#"{"status":"success","data":{"resultType":""#);
    out.push_str(value.result_type());
    out.push_str(r#"","result":"#);
    let mut items = match value {
        QueryValue::Scalar { t, v } => {
            push_point(&mut out, t, v);
            Items::Written
        }
        QueryValue::String { t, v } => {
            out.push('[');
            push_timestamp(&mut out, t);
            out.push(',');
            push_json_str(&mut out, &v);
            out.push(']');
            Items::Written
        }
        QueryValue::Vector(samples) => {
            out.push('[');
            Items::Vector(samples.into_iter())
        }
        QueryValue::Matrix(series) => {
            out.push('[');
            Items::Matrix(series.into_iter())
        }
    };
    let (mut first, mut done) = (true, false);
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        loop {
            let wrote = match &mut items {
                Items::Vector(it) => it.next().map(|s| {
                    push_item_labels(&mut out, first, &s.labels);
                    out.push_str(r#","value":"#);
                    push_point(&mut out, s.t, s.v);
                    out.push('}');
                }),
                Items::Matrix(it) => it.next().map(|s| {
                    push_item_labels(&mut out, first, &s.labels);
                    out.push_str(r#","values":["#);
                    for (j, p) in s.points.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        push_point(&mut out, p.t, p.v);
                    }
                    out.push_str("]}");
                }),
                Items::Written => None,
            };
            if wrote.is_none() {
                break;
            }
            first = false;
            if out.len() >= chunk_bytes {
                return Some(std::mem::replace(&mut out, String::with_capacity(chunk_bytes.min(1 << 20) + 1024)));
            }
        }
        if !matches!(items, Items::Written) {
            out.push(']');
        }
        if with_stats {
            let secs = stats.eval_seconds;
            let _ = write!(
                out,
                r#","stats":{{"timings":{{"evalTotalTime":{secs},"resultSortTime":0,"queryPreparationTime":0,"innerEvalTime":{secs},"execQueueTime":0,"execTotalTime":{secs}}},"samples":{{"totalQueryableSamples":{}}}}}"#,
                stats.total_samples
            );
        }
        out.push('}');
        push_annotations(&mut out, &annotations.warnings, &annotations.infos);
        out.push('}');
        done = true;
        Some(std::mem::take(&mut out))
    })
}

/// The start of a result item: `,` unless `first`, then `{"metric":{...}`.
fn push_item_labels(out: &mut String, first: bool, labels: &Labels) {
    if !first {
        out.push(',');
    }
    out.push_str(r#"{"metric":"#);
    push_labels(out, labels);
}

/// A JSON array of strings.
pub fn string_list(values: &[String]) -> String {
    let mut out = String::from("[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, v);
    }
    out.push(']');
    out
}

/// `{"metric":[{"type":..,"help":..,"unit":..}],...}`, Prometheus'
/// metadata shape.
pub fn metadata(groups: &[(String, Vec<tidemark_storage::MetricMetadata>)]) -> String {
    let mut out = String::from("{");
    for (i, (name, list)) in groups.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, name);
        out.push_str(":[");
        for (j, m) in list.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(r#"{"type":"#);
            push_json_str(&mut out, &m.kind);
            out.push_str(r#","help":"#);
            push_json_str(&mut out, &m.help);
            out.push_str(r#","unit":"#);
            push_json_str(&mut out, &m.unit);
            out.push('}');
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// A JSON array of label objects.
pub fn label_sets(sets: &[Labels]) -> String {
    let mut out = String::from("[");
    for (i, l) in sets.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_labels(&mut out, l);
    }
    out.push(']');
    out
}

/// `{"name":"value",...}` in label order.
pub fn push_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, &l.name);
        out.push(':');
        push_json_str(out, &l.value);
    }
    out.push('}');
}

/// `[<unix seconds>,"<value>"]`.
fn push_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    push_timestamp(out, t);
    out.push_str(",\"");
    out.push_str(&format_value(v));
    out.push_str("\"]");
}

/// Milliseconds as unix seconds, as Prometheus writes them: the whole
/// seconds, then `.` and exactly three digits when the milliseconds are
/// not zero (`1700000000`, `1700000000.100`).
pub fn push_timestamp(out: &mut String, t: i64) {
    let abs = t.unsigned_abs();
    if t < 0 {
        out.push('-');
    }
    let _ = write!(out, "{}", abs / 1000);
    let frac = abs % 1000;
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
}

/// A value as Go's `strconv.FormatFloat(v, 'f', -1, 64)`, with Prometheus'
/// spellings of the specials.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // Rust prints the shortest round-tripping digits without exponent.
        format!("{v}")
    }
}

/// Appends `s` as a JSON string.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Annotations, QueryStats};
    use tidemark_storage::Sample;

    fn result(value: QueryValue) -> QueryResult {
        QueryResult { value, annotations: Annotations::default(), stats: QueryStats::default() }
    }

    fn answer(value: QueryValue) -> String {
        query_answer(result(value), false, ANSWER_CHUNK_BYTES).collect()
    }

    #[test]
    fn answers_in_pieces_are_the_whole_answer() {
        let series: Vec<RangeSeries> = (0..50)
            .map(|i| RangeSeries {
                labels: Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]),
                points: (0..20).map(|k| Sample { t: k * 15_000, v: k as f64 / 3.0 }).collect(),
            })
            .collect();
        let mut r = result(QueryValue::Matrix(series));
        r.annotations.warnings.push("w \"1\"".into());
        r.annotations.infos.push("i".into());
        r.stats = QueryStats { total_samples: 1000, eval_seconds: 0.5 };
        let whole: Vec<String> = query_answer(r.clone(), true, usize::MAX).collect();
        assert_eq!(whole.len(), 1);
        let pieces: Vec<String> = query_answer(r.clone(), true, 1000).collect();
        assert!(pieces.len() > 10, "{} pieces", pieces.len());
        assert!(pieces[..pieces.len() - 1].iter().all(|p| p.len() >= 1000));
        assert_eq!(pieces.concat(), whole[0]);
        let json: serde_json::Value = serde_json::from_str(&whole[0]).unwrap();
        assert_eq!(json["data"]["result"].as_array().map(Vec::len), Some(50));
        assert_eq!(json["data"]["result"][49]["values"][19][1], "6.333333333333333");
        assert_eq!(json["data"]["stats"]["samples"]["totalQueryableSamples"], 1000);
        assert_eq!(json["warnings"][0], "w \"1\"");
        assert_eq!(json["infos"][0], "i");
        // Without stats, and an empty vector.
        let json: serde_json::Value = serde_json::from_str(&answer(QueryValue::Vector(Vec::new()))).unwrap();
        assert_eq!(json, serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": []}}));
    }

    #[test]
    fn values_format_like_go() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(-0.0), "-0");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(1.5e-7), "0.00000015");
        assert_eq!(format_value(0.26666666666666666), "0.26666666666666666");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn timestamps_format_like_prometheus() {
        let ts = |t| {
            let mut s = String::new();
            push_timestamp(&mut s, t);
            s
        };
        assert_eq!(ts(1_700_000_000_000), "1700000000");
        assert_eq!(ts(1_700_000_000_123), "1700000000.123");
        assert_eq!(ts(1_700_000_000_100), "1700000000.100");
        assert_eq!(ts(1_700_000_000_005), "1700000000.005");
        assert_eq!(ts(-1500), "-1.500");
        assert_eq!(ts(0), "0");
    }

    #[test]
    fn shapes() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a\"b")]);
        let v = QueryValue::Vector(vec![InstantSample {
            labels: l.clone(),
            t: 1_000,
            v: 1.0,
        }]);
        assert_eq!(
            answer(v),
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[1,"1"]}]}}"#
        );
        let m = QueryValue::Matrix(vec![RangeSeries {
            labels: Labels::default(),
            points: vec![
                Sample { t: 0, v: 0.5 },
                Sample {
                    t: 1_500,
                    v: f64::NAN,
                },
            ],
        }]);
        assert_eq!(
            answer(m),
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[0,"0.5"],[1.500,"NaN"]]}]}}"#
        );
        let s = QueryValue::Scalar { t: 2_000, v: -1.0 };
        assert_eq!(
            answer(s),
            r#"{"status":"success","data":{"resultType":"scalar","result":[2,"-1"]}}"#
        );
        assert_eq!(success("[]", &[]), r#"{"status":"success","data":[]}"#);
        assert_eq!(
            success("[]", &["w".to_owned()]),
            r#"{"status":"success","data":[],"warnings":["w"]}"#
        );
        let e = ApiError::bad_data("x\ny");
        assert_eq!(
            e.body(),
            r#"{"status":"error","errorType":"bad_data","error":"x\ny"}"#
        );
        let json: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(json["error"], "x\ny");
    }
}
