//! Conversions between storage types and the internal ingester API's
//! protobuf messages (`tidemark.ingester`), shared by the querier's client
//! and the partition consumers' server.

use crate::chunk::{decode_all, XorAppender};
use crate::{Label, Labels, MatchOp, Matcher, Sample, Series, StorageError};
use tidemark_schemas::ingester::{
    chunk, label_matcher, Chunk, Label as ProtoLabel, LabelMatcher, SeriesBatch, StreamSeries,
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

/// Target size of a streamed `SeriesBatch` frame: small enough that a
/// querier holds little of a large answer at once, large enough that the
/// framing costs nothing (a day of a 15s series is ~8 KiB of chunks).
pub const FRAME_TARGET_BYTES: usize = 64 << 10;

/// Groups streamed series into length-delimited `SeriesBatch` frames of
/// about `target_bytes` each (a larger series makes a frame of its own).
/// An error ends the stream.
pub fn series_frames<S, E>(series: S, target_bytes: usize) -> impl futures::Stream<Item = Result<bytes::Bytes, E>> + Send
where
    S: futures::Stream<Item = Result<StreamSeries, E>> + Send + Unpin,
    E: Send,
{
    use futures::StreamExt;
    use prost::Message;
    use tidemark_schemas::stream::encode_frame;
    futures::stream::unfold(Some(series), move |state| async move {
        let mut series = state?;
        let mut batch = SeriesBatch::default();
        let mut size = 0;
        while let Some(item) = series.next().await {
            match item {
                Ok(s) => {
                    size += s.encoded_len() + 4;
                    batch.series.push(s);
                    if size >= target_bytes {
                        return Some((Ok(encode_frame(&batch).into()), Some(series)));
                    }
                }
                Err(e) => return Some((Err(e), None)),
            }
        }
        (!batch.series.is_empty()).then(|| (Ok(encode_frame(&batch).into()), None))
    })
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
    fn series_frames_hold_about_the_target_and_every_series_in_order() {
        use futures::StreamExt;
        use tidemark_schemas::stream::FrameDecoder;
        let series: Vec<Series> = (0..40)
            .map(|i| Series {
                labels: Labels::from_pairs([("__name__", "m"), ("i", &format!("{i:02}"))]),
                samples: (0..(i * 10)).map(|k| Sample { t: k * 15_000, v: k as f64 }).collect(),
            })
            .collect();
        let protos: Vec<Result<StreamSeries, String>> = series.iter().map(|s| Ok(series_to_proto(s, 120).unwrap())).collect();
        let frames: Vec<bytes::Bytes> = futures::executor::block_on(
            series_frames(futures::stream::iter(protos), 2_000).map(|f| f.unwrap()).collect(),
        );
        assert!(frames.len() > 5, "{} frames", frames.len());
        let mut got = Vec::new();
        let mut dec = FrameDecoder::new(1 << 20);
        for (i, f) in frames.iter().enumerate() {
            dec.push(f);
            let batch: SeriesBatch = dec.next_message().unwrap().expect("one whole frame");
            let size: usize = batch.series.iter().map(|s| prost::Message::encoded_len(s) + 4).sum();
            let last = batch.series.last().map_or(0, |s| prost::Message::encoded_len(s) + 4);
            // Only the last frame may be under the target; none goes past it
            // by more than its last series.
            assert!(i == frames.len() - 1 || size >= 2_000, "frame {i}: {size} bytes");
            assert!(size - last < 2_000, "frame {i}: {size} bytes, last series {last}");
            got.extend(batch.series.into_iter().map(|s| series_from_proto(s, i64::MIN, i64::MAX).unwrap()));
        }
        assert_eq!(got.iter().filter(|s| !s.samples.is_empty()).count(), 39);
        assert_eq!(got, series);

        // An error ends the stream.
        let items = vec![Ok(series_to_proto(&series[5], 120).unwrap()), Err("boom".to_owned()), Ok(series_to_proto(&series[6], 120).unwrap())];
        let out: Vec<Result<bytes::Bytes, String>> = futures::executor::block_on(series_frames(futures::stream::iter(items), 1 << 20).collect());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ref().unwrap_err(), "boom");
    }

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
