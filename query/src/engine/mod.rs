//! A streaming PromQL engine.
//!
//! Queries are parsed with `promql-parser` and planned into a tree of
//! operators ([`operator`]) that pass series one at a time as async
//! streams; instant queries are range queries with one step.
//!
//! Supported so far: vector selectors (all matcher types, `offset`,
//! lookback delta, staleness markers); the range-vector functions `rate`,
//! `increase`, `delta`, `irate`, `idelta`, `changes`, `resets`, `deriv`,
//! `predict_linear` and `avg`/`min`/`max`/`sum`/`count`/`last`/`present`/
//! `stddev`/`stdvar`/`quantile`/`absent` `_over_time`; the instant-vector
//! functions `abs`, `ceil`, `floor`, `exp`, `ln`, `log2`, `log10`, `sqrt`,
//! `sgn`, `round`, `clamp`, `clamp_min`, `clamp_max`, `timestamp`,
//! trigonometry, `rad`, `deg`, the date functions (`year`, `month`,
//! `day_of_month`, `day_of_week`, `day_of_year`, `days_in_month`, `hour`,
//! `minute`), `label_replace`, `label_join`, `sort`, `sort_desc`, `absent`,
//! and `vector`, `scalar`, `time`, `pi`, `min_of`, `max_of`;
//! `sum`/`avg`/`min`/`max`/`count`/`group`/`stddev`/`stdvar`/`topk`/
//! `bottomk`/`quantile`/`count_values` with `by`/`without`; arithmetic
//! (`+ - * / % ^`) and comparisons (`== != > < >= <=`, with or without
//! `bool`) between scalars, between a vector and a scalar, and between two
//! vectors with one-to-one or many-to-one matching (`on`, `ignoring`,
//! `group_left`, `group_right`); the set operators `and`, `or`, `unless`;
//! unary minus, number literals and parentheses. Everything else is
//! refused with [`QueryError::Unsupported`].

mod aggregate;
mod aggregate_param;
mod arithmetic;
mod binary;
mod collect;
mod comparison;
mod context;
mod dedup;
mod error;
mod functions;
mod histogram;
mod instant_function;
mod kahan;
mod label_function;
mod operator;
mod plan;
mod position;
mod range_input;
mod annotations;
mod range_function;
mod selector;
mod value;

#[cfg(test)]
mod promqltest;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::Expr;
use serde::{Deserialize, Serialize};
use tidemark_storage::Queryable;

pub use annotations::Annotations;
pub use error::{ErrorKind, QueryError, DUPLICATE_LABELSET, TOO_MANY_POINTS, TOO_MANY_SAMPLES};
pub use value::{InstantSample, QueryResult, QueryStats, QueryValue, RangeSeries};

pub(crate) use selector::parse_series_selector;

use annotations::AnnotationSink;
use collect::{collect, Shape};
use context::{EvalContext, SampleBudget};
use position::Positions;

/// Most steps a range query may have, beyond the first: Prometheus'
/// resolution limit.
pub const MAX_STEPS: i64 = 11_000;

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineOptions {
    /// How far back an instant vector selector looks for a sample.
    #[serde(with = "humantime_serde")]
    pub lookback_delta: Duration,
    /// Most samples a query may load from storage and materialise (per-step
    /// values of aggregation groups and of the result) in total.
    pub max_samples: usize,
    /// Longest a query may run.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Resolution of subqueries that give none (`x[1h:]`): Prometheus'
    /// global evaluation interval.
    #[serde(with = "humantime_serde", rename = "default_evaluation_interval")]
    pub default_subquery_step: Duration,
    /// Whether functions Prometheus marks experimental (behind its
    /// `promql-experimental-functions` feature flag) are enabled.
    pub experimental_functions: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: Duration::from_secs(5 * 60),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(2 * 60),
            default_subquery_step: Duration::from_secs(60),
            experimental_functions: false,
        }
    }
}

/// Per-query overrides of [`EngineOptions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// Lookback delta for this query; `None` or zero for the engine's.
    pub lookback_delta: Option<Duration>,
    /// Timeout for this query; capped at the engine's.
    pub timeout: Option<Duration>,
}

/// Evaluates PromQL queries against a [`Queryable`].
#[derive(Clone)]
pub struct Engine {
    queryable: Arc<dyn Queryable>,
    options: EngineOptions,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(queryable: Arc<dyn Queryable>, options: EngineOptions) -> Self {
        Engine { queryable, options }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Evaluates `query` for `tenant` at `time_ms`: a scalar, a vector, a
    /// matrix (of a range selector or subquery) or a string.
    pub async fn instant_query(
        &self,
        tenant: &str,
        query: &str,
        time_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryValue, QueryError> {
        Ok(self
            .instant_query_result(tenant, query, time_ms, opts)
            .await?
            .value)
    }

    /// [`Engine::instant_query`] with the annotations and statistics of
    /// the evaluation.
    pub async fn instant_query_result(
        &self,
        tenant: &str,
        query: &str,
        time_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        let expr = parse(query)?;
        self.run(tenant, query, &expr, time_ms, 1, 1, opts, Shape::Instant)
            .await
    }

    /// Evaluates `query` for `tenant` at every `step_ms` from `start_ms` to
    /// `end_ms` inclusive: a matrix.
    pub async fn range_query(
        &self,
        tenant: &str,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryValue, QueryError> {
        Ok(self
            .range_query_result(tenant, query, start_ms, end_ms, step_ms, opts)
            .await?
            .value)
    }

    /// [`Engine::range_query`] with the annotations and statistics of the
    /// evaluation.
    pub async fn range_query_result(
        &self,
        tenant: &str,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        let num_steps = range_steps(start_ms, end_ms, step_ms)?;
        let expr = parse(query)?;
        match expr.value_type() {
            ValueType::Scalar | ValueType::Vector => {}
            other => {
                let name = if other == ValueType::Matrix {
                    "range vector"
                } else {
                    "string"
                };
                return Err(QueryError::BadData(format!(
                    "invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
                )));
            }
        }
        self.run(
            tenant,
            query,
            &expr,
            start_ms,
            step_ms,
            num_steps,
            opts,
            Shape::Range,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        tenant: &str,
        query: &str,
        expr: &Expr,
        start: i64,
        interval: i64,
        num_steps: usize,
        opts: &QueryOptions,
        shape: Shape,
    ) -> Result<QueryResult, QueryError> {
        let began = Instant::now();
        let positions = Positions::new(query, expr);
        let annotations = Arc::new(AnnotationSink::default());
        let end = start.saturating_add(interval.saturating_mul(num_steps as i64 - 1));
        let planner = plan::Planner {
            positions: &positions,
            start,
            end,
            range_query: shape == Shape::Range,
            default_subquery_step_ms: selector::duration_ms(&self.options.default_subquery_step),
            annotations: &annotations,
            experimental_functions: self.options.experimental_functions,
        };
        let plan = plan::plan(expr, &planner)?;
        let lookback = opts
            .lookback_delta
            .filter(|d| !d.is_zero())
            .or(Some(self.options.lookback_delta).filter(|d| !d.is_zero()))
            .unwrap_or(Duration::from_secs(5 * 60));
        let timeout = opts
            .timeout
            .map_or(self.options.timeout, |t| t.min(self.options.timeout));
        let ctx = Arc::new(EvalContext {
            tenant: tenant.to_owned(),
            queryable: self.queryable.clone(),
            start,
            interval,
            num_steps,
            lookback_ms: selector::duration_ms(&lookback),
            budget: Arc::new(SampleBudget::new(self.options.max_samples)),
            annotations: annotations.clone(),
        });
        let result = match tokio::time::timeout(timeout, collect(plan, ctx.clone(), shape)).await {
            Ok(r) => r,
            Err(_) => Err(QueryError::Timeout),
        };
        tracing::debug!(
            tenant,
            query,
            steps = num_steps,
            samples = ctx.budget.used(),
            elapsed_ms = began.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "query evaluated"
        );
        Ok(QueryResult {
            value: result?,
            annotations: annotations.take(),
            stats: QueryStats {
                total_samples: ctx.budget.used() as u64,
                eval_seconds: began.elapsed().as_secs_f64(),
            },
        })
    }
}

/// Number of steps of a range query, checking the range as Prometheus does.
fn range_steps(start_ms: i64, end_ms: i64, step_ms: i64) -> Result<usize, QueryError> {
    if end_ms < start_ms {
        return Err(QueryError::BadData(
            "end timestamp must not be before start time".to_owned(),
        ));
    }
    if step_ms <= 0 {
        return Err(QueryError::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
                .to_owned(),
        ));
    }
    let intervals = (end_ms as i128 - start_ms as i128) / step_ms as i128;
    if intervals > MAX_STEPS as i128 {
        return Err(QueryError::BadData(TOO_MANY_POINTS.to_owned()));
    }
    // At most MAX_STEPS + 1, so the conversion cannot fail.
    Ok(usize::try_from(intervals + 1).unwrap_or(usize::MAX))
}

/// Parses a query, turning parser failures (panics included) into errors.
pub fn parse(query: &str) -> Result<Expr, QueryError> {
    match std::panic::catch_unwind(|| promql_parser::parser::parse(query)) {
        Ok(Ok(expr)) => Ok(expr),
        Ok(Err(msg)) => Err(QueryError::Parse(msg)),
        Err(_) => Err(QueryError::Parse("invalid query".to_owned())),
    }
}
