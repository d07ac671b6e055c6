//! Turns a parsed PromQL expression into an operator tree, refusing (with
//! a clear error) every construct not supported yet.

use std::sync::Arc;

use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, UnaryExpr,
};

use super::aggregate::{AggregateFn, AggregateOp, Grouping};
use super::arithmetic::{
    ArithOp, ScalarBinary, ScalarLiteral, ScalarNegate, VectorNegateOp, VectorScalarOp,
};
use super::dedup::{DuplicateCheckOp, DuplicatePolicy};
use super::error::QueryError;
use super::operator::{Plan, VectorOperator};
use super::range_function::{RangeFunction, RangeFunctionOp};
use super::selector::{InstantSelectorOp, SelectorSpec};

/// Plans an expression.
pub(crate) fn plan(expr: &Expr) -> Result<Plan, QueryError> {
    match expr {
        Expr::NumberLiteral(n) => Ok(Plan::Scalar(Arc::new(ScalarLiteral(n.val)))),
        Expr::Paren(p) => plan(&p.expr),
        Expr::VectorSelector(vs) => Ok(Plan::Vector(Arc::new(InstantSelectorOp::new(
            SelectorSpec::from_ast(vs)?,
        )))),
        Expr::Unary(u) => plan_unary(u),
        Expr::Binary(b) => plan_binary(b),
        Expr::Aggregate(a) => plan_aggregate(a),
        Expr::Call(c) => plan_call(c),
        Expr::MatrixSelector(_) => Err(QueryError::unsupported(
            "a range vector selector outside rate() and increase()",
        )),
        Expr::Subquery(_) => Err(QueryError::unsupported("a subquery")),
        Expr::StringLiteral(_) => Err(QueryError::unsupported("a string literal")),
        Expr::Extension(_) => Err(QueryError::unsupported("an extension expression")),
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

fn plan_unary(u: &UnaryExpr) -> Result<Plan, QueryError> {
    match plan(&u.expr)? {
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

fn plan_binary(b: &BinaryExpr) -> Result<Plan, QueryError> {
    let Some(op) = ArithOp::from_token(b.op.id()) else {
        return Err(QueryError::unsupported(format!(
            "the binary operator \"{}\"",
            b.op
        )));
    };
    if b.return_bool() {
        return Err(QueryError::unsupported("the bool modifier"));
    }
    match (plan(&b.lhs)?, plan(&b.rhs)?) {
        (Plan::Scalar(lhs), Plan::Scalar(rhs)) => {
            Ok(Plan::Scalar(Arc::new(ScalarBinary { op, lhs, rhs })))
        }
        (Plan::Vector(vector), Plan::Scalar(scalar)) => {
            Ok(vector_scalar(op, vector, scalar, false))
        }
        (Plan::Scalar(scalar), Plan::Vector(vector)) => Ok(vector_scalar(op, vector, scalar, true)),
        (Plan::Vector(_), Plan::Vector(_)) => Err(QueryError::unsupported(
            "a binary operation between two instant vectors",
        )),
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

fn plan_aggregate(a: &AggregateExpr) -> Result<Plan, QueryError> {
    let name = a.op.to_string();
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
    let grouping = match &a.modifier {
        None => Grouping::By(Vec::new()),
        Some(LabelModifier::Include(l)) => Grouping::By(l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => Grouping::Without(l.labels.clone()),
    };
    match plan(&a.expr)? {
        Plan::Vector(input) => Ok(Plan::Vector(Arc::new(AggregateOp::new(
            func, grouping, input,
        )))),
        Plan::Scalar(_) => Err(QueryError::BadData(
            "expected type instant vector in aggregation expression, got scalar".to_owned(),
        )),
    }
}

fn plan_call(c: &Call) -> Result<Plan, QueryError> {
    let name = c.func.name;
    let Some(func) = RangeFunction::from_name(name) else {
        return Err(QueryError::unsupported(format!("the function \"{name}\"")));
    };
    let [arg] = c.args.args.as_slice() else {
        return Err(QueryError::BadData(format!(
            "expected 1 argument(s) in call to \"{name}\", got {}",
            c.args.args.len()
        )));
    };
    let ms = range_argument(arg)?;
    let spec = SelectorSpec::from_ast(&ms.vs)?;
    let may_collide = !spec.name_pinned;
    let op = Arc::new(RangeFunctionOp::new(func, spec, ms.range));
    Ok(Plan::Vector(checked(
        op,
        may_collide,
        DuplicatePolicy::Reject,
    )))
}

/// The matrix selector a range-vector function is applied to.
fn range_argument(arg: &Expr) -> Result<&MatrixSelector, QueryError> {
    match arg {
        Expr::MatrixSelector(ms) => Ok(ms),
        Expr::Paren(p) => range_argument(&p.expr),
        Expr::Subquery(_) => Err(QueryError::unsupported("a subquery")),
        _ => Err(QueryError::BadData(
            "expected type range vector in call to function, got instant vector".to_owned(),
        )),
    }
}
