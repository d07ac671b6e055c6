//! The ingester: the partition consumers a process runs, their readiness,
//! and the in-process query interface over their heads.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tidemark_ingest_log::IngestLog;
use tidemark_storage::chunk::XorIter;
use tidemark_storage::queryable::{merge_metadata, merge_series_streams, merge_sorted_strings};
use tidemark_storage::{
    Labels, Matcher, MetricMetadata, Queryable, Sample, SelectHints, Series, SeriesStream,
    StorageError,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::IngesterConfig;
use crate::consumer::{ConsumerState, PartitionConsumer};
use crate::head::{ClosedChunk, Head, SeriesLimits, SeriesRef};
use crate::metrics::IngesterMetrics;

/// Series read from a head per lock acquisition while streaming.
const READ_BATCH: usize = 256;

/// One partition's head and consumer progress.
#[derive(Clone)]
pub struct OwnedPartition {
    pub partition: i32,
    pub head: Arc<Head>,
    pub state: Arc<ConsumerState>,
}

pub struct Ingester {
    partitions: Vec<OwnedPartition>,
    /// The log, read for its end offsets when a query asks for strong
    /// consistency.
    log: Arc<dyn IngestLog>,
}

impl Ingester {
    /// Starts one consumer per partition in `partitions`.
    pub fn start(
        log: Arc<dyn IngestLog>,
        partitions: &[i32],
        consumer_group: &str,
        cfg: &IngesterConfig,
        metrics: IngesterMetrics,
        cancel: CancellationToken,
    ) -> (Arc<Ingester>, Vec<JoinHandle<()>>) {
        Self::start_with_limits(log, partitions, consumer_group, cfg, metrics, None, cancel)
    }

    /// [`Ingester::start`] enforcing each tenant's series limits from
    /// `overrides`, split over every partition of the log.
    pub fn start_with_limits(
        log: Arc<dyn IngestLog>,
        partitions: &[i32],
        consumer_group: &str,
        cfg: &IngesterConfig,
        metrics: IngesterMetrics,
        overrides: Option<tidemark_limits::Overrides>,
        cancel: CancellationToken,
    ) -> (Arc<Ingester>, Vec<JoinHandle<()>>) {
        let series_limits = overrides.map(|overrides| SeriesLimits {
            overrides,
            partitions: log.partition_count(),
        });
        let mut owned = Vec::new();
        let mut tasks = Vec::new();
        for &p in partitions {
            let c = PartitionConsumer::with_series_limits(
                p,
                log.clone(),
                consumer_group.to_owned(),
                cfg.clone(),
                metrics.clone(),
                series_limits.clone(),
            );
            owned.push(OwnedPartition {
                partition: p,
                head: c.head.clone(),
                state: c.state.clone(),
            });
            tasks.push(tokio::spawn(c.run(cancel.clone())));
        }
        (
            Arc::new(Ingester {
                partitions: owned,
                log,
            }),
            tasks,
        )
    }

    pub fn partitions(&self) -> &[OwnedPartition] {
        &self.partitions
    }

    /// The partitions this process consumes, comma-separated, and how many
    /// the log has: told to queriers so that they can do without an
    /// unreachable ingester whose partitions another one serves.
    pub fn coverage(&self) -> (String, i32) {
        let owned: Vec<String> = self.partitions.iter().map(|p| p.partition.to_string()).collect();
        (owned.join(","), self.log.partition_count())
    }

    /// `Ok` when every partition has caught up with the log as it was at
    /// start-up; otherwise why not.
    pub fn ready(&self) -> Result<(), String> {
        let waiting: Vec<String> = self
            .partitions
            .iter()
            .filter(|p| !p.state.ready.load(Ordering::Relaxed))
            .map(|p| {
                format!(
                    "partition {} is replaying ({} records behind)",
                    p.partition,
                    p.state.lag_at_startup()
                )
            })
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(waiting.join("; "))
        }
    }

    /// Series of one head with their chunks, streamed in batches so that the
    /// head's lock is held briefly and the whole result is never in memory.
    pub fn chunk_stream(
        head: Arc<Head>,
        tenant: String,
        matchers: &[Matcher],
        hints: SelectHints,
    ) -> futures::stream::BoxStream<'static, Vec<(Labels, Vec<ClosedChunk>)>> {
        let refs: Vec<SeriesRef> = head.select(&tenant, matchers, hints.start_ms, hints.end_ms);
        futures::stream::unfold(0usize, move |pos| {
            let head = head.clone();
            let tenant = tenant.clone();
            let refs_batch: Vec<SeriesRef> =
                refs.iter().skip(pos).take(READ_BATCH).copied().collect();
            async move {
                if refs_batch.is_empty() {
                    return None;
                }
                let batch = head.read_series(
                    &tenant,
                    &refs_batch,
                    hints.start_ms,
                    hints.end_ms,
                    hints.labels_only,
                );
                Some((batch, pos + READ_BATCH))
            }
        })
        .boxed()
    }
}

/// A series and its chunks, as a head holds them.
pub type ChunkedSeries = (Labels, Vec<ClosedChunk>);

impl Ingester {
    /// Matching series of every owned partition with their chunks, as one
    /// stream sorted by labels.
    pub fn merged_chunk_stream(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        hints: SelectHints,
    ) -> futures::stream::BoxStream<'static, ChunkedSeries> {
        let mut streams: Vec<futures::stream::BoxStream<'static, ChunkedSeries>> = self
            .partitions
            .iter()
            .map(|p| {
                Ingester::chunk_stream(p.head.clone(), tenant.to_owned(), matchers, hints)
                    .flat_map(futures::stream::iter)
                    .boxed()
            })
            .collect();
        if streams.len() == 1 {
            return streams.pop().expect("one stream");
        }
        let heads: Vec<Option<ChunkedSeries>> = streams.iter().map(|_| None).collect();
        futures::stream::unfold(
            (streams, heads, false),
            |(mut streams, mut heads, primed)| async move {
                if !primed {
                    for (i, s) in streams.iter_mut().enumerate() {
                        heads[i] = s.next().await;
                    }
                }
                let mut min: Option<usize> = None;
                for (i, h) in heads.iter().enumerate() {
                    if let Some((labels, _)) = h {
                        if min.is_none_or(|m| heads[m].as_ref().is_some_and(|(ml, _)| labels < ml))
                        {
                            min = Some(i);
                        }
                    }
                }
                let m = min?;
                let out = heads[m].take()?;
                heads[m] = streams[m].next().await;
                Some((out, (streams, heads, true)))
            },
        )
        .boxed()
    }
}

/// Decodes chunks into the samples inside `[mint, maxt]`.
pub fn samples_in(
    chunks: &[ClosedChunk],
    mint: i64,
    maxt: i64,
) -> Result<Vec<Sample>, StorageError> {
    let mut out = Vec::new();
    for c in chunks {
        if c.max_t < mint || c.min_t > maxt {
            continue;
        }
        let it = XorIter::new(&c.data)
            .map_err(|e| StorageError::Internal(format!("bad head chunk: {e}")))?;
        out.reserve(it.num_samples());
        for s in it {
            let s = s.map_err(|e| StorageError::Internal(format!("bad head chunk: {e}")))?;
            if s.t > maxt {
                // Samples come in time order.
                break;
            }
            if s.t >= mint {
                out.push(s);
            }
        }
    }
    // Out-of-order chunks overlap the others: merge by time, one sample
    // per timestamp (checked per chunk, not per sample).
    if chunks.windows(2).any(|w| w[1].min_t <= w[0].max_t) {
        out.sort_by_key(|s| s.t);
        out.dedup_by_key(|s| s.t);
    }
    Ok(out)
}

#[async_trait]
impl Queryable for Ingester {
    /// Waits until each owned partition's consumer has passed the offset
    /// asked for it, or else the end of the partition as it is now.
    async fn wait_consistent(
        &self,
        offsets: &[(i32, i64)],
        timeout: std::time::Duration,
    ) -> Result<(), StorageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        for p in &self.partitions {
            let target = match offsets.iter().find(|(part, _)| *part == p.partition) {
                Some(&(_, o)) => o,
                None => self.log.latest_offset(p.partition).await.map_err(|e| {
                    StorageError::Unavailable(format!(
                        "partition {}: cannot read the end of the log for read consistency: {e}",
                        p.partition
                    ))
                })?,
            };
            loop {
                let next = p.state.next_offset.load(Ordering::Relaxed);
                if next >= target {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(StorageError::Unavailable(format!(
                        "strong read consistency not reached within {timeout:?}: partition {} consumed up to {next}, the query needs {target}",
                        p.partition
                    )));
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
        Ok(())
    }

    async fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        hints: SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        let streams: Vec<SeriesStream> = self
            .partitions
            .iter()
            .map(|p| {
                Ingester::chunk_stream(p.head.clone(), tenant.to_owned(), matchers, hints)
                    .flat_map(move |batch| {
                        futures::stream::iter(batch.into_iter().map(move |(labels, chunks)| {
                            let samples = samples_in(&chunks, hints.start_ms, hints.end_ms)?;
                            Ok(Series { labels, samples })
                        }))
                    })
                    .filter(move |r: &Result<Series, StorageError>| {
                        let keep =
                            hints.labels_only || r.as_ref().map_or(true, |s| !s.samples.is_empty());
                        futures::future::ready(keep)
                    })
                    .boxed()
            })
            .collect();
        Ok(merge_series_streams(streams))
    }

    async fn label_names(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(merge_sorted_strings(
            self.partitions
                .iter()
                .map(|p| p.head.label_names(tenant, matchers, start_ms, end_ms))
                .collect(),
        ))
    }

    async fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(merge_sorted_strings(
            self.partitions
                .iter()
                .map(|p| {
                    p.head
                        .label_values(tenant, name, matchers, start_ms, end_ms)
                })
                .collect(),
        ))
    }

    async fn metadata(
        &self,
        tenant: &str,
        metric: Option<&str>,
    ) -> Result<Vec<MetricMetadata>, StorageError> {
        Ok(merge_metadata(
            self.partitions
                .iter()
                .map(|p| p.head.metadata.get(tenant, metric))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_storage::chunk::XorAppender;

    fn chunk(samples: &[(i64, f64)]) -> ClosedChunk {
        let mut a = XorAppender::new();
        for &(t, v) in samples {
            a.append(t, v).unwrap();
        }
        ClosedChunk {
            min_t: samples[0].0,
            max_t: samples[samples.len() - 1].0,
            data: a.into_bytes().into(),
            max_offset: 0,
        }
    }

    #[test]
    fn overlapping_out_of_order_chunks_merge_by_time() {
        let chunks = [chunk(&[(10, 1.0), (40, 4.0)]), chunk(&[(20, 2.0), (30, 3.0), (40, 4.0)])];
        let got: Vec<(i64, f64)> = samples_in(&chunks, 0, 100).unwrap().iter().map(|s| (s.t, s.v)).collect();
        assert_eq!(got, [(10, 1.0), (20, 2.0), (30, 3.0), (40, 4.0)]);
        let got: Vec<i64> = samples_in(&chunks, 15, 35).unwrap().iter().map(|s| s.t).collect();
        assert_eq!(got, [20, 30]);
    }
}
