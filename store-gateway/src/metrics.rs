//! The store-gateway's own metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct StoreGatewayMetrics {
    pub cache_hits: Family<CacheLabels, Counter>,
    pub cache_misses: Family<CacheLabels, Counter>,
    pub blocks: Gauge,
    pub tenants: Gauge,
    pub syncs: Counter,
    pub sync_failures: Counter,
    pub row_groups_read: Counter,
    pub row_groups_skipped: Counter,
    pub series_returned: Counter,
}

impl StoreGatewayMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = StoreGatewayMetrics::default();
        let r = registry.sub_registry_with_prefix("tidemark_store_gateway");
        r.register("cache_hits", "Cache lookups that found the entry", m.cache_hits.clone());
        r.register("cache_misses", "Cache lookups that read the bucket", m.cache_misses.clone());
        r.register("blocks_loaded", "Blocks in the bucket index", m.blocks.clone());
        r.register("tenants", "Tenants in the bucket index", m.tenants.clone());
        r.register("bucket_syncs", "Bucket index refreshes", m.syncs.clone());
        r.register("bucket_sync_failures", "Bucket index refreshes that failed", m.sync_failures.clone());
        r.register("row_groups_read", "Row groups whose series were examined", m.row_groups_read.clone());
        r.register("row_groups_skipped", "Row groups skipped by their statistics", m.row_groups_skipped.clone());
        r.register("series_returned", "Series returned to queries", m.series_returned.clone());
        m
    }
}
