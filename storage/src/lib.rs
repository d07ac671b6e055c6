//! Tidemark's series storage format and the storage interface the query
//! engine reads through.
//!
//! * [`labels`]: label sets, sorted by name, and their hashes.
//! * [`matcher`]: Prometheus label matchers (`=`, `!=`, `=~`, `!~`).
//! * [`chunk`]: Gorilla/XOR-compressed sample chunks, Prometheus' encoding.
//! * [`queryable`]: the interface every store (ingesters, object storage,
//!   test data) implements for the query engine, and the series stream it
//!   returns.
//! * [`wire`]: conversions to and from the partition consumers' internal
//!   query API (protobuf).

pub mod chunk;
pub mod labels;
pub mod matcher;
pub mod queryable;
pub mod tenant;
pub mod wire;

pub use labels::{Label, Labels};
pub use matcher::{MatchOp, Matcher};
pub use queryable::{MetricMetadata, Queryable, SelectHints, Series, SeriesStream, StorageError};

/// A sample: milliseconds since the epoch and a float value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

/// The value Prometheus writes to mark a series stale (a NaN with a fixed
/// bit pattern, distinct from an ordinary NaN).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}
