//! `GET /runtime_config` and `GET /api/v1/user_limits`, as Mimir.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tidemark_storage::tenant::{tenant_from_header, TenantError, ORG_ID_HEADER};

use crate::Overrides;

#[derive(Clone)]
struct LimitsState {
    overrides: Overrides,
    multitenancy_enabled: bool,
}

/// The limits endpoints, for every target.
pub fn router(overrides: Overrides, multitenancy_enabled: bool) -> Router {
    Router::new()
        .route("/runtime_config", get(runtime_config))
        .route("/api/v1/user_limits", get(user_limits))
        .with_state(LimitsState {
            overrides,
            multitenancy_enabled,
        })
}

#[derive(Deserialize)]
struct ModeParam {
    mode: Option<String>,
}

/// The runtime configuration in force: every tenant's effective limits, or
/// with `?mode=diff` only the values that differ from the defaults.
async fn runtime_config(State(s): State<LimitsState>, Query(q): Query<ModeParam>) -> Response {
    let diff = match q.mode.as_deref() {
        None | Some("") => false,
        Some("diff") => true,
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("unknown mode {other:?}: use mode=diff or no mode\n"),
            )
                .into_response()
        }
    };
    (
        [(header::CONTENT_TYPE, "text/yaml; charset=utf-8")],
        s.overrides.render_yaml(diff),
    )
        .into_response()
}

/// The calling tenant's effective limits as JSON.
async fn user_limits(State(s): State<LimitsState>, headers: HeaderMap) -> Response {
    let tenant = match tenant_from_header(
        headers.get(ORG_ID_HEADER).and_then(|v| v.to_str().ok()),
        s.multitenancy_enabled,
    ) {
        Ok(t) => t,
        Err(e) => {
            let status = match e {
                TenantError::Missing => StatusCode::UNAUTHORIZED,
                _ => StatusCode::BAD_REQUEST,
            };
            return (status, format!("{e}\n")).into_response();
        }
    };
    let limits = s.overrides.get(&tenant);
    match serde_json::to_string(&*limits) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, RuntimeConfigSettings};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(app: &Router, uri: &str, tenant: Option<&str>) -> (StatusCode, String) {
        let mut req = Request::get(uri);
        if let Some(t) = tenant {
            req = req.header(ORG_ID_HEADER, t);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn endpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt.yaml");
        std::fs::write(&path, "overrides:\n  a:\n    ingestion_rate: 5\n").unwrap();
        let o = Overrides::load(
            Limits::default(),
            &RuntimeConfigSettings {
                file: Some(path),
                ..Default::default()
            },
            Default::default(),
        )
        .unwrap();
        let app = router(o, true);
        let (s, body) = get(&app, "/api/v1/user_limits", Some("a")).await;
        assert_eq!(s, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ingestion_rate"], 5.0);
        assert_eq!(v["creation_grace_period"], "10m");
        let (_, body) = get(&app, "/api/v1/user_limits", Some("b")).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ingestion_rate"], 10000.0);
        let (s, _) = get(&app, "/api/v1/user_limits", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, body) = get(&app, "/runtime_config", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("ingestion_burst_size"), "{body}");
        let (_, body) = get(&app, "/runtime_config?mode=diff", None).await;
        assert!(body.contains("ingestion_rate: 5"), "{body}");
        assert!(!body.contains("ingestion_burst_size"), "{body}");
        let (s, _) = get(&app, "/runtime_config?mode=x", None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }
}
