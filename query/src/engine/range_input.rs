//! Range vectors: what a range-vector function (`rate`, `*_over_time`, ...)
//! takes its windows from. Either a range selector reading storage, or a
//! subquery evaluating an expression at the steps of its own resolution.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use tidemark_storage::queryable::merge_samples;
use tidemark_storage::{is_stale_nan, Labels, Sample, Series};

use super::context::EvalContext;
use super::error::{QueryError, TOO_MANY_SAMPLES};
use super::operator::VectorOperator;
use super::selector::{SelectorSpec, Timing};

/// Series of a range vector, each with its samples by time.
pub(crate) type RangeStream = BoxStream<'static, Result<Series, QueryError>>;

/// A range vector: its source and the width of its windows.
#[derive(Debug)]
pub(crate) struct RangeInput {
    pub source: RangeSource,
    pub range_ms: i64,
    pub range_secs: f64,
}

#[derive(Debug)]
pub(crate) enum RangeSource {
    /// `selector[range]`.
    Selector(SelectorSpec),
    /// `expr[range:step]`.
    Subquery(Subquery),
}

/// `expr[range:step] offset o @ t`.
#[derive(Debug)]
pub(crate) struct Subquery {
    pub inner: Arc<dyn VectorOperator>,
    /// Resolution of the inner evaluation, ms (positive).
    pub step_ms: i64,
    pub timing: Timing,
}

impl Subquery {
    /// The steps the inner expression is evaluated at: every multiple of
    /// the subquery step after the first window's start, up to the last
    /// window's end (as Prometheus aligns them).
    pub fn inner_steps(&self, ctx: &EvalContext, range_ms: i64) -> (i64, usize) {
        let (first, last) = self.timing.ref_bounds(ctx);
        let lower = first.saturating_sub(range_ms);
        let step = self.step_ms;
        // Go's integer division truncates toward zero.
        let mut start = step.saturating_mul(lower / step);
        if start <= lower {
            start = start.saturating_add(step);
        }
        if last < start {
            return (start, 0);
        }
        let n = last.saturating_sub(start) / step + 1;
        (start, usize::try_from(n).unwrap_or(usize::MAX))
    }
}

impl RangeInput {
    pub fn timing(&self) -> Timing {
        match &self.source {
            RangeSource::Selector(s) => s.timing,
            RangeSource::Subquery(s) => s.timing,
        }
    }

    /// Whether two series of this range vector may differ by metric name
    /// alone.
    pub fn may_collide_without_name(&self) -> bool {
        match &self.source {
            RangeSource::Selector(s) => !s.name_pinned,
            RangeSource::Subquery(s) => s.inner.may_collide_without_name(),
        }
    }

    /// The series of this range vector with the samples every window of
    /// `ctx`'s steps needs (staleness markers removed).
    pub fn series(self: &Arc<Self>, ctx: Arc<EvalContext>) -> RangeStream {
        let this = self.clone();
        match &self.source {
            RangeSource::Selector(_) => Box::pin(async_stream::try_stream! {
                let RangeSource::Selector(spec) = &this.source else { return; };
                let (first, maxt) = spec.timing.ref_bounds(&ctx);
                let mint = first.saturating_sub(this.range_ms).saturating_add(1);
                let mut input = spec.select(&ctx, mint, maxt).await?;
                while let Some(series) = input.next().await {
                    // Yield to the runtime now and then, so that timeouts
                    // fire and other queries progress.
                    tokio::task::consume_budget().await;
                    let mut series = series?;
                    ctx.budget.charge(series.samples.len())?;
                    // Range selectors skip staleness markers.
                    series.samples.retain(|s| !is_stale_nan(s.v));
                    yield series;
                }
            }),
            RangeSource::Subquery(sq) => {
                let (start, num_steps) = sq.inner_steps(&ctx, self.range_ms);
                let (inner, step_ms) = (sq.inner.clone(), sq.step_ms);
                Box::pin(async_stream::try_stream! {
                    if num_steps == 0 {
                        return;
                    }
                    // Every step can hold a sample: refuse before allocating
                    // per-step state for more steps than a query may hold.
                    if num_steps > ctx.budget.max() {
                        Err(QueryError::Execution(TOO_MANY_SAMPLES.to_owned()))?;
                    }
                    let child = ctx.child(start, step_ms, num_steps);
                    let mut input = inner.execute(child.clone());
                    if inner.unique_labels() {
                        // One series at a time: nothing to merge.
                        while let Some(series) = input.next().await {
                            let series = series?;
                            ctx.budget.charge(series.points.len())?;
                            yield as_samples(&child, series);
                        }
                        return;
                    }
                    // Series that took turns (after their names were
                    // dropped) are one series of the subquery's result.
                    let mut index: HashMap<Labels, usize> = HashMap::new();
                    let mut out: Vec<Series> = Vec::new();
                    while let Some(series) = input.next().await {
                        let series = series?;
                        ctx.budget.charge(series.points.len())?;
                        let Series { labels, samples } = as_samples(&child, series);
                        match index.get(&labels) {
                            Some(&i) => {
                                let prev = std::mem::take(&mut out[i].samples);
                                out[i].samples = merge_samples(prev, samples);
                            }
                            None => {
                                index.insert(labels.clone(), out.len());
                                out.push(Series { labels, samples });
                            }
                        }
                    }
                    drop(index);
                    for s in out {
                        yield s;
                    }
                })
            }
        }
    }
}

/// An evaluated series as samples at the steps of `ctx`.
fn as_samples(ctx: &EvalContext, series: super::value::EvalSeries) -> Series {
    let samples = series
        .points
        .iter()
        .map(|p| Sample {
            t: ctx.step_time(p.step),
            v: p.v,
        })
        .collect();
    Series {
        labels: series.labels,
        samples,
    }
}

/// Applies `f(step, window, range_start, range_end)` at every step of
/// `ctx` to the window `(range_start, range_end]` of `samples` (sorted by
/// time), when that window is not empty.
pub(crate) fn windows<T>(
    samples: &[Sample],
    ctx: &EvalContext,
    timing: &Timing,
    range_ms: i64,
    mut f: impl FnMut(usize, &[Sample], i64, i64) -> Option<T>,
) -> Vec<(usize, T)> {
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0, 0);
    for step in 0..ctx.num_steps {
        let range_end = timing.ref_time(ctx, step);
        let range_start = range_end.saturating_sub(range_ms);
        if timing.at_ms.is_some() {
            // Every step looks at the same window.
            lo = samples.partition_point(|s| s.t <= range_start);
            hi = samples.partition_point(|s| s.t <= range_end);
        } else {
            while hi < samples.len() && samples[hi].t <= range_end {
                hi += 1;
            }
            while lo < hi && samples[lo].t <= range_start {
                lo += 1;
            }
        }
        if lo >= hi {
            continue;
        }
        if let Some(v) = f(step, &samples[lo..hi], range_start, range_end) {
            out.push((step, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_steps_align_to_the_subquery_step() {
        let ctx = EvalContext::for_test(10 * 60_000, 60_000, 1, 300_000);
        let sq = Subquery {
            inner: Arc::new(crate::engine::arithmetic::VectorNegateOp(Arc::new(
                crate::engine::selector::InstantSelectorOp::new(SelectorSpec {
                    matchers: Vec::new(),
                    timing: Timing::default(),
                    name_pinned: false,
                }),
            ))),
            step_ms: 60_000,
            timing: Timing::default(),
        };
        // (10m - 5m, 10m] at 1m: 6m, 7m, 8m, 9m, 10m.
        assert_eq!(sq.inner_steps(&ctx, 300_000), (360_000, 5));
        // Negative times truncate toward zero, as Go does.
        let ctx = EvalContext::for_test(-90_000, 60_000, 1, 300_000);
        assert_eq!(sq.inner_steps(&ctx, 60_000), (-120_000, 1));
    }
}
