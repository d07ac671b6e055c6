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

/// What a selector reads: its matchers (the metric name included) and
/// offset.
#[derive(Debug, Clone)]
pub(crate) struct SelectorSpec {
    pub matchers: Vec<Matcher>,
    /// `offset`, ms; negative for `offset -5m`.
    pub offset_ms: i64,
    /// Whether an equality matcher fixes the metric name of every series.
    pub name_pinned: bool,
}

impl SelectorSpec {
    /// Builds the spec of a parsed selector, refusing what is not
    /// supported yet.
    pub fn from_ast(vs: &VectorSelector) -> Result<Self, QueryError> {
        if vs.at.is_some() {
            return Err(QueryError::unsupported("the @ modifier"));
        }
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
        let offset_ms = match &vs.offset {
            None => 0,
            Some(Offset::Pos(d)) => duration_ms(d),
            Some(Offset::Neg(d)) => -duration_ms(d),
        };
        Ok(SelectorSpec {
            matchers,
            offset_ms,
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
            let spec = SelectorSpec::from_ast(&vs).map_err(|e| e.to_string())?;
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
            let mint = ctx
                .start
                .saturating_sub(spec.offset_ms)
                .saturating_sub(ctx.lookback_ms)
                .saturating_add(1);
            let maxt = ctx.end().saturating_sub(spec.offset_ms);
            let mut input = spec.select(&ctx, mint, maxt).await?;
            while let Some(series) = input.next().await {
                // Yield to the runtime now and then, so that timeouts fire
                // and other queries progress during long in-memory scans.
                tokio::task::consume_budget().await;
                let series = series?;
                ctx.budget.charge(series.samples.len())?;
                let points = lookback_values(&series.samples, &ctx, spec.offset_ms, timestamps);
                if !points.is_empty() {
                    yield EvalSeries { labels: series.labels, points };
                }
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        !self.spec.name_pinned
    }
}

/// The value of a series (samples sorted by time) at every step, or the
/// timestamp in seconds of the sample that value is from.
fn lookback_values(
    samples: &[Sample],
    ctx: &EvalContext,
    offset_ms: i64,
    timestamps: bool,
) -> Vec<StepValue> {
    let mut out = Vec::new();
    // Number of samples at or before the current reference time.
    let mut upto = 0;
    for step in 0..ctx.num_steps {
        let ref_t = ctx.step_time(step).saturating_sub(offset_ms);
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
    use crate::engine::context::SampleBudget;
    use crate::test_store::MemStore;
    use tidemark_storage::STALE_NAN_BITS;

    fn ctx(start: i64, interval: i64, num_steps: usize, lookback_ms: i64) -> EvalContext {
        EvalContext {
            tenant: "t".into(),
            queryable: Arc::new(MemStore::default()),
            start,
            interval,
            num_steps,
            lookback_ms,
            budget: SampleBudget::new(usize::MAX),
        }
    }

    fn s(t: i64, v: f64) -> Sample {
        Sample { t, v }
    }

    #[test]
    fn lookback_is_left_open_and_stale_ends_it() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let samples = [s(0, 1.0), s(10, 2.0), s(20, stale), s(30, 3.0)];
        let c = ctx(0, 5, 10, 15);
        let got: Vec<_> = lookback_values(&samples, &c, 0, false)
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
        let got: Vec<_> = lookback_values(&samples, &c, 10, false)
            .iter()
            .map(|p| p.v)
            .collect();
        assert_eq!(got, vec![1.0, 2.0]);
        let got: Vec<_> = lookback_values(&samples, &c, -10, false)
            .iter()
            .map(|p| p.v)
            .collect();
        assert_eq!(got, vec![2.0, 2.0]);
    }
}
