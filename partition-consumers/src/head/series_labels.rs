//! A series' labels in one allocation, as Prometheus' "stringlabels" keep
//! them, in the bytes a remote-write `TimeSeries` encodes them with: per
//! label, sorted by name, `0x0a len(label) 0x0a len(name) name 0x12
//! len(value) value` (lengths as minimal varints).
//!
//! One contiguous buffer instead of two heap strings per label: less memory
//! per series, and comparing incoming labels on append reads one cache line
//! or two instead of chasing a pointer per string. The remote-write
//! encoding, because the distributor writes exactly these bytes: replay
//! hashes and compares a record's label fields as they lie in the record.

use tidemark_schemas::prometheus::Label as ProtoLabel;
use tidemark_storage::matcher::Matcher;
use tidemark_storage::{Label, Labels};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesLabels(Box<[u8]>);

/// Field keys of a label (`TimeSeries.labels`, field 1) and of its name
/// (field 1) and value (field 2), all length-delimited.
const LABEL_KEY: u8 = 0x0a;
const NAME_KEY: u8 = 0x0a;
const VALUE_KEY: u8 = 0x12;

fn put_uvarint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn uvarint_len(v: usize) -> usize {
    (usize::BITS - (v | 1).leading_zeros()).div_ceil(7) as usize
}

/// Appends one label's field.
fn put_label(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let inner = 2 + uvarint_len(name.len()) + name.len() + uvarint_len(value.len()) + value.len();
    out.push(LABEL_KEY);
    put_uvarint(out, inner);
    out.push(NAME_KEY);
    put_uvarint(out, name.len());
    out.extend_from_slice(name);
    out.push(VALUE_KEY);
    put_uvarint(out, value.len());
    out.extend_from_slice(value);
}

/// The head's hash of labels in this type's layout: foldhash, with a seed
/// drawn once per process (so that label sets crafted to collide in one
/// process do not in another). Never stored: the index is rebuilt with the
/// head.
pub fn label_hash(encoded: &[u8]) -> u64 {
    static STATE: std::sync::LazyLock<foldhash::fast::RandomState> = std::sync::LazyLock::new(foldhash::fast::RandomState::default);
    std::hash::BuildHasher::hash_one(&*STATE, encoded)
}

/// Iterates `(name, value)` byte slices; stops at anything not in this
/// type's layout.
struct Iter<'a> {
    buf: &'a [u8],
}

impl<'a> Iter<'a> {
    /// A minimal varint (the form every encoder writes): a longer form of
    /// the same number would give the same labels other bytes.
    fn uvarint(buf: &mut &'a [u8]) -> Option<usize> {
        let mut v = 0usize;
        let mut shift = 0;
        loop {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            v |= ((b & 0x7f) as usize) << shift;
            if b < 0x80 {
                return (b != 0 || shift == 0).then_some(v);
            }
            shift += 7;
            if shift > 35 {
                return None;
            }
        }
    }

    /// A `key len bytes` field at the start of `buf`.
    fn field(buf: &mut &'a [u8], key: u8) -> Option<&'a [u8]> {
        let (&k, rest) = buf.split_first()?;
        if k != key {
            return None;
        }
        *buf = rest;
        let len = Self::uvarint(buf)?;
        if buf.len() < len {
            return None;
        }
        let (f, rest) = buf.split_at(len);
        *buf = rest;
        Some(f)
    }

    fn label(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        let mut label = Self::field(&mut self.buf, LABEL_KEY)?;
        let name = Self::field(&mut label, NAME_KEY)?;
        let value = Self::field(&mut label, VALUE_KEY)?;
        label.is_empty().then_some((name, value))
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let label = self.label();
        if label.is_none() {
            self.buf = &[];
        }
        label
    }
}

fn as_str(b: &[u8]) -> &str {
    // SAFETY: every `SeriesLabels` holds UTF-8 names and values: `new`
    // copies them from `String`s and `from_encoded` checks them.
    unsafe { std::str::from_utf8_unchecked(b) }
}

impl SeriesLabels {
    pub fn new(labels: &Labels) -> Self {
        let mut buf = Vec::with_capacity(
            labels
                .iter()
                .map(|l| l.name.len() + l.value.len() + 6)
                .sum(),
        );
        for l in labels {
            put_label(&mut buf, l.name.as_bytes(), l.value.as_bytes());
        }
        SeriesLabels(buf.into_boxed_slice())
    }

    /// Appends wire labels to `buf` in this type's layout. Returns false
    /// (leaving `buf` as it was) unless they are sorted by unique name with
    /// no empty values, the form the distributor writes.
    pub fn encode_wire(labels: &[ProtoLabel], buf: &mut Vec<u8>) -> bool {
        Self::encode_pairs(labels.iter().map(|l| (l.name.as_ref(), l.value.as_ref())), buf)
    }

    /// [`SeriesLabels::encode_wire`] of `(name, value)` pairs.
    pub fn encode_pairs<'a>(labels: impl Iterator<Item = (&'a [u8], &'a [u8])>, buf: &mut Vec<u8>) -> bool {
        let start = buf.len();
        let mut prev: &[u8] = &[];
        for (i, (name, value)) in labels.enumerate() {
            if value.is_empty() || (i > 0 && name <= prev) {
                buf.truncate(start);
                return false;
            }
            prev = name;
            put_label(buf, name, value);
        }
        true
    }

    /// Labels from a buffer in this type's layout, if that is exactly the
    /// layout [`SeriesLabels::encode_pairs`] writes (minimal varints, names
    /// sorted and unique, no empty value) and every name and value is
    /// UTF-8: equal label sets are then equal bytes, and a record's label
    /// fields in this form are stored as they lie.
    pub fn from_encoded(buf: &[u8]) -> Option<Self> {
        let mut it = Iter { buf };
        let mut prev: Option<&[u8]> = None;
        // Labels are mostly ASCII: then so is every name and value, and
        // none needs a check of its own.
        let ascii = buf.is_ascii();
        while !it.buf.is_empty() {
            let (name, value) = it.label()?;
            if value.is_empty() || prev.is_some_and(|p| name <= p) {
                return None;
            }
            if !ascii {
                std::str::from_utf8(name).ok()?;
                std::str::from_utf8(value).ok()?;
            }
            prev = Some(name);
        }
        prev.is_some().then(|| SeriesLabels(buf.into()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The head's series hash: [`label_hash`] of the encoded labels.
    pub fn hash(&self) -> u64 {
        label_hash(&self.0)
    }

    fn iter(&self) -> Iter<'_> {
        Iter { buf: &self.0 }
    }

    /// Pairs as strings.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().map(|(n, v)| (as_str(n), as_str(v)))
    }

    /// The order of the label sets (`Labels`' order), without building them.
    pub fn cmp_labels(&self, other: &SeriesLabels) -> std::cmp::Ordering {
        self.pairs().cmp(other.pairs())
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
    fn stored_labels_sort_as_label_sets_do() {
        let sets: Vec<Labels> = [
            vec![("__name__", "a")],
            vec![("__name__", "a"), ("x", "1")],
            vec![("__name__", "a"), ("x", "10")],
            vec![("__name__", "a"), ("x", "2")],
            vec![("__name__", "a"), ("y", "0")],
            vec![("__name__", "ab")],
            vec![("__name__", "b"), ("a", "z")],
            vec![("a", "z")],
            vec![("a", "z"), ("b", "")],
            vec![("long", &*"v".repeat(200)), ("z", "1")],
            vec![("long", &*"v".repeat(201))],
        ]
        .into_iter()
        .map(Labels::from_pairs)
        .collect();
        for a in &sets {
            for b in &sets {
                let (sa, sb) = (SeriesLabels::new(a), SeriesLabels::new(b));
                assert_eq!(sa.cmp_labels(&sb), a.cmp(b), "{a} vs {b}");
            }
        }
    }

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
        assert!(s.heap_bytes() < 345);
        // The bytes a remote-write series encodes its labels with.
        let series = tidemark_schemas::prometheus::TimeSeries { labels: wire.clone(), ..Default::default() };
        assert_eq!(prost::Message::encode_to_vec(&series), s.as_bytes());
        let mut buf = Vec::new();
        assert!(SeriesLabels::encode_wire(&wire, &mut buf));
        assert_eq!(buf, s.as_bytes());
        assert_eq!(SeriesLabels::from_encoded(&buf), Some(s.clone()));
        let mut unsorted = wire.clone();
        unsorted.swap(0, 1);
        assert!(!SeriesLabels::encode_wire(&unsorted, &mut buf));
        // Appends; a refusal leaves the buffer as it was.
        assert_eq!(buf, s.as_bytes());
        assert!(SeriesLabels::encode_wire(&wire, &mut buf));
        assert_eq!(buf, [s.as_bytes(), s.as_bytes()].concat());
        assert_eq!(
            SeriesLabels::from_encoded(&[0x0a, 8, 0x0a, 3, 0xff, 0xfe, 0xfd, 0x12, 1, b'a']),
            None,
            "not UTF-8"
        );
        assert_eq!(SeriesLabels::from_encoded(&[0x0a, 8, 0x0a, 3, b'a', b'b', b'c', 0x12, 1, b'a']).map(|l| l.to_labels()), Some(Labels::from_pairs([("abc", "a")])));
        assert_eq!(SeriesLabels::from_encoded(&[0x0a, 5, 0x0a, 1, b'a']), None, "cut short");
        assert_eq!(SeriesLabels::from_encoded(&[0x0a, 7, 0x0a, 1, b'a', 0x12, 1, b'b', 0x18]), None, "more than a name and a value");
        assert_eq!(SeriesLabels::from_encoded(&[]), None, "no labels");
        assert_eq!(SeriesLabels::from_encoded(&[0x0a, 7, 0x0a, 0x81, 0, b'a', 0x12, 1, b'b']), None, "a longer varint than needed");
        assert_eq!(SeriesLabels::from_encoded(&[0x0a, 0x86, 0x00, 0x0a, 1, b'a', 0x12, 1, b'b']), None, "a longer label length than needed");
        assert_eq!(SeriesLabels::from_encoded(&[0x0a, 5, 0x0a, 1, b'a', 0x12, 0]), None, "an empty value");
        let (a, b) = ([0x0a, 6, 0x0a, 1, b'a', 0x12, 1, b'1'], [0x0a, 6, 0x0a, 1, b'b', 0x12, 1, b'1']);
        assert_eq!(SeriesLabels::from_encoded(&[b, a].concat()), None, "names out of order");
        assert_eq!(SeriesLabels::from_encoded(&[a, a].concat()), None, "a name twice");
        assert!(SeriesLabels::from_encoded(&[a, b].concat()).is_some());
    }
}
