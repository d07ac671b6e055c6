//! What every operator of one query evaluation shares.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tidemark_storage::Queryable;

use super::annotations::AnnotationSink;
use super::error::{QueryError, TOO_MANY_SAMPLES};

/// The evaluation of one query: where to read, and at which steps.
pub(crate) struct EvalContext {
    pub tenant: String,
    pub queryable: Arc<dyn Queryable>,
    /// First evaluation timestamp, ms.
    pub start: i64,
    /// Milliseconds between steps (positive; 1 for instant queries).
    pub interval: i64,
    /// Number of evaluation steps (1 for instant queries).
    pub num_steps: usize,
    /// Lookback delta of instant vector selectors, ms.
    pub lookback_ms: i64,
    /// Shared by the whole query, subqueries included.
    pub budget: Arc<SampleBudget>,
    /// Shared by the whole query, subqueries included.
    pub annotations: Arc<AnnotationSink>,
}

impl EvalContext {
    /// Timestamp of a step, ms.
    pub fn step_time(&self, step: usize) -> i64 {
        self.start
            .saturating_add((step as i64).saturating_mul(self.interval))
    }

    /// A context for other steps (a subquery's), sharing this one's
    /// storage, limits and annotations.
    pub fn child(&self, start: i64, interval: i64, num_steps: usize) -> Arc<EvalContext> {
        Arc::new(EvalContext {
            tenant: self.tenant.clone(),
            queryable: self.queryable.clone(),
            start,
            interval,
            num_steps,
            lookback_ms: self.lookback_ms,
            budget: self.budget.clone(),
            annotations: self.annotations.clone(),
        })
    }

    /// A context for tests: one tenant, an empty store unless given.
    #[cfg(test)]
    pub fn for_test(start: i64, interval: i64, num_steps: usize, lookback_ms: i64) -> EvalContext {
        EvalContext {
            tenant: "t".into(),
            queryable: Arc::new(crate::test_store::MemStore::default()),
            start,
            interval,
            num_steps,
            lookback_ms,
            budget: Arc::new(SampleBudget::new(usize::MAX)),
            annotations: Arc::default(),
        }
    }
}

/// Counts the samples a query holds or has held: samples loaded from
/// storage and per-step values materialised by operators (aggregation
/// groups, the final result). Fails the query once the count exceeds the
/// limit, so that no query can grow memory without bound.
pub(crate) struct SampleBudget {
    used: AtomicUsize,
    max: usize,
}

impl SampleBudget {
    pub fn new(max: usize) -> Self {
        SampleBudget {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Accounts for `n` more samples.
    pub fn charge(&self, n: usize) -> Result<(), QueryError> {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.max {
            return Err(QueryError::Execution(TOO_MANY_SAMPLES.to_owned()));
        }
        Ok(())
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Samples accounted for so far.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_fails_past_the_limit() {
        let b = SampleBudget::new(10);
        assert!(b.charge(4).is_ok());
        assert!(b.charge(6).is_ok());
        let err = b.charge(1).unwrap_err();
        assert_eq!(err.to_string(), TOO_MANY_SAMPLES);
    }
}
