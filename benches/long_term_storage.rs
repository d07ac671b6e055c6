//! Long-term storage benchmark (issue: block-builder, store-gateway), every
//! figure a ratio to a baseline measured in the same run:
//!
//! 1. Bytes per sample of Tidemark's Parquet blocks on realistic data, next
//!    to a Prometheus TSDB block of the same 2h window written by
//!    `promtool tsdb create-blocks-from openmetrics` (when `PROMTOOL`, or
//!    `promtool` on the PATH, exists).
//! 2. Block-builder throughput (samples/s on one core: one partition read
//!    from the log, blocks built and written to a local bucket) against the
//!    ingester path (the same partition consumed into a head).
//! 3. A dashboard-like query set as 24h range queries over all series,
//!    served from blocks (store-gateway, cold then warm caches) against the
//!    same queries served by the ingester's head.
//!
//! Knobs: SERIES (10000), HOURS (24), INTERVAL_S (15), REPEAT (3),
//! BENCH_DIR (a temporary directory). Run with `scripts/bench/blocks.sh`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use tidemark_block_builder::{BlockBuilder, BlockBuilderConfig, BlockBuilderMetrics};
use tidemark_block_storage::{BucketConfig, BucketIndex};
use tidemark_ingest_log::embedded::{EmbeddedConfig, EmbeddedLog};
use tidemark_ingest_log::IngestLog;
use tidemark_partition_consumers::metrics::IngesterMetrics;
use tidemark_partition_consumers::{Ingester, IngesterConfig};
use tidemark_producers::metrics::DistributorMetrics;
use tidemark_producers::{Distributor, DistributorConfig};
use tidemark_query::engine::{QueryOptions, QueryValue};
use tidemark_query::{Engine, EngineOptions};
use tidemark_storage::Queryable;
use tidemark_store_gateway::{BlockStore, StoreGatewayConfig, StoreGatewayMetrics};
use tidemark_workload::SeriesSet;
use tokio_util::sync::CancellationToken;

const TENANT: &str = "bench";
const H: i64 = 3_600_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(p) {
        for e in entries.flatten() {
            let path = e.path();
            total += if path.is_dir() {
                dir_size(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    total
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let series: usize = env_or("SERIES", 10_000);
    let hours: i64 = env_or("HOURS", 24);
    let interval_ms: i64 = env_or::<i64>("INTERVAL_S", 15) * 1000;
    let repeat: usize = env_or("REPEAT", 3);
    let tmp = match std::env::var("BENCH_DIR") {
        Ok(d) => tempfile::Builder::new().prefix("tidemark-lts-").tempdir_in(d)?,
        Err(_) => tempfile::Builder::new().prefix("tidemark-lts-").tempdir()?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(series, hours, interval_ms, repeat, tmp.path()))
}

async fn run(series: usize, hours: i64, interval_ms: i64, repeat: usize, dir: &Path) -> anyhow::Result<()> {
    let set = SeriesSet::new();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    // Whole 2h windows ending before now; samples 7s off the step grid.
    let end = now.div_euclid(2 * H) * 2 * H;
    let start = end - hours * H;
    let scrapes = (hours * H / interval_ms) as u64;
    let samples = scrapes * series as u64;
    println!("long-term storage benchmark: {series} series x {hours}h at {}s = {samples} samples", interval_ms / 1000);

    // The log: one partition, so each path runs on one core.
    let log: Arc<dyn IngestLog> = Arc::new(EmbeddedLog::open(EmbeddedConfig {
        dir: dir.join("log"),
        partitions: 1,
        fsync: false,
        retention_period: Duration::ZERO,
        ..EmbeddedConfig::default()
    })?);
    let distributor = Distributor::new(
        log.clone(),
        DistributorConfig {
            max_record_size_bytes: EmbeddedConfig::default().max_record_size_bytes,
            ..DistributorConfig::default()
        },
        Arc::new(DistributorMetrics::unregistered()),
    )
    // The load goes as fast as the distributor takes it.
    .with_overrides(tidemark_limits::Overrides::fixed(tidemark_limits::Limits {
        ingestion_rate: 0.0,
        ..tidemark_limits::Limits::default()
    }));
    let load = Instant::now();
    for k in 0..scrapes {
        let req = set.write_request(0..series, k, start + k as i64 * interval_ms + 7_000);
        distributor
            .push(TENANT, &req.encode_to_vec())
            .await
            .map_err(|e| anyhow::anyhow!("push: {e}"))?;
    }
    println!("loaded the log in {:.1}s", load.elapsed().as_secs_f64());

    // Baseline: the ingester path.
    let cancel = CancellationToken::new();
    let t = Instant::now();
    let (ingester, tasks) = Ingester::start(
        log.clone(),
        &[0],
        "bench-ingester",
        &IngesterConfig {
            head_retention: Duration::from_millis((hours * H + 4 * H) as u64),
            ..IngesterConfig::default()
        },
        IngesterMetrics::default(),
        cancel.clone(),
    );
    while ingester.ready().is_err() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ingest_s = t.elapsed().as_secs_f64();
    let ingest_rate = samples as f64 / ingest_s;

    // The block-builder over the same records.
    let bucket_dir = dir.join("bucket");
    let bucket = BucketConfig::default().open(&bucket_dir)?;
    let builder = BlockBuilder::new(log.clone(), bucket.clone(), BlockBuilderConfig::default(), BlockBuilderMetrics::default());
    let t = Instant::now();
    let summaries = builder.run_cycle(i64::MAX / 2).await?;
    let build_s = t.elapsed().as_secs_f64();
    let built: u64 = summaries.iter().map(|s| s.samples).sum();
    let bytes: u64 = summaries.iter().map(|s| s.bytes).sum();
    let blocks: u64 = summaries.iter().map(|s| s.blocks).sum();
    anyhow::ensure!(built == samples, "block-builder wrote {built} samples of {samples}");
    let build_rate = samples as f64 / build_s;

    println!();
    println!("## Throughput (one partition, one core)");
    println!("ingester path (consume + head append): {ingest_rate:>12.0} samples/s ({ingest_s:.1}s)");
    println!("block-builder (consume + build + write): {build_rate:>10.0} samples/s ({build_s:.1}s, {blocks} blocks)");
    println!("ratio block-builder / ingester: {:.2}", build_rate / ingest_rate);

    println!();
    println!("## Bytes per sample");
    let bps = bytes as f64 / samples as f64;
    println!("Tidemark blocks, all {hours}h: {bytes} bytes, {bps:.3} bytes/sample");
    // The first window alone, for the comparison with Prometheus.
    let index = Arc::new(BucketIndex::new(bucket.clone()));
    index.sync().await?;
    let first = index
        .blocks(TENANT)
        .iter()
        .find(|b| b.meta.min_time == start)
        .map(|b| b.meta.clone())
        .ok_or_else(|| anyhow::anyhow!("no block for the first window"))?;
    let first_bps = first.series_file_size as f64 / first.num_samples as f64;
    println!("Tidemark block of the first 2h window: {} bytes, {} samples, {first_bps:.3} bytes/sample", first.series_file_size, first.num_samples);
    match prometheus_block(&set, series, start, interval_ms, dir)? {
        Some((prom_bytes, prom_samples)) => {
            let prom_bps = prom_bytes as f64 / prom_samples as f64;
            println!("Prometheus 2h block of the same window (promtool): {prom_bytes} bytes, {prom_samples} samples, {prom_bps:.3} bytes/sample");
            println!("ratio Tidemark / Prometheus bytes per sample: {:.2}", first_bps / prom_bps);
        }
        None => println!("promtool not found: no Prometheus block to compare with"),
    }

    println!();
    println!("## {hours}h range queries over {series} series (step {}s)", hours * 3600 / 300);
    let store = BlockStore::new(index.clone(), StoreGatewayConfig::default(), StoreGatewayMetrics::default());
    store.sync().await?;
    let from_blocks = Engine::new(Arc::new(store) as Arc<dyn Queryable>, EngineOptions::default());
    let from_head = Engine::new(ingester.clone() as Arc<dyn Queryable>, EngineOptions::default());
    let queries = [
        "sum by (instance) (rate(node_cpu_seconds_total[5m]))",
        "avg_over_time(node_load1[10m])",
        "topk(5, rate(node_network_receive_bytes_total[5m]))",
        "count by (job) (node_filesystem_avail_bytes)",
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    ];
    let (qs, qe) = (start + 10 * 60_000, end - 60_000);
    let step = (qe - qs) / 300;
    println!("{:<90} {:>10} {:>10} {:>10} {:>7}", "query", "head ms", "cold ms", "warm ms", "ratio");
    let mut ratios = Vec::new();
    for q in queries {
        let run_once = |e: &Engine| {
            let e = e.clone();
            async move {
                let t = Instant::now();
                let v = e.range_query(TENANT, q, qs, qe, step, &QueryOptions::default()).await;
                (t.elapsed().as_secs_f64() * 1000.0, v)
            }
        };
        let (cold, cold_v) = run_once(&from_blocks).await;
        let (_, head_v) = run_once(&from_head).await;
        let (cold_v, head_v) = (cold_v.map_err(|e| anyhow::anyhow!("{q}: {e}"))?, head_v.map_err(|e| anyhow::anyhow!("{q}: {e}"))?);
        anyhow::ensure!(same(&cold_v, &head_v), "{q}: blocks and head answer differently");
        let mut warm = Vec::new();
        let mut head = Vec::new();
        for _ in 0..repeat {
            warm.push(run_once(&from_blocks).await.0);
            head.push(run_once(&from_head).await.0);
        }
        let (w, h) = (median(warm), median(head));
        ratios.push(w / h);
        println!("{q:<90} {h:>10.1} {cold:>10.1} {w:>10.1} {:>7.2}", w / h);
    }
    println!("median ratio blocks (warm) / head: {:.2}", median(ratios));
    std::io::stdout().flush()?;
    cancel.cancel();
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

fn same(a: &QueryValue, b: &QueryValue) -> bool {
    match (a, b) {
        (QueryValue::Matrix(a), QueryValue::Matrix(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    x.labels == y.labels
                        && x.points.len() == y.points.len()
                        && x.points.iter().zip(&y.points).all(|(p, q)| {
                            p.t == q.t && (p.v == q.v || (p.v - q.v).abs() <= 1e-9 * p.v.abs().max(1.0))
                        })
                })
        }
        _ => false,
    }
}

/// Writes the first 2h window as OpenMetrics text, builds a Prometheus
/// block from it with promtool, and returns its size and sample count.
fn prometheus_block(set: &SeriesSet, series: usize, start: i64, interval_ms: i64, dir: &Path) -> anyhow::Result<Option<(u64, u64)>> {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    if std::process::Command::new(&promtool).arg("--version").output().is_err() {
        return Ok(None);
    }
    let text = dir.join("window.om");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&text)?);
    // Metric families must be contiguous: series by labels.
    let mut order: Vec<(String, usize)> = (0..series)
        .map(|i| {
            let l = set.labels(i);
            let key = l
                .iter()
                .map(|x| format!("{}={}", String::from_utf8_lossy(&x.name), String::from_utf8_lossy(&x.value)))
                .collect::<Vec<_>>()
                .join(",");
            // __name__ sorts first among these labels.
            (key, i)
        })
        .collect();
    order.sort();
    let scrapes = (2 * H / interval_ms) as u64;
    for (_, i) in order {
        let labels = set.labels(i);
        let name = labels
            .iter()
            .find(|l| l.name.as_ref() == b"__name__")
            .map(|l| String::from_utf8_lossy(&l.value).to_string())
            .unwrap_or_default();
        let rest: Vec<String> = labels
            .iter()
            .filter(|l| l.name.as_ref() != b"__name__")
            .map(|l| format!("{}=\"{}\"", String::from_utf8_lossy(&l.name), String::from_utf8_lossy(&l.value)))
            .collect();
        for k in 0..scrapes {
            let t = start + k as i64 * interval_ms + 7_000;
            writeln!(out, "{name}{{{}}} {} {}.{:03}", rest.join(","), set.value(i, k), t / 1000, t % 1000)?;
        }
    }
    writeln!(out, "# EOF")?;
    out.flush()?;
    drop(out);
    let blocks = dir.join("prometheus-blocks");
    let status = std::process::Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&text)
        .arg(&blocks)
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "promtool failed");
    Ok(Some((dir_size(&blocks), series as u64 * scrapes)))
}
