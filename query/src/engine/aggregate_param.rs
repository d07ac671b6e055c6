//! Aggregations with a parameter: `topk` and `bottomk` (which keep the
//! selected input series), `quantile` and `count_values`.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use tidemark_storage::{Label, Labels};

use super::aggregate::Grouping;
use super::annotations::invalid_quantile;
use super::context::EvalContext;
use super::position::Pos;
use super::error::QueryError;
use super::operator::{EvalStream, ScalarOperator, VectorOperator};
use super::range_function::quantile;
use super::value::{EvalSeries, StepValue};

/// Which end of each group `topk` / `bottomk` keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KFn {
    Top,
    Bottom,
}

impl KFn {
    /// Prometheus' heap order: the element that is evicted first (the
    /// root) is the "least"; NaN is least of all, for both directions.
    fn less(self, a: f64, b: f64) -> bool {
        if a.is_nan() && !b.is_nan() {
            return true;
        }
        match self {
            KFn::Top => a < b,
            KFn::Bottom => a > b,
        }
    }
}

/// A binary heap with Go's `container/heap` algorithms, so that ties are
/// broken exactly as Prometheus breaks them.
struct GoHeap {
    func: KFn,
    items: Vec<(usize, f64)>,
}

impl GoHeap {
    fn less(&self, i: usize, j: usize) -> bool {
        self.func.less(self.items[i].1, self.items[j].1)
    }

    fn up(&mut self, mut j: usize) {
        while j > 0 {
            let i = (j - 1) / 2;
            if !self.less(j, i) {
                break;
            }
            self.items.swap(i, j);
            j = i;
        }
    }

    fn down(&mut self, i0: usize) -> bool {
        let n = self.items.len();
        let mut i = i0;
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let mut j = j1;
            let j2 = j1 + 1;
            if j2 < n && self.less(j2, j1) {
                j = j2;
            }
            if !self.less(j, i) {
                break;
            }
            self.items.swap(i, j);
            i = j;
        }
        i > i0
    }

    fn push(&mut self, item: (usize, f64)) {
        self.items.push(item);
        let last = self.items.len() - 1;
        self.up(last);
    }

    fn fix_root(&mut self) {
        if !self.down(0) {
            self.up(0);
        }
    }

    /// The items from "greatest" to "least" (Go's insertion sort, stable
    /// for the small heaps where ties are likely to matter).
    fn into_sorted(self) -> Vec<(usize, f64)> {
        let func = self.func;
        let mut items = self.items;
        for i in 1..items.len() {
            let mut j = i;
            while j > 0 && func.less(items[j - 1].1, items[j].1) {
                items.swap(j, j - 1);
                j -= 1;
            }
        }
        items
    }
}

/// Largest float below Go's `math.MaxInt64` as a float.
const MAX_INT64_F: f64 = 9_223_372_036_854_775_807.0;
/// Go's `math.MinInt64` as a float.
const MIN_INT64_F: f64 = -9_223_372_036_854_775_808.0;

/// Checks the `k` of `topk` / `bottomk` / `limitk` at every step as
/// Prometheus does: whether any step keeps a series at all.
fn check_k(ks: &[f64]) -> Result<bool, QueryError> {
    if ks.iter().any(|k| k.is_nan()) {
        return Err(QueryError::Execution("Parameter value is NaN".to_owned()));
    }
    let max = ks.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = ks.iter().copied().fold(f64::INFINITY, f64::min);
    if ks.is_empty() || max < 1.0 {
        return Ok(false);
    }
    if min <= MIN_INT64_F {
        return Err(QueryError::Execution(format!("Scalar value {min} underflows int64")));
    }
    if max >= MAX_INT64_F {
        return Err(QueryError::Execution(format!("Scalar value {max} overflows int64")));
    }
    Ok(true)
}

/// `topk` / `bottomk`: per step and group, the `k` largest (smallest)
/// values, each kept with its input series' labels. Holds the whole input.
#[derive(Debug)]
pub(crate) struct TopKOp {
    pub func: KFn,
    pub grouping: Arc<Grouping>,
    pub param: Arc<dyn ScalarOperator>,
    pub input: Arc<dyn VectorOperator>,
}

impl VectorOperator for TopKOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let func = self.func;
        let grouping = self.grouping.clone();
        let param = self.param.clone();
        let input = self.input.clone();
        Box::pin(async_stream::try_stream! {
            let ks = param.evaluate(ctx.clone()).await?;
            if !check_k(&ks)? {
                return;
            }
            let mut series: Vec<EvalSeries> = Vec::new();
            let mut group_of: Vec<usize> = Vec::new();
            let mut index: HashMap<Labels, usize> = HashMap::new();
            let mut stream = input.execute(ctx.clone());
            while let Some(s) = stream.next().await {
                tokio::task::consume_budget().await;
                let s = s?;
                ctx.budget.charge(s.points.len())?;
                let key = grouping.group_labels(&s.labels);
                let next = index.len();
                group_of.push(*index.entry(key).or_insert(next));
                series.push(s);
            }
            let num_groups = index.len();
            drop(index);
            let n = series.len();
            let mut cursors = vec![0usize; n];
            let mut selected: Vec<Vec<StepValue>> = vec![Vec::new(); n];
            // For a single step, the output order of Prometheus: groups in
            // order of appearance, each from greatest to least.
            let mut ordered: Vec<usize> = Vec::new();
            for (step, &kf) in ks.iter().enumerate() {
                // Go's int64(k), then min(k, number of input series).
                let k = (kf.trunc() as i64).min(n as i64);
                let mut heaps: Vec<Option<GoHeap>> = (0..num_groups).map(|_| None).collect();
                for si in 0..n {
                    let points = &series[si].points;
                    let c = &mut cursors[si];
                    while *c < points.len() && points[*c].step < step {
                        *c += 1;
                    }
                    let Some(p) = points.get(*c).filter(|p| p.step == step) else {
                        continue;
                    };
                    if k < 1 {
                        continue;
                    }
                    let heap = heaps[group_of[si]].get_or_insert_with(|| GoHeap {
                        func,
                        items: Vec::new(),
                    });
                    if (heap.items.len() as i64) < k {
                        heap.push((si, p.v));
                    } else if func.less(heap.items[0].1, p.v) {
                        heap.items[0] = (si, p.v);
                        if k > 1 {
                            heap.fix_root();
                        }
                    }
                }
                for heap in heaps.into_iter().flatten() {
                    for (si, v) in heap.into_sorted() {
                        selected[si].push(StepValue { step, v });
                        ordered.push(si);
                    }
                }
            }
            if ks.len() != 1 {
                ordered = (0..n).collect();
            }
            for si in ordered {
                let points = std::mem::take(&mut selected[si]);
                if !points.is_empty() {
                    yield EvalSeries { labels: series[si].labels.clone(), points };
                }
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        self.input.may_collide_without_name()
    }

    fn ordered(&self) -> bool {
        true
    }
}

/// `quantile(q, v)`: per step and group, the `q`-quantile of the values.
#[derive(Debug)]
pub(crate) struct QuantileOp {
    pub grouping: Arc<Grouping>,
    pub param: Arc<dyn ScalarOperator>,
    pub input: Arc<dyn VectorOperator>,
    /// Where the parameter starts in the query, for annotations.
    pub param_pos: Option<Pos>,
}

impl VectorOperator for QuantileOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let grouping = self.grouping.clone();
        let param = self.param.clone();
        let input = self.input.clone();
        let param_pos = self.param_pos;
        Box::pin(async_stream::try_stream! {
            let qs = param.evaluate(ctx.clone()).await?;
            // As Prometheus: NaN, then the largest above 1, then the
            // smallest below 0.
            if qs.iter().any(|q| q.is_nan()) {
                ctx.annotations.warn(invalid_quantile(f64::NAN), param_pos);
            }
            let max = qs.iter().copied().filter(|q| !q.is_nan()).fold(f64::NEG_INFINITY, f64::max);
            if max > 1.0 {
                ctx.annotations.warn(invalid_quantile(max), param_pos);
            }
            let min = qs.iter().copied().filter(|q| !q.is_nan()).fold(f64::INFINITY, f64::min);
            if min < 0.0 {
                ctx.annotations.warn(invalid_quantile(min), param_pos);
            }
            let mut index: HashMap<Labels, usize> = HashMap::new();
            let mut groups: Vec<(Labels, Vec<Vec<f64>>)> = Vec::new();
            let mut stream = input.execute(ctx.clone());
            while let Some(s) = stream.next().await {
                tokio::task::consume_budget().await;
                let s = s?;
                ctx.budget.charge(s.points.len())?;
                let key = grouping.group_labels(&s.labels);
                let slot = match index.get(&key) {
                    Some(&i) => i,
                    None => {
                        groups.push((key.clone(), vec![Vec::new(); ctx.num_steps]));
                        index.insert(key, groups.len() - 1);
                        groups.len() - 1
                    }
                };
                let values = &mut groups[slot].1;
                for p in &s.points {
                    if let Some(v) = values.get_mut(p.step) {
                        v.push(p.v);
                    }
                }
            }
            drop(index);
            groups.sort_by(|a, b| a.0.cmp(&b.0));
            for (labels, mut values) in groups {
                let points: Vec<StepValue> = values
                    .iter_mut()
                    .enumerate()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(step, v)| StepValue {
                        step,
                        v: quantile(qs.get(step).copied().unwrap_or(f64::NAN), v),
                    })
                    .collect();
                if !points.is_empty() {
                    yield EvalSeries { labels, points };
                }
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        matches!(&*self.grouping, Grouping::By(names) if names.iter().any(|n| n == "__name__"))
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`.
pub(crate) fn format_go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f == f64::INFINITY {
        "+Inf".to_owned()
    } else if f == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{f}")
    }
}

/// Sets (or, with an empty value, removes) one label.
pub(crate) fn with_label(labels: &Labels, name: &str, value: String) -> Labels {
    let mut v: Vec<Label> = labels.iter().filter(|l| l.name != name).cloned().collect();
    v.push(Label::new(name, value));
    Labels::new(v)
}

/// `count_values("label", v)`: per step, the number of series of each
/// group having each value, the value stored in `label`.
#[derive(Debug)]
pub(crate) struct CountValuesOp {
    /// Grouping, with the value label added to a `by` list.
    pub grouping: Arc<Grouping>,
    pub label: Arc<str>,
    pub input: Arc<dyn VectorOperator>,
}

impl VectorOperator for CountValuesOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let grouping = self.grouping.clone();
        let label = self.label.clone();
        let mut stream = self.input.execute(ctx.clone());
        Box::pin(async_stream::try_stream! {
            let mut groups: HashMap<Labels, Vec<f64>> = HashMap::new();
            while let Some(s) = stream.next().await {
                tokio::task::consume_budget().await;
                let s = s?;
                for p in &s.points {
                    let metric = with_label(&s.labels, &label, format_go_float(p.v));
                    let key = grouping.group_labels(&metric);
                    let counts = match groups.get_mut(&key) {
                        Some(c) => c,
                        None => {
                            ctx.budget.charge(ctx.num_steps)?;
                            groups.entry(key).or_insert_with(|| vec![0.0; ctx.num_steps])
                        }
                    };
                    if let Some(c) = counts.get_mut(p.step) {
                        *c += 1.0;
                    }
                }
            }
            let mut groups: Vec<(Labels, Vec<f64>)> = groups.into_iter().collect();
            groups.sort_by(|a, b| a.0.cmp(&b.0));
            for (labels, counts) in groups {
                let points: Vec<StepValue> = counts
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| c > 0.0)
                    .map(|(step, &v)| StepValue { step, v })
                    .collect();
                if !points.is_empty() {
                    yield EvalSeries { labels, points };
                }
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        matches!(&*self.grouping, Grouping::By(names) if names.iter().any(|n| n == "__name__"))
            || &*self.label == "__name__"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top(func: KFn, k: usize, values: &[f64]) -> Vec<usize> {
        let mut heap = GoHeap {
            func,
            items: Vec::new(),
        };
        for (i, &v) in values.iter().enumerate() {
            if heap.items.len() < k {
                heap.push((i, v));
            } else if func.less(heap.items[0].1, v) {
                heap.items[0] = (i, v);
                heap.fix_root();
            }
        }
        heap.into_sorted().into_iter().map(|(i, _)| i).collect()
    }

    #[test]
    fn topk_and_bottomk_order_nan_last() {
        let v = [3.0, f64::NAN, 1.0, 5.0];
        assert_eq!(top(KFn::Top, 2, &v), vec![3, 0]);
        assert_eq!(top(KFn::Bottom, 2, &v), vec![2, 0]);
        assert_eq!(top(KFn::Top, 4, &v), vec![3, 0, 2, 1]);
        assert_eq!(top(KFn::Bottom, 4, &v), vec![2, 0, 3, 1]);
    }

    #[test]
    fn floats_format_like_go() {
        assert_eq!(format_go_float(1.0), "1");
        assert_eq!(format_go_float(0.1), "0.1");
        assert_eq!(format_go_float(1e21), "1000000000000000000000");
        assert_eq!(format_go_float(f64::NEG_INFINITY), "-Inf");
    }
}

/// `limitk` / `limit_ratio` (experimental in Prometheus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitFn {
    /// `limitk(k, v)`: per step and group, the first `k` series with a
    /// value.
    K,
    /// `limit_ratio(r, v)`: a deterministic sample of about `r` of the
    /// series (the complement for a negative `r`), chosen by label hash.
    Ratio,
}

/// `limitk` / `limit_ratio`: keeps input series as they are, point by
/// point, streaming (it holds one counter per group and step).
#[derive(Debug)]
pub(crate) struct LimitOp {
    pub func: LimitFn,
    pub grouping: Arc<Grouping>,
    pub param: Arc<dyn ScalarOperator>,
    pub input: Arc<dyn VectorOperator>,
    /// Where the parameter starts in the query, for annotations.
    pub param_pos: Option<Pos>,
}

/// Prometheus' `HashRatioSampler` offset: the labels' hash (xxHash64 of
/// `name 0xff value 0xff ...`) as a fraction of the largest `u64`.
fn ratio_offset(labels: &Labels) -> f64 {
    let mut buf = Vec::with_capacity(256);
    for l in labels.iter() {
        buf.extend_from_slice(l.name.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(l.value.as_bytes());
        buf.push(0xff);
    }
    xxhash_rust::xxh64::xxh64(&buf, 0) as f64 / u64::MAX as f64
}

/// Whether a series with sampling `offset` is within ratio `r` in [-1, 1].
fn ratio_keeps(r: f64, offset: f64) -> bool {
    (r >= 0.0 && offset < r) || (r < 0.0 && offset >= 1.0 + r)
}

impl VectorOperator for LimitOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let func = self.func;
        let grouping = self.grouping.clone();
        let param = self.param.clone();
        let input = self.input.clone();
        let param_pos = self.param_pos;
        Box::pin(async_stream::try_stream! {
            let ps = param.evaluate(ctx.clone()).await?;
            let max = ps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let min = ps.iter().copied().fold(f64::INFINITY, f64::min);
            match func {
                LimitFn::K => {
                    if !check_k(&ps)? {
                        return;
                    }
                }
                LimitFn::Ratio => {
                    if ps.iter().all(|r| *r == 0.0) {
                        return;
                    }
                    if ps.iter().any(|r| r.is_nan()) {
                        Err(QueryError::Execution("Ratio value is NaN".to_owned()))?;
                    }
                    if max > 1.0 {
                        ctx.annotations.warn(invalid_ratio(max, 1.0), param_pos);
                    }
                    if min < -1.0 {
                        ctx.annotations.warn(invalid_ratio(min, -1.0), param_pos);
                    }
                }
            }
            let mut counts: HashMap<Labels, Vec<i64>> = HashMap::new();
            let mut stream = input.execute(ctx.clone());
            while let Some(s) = stream.next().await {
                tokio::task::consume_budget().await;
                let s = s?;
                let points: Vec<StepValue> = match func {
                    LimitFn::K => {
                        let key = grouping.group_labels(&s.labels);
                        let taken = counts
                            .entry(key)
                            .or_insert_with(|| vec![0; ctx.num_steps]);
                        s.points
                            .iter()
                            .filter(|p| {
                                let k = ps.get(p.step).map_or(0, |k| k.trunc() as i64);
                                match taken.get_mut(p.step) {
                                    Some(n) if *n < k => {
                                        *n += 1;
                                        true
                                    }
                                    _ => false,
                                }
                            })
                            .copied()
                            .collect()
                    }
                    LimitFn::Ratio => {
                        let offset = ratio_offset(&s.labels);
                        s.points
                            .iter()
                            .filter(|p| {
                                let r = ps.get(p.step).copied().unwrap_or(0.0).clamp(-1.0, 1.0);
                                r != 0.0 && ratio_keeps(r, offset)
                            })
                            .copied()
                            .collect()
                    }
                };
                if !points.is_empty() {
                    yield EvalSeries { labels: s.labels, points };
                }
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        self.input.may_collide_without_name()
    }
}

/// The warning for a `limit_ratio` ratio outside [-1, 1].
fn invalid_ratio(r: f64, to: f64) -> String {
    format!(
        "ratio value should be between -1 and 1, got {}, capping to {}",
        super::annotations::fmt_g(r),
        super::annotations::fmt_g(to)
    )
}
