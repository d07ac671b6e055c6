//! Validate, shard, encode, produce, and wait for every acknowledgement.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use futures::future::try_join_all;
use prost::Message;
use tidemark_ingest_log::{IngestLog, Record};
use tidemark_schemas::prometheus::{MetricMetadata, TimeSeries};

use crate::config::DistributorConfig;
use crate::config::ValidationLimits;
use crate::error::PushError;
use crate::metrics::{DiscardLabels, DistributorMetrics, TenantLabels};
use crate::records::{body_budget, encode_records, field_len, record};
use crate::scan::{
    label_refs, put_len_field, read_series, split_request, LabelRef, SeriesView, WireError,
};
use crate::shard::{partition_of, series_hash};
use crate::validation::{
    check_metadata,
    check_labels, needs_normalizing, oldest_allowed, validate_or_report, with_error_id,
    ValidationError,
};
use tidemark_limits::rate::{Decision, RateLimiter};
use tidemark_limits::{Limits, Overrides};

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

/// Records of one partition being filled.
struct PartitionBatch {
    body: Vec<u8>,
    done: Vec<Record>,
}

impl PartitionBatch {
    fn push(&mut self, tenant: &str, field: u32, raw: &[u8], budget: usize) {
        let len = field_len(raw.len());
        if !self.body.is_empty() && self.body.len() + len > budget {
            self.done
                .push(record(tenant, std::mem::take(&mut self.body)));
        }
        put_len_field(&mut self.body, field, raw);
    }

    fn finish(mut self, tenant: &str) -> Vec<Record> {
        if !self.body.is_empty() {
            self.done.push(record(tenant, self.body));
        }
        self.done
    }
}

/// Validates, shards and encodes a decompressed remote-write request (no
/// I/O). Series are read in place and copied unchanged into the record of
/// their partition; only a series that must change (unsorted labels, empty
/// values, samples too far in the future) or is too large for one record is
/// decoded and encoded again.
pub fn prepare(
    tenant: &str,
    body: &[u8],
    partitions: i32,
    cfg: &DistributorConfig,
    now_ms: i64,
) -> Result<Prepared, PushError> {
    prepare_with(tenant, body, partitions, cfg, &cfg.limits, now_ms)
}

/// [`prepare`] with the tenant's validation limits.
/// Decodes, validates and shards a request into records.
type PrepareFn = fn(&str, &[u8], i32, &DistributorConfig, &ValidationLimits, i64) -> Result<Prepared, PushError>;

pub fn prepare_with(
    tenant: &str,
    body: &[u8],
    partitions: i32,
    cfg: &DistributorConfig,
    limits: &ValidationLimits,
    now_ms: i64,
) -> Result<Prepared, PushError> {
    let bad = |e: WireError| PushError::BadProtobuf(e.0);
    let parts = split_request(body).map_err(bad)?;
    let budget = body_budget(tenant, cfg.max_record_size_bytes);
    let newest_allowed = now_ms.saturating_add(limits.creation_grace_period.as_millis() as i64);
    let oldest = oldest_allowed(limits, now_ms);
    let mut batches: Vec<PartitionBatch> = (0..partitions)
        .map(|_| PartitionBatch {
            body: Vec::new(),
            done: Vec::new(),
        })
        .collect();
    let mut prepared = Prepared::default();
    let mut view = SeriesView::default();
    let mut scratch = Vec::new();

    for range in parts.series {
        let raw = &body[range];
        read_series(raw, &mut view).map_err(bad)?;
        let fast = !needs_normalizing(&view.labels)
            && (view.samples == 0
                || (view.max_timestamp <= newest_allowed && view.min_timestamp >= oldest));
        if fast {
            if let Err(e) = check_labels(&view.labels, limits, view.samples) {
                prepared.errors.push(e);
                continue;
            }
            if view.samples == 0 && view.exemplars == 0 {
                continue;
            }
            let p =
                partition_of(series_hash(tenant, &view.labels, &mut scratch), partitions) as usize;
            if field_len(raw.len()) <= budget {
                batches[p].push(tenant, 1, raw, budget);
            } else {
                let ts =
                    TimeSeries::decode(raw).map_err(|e| PushError::BadProtobuf(e.to_string()))?;
                batches[p].done.extend(encode_records(
                    tenant,
                    vec![ts],
                    vec![],
                    cfg.max_record_size_bytes,
                ));
            }
            prepared.outcome.series += 1;
            prepared.outcome.samples += view.samples;
            continue;
        }
        // Slow path: decode, fix, encode.
        let mut ts = TimeSeries::decode(raw).map_err(|e| PushError::BadProtobuf(e.to_string()))?;
        if !validate_or_report(&mut ts, limits, now_ms, &mut prepared.errors) {
            continue;
        }
        if ts.samples.is_empty() && ts.exemplars.is_empty() {
            continue;
        }
        let p = partition_of(
            series_hash(tenant, &label_refs(&ts.labels), &mut scratch),
            partitions,
        ) as usize;
        prepared.outcome.series += 1;
        prepared.outcome.samples += ts.samples.len();
        let encoded = ts.encode_to_vec();
        if field_len(encoded.len()) <= budget {
            batches[p].push(tenant, 1, &encoded, budget);
        } else {
            batches[p].done.extend(encode_records(
                tenant,
                vec![ts],
                vec![],
                cfg.max_record_size_bytes,
            ));
        }
    }
    for range in parts.metadata {
        let raw = &body[range];
        let md = MetricMetadata::decode(raw).map_err(|e| PushError::BadProtobuf(e.to_string()))?;
        if let Err(e) = check_metadata(
            md.metric_family_name.as_ref(),
            md.help.as_ref(),
            md.unit.as_ref(),
            limits,
        ) {
            prepared.errors.push(e);
            continue;
        }
        // Metadata follows its metric family name.
        let name = [LabelRef {
            name: b"__name__",
            value: &md.metric_family_name,
        }];
        let p = partition_of(series_hash(tenant, &name, &mut scratch), partitions) as usize;
        batches[p].push(tenant, 3, raw, budget);
    }
    for (p, batch) in batches.into_iter().enumerate() {
        let records = batch.finish(tenant);
        if !records.is_empty() {
            prepared.records.push((p as i32, records));
        }
    }
    Ok(prepared)
}

/// The distributor.
pub struct Distributor {
    log: Arc<dyn IngestLog>,
    cfg: DistributorConfig,
    metrics: Arc<DistributorMetrics>,
    overrides: Overrides,
    /// Samples per second, per tenant, in this distributor.
    ingestion_rate: RateLimiter,
    /// Requests per second, per tenant, in this distributor.
    request_rate: RateLimiter,
    /// The partitions written to: every partition of the log, or the
    /// active partitions of the partition ring.
    active: ActivePartitions,
}

/// Where the distributor learns which partitions take writes.
enum ActivePartitions {
    /// Every partition of the log (no partition ring).
    All(Arc<[i32]>),
    /// The active partitions of the partition ring, as it changes.
    Ring(watch::Receiver<Arc<[i32]>>),
}

impl Distributor {
    /// A distributor whose tenants all have the default limits with the
    /// validation limits of `cfg` (see [`Distributor::with_overrides`]).
    pub fn new(
        log: Arc<dyn IngestLog>,
        cfg: DistributorConfig,
        metrics: Arc<DistributorMetrics>,
    ) -> Self {
        let mut defaults = Limits::default();
        cfg.limits.apply_to(&mut defaults);
        Distributor {
            cfg,
            metrics,
            overrides: Overrides::fixed(defaults),
            ingestion_rate: RateLimiter::default(),
            request_rate: RateLimiter::default(),
            active: ActivePartitions::All((0..log.partition_count()).collect()),
            log,
        }
    }

    /// Writes only to the partitions `active` names (the partition ring's
    /// active partitions, ascending), as it changes. Partitions the log
    /// does not have are ignored.
    pub fn with_active_partitions(mut self, active: watch::Receiver<Arc<[i32]>>) -> Self {
        self.active = ActivePartitions::Ring(active);
        self
    }

    /// The partitions a request is sharded over now.
    fn active_partitions(&self) -> Result<Arc<[i32]>, PushError> {
        let active = match &self.active {
            ActivePartitions::All(all) => return Ok(all.clone()),
            ActivePartitions::Ring(rx) => rx.borrow().clone(),
        };
        let count = self.log.partition_count();
        let active: Arc<[i32]> = if active.iter().all(|&p| p < count) {
            active
        } else {
            active.iter().copied().filter(|&p| p < count).collect()
        };
        if active.is_empty() {
            return Err(PushError::NoActivePartitions);
        }
        Ok(active)
    }

    /// Takes per-tenant limits (rates, validation) from `overrides`.
    pub fn with_overrides(mut self, overrides: Overrides) -> Self {
        self.overrides = overrides;
        self
    }

    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    /// Refuses the request when the tenant is over its request rate.
    fn admit_request(&self, tenant: &str, limits: &Limits) -> Result<(), PushError> {
        if limits.request_rate <= 0.0 {
            return Ok(());
        }
        let burst = limits.effective_request_burst();
        match self
            .request_rate
            .take(tenant, limits.request_rate, burst, 1, Instant::now())
        {
            Decision::Allowed => Ok(()),
            Decision::Denied { retry_after, .. } => {
                self.metrics
                    .discarded_requests
                    .get_or_create(&DiscardLabels {
                        tenant: tenant.to_owned(),
                        reason: "request_rate_limited".to_owned(),
                    })
                    .inc();
                let reason = "request_rate_limited";
                Err(PushError::RateLimited {
                    reason,
                    message: with_error_id(
                        reason,
                        format!(
                            "the request has been rejected because the tenant exceeded the request rate limit, set to {} requests/s in this distributor instance with a maximum allowed burst of {}",
                            limits.request_rate, burst
                        ),
                    ),
                    retry_after,
                })
            }
        }
    }

    /// Refuses the whole request when its samples exceed the tenant's
    /// ingestion rate; counts them as discarded.
    fn admit_samples(
        &self,
        tenant: &str,
        limits: &Limits,
        samples: usize,
    ) -> Result<(), PushError> {
        if limits.ingestion_rate <= 0.0 || samples == 0 {
            return Ok(());
        }
        let burst = limits.ingestion_burst_size;
        match self.ingestion_rate.take(
            tenant,
            limits.ingestion_rate,
            burst,
            samples as u64,
            Instant::now(),
        ) {
            Decision::Allowed => Ok(()),
            Decision::Denied {
                retry_after,
                exceeds_burst,
            } => {
                let reason = "rate_limited";
                self.metrics
                    .discarded_samples
                    .get_or_create(&DiscardLabels {
                        tenant: tenant.to_owned(),
                        reason: reason.to_owned(),
                    })
                    .inc_by(samples as u64);
                let mut msg = format!(
                    "the request has been rejected because the tenant exceeded the ingestion rate limit, set to {} samples/s in this distributor instance with a maximum allowed burst of {}; the request has {samples} samples",
                    limits.ingestion_rate, burst
                );
                if exceeds_burst {
                    msg.push_str(" (more than the burst: send smaller requests)");
                }
                Err(PushError::RateLimited {
                    reason,
                    message: with_error_id(reason, msg),
                    retry_after,
                })
            }
        }
    }

    pub fn config(&self) -> &DistributorConfig {
        &self.cfg
    }

    pub fn metrics(&self) -> &DistributorMetrics {
        &self.metrics
    }

    /// Writes the valid series of a decompressed remote-write request to the
    /// log and returns once all are acknowledged. Invalid series are reported in the error after the
    /// valid ones were written.
    pub async fn push(&self, tenant: &str, body: &[u8]) -> Result<PushOutcome, PushError> {
        self.push_with(tenant, body, prepare_with).await
    }

    /// [`Distributor::push`] for a decompressed remote write 2.0 request.
    pub async fn push_v2(&self, tenant: &str, body: &[u8]) -> Result<PushOutcome, PushError> {
        self.push_with(tenant, body, crate::rw2::prepare_v2_with).await
    }

    /// Admits, validates with the tenant's limits and writes a request
    /// decoded by `prepare`.
    async fn push_with(&self, tenant: &str, body: &[u8], prepare: PrepareFn) -> Result<PushOutcome, PushError> {
        let limits = self.overrides.get(tenant);
        self.admit_request(tenant, &limits)?;
        let validation = ValidationLimits::from(&*limits);
        let active = self.active_partitions()?;
        let mut prepared = prepare(
            tenant,
            body,
            active.len() as i32,
            &self.cfg,
            &validation,
            now_ms(),
        )?;
        // Shards are indexes into the active partitions.
        for (p, _) in &mut prepared.records {
            *p = active[*p as usize];
        }
        self.write(tenant, &limits, prepared).await
    }

    /// Produces prepared records and waits for every acknowledgement.
    async fn write(
        &self,
        tenant: &str,
        limits: &Limits,
        prepared: Prepared,
    ) -> Result<PushOutcome, PushError> {
        if let Err(e) = self.admit_samples(tenant, limits, prepared.outcome.samples) {
            self.count_validation_errors(tenant, &prepared.errors);
            tracing::debug!(tenant, error = %e, "push refused");
            return Err(e);
        }
        let started = Instant::now();
        let records: usize = prepared.records.iter().map(|(_, r)| r.len()).sum();
        let produced = try_join_all(
            prepared
                .records
                .into_iter()
                .map(|(p, recs)| self.log.produce(p, recs)),
        )
        .await;
        if let Err(e) = produced {
            // The sender retries a 5xx: it did not use its rate.
            if limits.ingestion_rate > 0.0 {
                self.ingestion_rate
                    .give_back(tenant, prepared.outcome.samples as u64);
            }
            return Err(e.into());
        }
        self.metrics
            .produce_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.records_produced.inc_by(records as u64);
        self.metrics
            .received_samples
            .get_or_create(&TenantLabels {
                tenant: tenant.to_owned(),
            })
            .inc_by(prepared.outcome.samples as u64);
        self.count_validation_errors(tenant, &prepared.errors);
        if let Some(first) = prepared.errors.first() {
            tracing::debug!(tenant, error = %first.message, failed = prepared.errors.len(), "refused invalid series");
            return Err(PushError::Validation {
                first: first.message.clone(),
                failed: prepared.errors.len(),
                written: prepared.outcome.samples,
            });
        }
        Ok(prepared.outcome)
    }

    fn count_validation_errors(&self, tenant: &str, errors: &[ValidationError]) {
        for e in errors {
            self.metrics
                .discarded_samples
                .get_or_create(&DiscardLabels {
                    tenant: tenant.to_owned(),
                    reason: e.reason.to_owned(),
                })
                .inc_by(e.discarded_samples as u64);
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tidemark_schemas::prometheus::{Label, Sample, WriteRequest};
    use tidemark_schemas::record::{decode_version, RecordBody, VERSION_HEADER};

    fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: Bytes::copy_from_slice(n.as_bytes()),
                    value: Bytes::copy_from_slice(v.as_bytes()),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { timestamp, value })
                .collect(),
            exemplars: vec![],
        }
    }

    /// With a partition ring, writes go to its active partitions only,
    /// follow it as it changes, and are refused with a 503 when none is
    /// active.
    #[tokio::test]
    async fn writes_only_to_active_partitions() {
        use tidemark_ingest_log::embedded::{EmbeddedConfig, EmbeddedLog};
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn IngestLog> = Arc::new(
            EmbeddedLog::open(EmbeddedConfig {
                dir: dir.path().to_path_buf(),
                partitions: 4,
                ..Default::default()
            })
            .unwrap(),
        );
        let (tx, rx) = watch::channel::<Arc<[i32]>>(Arc::from(vec![1, 3, 9]));
        let cfg = DistributorConfig::default();
        let d = Distributor::new(log.clone(), cfg, Arc::new(DistributorMetrics::unregistered()))
            .with_active_partitions(rx);
        let now = now_ms();
        let series: Vec<TimeSeries> = (0..200)
            .map(|i| ts(&[("__name__", "m"), ("i", &i.to_string())], &[(now, 1.0)]))
            .collect();
        let body = WriteRequest { timeseries: series, ..Default::default() }.encode_to_vec();
        d.push("t", &body).await.unwrap();
        let ends = |log: Arc<dyn IngestLog>| async move {
            let mut v = Vec::new();
            for p in 0..4 {
                v.push(log.latest_offset(p).await.unwrap());
            }
            v
        };
        let after_first = ends(log.clone()).await;
        assert_eq!(after_first[0], 0);
        assert_eq!(after_first[2], 0);
        assert!(after_first[1] > 0 && after_first[3] > 0, "{after_first:?}");
        tx.send(Arc::from(vec![0])).unwrap();
        d.push("t", &body).await.unwrap();
        let after_second = ends(log.clone()).await;
        assert!(after_second[0] > 0);
        assert_eq!(after_second[1..], after_first[1..]);
        tx.send(Arc::from(Vec::new())).unwrap();
        let e = d.push("t", &body).await.unwrap_err();
        assert!(matches!(e, PushError::NoActivePartitions));
        assert_eq!(e.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }

    fn decode(p: &Prepared) -> Vec<TimeSeries> {
        let mut out: Vec<TimeSeries> = p
            .records
            .iter()
            .flat_map(|(_, recs)| recs.iter())
            .flat_map(|r| {
                assert_eq!(r.key.as_ref(), b"t");
                let v = decode_version(r.header(VERSION_HEADER)).unwrap();
                RecordBody::decode(v, r.value.clone())
                    .unwrap()
                    .into_timeseries()
            })
            .collect();
        out.sort_by(|a, b| {
            a.labels
                .iter()
                .map(|l| &l.value)
                .cmp(b.labels.iter().map(|l| &l.value))
        });
        out
    }

    #[test]
    fn series_travel_unchanged_and_sharded() {
        let input: Vec<TimeSeries> = (0..200)
            .map(|i| {
                ts(
                    &[("__name__", "m"), ("i", &format!("{i:03}"))],
                    &[(1000, i as f64)],
                )
            })
            .collect();
        let body = WriteRequest {
            timeseries: input.clone(),
            metadata: vec![],
        }
        .encode_to_vec();
        let p = prepare("t", &body, 4, &DistributorConfig::default(), 1000).unwrap();
        assert!(p.errors.is_empty());
        assert_eq!(
            p.outcome,
            PushOutcome {
                series: 200,
                samples: 200
            }
        );
        assert_eq!(p.records.len(), 4, "spread over every partition");
        assert_eq!(decode(&p), input);
        // The same series always goes to the same partition.
        let again = prepare("t", &body, 4, &DistributorConfig::default(), 1000).unwrap();
        let parts = |p: &Prepared| {
            p.records
                .iter()
                .map(|(i, r)| (*i, r.len()))
                .collect::<Vec<_>>()
        };
        assert_eq!(parts(&p), parts(&again));
    }

    #[test]
    fn unsorted_labels_are_normalised_and_land_with_the_sorted_series() {
        let sorted = ts(&[("__name__", "m"), ("a", "1"), ("b", "2")], &[(1000, 1.0)]);
        let unsorted = ts(
            &[("b", "2"), ("__name__", "m"), ("z", ""), ("a", "1")],
            &[(2000, 2.0)],
        );
        let body = WriteRequest {
            timeseries: vec![sorted.clone(), unsorted],
            metadata: vec![],
        }
        .encode_to_vec();
        let p = prepare("t", &body, 8, &DistributorConfig::default(), 0).unwrap();
        assert_eq!(p.records.len(), 1, "both in one partition");
        let got = decode(&p);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].labels, sorted.labels);
    }

    #[test]
    fn invalid_and_future_series() {
        let now = 1_000_000;
        let body = WriteRequest {
            timeseries: vec![
                ts(&[("__name__", "ok")], &[(now, 1.0)]),
                ts(&[("__name__", "bad"), ("x-y", "1")], &[(now, 1.0)]),
                ts(
                    &[("__name__", "future")],
                    &[(now, 1.0), (now + 3_600_000, 2.0)],
                ),
            ],
            metadata: vec![],
        }
        .encode_to_vec();
        let p = prepare("t", &body, 2, &DistributorConfig::default(), now).unwrap();
        let reasons: Vec<_> = p.errors.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["label_invalid", "too_far_in_future"]);
        assert_eq!(
            p.outcome,
            PushOutcome {
                series: 2,
                samples: 2
            }
        );
        let got = decode(&p);
        assert_eq!(got.iter().map(|t| t.samples.len()).sum::<usize>(), 2);
    }

    #[test]
    fn past_grace_period_drops_only_old_samples() {
        let now = 10 * 3_600_000;
        let hour = 3_600_000;
        let body = WriteRequest {
            timeseries: vec![
                ts(&[("__name__", "ok")], &[(now - hour, 1.0)]),
                ts(
                    &[("__name__", "mixed")],
                    &[(now - 3 * hour, 1.0), (now, 2.0), (now + 2 * hour, 3.0)],
                ),
                ts(&[("__name__", "old")], &[(now - 5 * hour, 1.0)]),
            ],
            metadata: vec![],
        }
        .encode_to_vec();
        let limits = ValidationLimits {
            past_grace_period: std::time::Duration::from_secs(2 * 3600),
            ..Default::default()
        };
        let p = prepare_with("t", &body, 2, &DistributorConfig::default(), &limits, now).unwrap();
        let reasons: Vec<_> = p
            .errors
            .iter()
            .map(|e| (e.reason, e.discarded_samples))
            .collect();
        assert_eq!(
            reasons,
            [
                ("too_far_in_future", 1),
                ("too_far_in_past", 1),
                ("too_far_in_past", 1)
            ]
        );
        assert_eq!(p.outcome.samples, 2);
        // 0 is no limit.
        let p = prepare("t", &body, 2, &DistributorConfig::default(), now).unwrap();
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.outcome.samples, 4);
    }

    #[test]
    fn oversized_series_split_and_metadata_kept() {
        let big = ts(
            &[("__name__", "big")],
            &(0..20_000)
                .map(|i| (i as i64, i as f64))
                .collect::<Vec<_>>(),
        );
        let md = MetricMetadata {
            r#type: 1,
            metric_family_name: Bytes::from_static(b"big"),
            help: Bytes::from_static(b"h"),
            unit: Bytes::new(),
        };
        let body = WriteRequest {
            timeseries: vec![big.clone()],
            metadata: vec![md.clone()],
        }
        .encode_to_vec();
        let cfg = DistributorConfig {
            max_record_size_bytes: 50_000,
            ..Default::default()
        };
        let p = prepare("t", &body, 1, &cfg, 0).unwrap();
        let recs = &p.records[0].1;
        assert!(recs.len() > 2);
        assert!(recs.iter().all(|r| r.encoded_len() <= 50_000));
        let samples: Vec<Sample> = decode(&p).into_iter().flat_map(|t| t.samples).collect();
        assert_eq!(samples, big.samples);
        let metadata: Vec<MetricMetadata> = recs
            .iter()
            .flat_map(|r| {
                tidemark_schemas::ingest::WriteRecordV1::decode(r.value.clone())
                    .unwrap()
                    .metadata
            })
            .collect();
        assert_eq!(metadata, vec![md]);
    }

    #[test]
    fn invalid_metadata_is_dropped_and_reported_samples_kept() {
        let md = |name: &'static [u8], help: Vec<u8>, unit: &'static [u8]| MetricMetadata {
            r#type: 1,
            metric_family_name: Bytes::from_static(name),
            help: Bytes::from(help),
            unit: Bytes::from_static(unit),
        };
        let good = md(b"m", b"fine".to_vec(), b"seconds");
        let body = WriteRequest {
            timeseries: vec![ts(&[("__name__", "m")], &[(1, 1.0)])],
            metadata: vec![
                md(b"", b"h".to_vec(), b""),
                md(b"m", vec![b'h'; 1025], b""),
                md(b"m", b"h".to_vec(), &[b'u'; 1025]),
                md(&[b'n'; 1025], b"h".to_vec(), b""),
                md(b"m", vec![0xff, 0xfe], b""),
                good.clone(),
            ],
        }
        .encode_to_vec();
        let p = prepare("t", &body, 1, &DistributorConfig::default(), 0).unwrap();
        let reasons: Vec<&str> = p.errors.iter().map(|e| e.reason).collect();
        assert_eq!(
            reasons,
            [
                "metadata_missing_metric_name",
                "metadata_help_too_long",
                "metadata_unit_too_long",
                "metadata_metric_name_too_long",
                "metadata_invalid_utf8"
            ]
        );
        assert!(p.errors[1].message.contains("-validation.max-metadata-length"), "{}", p.errors[1].message);
        assert_eq!(p.outcome.samples, 1);
        let kept: Vec<MetricMetadata> = p.records[0]
            .1
            .iter()
            .flat_map(|r| tidemark_schemas::ingest::WriteRecordV1::decode(r.value.clone()).unwrap().metadata)
            .collect();
        assert_eq!(kept, vec![good]);
    }

    #[test]
    fn malformed_bodies_are_bad_protobuf() {
        let body = WriteRequest {
            timeseries: vec![ts(&[("__name__", "m")], &[(1, 1.0)])],
            metadata: vec![],
        }
        .encode_to_vec();
        for cut in 1..body.len() {
            if let Err(e) = prepare("t", &body[..cut], 2, &DistributorConfig::default(), 0) {
                assert!(matches!(e, PushError::BadProtobuf(_)), "{e}");
            }
        }
        assert!(matches!(
            prepare("t", &[0xff; 20], 2, &DistributorConfig::default(), 0),
            Err(PushError::BadProtobuf(_))
        ));
    }
}
