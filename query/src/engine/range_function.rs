//! Functions over a range vector selector: `rate` and `increase`.

use std::sync::Arc;

use futures::StreamExt;
use tidemark_storage::{is_stale_nan, Sample};

use super::context::EvalContext;
use super::functions::extrapolated_rate;
use super::operator::{EvalStream, VectorOperator};
use super::selector::SelectorSpec;
use super::value::{EvalSeries, StepValue};

/// A function of a range vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeFunction {
    Rate,
    Increase,
}

impl RangeFunction {
    /// The function of a PromQL name, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "rate" => Some(RangeFunction::Rate),
            "increase" => Some(RangeFunction::Increase),
            _ => None,
        }
    }

    /// The function's value over one window, `None` for no output.
    fn apply(
        self,
        window: &[Sample],
        range_start: i64,
        range_end: i64,
        range_secs: f64,
    ) -> Option<f64> {
        match self {
            RangeFunction::Rate => {
                extrapolated_rate(window, range_start, range_end, range_secs, true, true)
            }
            RangeFunction::Increase => {
                extrapolated_rate(window, range_start, range_end, range_secs, true, false)
            }
        }
    }
}

/// `func(selector[range])`: for each series, at each step, the function
/// over the samples in `(t - offset - range, t - offset]`. Drops the metric
/// name, as Prometheus does for these functions.
#[derive(Debug)]
pub(crate) struct RangeFunctionOp {
    func: RangeFunction,
    spec: Arc<SelectorSpec>,
    range_ms: i64,
    range_secs: f64,
}

impl RangeFunctionOp {
    pub fn new(func: RangeFunction, spec: SelectorSpec, range: std::time::Duration) -> Self {
        RangeFunctionOp {
            func,
            spec: Arc::new(spec),
            range_ms: super::selector::duration_ms(&range),
            range_secs: range.as_secs_f64(),
        }
    }
}

impl VectorOperator for RangeFunctionOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let spec = self.spec.clone();
        let (func, range_ms, range_secs) = (self.func, self.range_ms, self.range_secs);
        Box::pin(async_stream::try_stream! {
            let mint = ctx
                .start
                .saturating_sub(spec.offset_ms)
                .saturating_sub(range_ms)
                .saturating_add(1);
            let maxt = ctx.end().saturating_sub(spec.offset_ms);
            let mut input = spec.select(&ctx, mint, maxt).await?;
            while let Some(series) = input.next().await {
                // Yield to the runtime now and then, so that timeouts fire
                // and other queries progress during long in-memory scans.
                tokio::task::consume_budget().await;
                let mut series = series?;
                ctx.budget.charge(series.samples.len())?;
                // Range selectors skip staleness markers.
                series.samples.retain(|s| !is_stale_nan(s.v));
                let points = windows(&series.samples, &ctx, spec.offset_ms, range_ms, |w, start, end| {
                    func.apply(w, start, end, range_secs)
                });
                if !points.is_empty() {
                    yield EvalSeries { labels: series.labels.without_metric_name(), points };
                }
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        // Checked for duplicates when planned; the output has no name.
        false
    }
}

/// Applies `f(window, range_start, range_end)` at every step to the window
/// `(range_start, range_end]` of `samples` (sorted by time).
fn windows(
    samples: &[Sample],
    ctx: &EvalContext,
    offset_ms: i64,
    range_ms: i64,
    f: impl Fn(&[Sample], i64, i64) -> Option<f64>,
) -> Vec<StepValue> {
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0, 0);
    for step in 0..ctx.num_steps {
        let range_end = ctx.step_time(step).saturating_sub(offset_ms);
        let range_start = range_end.saturating_sub(range_ms);
        while hi < samples.len() && samples[hi].t <= range_end {
            hi += 1;
        }
        while lo < hi && samples[lo].t <= range_start {
            lo += 1;
        }
        if let Some(v) = f(&samples[lo..hi], range_start, range_end) {
            out.push(StepValue { step, v });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::context::SampleBudget;
    use crate::test_store::MemStore;

    #[test]
    fn windows_are_left_open() {
        let ctx = EvalContext {
            tenant: "t".into(),
            queryable: Arc::new(MemStore::default()),
            start: 20,
            interval: 10,
            num_steps: 3,
            lookback_ms: 0,
            budget: SampleBudget::new(usize::MAX),
        };
        let samples: Vec<Sample> = (0..6)
            .map(|i| Sample {
                t: i * 10,
                v: i as f64,
            })
            .collect();
        let got = windows(&samples, &ctx, 0, 20, |w, _, _| Some(w.len() as f64));
        // (0,20] -> 10,20; (10,30] -> 20,30; (20,40] -> 30,40
        assert_eq!(
            got.iter().map(|p| p.v).collect::<Vec<_>>(),
            vec![2.0, 2.0, 2.0]
        );
        let got = windows(&samples, &ctx, 0, 20, |w, _, _| {
            w.first().map(|s| s.t as f64)
        });
        assert_eq!(
            got.iter().map(|p| p.v).collect::<Vec<_>>(),
            vec![10.0, 20.0, 30.0]
        );
    }
}
