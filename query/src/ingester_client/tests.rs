//! Tests against small in-process ingesters speaking the internal API.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use prost::Message;
use tidemark_schemas::ingester::{
    LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse, SeriesBatch,
    SeriesRequest,
};
use tidemark_schemas::stream::encode_frame;
use tidemark_storage::matcher::matches_all;
use tidemark_storage::{
    Labels, MatchOp, Matcher, Queryable, Sample, SelectHints, Series, StorageError,
};

use super::IngesterClient;
use crate::engine::{Engine, EngineOptions, QueryOptions, QueryValue};
use crate::wire;

#[derive(Clone, Copy, Debug)]
enum Mode {
    Ok,
    Status(u16, &'static str),
    Truncate,
    Unsorted,
}

#[derive(Clone)]
struct Fake {
    series: Arc<Vec<Series>>,
    mode: Mode,
    tenants: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn new(series: Vec<Series>) -> Self {
        Fake {
            series: Arc::new(series),
            mode: Mode::Ok,
            tenants: Arc::default(),
        }
    }

    fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Records the tenant; the error response of the mode, if any.
    fn check(&self, headers: &HeaderMap) -> Option<Response> {
        let tenant = headers
            .get("X-Scope-OrgID")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        self.tenants.lock().unwrap().push(tenant);
        match self.mode {
            Mode::Status(code, text) => {
                Some((StatusCode::from_u16(code).unwrap(), text).into_response())
            }
            _ => None,
        }
    }

    #[allow(clippy::result_large_err)]
    fn selected(
        &self,
        matchers: &[tidemark_schemas::ingester::LabelMatcher],
    ) -> Result<Vec<&Series>, Response> {
        let matchers = wire::matchers_from_proto(matchers)
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())?;
        Ok(self
            .series
            .iter()
            .filter(|s| matches_all(&matchers, &s.labels))
            .collect())
    }
}

async fn series_handler(State(f): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = f.check(&headers) {
        return r;
    }
    let req = SeriesRequest::decode(body).unwrap();
    let selected = match f.selected(&req.matchers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut protos: Vec<_> = selected
        .iter()
        .map(|s| {
            let mut p = wire::series_to_proto(s, 3).unwrap();
            if req.skip_chunks {
                p.chunks.clear();
            }
            p
        })
        .collect();
    if let Mode::Unsorted = f.mode {
        protos.reverse();
    }
    // Two series per batch, sent in 5-byte pieces.
    let mut wire_bytes = Vec::new();
    for batch in protos.chunks(2) {
        wire_bytes.extend(encode_frame(&SeriesBatch {
            series: batch.to_vec(),
        }));
    }
    if let Mode::Truncate = f.mode {
        wire_bytes.truncate(wire_bytes.len() - 3);
    }
    let pieces: Vec<Result<Bytes, Infallible>> = wire_bytes
        .chunks(5)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Response::new(Body::from_stream(futures::stream::iter(pieces)))
}

async fn names_handler(State(f): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = f.check(&headers) {
        return r;
    }
    let req = LabelNamesRequest::decode(body).unwrap();
    let selected = match f.selected(&req.matchers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut names: Vec<String> = selected
        .iter()
        .flat_map(|s| s.labels.iter().map(|l| l.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    LabelNamesResponse { names }.encode_to_vec().into_response()
}

async fn values_handler(State(f): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = f.check(&headers) {
        return r;
    }
    let req = LabelValuesRequest::decode(body).unwrap();
    let selected = match f.selected(&req.matchers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut values: Vec<String> = selected
        .iter()
        .filter_map(|s| s.labels.get(&req.name).map(str::to_owned))
        .collect();
    values.sort();
    values.dedup();
    LabelValuesResponse { values }
        .encode_to_vec()
        .into_response()
}

/// Starts a fake ingester on a free local port; returns its base URL.
async fn start(f: Fake) -> String {
    let app = Router::new()
        .route("/internal/ingester/v1/series", post(series_handler))
        .route("/internal/ingester/v1/label_names", post(names_handler))
        .route("/internal/ingester/v1/label_values", post(values_handler))
        .with_state(f);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/")
}

fn series(pairs: &[(&str, &str)], ts: &[i64]) -> Series {
    Series {
        labels: Labels::from_pairs(pairs.iter().copied()),
        samples: ts.iter().map(|&t| Sample { t, v: t as f64 }).collect(),
    }
}

fn client(urls: Vec<String>) -> IngesterClient {
    IngesterClient::new(urls, Duration::from_secs(5)).unwrap()
}

async fn select_all(
    c: &IngesterClient,
    matchers: &[Matcher],
    hints: SelectHints,
) -> Result<Vec<Series>, StorageError> {
    let stream = c.select("tenant-1", matchers, hints).await?;
    stream.collect::<Vec<_>>().await.into_iter().collect()
}

fn name_is(name: &str) -> Matcher {
    Matcher::equal("__name__", name)
}

#[tokio::test]
async fn merges_interleaved_servers_in_order() {
    let a = Fake::new(vec![
        series(&[("__name__", "m"), ("i", "1")], &[10, 20]),
        series(&[("__name__", "m"), ("i", "3")], &[10, 30]),
        series(&[("__name__", "m"), ("i", "5")], &[10]),
    ]);
    let b = Fake::new(vec![
        series(&[("__name__", "m"), ("i", "2")], &[10]),
        series(&[("__name__", "m"), ("i", "3")], &[20, 30]),
        series(&[("__name__", "m"), ("i", "4")], &[10]),
    ]);
    let (tenants_a, tenants_b) = (a.tenants.clone(), b.tenants.clone());
    let c = client(vec![start(a).await, start(b).await]);
    let got = select_all(&c, &[name_is("m")], SelectHints::range(0, 100))
        .await
        .unwrap();
    let ids: Vec<_> = got
        .iter()
        .map(|s| s.labels.get("i").unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5"]);
    // The replicated series is merged, duplicates dropped.
    assert_eq!(
        got[2].samples.iter().map(|s| s.t).collect::<Vec<_>>(),
        vec![10, 20, 30]
    );
    assert_eq!(*tenants_a.lock().unwrap(), vec!["tenant-1".to_owned()]);
    assert_eq!(*tenants_b.lock().unwrap(), vec!["tenant-1".to_owned()]);
}

#[tokio::test]
async fn matchers_travel_and_samples_are_trimmed() {
    let ts: Vec<i64> = (0..10).map(|i| i * 10).collect();
    let fake = Fake::new(vec![
        series(&[("__name__", "m"), ("job", "api")], &ts),
        series(&[("__name__", "m"), ("job", "db")], &ts),
        series(&[("__name__", "m"), ("job", "old")], &[0, 5]),
    ]);
    let c = client(vec![start(fake).await]);
    let re = Matcher::new(MatchOp::Regex, "job", "api|old").unwrap();
    let got = select_all(&c, &[name_is("m"), re], SelectHints::range(25, 60))
        .await
        .unwrap();
    // `old` has chunks but no sample in range: left out.
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels.get("job"), Some("api"));
    assert_eq!(
        got[0].samples.iter().map(|s| s.t).collect::<Vec<_>>(),
        vec![30, 40, 50, 60]
    );
    // Labels only: every matching series, no samples.
    let hints = SelectHints {
        start_ms: 25,
        end_ms: 60,
        labels_only: true,
    };
    let got = select_all(&c, &[name_is("m")], hints).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|s| s.samples.is_empty()));
}

#[tokio::test]
async fn server_errors_are_unavailable_and_name_the_ingester() {
    let ok = start(Fake::new(vec![series(&[("__name__", "m")], &[1])])).await;
    let bad = start(Fake::new(vec![]).with_mode(Mode::Status(500, "boom"))).await;
    let c = client(vec![ok, bad.clone()]);
    let err = select_all(&c, &[name_is("m")], SelectHints::range(0, 10))
        .await
        .unwrap_err();
    let StorageError::Unavailable(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains(bad.trim_end_matches('/')) && msg.contains("boom") && msg.contains("500"),
        "{msg}"
    );
    let err = c.label_names("t", &[], 0, 10).await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn client_errors_are_bad_requests() {
    let bad = start(Fake::new(vec![]).with_mode(Mode::Status(400, "invalid matcher"))).await;
    let c = client(vec![bad]);
    let err = select_all(&c, &[name_is("m")], SelectHints::range(0, 10))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::BadRequest(m) if m == "invalid matcher"),
        "{err:?}"
    );
}

#[tokio::test]
async fn unreachable_ingesters_are_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let c = client(vec![url.clone()]);
    let err = select_all(&c, &[name_is("m")], SelectHints::range(0, 10))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::Unavailable(m) if m.contains(&url)),
        "{err:?}"
    );
    let err = c.label_values("t", "job", &[], 0, 10).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::Unavailable(m) if m.contains(&url)),
        "{err:?}"
    );
}

#[tokio::test]
async fn broken_streams_are_errors() {
    let data = vec![
        series(&[("__name__", "m"), ("i", "1")], &[1, 2]),
        series(&[("__name__", "m"), ("i", "2")], &[1]),
    ];
    let truncated = start(Fake::new(data.clone()).with_mode(Mode::Truncate)).await;
    let c = client(vec![truncated]);
    let err = select_all(&c, &[name_is("m")], SelectHints::range(0, 10))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::Unavailable(m) if m.contains("inside a frame")),
        "{err:?}"
    );

    let unsorted = start(Fake::new(data).with_mode(Mode::Unsorted)).await;
    let c = client(vec![unsorted]);
    let err = select_all(&c, &[name_is("m")], SelectHints::range(0, 10))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::Internal(m) if m.contains("out of order")),
        "{err:?}"
    );
}

#[tokio::test]
async fn label_names_and_values_merge_across_ingesters() {
    let a = Fake::new(vec![series(
        &[("__name__", "m"), ("job", "api"), ("a", "1")],
        &[1],
    )]);
    let b = Fake::new(vec![
        series(&[("__name__", "m"), ("job", "db"), ("b", "1")], &[1]),
        series(&[("__name__", "n"), ("job", "web")], &[1]),
    ]);
    let c = client(vec![start(a).await, start(b).await]);
    let names = c.label_names("t", &[], 0, 10).await.unwrap();
    assert_eq!(names, ["__name__", "a", "b", "job"]);
    let values = c
        .label_values("t", "job", &[name_is("m")], 0, 10)
        .await
        .unwrap();
    assert_eq!(values, ["api", "db"]);
    let empty = client(vec![]).label_names("t", &[], 0, 10).await.unwrap();
    assert!(empty.is_empty());
}

#[tokio::test]
async fn engine_reads_through_the_client() {
    let ts: Vec<i64> = (0..=20).map(|i| i * 15_000).collect();
    let mk = |job: &str, inst: &str, k: f64| Series {
        labels: Labels::from_pairs([("__name__", "req_total"), ("job", job), ("instance", inst)]),
        samples: ts
            .iter()
            .map(|&t| Sample {
                t,
                v: t as f64 / 1000.0 * k,
            })
            .collect(),
    };
    let a = Fake::new(vec![mk("api", "0", 1.0), mk("db", "0", 3.0)]);
    let b = Fake::new(vec![mk("api", "1", 2.0)]);
    let c = client(vec![start(a).await, start(b).await]);
    let engine = Engine::new(Arc::new(c), EngineOptions::default());
    let got = engine
        .instant_query(
            "t",
            "sum by (job) (rate(req_total[1m]))",
            300_000,
            &QueryOptions::default(),
        )
        .await
        .unwrap();
    let QueryValue::Vector(v) = got else {
        panic!("vector")
    };
    let values: Vec<(String, f64)> = v
        .iter()
        .map(|s| {
            (
                s.labels.get("job").unwrap().to_owned(),
                (s.v * 1e9).round() / 1e9,
            )
        })
        .collect();
    assert_eq!(
        values,
        vec![("api".to_owned(), 3.0), ("db".to_owned(), 3.0)]
    );
}

mod ring {
    use std::collections::BTreeMap;

    use tidemark_ring::{Instance, InstanceState, PartitionClaim, PartitionState, RingSnapshot};
    use tokio::sync::watch;

    use super::*;

    fn owner(id: &str, zone: &str, addr: &str, partition: Option<i32>, role: &str) -> Instance {
        Instance {
            id: id.into(),
            zone: zone.into(),
            addr: addr.into(),
            roles: vec![role.into()],
            state: InstanceState::Active,
            partitions: partition
                .map(|p| (p, PartitionClaim { state: PartitionState::Active, since_ms: 1 }))
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            seen: Default::default(),
            healthy: true,
            generation: 1,
        }
    }

    fn calls(f: &Fake) -> usize {
        f.tenants.lock().unwrap().len()
    }

    async fn dead_url() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        url
    }

    /// Two partitions, each owned in two zones: a querier in zone b reads
    /// each partition once, from zone b, and falls back to zone a for a
    /// partition whose zone-b owner fails or cannot be reached.
    #[tokio::test]
    async fn one_owner_per_partition_own_zone_first_with_fallback() {
        let p0 = vec![series(&[("__name__", "m"), ("p", "0")], &[10])];
        let p1 = vec![series(&[("__name__", "m"), ("p", "1")], &[10])];
        let (a0, b0, a1) = (Fake::new(p0.clone()), Fake::new(p0), Fake::new(p1.clone()));
        let b1_failing = Fake::new(p1).with_mode(Mode::Status(503, "overloaded"));
        let (ua0, ub0, ua1, ub1) = (
            start(a0.clone()).await,
            start(b0.clone()).await,
            start(a1.clone()).await,
            start(b1_failing.clone()).await,
        );
        let ring = |b1: &str| {
            RingSnapshot::build([
                owner("ingester-zone-a-0", "zone-a", &ua0, Some(0), "ingester"),
                owner("ingester-zone-b-0", "zone-b", &ub0, Some(0), "ingester"),
                owner("ingester-zone-a-1", "zone-a", &ua1, Some(1), "ingester"),
                owner("ingester-zone-b-1", "zone-b", b1, Some(1), "ingester"),
            ])
        };
        let (tx, rx) = watch::channel(Arc::new(ring(&ub1)));
        let c = IngesterClient::from_ring(rx, "zone-b".into(), Duration::from_secs(13 * 3600), Duration::from_secs(5)).unwrap();
        let got = select_all(&c, &[name_is("m")], SelectHints::range(0, 100)).await.unwrap();
        let ps: Vec<_> = got.iter().map(|s| s.labels.get("p").unwrap().to_owned()).collect();
        assert_eq!(ps, ["0", "1"]);
        assert_eq!((calls(&a0), calls(&b0), calls(&a1), calls(&b1_failing)), (0, 1, 1, 1));

        // Unreachable owner: same fallback.
        tx.send(Arc::new(ring(&dead_url().await))).unwrap();
        let names = c.label_names("tenant-1", &[], 0, 100).await.unwrap();
        assert_eq!(names, ["__name__", "p"]);
        assert_eq!((calls(&a0), calls(&b0), calls(&a1)), (0, 2, 2));

        // Every owner of partition 1 failing: an error naming it.
        let mut broken = ring(&dead_url().await);
        let a1_entry = broken.instances.get_mut("ingester-zone-a-1").unwrap();
        a1_entry.addr = dead_url().await;
        tx.send(Arc::new(broken)).unwrap();
        let err = select_all(&c, &[name_is("m")], SelectHints::range(0, 100)).await.unwrap_err();
        assert!(
            matches!(&err, StorageError::Unavailable(m) if m.contains("partition 1")),
            "{err:?}"
        );

        // A bad request is not retried elsewhere.
        let bad = Fake::new(vec![]).with_mode(Mode::Status(400, "bad matcher"));
        let ubad = start(bad.clone()).await;
        let a0_calls = calls(&a0);
        tx.send(Arc::new(RingSnapshot::build([
            owner("ingester-zone-b-0", "zone-b", &ubad, Some(0), "ingester"),
            owner("ingester-zone-a-0", "zone-a", &ua0, Some(0), "ingester"),
        ])))
        .unwrap();
        let err = select_all(&c, &[name_is("m")], SelectHints::range(0, 100)).await.unwrap_err();
        assert!(matches!(err, StorageError::BadRequest(_)), "{err:?}");
        assert_eq!(calls(&a0), a0_calls);

        // No partitions at all: unavailable, not an empty answer.
        tx.send(Arc::new(RingSnapshot::default())).unwrap();
        let err = c.label_names("tenant-1", &[], 0, 100).await.unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
    }

    /// Store-gateways each serve everything: one is read, own zone first,
    /// the next on failure.
    #[tokio::test]
    async fn any_one_member_of_a_role() {
        let data = vec![series(&[("__name__", "m")], &[10])];
        let (sa, sb) = (Fake::new(data.clone()), Fake::new(data));
        let ring = RingSnapshot::build([
            owner("sg-a", "zone-a", &start(sa.clone()).await, None, "store-gateway"),
            owner("sg-b", "zone-b", &dead_url().await, None, "store-gateway"),
            owner("ingester-zone-b-0", "zone-b", &start(sb.clone()).await, Some(0), "ingester"),
        ]);
        let (_tx, rx) = watch::channel(Arc::new(ring));
        let c = IngesterClient::any_of_role(rx, "store-gateway", "zone-b".into(), Duration::from_secs(5)).unwrap();
        let got = select_all(&c, &[name_is("m")], SelectHints::range(0, 100)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((calls(&sa), calls(&sb)), (1, 0));
    }
}
