//! Per-tenant limits end to end on the real binary: a runtime
//! configuration file gives one tenant a tiny ingestion rate, is rewritten
//! and reloaded without restart; a tenant's series limit caps its series in
//! the ingesters.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn samples_now(n: usize, metric: &str) -> Vec<tidemark_schemas::prometheus::TimeSeries> {
    let t = now_ms();
    (0..n)
        .map(|i| {
            series(
                &[("__name__", metric), ("i", &i.to_string())],
                &[(t, i as f64)],
            )
        })
        .collect()
}

fn push_with_headers(
    url: &str,
    tenant: &str,
    s: Vec<tidemark_schemas::prometheus::TimeSeries>,
) -> (u16, Option<String>, String) {
    let body = encode(&tidemark_schemas::prometheus::WriteRequest {
        timeseries: s,
        metadata: vec![],
    });
    let r = http::blocking_client()
        .post(url.to_owned())
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Scope-OrgID", tenant)
        .body(body)
        .send()
        .expect("push");
    (r.status().as_u16(), r.header("Retry-After"), r.text())
}

fn get_text(url: String) -> (u16, String) {
    let r = http::blocking_client().get(url).send().expect("get");
    (r.status().as_u16(), r.text())
}

/// Polls `check` until it holds; panics (naming `what`) after a minute.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sum of a metric's samples whose line contains every one of `parts`.
fn metric_sum(base: &str, name: &str, parts: &[&str]) -> f64 {
    let (_, text) = get_text(format!("{base}/metrics"));
    text.lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn runtime_overrides_rate_limit_a_tenant_and_reload_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = dir.path().join("runtime.yaml");
    std::fs::write(
        &rt,
        "overrides:\n  tenant-a:\n    ingestion_rate: 1\n    ingestion_burst_size: 10\n",
    )
    .unwrap();
    let rt_flag = format!("-runtime-config.file={}", rt.display());
    let tm = Tidemark::start(
        &dir.path().join("data"),
        &[&rt_flag, "-runtime-config.reload-period=200ms"],
    );
    let url = tm.push_url();

    // A's 100 samples exceed its burst: 429, Retry-After, nothing written.
    let (status, retry, text) = push_with_headers(&url, "tenant-a", samples_now(100, "m"));
    assert_eq!(status, 429, "{text}");
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!(retry >= 1);
    assert!(text.contains("err-tidemark-rate-limited"), "{text}");
    assert!(text.contains("-distributor.ingestion-rate-limit"), "{text}");
    // B has the defaults.
    let (status, _, text) = push_with_headers(&url, "tenant-b", samples_now(100, "m"));
    assert_eq!(status, 200, "{text}");
    let t_s = now_ms() as f64 / 1000.0;
    eventually(&tm.url, "tenant-b", "count(m)", t_s, |r| {
        r.first().map(value_of) == Some(100.0)
    });
    assert!(
        instant(&tm.url, "tenant-a", "count(m)", t_s).is_empty(),
        "nothing of A's written"
    );
    assert!(
        metric_sum(
            &tm.url,
            "tidemark_distributor_discarded_samples_total",
            &["tenant=\"tenant-a\"", "reason=\"rate_limited\""]
        ) >= 100.0
    );

    // The endpoints show the overrides.
    let (s, limits) = api_get(&tm.url, Some("tenant-a"), "/api/v1/user_limits");
    assert_eq!(s, 200);
    assert_eq!(limits["ingestion_rate"], 1.0);
    assert_eq!(limits["ingestion_burst_size"], 10);
    let (s, limits) = api_get(&tm.url, Some("tenant-b"), "/api/v1/user_limits");
    assert_eq!(s, 200);
    assert_eq!(limits["ingestion_rate"], 10000.0);
    let (s, _) = api_get(&tm.url, None, "/api/v1/user_limits");
    assert_eq!(s, 401);
    let (s, text) = get_text(format!("{}/runtime_config", tm.url));
    assert_eq!(s, 200);
    assert!(text.contains("tenant-a:"), "{text}");
    assert!(text.contains("ingestion_burst_size: 10"), "{text}");
    assert!(text.contains("max_global_series_per_user"), "{text}");
    let (_, text) = get_text(format!("{}/runtime_config?mode=diff", tm.url));
    assert!(text.contains("ingestion_burst_size: 10"), "{text}");
    assert!(!text.contains("max_global_series_per_user"), "{text}");

    // A broken file keeps the overrides in force.
    std::fs::write(&rt, "overrides:\n  tenant-a:\n    ingestion_rate: [\n").unwrap();
    wait_for("the failed reload is counted", || {
        metric_sum(
            &tm.url,
            "tidemark_runtime_config_reload_failures_total",
            &[],
        ) >= 1.0
    });
    let (_, limits) = api_get(&tm.url, Some("tenant-a"), "/api/v1/user_limits");
    assert_eq!(limits["ingestion_rate"], 1.0);

    // Raise A's limits; once reloaded, its push goes through.
    std::fs::write(
        &rt,
        "overrides:\n  tenant-a:\n    ingestion_rate: 100000\n    ingestion_burst_size: 1000000\n",
    )
    .unwrap();
    wait_for("tenant-a's new limits", || {
        api_get(&tm.url, Some("tenant-a"), "/api/v1/user_limits").1["ingestion_rate"] == 100000.0
    });
    let (status, _, text) = push_with_headers(&url, "tenant-a", samples_now(100, "m"));
    assert_eq!(status, 200, "{text}");
    let t_s = now_ms() as f64 / 1000.0;
    eventually(&tm.url, "tenant-a", "count(m)", t_s, |r| {
        r.first().map(value_of) == Some(100.0)
    });
}

#[test]
fn series_limit_caps_a_tenants_series_in_the_ingesters() {
    let dir = tempfile::tempdir().unwrap();
    let rt = dir.path().join("runtime.yaml");
    // 8 series over 2 partitions: 4 in each.
    std::fs::write(
        &rt,
        "overrides:\n  small:\n    max_global_series_per_user: 8\n",
    )
    .unwrap();
    let rt_flag = format!("-runtime-config.file={}", rt.display());
    let tm = Tidemark::start(
        &dir.path().join("data"),
        &[&rt_flag, "-ingest-storage.embedded.partitions=2"],
    );
    let url = tm.push_url();
    // The distributor accepts everything: the limit is the ingesters'.
    let (status, _, text) = push_with_headers(&url, "small", samples_now(40, "s"));
    assert_eq!(status, 200, "{text}");
    let (status, _, text) = push_with_headers(&url, "big", samples_now(40, "s"));
    assert_eq!(status, 200, "{text}");
    let t_s = now_ms() as f64 / 1000.0;
    eventually(&tm.url, "big", "count(s)", t_s, |r| {
        r.first().map(value_of) == Some(40.0)
    });
    // Every sample is either in the head or counted as rejected.
    let mut kept = 0.0;
    wait_for("all 40 samples appended or rejected", || {
        kept = instant(&tm.url, "small", "count(s)", t_s)
            .first()
            .map(value_of)
            .unwrap_or(0.0);
        let rejected = metric_sum(
            &tm.url,
            "tidemark_ingester_samples_rejected_total",
            &["reason=\"per_user_series_limit\""],
        );
        kept + rejected == 40.0
    });
    assert!(kept <= 8.0 && kept > 0.0, "{kept} series kept");
    assert!(tm.log().contains("err-tidemark-per-user-series-limit"));
}

#[test]
fn out_of_order_window_takes_older_samples_of_the_tenant_that_has_one() {
    let dir = tempfile::tempdir().unwrap();
    let overrides = dir.path().join("overrides.yaml");
    std::fs::write(&overrides, "overrides:\n  ooo-tenant:\n    out_of_order_time_window: 10m\n").unwrap();
    let rc = format!("-runtime-config.file={}", overrides.display());
    let t = Tidemark::start(dir.path(), &[&rc]);
    let now = now_ms();
    for tenant in ["ooo-tenant", "in-order-tenant"] {
        let (s, body) = push(&t.push_url(), tenant, vec![series(&[("__name__", "ooo_m")], &[(now - 60_000, 1.0)])]);
        assert_eq!(s, 200, "{body}");
        // Two and five minutes older than the newest sample.
        let (s, body) = push(
            &t.push_url(),
            tenant,
            vec![series(&[("__name__", "ooo_m")], &[(now - 240_000, 2.0), (now - 180_000, 3.0)])],
        );
        assert_eq!(s, 200, "{body}");
    }
    let at = now as f64 / 1000.0;
    let r = eventually(&t.url, "ooo-tenant", "count_over_time(ooo_m[10m])", at, |r| {
        r.len() == 1 && value_of(&r[0]) == 3.0
    });
    assert_eq!(value_of(&r[0]), 3.0);
    let r = eventually(&t.url, "ooo-tenant", "sum_over_time(ooo_m[10m])", at, |r| r.len() == 1);
    assert_eq!(value_of(&r[0]), 6.0);
    // Without a window the older samples are refused (after the write was
    // acknowledged: counted by the ingester).
    wait_for("out-of-order samples counted", || {
        metric_sum(&t.url, "tidemark_ingester_samples_rejected_total", &["reason=\"out_of_order\""]) >= 2.0
    });
    let r = instant(&t.url, "in-order-tenant", "count_over_time(ooo_m[10m])", at);
    assert_eq!(value_of(&r[0]), 1.0);
}
