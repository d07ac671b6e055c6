//! Tidemark's long-term storage, shared by the block-builder, the
//! store-gateway and the compactor:
//!
//! * [`bucket`]: object storage (local disk, S3, GCS, Azure) from one
//!   validated config with Mimir's flag names;
//! * [`meta`]: a block's `meta.json` and where a block's files live;
//! * [`format`]: the Parquet layout of a block (label columns, time-sliced
//!   chunk columns) and its writer;
//! * [`decimal`]: the chunk encoding for values that are short decimals
//!   (most of what exporters report), XOR being the other;
//! * [`reader`]: reading a block back: row groups pruned by statistics,
//!   label columns alone to select series, chunk columns for the time asked;
//! * [`select`]: the matching series of a block as a sorted stream;
//! * [`index`]: the per-tenant bucket index (the visible blocks of every
//!   tenant), built from the bucket and refreshed periodically;
//! * [`upload`]: writing a block so that it becomes visible only once whole.

pub mod bucket;
pub mod decimal;
pub mod format;
pub mod index;
pub mod meta;
pub mod reader;
pub mod select;
pub mod upload;
mod varint;

pub use bucket::{BucketConfig, StorageBackend};
pub use format::{BlockSeries, BuiltBlock};
pub use index::BucketIndex;
pub use meta::{BlockMeta, BlockSource};

/// Errors of the block storage.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("object storage: {0}")]
    Bucket(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("block {block}: invalid meta.json: {error}")]
    Meta {
        block: String,
        error: serde_json::Error,
    },
    #[error("block {block}: {message}")]
    Corrupt { block: String, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl From<BlockError> for tidemark_storage::StorageError {
    fn from(e: BlockError) -> Self {
        match e {
            BlockError::Bucket(_) => tidemark_storage::StorageError::Unavailable(e.to_string()),
            _ => tidemark_storage::StorageError::Internal(e.to_string()),
        }
    }
}
