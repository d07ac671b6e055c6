//! Partition consumers: Tidemark's ingesters.
//!
//! Each [`consumer::PartitionConsumer`] reads one partition of the ingest log
//! into a [`head::Head`]: per-tenant in-memory series with an inverted index
//! and XOR-compressed chunks. The [`service::Ingester`] runs the consumers a
//! process owns, reports readiness, and answers queries for recent data,
//! in-process ([`service::Ingester`] implements `Queryable`) and over the
//! internal streaming HTTP API ([`api`]).

pub mod api;
pub mod config;
pub mod consumer;
pub mod head;
pub mod metrics;
pub mod service;

pub use config::IngesterConfig;
pub use service::Ingester;
