//! The store-gateway: answers queries over the blocks of object storage.
//!
//! [`BlockStore`] is a [`tidemark_storage::Queryable`] over a
//! [`tidemark_block_storage::BucketIndex`] (refreshed every
//! `sync_interval` by [`run_sync`]) with three bounded `moka` caches: opened
//! blocks (meta and Parquet footer), the series (labels) of row groups, and
//! chunk columns. [`api::router`] serves it over the same internal protocol
//! as the ingesters, under `/internal/store-gateway/v1`.

pub mod api;
pub mod config;
pub mod metrics;
pub mod store;

pub use config::StoreGatewayConfig;
pub use metrics::StoreGatewayMetrics;
pub use store::{run_sync, BlockStore};
