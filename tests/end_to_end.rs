//! End-to-end tests of the real `tidemark` binary on its embedded log:
//! remote write in, Prometheus API out, bad input, and a crash.

mod support;

use std::time::Duration;

use support::*;
use tidemark_schemas::prometheus::metric_metadata::MetricType;
use tidemark_schemas::prometheus::{MetricMetadata, WriteRequest};

#[test]
fn push_then_query_through_the_prometheus_api() {
    let dir = tempfile::tempdir().unwrap();
    let tm = Tidemark::start(dir.path(), &[]);
    let t0 = (now_ms() / 1000 - 600) * 1000;
    // Two counters scraped every 15s for 10 minutes, one gauge.
    let counter = |job: &str, per_scrape: f64| {
        let samples: Vec<(i64, f64)> = (0..40)
            .map(|i| (t0 + i * 15_000, i as f64 * per_scrape))
            .collect();
        series(
            &[
                ("__name__", "http_requests_total"),
                ("job", job),
                ("instance", "a:80"),
            ],
            &samples,
        )
    };
    let gauge = series(
        &[("__name__", "temperature"), ("room", "lab")],
        &[(t0, 21.5), (t0 + 15_000, 22.0)],
    );
    let (s, body) = push(
        &tm.push_url(),
        TENANT,
        vec![counter("api", 15.0), counter("web", 30.0), gauge],
    );
    assert_eq!(s, 200, "{body}");

    let end_s = (t0 + 39 * 15_000) as f64 / 1000.0;
    let r = eventually(&tm.url, TENANT, "http_requests_total", end_s, |r| {
        r.len() == 2
    });
    assert_eq!(r[0]["metric"]["__name__"], "http_requests_total");

    // rate over a counter growing 1/s (api) and 2/s (web).
    let r = instant(
        &tm.url,
        TENANT,
        "sum by (job) (rate(http_requests_total[5m]))",
        end_s,
    );
    let mut rates: Vec<(String, f64)> = r
        .iter()
        .map(|s| (s["metric"]["job"].as_str().unwrap().to_owned(), value_of(s)))
        .collect();
    rates.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(rates.len(), 2);
    assert!((rates[0].1 - 1.0).abs() < 1e-9, "{rates:?}");
    assert!((rates[1].1 - 2.0).abs() < 1e-9, "{rates:?}");
    assert!(rates.iter().all(|(_, _)| true));

    let r = instant(
        &tm.url,
        TENANT,
        "temperature * 2",
        (t0 + 15_000) as f64 / 1000.0,
    );
    assert_eq!(value_of(&r[0]), 44.0);
    assert!(
        r[0]["metric"].get("__name__").is_none(),
        "arithmetic drops the name"
    );

    // Range query, over the legacy /api/v1 prefix too.
    let (s, v) = api_get(
        &tm.url,
        Some(TENANT),
        &format!(
            "/api/v1/query_range?query=temperature&start={}&end={}&step=15",
            t0 / 1000,
            t0 / 1000 + 60
        ),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix");
    let values = v["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(
        values.len(),
        5,
        "lookback carries the last sample forward: {values:?}"
    );

    // Labels, values and series.
    let (_, v) = api_get(&tm.url, Some(TENANT), "/prometheus/api/v1/labels");
    let labels: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(labels, ["__name__", "instance", "job", "room"]);
    let (_, v) = api_get(&tm.url, Some(TENANT), "/prometheus/api/v1/label/job/values");
    assert_eq!(v["data"], serde_json::json!(["api", "web"]));
    let (_, v) = api_get(
        &tm.url,
        Some(TENANT),
        &format!(
            "/prometheus/api/v1/series?match[]={}",
            enc("{job=~\"a.*\"}")
        ),
    );
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");

    // Metric metadata sent with remote write comes back in Prometheus' shape.
    let md = |name: &str, kind: MetricType, help: &str| MetricMetadata {
        r#type: kind as i32,
        metric_family_name: name.as_bytes().to_vec().into(),
        help: help.as_bytes().to_vec().into(),
        unit: Vec::new().into(),
    };
    let req = WriteRequest {
        timeseries: vec![],
        metadata: vec![
            md(
                "http_requests_total",
                MetricType::Counter,
                "Requests served.",
            ),
            md("temperature", MetricType::Gauge, "Room temperature."),
        ],
    };
    assert_eq!(push_raw(&tm.push_url(), Some(TENANT), encode(&req)).0, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let v = loop {
        let (s, v) = api_get(&tm.url, Some(TENANT), "/prometheus/api/v1/metadata");
        assert_eq!(s, 200, "{v}");
        if v["data"].as_object().is_some_and(|o| o.len() == 2)
            || std::time::Instant::now() > deadline
        {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        v["data"]["http_requests_total"],
        serde_json::json!([{"type": "counter", "help": "Requests served.", "unit": ""}])
    );
    let (_, v) = api_get(
        &tm.url,
        Some(TENANT),
        "/prometheus/api/v1/metadata?metric=temperature",
    );
    assert_eq!(v["data"]["temperature"][0]["type"], "gauge");
    assert_eq!(v["data"].as_object().map(|o| o.len()), Some(1));
    let (_, v) = api_get(&tm.url, Some("someone-else"), "/prometheus/api/v1/metadata");
    assert_eq!(v["data"], serde_json::json!({}));

    // Tenants are isolated.
    assert!(instant(&tm.url, "someone-else", "http_requests_total", end_s).is_empty());
    // Effective config and metrics.
    let r = http::blocking_client()
        .get(format!("{}/config", tm.url))
        .send()
        .unwrap();
    assert!(r.text().contains("http_listen_port"));
    let r = http::blocking_client()
        .get(format!("{}/metrics", tm.url))
        .send()
        .unwrap();
    let metrics = r.text();
    assert!(
        metrics.contains("tidemark_distributor_received_samples_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tidemark_query_requests_total"),
        "{metrics}"
    );
}

#[test]
fn bad_input_gets_its_status_and_accepted_data_stays() {
    let dir = tempfile::tempdir().unwrap();
    let tm = Tidemark::start(dir.path(), &["-distributor.max-recv-msg-size=65536"]);
    let t = now_ms();
    let good = series(&[("__name__", "kept"), ("job", "x")], &[(t, 7.0)]);
    assert_eq!(push(&tm.push_url(), TENANT, vec![good]).0, 200);

    let url = tm.push_url();
    let (s, m) = push_raw(&url, None, encode(&WriteRequest::default()));
    assert_eq!(s, 401, "missing tenant: {m}");
    let (s, m) = push_raw(&url, Some(TENANT), b"this is not snappy".to_vec());
    assert_eq!(s, 400, "bad snappy: {m}");
    assert!(m.contains("snappy"), "{m}");
    let garbage = snap::raw::Encoder::new()
        .compress_vec(&[0xffu8; 100])
        .unwrap();
    let (s, m) = push_raw(&url, Some(TENANT), garbage);
    assert_eq!(s, 400, "garbage protobuf: {m}");
    let big = snap::raw::Encoder::new()
        .compress_vec(&vec![0u8; 1 << 20])
        .unwrap();
    let (s, m) = push_raw(&url, Some(TENANT), big);
    assert_eq!(s, 413, "oversize: {m}");
    let (s, m) = push_raw(&url, Some(TENANT), vec![1u8; 100_000]);
    assert_eq!(s, 413, "oversize body: {m}");
    let (s, m) = push(
        &url,
        TENANT,
        vec![series(
            &[("__name__", "bad"), ("bad-label", "x")],
            &[(t, 1.0)],
        )],
    );
    assert_eq!(s, 400);
    assert!(
        m.contains("bad-label") && m.contains("bad{"),
        "message names the series: {m}"
    );
    let (s, m) = push(
        &url,
        TENANT,
        vec![series(&[("job", "no-name")], &[(t, 1.0)])],
    );
    assert_eq!(s, 400);
    assert!(m.contains("metric name"), "{m}");
    let (s, _) = push(
        &url,
        "bad/tenant",
        vec![series(&[("__name__", "x")], &[(t, 1.0)])],
    );
    assert_eq!(s, 400, "invalid tenant ID");

    let (s, v) = api_get(&tm.url, None, "/prometheus/api/v1/query?query=kept");
    assert_eq!(s, 401, "query without tenant: {v}");
    let (s, v) = api_get(&tm.url, Some(TENANT), "/prometheus/api/v1/query?query=sum(");
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["errorType"], "bad_data");

    let r = eventually(&tm.url, TENANT, "kept", t as f64 / 1000.0, |r| r.len() == 1);
    assert_eq!(value_of(&r[0]), 7.0);
}

#[test]
fn kill_dash_nine_after_ack_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut tm = Tidemark::start(dir.path(), &[]);
    let base = now_ms() - 60_000;
    let mut expected = 0;
    for round in 0..3 {
        for i in 0..20 {
            let n = round * 20 + i;
            let s = series(
                &[("__name__", "crash_test"), ("n", &n.to_string())],
                &[(base + n as i64, n as f64)],
            );
            let (status, body) = push(&tm.push_url(), TENANT, vec![s]);
            assert_eq!(status, 200, "{body}");
            expected += 1;
        }
        // Right after the last 2xx.
        tm.kill();
        tm.restart();
        let r = eventually(
            &tm.url,
            TENANT,
            "crash_test",
            (base + 100) as f64 / 1000.0,
            |r| r.len() >= expected,
        );
        assert_eq!(
            r.len(),
            expected,
            "every acknowledged sample survives kill -9"
        );
        let mut values: Vec<f64> = r.iter().map(value_of).collect();
        values.sort_by(f64::total_cmp);
        let want: Vec<f64> = (0..expected).map(|n| n as f64).collect();
        assert_eq!(values, want);
    }
    // And the restart reports its replay through metrics.
    let r = http::blocking_client()
        .get(format!("{}/metrics", tm.url))
        .send()
        .unwrap();
    assert!(r
        .text()
        .contains("tidemark_ingester_samples_appended_total"));
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn sigterm_stops_cleanly_and_commits_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut tm = Tidemark::start(dir.path(), &["-ingester.ring.instance-id=e2e-ingester"]);
    let t = now_ms();
    let batch: Vec<_> = (0..20)
        .map(|i| {
            series(
                &[("__name__", "term_test"), ("i", &i.to_string())],
                &[(t, 1.0)],
            )
        })
        .collect();
    assert_eq!(push(&tm.push_url(), TENANT, batch).0, 200);
    eventually(
        &tm.url,
        TENANT,
        "count(term_test)",
        t as f64 / 1000.0,
        |r| r.len() == 1 && value_of(&r[0]) == 20.0,
    );

    let status = std::process::Command::new("kill")
        .args(["-TERM", &tm.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = tm.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop after SIGTERM:\n{}",
            tm.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit:?}:\n{}", tm.log());
    // Each partition's consumer committed where it got to, under its group.
    let offsets = dir.path().join("ingest-log/offsets/e2e-ingester");
    let committed: i64 = std::fs::read_dir(&offsets)
        .unwrap()
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .trim()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    assert!(
        committed >= 1,
        "committed offsets under {}: {committed}",
        offsets.display()
    );
    assert!(tm.log().contains("stopped"));
}

/// Remote write 2.0 end to end: a symbolized request with metadata is
/// acknowledged with the counts of what was written, queryable like
/// remote write 1.0 data, and its metadata served by /api/v1/metadata.
#[test]
fn remote_write_2_push_then_query() {
    use prost::Message;
    use tidemark_schemas::write_v2;

    let dir = tempfile::tempdir().unwrap();
    let tm = Tidemark::start(dir.path(), &[]);
    let t = (now_ms() / 1000 - 60) * 1000;
    let symbols: Vec<String> = [
        "",
        "__name__",
        "jobs_done_total",
        "job",
        "batch",
        "worker",
        "Jobs finished.",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let series = |worker_ref: u32, v: f64| write_v2::TimeSeries {
        labels_refs: vec![1, 2, 3, 4, 5, worker_ref],
        samples: vec![
            write_v2::Sample {
                value: v,
                timestamp: t,
                start_timestamp: t - 3_600_000,
            },
            write_v2::Sample {
                value: v + 1.0,
                timestamp: t + 15_000,
                start_timestamp: t - 3_600_000,
            },
        ],
        metadata: Some(write_v2::Metadata {
            r#type: write_v2::metadata::MetricType::Counter as i32,
            help_ref: 6,
            unit_ref: 0,
        }),
        ..Default::default()
    };
    let mut symbols = symbols;
    symbols.push("1".into()); // 8
    symbols.push("2".into()); // 9
    let req = write_v2::Request {
        symbols,
        timeseries: vec![series(8, 10.0), series(9, 20.0)],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let r = http::blocking_client()
        .post(tm.push_url())
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "2.0.0")
        .header("X-Scope-OrgID", TENANT)
        .body(body)
        .send()
        .expect("push");
    assert_eq!(r.status().as_u16(), 200, "{}", r.text());
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Samples-Written").as_deref(),
        Some("4")
    );
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Histograms-Written").as_deref(),
        Some("0")
    );

    let at = (t + 15_000) as f64 / 1000.0;
    let got = eventually(&tm.url, TENANT, "sum(jobs_done_total)", at, |r| {
        r.len() == 1 && value_of(&r[0]) == 32.0
    });
    assert_eq!(got.len(), 1);
    let (s, v) = api_get(
        &tm.url,
        Some(TENANT),
        "/prometheus/api/v1/metadata?metric=jobs_done_total",
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["data"]["jobs_done_total"][0],
        serde_json::json!({"type": "counter", "help": "Jobs finished.", "unit": ""})
    );

    // A request with a reference outside its symbol table: 400, nothing
    // written.
    let bad = write_v2::Request {
        symbols: vec![String::new(), "__name__".into()],
        timeseries: vec![write_v2::TimeSeries {
            labels_refs: vec![1, 5],
            ..Default::default()
        }],
    };
    let r = http::blocking_client()
        .post(tm.push_url())
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .header("X-Scope-OrgID", TENANT)
        .body(
            snap::raw::Encoder::new()
                .compress_vec(&bad.encode_to_vec())
                .unwrap(),
        )
        .send()
        .expect("push");
    assert_eq!(r.status().as_u16(), 400, "{}", r.text());
}
