//! The embedded ingest log: partitions as directories of segment files on
//! local disk.
//!
//! * **Durability.** One writer thread per partition takes every produce
//!   request waiting for it, appends them all and fsyncs once (group commit),
//!   then acknowledges them together. A reader never sees a record before it
//!   is durable.
//! * **Format.** A segment file `<base offset, 20 digits>.seg` holds frames:
//!   `u32 length | u32 crc32c-of-rest | i64 offset | i64 timestamp_ms |
//!   u32 key length | key | u32 value length | value | u16 header count |
//!   (u16 name length | name | u32 value length | value)*`, big-endian.
//! * **Recovery.** Opening scans every segment, rebuilds a sparse index and
//!   cuts a torn tail of the last segment (a crash mid-write); damage
//!   anywhere else is reported as corruption.
//! * **Committed offsets** live in `offsets/<group>/<partition>`, replaced
//!   atomically (write, fsync, rename).
//!
//! It exists so that one machine needs no external service; it is not the
//! scale-out path.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{ConsumedRecord, Header, IngestLog, LogError, PartitionReader, Record};

/// Settings of the embedded log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmbeddedConfig {
    /// Directory of the log; created if missing.
    pub dir: PathBuf,
    /// Number of partitions. Fixed when the log is created.
    pub partitions: i32,
    /// A segment is closed and a new one started past this size.
    pub segment_size_bytes: u64,
    /// fsync before acknowledging a produce. Turning it off breaks the
    /// guarantee that acknowledged samples survive a machine crash (a
    /// process crash is still safe); only benchmarks should.
    pub fsync: bool,
    /// Largest record accepted.
    pub max_record_size_bytes: usize,
    /// Closed segments whose newest record is older than this are deleted,
    /// as Kafka's `retention.ms` does; zero keeps everything. Keep it longer
    /// than the ingesters' head retention.
    #[serde(with = "humantime_serde")]
    pub retention_period: Duration,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            dir: PathBuf::from("data/ingest-log"),
            partitions: 2,
            segment_size_bytes: 128 << 20,
            fsync: true,
            max_record_size_bytes: 16 << 20,
            retention_period: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl EmbeddedConfig {
    pub fn validate(&self) -> Result<(), LogError> {
        if self.partitions < 1 {
            return Err(LogError::Config(format!(
                "partitions must be at least 1, got {}",
                self.partitions
            )));
        }
        if self.segment_size_bytes < 1 << 20 {
            return Err(LogError::Config(
                "segment size must be at least 1 MiB".into(),
            ));
        }
        if self.max_record_size_bytes < 1024 {
            return Err(LogError::Config(
                "max record size must be at least 1 KiB".into(),
            ));
        }
        Ok(())
    }
}

const FRAME_FIXED: usize = 4 + 8 + 8 + 4 + 4 + 2; // crc, offset, ts, key len, value len, header count
const INDEX_EVERY_BYTES: u64 = 256 << 10;
const MAX_POLL_RECORDS: usize = 1000;
const MAX_POLL_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    offset: i64,
    pos: u64,
    timestamp_ms: i64,
}

#[derive(Debug)]
struct Segment {
    base_offset: i64,
    path: PathBuf,
    size: u64,
    /// Sparse: the first frame and then one every `INDEX_EVERY_BYTES`.
    index: Vec<IndexEntry>,
    last_timestamp_ms: i64,
}

#[derive(Debug)]
struct PartitionState {
    segments: Vec<Segment>,
    /// Offset of the next record to write.
    next_offset: i64,
    last_timestamp_ms: i64,
}

/// Metrics of the embedded log's writers.
#[derive(Debug, Clone)]
pub struct EmbeddedLogMetrics {
    pub fsyncs: Counter,
    pub fsync_seconds: Histogram,
    /// Records per group commit: how many produce calls shared one fsync.
    pub batch_records: Histogram,
    pub bytes_written: Counter,
    pub write_failures: Counter,
}

impl Default for EmbeddedLogMetrics {
    fn default() -> Self {
        EmbeddedLogMetrics {
            fsyncs: Counter::default(),
            fsync_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            bytes_written: Counter::default(),
            write_failures: Counter::default(),
        }
    }
}

impl EmbeddedLogMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tidemark_embedded_log");
        r.register(
            "fsyncs",
            "fsync calls of the embedded log",
            self.fsyncs.clone(),
        );
        r.register(
            "fsync_duration_seconds",
            "Time spent in fsync",
            self.fsync_seconds.clone(),
        );
        r.register(
            "group_commit_records",
            "Records written per group commit",
            self.batch_records.clone(),
        );
        r.register(
            "written_bytes",
            "Bytes appended to segments",
            self.bytes_written.clone(),
        );
        r.register(
            "write_failures",
            "Group commits that failed",
            self.write_failures.clone(),
        );
    }
}

struct Partition {
    id: i32,
    dir: PathBuf,
    state: Mutex<PartitionState>,
    /// Durable end: every offset below it is fsynced and readable.
    durable: watch::Sender<i64>,
    writer: mpsc::Sender<ProduceRequest>,
}

struct ProduceRequest {
    records: Vec<Record>,
    done: oneshot::Sender<Result<(), LogError>>,
}

/// The embedded, file-based ingest log.
pub struct EmbeddedLog {
    cfg: EmbeddedConfig,
    metrics: EmbeddedLogMetrics,
    partitions: Vec<Arc<Partition>>,
    offsets_dir: PathBuf,
    commit_lock: tokio::sync::Mutex<()>,
}

impl EmbeddedLog {
    /// Opens (or creates) the log under `cfg.dir`, recovering after a crash.
    /// The partition count is fixed at creation; a different configured
    /// count is an error.
    pub fn open(cfg: EmbeddedConfig) -> Result<Self, LogError> {
        cfg.validate()?;
        fs::create_dir_all(&cfg.dir)?;
        let meta_path = cfg.dir.join("partitions");
        match fs::read_to_string(&meta_path) {
            Ok(s) => {
                let existing: i32 = s.trim().parse().map_err(|_| {
                    LogError::Corrupt(format!("{} does not hold a number", meta_path.display()))
                })?;
                if existing != cfg.partitions {
                    return Err(LogError::Config(format!(
                        "the embedded log at {} has {existing} partitions but {} are configured",
                        cfg.dir.display(),
                        cfg.partitions
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_atomically(&meta_path, cfg.partitions.to_string().as_bytes())?;
            }
            Err(e) => return Err(e.into()),
        }
        let metrics = EmbeddedLogMetrics::default();
        let offsets_dir = cfg.dir.join("offsets");
        fs::create_dir_all(&offsets_dir)?;
        let mut partitions = Vec::new();
        for id in 0..cfg.partitions {
            let dir = cfg.dir.join(format!("partition-{id:04}"));
            fs::create_dir_all(&dir)?;
            let state = recover_partition(&dir)?;
            tracing::info!(
                partition = id,
                segments = state.segments.len(),
                next_offset = state.next_offset,
                "embedded ingest log partition opened"
            );
            let (durable, _) = watch::channel(state.next_offset);
            let (tx, rx) = mpsc::channel(1024);
            let p = Arc::new(Partition {
                id,
                dir,
                state: Mutex::new(state),
                durable,
                writer: tx,
            });
            let writer_part = p.clone();
            let c = cfg.clone();
            let m = metrics.clone();
            std::thread::Builder::new()
                .name(format!("ingest-log-writer-{id}"))
                .spawn(move || writer_loop(writer_part, rx, c, m))?;
            partitions.push(p);
        }
        Ok(EmbeddedLog {
            cfg,
            metrics,
            partitions,
            offsets_dir,
            commit_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The writers' metrics; register them with [`EmbeddedLogMetrics::register`].
    pub fn metrics(&self) -> &EmbeddedLogMetrics {
        &self.metrics
    }

    fn partition(&self, partition: i32) -> Result<&Arc<Partition>, LogError> {
        usize::try_from(partition)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .ok_or(LogError::NoSuchPartition {
                partition,
                count: self.cfg.partitions,
            })
    }

    fn offset_path(&self, group: &str, partition: i32) -> Result<PathBuf, LogError> {
        let ok = !group.is_empty()
            && group.len() <= 200
            && group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && group != "."
            && group != "..";
        if !ok {
            return Err(LogError::Config(format!(
                "consumer group {group:?} must be 1-200 characters of letters, digits, '-', '_' or '.'"
            )));
        }
        Ok(self.offsets_dir.join(group).join(partition.to_string()))
    }
}

#[async_trait]
impl IngestLog for EmbeddedLog {
    fn partition_count(&self) -> i32 {
        self.cfg.partitions
    }

    async fn produce(&self, partition: i32, records: Vec<Record>) -> Result<(), LogError> {
        let p = self.partition(partition)?;
        for r in &records {
            let size = r.encoded_len();
            if size > self.cfg.max_record_size_bytes {
                return Err(LogError::RecordTooLarge {
                    size,
                    limit: self.cfg.max_record_size_bytes,
                });
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        p.writer
            .send(ProduceRequest { records, done })
            .await
            .map_err(|_| {
                LogError::Unavailable(format!("partition {partition} writer has stopped"))
            })?;
        wait.await.map_err(|_| {
            LogError::Unavailable(format!("partition {partition} writer has stopped"))
        })?
    }

    async fn reader(
        &self,
        partition: i32,
        offset: i64,
    ) -> Result<Box<dyn PartitionReader>, LogError> {
        let p = self.partition(partition)?.clone();
        let (earliest, latest) = {
            let st = p.state.lock();
            (
                st.segments
                    .first()
                    .map(|s| s.base_offset)
                    .unwrap_or(st.next_offset),
                st.next_offset,
            )
        };
        if offset > latest {
            return Err(LogError::OffsetOutOfRange {
                partition,
                offset,
                earliest,
                latest,
            });
        }
        Ok(Box::new(EmbeddedReader {
            durable: p.durable.subscribe(),
            partition: p,
            next: offset.max(earliest),
            cursor: None,
            buf: BytesMut::new(),
        }))
    }

    async fn committed_offset(&self, group: &str, partition: i32) -> Result<Option<i64>, LogError> {
        self.partition(partition)?;
        let path = self.offset_path(group, partition)?;
        match tokio::fs::read_to_string(&path).await {
            Ok(s) => s.trim().parse().map(Some).map_err(|_| {
                LogError::Corrupt(format!("{} does not hold an offset", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn commit_offset(
        &self,
        group: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), LogError> {
        self.partition(partition)?;
        let path = self.offset_path(group, partition)?;
        let _guard = self.commit_lock.lock().await;
        tokio::task::spawn_blocking(move || -> Result<(), LogError> {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            write_atomically(&path, offset.to_string().as_bytes())?;
            Ok(())
        })
        .await
        .map_err(|e| LogError::Other(e.to_string()))?
    }

    async fn earliest_offset(&self, partition: i32) -> Result<i64, LogError> {
        let p = self.partition(partition)?;
        let st = p.state.lock();
        Ok(st
            .segments
            .first()
            .map(|s| s.base_offset)
            .unwrap_or(st.next_offset))
    }

    async fn latest_offset(&self, partition: i32) -> Result<i64, LogError> {
        Ok(*self.partition(partition)?.durable.borrow())
    }

    async fn offset_for_timestamp(
        &self,
        partition: i32,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, LogError> {
        let p = self.partition(partition)?.clone();
        let end = *p.durable.borrow();
        // The last index entry older than the target; records' timestamps
        // never decrease, so the answer is at or after it.
        let start = {
            let st = p.state.lock();
            let mut start: Option<(PathBuf, IndexEntry)> = None;
            'outer: for seg in &st.segments {
                for e in &seg.index {
                    if e.timestamp_ms >= timestamp_ms {
                        break 'outer;
                    }
                    start = Some((seg.path.clone(), *e));
                }
            }
            match start {
                Some(s) => s,
                None => {
                    return Ok(st
                        .segments
                        .first()
                        .and_then(|s| s.index.first())
                        .map(|e| e.offset)
                        .filter(|&o| o < end))
                }
            }
        };
        let part = p.clone();
        tokio::task::spawn_blocking(move || -> Result<Option<i64>, LogError> {
            let mut cursor = Cursor::open(&start.0, start.1.pos)?;
            let mut buf = BytesMut::new();
            let mut offset = start.1.offset;
            while offset < end {
                match cursor.next_frame(&mut buf)? {
                    Some(frame) => {
                        if frame.offset >= start.1.offset && frame.timestamp_ms >= timestamp_ms {
                            return Ok(Some(frame.offset));
                        }
                        offset = frame.offset + 1;
                    }
                    None => {
                        // End of this segment: continue in the next one.
                        let st = part.state.lock();
                        match st.segments.iter().find(|s| s.base_offset == offset) {
                            Some(seg) => {
                                let path = seg.path.clone();
                                drop(st);
                                cursor = Cursor::open(&path, 0)?;
                            }
                            None => return Ok(None),
                        }
                    }
                }
            }
            Ok(None)
        })
        .await
        .map_err(|e| LogError::Other(e.to_string()))?
    }
}

fn writer_loop(
    p: Arc<Partition>,
    mut rx: mpsc::Receiver<ProduceRequest>,
    cfg: EmbeddedConfig,
    metrics: EmbeddedLogMetrics,
) {
    let mut file: Option<File> = None;
    let mut last_retention_check = std::time::Instant::now();
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let result = write_batch(&p, &mut file, &batch, &cfg, &metrics);
        if let Err(e) = &result {
            metrics.write_failures.inc();
            tracing::error!(partition = p.id, error = %e, "embedded ingest log write failed");
            // Reopen on the next batch, after dropping what may be a torn tail.
            file = None;
            if let Err(e) = truncate_to_state(&p) {
                tracing::error!(partition = p.id, error = %e, "cannot restore the partition after a failed write");
            }
        }
        for req in batch {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(LogError::Unavailable(format!(
                    "write to partition {} failed: {e}",
                    p.id
                ))),
            };
            let _ = req.done.send(r);
        }
        if !cfg.retention_period.is_zero()
            && last_retention_check.elapsed() >= RETENTION_CHECK_EVERY
        {
            last_retention_check = std::time::Instant::now();
            let cutoff = crate::now_ms() - cfg.retention_period.as_millis() as i64;
            if let Err(e) = delete_segments_before(&p, cutoff) {
                tracing::warn!(partition = p.id, error = %e, "cannot delete expired segments");
            }
        }
    }
}

const RETENTION_CHECK_EVERY: Duration = Duration::from_secs(60);

/// Deletes closed segments whose newest record is older than `cutoff_ms`.
/// Readers with the file open keep reading it; new readers start at the new
/// earliest offset.
fn delete_segments_before(p: &Partition, cutoff_ms: i64) -> Result<usize, LogError> {
    let expired: Vec<Segment> = {
        let mut st = p.state.lock();
        let closed = st.segments.len().saturating_sub(1);
        let n = st.segments[..closed]
            .iter()
            .take_while(|s| s.last_timestamp_ms < cutoff_ms)
            .count();
        st.segments.drain(..n).collect()
    };
    for seg in &expired {
        fs::remove_file(&seg.path)?;
        tracing::info!(partition = p.id, segment = %seg.path.display(), "deleted segment past retention");
    }
    Ok(expired.len())
}

/// After a failed write, cuts the active segment back to what the state
/// records as written.
fn truncate_to_state(p: &Partition) -> Result<(), LogError> {
    let st = p.state.lock();
    if let Some(seg) = st.segments.last() {
        let f = OpenOptions::new().write(true).open(&seg.path)?;
        f.set_len(seg.size)?;
        f.sync_all()?;
    }
    Ok(())
}

fn write_batch(
    p: &Partition,
    file: &mut Option<File>,
    batch: &[ProduceRequest],
    cfg: &EmbeddedConfig,
    metrics: &EmbeddedLogMetrics,
) -> Result<(), LogError> {
    let mut st = p.state.lock();
    let needs_new_segment = match st.segments.last() {
        None => true,
        Some(seg) => seg.size >= cfg.segment_size_bytes,
    };
    if needs_new_segment {
        if let Some(f) = file.take() {
            f.sync_all()?;
        }
        let base = st.next_offset;
        let path = p.dir.join(format!("{base:020}.seg"));
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(&p.dir)?;
        st.segments.push(Segment {
            base_offset: base,
            path,
            size: 0,
            index: Vec::new(),
            last_timestamp_ms: 0,
        });
        *file = Some(f);
    }
    if file.is_none() {
        let seg = st
            .segments
            .last()
            .ok_or_else(|| LogError::Other("no active segment".into()))?;
        *file = Some(OpenOptions::new().append(true).open(&seg.path)?);
    }
    let f = file
        .as_mut()
        .ok_or_else(|| LogError::Other("no segment file".into()))?;

    let now = crate::now_ms().max(st.last_timestamp_ms);
    let mut buf = Vec::new();
    let mut offset = st.next_offset;
    let seg_size = st.segments.last().map(|s| s.size).unwrap_or(0);
    let mut new_index = Vec::new();
    let mut last_indexed = st
        .segments
        .last()
        .and_then(|s| s.index.last().map(|e| e.pos));
    for req in batch {
        for r in &req.records {
            let pos = seg_size + buf.len() as u64;
            if last_indexed.is_none_or(|lp| pos - lp >= INDEX_EVERY_BYTES) {
                new_index.push(IndexEntry {
                    offset,
                    pos,
                    timestamp_ms: now,
                });
                last_indexed = Some(pos);
            }
            encode_frame(&mut buf, offset, now, r);
            offset += 1;
        }
    }
    f.write_all(&buf)?;
    if cfg.fsync {
        let started = std::time::Instant::now();
        f.sync_data()?;
        metrics.fsyncs.inc();
        metrics
            .fsync_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    metrics.bytes_written.inc_by(buf.len() as u64);
    metrics
        .batch_records
        .observe((offset - st.next_offset) as f64);
    let seg = st
        .segments
        .last_mut()
        .ok_or_else(|| LogError::Other("no active segment".into()))?;
    seg.size += buf.len() as u64;
    seg.index.extend(new_index);
    seg.last_timestamp_ms = now;
    st.next_offset = offset;
    st.last_timestamp_ms = now;
    drop(st);
    p.durable.send_replace(offset);
    Ok(())
}

fn encode_frame(buf: &mut Vec<u8>, offset: i64, ts: i64, r: &Record) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]); // length and crc, filled below
    buf.extend_from_slice(&offset.to_be_bytes());
    buf.extend_from_slice(&ts.to_be_bytes());
    buf.extend_from_slice(&(r.key.len() as u32).to_be_bytes());
    buf.extend_from_slice(&r.key);
    buf.extend_from_slice(&(r.value.len() as u32).to_be_bytes());
    buf.extend_from_slice(&r.value);
    buf.extend_from_slice(&(r.headers.len() as u16).to_be_bytes());
    for h in &r.headers {
        buf.extend_from_slice(&(h.key.len() as u16).to_be_bytes());
        buf.extend_from_slice(h.key.as_bytes());
        buf.extend_from_slice(&(h.value.len() as u32).to_be_bytes());
        buf.extend_from_slice(&h.value);
    }
    let len = (buf.len() - start - 4) as u32;
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

struct Frame {
    offset: i64,
    timestamp_ms: i64,
    record: Record,
    /// Bytes the frame takes in the file.
    size: u64,
}

#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("frame cut short")]
    Torn,
    #[error("{0}")]
    Bad(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Decodes a frame's body; the record's key, value and header values are
/// views into it (no copy).
fn decode_frame(body: Bytes) -> Result<(i64, i64, Record), FrameError> {
    let bad = |what: &str| FrameError::Bad(format!("malformed frame: {what}"));
    let mut b = &body[..];
    let crc = take_u32(&mut b).ok_or_else(|| bad("crc"))?;
    if crc32fast::hash(b) != crc {
        return Err(FrameError::Bad("checksum mismatch".into()));
    }
    let offset = take_i64(&mut b).ok_or_else(|| bad("offset"))?;
    let ts = take_i64(&mut b).ok_or_else(|| bad("timestamp"))?;
    let klen = take_u32(&mut b).ok_or_else(|| bad("key length"))? as usize;
    let key = take_bytes(&mut b, klen).ok_or_else(|| bad("key"))?;
    let vlen = take_u32(&mut b).ok_or_else(|| bad("value length"))? as usize;
    let value = take_bytes(&mut b, vlen).ok_or_else(|| bad("value"))?;
    let hcount = take_u16(&mut b).ok_or_else(|| bad("header count"))?;
    let mut headers = Vec::with_capacity(hcount as usize);
    for _ in 0..hcount {
        let kl = take_u16(&mut b).ok_or_else(|| bad("header name length"))? as usize;
        let k = take_bytes(&mut b, kl).ok_or_else(|| bad("header name"))?;
        let vl = take_u32(&mut b).ok_or_else(|| bad("header value length"))? as usize;
        let v = take_bytes(&mut b, vl).ok_or_else(|| bad("header value"))?;
        headers.push(Header {
            key: String::from_utf8(k.to_vec()).map_err(|_| bad("header name is not UTF-8"))?,
            value: body.slice_ref(v),
        });
    }
    Ok((
        offset,
        ts,
        Record {
            key: body.slice_ref(key),
            value: body.slice_ref(value),
            headers,
        },
    ))
}

fn take_bytes<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Some(head)
}
fn take_u16(b: &mut &[u8]) -> Option<u16> {
    take_bytes(b, 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}
fn take_u32(b: &mut &[u8]) -> Option<u32> {
    take_bytes(b, 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}
fn take_i64(b: &mut &[u8]) -> Option<i64> {
    take_bytes(b, 8)
        .and_then(|s| s.try_into().ok())
        .map(i64::from_be_bytes)
}

/// Sequential frame reader over one segment file.
struct Cursor {
    r: BufReader<File>,
    pos: u64,
}

impl Cursor {
    fn open(path: &Path, pos: u64) -> Result<Self, std::io::Error> {
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(pos))?;
        Ok(Cursor {
            r: BufReader::with_capacity(256 << 10, f),
            pos,
        })
    }

    /// The next frame; `None` at a clean end of file. Its record is a view
    /// of `buf`, which the frame's bytes are split off.
    fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, LogError> {
        match self.try_next(buf) {
            Ok(f) => Ok(f),
            Err(FrameError::Torn) => Ok(None),
            Err(FrameError::Bad(m)) => Err(LogError::Corrupt(m)),
            Err(FrameError::Io(e)) => Err(e.into()),
        }
    }

    fn try_next(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let mut len = [0u8; 4];
        match read_full(&mut self.r, &mut len)? {
            0 => return Ok(None),
            4 => {}
            _ => return Err(FrameError::Torn),
        }
        let len = u32::from_be_bytes(len) as usize;
        if !(FRAME_FIXED..=1 << 30).contains(&len) {
            return Err(FrameError::Bad(format!("frame length {len} out of range")));
        }
        buf.clear();
        buf.resize(len, 0);
        if read_full(&mut self.r, &mut buf[..])? < len {
            return Err(FrameError::Torn);
        }
        let (offset, timestamp_ms, record) = decode_frame(buf.split_to(len).freeze())?;
        let size = 4 + len as u64;
        self.pos += size;
        Ok(Some(Frame {
            offset,
            timestamp_ms,
            record,
            size,
        }))
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn recover_partition(dir: &Path) -> Result<PartitionState, LogError> {
    let mut paths: Vec<(i64, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(base) = name
            .strip_suffix(".seg")
            .and_then(|b| b.parse::<i64>().ok())
        {
            paths.push((base, path));
        }
    }
    paths.sort();
    let mut segments = Vec::new();
    let mut next_offset = paths.first().map(|p| p.0).unwrap_or(0);
    let mut last_ts = 0;
    let count = paths.len();
    for (i, (base, path)) in paths.into_iter().enumerate() {
        let is_last = i + 1 == count;
        if base != next_offset {
            return Err(LogError::Corrupt(format!(
                "segment {} starts at offset {base}, expected {next_offset}",
                path.display()
            )));
        }
        let mut cursor = Cursor::open(&path, 0)?;
        let mut buf = BytesMut::new();
        let mut index = Vec::new();
        let mut pos = 0u64;
        let mut last_indexed: Option<u64> = None;
        let mut seg_last_ts = 0;
        loop {
            match cursor.try_next(&mut buf) {
                Ok(Some(frame)) => {
                    if frame.offset != next_offset {
                        return Err(LogError::Corrupt(format!(
                            "{}: frame at byte {pos} has offset {}, expected {next_offset}",
                            path.display(),
                            frame.offset
                        )));
                    }
                    if last_indexed.is_none_or(|lp| pos - lp >= INDEX_EVERY_BYTES) {
                        index.push(IndexEntry {
                            offset: frame.offset,
                            pos,
                            timestamp_ms: frame.timestamp_ms,
                        });
                        last_indexed = Some(pos);
                    }
                    next_offset += 1;
                    pos += frame.size;
                    seg_last_ts = frame.timestamp_ms;
                }
                Ok(None) => break,
                Err(FrameError::Io(e)) => return Err(e.into()),
                Err(e) if is_last => {
                    let len = fs::metadata(&path)?.len();
                    tracing::warn!(
                        segment = %path.display(),
                        valid_bytes = pos,
                        dropped_bytes = len - pos,
                        reason = %e,
                        "dropping the torn tail of the ingest log after a crash"
                    );
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(pos)?;
                    f.sync_all()?;
                    break;
                }
                Err(e) => {
                    return Err(LogError::Corrupt(format!(
                        "{} at byte {pos}: {e}",
                        path.display()
                    )));
                }
            }
        }
        last_ts = last_ts.max(seg_last_ts);
        segments.push(Segment {
            base_offset: base,
            path,
            size: pos,
            index,
            last_timestamp_ms: seg_last_ts,
        });
    }
    Ok(PartitionState {
        segments,
        next_offset,
        last_timestamp_ms: last_ts,
    })
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<(), std::io::Error> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), std::io::Error> {
    File::open(dir)?.sync_all()
}

/// Records read, the cursor to keep, the next offset, and the read buffer.
type ReadOutcome = (Vec<ConsumedRecord>, Option<(Cursor, i64)>, i64, BytesMut);

struct EmbeddedReader {
    partition: Arc<Partition>,
    durable: watch::Receiver<i64>,
    next: i64,
    /// Open segment and the offset its position points at.
    cursor: Option<(Cursor, i64)>,
    /// What records are read into, reused by the next poll once the
    /// records of this one are dropped (fresh memory for every poll costs
    /// a page fault every 4 KiB).
    buf: BytesMut,
}

impl EmbeddedReader {
    /// Reads up to the durable end (blocking I/O; run off the runtime).
    fn read_available(
        partition: &Partition,
        mut cursor: Option<(Cursor, i64)>,
        mut next: i64,
        end: i64,
        mut buf: BytesMut,
    ) -> Result<ReadOutcome, LogError> {
        // Room for a whole poll: takes the previous poll's buffer back when
        // its records are gone, else allocates.
        buf.clear();
        buf.reserve(MAX_POLL_BYTES + (1 << 20));
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while next < end && out.len() < MAX_POLL_RECORDS && bytes < MAX_POLL_BYTES {
            // A cursor at or before `next` reads forward to it.
            let reuse = matches!(&cursor, Some((_, at)) if *at <= next);
            if !reuse {
                cursor = Some(Self::seek(partition, next)?);
            }
            let Some((c, at)) = cursor.as_mut() else {
                break;
            };
            match c.next_frame(&mut buf)? {
                Some(frame) => {
                    *at = frame.offset + 1;
                    if frame.offset < next {
                        continue;
                    }
                    next = frame.offset + 1;
                    bytes += frame.size as usize;
                    out.push(ConsumedRecord {
                        partition: partition.id,
                        offset: frame.offset,
                        timestamp_ms: frame.timestamp_ms,
                        record: frame.record,
                    });
                }
                // End of this segment: the next seek opens the following one.
                None => cursor = None,
            }
        }
        Ok((out, cursor, next, buf))
    }

    /// A cursor positioned at or before `offset` in the segment holding it.
    fn seek(partition: &Partition, offset: i64) -> Result<(Cursor, i64), LogError> {
        let (path, entry) = {
            let st = partition.state.lock();
            let seg = st
                .segments
                .iter()
                .rev()
                .find(|s| s.base_offset <= offset)
                .ok_or_else(|| LogError::OffsetOutOfRange {
                    partition: partition.id,
                    offset,
                    earliest: st.segments.first().map(|s| s.base_offset).unwrap_or(0),
                    latest: st.next_offset,
                })?;
            let entry = seg
                .index
                .iter()
                .rev()
                .find(|e| e.offset <= offset)
                .copied()
                .unwrap_or(IndexEntry {
                    offset: seg.base_offset,
                    pos: 0,
                    timestamp_ms: 0,
                });
            (seg.path.clone(), entry)
        };
        Ok((Cursor::open(&path, entry.pos)?, entry.offset))
    }
}

#[async_trait]
impl PartitionReader for EmbeddedReader {
    async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedRecord>, LogError> {
        let end = {
            let current = *self.durable.borrow_and_update();
            if current > self.next {
                current
            } else {
                let waited = tokio::time::timeout(max_wait, async {
                    loop {
                        if self.durable.changed().await.is_err() {
                            return *self.durable.borrow();
                        }
                        let v = *self.durable.borrow_and_update();
                        if v > self.next {
                            return v;
                        }
                    }
                })
                .await;
                match waited {
                    Ok(v) if v > self.next => v,
                    _ => return Ok(Vec::new()),
                }
            }
        };
        let partition = self.partition.clone();
        let cursor = self.cursor.take();
        let next = self.next;
        let buf = std::mem::take(&mut self.buf);
        let (records, cursor, next, buf) = tokio::task::spawn_blocking(move || {
            Self::read_available(&partition, cursor, next, end, buf)
        })
        .await
        .map_err(|e| LogError::Other(e.to_string()))??;
        self.cursor = cursor;
        self.next = next;
        self.buf = buf;
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    fn cfg(dir: &Path) -> EmbeddedConfig {
        EmbeddedConfig {
            dir: dir.to_path_buf(),
            partitions: 2,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn conformance_suite() {
        let root = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        conformance::run_all(|| {
            let dir = root.path().join(
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    .to_string(),
            );
            async move { Arc::new(EmbeddedLog::open(cfg(&dir)).unwrap()) as Arc<dyn IngestLog> }
        })
        .await;
    }

    #[tokio::test]
    async fn survives_reopen_and_keeps_offsets() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(cfg(dir.path())).unwrap();
            log.produce(
                0,
                vec![conformance::record("t", "a"), conformance::record("t", "b")],
            )
            .await
            .unwrap();
            log.commit_offset("ingester", 0, 1).await.unwrap();
        }
        let log = EmbeddedLog::open(cfg(dir.path())).unwrap();
        assert_eq!(log.latest_offset(0).await.unwrap(), 2);
        assert_eq!(log.committed_offset("ingester", 0).await.unwrap(), Some(1));
        log.produce(0, vec![conformance::record("t", "c")])
            .await
            .unwrap();
        let got = conformance::read_n(&log, 0, 0, 3).await;
        let values: Vec<&[u8]> = got.iter().map(|c| c.record.value.as_ref()).collect();
        assert_eq!(values, [b"a".as_ref(), b"b", b"c"]);
    }

    #[tokio::test]
    async fn torn_tail_is_dropped_on_recovery() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(cfg(dir.path())).unwrap();
            log.produce(
                0,
                vec![
                    conformance::record("t", "keep1"),
                    conformance::record("t", "keep2"),
                ],
            )
            .await
            .unwrap();
        }
        let seg = dir
            .path()
            .join("partition-0000")
            .join(format!("{:020}.seg", 0));
        let len = fs::metadata(&seg).unwrap().len();
        // Simulate a crash in the middle of a write: half a frame at the end.
        let mut extra = Vec::new();
        encode_frame(&mut extra, 2, 0, &conformance::record("t", "torn"));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&extra[..extra.len() / 2]).unwrap();
        drop(f);
        let log = EmbeddedLog::open(cfg(dir.path())).unwrap();
        assert_eq!(fs::metadata(&seg).unwrap().len(), len);
        assert_eq!(log.latest_offset(0).await.unwrap(), 2);
        log.produce(0, vec![conformance::record("t", "after")])
            .await
            .unwrap();
        let got = conformance::read_n(&log, 0, 0, 3).await;
        let values: Vec<&[u8]> = got.iter().map(|c| c.record.value.as_ref()).collect();
        assert_eq!(values, [b"keep1".as_ref(), b"keep2", b"after"]);
    }

    #[tokio::test]
    async fn corrupt_middle_segment_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let small = EmbeddedConfig {
            segment_size_bytes: 1 << 20,
            ..cfg(dir.path())
        };
        {
            let log = EmbeddedLog::open(small.clone()).unwrap();
            let big = "x".repeat(600 << 10);
            for _ in 0..4 {
                log.produce(0, vec![conformance::record("t", &big)])
                    .await
                    .unwrap();
            }
        }
        let pdir = dir.path().join("partition-0000");
        let mut segs: Vec<_> = fs::read_dir(&pdir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        segs.sort();
        assert!(segs.len() >= 2, "segments rolled: {segs:?}");
        let mut bytes = fs::read(&segs[0]).unwrap();
        bytes[100] ^= 0xff;
        fs::write(&segs[0], bytes).unwrap();
        let err = EmbeddedLog::open(small).err().expect("corruption detected");
        assert!(matches!(err, LogError::Corrupt(_)), "{err}");
    }

    #[tokio::test]
    async fn reads_across_segments_and_seeks_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let small = EmbeddedConfig {
            segment_size_bytes: 1 << 20,
            ..cfg(dir.path())
        };
        let log = EmbeddedLog::open(small.clone()).unwrap();
        let payload = "y".repeat(10_000);
        for i in 0..300 {
            log.produce(1, vec![conformance::record("t", &format!("{i}:{payload}"))])
                .await
                .unwrap();
        }
        let got = conformance::read_n(&log, 1, 0, 300).await;
        assert_eq!(got.len(), 300);
        assert!(got.iter().enumerate().all(|(i, c)| c.offset == i as i64));
        let got = conformance::read_n(&log, 1, 257, 43).await;
        assert_eq!(got.first().map(|c| c.offset), Some(257));
        assert_eq!(got.len(), 43);
        drop(log);
        // The index is rebuilt the same on reopen.
        let log = EmbeddedLog::open(small).unwrap();
        let got = conformance::read_n(&log, 1, 123, 1).await;
        assert!(got[0].record.value.starts_with(b"123:"));
    }

    #[tokio::test]
    async fn retention_deletes_old_closed_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let small = EmbeddedConfig {
            segment_size_bytes: 1 << 20,
            ..cfg(dir.path())
        };
        let log = EmbeddedLog::open(small).unwrap();
        let big = "z".repeat(600 << 10);
        for _ in 0..5 {
            log.produce(0, vec![conformance::record("t", &big)])
                .await
                .unwrap();
        }
        let p = log.partition(0).unwrap().clone();
        let segments = p.state.lock().segments.len();
        assert!(segments >= 3);
        // Everything is older than a cutoff in the future: all but the
        // active segment go.
        let deleted = delete_segments_before(&p, crate::now_ms() + 60_000).unwrap();
        assert_eq!(deleted, segments - 1);
        let earliest = log.earliest_offset(0).await.unwrap();
        assert!(earliest > 0);
        assert_eq!(log.latest_offset(0).await.unwrap(), 5);
        // A reader asked for offset 0 starts at the new earliest offset.
        let got = conformance::read_n(&log, 0, 0, (5 - earliest) as usize).await;
        assert_eq!(got.first().map(|c| c.offset), Some(earliest));
        assert_eq!(
            delete_segments_before(&p, 0).unwrap(),
            0,
            "nothing older than the epoch"
        );
    }

    #[tokio::test]
    async fn partition_count_is_fixed() {
        let dir = tempfile::tempdir().unwrap();
        drop(EmbeddedLog::open(cfg(dir.path())).unwrap());
        let err = EmbeddedLog::open(EmbeddedConfig {
            partitions: 3,
            ..cfg(dir.path())
        })
        .err()
        .unwrap();
        assert!(matches!(err, LogError::Config(_)));
    }
}
