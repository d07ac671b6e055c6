//! The distributor: the write path's front door.
//!
//! It accepts Prometheus remote write 1.0 and 2.0 ([`rw2`]) and OTLP/HTTP
//! metrics ([`otlp`]) over HTTP ([`http`]), names the tenant ([`tenant`]), reads 1.0 requests in place
//! ([`scan`]), validates every
//! series ([`validation`]), shards the tenant's
//! series over the ingest log's partitions ([`shard`]), encodes one record
//! batch per partition ([`records`]) and answers only after the log
//! acknowledged every record ([`distributor`]).

pub mod config;
pub mod distributor;
pub mod error;
pub mod http;
pub mod metrics;
pub mod otlp;
pub mod records;
pub mod rw2;
pub use tidemark_schemas::scan;
pub mod shard;
pub mod validation;

pub use config::DistributorConfig;
pub use distributor::{Distributor, PushOutcome};
pub use error::PushError;
pub use tidemark_storage::tenant;
