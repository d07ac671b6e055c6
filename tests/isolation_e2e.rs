//! Tenant isolation end to end, with the real binary (`-target=all`,
//! embedded log, blocks on local disk): tenant B, and every crafted tenant
//! ID, never sees tenant A's data through any endpoint — the Prometheus API
//! under both prefixes, `user_limits`, and the internal ingester and
//! store-gateway APIs — first while the ingesters hold the data, then from
//! blocks alone. Writes with crafted IDs never land in another tenant, and
//! each tenant directory of the bucket holds only that tenant's blocks.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;
use support::*;
use tidemark_schemas::ingester::{
    label_matcher, LabelMatcher, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, MetadataRequest, MetadataResponse, SeriesBatch, SeriesRequest,
};
use tidemark_schemas::prometheus::{MetricMetadata, WriteRequest};
use tidemark_schemas::stream::FrameDecoder;

const A: &str = "A";
const B: &str = "B";
/// A's own limits, from the runtime configuration file.
const A_MAX_SERIES: u64 = 54_321;

/// Strings that appear only in tenant A's data.
const A_MARKERS: &[&str] = &["iso_secret", "a-only", "a-job", "\"secret\"", "A secret help"];
/// Strings of B's data.
const B_MARKERS: &[&str] = &["iso_b_total", "b-job"];

// ---------------------------------------------------------------------------
// A raw HTTP client: any bytes as the org ID, status and body back.


fn request(
    method: &str,
    url: &str,
    org: Option<&[u8]>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut b = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    if let Some(org) = org {
        let v = reqwest::header::HeaderValue::from_bytes(org).expect("header value");
        b = b.header("X-Scope-OrgID", v);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    runtime().block_on(async move {
        let r = b.body(body).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.bytes().await.expect("body").to_vec())
    })
}

fn get(base: &str, org: Option<&[u8]>, path: &str) -> (u16, String) {
    let (s, b) = request("GET", &format!("{base}{path}"), org, &[], vec![]);
    (s, String::from_utf8_lossy(&b).into_owned())
}

fn metric_sum(base: &str, name: &str) -> f64 {
    let (_, text) = get(base, None, "/metrics");
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && matches!(l.as_bytes().get(name.len()), Some(b' ') | Some(b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ---------------------------------------------------------------------------
// Tenants.

/// A crafted org ID and what it must be.
struct Crafted {
    what: &'static str,
    id: Vec<u8>,
    /// Must be refused (4xx) everywhere the ID is validated.
    invalid: bool,
}

fn crafted() -> Vec<Crafted> {
    let c = |what, id: &[u8], invalid| Crafted {
        what,
        id: id.to_vec(),
        invalid,
    };
    vec![
        c("federation syntax (federation is off)", b"A|B", true),
        c("federation syntax, other order", b"B|A", true),
        c("path traversal ../A", b"../A", true),
        c("path traversal A/..", b"A/..", true),
        c("slash A/", b"A/", true),
        c("percent-encoded A", b"%41", true),
        c("lower case a (another tenant)", b"a", false),
        c("151 characters", &[b'A'; 151], true),
        c("150 characters (another tenant)", &[b'A'; 150], false),
        c("dot", b".", true),
        c("dot dot", b"..", true),
        c("three dots (another tenant)", b"...", false),
        c("A with a dot (another tenant)", b"A.", false),
        c("unicode", "Ä".as_bytes(), true),
        c("unicode lookalike of A", "\u{391}".as_bytes(), true),
        c("tab inside", b"A\tB", true),
        c("comma", b"A,B", true),
        c("empty", b"", true),
    ]
}

/// Whitespace around an org ID is not part of a header's value (RFC 9110
/// §5.5): `"A "` is tenant A itself, as in Mimir, never another tenant.
const SAME_AS_A: &[&[u8]] = &[b"A ", b" A", b"A\t"];

// ---------------------------------------------------------------------------
// Data.

fn now_s() -> i64 {
    now_ms() / 1000
}

/// One sample a minute from 2h ago to 10m ago: older than the 1m head
/// retention of the second phase, so it ends up in blocks only.
fn minutes(now: i64, from_ago_min: i64, to_ago_min: i64) -> Vec<(i64, f64)> {
    (to_ago_min..=from_ago_min)
        .rev()
        .map(|m| (now - m * 60_000, m as f64))
        .collect()
}

fn push_a_and_b(t: &Tidemark, now: i64) {
    let a_series = (0..3)
        .map(|i| {
            let inst = format!("i{i}");
            series(
                &[
                    ("__name__", "iso_secret_total"),
                    ("instance", &inst),
                    ("job", "a-job"),
                    ("secret", "a-only"),
                ],
                &minutes(now, 120, 10),
            )
        })
        .collect();
    let req = WriteRequest {
        timeseries: a_series,
        metadata: vec![MetricMetadata {
            r#type: 1,
            metric_family_name: "iso_secret_total".as_bytes().to_vec().into(),
            help: "A secret help text".as_bytes().to_vec().into(),
            unit: Default::default(),
        }],
    };
    let (s, body) = push_raw(&t.push_url(), Some(A), encode(&req));
    assert_eq!(s, 200, "push A: {body}");
    let (s, body) = push(
        &t.push_url(),
        B,
        vec![series(&[("__name__", "iso_b_total"), ("job", "b-job")], &minutes(now, 120, 10))],
    );
    assert_eq!(s, 200, "push B: {body}");
}

/// Pushes one series per crafted ID; returns the IDs that were accepted,
/// with the writer label each wrote.
fn crafted_writes(t: &Tidemark, now: i64) -> Vec<(Vec<u8>, String)> {
    let mut accepted = Vec::new();
    for (i, c) in crafted().iter().enumerate() {
        let writer = format!("w{i}");
        let body = encode(&WriteRequest {
            timeseries: vec![series(
                &[("__name__", "crafted_write_total"), ("writer", &writer)],
                &minutes(now, 30, 12),
            )],
            metadata: vec![],
        });
        let (s, text) = request(
            "POST",
            &t.push_url(),
            Some(&c.id),
            &[
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "snappy"),
                ("X-Prometheus-Remote-Write-Version", "0.1.0"),
            ],
            body,
        );
        let text = String::from_utf8_lossy(&text);
        if c.invalid {
            assert!(matches!(s, 400 | 401), "write as {} ({:?}) must be refused: {s} {text}", c.what, c.id);
        } else {
            assert_eq!(s, 200, "write as {} ({:?}): {text}", c.what, c.id);
            accepted.push((c.id.clone(), writer));
        }
    }
    accepted
}

// ---------------------------------------------------------------------------
// The public API.

/// Every read endpoint, under both prefixes, with the string tenant A must
/// find in its own answer (`None`: no positive check).
fn endpoints(now_s: i64, blocks_only: bool) -> Vec<(String, Option<&'static str>)> {
    let t = now_s - 15 * 60;
    let (s, e) = (now_s - 3 * 3600, now_s);
    let all = enc("{__name__=~\".+\"}");
    let mut out = Vec::new();
    for p in ["/prometheus/api/v1", "/api/v1"] {
        out.extend([
            (format!("{p}/query?query={all}&time={t}"), Some("iso_secret_total")),
            (format!("{p}/query?query={}&time={t}", enc("iso_secret_total")), Some("a-only")),
            (
                format!("{p}/query?query={}&time={t}", enc("count by (__name__, job, secret) ({__name__=~\".+\"})")),
                Some("a-job"),
            ),
            (format!("{p}/query?query={}&time={t}", enc("absent(iso_secret_total)")), None),
            (format!("{p}/query_range?query={all}&start={s}&end={e}&step=60"), Some("iso_secret_total")),
            (format!("{p}/query_range?query={}&start={s}&end={e}&step=300", enc("sum by (secret) (rate(iso_secret_total[10m]))")), Some("a-only")),
            (format!("{p}/series?match[]={all}&start={s}&end={e}"), Some("a-only")),
            (format!("{p}/series?match[]={}&start={s}&end={e}", enc("iso_secret_total")), Some("a-only")),
            (format!("{p}/series?match[]={}", enc("{job=~\".+\"}")), None),
            (format!("{p}/labels?start={s}&end={e}"), Some("\"secret\"")),
            (format!("{p}/labels"), None),
            (format!("{p}/label/__name__/values?start={s}&end={e}"), Some("iso_secret_total")),
            (format!("{p}/label/secret/values?start={s}&end={e}"), Some("a-only")),
            (format!("{p}/label/job/values"), None),
            (format!("{p}/metadata"), (!blocks_only).then_some("A secret help")),
            (format!("{p}/metadata?metric=iso_secret_total"), (!blocks_only).then_some("A secret help")),
        ]);
    }
    out
}

fn show(id: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(id))
}

/// Tenant `viewer` is refused with 400/401 on every endpoint (`refused`,
/// for IDs that are not valid tenant IDs), or sees none of `forbidden`.
fn check_public(base: &str, viewer: &[u8], forbidden: &[&str], refused: bool, now_s: i64, blocks_only: bool, phase: &str) {
    let mut paths: Vec<String> = endpoints(now_s, blocks_only).into_iter().map(|(p, _)| p).collect();
    paths.push("/api/v1/user_limits".into());
    for path in paths {
        let (s, text) = get(base, Some(viewer), &path);
        if refused {
            assert!(matches!(s, 400 | 401), "{phase}: {} must be refused on {path}: {s} {text}", show(viewer));
            continue;
        }
        assert_eq!(s, 200, "{phase}: {} {path}: {text}", show(viewer));
        for m in forbidden {
            assert!(!text.contains(m), "{phase}: tenant {} sees {m:?} on {path}: {text}", show(viewer));
        }
        if path.ends_with("user_limits") {
            // The calling tenant's limits, never A's.
            let v: Value = serde_json::from_str(&text).expect("limits json");
            assert_ne!(v["max_global_series_per_user"], A_MAX_SERIES, "{phase}: {} gets A's limits: {text}", show(viewer));
        }
    }
}

/// Tenant A finds its own data everywhere (so that the checks above can
/// fail) and none of B's.
fn check_a(base: &str, id: &[u8], now_s: i64, blocks_only: bool, phase: &str) {
    for (path, want) in endpoints(now_s, blocks_only) {
        let (s, text) = get(base, Some(id), &path);
        assert_eq!(s, 200, "{phase}: A {path}: {text}");
        if let Some(want) = want {
            assert!(text.contains(want), "{phase}: A does not find {want:?} on {path}: {text}");
        }
        for m in B_MARKERS.iter().chain(&["crafted_write"]) {
            assert!(!text.contains(m), "{phase}: A sees {m:?} on {path}: {text}");
        }
    }
    let (s, text) = get(base, Some(id), "/api/v1/user_limits");
    assert_eq!(s, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("limits json");
    assert_eq!(v["max_global_series_per_user"], A_MAX_SERIES, "{phase}: A's own limits: {text}");
}

// ---------------------------------------------------------------------------
// The internal APIs.

fn all_matcher() -> Vec<LabelMatcher> {
    vec![LabelMatcher {
        r#type: label_matcher::Type::Re as i32,
        name: "__name__".into(),
        value: ".+".into(),
    }]
}

fn post_proto(base: &str, path: &str, org: Option<&[u8]>, msg: &impl Message) -> (u16, Vec<u8>) {
    request(
        "POST",
        &format!("{base}{path}"),
        org,
        &[("Content-Type", "application/x-protobuf")],
        msg.encode_to_vec(),
    )
}

/// What one tenant sees through an internal API (`prefix` is the
/// ingesters' or the store-gateway's): series label sets, label names,
/// `__name__` values and metadata, as one string per item. `None` when
/// the request is refused with 400/401.
fn internal_view(base: &str, prefix: &str, org: &[u8], now: i64) -> Option<Vec<String>> {
    let (start_ms, end_ms) = (now - 3 * 3_600_000, now);
    let (s, body) = post_proto(
        base,
        &format!("{prefix}/series"),
        Some(org),
        &SeriesRequest {
            start_ms,
            end_ms,
            matchers: all_matcher(),
            skip_chunks: false,
        },
    );
    if matches!(s, 400 | 401) {
        return None;
    }
    assert_eq!(s, 200, "{prefix}/series as {}: {}", show(org), String::from_utf8_lossy(&body));
    let mut out = Vec::new();
    let mut d = FrameDecoder::new(64 << 20);
    d.push(&body);
    while let Some(batch) = d.next_message::<SeriesBatch>().expect("frame") {
        for s in batch.series {
            let labels: Vec<String> = s.labels.iter().map(|l| format!("{}={:?}", l.name, l.value)).collect();
            out.push(format!("series {{{}}} with {} chunks", labels.join(", "), s.chunks.len()));
        }
    }
    d.finish().expect("whole frames");

    let (s, body) = post_proto(
        base,
        &format!("{prefix}/label_names"),
        Some(org),
        &LabelNamesRequest { start_ms, end_ms, matchers: vec![] },
    );
    assert_eq!(s, 200, "{prefix}/label_names as {}", show(org));
    out.extend(LabelNamesResponse::decode(&body[..]).expect("names").names.into_iter().map(|n| format!("name \"{n}\"")));

    for name in ["__name__", "secret", "job"] {
        let (s, body) = post_proto(
            base,
            &format!("{prefix}/label_values"),
            Some(org),
            &LabelValuesRequest { name: name.into(), start_ms, end_ms, matchers: vec![] },
        );
        assert_eq!(s, 200, "{prefix}/label_values as {}", show(org));
        out.extend(LabelValuesResponse::decode(&body[..]).expect("values").values.into_iter().map(|v| format!("{name} value {v}")));
    }

    let (s, body) = post_proto(base, &format!("{prefix}/metadata"), Some(org), &MetadataRequest { metric: String::new() });
    assert_eq!(s, 200, "{prefix}/metadata as {}", show(org));
    out.extend(
        MetadataResponse::decode(&body[..])
            .expect("metadata")
            .metadata
            .into_iter()
            .map(|m| format!("metadata {} {:?}", m.metric, m.help)),
    );
    Some(out)
}

fn check_internal(base: &str, prefix: &str, viewer: &[u8], forbidden: &[&str], may_refuse: bool, now: i64, phase: &str) {
    match internal_view(base, prefix, viewer, now) {
        None => assert!(may_refuse, "{phase}: {prefix} refused {}", show(viewer)),
        Some(items) => {
            for item in &items {
                for m in forbidden {
                    assert!(!item.contains(m), "{phase}: {} sees {item} through {prefix}", show(viewer));
                }
                assert!(item != "name \"secret\"", "{phase}: {} sees A's label name through {prefix}", show(viewer));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The bucket.

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let Some(x) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Tenant directory (decoded) → tenants named by the meta.json files in it.
fn bucket_tenants(bucket: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Ok(dirs) = std::fs::read_dir(bucket) else { return out };
    for d in dirs.flatten() {
        let name = d.file_name().to_string_lossy().into_owned();
        if name.starts_with('@') || !d.path().is_dir() {
            // The block-builder's own state, not a tenant.
            continue;
        }
        let mut metas = Vec::new();
        for b in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let meta = b.path().join("meta.json");
            if let Ok(bytes) = std::fs::read(&meta) {
                let v: Value = serde_json::from_slice(&bytes).expect("meta.json");
                metas.push(v["tenant"].as_str().expect("tenant field").to_owned());
            }
        }
        out.insert(percent_decode(&name), metas);
    }
    out
}

// ---------------------------------------------------------------------------

struct Run {
    now: i64,
    accepted: Vec<(Vec<u8>, String)>,
}

fn check_everything(t: &Tidemark, run: &Run, blocks_only: bool) {
    let phase = if blocks_only { "blocks" } else { "ingesters" };
    let now_s = run.now / 1000;
    check_a(&t.url, A.as_bytes(), now_s, blocks_only, phase);
    for id in SAME_AS_A {
        // Either refused, or A itself: never someone else's view.
        let (s, _) = get(&t.url, Some(id), "/prometheus/api/v1/labels");
        eprintln!("{phase}: org ID {} answered {s} (refused or A itself)", show(id));
        if !matches!(s, 400 | 401) {
            check_a(&t.url, id, now_s, blocks_only, phase);
        }
    }
    check_public(&t.url, B.as_bytes(), A_MARKERS, false, now_s, blocks_only, phase);
    let mut not_a: Vec<&str> = A_MARKERS.to_vec();
    not_a.extend(B_MARKERS);
    for c in crafted() {
        check_public(&t.url, &c.id, &not_a, c.invalid, now_s, blocks_only, &format!("{phase}, {}", c.what));
    }
    // No request without an org ID gets anything.
    for (path, _) in endpoints(now_s, blocks_only) {
        let (s, _) = get(&t.url, None, &path);
        assert_eq!(s, 401, "{phase}: {path} without an org ID");
    }

    // Each crafted tenant that could write sees its own write alone.
    for (id, writer) in &run.accepted {
        let (s, text) = get(&t.url, Some(id), &format!("/prometheus/api/v1/series?match[]={}&start={}&end={now_s}", enc("crafted_write_total"), now_s - 3600));
        assert_eq!(s, 200, "{text}");
        let v: Value = serde_json::from_str(&text).expect("json");
        let writers: Vec<&str> = v["data"].as_array().expect("data").iter().filter_map(|s| s["writer"].as_str()).collect();
        assert_eq!(writers, vec![writer.as_str()], "{phase}: tenant {} sees writes {writers:?}", show(id));
    }

    // Internal APIs: the ingesters always; the store-gateway once blocks
    // are there (in both phases, it serves what is loaded).
    let mut prefixes = vec!["/internal/ingester/v1"];
    if blocks_only {
        prefixes.push("/internal/store-gateway/v1");
    }
    for prefix in &prefixes {
        let a_view = internal_view(&t.url, prefix, A.as_bytes(), run.now).expect("A is served");
        let a_series = a_view.iter().filter(|i| i.starts_with("series") && i.contains("iso_secret_total")).count();
        if *prefix == "/internal/store-gateway/v1" || !blocks_only {
            assert_eq!(a_series, 3, "{phase}: A through {prefix}: {a_view:?}");
        }
        for item in &a_view {
            assert!(!item.contains("iso_b_total") && !item.contains("crafted_write"), "{phase}: A sees {item} through {prefix}");
        }
        let forbidden = ["iso_secret", "a-only", "a-job", "A secret help"];
        check_internal(&t.url, prefix, B.as_bytes(), &forbidden, false, run.now, phase);
        let b_view = internal_view(&t.url, prefix, B.as_bytes(), run.now).expect("B is served");
        if *prefix == "/internal/store-gateway/v1" || !blocks_only {
            assert!(b_view.iter().any(|i| i.starts_with("series") && i.contains("iso_b_total")), "{phase}: B through {prefix}: {b_view:?}");
        }
        for c in crafted() {
            let mut forbidden: Vec<&str> = forbidden.to_vec();
            forbidden.extend(B_MARKERS);
            check_internal(&t.url, prefix, &c.id, &forbidden, true, run.now, &format!("{phase}, {}", c.what));
        }
    }
}

fn wait_until(what: &str, t: &Tidemark, timeout: Duration, mut ok: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        let r = ok();
        match r {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what} never happened: {e}; log:\n{}", t.log()),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[test]
fn tenants_never_see_each_other_from_ingesters_or_blocks() {
    let dir = tempfile::Builder::new()
        .prefix("isolation")
        .tempdir_in(std::env::var("TIDEMARK_TEST_STATE").unwrap_or_else(|_| std::env::temp_dir().display().to_string()))
        .unwrap();
    let bucket = dir.path().join("bucket");
    let runtime_config = dir.path().join("runtime.yaml");
    std::fs::write(&runtime_config, format!("overrides:\n  {A}:\n    max_global_series_per_user: {A_MAX_SERIES}\n")).unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            "-target=all".to_string(),
            format!("-blocks-storage.filesystem.dir={}", bucket.display()),
            format!("-runtime-config.file={}", runtime_config.display()),
            "-blocks-storage.bucket-store.sync-interval=200ms".into(),
            "-querier.query-store-after=0s".into(),
            "-block-builder.consume-interval=1s".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };

    // 1. The ingesters hold everything.
    let port = free_port();
    let mut t = Tidemark::spawn(dir.path(), port, args(&[]));
    t.wait_ready(Duration::from_secs(60));
    let now = now_ms();
    push_a_and_b(&t, now);
    let accepted = crafted_writes(&t, now);
    let run = Run { now, accepted };
    // The pushes are durable once acknowledged; the ingesters may still be
    // applying them.
    wait_until("A's data visible", &t, Duration::from_secs(30), || {
        let r = instant(&t.url, A, "iso_secret_total", (now_s() - 15 * 60) as f64);
        if r.len() == 3 { Ok(()) } else { Err(format!("{} series", r.len())) }
    });
    wait_until("B's and the crafted tenants' data visible", &t, Duration::from_secs(30), || {
        if instant(&t.url, B, "iso_b_total", (now_s() - 15 * 60) as f64).len() != 1 {
            return Err("B".into());
        }
        for (id, _) in &run.accepted {
            let (s, text) = get(&t.url, Some(id), &format!("/prometheus/api/v1/query?query=crafted_write_total&time={}", now_s() - 15 * 60));
            if s != 200 || !text.contains("crafted_write_total") {
                return Err(format!("{} {s} {text}", show(id)));
            }
        }
        Ok(())
    });
    check_everything(&t, &run, false);

    // 2. Wait until every tenant's data is in blocks and loaded.
    let mut writers: BTreeSet<String> = [A.to_string(), B.to_string()].into();
    writers.extend(run.accepted.iter().map(|(id, _)| String::from_utf8_lossy(id).into_owned()));
    wait_until("blocks built and loaded", &t, Duration::from_secs(120), || {
        let cycles = metric_sum(&t.url, "tidemark_block_builder_cycles_total");
        let lag = metric_sum(&t.url, "tidemark_block_builder_lag_records");
        let loaded = metric_sum(&t.url, "tidemark_store_gateway_blocks_loaded");
        let tenants = bucket_tenants(&bucket);
        let metas: usize = tenants.values().map(Vec::len).sum();
        let with_blocks: BTreeSet<String> = tenants.iter().filter(|(_, m)| !m.is_empty()).map(|(t, _)| t.clone()).collect();
        if cycles >= 3.0 && lag == 0.0 && loaded > 0.0 && loaded as usize >= metas && with_blocks == writers {
            Ok(())
        } else {
            Err(format!("{cycles} cycles, lag {lag}, {loaded} loaded, {metas} metas, tenants {with_blocks:?} of {writers:?}"))
        }
    });

    // 3. Every tenant directory holds its own tenant's blocks alone.
    let tenants = bucket_tenants(&bucket);
    eprintln!("bucket: {tenants:?}");
    assert_eq!(tenants.keys().cloned().collect::<BTreeSet<_>>(), writers, "tenant directories");
    for (dir_tenant, metas) in &tenants {
        assert!(!metas.is_empty(), "{dir_tenant}: no blocks");
        for m in metas {
            assert_eq!(m, dir_tenant, "a block of tenant {m} under {dir_tenant}/");
        }
    }

    // 4. Restarted with a 1m head: only blocks answer.
    t.kill();
    let t = Tidemark::spawn(dir.path(), port, args(&["-ingester.head-retention=1m"]));
    t.wait_ready(Duration::from_secs(60));
    wait_until("blocks answering alone", &t, Duration::from_secs(60), || {
        let mem = metric_sum(&t.url, "tidemark_ingester_memory_series");
        let loaded = metric_sum(&t.url, "tidemark_store_gateway_blocks_loaded");
        let a = instant(&t.url, A, "iso_secret_total", (now_s() - 15 * 60) as f64).len();
        if mem == 0.0 && loaded > 0.0 && a == 3 {
            Ok(())
        } else {
            Err(format!("{mem} series in memory, {loaded} blocks loaded, A has {a} series"))
        }
    });
    check_everything(&t, &run, true);
}
