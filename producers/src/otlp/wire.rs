//! The protobuf wire format, read in place: the fields of one message as
//! borrowed views into the request body, with no allocation.
//!
//! The reader refuses what prost refuses when it decodes the generated
//! OTLP types, so that reading in place accepts exactly the requests that
//! decoding did: truncated fields, varints longer than 10 bytes or past 64
//! bits, keys past 32 bits, field number 0, wire types 6 and 7, unmatched
//! group ends, known fields of the wrong wire type, strings that are not
//! UTF-8, and messages nested deeper than prost's recursion limit. Unknown
//! fields are skipped by wire type, groups included.

use std::fmt;

/// prost's recursion limit: a message nested this deep may hold no message
/// and no unknown field.
pub const RECURSION_LIMIT: u32 = 100;

/// Protobuf wire types.
pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const START_GROUP: u8 = 3;
pub const END_GROUP: u8 = 4;
pub const FIXED32: u8 = 5;

/// What is wrong with the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A field extends past the end of its message.
    Truncated,
    /// A varint is longer than 10 bytes or overflows 64 bits.
    InvalidVarint,
    /// A key past 32 bits, or field number 0.
    InvalidKey,
    /// Wire type 6 or 7.
    InvalidWireType(u8),
    /// A known field with another wire type than its own.
    WrongWireType {
        field: u32,
        expected: u8,
        actual: u8,
    },
    /// A group end with no matching start.
    UnexpectedEndGroup,
    /// A string field that is not UTF-8.
    InvalidUtf8 { field: u32 },
    /// Messages nested past [`RECURSION_LIMIT`].
    RecursionLimit,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Truncated => f.write_str("a field extends past the end of its message"),
            ErrorKind::InvalidVarint => f.write_str("invalid varint"),
            ErrorKind::InvalidKey => f.write_str("invalid field key"),
            ErrorKind::InvalidWireType(w) => write!(f, "invalid wire type {w}"),
            ErrorKind::WrongWireType {
                field,
                expected,
                actual,
            } => write!(
                f,
                "field {field} has wire type {actual}, expected {expected}"
            ),
            ErrorKind::UnexpectedEndGroup => f.write_str("unexpected end of group"),
            ErrorKind::InvalidUtf8 { field } => write!(f, "field {field} is not valid UTF-8"),
            ErrorKind::RecursionLimit => f.write_str("messages nested too deep"),
        }
    }
}

/// A wire-format error and the message being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{message}: {kind}")]
pub struct WireError {
    pub message: &'static str,
    pub kind: ErrorKind,
}

/// The value of one field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
    /// A group, already skipped (no OTLP field is a group).
    Group,
}

impl Value<'_> {
    fn wire_type(&self) -> u8 {
        match self {
            Value::Varint(_) => VARINT,
            Value::Fixed64(_) => FIXED64,
            Value::Len(_) => LEN,
            Value::Fixed32(_) => FIXED32,
            Value::Group => START_GROUP,
        }
    }
}

/// Reads the fields of one message in order.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Recursion left, counted as prost counts it: 0 allows no nested
    /// message and no unknown field.
    depth: u32,
    /// The message's name, for errors.
    name: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader of a whole request body (the top-level message).
    pub fn new(buf: &'a [u8], name: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            depth: RECURSION_LIMIT,
            name,
        }
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Whether the message may hold a nested message.
    pub fn can_nest(&self) -> bool {
        self.depth != 0
    }

    /// The reader again from the first field.
    pub fn rewind(mut self) -> Self {
        self.pos = 0;
        self
    }

    pub fn error(&self, kind: ErrorKind) -> WireError {
        WireError {
            message: self.name,
            kind,
        }
    }

    fn fail<T>(&self, kind: ErrorKind) -> Result<T, WireError> {
        Err(self.error(kind))
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Keys, lengths and small values are one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_slow()
    }

    fn varint_slow(&mut self) -> Result<u64, WireError> {
        let mut out = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return self.fail(ErrorKind::InvalidVarint);
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return self.fail(ErrorKind::InvalidVarint);
            }
            out |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(out);
            }
        }
        self.fail(ErrorKind::InvalidVarint)
    }

    #[inline]
    fn take(&mut self, n: u64) -> Result<&'a [u8], WireError> {
        let rest = self.buf.len() - self.pos;
        if n > rest as u64 {
            return self.fail(ErrorKind::Truncated);
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    #[inline]
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let b = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// A key: field number and wire type.
    #[inline]
    fn key(&mut self) -> Result<(u32, u8), WireError> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return self.fail(ErrorKind::InvalidKey);
        }
        let wire = (key & 7) as u8;
        let field = (key as u32) >> 3;
        if wire > FIXED32 {
            return self.fail(ErrorKind::InvalidWireType(wire));
        }
        if field == 0 {
            return self.fail(ErrorKind::InvalidKey);
        }
        Ok((field, wire))
    }

    /// The next field, `None` at the end of the message.
    #[inline(always)]
    pub fn read_field(&mut self) -> Result<Option<(u32, Value<'a>)>, WireError> {
        let Some(&key) = self.buf.get(self.pos) else {
            return Ok(None);
        };
        // The usual field: a one-byte key, a one-byte length.
        if key < 0x80 && key & 7 == LEN && key >= 8 {
            if let Some(&n) = self.buf.get(self.pos + 1) {
                let start = self.pos + 2;
                if let Some(b) = self
                    .buf
                    .get(start..start + usize::from(n))
                    .filter(|_| n < 0x80)
                {
                    self.pos = start + usize::from(n);
                    return Ok(Some((u32::from(key >> 3), Value::Len(b))));
                }
            }
        }
        self.read_any_field()
    }

    /// [`Reader::read_field`] for any field.
    fn read_any_field(&mut self) -> Result<Option<(u32, Value<'a>)>, WireError> {
        let (field, wire) = self.key()?;
        let v = match wire {
            VARINT => Value::Varint(self.varint()?),
            FIXED64 => Value::Fixed64(u64::from_le_bytes(self.fixed()?)),
            LEN => {
                let n = self.varint()?;
                Value::Len(self.take(n)?)
            }
            FIXED32 => Value::Fixed32(u32::from_le_bytes(self.fixed()?)),
            START_GROUP => {
                self.skip_group(field, self.depth)?;
                Value::Group
            }
            _ => return self.fail(ErrorKind::UnexpectedEndGroup),
        };
        Ok(Some((field, v)))
    }

    /// Skips a group up to its end marker, as prost skips an unknown group
    /// with `depth` recursion left.
    fn skip_group(&mut self, tag: u32, depth: u32) -> Result<(), WireError> {
        if depth == 0 {
            return self.fail(ErrorKind::RecursionLimit);
        }
        loop {
            if self.pos >= self.buf.len() {
                return self.fail(ErrorKind::Truncated);
            }
            let (field, wire) = self.key()?;
            match wire {
                END_GROUP if field == tag => return Ok(()),
                END_GROUP => return self.fail(ErrorKind::UnexpectedEndGroup),
                START_GROUP => self.skip_group(field, depth - 1)?,
                _ => {
                    if depth == 1 {
                        return self.fail(ErrorKind::RecursionLimit);
                    }
                    match wire {
                        VARINT => drop(self.varint()?),
                        FIXED64 => drop(self.take(8)?),
                        LEN => {
                            let n = self.varint()?;
                            self.take(n)?;
                        }
                        _ => drop(self.take(4)?),
                    }
                }
            }
        }
    }

    fn wrong<T>(&self, field: u32, expected: u8, v: &Value<'_>) -> Result<T, WireError> {
        self.fail(ErrorKind::WrongWireType {
            field,
            expected,
            actual: v.wire_type(),
        })
    }

    /// An unknown field, skipped (prost refuses even that past its
    /// recursion limit).
    #[inline]
    pub fn skip(&self) -> Result<(), WireError> {
        if self.depth == 0 {
            return self.fail(ErrorKind::RecursionLimit);
        }
        Ok(())
    }

    /// A varint field (`int32`, `int64`, `uint32`, `uint64`, `bool`, enums;
    /// the caller truncates as prost does).
    #[inline]
    pub fn varint_of(&self, field: u32, v: Value<'a>) -> Result<u64, WireError> {
        match v {
            Value::Varint(x) => Ok(x),
            other => self.wrong(field, VARINT, &other),
        }
    }

    /// A 64-bit field (`fixed64`, `sfixed64`, `double`).
    #[inline]
    pub fn fixed64_of(&self, field: u32, v: Value<'a>) -> Result<u64, WireError> {
        match v {
            Value::Fixed64(x) => Ok(x),
            other => self.wrong(field, FIXED64, &other),
        }
    }

    /// A `double` field.
    #[inline]
    pub fn double_of(&self, field: u32, v: Value<'a>) -> Result<f64, WireError> {
        self.fixed64_of(field, v).map(f64::from_bits)
    }

    /// A `bytes` field.
    #[inline]
    pub fn bytes_of(&self, field: u32, v: Value<'a>) -> Result<&'a [u8], WireError> {
        match v {
            Value::Len(b) => Ok(b),
            other => self.wrong(field, LEN, &other),
        }
    }

    /// A `string` field, UTF-8 checked.
    #[inline]
    pub fn str_of(&self, field: u32, v: Value<'a>) -> Result<&'a str, WireError> {
        let b = self.bytes_of(field, v)?;
        std::str::from_utf8(b).map_err(|_| self.error(ErrorKind::InvalidUtf8 { field }))
    }

    /// A message field: a reader of the nested message, one level deeper.
    #[inline]
    pub fn message(
        &self,
        field: u32,
        v: Value<'a>,
        name: &'static str,
    ) -> Result<Reader<'a>, WireError> {
        let buf = self.bytes_of(field, v)?;
        if self.depth == 0 {
            return self.fail(ErrorKind::RecursionLimit);
        }
        Ok(Reader {
            buf,
            pos: 0,
            depth: self.depth - 1,
            name,
        })
    }

    /// A repeated `fixed64`/`double` field, packed or not: each element.
    pub fn fixed64s(
        &self,
        field: u32,
        v: Value<'a>,
        mut f: impl FnMut(u64),
    ) -> Result<(), WireError> {
        match v {
            Value::Fixed64(x) => f(x),
            Value::Len(b) => {
                if b.len() % 8 != 0 {
                    return self.fail(ErrorKind::Truncated);
                }
                for c in b.chunks_exact(8) {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(c);
                    f(u64::from_le_bytes(w));
                }
            }
            other => return self.wrong(field, FIXED64, &other),
        }
        Ok(())
    }

    /// A repeated varint field, packed or not: each element.
    pub fn varints(
        &self,
        field: u32,
        v: Value<'a>,
        mut f: impl FnMut(u64),
    ) -> Result<(), WireError> {
        match v {
            Value::Varint(x) => f(x),
            Value::Len(b) => {
                let mut r = Reader {
                    buf: b,
                    pos: 0,
                    ..*self
                };
                while r.pos < b.len() {
                    f(r.varint()?);
                }
            }
            other => return self.wrong(field, VARINT, &other),
        }
        Ok(())
    }
}

/// The occurrences of a singular message field, merged in order as
/// protobuf merges them (nearly always one).
#[derive(Debug, Clone, Default)]
pub enum Segments<'a> {
    #[default]
    Absent,
    One(Reader<'a>),
    Many(Vec<Reader<'a>>),
}

impl<'a> Segments<'a> {
    pub fn one(r: Reader<'a>) -> Self {
        Segments::One(r)
    }

    pub fn push(&mut self, r: Reader<'a>) {
        match std::mem::take(self) {
            Segments::Absent => *self = Segments::One(r),
            Segments::One(first) => *self = Segments::Many(vec![first, r]),
            Segments::Many(mut all) => {
                all.push(r);
                *self = Segments::Many(all);
            }
        }
    }

    pub fn is_present(&self) -> bool {
        !matches!(self, Segments::Absent)
    }

    pub fn as_slice(&self) -> &[Reader<'a>] {
        match self {
            Segments::Absent => &[],
            Segments::One(r) => std::slice::from_ref(r),
            Segments::Many(all) => all,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(buf: &[u8]) -> Result<Vec<(u32, Value<'_>)>, WireError> {
        let mut r = Reader::new(buf, "test");
        let mut out = Vec::new();
        while let Some(f) = r.read_field()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn reads_every_wire_type() {
        let buf = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 1, 0, 0, 0, 0, 0, 0, 0, // 2: fixed64 1
            0x1a, 2, b'h', b'i', // 3: "hi"
            0x25, 2, 0, 0, 0, // 4: fixed32 2
            0x2b, 0x08, 1, 0x2c, // 5: group holding a varint
        ];
        assert_eq!(
            fields(&buf).unwrap(),
            vec![
                (1, Value::Varint(150)),
                (2, Value::Fixed64(1)),
                (3, Value::Len(b"hi")),
                (4, Value::Fixed32(2)),
                (5, Value::Group),
            ]
        );
    }

    #[test]
    fn refuses_what_prost_refuses() {
        let kind = |buf: &[u8]| fields(buf).unwrap_err().kind;
        assert_eq!(kind(&[0x0a, 5, 1]), ErrorKind::Truncated);
        assert_eq!(kind(&[0x08, 0x80]), ErrorKind::InvalidVarint);
        assert_eq!(
            kind(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            ErrorKind::InvalidVarint
        );
        assert_eq!(kind(&[0x00, 0]), ErrorKind::InvalidKey);
        assert_eq!(kind(&[0x0e]), ErrorKind::InvalidWireType(6));
        assert_eq!(kind(&[0x0c]), ErrorKind::UnexpectedEndGroup);
        assert_eq!(kind(&[0x0b, 0x14]), ErrorKind::UnexpectedEndGroup);
        assert_eq!(kind(&[0x0b]), ErrorKind::Truncated);
        assert_eq!(kind(&[0x80, 0x80, 0x80, 0x80, 0x10]), ErrorKind::InvalidKey);
        let r = Reader::new(b"", "test");
        assert!(matches!(
            r.str_of(1, Value::Len(b"\xff")).unwrap_err().kind,
            ErrorKind::InvalidUtf8 { field: 1 }
        ));
        assert!(matches!(
            r.varint_of(1, Value::Fixed32(0)).unwrap_err().kind,
            ErrorKind::WrongWireType {
                field: 1,
                expected: VARINT,
                actual: FIXED32
            }
        ));
    }

    #[test]
    fn packed_and_unpacked() {
        let r = Reader::new(b"", "test");
        let mut got = Vec::new();
        r.fixed64s(1, Value::Fixed64(7), |x| got.push(x)).unwrap();
        r.fixed64s(
            1,
            Value::Len(&[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]),
            |x| got.push(x),
        )
        .unwrap();
        assert_eq!(got, vec![7, 1, 2]);
        assert!(r.fixed64s(1, Value::Len(&[1, 2, 3]), |_| ()).is_err());
        let mut got = Vec::new();
        r.varints(1, Value::Len(&[1, 0x96, 0x01]), |x| got.push(x))
            .unwrap();
        r.varints(1, Value::Varint(3), |x| got.push(x)).unwrap();
        assert_eq!(got, vec![1, 150, 3]);
        assert!(r.varints(1, Value::Len(&[0x80]), |_| ()).is_err());
    }

    #[test]
    fn recursion_limit() {
        let mut r = Reader::new(b"", "test");
        for _ in 0..RECURSION_LIMIT {
            r = r.message(1, Value::Len(b""), "nested").unwrap();
        }
        assert_eq!(r.skip().unwrap_err().kind, ErrorKind::RecursionLimit);
        assert_eq!(
            r.message(1, Value::Len(b""), "nested").unwrap_err().kind,
            ErrorKind::RecursionLimit
        );
    }
}
