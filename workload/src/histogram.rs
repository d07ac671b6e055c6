//! A classic Prometheus histogram of request durations per host, as an HTTP
//! server instrumented with client_golang exposes it:
//! `http_request_duration_seconds_bucket{handler, le}` (10 buckets, `+Inf`
//! included), `_sum` and `_count`, for 4 handlers.
//!
//! The requests of a (host, handler) are two populations, fast and slow,
//! each with a log-logistic latency distribution; each population's request
//! count is a counter, and the slow one's rate swings over the day (so that
//! quantiles move). Bucket `le` of a population holds `floor(count * F(le))`
//! requests, `F` its distribution function: counts are non-decreasing in
//! `le` (F is) and from one scrape to the next (the counts are), and the
//! `+Inf` bucket equals `_count`.

/// Upper bounds of the buckets, `+Inf` last.
pub(crate) const BUCKETS: [(&str, f64); 10] = [
    ("0.005", 0.005),
    ("0.01", 0.01),
    ("0.025", 0.025),
    ("0.05", 0.05),
    ("0.1", 0.1),
    ("0.25", 0.25),
    ("0.5", 0.5),
    ("1", 1.0),
    ("2.5", 2.5),
    ("+Inf", f64::INFINITY),
];

/// (handler, median latency of its fast requests in seconds, requests per
/// scrape interval).
pub(crate) const HANDLERS: [(&str, f64, f64); 4] = [
    ("/api/v1/push", 0.004, 600.0),
    ("/api/v1/query", 0.03, 40.0),
    ("/api/v1/query_range", 0.05, 25.0),
    ("/metrics", 0.012, 1.0),
];

/// Which series of a handler's histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Part {
    /// Cumulative count of requests that took at most this many seconds.
    Bucket(f64),
    Sum,
    Count,
}

/// Scrapes in a day at 15s: the period of the slow requests' swing.
const DAY_SCRAPES: f64 = 5_760.0;
/// Slow requests are this many times slower than fast ones (medians).
const SLOW_FACTOR: f64 = 6.0;
/// Shape of the log-logistic distributions (larger: narrower).
const SHAPE: f64 = 3.0;

/// Value at scrape `scrape` of part `part` of handler `handler`'s histogram;
/// `u(k)` is a deterministic uniform in `[0, 1)` of this (host, handler)
/// and `k`.
pub(crate) fn value(handler: usize, part: Part, scrape: u64, u: impl Fn(u64) -> f64) -> f64 {
    let (_, median, rate) = HANDLERS[handler];
    // Hosts differ: latency up to 2x, traffic 0.5x to 1.5x.
    let median = median * (1.0 + u(u64::MAX - 1));
    let rate = rate * (0.5 + u(u64::MAX - 2));
    let (fast, slow) = populations(rate, scrape, &u);
    match part {
        Part::Count => fast.floor() + slow.floor(),
        Part::Bucket(le) => {
            (fast * cdf(le, median)).floor() + (slow * cdf(le, median * SLOW_FACTOR)).floor()
        }
        Part::Sum => {
            // Mean of a log-logistic distribution of shape k: m·(π/k)/sin(π/k).
            let mean = |m: f64| {
                let b = std::f64::consts::PI / SHAPE;
                m * b / b.sin()
            };
            let s = fast * mean(median) + slow * mean(median * SLOW_FACTOR);
            (s * 1_000.0).round() / 1_000.0
        }
    }
}

/// Requests counted so far, fast and slow: counters, non-decreasing in
/// `scrape`. Fast requests arrive at `0.95 * rate` per scrape plus jitter;
/// slow ones at `0.05 * rate * (1 + 0.9 sin(2π scrape / day))`, whose
/// integral is taken so that no state is needed.
fn populations(rate: f64, scrape: u64, u: &impl Fn(u64) -> f64) -> (f64, f64) {
    let s = scrape as f64;
    let (fast_rate, slow_rate) = (0.95 * rate, 0.05 * rate);
    // The process has been up for one to two days.
    let up = DAY_SCRAPES * (1.0 + u(u64::MAX - 3));
    // Jitter of up to half a scrape's worth keeps the count increasing.
    let fast = fast_rate * (up + s + 0.5 * u(scrape));
    let w = 2.0 * std::f64::consts::PI / DAY_SCRAPES;
    let t = up + s;
    // ∫ (1 + 0.9 sin(w t)) dt = t - 0.9 cos(w t) / w, shifted to start at 0.
    let slow = slow_rate * (t + 0.9 * (1.0 - (w * t).cos()) / w);
    (fast, slow)
}

/// Log-logistic distribution function with median `m`.
fn cdf(x: f64, m: f64) -> f64 {
    if x.is_infinite() {
        return 1.0;
    }
    1.0 / (1.0 + (x / m).powf(-SHAPE))
}
