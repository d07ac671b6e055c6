//! Aggregation operators: `sum`, `avg`, `min`, `max`, `count`, `group`,
//! `stddev` and `stdvar`, with
//! `by` / `without` grouping.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use tidemark_storage::Labels;

use super::context::EvalContext;
use super::kahan::kahan_inc;
use super::operator::{EvalStream, VectorOperator};
use super::value::{EvalSeries, StepValue};

/// A supported aggregation operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggregateFn {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
}

impl AggregateFn {
    /// The operator of a PromQL keyword, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sum" => Some(AggregateFn::Sum),
            "avg" => Some(AggregateFn::Avg),
            "min" => Some(AggregateFn::Min),
            "max" => Some(AggregateFn::Max),
            "count" => Some(AggregateFn::Count),
            "group" => Some(AggregateFn::Group),
            "stddev" => Some(AggregateFn::Stddev),
            "stdvar" => Some(AggregateFn::Stdvar),
            _ => None,
        }
    }
}

/// How input series are grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Grouping {
    /// `by (...)`: only these labels (none: one group).
    By(Vec<String>),
    /// `without (...)`: all but these labels and the metric name.
    Without(Vec<String>),
}

impl Grouping {
    pub(crate) fn group_labels(&self, labels: &Labels) -> Labels {
        match self {
            Grouping::By(names) if names.is_empty() => Labels::default(),
            Grouping::By(names) => labels.keep(names),
            Grouping::Without(names) => labels.drop_names(names),
        }
    }
}

/// The running aggregate of one group at one step.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    /// Sum, mean (incremental `avg`), minimum or maximum.
    value: f64,
    /// Kahan compensation of `value` (`sum`, `avg`).
    comp: f64,
    /// Running mean (`stddev`, `stdvar`, whose `value` is the sum of
    /// squared deviations).
    mean: f64,
    /// Number of values aggregated.
    count: f64,
    seen: bool,
    /// `avg` switched from summing to an incremental mean on overflow.
    incremental: bool,
}

impl Cell {
    fn add(&mut self, func: AggregateFn, f: f64) {
        if !self.seen {
            let value = match func {
                AggregateFn::Group => 1.0,
                AggregateFn::Stddev | AggregateFn::Stdvar if f.is_finite() => 0.0,
                AggregateFn::Stddev | AggregateFn::Stdvar => f64::NAN,
                _ => f,
            };
            *self = Cell {
                value,
                comp: 0.0,
                mean: f,
                count: 1.0,
                seen: true,
                incremental: false,
            };
            return;
        }
        match func {
            AggregateFn::Sum => (self.value, self.comp) = kahan_inc(f, self.value, self.comp),
            AggregateFn::Avg => {
                self.count += 1.0;
                if !self.incremental {
                    let (sum, comp) = kahan_inc(f, self.value, self.comp);
                    if !sum.is_infinite() {
                        (self.value, self.comp) = (sum, comp);
                        return;
                    }
                    // The sum would overflow: continue with an incremental mean.
                    self.incremental = true;
                    self.value /= self.count - 1.0;
                    self.comp /= self.count - 1.0;
                }
                let q = (self.count - 1.0) / self.count;
                (self.value, self.comp) = kahan_inc(f / self.count, q * self.value, q * self.comp);
            }
            AggregateFn::Max => {
                if self.value < f || self.value.is_nan() {
                    self.value = f;
                }
            }
            AggregateFn::Min => {
                if self.value > f || self.value.is_nan() {
                    self.value = f;
                }
            }
            AggregateFn::Count => self.count += 1.0,
            AggregateFn::Group => {}
            AggregateFn::Stddev | AggregateFn::Stdvar => {
                self.count += 1.0;
                let delta = f - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (f - self.mean);
            }
        }
    }

    fn result(&self, func: AggregateFn) -> f64 {
        match func {
            AggregateFn::Sum => self.value + self.comp,
            AggregateFn::Avg if self.incremental => self.value + self.comp,
            AggregateFn::Avg => self.value / self.count + self.comp / self.count,
            AggregateFn::Min | AggregateFn::Max => self.value,
            AggregateFn::Count => self.count,
            AggregateFn::Group => 1.0,
            AggregateFn::Stdvar => self.value / self.count,
            AggregateFn::Stddev => (self.value / self.count).sqrt(),
        }
    }
}

/// Aggregates its input into groups. Holds one input series at a time plus
/// one cell per group and step; emits the groups, sorted by labels, once
/// the input is exhausted. Output series have no metric name unless
/// grouped `by (__name__)`.
#[derive(Debug)]
pub(crate) struct AggregateOp {
    func: AggregateFn,
    grouping: Arc<Grouping>,
    input: Arc<dyn VectorOperator>,
}

impl AggregateOp {
    pub fn new(func: AggregateFn, grouping: Grouping, input: Arc<dyn VectorOperator>) -> Self {
        AggregateOp {
            func,
            grouping: Arc::new(grouping),
            input,
        }
    }
}

impl VectorOperator for AggregateOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let func = self.func;
        let grouping = self.grouping.clone();
        let mut input = self.input.execute(ctx.clone());
        Box::pin(async_stream::try_stream! {
            let mut index: HashMap<Labels, usize> = HashMap::new();
            let mut groups: Vec<(Labels, Vec<Cell>)> = Vec::new();
            while let Some(series) = input.next().await {
                // Yield to the runtime now and then, so that timeouts fire
                // and other queries progress during long in-memory scans.
                tokio::task::consume_budget().await;
                let series = series?;
                let key = grouping.group_labels(&series.labels);
                let slot = match index.get(&key) {
                    Some(&i) => i,
                    None => {
                        ctx.budget.charge(ctx.num_steps)?;
                        groups.push((key.clone(), vec![Cell::default(); ctx.num_steps]));
                        index.insert(key, groups.len() - 1);
                        groups.len() - 1
                    }
                };
                let cells = &mut groups[slot].1;
                for p in &series.points {
                    if let Some(cell) = cells.get_mut(p.step) {
                        cell.add(func, p.v);
                    }
                }
            }
            drop(index);
            groups.sort_by(|a, b| a.0.cmp(&b.0));
            for (labels, cells) in groups {
                let points: Vec<StepValue> = cells
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.seen)
                    .map(|(step, c)| StepValue { step, v: c.result(func) })
                    .collect();
                if !points.is_empty() {
                    yield EvalSeries { labels, points };
                }
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        // Only `by (__name__)` keeps names; groups are distinct by them.
        matches!(&*self.grouping, Grouping::By(names) if names.iter().any(|n| n == "__name__"))
    }

    fn unique_labels(&self) -> bool {
        // One output series per group.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(func: AggregateFn, values: &[f64]) -> f64 {
        let mut c = Cell::default();
        for &v in values {
            c.add(func, v);
        }
        c.result(func)
    }

    #[test]
    fn cells_aggregate_like_prometheus() {
        let v = [1.0, 5.0, 3.0];
        assert_eq!(agg(AggregateFn::Sum, &v), 9.0);
        assert_eq!(agg(AggregateFn::Avg, &v), 3.0);
        assert_eq!(agg(AggregateFn::Min, &v), 1.0);
        assert_eq!(agg(AggregateFn::Max, &v), 5.0);
        assert_eq!(agg(AggregateFn::Count, &v), 3.0);
        assert_eq!(agg(AggregateFn::Group, &v), 1.0);
        let var = ((1.0f64 - 3.0).powi(2) + 2.0f64.powi(2) + 0.0) / 3.0;
        assert!((agg(AggregateFn::Stdvar, &v) - var).abs() < 1e-12);
        assert!((agg(AggregateFn::Stddev, &v) - var.sqrt()).abs() < 1e-12);
        assert_eq!(agg(AggregateFn::Stdvar, &[7.0]), 0.0);
        assert!(agg(AggregateFn::Stddev, &[f64::INFINITY]).is_nan());
    }

    #[test]
    fn nan_is_replaced_by_min_and_max() {
        assert_eq!(agg(AggregateFn::Max, &[f64::NAN, 2.0]), 2.0);
        assert_eq!(agg(AggregateFn::Min, &[2.0, f64::NAN]), 2.0);
        assert!(agg(AggregateFn::Max, &[f64::NAN, f64::NAN]).is_nan());
    }

    #[test]
    fn avg_survives_overflowing_sums() {
        let got = agg(AggregateFn::Avg, &[f64::MAX, f64::MAX, f64::MAX]);
        assert!(
            got.is_finite() && (got - f64::MAX).abs() / f64::MAX < 1e-15,
            "{got}"
        );
        let got = agg(AggregateFn::Sum, &[f64::MAX, f64::MAX]);
        assert_eq!(got, f64::INFINITY);
    }

    #[test]
    fn kahan_sum_is_exact_where_naive_is_not() {
        assert_eq!(agg(AggregateFn::Sum, &[1e100, 1.0, -1e100]), 1.0);
        assert_eq!(agg(AggregateFn::Avg, &[1e100, 1.0, -1e100]), 1.0 / 3.0);
    }
}
