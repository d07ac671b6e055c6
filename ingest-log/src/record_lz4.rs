//! LZ4 compression of single record values, for the Kafka backend.
//!
//! With batch compression librdkafka decompresses each fetched batch into
//! fresh memory (its LZ4 output buffer, grown by `realloc` because its own
//! producer writes no content size) and the reader then copies every record
//! out of it: two passes over the records and a page fault every 4 KiB.
//! Compressing each record's value instead leaves librdkafka only the
//! compressed bytes, and the reader decompresses straight into the buffer
//! it reuses from poll to poll.
//!
//! A compressed value is the uncompressed length (`u32`, little-endian)
//! followed by one LZ4 block, and the record carries the header
//! [`COMPRESSION_HEADER`] = [`LZ4`]. Records without the header are read as
//! they are: earlier records, records whose value LZ4 could not shrink, and
//! records of a producer set to another compression.

use bytes::{BufMut, Bytes, BytesMut};

/// The record header naming the compression of the value.
pub const COMPRESSION_HEADER: &str = "Compression";

/// [`COMPRESSION_HEADER`]'s value for an LZ4-compressed value.
pub const LZ4: &[u8] = b"lz4";

/// The one header of a record whose value the Kafka reader could not
/// decompress: the reason. Its other headers (its format version among
/// them) are dropped, so that consumers skip it as undecodable.
pub const DECOMPRESSION_ERROR_HEADER: &str = "Decompression-Error";

/// Bytes before the LZ4 block: the uncompressed length.
const PREFIX: usize = 4;

/// LZ4 turns a byte of input into at most 255 bytes of output; a claimed
/// length beyond that is corrupt and must not size an allocation.
const MAX_RATIO: usize = 255;

/// The largest value compressed or decompressed (LZ4's own bound).
const MAX_LEN: usize = 0x7E00_0000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Lz4Error {
    #[error("compressed value of {0} bytes is shorter than its length prefix")]
    Truncated(usize),
    #[error("compressed value claims {claimed} bytes, more than {max} for its {len} bytes")]
    ImplausibleLength { claimed: usize, max: usize, len: usize },
    #[error("LZ4 block is corrupt")]
    Corrupt,
    #[error("LZ4 block holds {got} bytes, its prefix says {claimed}")]
    LengthMismatch { claimed: usize, got: usize },
}

/// `value` compressed with its length prefix, or `None` when that would
/// not be smaller (or the value is beyond LZ4's limit): the value is then
/// stored as it is, without the header.
pub fn compress(value: &[u8]) -> Option<Vec<u8>> {
    if value.is_empty() || value.len() > MAX_LEN {
        return None;
    }
    let src_len = c_int(value.len())?;
    // SAFETY: LZ4_compressBound only computes a size.
    let bound = usize::try_from(unsafe { lz4_sys::LZ4_compressBound(src_len) }).ok()?;
    let mut out = Vec::with_capacity(PREFIX + bound);
    out.put_u32_le(u32::try_from(value.len()).ok()?);
    let dst = out.spare_capacity_mut();
    // SAFETY: the source is `value`, `src_len` bytes long; the destination is
    // `bound` bytes of `out`'s spare capacity, which LZ4 only writes to
    // (never reads) and never past `bound`.
    let written = unsafe {
        lz4_sys::LZ4_compress_default(
            value.as_ptr().cast(),
            dst.as_mut_ptr().cast(),
            src_len,
            c_int(bound)?,
        )
    };
    let written = usize::try_from(written).ok().filter(|&n| n > 0 && n <= bound)?;
    // SAFETY: LZ4 initialised the `written` bytes after the prefix.
    unsafe { out.set_len(PREFIX + written) };
    (out.len() < value.len()).then_some(out)
}

/// The length a value written by [`compress`] decompresses to, as its
/// prefix claims (checked by [`decompress_into`]).
pub fn decompressed_len(stored: &[u8]) -> Option<usize> {
    stored.first_chunk::<PREFIX>().map(|p| u32::from_le_bytes(*p) as usize)
}

/// Decompresses a value written by [`compress`] onto the end of `buf` and
/// returns it as its own `Bytes` (split off `buf`, whose memory the caller
/// reuses). `buf` grows only when the value does not fit in its spare
/// capacity. Nothing a corrupt value holds can make it read or write out of
/// bounds or allocate more than [`MAX_RATIO`] times the value's size.
pub fn decompress_into(stored: &[u8], buf: &mut BytesMut) -> Result<Bytes, Lz4Error> {
    let claimed = decompressed_len(stored).ok_or(Lz4Error::Truncated(stored.len()))?;
    let block = &stored[PREFIX..];
    let max = block.len().saturating_mul(MAX_RATIO).min(MAX_LEN);
    if claimed > max {
        return Err(Lz4Error::ImplausibleLength { claimed, max, len: stored.len() });
    }
    let (Some(block_len), Some(out_len)) = (c_int(block.len()), c_int(claimed)) else {
        return Err(Lz4Error::Corrupt);
    };
    buf.reserve(claimed);
    let dst = buf.spare_capacity_mut();
    // SAFETY: the source is `block`, `block_len` bytes; the destination is
    // the start of `buf`'s spare capacity, at least `claimed` = `out_len`
    // bytes (reserved above). LZ4_decompress_safe never reads past the
    // source nor writes past `out_len`, whatever the source holds.
    let got = unsafe {
        lz4_sys::LZ4_decompress_safe(block.as_ptr().cast(), dst.as_mut_ptr().cast(), block_len, out_len)
    };
    let got = usize::try_from(got).map_err(|_| Lz4Error::Corrupt)?;
    if got != claimed {
        return Err(Lz4Error::LengthMismatch { claimed, got });
    }
    // SAFETY: LZ4 initialised `got` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + got) };
    Ok(buf.split().freeze())
}

fn c_int(n: usize) -> Option<i32> {
    i32::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn series_like(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("__name__node_cpu_seconds_total cpu{} mode idle instance host-{}:9100 ", i % 8, i % 50).into_bytes())
            .collect()
    }

    #[test]
    fn round_trips_and_shrinks_repetitive_values() {
        let value = series_like(2000);
        let stored = compress(&value).expect("compressible");
        assert!(stored.len() * 4 < value.len(), "{} -> {}", value.len(), stored.len());
        let mut buf = BytesMut::new();
        assert_eq!(decompress_into(&stored, &mut buf).unwrap(), value);
    }

    #[test]
    fn values_that_do_not_shrink_are_left_alone() {
        assert_eq!(compress(b""), None);
        assert_eq!(compress(b"abc"), None);
        assert_eq!(compress(&crate::conformance::incompressible(4096)), None);
    }

    #[test]
    fn decompresses_into_the_reused_buffer_without_growing_it() {
        let value = series_like(500);
        let stored = compress(&value).unwrap();
        let mut buf = BytesMut::with_capacity(4 * value.len());
        let ptr = buf.as_ptr();
        let a = decompress_into(&stored, &mut buf).unwrap();
        let b = decompress_into(&stored, &mut buf).unwrap();
        assert_eq!((&a[..], &b[..]), (&value[..], &value[..]));
        assert_eq!(a.as_ptr(), ptr, "the first value starts the buffer");
        assert_eq!(b.as_ptr(), ptr.wrapping_add(value.len()), "the second follows it");
    }

    #[test]
    fn corrupt_values_are_refused() {
        let value = series_like(200);
        let stored = compress(&value).unwrap();
        let mut buf = BytesMut::new();
        assert_eq!(decompress_into(&stored[..3], &mut buf), Err(Lz4Error::Truncated(3)));
        // A length the block cannot hold, and one LZ4 could never produce.
        let mut longer = stored.clone();
        longer[..4].copy_from_slice(&(value.len() as u32 + 1).to_le_bytes());
        assert!(matches!(decompress_into(&longer, &mut buf), Err(Lz4Error::Corrupt | Lz4Error::LengthMismatch { .. })));
        let mut shorter = stored.clone();
        shorter[..4].copy_from_slice(&(value.len() as u32 - 1).to_le_bytes());
        assert!(decompress_into(&shorter, &mut buf).is_err());
        let mut huge = stored.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decompress_into(&huge, &mut buf), Err(Lz4Error::ImplausibleLength { .. })));
        assert!(buf.capacity() < 256 * stored.len(), "no allocation sized by a corrupt prefix");
        assert!(decompress_into(&stored[..stored.len() - 1], &mut buf).is_err());
    }

    proptest! {
        #[test]
        fn any_value_round_trips(value in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), any::<u8>()], 0..5000)) {
            let mut buf = BytesMut::new();
            if let Some(stored) = compress(&value) {
                prop_assert!(stored.len() < value.len());
                prop_assert_eq!(decompress_into(&stored, &mut buf).unwrap(), value);
            }
        }

        #[test]
        fn any_bytes_decompress_or_fail_cleanly(stored in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut buf = BytesMut::new();
            if let Ok(v) = decompress_into(&stored, &mut buf) {
                prop_assert_eq!(v.len() as u32, u32::from_le_bytes(stored[..4].try_into().unwrap()));
            }
        }

        #[test]
        fn mutated_values_decompress_or_fail_cleanly(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut stored = compress(&series_like(300)).unwrap();
            let i = at.index(stored.len());
            stored[i] = byte;
            let mut buf = BytesMut::new();
            let _ = decompress_into(&stored, &mut buf);
        }
    }
}
