//! Query results and the series that flow between operators.

use tidemark_storage::{Labels, Sample};

/// One element of an instant vector result.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    /// Evaluation timestamp, milliseconds since the epoch.
    pub t: i64,
    pub v: f64,
}

/// One series of a matrix (range query) result.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    /// One point per evaluation step at which the series has a value.
    pub points: Vec<Sample>,
}

/// The result of a query, in the shapes of the Prometheus API.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    /// A scalar at the evaluation time of an instant query.
    Scalar { t: i64, v: f64 },
    /// An instant vector, sorted by labels.
    Vector(Vec<InstantSample>),
    /// A range query result, or an instant query of a range vector;
    /// series sorted by labels.
    Matrix(Vec<RangeSeries>),
    /// A string literal at the evaluation time of an instant query.
    String { t: i64, v: String },
}

/// What an evaluation gives besides its value.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub value: QueryValue,
    /// Warnings and infos, as Prometheus words them.
    pub annotations: super::Annotations,
    pub stats: QueryStats,
}

/// Statistics of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QueryStats {
    /// Samples loaded from storage or materialised by operators.
    pub total_samples: u64,
    /// Wall time of planning and evaluation, seconds.
    pub eval_seconds: f64,
}

impl QueryValue {
    /// The `resultType` of the Prometheus API.
    pub fn result_type(&self) -> &'static str {
        match self {
            QueryValue::Scalar { .. } => "scalar",
            QueryValue::Vector(_) => "vector",
            QueryValue::Matrix(_) => "matrix",
            QueryValue::String { .. } => "string",
        }
    }
}

/// A value of a series at one evaluation step (an index into the steps of
/// the query, not a timestamp).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StepValue {
    pub step: usize,
    pub v: f64,
}

/// A series as operators pass it on: labels and its values at the steps
/// where it has one, by step. Never empty.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EvalSeries {
    pub labels: Labels,
    pub points: Vec<StepValue>,
}
