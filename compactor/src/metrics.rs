//! The compactor's own metrics.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Default)]
pub struct CompactorMetrics {
    pub runs: Counter,
    pub run_failures: Counter,
    pub compactions: Counter,
    pub blocks_compacted: Counter,
    pub blocks_marked: Counter,
    pub blocks_deleted: Counter,
    pub last_run_seconds: Gauge<f64, AtomicU64>,
}

impl CompactorMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = CompactorMetrics::default();
        let r = registry.sub_registry_with_prefix("tidemark_compactor");
        r.register("runs", "Compaction runs", m.runs.clone());
        r.register("run_failures", "Compaction runs that failed", m.run_failures.clone());
        r.register("compactions", "Merges of blocks into one", m.compactions.clone());
        r.register("blocks_compacted", "Source blocks merged", m.blocks_compacted.clone());
        r.register("blocks_marked_for_deletion", "Blocks marked for deletion (replaced or past retention)", m.blocks_marked.clone());
        r.register("blocks_deleted", "Blocks deleted after the deletion delay", m.blocks_deleted.clone());
        r.register("last_run_duration_seconds", "How long the last run took", m.last_run_seconds.clone());
        m
    }
}
