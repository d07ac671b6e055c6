//! OTLP metrics to an encoded remote write 1.0 request, as Prometheus 3.x
//! translates them (`storage/remote/otlptranslator`): one float series per
//! gauge or sum point, `_bucket{le}`/`_sum`/`_count` per explicit-bucket
//! histogram point, `{quantile}`/`_sum`/`_count` per summary point, a
//! `target_info` series per resource, metadata per metric family.
//!
//! What Tidemark cannot store is dropped and counted: exponential
//! histograms (no native histograms yet) and points that are not of
//! cumulative temporality.
//!
//! The protobuf `ExportMetricsServiceRequest` is read in place ([`wire`]):
//! names, attribute keys and string values are borrowed from the body,
//! scratch buffers are reused from point to point, and whatever
//! translation does not read is checked against the message layout
//! ([`schema`]), so that a request is refused exactly when prost would
//! refuse to decode it. A message's fields are read before its children
//! (a metric's name before its points, a sum's temporality before its
//! points), wherever they stand in the body and with protobuf's rules:
//! the last of a singular field wins, a message given twice is merged.
//!
//! Series are encoded straight into the protobuf body, with no per-series
//! allocation; the body is bounded by a budget so that a small request
//! cannot expand without limit (a histogram point becomes one series per
//! bucket, each carrying every label).
//!
//! [`wire`]: super::wire
//! [`schema`]: super::schema

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use bytes::Bytes;
use prost::encoding::encoded_len_varint;
use prost::Message;
use tidemark_schemas::prometheus::{metric_metadata::MetricType, MetricMetadata};

use super::attributes::{key_value, Attr};
use super::memo::Memo;
use super::names::{label_name, metadata_unit, metric_name, NameKind};
use super::schema::{self, validate, validate_all, Schema};
use super::wire::{Reader, Segments, Value, WireError};

/// Prometheus' staleness marker, written for points flagged
/// `NoRecordedValue`.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

const NO_RECORDED_VALUE: u32 = 1;
const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";
const TARGET_INFO: &str = "target_info";
/// How many dropped metrics the partial-success message names.
const MAX_NAMED_REJECTIONS: usize = 5;
/// `AggregationTemporality`'s values.
const DELTA: i32 = 1;
const CUMULATIVE: i32 = 2;

/// A translated export request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Translated {
    /// The encoded `prometheus.WriteRequest`: series and metadata.
    pub body: Vec<u8>,
    /// Series (each of one sample) in `body`.
    pub samples: usize,
    /// `body` reached the budget and translation stopped: the request must
    /// be refused.
    pub over_budget: bool,
    /// Data points dropped because Tidemark cannot store them.
    pub rejected_points: u64,
    /// Why, one entry per dropped metric.
    pub rejections: Vec<String>,
}

impl Translated {
    /// The partial-success message: what was dropped and why; empty when
    /// nothing was.
    pub fn rejection_message(&self) -> String {
        if self.rejected_points == 0 {
            return String::new();
        }
        let mut msg = format!(
            "dropped {} data point{}: ",
            self.rejected_points,
            if self.rejected_points == 1 { "" } else { "s" }
        );
        for (i, r) in self
            .rejections
            .iter()
            .take(MAX_NAMED_REJECTIONS)
            .enumerate()
        {
            if i > 0 {
                msg.push_str("; ");
            }
            msg.push_str(r);
        }
        if self.rejections.len() > MAX_NAMED_REJECTIONS {
            msg.push_str(&format!(
                " (and {} more metrics)",
                self.rejections.len() - MAX_NAMED_REJECTIONS
            ));
        }
        msg
    }
}

/// A float as Prometheus writes `le` and `quantile` values (Go's
/// `FormatFloat(f, 'f', -1, 64)`; `+Inf`, `-Inf`, `NaN`).
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{f}")
    }
}

/// A label, borrowed from the request where it can be.
type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Adds a label; a second attribute mapping to the same name appends its
/// value after `;`, as Prometheus does.
fn join<'a>(labels: &mut Vec<Pair<'a>>, name: Cow<'a, str>, value: Cow<'a, str>) {
    match labels.iter_mut().find(|(n, _)| *n == name) {
        Some((_, v)) => {
            let v = v.to_mut();
            v.push(';');
            v.push_str(&value);
        }
        None => labels.push((name, value)),
    }
}

/// `attrs` sanitised into `labels`, in attribute-key order (a stable sort,
/// done in place when needed) so that colliding names join their values
/// deterministically.
fn add_attributes<'a>(
    labels: &mut Vec<Pair<'a>>,
    attrs: &mut [Attr<'a>],
    skip: impl Fn(&str) -> bool,
) {
    if !attrs.windows(2).all(|w| w[0].0 <= w[1].0) {
        attrs.sort_by(|a, b| a.0.cmp(b.0));
    }
    for (key, value) in attrs.iter().filter(|(k, _)| !skip(k)) {
        join(labels, label_name(key), value.clone());
    }
}

/// Labels sorted by name with empty values dropped.
fn finish(labels: &mut Vec<Pair<'_>>) {
    labels.retain(|(_, v)| !v.is_empty());
    labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
}

/// The most labels that override a series' own: `instance`, `job`, two
/// `otel_scope_*`, `__name__` and `le` or `quantile`.
const MAX_OVERRIDES: usize = 6;

/// Labels that win over a series' own, sorted by name: `fixed` and `extra`
/// (both sorted) merged; an empty value removes the label.
struct Overrides<'x> {
    pairs: [(&'x str, &'x str); MAX_OVERRIDES],
    len: usize,
}

impl<'x> Overrides<'x> {
    fn new(fixed: &'x [(&'static str, Cow<'_, str>)], extra: &[(&'x str, &'x str)]) -> Self {
        let mut o = Overrides {
            pairs: [("", ""); MAX_OVERRIDES],
            len: 0,
        };
        let (mut i, mut j) = (0, 0);
        while o.len < MAX_OVERRIDES && (i < fixed.len() || j < extra.len()) {
            let take_fixed = match (fixed.get(i), extra.get(j)) {
                (Some(f), Some(e)) => f.0 <= e.0,
                (f, _) => f.is_some(),
            };
            o.pairs[o.len] = if take_fixed {
                i += 1;
                (fixed[i - 1].0, fixed[i - 1].1.as_ref())
            } else {
                j += 1;
                extra[j - 1]
            };
            o.len += 1;
        }
        o
    }

    fn as_slice(&self) -> &[(&'x str, &'x str)] {
        &self.pairs[..self.len]
    }
}

/// Orders names as `str::cmp` does, deciding on the first byte where it
/// can (label names nearly always differ there).
#[inline]
fn cmp_names(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

/// A label of a series to write.
trait Label {
    fn name(&self) -> &str;
    fn value(&self) -> &str;
}

impl Label for Pair<'_> {
    fn name(&self) -> &str {
        &self.0
    }
    fn value(&self) -> &str {
        &self.1
    }
}

/// An attribute whose key is a label name already.
impl Label for Attr<'_> {
    fn name(&self) -> &str {
        self.0
    }
    fn value(&self) -> &str {
        &self.1
    }
}

/// Calls `f` on `base` and `extra` merged by name (both sorted), `extra`
/// winning on equal names; empty values are left out.
#[inline]
fn merged<L: Label>(base: &[L], extra: &[(&str, &str)], mut f: impl FnMut(&str, &str)) {
    let (mut i, mut j) = (0, 0);
    loop {
        match (base.get(i), extra.get(j)) {
            (Some(b), Some(e)) => match cmp_names(b.name(), e.0) {
                std::cmp::Ordering::Less => {
                    if !b.value().is_empty() {
                        f(b.name(), b.value());
                    }
                    i += 1;
                }
                std::cmp::Ordering::Equal => {
                    if !e.1.is_empty() {
                        f(e.0, e.1);
                    }
                    i += 1;
                    j += 1;
                }
                std::cmp::Ordering::Greater => {
                    if !e.1.is_empty() {
                        f(e.0, e.1);
                    }
                    j += 1;
                }
            },
            (Some(b), None) => {
                if !b.value().is_empty() {
                    f(b.name(), b.value());
                }
                i += 1;
            }
            (None, Some(e)) => {
                if !e.1.is_empty() {
                    f(e.0, e.1);
                }
                j += 1;
            }
            (None, None) => return,
        }
    }
}

/// Length of a length-delimited field (field number < 16) holding `len`
/// bytes.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_field(buf: &mut Vec<u8>, key: u8, data: &[u8]) {
    buf.push(key);
    put_varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

/// Appends a `TimeSeries.labels` field.
#[inline(always)]
fn put_label(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let len = 4 + name.len() + value.len();
    if len < 0x80 {
        // Every length one byte (the usual case).
        buf.reserve(2 + len);
        buf.extend_from_slice(&[KEY_TIMESERIES, len as u8, KEY_TIMESERIES, name.len() as u8]);
        buf.extend_from_slice(name);
        buf.extend_from_slice(&[KEY_SAMPLES, value.len() as u8]);
        buf.extend_from_slice(value);
        return;
    }
    buf.push(KEY_TIMESERIES);
    put_varint(buf, (field_len(name.len()) + field_len(value.len())) as u64);
    put_field(buf, KEY_TIMESERIES, name);
    put_field(buf, KEY_SAMPLES, value);
}

// Keys of the fields written: (field number << 3) | wire type.
const KEY_TIMESERIES: u8 = 0x0a; // WriteRequest.timeseries, TimeSeries.labels, Label.name
const KEY_SAMPLES: u8 = 0x12; // TimeSeries.samples, Label.value
const KEY_SAMPLE_VALUE: u8 = 0x09; // Sample.value (fixed64)
const KEY_SAMPLE_TIMESTAMP: u8 = 0x10; // Sample.timestamp (varint)
const METADATA_FIELD: u32 = 3;

/// Labels every point of one resource and scope gets.
struct Context<'a, 'c> {
    /// Promoted resource attributes (points' own attributes win).
    promoted: &'c [Pair<'a>],
    /// `instance`, `job`, `otel_scope_*`, sorted by name (these win over
    /// points' attributes; an empty one removes the attribute).
    fixed: &'c [(&'static str, Cow<'a, str>)],
}

/// The kinds of `Metric.data`, by field number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

impl DataKind {
    fn of_field(field: u32) -> Option<Self> {
        Some(match field {
            5 => DataKind::Gauge,
            7 => DataKind::Sum,
            9 => DataKind::Histogram,
            10 => DataKind::ExponentialHistogram,
            11 => DataKind::Summary,
            _ => return None,
        })
    }

    fn schema(self) -> &'static Schema {
        match self {
            DataKind::Gauge => &schema::GAUGE,
            DataKind::Sum => &schema::SUM,
            DataKind::Histogram => &schema::HISTOGRAM,
            DataKind::ExponentialHistogram => &schema::EXPONENTIAL_HISTOGRAM,
            DataKind::Summary => &schema::SUMMARY,
        }
    }

    /// The schema of its data points (field 1).
    fn point_schema(self) -> &'static Schema {
        match self {
            DataKind::Gauge | DataKind::Sum => &schema::NUMBER_DATA_POINT,
            DataKind::Histogram => &schema::HISTOGRAM_DATA_POINT,
            DataKind::ExponentialHistogram => &schema::EXPONENTIAL_HISTOGRAM_DATA_POINT,
            DataKind::Summary => &schema::SUMMARY_DATA_POINT,
        }
    }
}

/// The fields of a metric's data besides its points.
#[derive(Default)]
struct DataHeader {
    temporality: i32,
    monotonic: bool,
    /// Data points, counted.
    points: usize,
}

/// Reads the fields of a metric's data (every occurrence, merged) but its
/// points, which are counted.
fn data_header(kind: DataKind, segments: &[Reader<'_>]) -> Result<DataHeader, WireError> {
    let has_temporality = matches!(
        kind,
        DataKind::Sum | DataKind::Histogram | DataKind::ExponentialHistogram
    );
    let mut h = DataHeader::default();
    for seg in segments {
        let mut r = *seg;
        while let Some((f, v)) = r.read_field()? {
            match f {
                1 => {
                    r.bytes_of(f, v)?;
                    h.points += 1;
                }
                2 if has_temporality => h.temporality = r.varint_of(f, v)? as i32,
                3 if kind == DataKind::Sum => h.monotonic = r.varint_of(f, v)? != 0,
                _ => r.skip()?,
            }
        }
    }
    Ok(h)
}

/// Calls `f` on a reader of every data point (field 1) of a metric's data;
/// the other fields were read by [`data_header`].
fn for_each_point<'a>(
    kind: DataKind,
    segments: &[Reader<'a>],
    mut f: impl FnMut(Reader<'a>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let name = kind.point_schema().name;
    for seg in segments {
        let mut r = *seg;
        while let Some((field, v)) = r.read_field()? {
            if field == 1 {
                f(r.message(field, v, name)?)?;
            }
        }
    }
    Ok(())
}

/// The value of a number data point's oneof.
#[derive(Clone, Copy)]
enum Number {
    Double(f64),
    Int(i64),
}

/// Scratch buffers reused from point to point.
#[derive(Default)]
struct Scratch<'a> {
    /// Attributes of the point being read.
    attrs: Vec<Attr<'a>>,
    /// Whether their keys are label names in increasing order.
    plain: bool,
    /// The labels of the series being written, encoded.
    series: Vec<u8>,
    /// The labels of the point being written, when its attributes are not
    /// its labels as they are (sanitised, joined or promoted ones).
    labels: Vec<Pair<'a>>,
    bucket_counts: Vec<u64>,
    explicit_bounds: Vec<f64>,
    quantiles: Vec<(f64, f64)>,
}

struct Builder<'a, 'p> {
    out: Translated,
    promote: &'p [String],
    /// Families whose metadata was written (or refused by the budget).
    families: HashSet<String>,
    /// Family names by OTLP name, unit and kind, of the metrics so far.
    families_by_name: HashMap<(&'a str, &'a str, NameKind), Rc<str>>,
    budget: usize,
    scratch: Scratch<'a>,
    /// Point attributes read so far.
    memo: Memo<'a>,
    /// `le` values and the bounds they were written for, kept while
    /// histogram points share their bounds (they usually do).
    les: Vec<String>,
    les_bounds: Vec<f64>,
}

/// Translates a protobuf `ExportMetricsServiceRequest`, read in place.
/// `promote` names the resource attributes copied onto every series of
/// their resource; the encoded body stops growing at `budget` bytes (and
/// `over_budget` is set). Any part of the request that is not valid
/// protobuf of the OTLP messages is an error, translated or not.
pub fn translate(body: &[u8], promote: &[String], budget: usize) -> Result<Translated, WireError> {
    let mut b = Builder {
        out: Translated::default(),
        promote,
        families: HashSet::new(),
        families_by_name: HashMap::new(),
        budget,
        scratch: Scratch::default(),
        memo: Memo::default(),
        les: Vec::new(),
        les_bounds: Vec::new(),
    };
    // The remote write request is about as large as the OTLP one.
    b.out.body.reserve(body.len().min(budget));
    let mut r = Reader::new(body, "ExportMetricsServiceRequest");
    while let Some((f, v)) = r.read_field()? {
        match f {
            1 => b.resource_metrics(r.message(f, v, "ResourceMetrics")?)?,
            _ => r.skip()?,
        }
    }
    Ok(b.out)
}

fn identifying(key: &str) -> bool {
    key == SERVICE_NAME || key == SERVICE_NAMESPACE || key == SERVICE_INSTANCE_ID
}

fn nanos_to_millis(ns: u64) -> i64 {
    (ns / 1_000_000) as i64
}

/// A point's value, or the staleness marker when it has none.
fn value_or_stale(flags: u32, v: f64) -> f64 {
    if flags & NO_RECORDED_VALUE != 0 {
        f64::from_bits(STALE_NAN_BITS)
    } else {
        v
    }
}

impl<'a> Builder<'a, '_> {
    fn is_promoted(&self, key: &str) -> bool {
        self.promote.iter().any(|p| p == key)
    }

    /// One `ResourceMetrics`: its resource first, then its scopes.
    fn resource_metrics(&mut self, rm: Reader<'a>) -> Result<(), WireError> {
        let mut resource = Segments::Absent;
        let mut r = rm;
        while let Some((f, v)) = r.read_field()? {
            match f {
                1 => resource.push(r.message(f, v, schema::RESOURCE.name)?),
                // scope_metrics: below.
                2 => {}
                3 => drop(r.str_of(f, v)?),
                _ => r.skip()?,
            }
        }
        let mut attrs: Vec<Attr<'a>> = Vec::new();
        for seg in resource.as_slice() {
            let mut r = *seg;
            while let Some((f, v)) = r.read_field()? {
                match f {
                    1 => attrs.push(key_value(r.message(f, v, "KeyValue")?)?),
                    2 => drop(r.varint_of(f, v)?),
                    3 => validate(r.message(f, v, "EntityRef")?, &schema::ENTITY_REF)?,
                    _ => r.skip()?,
                }
            }
        }
        let get = |key: &str| {
            attrs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        let job = match (get(SERVICE_NAMESPACE), get(SERVICE_NAME)) {
            (Some(ns), Some(name)) if !ns.is_empty() => Some(Cow::Owned(format!("{ns}/{name}"))),
            (_, name) => name,
        };
        let instance = get(SERVICE_INSTANCE_ID);
        let mut promoted = Vec::new();
        add_attributes(&mut promoted, &mut attrs, |k| !self.is_promoted(k));
        let mut newest: Option<i64> = None;
        let mut r = rm.rewind();
        while let Some((f, v)) = r.read_field()? {
            if f == 2 {
                let sm = r.message(f, v, "ScopeMetrics")?;
                if let Some(t) = self.scope_metrics(sm, &job, &instance, &promoted)? {
                    newest = Some(newest.map_or(t, |n| n.max(t)));
                }
            }
        }
        if let Some(ts) = newest {
            self.target_info(&mut attrs, job.as_deref(), instance.as_deref(), ts);
        }
        Ok(())
    }

    /// One `ScopeMetrics`: its scope first, then its metrics; the newest
    /// timestamp written, if any.
    fn scope_metrics(
        &mut self,
        sm: Reader<'a>,
        job: &Option<Cow<'a, str>>,
        instance: &Option<Cow<'a, str>>,
        promoted: &[Pair<'a>],
    ) -> Result<Option<i64>, WireError> {
        let mut scope = Segments::Absent;
        let mut r = sm;
        while let Some((f, v)) = r.read_field()? {
            match f {
                1 => scope.push(r.message(f, v, schema::INSTRUMENTATION_SCOPE.name)?),
                // metrics: below.
                2 => {}
                3 => drop(r.str_of(f, v)?),
                _ => r.skip()?,
            }
        }
        let (mut scope_name, mut scope_version) = ("", "");
        for seg in scope.as_slice() {
            let mut r = *seg;
            while let Some((f, v)) = r.read_field()? {
                match f {
                    1 => scope_name = r.str_of(f, v)?,
                    2 => scope_version = r.str_of(f, v)?,
                    3 => validate(r.message(f, v, "KeyValue")?, &schema::KEY_VALUE)?,
                    4 => drop(r.varint_of(f, v)?),
                    _ => r.skip()?,
                }
            }
        }
        // Sorted by name.
        let mut fixed: Vec<(&'static str, Cow<'a, str>)> = Vec::with_capacity(4);
        if let Some(i) = instance {
            fixed.push(("instance", i.clone()));
        }
        if let Some(j) = job {
            fixed.push(("job", j.clone()));
        }
        if scope.is_present() {
            fixed.push(("otel_scope_name", Cow::Borrowed(scope_name)));
            fixed.push(("otel_scope_version", Cow::Borrowed(scope_version)));
        }
        let ctx = Context {
            promoted,
            fixed: &fixed,
        };
        let mut newest: Option<i64> = None;
        let mut r = sm.rewind();
        while let Some((f, v)) = r.read_field()? {
            if f == 2 {
                if let Some(t) = self.metric(r.message(f, v, "Metric")?, &ctx)? {
                    newest = Some(newest.map_or(t, |n| n.max(t)));
                }
            }
        }
        Ok(newest)
    }

    /// `target_info` of a resource: its attributes but the identifying and
    /// the promoted ones, with `job` and `instance`; none when that leaves
    /// no attribute, or no `job`/`instance`.
    fn target_info(
        &mut self,
        attrs: &mut [Attr<'a>],
        job: Option<&str>,
        instance: Option<&str>,
        ts: i64,
    ) {
        if !attrs
            .iter()
            .any(|(k, _)| !identifying(k) && !self.is_promoted(k))
        {
            return;
        }
        if job.is_none() && instance.is_none() {
            return;
        }
        let mut labels = Vec::new();
        add_attributes(&mut labels, attrs, |k| {
            identifying(k) || self.is_promoted(k)
        });
        finish(&mut labels);
        let mut fixed: Vec<(&'static str, Cow<'_, str>)> = Vec::with_capacity(2);
        if let Some(i) = instance {
            fixed.push(("instance", Cow::Borrowed(i)));
        }
        if let Some(j) = job {
            fixed.push(("job", Cow::Borrowed(j)));
        }
        let o = Overrides::new(&fixed, &[("__name__", TARGET_INFO)]);
        self.push(&labels, o.as_slice(), ts, 1.0);
        self.metadata(TARGET_INFO, MetricType::Gauge, "Target metadata", "");
    }

    /// Encodes a series of one sample: `base` with `overrides` merged in
    /// (both sorted by name).
    fn push<L: Label>(
        &mut self,
        base: &[L],
        overrides: &[(&str, &str)],
        timestamp: i64,
        value: f64,
    ) {
        if self.out.over_budget {
            return;
        }
        let labels = &mut self.scratch.series;
        labels.clear();
        merged(base, overrides, |n, v| {
            put_label(labels, n.as_bytes(), v.as_bytes())
        });
        let sample_len = 9 + 1 + encoded_len_varint(timestamp as u64);
        let series_len = labels.len() + field_len(sample_len);
        if self.out.body.len() + field_len(series_len) > self.budget {
            self.out.over_budget = true;
            return;
        }
        let buf = &mut self.out.body;
        buf.push(KEY_TIMESERIES);
        put_varint(buf, series_len as u64);
        buf.extend_from_slice(labels);
        buf.push(KEY_SAMPLES);
        put_varint(buf, sample_len as u64);
        buf.push(KEY_SAMPLE_VALUE);
        buf.extend_from_slice(&value.to_le_bytes());
        buf.push(KEY_SAMPLE_TIMESTAMP);
        put_varint(buf, timestamp as u64);
        self.out.samples += 1;
    }

    /// Metadata of a family, the first time it is seen (`unit` as OTLP
    /// gives it).
    fn metadata(&mut self, family: &str, ty: MetricType, help: &str, unit: &str) {
        if self.families.contains(family) {
            return;
        }
        self.families.insert(family.to_owned());
        let md = MetricMetadata {
            r#type: ty as i32,
            metric_family_name: Bytes::copy_from_slice(family.as_bytes()),
            help: Bytes::copy_from_slice(help.as_bytes()),
            unit: Bytes::from(metadata_unit(unit)),
        };
        if self.out.body.len() + field_len(md.encoded_len()) > self.budget {
            self.out.over_budget = true;
            return;
        }
        prost::encoding::message::encode(METADATA_FIELD, &md, &mut self.out.body);
    }

    /// Whether a sum or histogram is cumulative; if not, its points are
    /// refused (Prometheus takes no delta temporality).
    fn cumulative_or_reject(&mut self, kind: &str, name: &str, t: i32, points: usize) -> bool {
        let temporality = match t {
            CUMULATIVE => return true,
            DELTA => "delta",
            _ => "unspecified",
        };
        self.reject(
            points,
            format!(
                "{kind} {name:?} has {temporality} aggregation temporality (only cumulative is accepted)"
            ),
        );
        false
    }

    fn reject(&mut self, points: usize, why: String) {
        if points == 0 {
            return;
        }
        self.out.rejected_points += points as u64;
        self.out.rejections.push(why);
    }

    /// Translates one metric; the newest timestamp written, if any.
    fn metric(
        &mut self,
        mut r: Reader<'a>,
        ctx: &Context<'a, '_>,
    ) -> Result<Option<i64>, WireError> {
        let (mut name, mut description, mut unit) = ("", "", "");
        let mut data: Option<(DataKind, Segments<'a>)> = None;
        while let Some((f, v)) = r.read_field()? {
            match f {
                1 => name = r.str_of(f, v)?,
                2 => description = r.str_of(f, v)?,
                3 => unit = r.str_of(f, v)?,
                12 => validate(r.message(f, v, "KeyValue")?, &schema::KEY_VALUE)?,
                _ => match DataKind::of_field(f) {
                    Some(kind) => {
                        let m = r.message(f, v, kind.schema().name)?;
                        match &mut data {
                            // The same member again: merged.
                            Some((k, segs)) if *k == kind => segs.push(m),
                            // Another member: replaces the first (which
                            // must still be valid).
                            _ => {
                                if let Some((k, segs)) = data.take() {
                                    validate_all(segs.as_slice(), k.schema())?;
                                }
                                data = Some((kind, Segments::one(m)));
                            }
                        }
                    }
                    None => r.skip()?,
                },
            }
        }
        let Some((kind, segs)) = data else {
            return Ok(None);
        };
        let segs = segs.as_slice();
        let h = data_header(kind, segs)?;
        let rejected = match kind {
            DataKind::Sum | DataKind::Histogram => {
                let what = if kind == DataKind::Sum {
                    "sum"
                } else {
                    "histogram"
                };
                !self.cumulative_or_reject(what, name, h.temporality, h.points)
            }
            DataKind::ExponentialHistogram => {
                self.reject(
                    h.points,
                    format!(
                        "exponential histogram {name:?} (Tidemark does not store native histograms yet)"
                    ),
                );
                true
            }
            DataKind::Gauge | DataKind::Summary => false,
        };
        if rejected {
            let schema = kind.point_schema();
            for_each_point(kind, segs, |p| validate(p, schema))?;
            return Ok(None);
        }
        let (name_kind, ty) = match kind {
            DataKind::Gauge => (NameKind::Gauge, MetricType::Gauge),
            DataKind::Sum if h.monotonic => (NameKind::Counter, MetricType::Counter),
            // Prometheus adds `_ratio` to gauges only, not to non-monotonic
            // sums.
            DataKind::Sum => (NameKind::Other, MetricType::Gauge),
            DataKind::Histogram => (NameKind::Other, MetricType::Histogram),
            _ => (NameKind::Other, MetricType::Summary),
        };
        // Metrics of the same name recur (once per resource): their family
        // name is computed, and their metadata written, once.
        let family = match self.families_by_name.get(&(name, unit, name_kind)) {
            Some(family) => Rc::clone(family),
            None => {
                let family: Rc<str> = metric_name(name, unit, name_kind).into();
                self.metadata(&family, ty, description, unit);
                self.families_by_name
                    .insert((name, unit, name_kind), Rc::clone(&family));
                family
            }
        };
        let mut newest = None;
        match kind {
            DataKind::Gauge | DataKind::Sum => {
                let o = Overrides::new(ctx.fixed, &[("__name__", &family)]);
                for_each_point(kind, segs, |p| {
                    newest = newest.max(Some(self.number_point(p, &o, ctx)?));
                    Ok(())
                })?
            }
            DataKind::Histogram => {
                let names = [
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ];
                for_each_point(kind, segs, |p| {
                    newest = newest.max(Some(self.histogram_point(p, &names, ctx)?));
                    Ok(())
                })?
            }
            _ => {
                let names = [
                    family.to_string(),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ];
                for_each_point(kind, segs, |p| {
                    newest = newest.max(Some(self.summary_point(p, &names, ctx)?));
                    Ok(())
                })?
            }
        }
        Ok(newest)
    }

    /// Starts reading a point's attributes.
    fn start_point(&mut self) {
        self.scratch.attrs.clear();
        self.scratch.plain = true;
    }

    /// Reads an attribute into the scratch list.
    fn attribute(&mut self, r: &Reader<'a>, f: u32, v: Value<'a>) -> Result<(), WireError> {
        let m = r.message(f, v, "KeyValue")?;
        let (kv, is_label_name) = match self.memo.get(m.as_bytes()) {
            Some(known) => known,
            None => {
                let kv = key_value(m)?;
                let is_label_name = matches!(label_name(kv.0), Cow::Borrowed(_));
                self.memo.insert(m.as_bytes(), &kv, is_label_name);
                (kv, is_label_name)
            }
        };
        let s = &mut self.scratch;
        // Keys in increasing order that are label names already (the
        // usual case) make labels in order with nothing to join.
        s.plain = s.plain
            && is_label_name
            && s.attrs
                .last()
                .is_none_or(|(prev, _)| cmp_names(prev, kv.0).is_lt());
        s.attrs.push(kv);
        Ok(())
    }

    /// Sorted labels of the point whose attributes were read, without the
    /// metric name and the fixed labels, into the scratch list (taken:
    /// give it back with [`Builder::done`]).
    fn point_labels(&mut self, ctx: &Context<'a, '_>) -> Vec<Pair<'a>> {
        let mut labels = std::mem::take(&mut self.scratch.labels);
        labels.clear();
        add_attributes(&mut labels, &mut self.scratch.attrs, |_| false);
        for label in ctx.promoted {
            if !labels.iter().any(|(n, _)| *n == label.0) {
                labels.push(label.clone());
            }
        }
        finish(&mut labels);
        labels
    }

    fn done(&mut self, labels: Vec<Pair<'a>>) {
        self.scratch.labels = labels;
    }

    /// One gauge or sum point; its timestamp.
    /// (`overrides`: the fixed labels and the metric name.)
    fn number_point(
        &mut self,
        mut r: Reader<'a>,
        overrides: &Overrides<'_>,
        ctx: &Context<'a, '_>,
    ) -> Result<i64, WireError> {
        self.start_point();
        let (mut time, mut flags, mut value) = (0u64, 0u32, None);
        while let Some((f, v)) = r.read_field()? {
            match f {
                7 => self.attribute(&r, f, v)?,
                2 => drop(r.fixed64_of(f, v)?),
                3 => time = r.fixed64_of(f, v)?,
                4 => value = Some(Number::Double(r.double_of(f, v)?)),
                6 => value = Some(Number::Int(r.fixed64_of(f, v)? as i64)),
                5 => validate(r.message(f, v, "Exemplar")?, &schema::EXEMPLAR)?,
                8 => flags = r.varint_of(f, v)? as u32,
                _ => r.skip()?,
            }
        }
        let ts = nanos_to_millis(time);
        let value = match value {
            Some(Number::Double(d)) => d,
            Some(Number::Int(i)) => i as f64,
            None => 0.0,
        };
        let value = value_or_stale(flags, value);
        if self.scratch.plain && ctx.promoted.is_empty() {
            // The attributes are the labels, in order.
            let attrs = std::mem::take(&mut self.scratch.attrs);
            self.push(&attrs, overrides.as_slice(), ts, value);
            self.scratch.attrs = attrs;
        } else {
            let labels = self.point_labels(ctx);
            self.push(&labels, overrides.as_slice(), ts, value);
            self.done(labels);
        }
        Ok(ts)
    }

    /// One histogram point (`names`: `_bucket`, `_sum`, `_count`); its
    /// timestamp.
    fn histogram_point(
        &mut self,
        mut r: Reader<'a>,
        names: &[String; 3],
        ctx: &Context<'a, '_>,
    ) -> Result<i64, WireError> {
        self.start_point();
        self.scratch.bucket_counts.clear();
        self.scratch.explicit_bounds.clear();
        let (mut time, mut flags, mut count, mut sum) = (0u64, 0u32, 0u64, None);
        while let Some((f, v)) = r.read_field()? {
            match f {
                9 => self.attribute(&r, f, v)?,
                2 | 11 | 12 => drop(r.fixed64_of(f, v)?),
                3 => time = r.fixed64_of(f, v)?,
                4 => count = r.fixed64_of(f, v)?,
                5 => sum = Some(r.double_of(f, v)?),
                6 => {
                    let counts = &mut self.scratch.bucket_counts;
                    r.fixed64s(f, v, |x| counts.push(x))?
                }
                7 => {
                    let bounds = &mut self.scratch.explicit_bounds;
                    r.fixed64s(f, v, |x| bounds.push(f64::from_bits(x)))?
                }
                8 => validate(r.message(f, v, "Exemplar")?, &schema::EXEMPLAR)?,
                10 => flags = r.varint_of(f, v)? as u32,
                _ => r.skip()?,
            }
        }
        let ts = nanos_to_millis(time);
        if self.scratch.explicit_bounds != self.les_bounds {
            self.les_bounds.clone_from(&self.scratch.explicit_bounds);
            self.les = self.les_bounds.iter().map(|b| format_float(*b)).collect();
        }
        let [bucket, sum_name, count_name] = names;
        let labels = self.point_labels(ctx);
        if let Some(s) = sum {
            let o = Overrides::new(ctx.fixed, &[("__name__", sum_name.as_str())]);
            self.push(&labels, o.as_slice(), ts, value_or_stale(flags, s));
        }
        let o = Overrides::new(ctx.fixed, &[("__name__", count_name.as_str())]);
        self.push(
            &labels,
            o.as_slice(),
            ts,
            value_or_stale(flags, count as f64),
        );
        let les = std::mem::take(&mut self.les);
        let counts = std::mem::take(&mut self.scratch.bucket_counts);
        let mut cumulative: u64 = 0;
        for (le, n) in les.iter().zip(&counts) {
            cumulative = cumulative.saturating_add(*n);
            let o = Overrides::new(
                ctx.fixed,
                &[("__name__", bucket.as_str()), ("le", le.as_str())],
            );
            self.push(
                &labels,
                o.as_slice(),
                ts,
                value_or_stale(flags, cumulative as f64),
            );
        }
        let o = Overrides::new(ctx.fixed, &[("__name__", bucket.as_str()), ("le", "+Inf")]);
        self.push(
            &labels,
            o.as_slice(),
            ts,
            value_or_stale(flags, count as f64),
        );
        self.les = les;
        self.scratch.bucket_counts = counts;
        self.done(labels);
        Ok(ts)
    }

    /// One summary point (`names`: the family, `_sum`, `_count`); its
    /// timestamp.
    fn summary_point(
        &mut self,
        mut r: Reader<'a>,
        names: &[String; 3],
        ctx: &Context<'a, '_>,
    ) -> Result<i64, WireError> {
        self.start_point();
        self.scratch.quantiles.clear();
        let (mut time, mut flags, mut count, mut sum) = (0u64, 0u32, 0u64, 0.0);
        while let Some((f, v)) = r.read_field()? {
            match f {
                7 => self.attribute(&r, f, v)?,
                2 => drop(r.fixed64_of(f, v)?),
                3 => time = r.fixed64_of(f, v)?,
                4 => count = r.fixed64_of(f, v)?,
                5 => sum = r.double_of(f, v)?,
                6 => {
                    let mut q = r.message(f, v, schema::VALUE_AT_QUANTILE.name)?;
                    let (mut quantile, mut value) = (0.0, 0.0);
                    while let Some((f, v)) = q.read_field()? {
                        match f {
                            1 => quantile = q.double_of(f, v)?,
                            2 => value = q.double_of(f, v)?,
                            _ => q.skip()?,
                        }
                    }
                    self.scratch.quantiles.push((quantile, value));
                }
                8 => flags = r.varint_of(f, v)? as u32,
                _ => r.skip()?,
            }
        }
        let ts = nanos_to_millis(time);
        let [family, sum_name, count_name] = names;
        let labels = self.point_labels(ctx);
        let o = Overrides::new(ctx.fixed, &[("__name__", sum_name.as_str())]);
        self.push(&labels, o.as_slice(), ts, value_or_stale(flags, sum));
        let o = Overrides::new(ctx.fixed, &[("__name__", count_name.as_str())]);
        self.push(
            &labels,
            o.as_slice(),
            ts,
            value_or_stale(flags, count as f64),
        );
        let quantiles = std::mem::take(&mut self.scratch.quantiles);
        for (q, v) in &quantiles {
            let quantile = format_float(*q);
            let o = Overrides::new(
                ctx.fixed,
                &[("__name__", family.as_str()), ("quantile", &quantile)],
            );
            self.push(&labels, o.as_slice(), ts, value_or_stale(flags, *v));
        }
        self.scratch.quantiles = quantiles;
        self.done(labels);
        Ok(ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::oracle;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, summary_data_point::ValueAtQuantile,
        AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
        Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        Summary, SummaryDataPoint,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use tidemark_schemas::prometheus::WriteRequest;

    const NO_LIMIT: usize = usize::MAX;

    /// Translates `req`, encoded, in place, and checks that the old
    /// translator of the decoded request agrees.
    fn translate(
        req: &ExportMetricsServiceRequest,
        promote: &[String],
        budget: usize,
    ) -> Translated {
        let t = super::translate(&req.encode_to_vec(), promote, budget).unwrap();
        assert_eq!(t, oracle::translate(req, promote, budget));
        t
    }

    fn decoded(t: &Translated) -> WriteRequest {
        WriteRequest::decode(&t.body[..]).unwrap()
    }

    pub fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key_strindex: 0,
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
        }
    }

    pub fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "1.2".into(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn number(attrs: Vec<KeyValue>, t_ms: u64, v: f64) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            time_unix_nano: t_ms * 1_000_000 + 123,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn metric(name: &str, unit: &str, data: Data) -> Metric {
        Metric {
            name: name.into(),
            description: format!("{name} help"),
            unit: unit.into(),
            data: Some(data),
            ..Default::default()
        }
    }

    fn sum(points: Vec<NumberDataPoint>, monotonic: bool, t: AggregationTemporality) -> Data {
        Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: t as i32,
            is_monotonic: monotonic,
        })
    }

    /// Series as `name{a="b",...}` strings with their sample.
    fn series(t: &Translated) -> Vec<(String, i64, f64)> {
        let req = decoded(t);
        assert_eq!(req.timeseries.len(), t.samples);
        let mut out: Vec<_> = req
            .timeseries
            .iter()
            .map(|ts| {
                let labels: Vec<String> = ts
                    .labels
                    .iter()
                    .map(|l| {
                        format!(
                            "{}={:?}",
                            String::from_utf8_lossy(&l.name),
                            String::from_utf8_lossy(&l.value)
                        )
                    })
                    .collect();
                assert!(
                    ts.labels.windows(2).all(|w| w[0].name < w[1].name),
                    "sorted and unique: {labels:?}"
                );
                (
                    labels.join(","),
                    ts.samples[0].timestamp,
                    ts.samples[0].value,
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    const SCOPE: &str = "otel_scope_name=\"lib\",otel_scope_version=\"1.2\"";

    #[test]
    fn gauges_counters_and_job_instance() {
        let res = vec![
            kv("service.name", "api"),
            kv("service.namespace", "shop"),
            kv("service.instance.id", "i-1"),
        ];
        let req = request(
            res,
            vec![
                metric(
                    "queue.size",
                    "{items}",
                    Data::Gauge(Gauge {
                        data_points: vec![number(vec![kv("http.method", "GET")], 1000, 3.0)],
                    }),
                ),
                metric(
                    "requests",
                    "{req}",
                    sum(
                        vec![number(vec![], 2000, 7.0)],
                        true,
                        AggregationTemporality::Cumulative,
                    ),
                ),
                metric(
                    "in.flight",
                    "1",
                    sum(
                        vec![number(vec![], 2000, -2.0)],
                        false,
                        AggregationTemporality::Cumulative,
                    ),
                ),
                metric(
                    "ratio.thing",
                    "1",
                    Data::Gauge(Gauge {
                        data_points: vec![number(vec![], 2000, 0.5)],
                    }),
                ),
            ],
        );
        let t = translate(&req, &[], NO_LIMIT);
        assert_eq!(t.rejected_points, 0);
        let got = series(&t);
        let want = vec![
            (format!("__name__=\"in_flight\",instance=\"i-1\",job=\"shop/api\",{SCOPE}"), 2000, -2.0),
            (format!("__name__=\"queue_size\",http_method=\"GET\",instance=\"i-1\",job=\"shop/api\",{SCOPE}"), 1000, 3.0),
            (format!("__name__=\"requests_total\",instance=\"i-1\",job=\"shop/api\",{SCOPE}"), 2000, 7.0),
            // Prometheus moves an existing `ratio` token to the end.
            (format!("__name__=\"thing_ratio\",instance=\"i-1\",job=\"shop/api\",{SCOPE}"), 2000, 0.5),
        ];
        assert_eq!(got, want);
        assert_eq!(t.samples, 4);
        // No attributes besides the identifying ones: no target_info.
        let md: Vec<(String, i32, String)> = decoded(&t)
            .metadata
            .iter()
            .map(|m| {
                (
                    String::from_utf8_lossy(&m.metric_family_name).into_owned(),
                    m.r#type,
                    String::from_utf8_lossy(&m.help).into_owned(),
                )
            })
            .collect();
        assert!(md.contains(&(
            "requests_total".into(),
            MetricType::Counter as i32,
            "requests help".into()
        )));
        assert!(md.contains(&(
            "in_flight".into(),
            MetricType::Gauge as i32,
            "in.flight help".into()
        )));
        assert_eq!(md.len(), 4);
    }

    #[test]
    fn target_info_and_promotion() {
        let res = vec![
            kv("service.name", "api"),
            kv("service.instance.id", "i-1"),
            kv("deployment.environment", "prod"),
            kv("k8s.pod.name", "pod-7"),
        ];
        let req = request(
            res,
            vec![metric(
                "up.time",
                "s",
                Data::Gauge(Gauge {
                    data_points: vec![
                        number(vec![], 1000, 1.0),
                        number(vec![kv("k8s.pod.name", "own")], 5000, 2.0),
                    ],
                }),
            )],
        );
        let t = translate(&req, &["k8s.pod.name".to_string()], NO_LIMIT);
        let got = series(&t);
        assert_eq!(
            got,
            vec![
                ("__name__=\"target_info\",deployment_environment=\"prod\",instance=\"i-1\",job=\"api\"".into(), 5000, 1.0),
                (format!("__name__=\"up_time_seconds\",instance=\"i-1\",job=\"api\",k8s_pod_name=\"own\",{SCOPE}"), 5000, 2.0),
                (format!("__name__=\"up_time_seconds\",instance=\"i-1\",job=\"api\",k8s_pod_name=\"pod-7\",{SCOPE}"), 1000, 1.0),
            ]
        );
        let md = &decoded(&t).metadata;
        assert!(md
            .iter()
            .any(|m| m.metric_family_name.as_ref() == b"up_time_seconds"
                && m.unit.as_ref() == b"seconds"));
        assert!(md
            .iter()
            .any(|m| m.metric_family_name.as_ref() == b"target_info"));
    }

    #[test]
    fn attribute_collisions_and_odd_names() {
        let req = request(
            vec![],
            vec![metric(
                "m",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![number(
                        vec![
                            kv("a.b", "1"),
                            kv("a-b", "2"),
                            kv("2x", "3"),
                            kv("_p", "4"),
                            kv("__q", "5"),
                            kv("empty", ""),
                        ],
                        1,
                        1.0,
                    )],
                }),
            )],
        );
        let t = translate(&req, &[], NO_LIMIT);
        assert_eq!(
            series(&t)[0].0,
            format!("__name__=\"m\",__q=\"5\",a_b=\"2;1\",key_2x=\"3\",key_p=\"4\",{SCOPE}")
        );
    }

    #[test]
    fn histograms_and_summaries() {
        let h = HistogramDataPoint {
            time_unix_nano: 3_000_000_000,
            count: 10,
            sum: Some(12.5),
            bucket_counts: vec![2, 3, 4, 1],
            explicit_bounds: vec![0.005, 1.0, 2.5],
            ..Default::default()
        };
        let s = SummaryDataPoint {
            time_unix_nano: 3_000_000_000,
            count: 4,
            sum: 9.0,
            quantile_values: vec![
                ValueAtQuantile {
                    quantile: 0.5,
                    value: 2.0,
                },
                ValueAtQuantile {
                    quantile: 0.99,
                    value: 4.0,
                },
            ],
            ..Default::default()
        };
        let req = request(
            vec![],
            vec![
                metric(
                    "http.duration",
                    "s",
                    Data::Histogram(Histogram {
                        data_points: vec![h],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    }),
                ),
                metric(
                    "rpc.latency",
                    "ms",
                    Data::Summary(Summary {
                        data_points: vec![s],
                    }),
                ),
            ],
        );
        let t = translate(&req, &[], NO_LIMIT);
        let got: Vec<(String, f64)> = series(&t)
            .into_iter()
            .map(|(l, ts, v)| {
                assert_eq!(ts, 3000);
                (l.replace(&format!(",{SCOPE}"), ""), v)
            })
            .collect();
        let want: Vec<(String, f64)> = vec![
            (
                "__name__=\"http_duration_seconds_bucket\",le=\"+Inf\"".into(),
                10.0,
            ),
            (
                "__name__=\"http_duration_seconds_bucket\",le=\"0.005\"".into(),
                2.0,
            ),
            (
                "__name__=\"http_duration_seconds_bucket\",le=\"1\"".into(),
                5.0,
            ),
            (
                "__name__=\"http_duration_seconds_bucket\",le=\"2.5\"".into(),
                9.0,
            ),
            ("__name__=\"http_duration_seconds_count\"".into(), 10.0),
            ("__name__=\"http_duration_seconds_sum\"".into(), 12.5),
            (
                "__name__=\"rpc_latency_milliseconds\",quantile=\"0.5\"".into(),
                2.0,
            ),
            (
                "__name__=\"rpc_latency_milliseconds\",quantile=\"0.99\"".into(),
                4.0,
            ),
            ("__name__=\"rpc_latency_milliseconds_count\"".into(), 4.0),
            ("__name__=\"rpc_latency_milliseconds_sum\"".into(), 9.0),
        ];
        assert_eq!(got, want);
        let types: Vec<i32> = decoded(&t).metadata.iter().map(|m| m.r#type).collect();
        assert_eq!(
            types,
            vec![MetricType::Histogram as i32, MetricType::Summary as i32]
        );
    }

    #[test]
    fn no_recorded_value_is_stale_nan() {
        let mut p = number(vec![], 1000, 5.0);
        p.flags = 1;
        let h = HistogramDataPoint {
            time_unix_nano: 1_000_000_000,
            count: 1,
            bucket_counts: vec![1, 0],
            explicit_bounds: vec![1.0],
            flags: 1,
            ..Default::default()
        };
        let req = request(
            vec![],
            vec![
                metric(
                    "g",
                    "",
                    Data::Gauge(Gauge {
                        data_points: vec![p],
                    }),
                ),
                metric(
                    "h",
                    "",
                    Data::Histogram(Histogram {
                        data_points: vec![h],
                        aggregation_temporality: 2,
                    }),
                ),
            ],
        );
        let t = translate(&req, &[], NO_LIMIT);
        let req = decoded(&t);
        assert_eq!(
            req.timeseries.len(),
            4,
            "gauge, count and two buckets (no sum)"
        );
        for ts in &req.timeseries {
            assert_eq!(ts.samples[0].value.to_bits(), STALE_NAN_BITS);
        }
    }

    #[test]
    fn delta_and_exponential_are_dropped_and_reported() {
        let exp = ExponentialHistogramDataPoint {
            time_unix_nano: 1,
            count: 3,
            ..Default::default()
        };
        let req = request(
            vec![],
            vec![
                metric(
                    "ok",
                    "",
                    Data::Gauge(Gauge {
                        data_points: vec![number(vec![], 1, 1.0)],
                    }),
                ),
                metric(
                    "d.sum",
                    "",
                    sum(
                        vec![number(vec![], 1, 1.0), number(vec![], 2, 1.0)],
                        true,
                        AggregationTemporality::Delta,
                    ),
                ),
                metric(
                    "u.sum",
                    "",
                    sum(
                        vec![number(vec![], 1, 1.0)],
                        false,
                        AggregationTemporality::Unspecified,
                    ),
                ),
                metric(
                    "d.hist",
                    "",
                    Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint::default()],
                        aggregation_temporality: 1,
                    }),
                ),
                metric(
                    "exp",
                    "s",
                    Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![exp.clone(), exp],
                        aggregation_temporality: 2,
                    }),
                ),
            ],
        );
        let t = translate(&req, &[], NO_LIMIT);
        assert_eq!(decoded(&t).timeseries.len(), 1);
        assert_eq!(t.rejected_points, 6);
        let msg = t.rejection_message();
        assert!(msg.starts_with("dropped 6 data points: "), "{msg}");
        for part in [
            "\"d.sum\" has delta",
            "\"u.sum\" has unspecified",
            "histogram \"d.hist\" has delta",
            "exponential histogram \"exp\"",
        ] {
            assert!(msg.contains(part), "{part} in {msg}");
        }
    }

    #[test]
    fn budget_stops_the_expansion() {
        let h = HistogramDataPoint {
            time_unix_nano: 1,
            count: 1,
            bucket_counts: vec![0; 10_001],
            explicit_bounds: (0..10_000).map(f64::from).collect(),
            ..Default::default()
        };
        let req = request(
            vec![kv("a", &"x".repeat(100))],
            vec![metric(
                "h",
                "",
                Data::Histogram(Histogram {
                    data_points: vec![h],
                    aggregation_temporality: 2,
                }),
            )],
        );
        let input = req.encoded_len();
        let full = translate(&req, &["a".to_string()], NO_LIMIT);
        assert!(!full.over_budget);
        assert!(
            full.body.len() > 10 * input,
            "{} vs {input}",
            full.body.len()
        );
        let capped = translate(&req, &["a".to_string()], 4 * input);
        assert!(capped.over_budget);
        assert!(capped.body.len() <= 4 * input);
    }

    #[test]
    fn value_strings() {
        let v = |x: any_value::Value| {
            let value = Some(AnyValue { value: Some(x) });
            let want = oracle::any_value_string(value.as_ref());
            let kv = KeyValue {
                key: "k".into(),
                value,
                key_strindex: 0,
            }
            .encode_to_vec();
            let got =
                crate::otlp::attributes::key_value(crate::otlp::wire::Reader::new(&kv, "KeyValue"))
                    .unwrap();
            assert_eq!(got.0, "k");
            assert_eq!(got.1, want);
            got.1.into_owned()
        };
        assert_eq!(v(any_value::Value::IntValue(-3)), "-3");
        assert_eq!(v(any_value::Value::BoolValue(true)), "true");
        assert_eq!(v(any_value::Value::DoubleValue(1.5)), "1.5");
        assert_eq!(v(any_value::Value::BytesValue(b"hi!".to_vec())), "aGkh");
        assert_eq!(
            v(any_value::Value::ArrayValue(
                opentelemetry_proto::tonic::common::v1::ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(any_value::Value::StringValue("a".into()))
                        },
                        AnyValue {
                            value: Some(any_value::Value::IntValue(1))
                        }
                    ],
                }
            )),
            "[\"a\",1]"
        );
        assert_eq!(format_float(1e-9), "0.000000001");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
    }
}
