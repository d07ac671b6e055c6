//! Tidemark's wire formats.
//!
//! * [`prometheus`]: Prometheus remote write 1.0 (`WriteRequest` and friends)
//!   and remote read (`ReadRequest`, `ReadResponse`).
//! * [`write_v2`]: Prometheus remote write 2.0 (`io.prometheus.write.v2`).
//! * [`ingest`]: the body of an ingest-log record, and [`record`] for the
//!   versioning rules that wrap it.
//! * [`ingester`]: the internal, streaming query API of partition consumers.
//! * [`scan`]: reading remote-write requests and records in place.

pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Prometheus remote write 2.0, nested as its protobuf package is.
pub mod io {
    pub mod prometheus {
        pub mod write {
            pub mod v2 {
                include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
            }
        }
    }
}

pub use io::prometheus::write::v2 as write_v2;

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
pub mod scan;
pub mod stream;
