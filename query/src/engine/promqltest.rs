//! A small interpreter for test scripts in the style of Prometheus'
//! `promqltest`, so that engine cases read like Prometheus' own:
//!
//! ```text
//! load 5m
//!     metric{job="a"} 0+10x10 stale 1 _ 2
//!
//! eval instant at 50m sum(metric)
//!     {} 100
//!
//! eval range from 0 to 10m step 5m -metric
//!     {job="a"} -0 -10 -20
//!
//! eval instant at 0 abs(metric)
//!     expect fail msg: the function "abs" is not supported yet
//!
//! clear
//! ```
//!
//! Series values: numbers (`Inf`, `NaN` too), `_` for no sample, `stale`
//! for a staleness marker and `a+bxN` / `a-bxN` for N+1 values from `a` in
//! steps of `b`. Samples of a `load` block are `interval` apart from 0.
//! An expected scalar is a line holding just a number.

use std::sync::Arc;

use tidemark_storage::{Label, Labels, Sample, STALE_NAN_BITS};

use super::{Engine, EngineOptions, QueryOptions, QueryValue};
use crate::api::params::parse_prometheus_duration;
use crate::test_store::MemStore;

const TENANT: &str = "test";

/// Runs a script, panicking with the failing command on a mismatch.
pub(crate) async fn run(script: &str) {
    run_with(script, EngineOptions::default()).await
}

/// Runs a script with the given engine options.
pub(crate) async fn run_with(script: &str, options: EngineOptions) {
    let mut store_series: Vec<(Labels, Vec<Sample>)> = Vec::new();
    let lines: Vec<&str> = script.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The indented lines that belong to this command.
        let mut body = Vec::new();
        while i < lines.len()
            && (lines[i].starts_with(' ')
                || lines[i].starts_with('\t')
                || lines[i].trim().is_empty())
        {
            let l = lines[i].trim();
            if !l.is_empty() && !l.starts_with('#') {
                body.push(l);
            }
            i += 1;
        }
        if line == "clear" {
            store_series.clear();
        } else if let Some(rest) = line.strip_prefix("load ") {
            let interval = ms(rest.trim());
            for l in body {
                let (labels, values) = split_series(l);
                let samples = expand(values)
                    .into_iter()
                    .enumerate()
                    .filter_map(|(k, v)| {
                        v.map(|v| Sample {
                            t: k as i64 * interval,
                            v,
                        })
                    })
                    .collect();
                store_series.push((labels, samples));
            }
        } else if let Some(rest) = line.strip_prefix("eval ") {
            let mut store = MemStore::default();
            for (labels, samples) in &store_series {
                store.add(TENANT, labels.clone(), samples.clone());
            }
            let engine = Engine::new(Arc::new(store), options.clone());
            eval(&engine, rest, &body, line).await;
        } else {
            panic!("unknown test command: {line}");
        }
    }
}

async fn eval(engine: &Engine, cmd: &str, body: &[&str], line: &str) {
    let opts = QueryOptions::default();
    let (result, steps) = if let Some(rest) = cmd.strip_prefix("instant at ") {
        let (at, query) = rest.split_once(' ').unwrap_or((rest, ""));
        let t = ms(at);
        (engine.instant_query(TENANT, query, t, &opts).await, vec![t])
    } else if let Some(rest) = cmd.strip_prefix("range from ") {
        let words: Vec<&str> = rest.splitn(6, ' ').collect();
        assert!(
            words.len() == 6 && words[1] == "to" && words[3] == "step",
            "bad range command: {line}"
        );
        let (start, end, step) = (ms(words[0]), ms(words[2]), ms(words[4]));
        let steps = (0..)
            .map(|k| start + k * step)
            .take_while(|t| *t <= end)
            .collect();
        (
            engine
                .range_query(TENANT, words[5], start, end, step, &opts)
                .await,
            steps,
        )
    } else {
        panic!("bad eval command: {line}");
    };

    if let Some(expect) = body.first().and_then(|l| l.strip_prefix("expect fail")) {
        let err = match result {
            Ok(v) => panic!("{line}: expected an error, got {v:?}"),
            Err(e) => e,
        };
        if let Some(msg) = expect.trim().strip_prefix("msg:") {
            assert_eq!(err.to_string(), msg.trim(), "{line}");
        }
        return;
    }
    let value = match result {
        Ok(v) => v,
        Err(e) => panic!("{line}: unexpected error: {e}"),
    };
    // `expect ordered`: the vector must come in the order given.
    let ordered = body.first().is_some_and(|l| l.trim() == "expect ordered");
    let body = if ordered { &body[1..] } else { body };

    match value {
        QueryValue::Scalar { v, .. } => {
            assert_eq!(body.len(), 1, "{line}: got scalar {v}, expected {body:?}");
            let want: f64 =
                parse_value(body[0]).unwrap_or_else(|| panic!("{line}: bad scalar {}", body[0]));
            assert!(close(want, v), "{line}: scalar: want {want}, got {v}");
        }
        QueryValue::Vector(samples) => {
            let mut want: Vec<(Labels, f64)> = body
                .iter()
                .map(|l| {
                    let (labels, values) = split_series(l);
                    let v = expand(values).first().copied().flatten();
                    (
                        labels,
                        v.unwrap_or_else(|| panic!("{line}: bad expected value in {l}")),
                    )
                })
                .collect();
            let mut got: Vec<(Labels, f64)> =
                samples.iter().map(|s| (s.labels.clone(), s.v)).collect();
            if !ordered {
                want.sort_by(|a, b| a.0.cmp(&b.0));
                got.sort_by(|a, b| a.0.cmp(&b.0));
            }
            assert_eq!(
                want.iter().map(|w| &w.0).collect::<Vec<_>>(),
                got.iter().map(|g| &g.0).collect::<Vec<_>>(),
                "{line}: series differ; got {got:?}"
            );
            for ((labels, w), (_, g)) in want.iter().zip(&got) {
                assert!(close(*w, *g), "{line}: {labels}: want {w}, got {g}");
            }
            assert!(
                samples.iter().all(|s| s.t == steps[0]),
                "{line}: timestamps"
            );
        }
        QueryValue::Matrix(series) => {
            let mut want: Vec<(Labels, Vec<Sample>)> = body
                .iter()
                .map(|l| {
                    let (labels, values) = split_series(l);
                    let points = expand(values)
                        .into_iter()
                        .enumerate()
                        .filter_map(|(k, v)| v.map(|v| Sample { t: steps[k], v }))
                        .collect();
                    (labels, points)
                })
                .collect();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                want.iter().map(|w| &w.0).collect::<Vec<_>>(),
                series.iter().map(|g| &g.labels).collect::<Vec<_>>(),
                "{line}: series differ; got {series:?}"
            );
            for ((labels, w), g) in want.iter().zip(&series) {
                let same = w.len() == g.points.len()
                    && w.iter()
                        .zip(&g.points)
                        .all(|(a, b)| a.t == b.t && close(a.v, b.v));
                assert!(same, "{line}: {labels}: want {w:?}, got {:?}", g.points);
            }
        }
        QueryValue::String { v, .. } => panic!("{line}: unexpected string {v:?}"),
    }
}

/// Equal, both NaN, or within a relative 1e-9.
fn close(want: f64, got: f64) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    want == got || (want - got).abs() <= 1e-9 * want.abs().max(got.abs())
}

fn ms(s: &str) -> i64 {
    parse_prometheus_duration(s).unwrap_or_else(|| panic!("bad duration {s:?}"))
}

/// Splits `name{a="b"} values...` into labels and the values text.
fn split_series(line: &str) -> (Labels, &str) {
    let end = match line.find('}') {
        Some(close) if line.find('{').is_some_and(|open| open < close) => close + 1,
        _ => line.find(char::is_whitespace).unwrap_or(line.len()),
    };
    let (spec, values) = line.split_at(end);
    (parse_labels(spec), values.trim())
}

fn parse_labels(spec: &str) -> Labels {
    let (name, rest) = match spec.find('{') {
        Some(i) => (&spec[..i], spec[i + 1..].trim_end_matches('}')),
        None => (spec, ""),
    };
    let mut labels = Vec::new();
    if !name.is_empty() {
        labels.push(Label::new("__name__", name));
    }
    for pair in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .unwrap_or_else(|| panic!("bad label {pair:?}"));
        labels.push(Label::new(k.trim(), v.trim().trim_matches('"')));
    }
    Labels::new(labels)
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "Inf" | "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        "stale" => Some(f64::from_bits(STALE_NAN_BITS)),
        _ => s.parse().ok(),
    }
}

/// Expands a values text into one entry per interval (`None` for `_`).
fn expand(values: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for tok in values.split_whitespace() {
        if tok == "_" {
            out.push(None);
        } else if let Some((seq, n)) = tok.rsplit_once('x') {
            let n: usize = n.parse().unwrap_or_else(|_| panic!("bad repeat {tok:?}"));
            // `a+b` or `a-b`, `a` possibly negative.
            let split = seq[1..]
                .find(['+', '-'])
                .map(|i| i + 1)
                .unwrap_or_else(|| panic!("bad series {tok:?}"));
            let a = parse_value(&seq[..split]).unwrap_or_else(|| panic!("bad start {tok:?}"));
            let b = parse_value(&seq[split + 1..]).unwrap_or_else(|| panic!("bad step {tok:?}"));
            let b = if &seq[split..split + 1] == "-" { -b } else { b };
            out.extend((0..=n).map(|k| Some(a + k as f64 * b)));
        } else {
            out.push(Some(
                parse_value(tok).unwrap_or_else(|| panic!("bad value {tok:?}")),
            ));
        }
    }
    out
}
