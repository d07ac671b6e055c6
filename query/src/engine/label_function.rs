//! Functions that rewrite labels or look at a vector as a whole:
//! `label_replace`, `label_join`, `sort`, `sort_desc`, `absent` and
//! `absent_over_time`.

use std::cmp::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use promql_parser::label::{MatchOp, Matcher};
use tidemark_storage::Labels;

use super::aggregate_param::with_label;
use super::context::EvalContext;
use super::error::QueryError;
use super::operator::{EvalStream, VectorOperator};
use super::value::{EvalSeries, StepValue};

/// Whether a label name is not valid UTF-8 as Prometheus reads the query:
/// promql-parser turns the byte escape `"\xff"` (invalid UTF-8 for Go)
/// into `"ÿ"`, so a character in U+0080..U+00FF that the query text holds
/// neither literally nor as a `\u` escape came from a byte escape.
pub(crate) fn invalid_utf8_name(name: &str, query: &str) -> bool {
    name.chars()
        .filter(|c| ('\u{80}'..='\u{ff}').contains(c))
        .any(|c| {
            let u = c as u32;
            !query.contains(c)
                && !query.contains(&format!("\\u{u:04x}"))
                && !query.contains(&format!("\\u{u:04X}"))
                && !query.contains(&format!("\\U{u:08x}"))
                && !query.contains(&format!("\\U{u:08X}"))
        })
}

/// How `label_replace` / `label_join` compute the new label's value.
#[derive(Debug)]
pub(crate) enum LabelRewrite {
    /// `label_replace(v, dst, replacement, src, regex)`; the matcher holds
    /// the fully anchored regex.
    Replace {
        replacement: String,
        src: String,
        regex: Matcher,
    },
    /// `label_join(v, dst, separator, src...)`.
    Join { separator: String, src: Vec<String> },
}

impl LabelRewrite {
    /// Builds a `label_replace`, validating as Prometheus does.
    pub fn replace(
        dst: &str,
        replacement: &str,
        src: &str,
        regex: &str,
        query: &str,
    ) -> Result<Self, QueryError> {
        let anchored = Matcher::new_matcher(
            promql_parser::parser::token::T_EQL_REGEX,
            String::new(),
            format!("(?s:{regex})"),
        )
        .ok()
        .filter(|m| matches!(m.op, MatchOp::Re(_)))
        .ok_or_else(|| {
            QueryError::Execution(format!(
                "invalid regular expression in label_replace(): {regex}"
            ))
        })?;
        if dst.is_empty() || invalid_utf8_name(dst, query) {
            return Err(QueryError::Execution(format!(
                "invalid destination label name in label_replace(): {dst}"
            )));
        }
        Ok(LabelRewrite::Replace {
            replacement: replacement.to_owned(),
            src: src.to_owned(),
            regex: anchored,
        })
    }

    /// Builds a `label_join`, validating as Prometheus does.
    pub fn join(
        dst: &str,
        separator: &str,
        src: Vec<String>,
        query: &str,
    ) -> Result<Self, QueryError> {
        if let Some(bad) = src
            .iter()
            .find(|s| s.is_empty() || invalid_utf8_name(s, query))
        {
            return Err(QueryError::Execution(format!(
                "invalid source label name in label_join(): {bad}"
            )));
        }
        if dst.is_empty() || invalid_utf8_name(dst, query) {
            return Err(QueryError::Execution(format!(
                "invalid destination label name in label_join(): {dst}"
            )));
        }
        Ok(LabelRewrite::Join {
            separator: separator.to_owned(),
            src,
        })
    }

    /// The new value of the destination label, if it changes.
    fn value(&self, labels: &Labels) -> Option<String> {
        match self {
            LabelRewrite::Replace {
                replacement,
                src,
                regex,
            } => {
                let MatchOp::Re(re) = &regex.op else {
                    return None;
                };
                let src_val = labels.get(src).unwrap_or("");
                let caps = re.captures(src_val)?;
                let mut out = String::new();
                caps.expand(replacement, &mut out);
                Some(out)
            }
            LabelRewrite::Join { separator, src } => Some(
                src.iter()
                    .map(|s| labels.get(s).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(separator),
            ),
        }
    }
}

/// `label_replace` / `label_join`: sets label `dst` of every series.
#[derive(Debug)]
pub(crate) struct LabelRewriteOp {
    pub dst: String,
    pub rewrite: Arc<LabelRewrite>,
    pub input: Arc<dyn VectorOperator>,
}

impl VectorOperator for LabelRewriteOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let dst = self.dst.clone();
        let rewrite = self.rewrite.clone();
        let mut input = self.input.execute(ctx);
        Box::pin(async_stream::try_stream! {
            while let Some(series) = input.next().await {
                let mut series = series?;
                if let Some(v) = rewrite.value(&series.labels) {
                    series.labels = with_label(&series.labels, &dst, v);
                }
                yield series;
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        true
    }
}

/// Prometheus' order for `sort` (ascending) and `sort_desc`: NaN last.
fn sort_order(desc: bool, a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if desc => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// `sort` / `sort_desc`: orders an instant query's result by value (a
/// range query's result is sorted by labels regardless).
#[derive(Debug)]
pub(crate) struct SortOp {
    pub desc: bool,
    pub input: Arc<dyn VectorOperator>,
}

impl VectorOperator for SortOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let desc = self.desc;
        let mut input = self.input.execute(ctx.clone());
        Box::pin(async_stream::try_stream! {
            let mut all = Vec::new();
            while let Some(series) = input.next().await {
                tokio::task::consume_budget().await;
                all.push(series?);
            }
            all.sort_by(|a, b| a.labels.cmp(&b.labels));
            if ctx.num_steps == 1 {
                all.sort_by(|a, b| sort_order(desc, a.points[0].v, b.points[0].v));
            }
            for s in all {
                yield s;
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

/// `sort_by_label` / `sort_by_label_desc` (experimental): orders an
/// instant query's result by the given labels' values in natural order,
/// then by the whole label set.
#[derive(Debug)]
pub(crate) struct SortByLabelOp {
    pub desc: bool,
    pub labels: Vec<String>,
    pub input: Arc<dyn VectorOperator>,
}

impl VectorOperator for SortByLabelOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let desc = self.desc;
        let names = self.labels.clone();
        let mut input = self.input.execute(ctx.clone());
        Box::pin(async_stream::try_stream! {
            let mut all = Vec::new();
            while let Some(series) = input.next().await {
                tokio::task::consume_budget().await;
                all.push(series?);
            }
            all.sort_by(|a, b| {
                for n in &names {
                    let (x, y) = (a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
                    if x == y {
                        continue;
                    }
                    let less = natural_less(x, y);
                    return match (less, desc) {
                        (true, false) | (false, true) => std::cmp::Ordering::Less,
                        _ => std::cmp::Ordering::Greater,
                    };
                }
                let o = a.labels.cmp(&b.labels);
                if desc { o.reverse() } else { o }
            });
            for s in all {
                yield s;
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

/// Runs of digits and of non-digits.
fn chunks(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let b = s.as_bytes();
    for i in 1..=b.len() {
        if i == b.len() || b[i].is_ascii_digit() != b[i - 1].is_ascii_digit() {
            if start < i {
                out.push(&s[start..i]);
            }
            start = i;
        }
    }
    out
}

/// The natural order Prometheus' `sort_by_label` uses (facette/natsort):
/// digit runs compare as numbers, other runs as strings.
pub(crate) fn natural_less(a: &str, b: &str) -> bool {
    let (ca, cb) = (chunks(a), chunks(b));
    for (i, x) in ca.iter().enumerate() {
        let Some(y) = cb.get(i) else {
            return false;
        };
        let last_a = i == ca.len() - 1;
        let last_b = i == cb.len() - 1;
        match (x.parse::<i64>(), y.parse::<i64>()) {
            (Ok(m), Ok(n)) => {
                if m == n {
                    if last_a {
                        return true;
                    } else if last_b {
                        return false;
                    }
                    continue;
                }
                return m < n;
            }
            _ => {
                if x == y {
                    if last_a {
                        return true;
                    } else if last_b {
                        return false;
                    }
                    continue;
                }
                return x < y;
            }
        }
    }
    false
}

/// The labels of `absent(sel)`: the selector's equality matchers (other
/// than the metric name), a label matched more than once left out.
pub(crate) fn absent_labels(matchers: &[Matcher]) -> Labels {
    let mut set: Vec<(String, String)> = Vec::new();
    let mut has: Vec<&str> = Vec::new();
    for m in matchers {
        if m.name == "__name__" {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !has.contains(&m.name.as_str()) {
            set.retain(|(n, _)| n != &m.name);
            set.push((m.name.clone(), m.value.clone()));
            has.push(&m.name);
        } else {
            set.retain(|(n, _)| n != &m.name);
        }
    }
    Labels::from_pairs(set.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

/// `absent(v)` / `absent_over_time(v[d])`: 1 at every step where the input
/// (for `absent_over_time`, `present_over_time(v[d])`) has no element.
#[derive(Debug)]
pub(crate) struct AbsentOp {
    pub labels: Labels,
    pub input: Arc<dyn VectorOperator>,
}

impl VectorOperator for AbsentOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let labels = self.labels.clone();
        let mut input = self.input.execute(ctx.clone());
        Box::pin(async_stream::try_stream! {
            let mut present = vec![false; ctx.num_steps];
            while let Some(series) = input.next().await {
                tokio::task::consume_budget().await;
                for p in series?.points {
                    if let Some(slot) = present.get_mut(p.step) {
                        *slot = true;
                    }
                }
            }
            let points: Vec<StepValue> = present
                .iter()
                .enumerate()
                .filter(|(_, &p)| !p)
                .map(|(step, _)| StepValue { step, v: 1.0 })
                .collect();
            if !points.is_empty() {
                yield EvalSeries { labels, points };
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_templates_expand_like_go() {
        let r = LabelRewrite::replace("dst", "$1-${2}x$2x", "src", "(a+)(b*)", "").unwrap();
        let labels = Labels::from_pairs([("src", "aab")]);
        assert_eq!(r.value(&labels).as_deref(), Some("aa-bx"));
        assert!(r.value(&Labels::from_pairs([("src", "c")])).is_none());
        assert!(LabelRewrite::replace("dst", "", "src", "(", "").is_err());
        assert!(LabelRewrite::replace("", "", "src", ".*", "").is_err());
        let err = LabelRewrite::join("", "-", vec!["a".to_owned()], "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid destination label name in label_join(): "
        );
    }

    #[test]
    fn sort_puts_nan_last() {
        let mut v = [2.0, f64::NAN, 1.0];
        v.sort_by(|a, b| sort_order(false, *a, *b));
        assert_eq!(&v[..2], &[1.0, 2.0]);
        v.sort_by(|a, b| sort_order(true, *a, *b));
        assert_eq!(&v[..2], &[2.0, 1.0]);
        assert!(v[2].is_nan());
    }
}
