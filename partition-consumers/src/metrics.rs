//! The ingesters' Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::head::AppendStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub partition: i32,
    pub reason: &'static str,
}

#[derive(Debug, Default, Clone)]
pub struct IngesterMetrics {
    pub samples_appended: Family<PartitionLabels, Counter>,
    pub samples_rejected: Family<RejectLabels, Counter>,
    pub records_consumed: Family<PartitionLabels, Counter>,
    pub records_failed: Family<PartitionLabels, Counter>,
    pub series: Family<PartitionLabels, Gauge>,
    pub consumed_offset: Family<PartitionLabels, Gauge>,
    pub committed_offset: Family<PartitionLabels, Gauge>,
    pub lag_records: Family<PartitionLabels, Gauge>,
    pub offset_commit_failures: Family<PartitionLabels, Counter>,
}

impl IngesterMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = IngesterMetrics::default();
        let r = registry.sub_registry_with_prefix("tidemark_ingester");
        r.register(
            "samples_appended",
            "Samples appended to the head",
            m.samples_appended.clone(),
        );
        r.register(
            "samples_rejected",
            "Samples not appended: out_of_order, duplicate_timestamp (new value for an existing timestamp), duplicate (dropped silently), outside_head_window, per_user_series_limit and per_metric_series_limit (new series over the tenant's share of its series limits)",
            m.samples_rejected.clone(),
        );
        r.register(
            "records_consumed",
            "Ingest-log records consumed",
            m.records_consumed.clone(),
        );
        r.register(
            "records_failed",
            "Ingest-log records that could not be decoded",
            m.records_failed.clone(),
        );
        r.register("memory_series", "Series in the head", m.series.clone());
        r.register(
            "consumed_offset",
            "Next offset to consume",
            m.consumed_offset.clone(),
        );
        r.register(
            "committed_offset",
            "Last committed offset",
            m.committed_offset.clone(),
        );
        r.register(
            "lag_records",
            "Records produced but not yet consumed",
            m.lag_records.clone(),
        );
        r.register(
            "offset_commit_failures",
            "Failed offset commits",
            m.offset_commit_failures.clone(),
        );
        m
    }

    pub fn record_append(&self, partition: i32, s: &AppendStats) {
        self.samples_appended
            .get_or_create(&PartitionLabels { partition })
            .inc_by(s.appended);
        for (reason, n) in [
            ("out_of_order", s.out_of_order),
            ("duplicate_timestamp", s.duplicate_timestamp),
            ("duplicate", s.duplicates),
            ("outside_head_window", s.outside_head_window),
            ("per_user_series_limit", s.per_user_series_limit),
            ("per_metric_series_limit", s.per_metric_series_limit),
        ] {
            if n > 0 {
                self.samples_rejected
                    .get_or_create(&RejectLabels { partition, reason })
                    .inc_by(n);
            }
        }
    }
}
