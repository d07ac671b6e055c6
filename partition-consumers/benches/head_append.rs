//! The in-memory head's append rate and memory per series.
//!
//! Input: ingest-log record batches of 2,000 node_exporter-like series
//! (about 50 metric names, 106 series per host, 7 to 10 labels) with one
//! float sample each, decoded from protobuf as the partition consumer sees
//! them, scrape after scrape 15 s apart.
//!
//! * steady state, 100k series that already exist: `Head::append` against
//!   the baseline of appending the same samples to bare `XorAppender`s (one
//!   per series, indexed by position: no hashing, no index, no labels; chunks
//!   are cut at 120 samples like the head does);
//! * first scrape, 100k new series: `Head::append` into an empty head against
//!   creating the bare appenders;
//! * memory, each measured in a fresh child process: 1,000,000 series x 1
//!   sample and 100,000 series x 120 samples, as `Head::heap_bytes()` per
//!   series and as the process' RSS growth per series, against the raw label
//!   bytes per series (sum of label name and value lengths) and the 2 KiB per
//!   series goal.
//!
//! After criterion's output a summary measured in the same run prints every
//! figure with its ratio to the baseline. No figure is asserted.
//!
//!     cargo bench -p tidemark-partition-consumers --bench head_append
//!
//! `cargo test -p tidemark-partition-consumers --benches` runs everything
//! once on small sizes, as a smoke test.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use prost::Message;
use tidemark_partition_consumers::head::{Head, HeadOptions};
use tidemark_schemas::prometheus::{Sample, TimeSeries, WriteRequest};
use tidemark_storage::chunk::XorAppender;

const TENANT: &str = "bench";
const SERIES_PER_RECORD: usize = 2_000;
const SAMPLES_PER_CHUNK: usize = 120;
const INTERVAL_MS: i64 = 15_000;
const T0_MS: i64 = 1_700_000_000_000;
const GOAL_BYTES_PER_SERIES: f64 = 2048.0;
/// Set in the child processes that measure memory: `<series>x<samples>`.
const MEM_CHILD_ENV: &str = "TIDEMARK_BENCH_HEAD_MEMORY";

/// Node-exporter-like series, as Prometheus scrapes them from many hosts.
/// (The same generator is in `producers/benches/distributor_pipeline.rs`
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

fn head_options() -> HeadOptions {
    HeadOptions { samples_per_chunk: SAMPLES_PER_CHUNK, retention_ms: 24 * 3_600_000 }
}

/// Sizes of a run: full under `cargo bench`, small as a smoke test.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    steady_series: usize,
    /// (series, samples per series) of each memory measurement.
    memory: [(usize, u64); 2],
    summary_round: usize,
    summary_rounds: usize,
}

impl Sizes {
    fn for_mode(mode: RunMode) -> Self {
        match mode {
            RunMode::Full | RunMode::Skip => Sizes {
                steady_series: 100_000,
                memory: [(1_000_000, 1), (100_000, SAMPLES_PER_CHUNK as u64)],
                summary_round: 2,
                summary_rounds: 7,
            },
            RunMode::Smoke => Sizes {
                steady_series: 10_000,
                memory: [(20_000, 1), (4_000, 12)],
                summary_round: 1,
                summary_rounds: 1,
            },
        }
    }
}

/// One scrape of `series` series as records of 2,000, each decoded from
/// protobuf so that labels are slices of one buffer, as in the consumer.
struct Scrapes {
    set: series::SeriesSet,
    records: Vec<Vec<TimeSeries>>,
    /// Record appends handed out so far: record `next % records.len()` of
    /// scrape `next / records.len()` is the next one.
    next: u64,
}

impl Scrapes {
    fn new(series: usize) -> Self {
        let set = series::SeriesSet::default();
        let records = (0..series)
            .step_by(SERIES_PER_RECORD)
            .map(|first| {
                let req = WriteRequest {
                    timeseries: (first..series.min(first + SERIES_PER_RECORD))
                        .map(|i| TimeSeries {
                            labels: set.labels(i),
                            samples: vec![Sample { value: set.value(i, 0), timestamp: T0_MS }],
                            exemplars: vec![],
                        })
                        .collect(),
                    metadata: vec![],
                };
                WriteRequest::decode(Bytes::from(req.encode_to_vec()))
                    .expect("a WriteRequest decodes")
                    .timeseries
            })
            .collect();
        Scrapes { set, records, next: 0 }
    }

    fn series(&self) -> usize {
        self.records.iter().map(Vec::len).sum()
    }

    /// Stamps the next record with its scrape's timestamp and values, and
    /// returns its index (its first series is `index * 2,000`).
    fn advance(&mut self) -> usize {
        let n = self.records.len() as u64;
        let (r, scrape) = ((self.next % n) as usize, self.next / n);
        self.next += 1;
        let first = r * SERIES_PER_RECORD;
        for (k, ts) in self.records[r].iter_mut().enumerate() {
            ts.samples[0] = Sample { value: self.set.value(first + k, scrape), timestamp: T0_MS + scrape as i64 * INTERVAL_MS };
        }
        r
    }

    /// Raw label bytes (names and values) of every series.
    fn label_bytes(&self) -> usize {
        self.records.iter().flatten().flat_map(|ts| &ts.labels).map(|l| l.name.len() + l.value.len()).sum()
    }
}

/// The baseline: one XOR chunk appender per series, found by position.
#[derive(Default)]
struct Bare {
    series: Vec<BareSeries>,
}

#[derive(Default)]
struct BareSeries {
    head: XorAppender,
    closed: Vec<Box<[u8]>>,
}

impl Bare {
    /// Appends a record whose first series is `first`; creates series it
    /// has not seen. Returns the samples appended.
    fn append_record(&mut self, first: usize, record: &[TimeSeries]) -> u64 {
        let mut appended = 0;
        for (k, ts) in record.iter().enumerate() {
            if first + k == self.series.len() {
                self.series.push(BareSeries::default());
            }
            let s = &mut self.series[first + k];
            for sample in &ts.samples {
                if s.head.num_samples() >= SAMPLES_PER_CHUNK {
                    let full = std::mem::take(&mut s.head);
                    s.closed.push(full.into_bytes().into_boxed_slice());
                }
                if s.head.append(sample.timestamp, sample.value).is_ok() {
                    appended += 1;
                }
            }
        }
        appended
    }
}

/// Something records are appended to: the head or the baseline.
trait Target {
    fn append(&mut self, first: usize, record: &[TimeSeries]) -> u64;
}

impl Target for Bare {
    fn append(&mut self, first: usize, record: &[TimeSeries]) -> u64 {
        self.append_record(first, record)
    }
}

impl Target for Head {
    fn append(&mut self, _first: usize, record: &[TimeSeries]) -> u64 {
        Head::append(self, TENANT, record).appended
    }
}

/// Appends the next `records` records, timing only the appends.
fn timed_appends(target: &mut impl Target, scrapes: &mut Scrapes, records: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..records {
        let r = scrapes.advance();
        let record = &scrapes.records[r];
        let started = Instant::now();
        black_box(target.append(r * SERIES_PER_RECORD, black_box(record)));
        total += started.elapsed();
    }
    total
}

/// Appends one whole scrape, so that every series exists.
fn populate(target: &mut impl Target, scrapes: &mut Scrapes) {
    timed_appends(target, scrapes, scrapes.records.len() as u64);
}

/// Times appending scrape 0 (every series new) to a fresh target; the
/// target is dropped after the clock stops.
fn timed_first_scrape<T: Target>(new: impl Fn() -> T, scrapes: &mut Scrapes) -> Duration {
    let mut target = new();
    scrapes.next = 0;
    let took = timed_appends(&mut target, scrapes, scrapes.records.len() as u64);
    drop(black_box(target));
    took
}

fn bench_steady(c: &mut Criterion) {
    let sizes = Sizes::for_mode(RunMode::from_args());
    let mut g = c.benchmark_group(format!("head_append_steady_{}k_series", sizes.steady_series / 1000));
    g.throughput(Throughput::Elements(SERIES_PER_RECORD as u64));
    {
        let mut scrapes = Scrapes::new(sizes.steady_series);
        let mut bare = Bare::default();
        populate(&mut bare, &mut scrapes);
        g.bench_function("baseline_bare_xor_appenders", |b| {
            b.iter_custom(|iters| timed_appends(&mut bare, &mut scrapes, iters))
        });
    }
    {
        let mut scrapes = Scrapes::new(sizes.steady_series);
        let mut head = Head::new(head_options());
        populate(&mut head, &mut scrapes);
        g.bench_function("head_append", |b| b.iter_custom(|iters| timed_appends(&mut head, &mut scrapes, iters)));
    }
    g.finish();
}

fn bench_first_scrape(c: &mut Criterion) {
    let sizes = Sizes::for_mode(RunMode::from_args());
    let mut scrapes = Scrapes::new(sizes.steady_series);
    let mut g = c.benchmark_group(format!("head_append_first_scrape_{}k_new_series", sizes.steady_series / 1000));
    g.throughput(Throughput::Elements(scrapes.series() as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("baseline_new_bare_xor_appenders", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| timed_first_scrape(Bare::default, &mut scrapes)).sum())
    });
    g.bench_function("head_append_new_series", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| timed_first_scrape(|| Head::new(head_options()), &mut scrapes)).sum())
    });
    g.finish();
}

criterion_group!(benches, bench_steady, bench_first_scrape);

fn main() {
    if let Ok(spec) = std::env::var(MEM_CHILD_ENV) {
        memory_child(&spec);
        return;
    }
    let mode = RunMode::from_args();
    if mode == RunMode::Skip {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    let sizes = Sizes::for_mode(mode);
    println!();
    println!("summary (single thread, measured in this run; baseline = bare XorAppenders by position, same samples):");
    summary_append(sizes);
    for (series, samples) in sizes.memory {
        memory_in_child(series, samples);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunMode {
    /// `cargo bench`: criterion, then the summary.
    Full,
    /// `cargo test --benches` or `-- --test`: everything once, small.
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

fn summary_append(sizes: Sizes) {
    // Steady state: alternate rounds of whole scrapes, head then baseline.
    let mut head_scrapes = Scrapes::new(sizes.steady_series);
    let mut bare_scrapes = Scrapes::new(sizes.steady_series);
    let series = head_scrapes.series();
    let hosts = series.div_ceil(head_scrapes.set.series_per_host());
    let per_round = (head_scrapes.records.len() * sizes.summary_round) as u64;
    let mut head = Head::new(head_options());
    let mut bare = Bare::default();
    populate(&mut head, &mut head_scrapes);
    populate(&mut bare, &mut bare_scrapes);
    let (mut head_t, mut bare_t) = (Vec::new(), Vec::new());
    for _ in 0..sizes.summary_rounds {
        head_t.push(timed_appends(&mut head, &mut head_scrapes, per_round));
        bare_t.push(timed_appends(&mut bare, &mut bare_scrapes, per_round));
    }
    let samples = (series * sizes.summary_round) as f64;
    let head_rate = samples / median(&mut head_t).as_secs_f64();
    let bare_rate = samples / median(&mut bare_t).as_secs_f64();
    println!(
        "head append steady-state ({series} series of {hosts} hosts exist, records of {SERIES_PER_RECORD} x 1 sample): \
         {} samples/s on one core; baseline bare XorAppender: {} samples/s; ratio head/baseline: {:.2}",
        si(head_rate),
        si(bare_rate),
        head_rate / bare_rate,
    );
    drop((head, bare));

    // First scrape: every series is created.
    let mut scrapes = head_scrapes;
    let (mut head_t, mut bare_t) = (Vec::new(), Vec::new());
    for _ in 0..sizes.summary_rounds.div_ceil(2) {
        head_t.push(timed_first_scrape(|| Head::new(head_options()), &mut scrapes));
        bare_t.push(timed_first_scrape(Bare::default, &mut scrapes));
    }
    let head_rate = series as f64 / median(&mut head_t).as_secs_f64();
    let bare_rate = series as f64 / median(&mut bare_t).as_secs_f64();
    println!(
        "head append first scrape ({series} new series): {} series/s on one core; \
         baseline new bare XorAppender: {} series/s; ratio head/baseline: {:.2}",
        si(head_rate),
        si(bare_rate),
        head_rate / bare_rate,
    );
}

/// Runs one memory measurement in a fresh process, so that memory the
/// allocator kept from earlier benchmarks does not hide the growth.
fn memory_in_child(series: usize, samples: u64) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            println!("head memory {series} series x {samples} samples: cannot find this executable ({e}); measuring in-process");
            memory_child(&format!("{series}x{samples}"));
            return;
        }
    };
    match std::process::Command::new(exe).env(MEM_CHILD_ENV, format!("{series}x{samples}")).output() {
        Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) => println!(
            "head memory {series} series x {samples} samples: measurement failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => println!("head memory {series} series x {samples} samples: cannot start the measurement ({e})"),
    }
}

/// In the child: builds every record first, then measures RSS around
/// appending `samples` scrapes of them.
fn memory_child(spec: &str) {
    let parsed = spec.split_once('x').and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<u64>().ok()?)));
    let Some((series, samples)) = parsed else {
        eprintln!("{MEM_CHILD_ENV} must be <series>x<samples>, got {spec:?}");
        std::process::exit(2);
    };
    let mut scrapes = Scrapes::new(series);
    let label_bytes = scrapes.label_bytes() as f64 / series as f64;
    let labels = scrapes.records.iter().flatten().map(|ts| ts.labels.len()).sum::<usize>() as f64 / series as f64;
    let records = scrapes.records.len() as u64;
    let head = Head::new(head_options());
    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut appended = 0u64;
    for _ in 0..samples * records {
        let r = scrapes.advance();
        appended += head.append(TENANT, &scrapes.records[r]).appended;
    }
    let took = started.elapsed();
    let rss_after = rss_bytes();
    let n = head.num_series().max(1) as f64;
    let heap = head.heap_bytes() as f64 / n;
    let rss = match (rss_before, rss_after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / n),
        _ => None,
    };
    println!(
        "head memory, {} series x {samples} samples ({appended} appended in {:.1}s, {labels:.1} labels/series): \
         heap_bytes/series: {heap:.0} B; RSS delta/series: {}; raw label bytes/series: {label_bytes:.0} B; \
         ratio heap/raw-labels: {:.2}, RSS/raw-labels: {}; vs 2 KiB/series goal: heap {:.2}x, RSS {}",
        head.num_series(),
        took.as_secs_f64(),
        rss.map_or("n/a".to_owned(), |r| format!("{r:.0} B")),
        heap / label_bytes,
        rss.map_or("n/a".to_owned(), |r| format!("{:.2}", r / label_bytes)),
        heap / GOAL_BYTES_PER_SERIES,
        rss.map_or("n/a".to_owned(), |r| format!("{:.2}x", r / GOAL_BYTES_PER_SERIES)),
    );
    black_box(head);
}

/// Resident set size from `/proc/self/status` (Linux only).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
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
