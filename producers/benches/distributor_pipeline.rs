//! The distributor's CPU cost per sample, on one core.
//!
//! Input: one realistic remote-write request as Prometheus sends it: 2,000
//! node_exporter-like series of `tidemark-workload` (about 50 metric names,
//! about 20 hosts, 7 to 10 labels sorted by name), one float sample each,
//! snappy-compressed.
//!
//! * baseline `decode_only`: snappy decompression + protobuf decoding of
//!   `WriteRequest`, the least any remote-write receiver does;
//! * `pipeline`: `http::decode_body` + `distributor::prepare` over 8
//!   partitions with the default config (decode, validate, shard, encode
//!   ingest-log records), everything the distributor does before producing.
//!
//! After criterion's output a summary measured in the same run prints both
//! rates, their ratio and the ratio against the 1M samples/s/core goal. No
//! figure is asserted.
//!
//!     cargo bench -p tidemark-producers --bench distributor_pipeline
//!
//! `cargo test -p tidemark-producers --benches` runs everything once, as a
//! smoke test.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use prost::Message;
use tidemark_ingest_log::record_lz4;
use tidemark_producers::distributor::{prepare, Prepared};
use tidemark_producers::http::decode_body;
use tidemark_producers::DistributorConfig;
use tidemark_schemas::prometheus::WriteRequest;
use tidemark_workload::{RunMode, SeriesSet};

mod common;
use common::{iterations_for, per_iteration};

const SERIES: usize = 2_000;
const PARTITIONS: i32 = 8;
const TENANT: &str = "bench";
const GOAL_SAMPLES_PER_SEC: f64 = 1_000_000.0;

/// The request, compressed as Prometheus sends it.
struct Fixture {
    body: Vec<u8>,
    uncompressed_len: usize,
    labels_per_series: f64,
    hosts: usize,
    now_ms: i64,
    cfg: DistributorConfig,
}

fn fixture() -> Fixture {
    let set = SeriesSet::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let req = set.write_request(0..SERIES, 0, now_ms);
    let labels: usize = req.timeseries.iter().map(|t| t.labels.len()).sum();
    let raw = req.encode_to_vec();
    let body = snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compresses any input");
    let f = Fixture {
        body,
        uncompressed_len: raw.len(),
        labels_per_series: labels as f64 / SERIES as f64,
        hosts: SERIES.div_ceil(set.series_per_host()),
        now_ms,
        cfg: DistributorConfig::default(),
    };
    // Both paths must do the whole job, or the ratio means nothing.
    let p = pipeline(&f);
    assert!(
        p.errors.is_empty(),
        "fixture refused: {:?}",
        p.errors.first()
    );
    assert_eq!(p.outcome.samples, SERIES);
    assert_eq!(
        p.records.len(),
        PARTITIONS as usize,
        "every partition gets series"
    );
    assert_eq!(decode_only(&f.body).timeseries.len(), SERIES);
    f
}

/// Baseline: what any remote-write receiver must do.
fn decode_only(body: &[u8]) -> WriteRequest {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .expect("fixture is valid snappy");
    WriteRequest::decode(Bytes::from(raw)).expect("fixture is a valid WriteRequest")
}

/// What the distributor does before producing.
fn pipeline(f: &Fixture) -> Prepared {
    let body = decode_body(&f.body, f.cfg.max_recv_msg_size).expect("fixture is valid snappy");
    prepare(TENANT, &body, PARTITIONS, &f.cfg, f.now_ms).expect("fixture is a valid request")
}

fn bench_pipeline(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("distributor_2000_series");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("baseline_decode_only", |b| {
        b.iter(|| decode_only(black_box(&f.body)))
    });
    g.bench_function("pipeline_decode_validate_shard_encode", |b| {
        b.iter(|| pipeline(black_box(&f)))
    });
    // Where the pipeline's time goes: decompression alone, and the in-place
    // work on an already decompressed body.
    g.bench_function("part_snappy_only", |b| {
        b.iter(|| decode_body(black_box(&f.body), f.cfg.max_recv_msg_size).expect("valid snappy"))
    });
    let raw = decode_body(&f.body, f.cfg.max_recv_msg_size).expect("valid snappy");
    g.bench_function("part_prepare_only", |b| {
        b.iter(|| {
            prepare(TENANT, black_box(&raw), PARTITIONS, &f.cfg, f.now_ms).expect("valid request")
        })
    });
    // What producing to Kafka adds with its default compression (each
    // record's value LZ4-compressed by the distributor, where librdkafka
    // compressed batches before).
    let prepared = pipeline(&f);
    g.bench_function("part_lz4_records", |b| {
        b.iter(|| {
            for (_, records) in &prepared.records {
                for r in records {
                    black_box(record_lz4::compress(black_box(&r.value)));
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_pipeline);

fn main() {
    let mode = RunMode::from_args();
    if mode != RunMode::Skip {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    match mode {
        RunMode::Full => summary(Duration::from_millis(300), 7),
        RunMode::Smoke => summary(Duration::from_millis(5), 1),
        RunMode::Skip => {}
    }
}

/// Times both paths in alternating rounds of about `round` each and prints
/// the median rates and their ratio.
fn summary(round: Duration, rounds: usize) {
    let f = fixture();
    let base_iters = iterations_for(round, || drop(black_box(decode_only(black_box(&f.body)))));
    let pipe_iters = iterations_for(round, || drop(black_box(pipeline(black_box(&f)))));
    let mut base = Vec::with_capacity(rounds);
    let mut pipe = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        base.push(per_iteration(base_iters, || {
            drop(black_box(decode_only(black_box(&f.body))))
        }));
        pipe.push(per_iteration(pipe_iters, || {
            drop(black_box(pipeline(black_box(&f))))
        }));
    }
    let base_rate = SERIES as f64 / median(&mut base).as_secs_f64();
    let pipe_rate = SERIES as f64 / median(&mut pipe).as_secs_f64();

    println!();
    println!(
        "summary (single thread, median of {rounds} alternating rounds): request of {SERIES} series x 1 sample \
         from {} hosts, {:.1} labels/series, {} KiB protobuf, {} KiB snappy, {PARTITIONS} partitions",
        f.hosts,
        f.labels_per_series,
        f.uncompressed_len / 1024,
        f.body.len() / 1024,
    );
    println!(
        "distributor pipeline: {} samples/s on one core; baseline decode-only: {} samples/s; ratio pipeline/baseline: {:.2}",
        si(pipe_rate),
        si(base_rate),
        pipe_rate / base_rate,
    );
    println!(
        "vs goal {} samples/s/core: pipeline {:.2}x goal, baseline decode-only {:.2}x goal; \
         per request: pipeline {:.0} us, decode-only {:.0} us",
        si(GOAL_SAMPLES_PER_SEC),
        pipe_rate / GOAL_SAMPLES_PER_SEC,
        base_rate / GOAL_SAMPLES_PER_SEC,
        SERIES as f64 / pipe_rate * 1e6,
        SERIES as f64 / base_rate * 1e6,
    );
}


fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// `1.23M`-style rendering.
fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}
