//! A block's `meta.json` and the layout of a block in the bucket:
//!
//! ```text
//! <tenant>/<block-id>/series.parquet   the series (see `format`)
//! <tenant>/<block-id>/meta.json        written last: the block exists once it does
//! <tenant>/<block-id>/deletion-mark.json  set by the compactor on replaced blocks
//! ```

use object_store::path::Path;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh64::xxh64;

/// Version of the block format this build writes. Readers accept every
/// version up to this one: 1 (XOR chunks), 2 (each chunk tagged with its
/// encoding, XOR or decimal).
pub const FORMAT_VERSION: u32 = 2;

pub const META_FILE: &str = "meta.json";
pub const SERIES_FILE: &str = "series.parquet";
pub const DELETION_MARK_FILE: &str = "deletion-mark.json";

/// Where a block's data came from: records `[from_offset, to_offset)` of a
/// partition of the ingest log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlockSource {
    pub partition: i32,
    pub from_offset: i64,
    pub to_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// Block format version.
    pub version: u32,
    pub block_id: String,
    pub tenant: String,
    /// The block's time range `[min_time, max_time)`, in milliseconds,
    /// aligned to its range (2h for fresh blocks).
    pub min_time: i64,
    pub max_time: i64,
    /// First and last sample in the block.
    pub data_min_time: i64,
    pub data_max_time: i64,
    pub num_series: u64,
    pub num_samples: u64,
    pub num_chunks: u64,
    /// Number of chunk columns; column `k` holds the chunks of the `k`-th
    /// equal slice of `[min_time, max_time)`.
    pub chunk_columns: u32,
    /// 1 for a block cut by the block-builder, one more per compaction.
    pub compaction_level: u32,
    /// Blocks merged into this one (compactor), empty for a fresh block.
    #[serde(default)]
    pub compacted_from: Vec<String>,
    pub sources: Vec<BlockSource>,
    /// Size of `series.parquet` in bytes.
    pub series_file_size: u64,
}

/// Written next to a block the compactor has replaced; the block is
/// deleted once `deletion_time` is older than the deletion delay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletionMark {
    pub block_id: String,
    /// Milliseconds since the epoch.
    pub deletion_time: i64,
}

impl BlockMeta {
    /// The meta of a fresh (level 1) block of `[min_time, max_time)` built
    /// from `sources`.
    pub fn new(
        tenant: &str,
        block_id: String,
        min_time: i64,
        max_time: i64,
        built: &crate::format::BuiltBlock,
        sources: Vec<BlockSource>,
    ) -> Self {
        BlockMeta {
            version: FORMAT_VERSION,
            block_id,
            tenant: tenant.to_owned(),
            min_time,
            max_time,
            data_min_time: built.data_min_time,
            data_max_time: built.data_max_time,
            num_series: built.num_series,
            num_samples: built.num_samples,
            num_chunks: built.num_chunks,
            chunk_columns: built.chunk_columns,
            compaction_level: 1,
            compacted_from: Vec::new(),
            sources,
            series_file_size: built.parquet.len() as u64,
        }
    }

    /// Width of one chunk column's time slice.
    pub fn slice_width(&self) -> i64 {
        let n = i64::from(self.chunk_columns.max(1));
        ((self.max_time - self.min_time) + n - 1) / n
    }

    pub fn overlaps(&self, start_ms: i64, end_ms: i64) -> bool {
        self.data_min_time <= end_ms && self.data_max_time >= start_ms
    }
}

/// The identity of a block cut by the block-builder: the same partition,
/// offset range, tenant and window always give the same ID, so a redo after
/// a crash overwrites the block instead of adding a copy.
pub fn builder_block_id(tenant: &str, window_start_ms: i64, source: &BlockSource) -> String {
    let h = xxh64(tenant.as_bytes(), 0);
    format!(
        "{window_start_ms:013}-p{}-{}-{}-{h:08x}",
        source.partition,
        source.from_offset,
        source.to_offset,
        h = h as u32
    )
}

/// The identity of a compacted block: from the blocks it replaces.
pub fn compacted_block_id(min_time: i64, level: u32, sources: &[String]) -> String {
    let mut sorted: Vec<&str> = sources.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let h = xxh64(sorted.join(",").as_bytes(), 0);
    format!("{min_time:013}-c{level}-{h:016x}")
}

fn block_path(tenant: &str, block_id: &str, file: &str) -> Path {
    Path::from_iter([tenant, block_id, file])
}

pub fn meta_path(tenant: &str, block_id: &str) -> Path {
    block_path(tenant, block_id, META_FILE)
}

pub fn series_path(tenant: &str, block_id: &str) -> Path {
    block_path(tenant, block_id, SERIES_FILE)
}

pub fn deletion_mark_path(tenant: &str, block_id: &str) -> Path {
    block_path(tenant, block_id, DELETION_MARK_FILE)
}

/// The prefix of a tenant's blocks.
pub fn tenant_prefix(tenant: &str) -> Path {
    Path::from_iter([tenant])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_tenant_scoped() {
        let s = BlockSource {
            partition: 1,
            from_offset: 10,
            to_offset: 20,
        };
        assert_eq!(builder_block_id("a", 7_200_000, &s), builder_block_id("a", 7_200_000, &s));
        assert_ne!(builder_block_id("a", 7_200_000, &s), builder_block_id("b", 7_200_000, &s));
        let x = compacted_block_id(0, 2, &["b".into(), "a".into()]);
        assert_eq!(x, compacted_block_id(0, 2, &["a".into(), "b".into()]));
    }

    #[test]
    fn crafted_tenants_stay_inside_their_prefix() {
        // Tenant IDs are validated upstream; even so a path part can never
        // climb out of its prefix.
        let p = meta_path("a*b(c)", "x");
        assert_eq!(p.parts().count(), 3);
        assert!(p.as_ref().starts_with("a*b(c)/") || p.as_ref().starts_with("a%2Ab"));
    }
}
