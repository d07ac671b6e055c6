//! Checks that dropping metric names did not make output series collide,
//! failing the query as Prometheus does ("vector cannot contain metrics
//! with the same labelset").
//!
//! Only planned above operators whose input may hold series that differ by
//! name alone (a selector that does not fix the metric name), so that the
//! common case keeps no per-series state.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;

use super::context::EvalContext;
use super::error::{QueryError, DUPLICATE_LABELSET};
use super::operator::{EvalStream, VectorOperator};
use super::value::StepValue;

/// When two series with equal labels are an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DuplicatePolicy {
    /// Always (range-vector functions: Prometheus checks the whole matrix).
    Reject,
    /// Only when both have a value at the same step (per-step operators:
    /// series that take turns become one output series).
    RejectOverlap,
}

/// Passes its input through, failing on colliding label sets.
#[derive(Debug)]
pub(crate) struct DuplicateCheckOp {
    input: Arc<dyn VectorOperator>,
    policy: DuplicatePolicy,
}

impl DuplicateCheckOp {
    pub fn new(input: Arc<dyn VectorOperator>, policy: DuplicatePolicy) -> Self {
        DuplicateCheckOp { input, policy }
    }
}

impl VectorOperator for DuplicateCheckOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let policy = self.policy;
        let mut input = self.input.execute(ctx);
        Box::pin(async_stream::try_stream! {
            let mut seen: HashSet<u64> = HashSet::new();
            let mut occupied: HashMap<u64, Vec<(usize, usize)>> = HashMap::new();
            while let Some(series) = input.next().await {
                let series = series?;
                let hash = series.labels.hash64();
                match policy {
                    DuplicatePolicy::Reject => {
                        if !seen.insert(hash) {
                            Err::<(), _>(QueryError::Execution(DUPLICATE_LABELSET.to_owned()))?;
                        }
                    }
                    DuplicatePolicy::RejectOverlap => {
                        let runs = step_runs(&series.points);
                        let existing = occupied.entry(hash).or_default();
                        if overlaps(existing, &runs) {
                            Err::<(), _>(QueryError::Execution(DUPLICATE_LABELSET.to_owned()))?;
                        }
                        existing.extend(runs);
                        existing.sort_unstable();
                    }
                }
                yield series;
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        self.input.may_collide_without_name()
    }

    fn unique_labels(&self) -> bool {
        // Equal labels fail the query under `Reject`.
        self.policy == DuplicatePolicy::Reject || self.input.unique_labels()
    }
}

/// The steps of `points` (by step) as inclusive runs of consecutive steps.
fn step_runs(points: &[StepValue]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for p in points {
        match runs.last_mut() {
            Some(last) if last.1 + 1 == p.step => last.1 = p.step,
            _ => runs.push((p.step, p.step)),
        }
    }
    runs
}

/// Whether any run of `a` intersects any run of `b` (both sorted).
fn overlaps(a: &[(usize, usize)], b: &[(usize, usize)]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].1 < b[j].0 {
            i += 1;
        } else if b[j].1 < a[i].0 {
            j += 1;
        } else {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(steps: &[usize]) -> Vec<StepValue> {
        steps
            .iter()
            .map(|&step| StepValue { step, v: 0.0 })
            .collect()
    }

    #[test]
    fn runs_and_overlaps() {
        assert_eq!(
            step_runs(&pts(&[0, 1, 2, 5, 7, 8])),
            vec![(0, 2), (5, 5), (7, 8)]
        );
        let a = step_runs(&pts(&[0, 1, 2, 5]));
        assert!(!overlaps(&a, &step_runs(&pts(&[3, 4, 6]))));
        assert!(overlaps(&a, &step_runs(&pts(&[4, 5]))));
        assert!(overlaps(&a, &step_runs(&pts(&[1]))));
    }
}
