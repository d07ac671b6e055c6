//! Ingest-log record format.
//!
//! A record is `key = tenant ID`, a `Version` header holding a big-endian
//! `u32`, and a body whose layout the version names. Every version ever
//! written stays decodable: add a variant to [`RecordBody`] for a new one,
//! never change an old one.

use bytes::Bytes;
use prost::Message;

use crate::ingest::{WriteRecordV1, WriteRecordV2};
use crate::prometheus::{metric_metadata, Label, MetricMetadata, Sample, TimeSeries};

/// Name of the record header that carries the body's format version.
pub const VERSION_HEADER: &str = "Version";

/// Version 1: [`WriteRecordV1`], remote write 1.0 layout.
pub const VERSION_1: u32 = 1;

/// Version 2: [`WriteRecordV2`], remote write 2.0 layout (symbolized).
pub const VERSION_2: u32 = 2;

/// The version producers write for remote write 1.0 requests.
pub const CURRENT_VERSION: u32 = VERSION_1;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record has no {VERSION_HEADER} header")]
    MissingVersion,
    #[error("record {VERSION_HEADER} header must be 4 bytes, got {0}")]
    BadVersionHeader(usize),
    #[error("unsupported record format version {0}")]
    UnsupportedVersion(u32),
    #[error("record key is not a valid tenant ID: {0}")]
    BadTenant(String),
    #[error("cannot decode record body (version {version}): {source}")]
    Decode {
        version: u32,
        #[source]
        source: prost::DecodeError,
    },
    #[error("invalid record body (version {version}): {reason}")]
    Invalid { version: u32, reason: String },
}

/// Encodes a version for the `Version` header.
pub fn encode_version(version: u32) -> [u8; 4] {
    version.to_be_bytes()
}

/// Decodes the `Version` header's value.
pub fn decode_version(header: Option<&[u8]>) -> Result<u32, RecordError> {
    let raw = header.ok_or(RecordError::MissingVersion)?;
    let bytes: [u8; 4] = raw
        .try_into()
        .map_err(|_| RecordError::BadVersionHeader(raw.len()))?;
    Ok(u32::from_be_bytes(bytes))
}

/// A decoded record body, one variant per format version.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordBody {
    V1(WriteRecordV1),
    V2(WriteRecordV2),
}

impl RecordBody {
    pub fn decode(version: u32, body: Bytes) -> Result<Self, RecordError> {
        match version {
            VERSION_1 => WriteRecordV1::decode(body)
                .map(RecordBody::V1)
                .map_err(|source| RecordError::Decode { version, source }),
            VERSION_2 => {
                let r = WriteRecordV2::decode(body)
                    .map_err(|source| RecordError::Decode { version, source })?;
                check_symbols_v2(&r.symbols, &r.timeseries)
                    .map_err(|reason| RecordError::Invalid { version, reason })?;
                Ok(RecordBody::V2(r))
            }
            other => Err(RecordError::UnsupportedVersion(other)),
        }
    }

    /// The remote-write series the record carries, whatever its version.
    pub fn into_timeseries(self) -> Vec<crate::prometheus::TimeSeries> {
        self.into_parts().0
    }

    /// Series and metric metadata, whatever the version.
    pub fn into_parts(
        self,
    ) -> (
        Vec<crate::prometheus::TimeSeries>,
        Vec<crate::prometheus::MetricMetadata>,
    ) {
        match self {
            RecordBody::V1(r) => (r.timeseries, r.metadata),
            RecordBody::V2(r) => v2_parts(r),
        }
    }
}

/// Checks that every reference of remote write 2.0 series points into the
/// symbol table, that `symbols[0]` is the empty string and that labels come
/// in (name, value) pairs; the message names the first problem.
pub fn check_symbols_v2(
    symbols: &[String],
    series: &[crate::write_v2::TimeSeries],
) -> Result<(), String> {
    if symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err("symbols[0] must be the empty string".to_owned());
    }
    let check = |r: u32, what: &str| {
        if (r as usize) < symbols.len() {
            Ok(())
        } else {
            Err(format!(
                "{what} reference {r} is outside the symbol table (size {})",
                symbols.len()
            ))
        }
    };
    for ts in series {
        if ts.labels_refs.len() % 2 != 0 {
            return Err(format!(
                "odd number of label references ({})",
                ts.labels_refs.len()
            ));
        }
        for r in &ts.labels_refs {
            check(*r, "label")?;
        }
        if let Some(m) = &ts.metadata {
            check(m.help_ref, "help")?;
            check(m.unit_ref, "unit")?;
        }
        for e in &ts.exemplars {
            if e.labels_refs.len() % 2 != 0 {
                return Err("odd number of exemplar label references".to_owned());
            }
            for r in &e.labels_refs {
                check(*r, "exemplar label")?;
            }
        }
    }
    Ok(())
}

/// A version 2 body as remote write 1.0 series and metadata (references
/// resolved; checked by [`check_symbols_v2`] when decoded).
fn v2_parts(r: WriteRecordV2) -> (Vec<TimeSeries>, Vec<MetricMetadata>) {
    let sym = |i: u32| -> &str { r.symbols.get(i as usize).map_or("", String::as_str) };
    let mut series = Vec::with_capacity(r.timeseries.len());
    let mut metadata = Vec::new();
    for ts in &r.timeseries {
        let labels: Vec<Label> = ts
            .labels_refs
            .chunks_exact(2)
            .map(|p| Label {
                name: Bytes::copy_from_slice(sym(p[0]).as_bytes()),
                value: Bytes::copy_from_slice(sym(p[1]).as_bytes()),
            })
            .collect();
        if let Some(m) = &ts.metadata {
            let name = labels
                .iter()
                .find(|l| l.name.as_ref() == b"__name__")
                .map(|l| l.value.clone());
            let known = m.r#type != 0 || m.help_ref != 0 || m.unit_ref != 0;
            if let (Some(name), true) = (name, known) {
                metadata.push(MetricMetadata {
                    // The two enums number the types alike.
                    r#type: metric_metadata::MetricType::try_from(m.r#type)
                        .unwrap_or(metric_metadata::MetricType::Unknown)
                        .into(),
                    metric_family_name: name,
                    help: Bytes::copy_from_slice(sym(m.help_ref).as_bytes()),
                    unit: Bytes::copy_from_slice(sym(m.unit_ref).as_bytes()),
                });
            }
        }
        series.push(TimeSeries {
            labels,
            samples: ts
                .samples
                .iter()
                .map(|s| Sample {
                    value: s.value,
                    timestamp: s.timestamp,
                })
                .collect(),
            exemplars: Vec::new(),
        });
    }
    (series, metadata)
}

/// Decodes a record key into the tenant ID.
pub fn decode_tenant(key: &[u8]) -> Result<&str, RecordError> {
    std::str::from_utf8(key)
        .map_err(|_| RecordError::BadTenant(String::from_utf8_lossy(key).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::{Label, Sample, TimeSeries, WriteRequest};

    #[test]
    fn version_header_round_trip() {
        let h = encode_version(CURRENT_VERSION);
        assert_eq!(h, [0, 0, 0, 1]);
        assert_eq!(decode_version(Some(&h)).unwrap(), 1);
        assert!(matches!(
            decode_version(None),
            Err(RecordError::MissingVersion)
        ));
        assert!(matches!(
            decode_version(Some(&[1, 2])),
            Err(RecordError::BadVersionHeader(2))
        ));
    }

    #[test]
    fn unknown_version_is_an_error() {
        let err = RecordBody::decode(99, Bytes::new()).unwrap_err();
        assert!(matches!(err, RecordError::UnsupportedVersion(99)));
    }

    #[test]
    fn v1_body_is_a_remote_write_request() {
        let rec = WriteRecordV1 {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1000,
                }],
                exemplars: vec![],
            }],
            metadata: vec![],
        };
        let buf = rec.encode_to_vec();
        let as_rw = WriteRequest::decode(buf.as_slice()).unwrap();
        assert_eq!(as_rw.timeseries, rec.timeseries);
        let body = RecordBody::decode(VERSION_1, Bytes::from(buf)).unwrap();
        assert_eq!(body.into_timeseries(), rec.timeseries);
    }
}

#[cfg(test)]
mod v2_tests {
    use super::*;
    use crate::write_v2::{self, metadata::MetricType};

    fn v2_series(refs: &[u32], samples: &[(i64, f64)]) -> write_v2::TimeSeries {
        write_v2::TimeSeries {
            labels_refs: refs.to_vec(),
            samples: samples
                .iter()
                .map(|&(t, v)| write_v2::Sample {
                    value: v,
                    timestamp: t,
                    start_timestamp: 0,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn v2_body_is_a_remote_write_2_request_and_resolves() {
        let symbols: Vec<String> = ["", "__name__", "up", "job", "api", "Whether up", "seconds"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut ts = v2_series(&[1, 2, 3, 4], &[(1000, 1.0), (2000, 0.0)]);
        ts.metadata = Some(write_v2::Metadata {
            r#type: MetricType::Gauge as i32,
            help_ref: 5,
            unit_ref: 6,
        });
        let rec = WriteRecordV2 {
            symbols: symbols.clone(),
            timeseries: vec![ts],
        };
        let buf = rec.encode_to_vec();
        let as_rw2 = write_v2::Request::decode(buf.as_slice()).unwrap();
        assert_eq!(as_rw2.symbols, symbols);
        let body = RecordBody::decode(VERSION_2, Bytes::from(buf)).unwrap();
        let (series, md) = body.into_parts();
        assert_eq!(series.len(), 1);
        let l: Vec<(&[u8], &[u8])> = series[0]
            .labels
            .iter()
            .map(|l| (l.name.as_ref(), l.value.as_ref()))
            .collect();
        assert_eq!(l, vec![(&b"__name__"[..], &b"up"[..]), (b"job", b"api")]);
        assert_eq!(series[0].samples.len(), 2);
        assert_eq!(md.len(), 1);
        assert_eq!(md[0].metric_family_name.as_ref(), b"up");
        assert_eq!(md[0].help.as_ref(), b"Whether up");
        assert_eq!(md[0].unit.as_ref(), b"seconds");
        assert_eq!(md[0].r#type, metric_metadata::MetricType::Gauge as i32);
    }

    #[test]
    fn v2_bad_references_are_refused() {
        let symbols = vec![String::new(), "a".to_owned()];
        let out_of_range = vec![v2_series(&[1, 7], &[])];
        assert!(check_symbols_v2(&symbols, &out_of_range)
            .unwrap_err()
            .contains("outside the symbol table"));
        let odd = vec![v2_series(&[1], &[])];
        assert!(check_symbols_v2(&symbols, &odd).unwrap_err().contains("odd"));
        let not_empty_first = vec!["x".to_owned()];
        assert!(check_symbols_v2(&not_empty_first, &[])
            .unwrap_err()
            .contains("symbols[0]"));
        let rec = WriteRecordV2 {
            symbols,
            timeseries: out_of_range,
        };
        let err = RecordBody::decode(VERSION_2, Bytes::from(rec.encode_to_vec())).unwrap_err();
        assert!(matches!(err, RecordError::Invalid { version: 2, .. }), "{err}");
    }
}
