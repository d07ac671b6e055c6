//! Reading a remote-write request (or a version 1 record's body, which is
//! one) in place.
//!
//! The distributor does not decode a request into structs and encode it
//! again: it walks the protobuf wire format of the decompressed body, checks
//! every field it forwards, and copies each series' bytes unchanged into the
//! record of its partition. Every byte it forwards is checked to decode as
//! the consumers will decode it. Consumers read the records the same way
//! ([`read_series_samples`]).

use std::ops::Range;

/// A wire-format error, with what was being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

fn err<T>(what: &str) -> Result<T, WireError> {
    Err(WireError(what.to_owned()))
}

/// Protobuf wire types.
pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const FIXED32: u8 = 5;

/// One field of a message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

/// Iterates the fields of one message: `(field number, value, byte range of
/// the whole field within the message)`.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Keys, lengths and small values are one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(b as u64);
            }
        }
        self.varint_slow()
    }

    fn varint_slow(&mut self) -> Result<u64, WireError> {
        let mut out = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return err("truncated varint");
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return err("varint overflows 64 bits");
            }
            out |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        err("varint too long")
    }

    /// A length-delimited value: its length, then its bytes.
    #[inline]
    fn len_delimited(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| WireError("length too large".into()))?;
        Fields::take(self, n)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return err("field extends past the end of its message");
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>, Range<usize>), WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let r = (|| {
            let key = self.varint()?;
            let field = key >> 3;
            if field == 0 || field > u32::MAX as u64 >> 3 {
                return err("invalid field number");
            }
            let v = match (key & 7) as u8 {
                VARINT => Value::Varint(self.varint()?),
                FIXED64 => {
                    let b = self.take(8)?;
                    Value::Fixed64(u64::from_le_bytes(
                        b.try_into().map_err(|_| WireError("fixed64".into()))?,
                    ))
                }
                LEN => Value::Len(self.len_delimited()?),
                FIXED32 => {
                    let b = self.take(4)?;
                    Value::Fixed32(u32::from_le_bytes(
                        b.try_into().map_err(|_| WireError("fixed32".into()))?,
                    ))
                }
                _ => return err("unsupported wire type"),
            };
            Ok((field as u32, v, start..self.pos))
        })();
        if r.is_err() {
            self.pos = self.buf.len();
        }
        Some(r)
    }
}

/// A label as it stands in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelRef<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// Views of decoded labels.
pub fn label_refs(labels: &[crate::prometheus::Label]) -> Vec<LabelRef<'_>> {
    labels
        .iter()
        .map(|l| LabelRef {
            name: &l.name,
            value: &l.value,
        })
        .collect()
}

/// What the distributor needs of one series, read in place.
#[derive(Debug, Default)]
pub struct SeriesView<'a> {
    pub labels: Vec<LabelRef<'a>>,
    pub samples: usize,
    /// Largest sample timestamp.
    pub max_timestamp: i64,
    /// Smallest sample timestamp.
    pub min_timestamp: i64,
    pub exemplars: usize,
}

/// Reads a `prometheus.TimeSeries` into `view` (reusing its buffers),
/// checking every label, sample and exemplar decodes.
pub fn read_series<'a>(buf: &'a [u8], view: &mut SeriesView<'a>) -> Result<(), WireError> {
    view.labels.clear();
    view.samples = 0;
    view.max_timestamp = i64::MIN;
    view.min_timestamp = i64::MAX;
    view.exemplars = 0;
    for f in Fields::new(buf) {
        match f? {
            (1, Value::Len(l), _) => view.labels.push(read_label(l)?),
            (2, Value::Len(s), _) => {
                let t = read_sample(s)?;
                view.samples += 1;
                view.max_timestamp = view.max_timestamp.max(t);
                view.min_timestamp = view.min_timestamp.min(t);
            }
            (3, Value::Len(e), _) => {
                <crate::prometheus::Exemplar as prost::Message>::decode(e)
                    .map_err(|e| WireError(format!("bad exemplar: {e}")))?;
                view.exemplars += 1;
            }
            (1..=3, _, _) => return err("series field has the wrong wire type"),
            // Other fields (native histograms, ...) pass through unread.
            _ => {}
        }
    }
    Ok(())
}

/// A label in the layout every encoder writes (`name` then `value`, both
/// present, lengths under 128): read without the general field loop.
/// `None` for any other layout, which the general reader takes.
#[inline(always)]
fn label_fast(buf: &[u8]) -> Option<LabelRef<'_>> {
    let [0x0a, n, rest @ ..] = buf else { return None };
    let n = *n as usize;
    if n >= 0x80 || rest.len() < n + 2 {
        return None;
    }
    let (name, rest) = rest.split_at(n);
    let [0x12, m, value @ ..] = rest else { return None };
    (*m < 0x80 && value.len() == *m as usize).then_some(LabelRef { name, value })
}

/// A sample in the layout every encoder writes (value, then timestamp;
/// the value left out when zero, as encoders do): `(timestamp, value)`
/// without the general field loop. `None` for any other layout (a zero
/// timestamp, which encoders leave out, or anything unusual), which the
/// general reader takes.
#[inline]
fn sample_fast(buf: &[u8]) -> Option<(i64, f64)> {
    let (bits, varint) = match buf {
        [0x09, v @ ..] if v.len() >= 10 && v[8] == 0x10 => (u64::from_le_bytes(v[..8].try_into().ok()?), &v[9..]),
        [0x10, varint @ ..] => (0, varint),
        _ => return None,
    };
    if varint.is_empty() || varint.len() > 10 {
        return None;
    }
    let mut t = 0u64;
    for (i, &b) in varint.iter().enumerate() {
        if i == 9 && b > 1 {
            return None;
        }
        t |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return (i + 1 == varint.len()).then_some((t as i64, f64::from_bits(bits)));
        }
    }
    None
}

fn read_label(buf: &[u8]) -> Result<LabelRef<'_>, WireError> {
    if let Some(l) = label_fast(buf) {
        return Ok(l);
    }
    let mut l = LabelRef {
        name: &[],
        value: &[],
    };
    for f in Fields::new(buf) {
        match f? {
            (1, Value::Len(n), _) => l.name = n,
            (2, Value::Len(v), _) => l.value = v,
            (1 | 2, _, _) => return err("label field has the wrong wire type"),
            _ => {}
        }
    }
    Ok(l)
}

/// Every series of a remote-write request (a version 1 record body is
/// one), read in place: labels as views into the body and samples in two
/// shared buffers, one set of ranges per series, and where each metadata
/// entry stands. Reading stops at the first malformed part, so a caller
/// gets the whole body or an error.
#[derive(Debug, Default)]
pub struct RequestSeries<'a> {
    body: &'a [u8],
    pub labels: Vec<LabelRef<'a>>,
    pub samples: Vec<(i64, f64)>,
    pub series: Vec<SeriesRanges>,
    /// Byte ranges of the metadata entries in the body.
    pub metadata: Vec<Range<usize>>,
}

/// Where one series of a [`RequestSeries`] lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesRanges {
    /// Its labels in [`RequestSeries::labels`]; empty for a series in the
    /// usual layout, whose labels are read again from its label fields
    /// (see [`SeriesRead::label_views`]): most series are found by those
    /// bytes alone, and views of their labels would be the largest part of
    /// what a read writes.
    pub labels: Range<usize>,
    /// Its samples in [`RequestSeries::samples`].
    pub samples: Range<usize>,
    /// Its label fields in the body, when they are all of its labels and
    /// come first, one after another (see [`read_series_samples`]).
    pub label_fields: Option<Range<usize>>,
}

/// One series of a [`RequestSeries`].
#[derive(Debug, Clone, Copy)]
pub struct SeriesRead<'r, 'a> {
    /// Its labels, unless they are all in `label_fields`.
    stored_labels: &'r [LabelRef<'a>],
    pub samples: &'r [(i64, f64)],
    /// The bytes of its label fields, as [`SeriesRanges::label_fields`].
    pub label_fields: Option<&'a [u8]>,
}

impl<'r, 'a> SeriesRead<'r, 'a> {
    /// Its labels, in the order they stand in the series.
    pub fn label_views(&self) -> LabelViews<'r, 'a> {
        match self.label_fields {
            Some(fields) if self.stored_labels.is_empty() => LabelViews::Fields(fields),
            _ => LabelViews::Stored(self.stored_labels.iter()),
        }
    }
}

/// The labels of a [`SeriesRead`]: kept as views, or read again from its
/// label fields (already checked when the record was read).
#[derive(Debug, Clone)]
pub enum LabelViews<'r, 'a> {
    Stored(std::slice::Iter<'r, LabelRef<'a>>),
    Fields(&'a [u8]),
}

impl<'a> Iterator for LabelViews<'_, 'a> {
    type Item = LabelRef<'a>;

    fn next(&mut self) -> Option<LabelRef<'a>> {
        match self {
            LabelViews::Stored(it) => it.next().copied(),
            LabelViews::Fields(buf) => {
                let (_, value, range) = Fields::new(buf).next()?.ok()?;
                *buf = &buf[range.end..];
                match value {
                    Value::Len(l) => read_label(l).ok(),
                    _ => None,
                }
            }
        }
    }
}

impl<'a> RequestSeries<'a> {
    pub fn read(body: &'a [u8]) -> Result<Self, WireError> {
        let mut out = RequestSeries {
            body,
            // Only the labels of series not in the usual layout (see
            // `push_series`).
            labels: Vec::new(),
            samples: Vec::with_capacity(body.len() / 128),
            series: Vec::with_capacity(body.len() / 128),
            metadata: Vec::new(),
        };
        // Series one after another, as encoders write them: each read as
        // soon as it is found, so that the body is read once, in order (a
        // record is often not in the CPU's caches yet). From the first
        // other field on, the general splitter takes the rest.
        let mut fields = Fields::new(body);
        while body.get(fields.pos) == Some(&0x0a) {
            fields.pos += 1;
            let series = fields.len_delimited()?;
            out.push_series(body, fields.pos - series.len()..fields.pos)?;
        }
        let rest = fields.pos;
        let parts = split_request(&body[rest..])?;
        for r in parts.series {
            out.push_series(body, rest + r.start..rest + r.end)?;
        }
        out.metadata = parts.metadata.into_iter().map(|r| rest + r.start..rest + r.end).collect();
        Ok(out)
    }

    /// Reads the series at `r` in `body`.
    #[inline]
    fn push_series(&mut self, body: &'a [u8], r: Range<usize>) -> Result<(), WireError> {
        let (l0, s0) = (self.labels.len(), self.samples.len());
        if let Some(end) = read_usual_series(&body[r.clone()], &mut self.samples) {
            self.series.push(SeriesRanges {
                labels: l0..l0,
                samples: s0..self.samples.len(),
                label_fields: Some(r.start..r.start + end),
            });
            return Ok(());
        }
        self.samples.truncate(s0);
        let label_fields = read_series_samples(&body[r.clone()], &mut self.labels, &mut self.samples)?;
        self.series.push(SeriesRanges {
            labels: l0..self.labels.len(),
            samples: s0..self.samples.len(),
            label_fields: label_fields.map(|f| r.start + f.start..r.start + f.end),
        });
        Ok(())
    }

    /// Each series' labels and samples.
    pub fn iter(&self) -> impl Iterator<Item = SeriesRead<'_, 'a>> + '_ {
        let body = self.body;
        self.series.iter().map(move |s| SeriesRead {
            stored_labels: &self.labels[s.labels.clone()],
            samples: &self.samples[s.samples.clone()],
            label_fields: s.label_fields.clone().map(|r| &body[r]),
        })
    }

    /// Drops the samples before `min_t`, and then the series left without
    /// samples; returns how many samples were dropped. Series that had no
    /// samples to begin with stay when nothing is dropped.
    pub fn drop_samples_before(&mut self, min_t: i64) -> u64 {
        let mut kept = 0;
        for s in &mut self.series {
            let start = kept;
            for i in s.samples.clone() {
                if self.samples[i].0 >= min_t {
                    self.samples[kept] = self.samples[i];
                    kept += 1;
                }
            }
            s.samples = start..kept;
        }
        let dropped = (self.samples.len() - kept) as u64;
        self.samples.truncate(kept);
        if dropped > 0 {
            self.series.retain(|s| !s.samples.is_empty());
        }
        dropped
    }
}

/// A series in the layout every encoder writes: one label or more, each
/// as [`label_fast`] reads it, then samples as [`sample_fast`] reads them,
/// nothing else. Checks each label's layout without keeping views of it,
/// appends the samples and returns where the label fields end, which then
/// hold every label (as [`read_series_samples`] would report). `None` for
/// anything else, with samples possibly appended: the caller drops them
/// and reads the series with [`read_series_samples`].
#[inline]
fn read_usual_series(buf: &[u8], samples: &mut Vec<(i64, f64)>) -> Option<usize> {
    let mut fields = Fields::new(buf);
    while buf.get(fields.pos) == Some(&0x0a) {
        fields.pos += 1;
        label_fast(fields.len_delimited().ok()?)?;
    }
    let label_end = fields.pos;
    if label_end == 0 {
        return None;
    }
    while let Some(&key) = buf.get(fields.pos) {
        if key != 0x12 {
            return None;
        }
        fields.pos += 1;
        samples.push(sample_fast(fields.len_delimited().ok()?)?);
    }
    Some(label_end)
}

/// A series' labels and samples, read in place with prost's rules (the
/// last occurrence of a label's or sample's field wins; exemplars and other
/// fields are skipped unchecked): appends to `labels` and `samples`.
///
/// Returns the byte range in `buf` of the series' label fields when they
/// come first, one after another, and no label follows them: the labels
/// are then exactly what those bytes encode, so equal bytes are equal
/// labels.
pub fn read_series_samples<'a>(
    buf: &'a [u8],
    labels: &mut Vec<LabelRef<'a>>,
    samples: &mut Vec<(i64, f64)>,
) -> Result<Option<Range<usize>>, WireError> {
    // Labels and samples one after another, as every encoder writes them,
    // read without the general field loop; anything else goes to it from
    // where it stands (fields are independent, so reading the rest of the
    // message there gives the same result).
    let first_label = labels.len();
    let mut fields = Fields::new(buf);
    let mut label_fields_end = None;
    while let Some(&key) = buf.get(fields.pos) {
        if key != 0x0a && key != 0x12 {
            break;
        }
        let start = fields.pos;
        if key != 0x0a && label_fields_end.is_none() {
            label_fields_end = Some((start, labels.len()));
        }
        fields.pos += 1;
        let body = fields.len_delimited()?;
        if key == 0x0a {
            // The usual label inline, without a `Result` in between.
            match label_fast(body) {
                Some(l) => labels.push(l),
                None => labels.push(read_label(body)?),
            }
        } else if let Some(s) = sample_fast(body) {
            samples.push(s);
        } else {
            // An unusual sample: the general reader, from this field on.
            fields.pos = start;
            break;
        }
    }
    let (end, run) = label_fields_end.unwrap_or((fields.pos, labels.len()));
    read_series_samples_slow(&buf[fields.pos..], labels, samples)?;
    Ok((run == labels.len() && run > first_label).then_some(0..end))
}

/// [`read_series_samples`] with the general field loop.
fn read_series_samples_slow<'a>(
    buf: &'a [u8],
    labels: &mut Vec<LabelRef<'a>>,
    samples: &mut Vec<(i64, f64)>,
) -> Result<(), WireError> {
    for f in Fields::new(buf) {
        match f? {
            (1, Value::Len(l), _) => labels.push(read_label(l)?),
            (2, Value::Len(s), _) => {
                let (mut t, mut v) = (0i64, 0f64);
                for f in Fields::new(s) {
                    match f? {
                        (1, Value::Fixed64(bits), _) => v = f64::from_bits(bits),
                        (2, Value::Varint(x), _) => t = x as i64,
                        (1 | 2, _, _) => return err("sample field has the wrong wire type"),
                        _ => {}
                    }
                }
                samples.push((t, v));
            }
            (1 | 2, _, _) => return err("series field has the wrong wire type"),
            _ => {}
        }
    }
    Ok(())
}

/// A sample's timestamp (its value needs no check: any 64 bits are a float).
fn read_sample(buf: &[u8]) -> Result<i64, WireError> {
    if let Some((t, _)) = sample_fast(buf) {
        return Ok(t);
    }
    let mut t = 0i64;
    for f in Fields::new(buf) {
        match f? {
            (1, Value::Fixed64(_), _) => {}
            (2, Value::Varint(v), _) => t = v as i64,
            (1 | 2, _, _) => return err("sample field has the wrong wire type"),
            _ => {}
        }
    }
    Ok(t)
}

/// Top-level parts of a `prometheus.WriteRequest`: byte ranges of each
/// series and each metadata entry (the message bodies, without field
/// headers).
#[derive(Debug, Default)]
pub struct RequestParts {
    pub series: Vec<Range<usize>>,
    pub metadata: Vec<Range<usize>>,
}

pub fn split_request(buf: &[u8]) -> Result<RequestParts, WireError> {
    let mut parts = RequestParts::default();
    // Series and metadata one after another, as encoders write them,
    // without the general field loop; anything else goes to it from where
    // it stands.
    let mut fields = Fields::new(buf);
    while let Some(&key) = buf.get(fields.pos) {
        if key != 0x0a && key != 0x1a {
            break;
        }
        fields.pos += 1;
        let body = fields.len_delimited()?;
        let range = fields.pos - body.len()..fields.pos;
        if key == 0x0a {
            parts.series.push(range);
        } else {
            parts.metadata.push(range);
        }
    }
    let offset = fields.pos;
    for f in Fields::new(&buf[offset..]) {
        let (field, value, range) = f?;
        match (field, value) {
            (1 | 3, Value::Len(body)) => {
                let r = offset + range.end - body.len()..offset + range.end;
                if field == 1 {
                    parts.series.push(r);
                } else {
                    parts.metadata.push(r);
                }
            }
            (1 | 3, _) => return err("request field has the wrong wire type"),
            _ => {}
        }
    }
    Ok(parts)
}

/// Appends a length-delimited field to `out`.
pub fn put_len_field(out: &mut Vec<u8>, field: u32, body: &[u8]) {
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use prost::Message;
    use crate::prometheus::{Exemplar, Label, Sample, TimeSeries, WriteRequest};

    #[test]
    fn request_series_read_in_place_and_filtered_by_time() {
        let l = |n: &'static str, v: &'static str| Label { name: Bytes::from_static(n.as_bytes()), value: Bytes::from_static(v.as_bytes()) };
        let s = |t: i64, v: f64| Sample { value: v, timestamp: t };
        let body = WriteRequest {
            timeseries: vec![
                TimeSeries { labels: vec![l("__name__", "a")], samples: vec![s(1, 1.0), s(5, 2.0)], exemplars: vec![] },
                TimeSeries { labels: vec![l("__name__", "b"), l("x", "y")], samples: vec![s(2, 3.0)], exemplars: vec![] },
                TimeSeries { labels: vec![l("__name__", "c")], samples: vec![], exemplars: vec![] },
            ],
            metadata: vec![Default::default()],
        }
        .encode_to_vec();
        let mut r = RequestSeries::read(&body).unwrap();
        assert_eq!(r.metadata.len(), 1);
        let all: Vec<(usize, Vec<(i64, f64)>)> = r.iter().map(|s| (s.label_views().count(), s.samples.to_vec())).collect();
        assert_eq!(all, vec![(1, vec![(1, 1.0), (5, 2.0)]), (2, vec![(2, 3.0)]), (1, vec![])]);
        assert_eq!(r.iter().nth(1).unwrap().label_views().nth(1), Some(LabelRef { name: b"x", value: b"y" }));
        // Each series' label fields, as its labels encode them.
        let fields: Vec<Option<&[u8]>> = r.iter().map(|s| s.label_fields).collect();
        let encoded = |labels: Vec<Label>| TimeSeries { labels, ..Default::default() }.encode_to_vec();
        assert_eq!(fields[0], Some(encoded(vec![l("__name__", "a")]).as_slice()));
        assert_eq!(fields[1], Some(encoded(vec![l("__name__", "b"), l("x", "y")]).as_slice()));
        assert_eq!(fields[2], Some(encoded(vec![l("__name__", "c")]).as_slice()));
        // Nothing before 1: the empty series stays.
        assert_eq!(r.drop_samples_before(1), 0);
        assert_eq!(r.iter().count(), 3);
        // Before 3: one sample of `a`, all of `b`; emptied series go.
        assert_eq!(r.drop_samples_before(3), 2);
        let left: Vec<Vec<(i64, f64)>> = r.iter().map(|s| s.samples.to_vec()).collect();
        assert_eq!(left, vec![vec![(5, 2.0)]]);
        // A malformed series fails the whole read.
        assert!(RequestSeries::read(&[0x0a, 0x02, 0x0a, 0x05]).is_err());
    }

    #[test]
    fn zero_values_and_timestamps_read_as_prost_decodes_them() {
        let l = |n: &'static str| Label { name: Bytes::from_static(n.as_bytes()), value: Bytes::from_static(b"v") };
        let s = |t: i64, v: f64| Sample { value: v, timestamp: t };
        let req = WriteRequest {
            timeseries: vec![
                TimeSeries { labels: vec![l("a")], samples: vec![s(7, 0.0), s(8, 1.5)], exemplars: vec![] },
                TimeSeries { labels: vec![l("b")], samples: vec![s(0, 2.0), s(0, 0.0), s(-1, -0.0)], exemplars: vec![] },
            ],
            metadata: vec![],
        };
        let body = req.encode_to_vec();
        let r = RequestSeries::read(&body).unwrap();
        // As prost decodes them (-0.0 is written as no value, so reads 0.0).
        let decoded = WriteRequest::decode(body.as_slice()).unwrap();
        assert_eq!(r.iter().count(), 2);
        for (read, ts) in r.iter().zip(&decoded.timeseries) {
            let want: Vec<(i64, u64)> = ts.samples.iter().map(|s| (s.timestamp, s.value.to_bits())).collect();
            let got: Vec<(i64, u64)> = read.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
            assert_eq!(got, want);
            assert!(read.label_fields.is_some());
            assert_eq!(read.label_views().map(|l| l.name.to_vec()).collect::<Vec<_>>(), ts.labels.iter().map(|l| l.name.to_vec()).collect::<Vec<_>>());
        }
    }

    fn req() -> WriteRequest {
        WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![
                        Label {
                            name: Bytes::from_static(b"__name__"),
                            value: Bytes::from_static(b"up"),
                        },
                        Label {
                            name: Bytes::from_static(b"job"),
                            value: Bytes::from_static(b"a"),
                        },
                    ],
                    samples: vec![
                        Sample {
                            value: 1.0,
                            timestamp: 10,
                        },
                        Sample {
                            value: 2.0,
                            timestamp: -5,
                        },
                    ],
                    exemplars: vec![Exemplar {
                        labels: vec![],
                        value: 1.0,
                        timestamp: 3,
                    }],
                },
                TimeSeries::default(),
            ],
            metadata: vec![Default::default()],
        }
    }

    #[test]
    fn reads_what_prost_wrote() {
        let buf = req().encode_to_vec();
        let parts = split_request(&buf).unwrap();
        assert_eq!(parts.series.len(), 2);
        assert_eq!(parts.metadata.len(), 1);
        let mut view = SeriesView::default();
        read_series(&buf[parts.series[0].clone()], &mut view).unwrap();
        assert_eq!(view.labels.len(), 2);
        assert_eq!(
            view.labels[1],
            LabelRef {
                name: b"job",
                value: b"a"
            }
        );
        assert_eq!(
            (view.samples, view.max_timestamp, view.exemplars),
            (2, 10, 1)
        );
        // Copying a series' bytes gives back the same message.
        let mut out = Vec::new();
        put_len_field(&mut out, 1, &buf[parts.series[0].clone()]);
        assert_eq!(
            WriteRequest::decode(out.as_slice()).unwrap().timeseries[0],
            req().timeseries[0]
        );
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let buf = req().encode_to_vec();
        for cut in 0..buf.len() {
            let r = split_request(&buf[..cut]).and_then(|p| {
                let mut v = SeriesView::default();
                p.series
                    .iter()
                    .try_for_each(|s| read_series(&buf[s.clone()], &mut v))
            });
            // Cuts at message boundaries are valid shorter requests; others
            // must agree with prost.
            assert_eq!(
                r.is_ok(),
                WriteRequest::decode(&buf[..cut]).is_ok(),
                "cut at {cut}"
            );
        }
        assert!(
            split_request(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
                .is_err()
        );
        assert!(split_request(&[0x08]).is_err());
        assert!(split_request(&[0x0b]).is_err(), "group wire type");
        let mut v = SeriesView::default();
        assert!(
            read_series(&[0x08, 0x01], &mut v).is_err(),
            "labels with varint wire type"
        );
    }

    /// The in-place reader (with its fast paths for the usual layout)
    /// agrees with prost on any series: random labels and samples (zero
    /// values and timestamps, which encoders leave out, empty values, long
    /// names), encoded by prost, then with fields reordered, and then with
    /// one byte changed: same labels and samples, or an error exactly when
    /// prost refuses.
    mod differential {
        use super::super::*;
        use crate::prometheus::{Label, Sample, TimeSeries};
        use proptest::prelude::*;
        use prost::Message;

        fn series() -> impl Strategy<Value = TimeSeries> {
            let label = ("[a-z_]{0,3}|[a-z]{120,140}", "[a-z0-9]{0,3}|[a-z]{126,130}").prop_map(|(n, v)| Label {
                name: n.into_bytes().into(),
                value: v.into_bytes().into(),
            });
            let sample = (prop_oneof![Just(0i64), any::<i64>(), 0i64..1 << 42], prop_oneof![Just(0.0f64), any::<f64>()])
                .prop_map(|(timestamp, value)| Sample { value, timestamp });
            (proptest::collection::vec(label, 0..5), proptest::collection::vec(sample, 0..4)).prop_map(|(labels, samples)| TimeSeries {
                labels,
                samples,
                ..Default::default()
            })
        }

        /// Labels and samples (value bits, to compare NaNs), owned.
        type Read = (Vec<(Vec<u8>, Vec<u8>)>, Vec<(i64, u64)>);

        fn ours(buf: &[u8]) -> Result<Read, WireError> {
            let (mut labels, mut samples) = (Vec::new(), Vec::new());
            let label_fields = read_series_samples(buf, &mut labels, &mut samples)?;
            Ok(owned(&labels, &samples, label_fields.map(|r| &buf[r])))
        }

        /// A series read, owned; checks that its label fields, when
        /// given, encode exactly its labels.
        fn owned(labels: &[LabelRef<'_>], samples: &[(i64, f64)], label_fields: Option<&[u8]>) -> Read {
            if let Some(fields) = label_fields {
                let alone = LabelsAndSamples::decode(fields).expect("label fields decode alone");
                assert!(alone.samples.is_empty());
                let pairs: Vec<(&[u8], &[u8])> = alone.labels.iter().map(|l| (l.name.as_ref(), l.value.as_ref())).collect();
                assert_eq!(pairs, labels.iter().map(|l| (l.name, l.value)).collect::<Vec<_>>());
            }
            (
                labels.iter().map(|l| (l.name.to_vec(), l.value.to_vec())).collect(),
                samples.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
            )
        }

        /// A series as the in-place reader sees it: exemplars (field 3)
        /// are skipped unchecked, like any unknown field.
        #[derive(Clone, PartialEq, prost::Message)]
        struct LabelsAndSamples {
            #[prost(message, repeated, tag = "1")]
            labels: Vec<Label>,
            #[prost(message, repeated, tag = "2")]
            samples: Vec<Sample>,
        }

        /// A request as the in-place reader sees it: metadata (field 3)
        /// is split off with its wire type checked, its contents not.
        #[derive(Clone, PartialEq, prost::Message)]
        struct Request {
            #[prost(message, repeated, tag = "1")]
            timeseries: Vec<LabelsAndSamples>,
            #[prost(bytes = "vec", repeated, tag = "3")]
            metadata: Vec<Vec<u8>>,
        }

        fn theirs(buf: &[u8]) -> Option<Read> {
            let ts = LabelsAndSamples::decode(buf).ok()?;
            Some((
                ts.labels.iter().map(|l| (l.name.to_vec(), l.value.to_vec())).collect(),
                ts.samples.iter().map(|s| (s.timestamp, s.value.to_bits())).collect(),
            ))
        }

        /// A request's series read in place, as the ingester reads them.
        fn request(buf: &[u8]) -> Option<Vec<Read>> {
            let read = RequestSeries::read(buf).ok()?;
            // The splitter alone finds the same series and metadata.
            let parts = split_request(buf).expect("split where read succeeded");
            assert_eq!(parts.series.len(), read.series.len());
            assert_eq!(parts.metadata, read.metadata);
            Some(read.iter().map(|s| owned(&s.label_views().collect::<Vec<_>>(), s.samples, s.label_fields)).collect())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]
            #[test]
            fn requests_agree_with_prost(series in proptest::collection::vec(series(), 0..4), flip in any::<(usize, u8)>()) {
                let req = crate::prometheus::WriteRequest { timeseries: series, ..Default::default() };
                let mut buf = req.encode_to_vec();
                // An unknown field between the series: read past.
                buf.extend_from_slice(&[0x20, 0x01]);
                buf.extend_from_slice(&req.encode_to_vec());
                let theirs_req = |b: &[u8]| {
                    Request::decode(b).ok().map(|r| {
                        r.timeseries.iter().map(|ts| theirs(&ts.encode_to_vec())).collect::<Option<Vec<_>>>()
                    })
                };
                prop_assert_eq!(request(&buf), theirs_req(&buf).flatten());
                if !buf.is_empty() {
                    let i = flip.0 % buf.len();
                    buf[i] ^= flip.1.max(1);
                    prop_assert_eq!(request(&buf), theirs_req(&buf).flatten());
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            #[test]
            fn agrees_with_prost(ts in series(), flip in any::<(usize, u8)>(), rotate in any::<usize>()) {
                let buf = ts.encode_to_vec();
                prop_assert_eq!(ours(&buf).ok(), theirs(&buf));
                // Fields reordered: samples first.
                let fields: Vec<std::ops::Range<usize>> = Fields::new(&buf).map(|f| f.unwrap().2).collect();
                if !fields.is_empty() {
                    let k = rotate % fields.len();
                    let mut moved = Vec::new();
                    for r in fields[k..].iter().chain(&fields[..k]) {
                        moved.extend_from_slice(&buf[r.clone()]);
                    }
                    prop_assert_eq!(ours(&moved).ok(), theirs(&moved));
                }
                if !buf.is_empty() {
                    let mut bad = buf.clone();
                    let i = flip.0 % bad.len();
                    bad[i] ^= flip.1.max(1);
                    prop_assert_eq!(ours(&bad).ok(), theirs(&bad));
                }
            }
        }
    }
}
