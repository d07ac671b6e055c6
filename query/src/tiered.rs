//! The querier's view of all data: recent time from the ingesters, older
//! time from the store-gateways (blocks), merged with duplicates removed.
//!
//! As in Mimir, ingesters are asked only when the query reaches into the
//! last `query_ingesters_within` (13h), and the store only when it reaches
//! past `query_store_after` (12h) ago; the hour both cover hides the delay
//! between the block-builder's upload and the store-gateway seeing it.
//! Where both answer, series with equal labels are merged by time and
//! equal timestamps kept once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::future::try_join_all;
use tidemark_storage::queryable::{merge_metadata, merge_series_streams, merge_sorted_strings};
use tidemark_storage::{Matcher, MetricMetadata, Queryable, SelectHints, SeriesStream, StorageError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TieredOptions {
    /// Ask ingesters only for queries ending within this of now; zero
    /// always asks them.
    pub query_ingesters_within: Duration,
    /// Ask the store only for queries starting this long before now; zero
    /// always asks it.
    pub query_store_after: Duration,
}

impl Default for TieredOptions {
    fn default() -> Self {
        TieredOptions {
            query_ingesters_within: Duration::from_secs(13 * 3600),
            query_store_after: Duration::from_secs(12 * 3600),
        }
    }
}

pub struct TieredQueryable {
    ingesters: Arc<dyn Queryable>,
    store: Arc<dyn Queryable>,
    opts: TieredOptions,
    now: fn() -> i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

impl TieredQueryable {
    pub fn new(ingesters: Arc<dyn Queryable>, store: Arc<dyn Queryable>, opts: TieredOptions) -> Self {
        TieredQueryable {
            ingesters,
            store,
            opts,
            now: now_ms,
        }
    }

    #[cfg(test)]
    fn with_clock(mut self, now: fn() -> i64) -> Self {
        self.now = now;
        self
    }

    /// Which tiers a query of `[start, end]` reads.
    fn tiers(&self, start: i64, end: i64) -> Vec<&Arc<dyn Queryable>> {
        let now = (self.now)();
        let within = self.opts.query_ingesters_within.as_millis() as i64;
        let after = self.opts.query_store_after.as_millis() as i64;
        let mut out = Vec::with_capacity(2);
        if within == 0 || end >= now - within {
            out.push(&self.ingesters);
        }
        if after == 0 || start <= now - after {
            out.push(&self.store);
        }
        out
    }
}

#[async_trait]
impl Queryable for TieredQueryable {
    async fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        hints: SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        let tiers = self.tiers(hints.start_ms, hints.end_ms);
        let streams = try_join_all(tiers.into_iter().map(|q| q.select(tenant, matchers, hints))).await?;
        Ok(match streams.len() {
            0 => Box::pin(futures::stream::empty()),
            _ => merge_series_streams(streams),
        })
    }

    async fn label_names(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        let tiers = self.tiers(start_ms, end_ms);
        let lists = try_join_all(tiers.into_iter().map(|q| q.label_names(tenant, matchers, start_ms, end_ms))).await?;
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
        let tiers = self.tiers(start_ms, end_ms);
        let lists = try_join_all(
            tiers
                .into_iter()
                .map(|q| q.label_values(tenant, name, matchers, start_ms, end_ms)),
        )
        .await?;
        Ok(merge_sorted_strings(lists))
    }

    /// Only the ingesters read the log.
    async fn wait_consistent(&self, offsets: &[(i32, i64)], timeout: Duration) -> Result<(), StorageError> {
        self.ingesters.wait_consistent(offsets, timeout).await
    }

    /// Metadata lives in the ingesters only.
    async fn metadata(&self, tenant: &str, metric: Option<&str>) -> Result<Vec<MetricMetadata>, StorageError> {
        Ok(merge_metadata(vec![self.ingesters.metadata(tenant, metric).await?]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_store::MemStore;
    use futures::TryStreamExt;
    use tidemark_storage::{Labels, Sample};

    const NOW: i64 = 100 * 3_600_000;

    fn store(points: &[i64]) -> Arc<dyn Queryable> {
        let mut s = MemStore::default();
        s.add(
            "t",
            Labels::from_pairs([("__name__", "m")]),
            points.iter().map(|&t| Sample { t, v: t as f64 }).collect(),
        );
        Arc::new(s)
    }

    async fn times(q: &TieredQueryable, start: i64, end: i64) -> Vec<i64> {
        let s = q
            .select("t", &[Matcher::equal("__name__", "m")], SelectHints::range(start, end))
            .await
            .unwrap();
        let all: Vec<_> = s.try_collect().await.unwrap();
        all.into_iter().flat_map(|s| s.samples).map(|s| s.t).collect()
    }

    #[tokio::test]
    async fn splits_by_time_and_deduplicates_the_overlap() {
        let h = 3_600_000;
        // Ingesters hold the last 14h, blocks everything older than 1h.
        let ing = store(&[NOW - 14 * h, NOW - 12 * h - h / 2, NOW - h / 2]);
        let blocks = store(&[NOW - 20 * h, NOW - 14 * h, NOW - 12 * h - h / 2]);
        let q = TieredQueryable::new(ing, blocks, TieredOptions::default()).with_clock(|| NOW);
        // Recent only: ingesters alone.
        assert_eq!(times(&q, NOW - h, NOW).await, vec![NOW - h / 2]);
        // Old only: store alone.
        assert_eq!(times(&q, NOW - 21 * h, NOW - 19 * h).await, vec![NOW - 20 * h]);
        // Across: both, the shared samples once.
        assert_eq!(
            times(&q, NOW - 24 * h, NOW).await,
            vec![NOW - 20 * h, NOW - 14 * h, NOW - 12 * h - h / 2, NOW - h / 2]
        );
    }
}
