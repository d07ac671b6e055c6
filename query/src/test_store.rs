//! An in-memory [`Queryable`] for tests.

use std::sync::Mutex;

use async_trait::async_trait;
use futures::StreamExt;
use tidemark_storage::matcher::matches_all;
use tidemark_storage::queryable::merge_sorted_strings;
use tidemark_storage::{
    Labels, Matcher, Queryable, Sample, SelectHints, Series, SeriesStream, StorageError,
};

/// Series per tenant, held in memory.
#[derive(Debug, Default)]
pub struct MemStore {
    pub series: Vec<(String, Series)>,
    /// Returned by every call instead of data, when set.
    pub fail_with: Option<StorageError>,
    /// The hints of every select, in order.
    pub selects: Mutex<Vec<SelectHints>>,
}

impl MemStore {
    /// Adds a series (samples sorted by time) for `tenant`.
    pub fn add(&mut self, tenant: &str, labels: Labels, samples: Vec<Sample>) {
        self.series
            .push((tenant.to_owned(), Series { labels, samples }));
    }

    /// Adds a series from `name{k="v",...}`-style pairs and `(t, v)` samples.
    pub fn with(mut self, tenant: &str, pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> Self {
        let samples = samples.iter().map(|&(t, v)| Sample { t, v }).collect();
        self.add(tenant, Labels::from_pairs(pairs.iter().copied()), samples);
        self
    }

    fn matching<'a>(
        &'a self,
        tenant: &'a str,
        matchers: &'a [Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> impl Iterator<Item = Series> + 'a {
        self.series
            .iter()
            .filter(move |(t, s)| t == tenant && matches_all(matchers, &s.labels))
            .filter_map(move |(_, s)| {
                let samples: Vec<Sample> = s
                    .samples
                    .iter()
                    .copied()
                    .filter(|x| x.t >= start_ms && x.t <= end_ms)
                    .collect();
                (!samples.is_empty()).then(|| Series {
                    labels: s.labels.clone(),
                    samples,
                })
            })
    }
}

#[async_trait]
impl Queryable for MemStore {
    async fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        hints: SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        if let Some(e) = &self.fail_with {
            return Err(e.clone());
        }
        if let Ok(mut s) = self.selects.lock() {
            s.push(hints);
        }
        let mut out: Vec<Series> = self
            .matching(tenant, matchers, hints.start_ms, hints.end_ms)
            .collect();
        if hints.labels_only {
            out.iter_mut().for_each(|s| s.samples.clear());
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(futures::stream::iter(out.into_iter().map(Ok)).boxed())
    }

    async fn label_names(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        if let Some(e) = &self.fail_with {
            return Err(e.clone());
        }
        let lists = self
            .matching(tenant, matchers, start_ms, end_ms)
            .map(|s| s.labels.iter().map(|l| l.name.clone()).collect())
            .collect();
        Ok(merge_sorted_strings(lists))
    }

    async fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        if let Some(e) = &self.fail_with {
            return Err(e.clone());
        }
        let lists = self
            .matching(tenant, matchers, start_ms, end_ms)
            .filter_map(|s| s.labels.get(name).map(|v| vec![v.to_owned()]))
            .collect();
        Ok(merge_sorted_strings(lists))
    }
}

/// A store whose selects never finish (for timeouts).
#[derive(Debug, Default)]
pub struct StuckStore;

#[async_trait]
impl Queryable for StuckStore {
    async fn select(
        &self,
        _: &str,
        _: &[Matcher],
        _: SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        futures::future::pending().await
    }

    async fn label_names(
        &self,
        _: &str,
        _: &[Matcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, StorageError> {
        futures::future::pending().await
    }

    async fn label_values(
        &self,
        _: &str,
        _: &str,
        _: &[Matcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, StorageError> {
        futures::future::pending().await
    }
}
