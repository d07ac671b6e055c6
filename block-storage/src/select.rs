//! Streaming the series of one block that match a selector, sorted by
//! labels, one row group in memory at a time. The row groups come from a
//! [`RowGroupSource`]: the block read directly (compactor) or through the
//! store-gateway's caches.

use std::sync::Arc;

use arrow_array::{Array, BinaryArray};
use async_trait::async_trait;
use tidemark_storage::matcher::matches_all;
use tidemark_storage::{Matcher, Sample, SelectHints, Series, SeriesStream, StorageError};

use crate::reader::{BlockReader, RowGroupSeries};

/// Where a block's row groups are read from.
#[async_trait]
pub trait RowGroupSource: Send + Sync + 'static {
    fn reader(&self) -> &BlockReader;
    /// The series (labels, time range) of row group `rg`.
    async fn series(&self, rg: usize) -> Result<Arc<RowGroupSeries>, StorageError>;
    /// Chunk column `slice` of row group `rg`.
    async fn column(&self, rg: usize, slice: usize) -> Result<Arc<BinaryArray>, StorageError>;
    /// Told whether each row group was read or skipped by its statistics.
    fn row_group_visited(&self, _read: bool) {}
    /// Told of every series returned.
    fn series_returned(&self) {}
}

#[async_trait]
impl RowGroupSource for BlockReader {
    fn reader(&self) -> &BlockReader {
        self
    }
    async fn series(&self, rg: usize) -> Result<Arc<RowGroupSeries>, StorageError> {
        Ok(Arc::new(self.read_series(rg).await?))
    }
    async fn column(&self, rg: usize, slice: usize) -> Result<Arc<BinaryArray>, StorageError> {
        Ok(Arc::new(self.read_chunk_column(rg, slice).await?))
    }
}

/// The rows of a row group that match and have samples in `[start, end]`.
pub fn matching_rows(s: &RowGroupSeries, matchers: &[Matcher], start: i64, end: i64) -> Vec<usize> {
    (0..s.labels.len())
        .filter(|&i| s.min_t[i] <= end && s.max_t[i] >= start && matches_all(matchers, &s.labels[i]))
        .collect()
}

/// The matching series of one block, sorted by labels, with their samples
/// in the range (none with `labels_only`).
pub fn select_series<S: RowGroupSource>(src: Arc<S>, matchers: Vec<Matcher>, hints: SelectHints) -> SeriesStream {
    Box::pin(async_stream::try_stream! {
        let (start, end) = (hints.start_ms, hints.end_ms);
        let r = src.reader();
        for rg in 0..r.num_row_groups() {
            if !r.row_group_may_match(rg, &matchers, start, end) {
                src.row_group_visited(false);
                continue;
            }
            src.row_group_visited(true);
            let s = src.series(rg).await?;
            let rows = matching_rows(&s, &matchers, start, end);
            if rows.is_empty() {
                continue;
            }
            if hints.labels_only {
                for row in rows {
                    yield Series { labels: s.labels[row].clone(), samples: Vec::new() };
                }
                continue;
            }
            let mut columns = Vec::new();
            for slice in r.slices_for(start, end) {
                columns.push(src.column(rg, slice).await?);
            }
            for row in rows {
                let mut samples: Vec<Sample> = Vec::new();
                for col in &columns {
                    if row >= col.len() || col.is_null(row) {
                        continue;
                    }
                    for c in r.decode(col.value(row))? {
                        if c.max_t < start || c.min_t > end {
                            continue;
                        }
                        let it = c.samples().map_err(|e| bad_chunk(r, e))?;
                        for sample in it {
                            let sample = sample.map_err(|e| bad_chunk(r, e))?;
                            if sample.t >= start && sample.t <= end {
                                samples.push(sample);
                            }
                        }
                    }
                }
                if !samples.is_empty() {
                    src.series_returned();
                    yield Series { labels: s.labels[row].clone(), samples };
                }
            }
        }
    })
}

fn bad_chunk(r: &BlockReader, e: impl std::fmt::Display) -> StorageError {
    StorageError::Internal(format!(
        "block {} of tenant {}: bad chunk: {e}",
        r.meta.block_id, r.meta.tenant
    ))
}
