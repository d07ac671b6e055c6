//! The endpoints' logic: parameters in, JSON body out.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use futures::StreamExt;
use tidemark_storage::queryable::{merge_series_streams, merge_sorted_strings};
use tidemark_storage::{Labels, Matcher, SelectHints};

use super::params::{
    parse_duration, parse_std_duration, parse_time, Params, MAX_TIME_MS, MIN_TIME_MS,
};
use super::response::{self, ApiError};
use super::{ApiState, Reply};
use crate::engine::{
    parse_series_selector, QueryOptions, QueryResult, MAX_STEPS, TOO_MANY_POINTS,
};

/// A request's tenant and parameters.
struct Request {
    tenant: String,
    params: Params,
}

fn request(
    st: &ApiState,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Request, ApiError> {
    let tenant = st.tenant(headers)?;
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .starts_with("application/x-www-form-urlencoded")
        });
    let form = (is_form && !body.is_empty()).then_some(body);
    let params = Params::parse(query, form)
        .map_err(|e| ApiError::bad_data(format!("error parsing form values: {e}")))?;
    Ok(Request { tenant, params })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An optional time parameter, as Prometheus' `parseTimeParam`.
fn optional_time(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        "" => Ok(default),
        s => parse_time(s).map_err(|e| {
            ApiError::invalid_param(name, format!("invalid time value for '{name}': {e}"))
        }),
    }
}

/// The `timeout` and `lookback_delta` parameters.
fn query_options(p: &Params) -> Result<QueryOptions, ApiError> {
    let timeout = match p.get("timeout") {
        "" => None,
        s => Some(parse_std_duration(s).map_err(|e| ApiError::invalid_param("timeout", e))?),
    };
    let lookback_delta = match p.get("lookback_delta") {
        "" => None,
        s => Some(parse_std_duration(s).map_err(|e| {
            ApiError::bad_data(format!("error parsing lookback delta duration: {e}"))
        })?),
    };
    Ok(QueryOptions {
        lookback_delta,
        timeout,
    })
}

/// The `limit` parameter; 0 for none.
fn limit(p: &Params) -> Result<usize, ApiError> {
    match p.get("limit") {
        "" => Ok(0),
        s => match s.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            Ok(_) => Err(ApiError::invalid_param(
                "limit",
                "limit must be non-negative",
            )),
            Err(_) => Err(ApiError::invalid_param(
                "limit",
                format!("strconv.Atoi: parsing {s:?}: invalid syntax"),
            )),
        },
    }
}

/// The `match[]` parameters, each a set of matchers.
fn matcher_sets(p: &Params) -> Result<Vec<Vec<Matcher>>, String> {
    p.all("match[]")
        .into_iter()
        .map(parse_series_selector)
        .collect()
}

/// `GET|POST /query`.
pub(super) async fn query(
    st: &ApiState,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let Request { tenant, params: p } = request(st, headers, query, body)?;
    st.read_consistency(headers).await?;
    let time = optional_time(&p, "time", now_ms())?;
    let opts = query_options(&p)?;
    let q = p.get("query");
    tracing::debug!(%tenant, query = q, time, "instant query");
    let result = st
        .engine()
        .instant_query_result(&tenant, q, time, &opts)
        .await?;
    Ok(query_reply(&p, result))
}

/// `GET|POST /query_range`.
pub(super) async fn query_range(
    st: &ApiState,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let Request { tenant, params: p } = request(st, headers, query, body)?;
    st.read_consistency(headers).await?;
    let start = parse_time(p.get("start")).map_err(|e| ApiError::invalid_param("start", e))?;
    let end = parse_time(p.get("end")).map_err(|e| ApiError::invalid_param("end", e))?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step = parse_duration(p.get("step")).map_err(|e| ApiError::invalid_param("step", e))?;
    if step <= 0 {
        return Err(ApiError::invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end as i128 - start as i128) / step as i128 > MAX_STEPS as i128 {
        return Err(ApiError::bad_data(TOO_MANY_POINTS));
    }
    let opts = query_options(&p)?;
    let q = p.get("query");
    tracing::debug!(%tenant, query = q, start, end, step, "range query");
    let result = st
        .engine()
        .range_query_result(&tenant, q, start, end, step, &opts)
        .await?;
    Ok(query_reply(&p, result))
}

/// A query's answer: the value, `stats` when the `stats` parameter asks
/// for them, warnings and infos.
fn query_reply(p: &Params, result: QueryResult) -> Reply {
    Reply::Query(result, !p.get("stats").is_empty())
}

/// Truncates to `limit` (0: none), with Prometheus' warning.
fn truncate<T>(values: &mut Vec<T>, limit: usize, warnings: &mut Vec<String>) {
    if limit > 0 && values.len() > limit {
        values.truncate(limit);
        warnings.push("results truncated due to limit".to_owned());
    }
}

/// `GET|POST /labels`.
pub(super) async fn labels(
    st: &ApiState,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<String, ApiError> {
    let Request { tenant, params: p } = request(st, headers, query, body)?;
    st.read_consistency(headers).await?;
    let limit = limit(&p)?;
    let start = optional_time(&p, "start", MIN_TIME_MS)?;
    let end = optional_time(&p, "end", MAX_TIME_MS)?;
    let sets = matcher_sets(&p).map_err(ApiError::bad_data)?;
    let q = st.queryable();
    let mut names = if sets.is_empty() {
        q.label_names(&tenant, &[], start, end).await?
    } else {
        let mut lists = Vec::with_capacity(sets.len());
        for set in &sets {
            lists.push(q.label_names(&tenant, set, start, end).await?);
        }
        merge_sorted_strings(lists)
    };
    let mut warnings = Vec::new();
    truncate(&mut names, limit, &mut warnings);
    Ok(response::success(&response::string_list(&names), &warnings))
}

/// `GET /label/{name}/values`.
pub(super) async fn label_values(
    st: &ApiState,
    name: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<String, ApiError> {
    let Request { tenant, params: p } = request(st, headers, query, &[])?;
    st.read_consistency(headers).await?;
    if name.is_empty() {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let limit = limit(&p)?;
    let start = optional_time(&p, "start", MIN_TIME_MS)?;
    let end = optional_time(&p, "end", MAX_TIME_MS)?;
    let sets = matcher_sets(&p).map_err(ApiError::bad_data)?;
    let q = st.queryable();
    let mut values = if sets.is_empty() {
        q.label_values(&tenant, name, &[], start, end).await?
    } else {
        let mut lists = Vec::with_capacity(sets.len());
        for set in &sets {
            lists.push(q.label_values(&tenant, name, set, start, end).await?);
        }
        merge_sorted_strings(lists)
    };
    let mut warnings = Vec::new();
    truncate(&mut values, limit, &mut warnings);
    Ok(response::success(
        &response::string_list(&values),
        &warnings,
    ))
}

/// `GET /metadata`: metric metadata by metric family name, with `limit`
/// (metrics), `limit_per_metric` and `metric`.
pub(super) async fn metadata(
    st: &ApiState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<String, ApiError> {
    let Request { tenant, params: p } = request(st, headers, query, &[])?;
    st.read_consistency(headers).await?;
    let limit = limit(&p)?;
    let per_metric = match p.get("limit_per_metric") {
        "" => 0,
        s => s.parse::<usize>().map_err(|_| {
            ApiError::invalid_param(
                "limit_per_metric",
                format!("{s:?} is not a non-negative integer"),
            )
        })?,
    };
    let metric = Some(p.get("metric")).filter(|m| !m.is_empty());
    let all = st.queryable().metadata(&tenant, metric).await?;
    let mut grouped: Vec<(String, Vec<tidemark_storage::MetricMetadata>)> = Vec::new();
    for m in all {
        match grouped.last_mut() {
            Some((name, list)) if *name == m.metric => {
                if per_metric == 0 || list.len() < per_metric {
                    list.push(m);
                }
            }
            _ => {
                if limit != 0 && grouped.len() >= limit {
                    break;
                }
                grouped.push((m.metric.clone(), vec![m]));
            }
        }
    }
    Ok(response::success(&response::metadata(&grouped), &[]))
}

/// `GET|POST /series`.
pub(super) async fn series(
    st: &ApiState,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<String, ApiError> {
    let Request { tenant, params: p } = request(st, headers, query, body)?;
    st.read_consistency(headers).await?;
    if p.all("match[]").is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let limit = limit(&p)?;
    let start = optional_time(&p, "start", MIN_TIME_MS)?;
    let end = optional_time(&p, "end", MAX_TIME_MS)?;
    let sets = matcher_sets(&p).map_err(|e| ApiError::invalid_param("match[]", e))?;
    let hints = SelectHints {
        start_ms: start,
        end_ms: end,
        labels_only: true,
    };
    let mut streams = Vec::with_capacity(sets.len());
    for set in &sets {
        streams.push(st.queryable().select(&tenant, set, hints).await?);
    }
    let mut merged = merge_series_streams(streams);
    let mut out: Vec<Labels> = Vec::new();
    let mut warnings = Vec::new();
    while let Some(s) = merged.next().await {
        out.push(s?.labels);
        if limit > 0 && out.len() > limit {
            truncate(&mut out, limit, &mut warnings);
            break;
        }
    }
    Ok(response::success(&response::label_sets(&out), &warnings))
}

/// What `format_query` / `parse_query` answer about a query.
#[derive(Debug, Clone, Copy)]
pub(super) enum QueryText {
    /// The query as Prometheus formats it.
    Formatted,
    /// The syntax tree as JSON, in the shape of Prometheus' answer.
    Tree,
}

/// `GET|POST /format_query` and `/parse_query`.
pub(super) fn query_text(
    st: &ApiState,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    what: QueryText,
) -> Result<String, ApiError> {
    let Request { params: p, .. } = request(st, headers, query, body)?;
    let expr = crate::engine::parse(p.get("query"))?;
    let data = match what {
        QueryText::Formatted => serde_json::Value::String(expr.prettify()).to_string(),
        QueryText::Tree => serde_json::to_string(&expr)
            .map_err(|e| ApiError::new(crate::engine::ErrorKind::Internal, e.to_string()))?,
    };
    Ok(response::success(&data, &[]))
}

/// `GET /status/buildinfo`.
pub(super) fn buildinfo() -> String {
    let data = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    });
    response::success(&data.to_string(), &[])
}
