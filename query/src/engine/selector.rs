//! Series selection: the matchers, offset and storage read shared by
//! instant and range vector selectors, and the instant vector selector.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use promql_parser::label::{MatchOp as AstMatchOp, Matcher as AstMatcher};
use promql_parser::parser::{Expr, Offset, VectorSelector};
use tidemark_storage::labels::METRIC_NAME;
use tidemark_storage::{is_stale_nan, MatchOp, Matcher, Sample, SelectHints, SeriesStream};

use super::context::EvalContext;
use super::error::QueryError;
use super::operator::{EvalStream, VectorOperator};
use super::value::{EvalSeries, StepValue};

/// When a selector or subquery looks at its data, relative to the
/// evaluation steps: its `offset` and `@` modifiers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Timing {
    /// `offset`, ms; negative for `offset -5m`.
    pub offset_ms: i64,
    /// `@`, ms since the epoch (`start()` / `end()` resolved): every step
    /// then looks at this time.
    pub at_ms: Option<i64>,
}

impl Timing {
    /// From the parsed modifiers; `at_ms` is the resolved `@` time.
    pub fn new(offset: Option<&Offset>, at_ms: Option<i64>) -> Self {
        let offset_ms = match offset {
            None => 0,
            Some(Offset::Pos(d)) => duration_ms(d),
            Some(Offset::Neg(d)) => -duration_ms(d),
        };
        Timing { offset_ms, at_ms }
    }

    /// The time the data is looked at for a step: the step's time (or the
    /// `@` time) minus the offset.
    pub fn ref_time(&self, ctx: &EvalContext, step: usize) -> i64 {
        self.at_ms
            .unwrap_or_else(|| ctx.step_time(step))
            .saturating_sub(self.offset_ms)
    }

    /// The reference times of the first and last steps.
    pub fn ref_bounds(&self, ctx: &EvalContext) -> (i64, i64) {
        (
            self.ref_time(ctx, 0),
            self.ref_time(ctx, ctx.num_steps.saturating_sub(1)),
        )
    }
}

/// What a selector reads: its matchers (the metric name included),
/// offset and `@`.
#[derive(Debug, Clone)]
pub(crate) struct SelectorSpec {
    pub matchers: Vec<Matcher>,
    pub timing: Timing,
    /// Whether an equality matcher fixes the metric name of every series.
    pub name_pinned: bool,
}

impl SelectorSpec {
    /// Builds the spec of a parsed selector; `at_ms` is its resolved `@`
    /// time, if it has one.
    pub fn from_ast(vs: &VectorSelector, at_ms: Option<i64>) -> Result<Self, QueryError> {
        if !vs.matchers.or_matchers.is_empty() {
            return Err(QueryError::unsupported("\"or\" between label matchers"));
        }
        let mut matchers = Vec::with_capacity(vs.matchers.matchers.len() + 1);
        if let Some(name) = &vs.name {
            matchers.push(Matcher::equal(METRIC_NAME, name.clone()));
        }
        for m in &vs.matchers.matchers {
            matchers.push(convert_matcher(m)?);
        }
        let name_pinned = matchers
            .iter()
            .any(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal && !m.value.is_empty());
        Ok(SelectorSpec {
            matchers,
            timing: Timing::new(vs.offset.as_ref(), at_ms),
            name_pinned,
        })
    }

    /// Reads the matching series with samples in `[mint, maxt]`.
    pub async fn select(
        &self,
        ctx: &EvalContext,
        mint: i64,
        maxt: i64,
    ) -> Result<SeriesStream, QueryError> {
        tracing::debug!(tenant = %ctx.tenant, matchers = ?self.matchers, mint, maxt, "select");
        let hints = SelectHints::range(mint, maxt);
        Ok(ctx
            .queryable
            .select(&ctx.tenant, &self.matchers, hints)
            .await?)
    }
}

/// Parses a series selector (a `match[]` parameter): a vector selector
/// with no modifiers. Returns its matchers, the metric name included.
pub(crate) fn parse_series_selector(s: &str) -> Result<Vec<Matcher>, String> {
    match super::parse(s).map_err(|e| e.to_string())? {
        Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => {
            let spec = SelectorSpec::from_ast(&vs, None).map_err(|e| e.to_string())?;
            if spec.matchers.iter().all(|m| m.matches_empty()) {
                return Err("match[] must contain at least one non-empty matcher".to_owned());
            }
            Ok(spec.matchers)
        }
        _ => Err(format!("{s:?} is not a series selector")),
    }
}

/// Whole milliseconds of a duration, as Prometheus truncates them.
pub(crate) fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Converts a matcher of the PromQL parser into a storage matcher.
pub(crate) fn convert_matcher(m: &AstMatcher) -> Result<Matcher, QueryError> {
    let op = match &m.op {
        AstMatchOp::Equal => MatchOp::Equal,
        AstMatchOp::NotEqual => MatchOp::NotEqual,
        AstMatchOp::Re(_) => MatchOp::Regex,
        AstMatchOp::NotRe(_) => MatchOp::NotRegex,
    };
    Matcher::new(op, m.name.clone(), m.value.clone())
        .map_err(|e| QueryError::BadData(e.to_string()))
}

/// An instant vector selector: at each step the latest sample within the
/// lookback window `(t - offset - lookback, t - offset]`, unless that
/// sample is a staleness marker.
#[derive(Debug)]
pub(crate) struct InstantSelectorOp {
    spec: Arc<SelectorSpec>,
    /// Yield each sample's timestamp in seconds instead of its value (for
    /// `timestamp(selector)`).
    timestamps: bool,
}

impl InstantSelectorOp {
    pub fn new(spec: SelectorSpec) -> Self {
        InstantSelectorOp {
            spec: Arc::new(spec),
            timestamps: false,
        }
    }

    /// A selector yielding the timestamps of the samples it selects.
    pub fn timestamps(spec: SelectorSpec) -> Self {
        InstantSelectorOp {
            spec: Arc::new(spec),
            timestamps: true,
        }
    }
}

impl VectorOperator for InstantSelectorOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let spec = self.spec.clone();
        let timestamps = self.timestamps;
        Box::pin(async_stream::try_stream! {
            // The lookback window is open on the left.
            let (first, maxt) = spec.timing.ref_bounds(&ctx);
            let mint = first.saturating_sub(ctx.lookback_ms).saturating_add(1);
            let mut input = spec.select(&ctx, mint, maxt).await?;
            while let Some(series) = input.next().await {
                // Yield to the runtime now and then, so that timeouts fire
                // and other queries progress during long in-memory scans.
                tokio::task::consume_budget().await;
                let series = series?;
                ctx.budget.charge(series.samples.len())?;
                let points = lookback_values(&series.samples, &ctx, &spec.timing, timestamps);
                if !points.is_empty() {
                    yield EvalSeries { labels: series.labels, points };
                }
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        !self.spec.name_pinned
    }

    fn unique_labels(&self) -> bool {
        // Storage yields each series once.
        true
    }
}

/// The value of a series (samples sorted by time) at every step, or the
/// timestamp in seconds of the sample that value is from.
fn lookback_values(
    samples: &[Sample],
    ctx: &EvalContext,
    timing: &Timing,
    timestamps: bool,
) -> Vec<StepValue> {
    let mut out = Vec::new();
    // Number of samples at or before the current reference time.
    let mut upto = 0;
    for step in 0..ctx.num_steps {
        let ref_t = timing.ref_time(ctx, step);
        while upto < samples.len() && samples[upto].t <= ref_t {
            upto += 1;
        }
        let Some(last) = upto.checked_sub(1).map(|i| samples[i]) else {
            continue;
        };
        if last.t <= ref_t.saturating_sub(ctx.lookback_ms) || is_stale_nan(last.v) {
            continue;
        }
        let v = if timestamps {
            last.t as f64 / 1000.0
        } else {
            last.v
        };
        out.push(StepValue { step, v });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_storage::STALE_NAN_BITS;

    fn ctx(start: i64, interval: i64, num_steps: usize, lookback_ms: i64) -> EvalContext {
        EvalContext::for_test(start, interval, num_steps, lookback_ms)
    }

    fn s(t: i64, v: f64) -> Sample {
        Sample { t, v }
    }

    #[test]
    fn lookback_is_left_open_and_stale_ends_it() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let samples = [s(0, 1.0), s(10, 2.0), s(20, stale), s(30, 3.0)];
        let c = ctx(0, 5, 10, 15);
        let got: Vec<_> = lookback_values(&samples, &c, &Timing { offset_ms: 0, at_ms: None }, false)
            .iter()
            .map(|p| (p.step, p.v))
            .collect();
        // t=0:1 5:1 10:2 15:2 20:stale 25:stale 30:3 35:3 40:3 45:(30<=45-15) none
        assert_eq!(
            got,
            vec![
                (0, 1.0),
                (1, 1.0),
                (2, 2.0),
                (3, 2.0),
                (6, 3.0),
                (7, 3.0),
                (8, 3.0)
            ]
        );
    }

    #[test]
    fn offset_shifts_the_reference_time() {
        let samples = [s(0, 1.0), s(10, 2.0)];
        let c = ctx(10, 10, 2, 100);
        let got: Vec<_> = lookback_values(&samples, &c, &Timing { offset_ms: 10, at_ms: None }, false)
            .iter()
            .map(|p| p.v)
            .collect();
        assert_eq!(got, vec![1.0, 2.0]);
        let got: Vec<_> = lookback_values(&samples, &c, &Timing { offset_ms: -10, at_ms: None }, false)
            .iter()
            .map(|p| p.v)
            .collect();
        assert_eq!(got, vec![2.0, 2.0]);
    }
}
