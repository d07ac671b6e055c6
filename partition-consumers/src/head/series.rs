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

/// The fields an append reads come first (`repr(C)` keeps them in this
/// order), so that they span as few cache lines as possible.
#[derive(Debug)]
#[repr(C)]
pub struct MemSeries {
    pub labels: SeriesLabels,
    pub hash: u64,
    head: XorAppender,
    last_t: i64,
    last_v: u64,
    head_min_t: i64,
    head_max_offset: i64,
    pub closed: Vec<ClosedChunk>,
    /// Out-of-order samples accepted within the tenant's window: full
    /// chunks (each sorted, they may overlap the in-order ones and each
    /// other) and the samples being gathered, sorted by time.
    ooo_closed: Vec<ClosedChunk>,
    ooo: Vec<(i64, f64)>,
    ooo_max_offset: i64,
}

impl MemSeries {
    pub fn new(labels: SeriesLabels, hash: u64) -> Self {
        MemSeries {
            labels,
            hash,
            closed: Vec::new(),
            ooo_closed: Vec::new(),
            ooo: Vec::new(),
            ooo_max_offset: i64::MIN,
            head: XorAppender::new(),
            head_min_t: i64::MAX,
            head_max_offset: i64::MIN,
            last_t: i64::MIN,
            last_v: 0,
        }
    }

    pub fn append(&mut self, t: i64, v: f64, samples_per_chunk: usize) -> AppendResult {
        self.append_from(t, v, samples_per_chunk, i64::MIN, 0)
    }

    /// Appends a sample read from the record at log offset `offset`. A
    /// sample older than the series' newest is taken if it is at most
    /// `ooo_window_ms` older (the tenant's out-of-order window).
    pub fn append_from(
        &mut self,
        t: i64,
        v: f64,
        samples_per_chunk: usize,
        offset: i64,
        ooo_window_ms: i64,
    ) -> AppendResult {
        if self.last_t != i64::MIN {
            if t < self.last_t {
                if ooo_window_ms > 0 && t >= self.last_t.saturating_sub(ooo_window_ms) {
                    return self.append_ooo(t, v, samples_per_chunk, offset);
                }
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

    /// Takes an out-of-order sample: duplicates of gathered ones are
    /// dropped as in order, a full buffer becomes a chunk.
    fn append_ooo(&mut self, t: i64, v: f64, samples_per_chunk: usize, offset: i64) -> AppendResult {
        match self.ooo.binary_search_by_key(&t, |&(st, _)| st) {
            Ok(i) => {
                return if self.ooo[i].1.to_bits() == v.to_bits() {
                    AppendResult::Duplicate
                } else {
                    AppendResult::DuplicateTimestamp
                };
            }
            Err(i) => self.ooo.insert(i, (t, v)),
        }
        self.ooo_max_offset = self.ooo_max_offset.max(offset);
        if self.ooo.len() >= samples_per_chunk {
            if let Some(c) = encode_sorted(&self.ooo, self.ooo_max_offset) {
                self.ooo_closed.push(c);
            }
            self.ooo.clear();
            self.ooo_max_offset = i64::MIN;
        }
        AppendResult::Appended
    }

    /// Whether the series holds out-of-order data: its chunks may overlap.
    pub fn has_out_of_order(&self) -> bool {
        !self.ooo.is_empty() || !self.ooo_closed.is_empty()
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
            .unwrap_or(self.head_min_t)
            .min(self.ooo.first().map_or(i64::MAX, |s| s.0))
            .min(self.ooo_closed.iter().map(|c| c.min_t).min().unwrap_or(i64::MAX));
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
        // Out-of-order data after the in-order chunks: readers merge
        // overlapping chunks by time.
        out.extend(
            self.ooo_closed
                .iter()
                .filter(|c| c.min_t <= maxt && c.max_t >= mint)
                .cloned(),
        );
        if self.ooo.first().is_some_and(|f| f.0 <= maxt) && self.ooo.last().is_some_and(|l| l.0 >= mint) {
            out.extend(encode_sorted(&self.ooo, self.ooo_max_offset));
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
        self.ooo_closed.retain(|c| c.max_t >= mint || c.max_offset >= built_below);
        if self.ooo_max_offset < built_below {
            self.ooo.retain(|s| s.0 >= mint);
        }
        if self.closed.is_empty()
            && self.head.num_samples() > 0
            && self.last_t < mint
            && self.head_max_offset < built_below
        {
            self.head = XorAppender::new();
            self.head_min_t = i64::MAX;
            // Keep last_t so that ordering is still enforced if it comes back.
        }
        self.closed.is_empty() && self.head.num_samples() == 0 && !self.has_out_of_order()
    }

    /// Asks the CPU to fetch what an append reads outside this struct: the
    /// labels (compared on lookup) and the end of the open chunk.
    pub fn prefetch_hot_data(&self) {
        let labels = self.labels.as_bytes();
        super::index::prefetch(labels.as_ptr());
        super::index::prefetch(labels.as_ptr().wrapping_add(labels.len().saturating_sub(1)));
        let chunk = self.head.bytes();
        super::index::prefetch(chunk.as_ptr().wrapping_add(chunk.len().saturating_sub(1)));
    }

    /// Approximate heap bytes held, for accounting.
    pub fn heap_bytes(&self) -> usize {
        let labels = self.labels.heap_bytes();
        let chunks: usize = self
            .closed
            .iter()
            .chain(&self.ooo_closed)
            .map(|c| c.data.len() + 40)
            .sum::<usize>()
            + self.ooo.capacity() * 16;
        labels + chunks + self.head.bytes().len() + std::mem::size_of::<Self>()
    }
}

/// Samples sorted by time, unique timestamps, as one XOR chunk.
fn encode_sorted(samples: &[(i64, f64)], max_offset: i64) -> Option<ClosedChunk> {
    let (first, last) = (samples.first()?, samples.last()?);
    let mut app = XorAppender::new();
    for &(t, v) in samples {
        app.append(t, v).ok()?;
    }
    Some(ClosedChunk {
        min_t: first.0,
        max_t: last.0,
        data: app.into_bytes().into(),
        max_offset,
    })
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
