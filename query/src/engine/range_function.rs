//! Functions over a range vector selector: `rate`, `increase`, `delta`,
//! `irate`, `idelta`, `changes`, `resets`, `deriv`, `predict_linear` and
//! the `*_over_time` functions.

use std::sync::Arc;

use futures::StreamExt;
use tidemark_storage::Sample;

use super::annotations::{go_quote, invalid_quantile};
use super::context::EvalContext;
use super::error::QueryError;
use super::functions::extrapolated_rate;
use super::kahan::kahan_inc;
use super::operator::{EvalStream, ScalarOperator, VectorOperator};
use super::position::Pos;
use super::range_input::{windows, RangeInput};
use super::value::{EvalSeries, StepValue};

/// A function of a range vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeFunction {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Changes,
    Resets,
    Deriv,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    SumOverTime,
    CountOverTime,
    LastOverTime,
    PresentOverTime,
    StddevOverTime,
    StdvarOverTime,
    /// `quantile_over_time(q, range)`: the scalar parameter comes first.
    QuantileOverTime,
    /// `predict_linear(range, t)`: the scalar parameter comes second.
    PredictLinear,
    FirstOverTime,
    /// Experimental: median absolute deviation.
    MadOverTime,
    /// Experimental: timestamps (seconds) of the first, last, largest and
    /// smallest sample.
    TsOfFirstOverTime,
    TsOfLastOverTime,
    TsOfMaxOverTime,
    TsOfMinOverTime,
    /// Experimental: `double_exponential_smoothing(range, sf, tf)`, Holt's
    /// linear method (formerly `holt_winters`).
    DoubleExponentialSmoothing,
}

/// Where a range function's scalar parameters go, if it has any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScalarParam {
    None,
    Before,
    After,
    /// Two, after the range.
    TwoAfter,
}

impl RangeFunction {
    /// The function of a PromQL name, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        use RangeFunction::*;
        Some(match name {
            "rate" => Rate,
            "increase" => Increase,
            "delta" => Delta,
            "irate" => Irate,
            "idelta" => Idelta,
            "changes" => Changes,
            "resets" => Resets,
            "deriv" => Deriv,
            "avg_over_time" => AvgOverTime,
            "min_over_time" => MinOverTime,
            "max_over_time" => MaxOverTime,
            "sum_over_time" => SumOverTime,
            "count_over_time" => CountOverTime,
            "last_over_time" => LastOverTime,
            "present_over_time" => PresentOverTime,
            "stddev_over_time" => StddevOverTime,
            "stdvar_over_time" => StdvarOverTime,
            "quantile_over_time" => QuantileOverTime,
            "predict_linear" => PredictLinear,
            "first_over_time" => FirstOverTime,
            "mad_over_time" => MadOverTime,
            "ts_of_first_over_time" => TsOfFirstOverTime,
            "ts_of_last_over_time" => TsOfLastOverTime,
            "ts_of_max_over_time" => TsOfMaxOverTime,
            "ts_of_min_over_time" => TsOfMinOverTime,
            "double_exponential_smoothing" => DoubleExponentialSmoothing,
            _ => return None,
        })
    }

    /// Where the function takes a scalar parameter.
    pub fn scalar_param(self) -> ScalarParam {
        match self {
            RangeFunction::QuantileOverTime => ScalarParam::Before,
            RangeFunction::PredictLinear => ScalarParam::After,
            RangeFunction::DoubleExponentialSmoothing => ScalarParam::TwoAfter,
            _ => ScalarParam::None,
        }
    }

    /// Whether the output keeps the metric name: `last_over_time` and
    /// `first_over_time` act like an offset, every other function drops it.
    pub fn keeps_name(self) -> bool {
        matches!(self, RangeFunction::LastOverTime | RangeFunction::FirstOverTime)
    }

    /// Whether Prometheus keeps the function behind its
    /// `promql-experimental-functions` flag.
    pub fn experimental(self) -> bool {
        use RangeFunction::*;
        matches!(
            self,
            MadOverTime
                | TsOfFirstOverTime
                | TsOfLastOverTime
                | TsOfMaxOverTime
                | TsOfMinOverTime
                | DoubleExponentialSmoothing
        )
    }

    /// The function's value over one window, `None` for no output.
    ///
    /// * `window`: the samples in `(range_start, range_end]`, by time,
    ///   staleness markers removed.
    /// * `eval_t`: the evaluation time (`range_end` plus the offset).
    /// * `param`, `param2`: the scalar parameters at this step (NaN if
    ///   none).
    /// * `may_reset`: false when the series has no counter reset at all,
    ///   so that `rate` and `increase` need not look for one.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        self,
        window: &[Sample],
        range_start: i64,
        range_end: i64,
        eval_t: i64,
        range_secs: f64,
        param: f64,
        param2: f64,
        may_reset: bool,
    ) -> Option<f64> {
        use RangeFunction::*;
        let last = window.last()?;
        match self {
            Rate => extrapolated_rate(window, range_start, range_end, range_secs, true, true, may_reset),
            Increase => extrapolated_rate(window, range_start, range_end, range_secs, true, false, may_reset),
            Delta => extrapolated_rate(window, range_start, range_end, range_secs, false, false, false),
            Irate => instant_value(window, true),
            Idelta => instant_value(window, false),
            Changes => Some(changes(window)),
            Resets => Some(resets(window)),
            Deriv => {
                if window.len() < 2 {
                    return None;
                }
                Some(linear_regression(window, window[0].t).0)
            }
            PredictLinear => {
                if window.len() < 2 {
                    return None;
                }
                // Anchored at the evaluation time, as Prometheus does.
                let (slope, intercept) = linear_regression(window, eval_t);
                Some(slope * param + intercept)
            }
            AvgOverTime => Some(avg(window)),
            MinOverTime => Some(pick(window, |cur, best| cur < best || best.is_nan())),
            MaxOverTime => Some(pick(window, |cur, best| cur > best || best.is_nan())),
            SumOverTime => Some(sum(window)),
            CountOverTime => Some(window.len() as f64),
            LastOverTime => Some(last.v),
            PresentOverTime => Some(1.0),
            StddevOverTime => Some(variance(window).sqrt()),
            StdvarOverTime => Some(variance(window)),
            QuantileOverTime => {
                let mut values: Vec<f64> = window.iter().map(|s| s.v).collect();
                Some(quantile(param, &mut values))
            }
            FirstOverTime => Some(window[0].v),
            MadOverTime => {
                if window.iter().any(|s| s.v.is_nan()) {
                    return Some(f64::NAN);
                }
                let mut values: Vec<f64> = window.iter().map(|s| s.v).collect();
                let median = quantile(0.5, &mut values);
                for v in values.iter_mut() {
                    *v = (*v - median).abs();
                }
                Some(quantile(0.5, &mut values))
            }
            TsOfFirstOverTime => Some(window[0].t as f64 / 1000.0),
            TsOfLastOverTime => Some(last.t as f64 / 1000.0),
            TsOfMaxOverTime => Some(ts_of_pick(window, |cur, best| cur >= best || best.is_nan())),
            TsOfMinOverTime => Some(ts_of_pick(window, |cur, best| cur <= best || best.is_nan())),
            DoubleExponentialSmoothing => double_exponential_smoothing(window, param, param2),
        }
    }
}

/// Why `double_exponential_smoothing`'s factors are refused, as Prometheus
/// words it (`sf` and `tf` must lie strictly between 0 and 1).
fn smoothing_factors_error(sf: f64, tf: f64) -> Option<String> {
    let outside = |f: f64| f.is_nan() || f <= 0.0 || f >= 1.0;
    if outside(sf) {
        Some(format!("invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"))
    } else if outside(tf) {
        Some(format!("invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"))
    } else {
        None
    }
}

/// Holt's linear smoothing of the window with smoothing factor `sf` and
/// trend factor `tf`: the last smoothed value; none under two samples.
fn double_exponential_smoothing(window: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    let [first, second, ..] = window else {
        return None;
    };
    let (mut previous, mut smoothed) = (0.0, first.v);
    let mut trend = second.v - first.v;
    for (i, s) in window.iter().enumerate().skip(1) {
        if i > 1 {
            trend = tf * (smoothed - previous) + (1.0 - tf) * trend;
        }
        let next = sf * s.v + (1.0 - sf) * (smoothed + trend);
        previous = smoothed;
        smoothed = next;
    }
    Some(smoothed)
}

/// `func(range_vector)`: for each series, at each step, the function over
/// the samples in `(t - offset - range, t - offset]`. Drops the metric
/// name, as Prometheus does, except for `last_over_time`.
#[derive(Debug)]
pub(crate) struct RangeFunctionOp {
    func: RangeFunction,
    input: Arc<RangeInput>,
    /// The scalar parameter of `quantile_over_time` and `predict_linear`,
    /// the first of `double_exponential_smoothing`.
    param: Option<Arc<dyn ScalarOperator>>,
    /// The second of `double_exponential_smoothing`.
    param2: Option<Arc<dyn ScalarOperator>>,
    /// Where the range argument starts in the query, for annotations.
    arg_pos: Option<Pos>,
    /// Where the scalar parameter starts in the query, for annotations.
    param_pos: Option<Pos>,
}

impl RangeFunctionOp {
    pub fn new(
        func: RangeFunction,
        input: Arc<RangeInput>,
        param: Option<Arc<dyn ScalarOperator>>,
    ) -> Self {
        RangeFunctionOp {
            func,
            input,
            param,
            param2: None,
            arg_pos: None,
            param_pos: None,
        }
    }

    /// Sets the second scalar parameter.
    pub fn with_second_param(mut self, param2: Option<Arc<dyn ScalarOperator>>) -> Self {
        self.param2 = param2;
        self
    }

    /// Sets where the range argument and the scalar parameter start.
    pub fn at_positions(mut self, arg_pos: Option<Pos>, param_pos: Option<Pos>) -> Self {
        self.arg_pos = arg_pos;
        self.param_pos = param_pos;
        self
    }
}

impl VectorOperator for RangeFunctionOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let input = self.input.clone();
        let func = self.func;
        let (arg_pos, param_pos) = (self.arg_pos, self.param_pos);
        let param = self.param.as_ref().map(|p| p.evaluate(ctx.clone()));
        let param2 = self.param2.as_ref().map(|p| p.evaluate(ctx.clone()));
        Box::pin(async_stream::try_stream! {
            let params = match param {
                Some(p) => p.await?,
                None => Vec::new(),
            };
            let params2 = match param2 {
                Some(p) => p.await?,
                None => Vec::new(),
            };
            if func == RangeFunction::QuantileOverTime {
                for q in params.iter().filter(|q| q.is_nan() || **q < 0.0 || **q > 1.0) {
                    ctx.annotations.warn(invalid_quantile(*q), param_pos);
                }
            }
            let timing = input.timing();
            let (range_ms, range_secs) = (input.range_ms, input.range_secs);
            let counter_check = matches!(func, RangeFunction::Rate | RangeFunction::Increase);
            let mut series_stream = input.series(ctx.clone());
            // The name last reported as maybe not a counter: series of one
            // metric come together, so the info is formatted once per name.
            let mut reported: Option<String> = None;
            while let Some(series) = series_stream.next().await {
                let series = series?;
                let mut refused = None;
                // One pass over the series instead of one per window.
                let may_reset = counter_check && series.samples.windows(2).any(|p| p[1].v < p[0].v);
                let points: Vec<StepValue> = windows(&series.samples, &ctx, &timing, range_ms, |step, w, start, end| {
                    let p = params.get(step).copied().unwrap_or(f64::NAN);
                    let p2 = params2.get(step).copied().unwrap_or(f64::NAN);
                    if func == RangeFunction::DoubleExponentialSmoothing && refused.is_none() {
                        // Prometheus refuses the factors wherever the
                        // function runs, whatever the window holds.
                        refused = smoothing_factors_error(p, p2);
                    }
                    func.apply(w, start, end, ctx.step_time(step), range_secs, p, p2, may_reset)
                })
                .into_iter()
                .map(|(step, v)| StepValue { step, v })
                .collect();
                if let Some(why) = refused {
                    Err::<(), _>(QueryError::Execution(why))?;
                }
                if counter_check && !points.is_empty() {
                    if let Some(name) = series.labels.metric_name() {
                        if reported.as_deref() != Some(name)
                            && !["_total", "_sum", "_count", "_bucket"].iter().any(|s| name.ends_with(s))
                        {
                            reported = Some(name.to_owned());
                            ctx.annotations.info(
                                format!(
                                    "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {}",
                                    go_quote(name)
                                ),
                                arg_pos,
                            );
                        }
                    }
                }
                if !points.is_empty() {
                    let labels = if func.keeps_name() {
                        series.labels
                    } else {
                        series.labels.into_without_metric_name()
                    };
                    yield EvalSeries { labels, points };
                }
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        // Name-dropping functions are checked for duplicates when planned
        // and their output has no name.
        self.func.keeps_name() && self.input.may_collide_without_name()
    }

    fn unique_labels(&self) -> bool {
        // One output series per input series, which are unique; dropping
        // the name keeps them so when no two differ by name alone.
        self.func.keeps_name() || !self.input.may_collide_without_name()
    }
}

/// Prometheus' `instantValue`: the difference of the last two samples, per
/// second and counter-reset corrected for `irate`.
fn instant_value(window: &[Sample], is_rate: bool) -> Option<f64> {
    let [.., prev, last] = window else {
        return None;
    };
    let mut v = if is_rate && last.v < prev.v {
        last.v
    } else {
        last.v - prev.v
    };
    let interval = last.t.saturating_sub(prev.t);
    if interval == 0 {
        return None;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Number of times the value changed (NaN to NaN is no change).
fn changes(window: &[Sample]) -> f64 {
    window
        .windows(2)
        .filter(|p| p[1].v != p[0].v && !(p[1].v.is_nan() && p[0].v.is_nan()))
        .count() as f64
}

/// Number of decreases.
fn resets(window: &[Sample]) -> f64 {
    window.windows(2).filter(|p| p[1].v < p[0].v).count() as f64
}

/// The value `better(candidate, best)` prefers, starting from the first.
fn pick(window: &[Sample], better: impl Fn(f64, f64) -> bool) -> f64 {
    let mut best = window[0].v;
    for s in window {
        if better(s.v, best) {
            best = s.v;
        }
    }
    best
}

/// The timestamp (seconds) of the sample `better(candidate, best)` ends on.
fn ts_of_pick(window: &[Sample], better: impl Fn(f64, f64) -> bool) -> f64 {
    let (mut best, mut t) = (window[0].v, window[0].t);
    for s in window {
        if better(s.v, best) {
            best = s.v;
            t = s.t;
        }
    }
    t as f64 / 1000.0
}

/// Kahan sum; an infinite sum is returned without its compensation.
fn sum(window: &[Sample]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for s in window {
        (sum, c) = kahan_inc(s.v, sum, c);
    }
    if sum.is_infinite() {
        sum
    } else {
        sum + c
    }
}

/// Mean by Kahan sum, switching to an incremental mean if the sum would
/// overflow.
fn avg(window: &[Sample]) -> f64 {
    let (mut sum, mut count) = (window[0].v, 1.0);
    let (mut mean, mut c) = (0.0, 0.0);
    let mut incremental = false;
    for (i, s) in window.iter().enumerate().skip(1) {
        count = (i + 1) as f64;
        if !incremental {
            let (new_sum, new_c) = kahan_inc(s.v, sum, c);
            if !new_sum.is_infinite() {
                (sum, c) = (new_sum, new_c);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(s.v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

/// Population variance by Welford's method with Kahan compensation.
fn variance(window: &[Sample]) -> f64 {
    let mut count = 0.0;
    let (mut mean, mut c_mean) = (0.0, 0.0);
    let (mut aux, mut c_aux) = (0.0, 0.0);
    for s in window {
        count += 1.0;
        let delta = s.v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (s.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Prometheus' `quantile`: interpolates between the nearest ranks; NaN
/// values sort first; `q` outside [0, 1] gives -Inf or +Inf.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (n - 1.0).min(lower + 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Least-squares fit of the samples, x in seconds since `intercept_time`:
/// (slope, intercept). A constant series has slope 0 (NaN if infinite).
fn linear_regression(window: &[Sample], intercept_time: i64) -> (f64, f64) {
    let init_y = window[0].v;
    let mut const_y = true;
    let mut n = 0.0;
    let (mut sum_x, mut c_x) = (0.0, 0.0);
    let (mut sum_y, mut c_y) = (0.0, 0.0);
    let (mut sum_xy, mut c_xy) = (0.0, 0.0);
    let (mut sum_x2, mut c_x2) = (0.0, 0.0);
    for (i, s) in window.iter().enumerate() {
        if const_y && i > 0 && s.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = s.t.saturating_sub(intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(s.v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * s.v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_left_open() {
        let ctx = EvalContext::for_test(20, 10, 3, 0);
        let samples: Vec<Sample> = (0..6)
            .map(|i| Sample {
                t: i * 10,
                v: i as f64,
            })
            .collect();
        let t = crate::engine::selector::Timing::default();
        let got: Vec<(usize, f64)> = windows(&samples, &ctx, &t, 20, |_, w, _, _| Some(w.len() as f64));
        // (0,20] -> 10,20; (10,30] -> 20,30; (20,40] -> 30,40
        assert_eq!(
            got.iter().map(|p| p.1).collect::<Vec<_>>(),
            vec![2.0, 2.0, 2.0]
        );
        let got = windows(&samples, &ctx, &t, 20, |_, w, _, _| {
            w.first().map(|s| s.t as f64)
        });
        assert_eq!(
            got.iter().map(|p| p.1).collect::<Vec<_>>(),
            vec![10.0, 20.0, 30.0]
        );
    }
}
