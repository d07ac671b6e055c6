//! `tidemark bench`: a Prometheus remote-write 1.0 load generator.
//!
//! It generates `--series` node_exporter-like series of `tidemark-workload`
//! (55 metric names, 154 series per host with a request-duration histogram, 7 to 10 labels sorted by
//! name, float samples that move like counters and gauges do) and pushes
//! them as fast as the server accepts: every "scrape" sends one sample per
//! series in snappy-compressed `WriteRequest`s of up to
//! `--series-per-request` series, with timestamps `now - backfill + scrape *
//! interval`.
//!
//! Like Prometheus' remote-write shards, a series always goes through the
//! same worker, and a worker has one request in flight, so every series
//! reaches the server in timestamp order. That caps the useful concurrency at
//! the number of requests per scrape.
//!
//! A generator thread builds request bodies ahead (`--prebuild-mib` of them
//! before the clock starts, then keeping the queues topped up); its cost and
//! whether the workers ever waited for it are printed, so that a slow client
//! shows. Only remote write 1.0 is assumed of the server: a 2xx answer
//! acknowledges the request's samples, anything else is counted as an error
//! by status.
//!
//! The figures cover the `--duration` after `--warmup`: samples and requests
//! acknowledged per second (by completion time), latency percentiles of
//! acknowledged requests, errors. The last line, `RESULT key=value ...`, is
//! meant for scripts. The run fails when no request succeeded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use prost::encoding::{encode_key, encode_varint, message, WireType};
use prost::Message;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT,
};
use tidemark_schemas::prometheus::{Sample, WriteRequest};
use tidemark_workload::SeriesSet;
use tokio::sync::{mpsc, oneshot};

/// Options of `tidemark bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Remote-write URL to push to (Prometheus: http://HOST:9090/api/v1/write).
    #[arg(
        long,
        env = "TIDEMARK_BENCH_URL",
        default_value = "http://127.0.0.1:9009/api/v1/push"
    )]
    pub url: String,
    /// Tenant sent as X-Scope-OrgID; empty sends no header.
    #[arg(long, env = "TIDEMARK_BENCH_TENANT", default_value = "bench")]
    pub tenant: String,
    /// Active series; each scrape sends one sample of each.
    #[arg(long, env = "TIDEMARK_BENCH_SERIES", default_value_t = 10_000)]
    pub series: usize,
    /// Requests in flight at once (one per worker; at most the number of
    /// requests per scrape, so that each series stays in order).
    #[arg(long, env = "TIDEMARK_BENCH_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,
    /// Series per request (Prometheus' max_samples_per_send).
    #[arg(
        long,
        env = "TIDEMARK_BENCH_SERIES_PER_REQUEST",
        default_value_t = 2_000
    )]
    pub series_per_request: usize,
    /// How long to measure, after the warm-up.
    #[arg(long, env = "TIDEMARK_BENCH_DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// How long to push before measuring.
    #[arg(long, env = "TIDEMARK_BENCH_WARMUP", default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Simulated scrape interval: the step between a series' timestamps.
    #[arg(long, env = "TIDEMARK_BENCH_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// How far before now the first scrape's timestamps lie. Scrapes are
    /// sent faster than real time, so timestamps run ahead of the clock;
    /// servers refuse samples too far in the future.
    #[arg(long, env = "TIDEMARK_BENCH_BACKFILL", default_value = "2h", value_parser = humantime::parse_duration)]
    pub backfill: Duration,
    /// Memory for request bodies built ahead (MiB); filled before the clock
    /// starts.
    #[arg(long, env = "TIDEMARK_BENCH_PREBUILD_MIB", default_value_t = 256)]
    pub prebuild_mib: usize,
    /// Per-request timeout.
    #[arg(long, env = "TIDEMARK_BENCH_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Samples further ahead of the wall clock than this draw a warning.
const FUTURE_WARNING: Duration = Duration::from_secs(5 * 60);
/// Prometheus compacts its head once it spans 1.5 x 2h.
const SPAN_WARNING: Duration = Duration::from_secs(3 * 3600);

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let url = check_args(&args)?;
    let start_ms = unix_ms()? - args.backfill.as_millis() as i64;
    let interval_ms = args.interval.as_millis() as i64;
    let mut generator = Generator::new(args.series, args.series_per_request, start_ms, interval_ms);
    let requests = generator.requests_per_scrape();
    let workers = args.concurrency.min(requests);

    // One body to check the encoding and size the queues.
    let probe = generator.build(0, 0)?;
    generator.verify(&probe)?;
    let scrape_bytes = probe.data.len() * requests;
    let ahead = ((args.prebuild_mib << 20) / scrape_bytes.max(1)).clamp(1, 1000);
    let per_worker = requests.div_ceil(workers) * ahead;

    println!(
        "tidemark bench: {} series on {} hosts ({:.1} labels/series), {requests} requests of up to {} series per scrape, \
         interval {}, to {url}{}",
        args.series,
        args.series.div_ceil(generator.set.series_per_host()),
        generator.labels_per_series(),
        args.series_per_request,
        humantime::format_duration(args.interval),
        if args.tenant.is_empty() { String::new() } else { format!(" as tenant {:?}", args.tenant) },
    );
    if workers < args.concurrency {
        println!(
            "concurrency {} capped at {workers}, the requests per scrape (a series always goes through the same worker, \
             one request at a time); raise --series for more",
            args.concurrency
        );
    }

    let gen_stats = Arc::new(GeneratorStats::default());
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| mpsc::channel::<Body>(per_worker))
        .unzip();
    let (ready_tx, ready_rx) = oneshot::channel();
    let generator_thread = {
        let stats = gen_stats.clone();
        std::thread::Builder::new()
            .name("bench-generator".into())
            .spawn(move || generate(generator, txs, ahead as u64, ready_tx, &stats))
            .context("starting the generator thread")?
    };
    let prebuild_started = Instant::now();
    if ready_rx.await.is_err() {
        // The generator stopped before filling the queues: say why.
        return match join_generator(generator_thread).await {
            Err(e) => Err(e),
            Ok(()) => bail!("the request generator stopped early"),
        };
    }
    let (built_samples, built_bytes, busy) = gen_stats.snapshot();
    println!(
        "generator: {} samples/s on one core (protobuf + snappy); prebuilt {ahead} scrapes = {} requests, ~{} \
         ({} per request) in {:.2}s",
        si(built_samples as f64 / busy.as_secs_f64().max(1e-9)),
        ahead * requests,
        mib(built_bytes),
        kib(probe.data.len() as u64),
        prebuild_started.elapsed().as_secs_f64(),
    );

    let clients = (0..workers)
        .map(|_| client(&args))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = Instant::now();
    let window = Window {
        start: start + args.warmup,
        end: start + args.warmup + args.duration,
    };
    println!(
        "pushing with {workers} workers: warm-up {}, then measuring {}",
        humantime::format_duration(args.warmup),
        humantime::format_duration(args.duration)
    );
    let probe_task = tokio::spawn(probe_window(window, gen_stats.clone()));
    let handles: Vec<_> = rxs
        .into_iter()
        .zip(clients)
        .map(|(rx, client)| tokio::spawn(worker(client, url.clone(), rx, window)))
        .collect();
    let mut stats = WorkerStats::default();
    for h in handles {
        stats.merge(h.await.context("a bench worker panicked")?);
    }
    let usage = probe_task.await.context("the measuring task panicked")?;
    // The workers are gone, so the generator's next send fails and it stops.
    join_generator(generator_thread).await?;

    report(
        &args,
        workers,
        &stats,
        &usage,
        window,
        start_ms,
        interval_ms,
    );
    if stats.total_ok == 0 {
        if stats.total_requests == 0 {
            bail!(
                "no request completed within {}",
                humantime::format_duration(args.warmup + args.duration)
            );
        }
        bail!("every request failed ({} requests)", stats.total_requests);
    }
    Ok(())
}

fn check_args(args: &BenchArgs) -> anyhow::Result<reqwest::Url> {
    if args.series == 0 || args.series_per_request == 0 || args.concurrency == 0 {
        bail!("--series, --series-per-request and --concurrency must be positive");
    }
    if args.interval.as_millis() == 0 {
        bail!("--interval must be at least 1ms");
    }
    if args.duration.is_zero() {
        bail!("--duration must be positive");
    }
    let url = reqwest::Url::parse(&args.url).with_context(|| format!("--url {:?}", args.url))?;
    if url.scheme() != "http" {
        bail!("--url must be http:// (this build has no TLS client)");
    }
    Ok(url)
}

fn client(args: &BenchArgs) -> anyhow::Result<reqwest::Client> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("tidemark-bench/", env!("CARGO_PKG_VERSION"))),
    );
    headers.insert(
        HeaderName::from_static("x-prometheus-remote-write-version"),
        HeaderValue::from_static("0.1.0"),
    );
    if !args.tenant.is_empty() {
        let v =
            HeaderValue::from_str(&args.tenant).context("--tenant is not a valid header value")?;
        headers.insert(HeaderName::from_static("x-scope-orgid"), v);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .timeout(args.timeout)
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")
}

fn unix_ms() -> anyhow::Result<i64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_millis() as i64)
}

/// One request body.
struct Body {
    data: Bytes,
    samples: u64,
    scrape: u64,
}

/// Builds request bodies: labels are encoded once per series, each scrape
/// adds the sample and compresses.
struct Generator {
    set: SeriesSet,
    /// Per series, its `TimeSeries.labels` fields, encoded.
    labels: Vec<Box<[u8]>>,
    series_per_request: usize,
    start_ms: i64,
    interval_ms: i64,
    raw: Vec<u8>,
    encoder: snap::raw::Encoder,
}

impl Generator {
    fn new(series: usize, series_per_request: usize, start_ms: i64, interval_ms: i64) -> Self {
        let set = SeriesSet::new();
        let labels = (0..series)
            .map(|i| {
                let mut buf = Vec::new();
                for l in set.labels(i) {
                    message::encode(1, &l, &mut buf);
                }
                buf.into_boxed_slice()
            })
            .collect();
        Generator {
            set,
            labels,
            series_per_request,
            start_ms,
            interval_ms,
            raw: Vec::new(),
            encoder: snap::raw::Encoder::new(),
        }
    }

    fn requests_per_scrape(&self) -> usize {
        self.labels.len().div_ceil(self.series_per_request)
    }

    fn labels_per_series(&self) -> f64 {
        let n = self.labels.len().min(10_000);
        (0..n).map(|i| self.set.labels(i).len()).sum::<usize>() as f64 / n.max(1) as f64
    }

    fn timestamp(&self, scrape: u64) -> i64 {
        self.start_ms + scrape as i64 * self.interval_ms
    }

    /// Request `request` of scrape `scrape`, as Prometheus sends it.
    fn build(&mut self, scrape: u64, request: usize) -> anyhow::Result<Body> {
        let first = request * self.series_per_request;
        let end = self.labels.len().min(first + self.series_per_request);
        let timestamp = self.timestamp(scrape);
        self.raw.clear();
        for i in first..end {
            let sample = Sample {
                value: self.set.value(i, scrape),
                timestamp,
            };
            let labels = &self.labels[i];
            // WriteRequest.timeseries (field 1) holding labels, then the sample.
            encode_key(1, WireType::LengthDelimited, &mut self.raw);
            encode_varint(
                (labels.len() + message::encoded_len(2, &sample)) as u64,
                &mut self.raw,
            );
            self.raw.extend_from_slice(labels);
            message::encode(2, &sample, &mut self.raw);
        }
        let data = self
            .encoder
            .compress_vec(&self.raw)
            .context("snappy compression")?;
        Ok(Body {
            data: Bytes::from(data),
            samples: (end - first) as u64,
            scrape,
        })
    }

    /// Decodes a body back and compares it with what was meant.
    fn verify(&self, body: &Body) -> anyhow::Result<()> {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body.data)
            .context("decompressing a generated body")?;
        let req = WriteRequest::decode(raw.as_slice()).context("decoding a generated body")?;
        let n = self.series_per_request.min(self.labels.len());
        let ok = req.timeseries.len() == n
            && req.timeseries.iter().enumerate().all(|(i, ts)| {
                ts.labels == self.set.labels(i)
                    && ts.samples
                        == [Sample {
                            value: self.set.value(i, body.scrape),
                            timestamp: self.timestamp(body.scrape),
                        }]
            });
        if !ok {
            bail!("generated request does not decode to the series it was built from");
        }
        Ok(())
    }
}

#[derive(Default)]
struct GeneratorStats {
    samples: AtomicU64,
    bytes: AtomicU64,
    busy_ns: AtomicU64,
}

impl GeneratorStats {
    fn snapshot(&self) -> (u64, u64, Duration) {
        (
            self.samples.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed)),
        )
    }
}

/// The generator thread: scrape after scrape, request `r` to worker
/// `r % workers`, until the workers are gone. Signals `ready` once `ahead`
/// scrapes are queued.
fn generate(
    mut generator: Generator,
    txs: Vec<mpsc::Sender<Body>>,
    ahead: u64,
    ready: oneshot::Sender<()>,
    stats: &GeneratorStats,
) -> anyhow::Result<()> {
    let requests = generator.requests_per_scrape();
    let mut ready = Some(ready);
    for scrape in 0u64.. {
        for r in 0..requests {
            let started = Instant::now();
            let body = generator.build(scrape, r)?;
            stats
                .busy_ns
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            stats.samples.fetch_add(body.samples, Ordering::Relaxed);
            stats
                .bytes
                .fetch_add(body.data.len() as u64, Ordering::Relaxed);
            if txs[r % txs.len()].blocking_send(body).is_err() {
                return Ok(());
            }
        }
        if scrape + 1 == ahead {
            if let Some(r) = ready.take() {
                // The receiver only goes away when run() gave up.
                let _ = r.send(());
            }
        }
    }
    Ok(())
}

async fn join_generator(handle: std::thread::JoinHandle<anyhow::Result<()>>) -> anyhow::Result<()> {
    match tokio::task::spawn_blocking(move || handle.join()).await {
        Ok(Ok(result)) => result.context("request generator"),
        Ok(Err(_)) => bail!("the request generator panicked"),
        Err(e) => Err(e).context("waiting for the request generator"),
    }
}

/// The measured interval.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }

    /// Part of `[from, to]` inside the window.
    fn overlap(&self, from: Instant, to: Instant) -> Duration {
        to.min(self.end)
            .saturating_duration_since(from.max(self.start))
    }

    fn len(&self) -> Duration {
        self.end - self.start
    }
}

/// What one request came to.
enum Outcome {
    Acked,
    Status(u16, String),
    Transport(&'static str, String),
}

async fn send(client: &reqwest::Client, url: &reqwest::Url, body: Bytes) -> Outcome {
    let resp = match client.post(url.clone()).body(body).send().await {
        Ok(r) => r,
        Err(e) => return transport(&e),
    };
    let status = resp.status();
    // Read the answer to the end so that the connection is reused.
    match resp.bytes().await {
        Ok(_) if status.is_success() => Outcome::Acked,
        Ok(text) => Outcome::Status(status.as_u16(), String::from_utf8_lossy(&text).into_owned()),
        Err(e) if status.is_success() => transport(&e),
        Err(_) => Outcome::Status(status.as_u16(), String::new()),
    }
}

fn transport(e: &reqwest::Error) -> Outcome {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    Outcome::Transport(kind, e.to_string())
}

/// One worker's tally, then everyone's.
#[derive(Default)]
struct WorkerStats {
    /// In the window, by completion time.
    acked_requests: u64,
    acked_samples: u64,
    acked_bytes: u64,
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    error_examples: BTreeMap<String, String>,
    /// Time in the window spent waiting for the generator.
    starved: Duration,
    /// Over the whole run, warm-up included.
    total_requests: u64,
    total_ok: u64,
    last_scrape: Option<u64>,
}

impl WorkerStats {
    fn record(&mut self, outcome: Outcome, body: &Body, latency: Duration, in_window: bool) {
        self.total_requests += 1;
        if matches!(outcome, Outcome::Acked) {
            self.total_ok += 1;
            self.last_scrape = self.last_scrape.max(Some(body.scrape));
        }
        if !in_window {
            return;
        }
        let (key, message) = match outcome {
            Outcome::Acked => {
                self.acked_requests += 1;
                self.acked_samples += body.samples;
                self.acked_bytes += body.data.len() as u64;
                self.latencies_us
                    .push(latency.as_micros().min(u32::MAX as u128) as u32);
                return;
            }
            Outcome::Status(code, text) => (format!("HTTP {code}"), text),
            Outcome::Transport(kind, text) => (kind.to_owned(), text),
        };
        *self.errors.entry(key.clone()).or_default() += 1;
        self.error_examples
            .entry(key)
            .or_insert_with(|| one_line(&message, 160));
    }

    fn merge(&mut self, o: WorkerStats) {
        self.acked_requests += o.acked_requests;
        self.acked_samples += o.acked_samples;
        self.acked_bytes += o.acked_bytes;
        self.latencies_us.extend(o.latencies_us);
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.error_examples {
            self.error_examples.entry(k).or_insert(v);
        }
        self.starved += o.starved;
        self.total_requests += o.total_requests;
        self.total_ok += o.total_ok;
        self.last_scrape = self.last_scrape.max(o.last_scrape);
    }
}

/// Sends its queue's bodies one at a time until the window ends; a request
/// still in flight then is abandoned and not counted.
async fn worker(
    client: reqwest::Client,
    url: reqwest::Url,
    mut rx: mpsc::Receiver<Body>,
    window: Window,
) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let end = tokio::time::Instant::from_std(window.end);
    loop {
        let waiting = Instant::now();
        let body = tokio::select! {
            b = rx.recv() => match b {
                Some(b) => b,
                None => break,
            },
            _ = tokio::time::sleep_until(end) => break,
        };
        let started = Instant::now();
        stats.starved += window.overlap(waiting, started);
        let outcome = tokio::select! {
            o = send(&client, &url, body.data.clone()) => o,
            _ = tokio::time::sleep_until(end) => break,
        };
        let done = Instant::now();
        stats.record(outcome, &body, done - started, window.contains(done));
    }
    stats
}

/// Generator work and process CPU inside the window.
struct Usage {
    generator_busy: Duration,
    generator_samples: u64,
    process_cpu: Option<Duration>,
}

async fn probe_window(window: Window, generator: Arc<GeneratorStats>) -> Usage {
    tokio::time::sleep_until(tokio::time::Instant::from_std(window.start)).await;
    let (s0, _, b0) = generator.snapshot();
    let c0 = process_cpu();
    tokio::time::sleep_until(tokio::time::Instant::from_std(window.end)).await;
    let (s1, _, b1) = generator.snapshot();
    let c1 = process_cpu();
    Usage {
        generator_busy: b1.saturating_sub(b0),
        generator_samples: s1 - s0,
        process_cpu: c0.zip(c1).map(|(a, b)| b.saturating_sub(a)),
    }
}

/// User + system CPU time of this process, from `/proc/self/stat` (Linux;
/// `None` elsewhere). Clock ticks are taken as 1/100 s, Linux' USER_HZ.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name start at field 3.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn report(
    args: &BenchArgs,
    workers: usize,
    s: &WorkerStats,
    usage: &Usage,
    window: Window,
    start_ms: i64,
    interval_ms: i64,
) {
    let secs = window.len().as_secs_f64();
    let samples_per_sec = s.acked_samples as f64 / secs;
    let requests_per_sec = s.acked_requests as f64 / secs;
    let mut lat = s.latencies_us.clone();
    lat.sort_unstable();
    let pct = |q: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        lat[((lat.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
    };
    let (p50, p99, max) = (pct(0.5), pct(0.99), pct(1.0));
    let errors: u64 = s.errors.values().sum();

    println!();
    println!("results over {:.1}s:", secs);
    println!(
        "  acknowledged (2xx): {} samples/s, {:.1} requests/s, {}/s compressed",
        si(samples_per_sec),
        requests_per_sec,
        mib((s.acked_bytes as f64 / secs) as u64),
    );
    println!(
        "  latency of acknowledged requests: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    );
    if s.errors.is_empty() {
        println!("  errors: none");
    } else {
        println!("  errors: {errors} requests");
        for (k, n) in &s.errors {
            let example = s.error_examples.get(k).map(String::as_str).unwrap_or("");
            println!("    {k}: {n} (e.g. {example:?})");
        }
    }

    // The client's side: could it have gone faster than the server?
    let gen_rate = usage.generator_samples as f64 / usage.generator_busy.as_secs_f64().max(1e-9);
    let starved_share = s.starved.as_secs_f64() / (secs * workers.max(1) as f64);
    println!(
        "  client: generator {:.2} of a core ({} samples/s per core), process CPU {}; workers waited for bodies {:.1}% of the time",
        usage.generator_busy.as_secs_f64() / secs,
        if usage.generator_samples > 0 { si(gen_rate) } else { "n/a".to_owned() },
        usage.process_cpu.map_or("n/a".to_owned(), |c| format!("{:.2} cores", c.as_secs_f64() / secs)),
        starved_share * 100.0,
    );
    if usage.generator_samples > 0 && samples_per_sec > 0.0 {
        println!(
            "  ratio generator capacity/acknowledged: {:.1} (one generator core builds {:.1}x what the server acknowledged)",
            gen_rate / samples_per_sec,
            gen_rate / samples_per_sec,
        );
    }
    if starved_share > 0.01 {
        println!("  WARNING: the generator could not keep up; the figure is the client's limit, not the server's");
    }

    if let Some(last) = s.last_scrape {
        let now = unix_ms().unwrap_or(start_ms);
        let last_ts = start_ms + last as i64 * interval_ms;
        let ahead = Duration::from_millis(last_ts.saturating_sub(now).max(0) as u64);
        let span = Duration::from_millis((last as i64 * interval_ms) as u64);
        println!(
            "  timestamps: scrapes 0 to {} acknowledged, spanning {} from {} before the start{}",
            last,
            humantime::format_duration(span),
            humantime::format_duration(args.backfill),
            if ahead.is_zero() {
                String::new()
            } else {
                format!(
                    ", up to {} ahead of the clock",
                    humantime::format_duration(ahead)
                )
            },
        );
        if ahead > FUTURE_WARNING {
            println!(
                "  WARNING: samples ran more than {} ahead of the clock; servers refuse samples too far in the future. \
                 Use more --series, a longer --backfill or a shorter --interval.",
                humantime::format_duration(FUTURE_WARNING)
            );
        }
        if span > SPAN_WARNING {
            println!(
                "  WARNING: timestamps span more than {}; a Prometheus head compacts at that point and the run measures it too.",
                humantime::format_duration(SPAN_WARNING)
            );
        }
    }
    println!(
        "RESULT samples_per_sec={samples_per_sec:.1} requests_per_sec={requests_per_sec:.2} p50_ms={p50:.2} p99_ms={p99:.2} \
         errors={errors} acked_samples={} seconds={secs:.2}",
        s.acked_samples
    );
}

fn one_line(s: &str, max: usize) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
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

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}
