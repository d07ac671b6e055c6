//! Arithmetic: scalar literals and operators, vector-scalar operators and
//! unary minus.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use promql_parser::parser::token;

use super::context::EvalContext;
use super::error::QueryError;
use super::operator::{EvalStream, ScalarOperator, VectorOperator};
use super::value::EvalSeries;

/// An arithmetic binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
}

impl ArithOp {
    /// The operator of a parser token, if it is arithmetic.
    pub fn from_token(id: token::TokenId) -> Option<Self> {
        match id {
            token::T_ADD => Some(ArithOp::Add),
            token::T_SUB => Some(ArithOp::Sub),
            token::T_MUL => Some(ArithOp::Mul),
            token::T_DIV => Some(ArithOp::Div),
            token::T_MOD => Some(ArithOp::Mod),
            token::T_POW => Some(ArithOp::Pow),
            token::T_ATAN2 => Some(ArithOp::Atan2),
            _ => None,
        }
    }

    /// `lhs op rhs` with IEEE 754 semantics, as Go computes it (`%` is
    /// `math.Mod`: the sign of the dividend; `^` is `math.Pow`).
    pub fn apply(self, lhs: f64, rhs: f64) -> f64 {
        match self {
            ArithOp::Add => lhs + rhs,
            ArithOp::Sub => lhs - rhs,
            ArithOp::Mul => lhs * rhs,
            ArithOp::Div => lhs / rhs,
            ArithOp::Mod => lhs % rhs,
            ArithOp::Pow => lhs.powf(rhs),
            ArithOp::Atan2 => lhs.atan2(rhs),
        }
    }
}

/// A number literal.
#[derive(Debug)]
pub(crate) struct ScalarLiteral(pub f64);

impl ScalarOperator for ScalarLiteral {
    fn evaluate(&self, ctx: Arc<EvalContext>) -> BoxFuture<'static, Result<Vec<f64>, QueryError>> {
        let values = vec![self.0; ctx.num_steps];
        futures::future::ready(Ok(values)).boxed()
    }
}

/// `-scalar`.
#[derive(Debug)]
pub(crate) struct ScalarNegate(pub Arc<dyn ScalarOperator>);

impl ScalarOperator for ScalarNegate {
    fn evaluate(&self, ctx: Arc<EvalContext>) -> BoxFuture<'static, Result<Vec<f64>, QueryError>> {
        let inner = self.0.evaluate(ctx);
        async move { Ok(inner.await?.into_iter().map(|v| -v).collect()) }.boxed()
    }
}

/// How two scalars combine: an arithmetic operator, or a comparison with
/// `bool` (1 where it holds, else 0).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ScalarCombine {
    Arith(ArithOp),
    CompareBool(super::comparison::CmpOp),
}

impl ScalarCombine {
    fn apply(self, l: f64, r: f64) -> f64 {
        match self {
            ScalarCombine::Arith(op) => op.apply(l, r),
            ScalarCombine::CompareBool(op) => {
                if op.holds(l, r) {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// `scalar op scalar`, step by step.
#[derive(Debug)]
pub(crate) struct ScalarBinary {
    pub op: ScalarCombine,
    pub lhs: Arc<dyn ScalarOperator>,
    pub rhs: Arc<dyn ScalarOperator>,
}

impl ScalarOperator for ScalarBinary {
    fn evaluate(&self, ctx: Arc<EvalContext>) -> BoxFuture<'static, Result<Vec<f64>, QueryError>> {
        let op = self.op;
        let lhs = self.lhs.evaluate(ctx.clone());
        let rhs = self.rhs.evaluate(ctx);
        async move {
            let (l, r) = (lhs.await?, rhs.await?);
            Ok(l.into_iter().zip(r).map(|(l, r)| op.apply(l, r)).collect())
        }
        .boxed()
    }
}

/// `vector op scalar` or `scalar op vector`: applies the operator to every
/// value, dropping the metric name.
#[derive(Debug)]
pub(crate) struct VectorScalarOp {
    pub op: ArithOp,
    pub vector: Arc<dyn VectorOperator>,
    pub scalar: Arc<dyn ScalarOperator>,
    /// The scalar is the left operand.
    pub scalar_on_left: bool,
}

impl VectorOperator for VectorScalarOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let (op, scalar_on_left) = (self.op, self.scalar_on_left);
        let scalar = self.scalar.evaluate(ctx.clone());
        let vector = self.vector.clone();
        Box::pin(async_stream::try_stream! {
            let scalars = scalar.await?;
            let mut input = vector.execute(ctx);
            while let Some(series) = input.next().await {
                let mut series = series?;
                for p in &mut series.points {
                    let s = scalars.get(p.step).copied().unwrap_or(f64::NAN);
                    p.v = if scalar_on_left { op.apply(s, p.v) } else { op.apply(p.v, s) };
                }
                yield EvalSeries { labels: series.labels.into_without_metric_name(), points: series.points };
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        false
    }
}

/// `-vector`: negates every value, dropping the metric name.
#[derive(Debug)]
pub(crate) struct VectorNegateOp(pub Arc<dyn VectorOperator>);

impl VectorOperator for VectorNegateOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        self.0
            .execute(ctx)
            .map(|series| {
                series.map(|mut s| {
                    for p in &mut s.points {
                        p.v = -p.v;
                    }
                    EvalSeries {
                        labels: s.labels.into_without_metric_name(),
                        points: s.points,
                    }
                })
            })
            .boxed()
    }

    fn may_collide_without_name(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_follow_go_semantics() {
        assert_eq!(ArithOp::Mod.apply(-7.0, 3.0), -1.0);
        assert_eq!(ArithOp::Mod.apply(7.0, -3.0), 1.0);
        assert!(ArithOp::Mod.apply(1.0, 0.0).is_nan());
        assert_eq!(ArithOp::Mod.apply(5.0, f64::INFINITY), 5.0);
        assert_eq!(ArithOp::Pow.apply(2.0, 10.0), 1024.0);
        assert_eq!(ArithOp::Pow.apply(f64::NAN, 0.0), 1.0);
        assert_eq!(ArithOp::Pow.apply(1.0, f64::NAN), 1.0);
        assert_eq!(ArithOp::Div.apply(1.0, 0.0), f64::INFINITY);
        assert_eq!(ArithOp::Div.apply(-1.0, 0.0), f64::NEG_INFINITY);
        assert!(ArithOp::Div.apply(0.0, 0.0).is_nan());
    }
}
