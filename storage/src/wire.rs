//! Conversions between storage types and the internal ingester API's
//! protobuf messages (`tidemark.ingester`), shared by the querier's client
//! and the partition consumers' server.

use crate::chunk::{decode_all, XorAppender};
use crate::{Label, Labels, MatchOp, Matcher, Sample, Series, StorageError};
use tidemark_schemas::ingester::{
    chunk, label_matcher, Chunk, Label as ProtoLabel, LabelMatcher, StreamSeries,
};

/// Path prefix of the partition consumers' internal query API.
pub const INGESTER_API_PREFIX: &str = "/internal/ingester/v1";
/// Largest request body of the internal query APIs.
pub const MAX_INTERNAL_REQUEST_BYTES: usize = 4 << 20;

/// The tenant of an internal API request, from its `X-Scope-OrgID` value:
/// present and a valid tenant ID.
pub fn internal_tenant(header: Option<&str>) -> Result<String, String> {
    let t = header
        .filter(|s| !s.is_empty())
        .ok_or_else(|| "no org id".to_owned())?;
    crate::tenant::validate_tenant_id(t).map_err(|e| e.to_string())?;
    Ok(t.to_owned())
}

/// An internal API request body: `Err((413, ...))` past
/// [`MAX_INTERNAL_REQUEST_BYTES`], `Err((400, ...))` when it does not decode.
pub fn decode_internal<M: prost::Message + Default>(body: &[u8]) -> Result<M, (u16, String)> {
    if body.len() > MAX_INTERNAL_REQUEST_BYTES {
        return Err((413, "request too large".into()));
    }
    M::decode(body).map_err(|e| (400, format!("bad request body: {e}")))
}

/// Header of internal answers naming the partitions the answering ingester
/// serves (comma-separated).
pub const PARTITIONS_HEADER: &str = "x-tidemark-partitions";
/// Header of internal answers giving the log's partition count.
pub const PARTITION_COUNT_HEADER: &str = "x-tidemark-partition-count";

/// Parses `partition:offset` pairs, comma-separated (Mimir's
/// `X-Read-Consistency-Offsets` form; an empty string is none).
pub fn parse_offsets(s: &str) -> Result<Vec<(i32, i64)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            let (p, o) = x
                .split_once(':')
                .ok_or_else(|| format!("{x:?} is not partition:offset"))?;
            let p: i32 = p.trim().parse().map_err(|_| format!("bad partition in {x:?}"))?;
            let o: i64 = o.trim().parse().map_err(|_| format!("bad offset in {x:?}"))?;
            if p < 0 || o < 0 {
                return Err(format!("negative partition or offset in {x:?}"));
            }
            Ok((p, o))
        })
        .collect()
}

/// `partition:offset` pairs, comma-separated.
pub fn format_offsets(offsets: &[(i32, i64)]) -> String {
    offsets
        .iter()
        .map(|(p, o)| format!("{p}:{o}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Path prefix of the store-gateways' internal query API (same protocol).
pub const STORE_GATEWAY_API_PREFIX: &str = "/internal/store-gateway/v1";

/// Samples per chunk written by [`series_to_proto`], as Prometheus cuts
/// head chunks.
pub const DEFAULT_SAMPLES_PER_CHUNK: usize = 120;

/// Matchers as protobuf.
pub fn matchers_to_proto(matchers: &[Matcher]) -> Vec<LabelMatcher> {
    matchers
        .iter()
        .map(|m| LabelMatcher {
            r#type: match m.op {
                MatchOp::Equal => label_matcher::Type::Eq,
                MatchOp::NotEqual => label_matcher::Type::Neq,
                MatchOp::Regex => label_matcher::Type::Re,
                MatchOp::NotRegex => label_matcher::Type::Nre,
            } as i32,
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect()
}

/// Matchers from protobuf; an unknown type or a bad regular expression is a
/// [`StorageError::BadRequest`].
pub fn matchers_from_proto(matchers: &[LabelMatcher]) -> Result<Vec<Matcher>, StorageError> {
    matchers
        .iter()
        .map(|m| {
            let op = match label_matcher::Type::try_from(m.r#type) {
                Ok(label_matcher::Type::Eq) => MatchOp::Equal,
                Ok(label_matcher::Type::Neq) => MatchOp::NotEqual,
                Ok(label_matcher::Type::Re) => MatchOp::Regex,
                Ok(label_matcher::Type::Nre) => MatchOp::NotRegex,
                Err(_) => {
                    return Err(StorageError::BadRequest(format!(
                        "unknown matcher type {} for label {:?}",
                        m.r#type, m.name
                    )))
                }
            };
            Matcher::new(op, m.name.clone(), m.value.clone())
                .map_err(|e| StorageError::BadRequest(e.to_string()))
        })
        .collect()
}

/// Labels as protobuf, sorted by name.
pub fn labels_to_proto(labels: &Labels) -> Vec<ProtoLabel> {
    labels
        .iter()
        .map(|l| ProtoLabel {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

/// Labels from protobuf (sorted and deduplicated whatever the sender did).
pub fn labels_from_proto(labels: Vec<ProtoLabel>) -> Labels {
    Labels::new(
        labels
            .into_iter()
            .map(|l| Label::new(l.name, l.value))
            .collect(),
    )
}

/// A series as protobuf, its samples XOR-encoded in chunks of at most
/// `samples_per_chunk` samples (at least 1, at most `u16::MAX`).
pub fn series_to_proto(
    series: &Series,
    samples_per_chunk: usize,
) -> Result<StreamSeries, StorageError> {
    let per_chunk = samples_per_chunk.clamp(1, u16::MAX as usize);
    let mut chunks = Vec::with_capacity(series.samples.len().div_ceil(per_chunk));
    for part in series.samples.chunks(per_chunk) {
        let mut app = XorAppender::new();
        for s in part {
            app.append(s.t, s.v).map_err(|e| {
                StorageError::Internal(format!("encoding chunk of {}: {e}", series.labels))
            })?;
        }
        chunks.push(Chunk {
            min_time_ms: part.first().map_or(0, |s| s.t),
            max_time_ms: part.last().map_or(0, |s| s.t),
            encoding: chunk::Encoding::Xor as i32,
            data: app.into_bytes().into(),
        });
    }
    Ok(StreamSeries {
        labels: labels_to_proto(&series.labels),
        chunks,
    })
}

/// A series from protobuf, keeping only the samples in `[start_ms, end_ms]`.
/// Chunks that are out of order or overlap are merged by time.
pub fn series_from_proto(
    series: StreamSeries,
    start_ms: i64,
    end_ms: i64,
) -> Result<Series, StorageError> {
    let labels = labels_from_proto(series.labels);
    let mut samples: Vec<Sample> = Vec::new();
    for c in series.chunks {
        if c.encoding != chunk::Encoding::Xor as i32 {
            return Err(StorageError::Internal(format!(
                "chunk of {labels} has unknown encoding {}",
                c.encoding
            )));
        }
        let mut decoded = decode_all(&c.data)
            .map_err(|e| StorageError::Internal(format!("bad chunk of {labels}: {e}")))?;
        decoded.retain(|s| s.t >= start_ms && s.t <= end_ms);
        if !decoded.windows(2).all(|w| w[0].t < w[1].t) {
            decoded.sort_by_key(|s| s.t);
            decoded.dedup_by_key(|s| s.t);
        }
        match (samples.last(), decoded.first()) {
            (Some(last), Some(first)) if first.t <= last.t => {
                samples = crate::queryable::merge_samples(samples, decoded);
            }
            _ => samples.extend(decoded),
        }
    }
    Ok(Series { labels, samples })
}

/// Metric metadata as protobuf.
pub fn metadata_to_proto(m: crate::MetricMetadata) -> tidemark_schemas::ingester::MetricMetadata {
    tidemark_schemas::ingester::MetricMetadata {
        metric: m.metric,
        r#type: m.kind,
        help: m.help,
        unit: m.unit,
    }
}

/// Metric metadata from protobuf.
pub fn metadata_from_proto(m: tidemark_schemas::ingester::MetricMetadata) -> crate::MetricMetadata {
    crate::MetricMetadata {
        metric: m.metric,
        kind: m.r#type,
        help: m.help,
        unit: m.unit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_round_trip() {
        let ms = vec![
            Matcher::equal("__name__", "up"),
            Matcher::new(MatchOp::NotEqual, "a", "b").unwrap(),
            Matcher::new(MatchOp::Regex, "c", "d|e").unwrap(),
            Matcher::new(MatchOp::NotRegex, "f", "g.*").unwrap(),
        ];
        let back = matchers_from_proto(&matchers_to_proto(&ms)).unwrap();
        assert_eq!(back, ms);
        assert!(back[2].matches("e") && !back[2].matches("de"));
    }

    #[test]
    fn bad_matchers_are_bad_requests() {
        let bad_type = LabelMatcher {
            r#type: 9,
            name: "a".into(),
            value: "b".into(),
        };
        assert!(matches!(
            matchers_from_proto(&[bad_type]),
            Err(StorageError::BadRequest(_))
        ));
        let bad_re = LabelMatcher {
            r#type: label_matcher::Type::Re as i32,
            name: "a".into(),
            value: "(".into(),
        };
        assert!(matches!(
            matchers_from_proto(&[bad_re]),
            Err(StorageError::BadRequest(_))
        ));
    }

    #[test]
    fn series_round_trip_and_trim() {
        let samples: Vec<Sample> = (0..300)
            .map(|i| Sample {
                t: i * 1000,
                v: i as f64 * 0.5,
            })
            .collect();
        let s = Series {
            labels: Labels::from_pairs([("__name__", "m"), ("a", "1")]),
            samples,
        };
        let proto = series_to_proto(&s, DEFAULT_SAMPLES_PER_CHUNK).unwrap();
        assert_eq!(proto.chunks.len(), 3);
        assert_eq!(
            series_from_proto(proto.clone(), i64::MIN, i64::MAX).unwrap(),
            s
        );
        let trimmed = series_from_proto(proto, 100_000, 199_000).unwrap();
        assert_eq!(trimmed.samples.len(), 100);
        assert_eq!(
            trimmed.samples[0],
            Sample {
                t: 100_000,
                v: 50.0
            }
        );
    }

    #[test]
    fn overlapping_chunks_merge() {
        let a = Series {
            labels: Labels::default(),
            samples: vec![Sample { t: 1, v: 1.0 }, Sample { t: 3, v: 3.0 }],
        };
        let b = Series {
            labels: Labels::default(),
            samples: vec![Sample { t: 2, v: 2.0 }, Sample { t: 3, v: 9.0 }],
        };
        let mut proto = series_to_proto(&a, 10).unwrap();
        proto.chunks.extend(series_to_proto(&b, 10).unwrap().chunks);
        let got = series_from_proto(proto, 0, 10).unwrap();
        assert_eq!(
            got.samples.iter().map(|s| s.t).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }
}
