//! Range-vector function kernels.

use tidemark_storage::Sample;

/// Prometheus' `extrapolatedRate`: the increase of the samples of one
/// window `(range_start, range_end]`, extrapolated towards the window's
/// edges, per second of the range when `is_rate`. With `is_counter`, a
/// drop in value is a counter reset and the counter is never extrapolated
/// below zero. `None` with fewer than two samples.
///
/// * `samples`: the window's samples, by time, staleness markers removed.
/// * `range_secs`: the selector's range in seconds.
/// * `may_reset`: false when the caller knows the samples hold no reset
///   (a counter's whole series checked once), which skips looking for one.
pub(crate) fn extrapolated_rate(
    samples: &[Sample],
    range_start: i64,
    range_end: i64,
    range_secs: f64,
    is_counter: bool,
    is_rate: bool,
    may_reset: bool,
) -> Option<f64> {
    let (first, last) = match samples {
        [first, .., last] => (*first, *last),
        _ => return None,
    };
    let mut result = last.v - first.v;
    if is_counter && may_reset {
        for pair in samples.windows(2) {
            if pair[1].v < pair[0].v {
                result += pair[0].v;
            }
        }
    }

    let mut duration_to_start = first.t.saturating_sub(range_start) as f64 / 1000.0;
    let mut duration_to_end = range_end.saturating_sub(last.t) as f64 / 1000.0;
    let sampled_interval = last.t.saturating_sub(first.t) as f64 / 1000.0;
    let average_between_samples = sampled_interval / (samples.len() - 1) as f64;

    // Extrapolate to an edge only when the first (last) sample is within
    // 110% of the average interval from it; otherwise assume the series
    // starts (ends) half an average interval beyond its first (last) sample.
    let threshold = average_between_samples * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = average_between_samples / 2.0;
    }
    if is_counter {
        // A counter is not extrapolated past the point where it would be zero.
        let mut duration_to_zero = duration_to_start;
        if result > 0.0 && first.v >= 0.0 {
            duration_to_zero = sampled_interval * (first.v / result);
        }
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = average_between_samples / 2.0;
    }

    let mut factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    if is_rate {
        factor /= range_secs;
    }
    Some(result * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(start: i64, step: i64, values: &[f64]) -> Vec<Sample> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample {
                t: start + i as i64 * step,
                v,
            })
            .collect()
    }

    #[test]
    fn fewer_than_two_samples_is_none() {
        assert_eq!(extrapolated_rate(&[], 0, 10, 1.0, true, true, true), None);
        assert_eq!(
            extrapolated_rate(&[Sample { t: 5, v: 1.0 }], 0, 10, 1.0, true, true, true),
            None
        );
    }

    #[test]
    fn full_window_extrapolates_to_both_edges() {
        // Samples at 15s..60s in (0, 60]: value 10..40.
        let s = series(15_000, 15_000, &[10.0, 20.0, 30.0, 40.0]);
        let increase = extrapolated_rate(&s, 0, 60_000, 60.0, true, false, true).unwrap();
        assert!((increase - 40.0).abs() < 1e-12, "{increase}");
        let rate = extrapolated_rate(&s, 0, 60_000, 60.0, true, true, true).unwrap();
        assert!((rate - 40.0 / 60.0).abs() < 1e-12, "{rate}");
    }

    #[test]
    fn counter_reset_adds_the_value_before_it() {
        // 0 1 2 3 2 3 4 every 5m: increase 7 (Prometheus functions.test).
        let s = series(0, 300_000, &[0.0, 1.0, 2.0, 3.0, 2.0, 3.0, 4.0]);
        let got = extrapolated_rate(&s, 0, 1_800_000, 1800.0, true, false, true).unwrap();
        assert!((got - 7.0).abs() < 1e-12, "{got}");
        // Without a reset, not looking for one changes nothing.
        let s = series(0, 300_000, &[0.0, 1.0, 2.0, 3.0, 3.0, 5.0, 8.0]);
        let checked = extrapolated_rate(&s, 0, 1_800_000, 1800.0, true, true, true);
        assert_eq!(extrapolated_rate(&s, 0, 1_800_000, 1800.0, true, true, false), checked);
    }

    #[test]
    fn zero_cutoff_limits_left_extrapolation() {
        // value 1 at t=0, +10 every 5m, window (-50m, 50m]: extrapolates 30s back.
        let s = series(
            0,
            300_000,
            &[
                1.0, 11.0, 21.0, 31.0, 41.0, 51.0, 61.0, 71.0, 81.0, 91.0, 101.0,
            ],
        );
        let got = extrapolated_rate(&s, -3_000_000, 3_000_000, 6000.0, true, false, true).unwrap();
        assert!((got - 101.0).abs() < 1e-9, "{got}");
    }

    #[test]
    fn gauges_are_not_reset_corrected() {
        let s = series(0, 10_000, &[5.0, 3.0]);
        let got = extrapolated_rate(&s, 0, 10_000, 10.0, false, false, true).unwrap();
        assert_eq!(got, -2.0);
    }
}
