//! Property tests of every decoder of the write path: snappy bodies, remote
//! write 1.0 and 2.0 requests, OTLP protobuf and JSON requests and their
//! gzip/zstd compression, and the HTTP router in front of them. Random and
//! mutated inputs never panic, never allocate without bound, and give a
//! clear error; what does decode yields records of the caller's tenant that
//! the ingesters can decode.

use std::io::Write;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use proptest::prelude::*;
use prost::Message;
use serde_json::{json, Value};
use tidemark_producers::config::DistributorConfig;
use tidemark_producers::distributor::{prepare, Prepared};
use tidemark_producers::http::{decode_body, router, PushState};
use tidemark_producers::metrics::DistributorMetrics;
use tidemark_producers::otlp::{self, json::decode_request, Encoding, Format};
use tidemark_producers::rw2::prepare_v2;
use tidemark_producers::{Distributor, PushError};
use tidemark_schemas::prometheus::{
    Exemplar, Label, MetricMetadata, Sample, TimeSeries, WriteRequest,
};
use tidemark_schemas::record::{decode_version, RecordBody, VERSION_HEADER};
use tidemark_schemas::write_v2;
use tidemark_fuzz_support::{config, largest_allocation, mutate, mutation, Counting};
use tower::ServiceExt;

// ---------------------------------------------------------------------------
// Allocation watch (this thread only).

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations of a decoder must stay linear in its input.
fn assert_linear(what: &str, input: usize, largest: usize) {
    assert!(
        largest <= (1 << 20) + 256 * input,
        "{what}: a {largest}-byte allocation for {input} input bytes"
    );
}

// ---------------------------------------------------------------------------
// Mutations.


// ---------------------------------------------------------------------------
// Remote write 1.0 and 2.0.

const TENANT: &str = "fuzz-tenant";
const PARTITIONS: i32 = 3;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn label_value() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        "[a-z_]{1,8}".prop_map(|s| Bytes::from(s.into_bytes())),
        prop::collection::vec(any::<u8>(), 0..10).prop_map(Bytes::from),
    ]
}

fn write_request() -> impl Strategy<Value = WriteRequest> {
    let series = (
        "[a-z_]{1,10}",
        prop::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,6}", label_value()), 0..4),
        prop::collection::vec((-600_000i64..600_000, any::<f64>()), 0..4),
        prop::collection::vec((-600_000i64..600_000, any::<f64>()), 0..2),
    )
        .prop_map(|(name, labels, samples, exemplars)| {
            let now = now_ms();
            let mut all = vec![Label {
                name: Bytes::from_static(b"__name__"),
                value: Bytes::from(name.into_bytes()),
            }];
            all.extend(labels.into_iter().map(|(n, value)| Label {
                name: Bytes::from(n.into_bytes()),
                value,
            }));
            TimeSeries {
                labels: all,
                samples: samples
                    .into_iter()
                    .map(|(d, value)| Sample {
                        value,
                        timestamp: now + d,
                    })
                    .collect(),
                exemplars: exemplars
                    .into_iter()
                    .map(|(d, value)| Exemplar {
                        labels: vec![],
                        value,
                        timestamp: now + d,
                    })
                    .collect(),
            }
        });
    (
        prop::collection::vec(series, 0..5),
        prop::collection::vec(("[a-z_]{1,8}", 0i32..9, "[ -~]{0,10}"), 0..2),
    )
        .prop_map(|(timeseries, md)| WriteRequest {
            timeseries,
            metadata: md
                .into_iter()
                .map(|(name, t, help)| MetricMetadata {
                    r#type: t,
                    metric_family_name: Bytes::from(name.into_bytes()),
                    help: Bytes::from(help.into_bytes()),
                    unit: Bytes::new(),
                })
                .collect(),
        })
}

fn request_v2() -> impl Strategy<Value = write_v2::Request> {
    let series = (
        prop::collection::vec(0u32..10, 0..8),
        prop::collection::vec((-600_000i64..600_000, any::<f64>()), 0..4),
        prop::option::of((0i32..9, 0u32..10, 0u32..10)),
        any::<bool>(),
    )
        .prop_map(|(labels_refs, samples, md, histogram)| {
            let now = now_ms();
            write_v2::TimeSeries {
                labels_refs,
                samples: samples
                    .into_iter()
                    .map(|(d, value)| write_v2::Sample {
                        value,
                        timestamp: now + d,
                        start_timestamp: 0,
                    })
                    .collect(),
                histograms: if histogram {
                    vec![write_v2::Histogram::default()]
                } else {
                    vec![]
                },
                exemplars: vec![],
                metadata: md.map(|(t, help_ref, unit_ref)| write_v2::Metadata {
                    r#type: t,
                    help_ref,
                    unit_ref,
                }),
            }
        });
    (
        prop::collection::vec("[a-z_]{0,6}", 0..8),
        prop::collection::vec(series, 0..4),
    )
        .prop_map(|(mut symbols, timeseries)| {
            symbols.insert(0, String::new());
            symbols.insert(1, "__name__".into());
            write_v2::Request {
                symbols,
                timeseries,
            }
        })
}

/// Every record a prepare produced belongs to `TENANT`, lies in a
/// partition, names its version and decodes as the ingesters decode it;
/// the series it carries are those the outcome counts.
fn check_prepared(p: &Prepared) -> Result<(), TestCaseError> {
    let mut series = 0;
    for (partition, records) in &p.records {
        prop_assert!((0..PARTITIONS).contains(partition));
        for r in records {
            prop_assert_eq!(&r.key[..], TENANT.as_bytes());
            let header = r
                .headers
                .iter()
                .find(|h| h.key == VERSION_HEADER)
                .map(|h| &h.value[..]);
            let version = decode_version(header).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let body = RecordBody::decode(version, r.value.clone()).map_err(|e| {
                TestCaseError::fail(format!("a produced record does not decode: {e}"))
            })?;
            // (2.0 metadata-only series count as series.)
            series += body.into_timeseries().len();
        }
    }
    // A series too large for one record is split; never fewer.
    prop_assert!(
        series >= p.outcome.series,
        "{series} series in records, {} counted",
        p.outcome.series
    );
    for e in &p.errors {
        prop_assert!(!e.message.is_empty());
    }
    Ok(())
}

fn run_prepare(v2: bool, body: &[u8]) -> Result<Prepared, PushError> {
    let cfg = DistributorConfig::default();
    let (r, largest) = largest_allocation(|| {
        if v2 {
            prepare_v2(TENANT, body, PARTITIONS, &cfg, now_ms())
        } else {
            prepare(TENANT, body, PARTITIONS, &cfg, now_ms())
        }
    });
    assert_linear(
        if v2 { "prepare_v2" } else { "prepare" },
        body.len(),
        largest,
    );
    if let Err(e) = &r {
        assert!(
            matches!(e, PushError::BadProtobuf(_)),
            "a malformed body must be a protobuf error, got {e:?}"
        );
        assert!(!e.to_string().is_empty());
    }
    r
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn rw1_valid_requests_prepare(req in write_request()) {
        let p = run_prepare(false, &req.encode_to_vec()).expect("a well-formed request prepares");
        check_prepared(&p)?;
    }

    #[test]
    fn rw1_mutated_and_random_bodies(
        req in write_request(),
        muts in prop::collection::vec(mutation(), 1..4),
        random in prop::collection::vec(any::<u8>(), 0..300),
        use_random in any::<bool>(),
    ) {
        let body = if use_random { random } else { mutate(req.encode_to_vec(), &muts) };
        if let Ok(p) = run_prepare(false, &body) {
            check_prepared(&p)?;
        }
        // The same bytes as a 2.0 request.
        if let Ok(p) = run_prepare(true, &body) {
            check_prepared(&p)?;
        }
    }

    #[test]
    fn rw2_requests_and_mutations(
        req in request_v2(),
        muts in prop::collection::vec(mutation(), 1..4),
    ) {
        let enc = req.encode_to_vec();
        if let Ok(p) = run_prepare(true, &enc) {
            check_prepared(&p)?;
        }
        let bad = mutate(enc, &muts);
        if let Ok(p) = run_prepare(true, &bad) {
            check_prepared(&p)?;
        }
        if let Ok(p) = run_prepare(false, &bad) {
            check_prepared(&p)?;
        }
    }

    #[test]
    fn snappy_bodies(
        req in write_request(),
        muts in prop::collection::vec(mutation(), 0..4),
        random in prop::collection::vec(any::<u8>(), 0..300),
        use_random in any::<bool>(),
        limit in prop_oneof![Just(64usize), Just(4096), Just(1 << 20)],
    ) {
        let raw = if use_random {
            random
        } else {
            let enc = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("snappy");
            mutate(enc, &muts)
        };
        let (r, largest) = largest_allocation(|| decode_body(&raw, limit));
        prop_assert!(largest <= limit + 4096, "{largest} bytes allocated for a limit of {limit}");
        match r {
            Ok(b) => prop_assert!(b.len() <= limit),
            Err(PushError::BadSnappy(m)) => prop_assert!(!m.is_empty()),
            Err(PushError::TooLarge { size, limit: l }) => {
                prop_assert_eq!(l, limit);
                prop_assert!(size > limit);
            }
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }
}

#[test]
fn nasty_remote_write_bodies() {
    // Snappy header claiming 4 GiB: refused before allocating.
    let (r, largest) =
        largest_allocation(|| decode_body(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00], 1 << 20));
    assert!(matches!(r, Err(PushError::TooLarge { .. })), "{r:?}");
    assert!(largest < 4096, "{largest}");
    // A snappy bomb: 4 MiB of zeroes against a 1 MiB limit.
    let bomb = snap::raw::Encoder::new()
        .compress_vec(&vec![0u8; 4 << 20])
        .unwrap();
    let (r, largest) = largest_allocation(|| decode_body(&bomb, 1 << 20));
    assert!(matches!(r, Err(PushError::TooLarge { .. })), "{r:?}");
    assert!(largest < 2 << 20, "{largest}");
    // Garbage.
    assert!(matches!(
        decode_body(b"not snappy at all", 1 << 20),
        Err(PushError::BadSnappy(_)) | Ok(_)
    ));
    assert!(matches!(
        decode_body(&[], 1 << 20),
        Err(PushError::BadSnappy(_))
    ));

    for body in [
        vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
        std::iter::once(0x0a)
            .chain(std::iter::repeat_n(0xff, 20))
            .collect(),
        vec![0x0f],
        vec![0x0b],
        // A series whose label claims more bytes than remain.
        vec![0x0a, 0x04, 0x0a, 0x7f, 0x0a, 0x00],
        // v2: a symbol table that is not UTF-8.
        vec![0x22, 0x02, 0xff, 0xfe],
        // v2: a packed ref list with a huge length.
        vec![0x2a, 0x06, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
    ] {
        for v2 in [false, true] {
            let r = run_prepare(v2, &body);
            if let Ok(p) = &r {
                let got = check_prepared(p);
                assert!(got.is_ok(), "{got:?}");
            }
        }
    }
    // 2.0: references outside the symbol table are refused as a whole.
    let req = write_v2::Request {
        symbols: vec![String::new(), "__name__".into(), "m".into()],
        timeseries: vec![write_v2::TimeSeries {
            labels_refs: vec![1, 99],
            samples: vec![write_v2::Sample {
                value: 1.0,
                timestamp: now_ms(),
                start_timestamp: 0,
            }],
            ..Default::default()
        }],
    };
    let e = run_prepare(true, &req.encode_to_vec()).unwrap_err();
    assert!(e.to_string().contains("outside the symbol table"), "{e}");
}

// ---------------------------------------------------------------------------
// OTLP.

const SPEC_EXAMPLE: &str = r#"{
  "resourceMetrics": [{
    "resource": {"attributes": [
      {"key": "service.name", "value": {"stringValue": "my.service"}},
      {"key": "n", "value": {"intValue": "42"}},
      {"key": "b", "value": {"bytesValue": "aGkh"}},
      {"key": "arr", "value": {"arrayValue": {"values": [{"doubleValue": 1.5}]}}},
      {"key": "kv", "value": {"kvlistValue": {"values": [{"key": "x", "value": {"boolValue": true}}]}}}
    ]},
    "scopeMetrics": [{
      "scope": {"name": "my.library", "version": "1.0.0"},
      "metrics": [
        {"name": "my.counter", "unit": "1", "description": "I am a Counter",
         "sum": {"aggregationTemporality": 2, "isMonotonic": true,
           "dataPoints": [{"asDouble": 5, "startTimeUnixNano": "1544712660300000000",
             "timeUnixNano": "1544712660300000000",
             "attributes": [{"key": "my.counter.attr", "value": {"stringValue": "some value"}}]}]}},
        {"name": "my.gauge", "unit": "ms", "gauge": {"dataPoints": [{"asInt": "-7", "timeUnixNano": 1544712660300000000}]}},
        {"name": "my.histogram", "unit": "s", "histogram": {"aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
           "dataPoints": [{"timeUnixNano": "1544712660300000000", "count": "2", "sum": 2,
             "bucketCounts": ["1", 1], "explicitBounds": [1], "min": 0, "max": 2}]}},
        {"name": "my.exp", "exponentialHistogram": {"aggregationTemporality": 2,
           "dataPoints": [{"timeUnixNano": "1", "count": "3", "scale": 2, "zeroCount": "1",
             "positive": {"offset": -3, "bucketCounts": ["1", "1"]}}]}},
        {"name": "my.summary", "summary": {"dataPoints": [{"timeUnixNano": "1", "count": "1", "sum": "NaN",
           "quantileValues": [{"quantile": 0.5, "value": "Infinity"}]}]}}
      ]
    }]
  }]
}"#;

fn spec_value() -> &'static Value {
    static V: OnceLock<Value> = OnceLock::new();
    V.get_or_init(|| serde_json::from_str(SPEC_EXAMPLE).expect("spec example"))
}

fn spec_request() -> &'static ExportMetricsServiceRequest {
    static R: OnceLock<ExportMetricsServiceRequest> = OnceLock::new();
    R.get_or_init(|| decode_request(SPEC_EXAMPLE.as_bytes()).expect("spec example decodes"))
}

const FIELDS: &[&str] = &[
    "resourceMetrics",
    "scopeMetrics",
    "metrics",
    "gauge",
    "sum",
    "histogram",
    "exponentialHistogram",
    "summary",
    "dataPoints",
    "attributes",
    "key",
    "value",
    "stringValue",
    "intValue",
    "doubleValue",
    "boolValue",
    "arrayValue",
    "kvlistValue",
    "bytesValue",
    "values",
    "timeUnixNano",
    "startTimeUnixNano",
    "asDouble",
    "asInt",
    "count",
    "bucketCounts",
    "explicitBounds",
    "scale",
    "zeroCount",
    "positive",
    "negative",
    "offset",
    "quantileValues",
    "quantile",
    "name",
    "unit",
    "description",
    "aggregationTemporality",
    "isMonotonic",
    "flags",
    "min",
    "max",
    "resource",
    "scope",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop::num::f64::NORMAL.prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "NaN",
            "Infinity",
            "-Infinity",
            "1e400",
            "18446744073709551616",
            "-9223372036854775809",
            "-1",
            "aGkh",
            "!!",
            "",
            "AGGREGATION_TEMPORALITY_DELTA",
            "__name__",
            "\u{0}",
            "é",
            "0x10",
        ])
        .prop_map(|s| json!(s)),
        "[ -~]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS), inner), 0..4).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// Every JSON pointer in `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                pointers(
                    x,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Reads and translates a body as the HTTP handler does: allocations stay
/// linear in the body, a refusal is a clear 400, and what translates is a
/// remote write request within the budget that prepares. A protobuf body
/// is read in place: it must translate exactly when prost decodes it.
fn translate_otlp(body: &[u8], format: Format) -> Result<Option<otlp::Translated>, TestCaseError> {
    let budget = 64 << 10;
    let promote = ["service.name".to_owned()];
    let (r, largest) =
        largest_allocation(|| otlp::translate_body(body, format, &promote, budget));
    assert_linear("otlp::translate_body", body.len(), largest);
    if format == Format::Protobuf {
        let decoded = ExportMetricsServiceRequest::decode(body);
        prop_assert_eq!(
            r.is_ok(),
            decoded.is_ok(),
            "read in place: {:?}; prost: {:?}",
            r.as_ref().err(),
            decoded.as_ref().err()
        );
    }
    let t = match r {
        Ok(t) => t,
        Err(e) => {
            prop_assert!(matches!(&e, PushError::BadOtlp(m) if !m.is_empty()), "{e:?}");
            return Ok(None);
        }
    };
    prop_assert!(
        t.body.len() <= budget,
        "{} bytes over a budget of {budget}",
        t.body.len()
    );
    let wr = WriteRequest::decode(&t.body[..])
        .map_err(|e| TestCaseError::fail(format!("translated body: {e}")))?;
    prop_assert_eq!(wr.timeseries.len(), t.samples);
    if !t.over_budget {
        let p = run_prepare(false, &t.body)
            .map_err(|e| TestCaseError::fail(format!("translated body: {e}")))?;
        check_prepared(&p)?;
    }
    Ok(Some(t))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn otlp_protobuf_mutated_and_random(
        muts in prop::collection::vec(mutation(), 1..5),
        random in prop::collection::vec(any::<u8>(), 0..300),
        use_random in any::<bool>(),
    ) {
        let body = if use_random { random } else { mutate(spec_request().encode_to_vec(), &muts) };
        translate_otlp(&body, Format::Protobuf)?;
    }

    #[test]
    fn otlp_json_text_mutated(muts in prop::collection::vec(mutation(), 1..5)) {
        let body = mutate(SPEC_EXAMPLE.as_bytes().to_vec(), &muts);
        translate_otlp(&body, Format::Json)?;
    }

    #[test]
    fn otlp_json_values_replaced(
        picks in prop::collection::vec((any::<usize>(), json_value()), 1..4),
    ) {
        let mut v = spec_value().clone();
        for (at, new) in picks {
            let mut all = Vec::new();
            pointers(&v, String::new(), &mut all);
            let p = &all[at % all.len()];
            if p.is_empty() {
                v = new;
            } else if let Some(slot) = v.pointer_mut(p) {
                *slot = new;
            }
        }
        let body = serde_json::to_vec(&v).expect("json");
        let translated = translate_otlp(&body, Format::Json)?;
        if let Ok(req) = decode_request(&body) {
            // Whatever decoded from JSON survives protobuf too, and is
            // translated from it alike.
            let pb = req.encode_to_vec();
            let again = ExportMetricsServiceRequest::decode(&pb[..]).expect("re-encoded request decodes");
            prop_assert_eq!(again.encode_to_vec(), pb.clone());
            prop_assert_eq!(translate_otlp(&pb, Format::Protobuf)?, translated);
        }
    }

    #[test]
    fn otlp_json_random_documents(v in json_value()) {
        let body = serde_json::to_vec(&json!({"resourceMetrics": [v]})).expect("json");
        translate_otlp(&body, Format::Json)?;
    }

    #[test]
    fn otlp_decompression(
        muts in prop::collection::vec(mutation(), 0..4),
        random in prop::collection::vec(any::<u8>(), 0..300),
        use_random in any::<bool>(),
        zstd in any::<bool>(),
        limit in prop_oneof![Just(16usize), Just(1024), Just(64 << 10)],
    ) {
        let plain = spec_request().encode_to_vec();
        let raw = if use_random {
            random
        } else if zstd {
            mutate(zstd::encode_all(&plain[..], 3).expect("zstd"), &muts)
        } else {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&plain).expect("gzip");
            mutate(e.finish().expect("gzip"), &muts)
        };
        let encoding = if zstd { Encoding::Zstd } else { Encoding::Gzip };
        let (r, largest) = largest_allocation(|| otlp::decompress(Bytes::from(raw), encoding, limit));
        // zstd's window is at least 8 MiB (window log 23).
        prop_assert!(largest <= 2 * limit + (9 << 20), "{largest} bytes for a limit of {limit}");
        match r {
            Ok(b) => {
                prop_assert!(b.len() <= limit);
                translate_otlp(&b, Format::Protobuf)?;
            }
            Err(PushError::BadCompression(m)) => prop_assert!(!m.is_empty()),
            Err(PushError::TooLarge { size, limit: l }) => prop_assert!(size > l && l == limit),
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }

    #[test]
    fn base64_never_panics(s in "[A-Za-z0-9+/=!_ -]{0,40}") {
        if let Some(b) = otlp::json::base64_decode(&s) {
            prop_assert!(b.len() <= s.len());
        }
    }
}

/// `any_value` (the bytes of an `AnyValue`) as the value of a gauge
/// point's attribute, in a request.
fn nest_in_point(any_value: &[u8]) -> Vec<u8> {
    fn field(n: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3) | 2];
        prost::encoding::encode_varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    }
    let kv = [field(1, b"k"), field(2, any_value)].concat();
    let metric = [field(1, b"m"), field(5, &field(1, &field(7, &kv)))].concat();
    field(1, &field(2, &field(2, &metric)))
}

/// `AnyValue`s nested `depth` arrays deep, the innermost holding `leaf`
/// (the bytes of an `AnyValue`).
fn nested_arrays(depth: usize, leaf: &[u8]) -> Vec<u8> {
    let mut v = leaf.to_vec();
    for _ in 0..depth {
        let mut inner = vec![0x0a];
        prost::encoding::encode_varint(v.len() as u64, &mut inner);
        inner.extend_from_slice(&v);
        let mut outer = vec![0x2a];
        prost::encoding::encode_varint(inner.len() as u64, &mut outer);
        outer.extend_from_slice(&inner);
        v = outer;
    }
    v
}

#[test]
fn recursion_limit_is_prosts() {
    // Around prost's limit of 100 nested messages, with a string, an
    // unknown field, an unknown group (nested) and nothing at the bottom.
    let leaves: [&[u8]; 4] = [b"\x0a\x01x", b"\x48\x01", b"\x4b\x53\x08\x01\x54\x4c", b""];
    for depth in 35..60 {
        for leaf in leaves {
            let body = nest_in_point(&nested_arrays(depth, leaf));
            translate_otlp(&body, Format::Protobuf).unwrap();
        }
    }
}

#[test]
fn nasty_otlp_bodies() {
    // Compression bombs: 16 MiB of zeroes against a 1 MiB limit.
    let zeros = vec![0u8; 16 << 20];
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&zeros).unwrap();
    let gz = e.finish().unwrap();
    let z = zstd::encode_all(&zeros[..], 1).unwrap();
    drop(zeros);
    for (raw, enc) in [(gz, Encoding::Gzip), (z, Encoding::Zstd)] {
        let (r, largest) = largest_allocation(|| otlp::decompress(Bytes::from(raw), enc, 1 << 20));
        assert!(
            matches!(r, Err(PushError::TooLarge { .. })),
            "{enc:?}: {r:?}"
        );
        assert!(largest <= 12 << 20, "{enc:?}: {largest}");
    }
    // JSON nested far deeper than serde_json allows.
    let deep = format!(
        "{{\"resourceMetrics\": [{{\"resource\": {{\"attributes\": [{{\"key\": \"k\", \"value\": {}{}}}]}}}}]}}",
        "{\"arrayValue\": {\"values\": [".repeat(2000),
        "]}}".repeat(2000)
    );
    assert!(translate_otlp(deep.as_bytes(), Format::Json).unwrap().is_none());
    // Protobuf AnyValue nested 2000 deep: prost's recursion limit.
    let mut v: Vec<u8> = Vec::new();
    for _ in 0..2000 {
        // AnyValue { array_value (5): ArrayValue { values (1): v } }
        let mut inner = vec![0x0a];
        prost::encoding::encode_varint(v.len() as u64, &mut inner);
        inner.extend_from_slice(&v);
        let mut outer = vec![0x2a];
        prost::encoding::encode_varint(inner.len() as u64, &mut outer);
        outer.extend_from_slice(&inner);
        v = outer;
    }
    // (As a metric's data point attribute, and alone.)
    translate_otlp(&v, Format::Protobuf).unwrap();
    translate_otlp(&nest_in_point(&v), Format::Protobuf).unwrap();
    for body in [
        &b""[..],
        b"{}",
        b"[]",
        b"null",
        b"{\"resourceMetrics\": null}",
        b"{\"resourceMetrics\": [null]}",
        b"{\"resourceMetrics\": [{\"scopeMetrics\": [{\"metrics\": [{\"histogram\": {\"dataPoints\": [{\"bucketCounts\": [\"1\"], \"explicitBounds\": [1, 2, 3]}]}}]}]}]}",
        b"{\"resourceMetrics\": [{\"scopeMetrics\": [{\"metrics\": [{\"gauge\": {\"dataPoints\": [{\"asInt\": \"99999999999999999999\"}]}}]}]}]}",
        b"{\"resourceMetrics\": [{\"scopeMetrics\": [{\"metrics\": [{\"gauge\": {\"dataPoints\": [{\"timeUnixNano\": -1}]}}]}]}]}",
        b"{\"resourceMetrics\": [{\"scopeMetrics\": [{\"metrics\": [{\"sum\": {\"dataPoints\": [{\"asDouble\": 1e999}]}}]}]}]}",
        b"\xff\xfe{",
    ] {
        translate_otlp(body, Format::Json).unwrap();
    }
}

// ---------------------------------------------------------------------------
// The HTTP router: whatever the body, an answer, never a panic; garbage is
// a 4xx.

fn app() -> &'static (tempfile::TempDir, axum::Router, tokio::runtime::Runtime) {
    static APP: OnceLock<(tempfile::TempDir, axum::Router, tokio::runtime::Runtime)> =
        OnceLock::new();
    APP.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let log: Arc<dyn tidemark_ingest_log::IngestLog> = Arc::new(
            rt.block_on(async {
                tidemark_ingest_log::embedded::EmbeddedLog::open(
                    tidemark_ingest_log::embedded::EmbeddedConfig {
                        dir: dir.path().to_path_buf(),
                        partitions: 2,
                        ..Default::default()
                    },
                )
            })
            .expect("log"),
        );
        let cfg = DistributorConfig {
            max_recv_msg_size: 64 << 10,
            ..Default::default()
        };
        let d = Distributor::new(log, cfg, Arc::new(DistributorMetrics::unregistered()));
        let r = router(PushState {
            distributor: Arc::new(d),
            multitenancy_enabled: true,
        });
        (dir, r, rt)
    })
}

fn send(path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (StatusCode, String) {
    let (_, app, rt) = app();
    let mut b = Request::builder()
        .method("POST")
        .uri(path)
        .header("X-Scope-OrgID", TENANT);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Body::from(body)).expect("request");
    rt.block_on(async {
        let resp = app.clone().oneshot(req).await.expect("router answers");
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn router_answers_garbage_with_4xx(
        random in prop::collection::vec(any::<u8>(), 0..200),
        kind in 0usize..6,
    ) {
        let (path, headers): (&str, Vec<(&str, &str)>) = match kind {
            0 => ("/api/v1/push", vec![("Content-Type", "application/x-protobuf"), ("Content-Encoding", "snappy")]),
            1 => ("/api/v1/push", vec![("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request"), ("Content-Encoding", "snappy")]),
            2 => ("/otlp/v1/metrics", vec![("Content-Type", "application/x-protobuf")]),
            3 => ("/otlp/v1/metrics", vec![("Content-Type", "application/json")]),
            4 => ("/otlp/v1/metrics", vec![("Content-Type", "application/x-protobuf"), ("Content-Encoding", "gzip")]),
            _ => ("/otlp/v1/metrics", vec![("Content-Type", "application/json"), ("Content-Encoding", "zstd")]),
        };
        let (status, text) = send(path, &headers, random.clone());
        // Random bytes can be a valid (usually empty) request; anything else
        // is the client's fault.
        prop_assert!(status.is_success() || status.is_client_error(), "{path} {headers:?}: {status} {text}");
        if status.is_client_error() {
            prop_assert!(!text.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------
// Structure-aware garbage: well-framed protobuf with random field numbers
// and wire types, nested, so that the in-place scanner of remote write 1.0
// requests meets every field shape, not just broken framing.

#[derive(Debug, Clone)]
enum Field {
    Varint(u32, u64),
    Fixed64(u32, u64),
    Fixed32(u32, u32),
    Bytes(u32, Vec<u8>),
    Message(u32, Vec<Field>),
    /// Start and end group markers around nothing, or a lone marker.
    Group(u32, bool),
    /// Wire type 6 or 7: invalid.
    Invalid(u32, u8),
}

fn field() -> impl Strategy<Value = Field> {
    let num = prop_oneof![4 => 1u32..6, 1 => 0u32..20, 1 => Just(536_870_911u32)];
    let leaf = prop_oneof![
        3 => (num.clone(), any::<u64>()).prop_map(|(n, v)| Field::Varint(n, v)),
        3 => (num.clone(), any::<u64>()).prop_map(|(n, v)| Field::Fixed64(n, v)),
        3 => (num.clone(), any::<u32>()).prop_map(|(n, v)| Field::Fixed32(n, v)),
        3 => (num.clone(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(n, v)| Field::Bytes(n, v)),
        3 => (num.clone(), "[a-z_]{0,6}").prop_map(|(n, s)| Field::Bytes(n, s.into_bytes())),
        1 => (num.clone(), any::<bool>()).prop_map(|(n, whole)| Field::Group(n, whole)),
        1 => (num, 6u8..8).prop_map(|(n, w)| Field::Invalid(n, w)),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        (1u32..6, prop::collection::vec(inner, 0..6)).prop_map(|(n, f)| Field::Message(n, f))
    })
}

fn encode_fields(fields: &[Field], out: &mut Vec<u8>) {
    use prost::encoding::encode_varint;
    // Keys by hand: field number 0 is part of the garbage.
    let key = |n: u32, wire: u64, out: &mut Vec<u8>| encode_varint((u64::from(n) << 3) | wire, out);
    for f in fields {
        match f {
            Field::Varint(n, v) => {
                key(*n, 0, out);
                encode_varint(*v, out);
            }
            Field::Fixed64(n, v) => {
                key(*n, 1, out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Field::Fixed32(n, v) => {
                key(*n, 5, out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Field::Bytes(n, v) => {
                key(*n, 2, out);
                encode_varint(v.len() as u64, out);
                out.extend_from_slice(v);
            }
            Field::Message(n, inner) => {
                let mut b = Vec::new();
                encode_fields(inner, &mut b);
                key(*n, 2, out);
                encode_varint(b.len() as u64, out);
                out.extend_from_slice(&b);
            }
            Field::Group(n, whole) => {
                key(*n, 3, out);
                if *whole {
                    key(*n, 4, out);
                }
            }
            Field::Invalid(n, w) => key(*n, u64::from(*w), out),
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn structured_garbage(fields in prop::collection::vec(field(), 0..6)) {
        let mut body = Vec::new();
        encode_fields(&fields, &mut body);
        for v2 in [false, true] {
            if let Ok(p) = run_prepare(v2, &body) {
                // Whatever the scanner forwards, the ingesters decode.
                check_prepared(&p)?;
            }
        }
        translate_otlp(&body, Format::Protobuf)?;
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// The in-place scanner is never more lenient than the decoder the
    /// ingesters use: a request it accepts decodes as a `WriteRequest`.
    #[test]
    fn scanner_is_no_more_lenient_than_prost(
        fields in prop::collection::vec(field(), 0..6),
        req in write_request(),
        muts in prop::collection::vec(mutation(), 1..4),
        structured in any::<bool>(),
    ) {
        let body = if structured {
            let mut b = Vec::new();
            encode_fields(&fields, &mut b);
            b
        } else {
            mutate(req.encode_to_vec(), &muts)
        };
        if run_prepare(false, &body).is_ok() {
            let decoded = WriteRequest::decode(&body[..]);
            prop_assert!(decoded.is_ok(), "prepare accepted what prost refuses: {decoded:?}");
        }
    }
}
