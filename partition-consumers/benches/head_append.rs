//! The in-memory head's append rate and memory per series.
//!
//! Input: ingest-log record batches of 2,000 node_exporter-like series of
//! `tidemark-workload` (55 metric names, 154 series per host, 7 to 10
//! labels) with one float sample each, decoded from protobuf as the
//! partition consumer sees them, scrape after scrape 15 s apart.
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
use tidemark_workload::{RunMode, SeriesSet};

const TENANT: &str = "bench";
const SERIES_PER_RECORD: usize = 2_000;
const SAMPLES_PER_CHUNK: usize = 120;
const INTERVAL_MS: i64 = 15_000;
const T0_MS: i64 = 1_700_000_000_000;
const GOAL_BYTES_PER_SERIES: f64 = 2048.0;
/// Set in the child processes that measure memory: `<series>x<samples>`.
const MEM_CHILD_ENV: &str = "TIDEMARK_BENCH_HEAD_MEMORY";

fn head_options() -> HeadOptions {
    HeadOptions {
        samples_per_chunk: SAMPLES_PER_CHUNK,
        retention_ms: 24 * 3_600_000,
    }
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
    set: SeriesSet,
    records: Vec<Vec<TimeSeries>>,
    /// Record appends handed out so far: record `next % records.len()` of
    /// scrape `next / records.len()` is the next one.
    next: u64,
}

impl Scrapes {
    fn new(series: usize) -> Self {
        let set = SeriesSet::new();
        let records = (0..series)
            .step_by(SERIES_PER_RECORD)
            .map(|first| {
                let req = set.write_request(first..series.min(first + SERIES_PER_RECORD), 0, T0_MS);
                WriteRequest::decode(Bytes::from(req.encode_to_vec()))
                    .expect("a WriteRequest decodes")
                    .timeseries
            })
            .collect();
        Scrapes {
            set,
            records,
            next: 0,
        }
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
            ts.samples[0] = Sample {
                value: self.set.value(first + k, scrape),
                timestamp: T0_MS + scrape as i64 * INTERVAL_MS,
            };
        }
        r
    }

    /// Raw label bytes (names and values) of every series.
    fn label_bytes(&self) -> usize {
        self.records
            .iter()
            .flatten()
            .flat_map(|ts| &ts.labels)
            .map(|l| l.name.len() + l.value.len())
            .sum()
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
    let mut g = c.benchmark_group(format!(
        "head_append_steady_{}k_series",
        sizes.steady_series / 1000
    ));
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
        g.bench_function("head_append", |b| {
            b.iter_custom(|iters| timed_appends(&mut head, &mut scrapes, iters))
        });
    }
    g.finish();
}

fn bench_first_scrape(c: &mut Criterion) {
    let sizes = Sizes::for_mode(RunMode::from_args());
    let mut scrapes = Scrapes::new(sizes.steady_series);
    let mut g = c.benchmark_group(format!(
        "head_append_first_scrape_{}k_new_series",
        sizes.steady_series / 1000
    ));
    g.throughput(Throughput::Elements(scrapes.series() as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("baseline_new_bare_xor_appenders", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| timed_first_scrape(Bare::default, &mut scrapes))
                .sum()
        })
    });
    g.bench_function("head_append_new_series", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| timed_first_scrape(|| Head::new(head_options()), &mut scrapes))
                .sum()
        })
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
        head_t.push(timed_first_scrape(
            || Head::new(head_options()),
            &mut scrapes,
        ));
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
    match std::process::Command::new(exe)
        .env(MEM_CHILD_ENV, format!("{series}x{samples}"))
        .output()
    {
        Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) => println!(
            "head memory {series} series x {samples} samples: measurement failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => println!(
            "head memory {series} series x {samples} samples: cannot start the measurement ({e})"
        ),
    }
}

/// In the child: builds every record first, then measures RSS around
/// appending `samples` scrapes of them.
fn memory_child(spec: &str) {
    let parsed = spec
        .split_once('x')
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<u64>().ok()?)));
    let Some((series, samples)) = parsed else {
        eprintln!("{MEM_CHILD_ENV} must be <series>x<samples>, got {spec:?}");
        std::process::exit(2);
    };
    let mut scrapes = Scrapes::new(series);
    let label_bytes = scrapes.label_bytes() as f64 / series as f64;
    let labels = scrapes
        .records
        .iter()
        .flatten()
        .map(|ts| ts.labels.len())
        .sum::<usize>() as f64
        / series as f64;
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
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
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
