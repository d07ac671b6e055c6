//! The translator as it was before requests were read in place: prost
//! decodes the request into the generated types, which are translated.
//! Kept for tests only, as the oracle the in-place translation
//! ([`super::translate`]) must agree with byte for byte.

use std::borrow::Cow;
use std::collections::HashSet;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, HistogramDataPoint, Metric,
    NumberDataPoint, SummaryDataPoint,
};
use prost::encoding::encoded_len_varint;
use prost::Message;
use tidemark_schemas::prometheus::{metric_metadata::MetricType, MetricMetadata};

use super::names::{label_name, metadata_unit, metric_name, NameKind};
use super::translate::{format_float, Translated, STALE_NAN_BITS};

const NO_RECORDED_VALUE: u32 = 1;
const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";
const TARGET_INFO: &str = "target_info";

/// The string form of an attribute value, as OpenTelemetry's collector
/// renders it (`AsString`): scalars as text, bytes as base64, arrays and
/// maps as JSON.
pub fn any_value_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => format_float(*d),
        Some(any_value::Value::BytesValue(b)) => super::json::base64_encode(b),
        // Only OTLP profiles use the string table.
        Some(any_value::Value::StringValueStrindex(_)) => String::new(),
        Some(other) => any_value_json(Some(other)).to_string(),
    }
}

fn any_value_json(v: Option<&any_value::Value>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        None | Some(any_value::Value::StringValueStrindex(_)) => J::Null,
        Some(any_value::Value::StringValue(s)) => J::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => J::Bool(*b),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(format_float(*d)), J::Number)
        }
        Some(any_value::Value::BytesValue(b)) => J::String(super::json::base64_encode(b)),
        Some(any_value::Value::ArrayValue(a)) => J::Array(
            a.values
                .iter()
                .map(|v| any_value_json(v.value.as_ref()))
                .collect(),
        ),
        Some(any_value::Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        any_value_json(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect(),
        ),
    }
}

/// A label, borrowed from the request where it can be.
type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// An attribute value as a label value: string values borrowed, others
/// rendered by [`any_value_string`].
fn any_value_str(v: Option<&AnyValue>) -> Cow<'_, str> {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Cow::Borrowed(s),
        _ => Cow::Owned(any_value_string(v)),
    }
}

/// Labels being assembled, unsorted, by name.
#[derive(Default)]
struct LabelSet<'a>(Vec<Pair<'a>>);

impl<'a> LabelSet<'a> {
    fn find(&mut self, name: &str) -> Option<&mut Cow<'a, str>> {
        self.0.iter_mut().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Adds a label; a second attribute mapping to the same name appends
    /// its value after `;`, as Prometheus does.
    fn join(&mut self, name: Cow<'a, str>, value: Cow<'a, str>) {
        match self.find(&name) {
            Some(v) => {
                let v = v.to_mut();
                v.push(';');
                v.push_str(&value);
            }
            None => self.0.push((name, value)),
        }
    }

    fn set_if_absent(&mut self, label: &Pair<'a>) {
        if self.find(&label.0).is_none() {
            self.0.push(label.clone());
        }
    }

    fn set(&mut self, name: &'static str, value: Cow<'a, str>) {
        match self.find(name) {
            Some(v) => *v = value,
            None => self.0.push((Cow::Borrowed(name), value)),
        }
    }

    /// Labels sorted by name with empty values dropped.
    fn finish(mut self) -> Vec<Pair<'a>> {
        self.0.retain(|(_, v)| !v.is_empty());
        self.0.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.0
    }
}

/// `attrs` sanitised into `set`, in attribute-key order so that colliding
/// names join their values deterministically.
fn add_attributes<'a>(set: &mut LabelSet<'a>, attrs: &'a [KeyValue], skip: impl Fn(&str) -> bool) {
    let sorted = attrs.windows(2).all(|w| w[0].key <= w[1].key);
    if sorted {
        for kv in attrs.iter().filter(|kv| !skip(&kv.key)) {
            set.join(label_name(&kv.key), any_value_str(kv.value.as_ref()));
        }
        return;
    }
    let mut by_key: Vec<&KeyValue> = attrs.iter().filter(|kv| !skip(&kv.key)).collect();
    by_key.sort_by(|a, b| a.key.cmp(&b.key));
    for kv in by_key {
        set.join(label_name(&kv.key), any_value_str(kv.value.as_ref()));
    }
}

/// Calls `f` on `base` and `extra` merged by name (both sorted), `extra`
/// winning on equal names; empty extra values are left out.
fn merged(base: &[Pair<'_>], extra: &[(&str, &str)], mut f: impl FnMut(&str, &str)) {
    let (mut i, mut j) = (0, 0);
    loop {
        match (base.get(i), extra.get(j)) {
            (Some(b), Some(e)) => match b.0.as_ref().cmp(e.0) {
                std::cmp::Ordering::Less => {
                    f(&b.0, &b.1);
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
                f(&b.0, &b.1);
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

// Keys of the fields written: (field number << 3) | wire type.
const KEY_TIMESERIES: u8 = 0x0a; // WriteRequest.timeseries, TimeSeries.labels, Label.name
const KEY_SAMPLES: u8 = 0x12; // TimeSeries.samples, Label.value
const KEY_SAMPLE_VALUE: u8 = 0x09; // Sample.value (fixed64)
const KEY_SAMPLE_TIMESTAMP: u8 = 0x10; // Sample.timestamp (varint)
const METADATA_FIELD: u32 = 3;

/// Labels every point of one resource and scope gets.
struct Context<'a> {
    /// Promoted resource attributes (points' own attributes win).
    promoted: &'a [Pair<'a>],
    /// `job`, `instance`, `otel_scope_*` (these win over points' attributes).
    fixed: Vec<(&'static str, Cow<'a, str>)>,
}

struct Builder<'a> {
    out: Translated,
    promote: &'a [String],
    families: HashSet<String>,
    budget: usize,
}

/// Translates an export request. `promote` names the resource attributes
/// copied onto every series of their resource; the encoded body stops
/// growing at `budget` bytes (and `over_budget` is set).
pub fn translate(
    req: &ExportMetricsServiceRequest,
    promote: &[String],
    budget: usize,
) -> Translated {
    let mut b = Builder {
        out: Translated::default(),
        promote,
        families: HashSet::new(),
        budget,
    };
    for rm in &req.resource_metrics {
        let no_attrs = Vec::new();
        let attrs = rm.resource.as_ref().map_or(&no_attrs, |r| &r.attributes);
        let get = |key: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| any_value_string(kv.value.as_ref()))
        };
        let job = match (get(SERVICE_NAMESPACE), get(SERVICE_NAME)) {
            (Some(ns), Some(name)) if !ns.is_empty() => Some(format!("{ns}/{name}")),
            (_, name) => name,
        };
        let instance = get(SERVICE_INSTANCE_ID);
        let mut promoted = LabelSet::default();
        add_attributes(&mut promoted, attrs, |k| !b.is_promoted(k));
        let promoted = promoted.0;
        let mut newest: Option<i64> = None;
        for sm in &rm.scope_metrics {
            let mut fixed = Vec::with_capacity(4);
            if let Some(j) = &job {
                fixed.push(("job", Cow::Borrowed(j.as_str())));
            }
            if let Some(i) = &instance {
                fixed.push(("instance", Cow::Borrowed(i.as_str())));
            }
            if let Some(scope) = &sm.scope {
                fixed.push(("otel_scope_name", Cow::Borrowed(scope.name.as_str())));
                fixed.push(("otel_scope_version", Cow::Borrowed(scope.version.as_str())));
            }
            let ctx = Context {
                promoted: &promoted,
                fixed,
            };
            for m in &sm.metrics {
                if let Some(t) = b.metric(m, &ctx) {
                    newest = Some(newest.map_or(t, |n| n.max(t)));
                }
            }
        }
        if let Some(ts) = newest {
            b.target_info(attrs, job.as_deref(), instance.as_deref(), ts);
        }
    }
    b.out
}

fn identifying(key: &str) -> bool {
    key == SERVICE_NAME || key == SERVICE_NAMESPACE || key == SERVICE_INSTANCE_ID
}

impl Builder<'_> {
    fn is_promoted(&self, key: &str) -> bool {
        self.promote.iter().any(|p| p == key)
    }

    /// `target_info` of a resource: its attributes but the identifying and
    /// the promoted ones, with `job` and `instance`; none when that leaves
    /// no attribute, or no `job`/`instance`.
    fn target_info(
        &mut self,
        attrs: &[KeyValue],
        job: Option<&str>,
        instance: Option<&str>,
        ts: i64,
    ) {
        if !attrs
            .iter()
            .any(|kv| !identifying(&kv.key) && !self.is_promoted(&kv.key))
        {
            return;
        }
        if job.is_none() && instance.is_none() {
            return;
        }
        let mut set = LabelSet::default();
        add_attributes(&mut set, attrs, |k| identifying(k) || self.is_promoted(k));
        if let Some(j) = job {
            set.set("job", Cow::Borrowed(j));
        }
        if let Some(i) = instance {
            set.set("instance", Cow::Borrowed(i));
        }
        let labels = set.finish();
        self.push(&labels, &[("__name__", TARGET_INFO)], ts, 1.0);
        self.metadata(TARGET_INFO, MetricType::Gauge, "Target metadata", "");
    }

    /// Encodes a series of one sample: `base` with `extra` merged in (both
    /// sorted by name).
    fn push(&mut self, base: &[Pair<'_>], extra: &[(&str, &str)], timestamp: i64, value: f64) {
        if self.out.over_budget {
            return;
        }
        let mut labels_len = 0;
        merged(base, extra, |n, v| {
            labels_len += field_len(field_len(n.len()) + field_len(v.len()));
        });
        let sample_len = 9 + 1 + encoded_len_varint(timestamp as u64);
        let series_len = labels_len + field_len(sample_len);
        if self.out.body.len() + field_len(series_len) > self.budget {
            self.out.over_budget = true;
            return;
        }
        let buf = &mut self.out.body;
        buf.push(KEY_TIMESERIES);
        put_varint(buf, series_len as u64);
        merged(base, extra, |n, v| {
            buf.push(KEY_TIMESERIES);
            put_varint(buf, (field_len(n.len()) + field_len(v.len())) as u64);
            put_field(buf, KEY_TIMESERIES, n.as_bytes());
            put_field(buf, KEY_SAMPLES, v.as_bytes());
        });
        buf.push(KEY_SAMPLES);
        put_varint(buf, sample_len as u64);
        buf.push(KEY_SAMPLE_VALUE);
        buf.extend_from_slice(&value.to_le_bytes());
        buf.push(KEY_SAMPLE_TIMESTAMP);
        put_varint(buf, timestamp as u64);
        self.out.samples += 1;
    }

    fn metadata(&mut self, family: &str, ty: MetricType, help: &str, unit: &str) {
        if self.families.contains(family) {
            return;
        }
        self.families.insert(family.to_owned());
        let md = MetricMetadata {
            r#type: ty as i32,
            metric_family_name: Bytes::copy_from_slice(family.as_bytes()),
            help: Bytes::copy_from_slice(help.as_bytes()),
            unit: Bytes::copy_from_slice(unit.as_bytes()),
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
        let temporality = match AggregationTemporality::try_from(t) {
            Ok(AggregationTemporality::Cumulative) => return true,
            Ok(AggregationTemporality::Delta) => "delta",
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

    /// Sorted labels of one point, without the metric name.
    fn point_labels<'p>(&self, attrs: &'p [KeyValue], ctx: &Context<'p>) -> Vec<Pair<'p>> {
        let mut set = LabelSet(Vec::with_capacity(
            attrs.len() + ctx.promoted.len() + ctx.fixed.len() + 2,
        ));
        add_attributes(&mut set, attrs, |_| false);
        for label in ctx.promoted {
            set.set_if_absent(label);
        }
        for (n, v) in &ctx.fixed {
            set.set(n, v.clone());
        }
        set.finish()
    }

    /// Translates one metric; the newest timestamp written, if any.
    fn metric(&mut self, m: &Metric, ctx: &Context) -> Option<i64> {
        match &m.data {
            None => None,
            Some(Data::Gauge(g)) => {
                let name = metric_name(&m.name, &m.unit, NameKind::Gauge);
                self.metadata(
                    &name,
                    MetricType::Gauge,
                    &m.description,
                    &metadata_unit(&m.unit),
                );
                self.numbers(&g.data_points, &name, ctx)
            }
            Some(Data::Sum(s)) => {
                if !self.cumulative_or_reject("sum", &m.name, s.aggregation_temporality, s.data_points.len()) {
                    return None;
                }
                let (kind, ty) = if s.is_monotonic {
                    (NameKind::Counter, MetricType::Counter)
                } else {
                    // Prometheus adds `_ratio` to gauges only, not to
                    // non-monotonic sums.
                    (NameKind::Other, MetricType::Gauge)
                };
                let name = metric_name(&m.name, &m.unit, kind);
                self.metadata(&name, ty, &m.description, &metadata_unit(&m.unit));
                self.numbers(&s.data_points, &name, ctx)
            }
            Some(Data::Histogram(h)) => {
                if !self.cumulative_or_reject("histogram", &m.name, h.aggregation_temporality, h.data_points.len()) {
                    return None;
                }
                let name = metric_name(&m.name, &m.unit, NameKind::Other);
                self.metadata(
                    &name,
                    MetricType::Histogram,
                    &m.description,
                    &metadata_unit(&m.unit),
                );
                self.histograms(&h.data_points, &name, ctx)
            }
            Some(Data::ExponentialHistogram(h)) => {
                self.reject(
                    h.data_points.len(),
                    format!(
                        "exponential histogram {:?} (Tidemark does not store native histograms yet)",
                        m.name
                    ),
                );
                None
            }
            Some(Data::Summary(s)) => {
                let name = metric_name(&m.name, &m.unit, NameKind::Other);
                self.metadata(
                    &name,
                    MetricType::Summary,
                    &m.description,
                    &metadata_unit(&m.unit),
                );
                self.summaries(&s.data_points, &name, ctx)
            }
        }
    }

    fn numbers(&mut self, points: &[NumberDataPoint], name: &str, ctx: &Context) -> Option<i64> {
        let mut newest = None;
        for p in points {
            let ts = nanos_to_millis(p.time_unix_nano);
            let value = if p.flags & NO_RECORDED_VALUE != 0 {
                f64::from_bits(STALE_NAN_BITS)
            } else {
                match p.value {
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    None => 0.0,
                }
            };
            let base = self.point_labels(&p.attributes, ctx);
            self.push(&base, &[("__name__", name)], ts, value);
            newest = newest.max(Some(ts));
        }
        newest
    }

    fn histograms(
        &mut self,
        points: &[HistogramDataPoint],
        name: &str,
        ctx: &Context,
    ) -> Option<i64> {
        let bucket = format!("{name}_bucket");
        let sum = format!("{name}_sum");
        let count = format!("{name}_count");
        // `le` values, kept while points share their bounds (they usually do).
        let mut bounds: &[f64] = &[];
        let mut les: Vec<String> = Vec::new();
        let mut newest = None;
        for p in points {
            let ts = nanos_to_millis(p.time_unix_nano);
            let stale = p.flags & NO_RECORDED_VALUE != 0;
            let val = |v: f64| {
                if stale {
                    f64::from_bits(STALE_NAN_BITS)
                } else {
                    v
                }
            };
            if p.explicit_bounds != bounds {
                bounds = &p.explicit_bounds;
                les = bounds.iter().map(|b| format_float(*b)).collect();
            }
            let base = self.point_labels(&p.attributes, ctx);
            if let Some(s) = p.sum {
                self.push(&base, &[("__name__", &sum)], ts, val(s));
            }
            self.push(&base, &[("__name__", &count)], ts, val(p.count as f64));
            let mut cumulative: u64 = 0;
            for (le, n) in les.iter().zip(&p.bucket_counts) {
                cumulative = cumulative.saturating_add(*n);
                self.push(
                    &base,
                    &[("__name__", &bucket), ("le", le)],
                    ts,
                    val(cumulative as f64),
                );
            }
            self.push(
                &base,
                &[("__name__", &bucket), ("le", "+Inf")],
                ts,
                val(p.count as f64),
            );
            newest = newest.max(Some(ts));
        }
        newest
    }

    fn summaries(&mut self, points: &[SummaryDataPoint], name: &str, ctx: &Context) -> Option<i64> {
        let sum = format!("{name}_sum");
        let count = format!("{name}_count");
        let mut newest = None;
        for p in points {
            let ts = nanos_to_millis(p.time_unix_nano);
            let stale = p.flags & NO_RECORDED_VALUE != 0;
            let val = |v: f64| {
                if stale {
                    f64::from_bits(STALE_NAN_BITS)
                } else {
                    v
                }
            };
            let base = self.point_labels(&p.attributes, ctx);
            self.push(&base, &[("__name__", &sum)], ts, val(p.sum));
            self.push(&base, &[("__name__", &count)], ts, val(p.count as f64));
            for q in &p.quantile_values {
                let quantile = format_float(q.quantile);
                self.push(
                    &base,
                    &[("__name__", name), ("quantile", &quantile)],
                    ts,
                    val(q.value),
                );
            }
            newest = newest.max(Some(ts));
        }
        newest
    }
}

fn nanos_to_millis(ns: u64) -> i64 {
    (ns / 1_000_000) as i64
}

