//! Turns a parsed PromQL expression into an operator tree, refusing (with
//! a clear error) every construct not supported yet.

use std::sync::Arc;

use promql_parser::parser::{
    token, AggregateExpr, AtModifier, BinaryExpr, Call, Expr, LabelModifier, SubqueryExpr,
    UnaryExpr, VectorMatchCardinality, VectorSelector,
};

use super::aggregate::{AggregateFn, AggregateOp, Grouping};
use super::aggregate_param::{CountValuesOp, KFn, LimitFn, LimitOp, QuantileOp, TopKOp};
use super::arithmetic::{
    ArithOp, ScalarBinary, ScalarCombine, ScalarLiteral, ScalarNegate, VectorNegateOp,
    VectorScalarOp,
};
use super::binary::{GroupModifier, Matching, SetBinaryOp, SetOp, VectorBinaryOp, VectorOpKind};
use super::comparison::{CmpOp, VectorScalarCompareOp};
use super::dedup::{DuplicateCheckOp, DuplicatePolicy};
use super::error::QueryError;
use super::histogram::{HistogramFn, HistogramOp};
use super::instant_function::{
    ScalarMinMaxOp, ScalarOfVectorOp, TimeOp, VectorFunction, VectorFunctionOp, VectorOfScalarOp,
};
use super::label_function::{
    absent_labels, invalid_utf8_name, AbsentOp, SortByLabelOp, LabelRewrite, LabelRewriteOp, SortOp,
};
use super::operator::{Plan, ScalarOperator, VectorOperator};
use super::annotations::AnnotationSink;
use super::position::Positions;
use super::range_function::{RangeFunction, RangeFunctionOp, ScalarParam};
use super::range_input::{RangeInput, RangeSource, Subquery};
use super::selector::{duration_ms, InstantSelectorOp, SelectorSpec, Timing};
use tidemark_storage::Labels;

/// What planning needs besides the expression.
pub(crate) struct Planner<'a> {
    /// Where calls start in the query text, for annotations.
    pub positions: &'a Positions,
    /// The query's first and last evaluation times, ms: what `@ start()`
    /// and `@ end()` stand for.
    pub start: i64,
    pub end: i64,
    /// Whether the query has more than one step (a range query).
    pub range_query: bool,
    /// Resolution of subqueries that give none, ms.
    pub default_subquery_step_ms: i64,
    /// Annotations found while planning (`sort` in a range query).
    pub annotations: &'a AnnotationSink,
    /// Whether Prometheus' experimental functions are enabled.
    pub experimental_functions: bool,
}

/// A planned expression of any type.
#[derive(Debug)]
pub(crate) enum AnyPlan {
    /// Scalar or instant-vector valued.
    Value(Plan),
    /// A range vector: a range selector or a subquery.
    Matrix(Arc<RangeInput>),
    /// A string literal.
    String(String),
}

/// Plans a query's expression.
pub(crate) fn plan(expr: &Expr, planner: &Planner<'_>) -> Result<AnyPlan, QueryError> {
    planner.plan_any(expr)
}

impl Planner<'_> {
/// Refuses an experimental function unless they are enabled, as
/// Prometheus' parser does.
fn experimental(&self, name: &str) -> Result<(), QueryError> {
    if self.experimental_functions {
        Ok(())
    } else {
        Err(QueryError::Parse(format!("function {name:?} is not enabled")))
    }
}

/// The resolved time of an `@` modifier, ms.
fn at_ms(&self, at: Option<&AtModifier>) -> Option<i64> {
    match at? {
        AtModifier::Start => Some(self.start),
        AtModifier::End => Some(self.end),
        AtModifier::At(t) => Some(match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => duration_ms(&d),
            Err(e) => -duration_ms(&e.duration()),
        }),
    }
}

/// The spec of a vector selector, `@` resolved.
fn selector(&self, vs: &VectorSelector) -> Result<SelectorSpec, QueryError> {
    SelectorSpec::from_ast(vs, self.at_ms(vs.at.as_ref()))
}

/// `expr[range:step] offset o @ t`.
fn subquery(&self, sq: &SubqueryExpr) -> Result<Arc<RangeInput>, QueryError> {
    let inner = match self.plan_any(&sq.expr)? {
        AnyPlan::Value(Plan::Vector(v)) => v,
        _ => {
            return Err(QueryError::BadData(
                "subquery is only allowed on instant vector".to_owned(),
            ))
        }
    };
    let step_ms = match &sq.step {
        Some(d) if !d.is_zero() => duration_ms(d),
        _ => self.default_subquery_step_ms,
    }
    .max(1);
    let range_ms = duration_ms(&sq.range);
    Ok(Arc::new(RangeInput {
        source: RangeSource::Subquery(Subquery {
            inner,
            step_ms,
            timing: Timing::new(sq.offset.as_ref(), self.at_ms(sq.at.as_ref())),
        }),
        range_ms,
        range_secs: sq.range.as_secs_f64(),
    }))
}

/// Plans an expression of any type.
pub fn plan_any(&self, expr: &Expr) -> Result<AnyPlan, QueryError> {
    Ok(match expr {
        Expr::Paren(p) => return self.plan_any(&p.expr),
        Expr::MatrixSelector(ms) => AnyPlan::Matrix(Arc::new(RangeInput {
            source: RangeSource::Selector(self.selector(&ms.vs)?),
            range_ms: duration_ms(&ms.range),
            range_secs: ms.range.as_secs_f64(),
        })),
        Expr::Subquery(sq) => AnyPlan::Matrix(self.subquery(sq)?),
        Expr::StringLiteral(s) => AnyPlan::String(s.val.clone()),
        other => AnyPlan::Value(self.plan(other)?),
    })
}

/// Plans a scalar or instant-vector valued expression.
fn plan(&self, expr: &Expr) -> Result<Plan, QueryError> {
    match expr {
        Expr::NumberLiteral(n) => Ok(Plan::Scalar(Arc::new(ScalarLiteral(n.val)))),
        Expr::Paren(p) => self.plan(&p.expr),
        Expr::VectorSelector(vs) => Ok(Plan::Vector(Arc::new(InstantSelectorOp::new(
            self.selector(vs)?,
        )))),
        Expr::Unary(u) => self.plan_unary(u),
        Expr::Binary(b) => self.plan_binary(b),
        Expr::Aggregate(a) => self.plan_aggregate(a),
        Expr::Call(c) => self.plan_call(c),
        Expr::MatrixSelector(_) | Expr::Subquery(_) => Err(QueryError::BadData(
            "expected type instant vector or scalar, got range vector".to_owned(),
        )),
        Expr::StringLiteral(_) => Err(QueryError::BadData(
            "expected type instant vector or scalar, got string".to_owned(),
        )),
        Expr::Extension(_) => Err(QueryError::unsupported("an extension expression")),
    }
}
}

/// Wraps a name-dropping operator in a duplicate check when its input may
/// hold series that differ only by metric name.
fn checked(
    op: Arc<dyn VectorOperator>,
    input_may_collide: bool,
    policy: DuplicatePolicy,
) -> Arc<dyn VectorOperator> {
    if input_may_collide {
        Arc::new(DuplicateCheckOp::new(op, policy))
    } else {
        op
    }
}

impl Planner<'_> {
fn plan_unary(&self, u: &UnaryExpr) -> Result<Plan, QueryError> {
    match self.plan(&u.expr)? {
        Plan::Scalar(s) => Ok(Plan::Scalar(Arc::new(ScalarNegate(s)))),
        Plan::Vector(v) => {
            let may_collide = v.may_collide_without_name();
            let op = Arc::new(VectorNegateOp(v));
            Ok(Plan::Vector(checked(
                op,
                may_collide,
                DuplicatePolicy::RejectOverlap,
            )))
        }
    }
}
}

/// The `on` / `ignoring` labels of a vector-vector operation, refusing
/// what is not supported yet.
fn matching(b: &BinaryExpr, set_operator: bool) -> Result<Arc<Matching>, QueryError> {
    let Some(modifier) = &b.modifier else {
        return Ok(Arc::new(Matching {
            on: false,
            labels: Vec::new(),
        }));
    };
    if modifier.fill_values.lhs.is_some() || modifier.fill_values.rhs.is_some() {
        return Err(QueryError::unsupported("the fill modifier"));
    }
    match (&modifier.card, set_operator) {
        (VectorMatchCardinality::OneToOne, false)
        | (VectorMatchCardinality::ManyToMany, true)
        | (VectorMatchCardinality::ManyToOne(_), false)
        | (VectorMatchCardinality::OneToMany(_), false) => {}
        (VectorMatchCardinality::ManyToOne(_), _) => {
            return Err(QueryError::unsupported("group_left"))
        }
        (VectorMatchCardinality::OneToMany(_), _) => {
            return Err(QueryError::unsupported("group_right"))
        }
        _ => {
            return Err(QueryError::BadData(format!(
                "invalid vector matching for the binary operator \"{}\"",
                b.op
            )))
        }
    }
    Ok(Arc::new(match &modifier.matching {
        None => Matching {
            on: false,
            labels: Vec::new(),
        },
        Some(LabelModifier::Include(l)) => Matching {
            on: true,
            labels: l.labels.clone(),
        },
        Some(LabelModifier::Exclude(l)) => Matching {
            on: false,
            labels: l.labels.clone(),
        },
    }))
}

/// `lhs op rhs` between two instant vectors, other than set operators.
fn vector_vector(
    b: &BinaryExpr,
    kind: VectorOpKind,
    lhs: Arc<dyn VectorOperator>,
    rhs: Arc<dyn VectorOperator>,
) -> Result<Plan, QueryError> {
    let group = match b.modifier.as_ref().map(|m| &m.card) {
        Some(VectorMatchCardinality::ManyToOne(l)) => Some(Arc::new(GroupModifier {
            right: false,
            include: l.labels.clone(),
        })),
        Some(VectorMatchCardinality::OneToMany(l)) => Some(Arc::new(GroupModifier {
            right: true,
            include: l.labels.clone(),
        })),
        _ => None,
    };
    let node = Arc::new(VectorBinaryOp {
        kind,
        group,
        matching: matching(b, false)?,
        lhs,
        rhs,
    });
    // Result label sets of different signatures can still coincide (with
    // `on (__name__)`, say): checked as Prometheus checks every step.
    Ok(Plan::Vector(checked(
        node,
        true,
        DuplicatePolicy::RejectOverlap,
    )))
}

impl Planner<'_> {
fn plan_set_operator(&self, b: &BinaryExpr, op: SetOp) -> Result<Plan, QueryError> {
    match (self.plan(&b.lhs)?, self.plan(&b.rhs)?) {
        (Plan::Vector(lhs), Plan::Vector(rhs)) => Ok(Plan::Vector(Arc::new(SetBinaryOp {
            op,
            matching: matching(b, true)?,
            lhs,
            rhs,
        }))),
        _ => Err(QueryError::BadData(format!(
            "set operator \"{}\" not allowed in binary scalar expression",
            b.op
        ))),
    }
}
}

impl Planner<'_> {
fn plan_binary(&self, b: &BinaryExpr) -> Result<Plan, QueryError> {
    let set_op = match b.op.id() {
        token::T_LAND => Some(SetOp::And),
        token::T_LOR => Some(SetOp::Or),
        token::T_LUNLESS => Some(SetOp::Unless),
        _ => None,
    };
    if let Some(op) = set_op {
        return self.plan_set_operator(b, op);
    }
    if let Some(op) = CmpOp::from_token(b.op.id()) {
        return self.plan_comparison(b, op);
    }
    let Some(op) = ArithOp::from_token(b.op.id()) else {
        return Err(QueryError::unsupported(format!(
            "the binary operator \"{}\"",
            b.op
        )));
    };
    if b.return_bool() {
        return Err(QueryError::unsupported("the bool modifier"));
    }
    match (self.plan(&b.lhs)?, self.plan(&b.rhs)?) {
        (Plan::Scalar(lhs), Plan::Scalar(rhs)) => Ok(Plan::Scalar(Arc::new(ScalarBinary {
            op: ScalarCombine::Arith(op),
            lhs,
            rhs,
        }))),
        (Plan::Vector(vector), Plan::Scalar(scalar)) => {
            Ok(vector_scalar(op, vector, scalar, false))
        }
        (Plan::Scalar(scalar), Plan::Vector(vector)) => Ok(vector_scalar(op, vector, scalar, true)),
        (Plan::Vector(lhs), Plan::Vector(rhs)) => {
            vector_vector(b, VectorOpKind::Arith(op), lhs, rhs)
        }
    }
}
}

impl Planner<'_> {
fn plan_comparison(&self, b: &BinaryExpr, op: CmpOp) -> Result<Plan, QueryError> {
    let return_bool = b.return_bool();
    let compare = |vector: Arc<dyn VectorOperator>, scalar, scalar_on_left| {
        let may_collide = return_bool && vector.may_collide_without_name();
        let node = Arc::new(VectorScalarCompareOp {
            op,
            vector,
            scalar,
            scalar_on_left,
            return_bool,
        });
        Plan::Vector(checked(node, may_collide, DuplicatePolicy::RejectOverlap))
    };
    match (self.plan(&b.lhs)?, self.plan(&b.rhs)?) {
        (Plan::Scalar(lhs), Plan::Scalar(rhs)) => {
            if !return_bool {
                return Err(QueryError::BadData(
                    "comparisons between scalars must use BOOL modifier".to_owned(),
                ));
            }
            Ok(Plan::Scalar(Arc::new(ScalarBinary {
                op: ScalarCombine::CompareBool(op),
                lhs,
                rhs,
            })))
        }
        (Plan::Vector(vector), Plan::Scalar(scalar)) => Ok(compare(vector, scalar, false)),
        (Plan::Scalar(scalar), Plan::Vector(vector)) => Ok(compare(vector, scalar, true)),
        (Plan::Vector(lhs), Plan::Vector(rhs)) => {
            vector_vector(b, VectorOpKind::Compare(op, return_bool), lhs, rhs)
        }
    }
}
}

fn vector_scalar(
    op: ArithOp,
    vector: Arc<dyn VectorOperator>,
    scalar: Arc<dyn super::operator::ScalarOperator>,
    scalar_on_left: bool,
) -> Plan {
    let may_collide = vector.may_collide_without_name();
    let node = Arc::new(VectorScalarOp {
        op,
        vector,
        scalar,
        scalar_on_left,
    });
    Plan::Vector(checked(node, may_collide, DuplicatePolicy::RejectOverlap))
}

impl Planner<'_> {
fn plan_aggregate(&self, a: &AggregateExpr) -> Result<Plan, QueryError> {
    let name = a.op.to_string();
    let grouping = match &a.modifier {
        None => Grouping::By(Vec::new()),
        Some(LabelModifier::Include(l)) => Grouping::By(l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => Grouping::Without(l.labels.clone()),
    };
    let limit = match name.as_str() {
        "limitk" => Some(LimitFn::K),
        "limit_ratio" => Some(LimitFn::Ratio),
        _ => None,
    };
    if let Some(func) = limit {
        self.experimental(&name)?;
        let Some(param) = &a.param else {
            return Err(QueryError::BadData(format!(
                "expected a parameter in aggregation \"{name}\""
            )));
        };
        let param = self.scalar_argument(param)?;
        let input = self.aggregate_input(a)?;
        return Ok(Plan::Vector(Arc::new(LimitOp {
            func,
            grouping: Arc::new(grouping),
            param,
            input,
            param_pos: self.positions.aggregate_arg(a, 0),
        })));
    }
    let k_func = match name.as_str() {
        "topk" => Some(KFn::Top),
        "bottomk" => Some(KFn::Bottom),
        _ => None,
    };
    if k_func.is_some() || name == "quantile" || name == "count_values" {
        let Some(param) = &a.param else {
            return Err(QueryError::BadData(format!(
                "expected a parameter in aggregation \"{name}\""
            )));
        };
        if name == "count_values" {
            let Expr::StringLiteral(label) = unwrap_parens(param) else {
                return Err(QueryError::BadData(
                    "expected type string in aggregation parameter".to_owned(),
                ));
            };
            if label.val.is_empty() || invalid_utf8_name(&label.val, self.positions.query()) {
                return Err(QueryError::Execution(format!("invalid label name {label}")));
            }
            let grouping = match grouping {
                Grouping::By(mut names) => {
                    names.push(label.val.clone());
                    Grouping::By(names)
                }
                without => without,
            };
            let input = self.aggregate_input(a)?;
            return Ok(Plan::Vector(Arc::new(CountValuesOp {
                grouping: Arc::new(grouping),
                label: Arc::from(label.val.as_str()),
                input,
            })));
        }
        let param = match self.plan(param)? {
            Plan::Scalar(s) => s,
            Plan::Vector(_) => {
                return Err(QueryError::BadData(
                    "expected type scalar in aggregation parameter, got instant vector".to_owned(),
                ))
            }
        };
        let input = self.aggregate_input(a)?;
        let grouping = Arc::new(grouping);
        return Ok(Plan::Vector(match k_func {
            Some(func) => Arc::new(TopKOp {
                func,
                grouping,
                param,
                input,
            }),
            None => Arc::new(QuantileOp {
                grouping,
                param,
                input,
                param_pos: self.positions.aggregate_arg(a, 0),
            }),
        }));
    }
    let Some(func) = AggregateFn::from_name(&name) else {
        return Err(QueryError::unsupported(format!(
            "the aggregation \"{name}\""
        )));
    };
    if a.param.is_some() {
        return Err(QueryError::unsupported(format!(
            "a parameter to \"{name}\""
        )));
    }
    let input = self.aggregate_input(a)?;
    Ok(Plan::Vector(Arc::new(AggregateOp::new(
        func, grouping, input,
    ))))
}
}

impl Planner<'_> {
/// Plans the instant vector an aggregation aggregates.
fn aggregate_input(&self, a: &AggregateExpr) -> Result<Arc<dyn VectorOperator>, QueryError> {
    match self.plan(&a.expr)? {
        Plan::Vector(input) => Ok(input),
        Plan::Scalar(_) => Err(QueryError::BadData(
            "expected type instant vector in aggregation expression, got scalar".to_owned(),
        )),
    }
}
}

impl Planner<'_> {
fn plan_call(&self, c: &Call) -> Result<Plan, QueryError> {
    let name = c.func.name;
    let args = c.args.args.as_slice();
    if let Some(func) = RangeFunction::from_name(name) {
        return self.plan_range_function(c, func);
    }
    if let Some(func) = VectorFunction::from_name(name) {
        if func.is_date() && args.is_empty() {
            // `f()` is `f(vector(time()))`.
            return Ok(Plan::Vector(Arc::new(VectorFunctionOp {
                func,
                input: Arc::new(VectorOfScalarOp(Arc::new(TimeOp))),
                params: Vec::new(),
                input_is_timestamps: false,
            })));
        }
        return self.plan_vector_function(name, func, args);
    }
    match (name, args) {
        ("time", []) => Ok(Plan::Scalar(Arc::new(TimeOp))),
        ("pi", []) => Ok(Plan::Scalar(Arc::new(ScalarLiteral(std::f64::consts::PI)))),
        ("vector", [arg]) => Ok(Plan::Vector(Arc::new(VectorOfScalarOp(self.scalar_argument(
            arg,
        )?)))),
        ("scalar", [arg]) => Ok(Plan::Scalar(Arc::new(ScalarOfVectorOp(self.vector_argument(
            arg,
        )?)))),
        ("min_of" | "max_of", [lhs, rhs]) => Ok(Plan::Scalar(Arc::new(ScalarMinMaxOp {
            max: name == "max_of",
            lhs: self.scalar_argument(lhs)?,
            rhs: self.scalar_argument(rhs)?,
        }))),
        ("label_replace", [v, dst, repl, src, re]) => {
            let dst = string_argument(dst)?;
            let rewrite = LabelRewrite::replace(
                dst,
                string_argument(repl)?,
                string_argument(src)?,
                string_argument(re)?,
                self.positions.query(),
            )?;
            self.label_rewrite(dst, rewrite, v)
        }
        ("label_join", [v, dst, sep, src @ ..]) => {
            let dst = string_argument(dst)?;
            let src = src
                .iter()
                .map(|a| string_argument(a).map(str::to_owned))
                .collect::<Result<Vec<_>, _>>()?;
            let rewrite =
                LabelRewrite::join(dst, string_argument(sep)?, src, self.positions.query())?;
            self.label_rewrite(dst, rewrite, v)
        }
        ("histogram_quantile", [q, v]) => {
            let op = Arc::new(HistogramOp {
                func: HistogramFn::Quantile {
                    q: self.scalar_argument(q)?,
                    q_pos: self.positions.call_arg(c, 0),
                },
                input: self.vector_argument(v)?,
                input_pos: self.positions.call_arg(c, 1),
            });
            Ok(Plan::Vector(checked(op, true, DuplicatePolicy::RejectOverlap)))
        }
        ("histogram_fraction", [lower, upper, v]) => {
            let op = Arc::new(HistogramOp {
                func: HistogramFn::Fraction {
                    lower: self.scalar_argument(lower)?,
                    upper: self.scalar_argument(upper)?,
                },
                input: self.vector_argument(v)?,
                input_pos: self.positions.call_arg(c, 2),
            });
            Ok(Plan::Vector(checked(op, true, DuplicatePolicy::RejectOverlap)))
        }
        ("histogram_quantiles", [v, label, qs @ ..]) if !qs.is_empty() => {
            self.experimental(name)?;
            let label = string_argument(label)?;
            if label.is_empty() || invalid_utf8_name(label, self.positions.query()) {
                return Err(QueryError::Execution(format!("invalid label name {label:?}")));
            }
            let qs = qs
                .iter()
                .enumerate()
                .map(|(i, q)| Ok((self.scalar_argument(q)?, self.positions.call_arg(c, i + 2))))
                .collect::<Result<Vec<_>, QueryError>>()?;
            let op = Arc::new(HistogramOp {
                func: HistogramFn::Quantiles {
                    label: label.to_owned(),
                    qs,
                },
                input: self.vector_argument(v)?,
                input_pos: self.positions.call_arg(c, 0),
            });
            Ok(Plan::Vector(checked(op, true, DuplicatePolicy::RejectOverlap)))
        }
        ("sort_by_label" | "sort_by_label_desc", [v, labels @ ..]) => {
            self.experimental(name)?;
            if self.range_query {
                self.annotations.warn(
                    "sort is ineffective for range queries since results are always ordered by labels",
                    self.positions.call(c),
                );
            }
            let labels = labels
                .iter()
                .map(|l| string_argument(l).map(str::to_owned))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Plan::Vector(Arc::new(SortByLabelOp {
                desc: name == "sort_by_label_desc",
                labels,
                input: self.vector_argument(v)?,
            })))
        }
        ("sort" | "sort_desc", [v]) => {
            if self.range_query {
                self.annotations.warn(
                    "sort is ineffective for range queries since results are always ordered by labels",
                    self.positions.call(c),
                );
            }
            Ok(Plan::Vector(Arc::new(SortOp {
            desc: name == "sort_desc",
            input: self.vector_argument(v)?,
        })))
        }
        ("absent", [v]) => {
            let labels = match &**v {
                Expr::VectorSelector(vs) => selector_absent_labels(vs)?,
                _ => Labels::default(),
            };
            Ok(Plan::Vector(Arc::new(AbsentOp {
                labels,
                input: self.vector_argument(v)?,
            })))
        }
        ("absent_over_time", [v]) => {
            let labels = match unwrap_parens(v) {
                Expr::MatrixSelector(ms) => selector_absent_labels(&ms.vs)?,
                _ => Labels::default(),
            };
            let input = Arc::new(RangeFunctionOp::new(
                RangeFunction::PresentOverTime,
                self.range_argument(v)?,
                None,
            ));
            Ok(Plan::Vector(Arc::new(AbsentOp { labels, input })))
        }
        (
            "label_replace" | "label_join" | "sort" | "sort_desc" | "absent" | "absent_over_time"
            | "histogram_quantile" | "histogram_fraction" | "histogram_quantiles",
            _,
        ) => Err(QueryError::BadData(format!(
            "wrong number of arguments in call to \"{name}\""
        ))),
        ("time" | "pi" | "vector" | "scalar" | "min_of" | "max_of", _) => Err(QueryError::BadData(
            format!("wrong number of arguments in call to \"{name}\""),
        )),
        _ => Err(QueryError::unsupported(format!("the function \"{name}\""))),
    }
}
}

/// The value of a string literal argument.
fn string_argument(arg: &Expr) -> Result<&str, QueryError> {
    match unwrap_parens(arg) {
        Expr::StringLiteral(s) => Ok(&s.val),
        _ => Err(QueryError::BadData(
            "expected type string in call to function".to_owned(),
        )),
    }
}

impl Planner<'_> {
/// `label_replace` / `label_join` of `v`.
fn label_rewrite(&self, dst: &str, rewrite: LabelRewrite, v: &Expr) -> Result<Plan, QueryError> {
    let op = Arc::new(LabelRewriteOp {
        dst: dst.to_owned(),
        rewrite: Arc::new(rewrite),
        input: self.vector_argument(v)?,
    });
    Ok(Plan::Vector(checked(
        op,
        true,
        DuplicatePolicy::RejectOverlap,
    )))
}
}

/// The labels `absent` gives for a selector.
fn selector_absent_labels(vs: &VectorSelector) -> Result<Labels, QueryError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(QueryError::unsupported(
            "\"or\" in a selector given to absent",
        ));
    }
    Ok(absent_labels(&vs.matchers.matchers))
}

impl Planner<'_> {
/// Plans an argument that must be an instant vector.
fn vector_argument(&self, arg: &Expr) -> Result<Arc<dyn VectorOperator>, QueryError> {
    match self.plan(arg)? {
        Plan::Vector(v) => Ok(v),
        Plan::Scalar(_) => Err(QueryError::BadData(
            "expected type instant vector in call to function, got scalar".to_owned(),
        )),
    }
}
}

/// The expression inside any parentheses.
fn unwrap_parens(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

impl Planner<'_> {
fn plan_vector_function(&self, 
    name: &str,
    func: VectorFunction,
    args: &[Box<Expr>],
) -> Result<Plan, QueryError> {
    let (required, optional) = func.scalar_params();
    let Some((vector_arg, scalar_args)) = args.split_first() else {
        return Err(wrong_arity(name, 1 + required, 0));
    };
    if scalar_args.len() < required || scalar_args.len() > required + optional {
        return Err(wrong_arity(name, 1 + required, args.len()));
    }
    let params = scalar_args
        .iter()
        .map(|a| self.scalar_argument(a))
        .collect::<Result<Vec<_>, _>>()?;
    // timestamp() of a selector is the time of the sample selected, not
    // the evaluation time.
    let (input, input_is_timestamps): (Arc<dyn VectorOperator>, bool) =
        match (func, unwrap_parens(vector_arg)) {
            (VectorFunction::Timestamp, Expr::VectorSelector(vs)) => (
                Arc::new(InstantSelectorOp::timestamps(self.selector(vs)?)),
                true,
            ),
            _ => (self.vector_argument(vector_arg)?, false),
        };
    let may_collide = input.may_collide_without_name();
    let op = Arc::new(VectorFunctionOp {
        func,
        input,
        params,
        input_is_timestamps,
    });
    Ok(Plan::Vector(checked(
        op,
        may_collide,
        DuplicatePolicy::RejectOverlap,
    )))
}
}

fn wrong_arity(name: &str, want: usize, got: usize) -> QueryError {
    QueryError::BadData(format!(
        "expected {want} argument(s) in call to \"{name}\", got {got}"
    ))
}

impl Planner<'_> {
/// Plans an argument that must be a scalar.
fn scalar_argument(&self, arg: &Expr) -> Result<Arc<dyn ScalarOperator>, QueryError> {
    match self.plan(arg)? {
        Plan::Scalar(s) => Ok(s),
        Plan::Vector(_) => Err(QueryError::BadData(
            "expected type scalar in call to function, got instant vector".to_owned(),
        )),
    }
}
}

impl Planner<'_> {
fn plan_range_function(&self, c: &Call, func: RangeFunction) -> Result<Plan, QueryError> {
    let name = c.func.name;
    if func.experimental() {
        self.experimental(name)?;
    }
    let args = c.args.args.as_slice();
    let (range_arg, param, param2) = match (func.scalar_param(), args) {
        (ScalarParam::None, [arg]) => (arg, None, None),
        (ScalarParam::Before, [param, arg]) => (arg, Some(param), None),
        (ScalarParam::After, [arg, param]) => (arg, Some(param), None),
        (ScalarParam::TwoAfter, [arg, param, param2]) => (arg, Some(param), Some(param2)),
        (ScalarParam::None, _) => return Err(wrong_arity(name, 1, args.len())),
        (ScalarParam::TwoAfter, _) => return Err(wrong_arity(name, 3, args.len())),
        _ => return Err(wrong_arity(name, 2, args.len())),
    };
    let input = self.range_argument(range_arg)?;
    let param_pos = param.and(match func.scalar_param() {
        ScalarParam::Before => self.positions.call_arg(c, 0),
        _ => self.positions.call_arg(c, 1),
    });
    let arg_index = usize::from(func.scalar_param() == ScalarParam::Before);
    let arg_pos = self.positions.call_arg(c, arg_index);
    let param = param.map(|p| self.scalar_argument(p)).transpose()?;
    let param2 = param2.map(|p| self.scalar_argument(p)).transpose()?;
    let may_collide = input.may_collide_without_name() && !func.keeps_name();
    let op = Arc::new(
        RangeFunctionOp::new(func, input, param)
            .with_second_param(param2)
            .at_positions(arg_pos, param_pos),
    );
    Ok(Plan::Vector(checked(
        op,
        may_collide,
        DuplicatePolicy::Reject,
    )))
}
}

impl Planner<'_> {
/// The range vector a range-vector function is applied to.
fn range_argument(&self, arg: &Expr) -> Result<Arc<RangeInput>, QueryError> {
    match self.plan_any(arg)? {
        AnyPlan::Matrix(m) => Ok(m),
        AnyPlan::Value(Plan::Vector(_)) => Err(QueryError::BadData(
            "expected type range vector in call to function, got instant vector".to_owned(),
        )),
        AnyPlan::Value(Plan::Scalar(_)) => Err(QueryError::BadData(
            "expected type range vector in call to function, got scalar".to_owned(),
        )),
        AnyPlan::String(_) => Err(QueryError::BadData(
            "expected type range vector in call to function, got string".to_owned(),
        )),
    }
}
}
