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
    conformance::values_read_back_byte_for_byte(make().await).await;
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

/// Values the default producer compresses are stored compressed, under
/// their compression header, and read back as produced; records without
/// the header (batch-compressed ones, as earlier versions wrote) are read
/// as they are; a record whose value cannot be decompressed is passed on
/// with only the error header, and the records after it are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_compression_on_the_wire() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use tidemark_ingest_log::record_lz4::{COMPRESSION_HEADER, DECOMPRESSION_ERROR_HEADER, LZ4};

    init_tracing();
    let cluster = MockCluster::new(1).expect("mock cluster");
    let topic = unique_topic("lz4");
    cluster.create_topic(&topic, 1, 1).expect("create mock topic");
    let address = cluster.bootstrap_servers();
    let lz4 = KafkaLog::connect(&config(&address, &topic)).await.expect("connect");
    let batches = KafkaLog::connect(&KafkaConfig {
        producer_compression: KafkaCompression::None,
        extra: [("compression.codec".to_string(), "lz4".to_string())].into(),
        ..config(&address, &topic)
    })
    .await
    .expect("connect");
    let value: String = (0..2000).map(|i| format!("up{{instance=\"host-{}:9100\",job=\"node\"}} 1 ", i % 40)).collect();
    let produced = record("tenant", &value);
    lz4.produce(0, vec![produced.clone()]).await.expect("produce"); // offset 0
    batches.produce(0, vec![produced.clone()]).await.expect("produce"); // offset 1

    // Offsets 2 and 3: what no Tidemark producer writes.
    let raw: FutureProducer = ClientConfig::new().set("bootstrap.servers", &address).create().expect("producer");
    for (compression, payload) in [(LZ4, &b"\x10\x00\x00\x00not an lz4 block"[..]), (&b"brotli"[..], &b"whatever"[..])] {
        let headers = OwnedHeaders::new()
            .insert(Header { key: "Version", value: Some(&[0u8, 0, 0, 1][..]) })
            .insert(Header { key: COMPRESSION_HEADER, value: Some(compression) });
        let rec = FutureRecord::<[u8], [u8]>::to(&topic).partition(0).key(b"tenant").payload(payload).headers(headers);
        raw.send(rec, Duration::from_secs(5)).await.map_err(|(e, _)| e).expect("send");
    }
    lz4.produce(0, vec![record("tenant", "after")]).await.expect("produce"); // offset 4

    // As stored, read by a plain consumer.
    let plain: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &address)
        .set("group.id", unique_topic("plain"))
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning).expect("tpl");
    plain.assign(&tpl).expect("assign");
    let mut stored = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored.len() < 2 && Instant::now() < deadline {
        if let Some(m) = plain.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            let compression = m.headers().and_then(|hs| hs.iter().find(|h| h.key == COMPRESSION_HEADER).and_then(|h| h.value.map(<[u8]>::to_vec)));
            stored.push((compression, m.payload().map_or(0, <[u8]>::len)));
        }
    }
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].0.as_deref(), Some(LZ4), "offset 0 carries the compression header");
    assert!(stored[0].1 * 4 < value.len(), "offset 0 is stored compressed: {} of {} bytes", stored[0].1, value.len());
    assert_eq!(stored[1], (None, value.len()), "offset 1 is stored as produced (librdkafka compressed its batch)");

    let got = conformance::read_n(&lz4, 0, 0, 5).await;
    assert_eq!(got.iter().map(|c| c.offset).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert_eq!(got[0].record, produced);
    assert_eq!(got[1].record, produced);
    for (corrupt, why) in [(&got[2], "LZ4 block"), (&got[3], "unknown compression")] {
        assert!(corrupt.record.value.is_empty());
        assert_eq!(corrupt.record.headers.len(), 1, "{:?}", corrupt.record.headers);
        assert_eq!(corrupt.record.headers[0].key, DECOMPRESSION_ERROR_HEADER);
        let reason = String::from_utf8_lossy(&corrupt.record.headers[0].value);
        assert!(reason.contains(why), "{reason}");
    }
    assert_eq!(got[4].record, record("tenant", "after"));
}
