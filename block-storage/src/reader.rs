//! Reading a block: the footer once, then per row group the label columns
//! (to select series) and only the chunk columns whose time slice a query
//! needs. Row groups are skipped by the statistics of `l___name__` (and any
//! other equality matcher) and of the time columns.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, BinaryArray, RecordBatch};
use futures::TryStreamExt;
use object_store::ObjectStore;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::file::statistics::Statistics;
use tidemark_storage::{Label, Labels, MatchOp, Matcher};

use crate::format::{
    decode_cell, CellChunk, CHUNKS_COLUMN_PREFIX, LABEL_COLUMN_PREFIX, MAX_T_COLUMN, MIN_T_COLUMN,
    ROWS_PER_ROW_GROUP,
};
use crate::meta::{series_path, BlockMeta, FORMAT_VERSION};
use crate::BlockError;

/// An opened block: its meta and Parquet footer.
pub struct BlockReader {
    store: Arc<dyn ObjectStore>,
    pub meta: Arc<BlockMeta>,
    arrow: ArrowReaderMetadata,
    min_t_col: usize,
    max_t_col: usize,
    chunk_cols: Vec<usize>,
    /// Label columns by name, sorted by name.
    label_cols: Vec<(String, usize)>,
}

/// The series of one row group, without samples.
#[derive(Debug, Clone, Default)]
pub struct RowGroupSeries {
    pub labels: Vec<Labels>,
    pub min_t: Vec<i64>,
    pub max_t: Vec<i64>,
}

impl RowGroupSeries {
    /// Rough heap size, for cache weights.
    pub fn heap_bytes(&self) -> usize {
        self.labels
            .iter()
            .map(|l| {
                24 + l
                    .iter()
                    .map(|x| 48 + x.name.len() + x.value.len())
                    .sum::<usize>()
            })
            .sum::<usize>()
            + self.min_t.len() * 16
    }
}

impl BlockReader {
    pub async fn open(store: Arc<dyn ObjectStore>, meta: Arc<BlockMeta>) -> Result<Self, BlockError> {
        let corrupt = |message: String| BlockError::Corrupt {
            block: meta.block_id.clone(),
            message,
        };
        if meta.version == 0 || meta.version > FORMAT_VERSION {
            return Err(corrupt(format!(
                "block format version {} is not supported (this build reads 1 to {FORMAT_VERSION})",
                meta.version
            )));
        }
        let mut reader = object_reader(&store, &meta);
        // The Arrow schema is derived from the Parquet schema, not decoded
        // from the footer's embedded `ARROW:schema` IPC message: arrow-ipc
        // panics on a corrupt one, and the Parquet schema gives the same
        // types for this layout (int64, binary, utf8).
        let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
        let arrow = no_panic(&meta.block_id, async {
            Ok(ArrowReaderMetadata::load_async(&mut reader, options).await?)
        })
        .await?;
        let schema = arrow.schema().clone();
        let find = |name: &str| {
            schema
                .index_of(name)
                .map_err(|_| corrupt(format!("column {name} missing")))
        };
        let min_t_col = find(MIN_T_COLUMN)?;
        let max_t_col = find(MAX_T_COLUMN)?;
        let chunk_cols = (0..meta.chunk_columns)
            .map(|k| find(&format!("{CHUNKS_COLUMN_PREFIX}{k}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut label_cols: Vec<(String, usize)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                f.name()
                    .strip_prefix(LABEL_COLUMN_PREFIX)
                    .map(|n| (n.to_owned(), i))
            })
            .collect();
        label_cols.sort();
        Ok(BlockReader {
            store,
            meta,
            arrow,
            min_t_col,
            max_t_col,
            chunk_cols,
            label_cols,
        })
    }

    pub fn num_row_groups(&self) -> usize {
        self.arrow.metadata().num_row_groups()
    }

    /// Rough heap size of the footer, for cache weights.
    pub fn heap_bytes(&self) -> usize {
        self.arrow.metadata().memory_size() + self.label_cols.len() * 64
    }

    /// Whether row group `rg` may hold a series matching `matchers` with
    /// samples in `[start, end]`, from the row group's statistics.
    pub fn row_group_may_match(&self, rg: usize, matchers: &[Matcher], start: i64, end: i64) -> bool {
        let md = self.arrow.metadata().row_group(rg);
        if let Some(Statistics::Int64(s)) = md.column(self.min_t_col).statistics() {
            if s.min_opt().is_some_and(|&m| m > end) {
                return false;
            }
        }
        if let Some(Statistics::Int64(s)) = md.column(self.max_t_col).statistics() {
            if s.max_opt().is_some_and(|&m| m < start) {
                return false;
            }
        }
        for m in matchers {
            let values: Vec<String> = match m.op {
                MatchOp::Equal => vec![m.value.clone()],
                MatchOp::Regex => match m.set_matches() {
                    Some(v) => v,
                    None => continue,
                },
                _ => continue,
            };
            if values.iter().any(|v| v.is_empty()) {
                continue;
            }
            let Some(&(_, col)) = self.label_cols.iter().find(|(n, _)| *n == m.name) else {
                // No series of the block has the label: every value is "".
                return false;
            };
            if let Some(Statistics::ByteArray(s)) = md.column(col).statistics() {
                if let (Some(min), Some(max)) = (s.min_opt(), s.max_opt()) {
                    let (min, max) = (min.data(), max.data());
                    if !values
                        .iter()
                        .any(|v| v.as_bytes() >= min && v.as_bytes() <= max)
                    {
                        return false;
                    }
                }
            }
        }
        true
    }

    async fn read_columns(&self, rg: usize, columns: Vec<usize>) -> Result<Vec<RecordBatch>, BlockError> {
        let mask = ProjectionMask::roots(self.arrow.metadata().file_metadata().schema_descr(), columns);
        let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(
            object_reader(&self.store, &self.meta),
            self.arrow.clone(),
        )
        .with_projection(mask)
        .with_row_groups(vec![rg])
        .with_batch_size(ROWS_PER_ROW_GROUP)
        .build()?;
        no_panic(&self.meta.block_id, async { Ok(stream.try_collect().await?) }).await
    }

    /// The series of row group `rg`: label columns and time columns only.
    pub async fn read_series(&self, rg: usize) -> Result<RowGroupSeries, BlockError> {
        let mut cols = vec![self.min_t_col, self.max_t_col];
        cols.extend(self.label_cols.iter().map(|(_, i)| *i));
        let batches = self.read_columns(rg, cols).await?;
        let mut out = RowGroupSeries::default();
        for b in batches {
            let schema = b.schema();
            let col = |name: &str| schema.index_of(name).ok().map(|i| b.column(i).clone());
            let (Some(min_t), Some(max_t)) = (col(MIN_T_COLUMN), col(MAX_T_COLUMN)) else {
                return Err(self.corrupt("time columns missing from a batch"));
            };
            let min_t = min_t.as_primitive_opt::<Int64Type>().ok_or_else(|| self.corrupt("s_min_t is not int64"))?;
            let max_t = max_t.as_primitive_opt::<Int64Type>().ok_or_else(|| self.corrupt("s_max_t is not int64"))?;
            let mut label_arrays = Vec::with_capacity(self.label_cols.len());
            for (name, _) in &self.label_cols {
                let a = col(&format!("{LABEL_COLUMN_PREFIX}{name}"))
                    .ok_or_else(|| self.corrupt("label column missing from a batch"))?;
                label_arrays.push((name.as_str(), a));
            }
            let mut string_arrays = Vec::with_capacity(label_arrays.len());
            for (name, a) in &label_arrays {
                let s = a
                    .as_string_opt::<i32>()
                    .ok_or_else(|| self.corrupt("label column is not utf8"))?;
                string_arrays.push((*name, s));
            }
            for row in 0..b.num_rows() {
                let mut labels = Vec::new();
                for (name, a) in &string_arrays {
                    if a.is_valid(row) {
                        let v = a.value(row);
                        if !v.is_empty() {
                            labels.push(Label::new(*name, v));
                        }
                    }
                }
                out.labels.push(Labels::from_sorted(labels));
                out.min_t.push(min_t.value(row));
                out.max_t.push(max_t.value(row));
            }
        }
        Ok(out)
    }

    /// The chunk column of slice `slice` in row group `rg`, one cell per row.
    pub async fn read_chunk_column(&self, rg: usize, slice: usize) -> Result<BinaryArray, BlockError> {
        let col = *self
            .chunk_cols
            .get(slice)
            .ok_or_else(|| self.corrupt("chunk slice out of range"))?;
        let batches = self.read_columns(rg, vec![col]).await?;
        let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(0).as_ref()).collect();
        let joined = arrow_select_concat(&arrays)?;
        joined
            .as_binary_opt::<i32>()
            .cloned()
            .ok_or_else(|| self.corrupt("chunk column is not binary"))
    }

    /// The slices whose time overlaps `[start, end]`.
    pub fn slices_for(&self, start: i64, end: i64) -> std::ops::Range<usize> {
        let n = self.chunk_cols.len();
        if end < self.meta.min_time || start >= self.meta.max_time || n == 0 {
            return 0..0;
        }
        let w = self.meta.slice_width().max(1);
        let slice = |t: i64| {
            let t = t.clamp(self.meta.min_time, self.meta.max_time - 1);
            (((t - self.meta.min_time) / w) as usize).min(n - 1)
        };
        slice(start)..slice(end) + 1
    }

    /// The label names of the block's series.
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.label_cols.iter().map(|(n, _)| n.as_str())
    }

    /// The chunks of one cell.
    pub fn decode<'a>(&self, cell: &'a [u8]) -> Result<Vec<CellChunk<'a>>, BlockError> {
        decode_cell(cell, self.meta.min_time, self.meta.version).map_err(|m| self.corrupt(&m))
    }

    fn corrupt(&self, message: &str) -> BlockError {
        BlockError::Corrupt {
            block: self.meta.block_id.clone(),
            message: message.to_owned(),
        }
    }
}

/// Runs a Parquet decoding step, turning a panic of the parquet or arrow
/// crates on corrupt data (their page decoders assert instead of failing on
/// some corruptions; pages carry no checksum) into an error of the block.
async fn no_panic<T>(
    block: &str,
    fut: impl std::future::Future<Output = Result<T, BlockError>>,
) -> Result<T, BlockError> {
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("panic");
            Err(BlockError::Corrupt {
                block: block.to_owned(),
                message: format!("undecodable Parquet data: {what}"),
            })
        }
    }
}

fn object_reader(store: &Arc<dyn ObjectStore>, meta: &BlockMeta) -> ObjectReader {
    ObjectReader {
        store: store.clone(),
        path: series_path(&meta.tenant, &meta.block_id),
        size: meta.series_file_size,
    }
}

/// Reads a Parquet file of known size from the bucket by ranges.
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn parquet_err(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: std::ops::Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move { self.store.get_range(&self.path, range).await.map_err(parquet_err) }.boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(parquet_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let md = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(md))
        }
        .boxed()
    }
}

/// Concatenates binary arrays (a row group usually comes as one batch).
fn arrow_select_concat(arrays: &[&dyn Array]) -> Result<arrow_array::ArrayRef, BlockError> {
    match arrays {
        [] => Ok(Arc::new(BinaryArray::from(Vec::<Option<&[u8]>>::new()))),
        [one] => Ok(arrow_array::make_array(one.to_data())),
        many => {
            let mut b = arrow_array::builder::BinaryBuilder::new();
            for a in many {
                let a = a.as_binary_opt::<i32>().ok_or_else(|| BlockError::Corrupt {
                    block: "(reading)".into(),
                    message: "chunk column is not binary".into(),
                })?;
                for v in a.iter() {
                    match v {
                        Some(v) => b.append_value(v),
                        None => b.append_null(),
                    }
                }
            }
            Ok(Arc::new(b.finish()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{write_block, BlockSeries};
    use crate::meta::BlockSource;
    use crate::upload::{read_meta, upload_block};
    use object_store::local::LocalFileSystem;
    use tidemark_storage::Sample;

    pub(crate) async fn write_test_block(
        store: &Arc<dyn ObjectStore>,
        tenant: &str,
        names: usize,
        per_name: usize,
    ) -> BlockMeta {
        let mut series = Vec::new();
        for n in 0..names {
            for i in 0..per_name {
                series.push(BlockSeries {
                    labels: Labels::from_pairs([
                        ("__name__", format!("metric_{n:03}").as_str()),
                        ("instance", format!("i{i:04}").as_str()),
                    ]),
                    samples: (0..480)
                        .map(|k| Sample {
                            t: k * 15_000,
                            v: (n * 1000 + i) as f64 + k as f64,
                        })
                        .collect(),
                });
            }
        }
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let built = write_block(&series, 0, 7_200_000).unwrap();
        let source = BlockSource {
            partition: 0,
            from_offset: 0,
            to_offset: 1,
        };
        let meta = BlockMeta::new(tenant, "b1".into(), 0, 7_200_000, &built, vec![source]);
        upload_block(store, &meta, &built).await.unwrap();
        meta
    }

    #[tokio::test]
    async fn reads_back_labels_and_chunks_and_prunes_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        // 3 names x 3000 series: several row groups sorted by name.
        let meta = write_test_block(&store, "t", 3, 3000).await;
        assert_eq!(read_meta(&store, "t", "b1").await.unwrap(), meta);
        let r = BlockReader::open(store.clone(), Arc::new(meta)).await.unwrap();
        assert!(r.num_row_groups() >= 3);
        let m = [Matcher::equal("__name__", "metric_002")];
        let candidates: Vec<usize> = (0..r.num_row_groups())
            .filter(|&rg| r.row_group_may_match(rg, &m, 0, i64::MAX))
            .collect();
        assert!(candidates.len() < r.num_row_groups(), "{candidates:?}");
        assert!(!r.row_group_may_match(0, &[Matcher::equal("job", "x")], 0, i64::MAX));
        assert!(!r.row_group_may_match(0, &[], 7_200_000, i64::MAX));
        let mut found = 0;
        for rg in candidates {
            let s = r.read_series(rg).await.unwrap();
            assert_eq!(s.labels.len(), s.min_t.len());
            let col = r.read_chunk_column(rg, 1).await.unwrap();
            for (row, l) in s.labels.iter().enumerate() {
                if l.metric_name() != Some("metric_002") {
                    continue;
                }
                found += 1;
                let chunks = r.decode(col.value(row)).unwrap();
                let samples: Vec<Sample> = chunks.iter().flat_map(|c| c.samples().unwrap().map(Result::unwrap)).collect();
                assert_eq!(samples.len(), 120);
                assert_eq!(samples[0].t, 1_800_000);
            }
        }
        assert_eq!(found, 3000);
        assert_eq!(r.slices_for(0, 10), 0..1);
        assert_eq!(r.slices_for(1_800_000, 5_400_000), 1..4);
        assert_eq!(r.slices_for(7_200_000, 9_000_000), 0..0);
        assert_eq!(r.slices_for(i64::MIN, i64::MAX), 0..4);
        assert_eq!(r.label_names().collect::<Vec<_>>(), vec!["__name__", "instance"]);
    }
}
