//! Remote write 2.0 (`io.prometheus.write.v2.Request`): checks the symbol
//! table, validates each series as remote write 1.0's are, shards them and
//! encodes version 2 records, each with a symbol table of its own.
//!
//! Tidemark stores float samples and metadata. Native histograms are
//! refused per series (the series' float samples are still written), and
//! exemplars are not stored: the response headers count only what was
//! written.

use bytes::Bytes;
use prost::Message;
use tidemark_ingest_log::{Header, Record};
use tidemark_schemas::prometheus::{Label, TimeSeries};
use prost::encoding::{decode_varint, encode_key, encode_varint, WireType};
use tidemark_schemas::record::{encode_version, VERSION_2, VERSION_HEADER};
use tidemark_schemas::write_v2;

use crate::config::DistributorConfig;
use crate::distributor::Prepared;
use crate::error::PushError;
use crate::records::{body_budget, field_len};
use crate::scan::{label_refs, put_len_field, Fields, LabelRef, Value, WireError};
use crate::shard::{partition_of, series_hash};
use crate::validation::{
    check_labels_utf8, check_metadata, is_valid_label_name, is_valid_metric_name, needs_normalizing, oldest_allowed, series_string, validate_or_report,
    with_error_id, ValidationError,
};

/// Upper bound of one encoded sample (value, timestamp, start timestamp,
/// tags and length).
const MAX_SAMPLE_LEN: usize = 40;

/// A partition's version 2 records being filled: series encoded as they
/// come, symbols mapped from the request's table to the record's by index,
/// without hashing strings.
#[derive(Default)]
struct Builder {
    symbols: Vec<String>,
    /// Record symbol of each request symbol, `u32::MAX` when not in the
    /// record yet.
    remap: Vec<u32>,
    /// Encoded `timeseries` fields (field 5) of the record.
    body: Vec<u8>,
    size: usize,
    done: Vec<Record>,
    /// Reused buffers for one series' references and message.
    refs: Vec<u8>,
    msg: Vec<u8>,
}

/// An encoded `Sample` message, as read from the request or re-encoded.
trait EncodedSample {
    fn bytes(&self) -> &[u8];
}

impl EncodedSample for (&[u8], i64) {
    fn bytes(&self) -> &[u8] {
        self.0
    }
}

impl EncodedSample for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl Builder {
    fn new(request_symbols: usize) -> Self {
        Builder {
            remap: vec![u32::MAX; request_symbols],
            ..Builder::default()
        }
    }

    /// The record's reference of request symbol `r` (in range: the request
    /// was checked).
    fn symbol(&mut self, request: &[&str], r: u32) -> u32 {
        if self.symbols.is_empty() {
            self.symbols.push(String::new());
            self.size += 2;
        }
        let Some(s) = request.get(r as usize).filter(|s| !s.is_empty()) else {
            return 0;
        };
        let slot = &mut self.remap[r as usize];
        if *slot == u32::MAX {
            *slot = self.symbols.len() as u32;
            self.symbols.push((*s).to_owned());
            self.size += field_len(s.len());
        }
        *slot
    }

    fn flush(&mut self, tenant: &str) {
        if self.body.is_empty() {
            return;
        }
        // Series first, then the symbol table: protobuf fields may come in
        // any order, and the body is not copied again.
        let mut value = std::mem::take(&mut self.body);
        for s in &self.symbols {
            put_len_field(&mut value, 4, s.as_bytes());
        }
        self.symbols.clear();
        self.remap.fill(u32::MAX);
        self.size = 0;
        self.done.push(Record {
            key: Bytes::copy_from_slice(tenant.as_bytes()),
            value: Bytes::from(value),
            headers: vec![Header {
                key: VERSION_HEADER.to_owned(),
                value: Bytes::copy_from_slice(&encode_version(VERSION_2)),
            }],
        });
    }

    /// Adds a series (label pairs as request symbol references, samples as
    /// encoded `Sample` messages), starting a new record when this one
    /// would exceed `budget`. The caller splits series larger than a record.
    fn add<S: EncodedSample>(
        &mut self,
        tenant: &str,
        request: &[&str],
        pairs: &[(u32, u32)],
        samples: &[S],
        metadata: Option<(i32, u32, u32)>,
        budget: usize,
    ) {
        let len = |r: u32| request.get(r as usize).map_or(0, |s| s.len());
        let strings: usize = pairs
            .iter()
            .map(|&(n, v)| field_len(len(n)) + field_len(len(v)))
            .sum::<usize>()
            + metadata.map_or(0, |(_, h, u)| field_len(len(h)) + field_len(len(u)));
        let estimate = strings + pairs.len() * 10 + samples.len() * MAX_SAMPLE_LEN + 32;
        if self.size > 0 && self.size + estimate > budget {
            self.flush(tenant);
        }
        let mut refs = std::mem::take(&mut self.refs);
        refs.clear();
        for &(n, v) in pairs {
            let n = self.symbol(request, n);
            let v = self.symbol(request, v);
            encode_varint(u64::from(n), &mut refs);
            encode_varint(u64::from(v), &mut refs);
        }
        let mut md = std::mem::take(&mut self.msg);
        md.clear();
        if let Some((t, help, unit)) = metadata {
            if t != 0 {
                encode_key(1, WireType::Varint, &mut md);
                encode_varint(t as u64, &mut md);
            }
            let help = self.symbol(request, help);
            if help != 0 {
                encode_key(3, WireType::Varint, &mut md);
                encode_varint(u64::from(help), &mut md);
            }
            let unit = self.symbol(request, unit);
            if unit != 0 {
                encode_key(4, WireType::Varint, &mut md);
                encode_varint(u64::from(unit), &mut md);
            }
        }
        // The series message straight into the record body: its length
        // first, then its fields.
        let mut len = samples.iter().map(|s| field_len(s.bytes().len())).sum::<usize>();
        if !refs.is_empty() {
            len += field_len(refs.len());
        }
        if metadata.is_some() {
            len += field_len(md.len());
        }
        encode_key(5, WireType::LengthDelimited, &mut self.body);
        encode_varint(len as u64, &mut self.body);
        if !refs.is_empty() {
            put_len_field(&mut self.body, 1, &refs);
        }
        for s in samples {
            put_len_field(&mut self.body, 2, s.bytes());
        }
        if metadata.is_some() {
            put_len_field(&mut self.body, 5, &md);
        }
        self.size += field_len(len);
        let msg = md;
        self.refs = refs;
        self.msg = msg;
    }
}

/// A symbol is a valid label name within the length limit.
const NAME_OK: u8 = 1;
/// A symbol is a valid metric name.
const METRIC_OK: u8 = 2;
/// A symbol is within the label value length limit.
const VALUE_OK: u8 = 4;

/// What label checks need to know of each symbol, worked out once per
/// request instead of once per label.
fn symbol_facts(symbols: &[&str], limits: &crate::config::ValidationLimits) -> Vec<u8> {
    symbols
        .iter()
        .map(|s| {
            let b = s.as_bytes();
            let mut f = 0;
            if is_valid_label_name(b) && b.len() <= limits.max_label_name_length {
                f |= NAME_OK;
            }
            if is_valid_metric_name(b) {
                f |= METRIC_OK;
            }
            if b.len() <= limits.max_label_value_length {
                f |= VALUE_OK;
            }
            f
        })
        .collect()
}

/// Whether sorted, non-empty labels pass every label check, from the
/// symbols' facts; `false` sends the series through [`check_labels_utf8`]
/// for the error.
fn labels_pass(pairs: &[(u32, u32)], symbols: &[&str], facts: &[u8], limits: &crate::config::ValidationLimits) -> bool {
    if pairs.len() > limits.max_label_names_per_series {
        return false;
    }
    let fact = |r: u32| facts.get(r as usize).copied().unwrap_or(0);
    let text = |r: u32| symbols.get(r as usize).copied().unwrap_or("");
    let mut named = false;
    for (i, &(n, v)) in pairs.iter().enumerate() {
        if fact(n) & NAME_OK == 0 || fact(v) & VALUE_OK == 0 {
            return false;
        }
        if i > 0 && text(pairs[i - 1].0) == text(n) {
            return false;
        }
        if text(n) == "__name__" {
            if fact(v) & METRIC_OK == 0 {
                return false;
            }
            named = true;
        }
    }
    named
}

/// What the distributor needs of one remote write 2.0 series, read in
/// place.
#[derive(Default)]
struct SeriesV2<'a> {
    refs: Vec<u32>,
    /// Encoded `Sample` messages, with their timestamps.
    samples: Vec<(&'a [u8], i64)>,
    histograms: usize,
    metadata: Option<(i32, u32, u32)>,
}

fn wire(what: &str) -> PushError {
    PushError::BadProtobuf(what.to_owned())
}

/// Pushes the varints of a packed (or single) `repeated uint32` field.
fn read_refs(value: Value<'_>, out: &mut Vec<u32>) -> Result<(), PushError> {
    match value {
        Value::Varint(v) => out.push(v as u32),
        Value::Len(mut buf) => {
            while !buf.is_empty() {
                let v = decode_varint(&mut buf).map_err(|e| wire(&format!("bad label reference: {e}")))?;
                out.push(v as u32);
            }
        }
        _ => return Err(wire("label references have the wrong wire type")),
    }
    Ok(())
}

/// Reads a series in place, checking every field as prost would and every
/// symbol reference as `check_symbols_v2` does.
fn read_series_v2<'a>(buf: &'a [u8], symbols: usize, view: &mut SeriesV2<'a>) -> Result<(), PushError> {
    view.refs.clear();
    view.samples.clear();
    view.histograms = 0;
    view.metadata = None;
    let bad = |e: WireError| PushError::BadProtobuf(e.0);
    let outside = |r: u32, what: &str| {
        PushError::BadProtobuf(format!(
            "{what} reference {r} is outside the symbol table (size {symbols})"
        ))
    };
    for f in Fields::new(buf) {
        match f.map_err(bad)? {
            (1, v, _) => read_refs(v, &mut view.refs)?,
            (2, Value::Len(s), _) => {
                let mut t = 0i64;
                for f in Fields::new(s) {
                    match f.map_err(bad)? {
                        (1, Value::Fixed64(_), _) | (3, Value::Varint(_), _) => {}
                        (2, Value::Varint(v), _) => t = v as i64,
                        (1..=3, _, _) => return Err(wire("sample field has the wrong wire type")),
                        _ => {}
                    }
                }
                view.samples.push((s, t));
            }
            (3, Value::Len(h), _) => {
                write_v2::Histogram::decode(h).map_err(|e| wire(&format!("bad histogram: {e}")))?;
                view.histograms += 1;
            }
            (4, Value::Len(e), _) => {
                let mut refs = Vec::new();
                for f in Fields::new(e) {
                    match f.map_err(bad)? {
                        (1, v, _) => read_refs(v, &mut refs)?,
                        (2, Value::Fixed64(_), _) | (3, Value::Varint(_), _) => {}
                        (1..=3, _, _) => return Err(wire("exemplar field has the wrong wire type")),
                        _ => {}
                    }
                }
                if refs.len() & 1 == 1 {
                    return Err(wire("odd number of exemplar label references"));
                }
                if let Some(&r) = refs.iter().find(|&&r| r as usize >= symbols) {
                    return Err(outside(r, "exemplar label"));
                }
            }
            (5, Value::Len(m), _) => {
                let (mut t, mut help, mut unit) = (0i32, 0u32, 0u32);
                for f in Fields::new(m) {
                    match f.map_err(bad)? {
                        (1, Value::Varint(v), _) => t = v as i32,
                        (3, Value::Varint(v), _) => help = v as u32,
                        (4, Value::Varint(v), _) => unit = v as u32,
                        (1 | 3 | 4, _, _) => return Err(wire("metadata field has the wrong wire type")),
                        _ => {}
                    }
                }
                for (r, what) in [(help, "help"), (unit, "unit")] {
                    if r as usize >= symbols {
                        return Err(outside(r, what));
                    }
                }
                view.metadata = Some((t, help, unit));
            }
            (2..=5, _, _) => return Err(wire("series field has the wrong wire type")),
            _ => {}
        }
    }
    if view.refs.len() & 1 == 1 {
        return Err(wire(&format!("odd number of label references ({})", view.refs.len())));
    }
    if let Some(&r) = view.refs.iter().find(|&&r| r as usize >= symbols) {
        return Err(outside(r, "label"));
    }
    Ok(())
}

/// What a remote write 2.0 request wrote, for its response headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WrittenV2 {
    pub samples: usize,
    pub histograms: usize,
    pub exemplars: usize,
}

/// Validates, shards and encodes a decompressed remote write 2.0 request
/// (no I/O). A request whose symbol references are broken is refused as a
/// whole; invalid series are reported and the others written.
pub fn prepare_v2(
    tenant: &str,
    body: &[u8],
    partitions: i32,
    cfg: &DistributorConfig,
    now_ms: i64,
) -> Result<Prepared, PushError> {
    prepare_v2_with(tenant, body, partitions, cfg, &cfg.limits, now_ms)
}

/// [`prepare_v2`] with the tenant's validation limits.
///
/// Reads the request in place: the symbol table as string slices of the
/// body, each series' references, samples and metadata where they stand.
/// A series that needs no fixing (labels sorted with no empty value, no
/// native histograms, every sample inside the accepted time window) is
/// checked on those views and re-encoded into its partition's record with
/// the record's symbol references, its samples copied as they are. Any
/// other series is decoded and validated as remote write 1.0's are.
pub fn prepare_v2_with(
    tenant: &str,
    body: &[u8],
    partitions: i32,
    cfg: &DistributorConfig,
    limits: &crate::config::ValidationLimits,
    now_ms: i64,
) -> Result<Prepared, PushError> {
    let mut symbols: Vec<&str> = Vec::new();
    let mut ranges = Vec::new();
    for f in Fields::new(body) {
        let (field, value, range) = f.map_err(|e| PushError::BadProtobuf(e.0))?;
        match (field, value) {
            (4, Value::Len(s)) => symbols.push(
                std::str::from_utf8(s).map_err(|_| wire("a symbol is not valid UTF-8"))?,
            ),
            (5, Value::Len(s)) => ranges.push(range.end - s.len()..range.end),
            (4 | 5, _) => return Err(wire("request field has the wrong wire type")),
            _ => {}
        }
    }
    if symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err(wire("symbols[0] must be the empty string"));
    }
    let sym = |i: u32| symbols.get(i as usize).copied().unwrap_or("");
    let facts = symbol_facts(&symbols, limits);
    let budget = body_budget(tenant, cfg.max_record_size_bytes);
    let newest_allowed = now_ms.saturating_add(limits.creation_grace_period.as_millis() as i64);
    let oldest = oldest_allowed(limits, now_ms);
    let mut builders: Vec<Builder> = (0..partitions).map(|_| Builder::new(symbols.len())).collect();
    let mut prepared = Prepared::default();
    let mut scratch = Vec::new();
    let mut view = SeriesV2::default();
    let mut labels: Vec<LabelRef<'_>> = Vec::new();
    let mut pairs: Vec<(u32, u32)> = Vec::new();

    for range in ranges {
        let raw = &body[range];
        read_series_v2(raw, symbols.len(), &mut view)?;
        pairs.clear();
        pairs.extend(view.refs.chunks_exact(2).map(|p| (p[0], p[1])));
        labels.clear();
        labels.extend(pairs.iter().map(|&(n, v)| LabelRef {
            name: sym(n).as_bytes(),
            value: sym(v).as_bytes(),
        }));
        let fast = view.histograms == 0
            && !needs_normalizing(&labels)
            && view.samples.iter().all(|&(_, t)| t <= newest_allowed && t >= oldest);
        if !fast {
            let series = write_v2::TimeSeries::decode(raw).map_err(|e| wire(&e.to_string()))?;
            slow_series(&series, &symbols, tenant, partitions, limits, now_ms, budget, &mut builders, &mut prepared, &mut scratch);
            continue;
        }
        if !labels_pass(&pairs, &symbols, &facts, limits) {
            if let Err(e) = check_labels_utf8(&labels, limits, view.samples.len()) {
                prepared.errors.push(e);
                continue;
            }
        }
        let name = labels.iter().find(|l| l.name == b"__name__").map_or(&b""[..], |l| l.value);
        let metadata = checked_metadata(view.metadata, name, &sym, limits, &mut prepared);
        if view.samples.is_empty() && metadata.is_none() {
            continue;
        }
        let p = partition_of(series_hash(tenant, &labels, &mut scratch), partitions) as usize;
        prepared.outcome.series += 1;
        prepared.outcome.samples += view.samples.len();
        add_split(&mut builders[p], tenant, &symbols, &pairs, &view.samples, metadata, budget);
    }
    for (p, mut b) in builders.into_iter().enumerate() {
        b.flush(tenant);
        if !b.done.is_empty() {
            prepared.records.push((p as i32, b.done));
        }
    }
    Ok(prepared)
}

/// The series' metadata if it says anything and passes the checks; a
/// refusal is reported.
fn checked_metadata<'s>(
    metadata: Option<(i32, u32, u32)>,
    name: &[u8],
    sym: &impl Fn(u32) -> &'s str,
    limits: &crate::config::ValidationLimits,
    prepared: &mut Prepared,
) -> Option<(i32, u32, u32)> {
    let (t, help, unit) = metadata.filter(|&(t, h, u)| t != 0 || h != 0 || u != 0)?;
    match check_metadata(name, sym(help).as_bytes(), sym(unit).as_bytes(), limits) {
        Ok(()) => Some((t, help, unit)),
        Err(e) => {
            prepared.errors.push(e);
            None
        }
    }
}

/// Adds a series to a builder, in several records when it is larger than
/// one.
fn add_split<S: EncodedSample>(
    b: &mut Builder,
    tenant: &str,
    symbols: &[&str],
    pairs: &[(u32, u32)],
    samples: &[S],
    metadata: Option<(i32, u32, u32)>,
    budget: usize,
) {
    let labels_len: usize = pairs
        .iter()
        .map(|&(n, v)| {
            let len = |r: u32| symbols.get(r as usize).map_or(0, |s| s.len());
            field_len(len(n)) + field_len(len(v)) + 10
        })
        .sum();
    let per_part = (budget.saturating_sub(labels_len + 256) / MAX_SAMPLE_LEN).max(1);
    if samples.len() <= per_part {
        b.add(tenant, symbols, pairs, samples, metadata, budget);
    } else {
        for (i, part) in samples.chunks(per_part).enumerate() {
            b.flush(tenant);
            let md = if i == 0 { metadata } else { None };
            b.add(tenant, symbols, pairs, part, md, budget);
        }
    }
}

/// A series that needs fixing or refusing: decoded, validated as remote
/// write 1.0's are, written with what validation kept.
#[allow(clippy::too_many_arguments)]
fn slow_series(
    series: &write_v2::TimeSeries,
    symbols: &[&str],
    tenant: &str,
    partitions: i32,
    limits: &crate::config::ValidationLimits,
    now_ms: i64,
    budget: usize,
    builders: &mut [Builder],
    prepared: &mut Prepared,
    scratch: &mut Vec<u8>,
) {
    let sym = |i: u32| symbols.get(i as usize).copied().unwrap_or("");
    // Labels as validation leaves them: no empty values, sorted by name;
    // the record refers to exactly these.
    let mut pairs: Vec<(u32, u32)> = series
        .labels_refs
        .chunks_exact(2)
        .map(|p| (p[0], p[1]))
        .filter(|&(_, v)| !sym(v).is_empty())
        .collect();
    if !pairs.windows(2).all(|w| sym(w[0].0) <= sym(w[1].0)) {
        pairs.sort_by(|a, b| sym(a.0).cmp(sym(b.0)));
    }
    let mut ts = TimeSeries {
        labels: pairs
            .iter()
            .map(|&(n, v)| Label {
                name: Bytes::copy_from_slice(sym(n).as_bytes()),
                value: Bytes::copy_from_slice(sym(v).as_bytes()),
            })
            .collect(),
        samples: series
            .samples
            .iter()
            .map(|s| tidemark_schemas::prometheus::Sample {
                value: s.value,
                timestamp: s.timestamp,
            })
            .collect(),
        exemplars: Vec::new(),
    };
    if !series.histograms.is_empty() {
        let n = series.histograms.len();
        let reason = "native_histogram_unsupported";
        prepared.errors.push(ValidationError {
            reason,
            message: with_error_id(
                reason,
                format!(
                    "native histograms are not supported yet: {n} histogram sample(s) refused for series {}",
                    series_string(&label_refs(&ts.labels))
                ),
            ),
            discarded_samples: n,
        });
    }
    if !validate_or_report(&mut ts, limits, now_ms, &mut prepared.errors) {
        return;
    }
    // The samples validation kept (in order), with their start timestamps.
    let mut kept = ts.samples.iter().peekable();
    let samples: Vec<Vec<u8>> = series
        .samples
        .iter()
        .filter(|s| {
            let keep = kept.peek().is_some_and(|k| {
                k.timestamp == s.timestamp && k.value.to_bits() == s.value.to_bits()
            });
            if keep {
                kept.next();
            }
            keep
        })
        .map(|s| s.encode_to_vec())
        .collect();
    let name = ts
        .labels
        .iter()
        .find(|l| l.name.as_ref() == b"__name__")
        .map_or(&b""[..], |l| l.value.as_ref());
    let metadata = checked_metadata(
        series.metadata.as_ref().map(|m| (m.r#type, m.help_ref, m.unit_ref)),
        name,
        &sym,
        limits,
        prepared,
    );
    if samples.is_empty() && metadata.is_none() {
        return;
    }
    let p = partition_of(series_hash(tenant, &label_refs(&ts.labels), scratch), partitions) as usize;
    prepared.outcome.series += 1;
    prepared.outcome.samples += samples.len();
    add_split(&mut builders[p], tenant, symbols, &pairs, &samples, metadata, budget);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_schemas::record::RecordBody;
    use tidemark_schemas::write_v2::metadata::MetricType;

    const NOW: i64 = 1_700_000_000_000;

    /// The per-symbol shortcut agrees with the label checks it skips.
    #[test]
    fn symbol_facts_agree_with_check_labels() {
        let long = "x".repeat(3000);
        let symbols: Vec<&str> = vec![
            "", "__name__", "up", "job", "a", "b", "9bad", "bad-name", "1metric", "x:y", &long, "__name__",
        ];
        let mut limits = crate::config::ValidationLimits::default();
        limits.max_label_names_per_series = 3;
        let facts = symbol_facts(&symbols, &limits);
        let cases: Vec<Vec<(u32, u32)>> = vec![
            vec![(1, 2)],
            vec![(1, 2), (3, 4)],
            vec![(1, 2), (3, 4), (4, 5)],
            vec![(3, 4)],
            vec![(1, 8)],
            vec![(1, 9)],
            vec![(1, 2), (6, 4)],
            vec![(1, 2), (7, 4)],
            vec![(1, 2), (3, 10)],
            vec![(1, 2), (10, 4)],
            vec![(1, 2), (11, 2)],
            vec![(1, 2), (3, 4), (4, 4), (5, 4)],
        ];
        for pairs in cases {
            let labels: Vec<LabelRef<'_>> = pairs
                .iter()
                .map(|&(n, v)| LabelRef {
                    name: symbols[n as usize].as_bytes(),
                    value: symbols[v as usize].as_bytes(),
                })
                .collect();
            let checked = check_labels_utf8(&labels, &limits, 1).is_ok();
            assert_eq!(labels_pass(&pairs, &symbols, &facts, &limits), checked, "{pairs:?}");
        }
    }

    fn cfg() -> DistributorConfig {
        DistributorConfig::default()
    }

    fn request(symbols: &[&str], series: Vec<write_v2::TimeSeries>) -> Vec<u8> {
        write_v2::Request {
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            timeseries: series,
        }
        .encode_to_vec()
    }

    fn series(refs: &[u32], samples: &[(i64, f64, i64)]) -> write_v2::TimeSeries {
        write_v2::TimeSeries {
            labels_refs: refs.to_vec(),
            samples: samples
                .iter()
                .map(|&(timestamp, value, start_timestamp)| write_v2::Sample {
                    value,
                    timestamp,
                    start_timestamp,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// A series as labels `name=value` and samples `(t, v)`.
    type Decoded = (Vec<String>, Vec<(i64, f64)>);

    fn decode_all(p: &Prepared) -> Vec<Decoded> {
        let mut out: Vec<Decoded> = Vec::new();
        for (_, recs) in &p.records {
            for r in recs {
                assert_eq!(r.headers[0].value.as_ref(), &[0, 0, 0, 2]);
                let body = RecordBody::decode(VERSION_2, r.value.clone()).unwrap();
                for ts in body.into_timeseries() {
                    out.push((
                        ts.labels
                            .iter()
                            .map(|l| {
                                format!(
                                    "{}={}",
                                    String::from_utf8_lossy(&l.name),
                                    String::from_utf8_lossy(&l.value)
                                )
                            })
                            .collect(),
                        ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
                    ));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn writes_series_with_their_own_symbol_tables() {
        let body = request(
            &["", "__name__", "up", "job", "api", "db", "Up or down", ""],
            vec![
                series(&[1, 2, 3, 4], &[(NOW, 1.0, 0)]),
                {
                    let mut s = series(&[1, 2, 3, 5], &[(NOW, 0.0, NOW - 60_000)]);
                    s.metadata = Some(write_v2::Metadata {
                        r#type: MetricType::Gauge as i32,
                        help_ref: 6,
                        unit_ref: 0,
                    });
                    s
                },
            ],
        );
        let p = prepare_v2("t", &body, 4, &cfg(), NOW).unwrap();
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.outcome.samples, 2);
        let got = decode_all(&p);
        assert_eq!(
            got,
            vec![
                (vec!["__name__=up".into(), "job=api".into()], vec![(NOW, 1.0)]),
                (vec!["__name__=up".into(), "job=db".into()], vec![(NOW, 0.0)]),
            ]
        );
        // Start timestamps and metadata travel in the record.
        let mut found_st = false;
        let mut found_md = false;
        for (_, recs) in &p.records {
            for r in recs {
                let rec = tidemark_schemas::ingest::WriteRecordV2::decode(r.value.clone()).unwrap();
                assert_eq!(rec.symbols[0], "");
                for ts in &rec.timeseries {
                    found_st |= ts.samples.iter().any(|s| s.start_timestamp == NOW - 60_000);
                    if let Some(m) = &ts.metadata {
                        found_md |= rec.symbols[m.help_ref as usize] == "Up or down";
                    }
                }
            }
        }
        assert!(found_st && found_md);
    }

    #[test]
    fn broken_symbol_tables_are_refused_whole() {
        // Out of range.
        let body = request(&["", "__name__"], vec![series(&[1, 9], &[(NOW, 1.0, 0)])]);
        let err = prepare_v2("t", &body, 1, &cfg(), NOW).unwrap_err();
        assert!(matches!(err, PushError::BadProtobuf(ref m) if m.contains("outside")), "{err}");
        // symbols[0] not empty.
        let body = request(&["x", "__name__", "up"], vec![series(&[1, 2], &[(NOW, 1.0, 0)])]);
        assert!(prepare_v2("t", &body, 1, &cfg(), NOW).is_err());
        // Odd number of label references.
        let body = request(&["", "__name__", "up"], vec![series(&[1, 2, 1], &[(NOW, 1.0, 0)])]);
        assert!(prepare_v2("t", &body, 1, &cfg(), NOW).is_err());
        // Not protobuf.
        assert!(prepare_v2("t", b"\xff\xff\xff", 1, &cfg(), NOW).is_err());
    }

    #[test]
    fn invalid_series_are_reported_and_the_rest_written() {
        let mut with_histogram = series(&[1, 2], &[(NOW, 1.0, 0)]);
        with_histogram.histograms.push(write_v2::Histogram::default());
        let body = request(
            &["", "__name__", "up", "no name", "x"],
            vec![
                series(&[3, 4], &[(NOW, 1.0, 0)]),
                with_histogram,
                series(&[1, 2], &[(NOW + 3_600_000, 1.0, 0)]),
            ],
        );
        let p = prepare_v2("t", &body, 2, &cfg(), NOW).unwrap();
        let reasons: Vec<&str> = p.errors.iter().map(|e| e.reason).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons.contains(&"native_histogram_unsupported"));
        assert!(reasons.contains(&"too_far_in_future"));
        // The histogram series' float sample is written.
        assert_eq!(p.outcome.samples, 1);
        assert_eq!(decode_all(&p).len(), 1);
    }

    #[test]
    fn large_series_are_split_across_records() {
        let samples: Vec<(i64, f64, i64)> = (0..50_000).map(|i| (NOW - i, i as f64, 0)).collect();
        let mut samples = samples;
        samples.sort_by_key(|s| s.0);
        let body = request(&["", "__name__", "big"], vec![series(&[1, 2], &samples)]);
        let cfg = DistributorConfig {
            max_record_size_bytes: 100_000,
            ..DistributorConfig::default()
        };
        let p = prepare_v2("t", &body, 1, &cfg, NOW).unwrap();
        let recs = &p.records[0].1;
        assert!(recs.len() > 1);
        assert!(recs.iter().all(|r| r.value.len() <= 100_000));
        let total: usize = decode_all(&p).iter().map(|s| s.1.len()).sum();
        assert_eq!(total, 50_000);
    }
}
