//! Status pages of the ring (HTML, or JSON for `Accept: application/json`
//! or `?format=json`) and the ingester's partition downscale API.
//!
//! * `GET /memberlist`: every member.
//! * `GET /ingester/ring`: the ingesters.
//! * `GET /ingester/partition-ring`: partitions, states and owners.
//! * `/ingester/prepare-partition-downscale` (ingesters): `POST` makes
//!   the ingester's partitions inactive (no more writes, still read),
//!   `DELETE` makes them active again, `GET` tells since when they are
//!   inactive; all answer `{"timestamp": <Unix seconds, 0 = active>}`, as
//!   Mimir does.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::lifecycler::{LifecycleError, PartitionLifecycler};
use crate::model::{Instance, PartitionClaim, PartitionState, RingSnapshot};

#[derive(Clone)]
struct Pages {
    ring: watch::Receiver<Arc<RingSnapshot>>,
}

/// The status pages over `ring`.
pub fn router(ring: watch::Receiver<Arc<RingSnapshot>>) -> Router {
    Router::new()
        .route("/memberlist", get(members))
        .route("/ingester/ring", get(ingesters))
        .route("/ingester/partition-ring", get(partitions))
        .with_state(Pages { ring })
}

/// The downscale API of an ingester.
pub fn downscale_router(lifecycler: Arc<PartitionLifecycler>) -> Router {
    Router::new()
        .route(
            "/ingester/prepare-partition-downscale",
            get(downscale_status).post(downscale_prepare).delete(downscale_cancel),
        )
        .with_state(lifecycler)
}

#[derive(Deserialize)]
struct FormatParam {
    format: Option<String>,
}

fn wants_json(headers: &HeaderMap, q: &FormatParam) -> bool {
    q.format.as_deref() == Some("json")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json"))
}

#[derive(Serialize)]
struct MembersBody<'a> {
    members: Vec<&'a Instance>,
}

async fn members(State(p): State<Pages>, headers: HeaderMap, Query(q): Query<FormatParam>) -> Response {
    member_page(&p, &headers, &q, "Memberlist", |_| true)
}

async fn ingesters(State(p): State<Pages>, headers: HeaderMap, Query(q): Query<FormatParam>) -> Response {
    member_page(&p, &headers, &q, "Ingester ring", |i| i.has_role("ingester"))
}

fn member_page(p: &Pages, headers: &HeaderMap, q: &FormatParam, title: &str, keep: impl Fn(&Instance) -> bool) -> Response {
    let ring = p.ring.borrow().clone();
    let members: Vec<&Instance> = ring.instances.values().filter(|i| keep(i)).collect();
    if wants_json(headers, q) {
        return Json(MembersBody { members }).into_response();
    }
    let mut html = page_start(title);
    html.push_str("<table><tr><th>Instance</th><th>Zone</th><th>Address</th><th>Roles</th><th>State</th><th>Health</th><th>Partitions</th></tr>");
    for i in &members {
        let parts: Vec<String> = i.partitions.iter().map(|(p, c)| format!("{p} ({})", c.state)).collect();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&i.id),
            esc(&i.zone),
            esc(&i.addr),
            esc(&i.roles.join(", ")),
            i.state.as_str(),
            if i.healthy { "healthy" } else { "unhealthy" },
            esc(&parts.join(", ")),
        );
    }
    html.push_str("</table></body></html>");
    Html(html).into_response()
}

#[derive(Serialize)]
struct PartitionsBody {
    partitions: Vec<PartitionBody>,
    active: Vec<i32>,
}

#[derive(Serialize)]
struct PartitionBody {
    id: i32,
    state: PartitionState,
    state_since_ms: i64,
    owners: Vec<OwnerBody>,
}

#[derive(Serialize)]
struct OwnerBody {
    id: String,
    zone: String,
    addr: String,
    state: &'static str,
    healthy: bool,
}

async fn partitions(State(p): State<Pages>, headers: HeaderMap, Query(q): Query<FormatParam>) -> Response {
    let ring = p.ring.borrow().clone();
    let body = PartitionsBody {
        partitions: ring
            .partitions
            .values()
            .map(|part| PartitionBody {
                id: part.id,
                state: part.state,
                state_since_ms: part.since_ms,
                owners: part
                    .owners
                    .iter()
                    .filter_map(|id| ring.instances.get(id))
                    .map(|i| OwnerBody {
                        id: i.id.clone(),
                        zone: i.zone.clone(),
                        addr: i.addr.clone(),
                        state: i.state.as_str(),
                        healthy: i.healthy,
                    })
                    .collect(),
            })
            .collect(),
        active: ring.active_partitions(),
    };
    if wants_json(&headers, &q) {
        return Json(body).into_response();
    }
    let mut html = page_start("Partition ring");
    html.push_str("<table><tr><th>Partition</th><th>State</th><th>Since (Unix ms)</th><th>Owners</th></tr>");
    for part in &body.partitions {
        let owners: Vec<String> = part
            .owners
            .iter()
            .map(|o| format!("{} ({}, {}, {})", o.id, o.zone, o.state, if o.healthy { "healthy" } else { "unhealthy" }))
            .collect();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            part.id,
            part.state,
            part.state_since_ms,
            esc(&owners.join("; ")),
        );
    }
    html.push_str("</table></body></html>");
    Html(html).into_response()
}

fn page_start(title: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Tidemark: {title}</title>\
         <style>body{{font-family:sans-serif}}td,th{{padding:2px 10px;text-align:left}}</style></head>\
         <body><h1>{title}</h1>"
    )
}

/// HTML-escapes text announced by members.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Serialize)]
struct DownscaleBody {
    timestamp: i64,
}

/// Since when the partitions are inactive (Unix seconds), 0 if not.
fn inactive_since(claims: &[(i32, PartitionClaim)]) -> i64 {
    claims
        .iter()
        .filter(|(_, c)| c.state == PartitionState::Inactive)
        .map(|(_, c)| c.since_ms / 1000)
        .max()
        .unwrap_or(0)
}

async fn downscale_status(State(l): State<Arc<PartitionLifecycler>>) -> Response {
    Json(DownscaleBody {
        timestamp: inactive_since(&l.claims()),
    })
    .into_response()
}

async fn downscale_prepare(State(l): State<Arc<PartitionLifecycler>>) -> Response {
    set(&l, PartitionState::Inactive).await
}

async fn downscale_cancel(State(l): State<Arc<PartitionLifecycler>>) -> Response {
    set(&l, PartitionState::Active).await
}

async fn set(l: &PartitionLifecycler, state: PartitionState) -> Response {
    match l.set_state(state).await {
        Ok(claims) => Json(DownscaleBody {
            timestamp: inactive_since(&claims),
        })
        .into_response(),
        Err(e @ LifecycleError::Pending(_)) => (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::model::InstanceState;

    fn ring() -> RingSnapshot {
        RingSnapshot::build([Instance {
            id: "ingester-<zone-a>-0".into(),
            zone: "zone-a".into(),
            addr: "http://127.0.0.1:1".into(),
            roles: vec!["ingester".into()],
            state: InstanceState::Active,
            partitions: BTreeMap::from([(0, PartitionClaim { state: PartitionState::Active, since_ms: 7 })]),
            seen: Default::default(),
            healthy: true,
            generation: 1,
        }])
    }

    async fn get(path: &str, accept: &str) -> (StatusCode, String) {
        let (_tx, rx) = watch::channel(Arc::new(ring()));
        let r = router(rx)
            .oneshot(Request::get(path).header("accept", accept).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn pages_in_html_and_json() {
        let (s, html) = get("/ingester/ring", "text/html").await;
        assert_eq!(s, StatusCode::OK);
        assert!(html.contains("ingester-&lt;zone-a&gt;-0"), "escaped: {html}");
        assert!(html.contains("0 (active)"), "{html}");
        let (_, json) = get("/ingester/partition-ring?format=json", "").await;
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["active"], serde_json::json!([0]));
        assert_eq!(v["partitions"][0]["state"], "active");
        assert_eq!(v["partitions"][0]["owners"][0]["state"], "ACTIVE");
        let (_, json) = get("/memberlist", "application/json").await;
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["members"][0]["zone"], "zone-a");
        let (_, html) = get("/ingester/partition-ring", "").await;
        assert!(html.contains("<td>active</td>"), "{html}");
    }
}
