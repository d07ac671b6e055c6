//! Validate, shard, encode, produce, and wait for every acknowledgement.

use std::sync::Arc;
use std::time::Instant;

use futures::future::try_join_all;
use tidemark_ingest_log::{IngestLog, Record};
use tidemark_schemas::prometheus::{MetricMetadata, TimeSeries, WriteRequest};

use crate::config::DistributorConfig;
use crate::error::PushError;
use crate::metrics::{DiscardLabels, DistributorMetrics, TenantLabels};
use crate::records::encode_records;
use crate::shard::partition_for;
use crate::validation::{validate_series, ValidationError};

/// What a successful push wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PushOutcome {
    pub series: usize,
    pub samples: usize,
}

/// A request ready to produce: records per partition, and what was refused.
#[derive(Debug, Default)]
pub struct Prepared {
    pub records: Vec<(i32, Vec<Record>)>,
    pub outcome: PushOutcome,
    pub errors: Vec<ValidationError>,
}

/// Validates, shards and encodes a request (no I/O).
pub fn prepare(
    tenant: &str,
    req: WriteRequest,
    partitions: i32,
    cfg: &DistributorConfig,
    now_ms: i64,
) -> Prepared {
    let mut by_partition: Vec<(Vec<TimeSeries>, Vec<MetricMetadata>)> =
        (0..partitions).map(|_| (Vec::new(), Vec::new())).collect();
    let mut prepared = Prepared::default();
    for mut ts in req.timeseries {
        if let Err(e) = validate_series(&mut ts, &cfg.limits, now_ms) {
            let keep = e.reason == "too_far_in_future" && !ts.samples.is_empty();
            prepared.errors.push(e);
            if !keep {
                continue;
            }
        }
        if ts.samples.is_empty() && ts.exemplars.is_empty() {
            continue;
        }
        prepared.outcome.series += 1;
        prepared.outcome.samples += ts.samples.len();
        let p = partition_for(tenant, &ts.labels, partitions);
        by_partition[p as usize].0.push(ts);
    }
    for md in req.metadata {
        // Metadata follows its metric family name.
        let name = tidemark_schemas::prometheus::Label {
            name: bytes::Bytes::from_static(b"__name__"),
            value: md.metric_family_name.clone(),
        };
        let p = partition_for(tenant, std::slice::from_ref(&name), partitions);
        by_partition[p as usize].1.push(md);
    }
    for (p, (series, metadata)) in by_partition.into_iter().enumerate() {
        if series.is_empty() && metadata.is_empty() {
            continue;
        }
        prepared.records.push((p as i32, encode_records(tenant, series, metadata, cfg.max_record_size_bytes)));
    }
    prepared
}

/// The distributor.
pub struct Distributor {
    log: Arc<dyn IngestLog>,
    cfg: DistributorConfig,
    metrics: Arc<DistributorMetrics>,
}

impl Distributor {
    pub fn new(log: Arc<dyn IngestLog>, cfg: DistributorConfig, metrics: Arc<DistributorMetrics>) -> Self {
        Distributor { log, cfg, metrics }
    }

    pub fn config(&self) -> &DistributorConfig {
        &self.cfg
    }

    pub fn metrics(&self) -> &DistributorMetrics {
        &self.metrics
    }

    /// Writes a request's valid series to the log and returns once all are
    /// acknowledged. Invalid series are reported in the error after the
    /// valid ones were written.
    pub async fn push(&self, tenant: &str, req: WriteRequest) -> Result<PushOutcome, PushError> {
        let now = now_ms();
        let prepared = prepare(tenant, req, self.log.partition_count(), &self.cfg, now);
        let started = Instant::now();
        let records: usize = prepared.records.iter().map(|(_, r)| r.len()).sum();
        try_join_all(prepared.records.into_iter().map(|(p, recs)| self.log.produce(p, recs))).await?;
        self.metrics.produce_duration.observe(started.elapsed().as_secs_f64());
        self.metrics.records_produced.inc_by(records as u64);
        self.metrics
            .received_samples
            .get_or_create(&TenantLabels { tenant: tenant.to_owned() })
            .inc_by(prepared.outcome.samples as u64);
        for e in &prepared.errors {
            self.metrics
                .discarded_samples
                .get_or_create(&DiscardLabels { tenant: tenant.to_owned(), reason: e.reason.to_owned() })
                .inc_by(e.discarded_samples as u64);
        }
        if let Some(first) = prepared.errors.first() {
            tracing::debug!(tenant, error = %first.message, failed = prepared.errors.len(), "refused invalid series");
            return Err(PushError::Validation { first: first.message.clone(), failed: prepared.errors.len() });
        }
        Ok(prepared.outcome)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
