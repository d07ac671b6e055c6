//! Compensated (Kahan-Neumaier) summation, as Prometheus aggregates with.

/// Adds `inc` to the running `sum` with compensation `c`; returns the new
/// sum and compensation. The result is `sum + c`. On overflow to an
/// infinity the compensation is reset.
#[inline(never)]
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensates_lost_low_bits() {
        let (mut s, mut c) = (0.0, 0.0);
        for v in [1e100, 1.0, -1e100] {
            (s, c) = kahan_inc(v, s, c);
        }
        assert_eq!(s + c, 1.0);
    }

    #[test]
    fn infinity_resets_compensation() {
        let (s, c) = kahan_inc(f64::INFINITY, 1.0, 0.5);
        assert_eq!((s, c), (f64::INFINITY, 0.0));
    }
}
