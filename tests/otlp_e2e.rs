//! End-to-end tests of OTLP/HTTP metrics ingestion on the real `tidemark`
//! binary (`-target=all`, embedded log): OpenTelemetry's Python SDK and
//! OTLP/HTTP exporter in, the Prometheus API out; then an OTLP/JSON body.
//!
//! Needs `python3` with `opentelemetry-sdk` and
//! `opentelemetry-exporter-otlp-proto-http` (scripts/test.sh installs them);
//! without them the test fails and says so.

mod support;

use std::process::Command;

use serde_json::Value;
use support::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp/export.py");

fn python_sdk_available() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk.metrics, opentelemetry.exporter.otlp.proto.http.metric_exporter",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "the OpenTelemetry Python packages are not importable; install them with \
             `python3 -m pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http` \
             (scripts/test.sh does): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("python3 is needed for the OTLP end-to-end test: {e}"),
    }
}

/// Each result as (labels without `__name__`, value), sorted.
fn by_labels(r: &[Value]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = r
        .iter()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .map(|m| {
                    let mut l: Vec<String> = m
                        .iter()
                        .filter(|(k, _)| k.as_str() != "__name__")
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect();
                    l.sort();
                    l.join(",")
                })
                .unwrap_or_default();
            (labels, value_of(s))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn python_sdk_export_then_query() {
    python_sdk_available();
    let dir = tempfile::tempdir().unwrap();
    let tm = Tidemark::start(dir.path(), &["-target=all"]);
    let tenant = "otel";
    let out = Command::new("python3")
        .args([SCRIPT, &tm.url, tenant])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{SCRIPT} failed ({}):\n{}\n{}\ntidemark log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tm.log()
    );
    let now_s = now_ms() as f64 / 1000.0;
    let scope = "otel_scope_name=e2e.meter,otel_scope_version=0.1";
    let ids = "instance=inst-1,job=checkout";

    // Monotonic counter: `_total`, point attributes as labels, job and
    // instance from the resource, the scope.
    let r = eventually(&tm.url, tenant, "requests_total", now_s, |r| r.len() == 2);
    assert_eq!(
        by_labels(&r),
        vec![
            (format!("{ids},method=GET,{scope}"), 5.0),
            (format!("{ids},method=POST,{scope}"), 2.0),
        ]
    );

    // Up-down counter: a gauge, no suffix for an annotation unit.
    let r = eventually(&tm.url, tenant, "queue_items", now_s, |r| r.len() == 1);
    assert_eq!(by_labels(&r), vec![(format!("{ids},{scope}"), 7.0)]);

    // Observable gauge with unit Cel.
    let r = eventually(&tm.url, tenant, "room_temperature_celsius", now_s, |r| {
        r.len() == 1
    });
    assert_eq!(
        by_labels(&r),
        vec![(format!("{ids},{scope},room=lab"), 21.5)]
    );

    // Histogram: classic buckets with `le`, `_sum`, `_count`.
    let r = eventually(
        &tm.url,
        tenant,
        "request_duration_seconds_bucket",
        now_s,
        |r| r.len() == 4,
    );
    let got: Vec<(String, f64)> = by_labels(&r)
        .into_iter()
        .map(|(l, v)| {
            (
                l.replace(&format!("{ids},"), "")
                    .replace(&format!(",method=GET,{scope}"), ""),
                v,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("le=+Inf".to_string(), 4.0),
            ("le=0.1".to_string(), 1.0),
            ("le=0.5".to_string(), 2.0),
            ("le=1".to_string(), 3.0),
        ]
    );
    let count = instant(&tm.url, tenant, "request_duration_seconds_count", now_s);
    assert_eq!(value_of(&count[0]), 4.0);
    let sum = instant(&tm.url, tenant, "request_duration_seconds_sum", now_s);
    assert!((value_of(&sum[0]) - 3.05).abs() < 1e-9, "{sum:?}");
    let q = instant(
        &tm.url,
        tenant,
        "histogram_quantile(0.5, request_duration_seconds_bucket)",
        now_s,
    );
    let median = value_of(&q[0]);
    assert!((0.1..=0.5).contains(&median), "median {median}");

    // target_info: the other resource attributes, with job and instance.
    let r = eventually(&tm.url, tenant, "target_info", now_s, |r| r.len() == 1);
    let m = &r[0]["metric"];
    assert_eq!(m["job"], "checkout");
    assert_eq!(m["instance"], "inst-1");
    assert_eq!(m["deployment_environment"], "e2e");
    assert_eq!(m["telemetry_sdk_language"], "python");
    assert!(m.get("service_name").is_none(), "{m}");
    assert_eq!(value_of(&r[0]), 1.0);
    // Joins as Prometheus users write them.
    let r = instant(
        &tm.url,
        tenant,
        "sum by (deployment_environment) (requests_total * on (job, instance) group_left (deployment_environment) target_info)",
        now_s,
    );
    assert_eq!(
        by_labels(&r),
        vec![("deployment_environment=e2e".to_string(), 7.0)]
    );

    // Metadata from the instruments.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let md = loop {
        let (s, md) = api_get(&tm.url, Some(tenant), "/prometheus/api/v1/metadata");
        assert_eq!(s, 200, "{md}");
        if md["data"].get("queue_items").is_some() || std::time::Instant::now() > deadline {
            break md;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(md["data"]["requests_total"][0]["type"], "counter", "{md}");
    assert_eq!(md["data"]["requests_total"][0]["help"], "Requests served.");
    assert_eq!(
        md["data"]["request_duration_seconds"][0]["type"], "histogram",
        "{md}"
    );
    assert_eq!(
        md["data"]["request_duration_seconds"][0]["unit"], "seconds",
        "{md}"
    );
    assert_eq!(md["data"]["queue_items"][0]["type"], "gauge", "{md}");

    // Another tenant sees none of it.
    assert!(instant(&tm.url, "someone-else", "requests_total", now_s).is_empty());
}

#[test]
fn json_body_then_query() {
    let dir = tempfile::tempdir().unwrap();
    let tm = Tidemark::start(dir.path(), &["-target=all"]);
    let tenant = "otel-json";
    let t_ns = (now_ms() as u64) * 1_000_000;
    let body = format!(
        r#"{{"resourceMetrics": [{{
          "resource": {{"attributes": [
            {{"key": "service.name", "value": {{"stringValue": "api"}}}},
            {{"key": "service.namespace", "value": {{"stringValue": "shop"}}}},
            {{"key": "host.name", "value": {{"stringValue": "h1"}}}}
          ]}},
          "scopeMetrics": [{{
            "scope": {{"name": "json.client"}},
            "metrics": [
              {{"name": "http.server.active_requests", "unit": "{{request}}",
                "sum": {{"aggregationTemporality": 2, "isMonotonic": false,
                  "dataPoints": [{{"asInt": "12", "timeUnixNano": "{t_ns}",
                    "attributes": [{{"key": "http.method", "value": {{"stringValue": "GET"}}}}]}}]}}}},
              {{"name": "disk.io", "unit": "By", "sum": {{"aggregationTemporality": 2, "isMonotonic": true,
                  "dataPoints": [{{"asDouble": 4096.5, "timeUnixNano": "{t_ns}"}}]}}}},
              {{"name": "cpu.utilization", "unit": "1",
                "gauge": {{"dataPoints": [{{"asDouble": 0.25, "timeUnixNano": "{t_ns}"}}]}}}},
              {{"name": "deltas", "sum": {{"aggregationTemporality": 1, "isMonotonic": true,
                  "dataPoints": [{{"asInt": "1", "timeUnixNano": "{t_ns}"}}]}}}},
              {{"name": "latency", "unit": "s", "exponentialHistogram": {{"aggregationTemporality": 2,
                  "dataPoints": [{{"timeUnixNano": "{t_ns}", "count": "3", "scale": 2}}]}}}}
            ]
          }}]
        }}]}}"#
    );
    let r = http::blocking_client()
        .post(format!("{}/otlp/v1/metrics", tm.url))
        .header("Content-Type", "application/json")
        .header("X-Scope-OrgID", tenant)
        .body(body.into_bytes())
        .send()
        .expect("post");
    assert_eq!(r.status().as_u16(), 200, "{}", r.text());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let resp: Value = serde_json::from_slice(r.bytes()).expect("JSON response");
    assert_eq!(resp["partialSuccess"]["rejectedDataPoints"], "2", "{resp}");
    let msg = resp["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap_or("");
    assert!(
        msg.contains("\"deltas\"") && msg.contains("\"latency\""),
        "{msg}"
    );

    let now_s = now_ms() as f64 / 1000.0;
    let r = eventually(&tm.url, tenant, "http_server_active_requests", now_s, |r| {
        r.len() == 1
    });
    assert_eq!(
        by_labels(&r),
        vec![(
            "http_method=GET,job=shop/api,otel_scope_name=json.client".to_string(),
            12.0
        )]
    );
    let r = eventually(&tm.url, tenant, "disk_io_bytes_total", now_s, |r| {
        r.len() == 1
    });
    assert_eq!(value_of(&r[0]), 4096.5);
    let r = eventually(&tm.url, tenant, "cpu_utilization_ratio", now_s, |r| {
        r.len() == 1
    });
    assert_eq!(value_of(&r[0]), 0.25);
    let r = eventually(&tm.url, tenant, "target_info", now_s, |r| r.len() == 1);
    assert_eq!(r[0]["metric"]["host_name"], "h1");
    assert_eq!(r[0]["metric"]["job"], "shop/api");
    assert!(instant(&tm.url, tenant, "deltas_total", now_s).is_empty());

    // A JSON body that is no export request: 400 with a JSON google.rpc.Status.
    let r = http::blocking_client()
        .post(format!("{}/otlp/v1/metrics", tm.url))
        .header("Content-Type", "application/json")
        .header("X-Scope-OrgID", tenant)
        .body(b"{\"resourceMetrics\": {}}".to_vec())
        .send()
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    let status: Value = serde_json::from_slice(r.bytes()).expect("JSON status");
    assert_eq!(status["code"], 3, "{status}");
    // No tenant: 401.
    let r = http::blocking_client()
        .post(format!("{}/otlp/v1/metrics", tm.url))
        .header("Content-Type", "application/x-protobuf")
        .body(Vec::new())
        .send()
        .expect("post");
    assert_eq!(r.status().as_u16(), 401);
}
