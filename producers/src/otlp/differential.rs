//! The in-place translation against the oracle ([`super::oracle`]: prost
//! decoding into the generated types, then the translator of those) on
//! generated requests of every metric kind, attribute value kind, with
//! exemplars, merged fields (a message given twice) and mutated bytes:
//! both refuse the same bodies, and translate the others to the same
//! `Translated`, byte for byte.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use proptest::prelude::*;
use prost::Message;
use tidemark_fuzz_support::{config, mutate, mutation};

use super::translate::{translate, Translated};
use super::{oracle, reencode};

const KEYS: &[&str] = &[
    "service.name",
    "service.namespace",
    "service.instance.id",
    "k8s.pod.name",
    "deployment.environment",
    "host",
    "a.b",
    "a-b",
    "a_b",
    "2x",
    "_p",
    "__q",
    "job",
    "instance",
    "otel_scope_name",
    "le",
    "é",
    "",
];

const STRINGS: &[&str] = &["", "api", "shop", "i-1", "x;y", "é\u{0}", "pod-7"];

fn text(options: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(options).prop_map(str::to_owned)
}

fn any_value() -> impl Strategy<Value = AnyValue> {
    use any_value::Value as V;
    let leaf = prop_oneof![
        3 => text(STRINGS).prop_map(V::StringValue),
        1 => any::<bool>().prop_map(V::BoolValue),
        1 => any::<i64>().prop_map(V::IntValue),
        1 => prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(0.1)].prop_map(V::DoubleValue),
        1 => prop::collection::vec(any::<u8>(), 0..5).prop_map(V::BytesValue),
        1 => any::<i32>().prop_map(V::StringValueStrindex),
    ];
    let leaf = prop::option::weighted(0.9, leaf).prop_map(|value| AnyValue { value });
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|values| AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values }))
            }),
            prop::collection::vec((text(KEYS), prop::option::of(inner)), 0..3).prop_map(|kvs| {
                AnyValue {
                    value: Some(any_value::Value::KvlistValue(KeyValueList {
                        values: kvs
                            .into_iter()
                            .map(|(key, value)| KeyValue {
                                key,
                                value,
                                key_strindex: 0,
                            })
                            .collect(),
                    })),
                }
            }),
        ]
    })
}

fn key_value() -> impl Strategy<Value = KeyValue> {
    (
        text(KEYS),
        prop::option::weighted(0.95, any_value()),
        0i32..2,
    )
        .prop_map(|(key, value, key_strindex)| KeyValue {
            key,
            value,
            key_strindex,
        })
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(key_value(), 0..5)
}

fn exemplars() -> impl Strategy<Value = Vec<Exemplar>> {
    let e = (
        attributes(),
        any::<u64>(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..3),
    )
        .prop_map(
            |(filtered_attributes, time_unix_nano, int, span_id)| Exemplar {
                filtered_attributes,
                time_unix_nano,
                span_id: span_id.clone(),
                trace_id: span_id,
                value: Some(if int {
                    exemplar::Value::AsInt(time_unix_nano as i64)
                } else {
                    exemplar::Value::AsDouble(1.5)
                }),
            },
        );
    prop::collection::vec(e, 0..2)
}

/// Times in nanoseconds, some with the same millisecond.
fn time() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..3_000_000,
        Just(1_700_000_000_123_456_789u64),
        any::<u64>()
    ]
}

fn flags() -> impl Strategy<Value = u32> {
    prop_oneof![3 => Just(0u32), 1 => Just(1u32), 1 => any::<u32>()]
}

fn number_point() -> impl Strategy<Value = NumberDataPoint> {
    (
        attributes(),
        time(),
        time(),
        prop::option::of(prop_oneof![
            any::<f64>().prop_map(number_data_point::Value::AsDouble),
            any::<i64>().prop_map(number_data_point::Value::AsInt),
        ]),
        exemplars(),
        flags(),
    )
        .prop_map(
            |(attributes, start_time_unix_nano, time_unix_nano, value, exemplars, flags)| {
                NumberDataPoint {
                    attributes,
                    start_time_unix_nano,
                    time_unix_nano,
                    exemplars,
                    flags,
                    value,
                }
            },
        )
}

fn histogram_point() -> impl Strategy<Value = HistogramDataPoint> {
    (
        attributes(),
        time(),
        any::<u64>(),
        prop::option::of(any::<f64>()),
        prop::collection::vec(prop_oneof![0u64..10, any::<u64>()], 0..5),
        prop::collection::vec(
            prop_oneof![Just(0.005), Just(1.0), Just(f64::NAN), any::<f64>()],
            0..4,
        ),
        exemplars(),
        flags(),
        prop::option::of(any::<f64>()),
    )
        .prop_map(
            |(
                attributes,
                time_unix_nano,
                count,
                sum,
                bucket_counts,
                explicit_bounds,
                exemplars,
                flags,
                min,
            )| {
                HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: 1,
                    time_unix_nano,
                    count,
                    sum,
                    bucket_counts,
                    explicit_bounds,
                    exemplars,
                    flags,
                    min,
                    max: min,
                }
            },
        )
}

fn exponential_point() -> impl Strategy<Value = ExponentialHistogramDataPoint> {
    (
        attributes(),
        time(),
        any::<i32>(),
        prop::collection::vec(any::<u64>(), 0..3),
        exemplars(),
    )
        .prop_map(
            |(attributes, time_unix_nano, scale, bucket_counts, exemplars)| {
                ExponentialHistogramDataPoint {
                    attributes,
                    time_unix_nano,
                    count: 3,
                    sum: Some(1.0),
                    scale,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: scale,
                        bucket_counts: bucket_counts.clone(),
                    }),
                    negative: Some(Buckets {
                        offset: -1,
                        bucket_counts,
                    }),
                    exemplars,
                    zero_threshold: 0.5,
                    ..Default::default()
                }
            },
        )
}

fn summary_point() -> impl Strategy<Value = SummaryDataPoint> {
    (
        attributes(),
        time(),
        any::<u64>(),
        any::<f64>(),
        prop::collection::vec((any::<f64>(), any::<f64>()), 0..3),
        flags(),
    )
        .prop_map(
            |(attributes, time_unix_nano, count, sum, q, flags)| SummaryDataPoint {
                attributes,
                start_time_unix_nano: 0,
                time_unix_nano,
                count,
                sum,
                quantile_values: q
                    .into_iter()
                    .map(|(quantile, value)| ValueAtQuantile { quantile, value })
                    .collect(),
                flags,
            },
        )
}

fn points<S: Strategy>(s: S) -> impl Strategy<Value = Vec<S::Value>> {
    prop::collection::vec(s, 0..3)
}

fn data() -> impl Strategy<Value = Option<Data>> {
    let data = prop_oneof![
        points(number_point()).prop_map(|data_points| Data::Gauge(Gauge { data_points })),
        (points(number_point()), 0i32..4, any::<bool>()).prop_map(
            |(data_points, aggregation_temporality, is_monotonic)| {
                Data::Sum(Sum {
                    data_points,
                    aggregation_temporality,
                    is_monotonic,
                })
            }
        ),
        (
            points(histogram_point()),
            prop_oneof![3 => Just(2i32), 1 => 0i32..4]
        )
            .prop_map(|(data_points, aggregation_temporality)| {
                Data::Histogram(Histogram {
                    data_points,
                    aggregation_temporality,
                })
            }),
        (points(exponential_point()), 0i32..3).prop_map(
            |(data_points, aggregation_temporality)| {
                Data::ExponentialHistogram(ExponentialHistogram {
                    data_points,
                    aggregation_temporality,
                })
            }
        ),
        points(summary_point()).prop_map(|data_points| Data::Summary(Summary { data_points })),
    ];
    prop::option::weighted(0.95, data)
}

fn metric() -> impl Strategy<Value = Metric> {
    (
        text(&[
            "up",
            "http.duration",
            "ratio.x",
            "requests_total",
            "2xx.count",
            "",
            "a.b",
        ]),
        text(&["", "help"]),
        text(&["", "s", "1", "By/s", "{req}", "ms"]),
        data(),
        prop::collection::vec(key_value(), 0..2),
    )
        .prop_map(|(name, description, unit, data, metadata)| Metric {
            name,
            description,
            unit,
            metadata,
            data,
        })
}

fn scope_metrics() -> impl Strategy<Value = ScopeMetrics> {
    (
        prop::option::of((text(&["", "lib"]), text(&["", "1.2"]), attributes())),
        prop::collection::vec(metric(), 0..4),
        text(&["", "https://opentelemetry.io/schemas/1.0"]),
    )
        .prop_map(|(scope, metrics, schema_url)| ScopeMetrics {
            scope: scope.map(|(name, version, attributes)| InstrumentationScope {
                name,
                version,
                attributes,
                dropped_attributes_count: 1,
            }),
            metrics,
            schema_url,
        })
}

fn resource_metrics() -> impl Strategy<Value = ResourceMetrics> {
    (
        prop::option::of((prop::collection::vec(key_value(), 0..6), any::<bool>())),
        prop::collection::vec(scope_metrics(), 0..3),
    )
        .prop_map(|(resource, scope_metrics)| ResourceMetrics {
            resource: resource.map(|(attributes, entity)| Resource {
                attributes,
                dropped_attributes_count: 0,
                entity_refs: if entity {
                    vec![EntityRef {
                        schema_url: String::new(),
                        r#type: "service".into(),
                        id_keys: vec!["service.name".into()],
                        description_keys: vec![],
                    }]
                } else {
                    vec![]
                },
            }),
            scope_metrics,
            schema_url: String::new(),
        })
}

fn request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    prop::collection::vec(resource_metrics(), 0..3)
        .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
}

fn promote() -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(
        &[
            "k8s.pod.name",
            "deployment.environment",
            "service.name",
            "host",
        ][..],
        0..3,
    )
    .prop_map(|p| p.into_iter().map(str::to_owned).collect())
}

fn budget() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(usize::MAX), 1 => 0usize..3000]
}

/// A length-delimited field (field number < 16).
fn field(n: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![(n << 3) | 2];
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// The body translated in place, and what the oracle makes of it (`None`
/// for both: refused).
fn both(
    body: &[u8],
    promote: &[String],
    budget: usize,
) -> (Option<Translated>, Option<Translated>) {
    let new = translate(body, promote, budget).ok();
    let old = ExportMetricsServiceRequest::decode(body)
        .ok()
        .map(|req| oracle::translate(&req, promote, budget));
    (new, old)
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn generated_requests(req in request(), promote in promote(), budget in budget()) {
        // (What the server gets: encoding drops what is not sent, -0.0 for one.)
        let body = req.encode_to_vec();
        let (new, old) = both(&body, &promote, budget);
        prop_assert!(new.is_some(), "refused: {:?}", translate(&body, &promote, budget).err());
        prop_assert_eq!(new, old);
        // The JSON path: the decoded request encoded again, -0.0 kept, is
        // translated as the old translator translated the request itself.
        let json_path = translate(&reencode::encode(req.clone()), &promote, budget)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(json_path, oracle::translate(&req, &promote, budget));
    }

    /// Messages given twice, which protobuf merges: resources, metrics
    /// (the same data kind merged, another replacing it), attributes (their
    /// values merged, of the same kind or not).
    #[test]
    fn merged_messages(
        rms in (resource_metrics(), resource_metrics()),
        metrics in (metric(), metric()),
        kvs in (key_value(), key_value(), key_value()),
        point in number_point(),
        promote in promote(),
    ) {
        let mut body = field(1, &[rms.0.encode_to_vec(), rms.1.encode_to_vec()].concat());
        let ms = [metrics.0.encode_to_vec(), metrics.1.encode_to_vec()].concat();
        body.extend(field(1, &field(2, &field(2, &ms))));
        let kv = [kvs.0.encode_to_vec(), kvs.1.encode_to_vec(), kvs.2.encode_to_vec()].concat();
        let point = [point.encode_to_vec(), field(7, &kv)].concat();
        let metric = [field(1, b"m"), field(5, &field(1, &point))].concat();
        body.extend(field(1, &field(2, &field(2, &metric))));
        let (new, old) = both(&body, &promote, usize::MAX);
        prop_assert!(old.is_some(), "the oracle refused a valid body");
        prop_assert_eq!(new, old);
    }

    /// Mutated bodies: refused by both or translated alike.
    #[test]
    fn mutated_requests(
        req in request(),
        muts in prop::collection::vec(mutation(), 1..4),
        promote in promote(),
    ) {
        let body = mutate(req.encode_to_vec(), &muts);
        let (new, old) = both(&body, &promote, usize::MAX);
        prop_assert_eq!(new, old);
    }
}

/// JSON bodies go through the same translator, encoded to protobuf first:
/// what they translate to is what the old translator made of them, -0.0
/// included.
#[test]
fn json_bodies() {
    let body = br#"{"resourceMetrics": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "api"}},
        {"key": "host", "value": {"arrayValue": {"values": [{"intValue": "1"}, {"doubleValue": -0.0}]}}}]},
      "scopeMetrics": [{"scope": {"name": "lib"}, "metrics": [
        {"name": "s", "unit": "ms", "summary": {"dataPoints": [{"timeUnixNano": "5000000", "count": "2",
          "sum": -0.0, "quantileValues": [{"quantile": -0.0, "value": -0.0}, {"quantile": 0.5, "value": 1}]}]}},
        {"name": "g", "gauge": {"dataPoints": [{"asDouble": -0.0, "attributes": [{"key": "a.b", "value": {"boolValue": true}}]}]}},
        {"name": "h", "histogram": {"aggregationTemporality": 2, "dataPoints": [{"count": "1", "sum": -0.0,
          "bucketCounts": ["1", "0"], "explicitBounds": [-0.0]}]}}
      ]}]}]}"#;
    let promote = vec!["host".to_owned()];
    let req = super::json::decode_request(body).unwrap();
    let pb = super::reencode::encode(req.clone());
    assert_eq!(ExportMetricsServiceRequest::decode(&pb[..]).unwrap(), req);
    let want = oracle::translate(&req, &promote, usize::MAX);
    let got = super::translate_body(body, super::Format::Json, &promote, usize::MAX).unwrap();
    assert_eq!(got, want);
    assert!(got.samples >= 8, "{got:?}");
}
