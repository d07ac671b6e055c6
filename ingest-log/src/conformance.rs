//! Behaviour every [`IngestLog`] implementation must share.
//!
//! Each check takes a fresh log with at least two partitions and panics on a
//! violation; [`run_all`] runs them in turn. The crate's tests run the suite
//! against the embedded log and against Kafka (librdkafka's mock cluster).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::{ConsumedRecord, Header, IngestLog, LogError, Record};

const WAIT: Duration = Duration::from_secs(10);

pub fn record(key: &str, value: &str) -> Record {
    Record {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        headers: vec![Header {
            key: "Version".into(),
            value: Bytes::from_static(&[0, 0, 0, 1]),
        }],
    }
}

/// Reads from `offset` until `n` records arrived or the wait ran out.
pub async fn read_n(
    log: &dyn IngestLog,
    partition: i32,
    offset: i64,
    n: usize,
) -> Vec<ConsumedRecord> {
    let mut reader = log.reader(partition, offset).await.expect("reader");
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n && tokio::time::Instant::now() < deadline {
        let batch = reader.poll(Duration::from_millis(200)).await.expect("poll");
        out.extend(batch);
    }
    out
}

/// Runs every check, each on a log from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn IngestLog>>,
{
    produce_then_read_in_order(make().await).await;
    partitions_are_independent(make().await).await;
    offsets_and_watermarks(make().await).await;
    committed_offsets_per_group(make().await).await;
    offset_for_timestamp(make().await).await;
    reader_waits_for_new_records(make().await).await;
    concurrent_producers_all_acknowledged(make().await).await;
    unknown_partition_is_an_error(make().await).await;
    readers_reuse_memory_once_records_are_dropped(make().await).await;
    values_read_back_byte_for_byte(make().await).await;
}

pub async fn produce_then_read_in_order(log: Arc<dyn IngestLog>) {
    let recs: Vec<Record> = (0..10)
        .map(|i| record("tenant-a", &format!("v{i}")))
        .collect();
    log.produce(0, recs[..4].to_vec()).await.expect("produce");
    log.produce(0, recs[4..].to_vec()).await.expect("produce");
    let got = read_n(log.as_ref(), 0, 0, 10).await;
    assert_eq!(got.len(), 10, "read back every record");
    for (i, c) in got.iter().enumerate() {
        assert_eq!(c.offset, i as i64, "offsets are dense from 0");
        assert_eq!(c.partition, 0);
        assert_eq!(c.record, recs[i], "key, value and headers round-trip");
        assert!(c.timestamp_ms > 0);
    }
    // From the middle.
    let got = read_n(log.as_ref(), 0, 7, 3).await;
    let offsets: Vec<i64> = got.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, [7, 8, 9]);
}

pub async fn partitions_are_independent(log: Arc<dyn IngestLog>) {
    assert!(log.partition_count() >= 2);
    log.produce(0, vec![record("t", "p0")])
        .await
        .expect("produce");
    log.produce(1, vec![record("t", "p1a"), record("t", "p1b")])
        .await
        .expect("produce");
    let p1 = read_n(log.as_ref(), 1, 0, 2).await;
    assert_eq!(p1.len(), 2);
    assert_eq!(p1[0].record.value, Bytes::from_static(b"p1a"));
    assert_eq!(p1[0].offset, 0);
    assert_eq!(log.latest_offset(0).await.unwrap(), 1);
    assert_eq!(log.latest_offset(1).await.unwrap(), 2);
}

pub async fn offsets_and_watermarks(log: Arc<dyn IngestLog>) {
    assert_eq!(log.earliest_offset(0).await.unwrap(), 0);
    assert_eq!(log.latest_offset(0).await.unwrap(), 0, "empty partition");
    log.produce(0, (0..5).map(|i| record("t", &i.to_string())).collect())
        .await
        .unwrap();
    assert_eq!(log.earliest_offset(0).await.unwrap(), 0);
    assert_eq!(log.latest_offset(0).await.unwrap(), 5);
}

pub async fn committed_offsets_per_group(log: Arc<dyn IngestLog>) {
    assert_eq!(log.committed_offset("g1", 0).await.unwrap(), None);
    log.produce(0, (0..5).map(|i| record("t", &i.to_string())).collect())
        .await
        .unwrap();
    log.commit_offset("g1", 0, 3).await.unwrap();
    log.commit_offset("g2", 0, 1).await.unwrap();
    log.commit_offset("g1", 1, 0).await.unwrap();
    assert_eq!(log.committed_offset("g1", 0).await.unwrap(), Some(3));
    assert_eq!(log.committed_offset("g2", 0).await.unwrap(), Some(1));
    assert_eq!(log.committed_offset("g1", 1).await.unwrap(), Some(0));
    log.commit_offset("g1", 0, 5).await.unwrap();
    assert_eq!(log.committed_offset("g1", 0).await.unwrap(), Some(5));
}

pub async fn offset_for_timestamp(log: Arc<dyn IngestLog>) {
    let before = crate::now_ms() - 1;
    log.produce(0, vec![record("t", "a"), record("t", "b")])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle = crate::now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    log.produce(0, vec![record("t", "c")]).await.unwrap();
    let all = read_n(log.as_ref(), 0, 0, 3).await;
    assert_eq!(all.len(), 3);
    assert_eq!(log.offset_for_timestamp(0, before).await.unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(0, middle).await.unwrap(), Some(2));
    let last_ts = all[2].timestamp_ms;
    assert_eq!(log.offset_for_timestamp(0, last_ts).await.unwrap(), Some(2));
    assert_eq!(
        log.offset_for_timestamp(0, last_ts + 60_000).await.unwrap(),
        None
    );
}

pub async fn reader_waits_for_new_records(log: Arc<dyn IngestLog>) {
    let mut reader = log.reader(0, 0).await.unwrap();
    let empty = reader.poll(Duration::from_millis(100)).await.unwrap();
    assert!(empty.is_empty());
    let producer = {
        let log = log.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            log.produce(0, vec![record("t", "late")]).await.unwrap();
        })
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.is_empty() && tokio::time::Instant::now() < deadline {
        got = reader.poll(Duration::from_secs(1)).await.unwrap();
    }
    producer.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].record.value, Bytes::from_static(b"late"));
}

pub async fn concurrent_producers_all_acknowledged(log: Arc<dyn IngestLog>) {
    let mut tasks = Vec::new();
    for w in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                log.produce(1, vec![record("t", &format!("{w}-{i}"))])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(log.latest_offset(1).await.unwrap(), 80);
    let got = read_n(log.as_ref(), 1, 0, 80).await;
    assert_eq!(got.len(), 80);
    // Each writer's records keep their order.
    for w in 0..8 {
        let prefix = format!("{w}-");
        let mine: Vec<String> = got
            .iter()
            .map(|c| String::from_utf8_lossy(&c.record.value).into_owned())
            .filter(|v| v.starts_with(&prefix))
            .collect();
        let want: Vec<String> = (0..10).map(|i| format!("{w}-{i}")).collect();
        assert_eq!(mine, want);
    }
}

pub async fn unknown_partition_is_an_error(log: Arc<dyn IngestLog>) {
    let n = log.partition_count();
    let err = log.produce(n, vec![record("t", "x")]).await.unwrap_err();
    assert!(matches!(err, LogError::NoSuchPartition { .. }), "{err}");
    assert!(log.reader(n, 0).await.is_err());
}

/// The next poll of `reader` that returns records.
async fn poll_some(reader: &mut Box<dyn crate::PartitionReader>) -> Vec<crate::ConsumedRecord> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = reader.poll(Duration::from_millis(200)).await.expect("poll");
        if !got.is_empty() {
            return got;
        }
        assert!(std::time::Instant::now() < deadline, "no record within 30s");
    }
}

/// A reader hands out each poll's records in memory it takes back once
/// they are dropped (fresh memory for every poll costs page faults), and
/// never while they are held.
pub async fn readers_reuse_memory_once_records_are_dropped(log: Arc<dyn IngestLog>) {
    let value = "v".repeat(10_000);
    let mut reader = log.reader(0, 0).await.expect("reader");
    log.produce(0, vec![record("t", &value)]).await.expect("produce");
    let first = poll_some(&mut reader).await;
    assert_eq!(first[0].record.value, value.as_bytes());
    let at = first[0].record.value.as_ptr();
    // Held: the next poll reads elsewhere.
    log.produce(0, vec![record("t", &value)]).await.expect("produce");
    let second = poll_some(&mut reader).await;
    assert_eq!(second[0].record.value, value.as_bytes());
    assert_ne!(second[0].record.value.as_ptr(), at);
    assert_eq!(first[0].record.value, value.as_bytes(), "held records stay intact");
    drop(first);
    let at = second[0].record.value.as_ptr();
    drop(second);
    // Dropped: the same memory again.
    log.produce(0, vec![record("t", &value)]).await.expect("produce");
    let third = poll_some(&mut reader).await;
    assert_eq!(third[0].record.value, value.as_bytes());
    assert_eq!(third[0].record.value.as_ptr(), at);
}

/// Values empty, tiny, large and repetitive (what a backend may compress),
/// and large and random (what no compression shrinks) read back byte for
/// byte, with their headers and nothing else.
pub async fn values_read_back_byte_for_byte(log: Arc<dyn IngestLog>) {
    let repetitive: String = (0..4000)
        .map(|i| format!("node_cpu_seconds_total{{cpu=\"{}\",mode=\"idle\",instance=\"host-{}\"}} ", i % 8, i % 50))
        .collect();
    let random = incompressible(100_000);
    let mut recs = vec![record("t", ""), record("t", "a"), record("t", &repetitive)];
    let mut random_rec = record("t", "");
    random_rec.value = Bytes::from(random);
    random_rec.headers.push(Header { key: "Extra".into(), value: Bytes::from_static(b"x") });
    recs.push(random_rec);
    log.produce(0, recs.clone()).await.expect("produce");
    let got = read_n(&*log, 0, 0, recs.len()).await;
    assert_eq!(got.len(), recs.len());
    for (got, want) in got.iter().zip(&recs) {
        assert_eq!(got.record.key, want.key);
        assert_eq!(got.record.headers, want.headers);
        assert!(got.record.value == want.value, "value of {} bytes read back as {} bytes", want.value.len(), got.record.value.len());
    }
}

/// `n` pseudo-random bytes (xorshift): what no compression shrinks.
pub fn incompressible(n: usize) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}
