//! Comparison operators (`== != > < >= <=`) between scalars (with `bool`)
//! and between a vector and a scalar (filtering, or 0/1 with `bool`).

use std::sync::Arc;

use futures::StreamExt;
use promql_parser::parser::token;

use super::context::EvalContext;
use super::operator::{EvalStream, ScalarOperator, VectorOperator};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

impl CmpOp {
    /// The operator of a parser token, if it is a comparison.
    pub fn from_token(id: token::TokenId) -> Option<Self> {
        match id {
            token::T_EQLC => Some(CmpOp::Eq),
            token::T_NEQ => Some(CmpOp::Ne),
            token::T_GTR => Some(CmpOp::Gt),
            token::T_LSS => Some(CmpOp::Lt),
            token::T_GTE => Some(CmpOp::Ge),
            token::T_LTE => Some(CmpOp::Le),
            _ => None,
        }
    }

    /// Whether `lhs op rhs` holds (IEEE 754: NaN is unequal to everything).
    pub fn holds(self, lhs: f64, rhs: f64) -> bool {
        match self {
            CmpOp::Eq => lhs == rhs,
            CmpOp::Ne => lhs != rhs,
            CmpOp::Gt => lhs > rhs,
            CmpOp::Lt => lhs < rhs,
            CmpOp::Ge => lhs >= rhs,
            CmpOp::Le => lhs <= rhs,
        }
    }
}

/// `vector op scalar` or `scalar op vector`. Without `bool`, keeps the
/// elements for which the comparison holds, with their value and name;
/// with `bool`, every element becomes 1 or 0 and loses its name.
#[derive(Debug)]
pub(crate) struct VectorScalarCompareOp {
    pub op: CmpOp,
    pub vector: Arc<dyn VectorOperator>,
    pub scalar: Arc<dyn ScalarOperator>,
    /// The scalar is the left operand.
    pub scalar_on_left: bool,
    pub return_bool: bool,
}

impl VectorOperator for VectorScalarCompareOp {
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream {
        let (op, scalar_on_left, return_bool) = (self.op, self.scalar_on_left, self.return_bool);
        let scalar = self.scalar.evaluate(ctx.clone());
        let vector = self.vector.clone();
        Box::pin(async_stream::try_stream! {
            let scalars = scalar.await?;
            let mut input = vector.execute(ctx);
            while let Some(series) = input.next().await {
                let mut series = series?;
                series.points.retain_mut(|p| {
                    let s = scalars.get(p.step).copied().unwrap_or(f64::NAN);
                    let holds = if scalar_on_left { op.holds(s, p.v) } else { op.holds(p.v, s) };
                    if return_bool {
                        p.v = if holds { 1.0 } else { 0.0 };
                        true
                    } else {
                        holds
                    }
                });
                if series.points.is_empty() {
                    continue;
                }
                if return_bool {
                    series.labels = std::mem::take(&mut series.labels).into_without_metric_name();
                }
                yield series;
            }
        })
    }

    fn may_collide_without_name(&self) -> bool {
        !self.return_bool && self.vector.may_collide_without_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_compares_unequal() {
        assert!(!CmpOp::Eq.holds(f64::NAN, f64::NAN));
        assert!(CmpOp::Ne.holds(f64::NAN, f64::NAN));
        assert!(!CmpOp::Ge.holds(f64::NAN, 1.0));
        assert!(CmpOp::Le.holds(1.0, 1.0));
        assert!(CmpOp::Gt.holds(f64::INFINITY, f64::MAX));
    }
}
