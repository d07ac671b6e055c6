//! The decimal chunk encoding (block format 2): samples whose values are
//! all decimal numbers of a few digits — what exporters report: counts,
//! bytes, seconds in hundredths — stored as integers, after the idea of
//! VictoriaMetrics' and ALP's decimal conversion.
//!
//! A chunk of `n` samples is, byte-aligned so that the Parquet page's zstd
//! finds the repetitions (a regular scrape interval, a constant value):
//!
//! ```text
//! uvarint n                      number of samples, at least 1
//! uvarint ts_len                 length of the timestamp section
//! timestamp section              n-1 entries: uvarint(t1 - t0), then
//!                                varint delta-of-delta for t2..
//! u8 e                           every value is k / 10^e, k an integer
//! u8 mode                        0: varints are deltas of k;
//!                                1: deltas of deltas (counters)
//! varint k0, then n-1 varints    the values' integers
//! ```
//!
//! The first timestamp is the chunk's `min_t`, kept by the cell. A chunk
//! whose values are not all such decimals (NaN, stale markers, infinities,
//! `-0`, thirds, integers beyond 2^53) is written as an XOR chunk instead.

use tidemark_storage::Sample;

use crate::varint::{put_uvarint, put_varint, uvarint, varint};

/// Largest number of decimals tried; 10^18 is exact in a double.
const MAX_EXPONENT: usize = 18;
/// Integers beyond this are not all exact in a double.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

const POW10: [f64; MAX_EXPONENT + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18,
];

/// `v` as `k / 10^e`, decoding back to exactly the same bits.
fn as_decimal(v: f64, e: usize) -> Option<i64> {
    let k = (v * POW10[e]).round();
    if !(k.abs() < MAX_EXACT) {
        return None;
    }
    // Checked as decoded, from the integer (so `-0` is refused).
    let k = k as i64;
    ((k as f64 / POW10[e]).to_bits() == v.to_bits()).then_some(k)
}

/// The fewest decimals that represent `v` exactly.
fn exponent(v: f64) -> Option<usize> {
    (0..=MAX_EXPONENT).find(|&e| as_decimal(v, e).is_some())
}

fn varint_len(v: i64) -> usize {
    let u = ((v << 1) ^ (v >> 63)) as u64;
    (64 - u.leading_zeros() as usize).max(1).div_ceil(7)
}

/// Appends the decimal encoding of `samples` (sorted by time, at least
/// one) to `out`, or returns `false` and leaves `out` as it was when some
/// value is no short decimal.
pub fn encode(samples: &[Sample], out: &mut Vec<u8>) -> bool {
    let Some(first) = samples.first() else {
        return false;
    };
    let mut e = 0;
    for s in samples {
        match exponent(s.v) {
            Some(x) => e = e.max(x),
            None => return false,
        }
    }
    let mut ks = Vec::with_capacity(samples.len());
    for s in samples {
        match as_decimal(s.v, e) {
            Some(k) => ks.push(k),
            None => return false,
        }
    }
    let start = out.len();
    put_uvarint(out, samples.len() as u64);
    let mut ts = Vec::with_capacity(samples.len() * 2);
    let mut prev_t = first.t;
    let mut prev_d = 0i64;
    for (i, s) in samples.iter().enumerate().skip(1) {
        let d = s.t.wrapping_sub(prev_t);
        if i == 1 {
            put_uvarint(&mut ts, d as u64);
        } else {
            put_varint(&mut ts, d.wrapping_sub(prev_d));
        }
        prev_t = s.t;
        prev_d = d;
    }
    put_uvarint(out, ts.len() as u64);
    out.extend_from_slice(&ts);
    // Deltas suit gauges, deltas of deltas counters: take the shorter.
    let deltas = || ks.windows(2).map(|w| w[1].wrapping_sub(w[0]));
    let dod_cost: usize = deltas()
        .scan(None::<i64>, |prev, d| {
            let x = prev.map_or(d, |p| d.wrapping_sub(p));
            *prev = Some(d);
            Some(varint_len(x))
        })
        .sum();
    let delta_cost: usize = deltas().map(varint_len).sum();
    let mode = u8::from(dod_cost < delta_cost);
    out.push(e as u8);
    out.push(mode);
    put_varint(out, ks[0]);
    let mut prev = None::<i64>;
    for d in deltas() {
        match mode {
            0 => put_varint(out, d),
            _ => put_varint(out, prev.map_or(d, |p| d.wrapping_sub(p))),
        }
        prev = Some(d);
    }
    debug_assert!(out.len() > start);
    true
}

/// Error of a corrupt decimal chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt decimal chunk: {0}")]
pub struct DecimalError(&'static str);

/// The samples of a decimal chunk whose first timestamp is `min_t`.
pub struct DecimalIter<'a> {
    data: &'a [u8],
    /// Cursors into the timestamp and value sections.
    tpos: usize,
    tend: usize,
    vpos: usize,
    left: u64,
    read: u64,
    scale: f64,
    dod: bool,
    t: i64,
    dt: i64,
    k: i64,
    dk: i64,
    failed: bool,
}

impl<'a> DecimalIter<'a> {
    pub fn new(data: &'a [u8], min_t: i64) -> Result<Self, DecimalError> {
        let mut pos = 0;
        let n = uvarint(data, &mut pos).ok_or(DecimalError("truncated header"))?;
        let ts_len = uvarint(data, &mut pos).ok_or(DecimalError("truncated header"))?;
        let tend = usize::try_from(ts_len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|&end| end.saturating_add(3) <= data.len())
            .ok_or(DecimalError("timestamp section beyond the chunk"))?;
        // Every sample after the first takes a byte in each section.
        if n == 0 || n - 1 > ts_len || n - 1 > (data.len() - tend) as u64 {
            return Err(DecimalError("sample count does not fit the chunk"));
        }
        let e = usize::from(data[tend]);
        let mode = data[tend + 1];
        if e > MAX_EXPONENT || mode > 1 {
            return Err(DecimalError("bad exponent or mode"));
        }
        Ok(DecimalIter {
            data,
            tpos: pos,
            tend,
            vpos: tend + 2,
            left: n,
            read: 0,
            scale: POW10[e],
            dod: mode == 1,
            t: min_t,
            dt: 0,
            k: 0,
            dk: 0,
            failed: false,
        })
    }

    /// Samples in the chunk.
    pub fn num_samples(&self) -> u64 {
        self.left + self.read
    }

    fn step(&mut self) -> Result<Sample, DecimalError> {
        let bad_t = DecimalError("timestamp out of range");
        let ts = &self.data[..self.tend];
        if self.read == 1 {
            let d = uvarint(ts, &mut self.tpos).ok_or(DecimalError("truncated timestamps"))?;
            self.dt = i64::try_from(d).map_err(|_| bad_t.clone())?;
            self.t = self.t.checked_add(self.dt).ok_or(bad_t)?;
        } else if self.read > 1 {
            let dod = varint(ts, &mut self.tpos).ok_or(DecimalError("truncated timestamps"))?;
            self.dt = self.dt.checked_add(dod).ok_or(bad_t.clone())?;
            self.t = self.t.checked_add(self.dt).ok_or(bad_t)?;
        }
        let bad_v = DecimalError("value out of range");
        let x = varint(self.data, &mut self.vpos).ok_or(DecimalError("truncated values"))?;
        if self.read == 0 {
            self.k = x;
        } else {
            self.dk = if self.dod && self.read > 1 {
                self.dk.checked_add(x).ok_or(bad_v.clone())?
            } else {
                x
            };
            self.k = self.k.checked_add(self.dk).ok_or(bad_v)?;
        }
        self.read += 1;
        self.left -= 1;
        Ok(Sample {
            t: self.t,
            v: self.k as f64 / self.scale,
        })
    }
}

impl Iterator for DecimalIter<'_> {
    type Item = Result<Sample, DecimalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.failed {
            return None;
        }
        let r = self.step();
        self.failed = r.is_err();
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(samples: &[Sample]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        if !encode(samples, &mut out) {
            assert!(out.is_empty());
            return None;
        }
        let back: Vec<Sample> = DecimalIter::new(&out, samples[0].t)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back.len(), samples.len());
        for (a, b) in back.iter().zip(samples) {
            assert_eq!(a.t, b.t);
            assert_eq!(a.v.to_bits(), b.v.to_bits(), "{} vs {}", a.v, b.v);
        }
        Some(out)
    }

    fn at(values: &[f64]) -> Vec<Sample> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample {
                t: 1_700_000_000_000 + i as i64 * 15_000 + (i as i64 % 3),
                v,
            })
            .collect()
    }

    #[test]
    fn decimals_round_trip_bit_for_bit() {
        round_trip(&at(&[0.0, 1.0, 2.5, -3.25, 0.000123, 12345.67])).unwrap();
        round_trip(&at(&[1e15, -2e15, 9_007_199_254_740_991.0])).unwrap();
        // Each value fits, but not all with one exponent.
        assert!(round_trip(&at(&[1e15, 0.000123])).is_none());
        assert!(round_trip(&at(&[0.1, 0.2, 0.30000000000000004])).is_none());
        round_trip(&at(&[7.0])).unwrap();
        let counter: Vec<f64> = (0..120).map(|i| 1e6 + f64::from(i) * 13.1).collect();
        // 13.1 * i is not always a short decimal: rounded as exporters do.
        let counter: Vec<f64> = counter.iter().map(|v| (v * 100.0).round() / 100.0).collect();
        round_trip(&at(&counter)).unwrap();
    }

    #[test]
    fn other_values_are_refused() {
        for v in [f64::NAN, f64::INFINITY, -0.0, 1.0 / 3.0, 1e300, 2f64.powi(60) + 1.0] {
            assert!(round_trip(&at(&[1.0, v])).is_none(), "{v}");
        }
        assert!(round_trip(&[]).is_none());
    }

    #[test]
    fn steady_counters_take_about_a_byte_a_sample() {
        let v: Vec<f64> = (0..120).map(|i| 5_000.0 + f64::from(i) * 400.0).collect();
        let out = round_trip(&at(&v)).unwrap();
        // 119 timestamps and 119 values of about one byte each, a header.
        assert!(out.len() <= 2 * 119 + 12, "{} bytes", out.len());
        // The counter is a delta-of-delta chunk: its varints are zeros.
        assert!(out[out.len() - 118..].iter().all(|&b| b == 0));
    }

    #[test]
    fn corrupt_chunks_are_errors() {
        let mut out = Vec::new();
        assert!(encode(&at(&[1.0, 2.0, 3.0]), &mut out));
        for cut in 0..out.len() {
            let r: Result<Vec<_>, _> =
                DecimalIter::new(&out[..cut], 0).and_then(|it| it.collect());
            assert!(r.is_err(), "cut at {cut}");
        }
        let mut bad = out.clone();
        let e = bad.len() - 5;
        bad[e] = 40;
        assert!(DecimalIter::new(&bad, 0).is_err());
        // A huge sample count in a small chunk.
        assert!(DecimalIter::new(&[0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0], 0).is_err());
    }
}
