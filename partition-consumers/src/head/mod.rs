//! The in-memory head: per-tenant series, an inverted index over their
//! labels, and XOR-compressed chunks.

mod index;
mod metadata;
mod postings;
mod series;
mod series_labels;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use tidemark_schemas::prometheus::TimeSeries;
use tidemark_schemas::scan::SeriesRead;
use tidemark_storage::{Label, Labels, Matcher};

use index::SeriesIndex;
pub use metadata::MetadataStore;
pub use postings::Postings;
pub use series::{AppendResult, ClosedChunk, MemSeries};
pub use series_labels::SeriesLabels;
use series_labels::label_hash;

/// What appending a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppendStats {
    pub appended: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub duplicate_timestamp: u64,
    pub new_series: u64,
    pub invalid_series: u64,
    /// Samples older than the head keeps (now minus its retention): they
    /// are in blocks, or will be once the block-builder reads them.
    pub outside_head_window: u64,
    /// Samples of new series refused by the tenant's series limit
    /// (`max_global_series_per_user`, this partition's share).
    pub per_user_series_limit: u64,
    /// The same for `max_global_series_per_metric`.
    pub per_metric_series_limit: u64,
}

impl AppendStats {
    pub fn add(&mut self, o: &AppendStats) {
        self.appended += o.appended;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.duplicate_timestamp += o.duplicate_timestamp;
        self.new_series += o.new_series;
        self.invalid_series += o.invalid_series;
        self.outside_head_window += o.outside_head_window;
        self.per_user_series_limit += o.per_user_series_limit;
        self.per_metric_series_limit += o.per_metric_series_limit;
    }
}

/// A series chosen by a select: its ID and hash (the hash guards against the
/// ID being reused by garbage collection before the chunks are read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesRef {
    pub id: u32,
    pub hash: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct HeadOptions {
    pub samples_per_chunk: usize,
    /// Data older than the tenant's newest sample minus this is dropped.
    pub retention_ms: i64,
}

/// Where a head finds each tenant's series limits, and how many
/// partitions share them: each partition allows `ceil(limit / partitions)`.
#[derive(Debug, Clone)]
pub struct SeriesLimits {
    pub overrides: tidemark_limits::Overrides,
    /// Partitions of the ingest log (all of them, not only this process's).
    pub partitions: i32,
}

impl SeriesLimits {
    /// This partition's share of `tenant`'s (per-user, per-metric) limits;
    /// 0 is no limit.
    /// The tenant's out-of-order window in milliseconds (0: none).
    pub fn ooo_window_ms(&self, tenant: &str) -> i64 {
        self.overrides.get(tenant).out_of_order_time_window.as_millis() as i64
    }

    pub fn for_tenant(&self, tenant: &str) -> (u64, u64) {
        let l = self.overrides.get(tenant);
        (
            tidemark_limits::per_partition_limit(l.max_global_series_per_user, self.partitions),
            tidemark_limits::per_partition_limit(l.max_global_series_per_metric, self.partitions),
        )
    }
}

/// Why a new series was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeriesRefusal {
    PerUser,
    PerMetric,
}

/// One tenant's series.
#[derive(Debug, Default)]
struct TenantHead {
    series: Vec<Option<MemSeries>>,
    free: Vec<u32>,
    by_hash: SeriesIndex,
    postings: Postings,
    max_t: i64,
    live: usize,
}

impl TenantHead {
    fn lookup(&self, hash: u64, eq: impl Fn(&SeriesLabels) -> bool) -> Option<u32> {
        self.by_hash.find(hash, |id| {
            self.series[id as usize]
                .as_ref()
                .is_some_and(|s| eq(&s.labels))
        })
    }

    /// Whether one more series with `labels` fits the limits (0 = none).
    fn admit(
        &self,
        labels: &SeriesLabels,
        max_per_user: u64,
        max_per_metric: u64,
    ) -> Result<(), SeriesRefusal> {
        if max_per_user > 0 && self.live as u64 >= max_per_user {
            return Err(SeriesRefusal::PerUser);
        }
        if max_per_metric > 0 {
            if let Some(name) = labels.get("__name__") {
                if self.postings.count("__name__", name) as u64 >= max_per_metric {
                    return Err(SeriesRefusal::PerMetric);
                }
            }
        }
        Ok(())
    }

    fn create(&mut self, labels: SeriesLabels, hash: u64) -> u32 {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.series.push(None);
                (self.series.len() - 1) as u32
            }
        };
        self.postings.add(id, labels.pairs());
        self.series[id as usize] = Some(MemSeries::new(labels, hash));
        self.by_hash.insert(hash, id);
        self.live += 1;
        id
    }

    fn remove(&mut self, id: u32) {
        let Some(s) = self.series[id as usize].take() else {
            return;
        };
        self.postings.remove(id, s.labels.pairs());
        self.by_hash.remove(s.hash, id);
        self.free.push(id);
        self.live -= 1;
    }

    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesRef> {
        let mut candidates: Option<Vec<u32>> = None;
        for m in matchers {
            if let Some(ids) = self.postings.matching(m) {
                candidates = Some(match candidates {
                    None => ids,
                    Some(c) => postings::intersect(&c, &ids),
                });
            }
        }
        let ids: Box<dyn Iterator<Item = u32>> = match candidates {
            Some(c) => Box::new(c.into_iter()),
            None => Box::new(0..self.series.len() as u32),
        };
        let mut out: Vec<(&SeriesLabels, SeriesRef)> = ids
            .filter_map(|id| {
                let s = self.series[id as usize].as_ref()?;
                (s.overlaps(mint, maxt) && s.labels.matches(matchers))
                    .then_some((&s.labels, SeriesRef { id, hash: s.hash }))
            })
            .collect();
        // In label order, compared as stored (no label set built).
        out.sort_by(|a, b| a.0.cmp_labels(b.0));
        out.into_iter().map(|(_, r)| r).collect()
    }

    /// Asks the CPU to fetch series `id`'s entry (see `Head::append_series`).
    fn prefetch_series(&self, id: u32) {
        if let Some(entry) = self.series.get(id as usize) {
            let p: *const Option<MemSeries> = entry;
            index::prefetch(p);
            index::prefetch(p.cast::<u8>().wrapping_add(std::mem::size_of::<Option<MemSeries>>() - 1));
        }
    }

    fn get(&self, r: SeriesRef) -> Option<&MemSeries> {
        self.series
            .get(r.id as usize)?
            .as_ref()
            .filter(|s| s.hash == r.hash)
    }
}

/// The head of one partition: every tenant's recent series.
#[derive(Debug)]
pub struct Head {
    tenants: RwLock<HashMap<String, Arc<RwLock<TenantHead>>>>,
    opts: HeadOptions,
    /// Per-tenant series limits; none means no limit.
    series_limits: Option<SeriesLimits>,
    /// Metric metadata that arrived with the series.
    pub metadata: MetadataStore,
}

impl Head {
    pub fn new(opts: HeadOptions) -> Self {
        Head {
            tenants: RwLock::new(HashMap::new()),
            opts,
            series_limits: None,
            metadata: MetadataStore::default(),
        }
    }

    /// A head that refuses new series past each tenant's series limits.
    pub fn with_series_limits(opts: HeadOptions, limits: Option<SeriesLimits>) -> Self {
        Head {
            series_limits: limits,
            ..Head::new(opts)
        }
    }

    fn tenant(&self, tenant: &str) -> Option<Arc<RwLock<TenantHead>>> {
        self.tenants.read().get(tenant).cloned()
    }

    fn tenant_or_create(&self, tenant: &str) -> Arc<RwLock<TenantHead>> {
        if let Some(t) = self.tenant(tenant) {
            return t;
        }
        self.tenants
            .write()
            .entry(tenant.to_owned())
            .or_default()
            .clone()
    }

    /// Appends decoded remote-write series of one tenant.
    ///
    /// Series are looked up in groups whose memory is prefetched stage by
    /// stage: with a head larger than the CPU's caches every lookup is a
    /// few cache misses, and a group's misses then overlap.
    pub fn append(&self, tenant: &str, batch: &[TimeSeries]) -> AppendStats {
        self.append_from(tenant, batch, i64::MIN)
    }

    /// Appends the series of the record at log offset `offset`; the offset
    /// tells later when the chunks are in blocks.
    pub fn append_from(&self, tenant: &str, batch: &[TimeSeries], offset: i64) -> AppendStats {
        self.append_series(tenant, batch.iter().map(ProtoSeries), offset)
    }

    /// [`Head::append_from`] for series read in place from a record.
    pub fn append_read<'r, 'a: 'r>(&self, tenant: &str, batch: impl Iterator<Item = SeriesRead<'r, 'a>>, offset: i64) -> AppendStats {
        self.append_series(tenant, batch, offset)
    }

    fn append_series<S: AppendSource>(&self, tenant: &str, batch: impl Iterator<Item = S>, offset: i64) -> AppendStats {
        let (max_user, max_metric) = self
            .series_limits
            .as_ref()
            .map_or((0, 0), |l| l.for_tenant(tenant));
        let mut appender = Appender {
            stats: AppendStats::default(),
            max_user,
            max_metric,
            ooo_window_ms: self
                .series_limits
                .as_ref()
                .map_or(0, |l| l.ooo_window_ms(tenant)),
            samples_per_chunk: self.opts.samples_per_chunk,
            offset,
        };
        let th = self.tenant_or_create(tenant);
        let mut th = th.write();
        let mut batch = batch.peekable();
        let mut group: Vec<S> = Vec::with_capacity(LOOKUP_GROUP);
        // Labels re-encoded in the head's layout, for series whose label
        // fields are not at hand (decoded series).
        let mut encoded = Vec::with_capacity(LOOKUP_GROUP * 256);
        let mut keys: Vec<GroupKey> = Vec::with_capacity(LOOKUP_GROUP);
        let mut found: Vec<Option<u32>> = Vec::with_capacity(LOOKUP_GROUP);
        let mut scratch = Vec::with_capacity(256);
        while batch.peek().is_some() {
            group.clear();
            group.extend(batch.by_ref().take(LOOKUP_GROUP));
            encoded.clear();
            keys.clear();
            found.clear();
            // Each stage asks for the memory the next one reads, so that a
            // group's cache misses overlap: the index slots, then the
            // series they name, then those series' labels and open chunks.
            for ts in &group {
                let key = if let Some(fields) = ts.label_fields() {
                    GroupKey::Fields(label_hash(fields))
                } else {
                    let start = encoded.len();
                    if ts.encode_labels(&mut encoded) {
                        GroupKey::Encoded(start..encoded.len(), label_hash(&encoded[start..]))
                    } else {
                        GroupKey::Unusual
                    }
                };
                if let Some(hash) = key.hash() {
                    th.by_hash.prefetch(hash);
                }
                keys.push(key);
            }
            for key in &keys {
                let id = key.hash().and_then(|hash| th.by_hash.first(hash));
                if let Some(id) = id {
                    th.prefetch_series(id);
                }
                found.push(id);
            }
            for id in found.iter().flatten() {
                if let Some(s) = &th.series[*id as usize] {
                    s.prefetch_hot_data();
                }
            }
            for (ts, key) in group.drain(..).zip(&keys) {
                let key = match key {
                    GroupKey::Fields(hash) => SeriesKey::Fields(*hash),
                    GroupKey::Encoded(range, hash) => SeriesKey::Encoded(&encoded[range.clone()], *hash),
                    GroupKey::Unusual => SeriesKey::Unusual,
                };
                appender.append(&mut th, &ts, key, &mut scratch);
            }
        }
        appender.stats
    }

    /// Series of `tenant` matching every matcher with data in
    /// `[mint, maxt]`, sorted by labels.
    pub fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<SeriesRef> {
        match self.tenant(tenant) {
            Some(th) => th.read().select(matchers, mint, maxt),
            None => Vec::new(),
        }
    }

    /// Labels and the chunks overlapping `[mint, maxt]` of selected series;
    /// series removed since the select are skipped.
    pub fn read_series(
        &self,
        tenant: &str,
        refs: &[SeriesRef],
        mint: i64,
        maxt: i64,
        labels_only: bool,
    ) -> Vec<(Labels, Vec<ClosedChunk>)> {
        let Some(th) = self.tenant(tenant) else {
            return Vec::new();
        };
        let th = th.read();
        refs.iter()
            .filter_map(|&r| th.get(r))
            .map(|s| {
                (
                    s.labels.to_labels(),
                    if labels_only {
                        Vec::new()
                    } else {
                        s.chunks_in(mint, maxt)
                    },
                )
            })
            .collect()
    }

    pub fn label_names(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<String> {
        let Some(th) = self.tenant(tenant) else {
            return Vec::new();
        };
        let th = th.read();
        let mut names: Vec<String> = if matchers.is_empty() {
            th.postings.label_names().cloned().collect()
        } else {
            let mut set = std::collections::BTreeSet::new();
            for r in th.select(matchers, mint, maxt) {
                if let Some(s) = th.get(r) {
                    set.extend(s.labels.pairs().map(|(n, _)| n.to_owned()));
                }
            }
            set.into_iter().collect()
        };
        names.sort_unstable();
        names
    }

    pub fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<String> {
        let Some(th) = self.tenant(tenant) else {
            return Vec::new();
        };
        let th = th.read();
        let mut values: Vec<String> = if matchers.is_empty() {
            th.postings.label_values(name).cloned().collect()
        } else {
            let mut set = std::collections::BTreeSet::new();
            for r in th.select(matchers, mint, maxt) {
                if let Some(v) = th.get(r).and_then(|s| s.labels.get(name)) {
                    set.insert(v.to_owned());
                }
            }
            set.into_iter().collect()
        };
        values.sort_unstable();
        values
    }

    /// Drops data older than each tenant's newest sample minus the
    /// retention, and series left empty. Returns the series removed.
    pub fn truncate(&self) -> usize {
        self.truncate_built(i64::MAX)
    }

    /// As [`Head::truncate`], but keeps data past the retention whose
    /// records are at or above `built_below` (not yet in blocks), up to
    /// twice the retention, so that memory stays bounded even when the
    /// block-builder is stopped. Returns the series removed.
    pub fn truncate_built(&self, built_below: i64) -> usize {
        let tenants: Vec<Arc<RwLock<TenantHead>>> = self.tenants.read().values().cloned().collect();
        let mut removed = 0;
        for th in tenants {
            let mut th = th.write();
            let mint = th.max_t.saturating_sub(self.opts.retention_ms);
            let hard_mint = th.max_t.saturating_sub(self.opts.retention_ms.saturating_mul(2));
            let empty: Vec<u32> = th
                .series
                .iter_mut()
                .enumerate()
                .filter_map(|(id, s)| {
                    let empty = s.as_mut().is_some_and(|s| {
                        s.truncate_built(mint, built_below);
                        s.truncate_before(hard_mint)
                    });
                    empty.then_some(id as u32)
                })
                .collect();
            removed += empty.len();
            for id in empty {
                th.remove(id);
            }
        }
        self.tenants.write().retain(|_, th| th.read().live > 0);
        removed
    }

    /// Number of series in memory, over all tenants.
    pub fn num_series(&self) -> usize {
        self.tenants.read().values().map(|t| t.read().live).sum()
    }

    /// Approximate heap bytes held by series and index.
    pub fn heap_bytes(&self) -> usize {
        self.tenants
            .read()
            .values()
            .map(|t| {
                let t = t.read();
                t.series
                    .iter()
                    .flatten()
                    .map(|s| s.heap_bytes())
                    .sum::<usize>()
                    + t.postings.heap_bytes()
                    + t.by_hash.heap_bytes()
                    + t.series.capacity() * std::mem::size_of::<Option<MemSeries>>()
            })
            .sum()
    }
}

/// Series looked up together on append (see `Head::append_series`).
const LOOKUP_GROUP: usize = 32;

/// What appending one batch needs besides the series: its tenant's limits,
/// the record's offset, and the counts so far.
struct Appender {
    stats: AppendStats,
    max_user: u64,
    max_metric: u64,
    ooo_window_ms: i64,
    samples_per_chunk: usize,
    offset: i64,
}

/// How a series of a lookup group is found: the hash of its label fields
/// as they lie in the record, or of its labels re-encoded in the head's
/// layout, or neither (labels not in the distributor's form).
enum GroupKey {
    Fields(u64),
    Encoded(std::ops::Range<usize>, u64),
    Unusual,
}

impl GroupKey {
    fn hash(&self) -> Option<u64> {
        match self {
            GroupKey::Fields(h) | GroupKey::Encoded(_, h) => Some(*h),
            GroupKey::Unusual => None,
        }
    }
}

/// [`GroupKey`] with the encoded labels at hand.
enum SeriesKey<'k> {
    Fields(u64),
    Encoded(&'k [u8], u64),
    Unusual,
}

impl Appender {
    /// Appends one series' samples.
    fn append<S: AppendSource>(&mut self, th: &mut TenantHead, ts: &S, key: SeriesKey<'_>, scratch: &mut Vec<u8>) {
        let id = match key {
            SeriesKey::Fields(hash) => {
                let fields = ts.label_fields().unwrap_or_default();
                match th.lookup(hash, |l| l.as_bytes() == fields) {
                    Some(id) => Some(id),
                    None => match SeriesLabels::from_encoded(fields) {
                        // Already in the head's layout, and just looked up:
                        // a new series, stored as its fields lie.
                        Some(labels) => self.create(th, labels, hash, ts.num_samples()),
                        // Labels in another order or form than the head's
                        // (the fields then never match), or not UTF-8.
                        None => {
                            scratch.clear();
                            if !ts.encode_labels(scratch) {
                                self.series_of_unusual(th, ts)
                            } else {
                                let hash = label_hash(scratch);
                                self.series_of_encoded(th, ts, scratch, hash)
                            }
                        }
                    },
                }
            }
            SeriesKey::Encoded(encoded, hash) => self.series_of_encoded(th, ts, encoded, hash),
            SeriesKey::Unusual => self.series_of_unusual(th, ts),
        };
        let Some(id) = id else {
            return;
        };
        let mut max_t = th.max_t;
        let Some(series) = th.series[id as usize].as_mut() else {
            return;
        };
        let stats = &mut self.stats;
        for (t, v) in ts.samples() {
            match series.append_from(t, v, self.samples_per_chunk, self.offset, self.ooo_window_ms) {
                AppendResult::Appended => {
                    stats.appended += 1;
                    max_t = max_t.max(t);
                }
                AppendResult::Duplicate => stats.duplicates += 1,
                AppendResult::OutOfOrder => stats.out_of_order += 1,
                AppendResult::DuplicateTimestamp => stats.duplicate_timestamp += 1,
            }
        }
        th.max_t = max_t;
    }

    /// The series of labels in the head's layout, created if new.
    fn series_of_encoded<S: AppendSource>(&mut self, th: &mut TenantHead, ts: &S, encoded: &[u8], hash: u64) -> Option<u32> {
        if let Some(id) = th.lookup(hash, |l| l.as_bytes() == encoded) {
            return Some(id);
        }
        self.create_encoded(th, ts, encoded, hash)
    }

    /// A new series of labels in the head's layout, if they are valid.
    fn create_encoded<S: AppendSource>(&mut self, th: &mut TenantHead, ts: &S, encoded: &[u8], hash: u64) -> Option<u32> {
        match SeriesLabels::from_encoded(encoded) {
            Some(labels) => self.create(th, labels, hash, ts.num_samples()),
            None => {
                self.stats.invalid_series += 1;
                None
            }
        }
    }

    /// The series of labels not sorted or with empty values: normalised
    /// the slow way.
    fn series_of_unusual<S: AppendSource>(&mut self, th: &mut TenantHead, ts: &S) -> Option<u32> {
        let Some(labels) = ts.labels() else {
            self.stats.invalid_series += 1;
            return None;
        };
        let flat = SeriesLabels::new(&labels);
        let hash = flat.hash();
        match th.lookup(hash, |l| *l == flat) {
            Some(id) => Some(id),
            None => self.create(th, flat, hash, ts.num_samples()),
        }
    }

    /// A new series, unless the tenant's limits refuse it (its samples
    /// are then counted as refused).
    fn create(&mut self, th: &mut TenantHead, labels: SeriesLabels, hash: u64, samples: usize) -> Option<u32> {
        match th.admit(&labels, self.max_user, self.max_metric) {
            Ok(()) => {
                self.stats.new_series += 1;
                Some(th.create(labels, hash))
            }
            Err(SeriesRefusal::PerUser) => {
                self.stats.per_user_series_limit += samples as u64;
                None
            }
            Err(SeriesRefusal::PerMetric) => {
                self.stats.per_metric_series_limit += samples as u64;
                None
            }
        }
    }
}

/// A series to append, whatever it was read into.
trait AppendSource {
    /// Encodes the labels in the head's layout; false unless they are in
    /// the form the distributor writes (see [`SeriesLabels::encode_wire`]).
    fn encode_labels(&self, buf: &mut Vec<u8>) -> bool;
    /// The series' label fields as they lie in the record, when they are
    /// all of its labels (see `tidemark_schemas::scan::read_series_samples`).
    fn label_fields(&self) -> Option<&[u8]> {
        None
    }
    /// The labels normalised (sorted, empty values dropped), if UTF-8 and
    /// not empty.
    fn labels(&self) -> Option<Labels>;
    fn num_samples(&self) -> usize;
    fn samples(&self) -> impl Iterator<Item = (i64, f64)> + '_;
}

/// A decoded series.
struct ProtoSeries<'a>(&'a TimeSeries);

impl AppendSource for ProtoSeries<'_> {
    fn encode_labels(&self, buf: &mut Vec<u8>) -> bool {
        SeriesLabels::encode_wire(&self.0.labels, buf)
    }
    fn labels(&self) -> Option<Labels> {
        labels_from_pairs(self.0.labels.iter().map(|l| (l.name.as_ref(), l.value.as_ref())))
    }
    fn num_samples(&self) -> usize {
        self.0.samples.len()
    }
    fn samples(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.0.samples.iter().map(|s| (s.timestamp, s.value))
    }
}

/// A series read in place from a record body: views into it.
impl AppendSource for SeriesRead<'_, '_> {
    fn encode_labels(&self, buf: &mut Vec<u8>) -> bool {
        SeriesLabels::encode_pairs(self.label_views().map(|l| (l.name, l.value)), buf)
    }
    fn label_fields(&self) -> Option<&[u8]> {
        self.label_fields
    }
    fn labels(&self) -> Option<Labels> {
        labels_from_pairs(self.label_views().map(|l| (l.name, l.value)))
    }
    fn num_samples(&self) -> usize {
        self.samples.len()
    }
    fn samples(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.samples.iter().copied()
    }
}

fn labels_from_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Option<Labels> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        out.push(Label {
            name: String::from_utf8(name.to_vec()).ok()?,
            value: String::from_utf8(value.to_vec()).ok()?,
        });
    }
    let labels = Labels::new(out);
    (!labels.is_empty()).then_some(labels)
}


#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tidemark_schemas::prometheus::{Label as PLabel, Sample};
    use tidemark_storage::chunk::decode_all;
    use tidemark_storage::MatchOp;

    fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| PLabel {
                    name: Bytes::copy_from_slice(n.as_bytes()),
                    value: Bytes::copy_from_slice(v.as_bytes()),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(t, v)| Sample {
                    timestamp: t,
                    value: v,
                })
                .collect(),
            exemplars: vec![],
        }
    }

    fn head() -> Head {
        Head::new(HeadOptions {
            samples_per_chunk: 120,
            retention_ms: 3_600_000,
        })
    }

    #[test]
    fn append_and_select() {
        let h = head();
        let s = h.append(
            "t1",
            &[
                ts(
                    &[("__name__", "up"), ("job", "a")],
                    &[(1000, 1.0), (2000, 1.0)],
                ),
                ts(&[("__name__", "up"), ("job", "b")], &[(1000, 0.0)]),
                ts(&[("__name__", "other")], &[(1000, 5.0)]),
            ],
        );
        assert_eq!(s.appended, 4);
        assert_eq!(s.new_series, 3);
        // Unsorted input lands in the same series.
        let s = h.append(
            "t1",
            &[ts(
                &[("job", "a"), ("__name__", "up"), ("x", "")],
                &[(3000, 2.0)],
            )],
        );
        assert_eq!((s.appended, s.new_series), (1, 0));

        let refs = h.select("t1", &[Matcher::equal("__name__", "up")], 0, 10_000);
        let got = h.read_series("t1", &refs, 0, 10_000, false);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.get("job"), Some("a"));
        let samples: Vec<_> = got[0]
            .1
            .iter()
            .flat_map(|c| decode_all(&c.data).unwrap())
            .collect();
        assert_eq!(
            samples.iter().map(|s| s.t).collect::<Vec<_>>(),
            [1000, 2000, 3000]
        );

        let neg = Matcher::new(MatchOp::NotEqual, "job", "a").unwrap();
        let refs = h.select("t1", &[neg], 0, 10_000);
        let names: Vec<_> = h
            .read_series("t1", &refs, 0, 0, true)
            .into_iter()
            .map(|(l, _)| l.to_string())
            .collect();
        assert_eq!(names, ["other{}", "up{job=\"b\"}"]);

        // Time filtering and tenant isolation.
        assert!(h
            .select("t1", &[Matcher::equal("__name__", "other")], 5000, 6000)
            .is_empty());
        assert!(h
            .select("t2", &[Matcher::equal("__name__", "up")], 0, 10_000)
            .is_empty());
        assert_eq!(h.label_values("t1", "job", &[], 0, 10_000), ["a", "b"]);
        assert_eq!(
            h.label_names("t1", &[Matcher::equal("__name__", "other")], 0, 10_000),
            ["__name__"]
        );
        assert!(h.label_names("t2", &[], 0, 1).is_empty());
    }

    /// A series repeated in one batch, new or known, sorted or not, is
    /// one series with every sample.
    #[test]
    fn series_repeated_within_a_batch_stay_one_series() {
        let h = head();
        let n = 101;
        let mut batch = Vec::new();
        for i in 0..n {
            let id = (i % 7).to_string();
            let labels: Vec<(&str, &str)> = if i % 2 == 0 {
                vec![("__name__", "m"), ("id", id.as_str())]
            } else {
                vec![("id", id.as_str()), ("__name__", "m")]
            };
            batch.push(ts(&labels, &[(1000 + i as i64, i as f64)]));
        }
        let s = h.append("t", &batch);
        assert_eq!((s.appended, s.new_series), (n as u64, 7));
        assert_eq!(h.num_series(), 7);
        // Again: each series' last sample is a duplicate, the others are
        // older than it.
        let s = h.append("t", &batch);
        assert_eq!((s.duplicates, s.out_of_order, s.new_series), (7, n as u64 - 7, 0));
        let refs = h.select("t", &[Matcher::equal("id", "3")], 0, 1_000_000);
        let got = h.read_series("t", &refs, 0, 1_000_000, false);
        let times: Vec<i64> = got[0].1.iter().flat_map(|c| decode_all(&c.data).unwrap()).map(|s| s.t).collect();
        let want: Vec<i64> = (0..n).filter(|i| i % 7 == 3).map(|i| 1000 + i as i64).collect();
        assert_eq!(times, want);
    }

    /// Series read in place (found by their label fields as they lie in
    /// the record) land where the same series decoded do, whatever the
    /// order of their labels and fields, across batches and within one.
    #[test]
    fn series_read_in_place_append_as_decoded_ones() {
        use prost::Message;
        let (in_place, decoded) = (head(), head());
        for round in 0..3i64 {
            let mut batch = Vec::new();
            for i in 0..60i64 {
                let id = (i % 9).to_string();
                let mut labels = vec![("__name__", "m"), ("id", id.as_str()), ("z", "1")];
                match i % 4 {
                    1 => labels.reverse(),
                    // An empty value: the label is dropped.
                    2 => labels.push(("zz", "")),
                    _ => {}
                }
                batch.push(ts(&labels, &[(round * 1000 + i, i as f64)]));
            }
            let mut body = tidemark_schemas::prometheus::WriteRequest { timeseries: batch.clone(), ..Default::default() }.encode_to_vec();
            // One more series whose last label follows its sample: its
            // label fields alone are not its labels.
            let mut odd = ts(&[("__name__", "m"), ("id", "4")], &[(round * 1000 + 99, 1.0)]).encode_to_vec();
            let last = PLabel { name: Bytes::from_static(b"z"), value: Bytes::from_static(b"1") }.encode_to_vec();
            odd.extend_from_slice(&[0x0a, last.len() as u8]);
            odd.extend_from_slice(&last);
            body.push(0x0a);
            prost::encoding::encode_varint(odd.len() as u64, &mut body);
            body.extend_from_slice(&odd);
            batch.push(ts(&[("__name__", "m"), ("id", "4"), ("z", "1")], &[(round * 1000 + 99, 1.0)]));
            let read = tidemark_schemas::scan::RequestSeries::read(&body).unwrap();
            assert!(read.iter().filter(|s| s.label_fields.is_some()).count() >= 30);
            assert!(read.iter().last().unwrap().label_fields.is_none());
            let a = in_place.append_read("t", read.iter(), round);
            let b = decoded.append_from("t", &batch, round);
            assert_eq!(a, b);
        }
        assert_eq!(in_place.num_series(), 9);
        let all = [Matcher::equal("__name__", "m")];
        let contents = |h: &Head| {
            let refs = h.select("t", &all, 0, i64::MAX);
            h.read_series("t", &refs, 0, i64::MAX, false)
                .into_iter()
                .map(|(l, chunks)| (l, chunks.iter().flat_map(|c| decode_all(&c.data).unwrap()).map(|s| (s.t, s.v)).collect::<Vec<_>>()))
                .collect::<Vec<_>>()
        };
        assert_eq!(contents(&in_place), contents(&decoded));
    }

    #[test]
    fn out_of_order_and_duplicates_counted() {
        let h = head();
        h.append("t", &[ts(&[("__name__", "m")], &[(10, 1.0)])]);
        let s = h.append(
            "t",
            &[ts(
                &[("__name__", "m")],
                &[(10, 1.0), (5, 1.0), (10, 2.0), (11, 1.0)],
            )],
        );
        assert_eq!(
            s,
            AppendStats {
                appended: 1,
                duplicates: 1,
                out_of_order: 1,
                duplicate_timestamp: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn invalid_utf8_series_is_skipped_not_fatal() {
        let h = head();
        let mut bad = ts(&[("__name__", "m")], &[(1, 1.0)]);
        bad.labels[0].value = Bytes::from_static(&[0xff]);
        let s = h.append("t", &[bad]);
        assert_eq!(s.invalid_series, 1);
        assert_eq!(h.num_series(), 0);
    }

    #[test]
    fn truncation_keeps_what_is_not_in_blocks_yet() {
        let h = head();
        let hour = 3_600_000;
        h.append_from("t", &[ts(&[("__name__", "a")], &[(1000, 1.0)])], 5);
        h.append_from("t", &[ts(&[("__name__", "b")], &[(2000, 1.0)])], 9);
        h.append_from("t", &[ts(&[("__name__", "now")], &[(1000 + 3 * hour / 2, 1.0)])], 10);
        // Retention 1h: a and b are past it; only a's record is built.
        assert_eq!(h.truncate_built(6), 1);
        assert_eq!(h.label_values("t", "__name__", &[], 0, i64::MAX), ["b", "now"]);
        // Past twice the retention it goes whatever the block-builder did.
        h.append_from("t", &[ts(&[("__name__", "now")], &[(3 * hour, 1.0)])], 11);
        assert_eq!(h.truncate_built(6), 1);
        assert_eq!(h.label_values("t", "__name__", &[], 0, i64::MAX), ["now"]);
    }

    #[test]
    fn truncation_removes_old_series_and_reuses_ids() {
        let h = head();
        h.append("t", &[ts(&[("__name__", "old")], &[(1000, 1.0)])]);
        h.append("t", &[ts(&[("__name__", "new")], &[(10_000_000, 1.0)])]);
        let old_refs = h.select("t", &[Matcher::equal("__name__", "old")], 0, i64::MAX);
        assert_eq!(h.truncate(), 1);
        assert_eq!(h.num_series(), 1);
        h.append("t", &[ts(&[("__name__", "newer")], &[(10_000_001, 1.0)])]);
        // The old ref must not read the series that reused its ID.
        assert!(h.read_series("t", &old_refs, 0, i64::MAX, false).is_empty());
        assert_eq!(
            h.label_values("t", "__name__", &[], 0, i64::MAX),
            ["new", "newer"]
        );
    }

    fn limited_head(per_user: u64, per_metric: u64, partitions: i32) -> Head {
        let limits = tidemark_limits::Limits {
            max_global_series_per_user: per_user,
            max_global_series_per_metric: per_metric,
            ..Default::default()
        };
        Head::with_series_limits(
            HeadOptions {
                samples_per_chunk: 120,
                retention_ms: 3_600_000,
            },
            Some(SeriesLimits {
                overrides: tidemark_limits::Overrides::fixed(limits),
                partitions,
            }),
        )
    }

    #[test]
    fn out_of_order_samples_within_the_window_are_taken() {
        let limits = tidemark_limits::Limits {
            out_of_order_time_window: std::time::Duration::from_secs(600),
            ..Default::default()
        };
        let h = Head::with_series_limits(
            HeadOptions {
                samples_per_chunk: 4,
                retention_ms: 3_600_000,
            },
            Some(SeriesLimits {
                overrides: tidemark_limits::Overrides::fixed(limits),
                partitions: 1,
            }),
        );
        let m = [("__name__", "m")];
        h.append("t", &[ts(&m, &[(1_000_000, 1.0), (1_060_000, 2.0)])]);
        // Older by up to 10 minutes: taken, in any order, duplicates dropped.
        let s = h.append(
            "t",
            &[ts(&m, &[(1_030_000, 3.0), (1_010_000, 4.0), (1_030_000, 3.0), (1_030_000, 5.0), (1_020_000, 6.0), (1_040_000, 7.0), (1_050_000, 8.0)])],
        );
        assert_eq!((s.appended, s.duplicates, s.duplicate_timestamp), (5, 1, 1));
        // Older than the window: refused.
        let s = h.append("t", &[ts(&m, &[(400_000, 9.0)])]);
        assert_eq!(s.out_of_order, 1);
        let refs = h.select("t", &[Matcher::equal("__name__", "m")], 0, i64::MAX);
        let got = h.read_series("t", &refs, 0, i64::MAX, false);
        let mut samples: Vec<(i64, f64)> = got[0]
            .1
            .iter()
            .flat_map(|c| tidemark_storage::chunk::decode_all(&c.data).unwrap())
            .map(|s| (s.t, s.v))
            .collect();
        samples.sort_by_key(|s| s.0);
        assert_eq!(
            samples,
            [(1_000_000, 1.0), (1_010_000, 4.0), (1_020_000, 6.0), (1_030_000, 3.0), (1_040_000, 7.0), (1_050_000, 8.0), (1_060_000, 2.0)]
        );
        // A range holding only out-of-order samples finds the series.
        assert_eq!(h.select("t", &[Matcher::equal("__name__", "m")], 1_005_000, 1_015_000).len(), 1);
        // Without a window (the default), the same sample is refused.
        let plain = head();
        plain.append("t", &[ts(&m, &[(1_060_000, 2.0)])]);
        assert_eq!(plain.append("t", &[ts(&m, &[(1_030_000, 3.0)])]).out_of_order, 1);
    }

    #[test]
    fn per_user_series_limit_is_split_over_partitions() {
        // 10 series over 4 partitions: 3 in this one.
        let h = limited_head(10, 0, 4);
        let batch: Vec<TimeSeries> = (0..5)
            .map(|i| ts(&[("__name__", "m"), ("i", &i.to_string())], &[(1000, 1.0), (2000, 2.0)]))
            .collect();
        let s = h.append("t", &batch);
        assert_eq!(s.new_series, 3);
        assert_eq!(s.appended, 6);
        assert_eq!(s.per_user_series_limit, 4, "2 samples of each of 2 series");
        // Existing series still take samples; the unsorted (slow) path is
        // limited too.
        let s = h.append(
            "t",
            &[
                ts(&[("__name__", "m"), ("i", "0")], &[(3000, 3.0)]),
                ts(&[("i", "9"), ("__name__", "m")], &[(3000, 3.0)]),
            ],
        );
        assert_eq!((s.appended, s.per_user_series_limit), (1, 1));
        // Other tenants have their own count.
        assert_eq!(h.append("u", &batch).new_series, 3);
        assert_eq!(h.num_series(), 6);
    }

    #[test]
    fn per_metric_series_limit() {
        let h = limited_head(0, 4, 2);
        let batch: Vec<TimeSeries> = ["a", "b"]
            .iter()
            .flat_map(|m| {
                (0..3).map(move |i| ts(&[("__name__", m), ("i", &i.to_string())], &[(1000, 1.0)]))
            })
            .collect();
        let s = h.append("t", &batch);
        // 4 per metric over 2 partitions: 2 of each metric here.
        assert_eq!(s.new_series, 4);
        assert_eq!(s.per_metric_series_limit, 2);
        assert_eq!(s.per_user_series_limit, 0);
    }

    #[test]
    fn zero_series_limits_are_unlimited() {
        let h = limited_head(0, 0, 8);
        let batch: Vec<TimeSeries> = (0..50)
            .map(|i| ts(&[("__name__", "m"), ("i", &i.to_string())], &[(1000, 1.0)]))
            .collect();
        assert_eq!(h.append("t", &batch).new_series, 50);
    }
}
