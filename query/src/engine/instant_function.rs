//! Functions of instant vectors and scalars: the math functions (`ceil`,
//! `floor`, `exp`, `ln`, `log2`, `log10`, `sqrt`, `sgn`, `round`, `clamp`,
//! `clamp_min`, `clamp_max`, trigonometry, `rad`, `deg`), `timestamp`, the
//! date functions (`day_of_month`, `day_of_week`, `day_of_year`,
//! `days_in_month`, `hour`, `minute`, `month`, `year`),
//! `vector`, `scalar`, `time`, `pi`, `min_of` and `max_of`.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tidemark_storage::Labels;

use super::context::EvalContext;
use super::error::QueryError;
use super::operator::{EvalStream, ScalarOperator, VectorOperator};
use super::value::{EvalSeries, StepValue};

/// Go's `math.Max`: +Inf wins over NaN, NaN over everything else, and +0
/// over -0.
pub(crate) fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() {
            y
        } else {
            x
        }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`: -Inf wins over NaN, NaN over everything else, and -0
/// over +0.
pub(crate) fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() {
            x
        } else {
            y
        }
    } else if x < y {
        x
    } else {
        y
    }
}

/// A function applied to every value of an instant vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VectorFunction {
    Abs,
    Ceil,
    Floor,
    Exp,
    Ln,
    Log2,
    Log10,
    Sqrt,
    Sgn,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Asinh,
    Acosh,
    Atanh,
    Rad,
    Deg,
    /// `round(v, to_nearest = 1)`.
    Round,
    /// `clamp(v, min, max)`.
    Clamp,
    /// `clamp_min(v, min)`.
    ClampMin,
    /// `clamp_max(v, max)`.
    ClampMax,
    /// `timestamp(v)`: the evaluation time in seconds (the sample time when
    /// the input is a selector planned in timestamp mode).
    Timestamp,
    /// The date functions of a value in seconds since the epoch, UTC.
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    DaysInMonth,
    Hour,
    Minute,
    Month,
    Year,
}

impl VectorFunction {
    /// The function of a PromQL name, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        use VectorFunction::*;
        Some(match name {
            "abs" => Abs,
            "ceil" => Ceil,
            "floor" => Floor,
            "exp" => Exp,
            "ln" => Ln,
            "log2" => Log2,
            "log10" => Log10,
            "sqrt" => Sqrt,
            "sgn" => Sgn,
            "sin" => Sin,
            "cos" => Cos,
            "tan" => Tan,
            "asin" => Asin,
            "acos" => Acos,
            "atan" => Atan,
            "sinh" => Sinh,
            "cosh" => Cosh,
            "tanh" => Tanh,
            "asinh" => Asinh,
            "acosh" => Acosh,
            "atanh" => Atanh,
            "rad" => Rad,
            "deg" => Deg,
            "round" => Round,
            "clamp" => Clamp,
            "clamp_min" => ClampMin,
            "clamp_max" => ClampMax,
            "timestamp" => Timestamp,
            "day_of_month" => DayOfMonth,
            "day_of_week" => DayOfWeek,
            "day_of_year" => DayOfYear,
            "days_in_month" => DaysInMonth,
            "hour" => Hour,
            "minute" => Minute,
            "month" => Month,
            "year" => Year,
            _ => return None,
        })
    }

    /// Whether this is a date function (whose vector argument may be left
    /// out, meaning `vector(time())`).
    pub fn is_date(self) -> bool {
        use VectorFunction::*;
        matches!(
            self,
            DayOfMonth | DayOfWeek | DayOfYear | DaysInMonth | Hour | Minute | Month | Year
        )
    }

    /// (required, optional) scalar parameters after the vector.
    pub fn scalar_params(self) -> (usize, usize) {
        match self {
            VectorFunction::Round => (0, 1),
            VectorFunction::Clamp => (2, 0),
            VectorFunction::ClampMin | VectorFunction::ClampMax => (1, 0),
            _ => (0, 0),
        }
    }

    /// The function of `v` given the scalar parameters at this step and
    /// the evaluation time in seconds; `None` drops the element.
    fn apply(self, v: f64, params: &[f64], t_secs: f64) -> Option<f64> {
        use VectorFunction::*;
        let p = |i: usize| params.get(i).copied().unwrap_or(f64::NAN);
        Some(match self {
            Abs => v.abs(),
            Ceil => v.ceil(),
            Floor => v.floor(),
            Exp => v.exp(),
            Ln => v.ln(),
            Log2 => v.log2(),
            Log10 => v.log10(),
            Sqrt => v.sqrt(),
            Sgn => {
                if v < 0.0 {
                    -1.0
                } else if v > 0.0 {
                    1.0
                } else {
                    v
                }
            }
            Sin => v.sin(),
            Cos => v.cos(),
            Tan => v.tan(),
            Asin => v.asin(),
            Acos => v.acos(),
            Atan => v.atan(),
            Sinh => v.sinh(),
            Cosh => v.cosh(),
            Tanh => v.tanh(),
            Asinh => v.asinh(),
            Acosh => v.acosh(),
            Atanh => v.atanh(),
            Rad => v * std::f64::consts::PI / 180.0,
            Deg => v * 180.0 / std::f64::consts::PI,
            Round => {
                let to_nearest = params.first().copied().unwrap_or(1.0);
                // Inverted, as Prometheus does, for fewer rounding issues.
                let inverse = 1.0 / to_nearest;
                (v * inverse + 0.5).floor() / inverse
            }
            Clamp => clamp(v, p(0), p(1))?,
            ClampMin => clamp(v, p(0), f64::INFINITY)?,
            ClampMax => clamp(v, f64::NEG_INFINITY, p(0))?,
            Timestamp => t_secs,
            DayOfMonth | DayOfWeek | DayOfYear | DaysInMonth | Hour | Minute | Month | Year => {
                date_part(self, v)
            }
        })
    }
}

/// Largest magnitude of seconds the date functions take: well within the
/// range where Go's `time` computes the proleptic Gregorian calendar
/// without overflowing.
const MAX_DATE_SECS: f64 = 9.0e18;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `2006-01-02T15:04:05Z` of seconds since the epoch, UTC.
pub(crate) fn rfc3339_secs(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A date function of `v` seconds since the epoch (truncated, as Go's
/// `int64(v)`), UTC. The caller checks `|v| < MAX_DATE_SECS`.
fn date_part(func: VectorFunction, v: f64) -> f64 {
    use VectorFunction::*;
    let secs = v as i64;
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let r = match func {
        DayOfMonth => d,
        DayOfWeek => (days + 4).rem_euclid(7),
        DayOfYear => days - days_from_civil(y, 1, 1) + 1,
        DaysInMonth => {
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)
        }
        Hour => of_day / 3600,
        Minute => of_day % 3600 / 60,
        Month => m,
        _ => y,
    };
    r as f64
}

/// Prometheus' `clamp`: nothing when `max < min`.
fn clamp(v: f64, min: f64, max: f64) -> Option<f64> {
    if max < min {
        return None;
    }
    Some(go_max(min, go_min(max, v)))
}

/// `func(vector, scalars...)`: applies the function to every value and
/// drops the metric name.
#[derive(Debug)]
pub(crate) struct VectorFunctionOp {
    pub func: VectorFunction,
    pub input: Arc<dyn VectorOperator>,
    pub params: Vec<Arc<dyn ScalarOperator>>,
    /// `timestamp` over a selector that already yields sample timestamps.
    pub input_is_timestamps: bool,
}

impl VectorOperator for VectorFunctionOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let (func, input_is_timestamps) = (self.func, self.input_is_timestamps);
        let params: Vec<_> = self
            .params
            .iter()
            .map(|p| p.evaluate(ctx.clone()))
            .collect();
        let input = self.input.clone();
        Box::pin(async_stream::try_stream! {
            let mut values = Vec::with_capacity(params.len());
            for p in params {
                values.push(p.await?);
            }
            let mut input = input.execute(ctx.clone());
            let mut at_step = vec![0.0; values.len()];
            while let Some(series) = input.next().await {
                let series = series?;
                let mut points = Vec::with_capacity(series.points.len());
                for p in &series.points {
                    if func == VectorFunction::Timestamp && input_is_timestamps {
                        points.push(*p);
                        continue;
                    }
                    for (slot, vals) in at_step.iter_mut().zip(&values) {
                        *slot = vals.get(p.step).copied().unwrap_or(f64::NAN);
                    }
                    if func.is_date() && (p.v.is_nan() || p.v.abs() >= MAX_DATE_SECS) {
                        Err(QueryError::unsupported(
                            "a date function of a value that is not a time in range",
                        ))?;
                    }
                    let t_secs = ctx.step_time(p.step) as f64 / 1000.0;
                    if let Some(v) = func.apply(p.v, &at_step, t_secs) {
                        points.push(StepValue { step: p.step, v });
                    }
                }
                if !points.is_empty() {
                    yield EvalSeries { labels: series.labels.into_without_metric_name(), points };
                }
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        false
    }
}

/// `vector(s)`: one series without labels, the scalar's value at every step.
#[derive(Debug)]
pub(crate) struct VectorOfScalarOp(pub Arc<dyn ScalarOperator>);

impl VectorOperator for VectorOfScalarOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let values = self.0.evaluate(ctx);
        Box::pin(async_stream::try_stream! {
            let values = values.await?;
            let points: Vec<StepValue> = values
                .into_iter()
                .enumerate()
                .map(|(step, v)| StepValue { step, v })
                .collect();
            if !points.is_empty() {
                yield EvalSeries { labels: Labels::default(), points };
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        false
    }
}

/// `scalar(v)`: at each step the value of the only element, NaN if there
/// are none or several.
#[derive(Debug)]
pub(crate) struct ScalarOfVectorOp(pub Arc<dyn VectorOperator>);

impl ScalarOperator for ScalarOfVectorOp {
    fn evaluate(&self, ctx: Arc<EvalContext>) -> BoxFuture<'static, Result<Vec<f64>, QueryError>> {
        let mut input = self.0.execute(ctx.clone());
        async move {
            let mut counts = vec![0usize; ctx.num_steps];
            let mut values = vec![f64::NAN; ctx.num_steps];
            while let Some(series) = input.next().await {
                for p in series?.points {
                    if let (Some(c), Some(v)) = (counts.get_mut(p.step), values.get_mut(p.step)) {
                        *c += 1;
                        *v = p.v;
                    }
                }
            }
            for (c, v) in counts.iter().zip(values.iter_mut()) {
                if *c != 1 {
                    *v = f64::NAN;
                }
            }
            Ok(values)
        }
        .boxed()
    }
}

/// `time()`: the evaluation time in seconds.
#[derive(Debug)]
pub(crate) struct TimeOp;

impl ScalarOperator for TimeOp {
    fn evaluate(&self, ctx: Arc<EvalContext>) -> BoxFuture<'static, Result<Vec<f64>, QueryError>> {
        let values = (0..ctx.num_steps)
            .map(|step| ctx.step_time(step) as f64 / 1000.0)
            .collect();
        futures::future::ready(Ok(values)).boxed()
    }
}

/// `min_of(a, b)` and `max_of(a, b)` of two scalars, with Go's semantics.
#[derive(Debug)]
pub(crate) struct ScalarMinMaxOp {
    pub max: bool,
    pub lhs: Arc<dyn ScalarOperator>,
    pub rhs: Arc<dyn ScalarOperator>,
}

impl ScalarOperator for ScalarMinMaxOp {
    fn evaluate(&self, ctx: Arc<EvalContext>) -> BoxFuture<'static, Result<Vec<f64>, QueryError>> {
        let max = self.max;
        let lhs = self.lhs.evaluate(ctx.clone());
        let rhs = self.rhs.evaluate(ctx);
        async move {
            let (l, r) = (lhs.await?, rhs.await?);
            let f = if max { go_max } else { go_min };
            Ok(l.into_iter().zip(r).map(|(l, r)| f(l, r)).collect())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_min_max_semantics() {
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert!(go_max(f64::NAN, 1.0).is_nan());
        assert!(go_min(1.0, f64::NAN).is_nan());
        assert_eq!(go_min(f64::NAN, f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert!(go_max(-0.0, 0.0).is_sign_positive());
        assert!(go_min(0.0, -0.0).is_sign_negative());
    }

    #[test]
    fn round_and_clamp() {
        let f = VectorFunction::Round;
        assert_eq!(f.apply(2.5, &[], 0.0), Some(3.0));
        assert_eq!(f.apply(-2.5, &[], 0.0), Some(-2.0));
        assert_eq!(f.apply(7.3, &[5.0], 0.0), Some(5.0));
        assert_eq!(f.apply(7.6, &[5.0], 0.0), Some(10.0));
        assert_eq!(
            VectorFunction::Clamp.apply(5.0, &[1.0, 3.0], 0.0),
            Some(3.0)
        );
        assert_eq!(VectorFunction::Clamp.apply(5.0, &[3.0, 1.0], 0.0), None);
        assert!(VectorFunction::Clamp
            .apply(f64::NAN, &[1.0, 3.0], 0.0)
            .unwrap()
            .is_nan());
        assert_eq!(VectorFunction::ClampMin.apply(-5.0, &[0.0], 0.0), Some(0.0));
        assert_eq!(VectorFunction::ClampMax.apply(5.0, &[0.0], 0.0), Some(0.0));
    }
}

#[cfg(test)]
mod date_tests {
    use super::*;

    #[test]
    fn dates_match_go() {
        use VectorFunction::*;
        let t = 1_136_239_445.0; // 2006-01-02 22:04:05 UTC, a Monday.
        let got: Vec<f64> = [Year, Month, DayOfMonth, DayOfYear, DayOfWeek, Hour, Minute]
            .iter()
            .map(|f| date_part(*f, t))
            .collect();
        assert_eq!(got, vec![2006.0, 1.0, 2.0, 2.0, 1.0, 22.0, 4.0]);
        assert_eq!(date_part(DaysInMonth, 1_454_284_800.0), 29.0);
        assert_eq!(date_part(DaysInMonth, 1_485_907_200.0), 28.0);
        assert_eq!(date_part(DayOfYear, 1_483_191_420.0), 366.0);
        assert_eq!(date_part(DayOfWeek, 0.0), 4.0);
        // 1969-12-31 23:59:59.
        assert_eq!(date_part(Year, -1.0), 1969.0);
        assert_eq!(date_part(Hour, -1.0), 23.0);
        assert_eq!(date_part(DayOfYear, -1.0), 365.0);
        // Truncated toward zero, as Go's int64(v): -0.5 is 1970.
        assert_eq!(date_part(Year, -0.5), 1970.0);
    }
}
