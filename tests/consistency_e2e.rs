//! Read-after-write consistency with the real binary: with
//! `X-Read-Consistency: strong` a query sees every sample acknowledged
//! before it; offsets the ingesters cannot reach time out with 503.

mod support;

use support::*;

fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut b = http::blocking_client()
        .get(format!("{base}{path}"))
        .header("X-Scope-OrgID", TENANT);
    for (k, v) in headers {
        b = b.header(k, v);
    }
    let r = b.send().expect("query");
    (r.status().as_u16(), serde_json::from_slice(r.bytes()).unwrap_or_default())
}

#[test]
fn strong_reads_see_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tidemark::start(dir.path(), &["-querier.timeout=2s"]);
    let now = now_ms();
    for i in 0..30 {
        let ts = now - 30_000 + i * 1000;
        let (s, body) = push(&t.push_url(), TENANT, vec![series(&[("__name__", "raw_m")], &[(ts, i as f64)])]);
        assert_eq!(s, 200, "{body}");
        // Right after the 2xx: the newest sample, every time.
        let path = format!("/prometheus/api/v1/query?query={}&time={}", enc("raw_m"), ts as f64 / 1000.0);
        let (status, v) = get(&t.url, &path, &[("X-Read-Consistency", "strong")]);
        assert_eq!(status, 200, "{v}");
        let r = v["data"]["result"].as_array().cloned().unwrap_or_default();
        assert_eq!(r.len(), 1, "write {i} not visible to a strong read: {v}");
        assert_eq!(value_of(&r[0]), i as f64, "{v}");
    }
    // Offsets the ingesters never reach: 503 once the query timeout passes.
    let path = format!("/prometheus/api/v1/query?query={}", enc("raw_m"));
    let (status, v) = get(&t.url, &path, &[("X-Read-Consistency-Offsets", "0:999999999,1:999999999")]);
    assert_eq!(status, 503, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("consistency"), "{v}");
    // Bad headers are the client's fault.
    let (status, _) = get(&t.url, &path, &[("X-Read-Consistency", "sometimes")]);
    assert_eq!(status, 400);
    let (status, _) = get(&t.url, &path, &[("X-Read-Consistency-Offsets", "zero:1")]);
    assert_eq!(status, 400);
    // Eventual (explicitly) answers as before.
    let (status, _) = get(&t.url, &path, &[("X-Read-Consistency", "eventual")]);
    assert_eq!(status, 200);
}
