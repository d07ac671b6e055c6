//! Read-path metrics.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    status_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ])
}

/// Requests to the Prometheus API by endpoint and status, and their
/// durations.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
}

impl ApiMetrics {
    /// Creates the metrics and registers them:
    /// `tidemark_query_requests_total{endpoint,status_code}` and
    /// `tidemark_query_request_duration_seconds{endpoint}`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = ApiMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
        };
        registry.register(
            "tidemark_query_requests",
            "Requests to the Prometheus HTTP API by endpoint and HTTP status code",
            metrics.requests.clone(),
        );
        registry.register(
            "tidemark_query_request_duration_seconds",
            "Time to answer requests to the Prometheus HTTP API, by endpoint",
            metrics.duration.clone(),
        );
        metrics
    }

    /// Records one answered request.
    pub fn observe(&self, endpoint: &str, status: u16, elapsed: Duration) {
        let labels = RequestLabels {
            endpoint: endpoint.to_owned(),
            status_code: status.to_string(),
        };
        self.requests.get_or_create(&labels).inc();
        let labels = EndpointLabels {
            endpoint: endpoint.to_owned(),
        };
        self.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}
