//! API tests through the router, as an HTTP client sees it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use tidemark_storage::{Queryable, StorageError};
use tower::ServiceExt;

use super::{router, ApiState};
use crate::engine::EngineOptions;
use crate::test_store::{MemStore, StuckStore};

const T0: i64 = 1_700_000_000_000;

fn store() -> MemStore {
    let ts: Vec<i64> = (0..=20).map(|i| T0 - 300_000 + i * 15_000).collect();
    let counter: Vec<(i64, f64)> = ts
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, i as f64 * 15.0))
        .collect();
    MemStore::default()
        .with(
            "anonymous",
            &[("__name__", "up"), ("job", "api"), ("instance", "0")],
            &[(T0 - 15_000, 1.0), (T0, 1.0)],
        )
        .with(
            "anonymous",
            &[("__name__", "up"), ("job", "db"), ("instance", "0")],
            &[(T0 - 15_000, 0.0), (T0, 0.0)],
        )
        .with(
            "anonymous",
            &[("__name__", "requests_total"), ("job", "api")],
            &counter,
        )
        .with(
            "team-a",
            &[("__name__", "secret"), ("job", "x")],
            &[(T0, 42.0)],
        )
}

fn app_with(
    queryable: Arc<dyn Queryable>,
    options: EngineOptions,
    multitenancy: bool,
) -> (Router, Registry) {
    let mut registry = Registry::default();
    let state = ApiState::new(queryable, options, multitenancy, &mut registry);
    (router(state), registry)
}

fn app() -> Router {
    app_with(Arc::new(store()), EngineOptions::default(), false).0
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        content_type,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn get_as(app: &Router, uri: &str, tenant: &str) -> Reply {
    send(
        app,
        Request::get(uri)
            .header("X-Scope-OrgID", tenant)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn post_form(app: &Router, uri: &str, form: &str) -> Reply {
    let req = Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap();
    send(app, req).await
}

fn error_of(r: &Reply) -> (StatusCode, String, String) {
    let j = r.json();
    assert_eq!(j["status"], "error", "{}", r.body);
    (
        r.status,
        j["errorType"].as_str().unwrap().to_owned(),
        j["error"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn instant_query_has_prometheus_shape_on_both_prefixes() {
    let app = app();
    for prefix in ["/api/v1", "/prometheus/api/v1"] {
        let r = get(
            &app,
            &format!("{prefix}/query?query=up%7Bjob%3D%22api%22%7D&time=1700000000"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.content_type, "application/json");
        assert_eq!(
            r.body,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","instance":"0","job":"api"},"value":[1700000000,"1"]}]}}"#
        );
    }
}

#[tokio::test]
async fn instant_query_by_post_form_and_rfc3339_time() {
    let r = post_form(
        &app(),
        "/api/v1/query",
        "query=sum+by+(job)+(up)&time=2023-11-14T22:13:19.5Z",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"job":"api"},"value":[1699999999.5,"1"]},
            {"metric":{"job":"db"},"value":[1699999999.5,"0"]}
        ]}})
    );
    assert!(r.body.contains("1699999999.500"), "{}", r.body);
}

#[tokio::test]
async fn scalar_and_special_values() {
    let r = get(&app(), "/api/v1/query?query=1%2F0&time=1700000000.123").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.123,"+Inf"]}}"#
    );
    let r = get(&app(), "/api/v1/query?query=-up%20%2F%200&time=1700000000").await;
    let j = r.json();
    let values: Vec<&str> = j["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"][1].as_str().unwrap())
        .collect();
    assert_eq!(values, ["-Inf", "NaN"]);
    assert_eq!(
        j["data"]["result"][0]["metric"],
        json!({"instance":"0","job":"api"})
    );
}

#[tokio::test]
async fn range_query_returns_a_sorted_matrix() {
    let app = app();
    let form = "query=rate(requests_total%5B1m%5D)&start=1699999880&end=1700000000&step=1m";
    for r in [
        post_form(&app, "/prometheus/api/v1/query_range", form).await,
        get(&app, &format!("/api/v1/query_range?{form}")).await,
    ] {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        // 1 per second (15 every 15s): 45 over 45s extrapolated by 15s,
        // 45 * ((45 + 15) / 45 / 60), which is 0.9999999999999999 in
        // float64, as Prometheus computes it too.
        assert_eq!(
            r.body,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"api"},"values":[[1699999880,"0.9999999999999999"],[1699999940,"0.9999999999999999"],[1700000000,"0.9999999999999999"]]}]}}"#
        );
    }
    let r = get(
        &app,
        "/api/v1/query_range?query=up&start=1699999990&end=1700000000&step=5",
    )
    .await;
    let j = r.json();
    assert_eq!(j["data"]["resultType"], "matrix");
    let metrics: Vec<&Value> = j["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["metric"]["job"])
        .collect();
    assert_eq!(metrics, [&json!("api"), &json!("db")]);
    assert_eq!(
        j["data"]["result"][0]["values"],
        json!([[1699999990, "1"], [1699999995, "1"], [1700000000, "1"]])
    );
    let r = get(&app, "/api/v1/query_range?query=2&start=0&end=10&step=5s").await;
    assert_eq!(
        r.json()["data"]["result"],
        json!([{"metric":{},"values":[[0,"2"],[5,"2"],[10,"2"]]}])
    );
}

#[tokio::test]
async fn range_query_parameter_errors() {
    let app = app();
    let cases = [
        ("query=up&end=10&step=1", r#"invalid parameter "start": cannot parse "" to a valid timestamp"#),
        ("query=up&start=x&end=10&step=1", r#"invalid parameter "start": cannot parse "x" to a valid timestamp"#),
        ("query=up&start=0&end=y&step=1", r#"invalid parameter "end": cannot parse "y" to a valid timestamp"#),
        ("query=up&start=10&end=0&step=1", r#"invalid parameter "end": end timestamp must not be before start time"#),
        ("query=up&start=0&end=10&step=abc", r#"invalid parameter "step": cannot parse "abc" to a valid duration"#),
        (
            "query=up&start=0&end=10&step=0",
            r#"invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer"#,
        ),
        (
            "query=up&start=0&end=11001&step=1",
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ),
        ("query=up&start=0&end=10&step=1&timeout=zz", r#"invalid parameter "timeout": cannot parse "zz" to a valid duration"#),
        (
            "query=up&start=0&end=10&step=1&lookback_delta=zz",
            r#"error parsing lookback delta duration: cannot parse "zz" to a valid duration"#,
        ),
        (
            "query=up%5B5m%5D&start=0&end=10&step=1",
            r#"invalid expression type "range vector" for range query, must be Scalar or instant Vector"#,
        ),
    ];
    for (q, msg) in cases {
        let r = get(&app, &format!("/api/v1/query_range?{q}")).await;
        assert_eq!(
            error_of(&r),
            (
                StatusCode::BAD_REQUEST,
                "bad_data".to_owned(),
                msg.to_owned()
            ),
            "{q}"
        );
    }
    let r = get(
        &app,
        "/api/v1/query_range?query=up&start=0&end=11000&step=1",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn query_errors_map_to_prometheus_types() {
    let app = app();
    let r = get(&app, "/api/v1/query?query=sum(").await;
    let (status, kind, msg) = error_of(&r);
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::BAD_REQUEST, "bad_data")
    );
    assert!(
        msg.starts_with(r#"invalid parameter "query": parse error: "#),
        "{msg}"
    );

    let r = get(&app, "/api/v1/query?query=").await;
    assert_eq!(error_of(&r).0, StatusCode::BAD_REQUEST);

    let r = get(&app, "/api/v1/query?query=histogram_count(up)").await;
    assert_eq!(
        error_of(&r),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "execution".to_owned(),
            "the function \"histogram_count\" is not supported yet".to_owned()
        )
    );

    let r = get(&app, "/api/v1/query?query=up&time=soon").await;
    assert_eq!(
        error_of(&r).2,
        r#"invalid parameter "time": invalid time value for 'time': cannot parse "soon" to a valid timestamp"#
    );

    let failing = MemStore {
        fail_with: Some(StorageError::Unavailable("ingester http://x:1 down".into())),
        ..Default::default()
    };
    let (app, _) = app_with(Arc::new(failing), EngineOptions::default(), false);
    let r = get(&app, "/api/v1/query?query=up").await;
    let (status, kind, msg) = error_of(&r);
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    assert!(msg.contains("ingester http://x:1 down"), "{msg}");
    let r = get(&app, "/api/v1/labels").await;
    assert_eq!(error_of(&r).1, "unavailable");

    let limited = EngineOptions {
        max_samples: 1,
        ..Default::default()
    };
    let (app, _) = app_with(Arc::new(store()), limited, false);
    let r = get(&app, "/api/v1/query?query=up&time=1700000000").await;
    assert_eq!(
        error_of(&r),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "execution".to_owned(),
            "query processing would load too many samples into memory in query execution"
                .to_owned()
        )
    );
}

#[tokio::test]
async fn slow_queries_time_out() {
    let options = EngineOptions {
        timeout: Duration::from_millis(50),
        ..Default::default()
    };
    let (app, _) = app_with(Arc::new(StuckStore), options, false);
    let r = get(&app, "/api/v1/query?query=up").await;
    assert_eq!(
        error_of(&r),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout".to_owned(),
            "query timed out in query execution".to_owned()
        )
    );
    let (app, _) = app_with(Arc::new(StuckStore), EngineOptions::default(), false);
    let r = get(
        &app,
        "/api/v1/query_range?query=up&start=0&end=10&step=1&timeout=0.05",
    )
    .await;
    assert_eq!(error_of(&r).1, "timeout");
}

#[tokio::test]
async fn tenants_come_from_the_header() {
    let (app, _) = app_with(Arc::new(store()), EngineOptions::default(), true);
    let r = get(&app, "/api/v1/query?query=up").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&r).2, "no org id");
    let r = get(&app, "/api/v1/labels").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = get_as(&app, "/api/v1/query?query=secret&time=1700000000", "team-a").await;
    assert_eq!(
        r.json()["data"]["result"][0]["value"],
        json!([1700000000, "42"])
    );
    let r = get_as(
        &app,
        "/api/v1/query?query=secret&time=1700000000",
        "anonymous",
    )
    .await;
    assert_eq!(r.json()["data"]["result"], json!([]));
    // An invalid tenant ID is bad data, as on the write path.
    let r = get_as(&app, "/api/v1/query?query=up", "a|b").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get_as(&app, "/api/v1/query?query=up", &"x".repeat(151)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Without multitenancy a missing header means "anonymous".
    let r = get(
        &app_with(Arc::new(store()), EngineOptions::default(), false).0,
        "/api/v1/query?query=up&time=1700000000",
    )
    .await;
    assert_eq!(r.json()["data"]["result"].as_array().unwrap().len(), 2);
    // ... and the header is ignored, as the distributor ignores it.
    let r = get_as(
        &app_with(Arc::new(store()), EngineOptions::default(), false).0,
        "/api/v1/query?query=secret&time=1700000000",
        "team-a",
    )
    .await;
    assert_eq!(r.json()["data"]["result"], json!([]));
}

#[tokio::test]
async fn labels_and_label_values() {
    let app = app();
    let r = get(&app, "/api/v1/labels").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":["__name__","instance","job"]}"#
    );
    let r = post_form(
        &app,
        "/prometheus/api/v1/labels",
        "match%5B%5D=requests_total",
    )
    .await;
    assert_eq!(r.json()["data"], json!(["__name__", "job"]));
    let r = get(
        &app,
        "/api/v1/labels?match[]=requests_total&match[]=up&limit=2",
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"status":"success","data":["__name__","instance"],"warnings":["results truncated due to limit"]})
    );
    let r = get(&app, "/api/v1/labels?start=1800000000").await;
    assert_eq!(r.json()["data"], json!([]));
    let r = get(&app, "/api/v1/labels?match[]=up%7B").await;
    assert_eq!(error_of(&r).0, StatusCode::BAD_REQUEST);
    let r = get(&app, "/api/v1/labels?start=abc").await;
    assert_eq!(
        error_of(&r).2,
        r#"invalid parameter "start": invalid time value for 'start': cannot parse "abc" to a valid timestamp"#
    );

    let r = get(&app, "/api/v1/label/job/values").await;
    assert_eq!(r.body, r#"{"status":"success","data":["api","db"]}"#);
    let r = get(&app, "/prometheus/api/v1/label/__name__/values").await;
    assert_eq!(r.json()["data"], json!(["requests_total", "up"]));
    let r = get(
        &app,
        "/api/v1/label/job/values?match[]=up%7Binstance%3D%220%22%2Cjob!%3D%22api%22%7D",
    )
    .await;
    assert_eq!(r.json()["data"], json!(["db"]));
    let r = get(&app, "/api/v1/label/nope/values").await;
    assert_eq!(r.json()["data"], json!([]));
    let r = get(&app, "/api/v1/label/job/values?limit=-1").await;
    assert_eq!(
        error_of(&r).2,
        r#"invalid parameter "limit": limit must be non-negative"#
    );
}

#[tokio::test]
async fn series_endpoint() {
    let app = app();
    let r = get(&app, "/api/v1/series?match[]=up").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":[{"__name__":"up","instance":"0","job":"api"},{"__name__":"up","instance":"0","job":"db"}]}"#
    );
    let r = post_form(
        &app,
        "/api/v1/series",
        "match[]=up%7Bjob%3D%22db%22%7D&match[]=requests_total&match[]=up",
    )
    .await;
    let names: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["__name__"].as_str().unwrap(),
                s["job"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["requests_total/api", "up/api", "up/db"]);
    let r = get(&app, "/api/v1/series?match[]=up&limit=1").await;
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        r.json()["warnings"],
        json!(["results truncated due to limit"])
    );
    let r = get(&app, "/api/v1/series").await;
    assert_eq!(
        error_of(&r),
        (
            StatusCode::BAD_REQUEST,
            "bad_data".to_owned(),
            "no match[] parameter provided".to_owned()
        )
    );
    let r = get(&app, "/api/v1/series?match[]=rate(up%5B5m%5D)").await;
    let (status, _, msg) = error_of(&r);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.starts_with(r#"invalid parameter "match[]": "#), "{msg}");
    let r = get(&app, "/api/v1/series?match[]=up&end=1600000000").await;
    assert_eq!(r.json()["data"], json!([]));
}

#[tokio::test]
async fn buildinfo_has_prometheus_shape() {
    let r = get(&app(), "/api/v1/status/buildinfo").await;
    assert_eq!(
        r.json(),
        json!({"status":"success","data":{
            "version": env!("CARGO_PKG_VERSION"),
            "revision":"","branch":"","buildUser":"","buildDate":"","goVersion":""
        }})
    );
}

#[tokio::test]
async fn requests_are_counted() {
    let (app, registry) = app_with(Arc::new(store()), EngineOptions::default(), false);
    get(&app, "/api/v1/query?query=up").await;
    get(&app, "/prometheus/api/v1/query?query=sum(").await;
    get(&app, "/api/v1/query_range?query=up&start=0&end=1&step=1").await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"tidemark_query_requests_total{endpoint="query",status_code="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"tidemark_query_requests_total{endpoint="query",status_code="400"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"tidemark_query_request_duration_seconds_count{endpoint="query_range"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let r = get(&app(), "/api/v1/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn annotations_strings_matrices_and_stats() {
    let app = app();
    // `up` is not a counter: an info, as Prometheus gives.
    let r = get(&app, "/api/v1/query?query=rate(up%5B5m%5D)&time=1700000000").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json()["infos"],
        json!([r#"PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "up" (1:6)"#])
    );
    assert!(r.json().get("warnings").is_none(), "{}", r.body);
    // sort in a range query: a warning.
    let r = get(
        &app,
        "/api/v1/query_range?query=sort(up)&start=1699999900&end=1700000000&step=50",
    )
    .await;
    assert_eq!(
        r.json()["warnings"],
        json!(["PromQL warning: sort is ineffective for range queries since results are always ordered by labels (1:1)"])
    );
    // A string literal and a range vector as instant results.
    let r = get(&app, "/api/v1/query?query=%22hello%22&time=1700000000").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"string","result":[1700000000,"hello"]}}"#
    );
    let r = get(
        &app,
        "/api/v1/query?query=up%7Bjob%3D%22api%22%7D%5B1m%5D&time=1700000000",
    )
    .await;
    assert_eq!(
        r.json()["data"],
        json!({"resultType":"matrix","result":[{"metric":{"__name__":"up","instance":"0","job":"api"},"values":[[1699999985,"1"],[1700000000,"1"]]}]})
    );
    // Statistics only when asked for.
    let r = get(&app, "/api/v1/query?query=up&time=1700000000&stats=all").await;
    let j = r.json();
    assert_eq!(j["data"]["stats"]["samples"]["totalQueryableSamples"], json!(6));
    assert!(j["data"]["stats"]["timings"]["evalTotalTime"].is_number());
    let r = get(&app, "/api/v1/query?query=up&time=1700000000").await;
    assert!(r.json()["data"].get("stats").is_none());
}

#[tokio::test]
async fn format_and_parse_query() {
    let app = app();
    let r = get(
        &app,
        "/api/v1/format_query?query=sum%20by(job)(rate(x%5B5m%5D))",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["data"], json!("sum by (job) (rate(x[5m]))"));
    let r = post_form(&app, "/prometheus/api/v1/parse_query", "query=up+%3E+1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = r.json();
    assert_eq!(j["data"]["type"], json!("binaryExpr"));
    assert_eq!(j["data"]["op"], json!(">"));
    assert_eq!(j["data"]["lhs"]["type"], json!("vectorSelector"));
    assert_eq!(j["data"]["lhs"]["name"], json!("up"));
    let r = get(&app, "/api/v1/format_query?query=sum(").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errorType"], json!("bad_data"));
}
