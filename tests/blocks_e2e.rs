//! Long-term storage end to end, with the real binary: data spanning
//! several 2h windows goes through the block-builder into blocks; the
//! block-builder is killed (-9) between two uploads and restarted; then,
//! with the ingesters' memory empty, every query answers exactly what it
//! answered from the ingesters alone. Also against a real S3-compatible
//! server when one is given (`TIDEMARK_TEST_S3_ENDPOINT`).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tidemark_schemas::prometheus::TimeSeries;

/// 10 counters per tenant, one sample a minute from 7h ago to 10m ago.
fn data(tenant_index: usize, now: i64) -> Vec<TimeSeries> {
    let start = now - 7 * 3_600_000;
    let end = now - 600_000;
    (0..10)
        .map(|i| {
            let samples: Vec<(i64, f64)> = (0..)
                .map(|k| start + k * 60_000)
                .take_while(|&t| t <= end)
                .enumerate()
                .map(|(k, t)| (t, (k * (i + 1) + tenant_index * 1000) as f64))
                .collect();
            let inst = format!("i{i}");
            series(&[("__name__", "blocks_test_total"), ("instance", &inst), ("job", "blocks")], &samples)
        })
        .collect()
}

/// Every query the comparison runs, as (tenant, path).
fn queries(now_s: i64, tenants: &[String]) -> Vec<(String, String)> {
    let (start, end) = (now_s - 8 * 3600, now_s);
    let mut out = Vec::new();
    for t in tenants {
        for (expr, step) in [
            ("blocks_test_total", 60),
            ("sum by (instance) (rate(blocks_test_total[10m]))", 300),
            ("count(blocks_test_total)", 600),
            ("max_over_time(blocks_test_total[1h])", 900),
        ] {
            out.push((
                t.to_string(),
                format!("/prometheus/api/v1/query_range?query={}&start={start}&end={end}&step={step}", enc(expr)),
            ));
        }
        out.push((t.to_string(), format!("/prometheus/api/v1/query?query={}&time={}", enc("blocks_test_total"), now_s - 3 * 3600)));
        out.push((t.to_string(), format!("/prometheus/api/v1/label/instance/values?start={start}&end={end}")));
        out.push((t.to_string(), format!("/prometheus/api/v1/series?match[]=blocks_test_total&start={start}&end={end}")));
    }
    out
}

fn answers(base: &str, now_s: i64, tenants: &[String]) -> Vec<Value> {
    queries(now_s, tenants)
        .into_iter()
        .map(|(tenant, q)| {
            let (status, v) = api_get(base, Some(&tenant), &q);
            assert_eq!(status, 200, "{q}: {v}");
            v["data"].clone()
        })
        .collect()
}

fn metric_sum(base: &str, name: &str) -> f64 {
    let r = http::blocking_client().get(format!("{base}/metrics")).send().expect("metrics");
    r.text()
        .lines()
        .filter(|l| l.starts_with(name) && (l.as_bytes().get(name.len()) == Some(&b' ') || l.as_bytes().get(name.len()) == Some(&b'{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn meta_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(tenants) = std::fs::read_dir(dir) else { return out };
    for t in tenants.flatten() {
        if let Ok(blocks) = std::fs::read_dir(t.path()) {
            for b in blocks.flatten() {
                if b.path().join("meta.json").exists() {
                    out.push(b.path().display().to_string());
                }
            }
        }
    }
    out.sort();
    out
}

/// Waits until two whole block-builder cycles are done after start-up
/// (the first redoes or builds everything, the second finds nothing new)
/// and the store-gateway has refreshed its index since.
fn wait_for_blocks(t: &Tidemark) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // The counter goes up as a cycle starts: 3 means two have ended.
        let cycles = metric_sum(&t.url, "tidemark_block_builder_cycles_total");
        let lag = metric_sum(&t.url, "tidemark_block_builder_lag_records");
        if cycles >= 3.0 && lag == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "blocks never built: {cycles} cycles, lag {lag}; log:\n{}", t.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Five bucket index refreshes.
    std::thread::sleep(Duration::from_secs(1));
}

fn run(name: &str, bucket_args: &[String], bucket_dir: Option<&Path>) {
    let dir = tempfile::Builder::new().prefix(name).tempdir_in(std::env::var("TIDEMARK_TEST_STATE").unwrap_or_else(|_| std::env::temp_dir().display().to_string())).unwrap();
    let now = now_ms();
    let now_s = now / 1000;
    // Tenants of this run alone, even in a shared bucket.
    let tenants: Vec<String> = ["a", "b"].iter().map(|x| format!("{name}-{}-{x}", std::process::id())).collect();
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = bucket_args.to_vec();
        v.extend(extra.iter().map(|s| s.to_string()));
        v.push("-blocks-storage.bucket-store.sync-interval=200ms".into());
        v.push("-querier.query-store-after=0s".into());
        v
    };

    // Until step 4 the compactor (which runs at start-up) must leave the
    // blocks alone: no window of the data ended 12h ago.
    const NO_COMPACTION: &str = "-compactor.compaction-wait-period=12h";

    // 1. Ingesters only: the block-builder's cycle is hours away.
    let mut t = Tidemark::spawn(dir.path(), free_port(), with(&["-block-builder.consume-interval=24h", NO_COMPACTION]));
    t.wait_ready(Duration::from_secs(60));
    // The first cycle runs at start-up, before any data.
    std::thread::sleep(Duration::from_millis(500));
    for (i, tenant) in tenants.iter().enumerate() {
        let (status, body) = push(&t.push_url(), tenant, data(i, now));
        assert_eq!(status, 200, "{body}");
    }
    let expected = answers(&t.url, now_s, &tenants);
    assert!(expected[0]["result"].as_array().is_some_and(|r| r.len() == 10), "{}", expected[0]);
    t.kill();

    // 2. The block-builder runs, and is killed as soon as its first block
    //    is uploaded (more blocks were still to come).
    let port = free_port();
    let mut t = Tidemark::spawn(dir.path(), port, with(&["-block-builder.consume-interval=1s", NO_COMPACTION]));
    if let Some(bucket) = bucket_dir {
        let deadline = Instant::now() + Duration::from_secs(60);
        while meta_files(bucket).is_empty() {
            assert!(Instant::now() < deadline, "no block uploaded; log:\n{}", t.log());
            std::thread::sleep(Duration::from_millis(2));
        }
        let seen = meta_files(bucket).len();
        t.kill();
        eprintln!("{name}: block-builder killed after {seen} uploaded block(s)");
    } else {
        std::thread::sleep(Duration::from_millis(300));
        t.kill();
    }

    // 3. Restarted with an empty head: only the last minute would be kept
    //    in memory, so every answer comes from blocks.
    let t = Tidemark::spawn(dir.path(), port, with(&["-block-builder.consume-interval=1s", "-ingester.head-retention=1m", NO_COMPACTION]));
    t.wait_ready(Duration::from_secs(60));
    wait_for_blocks(&t);
    let uploaded_once = metric_sum(&t.url, "tidemark_store_gateway_blocks_loaded") as usize;
    // Two tenants over 4 windows (a window may be split over partitions).
    assert!(uploaded_once >= 8, "{uploaded_once} blocks");
    assert_eq!(metric_sum(&t.url, "tidemark_ingester_memory_series"), 0.0, "the head must be empty");
    let got = answers(&t.url, now_s, &tenants);
    for (i, (q, (e, g))) in queries(now_s, &tenants).iter().zip(expected.iter().zip(got.iter())).enumerate() {
        assert_eq!(e, g, "query {i} {q:?} differs after the ingesters lost their memory");
    }
    if let Some(bucket) = bucket_dir {
        assert_eq!(meta_files(bucket).len(), uploaded_once, "no duplicate blocks");
    }
    drop(t);

    // 4. The compactor merges each window's blocks (one per partition) and
    //    deletes the sources after the delay; the answers stay the same.
    let t = Tidemark::spawn(
        dir.path(),
        port,
        with(&[
            "-block-builder.consume-interval=1s",
            "-ingester.head-retention=1m",
            "-compactor.compaction-interval=1s",
            "-compactor.compaction-wait-period=0s",
            "-compactor.deletion-delay=2s",
            "-blocks-storage.bucket-store.ignore-deletion-marks-delay=1s",
        ]),
    );
    t.wait_ready(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let compactions = metric_sum(&t.url, "tidemark_compactor_compactions_total");
        let deleted = metric_sum(&t.url, "tidemark_compactor_blocks_deleted_total");
        let runs = metric_sum(&t.url, "tidemark_compactor_runs_total");
        // Deletions done, and a later run found nothing more to do.
        if compactions > 0.0 && deleted > 0.0 && runs >= 5.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no compaction: {compactions} merges, {deleted} deleted; log:\n{}", t.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let compacted = metric_sum(&t.url, "tidemark_store_gateway_blocks_loaded") as usize;
    assert!(compacted < uploaded_once, "{compacted} blocks after compaction, {uploaded_once} before");
    let got = answers(&t.url, now_s, &tenants);
    for (i, (q, (e, g))) in queries(now_s, &tenants).iter().zip(expected.iter().zip(got.iter())).enumerate() {
        assert_eq!(e, g, "query {i} {q:?} differs after compaction");
    }
    if let Some(bucket) = bucket_dir {
        assert_eq!(meta_files(bucket).len(), compacted, "sources deleted");
    }
}

#[test]
fn blocks_on_local_disk_answer_as_the_ingesters_did() {
    let bucket = tempfile::tempdir().unwrap();
    run(
        "blocks-fs",
        &[format!("-blocks-storage.filesystem.dir={}", bucket.path().display())],
        Some(bucket.path()),
    );
}

/// Needs an S3-compatible server; `scripts/test.sh` starts one.
#[test]
#[ignore = "needs an S3-compatible server: run through scripts/test.sh"]
fn blocks_on_s3_answer_as_the_ingesters_did() {
    let endpoint = std::env::var("TIDEMARK_TEST_S3_ENDPOINT")
        .expect("TIDEMARK_TEST_S3_ENDPOINT (set by scripts/test.sh) names the S3-compatible server");
    let bucket = std::env::var("TIDEMARK_TEST_S3_BUCKET").unwrap_or_else(|_| "tidemark-e2e".into());
    run(
        "blocks-s3",
        &[
            "-blocks-storage.backend=s3".into(),
            format!("-blocks-storage.s3.endpoint={endpoint}"),
            format!("-blocks-storage.s3.bucket-name={bucket}"),
            "-blocks-storage.s3.access-key-id=tidemark".into(),
            "-blocks-storage.s3.secret-access-key=tidemark-secret".into(),
            "-blocks-storage.s3.insecure=true".into(),
        ],
        None,
    );
}

fn replay(dir: &Path, bucket: &Path, partition: i32) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["block-builder", "replay", "--partition", &partition.to_string(), "--from", "start"])
        .arg(format!("-data-dir={}", dir.display()))
        .arg(format!("-blocks-storage.filesystem.dir={}", bucket.display()))
        .output()
        .expect("run replay");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "replay failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("100%"), "progress shown");
    stdout
}

#[test]
fn replay_rebuilds_blocks_from_the_log_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let now = now_ms();
    let now_s = now / 1000;
    let tenants: Vec<String> = vec!["replay-a".into(), "replay-b".into()];
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            format!("-blocks-storage.filesystem.dir={}", bucket.path().display()),
            "-blocks-storage.bucket-store.sync-interval=200ms".to_string(),
            "-querier.query-store-after=0s".to_string(),
            // No block-builder cycle reaches this run's records.
            "-block-builder.consume-interval=24h".to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let mut t = Tidemark::spawn(dir.path(), free_port(), base(&[]));
    t.wait_ready(Duration::from_secs(60));
    for (i, tenant) in tenants.iter().enumerate() {
        let (status, body) = push(&t.push_url(), tenant, data(i, now));
        assert_eq!(status, 200, "{body}");
    }
    let expected = answers(&t.url, now_s, &tenants);
    t.kill();
    assert!(meta_files(bucket.path()).is_empty(), "the block-builder built nothing");

    let first = replay(dir.path(), bucket.path(), 0);
    assert!(first.contains("replayed partition 0"), "{first}");
    replay(dir.path(), bucket.path(), 1);
    let built = meta_files(bucket.path());
    assert!(!built.is_empty());
    // Again: the same blocks, overwritten.
    replay(dir.path(), bucket.path(), 0);
    assert_eq!(meta_files(bucket.path()), built);

    let t = Tidemark::spawn(dir.path(), free_port(), base(&["-ingester.head-retention=1m"]));
    t.wait_ready(Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    let got = answers(&t.url, now_s, &tenants);
    for (i, (q, (e, g))) in queries(now_s, &tenants).iter().zip(expected.iter().zip(got.iter())).enumerate() {
        assert_eq!(e, g, "query {i} {q:?} differs after replay");
    }
}
