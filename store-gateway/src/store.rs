//! Queries over the blocks of the bucket index, through bounded caches.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_array::{Array, BinaryArray};
use futures::TryStreamExt;
use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use moka::sync::Cache;
use tidemark_block_storage::index::{BucketIndex, IndexedBlock};
use tidemark_block_storage::reader::{BlockReader, RowGroupSeries};
use tidemark_block_storage::select::{matching_rows, select_series, RowGroupSource};
use tidemark_block_storage::BlockMeta;
use tidemark_storage::queryable::merge_series_streams;
use tidemark_storage::{Matcher, Queryable, SelectHints, SeriesStream, StorageError};
use tokio_util::sync::CancellationToken;

use crate::config::StoreGatewayConfig;
use crate::metrics::{CacheLabels, StoreGatewayMetrics};

type BlockKey = (String, String);
type RowGroupKey = (String, String, usize);
type ColumnKey = (String, String, usize, usize);

struct Inner {
    index: Arc<BucketIndex>,
    cfg: StoreGatewayConfig,
    readers: Cache<BlockKey, Arc<BlockReader>>,
    series: Cache<RowGroupKey, Arc<RowGroupSeries>>,
    chunks: Cache<ColumnKey, Arc<BinaryArray>>,
    metrics: StoreGatewayMetrics,
}

/// Reads the blocks of every tenant; cheap to clone.
#[derive(Clone)]
pub struct BlockStore {
    inner: Arc<Inner>,
}

fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX).max(1)
}

impl BlockStore {
    pub fn new(index: Arc<BucketIndex>, cfg: StoreGatewayConfig, metrics: StoreGatewayMetrics) -> Self {
        let readers = Cache::builder()
            .max_capacity(cfg.metadata_cache_max_bytes)
            .weigher(|_: &BlockKey, r: &Arc<BlockReader>| weight(r.heap_bytes()))
            .build();
        let series = Cache::builder()
            .max_capacity(cfg.series_cache_max_bytes)
            .weigher(|_: &RowGroupKey, s: &Arc<RowGroupSeries>| weight(s.heap_bytes()))
            .build();
        let chunks = Cache::builder()
            .max_capacity(cfg.chunks_cache_max_bytes)
            .weigher(|_: &ColumnKey, c: &Arc<BinaryArray>| weight(c.get_array_memory_size()))
            .build();
        BlockStore {
            inner: Arc::new(Inner {
                index,
                cfg,
                readers,
                series,
                chunks,
                metrics,
            }),
        }
    }

    pub fn index(&self) -> &Arc<BucketIndex> {
        &self.inner.index
    }

    /// Refreshes the bucket index once.
    pub async fn sync(&self) -> Result<(), StorageError> {
        let m = &self.inner.metrics;
        m.syncs.inc();
        match self.inner.index.sync().await {
            Ok(stats) => {
                m.blocks.set(stats.blocks as i64);
                m.tenants.set(stats.tenants as i64);
                if stats.new_blocks > 0 {
                    tracing::info!(
                        tenants = stats.tenants,
                        blocks = stats.blocks,
                        new = stats.new_blocks,
                        "bucket index refreshed"
                    );
                }
                Ok(())
            }
            Err(e) => {
                m.sync_failures.inc();
                Err(e.into())
            }
        }
    }

    /// The blocks of `tenant` a query of `[start, end]` reads: overlapping,
    /// and not replaced long enough ago for their replacement to be seen.
    fn blocks_for(&self, tenant: &str, start: i64, end: i64) -> Vec<Arc<BlockMeta>> {
        let delay = self.inner.cfg.ignore_deletion_marks_delay.as_millis() as i64;
        let now = now_ms();
        self.inner
            .index
            .blocks(tenant)
            .iter()
            .filter(|b: &&IndexedBlock| b.meta.overlaps(start, end))
            .filter(|b| b.deletion_mark.is_none_or(|t| now - t < delay))
            .map(|b| b.meta.clone())
            .collect()
    }

    async fn reader(&self, meta: &Arc<BlockMeta>) -> Result<Arc<BlockReader>, StorageError> {
        let key = (meta.tenant.clone(), meta.block_id.clone());
        if let Some(r) = self.inner.readers.get(&key) {
            self.hit("blocks");
            return Ok(r);
        }
        self.miss("blocks");
        let r = Arc::new(
            BlockReader::open(self.inner.index.store().clone(), meta.clone()).await?,
        );
        self.inner.readers.insert(key, r.clone());
        Ok(r)
    }

    async fn row_group_series(&self, r: &BlockReader, rg: usize) -> Result<Arc<RowGroupSeries>, StorageError> {
        let key = (r.meta.tenant.clone(), r.meta.block_id.clone(), rg);
        if let Some(s) = self.inner.series.get(&key) {
            self.hit("series");
            return Ok(s);
        }
        self.miss("series");
        let s = Arc::new(r.read_series(rg).await?);
        self.inner.series.insert(key, s.clone());
        Ok(s)
    }

    async fn chunk_column(&self, r: &BlockReader, rg: usize, slice: usize) -> Result<Arc<BinaryArray>, StorageError> {
        let key = (r.meta.tenant.clone(), r.meta.block_id.clone(), rg, slice);
        if let Some(c) = self.inner.chunks.get(&key) {
            self.hit("chunks");
            return Ok(c);
        }
        self.miss("chunks");
        let c = Arc::new(r.read_chunk_column(rg, slice).await?);
        self.inner.chunks.insert(key, c.clone());
        Ok(c)
    }

    fn hit(&self, cache: &'static str) {
        self.inner.metrics.cache_hits.get_or_create(&CacheLabels { cache }).inc();
    }

    fn miss(&self, cache: &'static str) {
        self.inner.metrics.cache_misses.get_or_create(&CacheLabels { cache }).inc();
    }

    /// The row groups of a block that may hold matching series, with the
    /// rows that do.
    async fn matching_rows(
        &self,
        r: &BlockReader,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<(Arc<RowGroupSeries>, Vec<usize>)>, StorageError> {
        let mut out = Vec::new();
        for rg in 0..r.num_row_groups() {
            if !r.row_group_may_match(rg, matchers, start, end) {
                self.inner.metrics.row_groups_skipped.inc();
                continue;
            }
            self.inner.metrics.row_groups_read.inc();
            let s = self.row_group_series(r, rg).await?;
            let rows = matching_rows(&s, matchers, start, end);
            if !rows.is_empty() {
                out.push((s, rows));
            }
        }
        Ok(out)
    }

    /// The matching series of one block, sorted by labels, one row group in
    /// memory at a time, read through the caches.
    fn block_series(&self, meta: Arc<BlockMeta>, matchers: Vec<Matcher>, hints: SelectHints) -> SeriesStream {
        let store = self.clone();
        Box::pin(
            futures::stream::once(async move {
                let reader = store.reader(&meta).await?;
                Ok::<_, StorageError>(select_series(Arc::new(CachedBlock { store, reader }), matchers, hints))
            })
            .try_flatten(),
        )
    }

    async fn collect_labels(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        mut each: impl FnMut(&tidemark_storage::Labels),
    ) -> Result<(), StorageError> {
        for meta in self.blocks_for(tenant, start, end) {
            let r = self.reader(&meta).await?;
            for (s, rows) in self.matching_rows(&r, matchers, start, end).await? {
                for row in rows {
                    each(&s.labels[row]);
                }
            }
        }
        Ok(())
    }
}

/// A block read through the store's caches.
struct CachedBlock {
    store: BlockStore,
    reader: Arc<BlockReader>,
}

#[async_trait]
impl RowGroupSource for CachedBlock {
    fn reader(&self) -> &BlockReader {
        &self.reader
    }
    async fn series(&self, rg: usize) -> Result<Arc<RowGroupSeries>, StorageError> {
        self.store.row_group_series(&self.reader, rg).await
    }
    async fn column(&self, rg: usize, slice: usize) -> Result<Arc<BinaryArray>, StorageError> {
        self.store.chunk_column(&self.reader, rg, slice).await
    }
    fn row_group_visited(&self, read: bool) {
        let m = &self.store.inner.metrics;
        if read {
            m.row_groups_read.inc();
        } else {
            m.row_groups_skipped.inc();
        }
    }
    fn series_returned(&self) {
        self.store.inner.metrics.series_returned.inc();
    }
}

#[async_trait]
impl Queryable for BlockStore {
    async fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        hints: SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        let streams: Vec<SeriesStream> = self
            .blocks_for(tenant, hints.start_ms, hints.end_ms)
            .into_iter()
            .map(|meta| self.block_series(meta, matchers.to_vec(), hints))
            .collect();
        if streams.is_empty() {
            return Ok(Box::pin(stream::empty()));
        }
        Ok(merge_series_streams(streams).boxed())
    }

    async fn label_names(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut names = BTreeSet::new();
        self.collect_labels(tenant, matchers, start_ms, end_ms, |l| {
            for x in l.iter() {
                if !names.contains(&x.name) {
                    names.insert(x.name.clone());
                }
            }
        })
        .await?;
        Ok(names.into_iter().collect())
    }

    async fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut values = BTreeSet::new();
        self.collect_labels(tenant, matchers, start_ms, end_ms, |l| {
            if let Some(v) = l.get(name) {
                if !values.contains(v) {
                    values.insert(v.to_owned());
                }
            }
        })
        .await?;
        Ok(values.into_iter().collect())
    }
}

/// Refreshes the bucket index every `sync_interval` until cancelled.
pub async fn run_sync(store: BlockStore, cancel: CancellationToken) {
    let interval = store.inner.cfg.sync_interval;
    loop {
        if let Err(e) = store.sync().await {
            tracing::warn!(error = %e, "bucket index refresh failed; keeping the previous index");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}
