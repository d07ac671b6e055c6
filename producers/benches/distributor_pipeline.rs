//! The distributor's CPU cost per sample, on one core.
//!
//! Input: one realistic remote-write request as Prometheus sends it: 2,000
//! node_exporter-like series (about 50 metric names, about 20 hosts, 7 to 10
//! labels sorted by name), one float sample each, snappy-compressed.
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
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use prost::Message;
use tidemark_producers::distributor::{prepare, Prepared};
use tidemark_producers::http::decode_body;
use tidemark_producers::DistributorConfig;
use tidemark_schemas::prometheus::{Sample, TimeSeries, WriteRequest};

const SERIES: usize = 2_000;
const PARTITIONS: i32 = 8;
const TENANT: &str = "bench";
const GOAL_SAMPLES_PER_SEC: f64 = 1_000_000.0;

/// Node-exporter-like series, as Prometheus scrapes them from many hosts.
/// (The same generator is in `partition-consumers/benches/head_append.rs`
/// and `src/bench.rs`.)
mod series {
    use bytes::Bytes;
    use tidemark_schemas::prometheus::Label;

    /// How a series' value moves from one scrape to the next.
    #[derive(Debug, Clone, Copy)]
    pub enum Model {
        /// Counter growing by about this much per scrape.
        Counter(f64),
        /// Gauge that stays put.
        Constant(f64),
        /// Gauge moving around this level.
        Noisy(f64),
    }

    pub struct Template {
        pub name: &'static str,
        pub labels: Vec<(&'static str, &'static str)>,
        pub model: Model,
    }

    /// The series one host exposes: 106 series of 52 metric names.
    pub fn host_templates() -> Vec<Template> {
        use Model::*;
        let mut out = Vec::new();
        let mut add = |name: &'static str, labels: &[(&'static str, &'static str)], model: Model| {
            out.push(Template { name, labels: labels.to_vec(), model });
        };
        let modes = [
            ("idle", 13.1),
            ("iowait", 0.07),
            ("irq", 0.0),
            ("nice", 0.01),
            ("softirq", 0.05),
            ("steal", 0.0),
            ("system", 0.52),
            ("user", 1.24),
        ];
        for cpu in ["0", "1", "2", "3"] {
            for (mode, rate) in modes {
                add("node_cpu_seconds_total", &[("cpu", cpu), ("mode", mode)], Counter(rate));
            }
            for mode in ["nice", "user"] {
                add("node_cpu_guest_seconds_total", &[("cpu", cpu), ("mode", mode)], Counter(0.0));
            }
        }
        for device in ["nvme0n1", "sda"] {
            add("node_disk_read_bytes_total", &[("device", device)], Counter(40_960.0));
            add("node_disk_written_bytes_total", &[("device", device)], Counter(1_310_720.0));
            add("node_disk_reads_completed_total", &[("device", device)], Counter(10.0));
            add("node_disk_writes_completed_total", &[("device", device)], Counter(320.0));
            add("node_disk_io_time_seconds_total", &[("device", device)], Counter(0.3));
        }
        for device in ["eth0", "lo"] {
            add("node_network_receive_bytes_total", &[("device", device)], Counter(2_500_000.0));
            add("node_network_transmit_bytes_total", &[("device", device)], Counter(1_800_000.0));
            add("node_network_receive_packets_total", &[("device", device)], Counter(3_000.0));
            add("node_network_transmit_packets_total", &[("device", device)], Counter(2_600.0));
            add("node_network_receive_errs_total", &[("device", device)], Counter(0.0));
        }
        for (device, fstype, mountpoint) in [("/dev/nvme0n1p1", "ext4", "/"), ("tmpfs", "tmpfs", "/run")] {
            let l = [("device", device), ("fstype", fstype), ("mountpoint", mountpoint)];
            add("node_filesystem_avail_bytes", &l, Noisy(52_000_000_000.0));
            add("node_filesystem_free_bytes", &l, Noisy(61_000_000_000.0));
            add("node_filesystem_size_bytes", &l, Constant(105_088_212_992.0));
            add("node_filesystem_files", &l, Constant(6_553_600.0));
            add("node_filesystem_files_free", &l, Noisy(6_100_000.0));
            add("node_filesystem_readonly", &l, Constant(0.0));
        }
        for (name, model) in [
            ("node_load1", Noisy(1.2)),
            ("node_load5", Noisy(1.1)),
            ("node_load15", Noisy(1.0)),
            ("node_memory_MemTotal_bytes", Constant(33_396_543_488.0)),
            ("node_memory_MemFree_bytes", Noisy(2_147_483_648.0)),
            ("node_memory_MemAvailable_bytes", Noisy(21_474_836_480.0)),
            ("node_memory_Buffers_bytes", Noisy(536_870_912.0)),
            ("node_memory_Cached_bytes", Noisy(17_179_869_184.0)),
            ("node_memory_SwapTotal_bytes", Constant(0.0)),
            ("node_memory_SwapFree_bytes", Constant(0.0)),
            ("node_memory_Active_bytes", Noisy(12_884_901_888.0)),
            ("node_memory_Inactive_bytes", Noisy(10_737_418_240.0)),
            ("node_memory_Dirty_bytes", Noisy(1_048_576.0)),
            ("node_boot_time_seconds", Constant(1_700_000_000.0)),
            ("node_time_seconds", Counter(15.0)),
            ("node_context_switches_total", Counter(150_000.0)),
            ("node_intr_total", Counter(90_000.0)),
            ("node_forks_total", Counter(400.0)),
            ("node_procs_running", Noisy(3.0)),
            ("node_procs_blocked", Constant(0.0)),
            ("node_entropy_available_bits", Constant(256.0)),
            ("node_filefd_allocated", Noisy(9_000.0)),
            ("node_filefd_maximum", Constant(9_223_372_036_854_775_807.0)),
            ("node_sockstat_sockets_used", Noisy(700.0)),
            ("node_sockstat_TCP_inuse", Noisy(40.0)),
            ("node_netstat_Tcp_CurrEstab", Noisy(35.0)),
            ("node_vmstat_pgfault", Counter(2_000_000.0)),
            ("node_vmstat_pgmajfault", Counter(2.0)),
        ] {
            add(name, &[], model);
        }
        add(
            "node_uname_info",
            &[("machine", "x86_64"), ("release", "6.1.0-18-amd64"), ("sysname", "Linux")],
            Constant(1.0),
        );
        add("up", &[], Constant(1.0));
        add("scrape_duration_seconds", &[], Noisy(0.021));
        add("scrape_samples_scraped", &[], Constant(1_043.0));
        add("scrape_samples_post_metric_relabeling", &[], Constant(1_043.0));
        add("scrape_series_added", &[], Constant(0.0));
        out
    }

    /// Series `i` of a set laid out host after host.
    pub struct SeriesSet {
        templates: Vec<Template>,
    }

    impl Default for SeriesSet {
        fn default() -> Self {
            SeriesSet { templates: host_templates() }
        }
    }

    impl SeriesSet {
        pub fn series_per_host(&self) -> usize {
            self.templates.len()
        }

        /// Labels of series `i`, sorted by name as Prometheus sends them.
        pub fn labels(&self, i: usize) -> Vec<Label> {
            let host = i / self.templates.len();
            let t = &self.templates[i % self.templates.len()];
            let (region, zones, cluster) = REGIONS[host % REGIONS.len()];
            let zone = zones[(host / REGIONS.len()) % zones.len()];
            let env = if host % 10 == 9 { "staging" } else { "production" };
            let instance = Bytes::from(format!("10.0.{}.{}:9100", host / 250, host % 250 + 1));
            let mut labels: Vec<Label> = vec![
                label("__name__", st(t.name)),
                label("cluster", st(cluster)),
                label("env", st(env)),
                label("instance", instance),
                label("job", st("node")),
                label("region", st(region)),
                label("zone", st(zone)),
            ];
            labels.extend(t.labels.iter().map(|&(n, v)| label(n, st(v))));
            labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
            labels
        }

        /// Value of series `i` at scrape `scrape`; counters never decrease.
        pub fn value(&self, i: usize, scrape: u64) -> f64 {
            let u = |s: u64| unit(mix(((i as u64) << 24) ^ s));
            match self.templates[i % self.templates.len()].model {
                Model::Constant(v) => v,
                Model::Counter(rate) => {
                    let base = rate * 86_400.0 * (1.0 + u(u64::MAX));
                    round(base + rate * (scrape as f64 + 0.5 * u(scrape)), rate)
                }
                Model::Noisy(level) => round(level * (0.95 + 0.1 * u(scrape)), level),
            }
        }
    }

    fn label(name: &'static str, value: Bytes) -> Label {
        Label { name: st(name), value }
    }

    fn st(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    const REGIONS: [(&str, [&str; 3], &str); 3] = [
        ("eu-west-1", ["eu-west-1a", "eu-west-1b", "eu-west-1c"], "prod-eu-1"),
        ("us-east-1", ["us-east-1a", "us-east-1b", "us-east-1d"], "prod-us-1"),
        ("ap-south-1", ["ap-south-1a", "ap-south-1b", "ap-south-1c"], "prod-ap-1"),
    ];

    /// Whole numbers for large magnitudes, two decimals for small ones, as
    /// node_exporter reports them.
    fn round(v: f64, magnitude: f64) -> f64 {
        if magnitude.abs() >= 100.0 {
            v.round()
        } else {
            (v * 100.0).round() / 100.0
        }
    }

    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(x: u64) -> f64 {
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

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
    let set = series::SeriesSet::default();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let req = WriteRequest {
        timeseries: (0..SERIES)
            .map(|i| TimeSeries {
                labels: set.labels(i),
                samples: vec![Sample { value: set.value(i, 0), timestamp: now_ms }],
                exemplars: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    let labels: usize = req.timeseries.iter().map(|t| t.labels.len()).sum();
    let raw = req.encode_to_vec();
    let body = snap::raw::Encoder::new().compress_vec(&raw).expect("snappy compresses any input");
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
    assert!(p.errors.is_empty(), "fixture refused: {:?}", p.errors.first());
    assert_eq!(p.outcome.samples, SERIES);
    assert_eq!(p.records.len(), PARTITIONS as usize, "every partition gets series");
    assert_eq!(decode_only(&f.body).timeseries.len(), SERIES);
    f
}

/// Baseline: what any remote-write receiver must do.
fn decode_only(body: &[u8]) -> WriteRequest {
    let raw = snap::raw::Decoder::new().decompress_vec(body).expect("fixture is valid snappy");
    WriteRequest::decode(Bytes::from(raw)).expect("fixture is a valid WriteRequest")
}

/// What the distributor does before producing.
fn pipeline(f: &Fixture) -> Prepared {
    let req = decode_body(&f.body, f.cfg.max_recv_msg_size).expect("fixture is a valid request");
    prepare(TENANT, req, PARTITIONS, &f.cfg, f.now_ms)
}

fn bench_pipeline(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("distributor_2000_series");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("baseline_decode_only", |b| b.iter(|| decode_only(black_box(&f.body))));
    g.bench_function("pipeline_decode_validate_shard_encode", |b| b.iter(|| pipeline(black_box(&f))));
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunMode {
    /// `cargo bench`: criterion, then the summary.
    Full,
    /// `cargo test --benches` or `-- --test`: everything once, briefly.
    Smoke,
    /// `-- --list`.
    Skip,
}

impl RunMode {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let has = |f: &str| args.iter().any(|a| a == f);
        if has("--list") {
            RunMode::Skip
        } else if has("--bench") && !has("--test") {
            RunMode::Full
        } else {
            RunMode::Smoke
        }
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
        base.push(per_iteration(base_iters, || drop(black_box(decode_only(black_box(&f.body))))));
        pipe.push(per_iteration(pipe_iters, || drop(black_box(pipeline(black_box(&f))))));
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

/// How many calls of `f` take about `target`.
fn iterations_for(target: Duration, mut f: impl FnMut()) -> u32 {
    f();
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < target / 10 || n == 0 {
        f();
        n += 1;
    }
    let per = started.elapsed() / n;
    (target.as_nanos() / per.as_nanos().max(1)).clamp(1, u32::MAX as u128) as u32
}

/// Mean time per call over `n` calls.
fn per_iteration(n: u32, mut f: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed() / n
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
