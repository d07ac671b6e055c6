//! Tidemark's wire formats.
//!
//! * [`prometheus`]: Prometheus remote write 1.0 (`WriteRequest` and friends).
//! * [`ingest`]: the body of an ingest-log record, and [`record`] for the
//!   versioning rules that wrap it.
//! * [`ingester`]: the internal, streaming query API of partition consumers.

pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Tidemark's own messages, nested as their protobuf packages are.
pub mod tidemark {
    pub mod ingest {
        include!(concat!(env!("OUT_DIR"), "/tidemark.ingest.rs"));
    }

    pub mod ingester {
        include!(concat!(env!("OUT_DIR"), "/tidemark.ingester.rs"));
    }
}

pub use tidemark::{ingest, ingester};

pub mod record;
pub mod stream;
