//! Realistic Prometheus series and remote-write requests for benchmarks and
//! load tests.
//!
//! [`SeriesSet`] numbers node_exporter-like series as Prometheus scrapes them
//! from many hosts, and a request-duration histogram of an HTTP server on
//! each: 154 series of 55 metric names per host (106 node_exporter series,
//! 48 of `http_request_duration_seconds` for 4 handlers), hosts spread over
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

mod histogram;
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

    /// Series each host exposes (154).
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
            Model::Histogram { handler, part } => {
                // Every series of a (host, handler) histogram shares one
                // source of randomness, so that its buckets agree.
                let host = (i / self.templates.len()) as u64;
                let seed = mix((host << 8) ^ handler as u64 ^ 0x4849_5354);
                histogram::value(handler, part, scrape, |s| unit(mix(seed ^ s)))
            }
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
            a.value(106 + 7, 3),
            a.value(154 + 153, 2),
        ];
        assert_eq!(
            values,
            [
                2_143_646.14,
                2_143_657.17,
                1.26,
                33_396_543_488.0,
                2_229_792_339.0,
                8_461_480.0,
                3_695.0
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
        assert_eq!(set.series_per_host(), 154);
        let names: HashSet<_> = (0..154).map(|i| set.labels(i)[0].value.clone()).collect();
        assert_eq!(names.len(), 55, "metric names per host");

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
        for i in 0..154 {
            if matches!(
                set.templates[i].model,
                Model::Counter(_) | Model::Histogram { .. }
            ) {
                assert!(
                    (0..50).all(|s| set.value(i, s) <= set.value(i, s + 1)),
                    "counter {i} decreased"
                );
            }
        }
    }
}

#[cfg(test)]
mod histogram_tests {
    use super::*;
    use crate::histogram::{Part, BUCKETS, HANDLERS};

    /// Label `name` of series `i`.
    fn get(set: &SeriesSet, i: usize, name: &str) -> Option<String> {
        set.labels(i)
            .into_iter()
            .find(|l| &l.name[..] == name.as_bytes())
            .map(|l| String::from_utf8(l.value.to_vec()).unwrap())
    }

    /// Series indices of `(host, handler)`: buckets in `le` order, sum, count.
    fn histogram(set: &SeriesSet, host: usize, handler: &str) -> (Vec<usize>, usize, usize) {
        let per_host = set.series_per_host();
        let of = |name: &str| -> Vec<usize> {
            (host * per_host..(host + 1) * per_host)
                .filter(|&i| {
                    get(set, i, "__name__").as_deref() == Some(name)
                        && get(set, i, "handler").as_deref() == Some(handler)
                })
                .collect()
        };
        let buckets = of("http_request_duration_seconds_bucket");
        let sum = of("http_request_duration_seconds_sum");
        let count = of("http_request_duration_seconds_count");
        assert_eq!(
            (buckets.len(), sum.len(), count.len()),
            (BUCKETS.len(), 1, 1)
        );
        (buckets, sum[0], count[0])
    }

    #[test]
    fn buckets_cumulative_and_counters_monotonic() {
        let set = SeriesSet::new();
        for host in [0, 1, 7, 64] {
            for (handler, _, _) in HANDLERS {
                let (buckets, sum, count) = histogram(&set, host, handler);
                let les: Vec<String> = buckets
                    .iter()
                    .map(|&i| get(&set, i, "le").unwrap())
                    .collect();
                let expected: Vec<String> = BUCKETS.iter().map(|(le, _)| le.to_string()).collect();
                assert_eq!(les, expected, "le labels in order, +Inf last");
                let mut previous: Option<Vec<f64>> = None;
                for scrape in (0..5_755).step_by(7).chain(5_755..5_770) {
                    let counts: Vec<f64> = buckets.iter().map(|&i| set.value(i, scrape)).collect();
                    assert!(
                        counts.windows(2).all(|w| w[0] <= w[1]),
                        "host {host} {handler} scrape {scrape}: buckets not cumulative: {counts:?}"
                    );
                    assert!(counts.iter().all(|c| c.fract() == 0.0 && *c >= 0.0));
                    assert_eq!(
                        counts[counts.len() - 1],
                        set.value(count, scrape),
                        "+Inf bucket is _count"
                    );
                    assert!(
                        counts[0] < counts[counts.len() - 1],
                        "some requests are slow"
                    );
                    let mut all = counts.clone();
                    all.push(set.value(sum, scrape));
                    if let Some(p) = &previous {
                        assert!(
                            p.iter().zip(&all).all(|(a, b)| a <= b),
                            "host {host} {handler} scrape {scrape}: a counter decreased"
                        );
                    }
                    previous = Some(all);
                }
                // Consecutive scrapes too, not only sampled ones.
                for &i in buckets.iter().chain([&sum, &count]) {
                    assert!((0..300).all(|s| set.value(i, s) <= set.value(i, s + 1)));
                }
            }
        }
    }

    #[test]
    fn histogram_quantile_is_meaningful() {
        // The 0.99 quantile over 20 scrapes (5m at 15s), by linear
        // interpolation as histogram_quantile does: within the bucket
        // range, and higher for query_range than for push.
        let set = SeriesSet::new();
        let p99 = |handler: &str, from: u64| -> f64 {
            let (buckets, _, _) = histogram(&set, 3, handler);
            let inc: Vec<f64> = buckets
                .iter()
                .map(|&i| set.value(i, from + 20) - set.value(i, from))
                .collect();
            let rank = 0.99 * inc[inc.len() - 1];
            let k = inc.iter().position(|&c| c >= rank).unwrap();
            assert!(k < inc.len() - 1, "{handler}: p99 in the +Inf bucket");
            let (lo, lo_count) = if k == 0 {
                (0.0, 0.0)
            } else {
                (BUCKETS[k - 1].1, inc[k - 1])
            };
            lo + (BUCKETS[k].1 - lo) * (rank - lo_count) / (inc[k] - lo_count)
        };
        let (push, range) = (p99("/api/v1/push", 100), p99("/api/v1/query_range", 100));
        assert!(push > 0.0 && push < range && range <= 2.5, "{push} {range}");
        // The slow share swings over the day, so the quantile moves.
        let later = p99("/api/v1/query_range", 100 + 5_760 / 4);
        assert!((later - range).abs() > 1e-3, "{range} {later}");
        // Part::Bucket(+Inf) and Part::Count agree by construction.
        assert_eq!(
            histogram::value(1, Part::Bucket(f64::INFINITY), 9, |_| 0.3),
            histogram::value(1, Part::Count, 9, |_| 0.3)
        );
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
