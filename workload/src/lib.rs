//! Realistic Prometheus series and remote-write requests for benchmarks and
//! load tests.
//!
//! [`SeriesSet`] numbers node_exporter-like series as Prometheus scrapes them
//! from many hosts: 106 series of 52 metric names per host, hosts spread over
//! 3 regions and their zones, 7 to 10 labels per series sorted by name, float
//! values that move like counters and gauges do. Series `i` is always the
//! same series with the same values: everything is computed from `i` and the
//! scrape number, with no randomness and no state.
//!
//! ```
//! use tidemark_workload::SeriesSet;
//!
//! let set = SeriesSet::new();
//! // The first 2,000 series, scrape 0, all stamped at the same time.
//! let req = set.write_request(0..2_000, 0, 1_700_000_000_000);
//! assert_eq!(req.timeseries.len(), 2_000);
//! ```

use std::ops::Range;

use bytes::Bytes;
use tidemark_schemas::prometheus::{Label, Sample, TimeSeries, WriteRequest};

mod node_exporter;

use node_exporter::{host_templates, Model, Template};

/// Node-exporter-like series, laid out host after host: series `i` is
/// series `i % series_per_host()` of host `i / series_per_host()`.
pub struct SeriesSet {
    templates: Vec<Template>,
}

impl Default for SeriesSet {
    fn default() -> Self {
        SeriesSet {
            templates: host_templates(),
        }
    }
}

impl SeriesSet {
    /// The set; the same as [`SeriesSet::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Series each host exposes (106).
    pub fn series_per_host(&self) -> usize {
        self.templates.len()
    }

    /// Labels of series `i`, `__name__` included, sorted by name as
    /// Prometheus sends them.
    pub fn labels(&self, i: usize) -> Vec<Label> {
        let host = i / self.templates.len();
        let t = &self.templates[i % self.templates.len()];
        let (region, zones, cluster) = REGIONS[host % REGIONS.len()];
        let zone = zones[(host / REGIONS.len()) % zones.len()];
        let env = if host % 10 == 9 {
            "staging"
        } else {
            "production"
        };
        let instance = Bytes::from(format!("10.0.{}.{}:9100", host / 250, host % 250 + 1));
        let mut labels: Vec<Label> = vec![
            label("__name__", st(t.name)),
            label("cluster", st(cluster)),
            label("env", st(env)),
            label("instance", instance),
            label("job", st("node")),
            label("region", st(region)),
            label("zone", st(zone)),
        ];
        labels.extend(t.labels.iter().map(|&(n, v)| label(n, st(v))));
        labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        labels
    }

    /// Value of series `i` at scrape `scrape`; counters never decrease.
    pub fn value(&self, i: usize, scrape: u64) -> f64 {
        let u = |s: u64| unit(mix(((i as u64) << 24) ^ s));
        match self.templates[i % self.templates.len()].model {
            Model::Constant(v) => v,
            Model::Counter(rate) => {
                let base = rate * 86_400.0 * (1.0 + u(u64::MAX));
                round(base + rate * (scrape as f64 + 0.5 * u(scrape)), rate)
            }
            Model::Noisy(level) => round(level * (0.95 + 0.1 * u(scrape)), level),
        }
    }

    /// Series `i` with its one sample of scrape `scrape`, at `timestamp_ms`.
    pub fn time_series(&self, i: usize, scrape: u64, timestamp_ms: i64) -> TimeSeries {
        TimeSeries {
            labels: self.labels(i),
            samples: vec![Sample {
                value: self.value(i, scrape),
                timestamp: timestamp_ms,
            }],
            exemplars: vec![],
        }
    }

    /// A remote-write request of `series`, one sample each of scrape
    /// `scrape`, all at `timestamp_ms`; no metadata.
    pub fn write_request(
        &self,
        series: Range<usize>,
        scrape: u64,
        timestamp_ms: i64,
    ) -> WriteRequest {
        WriteRequest {
            timeseries: series
                .map(|i| self.time_series(i, scrape, timestamp_ms))
                .collect(),
            metadata: vec![],
        }
    }
}

fn label(name: &'static str, value: Bytes) -> Label {
    Label {
        name: st(name),
        value,
    }
}

fn st(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// (region, its zones, cluster); host `h` is in region `h % 3`.
const REGIONS: [(&str, [&str; 3], &str); 3] = [
    (
        "eu-west-1",
        ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
        "prod-eu-1",
    ),
    (
        "us-east-1",
        ["us-east-1a", "us-east-1b", "us-east-1d"],
        "prod-us-1",
    ),
    (
        "ap-south-1",
        ["ap-south-1a", "ap-south-1b", "ap-south-1c"],
        "prod-ap-1",
    ),
];

/// Whole numbers for large magnitudes, two decimals for small ones, as
/// node_exporter reports them.
fn round(v: f64, magnitude: f64) -> f64 {
    if magnitude.abs() >= 100.0 {
        v.round()
    } else {
        (v * 100.0).round() / 100.0
    }
}

/// splitmix64's finaliser: a well-mixed hash of `z`.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `x` as a float in `[0, 1)`.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn deterministic() {
        let (a, b) = (SeriesSet::new(), SeriesSet::default());
        assert_eq!(
            a.write_request(0..3_000, 7, 1_000),
            b.write_request(0..3_000, 7, 1_000)
        );
        // Pinned, so that a change to the generator (and to every benchmark's
        // input) shows.
        let l = a.labels(0);
        let pairs: Vec<(&[u8], &[u8])> = l.iter().map(|l| (&l.name[..], &l.value[..])).collect();
        assert_eq!(
            pairs,
            [
                (&b"__name__"[..], &b"node_cpu_seconds_total"[..]),
                (b"cluster", b"prod-eu-1"),
                (b"cpu", b"0"),
                (b"env", b"production"),
                (b"instance", b"10.0.0.1:9100"),
                (b"job", b"node"),
                (b"mode", b"idle"),
                (b"region", b"eu-west-1"),
                (b"zone", b"eu-west-1a"),
            ]
        );
        let values = [
            a.value(0, 0),
            a.value(0, 1),
            a.value(72, 0),
            a.value(75, 0),
            a.value(1_000, 1),
        ];
        assert_eq!(
            values,
            [
                2_143_646.14,
                2_143_657.17,
                1.26,
                33_396_543_488.0,
                144_664_523_301.0
            ]
        );
    }

    #[test]
    fn labels_sorted_unique_and_series_distinct() {
        let set = SeriesSet::new();
        let mut seen = HashSet::new();
        for i in 0..5_000 {
            let labels = set.labels(i);
            assert!(
                (7..=10).contains(&labels.len()),
                "series {i}: {} labels",
                labels.len()
            );
            assert!(
                labels.windows(2).all(|w| w[0].name < w[1].name),
                "series {i}: not sorted or repeated"
            );
            assert!(
                labels.iter().all(|l| !l.value.is_empty()),
                "series {i}: empty value"
            );
            let key: Vec<_> = labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            assert!(seen.insert(key), "series {i} repeats an earlier one");
        }
    }

    #[test]
    fn counts_and_counters() {
        let set = SeriesSet::new();
        assert_eq!(set.series_per_host(), 106);
        let names: HashSet<_> = (0..106).map(|i| set.labels(i)[0].value.clone()).collect();
        assert_eq!(names.len(), 52, "metric names per host");

        let req = set.write_request(10..2_010, 3, 42);
        assert_eq!(req.timeseries.len(), 2_000);
        assert!(req.metadata.is_empty());
        for (k, ts) in req.timeseries.iter().enumerate() {
            assert_eq!(ts.labels, set.labels(10 + k));
            assert_eq!(
                ts.samples,
                [Sample {
                    value: set.value(10 + k, 3),
                    timestamp: 42
                }]
            );
        }

        // Counters never decrease from one scrape to the next.
        for i in 0..106 {
            if matches!(set.templates[i].model, Model::Counter(_)) {
                assert!(
                    (0..50).all(|s| set.value(i, s) <= set.value(i, s + 1)),
                    "counter {i} decreased"
                );
            }
        }
    }
}

/// How a benchmark binary was started, so that `cargo test --benches` runs
/// it once and small while `cargo bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// `cargo bench`: criterion, then the summary.
    Full,
    /// `cargo test --benches` or `-- --test`: everything once, small.
    Smoke,
    /// `-- --list`.
    Skip,
}

impl RunMode {
    /// The mode from the process's arguments, as cargo passes them.
    pub fn from_args() -> Self {
        Self::from(std::env::args())
    }

    fn from(args: impl Iterator<Item = String>) -> Self {
        let args: Vec<String> = args.collect();
        let has = |f: &str| args.iter().any(|a| a == f);
        if has("--list") {
            RunMode::Skip
        } else if has("--bench") && !has("--test") {
            RunMode::Full
        } else {
            RunMode::Smoke
        }
    }
}

#[cfg(test)]
mod run_mode_tests {
    use super::RunMode;

    #[test]
    fn modes_from_cargo_arguments() {
        let m = |a: &[&str]| RunMode::from(a.iter().map(|s| s.to_string()));
        assert_eq!(m(&["b", "--bench"]), RunMode::Full);
        assert_eq!(m(&["b", "--bench", "--test"]), RunMode::Smoke);
        assert_eq!(m(&["b"]), RunMode::Smoke);
        assert_eq!(m(&["b", "--list"]), RunMode::Skip);
    }
}
