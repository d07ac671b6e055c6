//! `tidemark backfill` end to end, with the real binary: historic samples
//! (6h ending 3h ago) from an OpenMetrics file or a real Prometheus' remote
//! read go into the embedded log while the server is stopped; the server
//! then builds blocks from them, and queries answer exactly the input from
//! blocks (the ingesters keep only the last minute). Also: resuming from a
//! checkpoint loads only the remainder, and a running server is refused.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

type Labels = BTreeMap<String, String>;
type Expected = BTreeMap<Labels, Vec<(i64, f64)>>;

/// An OpenMetrics file: 3 counters (one with escapes in a label value) and
/// a gauge with fractional values and timestamps, one sample a minute for
/// 6h ending 3h ago. Returns the text and the samples it holds.
fn openmetrics(now_s: i64) -> (String, Expected) {
    let end = now_s - 3 * 3600;
    let start = end - 6 * 3600;
    let start = start - start.rem_euclid(60);
    let mut text = String::from("# HELP bf_test A backfill test counter.\n# TYPE bf_test counter\n");
    let mut expected = Expected::new();
    for i in 0..3i64 {
        let mut labels = Labels::new();
        labels.insert("__name__".into(), "bf_test_total".into());
        labels.insert("instance".into(), format!("i{i}"));
        labels.insert("path".into(), "C:\\dir \"q\"\nz".into());
        let samples = expected.entry(labels).or_default();
        for (k, t) in (start..end).step_by(60).enumerate() {
            let v = (k as i64 * (i + 1)) as f64;
            text.push_str(&format!(
                "bf_test_total{{instance=\"i{i}\",path=\"C:\\\\dir \\\"q\\\"\\nz\"}} {v} {t}\n"
            ));
            samples.push((t * 1000, v));
        }
    }
    text.push_str("# TYPE bf_gauge_ratio gauge\n# UNIT bf_gauge_ratio ratio\n");
    let mut labels = Labels::new();
    labels.insert("__name__".into(), "bf_gauge_ratio".into());
    let samples = expected.entry(labels).or_default();
    for t in (start..end).step_by(60) {
        let v = ((t / 60) % 7) as f64 / 4.0 - 0.5;
        text.push_str(&format!("bf_gauge_ratio {v} {t}.5\n"));
        samples.push((t * 1000 + 500, v));
    }
    text.push_str("# EOF\n");
    (text, expected)
}

fn state_dir(name: &str) -> tempfile::TempDir {
    let base = std::env::var("TIDEMARK_TEST_STATE").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new().prefix(name).tempdir_in(base).unwrap()
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `tidemark backfill` with `args` on the embedded log in `data_dir`.
fn backfill(data_dir: &Path, port: u16, args: &[String]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("backfill")
        .args(args)
        .arg(format!("-data-dir={}", data_dir.display()))
        .arg(format!("-server.http-listen-port={port}"))
        .stdin(Stdio::null())
        .output()
        .expect("run tidemark backfill");
    let run = Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("backfill {args:?}:\n{}{}", run.stdout, run.stderr);
    run
}

/// The number after `word` in `text` (`1440 samples` → 1440 for "samples").
fn count_before(text: &str, word: &str) -> Option<u64> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1].trim_end_matches([',', ';']) == word)
        .and_then(|w| w[0].parse().ok())
}

fn metric_sum(base: &str, name: &str) -> f64 {
    let r = http::blocking_client().get(format!("{base}/metrics")).send().expect("metrics");
    r.text()
        .lines()
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every raw sample of the `bf_` series, as the query API returns them.
fn raw_samples(base: &str, tenant: &str, now_s: i64) -> Expected {
    let (status, v) = api_get(
        base,
        Some(tenant),
        &format!("/prometheus/api/v1/query?query={}&time={now_s}", enc("{__name__=~\"bf_.+\"}[10h]")),
    );
    assert_eq!(status, 200, "{v}");
    let mut out = Expected::new();
    for s in v["data"]["result"].as_array().cloned().unwrap_or_default() {
        let labels: Labels = s["metric"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
            .unwrap_or_default();
        let samples = s["values"]
            .as_array()
            .map(|vs| {
                vs.iter()
                    .map(|p: &Value| {
                        let t = (p[0].as_f64().expect("timestamp") * 1000.0).round() as i64;
                        let v: f64 = p[1].as_str().and_then(|x| x.parse().ok()).expect("value");
                        (t, v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(labels, samples);
    }
    out
}

/// Starts the server on the backfilled data dir and waits until queries
/// answer exactly `expected`, from blocks.
fn check_served_from_blocks(dir: &Path, port: u16, tenant: &str, now_s: i64, expected: &Expected) {
    let t = Tidemark::spawn(
        dir,
        port,
        [
            "-target=all",
            "-block-builder.consume-interval=1s",
            "-querier.query-store-after=0s",
            "-blocks-storage.bucket-store.sync-interval=200ms",
            "-ingester.head-retention=1m",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    t.wait_ready(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut got;
    loop {
        got = raw_samples(&t.url, tenant, now_s);
        if &got == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backfilled samples never came back: {} of {} series, {} of {} samples; log:\n{}",
            got.len(),
            expected.len(),
            got.values().map(Vec::len).sum::<usize>(),
            expected.values().map(Vec::len).sum::<usize>(),
            t.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(metric_sum(&t.url, "tidemark_store_gateway_blocks_loaded") >= 1.0, "no block loaded");
    assert_eq!(metric_sum(&t.url, "tidemark_ingester_memory_series"), 0.0, "answers must come from blocks");
    // The same through query_range, at a step that lands on every sample.
    let series = instant(&t.url, tenant, "count(bf_test_total)", (now_s - 6 * 3600) as f64);
    assert_eq!(series.len(), 1);
    assert_eq!(value_of(&series[0]), 3.0);
}

fn total_samples(e: &Expected) -> u64 {
    e.values().map(|v| v.len() as u64).sum()
}

#[test]
fn backfill_openmetrics_file_into_blocks() {
    let dir = state_dir("backfill-file");
    let now_s = now_ms() / 1000;
    let (text, expected) = openmetrics(now_s);
    let file = dir.path().join("input.om");
    std::fs::write(&file, &text).unwrap();
    let tenant = format!("backfill-file-{}", std::process::id());
    let data = dir.path().join("data");
    let port = free_port();

    let run = backfill(
        &data,
        port,
        &["--tenant".into(), tenant.clone(), "--from-openmetrics".into(), file.display().to_string(), "--batch-size".into(), "500".into()],
    );
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("backfill complete"), "{}", run.stdout);
    assert_eq!(count_before(&run.stdout, "samples"), Some(total_samples(&expected)), "{}", run.stdout);
    assert_eq!(count_before(&run.stdout, "series"), Some(4), "{}", run.stdout);
    assert_eq!(count_before(&run.stdout, "batches"), Some(3), "{}", run.stdout);
    assert!(run.stdout.contains("rejected: none"), "{}", run.stdout);

    check_served_from_blocks(&data, port, &tenant, now_s, &expected);
}

#[test]
fn backfill_resumes_from_checkpoint() {
    let dir = state_dir("backfill-resume");
    let now_s = now_ms() / 1000;
    let (text, expected) = openmetrics(now_s);
    let file = dir.path().join("input.om");
    std::fs::write(&file, &text).unwrap();
    let tenant = "resume";
    let data = dir.path().join("data");
    let checkpoint = dir.path().join("progress.json");

    // A checkpoint as an interrupted run leaves it: acknowledged up to the
    // end of line 400.
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let offset: usize = lines[..400].iter().map(|l| l.len()).sum();
    let done = lines[..400].iter().filter(|l| !l.starts_with('#')).count() as u64;
    let canonical = std::fs::canonicalize(&file).unwrap();
    let cp = serde_json::json!({
        "inputs": format!("tenant={tenant}\nformat=OpenMetrics\nfiles={}", canonical.display()),
        "file_index": 0,
        "offset": offset,
        "line": 400,
        "samples": done,
    });
    std::fs::write(&checkpoint, serde_json::to_vec(&cp).unwrap()).unwrap();

    let args: Vec<String> = vec![
        "--tenant".into(),
        tenant.into(),
        "--from-openmetrics".into(),
        file.display().to_string(),
        "--checkpoint".into(),
        checkpoint.display().to_string(),
        "--batch-size".into(),
        "100".into(),
    ];
    let run = backfill(&data, free_port(), &args);
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("resuming from the checkpoint"), "{}", run.stderr);
    assert!(run.stderr.contains("after line 400"), "{}", run.stderr);
    let remainder = total_samples(&expected) - done;
    assert_eq!(count_before(&run.stdout, "samples"), Some(remainder), "{}", run.stdout);
    let saved: Value = serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    assert_eq!(saved["complete"], Value::Bool(true), "{saved}");
    assert_eq!(saved["samples"].as_u64(), Some(total_samples(&expected)), "{saved}");

    // Done: a new run does nothing.
    let run = backfill(&data, free_port(), &args);
    assert!(run.ok && run.stdout.contains("nothing to do"), "{}{}", run.stdout, run.stderr);

    // A checkpoint of other inputs is refused.
    let mut other = args.clone();
    other[1] = "someone-else".into();
    let run = backfill(&data, free_port(), &other);
    assert!(!run.ok && run.stderr.contains("belongs to other inputs"), "{}", run.stderr);
}

#[test]
fn backfill_refuses_a_running_server_and_bad_input() {
    let dir = state_dir("backfill-refuse");
    let file = dir.path().join("input.om");
    std::fs::write(&file, "# TYPE a gauge\na 1 1700000000\na{x=\"y\"} 2\n").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let args = vec!["--from-openmetrics".to_string(), file.display().to_string()];
    let run = backfill(&dir.path().join("data"), port, &args);
    assert!(!run.ok && run.stderr.contains("stop the server"), "{}", run.stderr);
    drop(listener);

    // A sample without a timestamp is an error that names the line.
    let run = backfill(&dir.path().join("data"), free_port(), &args);
    assert!(!run.ok, "{}", run.stdout);
    assert!(run.stderr.contains("line 3: the sample has no timestamp"), "{}", run.stderr);
}

// --- Remote read from a real Prometheus.

struct Prometheus {
    child: std::process::Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> PathBuf {
    let bin = std::env::var("TIDEMARK_TEST_PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into());
    assert!(Path::new(&bin).exists(), "{bin} not found: run scripts/test.sh, which installs Debian's prometheus package");
    PathBuf::from(bin)
}

/// Prometheus serving the blocks `promtool` made from `file`.
fn start_prometheus(dir: &Path, file: &Path) -> Prometheus {
    let bin = prometheus_binary();
    let promtool = bin.with_file_name("promtool");
    let tsdb = dir.join("tsdb");
    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(file)
        .arg(&tsdb)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(&bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start prometheus");
    let p = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http::blocking_client().get(format!("{}/-/ready", p.url)).send() {
            if r.status().as_u16() == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "prometheus not ready; log:\n{}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

fn rfc3339(s: i64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(s as u64)).to_string()
}

#[test]
#[ignore = "needs Prometheus: run scripts/test.sh"]
fn backfill_from_prometheus_remote_read() {
    let dir = state_dir("backfill-remote-read");
    let now_s = now_ms() / 1000;
    let (text, expected) = openmetrics(now_s);
    let file = dir.path().join("input.om");
    std::fs::write(&file, &text).unwrap();
    let prom = start_prometheus(dir.path(), &file);
    let tenant = format!("backfill-rr-{}", std::process::id());
    let data = dir.path().join("data");
    let port = free_port();

    let url = format!("{}/api/v1/read", prom.url);
    let selector = "{__name__=~\"bf_.+\"}";
    let (start_s, end_s) = (now_s - 10 * 3600, now_s);
    let args = |tenant: &str| -> Vec<String> {
        vec![
            "--tenant".into(),
            tenant.into(),
            "--from-remote-read".into(),
            url.clone(),
            "--match".into(),
            selector.into(),
            "--start".into(),
            rfc3339(start_s),
            "--end".into(),
            rfc3339(end_s),
            "--slice".into(),
            "2h".into(),
            "--batch-size".into(),
            "300".into(),
        ]
    };
    let run = backfill(&data, port, &args(&tenant));
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert_eq!(count_before(&run.stdout, "samples"), Some(total_samples(&expected)), "{}", run.stdout);
    assert_eq!(count_before(&run.stdout, "series"), Some(4), "{}", run.stdout);
    let run = backfill(&data, port, &args(&tenant));
    assert!(run.ok && run.stdout.contains("nothing to do"), "{}{}", run.stdout, run.stderr);

    // Resuming after the first two slices (4h) reads only the rest.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let done_until = (start_s + 4 * 3600) * 1000 - 1;
    let checkpoint = serde_json::json!({
        "inputs": format!("tenant=resumed\nurl={url}\nmatch={selector}\nstart={}\nend={}", start_s * 1000, end_s * 1000),
        "done_until_ms": done_until,
    });
    let cp_path = other.join("rr.json");
    std::fs::write(&cp_path, serde_json::to_vec(&checkpoint).unwrap()).unwrap();
    let mut resumed = args("resumed");
    resumed.extend(["--checkpoint".to_string(), cp_path.display().to_string()]);
    let run = backfill(&other, free_port(), &resumed);
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("resuming from the checkpoint"), "{}", run.stderr);
    let remainder = expected.values().flatten().filter(|(t, _)| *t > done_until).count() as u64;
    assert!(remainder > 0 && remainder < total_samples(&expected));
    assert_eq!(count_before(&run.stdout, "samples"), Some(remainder), "{}", run.stdout);
    drop(prom);

    check_served_from_blocks(&data, port, &tenant, now_s, &expected);
}
