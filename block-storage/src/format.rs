//! The Parquet layout of a block, after `prometheus-community/parquet-common`
//! (label columns plus time-sliced chunk columns), in one file:
//!
//! | column          | type            | content                                      |
//! |-----------------|-----------------|----------------------------------------------|
//! | `s_min_t`       | int64           | first sample of the series                   |
//! | `s_max_t`       | int64           | last sample of the series                    |
//! | `s_chunks_<k>`  | binary, null    | chunks of slice `k` of the block's range     |
//! | `l_<name>`      | utf8, null      | value of label `<name>`, dictionary-encoded  |
//!
//! One row per series, rows sorted by label set (Prometheus' order), so a
//! reader streams series sorted and row-group statistics of `l___name__`
//! skip whole row groups. A selector reads the label columns alone; samples
//! are read only from the chunk columns whose slice overlaps the query.
//!
//! A chunk cell is a sequence of chunks, each `varint(min_t - prev)`,
//! `uvarint(max_t - min_t)`, `uvarint(len)` then `len` bytes of chunk
//! (`prev` is the previous chunk's `max_t`, or the block's `min_time`).
//! Chunks never cross a slice boundary. In format 1 a chunk is a Prometheus
//! XOR chunk; from format 2 its first byte names its encoding
//! ([`ChunkEncoding`]): XOR, or decimal ([`crate::decimal`]) when every
//! value of the chunk is a short decimal number.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use tidemark_storage::chunk::{XorAppender, XorIter};
use tidemark_storage::{Labels, Sample};

use crate::decimal::{self, DecimalIter};
use crate::varint::{put_uvarint, put_varint, uvarint, varint};
use crate::BlockError;

pub const MIN_T_COLUMN: &str = "s_min_t";
pub const MAX_T_COLUMN: &str = "s_max_t";
pub const CHUNKS_COLUMN_PREFIX: &str = "s_chunks_";
pub const LABEL_COLUMN_PREFIX: &str = "l_";

/// Samples per XOR chunk, as Prometheus cuts them.
pub const SAMPLES_PER_CHUNK: usize = 120;
/// Series per row group.
pub const ROWS_PER_ROW_GROUP: usize = 4096;

/// One series of a block: samples sorted by time, timestamps unique.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// An encoded block, ready to upload.
#[derive(Debug, Clone)]
pub struct BuiltBlock {
    pub parquet: Bytes,
    pub num_series: u64,
    pub num_samples: u64,
    pub num_chunks: u64,
    pub data_min_time: i64,
    pub data_max_time: i64,
    pub chunk_columns: u32,
}

/// Chunk columns of a block of `range_ms`: one per 30 minutes, 1 to 8.
pub fn chunk_columns_for(range_ms: i64) -> u32 {
    (range_ms / (30 * 60 * 1000)).clamp(1, 8) as u32
}

/// Encodes series (sorted by labels, at least one sample each) of the block
/// range `[min_time, max_time)` as a Parquet file.
pub fn write_block(
    series: &[BlockSeries],
    min_time: i64,
    max_time: i64,
) -> Result<BuiltBlock, BlockError> {
    let names: BTreeSet<&str> = series
        .iter()
        .flat_map(|s| s.labels.iter().map(|l| l.name.as_str()))
        .collect();
    let mut w = BlockWriter::new(min_time, max_time, names)?;
    for s in series {
        w.push(s.clone())?;
    }
    w.finish()
}

/// Writes a block series by series (sorted by labels), a row group at a
/// time, so that only one row group's series are held while writing.
pub struct BlockWriter {
    min_time: i64,
    width: i64,
    names: Vec<String>,
    schema: SchemaRef,
    writer: ArrowWriter<Vec<u8>>,
    pending: Vec<BlockSeries>,
    cells: Vec<Vec<u8>>,
    built: BuiltBlock,
}

impl BlockWriter {
    /// A writer for a block of `[min_time, max_time)` whose series have
    /// labels among `names`.
    pub fn new<'a>(
        min_time: i64,
        max_time: i64,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, BlockError> {
        let columns = chunk_columns_for(max_time - min_time);
        let width = ((max_time - min_time) + i64::from(columns) - 1) / i64::from(columns);
        let names: BTreeSet<&str> = names.into_iter().collect();
        let names: Vec<String> = names.into_iter().map(str::to_owned).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let schema = schema(columns, &refs);
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_max_row_group_row_count(Some(ROWS_PER_ROW_GROUP))
            .set_statistics_enabled(EnabledStatistics::Chunk);
        for k in 0..columns {
            let col = ColumnPath::from(format!("{CHUNKS_COLUMN_PREFIX}{k}"));
            props = props
                .set_column_dictionary_enabled(col.clone(), false)
                .set_column_statistics_enabled(col, EnabledStatistics::None);
        }
        let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.build()))?;
        Ok(BlockWriter {
            min_time,
            width,
            names,
            schema,
            writer,
            pending: Vec::with_capacity(ROWS_PER_ROW_GROUP),
            cells: vec![Vec::new(); columns as usize],
            built: BuiltBlock {
                parquet: Bytes::new(),
                num_series: 0,
                num_samples: 0,
                num_chunks: 0,
                data_min_time: i64::MAX,
                data_max_time: i64::MIN,
                chunk_columns: columns,
            },
        })
    }

    /// Adds the next series (labels greater than the previous one's, names
    /// among the writer's, at least one sample).
    pub fn push(&mut self, s: BlockSeries) -> Result<(), BlockError> {
        if s.samples.is_empty() {
            return Err(self.error(format!("series {} has no samples", s.labels)));
        }
        if let Some(l) = s.labels.iter().find(|l| self.names.binary_search(&l.name).is_err()) {
            return Err(self.error(format!("label {} is not a column of the block", l.name)));
        }
        self.pending.push(s);
        if self.pending.len() >= ROWS_PER_ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn error(&self, message: String) -> BlockError {
        BlockError::Corrupt {
            block: "(writing)".into(),
            message,
        }
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let group = std::mem::take(&mut self.pending);
        let columns = self.cells.len();
        let mut min_t = Int64Builder::with_capacity(group.len());
        let mut max_t = Int64Builder::with_capacity(group.len());
        let mut chunk_builders: Vec<BinaryBuilder> = (0..columns).map(|_| BinaryBuilder::new()).collect();
        let mut label_builders: Vec<StringBuilder> = self.names.iter().map(|_| StringBuilder::new()).collect();
        for s in &group {
            let (Some(first), Some(last)) = (s.samples.first(), s.samples.last()) else {
                continue;
            };
            min_t.append_value(first.t);
            max_t.append_value(last.t);
            let b = &mut self.built;
            b.num_series += 1;
            b.num_samples += s.samples.len() as u64;
            b.data_min_time = b.data_min_time.min(first.t);
            b.data_max_time = b.data_max_time.max(last.t);
            b.num_chunks += encode_cells(&s.samples, self.min_time, self.width, &mut self.cells)?;
            for (b, cell) in chunk_builders.iter_mut().zip(self.cells.iter()) {
                if cell.is_empty() {
                    b.append_null();
                } else {
                    b.append_value(cell);
                }
            }
            let mut labels = s.labels.iter().peekable();
            for (b, name) in label_builders.iter_mut().zip(self.names.iter()) {
                match labels.peek() {
                    Some(l) if l.name == *name => {
                        b.append_value(&l.value);
                        labels.next();
                    }
                    _ => b.append_null(),
                }
            }
        }
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(min_t.finish()), Arc::new(max_t.finish())];
        arrays.extend(chunk_builders.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        arrays.extend(label_builders.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        self.writer.write(&RecordBatch::try_new(self.schema.clone(), arrays)?)?;
        self.writer.flush()?;
        self.pending = group;
        self.pending.clear();
        Ok(())
    }

    /// Series written so far (flushed or not).
    pub fn num_series(&self) -> u64 {
        self.built.num_series + self.pending.len() as u64
    }

    /// Ends the file.
    pub fn finish(mut self) -> Result<BuiltBlock, BlockError> {
        self.flush()?;
        let out = self.writer.into_inner()?;
        let mut built = self.built;
        built.parquet = Bytes::from(out);
        if built.num_series == 0 {
            built.data_min_time = self.min_time;
            built.data_max_time = self.min_time;
        }
        Ok(built)
    }
}

fn schema(columns: u32, names: &[&str]) -> SchemaRef {
    let mut fields = vec![
        Field::new(MIN_T_COLUMN, DataType::Int64, false),
        Field::new(MAX_T_COLUMN, DataType::Int64, false),
    ];
    for k in 0..columns {
        fields.push(Field::new(
            format!("{CHUNKS_COLUMN_PREFIX}{k}"),
            DataType::Binary,
            true,
        ));
    }
    for n in names {
        fields.push(Field::new(
            format!("{LABEL_COLUMN_PREFIX}{n}"),
            DataType::Utf8,
            true,
        ));
    }
    Arc::new(Schema::new(fields))
}

/// Cuts a series' samples into chunks of at most [`SAMPLES_PER_CHUNK`]
/// samples that never cross a slice boundary, each decimal-encoded when it
/// can be and XOR-encoded otherwise, and writes each slice's chunks into
/// its cell (format 2). Returns the number of chunks.
fn encode_cells(
    samples: &[Sample],
    min_time: i64,
    width: i64,
    cells: &mut [Vec<u8>],
) -> Result<u64, BlockError> {
    for c in cells.iter_mut() {
        c.clear();
    }
    let last_slice = cells.len() - 1;
    let slice_of = |t: i64| (((t - min_time).max(0) / width.max(1)) as usize).min(last_slice);
    let mut chunks = 0;
    let mut prev = vec![min_time; cells.len()];
    let mut data = Vec::new();
    let mut i = 0;
    while i < samples.len() {
        let slice = slice_of(samples[i].t);
        let start = i;
        while i < samples.len()
            && i - start < SAMPLES_PER_CHUNK
            && slice_of(samples[i].t) == slice
        {
            i += 1;
        }
        let chunk = &samples[start..i];
        data.clear();
        data.push(ChunkEncoding::Decimal as u8);
        if !decimal::encode(chunk, &mut data) {
            data.clear();
            data.push(ChunkEncoding::Xor as u8);
            let mut app = XorAppender::new();
            for s in chunk {
                app.append(s.t, s.v).map_err(|e| BlockError::Corrupt {
                    block: "(writing)".into(),
                    message: format!("cannot encode samples: {e}"),
                })?;
            }
            data.extend_from_slice(app.bytes());
        }
        let (cmin, cmax) = (samples[start].t, samples[i - 1].t);
        let cell = &mut cells[slice];
        put_varint(cell, cmin - prev[slice]);
        put_uvarint(cell, (cmax - cmin) as u64);
        put_uvarint(cell, data.len() as u64);
        cell.extend_from_slice(&data);
        prev[slice] = cmax;
        chunks += 1;
    }
    Ok(chunks)
}

/// How a chunk of a cell is encoded (its first byte, from format 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ChunkEncoding {
    /// A Prometheus XOR chunk.
    Xor = 1,
    /// [`crate::decimal`].
    Decimal = 2,
}

/// A chunk read from a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellChunk<'a> {
    pub min_t: i64,
    pub max_t: i64,
    pub encoding: ChunkEncoding,
    /// The encoded samples (without the encoding byte).
    pub data: &'a [u8],
}

impl<'a> CellChunk<'a> {
    /// The chunk's samples, in time order.
    pub fn samples(&self) -> Result<ChunkSamples<'a>, String> {
        Ok(match self.encoding {
            ChunkEncoding::Xor => ChunkSamples::Xor(XorIter::new(self.data).map_err(|e| e.to_string())?),
            ChunkEncoding::Decimal => {
                ChunkSamples::Decimal(DecimalIter::new(self.data, self.min_t).map_err(|e| e.to_string())?)
            }
        })
    }
}

/// The samples of a [`CellChunk`], whatever its encoding.
pub enum ChunkSamples<'a> {
    Xor(XorIter<'a>),
    Decimal(DecimalIter<'a>),
}

impl Iterator for ChunkSamples<'_> {
    type Item = Result<Sample, String>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ChunkSamples::Xor(it) => it.next().map(|r| r.map_err(|e| e.to_string())),
            ChunkSamples::Decimal(it) => it.next().map(|r| r.map_err(|e| e.to_string())),
        }
    }
}

/// The chunks of a cell of a block of format `version`, in time order.
/// `min_time` is the block's.
pub fn decode_cell(cell: &[u8], min_time: i64, version: u32) -> Result<Vec<CellChunk<'_>>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut prev = min_time;
    while pos < cell.len() {
        let bad = || "truncated chunk cell".to_string();
        let min_t = prev
            .checked_add(varint(cell, &mut pos).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        let span = uvarint(cell, &mut pos).ok_or_else(bad)?;
        let len = uvarint(cell, &mut pos).ok_or_else(bad)? as usize;
        let max_t = i64::try_from(span)
            .ok()
            .and_then(|s| min_t.checked_add(s))
            .ok_or_else(bad)?;
        let end = pos.checked_add(len).filter(|&e| e <= cell.len()).ok_or_else(bad)?;
        let (encoding, data) = if version < 2 {
            (ChunkEncoding::Xor, &cell[pos..end])
        } else {
            let encoding = match cell[pos..end].first() {
                Some(1) => ChunkEncoding::Xor,
                Some(2) => ChunkEncoding::Decimal,
                Some(b) => return Err(format!("unknown chunk encoding {b}")),
                None => return Err("empty chunk".into()),
            };
            (encoding, &cell[pos + 1..end])
        };
        out.push(CellChunk {
            min_t,
            max_t,
            encoding,
            data,
        });
        pos = end;
        prev = max_t;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_storage::chunk::decode_all;

    fn series(name: &str, ts: impl Iterator<Item = i64>) -> BlockSeries {
        BlockSeries {
            labels: Labels::from_pairs([("__name__", name), ("job", "j")]),
            samples: ts.map(|t| Sample { t, v: t as f64 / 7.0 }).collect(),
        }
    }

    #[test]
    fn cells_cut_at_slices_and_round_trip() {
        let min = 7_200_000;
        let s = series("a", (0..480).map(|i| min + i * 15_000));
        let mut cells = vec![Vec::new(); 4];
        let chunks = encode_cells(&s.samples, min, 1_800_000, &mut cells).unwrap();
        // 120 samples per 30m slice at 15s: one chunk per slice.
        assert_eq!(chunks, 4);
        let mut back = Vec::new();
        for (k, cell) in cells.iter().enumerate() {
            for c in decode_cell(cell, min, 2).unwrap() {
                assert!(c.min_t >= min + k as i64 * 1_800_000);
                assert!(c.max_t < min + (k as i64 + 1) * 1_800_000);
                back.extend(c.samples().unwrap().map(Result::unwrap));
            }
        }
        assert_eq!(back, s.samples);
    }

    #[test]
    fn decimal_and_xor_chunks_share_a_cell() {
        let min = 0;
        // 120 decimal samples, then a chunk with a stale marker (XOR).
        let mut samples: Vec<Sample> = (0..240)
            .map(|i| Sample { t: i * 1_000, v: 100.0 + i as f64 * 0.25 })
            .collect();
        samples[200].v = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut cells = vec![Vec::new(); 1];
        assert_eq!(encode_cells(&samples, min, 7_200_000, &mut cells).unwrap(), 2);
        let chunks = decode_cell(&cells[0], min, 2).unwrap();
        let kinds: Vec<ChunkEncoding> = chunks.iter().map(|c| c.encoding).collect();
        assert_eq!(kinds, [ChunkEncoding::Decimal, ChunkEncoding::Xor]);
        let back: Vec<Sample> = chunks
            .iter()
            .flat_map(|c| c.samples().unwrap().map(Result::unwrap))
            .collect();
        assert_eq!(back.len(), samples.len());
        for (a, b) in back.iter().zip(&samples) {
            assert_eq!((a.t, a.v.to_bits()), (b.t, b.v.to_bits()));
        }
    }

    #[test]
    fn format_1_cells_are_untagged_xor_chunks() {
        // A cell as format 1 wrote it: framing, then the bare XOR chunk.
        let samples: Vec<Sample> = (0..10).map(|i| Sample { t: 500 + i * 10, v: i as f64 }).collect();
        let mut app = XorAppender::new();
        for s in &samples {
            app.append(s.t, s.v).unwrap();
        }
        let bytes = app.into_bytes();
        let mut cell = Vec::new();
        put_varint(&mut cell, 500);
        put_uvarint(&mut cell, 90);
        put_uvarint(&mut cell, bytes.len() as u64);
        cell.extend_from_slice(&bytes);
        let chunks = decode_cell(&cell, 0, 1).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].encoding, ChunkEncoding::Xor);
        assert_eq!(decode_all(chunks[0].data).unwrap(), samples);
        let back: Vec<Sample> = chunks[0].samples().unwrap().map(Result::unwrap).collect();
        assert_eq!(back, samples);
    }

    #[test]
    fn corrupt_cells_are_errors() {
        assert!(decode_cell(&[0x02, 0x01, 0x7f], 0, 2).is_err());
        assert!(decode_cell(&[0xff], 0, 2).is_err());
        assert!(decode_cell(&[], 0, 2).unwrap().is_empty());
        // Format 2: an empty chunk, an unknown encoding.
        assert!(decode_cell(&[0x00, 0x00, 0x00], 0, 2).is_err());
        assert!(decode_cell(&[0x00, 0x00, 0x01, 0x09], 0, 2).is_err());
        assert_eq!(decode_cell(&[0x00, 0x00, 0x00], 0, 1).unwrap().len(), 1);
    }

    #[test]
    fn writes_a_parquet_file() {
        let min = 0;
        let all: Vec<BlockSeries> = (0..10)
            .map(|i| series(&format!("m{i}"), (0..100).map(|j| j * 15_000)))
            .collect();
        let b = write_block(&all, min, 7_200_000).unwrap();
        assert_eq!(b.num_series, 10);
        assert_eq!(b.num_samples, 1000);
        assert_eq!(b.chunk_columns, 4);
        assert_eq!(&b.parquet[..4], b"PAR1");
    }
}
