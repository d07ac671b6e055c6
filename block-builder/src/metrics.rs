//! The block-builder's own metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub partition: i32,
}

#[derive(Debug, Clone, Default)]
pub struct BlockBuilderMetrics {
    pub cycles: Counter,
    pub cycle_failures: Counter,
    pub records: Family<PartitionLabels, Counter>,
    pub records_failed: Family<PartitionLabels, Counter>,
    pub samples: Family<PartitionLabels, Counter>,
    pub blocks_uploaded: Counter,
    pub bytes_uploaded: Counter,
    pub committed_offset: Family<PartitionLabels, Gauge>,
    pub lag_records: Family<PartitionLabels, Gauge>,
    pub last_cycle_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl BlockBuilderMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = BlockBuilderMetrics::default();
        let r = registry.sub_registry_with_prefix("tidemark_block_builder");
        r.register("cycles", "Block-builder cycles run", m.cycles.clone());
        r.register("cycle_failures", "Block-builder cycles that failed and will be retried", m.cycle_failures.clone());
        r.register("records_consumed", "Records read from the ingest log", m.records.clone());
        r.register("records_failed", "Records that could not be decoded and were skipped", m.records_failed.clone());
        r.register("samples", "Samples written into blocks", m.samples.clone());
        r.register("blocks_uploaded", "Blocks uploaded to object storage", m.blocks_uploaded.clone());
        r.register("bytes_uploaded", "Bytes of blocks uploaded", m.bytes_uploaded.clone());
        r.register("committed_offset", "Next offset to build, per partition", m.committed_offset.clone());
        r.register("lag_records", "Records not yet in blocks at the end of the last cycle", m.lag_records.clone());
        r.register("last_cycle_duration_seconds", "How long the last cycle took", m.last_cycle_seconds.clone());
        m
    }
}
