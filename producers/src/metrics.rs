//! The distributor's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DiscardLabels {
    pub tenant: String,
    pub reason: String,
}

#[derive(Debug)]
pub struct DistributorMetrics {
    pub requests: Family<StatusLabels, Counter>,
    pub received_samples: Family<TenantLabels, Counter>,
    pub discarded_samples: Family<DiscardLabels, Counter>,
    /// Requests refused whole before reading their samples (request rate).
    pub discarded_requests: Family<DiscardLabels, Counter>,
    pub records_produced: Counter,
    pub produce_duration: Histogram,
}

impl DistributorMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = DistributorMetrics {
            requests: Family::default(),
            received_samples: Family::default(),
            discarded_samples: Family::default(),
            discarded_requests: Family::default(),
            records_produced: Counter::default(),
            produce_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        };
        let r = registry.sub_registry_with_prefix("tidemark_distributor");
        r.register(
            "push_requests",
            "Push requests by HTTP status",
            m.requests.clone(),
        );
        r.register(
            "received_samples",
            "Samples written to the ingest log",
            m.received_samples.clone(),
        );
        r.register(
            "discarded_samples",
            "Samples refused by validation or a rate limit",
            m.discarded_samples.clone(),
        );
        r.register(
            "discarded_requests",
            "Push requests refused whole before their samples were read, by reason (request_rate_limited)",
            m.discarded_requests.clone(),
        );
        r.register(
            "records_produced",
            "Ingest-log records produced",
            m.records_produced.clone(),
        );
        r.register(
            "produce_duration_seconds",
            "Time from a request's first produce to the last acknowledgement",
            m.produce_duration.clone(),
        );
        m
    }

    pub fn unregistered() -> Self {
        Self::new(&mut Registry::default())
    }
}
