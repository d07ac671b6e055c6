//! Drains the root of an operator tree into a query result.

use std::sync::Arc;

use futures::StreamExt;
use tidemark_storage::queryable::merge_samples;
use tidemark_storage::{Labels, Sample};

use super::context::EvalContext;
use super::error::{QueryError, DUPLICATE_LABELSET};
use super::operator::Plan;
use super::plan::AnyPlan;
use super::value::{InstantSample, QueryValue, RangeSeries};

/// The result shape a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One step: a scalar or an instant vector.
    Instant,
    /// Many steps: a matrix.
    Range,
}

/// Evaluates `plan` and builds the result, sorted by labels.
pub(crate) async fn collect(
    plan: AnyPlan,
    ctx: Arc<EvalContext>,
    shape: Shape,
) -> Result<QueryValue, QueryError> {
    match plan {
        AnyPlan::Value(plan) => collect_value(plan, ctx, shape).await,
        AnyPlan::String(v) => Ok(QueryValue::String { t: ctx.start, v }),
        AnyPlan::Matrix(input) => {
            // Only instant queries get here: the samples of each series in
            // the window of the evaluation time, with their own timestamps.
            let timing = input.timing();
            let end = timing.ref_time(&ctx, 0);
            let start = end.saturating_sub(input.range_ms);
            let mut stream = input.series(ctx.clone());
            let mut out = Vec::new();
            while let Some(series) = stream.next().await {
                let series = series?;
                let points: Vec<Sample> = series
                    .samples
                    .into_iter()
                    .filter(|s| s.t > start && s.t <= end)
                    .collect();
                if !points.is_empty() {
                    out.push(RangeSeries {
                        labels: series.labels,
                        points,
                    });
                }
            }
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            Ok(QueryValue::Matrix(out))
        }
    }
}

async fn collect_value(
    plan: Plan,
    ctx: Arc<EvalContext>,
    shape: Shape,
) -> Result<QueryValue, QueryError> {
    match plan {
        Plan::Scalar(scalar) => {
            let values = scalar.evaluate(ctx.clone()).await?;
            match shape {
                Shape::Instant => Ok(QueryValue::Scalar {
                    t: ctx.start,
                    v: values.first().copied().unwrap_or(f64::NAN),
                }),
                Shape::Range => {
                    ctx.budget.charge(values.len())?;
                    let points = values
                        .iter()
                        .enumerate()
                        .map(|(step, &v)| Sample {
                            t: ctx.step_time(step),
                            v,
                        })
                        .collect();
                    Ok(QueryValue::Matrix(vec![RangeSeries {
                        labels: Labels::default(),
                        points,
                    }]))
                }
            }
        }
        Plan::Vector(op) => {
            let ordered = op.ordered();
            let mut stream = op.execute(ctx.clone());
            match shape {
                Shape::Instant => {
                    let mut out = Vec::new();
                    while let Some(series) = stream.next().await {
                        let series = series?;
                        ctx.budget.charge(series.points.len())?;
                        if let Some(p) = series.points.first() {
                            out.push(InstantSample {
                                labels: series.labels,
                                t: ctx.step_time(p.step),
                                v: p.v,
                            });
                        }
                    }
                    let mut sorted: Vec<&Labels> = out.iter().map(|s| &s.labels).collect();
                    sorted.sort();
                    if sorted.windows(2).any(|w| w[0] == w[1]) {
                        return Err(QueryError::Execution(DUPLICATE_LABELSET.to_owned()));
                    }
                    if !ordered {
                        out.sort_by(|a, b| a.labels.cmp(&b.labels));
                    }
                    Ok(QueryValue::Vector(out))
                }
                Shape::Range => {
                    let mut out: Vec<RangeSeries> = Vec::new();
                    while let Some(series) = stream.next().await {
                        let series = series?;
                        ctx.budget.charge(series.points.len())?;
                        let points = series
                            .points
                            .iter()
                            .map(|p| Sample {
                                t: ctx.step_time(p.step),
                                v: p.v,
                            })
                            .collect();
                        out.push(RangeSeries {
                            labels: series.labels,
                            points,
                        });
                    }
                    out.sort_by(|a, b| a.labels.cmp(&b.labels));
                    Ok(QueryValue::Matrix(merge_equal_labels(out)))
                }
            }
        }
    }
}

/// Joins adjacent series with equal labels (series that took turns after
/// their names were dropped; overlaps were rejected upstream).
fn merge_equal_labels(sorted: Vec<RangeSeries>) -> Vec<RangeSeries> {
    let mut out: Vec<RangeSeries> = Vec::with_capacity(sorted.len());
    for s in sorted {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => {
                last.points = merge_samples(std::mem::take(&mut last.points), s.points);
            }
            _ => out.push(s),
        }
    }
    out
}
