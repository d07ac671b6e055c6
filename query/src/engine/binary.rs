//! Binary operations between two instant vectors: arithmetic and
//! comparisons with one-to-one matching (`on` / `ignoring`) or many-to-one
//! matching (`group_left` / `group_right`), and the set operators `and`,
//! `or` and `unless`.
//!
//! One side is buffered: the "one" side's values for one-to-one and
//! many-to-one matching (the side Prometheus hashes too; the right-hand
//! side unless `group_right`), the right-hand side's
//! signatures for `and` / `unless`, and the left-hand side's signatures for
//! `or`. The other side streams through one series at a time.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use futures::StreamExt;
use tidemark_storage::Labels;

use super::arithmetic::ArithOp;
use super::comparison::CmpOp;
use super::context::EvalContext;
use super::error::QueryError;
use super::operator::{EvalStream, VectorOperator};
use super::value::{EvalSeries, StepValue};

/// `on (...)` or `ignoring (...)`; no modifier is `ignoring ()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Matching {
    pub on: bool,
    pub labels: Vec<String>,
}

impl Matching {
    /// The labels two series are matched by: the `on` labels, or all but
    /// the ignored ones and the metric name.
    fn signature(&self, labels: &Labels) -> Labels {
        if self.on {
            labels.keep(&self.labels)
        } else {
            labels.drop_names(&self.labels)
        }
    }
}

/// A set of evaluation steps.
#[derive(Debug, Clone)]
struct StepSet(Vec<u64>);

impl StepSet {
    fn new(num_steps: usize) -> Self {
        StepSet(vec![0; num_steps.div_ceil(64)])
    }

    fn contains(&self, step: usize) -> bool {
        self.0
            .get(step / 64)
            .is_some_and(|w| w & (1 << (step % 64)) != 0)
    }

    /// Adds `step`; false if it was present already.
    fn insert(&mut self, step: usize) -> bool {
        match self.0.get_mut(step / 64) {
            Some(w) => {
                let bit = 1 << (step % 64);
                let new = *w & bit == 0;
                *w |= bit;
                new
            }
            None => true,
        }
    }
}

/// Labels as Prometheus prints them in errors: `{__name__="m", a="b"}`.
fn prom_string(labels: &Labels) -> String {
    let mut out = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let legacy = !l.name.is_empty()
            && !l.name.starts_with(|c: char| c.is_ascii_digit())
            && l.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if legacy {
            out.push_str(&l.name);
        } else {
            let _ = write!(out, "{:?}", l.name);
        }
        let _ = write!(out, "={:?}", l.value);
    }
    out.push('}');
    out
}

/// What a one-to-one vector operation computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VectorOpKind {
    Arith(ArithOp),
    /// A comparison; `true` with the `bool` modifier.
    Compare(CmpOp, bool),
}

/// `group_left (...)` / `group_right (...)`: many-to-one matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupModifier {
    /// `group_right`: the left-hand side is the "one" side.
    pub right: bool,
    /// Labels copied from the "one" side.
    pub include: Vec<String>,
}

/// `lhs op on/ignoring(...) rhs` with one-to-one or, with a group
/// modifier, many-to-one matching.
#[derive(Debug)]
pub(crate) struct VectorBinaryOp {
    pub kind: VectorOpKind,
    pub matching: Arc<Matching>,
    pub group: Option<Arc<GroupModifier>>,
    pub lhs: Arc<dyn VectorOperator>,
    pub rhs: Arc<dyn VectorOperator>,
}

impl VectorBinaryOp {
    /// The labels of a result: the left-hand side's, without the metric
    /// name for arithmetic and `bool`, reduced to the `on` labels or
    /// without the ignored ones.
    fn result_labels(kind: VectorOpKind, matching: &Matching, lhs: &Labels) -> Labels {
        let drop_name = !matches!(kind, VectorOpKind::Compare(_, false));
        let base = if drop_name {
            lhs.without_metric_name()
        } else {
            lhs.clone()
        };
        if matching.on {
            base.keep(&matching.labels)
        } else {
            Labels::from_sorted(
                base.iter()
                    .filter(|l| !matching.labels.contains(&l.name))
                    .cloned()
                    .collect(),
            )
        }
    }

    /// The labels of a many-to-one result: the "many" side's, without the
    /// metric name for arithmetic and `bool`, with the included labels of
    /// the "one" side (removed where it lacks them).
    fn grouped_labels(
        kind: VectorOpKind,
        group: &GroupModifier,
        many: &Labels,
        one: &Labels,
    ) -> Labels {
        let drop_name = !matches!(kind, VectorOpKind::Compare(_, false));
        let mut out: Vec<tidemark_storage::Label> = many
            .iter()
            .filter(|l| !(group.include.contains(&l.name) || drop_name && l.name == "__name__"))
            .cloned()
            .collect();
        for name in &group.include {
            if let Some(v) = one.get(name) {
                out.push(tidemark_storage::Label::new(name.clone(), v));
            }
        }
        Labels::new(out)
    }
}

impl VectorOperator for VectorBinaryOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let (kind, matching, group) = (self.kind, self.matching.clone(), self.group.clone());
        // The "one" side is buffered, the other streams through.
        let one_on_left = group.as_ref().is_some_and(|g| g.right);
        let (one, many) = if one_on_left {
            (self.lhs.clone(), self.rhs.clone())
        } else {
            (self.rhs.clone(), self.lhs.clone())
        };
        let one_side = if one_on_left { "left" } else { "right" };
        let mut rhs = one.execute(ctx.clone());
        let lhs = many;
        Box::pin(async_stream::try_stream! {
            // The "one" side by signature: (step, value, series) sorted by
            // step.
            let mut table: HashMap<Labels, Vec<(usize, f64, usize)>> = HashMap::new();
            let mut rhs_labels: Vec<Labels> = Vec::new();
            while let Some(series) = rhs.next().await {
                tokio::task::consume_budget().await;
                let series = series?;
                ctx.budget.charge(series.points.len())?;
                let idx = rhs_labels.len();
                let entries = table.entry(matching.signature(&series.labels)).or_default();
                entries.extend(series.points.iter().map(|p| (p.step, p.v, idx)));
                rhs_labels.push(series.labels);
            }
            // Steps at which the "one" side has two series of one
            // signature: an error wherever the other side has a value.
            let mut duplicates: HashMap<usize, String> = HashMap::new();
            for (sig, entries) in table.iter_mut() {
                entries.sort_by_key(|e| e.0);
                for pair in entries.windows(2) {
                    if pair[0].0 != pair[1].0 || duplicates.contains_key(&pair[0].0) {
                        continue;
                    }
                    let mut names = [prom_string(&rhs_labels[pair[0].2]), prom_string(&rhs_labels[pair[1].2])];
                    names.sort();
                    duplicates.insert(pair[0].0, format!(
                        "found duplicate series for the match group {} on the {one_side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        prom_string(sig), names[0], names[1]
                    ));
                }
            }
            let mut matched: HashMap<Labels, StepSet> = HashMap::new();
            // Many-to-one: (signature, result labels) already produced.
            let mut grouped_matched: HashMap<(Labels, Labels), StepSet> = HashMap::new();
            let mut lhs = lhs.execute(ctx.clone());
            while let Some(series) = lhs.next().await {
                tokio::task::consume_budget().await;
                let mut series = series?;
                if let Some(msg) = series.points.iter().find_map(|p| duplicates.get(&p.step)) {
                    Err::<(), _>(QueryError::Execution(msg.clone()))?;
                }
                let sig = matching.signature(&series.labels);
                let Some(entries) = table.get(&sig) else {
                    continue;
                };
                let apply = |many_v: f64, one_v: f64| -> Option<f64> {
                    let (l, r) = if one_on_left { (one_v, many_v) } else { (many_v, one_v) };
                    match kind {
                        VectorOpKind::Arith(op) => Some(op.apply(l, r)),
                        VectorOpKind::Compare(op, true) => Some(if op.holds(l, r) { 1.0 } else { 0.0 }),
                        VectorOpKind::Compare(op, false) => op.holds(l, r).then_some(l),
                    }
                };
                if let Some(group) = &group {
                    // Many-to-one: results may differ in labels by step (the
                    // matching "one" series may change). The steps and
                    // values are sorted by the "one" series they match
                    // first, so that labels are built and checked once per
                    // "one" series, not per step.
                    let mut by_one: Vec<(usize, Vec<usize>, Vec<StepValue>)> = Vec::new();
                    for p in &series.points {
                        let Ok(i) = entries.binary_search_by_key(&p.step, |e| e.0) else {
                            continue;
                        };
                        let (_, one_v, one_idx) = entries[i];
                        let k = match by_one.iter().position(|b| b.0 == one_idx) {
                            Some(k) => k,
                            None => {
                                by_one.push((one_idx, Vec::new(), Vec::new()));
                                by_one.len() - 1
                            }
                        };
                        let slot = &mut by_one[k];
                        slot.1.push(p.step);
                        if let Some(v) = apply(p.v, one_v) {
                            slot.2.push(StepValue { step: p.step, v });
                        }
                    }
                    let mut outputs: Vec<(Labels, Vec<StepValue>)> = Vec::new();
                    for (one_idx, steps, points) in by_one {
                        let labels = Self::grouped_labels(kind, group, &series.labels, &rhs_labels[one_idx]);
                        let seen = grouped_matched
                            .entry((sig.clone(), labels.clone()))
                            .or_insert_with(|| StepSet::new(ctx.num_steps));
                        for step in steps {
                            if !seen.insert(step) {
                                Err::<(), _>(QueryError::Execution(
                                    "multiple matches for labels: grouping labels must ensure unique matches".to_owned(),
                                ))?;
                            }
                        }
                        if points.is_empty() {
                            continue;
                        }
                        match outputs.iter_mut().find(|o| o.0 == labels) {
                            // Two "one" series giving the same labels: one
                            // output, its points in step order.
                            Some(o) => {
                                o.1.extend(points);
                                o.1.sort_by_key(|p| p.step);
                            }
                            None => outputs.push((labels, points)),
                        }
                    }
                    for (labels, points) in outputs {
                        yield EvalSeries { labels, points };
                    }
                    continue;
                }
                let seen = matched.entry(sig).or_insert_with(|| StepSet::new(ctx.num_steps));
                let mut multiple = false;
                series.points.retain_mut(|p| {
                    let Ok(i) = entries.binary_search_by_key(&p.step, |e| e.0) else {
                        return false;
                    };
                    if !seen.insert(p.step) {
                        multiple = true;
                    }
                    match apply(p.v, entries[i].1) {
                        Some(v) => {
                            p.v = v;
                            true
                        }
                        None => false,
                    }
                });
                if multiple {
                    Err::<(), _>(QueryError::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".to_owned(),
                    ))?;
                }
                if !series.points.is_empty() {
                    let labels = Self::result_labels(kind, &matching, &series.labels);
                    yield EvalSeries { labels, points: series.points };
                }
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        // Only filtering comparisons keep names (and are checked for
        // duplicates when planned).
        matches!(self.kind, VectorOpKind::Compare(_, false))
    }
}

/// A set operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetOp {
    And,
    Or,
    Unless,
}

/// `lhs and/or/unless on/ignoring(...) rhs`: series keep their labels and
/// values.
#[derive(Debug)]
pub(crate) struct SetBinaryOp {
    pub op: SetOp,
    pub matching: Arc<Matching>,
    pub lhs: Arc<dyn VectorOperator>,
    pub rhs: Arc<dyn VectorOperator>,
}

/// Reads a side's signatures: the steps at which each has a value.
async fn signature_steps(
    input: &mut EvalStream,
    matching: &Matching,
    ctx: &EvalContext,
) -> Result<HashMap<Labels, StepSet>, QueryError> {
    let mut present: HashMap<Labels, StepSet> = HashMap::new();
    while let Some(series) = input.next().await {
        tokio::task::consume_budget().await;
        let series = series?;
        let steps = present
            .entry(matching.signature(&series.labels))
            .or_insert_with(|| StepSet::new(ctx.num_steps));
        for p in &series.points {
            steps.insert(p.step);
        }
    }
    Ok(present)
}

impl VectorOperator for SetBinaryOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let (op, matching) = (self.op, self.matching.clone());
        let (lhs, rhs) = (self.lhs.clone(), self.rhs.clone());
        Box::pin(async_stream::try_stream! {
            match op {
                SetOp::And | SetOp::Unless => {
                    let mut right = rhs.execute(ctx.clone());
                    let present = signature_steps(&mut right, &matching, &ctx).await?;
                    ctx.budget.charge(present.len())?;
                    let mut left = lhs.execute(ctx.clone());
                    while let Some(series) = left.next().await {
                        tokio::task::consume_budget().await;
                        let mut series = series?;
                        let steps = present.get(&matching.signature(&series.labels));
                        series.points.retain(|p| {
                            let in_rhs = steps.is_some_and(|s| s.contains(p.step));
                            in_rhs == (op == SetOp::And)
                        });
                        if !series.points.is_empty() {
                            yield series;
                        }
                    }
                }
                SetOp::Or => {
                    let mut present: HashMap<Labels, StepSet> = HashMap::new();
                    let mut left = lhs.execute(ctx.clone());
                    while let Some(series) = left.next().await {
                        tokio::task::consume_budget().await;
                        let series = series?;
                        let sig = matching.signature(&series.labels);
                        if !present.contains_key(&sig) {
                            ctx.budget.charge(1)?;
                        }
                        let steps = present.entry(sig).or_insert_with(|| StepSet::new(ctx.num_steps));
                        for p in &series.points {
                            steps.insert(p.step);
                        }
                        yield series;
                    }
                    let mut right = rhs.execute(ctx.clone());
                    while let Some(series) = right.next().await {
                        tokio::task::consume_budget().await;
                        let mut series = series?;
                        if let Some(steps) = present.get(&matching.signature(&series.labels)) {
                            series.points.retain(|p| !steps.contains(p.step));
                        }
                        if !series.points.is_empty() {
                            yield series;
                        }
                    }
                }
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        match self.op {
            SetOp::And | SetOp::Unless => self.lhs.may_collide_without_name(),
            SetOp::Or => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_sets() {
        let mut s = StepSet::new(130);
        assert!(s.insert(0));
        assert!(s.insert(129));
        assert!(!s.insert(129));
        assert!(s.contains(0) && s.contains(129) && !s.contains(64));
    }

    #[test]
    fn signatures_and_prometheus_strings() {
        let l = Labels::from_pairs([("__name__", "m"), ("a", "1"), ("b", "2")]);
        let on = Matching {
            on: true,
            labels: vec!["a".into()],
        };
        assert_eq!(on.signature(&l), Labels::from_pairs([("a", "1")]));
        let ignoring = Matching {
            on: false,
            labels: vec!["a".into()],
        };
        assert_eq!(ignoring.signature(&l), Labels::from_pairs([("b", "2")]));
        assert_eq!(prom_string(&l), r#"{__name__="m", a="1", b="2"}"#);
    }
}
