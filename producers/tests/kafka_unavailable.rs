//! The distributor over Kafka (librdkafka's mock cluster, real protocol over
//! TCP): a 2xx only once Kafka acknowledged, a 503 (so that Prometheus
//! retries) when Kafka does not, and writes succeed again once it is back.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use prost::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tidemark_ingest_log::kafka::{KafkaConfig, KafkaLog};
use tidemark_ingest_log::IngestLog;
use tidemark_producers::http::{router, PushState};
use tidemark_producers::metrics::DistributorMetrics;
use tidemark_producers::{Distributor, DistributorConfig};
use tidemark_schemas::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use tower::ServiceExt;

fn body(name: &str) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let req = WriteRequest {
        timeseries: (0..10)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: Bytes::from_static(b"__name__"),
                        value: Bytes::copy_from_slice(name.as_bytes()),
                    },
                    Label {
                        name: Bytes::from_static(b"i"),
                        value: Bytes::copy_from_slice(i.to_string().as_bytes()),
                    },
                ],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: now,
                }],
                exemplars: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

async fn push(app: &axum::Router, body: Vec<u8>) -> StatusCode {
    let req = Request::post("/api/v1/push")
        .header("X-Scope-OrgID", "t")
        .header("Content-Type", "application/x-protobuf")
        .body(Body::from(body))
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_answers_503_and_recovers() {
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
    cluster.create_topic("push", 2, 1).unwrap();
    let cfg = KafkaConfig {
        address: cluster.bootstrap_servers(),
        topic: "push".into(),
        write_timeout: Duration::from_secs(2),
        ..KafkaConfig::default()
    };
    let log: Arc<dyn IngestLog> = Arc::new(KafkaLog::connect(&cfg).await.unwrap());
    let d = Distributor::new(
        log.clone(),
        DistributorConfig::default(),
        Arc::new(DistributorMetrics::unregistered()),
    );
    let app = router(PushState {
        distributor: Arc::new(d),
        multitenancy_enabled: true,
    });

    assert_eq!(push(&app, body("before")).await, StatusCode::OK);
    let acked: i64 = log.latest_offset(0).await.unwrap() + log.latest_offset(1).await.unwrap();
    assert!(acked >= 1, "the 2xx came after Kafka acknowledged");

    cluster.broker_down(1).unwrap();
    let status = push(&app, body("during")).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "Kafka down is our fault: a retryable 5xx"
    );

    cluster.broker_up(1).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if push(&app, body("after")).await == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes did not recover after Kafka came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
