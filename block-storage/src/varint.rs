//! Varints of the chunk cells (LEB128; signed values zig-zag encoded).

pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads an unsigned varint at `*pos`, advancing it; `None` when truncated
/// or longer than 10 bytes.
pub fn uvarint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

pub fn varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let u = uvarint(buf, pos)?;
    Some(((u >> 1) as i64) ^ -((u & 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        let values = [0i64, 1, -1, 63, -64, 1 << 40, i64::MIN, i64::MAX];
        for v in values {
            put_varint(&mut out, v);
        }
        let mut pos = 0;
        for v in values {
            assert_eq!(varint(&out, &mut pos), Some(v));
        }
        assert_eq!(pos, out.len());
        assert_eq!(uvarint(&[0x80, 0x80], &mut 0), None);
        assert_eq!(uvarint(&[0xff; 11], &mut 0), None);
    }
}
