//! The loop that reads one partition of the ingest log into a head.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidemark_ingest_log::{ConsumedRecord, IngestLog, LogError};
use tidemark_schemas::prometheus::MetricMetadata;
use tidemark_schemas::record::{
    decode_tenant, decode_version, RecordBody, RecordError, VERSION_1, VERSION_HEADER,
};
use tidemark_schemas::scan::RequestSeries;
use tokio_util::sync::CancellationToken;

use crate::config::IngesterConfig;
use crate::head::{AppendStats, Head, HeadOptions, SeriesLimits};
use crate::metrics::{IngesterMetrics, PartitionLabels};

/// Progress of one consumer, shared with readiness checks and metrics.
#[derive(Debug)]
pub struct ConsumerState {
    pub partition: i32,
    /// Next offset to consume.
    pub next_offset: AtomicI64,
    /// End of the partition when the consumer started; ready once reached.
    pub startup_target: AtomicI64,
    pub ready: AtomicBool,
}

impl ConsumerState {
    pub fn lag_at_startup(&self) -> i64 {
        (self.startup_target.load(Ordering::Relaxed) - self.next_offset.load(Ordering::Relaxed))
            .max(0)
    }
}

pub struct PartitionConsumer {
    pub partition: i32,
    pub head: Arc<Head>,
    pub state: Arc<ConsumerState>,
    log: Arc<dyn IngestLog>,
    group: String,
    cfg: IngesterConfig,
    metrics: IngesterMetrics,
    /// When series-limit refusals were last logged (at most once a second).
    last_limit_warning: parking_lot::Mutex<Option<Instant>>,
}

impl PartitionConsumer {
    pub fn new(
        partition: i32,
        log: Arc<dyn IngestLog>,
        group: String,
        cfg: IngesterConfig,
        metrics: IngesterMetrics,
    ) -> Self {
        Self::with_series_limits(partition, log, group, cfg, metrics, None)
    }

    /// [`PartitionConsumer::new`] with per-tenant series limits.
    pub fn with_series_limits(
        partition: i32,
        log: Arc<dyn IngestLog>,
        group: String,
        cfg: IngesterConfig,
        metrics: IngesterMetrics,
        series_limits: Option<SeriesLimits>,
    ) -> Self {
        let head = Arc::new(Head::with_series_limits(
            HeadOptions {
                samples_per_chunk: cfg.samples_per_chunk,
                retention_ms: cfg.head_retention.as_millis() as i64,
            },
            series_limits,
        ));
        let state = Arc::new(ConsumerState {
            partition,
            next_offset: AtomicI64::new(0),
            startup_target: AtomicI64::new(i64::MAX),
            ready: AtomicBool::new(false),
        });
        PartitionConsumer {
            partition,
            head,
            state,
            log,
            group,
            cfg,
            metrics,
            last_limit_warning: parking_lot::Mutex::new(None),
        }
    }

    /// Where the head's state must begin: the head is memory-only, so it
    /// rebuilds from the log the window it keeps (`head_retention`).
    async fn start_offset(&self) -> Result<i64, LogError> {
        let since = now_ms() - self.cfg.head_retention.as_millis() as i64;
        let earliest = self.log.earliest_offset(self.partition).await?;
        match self.log.offset_for_timestamp(self.partition, since).await? {
            Some(o) => Ok(o.max(earliest)),
            None => self.log.latest_offset(self.partition).await,
        }
    }

    /// Runs until cancelled, retrying after log errors.
    pub async fn run(self, cancel: CancellationToken) {
        let labels = PartitionLabels {
            partition: self.partition,
        };
        loop {
            match self.consume(&cancel, &labels).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(partition = self.partition, error = %e, "partition consumer failed; retrying in 1s");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    async fn consume(
        &self,
        cancel: &CancellationToken,
        labels: &PartitionLabels,
    ) -> Result<(), LogError> {
        let resume = self.state.next_offset.load(Ordering::Relaxed);
        let start = if resume > 0 {
            resume
        } else {
            self.start_offset().await?
        };
        let target = self.log.latest_offset(self.partition).await?;
        let mut target_fetched = Instant::now();
        if !self.state.ready.load(Ordering::Relaxed) {
            self.state.startup_target.store(target, Ordering::Relaxed);
            tracing::info!(
                partition = self.partition,
                from = start,
                to = target,
                "replaying partition into the head"
            );
        }
        self.state.next_offset.store(start, Ordering::Relaxed);
        self.check_ready(&mut target_fetched).await?;
        let mut reader = self.log.reader(self.partition, start).await?;
        let mut committed = self
            .log
            .committed_offset(&self.group, self.partition)
            .await
            .unwrap_or(None);
        let mut last_commit = Instant::now();
        let mut last_truncate = Instant::now();
        let mut last_progress = Instant::now();
        loop {
            let batch = tokio::select! {
                _ = cancel.cancelled() => {
                    self.commit(&mut committed, labels).await;
                    return Ok(());
                }
                b = reader.poll(Duration::from_millis(250)) => b?,
            };
            let mut stats = AppendStats::default();
            for rec in &batch {
                match self.apply(rec) {
                    Ok(s) => stats.add(&s),
                    Err(e) => {
                        self.metrics.records_failed.get_or_create(labels).inc();
                        tracing::warn!(partition = self.partition, offset = rec.offset, error = %e, "skipping undecodable record");
                    }
                }
                self.state
                    .next_offset
                    .store(rec.offset + 1, Ordering::Relaxed);
            }
            if !batch.is_empty() {
                self.metrics
                    .records_consumed
                    .get_or_create(labels)
                    .inc_by(batch.len() as u64);
                self.metrics.record_append(self.partition, &stats);
            }
            self.check_ready(&mut target_fetched).await?;
            if last_commit.elapsed() >= self.cfg.offset_commit_interval {
                self.commit(&mut committed, labels).await;
                last_commit = Instant::now();
                let next = self.state.next_offset.load(Ordering::Relaxed);
                self.metrics.consumed_offset.get_or_create(labels).set(next);
                if let Ok(latest) = self.log.latest_offset(self.partition).await {
                    self.metrics
                        .lag_records
                        .get_or_create(labels)
                        .set((latest - next).max(0));
                }
                self.metrics
                    .series
                    .get_or_create(labels)
                    .set(self.head.num_series() as i64);
            }
            if !self.state.ready.load(Ordering::Relaxed)
                && last_progress.elapsed() >= Duration::from_secs(10)
            {
                tracing::info!(
                    partition = self.partition,
                    offset = self.state.next_offset.load(Ordering::Relaxed),
                    remaining = self.state.lag_at_startup(),
                    "replay progress"
                );
                last_progress = Instant::now();
            }
            if last_truncate.elapsed() >= Duration::from_secs(60) {
                let built_below = self.built_below().await;
                let removed = self.head.truncate_built(built_below);
                if removed > 0 {
                    tracing::info!(
                        partition = self.partition,
                        removed,
                        "dropped series past head retention"
                    );
                }
                last_truncate = Instant::now();
            }
        }
    }

    /// The offset below which every record is in blocks: the
    /// block-builder's committed offset. Without a block-builder group
    /// configured, everything counts as built (retention alone decides);
    /// when the offset cannot be read, nothing does.
    async fn built_below(&self) -> i64 {
        let Some(group) = &self.cfg.blocks_consumer_group else {
            return i64::MAX;
        };
        match self.log.committed_offset(group, self.partition).await {
            Ok(Some(o)) => o,
            Ok(None) => i64::MIN,
            Err(e) => {
                tracing::warn!(partition = self.partition, error = %e, "cannot read the block-builder's offset; keeping head data");
                i64::MIN
            }
        }
    }

    /// Marks the consumer ready once it is within the allowed number of
    /// records of the start-up target, and that target (the end of the
    /// partition) was fetched at most `max_consumer_lag_at_startup` ago;
    /// a target reached later than that is replaced by the partition's
    /// current end (`target_fetched` is when the target was fetched).
    async fn check_ready(&self, target_fetched: &mut Instant) -> Result<(), LogError> {
        if self.state.ready.load(Ordering::Relaxed)
            || self.state.lag_at_startup() > self.cfg.max_consumer_lag_records_at_startup
        {
            return Ok(());
        }
        let max_lag = self.cfg.max_consumer_lag_at_startup;
        if !max_lag.is_zero() && target_fetched.elapsed() > max_lag {
            let target = self.log.latest_offset(self.partition).await?;
            tracing::info!(
                partition = self.partition,
                offset = self.state.next_offset.load(Ordering::Relaxed),
                to = target,
                took = ?target_fetched.elapsed(),
                "replay reached the start-up end later than -ingest-storage.kafka.max-consumer-lag-at-startup; consuming to the current end"
            );
            self.state.startup_target.store(target, Ordering::Relaxed);
            *target_fetched = Instant::now();
            if self.state.lag_at_startup() > self.cfg.max_consumer_lag_records_at_startup {
                return Ok(());
            }
        }
        self.state.ready.store(true, Ordering::Relaxed);
        tracing::info!(
            partition = self.partition,
            offset = self.state.next_offset.load(Ordering::Relaxed),
            series = self.head.num_series(),
            "partition consumer caught up; ready"
        );
        Ok(())
    }

    /// Commits the consumed offset. The head is rebuilt from the log at
    /// start-up (see `start_offset`), so the commit records progress for
    /// lag monitoring; it never lets a restart skip data.
    async fn commit(&self, committed: &mut Option<i64>, labels: &PartitionLabels) {
        let next = self.state.next_offset.load(Ordering::Relaxed);
        if *committed == Some(next) {
            return;
        }
        match self
            .log
            .commit_offset(&self.group, self.partition, next)
            .await
        {
            Ok(()) => {
                *committed = Some(next);
                self.metrics
                    .committed_offset
                    .get_or_create(labels)
                    .set(next);
            }
            Err(e) => {
                self.metrics
                    .offset_commit_failures
                    .get_or_create(labels)
                    .inc();
                tracing::warn!(partition = self.partition, error = %e, "offset commit failed");
            }
        }
    }

    fn apply(&self, rec: &ConsumedRecord) -> Result<AppendStats, RecordError> {
        let tenant = decode_tenant(&rec.record.key)?;
        let version = decode_version(rec.record.header(VERSION_HEADER))?;
        // The head keeps the last `head_retention` of wall-clock time;
        // older samples (backfill, replays) are served from blocks.
        let min_valid = now_ms() - self.cfg.head_retention.as_millis() as i64;
        if version == VERSION_1 {
            return self.apply_in_place(tenant, &rec.record.value, rec.offset, min_valid);
        }
        let body = RecordBody::decode(version, rec.record.value.clone())?;
        let (mut series, metadata) = body.into_parts();
        let mut outside = 0u64;
        for ts in &mut series {
            let before = ts.samples.len();
            ts.samples.retain(|s| s.timestamp >= min_valid);
            outside += (before - ts.samples.len()) as u64;
        }
        if outside > 0 {
            series.retain(|ts| !ts.samples.is_empty());
        }
        self.add_metadata(tenant, &metadata);
        let stats = self.head.append_from(tenant, &series, rec.offset);
        Ok(self.appended(tenant, stats, outside))
    }

    /// A version 1 body (a remote write 1.0 request) appended as it
    /// stands: labels are views into the body, samples are read into one
    /// buffer, nothing is allocated per series. The whole body is read
    /// before anything is appended, so a corrupt record is skipped whole,
    /// as when it fails to decode.
    fn apply_in_place(&self, tenant: &str, body: &[u8], offset: i64, min_valid: i64) -> Result<AppendStats, RecordError> {
        let invalid = |e: tidemark_schemas::scan::WireError| RecordError::Invalid {
            version: VERSION_1,
            reason: e.to_string(),
        };
        let mut read = RequestSeries::read(body).map_err(invalid)?;
        let outside = read.drop_samples_before(min_valid);
        if !read.metadata.is_empty() {
            let metadata = read
                .metadata
                .iter()
                .map(|r| <MetricMetadata as prost::Message>::decode(&body[r.clone()]))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| RecordError::Decode { version: VERSION_1, source })?;
            self.add_metadata(tenant, &metadata);
        }
        let stats = self.head.append_read(tenant, read.iter(), offset);
        Ok(self.appended(tenant, stats, outside))
    }

    fn add_metadata(&self, tenant: &str, metadata: &[MetricMetadata]) {
        let dropped = self.head.metadata.add(tenant, metadata);
        if dropped > 0 {
            tracing::debug!(
                partition = self.partition,
                tenant,
                dropped,
                "metadata entries dropped"
            );
        }
    }

    fn appended(&self, tenant: &str, mut stats: AppendStats, outside: u64) -> AppendStats {
        stats.outside_head_window = outside;
        if stats.per_user_series_limit > 0 || stats.per_metric_series_limit > 0 {
            self.warn_series_limit(tenant, &stats);
        }
        stats
    }
}

impl PartitionConsumer {
    /// Logs series-limit refusals, at most once a second per partition
    /// (the metric counts every one).
    fn warn_series_limit(&self, tenant: &str, stats: &AppendStats) {
        let mut last = self.last_limit_warning.lock();
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *last = Some(Instant::now());
        drop(last);
        if stats.per_user_series_limit > 0 {
            tracing::warn!(
                partition = self.partition,
                tenant,
                rejected_samples = stats.per_user_series_limit,
                "new series refused: the tenant reached its share of the per-user series limit in this partition (err-tidemark-per-user-series-limit). To adjust the related per-tenant limit, configure -ingester.max-global-series-per-user, or contact your service administrator."
            );
        }
        if stats.per_metric_series_limit > 0 {
            tracing::warn!(
                partition = self.partition,
                tenant,
                rejected_samples = stats.per_metric_series_limit,
                "new series refused: the metric reached its share of the per-metric series limit in this partition (err-tidemark-per-metric-series-limit). To adjust the related per-tenant limit, configure -ingester.max-global-series-per-metric, or contact your service administrator."
            );
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
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;
    use bytes::Bytes;
    use tidemark_ingest_log::embedded::{EmbeddedConfig, EmbeddedLog};
    use tidemark_ingest_log::{PartitionReader, Record};

    use super::*;

    /// An embedded log in which writes arrive while the consumer replays:
    /// each of the first `growths` calls of `latest_offset` appends 100
    /// records before answering.
    struct GrowingLog {
        inner: EmbeddedLog,
        growths: AtomicUsize,
    }

    /// Records the consumer skips (no valid tenant): only offsets matter.
    fn junk(n: usize) -> Vec<Record> {
        (0..n)
            .map(|_| Record {
                key: Bytes::from_static(b""),
                value: Bytes::from_static(b"x"),
                headers: vec![],
            })
            .collect()
    }

    #[async_trait]
    impl IngestLog for GrowingLog {
        fn partition_count(&self) -> i32 {
            self.inner.partition_count()
        }
        async fn produce(&self, p: i32, r: Vec<Record>) -> Result<(), LogError> {
            self.inner.produce(p, r).await
        }
        async fn reader(&self, p: i32, o: i64) -> Result<Box<dyn PartitionReader>, LogError> {
            self.inner.reader(p, o).await
        }
        async fn committed_offset(&self, g: &str, p: i32) -> Result<Option<i64>, LogError> {
            self.inner.committed_offset(g, p).await
        }
        async fn commit_offset(&self, g: &str, p: i32, o: i64) -> Result<(), LogError> {
            self.inner.commit_offset(g, p, o).await
        }
        async fn earliest_offset(&self, p: i32) -> Result<i64, LogError> {
            self.inner.earliest_offset(p).await
        }
        async fn latest_offset(&self, p: i32) -> Result<i64, LogError> {
            if self
                .growths
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |g| g.checked_sub(1))
                .is_ok()
            {
                self.inner.produce(p, junk(100)).await?;
            }
            self.inner.latest_offset(p).await
        }
        async fn offset_for_timestamp(&self, p: i32, t: i64) -> Result<Option<i64>, LogError> {
            self.inner.offset_for_timestamp(p, t).await
        }
    }

    /// Replays 1,000 records while 100 more arrive at every look at the end
    /// of the partition (3 times); returns the offset consumed when ready.
    async fn ready_at(max_lag: Duration) -> i64 {
        let dir = tempfile::tempdir().unwrap();
        let inner = EmbeddedLog::open(EmbeddedConfig {
            dir: dir.path().to_path_buf(),
            partitions: 1,
            fsync: false,
            ..EmbeddedConfig::default()
        })
        .unwrap();
        inner.produce(0, junk(1_000)).await.unwrap();
        let log = Arc::new(GrowingLog {
            inner,
            growths: AtomicUsize::new(3),
        });
        let cfg = IngesterConfig {
            max_consumer_lag_at_startup: max_lag,
            ..IngesterConfig::default()
        };
        let c = PartitionConsumer::new(0, log, "g".into(), cfg, IngesterMetrics::default());
        let state = c.state.clone();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(c.run(cancel.clone()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !state.ready.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let at = state.next_offset.load(Ordering::SeqCst);
        cancel.cancel();
        task.await.unwrap();
        at
    }

    /// Every series of a head: labels and samples, sorted by labels.
    fn contents(head: &Head, tenant: &str) -> Vec<(String, Vec<(i64, u64)>)> {
        let refs = head.select(tenant, &[tidemark_storage::Matcher::new(tidemark_storage::MatchOp::Regex, "__name__", ".+").unwrap()], i64::MIN, i64::MAX);
        head.read_series(tenant, &refs, i64::MIN, i64::MAX, false)
            .into_iter()
            .map(|(labels, chunks)| {
                let samples = crate::service::samples_in(&chunks, i64::MIN, i64::MAX).unwrap();
                (labels.to_string(), samples.iter().map(|s| (s.t, s.v.to_bits())).collect())
            })
            .collect()
    }

    #[tokio::test]
    async fn version_1_records_read_in_place_append_what_decoding_appends() {
        use prost::Message;
        use tidemark_schemas::prometheus::{metric_metadata::MetricType, Label, Sample, TimeSeries, WriteRequest};
        let l = |n: &str, v: &str| Label { name: Bytes::copy_from_slice(n.as_bytes()), value: Bytes::copy_from_slice(v.as_bytes()) };
        let now = now_ms();
        let old = now - 48 * 3_600_000;
        let series = vec![
            // As the distributor writes them.
            TimeSeries { labels: vec![l("__name__", "a"), l("job", "j")], samples: vec![Sample { value: 1.5, timestamp: now - 2 }, Sample { value: f64::NAN, timestamp: now - 1 }], exemplars: vec![] },
            // Unsorted, with an empty value: normalised the slow way.
            TimeSeries { labels: vec![l("job", "k"), l("__name__", "a"), l("x", "")], samples: vec![Sample { value: 2.0, timestamp: now }], exemplars: vec![] },
            // Partly, then wholly, outside the head's window.
            TimeSeries { labels: vec![l("__name__", "b")], samples: vec![Sample { value: 3.0, timestamp: old }, Sample { value: 4.0, timestamp: now }], exemplars: vec![] },
            TimeSeries { labels: vec![l("__name__", "c")], samples: vec![Sample { value: 5.0, timestamp: old }], exemplars: vec![] },
            // Out of order within the series, and a duplicate.
            TimeSeries { labels: vec![l("__name__", "d")], samples: vec![Sample { value: 1.0, timestamp: now }, Sample { value: 0.0, timestamp: now - 5 }, Sample { value: 1.0, timestamp: now }], exemplars: vec![] },
        ];
        let body = WriteRequest {
            timeseries: series.clone(),
            metadata: vec![MetricMetadata { r#type: MetricType::Counter as i32, metric_family_name: "a".into(), help: "h".into(), unit: "".into() }],
        }
        .encode_to_vec();
        let record = ConsumedRecord {
            partition: 0,
            offset: 7,
            timestamp_ms: now,
            record: Record {
                key: Bytes::from_static(b"t1"),
                value: Bytes::from(body),
                headers: vec![tidemark_ingest_log::Header {
                    key: VERSION_HEADER.to_string(),
                    value: Bytes::copy_from_slice(&tidemark_schemas::record::encode_version(VERSION_1)),
                }],
            },
        };
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(EmbeddedLog::open(EmbeddedConfig { dir: dir.path().to_path_buf(), partitions: 1, fsync: false, ..EmbeddedConfig::default() }).unwrap());
        let c = PartitionConsumer::new(0, log, "g".into(), IngesterConfig::default(), IngesterMetrics::default());
        let in_place = c.apply(&record).unwrap();

        // The decoding path, on another head.
        let reference = Head::new(HeadOptions {
            samples_per_chunk: 120,
            retention_ms: IngesterConfig::default().head_retention.as_millis() as i64,
        });
        let mut decoded = series;
        for ts in &mut decoded {
            ts.samples.retain(|s| s.timestamp >= now - IngesterConfig::default().head_retention.as_millis() as i64);
        }
        decoded.retain(|ts| !ts.samples.is_empty());
        let mut want = reference.append_from("t1", &decoded, 7);
        want.outside_head_window = 2;
        assert_eq!(in_place, want);
        assert_eq!(contents(&c.head, "t1"), contents(&reference, "t1"));
        assert_eq!(contents(&c.head, "t1").len(), 4);
        assert!(!c.head.metadata.get("t1", Some("a")).is_empty());

        // A corrupt body is refused whole.
        let mut bad = record.clone();
        bad.record.value = Bytes::from_static(&[0x0a, 0x05, 0x0a, 0x03]);
        assert!(c.apply(&bad).is_err());
    }

    #[tokio::test]
    async fn ready_at_the_start_up_end_when_the_replay_was_quick_enough() {
        // The end fetched at start-up (1,000 + the first 100) is recent.
        assert_eq!(ready_at(Duration::from_secs(3600)).await, 1_100);
        assert_eq!(ready_at(Duration::ZERO).await, 1_100);
    }

    #[tokio::test]
    async fn a_slow_replay_consumes_to_the_new_end_before_ready() {
        // Every end is older than 1ns when reached: the consumer looks
        // again until the end stops moving (3 growths of 100).
        assert_eq!(ready_at(Duration::from_nanos(1)).await, 1_300);
    }
}
