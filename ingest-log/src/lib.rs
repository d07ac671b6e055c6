//! The ingest log: a partitioned, durable, ordered record log.
//!
//! Distributors produce to it and wait for the acknowledgement; partition
//! consumers and the block-builder read it. [`IngestLog`] is the one
//! interface, with two implementations:
//!
//! * [`kafka::KafkaLog`]: Apache Kafka (or a Kafka-protocol broker) through
//!   librdkafka, `acks=all`. The cluster path.
//! * [`embedded::EmbeddedLog`]: segment files on local disk, fsynced with
//!   group commit. The single-machine default; not the scale-out path.
//!
//! [`conformance`] holds the behaviour both must share, run as tests against
//! each.
//!
//! Offsets follow Kafka's conventions: the offset of a record is its index in
//! its partition, a committed offset is the next offset to read, and the
//! latest offset (high watermark) is the offset the next record will get.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub mod conformance;
pub mod embedded;
pub mod kafka;
pub mod record_lz4;

/// A record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Bytes,
}

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Bytes,
    pub value: Bytes,
    pub headers: Vec<Header>,
}

impl Record {
    /// Size on the wire, roughly: what counts against record size limits.
    pub fn encoded_len(&self) -> usize {
        self.key.len()
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.len() + 8)
                .sum::<usize>()
            + 32
    }

    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_ref())
    }
}

/// A record read back, with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    /// When the log accepted the record, in milliseconds since the epoch.
    pub timestamp_ms: i64,
    pub record: Record,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log cannot be reached or did not answer in time. Retryable.
    #[error("ingest log unavailable: {0}")]
    Unavailable(String),
    #[error("partition {partition} does not exist (the log has {count} partitions)")]
    NoSuchPartition { partition: i32, count: i32 },
    #[error("record of {size} bytes exceeds the log's limit of {limit} bytes")]
    RecordTooLarge { size: usize, limit: usize },
    #[error("offset {offset} is out of range for partition {partition} (earliest {earliest}, latest {latest})")]
    OffsetOutOfRange {
        partition: i32,
        offset: i64,
        earliest: i64,
        latest: i64,
    },
    #[error("ingest log I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("ingest log data is corrupt: {0}")]
    Corrupt(String),
    #[error("invalid ingest log configuration: {0}")]
    Config(String),
    #[error("ingest log error: {0}")]
    Other(String),
}

impl LogError {
    /// Whether the same call may succeed later (the client should retry).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LogError::Unavailable(_) | LogError::Io(_) | LogError::Other(_)
        )
    }
}

#[async_trait]
pub trait IngestLog: Send + Sync + 'static {
    /// Number of partitions of the topic.
    fn partition_count(&self) -> i32;

    /// Appends records to a partition, in order, and returns once every one
    /// is durable (Kafka: acknowledged by all in-sync replicas; embedded:
    /// fsynced). On error, any subset may have been written.
    async fn produce(&self, partition: i32, records: Vec<Record>) -> Result<(), LogError>;

    /// A reader of one partition starting at `offset` (clamped to the
    /// earliest offset still in the log).
    async fn reader(
        &self,
        partition: i32,
        offset: i64,
    ) -> Result<Box<dyn PartitionReader>, LogError>;

    /// The offset `group` committed for the partition, if any.
    async fn committed_offset(&self, group: &str, partition: i32) -> Result<Option<i64>, LogError>;

    /// Stores `offset` (the next offset to read) for `group`. Durable when it
    /// returns.
    async fn commit_offset(&self, group: &str, partition: i32, offset: i64)
        -> Result<(), LogError>;

    /// The first offset still in the partition.
    async fn earliest_offset(&self, partition: i32) -> Result<i64, LogError>;

    /// The offset the next produced record will get (the high watermark).
    async fn latest_offset(&self, partition: i32) -> Result<i64, LogError>;

    /// The first offset whose record timestamp is at or after `timestamp_ms`,
    /// or `None` when every record is older.
    async fn offset_for_timestamp(
        &self,
        partition: i32,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, LogError>;
}

#[async_trait]
pub trait PartitionReader: Send {
    /// The next records in offset order, waiting up to `max_wait` for at
    /// least one. Returns an empty batch when none arrived in time.
    async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedRecord>, LogError>;
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
