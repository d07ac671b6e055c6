//! `histogram_quantile`, `histogram_quantiles` and `histogram_fraction`
//! over classic histograms: series of cumulative bucket counters told
//! apart by their `le` label.
//!
//! The input is grouped by all labels but `le`; at each step the buckets
//! of a group give one output value (per quantile for
//! `histogram_quantiles`), labelled without `le` and the metric name.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use tidemark_storage::{Label, Labels};

use super::annotations::{fmt_g, fmt_g_prec, for_metric_name, go_quote, invalid_quantile};
use super::context::EvalContext;
use super::instant_function::rfc3339_secs;
use super::operator::{EvalStream, ScalarOperator, VectorOperator};
use super::position::Pos;
use super::value::{EvalSeries, StepValue};

/// Name of the bucket bound label.
const BUCKET_LABEL: &str = "le";

/// Relative difference below which bucket counts are taken as equal
/// (floating point noise), as Prometheus' `smallDeltaTolerance`.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// What to compute from each group's buckets.
#[derive(Debug)]
pub(crate) enum HistogramFn {
    /// `histogram_quantile(q, v)`.
    Quantile {
        q: Arc<dyn ScalarOperator>,
        q_pos: Option<Pos>,
    },
    /// `histogram_quantiles(v, "label", q1, q2, ...)`.
    Quantiles {
        label: String,
        qs: Vec<(Arc<dyn ScalarOperator>, Option<Pos>)>,
    },
    /// `histogram_fraction(lower, upper, v)`.
    Fraction {
        lower: Arc<dyn ScalarOperator>,
        upper: Arc<dyn ScalarOperator>,
    },
}

#[derive(Debug)]
pub(crate) struct HistogramOp {
    pub func: HistogramFn,
    pub input: Arc<dyn VectorOperator>,
    /// Where the vector argument starts, for annotations.
    pub input_pos: Option<Pos>,
}

/// One bucket: upper bound and cumulative count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    pub upper: f64,
    pub count: f64,
}

/// Where monotonicity had to be forced, merged over a whole query as
/// Prometheus merges the info.
#[derive(Debug, Clone)]
struct ForcedMonotonicity {
    min_ts: i64,
    max_ts: i64,
    min_bucket: f64,
    max_bucket: f64,
    max_diff: f64,
    count: usize,
}

impl VectorOperator for HistogramOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let input = self.input.clone();
        let input_pos = self.input_pos;
        let params: Vec<Arc<dyn ScalarOperator>> = match &self.func {
            HistogramFn::Quantile { q, .. } => vec![q.clone()],
            HistogramFn::Quantiles { qs, .. } => qs.iter().map(|(q, _)| q.clone()).collect(),
            HistogramFn::Fraction { lower, upper } => vec![lower.clone(), upper.clone()],
        };
        let kind = match &self.func {
            HistogramFn::Quantile { q_pos, .. } => Kind::Quantile(vec![*q_pos]),
            HistogramFn::Quantiles { label, qs } => {
                Kind::Quantiles(label.clone(), qs.iter().map(|(_, p)| *p).collect())
            }
            HistogramFn::Fraction { .. } => Kind::Fraction,
        };
        Box::pin(async_stream::try_stream! {
            let mut values = Vec::with_capacity(params.len());
            for p in &params {
                values.push(p.evaluate(ctx.clone()).await?);
            }
            let num_steps = ctx.num_steps;
            // Groups: labels without `le` -> buckets per step.
            let mut index: HashMap<Labels, usize> = HashMap::new();
            let mut groups: Vec<(Labels, Vec<Vec<Bucket>>)> = Vec::new();
            let mut stream = input.execute(ctx.clone());
            while let Some(series) = stream.next().await {
                tokio::task::consume_budget().await;
                let series = series?;
                ctx.budget.charge(series.points.len())?;
                let le = series.labels.get(BUCKET_LABEL).unwrap_or("");
                let Some(upper) = parse_go_float(le) else {
                    ctx.annotations.warn(
                        format!(
                            "bucket label {} is missing or has a malformed value of {}{}",
                            go_quote(BUCKET_LABEL),
                            go_quote(le),
                            for_metric_name(series.labels.metric_name())
                        ),
                        input_pos,
                    );
                    continue;
                };
                let key = Labels::from_sorted(
                    series
                        .labels
                        .iter()
                        .filter(|l| l.name != BUCKET_LABEL)
                        .cloned()
                        .collect(),
                );
                let slot = match index.get(&key) {
                    Some(&i) => i,
                    None => {
                        groups.push((key.clone(), vec![Vec::new(); num_steps]));
                        index.insert(key, groups.len() - 1);
                        groups.len() - 1
                    }
                };
                for p in &series.points {
                    if let Some(b) = groups[slot].1.get_mut(p.step) {
                        b.push(Bucket { upper, count: p.v });
                    }
                }
            }
            drop(index);

            // Invalid quantiles are reported once per value, as Prometheus
            // validates each step's parameter.
            let positions: &[Option<Pos>] = match &kind {
                Kind::Quantile(p) | Kind::Quantiles(_, p) => p,
                Kind::Fraction => &[],
            };
            for (vals, pos) in values.iter().zip(positions) {
                for q in vals.iter().filter(|q| q.is_nan() || **q < 0.0 || **q > 1.0) {
                    ctx.annotations.warn(invalid_quantile(*q), *pos);
                }
            }

            let mut forced: HashMap<String, ForcedMonotonicity> = HashMap::new();
            for (labels, mut per_step) in groups {
                let name = labels.metric_name().map(str::to_owned);
                let out_labels = labels.without_metric_name();
                let outputs = match &kind {
                    Kind::Quantile(_) | Kind::Fraction => 1,
                    Kind::Quantiles(_, p) => p.len(),
                };
                let mut points: Vec<Vec<StepValue>> = vec![Vec::new(); outputs];
                for (step, buckets) in per_step.iter_mut().enumerate() {
                    if buckets.is_empty() {
                        continue;
                    }
                    match &kind {
                        Kind::Fraction => {
                            let lower = values[0].get(step).copied().unwrap_or(f64::NAN);
                            let upper = values[1].get(step).copied().unwrap_or(f64::NAN);
                            let v = bucket_fraction(lower, upper, buckets);
                            points[0].push(StepValue { step, v });
                        }
                        Kind::Quantile(_) | Kind::Quantiles(..) => {
                            let last = points.len() - 1;
                            for (i, out) in points.iter_mut().enumerate() {
                                let q = values[i].get(step).copied().unwrap_or(f64::NAN);
                                // Sorting and coalescing are idempotent, so
                                // the buckets are reused; only a monotonicity
                                // fix changes them, hence a copy for all but
                                // the last quantile.
                                let mut copy;
                                let b = if i == last {
                                    &mut *buckets
                                } else {
                                    copy = buckets.clone();
                                    &mut copy
                                };
                                let r = bucket_quantile(q, b);
                                if let Some(f) = r.forced {
                                    let key = name.clone().unwrap_or_default();
                                    let t = ctx.step_time(step);
                                    forced
                                        .entry(key)
                                        .and_modify(|e| {
                                            e.min_ts = e.min_ts.min(t);
                                            e.max_ts = e.max_ts.max(t);
                                            e.min_bucket = e.min_bucket.min(f.0);
                                            e.max_bucket = e.max_bucket.max(f.1);
                                            e.max_diff = e.max_diff.max(f.2);
                                            e.count += 1;
                                        })
                                        .or_insert(ForcedMonotonicity {
                                            min_ts: t,
                                            max_ts: t,
                                            min_bucket: f.0,
                                            max_bucket: f.1,
                                            max_diff: f.2,
                                            count: 0,
                                        });
                                }
                                out.push(StepValue { step, v: r.value });
                            }
                        }
                    }
                }
                drop(per_step);
                for (i, pts) in points.into_iter().enumerate() {
                    if pts.is_empty() {
                        continue;
                    }
                    let labels = match &kind {
                        Kind::Quantiles(label, _) => {
                            // The quantile's value is the same at every
                            // step when it is a literal; otherwise each
                            // distinct value is its own series.
                            let mut by_q: Vec<(String, Vec<StepValue>)> = Vec::new();
                            for p in pts {
                                let q = values[i].get(p.step).copied().unwrap_or(f64::NAN);
                                let s = format_openmetrics_float(q);
                                match by_q.iter_mut().find(|(k, _)| *k == s) {
                                    Some((_, v)) => v.push(p),
                                    None => by_q.push((s, vec![p])),
                                }
                            }
                            for (q, pts) in by_q {
                                yield EvalSeries {
                                    labels: with_label(&out_labels, label, &q),
                                    points: pts,
                                };
                            }
                            continue;
                        }
                        _ => out_labels.clone(),
                    };
                    yield EvalSeries { labels, points: pts };
                }
            }
            let mut forced: Vec<(String, ForcedMonotonicity)> = forced.into_iter().collect();
            forced.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, f) in forced {
                ctx.annotations.info(
                    format!(
                        "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile){}, from buckets {} to {}, with a max diff of {}, over {} samples from {} to {}",
                        for_metric_name(Some(&name)),
                        fmt_g(f.min_bucket),
                        fmt_g(f.max_bucket),
                        fmt_g_prec(f.max_diff, 2),
                        f.count + 1,
                        rfc3339_secs(f.min_ts.div_euclid(1000)),
                        rfc3339_secs(f.max_ts.div_euclid(1000)),
                    ),
                    input_pos,
                );
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        // The output has no name.
        false
    }
}

enum Kind {
    Quantile(Vec<Option<Pos>>),
    Quantiles(String, Vec<Option<Pos>>),
    Fraction,
}

/// `labels` with `name` set to `value`.
fn with_label(labels: &Labels, name: &str, value: &str) -> Labels {
    let mut v: Vec<Label> = labels.iter().filter(|l| l.name != name).cloned().collect();
    v.push(Label::new(name, value));
    Labels::new(v)
}

/// Go's `strconv.ParseFloat(s, 64)` for the values an `le` label holds:
/// decimal and exponent forms, `Inf`/`+Inf`/`-Inf`/`NaN` in any case.
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim_start_matches(['+', '-']);
    let neg = s.starts_with('-');
    let special = match t.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => Some(f64::INFINITY),
        "nan" => Some(f64::NAN),
        _ => None,
    };
    if let Some(v) = special {
        // At most one sign.
        if s.len() - t.len() > 1 {
            return None;
        }
        return Some(if neg { -v } else { v });
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b"+-.eE_".contains(&b)) {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Prometheus' `FormatOpenMetricsFloat`: `+Inf`, `-Inf`, `NaN`, and a
/// float that always has a `.0` or exponent.
pub(crate) fn format_openmetrics_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = fmt_g(v);
    if s.contains(['.', 'e']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// What [`bucket_quantile`] found.
pub(crate) struct QuantileResult {
    pub value: f64,
    /// (lowest bound, highest bound, largest decrease) where the counts
    /// had to be made monotonic.
    pub forced: Option<(f64, f64, f64)>,
}

fn sort_and_coalesce(buckets: &mut Vec<Bucket>) {
    buckets.sort_by(|a, b| a.upper.partial_cmp(&b.upper).unwrap_or(std::cmp::Ordering::Equal));
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match out.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => out.push(*b),
        }
    }
    *buckets = out;
}

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    const MIN_NORMAL: f64 = 2.2250738585072014e-308;
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < eps * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

/// Prometheus' `ensureMonotonicAndIgnoreSmallDeltas`.
fn ensure_monotonic(buckets: &mut [Bucket]) -> Option<(f64, f64, f64)> {
    let mut forced = false;
    let (mut min_b, mut max_b, mut max_diff) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    let mut prev = buckets.first()?.count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) {
            b.count = prev;
            continue;
        }
        if curr < prev {
            b.count = prev;
            forced = true;
            min_b = min_b.min(b.upper);
            max_b = max_b.max(b.upper);
            max_diff = max_diff.max(prev - curr);
            continue;
        }
        prev = curr;
    }
    forced.then_some((min_b, max_b, max_diff))
}

/// Prometheus' `BucketQuantile`.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> QuantileResult {
    let plain = |value| QuantileResult {
        value,
        forced: None,
    };
    if q.is_nan() {
        return plain(f64::NAN);
    }
    if q < 0.0 {
        return plain(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return plain(f64::INFINITY);
    }
    sort_and_coalesce(buckets);
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return plain(f64::NAN),
    }
    let forced = ensure_monotonic(buckets);
    let with = |value| QuantileResult { value, forced };
    if buckets.len() < 2 {
        return with(f64::NAN);
    }
    let n = buckets.len();
    let observations = buckets[n - 1].count;
    if observations == 0.0 {
        return with(f64::NAN);
    }
    let mut rank = q * observations;
    let b = buckets[..n - 1].partition_point(|x| x.count < rank);
    if b == n - 1 {
        return with(buckets[n - 2].upper);
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return with(buckets[0].upper);
    }
    let mut bucket_start = 0.0;
    let bucket_end = buckets[b].upper;
    let mut count = buckets[b].count;
    if b > 0 {
        bucket_start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    with(bucket_start + (bucket_end - bucket_start) * (rank / count))
}

/// Prometheus' `BucketFraction`: the estimated share of observations in
/// `[lower, upper]`.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    sort_and_coalesce(buckets);
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if buckets[0].upper <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, b) in buckets.iter().enumerate() {
        if i > 0 {
            lower_bound = buckets[i - 1].upper;
        }
        let upper_bound = b.upper;
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                return b.count;
            }
            rank + (b.count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(pairs: &[(f64, f64)]) -> Vec<Bucket> {
        pairs
            .iter()
            .map(|&(upper, count)| Bucket { upper, count })
            .collect()
    }

    #[test]
    fn quantile_interpolates_within_a_bucket() {
        let mut bs = b(&[(0.1, 10.0), (0.5, 30.0), (f64::INFINITY, 40.0)]);
        // rank 20 falls in (0.1, 0.5]: 0.1 + 0.4 * (10 / 20).
        let r = bucket_quantile(0.5, &mut bs);
        assert!((r.value - 0.3).abs() < 1e-12);
        assert!(r.forced.is_none());
        // In the +Inf bucket: the second highest bound.
        let mut bs = b(&[(0.1, 10.0), (0.5, 30.0), (f64::INFINITY, 40.0)]);
        assert_eq!(bucket_quantile(0.99, &mut bs).value, 0.5);
    }

    #[test]
    fn quantile_forces_monotonicity() {
        let mut bs = b(&[(1.0, 10.0), (2.0, 8.0), (f64::INFINITY, 20.0)]);
        let r = bucket_quantile(0.5, &mut bs);
        assert_eq!(r.forced, Some((2.0, 2.0, 2.0)));
    }

    #[test]
    fn no_inf_bucket_is_nan() {
        let mut bs = b(&[(1.0, 10.0), (2.0, 20.0)]);
        assert!(bucket_quantile(0.5, &mut bs).value.is_nan());
        let mut bs = b(&[(1.0, 10.0), (2.0, 20.0)]);
        assert!(bucket_fraction(0.0, 1.0, &mut bs).is_nan());
    }

    #[test]
    fn fraction_of_buckets() {
        let mut bs = b(&[(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 40.0)]);
        assert_eq!(bucket_fraction(0.0, 1.0, &mut bs), 0.25);
        let mut bs = b(&[(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 40.0)]);
        assert_eq!(bucket_fraction(f64::NEG_INFINITY, 1.5, &mut bs), 15.0 / 40.0);
    }

    #[test]
    fn go_float_parsing() {
        assert_eq!(parse_go_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_go_float("0.5"), Some(0.5));
        assert_eq!(parse_go_float("1e3"), Some(1000.0));
        assert_eq!(parse_go_float(""), None);
        assert_eq!(parse_go_float("Hello World"), None);
        assert_eq!(parse_go_float("--1"), None);
        assert_eq!(format_openmetrics_float(1.0), "1.0");
        assert_eq!(format_openmetrics_float(0.99), "0.99");
    }
}
