//! Read path: a streaming PromQL engine, the querier's client of the
//! partition consumers' internal API, and the Prometheus HTTP API.
//!
//! * [`engine`]: parses and evaluates PromQL over any
//!   [`tidemark_storage::Queryable`].
//! * [`ingester_client`]: a `Queryable` that fans out to partition
//!   consumers over HTTP and merges their streams.
//! * [`tiered`]: recent time from ingesters, older time from the
//!   store-gateways, merged.
//! * [`wire`]: re-export of `tidemark_storage::wire`, the internal API's protobuf conversions.
//! * [`api`]: the Prometheus HTTP API (`/api/v1/query`, ...).

pub mod api;
pub mod engine;
pub mod ingester_client;
pub mod tiered;
pub use tidemark_storage::wire;

/// An in-memory `Queryable` for tests (unit and integration).
#[doc(hidden)]
pub mod test_store;

pub use api::{router, ApiState};
pub use engine::{Engine, EngineOptions};
pub use ingester_client::IngesterClient;
pub use tiered::{TieredOptions, TieredQueryable};
