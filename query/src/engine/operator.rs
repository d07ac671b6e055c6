//! The operator tree a query is evaluated with.
//!
//! Every vector-valued node is a [`VectorOperator`]: executing it yields its
//! output series one at a time as an async stream, each with its values at
//! all evaluation steps. An operator pulls its input series as it needs
//! them, so a pipeline holds one input series at a time plus whatever
//! state the operator needs (an aggregation holds its output groups).
//! Scalar-valued nodes are [`ScalarOperator`]s yielding one value per step.
//!
//! Instant and range queries share this evaluator: an instant query is a
//! range query with one step.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

use super::context::EvalContext;
use super::error::QueryError;
use super::value::EvalSeries;

/// The output of a vector operator: series, each with at least one point.
pub(crate) type EvalStream = BoxStream<'static, Result<EvalSeries, QueryError>>;

/// A node that evaluates to an instant vector at every step.
pub(crate) trait VectorOperator: Send + Sync + fmt::Debug {
    /// Starts evaluation; the stream yields the output series.
    fn execute(&self, ctx: Arc<EvalContext>) -> EvalStream;

    /// Whether removing the metric name from this operator's output series
    /// can make two of them equal. False when every output series has the
    /// same name (or none), so that dropping it keeps label sets distinct.
    fn may_collide_without_name(&self) -> bool;

    /// Whether an instant query's result keeps the order in which this
    /// operator emits its series (`sort`, `topk`), rather than being sorted
    /// by labels.
    fn ordered(&self) -> bool {
        false
    }

    /// Whether no two output series have equal labels, so that a consumer
    /// (a subquery) may pass them on one at a time without merging.
    fn unique_labels(&self) -> bool {
        false
    }
}

/// A node that evaluates to a scalar at every step.
pub(crate) trait ScalarOperator: Send + Sync + fmt::Debug {
    /// One value per evaluation step.
    fn evaluate(&self, ctx: Arc<EvalContext>) -> BoxFuture<'static, Result<Vec<f64>, QueryError>>;
}

/// A planned expression: scalar or instant-vector valued.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    Scalar(Arc<dyn ScalarOperator>),
    Vector(Arc<dyn VectorOperator>),
}
