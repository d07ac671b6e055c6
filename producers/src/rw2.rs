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
use tidemark_schemas::ingest::WriteRecordV2;
use tidemark_schemas::prometheus::{Label, TimeSeries};
use tidemark_schemas::record::{check_symbols_v2, encode_version, VERSION_2, VERSION_HEADER};
use tidemark_schemas::write_v2;

use crate::config::DistributorConfig;
use crate::distributor::Prepared;
use crate::error::PushError;
use crate::records::{body_budget, field_len};
use crate::scan::label_refs;
use crate::shard::{partition_of, series_hash};
use crate::validation::{
    check_metadata, series_string, validate_or_report, with_error_id, ValidationError,
};

/// Upper bound of one encoded sample (value, timestamp, start timestamp,
/// tags and length).
const MAX_SAMPLE_LEN: usize = 40;

/// A partition's version 2 records being filled. Symbols are mapped from
/// the request's table to the record's by index, without hashing strings.
#[derive(Default)]
struct Builder {
    symbols: Vec<String>,
    /// Record symbol of each request symbol, `u32::MAX` when not in the
    /// record yet.
    remap: Vec<u32>,
    series: Vec<write_v2::TimeSeries>,
    size: usize,
    done: Vec<Record>,
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
    fn symbol(&mut self, request: &[String], r: u32) -> u32 {
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
            self.symbols.push(s.clone());
            self.size += field_len(s.len());
        }
        *slot
    }

    fn flush(&mut self, tenant: &str) {
        if self.series.is_empty() {
            return;
        }
        let body = WriteRecordV2 {
            symbols: std::mem::take(&mut self.symbols),
            timeseries: std::mem::take(&mut self.series),
        };
        self.remap.fill(u32::MAX);
        self.size = 0;
        self.done.push(Record {
            key: Bytes::copy_from_slice(tenant.as_bytes()),
            value: Bytes::from(body.encode_to_vec()),
            headers: vec![Header {
                key: VERSION_HEADER.to_owned(),
                value: Bytes::copy_from_slice(&encode_version(VERSION_2)),
            }],
        });
    }

    /// Adds a series (label pairs as request symbol references), starting a
    /// new record when this one would exceed `budget`. The caller splits
    /// series larger than a record.
    fn add(
        &mut self,
        tenant: &str,
        request: &[String],
        pairs: &[(u32, u32)],
        samples: Vec<write_v2::Sample>,
        metadata: Option<(i32, u32, u32)>,
        budget: usize,
    ) {
        let len = |r: u32| request.get(r as usize).map_or(0, String::len);
        let strings: usize = pairs
            .iter()
            .map(|&(n, v)| field_len(len(n)) + field_len(len(v)))
            .sum::<usize>()
            + metadata.map_or(0, |(_, h, u)| field_len(len(h)) + field_len(len(u)));
        let estimate = strings + pairs.len() * 10 + samples.len() * MAX_SAMPLE_LEN + 32;
        if self.size > 0 && self.size + estimate > budget {
            self.flush(tenant);
        }
        let mut refs = Vec::with_capacity(pairs.len() * 2);
        for &(n, v) in pairs {
            refs.push(self.symbol(request, n));
            refs.push(self.symbol(request, v));
        }
        let metadata = metadata.map(|(t, help, unit)| write_v2::Metadata {
            r#type: t,
            help_ref: self.symbol(request, help),
            unit_ref: self.symbol(request, unit),
        });
        let ts = write_v2::TimeSeries {
            labels_refs: refs,
            samples,
            histograms: Vec::new(),
            exemplars: Vec::new(),
            metadata,
        };
        self.size += field_len(ts.encoded_len());
        self.series.push(ts);
    }
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
pub fn prepare_v2_with(
    tenant: &str,
    body: &[u8],
    partitions: i32,
    cfg: &DistributorConfig,
    limits: &crate::config::ValidationLimits,
    now_ms: i64,
) -> Result<Prepared, PushError> {
    let req = write_v2::Request::decode(body).map_err(|e| PushError::BadProtobuf(e.to_string()))?;
    check_symbols_v2(&req.symbols, &req.timeseries).map_err(PushError::BadProtobuf)?;
    let sym = |i: u32| req.symbols.get(i as usize).map_or("", String::as_str);
    // Each symbol once as shared bytes: labels of the validated series are
    // reference-counted views, not copies.
    let sym_bytes: Vec<Bytes> = req
        .symbols
        .iter()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect();
    let budget = body_budget(tenant, cfg.max_record_size_bytes);
    let mut builders: Vec<Builder> = (0..partitions)
        .map(|_| Builder::new(req.symbols.len()))
        .collect();
    let mut prepared = Prepared::default();
    let mut scratch = Vec::new();

    for series in &req.timeseries {
        // Labels as validation leaves them: no empty values, sorted by
        // name; the record refers to exactly these.
        let mut pairs: Vec<(u32, u32)> = series
            .labels_refs
            .chunks_exact(2)
            .map(|p| (p[0], p[1]))
            .filter(|&(_, v)| !sym(v).is_empty())
            .collect();
        if !pairs.windows(2).all(|w| sym(w[0].0) <= sym(w[1].0)) {
            pairs.sort_by(|a, b| sym(a.0).cmp(sym(b.0)));
        }
        let bytes_of = |r: u32| sym_bytes.get(r as usize).cloned().unwrap_or_default();
        let mut ts = TimeSeries {
            labels: pairs
                .iter()
                .map(|&(n, v)| Label {
                    name: bytes_of(n),
                    value: bytes_of(v),
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
            continue;
        }
        // The samples validation kept (in order), with their start
        // timestamps.
        let mut kept = ts.samples.iter().peekable();
        let samples: Vec<write_v2::Sample> = series
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
            .copied()
            .collect();
        let metadata = series
            .metadata
            .as_ref()
            .filter(|m| m.r#type != 0 || m.help_ref != 0 || m.unit_ref != 0)
            .map(|m| (m.r#type, m.help_ref, m.unit_ref))
            .filter(|&(_, help, unit)| {
                let name = ts
                    .labels
                    .iter()
                    .find(|l| l.name.as_ref() == b"__name__")
                    .map_or(&b""[..], |l| l.value.as_ref());
                match check_metadata(name, sym(help).as_bytes(), sym(unit).as_bytes(), limits) {
                    Ok(()) => true,
                    Err(e) => {
                        prepared.errors.push(e);
                        false
                    }
                }
            });
        if samples.is_empty() && metadata.is_none() {
            continue;
        }
        let p = partition_of(
            series_hash(tenant, &label_refs(&ts.labels), &mut scratch),
            partitions,
        ) as usize;
        prepared.outcome.series += 1;
        prepared.outcome.samples += samples.len();
        let b = &mut builders[p];
        let labels_len: usize = pairs
            .iter()
            .map(|&(n, v)| field_len(sym(n).len()) + field_len(sym(v).len()) + 10)
            .sum();
        let per_part = (budget.saturating_sub(labels_len + 256) / MAX_SAMPLE_LEN).max(1);
        if samples.len() <= per_part {
            b.add(tenant, &req.symbols, &pairs, samples, metadata, budget);
        } else {
            for (i, part) in samples.chunks(per_part).enumerate() {
                b.flush(tenant);
                let md = if i == 0 { metadata } else { None };
                b.add(tenant, &req.symbols, &pairs, part.to_vec(), md, budget);
            }
        }
    }
    for (p, mut b) in builders.into_iter().enumerate() {
        b.flush(tenant);
        if !b.done.is_empty() {
            prepared.records.push((p as i32, b.done));
        }
    }
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_schemas::record::RecordBody;
    use tidemark_schemas::write_v2::metadata::MetricType;

    const NOW: i64 = 1_700_000_000_000;

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
                let rec = WriteRecordV2::decode(r.value.clone()).unwrap();
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
