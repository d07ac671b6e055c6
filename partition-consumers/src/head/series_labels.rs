//! A series' labels in one allocation, as Prometheus' "stringlabels" keep
//! them: `(uvarint name length | name | uvarint value length | value)*`,
//! sorted by name.
//!
//! One contiguous buffer instead of two heap strings per label: less memory
//! per series, and comparing incoming labels on append reads one cache line
//! or two instead of chasing a pointer per string.

use tidemark_schemas::prometheus::Label as ProtoLabel;
use tidemark_storage::matcher::Matcher;
use tidemark_storage::{Label, Labels};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesLabels(Box<[u8]>);

fn put_uvarint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Iterates `(name, value)` byte slices.
struct Iter<'a> {
    buf: &'a [u8],
}

impl<'a> Iter<'a> {
    fn field(&mut self) -> Option<&'a [u8]> {
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let (&b, rest) = self.buf.split_first()?;
            self.buf = rest;
            len |= ((b & 0x7f) as usize) << shift;
            if b < 0x80 {
                break;
            }
            shift += 7;
            if shift > 35 {
                return None;
            }
        }
        if self.buf.len() < len {
            return None;
        }
        let (f, rest) = self.buf.split_at(len);
        self.buf = rest;
        Some(f)
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        Some((self.field()?, self.field()?))
    }
}

fn as_str(b: &[u8]) -> &str {
    // Built only from `Labels`, whose names and values are `String`s.
    std::str::from_utf8(b).unwrap_or_default()
}

impl SeriesLabels {
    pub fn new(labels: &Labels) -> Self {
        let mut buf = Vec::with_capacity(
            labels
                .iter()
                .map(|l| l.name.len() + l.value.len() + 2)
                .sum(),
        );
        for l in labels {
            put_uvarint(&mut buf, l.name.len());
            buf.extend_from_slice(l.name.as_bytes());
            put_uvarint(&mut buf, l.value.len());
            buf.extend_from_slice(l.value.as_bytes());
        }
        SeriesLabels(buf.into_boxed_slice())
    }

    /// Encodes wire labels into `buf` in this type's layout. Returns false
    /// (leaving `buf` unspecified) unless they are sorted by unique name
    /// with no empty values, the form the distributor writes.
    pub fn encode_wire(labels: &[ProtoLabel], buf: &mut Vec<u8>) -> bool {
        Self::encode_pairs(labels.iter().map(|l| (l.name.as_ref(), l.value.as_ref())), buf)
    }

    /// [`SeriesLabels::encode_wire`] of `(name, value)` pairs.
    pub fn encode_pairs<'a>(labels: impl Iterator<Item = (&'a [u8], &'a [u8])>, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        let mut prev: &[u8] = &[];
        for (i, (name, value)) in labels.enumerate() {
            if value.is_empty() || (i > 0 && name <= prev) {
                return false;
            }
            prev = name;
            put_uvarint(buf, name.len());
            buf.extend_from_slice(name);
            put_uvarint(buf, value.len());
            buf.extend_from_slice(value);
        }
        true
    }

    /// Labels from a buffer in this type's layout, if every name and value
    /// is UTF-8 and the layout is whole.
    pub fn from_encoded(buf: &[u8]) -> Option<Self> {
        let mut it = Iter { buf };
        let mut fields = 0;
        while !it.buf.is_empty() {
            std::str::from_utf8(it.field()?).ok()?;
            fields += 1;
        }
        (fields > 0 && fields % 2 == 0).then(|| SeriesLabels(buf.into()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The head's series hash: xxh3 of the encoded labels.
    pub fn hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.0)
    }

    fn iter(&self) -> Iter<'_> {
        Iter { buf: &self.0 }
    }

    /// Pairs as strings.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().map(|(n, v)| (as_str(n), as_str(v)))
    }

    pub fn to_labels(&self) -> Labels {
        Labels::from_sorted(self.pairs().map(|(n, v)| Label::new(n, v)).collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Whether `wire` (sorted, no empty values) are these labels.
    pub fn eq_proto(&self, wire: &[ProtoLabel]) -> bool {
        let mut it = self.iter();
        for l in wire {
            match it.next() {
                Some((n, v)) if n == l.name.as_ref() && v == l.value.as_ref() => {}
                _ => return false,
            }
        }
        it.next().is_none()
    }

    pub fn matches(&self, matchers: &[Matcher]) -> bool {
        matchers
            .iter()
            .all(|m| m.matches(self.get(&m.name).unwrap_or("")))
    }

    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tidemark_storage::MatchOp;

    #[test]
    fn round_trip_and_compare() {
        let long = "v".repeat(300);
        let labels =
            Labels::from_pairs([("__name__", "up"), ("job", "a"), ("long", long.as_str())]);
        let s = SeriesLabels::new(&labels);
        assert_eq!(s.to_labels(), labels);
        assert_eq!(s.get("job"), Some("a"));
        assert_eq!(s.get("long").map(str::len), Some(300));
        assert_eq!(s.get("nope"), None);
        let wire: Vec<ProtoLabel> = labels
            .iter()
            .map(|l| ProtoLabel {
                name: Bytes::copy_from_slice(l.name.as_bytes()),
                value: Bytes::copy_from_slice(l.value.as_bytes()),
            })
            .collect();
        assert!(s.eq_proto(&wire));
        assert!(!s.eq_proto(&wire[..2]));
        let mut other = wire.clone();
        other[1].value = Bytes::from_static(b"b");
        assert!(!s.eq_proto(&other));
        assert!(s.matches(&[
            Matcher::new(MatchOp::NotEqual, "absent", "x").unwrap(),
            Matcher::equal("job", "a")
        ]));
        assert!(!s.matches(&[Matcher::equal("absent", "x")]));
        assert!(s.heap_bytes() < 330);
        let mut buf = Vec::new();
        assert!(SeriesLabels::encode_wire(&wire, &mut buf));
        assert_eq!(buf, s.as_bytes());
        assert_eq!(SeriesLabels::from_encoded(&buf), Some(s.clone()));
        let mut unsorted = wire.clone();
        unsorted.swap(0, 1);
        assert!(!SeriesLabels::encode_wire(&unsorted, &mut buf));
        assert_eq!(
            SeriesLabels::from_encoded(&[3, 0xff, 0xfe, 0xfd, 1, b'a']),
            None,
            "not UTF-8"
        );
        assert_eq!(SeriesLabels::from_encoded(&[5, b'a']), None, "cut short");
    }
}
