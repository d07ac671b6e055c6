//! The compactor: keeps each tenant's blocks few and large.
//!
//! Every `compaction_interval` it refreshes the bucket index and, per
//! tenant:
//! 1. deletes blocks marked for deletion longer than `deletion_delay` ago
//!    (`meta.json` first, so a half-deleted block is invisible);
//! 2. marks blocks entirely older than the tenant's retention;
//! 3. for each block range (2h, 12h, 24h by default), merges the blocks
//!    that fall in one aligned window of that range, once the window has
//!    ended at least `wait_period` ago: series merged by labels, samples by
//!    time with duplicates dropped (the same sample from several partitions,
//!    cycles or a replay), into one block whose ID derives from its
//!    sources, so a redo writes the same block. The sources are then
//!    marked for deletion; queriers stop reading them after the
//!    store-gateway's `ignore_deletion_marks_delay`, in the meantime the
//!    query path removes the duplicates.

pub mod config;
pub mod metrics;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tidemark_block_storage::format::{BlockSeries, BlockWriter};
use tidemark_block_storage::index::IndexedBlock;
use tidemark_block_storage::meta::{
    compacted_block_id, deletion_mark_path, meta_path, BlockMeta, DeletionMark,
};
use tidemark_block_storage::reader::BlockReader;
use tidemark_block_storage::select::select_series;
use tidemark_block_storage::upload::upload_block;
use tidemark_block_storage::{BlockError, BucketIndex};
use tidemark_storage::queryable::merge_series_streams;
use tidemark_storage::{SelectHints, StorageError};
use tokio_util::sync::CancellationToken;

pub use config::CompactorConfig;
pub use metrics::CompactorMetrics;

#[derive(Debug, thiserror::Error)]
pub enum CompactorError {
    #[error("block storage: {0}")]
    Blocks(#[from] BlockError),
    #[error("object storage: {0}")]
    Bucket(#[from] object_store::Error),
    #[error("reading blocks: {0}")]
    Read(#[from] StorageError),
    #[error("{0}")]
    Other(String),
}

/// A tenant's retention; zero keeps everything.
pub type RetentionFn = Arc<dyn Fn(&str) -> Duration + Send + Sync>;

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub tenants: usize,
    pub compactions: usize,
    pub blocks_compacted: usize,
    pub marked_for_retention: usize,
    pub deleted: usize,
}

pub struct Compactor {
    index: BucketIndex,
    cfg: CompactorConfig,
    retention: RetentionFn,
    metrics: CompactorMetrics,
}

impl Compactor {
    /// A compactor whose retention is the configured one for every tenant.
    pub fn new(store: Arc<dyn ObjectStore>, cfg: CompactorConfig, metrics: CompactorMetrics) -> Self {
        let period = cfg.blocks_retention_period;
        Self::with_retention(store, cfg, Arc::new(move |_: &str| period), metrics)
    }

    /// A compactor with a retention per tenant.
    pub fn with_retention(
        store: Arc<dyn ObjectStore>,
        cfg: CompactorConfig,
        retention: RetentionFn,
        metrics: CompactorMetrics,
    ) -> Self {
        Compactor {
            index: BucketIndex::new(store),
            cfg,
            retention,
            metrics,
        }
    }

    fn store(&self) -> &Arc<dyn ObjectStore> {
        self.index.store()
    }

    /// Runs every `compaction_interval` until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        tracing::info!(interval = ?self.cfg.compaction_interval, ranges = ?self.cfg.block_ranges, "compactor started");
        loop {
            let started = Instant::now();
            self.metrics.runs.inc();
            match self.run_once(now_ms()).await {
                Ok(s) => {
                    self.metrics.last_run_seconds.set(started.elapsed().as_secs_f64());
                    if s.compactions + s.deleted + s.marked_for_retention > 0 {
                        tracing::info!(
                            tenants = s.tenants,
                            compactions = s.compactions,
                            blocks_compacted = s.blocks_compacted,
                            marked_for_retention = s.marked_for_retention,
                            deleted = s.deleted,
                            "compaction run done"
                        );
                    }
                }
                Err(e) => {
                    self.metrics.run_failures.inc();
                    tracing::warn!(error = %e, "compaction run failed; retrying at the next interval");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.cfg.compaction_interval) => {}
            }
        }
    }

    /// One pass over every tenant, as if the time were `now_ms`.
    pub async fn run_once(&self, now_ms: i64) -> Result<RunSummary, CompactorError> {
        self.index.sync().await?;
        let mut summary = RunSummary::default();
        for tenant in self.index.tenants() {
            summary.tenants += 1;
            self.tenant(&tenant, now_ms, &mut summary).await?;
        }
        Ok(summary)
    }

    async fn tenant(&self, tenant: &str, now: i64, summary: &mut RunSummary) -> Result<(), CompactorError> {
        let blocks = self.index.blocks(tenant);
        let delay = self.cfg.deletion_delay.as_millis() as i64;
        let mut live: Vec<Arc<BlockMeta>> = Vec::new();
        for b in blocks.iter() {
            match b.deletion_mark {
                Some(t) if now - t >= delay => {
                    self.delete_block(&b.meta).await?;
                    summary.deleted += 1;
                    self.metrics.blocks_deleted.inc();
                }
                Some(_) => {}
                None => live.push(b.meta.clone()),
            }
        }
        let retention = (self.retention)(tenant).as_millis() as i64;
        if retention > 0 {
            let mut kept = Vec::with_capacity(live.len());
            for m in live {
                if m.max_time <= now - retention {
                    self.mark(&m, now).await?;
                    summary.marked_for_retention += 1;
                    self.metrics.blocks_marked.inc();
                } else {
                    kept.push(m);
                }
            }
            live = kept;
        }
        let wait = self.cfg.wait_period.as_millis() as i64;
        for range in &self.cfg.block_ranges {
            let range = range.as_millis() as i64;
            while let Some((window, group)) = next_group(&live, range, now - wait) {
                let merged = self.merge(tenant, &group, window, window + range).await?;
                summary.compactions += 1;
                summary.blocks_compacted += group.len();
                self.metrics.compactions.inc();
                self.metrics.blocks_compacted.inc_by(group.len() as u64);
                for src in &group {
                    self.mark(src, now).await?;
                    self.metrics.blocks_marked.inc();
                }
                let ids: BTreeSet<&str> = group.iter().map(|m| m.block_id.as_str()).collect();
                live.retain(|m| !ids.contains(m.block_id.as_str()));
                live.push(Arc::new(merged));
            }
        }
        Ok(())
    }

    /// Merges blocks into one block of `[min_time, max_time)`.
    async fn merge(
        &self,
        tenant: &str,
        sources: &[Arc<BlockMeta>],
        min_time: i64,
        max_time: i64,
    ) -> Result<BlockMeta, CompactorError> {
        let started = Instant::now();
        let mut readers = Vec::with_capacity(sources.len());
        let mut names = BTreeSet::new();
        for m in sources {
            let r = BlockReader::open(self.store().clone(), m.clone()).await?;
            names.extend(r.label_names().map(str::to_owned));
            readers.push(Arc::new(r));
        }
        let streams = readers
            .into_iter()
            .map(|r| {
                let hints = SelectHints::range(r.meta.min_time, r.meta.max_time - 1);
                select_series(r, Vec::new(), hints)
            })
            .collect();
        let mut merged = merge_series_streams(streams);
        let mut writer = BlockWriter::new(min_time, max_time, names.iter().map(String::as_str))?;
        while let Some(s) = merged.try_next().await? {
            writer.push(BlockSeries {
                labels: s.labels,
                samples: s.samples,
            })?;
        }
        let built = tokio::task::spawn_blocking(move || writer.finish())
            .await
            .map_err(|e| CompactorError::Other(format!("block encoding panicked: {e}")))??;
        let ids: Vec<String> = sources.iter().map(|m| m.block_id.clone()).collect();
        let level = sources.iter().map(|m| m.compaction_level).max().unwrap_or(1) + 1;
        let mut block_sources: Vec<_> = sources.iter().flat_map(|m| m.sources.iter().cloned()).collect();
        block_sources.sort();
        block_sources.dedup();
        let meta = BlockMeta {
            compaction_level: level,
            compacted_from: ids.clone(),
            ..BlockMeta::new(
                tenant,
                compacted_block_id(min_time, level, &ids),
                min_time,
                max_time,
                &built,
                block_sources,
            )
        };
        upload_block(self.store(), &meta, &built).await?;
        tracing::info!(
            tenant,
            block = %meta.block_id,
            sources = sources.len(),
            series = meta.num_series,
            samples = meta.num_samples,
            took = ?started.elapsed(),
            "blocks compacted"
        );
        Ok(meta)
    }

    async fn mark(&self, meta: &BlockMeta, now: i64) -> Result<(), CompactorError> {
        let mark = DeletionMark {
            block_id: meta.block_id.clone(),
            deletion_time: now,
        };
        let json = serde_json::to_vec(&mark).map_err(|e| CompactorError::Other(e.to_string()))?;
        self.store()
            .put(&deletion_mark_path(&meta.tenant, &meta.block_id), PutPayload::from(json))
            .await?;
        Ok(())
    }

    /// Deletes a block: `meta.json` first, so that it is invisible from
    /// the first deletion on.
    async fn delete_block(&self, meta: &BlockMeta) -> Result<(), CompactorError> {
        let store = self.store();
        match store.delete(&meta_path(&meta.tenant, &meta.block_id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let prefix = object_store::path::Path::from_iter([meta.tenant.as_str(), meta.block_id.as_str()]);
        let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
        let mut deletes = futures::stream::iter(objects)
            .map(|o| async move { store.delete(&o.location).await })
            .buffer_unordered(8);
        while let Some(r) = deletes.next().await {
            match r {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(tenant = %meta.tenant, block = %meta.block_id, "block deleted");
        Ok(())
    }
}

/// The first window of `range` (aligned, ended before `ready_before`) that
/// holds two or more blocks no larger than the range, with those blocks.
fn next_group(live: &[Arc<BlockMeta>], range: i64, ready_before: i64) -> Option<(i64, Vec<Arc<BlockMeta>>)> {
    let mut windows: std::collections::BTreeMap<i64, Vec<Arc<BlockMeta>>> = Default::default();
    for m in live {
        let window = m.min_time.div_euclid(range) * range;
        if m.max_time - m.min_time <= range && m.max_time <= window + range && window + range <= ready_before {
            windows.entry(window).or_default().push(m.clone());
        }
    }
    windows.into_iter().find(|(_, g)| g.len() >= 2)
}

/// Exposed for tests: the blocks the index shows for a tenant.
pub async fn visible_blocks(store: &Arc<dyn ObjectStore>, tenant: &str) -> Result<Vec<IndexedBlock>, CompactorError> {
    let index = BucketIndex::new(store.clone());
    index.sync().await?;
    Ok(index.blocks(tenant).to_vec())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}
