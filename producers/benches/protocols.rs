//! Remote write 2.0 and OTLP against remote write 1.0, and the cost of the
//! per-tenant rate limiter, on one core, on the same data measured in the
//! same run.
//!
//! The content is the same for every protocol: 2,000 node_exporter-like
//! series of `tidemark-workload`, one float sample each:
//!
//! * `rw1`: snappy remote write 1.0 → `decode_body` + `prepare` (decode,
//!   validate, shard, encode ingest-log records);
//! * `rw2`: snappy remote write 2.0 (symbol table) → `decode_body` +
//!   `prepare_v2`;
//! * `otlp`: OTLP protobuf `ExportMetricsServiceRequest` (one resource per
//!   host with `service.name`/`service.instance.id`, one gauge per metric
//!   name, the other labels as data point attributes) → read in place and
//!   translate (to remote write 1.0) + `prepare`;
//! * `rw1_rate_limited`: `rw1` plus the tenant's token bucket taking the
//!   request's samples, as the distributor does for every push.
//!
//! The `part:` rows split `otlp` in two: reading the body in place and
//! translating it (everything but `prepare`), and `prepare` (the RW1
//! pipeline) on the translated body. The `ref:` rows are for comparison
//! only: a plain walk of the body checking every field against the message
//! layout, with none of translation's shortcuts (attributes seen before in
//! the request are not read again), and prost's decoding into the
//! generated types, which the distributor did before reading in place.
//!
//! Goals (issue "ingestion breadth"): RW2 >= RW1, OTLP >= 0.5x RW1, rate
//! limiting overhead < 5%. The summary prints each as a ratio; no figure is
//! asserted.
//!
//!     cargo bench -p tidemark-producers --bench protocols

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tidemark_limits::rate::RateLimiter;
use tidemark_producers::distributor::{prepare, Prepared};
use tidemark_producers::http::decode_body;
use tidemark_producers::otlp;
use tidemark_producers::rw2::prepare_v2;
use tidemark_producers::DistributorConfig;
use tidemark_schemas::prometheus::WriteRequest;
use tidemark_schemas::write_v2;
use tidemark_workload::{RunMode, SeriesSet};

mod common;
use common::{iterations_for, per_iteration};

const SERIES: usize = 2_000;
const PARTITIONS: i32 = 8;
const TENANT: &str = "bench";

struct Fixture {
    rw1: Vec<u8>,
    rw2: Vec<u8>,
    otlp: Vec<u8>,
    /// `otlp` translated, for timing `prepare` alone.
    otlp_translated: Vec<u8>,
    now_ms: i64,
    cfg: DistributorConfig,
    limiter: RateLimiter,
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).expect("snappy compresses any input")
}

fn to_rw2(req: &WriteRequest) -> write_v2::Request {
    let mut symbols = vec![String::new()];
    let mut index: BTreeMap<String, u32> = BTreeMap::new();
    let mut sym = |s: String| -> u32 {
        if let Some(&i) = index.get(&s) {
            return i;
        }
        symbols.push(s.clone());
        let i = (symbols.len() - 1) as u32;
        index.insert(s, i);
        i
    };
    let timeseries = req
        .timeseries
        .iter()
        .map(|ts| write_v2::TimeSeries {
            labels_refs: ts
                .labels
                .iter()
                .flat_map(|l| [sym(utf8(&l.name)), sym(utf8(&l.value))])
                .collect(),
            samples: ts
                .samples
                .iter()
                .map(|s| write_v2::Sample {
                    value: s.value,
                    timestamp: s.timestamp,
                    start_timestamp: 0,
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    write_v2::Request { symbols, timeseries }
}

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// One resource per host (`job`, `instance` as service attributes), one
/// gauge per metric name, the other labels as attributes.
fn to_otlp(req: &WriteRequest) -> ExportMetricsServiceRequest {
    let mut hosts: BTreeMap<(String, String), BTreeMap<String, Vec<NumberDataPoint>>> = BTreeMap::new();
    for ts in &req.timeseries {
        let get = |n: &str| ts.labels.iter().find(|l| l.name.as_ref() == n.as_bytes()).map(|l| utf8(&l.value)).unwrap_or_default();
        let attrs = ts
            .labels
            .iter()
            .filter(|l| !matches!(l.name.as_ref(), b"__name__" | b"job" | b"instance"))
            .map(|l| kv(&utf8(&l.name), utf8(&l.value)))
            .collect();
        let s = &ts.samples[0];
        hosts
            .entry((get("job"), get("instance")))
            .or_default()
            .entry(get("__name__"))
            .or_default()
            .push(NumberDataPoint {
                attributes: attrs,
                time_unix_nano: (s.timestamp as u64) * 1_000_000,
                value: Some(number_data_point::Value::AsDouble(s.value)),
                ..Default::default()
            });
    }
    ExportMetricsServiceRequest {
        resource_metrics: hosts
            .into_iter()
            .map(|((job, instance), metrics)| ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", job), kv("service.instance.id", instance)],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope::default()),
                    metrics: metrics
                        .into_iter()
                        .map(|(name, points)| Metric {
                            name,
                            data: Some(metric::Data::Gauge(Gauge { data_points: points })),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fn fixture() -> Fixture {
    let set = SeriesSet::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let req = set.write_request(0..SERIES, 0, now_ms);
    let mut f = Fixture {
        rw1: snappy(&req.encode_to_vec()),
        rw2: snappy(&to_rw2(&req).encode_to_vec()),
        otlp: to_otlp(&req).encode_to_vec(),
        otlp_translated: Vec::new(),
        now_ms,
        cfg: DistributorConfig::default(),
        limiter: RateLimiter::new(100_000),
    };
    f.otlp_translated = otlp::translate(&f.otlp, &[], usize::MAX).expect("valid OTLP").body;
    // Every path must do the whole job, or the ratios mean nothing.
    for (name, p) in [("rw1", rw1(&f)), ("rw2", rw2(&f)), ("otlp", otlp(&f))] {
        assert!(p.errors.is_empty(), "{name} refused: {:?}", p.errors.first());
        assert!(p.outcome.samples >= SERIES, "{name}: {} samples", p.outcome.samples);
    }
    f
}

fn rw1(f: &Fixture) -> Prepared {
    let body = decode_body(&f.rw1, f.cfg.max_recv_msg_size).expect("valid snappy");
    prepare(TENANT, &body, PARTITIONS, &f.cfg, f.now_ms).expect("valid request")
}

fn rw2(f: &Fixture) -> Prepared {
    let body = decode_body(&f.rw2, f.cfg.max_recv_msg_size).expect("valid snappy");
    prepare_v2(TENANT, &body, PARTITIONS, &f.cfg, f.now_ms).expect("valid request")
}

fn otlp(f: &Fixture) -> Prepared {
    let t = otlp::translate_body(&f.otlp, otlp::Format::Protobuf, &[], usize::MAX)
        .expect("valid OTLP");
    prepare(TENANT, &t.body, PARTITIONS, &f.cfg, f.now_ms).expect("valid request")
}

/// Not part of `otlp`: walking the body, every field checked against the
/// message layout, nothing translated.
fn otlp_walk(f: &Fixture) -> Prepared {
    let r = otlp::wire::Reader::new(&f.otlp, "ExportMetricsServiceRequest");
    otlp::schema::validate(r, &otlp::schema::EXPORT_METRICS_SERVICE_REQUEST).expect("valid OTLP");
    Prepared::default()
}

/// Part of `otlp`: reading and translating, without the RW1 pipeline.
fn otlp_translate(f: &Fixture) -> Prepared {
    black_box(otlp::translate(&f.otlp, &[], usize::MAX).expect("valid OTLP"));
    Prepared::default()
}

/// Part of `otlp`: the RW1 pipeline on the translated body.
fn otlp_prepare(f: &Fixture) -> Prepared {
    prepare(TENANT, &f.otlp_translated, PARTITIONS, &f.cfg, f.now_ms).expect("valid request")
}

/// Not part of `otlp`: prost's decoding of the body into the generated
/// types (what the distributor did before reading in place).
fn otlp_prost_decode(f: &Fixture) -> Prepared {
    let req = ExportMetricsServiceRequest::decode(f.otlp.as_slice()).expect("valid OTLP");
    black_box(&req);
    Prepared::default()
}

fn rw1_rate_limited(f: &Fixture) -> Prepared {
    let p = rw1(f);
    // A limit that never refuses: the cost is the bookkeeping.
    let d = f.limiter.take(TENANT, 1e12, u64::MAX / 2, p.outcome.samples as u64, Instant::now());
    black_box(d);
    p
}

fn main() {
    let mode = RunMode::from_args();
    let (round, rounds) = match mode {
        RunMode::Full => (Duration::from_millis(300), 9),
        RunMode::Smoke => (Duration::from_millis(5), 1),
        RunMode::Skip => return,
    };
    let f = fixture();
    type Path = fn(&Fixture) -> Prepared;
    let paths: [(&str, Path); 8] = [
        ("rw1", rw1),
        ("rw2", rw2),
        ("otlp", otlp),
        ("rw1_rate_limited", rw1_rate_limited),
        ("part: otlp read+translate", otlp_translate),
        ("part: otlp prepare", otlp_prepare),
        ("ref: otlp check-only walk", otlp_walk),
        ("ref: otlp prost decode", otlp_prost_decode),
    ];
    let iters: Vec<u32> = paths
        .iter()
        .map(|(_, p)| iterations_for(round, || drop(black_box(p(black_box(&f))))))
        .collect();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); paths.len()];
    for _ in 0..rounds {
        for (i, (_, p)) in paths.iter().enumerate() {
            times[i].push(per_iteration(iters[i], || drop(black_box(p(black_box(&f))))));
        }
    }
    let rates: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            SERIES as f64 / t[t.len() / 2].as_secs_f64()
        })
        .collect();
    println!(
        "protocols (single thread, median of {rounds} alternating rounds): {SERIES} series x 1 sample; \
         bodies: rw1 {} KiB snappy, rw2 {} KiB snappy, otlp {} KiB protobuf",
        f.rw1.len() / 1024,
        f.rw2.len() / 1024,
        f.otlp.len() / 1024
    );
    for ((name, _), r) in paths.iter().zip(&rates) {
        println!("  {name:<28} {:>10.0} samples/s  {:>5.2} us/sample", r, 1e6 / r);
    }
    println!("ratio rw2 / rw1: {:.2} (goal >= 1)", rates[1] / rates[0]);
    println!("ratio otlp / rw1: {:.2} (goal >= 0.5)", rates[2] / rates[0]);
    // The limiter's own cost per request, measured directly: two paths a
    // few percent apart are within the noise of alternating rounds.
    let take = || {
        black_box(f.limiter.take(TENANT, 1e12, u64::MAX / 2, SERIES as u64, Instant::now()));
    };
    let take_iters = iterations_for(round, take);
    let mut takes: Vec<Duration> = (0..rounds).map(|_| per_iteration(take_iters, take)).collect();
    takes.sort();
    let take_time = takes[takes.len() / 2].as_secs_f64();
    let rw1_time = SERIES as f64 / rates[0];
    println!(
        "rate limiting overhead: limiter {:.0} ns per request = {:.3}% of the RW1 pipeline's {:.0} us (goal < 5%); \
         whole path with the limiter vs without, same run: {:+.1}%",
        take_time * 1e9,
        take_time / rw1_time * 100.0,
        rw1_time * 1e6,
        (rates[0] / rates[3] - 1.0) * 100.0
    );
}
