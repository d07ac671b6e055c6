//! Ingester replay speed at start-up (issue "cluster mode": goal ≥ 2M
//! samples/s per core): a partition of `SERIES` node_exporter-like series ×
//! `SCRAPES` scrapes, written through the distributor, replayed into a
//! fresh ingester until `/ready`, on one partition so that it runs on one
//! core. In the same run, the two halves of the replay alone, as baselines:
//!
//! * **read**: reading the partition's records; then reading every series
//!   of them in place (what the ingester does before touching the head),
//!   and, for comparison, decoding them with prost (what it did before);
//! * **head append**: appending the decoded series to a fresh head (the
//!   head's own cost).
//!
//! The log is the embedded one, and with `KAFKA=host:port` also a real
//! Kafka-protocol broker (a fresh topic; `KAFKA_SERIES` × `KAFKA_SCRAPES`,
//! next to an embedded log holding the same records, the two replayed in
//! turn). `scripts/bench/replay.sh` runs it. `REPLAY_ONLY=1` loads and
//! replays the embedded log only, `KAFKA_ONLY=1` the Kafka comparison only
//! (both pause before replaying, for a profiler). Each replay runs `REPEAT`
//! times (5), each into a fresh ingester that must append every sample; the
//! median is reported, per core (CPU time of every thread of the process)
//! and per second, with the minor page faults per 1,000 samples and, from
//! Kafka, the share of librdkafka's threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use tidemark_ingest_log::embedded::{EmbeddedConfig, EmbeddedLog};
use tidemark_ingest_log::kafka::{KafkaConfig, KafkaLog};
use tidemark_ingest_log::IngestLog;
use tidemark_partition_consumers::metrics::{IngesterMetrics, PartitionLabels};
use tidemark_partition_consumers::{Ingester, IngesterConfig};
use tidemark_producers::metrics::DistributorMetrics;
use tidemark_producers::{Distributor, DistributorConfig};
use tidemark_schemas::prometheus::TimeSeries;
use tidemark_schemas::record::{decode_version, RecordBody, VERSION_HEADER};
use tidemark_schemas::scan::RequestSeries;
use tidemark_workload::SeriesSet;
use tokio_util::sync::CancellationToken;

const TENANT: &str = "bench";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let series: usize = env_or("SERIES", 100_000);
    let scrapes: u64 = env_or("SCRAPES", 20);
    // Replays of the embedded log, each into a fresh ingester; the median
    // is reported (this machine's speed varies by ±20% from run to run).
    let repeat: usize = env_or("REPEAT", 5);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let tmp = tempfile::Builder::new().prefix("tidemark-replay-").tempdir()?;
    rt.block_on(async {
        let kafka_address = std::env::var("KAFKA").ok();
        if std::env::var("KAFKA_ONLY").is_ok_and(|v| v == "1") {
            // The Kafka comparison alone, paused before replaying (for a
            // profiler).
            let address = kafka_address.ok_or_else(|| anyhow::anyhow!("KAFKA_ONLY=1 needs KAFKA=host:port"))?;
            return replay_kafka(address, tmp.path(), repeat, true).await;
        }
        let embedded = one_partition_log(&tmp.path().join("log"))?;
        let samples = load(&embedded, series, scrapes).await?;
        println!("replay benchmark: {series} series x {scrapes} scrapes = {samples} samples, one partition");
        if std::env::var("REPLAY_ONLY").is_ok_and(|v| v == "1") {
            // For profiling the replay alone: attach after this line.
            println!("loaded; replaying in 2s");
            tokio::time::sleep(Duration::from_secs(2)).await;
            let replay_rate = replay_median(&embedded, samples, repeat).await?;
            println!("  replay from the embedded log: {replay_rate}");
            return anyhow::Ok(());
        }
        let read_rate = read(&embedded, samples).await?;
        let in_place_rate = read_in_place(&embedded, samples).await?;
        let (decode_rate, batches) = decode(&embedded, samples).await?;
        let append_rate = append(&batches, samples);
        drop(batches);
        let replay_rate = replay_median(&embedded, samples, repeat).await?;
        println!("  read records alone:           {read_rate:>12.0} samples/s");
        println!("  read, series read in place:   {in_place_rate:>12.0} samples/s (what the ingester does)");
        println!("  read, prost decoding:         {decode_rate:>12.0} samples/s (what it did before)");
        println!("  head append alone:            {append_rate:>12.0} samples/s");
        println!("  replay from the embedded log: {replay_rate}");
        println!("                                (ratio to head append alone, per core: {:.2})", replay_rate.cpu / append_rate);
        drop(embedded);
        if let Some(address) = kafka_address {
            replay_kafka(address, tmp.path(), repeat, false).await?;
        }
        println!("goal: replay >= 2M samples/s per core");
        anyhow::Ok(())
    })
}

/// A fresh one-partition embedded log in `dir`, unsynced and never trimmed.
fn one_partition_log(dir: &std::path::Path) -> anyhow::Result<Arc<dyn IngestLog>> {
    Ok(Arc::new(EmbeddedLog::open(EmbeddedConfig {
        dir: dir.to_path_buf(),
        partitions: 1,
        fsync: false,
        retention_period: Duration::ZERO,
        ..EmbeddedConfig::default()
    })?))
}

/// Loads a fresh topic of the broker at `address` and an embedded log with
/// the same records (`KAFKA_SERIES` x `KAFKA_SCRAPES`), then replays each
/// `repeat` times, alternating, and prints both medians.
async fn replay_kafka(address: String, dir: &std::path::Path, repeat: usize, pause: bool) -> anyhow::Result<()> {
    // The same partition as the embedded log's by default (use a smaller
    // one with Tansu on SQLite, far slower to load).
    let (series, scrapes) = (env_or("KAFKA_SERIES", 100_000usize), env_or("KAFKA_SCRAPES", 20u64));
    let kafka: Arc<dyn IngestLog> = Arc::new(
        KafkaLog::connect(&KafkaConfig {
            address,
            topic: format!("replay-bench-{}", std::process::id()),
            auto_create_topic_enabled: true,
            auto_create_topic_default_partitions: 1,
            // librdkafka settings to try, `name=value,...`.
            extra: std::env::var("KAFKA_EXTRA")
                .unwrap_or_default()
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect(),
            ..KafkaConfig::default()
        })
        .await?,
    );
    let small = one_partition_log(&dir.join("small"))?;
    let n = load(&kafka, series, scrapes).await?;
    load(&small, series, scrapes).await?;
    println!("  {series} series x {scrapes} scrapes = {n} samples in Kafka and in an embedded log");
    if pause {
        println!("loaded; replaying in 2s");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Alternating, so that both see the same drift of the machine.
    let (mut from_kafka, mut from_embedded) = (Vec::new(), Vec::new());
    for _ in 0..repeat.max(1) {
        from_kafka.push(replay(&kafka, n).await?);
        from_embedded.push(replay(&small, n).await?);
    }
    let kafka_rate = median("replays from Kafka", from_kafka);
    let small_rate = median("replays from the embedded log", from_embedded);
    println!("  replay from Kafka:            {kafka_rate}");
    println!("  replay from the embedded log: {small_rate}");
    println!("                                (Kafka / embedded log, same records, per core: {:.2})", kafka_rate.cpu / small_rate.cpu);
    Ok(())
}

/// Writes the scrapes through the distributor; returns the sample count.
async fn load(log: &Arc<dyn IngestLog>, series: usize, scrapes: u64) -> anyhow::Result<u64> {
    let set = SeriesSet::new();
    let distributor = Distributor::new(log.clone(), DistributorConfig::default(), Arc::new(DistributorMetrics::unregistered()))
        .with_overrides(tidemark_limits::Overrides::fixed(tidemark_limits::Limits {
            ingestion_rate: 0.0,
            ..tidemark_limits::Limits::default()
        }));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let start = now - scrapes as i64 * 15_000;
    for k in 0..scrapes {
        for chunk in (0..series).step_by(2_000) {
            let req = set.write_request(chunk..(chunk + 2_000).min(series), k, start + k as i64 * 15_000);
            distributor.push(TENANT, &req.encode_to_vec()).await.map_err(|e| anyhow::anyhow!("push: {e}"))?;
        }
    }
    Ok(series as u64 * scrapes)
}

/// Reads every record.
async fn read(log: &Arc<dyn IngestLog>, samples: u64) -> anyhow::Result<f64> {
    let end = log.latest_offset(0).await?;
    let t = Instant::now();
    let mut reader = log.reader(0, 0).await?;
    let (mut next, mut bytes) = (0, 0);
    while next < end {
        for rec in reader.poll(Duration::from_millis(100)).await? {
            bytes += rec.record.value.len();
            next = rec.offset + 1;
        }
    }
    std::hint::black_box(bytes);
    Ok(samples as f64 / t.elapsed().as_secs_f64())
}

/// Reads every record's series in place, as the ingester does.
async fn read_in_place(log: &Arc<dyn IngestLog>, samples: u64) -> anyhow::Result<f64> {
    let end = log.latest_offset(0).await?;
    let t = Instant::now();
    let mut reader = log.reader(0, 0).await?;
    let (mut next, mut n) = (0, 0);
    while next < end {
        for rec in reader.poll(Duration::from_millis(100)).await? {
            n += RequestSeries::read(&rec.record.value)?.samples.len();
            next = rec.offset + 1;
        }
    }
    anyhow::ensure!(n as u64 == samples, "read {n} samples of {samples}");
    Ok(samples as f64 / t.elapsed().as_secs_f64())
}

/// Reads and decodes every record; returns the rate and the decoded batches.
async fn decode(log: &Arc<dyn IngestLog>, samples: u64) -> anyhow::Result<(f64, Vec<Vec<TimeSeries>>)> {
    let end = log.latest_offset(0).await?;
    let t = Instant::now();
    let mut reader = log.reader(0, 0).await?;
    let mut batches = Vec::new();
    let mut next = 0;
    while next < end {
        for rec in reader.poll(Duration::from_millis(100)).await? {
            let version = decode_version(rec.record.header(VERSION_HEADER))?;
            batches.push(RecordBody::decode(version, rec.record.value.clone())?.into_parts().0);
            next = rec.offset + 1;
        }
    }
    Ok((samples as f64 / t.elapsed().as_secs_f64(), batches))
}

/// Appends decoded batches to a fresh head.
fn append(batches: &[Vec<TimeSeries>], samples: u64) -> f64 {
    let cfg = IngesterConfig::default();
    let head = tidemark_partition_consumers::head::Head::new(tidemark_partition_consumers::head::HeadOptions {
        samples_per_chunk: cfg.samples_per_chunk,
        retention_ms: cfg.head_retention.as_millis() as i64,
    });
    let t = Instant::now();
    for (offset, b) in batches.iter().enumerate() {
        head.append_from(TENANT, b, offset as i64);
    }
    let rate = samples as f64 / t.elapsed().as_secs_f64();
    assert!(head.num_series() > 0, "nothing appended");
    rate
}

/// CPU time this process has used, all threads (Linux: /proc/self/stat).
fn cpu_seconds() -> anyhow::Result<f64> {
    let (utime, stime) = (stat_field(11)?, stat_field(12)?);
    // utime and stime: fields 14 and 15, in clock ticks (100 per second
    // on Linux).
    Ok((utime + stime) / 100.0)
}

/// Page faults this process has taken that needed no I/O (fresh or
/// reclaimed memory), all threads.
fn minor_faults() -> anyhow::Result<f64> {
    stat_field(7)
}

/// Field `i` after the command name of /proc/self/stat (field 3 is 0).
fn stat_field(i: usize) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name may hold spaces: fields start after its ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let field = rest.split_whitespace().nth(i).ok_or_else(|| anyhow::anyhow!("short /proc/self/stat"))?;
    Ok(field.parse::<f64>()?)
}

/// CPU seconds of this process' librdkafka threads (named `rdk:...`), the
/// Kafka client's own work (fetching, decompressing).
fn librdkafka_cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| {
            let (head, rest) = stat.rsplit_once(')')?;
            head.contains("(rdk:").then_some(())?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some((fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .sum()
}

/// A replay's speed: samples per second of wall-clock time, and per
/// second of CPU time over every thread of the process (the reader's
/// blocking I/O included): the second is the figure per core.
struct ReplayRate {
    wall: f64,
    cpu: f64,
    /// The share of the CPU time spent in librdkafka's threads.
    librdkafka: f64,
    /// Minor page faults per thousand samples.
    faults: f64,
}

impl std::fmt::Display for ReplayRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:>12.0} samples/s per core ({:.0} per second of wall-clock time, {:.2} cores busy", self.cpu, self.wall, self.wall / self.cpu)?;
        write!(f, ", {:.1} page faults per 1,000 samples", self.faults)?;
        if self.librdkafka > 0.0 {
            write!(f, ", {:.0}% of the CPU time in librdkafka's threads", self.librdkafka * 100.0)?;
        }
        write!(f, ")")
    }
}

/// The median of `repeat` replays (by the rate per core).
async fn replay_median(log: &Arc<dyn IngestLog>, samples: u64, repeat: usize) -> anyhow::Result<ReplayRate> {
    let mut rates = Vec::with_capacity(repeat.max(1));
    for _ in 0..repeat.max(1) {
        rates.push(replay(log, samples).await?);
    }
    Ok(median("replays", rates))
}

/// The median of `rates` (by the rate per core), after printing them all.
fn median(what: &str, mut rates: Vec<ReplayRate>) -> ReplayRate {
    let all: Vec<String> = rates
        .iter()
        .map(|r| match r.librdkafka > 0.0 {
            true => format!("{:.0} ({:.0}% librdkafka, {:.0} faults)", r.cpu, r.librdkafka * 100.0, r.faults),
            false => format!("{:.0} ({:.0} faults)", r.cpu, r.faults),
        })
        .collect();
    println!("  {what}, samples/s per core: {} (in run order)", all.join(" "));
    rates.sort_by(|a, b| a.cpu.total_cmp(&b.cpu));
    rates.swap_remove(rates.len() / 2)
}

/// Starts an ingester on the partition and times it until ready.
async fn replay(log: &Arc<dyn IngestLog>, samples: u64) -> anyhow::Result<ReplayRate> {
    let cancel = CancellationToken::new();
    let (cpu, rdk, faults) = (cpu_seconds()?, librdkafka_cpu_seconds(), minor_faults()?);
    let t = Instant::now();
    let metrics = IngesterMetrics::default();
    let (ingester, tasks) = Ingester::start(log.clone(), &[0], &format!("replay-{}", t.elapsed().as_nanos()), &IngesterConfig::default(), metrics.clone(), cancel.clone());
    while ingester.ready().is_err() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (wall, cpu, rdk) = (t.elapsed().as_secs_f64(), cpu_seconds()? - cpu, librdkafka_cpu_seconds() - rdk);
    let rate = ReplayRate {
        wall: samples as f64 / wall,
        cpu: samples as f64 / cpu,
        librdkafka: rdk / cpu,
        faults: (minor_faults()? - faults) * 1000.0 / samples as f64,
    };
    cancel.cancel();
    for t in tasks {
        let _ = t.await;
    }
    // A replay that skipped records would look fast.
    let appended = metrics.samples_appended.get_or_create(&PartitionLabels { partition: 0 }).get();
    anyhow::ensure!(appended == samples, "the replay appended {appended} samples of {samples}");
    Ok(rate)
}
