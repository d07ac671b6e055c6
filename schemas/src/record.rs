//! Ingest-log record format.
//!
//! A record is `key = tenant ID`, a `Version` header holding a big-endian
//! `u32`, and a body whose layout the version names. Every version ever
//! written stays decodable: add a variant to [`RecordBody`] for a new one,
//! never change an old one.

use bytes::Bytes;
use prost::Message;

use crate::ingest::WriteRecordV1;

/// Name of the record header that carries the body's format version.
pub const VERSION_HEADER: &str = "Version";

/// Version 1: [`WriteRecordV1`], remote write 1.0 layout.
pub const VERSION_1: u32 = 1;

/// The version producers write today.
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
}

impl RecordBody {
    pub fn decode(version: u32, body: Bytes) -> Result<Self, RecordError> {
        match version {
            VERSION_1 => WriteRecordV1::decode(body)
                .map(RecordBody::V1)
                .map_err(|source| RecordError::Decode { version, source }),
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
        }
    }
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
