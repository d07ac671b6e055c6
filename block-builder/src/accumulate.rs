//! Samples read from the log, grouped by tenant and block window, until
//! they are cut into blocks.

use std::collections::{BTreeMap, HashMap};

use tidemark_block_storage::format::BlockSeries;
use tidemark_schemas::prometheus::TimeSeries;
use tidemark_storage::{Label, Labels, Sample};

/// The samples of one tenant in one window, by series number.
#[derive(Debug, Default)]
pub struct WindowSeries {
    series: HashMap<u32, Vec<Sample>>,
}

/// One tenant's series (numbered as first seen) and windows.
#[derive(Debug, Default)]
struct TenantSeries {
    /// Series number by labels as they stood in the records (name and
    /// value lengths and bytes, in record order), so that a series seen
    /// before costs no allocation.
    by_wire: HashMap<Vec<u8>, u32>,
    /// Series number by normalised labels: records that spell a series
    /// differently (label order, empty values) still meet.
    by_labels: HashMap<Labels, u32>,
    labels: Vec<Labels>,
    windows: BTreeMap<i64, WindowSeries>,
}

impl TenantSeries {
    /// The number of the series with these labels, or `None` when they
    /// are not valid (not UTF-8, or empty).
    fn series<'a>(&mut self, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone, scratch: &mut Vec<u8>) -> Option<u32> {
        scratch.clear();
        for (n, v) in pairs.clone() {
            scratch.extend_from_slice(&(n.len() as u32).to_le_bytes());
            scratch.extend_from_slice(n);
            scratch.extend_from_slice(&(v.len() as u32).to_le_bytes());
            scratch.extend_from_slice(v);
        }
        if let Some(&id) = self.by_wire.get(scratch.as_slice()) {
            return Some(id);
        }
        let labels = pairs
            .map(|(n, v)| Some(Label::new(std::str::from_utf8(n).ok()?, std::str::from_utf8(v).ok()?)))
            .collect::<Option<Vec<Label>>>()
            .map(Labels::new)
            .filter(|l| !l.is_empty())?;
        let id = match self.by_labels.get(&labels) {
            Some(&id) => id,
            None => {
                let id = self.labels.len() as u32;
                self.by_labels.insert(labels.clone(), id);
                self.labels.push(labels);
                id
            }
        };
        self.by_wire.insert(scratch.clone(), id);
        Some(id)
    }
}

/// Everything a cycle read, by tenant and window start.
#[derive(Debug, Default)]
pub struct Accumulator {
    range_ms: i64,
    tenants: BTreeMap<String, TenantSeries>,
    samples: u64,
    scratch: Vec<u8>,
}

impl Accumulator {
    pub fn new(range_ms: i64) -> Self {
        Accumulator {
            range_ms,
            ..Accumulator::default()
        }
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Adds a record's decoded series of `tenant`.
    pub fn add(&mut self, tenant: &str, batch: Vec<TimeSeries>) {
        for ts in &batch {
            self.add_series(
                tenant,
                ts.labels.iter().map(|l| (l.name.as_ref(), l.value.as_ref())),
                ts.samples.iter().map(|s| (s.timestamp, s.value)),
            );
        }
    }

    /// Adds one series of `tenant`: its labels as `(name, value)` pairs and
    /// its samples. Series with no samples or no valid labels are skipped
    /// (the distributor never writes them).
    pub fn add_series<'a>(
        &mut self,
        tenant: &str,
        labels: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
        samples: impl ExactSizeIterator<Item = (i64, f64)>,
    ) {
        if samples.len() == 0 {
            return;
        }
        if !self.tenants.contains_key(tenant) {
            self.tenants.insert(tenant.to_owned(), TenantSeries::default());
        }
        let Some(t) = self.tenants.get_mut(tenant) else {
            return;
        };
        let Some(id) = t.series(labels, &mut self.scratch) else {
            return;
        };
        for (ts, v) in samples {
            let window = ts.div_euclid(self.range_ms) * self.range_ms;
            let w = t.windows.entry(window).or_default();
            w.series.entry(id).or_default().push(Sample { t: ts, v });
            self.samples += 1;
        }
    }

    /// The blocks to write: per (tenant, window start), the series sorted
    /// by labels, samples sorted by time with the first of equal timestamps
    /// kept (as the ingesters keep it).
    pub fn into_blocks(self) -> impl Iterator<Item = ((String, i64), Vec<BlockSeries>)> {
        self.tenants.into_iter().flat_map(|(tenant, t)| {
            let labels = t.labels;
            t.windows.into_iter().map(move |(window, w)| {
                let mut series: Vec<BlockSeries> = w
                    .series
                    .into_iter()
                    .map(|(id, mut samples)| {
                        samples.sort_by_key(|s| s.t);
                        samples.dedup_by_key(|s| s.t);
                        BlockSeries {
                            labels: labels[id as usize].clone(),
                            samples,
                        }
                    })
                    .collect();
                series.sort_by(|a, b| a.labels.cmp(&b.labels));
                ((tenant.clone(), window), series)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_schemas::prometheus::{Label as PLabel, Sample as PSample};

    fn ts(name: &str, samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: vec![PLabel {
                name: bytes::Bytes::from_static(b"__name__"),
                value: bytes::Bytes::copy_from_slice(name.as_bytes()),
            }],
            samples: samples
                .iter()
                .map(|&(timestamp, value)| PSample { timestamp, value })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn groups_by_tenant_and_window_sorted_and_deduplicated() {
        let mut a = Accumulator::new(7_200_000);
        a.add("t", vec![ts("b", &[(10, 1.0), (7_200_000, 2.0)]), ts("a", &[(5, 1.0)])]);
        // Late sample for the first window, and a duplicate timestamp.
        a.add("t", vec![ts("b", &[(1, 0.5), (10, 9.0)])]);
        a.add("u", vec![ts("a", &[(5, 1.0)])]);
        assert_eq!(a.samples(), 6);
        let blocks: Vec<_> = a.into_blocks().collect();
        assert_eq!(blocks.len(), 3);
        let ((tenant, w), series) = &blocks[0];
        assert_eq!((tenant.as_str(), *w), ("t", 0));
        assert_eq!(series[0].labels.metric_name(), Some("a"));
        let b: Vec<(i64, f64)> = series[1].samples.iter().map(|s| (s.t, s.v)).collect();
        assert_eq!(b, vec![(1, 0.5), (10, 1.0)]);
        assert_eq!(blocks[1].0, ("t".to_string(), 7_200_000));
        assert_eq!(blocks[2].0, ("u".to_string(), 0));
    }

    #[test]
    fn one_series_however_its_labels_are_spelled() {
        let mut a = Accumulator::new(7_200_000);
        let pairs = |p: &'static [(&'static str, &'static str)]| p.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
        a.add_series("t", pairs(&[("__name__", "m"), ("a", "1")]), [(1, 1.0)].into_iter());
        // Another label order, an empty value: the same series.
        a.add_series("t", pairs(&[("a", "1"), ("__name__", "m"), ("b", "")]), [(2, 2.0)].into_iter());
        // Not UTF-8, or no labels: skipped.
        a.add_series("t", [(&b"__name__"[..], &[0xffu8][..])].into_iter(), [(3, 3.0)].into_iter());
        a.add_series("t", std::iter::empty(), [(4, 4.0)].into_iter());
        let blocks: Vec<_> = a.into_blocks().collect();
        let series = &blocks[0].1;
        assert_eq!(series.len(), 1, "{series:?}");
        assert_eq!(series[0].labels.metric_name(), Some("m"));
        assert_eq!(series[0].samples.len(), 2);
    }
}
