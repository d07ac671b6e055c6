//! Gorilla/XOR sample chunks, the encoding Prometheus' TSDB uses.
//!
//! Layout: a big-endian `u16` sample count, then a bit stream. The first
//! sample is a varint timestamp and the raw 64 bits of its value; the
//! second a uvarint timestamp delta and an XOR-encoded value; later ones a
//! delta-of-delta timestamp in one of five bit buckets and an XOR-encoded
//! value. A chunk holds at most `u16::MAX` samples.

use crate::Sample;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChunkError {
    #[error("chunk is truncated")]
    Truncated,
    #[error("chunk holds too many samples")]
    Full,
    #[error("sample at {t} is not after the chunk's last sample at {last}")]
    OutOfOrder { t: i64, last: i64 },
    #[error("chunk is corrupt: {0}")]
    Corrupt(&'static str),
}

#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte (0..=7; 0 means a new byte is needed).
    free: u8,
}

impl BitWriter {
    fn write_bit(&mut self, bit: bool) {
        self.write_bits(bit as u64, 1);
    }

    /// Writes the low `n` bits of `value` (n <= 64), most significant
    /// first: the free bits of the last byte, then the rest top-aligned in
    /// as many new bytes as they need.
    #[inline]
    fn write_bits(&mut self, value: u64, mut n: u8) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        let value = if n == 64 { value } else { value & ((1u64 << n) - 1) };
        if self.free > 0 {
            let take = n.min(self.free);
            if let Some(last) = self.bytes.last_mut() {
                *last |= ((value >> (n - take)) as u8) << (self.free - take);
            }
            self.free -= take;
            n -= take;
            if n == 0 {
                return;
            }
        }
        let bytes = (n as usize).div_ceil(8);
        self.bytes.extend_from_slice(&(value << (64 - n)).to_be_bytes()[..bytes]);
        self.free = (bytes * 8 - n as usize) as u8;
    }

    fn write_varint(&mut self, v: i64) {
        self.write_uvarint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn write_uvarint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.write_bits(b as u64, 8);
                return;
            }
            self.write_bits((b | 0x80) as u64, 8);
        }
    }
}

#[derive(Debug, Clone)]
struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize, // in bits
}

impl<'a> BitReader<'a> {
    fn read_bit(&mut self) -> Result<bool, ChunkError> {
        let byte = *self.bytes.get(self.pos / 8).ok_or(ChunkError::Truncated)?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Ok(bit)
    }

    fn read_bits(&mut self, n: u8) -> Result<u64, ChunkError> {
        let n = n as usize;
        if n == 0 {
            return Ok(0);
        }
        if self.pos + n > self.bytes.len() * 8 {
            return Err(ChunkError::Truncated);
        }
        // Load the (at most 9) bytes holding the bits into a big-endian
        // window and cut them out with two shifts.
        let byte = self.pos / 8;
        let window = match self.bytes.get(byte..byte + 16) {
            Some(b) => u128::from_be_bytes(b.try_into().unwrap_or([0; 16])),
            None => {
                let mut buf = [0u8; 16];
                let rest = &self.bytes[byte..];
                buf[..rest.len()].copy_from_slice(rest);
                u128::from_be_bytes(buf)
            }
        };
        let out = ((window << (self.pos % 8)) >> (128 - n)) as u64;
        self.pos += n;
        Ok(out)
    }

    fn read_uvarint(&mut self) -> Result<u64, ChunkError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.read_bits(8)?;
            out |= (b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(ChunkError::Truncated)
    }

    fn read_varint(&mut self) -> Result<i64, ChunkError> {
        let u = self.read_uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
}

/// Buckets for timestamp delta-of-deltas: (prefix bits, prefix length, value bits).
const DOD_BUCKETS: [(u64, u8, u8); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

/// An XOR chunk being appended to.
#[derive(Debug, Clone)]
pub struct XorAppender {
    w: BitWriter,
    num: u16,
    t: i64,
    t_delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl XorAppender {
    pub fn new() -> Self {
        let mut w = BitWriter::default();
        w.write_bits(0, 16);
        XorAppender {
            w,
            num: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: 0xff,
            trailing: 0,
        }
    }

    pub fn num_samples(&self) -> usize {
        self.num as usize
    }

    pub fn last_timestamp(&self) -> Option<i64> {
        (self.num > 0).then_some(self.t)
    }

    /// Size of the encoded chunk in bytes.
    pub fn byte_len(&self) -> usize {
        self.w.bytes.len()
    }

    pub fn append(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        if self.num == u16::MAX {
            return Err(ChunkError::Full);
        }
        if self.num > 0 && t <= self.t {
            return Err(ChunkError::OutOfOrder { t, last: self.t });
        }
        let vb = v.to_bits();
        match self.num {
            0 => {
                self.w.write_varint(t);
                self.w.write_bits(vb, 64);
            }
            1 => {
                let delta = t - self.t;
                self.w.write_uvarint(delta as u64);
                self.write_value(vb);
                self.t_delta = delta;
            }
            _ => {
                let delta = t - self.t;
                let dod = delta - self.t_delta;
                self.write_dod(dod);
                self.write_value(vb);
                self.t_delta = delta;
            }
        }
        self.t = t;
        self.v = vb;
        self.num += 1;
        let n = self.num.to_be_bytes();
        self.w.bytes[0] = n[0];
        self.w.bytes[1] = n[1];
        Ok(())
    }

    fn write_dod(&mut self, dod: i64) {
        if dod == 0 {
            self.w.write_bit(false);
            return;
        }
        for (prefix, plen, bits) in DOD_BUCKETS {
            let lo = -(1i64 << (bits - 1)) + 1;
            let hi = 1i64 << (bits - 1);
            if dod >= lo && dod <= hi {
                self.w.write_bits((prefix << bits) | (dod as u64 & ((1u64 << bits) - 1)), plen + bits);
                return;
            }
        }
        self.w.write_bits(0b1111, 4);
        self.w.write_bits(dod as u64, 64);
    }

    fn write_value(&mut self, vb: u64) {
        let x = vb ^ self.v;
        if x == 0 {
            self.w.write_bit(false);
            return;
        }
        let mut leading = x.leading_zeros() as u8;
        let trailing = x.trailing_zeros() as u8;
        if leading >= 32 {
            leading = 31;
        }
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            // `10`, then the bits inside the previous window.
            let sig = 64 - self.leading - self.trailing;
            if sig <= 62 {
                self.w.write_bits((0b10 << sig) | (x >> self.trailing), sig + 2);
            } else {
                self.w.write_bits(0b10, 2);
                self.w.write_bits(x >> self.trailing, sig);
            }
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        let sig = 64 - leading - trailing;
        // `11`, the leading zeros in 5 bits, the significant bits' count in
        // 6 (64 as 0), then those bits.
        self.w.write_bits((0b11 << 11) | ((leading as u64) << 6) | (sig % 64) as u64, 13);
        self.w.write_bits(x >> trailing, sig);
    }

    /// The chunk's bytes as they stand.
    pub fn bytes(&self) -> &[u8] {
        &self.w.bytes
    }

    /// Frees spare capacity; call when the chunk is closed.
    pub fn into_bytes(mut self) -> Vec<u8> {
        self.w.bytes.shrink_to_fit();
        self.w.bytes
    }
}

/// Iterates the samples of an encoded XOR chunk.
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    t_delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl<'a> XorIter<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Self, ChunkError> {
        if bytes.len() < 2 {
            return Err(ChunkError::Truncated);
        }
        let total = u16::from_be_bytes([bytes[0], bytes[1]]);
        Ok(XorIter {
            r: BitReader { bytes, pos: 16 },
            total,
            read: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
        })
    }

    pub fn num_samples(&self) -> usize {
        self.total as usize
    }

    fn next_sample(&mut self) -> Result<Sample, ChunkError> {
        match self.read {
            0 => {
                self.t = self.r.read_varint()?;
                self.v = self.r.read_bits(64)?;
            }
            1 => {
                self.t_delta = self.r.read_uvarint()? as i64;
                // Wrapping, as Prometheus does: a corrupt chunk gives wrong
                // timestamps, never an overflow panic.
                self.t = self.t.wrapping_add(self.t_delta);
                self.read_value()?;
            }
            _ => {
                let mut prefix = 0u8;
                for _ in 0..4 {
                    if !self.r.read_bit()? {
                        break;
                    }
                    prefix += 1;
                }
                let dod = match prefix {
                    0 => 0,
                    4 => self.r.read_bits(64)? as i64,
                    p => {
                        let bits = DOD_BUCKETS[p as usize - 1].2;
                        let raw = self.r.read_bits(bits)? as i64;
                        // The buckets hold -(2^(bits-1))+1 ..= 2^(bits-1).
                        if raw > 1i64 << (bits - 1) {
                            raw - (1i64 << bits)
                        } else {
                            raw
                        }
                    }
                };
                self.t_delta = self.t_delta.wrapping_add(dod);
                self.t = self.t.wrapping_add(self.t_delta);
                self.read_value()?;
            }
        }
        self.read += 1;
        Ok(Sample {
            t: self.t,
            v: f64::from_bits(self.v),
        })
    }

    fn read_value(&mut self) -> Result<(), ChunkError> {
        if !self.r.read_bit()? {
            return Ok(());
        }
        if self.r.read_bit()? {
            self.leading = self.r.read_bits(5)? as u8;
            let mut sig = self.r.read_bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            self.trailing = 64u8
                .checked_sub(self.leading + sig)
                .ok_or(ChunkError::Corrupt("leading and significant bits exceed 64"))?;
        }
        let sig = 64 - self.leading - self.trailing;
        let bits = self.r.read_bits(sig)?;
        self.v ^= bits << self.trailing;
        Ok(())
    }
}

impl Iterator for XorIter<'_> {
    type Item = Result<Sample, ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.read >= self.total {
            return None;
        }
        match self.next_sample() {
            Ok(s) => Some(Ok(s)),
            Err(e) => {
                self.read = self.total;
                Some(Err(e))
            }
        }
    }
}

/// Decodes a whole chunk.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Sample>, ChunkError> {
    XorIter::new(bytes)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The bit writer against the plain bit-by-bit definition: the same
    /// bytes for random runs of writes of 0 to 64 bits.
    #[test]
    fn bit_writer_matches_bit_by_bit() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let mut w = BitWriter::default();
            let mut bits: Vec<bool> = Vec::new();
            for _ in 0..50 {
                let n = (next() % 65) as u8;
                let v = next();
                if next() % 4 == 0 {
                    let b = v & 1 == 1;
                    w.write_bit(b);
                    bits.push(b);
                } else {
                    w.write_bits(v, n);
                    bits.extend((0..n).rev().map(|i| (v >> i) & 1 == 1));
                }
            }
            let mut want = vec![0u8; bits.len().div_ceil(8)];
            for (i, b) in bits.iter().enumerate() {
                if *b {
                    want[i / 8] |= 0x80 >> (i % 8);
                }
            }
            assert_eq!(w.bytes, want);
            assert_eq!(w.free as usize, (8 - bits.len() % 8) % 8);
        }
    }

    fn round_trip(samples: &[Sample]) {
        let mut a = XorAppender::new();
        for s in samples {
            a.append(s.t, s.v).unwrap();
        }
        let got = decode_all(a.bytes()).unwrap();
        assert_eq!(got.len(), samples.len());
        for (g, w) in got.iter().zip(samples) {
            assert_eq!(g.t, w.t);
            assert_eq!(g.v.to_bits(), w.v.to_bits());
        }
    }

    #[test]
    fn regular_scrapes_compress_well() {
        let samples: Vec<Sample> = (0..120)
            .map(|i| Sample {
                t: 1_700_000_000_000 + i * 15_000,
                v: (i * 3) as f64,
            })
            .collect();
        round_trip(&samples);
        let mut a = XorAppender::new();
        for s in &samples {
            a.append(s.t, s.v).unwrap();
        }
        assert!(a.byte_len() < 120 * 3, "{} bytes", a.byte_len());
    }

    #[test]
    fn random_samples_round_trip() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let n = rng.random_range(1..300);
            let mut t = rng.random_range(-1_000_000i64..2_000_000_000_000);
            let mut samples = Vec::new();
            for _ in 0..n {
                t += match rng.random_range(0..4) {
                    0 => 1,
                    1 => rng.random_range(1..20_000),
                    2 => rng.random_range(1..1 << 30),
                    _ => rng.random_range(1..1i64 << 45),
                };
                let v = match rng.random_range(0..5) {
                    0 => 0.0,
                    1 => rng.random::<f64>(),
                    2 => f64::from_bits(rng.random()),
                    3 => rng.random_range(-1000..1000) as f64,
                    _ => f64::from_bits(crate::STALE_NAN_BITS),
                };
                samples.push(Sample { t, v });
            }
            round_trip(&samples);
        }
    }

    #[test]
    fn special_values() {
        let vals = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            1.0,
        ];
        let samples: Vec<Sample> = vals
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample { t: i as i64, v })
            .collect();
        round_trip(&samples);
    }

    #[test]
    fn out_of_order_rejected() {
        let mut a = XorAppender::new();
        a.append(10, 1.0).unwrap();
        assert_eq!(
            a.append(10, 2.0),
            Err(ChunkError::OutOfOrder { t: 10, last: 10 })
        );
        assert_eq!(a.num_samples(), 1);
    }

    #[test]
    fn truncated_chunk_is_an_error_not_a_panic() {
        let mut a = XorAppender::new();
        for i in 0..50 {
            a.append(i * 1000, i as f64 * 1.5).unwrap();
        }
        let bytes = a.bytes();
        for cut in 0..bytes.len() {
            let r: Result<Vec<_>, _> = XorIter::new(&bytes[..cut]).and_then(|it| it.collect());
            assert!(r.is_err(), "cut at {cut} decoded");
        }
    }
}
