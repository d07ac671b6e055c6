//! Samples read from the log, grouped by tenant and block window, until
//! they are cut into blocks.

use std::collections::{BTreeMap, HashMap};

use tidemark_block_storage::format::BlockSeries;
use tidemark_schemas::prometheus::TimeSeries;
use tidemark_storage::{Label, Labels, Sample};

/// The series of one tenant in one window.
#[derive(Debug, Default)]
pub struct WindowSeries {
    series: HashMap<Labels, Vec<Sample>>,
    samples: u64,
}

/// Everything a cycle read, by (tenant, window start).
#[derive(Debug, Default)]
pub struct Accumulator {
    range_ms: i64,
    windows: BTreeMap<(String, i64), WindowSeries>,
    samples: u64,
}

impl Accumulator {
    pub fn new(range_ms: i64) -> Self {
        Accumulator {
            range_ms,
            windows: BTreeMap::new(),
            samples: 0,
        }
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Adds a record's series of `tenant`. Series with no valid labels are
    /// skipped (the distributor never writes them).
    pub fn add(&mut self, tenant: &str, batch: Vec<TimeSeries>) {
        for ts in batch {
            if ts.samples.is_empty() {
                continue;
            }
            let Some(labels) = ts
                .labels
                .iter()
                .map(|l| {
                    let name = std::str::from_utf8(&l.name).ok()?;
                    let value = std::str::from_utf8(&l.value).ok()?;
                    Some(Label::new(name, value))
                })
                .collect::<Option<Vec<Label>>>()
                .map(Labels::new)
                .filter(|l| !l.is_empty())
            else {
                continue;
            };
            for s in ts.samples {
                let window = s.timestamp.div_euclid(self.range_ms) * self.range_ms;
                let w = self.windows.entry((tenant.to_owned(), window)).or_default();
                let samples = match w.series.get_mut(&labels) {
                    Some(v) => v,
                    None => w.series.entry(labels.clone()).or_default(),
                };
                samples.push(Sample {
                    t: s.timestamp,
                    v: s.value,
                });
                w.samples += 1;
                self.samples += 1;
            }
        }
    }

    /// The blocks to write: per (tenant, window start), the series sorted
    /// by labels, samples sorted by time with the first of equal timestamps
    /// kept (as the ingesters keep it).
    pub fn into_blocks(self) -> impl Iterator<Item = ((String, i64), Vec<BlockSeries>)> {
        self.windows.into_iter().map(|(key, w)| {
            let mut series: Vec<BlockSeries> = w
                .series
                .into_iter()
                .map(|(labels, mut samples)| {
                    samples.sort_by_key(|s| s.t);
                    samples.dedup_by_key(|s| s.t);
                    BlockSeries { labels, samples }
                })
                .collect();
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            (key, series)
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
}
