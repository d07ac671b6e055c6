//! Encoding a partition's share of a request into ingest-log records.

use bytes::Bytes;
use prost::Message;
use tidemark_ingest_log::{Header, Record};
use tidemark_schemas::ingest::WriteRecordV1;
use tidemark_schemas::prometheus::{MetricMetadata, TimeSeries};
use tidemark_schemas::record::{encode_version, CURRENT_VERSION, VERSION_HEADER};

/// Bytes a record spends outside its body: key, header, framing.
const RECORD_OVERHEAD: usize = 256;

/// Body bytes a record of `tenant` may hold under `max_record_size`.
pub fn body_budget(tenant: &str, max_record_size: usize) -> usize {
    max_record_size
        .saturating_sub(RECORD_OVERHEAD + tenant.len())
        .max(1024)
}

/// Encodes series and metadata of one tenant for one partition as records of
/// at most `max_record_size` bytes each. A series too large for one record is
/// split by samples.
pub fn encode_records(
    tenant: &str,
    series: Vec<TimeSeries>,
    metadata: Vec<MetricMetadata>,
    max_record_size: usize,
) -> Vec<Record> {
    let budget = body_budget(tenant, max_record_size);
    let mut records = Vec::new();
    let mut body = WriteRecordV1 {
        timeseries: Vec::new(),
        metadata: Vec::new(),
    };
    let mut size = 0usize;

    let push =
        |item_len: usize, body: &mut WriteRecordV1, size: &mut usize, records: &mut Vec<Record>| {
            if *size > 0 && *size + item_len > budget {
                records.push(to_record(tenant, std::mem::take(body)));
                *size = 0;
            }
            *size += item_len;
        };

    for ts in series {
        let len = field_len(ts.encoded_len());
        if len <= budget {
            push(len, &mut body, &mut size, &mut records);
            body.timeseries.push(ts);
            continue;
        }
        for part in split_series(ts, budget) {
            let len = field_len(part.encoded_len());
            push(len, &mut body, &mut size, &mut records);
            body.timeseries.push(part);
        }
    }
    for md in metadata {
        let len = field_len(md.encoded_len());
        push(len, &mut body, &mut size, &mut records);
        body.metadata.push(md);
    }
    if size > 0 {
        records.push(to_record(tenant, body));
    }
    records
}

fn to_record(tenant: &str, body: WriteRecordV1) -> Record {
    record(tenant, body.encode_to_vec())
}

/// A record of `tenant` with an encoded current-version body.
pub fn record(tenant: &str, body: Vec<u8>) -> Record {
    Record {
        key: Bytes::copy_from_slice(tenant.as_bytes()),
        value: Bytes::from(body),
        headers: vec![Header {
            key: VERSION_HEADER.to_owned(),
            value: Bytes::copy_from_slice(&encode_version(CURRENT_VERSION)),
        }],
    }
}

/// Length of a length-delimited field holding `len` bytes.
pub fn field_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// Splits a series' samples (and exemplars, which go with the first part)
/// into parts that each fit the budget.
fn split_series(ts: TimeSeries, budget: usize) -> Vec<TimeSeries> {
    let labels_len: usize = ts.labels.iter().map(|l| field_len(l.encoded_len())).sum();
    // A float sample encodes to at most 22 bytes, plus its field header.
    let per_part = ((budget.saturating_sub(labels_len + 64)) / 24).max(1);
    let mut parts = Vec::new();
    let mut exemplars = Some(ts.exemplars);
    for chunk in ts.samples.chunks(per_part) {
        parts.push(TimeSeries {
            labels: ts.labels.clone(),
            samples: chunk.to_vec(),
            exemplars: exemplars.take().unwrap_or_default(),
        });
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_schemas::prometheus::{Label, Sample};
    use tidemark_schemas::record::{decode_version, RecordBody};

    fn series(name: &str, samples: usize) -> TimeSeries {
        TimeSeries {
            labels: vec![Label {
                name: Bytes::from_static(b"__name__"),
                value: Bytes::copy_from_slice(name.as_bytes()),
            }],
            samples: (0..samples)
                .map(|i| Sample {
                    value: i as f64,
                    timestamp: i as i64,
                })
                .collect(),
            exemplars: vec![],
        }
    }

    fn decode(records: &[Record]) -> Vec<TimeSeries> {
        records
            .iter()
            .flat_map(|r| {
                assert_eq!(r.key.as_ref(), b"tenant");
                let v = decode_version(r.header(VERSION_HEADER)).unwrap();
                RecordBody::decode(v, r.value.clone())
                    .unwrap()
                    .into_timeseries()
            })
            .collect()
    }

    #[test]
    fn small_batch_is_one_record() {
        let recs = encode_records(
            "tenant",
            vec![series("a", 1), series("b", 1)],
            vec![],
            1 << 20,
        );
        assert_eq!(recs.len(), 1);
        assert_eq!(decode(&recs).len(), 2);
    }

    #[test]
    fn large_batches_split_within_limit() {
        let input: Vec<TimeSeries> = (0..2000)
            .map(|i| series(&format!("metric_{i}"), 10))
            .collect();
        let limit = 20_000;
        let recs = encode_records("tenant", input.clone(), vec![], limit);
        assert!(recs.len() > 1);
        assert!(
            recs.iter().all(|r| r.encoded_len() <= limit),
            "every record within the limit"
        );
        assert_eq!(decode(&recs), input);
    }

    #[test]
    fn oversized_series_split_by_samples() {
        let big = series("big", 5000);
        let recs = encode_records("tenant", vec![big.clone()], vec![], 10_000);
        assert!(recs.len() > 1);
        assert!(recs.iter().all(|r| r.encoded_len() <= 10_000));
        let samples: Vec<Sample> = decode(&recs).into_iter().flat_map(|t| t.samples).collect();
        assert_eq!(samples, big.samples);
    }
}
