//! One in-memory series: closed chunks and the chunk being appended to.

use tidemark_storage::chunk::XorAppender;

use super::series_labels::SeriesLabels;

/// A closed, immutable chunk.
#[derive(Debug, Clone)]
pub struct ClosedChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub data: std::sync::Arc<[u8]>,
    /// Highest log offset of a record that added a sample to the chunk
    /// (`i64::MIN` when not tracked): the chunk is in blocks once the
    /// block-builder has committed past it.
    pub max_offset: i64,
}

/// Outcome of appending one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendResult {
    Appended,
    /// Same timestamp and value as the last sample: dropped silently.
    Duplicate,
    /// Older than the last sample.
    OutOfOrder,
    /// Same timestamp as the last sample, different value.
    DuplicateTimestamp,
}

#[derive(Debug)]
pub struct MemSeries {
    pub labels: SeriesLabels,
    pub hash: u64,
    pub closed: Vec<ClosedChunk>,
    head: XorAppender,
    head_min_t: i64,
    head_max_offset: i64,
    last_t: i64,
    last_v: u64,
}

impl MemSeries {
    pub fn new(labels: SeriesLabels, hash: u64) -> Self {
        MemSeries {
            labels,
            hash,
            closed: Vec::new(),
            head: XorAppender::new(),
            head_min_t: i64::MAX,
            head_max_offset: i64::MIN,
            last_t: i64::MIN,
            last_v: 0,
        }
    }

    pub fn append(&mut self, t: i64, v: f64, samples_per_chunk: usize) -> AppendResult {
        self.append_from(t, v, samples_per_chunk, i64::MIN)
    }

    /// Appends a sample read from the record at log offset `offset`.
    pub fn append_from(&mut self, t: i64, v: f64, samples_per_chunk: usize, offset: i64) -> AppendResult {
        if self.last_t != i64::MIN {
            if t < self.last_t {
                return AppendResult::OutOfOrder;
            }
            if t == self.last_t {
                return if v.to_bits() == self.last_v {
                    AppendResult::Duplicate
                } else {
                    AppendResult::DuplicateTimestamp
                };
            }
        }
        if self.head.num_samples() >= samples_per_chunk {
            self.cut();
        }
        if self.head.append(t, v).is_err() {
            // Full or out of order can't happen after the checks above, but
            // a fresh chunk always takes the sample.
            self.cut();
            if self.head.append(t, v).is_err() {
                return AppendResult::OutOfOrder;
            }
        }
        if self.head.num_samples() == 1 {
            self.head_min_t = t;
        }
        self.head_max_offset = self.head_max_offset.max(offset);
        self.last_t = t;
        self.last_v = v.to_bits();
        AppendResult::Appended
    }

    fn cut(&mut self) {
        if self.head.num_samples() == 0 {
            return;
        }
        let full = std::mem::take(&mut self.head);
        self.closed.push(ClosedChunk {
            min_t: self.head_min_t,
            max_t: self.last_t,
            data: full.into_bytes().into(),
            max_offset: self.head_max_offset,
        });
        self.head_min_t = i64::MAX;
        self.head_max_offset = i64::MIN;
    }

    /// Time range of the series' data, if it has any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let min = self
            .closed
            .first()
            .map(|c| c.min_t)
            .unwrap_or(self.head_min_t);
        (self.last_t != i64::MIN && min != i64::MAX).then_some((min, self.last_t))
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.time_range()
            .is_some_and(|(lo, hi)| lo <= maxt && hi >= mint)
    }

    /// Copies of the chunks overlapping `[mint, maxt]`, oldest first.
    pub fn chunks_in(&self, mint: i64, maxt: i64) -> Vec<ClosedChunk> {
        let mut out: Vec<ClosedChunk> = self
            .closed
            .iter()
            .filter(|c| c.min_t <= maxt && c.max_t >= mint)
            .cloned()
            .collect();
        if self.head.num_samples() > 0 && self.head_min_t <= maxt && self.last_t >= mint {
            out.push(ClosedChunk {
                min_t: self.head_min_t,
                max_t: self.last_t,
                data: self.head.bytes().into(),
                max_offset: self.head_max_offset,
            });
        }
        out
    }

    /// Drops closed chunks that end before `mint`. Returns whether the series
    /// is now empty and can be removed.
    pub fn truncate_before(&mut self, mint: i64) -> bool {
        self.truncate_built(mint, i64::MAX)
    }

    /// Drops the chunks that end before `mint` and whose records are all
    /// below `built_below` (in blocks). Returns whether the series is now
    /// empty and can be removed.
    pub fn truncate_built(&mut self, mint: i64, built_below: i64) -> bool {
        self.closed.retain(|c| c.max_t >= mint || c.max_offset >= built_below);
        if self.closed.is_empty()
            && self.head.num_samples() > 0
            && self.last_t < mint
            && self.head_max_offset < built_below
        {
            self.head = XorAppender::new();
            self.head_min_t = i64::MAX;
            // Keep last_t so that ordering is still enforced if it comes back.
        }
        self.closed.is_empty() && self.head.num_samples() == 0
    }

    /// Approximate heap bytes held, for accounting.
    pub fn heap_bytes(&self) -> usize {
        let labels = self.labels.heap_bytes();
        let chunks: usize = self.closed.iter().map(|c| c.data.len() + 32).sum();
        labels + chunks + self.head.bytes().len() + std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_storage::chunk::decode_all;

    #[test]
    fn append_rules() {
        let mut s = MemSeries::new(
            SeriesLabels::new(&tidemark_storage::Labels::from_pairs([("__name__", "m")])),
            1,
        );
        assert_eq!(s.append(10, 1.0, 120), AppendResult::Appended);
        assert_eq!(s.append(10, 1.0, 120), AppendResult::Duplicate);
        assert_eq!(s.append(10, 2.0, 120), AppendResult::DuplicateTimestamp);
        assert_eq!(s.append(5, 2.0, 120), AppendResult::OutOfOrder);
        assert_eq!(s.append(20, 2.0, 120), AppendResult::Appended);
        assert_eq!(s.time_range(), Some((10, 20)));
    }

    #[test]
    fn cuts_chunks_and_truncates() {
        let mut s = MemSeries::new(SeriesLabels::new(&tidemark_storage::Labels::default()), 1);
        for t in 0..300 {
            assert_eq!(s.append(t * 10, t as f64, 120), AppendResult::Appended);
        }
        assert_eq!(s.closed.len(), 2);
        let all: Vec<_> = s
            .chunks_in(i64::MIN, i64::MAX)
            .iter()
            .flat_map(|c| decode_all(&c.data).unwrap())
            .collect();
        assert_eq!(all.len(), 300);
        assert_eq!(s.chunks_in(1300, 1400).len(), 1);
        assert!(!s.truncate_before(1300));
        assert_eq!(s.closed.len(), 1);
        assert!(s.truncate_before(10_000));
        assert_eq!(
            s.append(2980, 1.0, 120),
            AppendResult::OutOfOrder,
            "order kept after truncation"
        );
    }
}
