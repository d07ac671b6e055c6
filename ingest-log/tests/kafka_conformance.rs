//! The ingest-log conformance suite against [`KafkaLog`]: on librdkafka's
//! mock cluster (always), and on a real Kafka-protocol broker (ignored by
//! default; `scripts/kafka-broker.sh start` then set
//! `TIDEMARK_TEST_KAFKA_ADDRESS`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tidemark_ingest_log::conformance::{self, record};
use tidemark_ingest_log::kafka::{KafkaCompression, KafkaConfig, KafkaLog};
use tidemark_ingest_log::{IngestLog, LogError};

type Mock = MockCluster<'static, DefaultProducerContext>;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn unique_topic(prefix: &str) -> String {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn config(address: &str, topic: &str) -> KafkaConfig {
    KafkaConfig {
        address: address.into(),
        topic: topic.into(),
        ..KafkaConfig::default()
    }
}

/// A fresh 2-partition topic on the mock cluster and a log connected to it.
/// The mock broker has no CreateTopics API, so the topic is made through the
/// mock's own API.
async fn mock_log(cluster: &Mock) -> Arc<dyn IngestLog> {
    let topic = unique_topic("conformance");
    cluster
        .create_topic(&topic, 2, 3)
        .expect("create mock topic");
    let log = KafkaLog::connect(&config(&cluster.bootstrap_servers(), &topic))
        .await
        .expect("connect");
    assert_eq!(log.partition_count(), 2);
    Arc::new(log)
}

/// Every conformance check but `offset_for_timestamp` (see
/// [`mock_cluster_offset_for_timestamp`]), in `run_all`'s order, each on a
/// fresh topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_conformance() {
    init_tracing();
    let cluster = MockCluster::new(3).expect("mock cluster");
    let make = || mock_log(&cluster);
    conformance::produce_then_read_in_order(make().await).await;
    conformance::partitions_are_independent(make().await).await;
    conformance::offsets_and_watermarks(make().await).await;
    conformance::committed_offsets_per_group(make().await).await;
    conformance::reader_waits_for_new_records(make().await).await;
    conformance::concurrent_producers_all_acknowledged(make().await).await;
    conformance::unknown_partition_is_an_error(make().await).await;
    conformance::readers_reuse_memory_once_records_are_dropped(make().await).await;
}

// offset_for_timestamp is not run here: librdkafka's mock broker answers
// every ListOffsets-by-timestamp with -1 (librdkafka 2.12,
// rdkafka_mock_handlers.c). `real_broker_conformance` runs it against a real
// broker.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_closed_port_fails_fast_naming_the_address() {
    init_tracing();
    let started = Instant::now();
    let err = KafkaLog::connect(&config("127.0.0.1:1", "tidemark"))
        .await
        .expect_err("nothing listens on port 1");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "connect took {took:?}");
    assert!(matches!(err, LogError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    let msg = err.to_string();
    assert!(
        msg.contains("cannot reach Kafka brokers at 127.0.0.1:1"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topic_without_auto_create_is_a_config_error() {
    init_tracing();
    let cluster = MockCluster::new(1).expect("mock cluster");
    let cfg = KafkaConfig {
        auto_create_topic_enabled: false,
        ..config(&cluster.bootstrap_servers(), &unique_topic("missing"))
    };
    let err = KafkaLog::connect(&cfg).await.expect_err("topic is missing");
    assert!(matches!(err, LogError::Config(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_record_and_offset_past_the_end_are_typed_errors() {
    init_tracing();
    let cluster = MockCluster::new(3).expect("mock cluster");
    let topic = unique_topic("limits");
    cluster
        .create_topic(&topic, 2, 3)
        .expect("create mock topic");
    let cfg = KafkaConfig {
        producer_max_record_size_bytes: 4096,
        producer_compression: KafkaCompression::Zstd,
        ..config(&cluster.bootstrap_servers(), &topic)
    };
    let log = KafkaLog::connect(&cfg).await.expect("connect");

    let mut big = record("t", "");
    big.value = vec![7u8; 5000].into();
    let err = log
        .produce(0, vec![record("t", "ok"), big])
        .await
        .expect_err("too large");
    assert!(
        matches!(err, LogError::RecordTooLarge { limit: 4096, .. }),
        "{err:?}"
    );
    assert_eq!(
        log.latest_offset(0).await.expect("latest"),
        0,
        "nothing of the rejected call was written"
    );

    log.produce(0, vec![record("t", "a"), record("t", "b")])
        .await
        .expect("produce");
    let err = log.reader(0, 3).await.err().expect("offset past the end");
    assert!(
        matches!(
            err,
            LogError::OffsetOutOfRange {
                offset: 3,
                earliest: 0,
                latest: 2,
                ..
            }
        ),
        "{err:?}"
    );
    // At the end is fine: the reader waits for the next record.
    let mut reader = log.reader(0, 2).await.expect("reader at the end");
    assert!(reader
        .poll(Duration::from_millis(100))
        .await
        .expect("poll")
        .is_empty());
    // Before the beginning is clamped.
    let got = conformance::read_n(&log, 0, -5, 2).await;
    assert_eq!(got.iter().map(|c| c.offset).collect::<Vec<_>>(), [0, 1]);
}

#[test]
fn config_defaults_serde_and_redaction() {
    let cfg: KafkaConfig = serde_json::from_str(
        r#"{"address": "k1:9092,k2:9092", "producer_linger": "20ms", "producer_compression": "zstd",
            "sasl_username": "u", "sasl_password": "hunter2", "extra": {"socket.keepalive.enable": "true"}}"#,
    )
    .expect("parse");
    assert_eq!(cfg.topic, "tidemark");
    assert_eq!(cfg.write_timeout, Duration::from_secs(10));
    assert_eq!(cfg.producer_linger, Duration::from_millis(20));
    assert_eq!(cfg.producer_compression, KafkaCompression::Zstd);
    assert_eq!(cfg.auto_create_topic_default_partitions, 2);
    cfg.validate().expect("valid");

    let json = serde_json::to_string(&cfg).expect("serialize");
    assert!(!json.contains("hunter2"), "{json}");
    assert!(json.contains(r#""sasl_password":"<redacted>""#), "{json}");
    assert!(json.contains(r#""dial_timeout":"2s""#), "{json}");
    assert!(!format!("{cfg:?}").contains("hunter2"));

    assert!(
        matches!(KafkaConfig::default().validate(), Err(LogError::Config(_))),
        "empty address"
    );
    let bad = KafkaConfig {
        auto_create_topic_default_partitions: 0,
        ..config("k:9092", "t")
    };
    assert!(matches!(bad.validate(), Err(LogError::Config(_))));
    let bad = KafkaConfig {
        producer_max_record_size_bytes: 100,
        ..config("k:9092", "t")
    };
    assert!(matches!(bad.validate(), Err(LogError::Config(_))));
}

/// The whole suite against a real Kafka-protocol broker, a fresh topic per
/// check (created through the admin API).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka-protocol broker: run scripts/test.sh"]
async fn real_broker_conformance() {
    init_tracing();
    let address = std::env::var("TIDEMARK_TEST_KAFKA_ADDRESS").unwrap_or_else(|_| {
        panic!(
            "TIDEMARK_TEST_KAFKA_ADDRESS is not set: start a broker with `scripts/kafka-broker.sh start` \
             and export TIDEMARK_TEST_KAFKA_ADDRESS=<the address it prints>"
        )
    });
    let make = || {
        let cfg = config(&address, &unique_topic("conformance"));
        async move {
            let log = KafkaLog::connect(&cfg)
                .await
                .expect("connect to the test broker");
            assert_eq!(log.partition_count(), 2);
            Arc::new(log) as Arc<dyn IngestLog>
        }
    };
    conformance::run_all(make).await;
}
