//! A real Prometheus (Debian's `prometheus` package) scrapes itself and
//! remote-writes to a real `tidemark`; the same PromQL at the same time must
//! give the same answer from both. Runs once on the embedded log and once on
//! Kafka.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const EXPRESSIONS: &[&str] = &[
    "up",
    "prometheus_build_info",
    "prometheus_tsdb_head_series",
    "sum by (job) (up)",
    "rate(prometheus_http_requests_total[30s])",
    "sum without (handler) (increase(prometheus_http_requests_total[1m]))",
    "max by (quantile) (prometheus_target_interval_length_seconds)",
    "avg(prometheus_tsdb_head_chunks) * 2 - 1",
    "count by (__name__) ({__name__=~\"prometheus_tsdb_.*\", job=\"prometheus\"})",
    "histogram_quantile(0.9, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[1m])))",
    "max_over_time(sum(rate(prometheus_http_requests_total[30s]))[1m:5s])",
    "prometheus_tsdb_head_chunks @ end() - prometheus_tsdb_head_chunks offset 2s",
    "topk(3, prometheus_http_requests_total)",
];

struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> String {
    let bin =
        std::env::var("TIDEMARK_TEST_PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into());
    assert!(
        Path::new(&bin).exists(),
        "{bin} not found: run scripts/test.sh, which installs Debian's prometheus package"
    );
    bin
}

fn start_prometheus(dir: &Path, push_url: &str) -> Prometheus {
    let port = free_port();
    let config = format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
remote_write:
  - url: "{push_url}"
    headers:
      X-Scope-OrgID: "{TENANT}"
    queue_config:
      batch_send_deadline: 200ms
      min_backoff: 50ms
      max_backoff: 1s
"#
    );
    std::fs::create_dir_all(dir).unwrap();
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(prometheus_binary())
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start prometheus");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// `labels → value` of an instant query, the name included.
fn vector(base: &str, tenant: Option<&str>, expr: &str, time_s: f64) -> BTreeMap<String, f64> {
    let (status, v) = api_get(
        base,
        tenant,
        &format!("/api/v1/query?query={}&time={time_s}", enc(expr)),
    );
    assert_eq!(status, 200, "{base}: {expr}: {v}");
    let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
    result
        .iter()
        .map(|s: &Value| {
            let labels = s["metric"].to_string();
            (labels, value_of(s))
        })
        .collect()
}

fn same(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ka, va), (kb, vb))| {
            ka == kb
                && (va == vb
                    || (va.is_nan() && vb.is_nan())
                    || ((va - vb).abs() <= 1e-9 * va.abs().max(vb.abs())))
        })
}

fn compare_with_prometheus(tidemark_args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let tm = Tidemark::start(&dir.path().join("tidemark"), tidemark_args);
    // The remote_write block sets X-Scope-OrgID; Debian's Prometheus 2.42
    // drops it, so a proxy sets it too (see TenantProxy).
    let proxy = TenantProxy::start(&tm.url, TENANT);
    let prom = start_prometheus(
        &dir.path().join("prometheus"),
        &format!("{}/api/v1/push", proxy.url),
    );

    // Wait for data to flow and for 1m-windows to fill enough to be interesting.
    let first = Instant::now();
    loop {
        let got = vector(&tm.url, Some(TENANT), "up", now_ms() as f64 / 1000.0);
        if !got.is_empty() {
            break;
        }
        assert!(
            first.elapsed() < Duration::from_secs(60),
            "no data from Prometheus reached Tidemark"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(8));

    for expr in EXPRESSIONS {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // A time a couple of seconds back, so that remote write has sent it.
            let t = (now_ms() - 3000) as f64 / 1000.0;
            let want = vector(&prom.url, None, expr, t);
            let got = vector(&tm.url, Some(TENANT), expr, t);
            assert!(!want.is_empty(), "Prometheus has no data for {expr}");
            if same(&want, &got) {
                break;
            }
            if Instant::now() > deadline {
                panic!("{expr} at {t}: Tidemark differs from Prometheus\nprometheus: {want:#?}\ntidemark:   {got:#?}\ntidemark log:\n{}", tm.log());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[test]
#[ignore = "needs Prometheus: run scripts/test.sh"]
fn prometheus_remote_write_embedded_log() {
    compare_with_prometheus(&[]);
}

#[test]
#[ignore = "needs Prometheus and a Kafka-protocol broker: run scripts/test.sh"]
fn prometheus_remote_write_kafka() {
    let kafka = kafka_address();
    let topic = unique_topic("e2e-prom");
    let a = format!("-ingest-storage.kafka.address={kafka}");
    let b = format!("-ingest-storage.kafka.topic={topic}");
    compare_with_prometheus(&[&a, &b]);
}

/// `promtool query` speaks to Tidemark as to Prometheus (on `/api/v1`).
#[test]
#[ignore = "needs promtool: run scripts/test.sh"]
fn promtool_queries_tidemark() {
    let promtool = Path::new(&prometheus_binary()).with_file_name("promtool");
    assert!(
        promtool.exists(),
        "{} not found: run scripts/test.sh",
        promtool.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let tm = Tidemark::start(dir.path(), &["-auth.multitenancy-enabled=false"]);
    let t = now_ms();
    let s = series(
        &[("__name__", "promtool_e2e"), ("job", "cli")],
        &[(t - 1000, 41.0), (t, 42.0)],
    );
    // The tenant header is ignored with multitenancy off.
    let (status, body) = push(&tm.push_url(), "ignored", vec![s]);
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(&promtool)
            .args([
                "query",
                "instant",
                &tm.url,
                "promtool_e2e * 2",
                &format!("--time={}", t / 1000 + 1),
            ])
            .output()
            .expect("run promtool");
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.contains("84") {
            assert!(text.contains("job=\"cli\""), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "promtool: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = Command::new(&promtool)
        .args(["query", "labels", &tm.url, "job"])
        .output()
        .expect("run promtool");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cli"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
