//! Block-builder cycles, and building blocks from an offset range (also
//! used by `tidemark block-builder replay`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tidemark_block_storage::format::write_block;
use tidemark_block_storage::meta::{builder_block_id, BlockMeta, BlockSource};
use tidemark_block_storage::upload::upload_block;
use tidemark_ingest_log::IngestLog;
use tidemark_schemas::record::{decode_tenant, decode_version, RecordBody, VERSION_1, VERSION_HEADER};
use tidemark_schemas::scan::RequestSeries;
use tokio_util::sync::CancellationToken;

use crate::accumulate::Accumulator;
use crate::config::BlockBuilderConfig;
use crate::metrics::{BlockBuilderMetrics, PartitionLabels};
use crate::BuilderError;

/// Top-level folder of the bucket for the block-builder's own state; `@`
/// cannot appear in a tenant ID, so it never clashes with a tenant.
pub const STATE_PREFIX: &str = "@tidemark";

/// What building one offset range did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildSummary {
    pub partition: i32,
    pub from_offset: i64,
    pub to_offset: i64,
    pub records: u64,
    pub records_failed: u64,
    pub samples: u64,
    pub blocks: u64,
    pub bytes: u64,
}

/// The offset range a cycle of a partition works on, written to the bucket
/// before consuming so that a redo after a crash covers the same records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Plan {
    from_offset: i64,
    to_offset: i64,
}

pub struct BlockBuilder {
    log: Arc<dyn IngestLog>,
    store: Arc<dyn ObjectStore>,
    cfg: BlockBuilderConfig,
    metrics: BlockBuilderMetrics,
}

impl BlockBuilder {
    pub fn new(
        log: Arc<dyn IngestLog>,
        store: Arc<dyn ObjectStore>,
        cfg: BlockBuilderConfig,
        metrics: BlockBuilderMetrics,
    ) -> Self {
        BlockBuilder { log, store, cfg, metrics }
    }

    fn partitions(&self) -> Vec<i32> {
        if self.cfg.partitions.is_empty() {
            (0..self.log.partition_count()).collect()
        } else {
            self.cfg.partitions.clone()
        }
    }

    /// Runs a cycle at every `consume_interval` boundary until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let interval = self.cfg.consume_interval.as_millis().max(1) as i64;
        tracing::info!(
            partitions = ?self.partitions(),
            interval = ?self.cfg.consume_interval,
            group = %self.cfg.consumer_group,
            "block-builder started"
        );
        loop {
            let boundary = now_ms().div_euclid(interval) * interval;
            let started = Instant::now();
            self.metrics.cycles.inc();
            let wait = match self.run_cycle(boundary).await {
                Ok(_) => {
                    self.metrics
                        .last_cycle_seconds
                        .set(started.elapsed().as_secs_f64());
                    let next = boundary + interval;
                    Duration::from_millis((next - now_ms()).max(0) as u64)
                }
                Err(e) => {
                    self.metrics.cycle_failures.inc();
                    tracing::warn!(error = %e, "block-builder cycle failed; retrying");
                    self.cfg.consume_interval.min(Duration::from_secs(10))
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => {
                    tracing::info!("block-builder stopped");
                    return;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One cycle over every partition: what was written before
    /// `boundary_ms` goes into blocks.
    pub async fn run_cycle(&self, boundary_ms: i64) -> Result<Vec<BuildSummary>, BuilderError> {
        let mut out = Vec::new();
        for p in self.partitions() {
            out.push(self.cycle_partition(p, boundary_ms).await?);
        }
        Ok(out)
    }

    async fn cycle_partition(&self, partition: i32, boundary_ms: i64) -> Result<BuildSummary, BuilderError> {
        let labels = PartitionLabels { partition };
        let group = &self.cfg.consumer_group;
        let earliest = self.log.earliest_offset(partition).await?;
        let latest = self.log.latest_offset(partition).await?;
        let start = match self.log.committed_offset(group, partition).await? {
            Some(o) => {
                if o < earliest {
                    tracing::warn!(partition, committed = o, earliest, "records between the committed offset and the start of the log were deleted before being built into blocks");
                }
                o.max(earliest)
            }
            None => {
                let since = now_ms() - self.cfg.lookback_on_no_commit.as_millis() as i64;
                self.log
                    .offset_for_timestamp(partition, since)
                    .await?
                    .unwrap_or(latest)
                    .max(earliest)
            }
        };
        let plan = match self.read_plan(partition).await? {
            Some(plan) if plan.from_offset == start => {
                tracing::info!(partition, from = plan.from_offset, to = plan.to_offset, "redoing an interrupted block-builder cycle");
                plan
            }
            _ => {
                let end = match self.log.offset_for_timestamp(partition, boundary_ms).await? {
                    Some(o) => o,
                    None => latest,
                };
                if end <= start {
                    self.metrics.lag_records.get_or_create(&labels).set((latest - start).max(0));
                    return Ok(BuildSummary {
                        partition,
                        from_offset: start,
                        to_offset: start,
                        ..Default::default()
                    });
                }
                let plan = Plan { from_offset: start, to_offset: end };
                self.write_plan(partition, plan).await?;
                plan
            }
        };
        let summary = self.build_range(partition, plan.from_offset, plan.to_offset).await?;
        self.log.commit_offset(group, partition, plan.to_offset).await?;
        self.metrics.committed_offset.get_or_create(&labels).set(plan.to_offset);
        let latest = self.log.latest_offset(partition).await?;
        self.metrics
            .lag_records
            .get_or_create(&labels)
            .set((latest - plan.to_offset).max(0));
        if summary.records > 0 {
            tracing::info!(
                partition,
                from = summary.from_offset,
                to = summary.to_offset,
                records = summary.records,
                samples = summary.samples,
                blocks = summary.blocks,
                bytes = summary.bytes,
                "block-builder cycle done; offset committed"
            );
        }
        Ok(summary)
    }

    /// Reads records `[from, to)` of a partition and uploads their blocks.
    /// Commits nothing: the caller does, once this returns.
    pub async fn build_range(&self, partition: i32, from: i64, to: i64) -> Result<BuildSummary, BuilderError> {
        self.build_range_with_progress(partition, from, to, |_, _| {}).await
    }

    /// As [`Self::build_range`], calling `progress(next_offset, to)` as it
    /// consumes.
    pub async fn build_range_with_progress(
        &self,
        partition: i32,
        from: i64,
        to: i64,
        mut progress: impl FnMut(i64, i64),
    ) -> Result<BuildSummary, BuilderError> {
        let labels = PartitionLabels { partition };
        let range_ms = self.cfg.block_range.as_millis() as i64;
        let mut acc = Accumulator::new(range_ms);
        let mut summary = BuildSummary {
            partition,
            from_offset: from,
            to_offset: to,
            ..Default::default()
        };
        let mut reader = self.log.reader(partition, from).await?;
        let mut next = from;
        let mut idle = 0;
        let mut last_log = Instant::now();
        'consume: while next < to {
            let batch = reader.poll(Duration::from_secs(1)).await?;
            if batch.is_empty() {
                idle += 1;
                // Offsets may have gaps (Kafka control records): once the
                // log has nothing more to give, the range is done.
                if idle >= 10 && self.log.latest_offset(partition).await? <= to {
                    tracing::warn!(partition, next, to, "no records left before the end of the range; assuming a gap in offsets");
                    break;
                }
                continue;
            }
            idle = 0;
            for rec in batch {
                if rec.offset >= to {
                    break 'consume;
                }
                next = rec.offset + 1;
                summary.records += 1;
                match add_record(&mut acc, &rec.record) {
                    Ok(()) => {}
                    Err(e) => {
                        summary.records_failed += 1;
                        self.metrics.records_failed.get_or_create(&labels).inc();
                        tracing::warn!(partition, offset = rec.offset, error = %e, "skipping undecodable record");
                    }
                }
            }
            progress(next, to);
            if last_log.elapsed() >= Duration::from_secs(10) {
                tracing::info!(partition, offset = next, to, samples = acc.samples(), "block-builder consuming");
                last_log = Instant::now();
            }
        }
        self.metrics.records.get_or_create(&labels).inc_by(summary.records);
        let source = BlockSource {
            partition,
            from_offset: from,
            to_offset: to,
        };
        for ((tenant, window), series) in acc.into_blocks() {
            if series.is_empty() {
                continue;
            }
            let built = tokio::task::spawn_blocking(move || write_block(&series, window, window + range_ms))
                .await
                .map_err(|e| BuilderError::Other(format!("block encoding panicked: {e}")))??;
            let meta = BlockMeta::new(
                &tenant,
                builder_block_id(&tenant, window, &source),
                window,
                window + range_ms,
                &built,
                vec![source.clone()],
            );
            upload_block(&self.store, &meta, &built).await?;
            summary.blocks += 1;
            summary.samples += built.num_samples;
            summary.bytes += built.parquet.len() as u64;
            self.metrics.blocks_uploaded.inc();
            self.metrics.bytes_uploaded.inc_by(built.parquet.len() as u64);
            tracing::debug!(tenant, block = %meta.block_id, series = meta.num_series, samples = meta.num_samples, "block uploaded");
        }
        self.metrics.samples.get_or_create(&labels).inc_by(summary.samples);
        Ok(summary)
    }

    fn plan_path(partition: i32) -> Path {
        Path::from_iter([STATE_PREFIX, "block-builder", &format!("partition-{partition}.json")])
    }

    async fn read_plan(&self, partition: i32) -> Result<Option<Plan>, BuilderError> {
        match self.store.get(&Self::plan_path(partition)).await {
            Ok(r) => {
                let bytes = r.bytes().await?;
                Ok(serde_json::from_slice(&bytes).ok())
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_plan(&self, partition: i32, plan: Plan) -> Result<(), BuilderError> {
        let json = serde_json::to_vec(&plan).map_err(|e| BuilderError::Other(e.to_string()))?;
        self.store
            .put(&Self::plan_path(partition), PutPayload::from(json))
            .await?;
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

/// Adds a record's series to the accumulator. A version 1 body is read in
/// place (labels as views into it); other versions are decoded. Nothing is
/// added from a record that does not read whole.
fn add_record(acc: &mut Accumulator, record: &tidemark_ingest_log::Record) -> Result<(), String> {
    let tenant = decode_tenant(&record.key).map_err(|e| e.to_string())?;
    let version = decode_version(record.header(VERSION_HEADER)).map_err(|e| e.to_string())?;
    if version != VERSION_1 {
        let body = RecordBody::decode(version, record.value.clone()).map_err(|e| e.to_string())?;
        acc.add(tenant, body.into_timeseries());
        return Ok(());
    }
    let read = RequestSeries::read(&record.value).map_err(|e| e.to_string())?;
    for s in read.iter() {
        acc.add_series(tenant, s.label_views().map(|l| (l.name, l.value)), s.samples.iter().copied());
    }
    Ok(())
}
