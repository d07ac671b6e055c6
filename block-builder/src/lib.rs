//! The block-builder: reads every partition of the ingest log on its own
//! schedule, independently of the ingesters, and turns what it read into
//! per-tenant blocks in object storage.
//!
//! A cycle runs every `consume_interval`. For each partition it consumes
//! from its committed offset up to the first record written at or after
//! the cycle's boundary, groups the samples by tenant and 2h window (late
//! samples go to the block of their window), uploads one block per tenant
//! and window, and only then commits the end offset. The offset range is
//! recorded in the bucket before consuming, so that a redo after a crash
//! reads exactly the same records and writes blocks of the same identity,
//! overwriting rather than duplicating them.

pub mod accumulate;
pub mod builder;
pub mod config;
pub mod metrics;

pub use builder::{BlockBuilder, BuildSummary};
pub use config::BlockBuilderConfig;
pub use metrics::BlockBuilderMetrics;

/// Errors of a block-builder cycle; the cycle is retried.
#[derive(Debug, thiserror::Error)]
pub enum BuilderError {
    #[error("ingest log: {0}")]
    Log(#[from] tidemark_ingest_log::LogError),
    #[error("block storage: {0}")]
    Blocks(#[from] tidemark_block_storage::BlockError),
    #[error("object storage: {0}")]
    Bucket(#[from] object_store::Error),
    #[error("{0}")]
    Other(String),
}
