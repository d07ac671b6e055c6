//! The Kafka implementation of the ingest log, through librdkafka.
//!
//! [`KafkaLog`] writes with `acks=all` and an idempotent producer, reads with
//! explicitly assigned low-level consumers (no group membership, no
//! rebalancing), and stores committed offsets in Kafka's group coordinator
//! under the caller's consumer-group name, exactly where Kafka tooling expects
//! them.
//!
//! Every librdkafka call that can block (metadata, watermarks, offset
//! commits and fetches, client construction and destruction) runs on tokio's
//! blocking pool, never on a runtime worker thread.
//!
//! Settings follow Grafana Mimir's `-ingest-storage.kafka.*` flags; see
//! [`KafkaConfig`].
//!
//! Behaviour worth knowing:
//!
//! * The partition count is read once, in [`KafkaLog::connect`].
//! * A reader asked for an offset before the earliest one starts at the
//!   earliest; one asked for an offset past the latest fails with
//!   [`LogError::OffsetOutOfRange`] (Kafka's `auto.offset.reset` would
//!   otherwise silently restart it from the earliest).
//! * `offset_for_timestamp` confirms an answer equal to the earliest offset by
//!   reading that record: some Kafka-compatible brokers (Tansu 0.6) answer 0
//!   instead of -1 when every record is older than the timestamp.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header as KafkaHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize, Serializer};

use crate::{record_lz4, ConsumedRecord, Header, IngestLog, LogError, PartitionReader, Record};

/// Most records one [`PartitionReader::poll`] returns.
const MAX_POLL_RECORDS: usize = 1000;

/// Room for Kafka's batch and record framing on top of the largest record.
const MESSAGE_OVERHEAD_BYTES: usize = 64 * 1024;

/// How often a full producer queue is retried while enqueueing.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// Compression of produced records (`producer_compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaCompression {
    None,
    /// Batches compressed by librdkafka.
    Gzip,
    /// Batches compressed by librdkafka. Note: not every Kafka-compatible
    /// broker can serve snappy-compressed batches (Tansu 0.6 on SQLite, for
    /// one, accepts them but fails the fetch). Prefer lz4 or zstd.
    Snappy,
    /// Each record's value compressed by Tidemark ([`crate::record_lz4`]),
    /// batches sent as they are: readers decompress straight into their
    /// own buffer instead of librdkafka's, then copying out of it.
    #[default]
    Lz4,
    /// Batches compressed by librdkafka.
    Zstd,
}

impl KafkaCompression {
    /// The librdkafka `compression.codec` of produced batches.
    fn batch_codec(self) -> &'static str {
        match self {
            KafkaCompression::Lz4 => "none",
            other => other.as_str(),
        }
    }

    /// The setting's name, as in flags and YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

/// Kafka connection, topic and client settings.
///
/// Field names follow Grafana Mimir's `-ingest-storage.kafka.*` flags (YAML
/// keys in snake_case). Every field has a default, so a YAML block only needs
/// `address`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of bootstrap brokers.
    pub address: String,
    /// The topic holding the ingest log; one Kafka partition per log partition.
    pub topic: String,
    /// The client id sent to the brokers (also the prefix of readers' private
    /// group ids).
    pub client_id: String,
    /// Maximum time to establish a broker connection, and to get the first
    /// metadata answer in [`KafkaLog::connect`]. librdkafka's floor is 1s.
    #[serde(with = "humantime_serde")]
    pub dial_timeout: Duration,
    /// Maximum time a produce waits for acknowledgement; also the deadline of
    /// metadata, offset and commit requests.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Create the topic at start-up when it does not exist.
    pub auto_create_topic_enabled: bool,
    /// Partitions of an auto-created topic. An existing topic keeps its count.
    pub auto_create_topic_default_partitions: i32,
    /// Largest record accepted by `produce` ([`Record::encoded_len`]). The
    /// distributor splits write requests to stay under it.
    pub producer_max_record_size_bytes: usize,
    /// Bytes the producer may hold in memory, not yet acknowledged
    /// (librdkafka `queue.buffering.max.kbytes`). When full, `produce` waits
    /// up to `write_timeout` and then fails as unavailable.
    pub producer_max_buffered_bytes: u64,
    /// How long the producer waits to fill a batch (`linger.ms`).
    #[serde(with = "humantime_serde")]
    pub producer_linger: Duration,
    /// Largest batch per partition and request (`batch.size`).
    pub producer_batch_size_bytes: usize,
    /// Compression of produced records: lz4 (the default) compresses each
    /// record's value, the others are librdkafka's batch codecs. Snappy does
    /// not work with every Kafka-compatible broker (Tansu 0.6 on SQLite
    /// cannot serve snappy batches back).
    pub producer_compression: KafkaCompression,
    /// How long a broker holds a fetch waiting for data (`fetch.wait.max.ms`).
    #[serde(with = "humantime_serde")]
    pub fetch_max_wait: Duration,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl` (librdkafka
    /// `security.protocol`); unset means plaintext.
    pub security_protocol: Option<String>,
    /// SASL mechanism: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, ...
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    /// Serialized as `<redacted>`, never in clear.
    #[serde(serialize_with = "serialize_redacted")]
    pub sasl_password: Option<String>,
    /// CA bundle to verify brokers (`ssl.ca.location`).
    pub tls_ca_path: Option<String>,
    /// Client certificate (`ssl.certificate.location`).
    pub tls_cert_path: Option<String>,
    /// Client key (`ssl.key.location`).
    pub tls_key_path: Option<String>,
    /// Any other librdkafka property, applied to every client last, so it
    /// overrides the settings above (e.g. `enable.idempotence: "false"`).
    pub extra: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            address: String::new(),
            topic: "tidemark".into(),
            client_id: "tidemark".into(),
            dial_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(10),
            auto_create_topic_enabled: true,
            auto_create_topic_default_partitions: 2,
            producer_max_record_size_bytes: 1_000_000,
            producer_max_buffered_bytes: 1 << 30,
            producer_linger: Duration::from_millis(5),
            producer_batch_size_bytes: 1 << 20,
            producer_compression: KafkaCompression::Lz4,
            fetch_max_wait: Duration::from_millis(100),
            security_protocol: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            tls_ca_path: None,
            tls_cert_path: None,
            tls_key_path: None,
            extra: BTreeMap::new(),
        }
    }
}

fn serialize_redacted<S: Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_some("<redacted>"),
        None => s.serialize_none(),
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password") || key.contains("secret")
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: BTreeMap<&str, &str> = self
            .extra
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret_key(k) {
                        "<redacted>"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("address", &self.address)
            .field("topic", &self.topic)
            .field("client_id", &self.client_id)
            .field("dial_timeout", &self.dial_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("auto_create_topic_enabled", &self.auto_create_topic_enabled)
            .field(
                "auto_create_topic_default_partitions",
                &self.auto_create_topic_default_partitions,
            )
            .field(
                "producer_max_record_size_bytes",
                &self.producer_max_record_size_bytes,
            )
            .field(
                "producer_max_buffered_bytes",
                &self.producer_max_buffered_bytes,
            )
            .field("producer_linger", &self.producer_linger)
            .field("producer_batch_size_bytes", &self.producer_batch_size_bytes)
            .field("producer_compression", &self.producer_compression)
            .field("fetch_max_wait", &self.fetch_max_wait)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field(
                "sasl_password",
                &self.sasl_password.as_ref().map(|_| "<redacted>"),
            )
            .field("tls_ca_path", &self.tls_ca_path)
            .field("tls_cert_path", &self.tls_cert_path)
            .field("tls_key_path", &self.tls_key_path)
            .field("extra", &extra)
            .finish()
    }
}

fn config_err(msg: impl Into<String>) -> LogError {
    LogError::Config(msg.into())
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

impl KafkaConfig {
    /// Checks the settings without contacting Kafka.
    pub fn validate(&self) -> Result<(), LogError> {
        if self.address.trim().is_empty() {
            return Err(config_err(
                "kafka address is empty: set at least one broker host:port",
            ));
        }
        if let Some(bad) = self
            .address
            .split(',')
            .map(str::trim)
            .find(|a| a.is_empty() || !a.contains(':'))
        {
            return Err(config_err(format!(
                "kafka address {:?} has an invalid broker entry {bad:?} (want host:port, comma-separated)",
                self.address
            )));
        }
        if self.topic.is_empty()
            || self.topic.len() > 249
            || self.topic == "."
            || self.topic == ".."
            || !self
                .topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(config_err(format!(
                "kafka topic {:?} is invalid (1-249 characters of [a-zA-Z0-9._-])",
                self.topic
            )));
        }
        if self.client_id.is_empty() {
            return Err(config_err("kafka client_id is empty"));
        }
        if self.dial_timeout.is_zero() {
            return Err(config_err("kafka dial_timeout must be positive"));
        }
        if self.write_timeout < Duration::from_millis(1) {
            return Err(config_err("kafka write_timeout must be at least 1ms"));
        }
        if self.auto_create_topic_default_partitions < 1 {
            return Err(config_err(format!(
                "kafka auto_create_topic_default_partitions must be at least 1, got {}",
                self.auto_create_topic_default_partitions
            )));
        }
        if self.producer_max_record_size_bytes < 1024 {
            return Err(config_err(format!(
                "kafka producer_max_record_size_bytes must be at least 1024, got {}",
                self.producer_max_record_size_bytes
            )));
        }
        if self.producer_max_record_size_bytes + MESSAGE_OVERHEAD_BYTES > 1_000_000_000 {
            return Err(config_err(
                "kafka producer_max_record_size_bytes is larger than librdkafka allows",
            ));
        }
        if self.producer_max_buffered_bytes < self.producer_max_record_size_bytes as u64 {
            return Err(config_err(format!(
                "kafka producer_max_buffered_bytes ({}) must hold at least one record of producer_max_record_size_bytes ({})",
                self.producer_max_buffered_bytes, self.producer_max_record_size_bytes
            )));
        }
        if self.producer_max_buffered_bytes / 1024 > i32::MAX as u64 {
            return Err(config_err(
                "kafka producer_max_buffered_bytes is larger than librdkafka allows (2 TiB)",
            ));
        }
        if self.producer_batch_size_bytes == 0 || self.producer_batch_size_bytes > i32::MAX as usize
        {
            return Err(config_err(
                "kafka producer_batch_size_bytes must be between 1 and 2^31-1",
            ));
        }
        if self.producer_linger > Duration::from_secs(900) {
            return Err(config_err("kafka producer_linger must be at most 15m"));
        }
        if self.fetch_max_wait > Duration::from_secs(300) {
            return Err(config_err("kafka fetch_max_wait must be at most 5m"));
        }
        if let Some(p) = &self.security_protocol {
            if !matches!(
                p.to_ascii_lowercase().as_str(),
                "plaintext" | "ssl" | "sasl_plaintext" | "sasl_ssl"
            ) {
                return Err(config_err(format!(
                    "kafka security_protocol {p:?} is invalid (plaintext, ssl, sasl_plaintext or sasl_ssl)"
                )));
            }
        }
        if self.sasl_username.is_some() != self.sasl_password.is_some() {
            return Err(config_err(
                "kafka sasl_username and sasl_password must be set together",
            ));
        }
        if self.tls_key_path.is_some() && self.tls_cert_path.is_none() {
            return Err(config_err(
                "kafka tls_key_path is set without tls_cert_path",
            ));
        }
        Ok(())
    }

    /// Settings shared by every client: brokers, identity, security, extras.
    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.address)
            .set("client.id", &self.client_id)
            .set(
                "socket.connection.setup.timeout.ms",
                millis(self.dial_timeout).max(1000).to_string(),
            )
            // Topics are created explicitly (admin API), never as a side
            // effect of a metadata request.
            .set("allow.auto.create.topics", "false");
        if let Some(v) = &self.security_protocol {
            c.set("security.protocol", v.to_ascii_lowercase());
        }
        if let Some(v) = &self.sasl_mechanism {
            c.set("sasl.mechanisms", v);
        }
        if let Some(v) = &self.sasl_username {
            c.set("sasl.username", v);
        }
        if let Some(v) = &self.sasl_password {
            c.set("sasl.password", v);
        }
        if let Some(v) = &self.tls_ca_path {
            c.set("ssl.ca.location", v);
        }
        if let Some(v) = &self.tls_cert_path {
            c.set("ssl.certificate.location", v);
        }
        if let Some(v) = &self.tls_key_path {
            c.set("ssl.key.location", v);
        }
        c
    }

    fn apply_extra(&self, c: &mut ClientConfig) {
        for (k, v) in &self.extra {
            c.set(k, v);
        }
    }

    fn producer_config(&self) -> ClientConfig {
        let mut c = self.client_config();
        let message_max = (self.producer_max_record_size_bytes + MESSAGE_OVERHEAD_BYTES)
            .max(self.producer_batch_size_bytes)
            .min(1_000_000_000);
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set(
                "linger.ms",
                format!("{}", self.producer_linger.as_secs_f64() * 1000.0),
            )
            .set("batch.size", self.producer_batch_size_bytes.to_string())
            .set("compression.codec", self.producer_compression.batch_codec())
            .set(
                "queue.buffering.max.kbytes",
                (self.producer_max_buffered_bytes / 1024).max(1).to_string(),
            )
            // Bounded by bytes (above), not by record count.
            .set("queue.buffering.max.messages", i32::MAX.to_string())
            .set("message.max.bytes", message_max.to_string())
            .set("message.timeout.ms", millis(self.write_timeout).to_string())
            .set(
                "request.timeout.ms",
                millis(self.write_timeout).clamp(1, 900_000).to_string(),
            );
        self.apply_extra(&mut c);
        c
    }

    fn consumer_config(&self, group_id: Option<&str>) -> ClientConfig {
        let mut c = self.client_config();
        if let Some(g) = group_id {
            c.set("group.id", g);
        }
        c.set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // An offset before the earliest still in the log reads from the
            // earliest.
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", millis(self.fetch_max_wait).to_string());
        self.apply_extra(&mut c);
        c
    }

    fn admin_config(&self) -> ClientConfig {
        let mut c = self.client_config();
        self.apply_extra(&mut c);
        c
    }
}

/// Forwards librdkafka's logs and errors to `tracing`.
#[derive(Clone, Copy, Default)]
struct TracingContext;

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Notice => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Info => {
                tracing::debug!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::trace!(target: "librdkafka", facility = fac, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

impl ConsumerContext for TracingContext {}

type KProducer = FutureProducer<TracingContext>;
type LowConsumer = BaseConsumer<TracingContext>;
type ReaderConsumer = StreamConsumer<TracingContext>;

fn is_transient(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::QueueFull
            | C::MessageTimedOut
            | C::OperationTimedOut
            | C::TimedOutQueue
            | C::RequestTimedOut
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::Resolve
            | C::NetworkException
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::ReplicaNotAvailable
            | C::PreferredLeaderNotAvailable
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::WaitingForCoordinator
            | C::KafkaStorageError
            | C::ThrottlingQuotaExceeded
            | C::UnknownTopicOrPartition
            | C::FencedLeaderEpoch
            | C::UnknownLeaderEpoch
            | C::BrokerDestroy
            | C::DestroyBroker
            | C::PurgeQueue
    )
}

/// Maps a librdkafka error to the log's error, `what` saying what failed.
fn map_err(what: &str, err: &KafkaError) -> LogError {
    match err {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => {
            LogError::Config(format!("{what}: {err}"))
        }
        KafkaError::Canceled => {
            LogError::Unavailable(format!("{what}: the Kafka client shut down"))
        }
        _ => match err.rdkafka_error_code() {
            Some(code) if is_transient(code) => LogError::Unavailable(format!("{what}: {err}")),
            _ => LogError::Other(format!("{what}: {err}")),
        },
    }
}

/// Runs a blocking librdkafka call on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, LogError>
where
    F: FnOnce() -> Result<T, LogError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::Other(format!("blocking Kafka call failed: {e}")))?
}

/// Drops librdkafka handles (whose destructors block while they close
/// connections and join threads) on the blocking pool when inside a runtime.
fn drop_off_runtime<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(move || drop(value));
        }
        Err(_) => drop(value),
    }
}

/// Serves queued events of a low-level consumer nobody polls for messages
/// (errors, mostly), so they do not pile up.
fn drain_events(consumer: &LowConsumer) {
    for _ in 0..64 {
        match consumer.poll(Duration::ZERO) {
            None => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing::debug!(error = %e, "Kafka consumer event"),
        }
    }
}

enum TopicState {
    Missing,
    NotReady(String),
    Ready(i32),
}

/// Looks the topic up in the cluster metadata.
fn topic_state(
    producer: &KProducer,
    topic: &str,
    timeout: Duration,
) -> Result<TopicState, KafkaError> {
    let metadata = producer.client().fetch_metadata(Some(topic), timeout)?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(TopicState::Missing);
    };
    if let Some(err) = t.error() {
        let code = RDKafkaErrorCode::from(err);
        return Ok(match code {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                TopicState::Missing
            }
            other => TopicState::NotReady(other.to_string()),
        });
    }
    if t.partitions().is_empty() {
        return Ok(TopicState::NotReady("no partitions in metadata yet".into()));
    }
    Ok(TopicState::Ready(t.partitions().len() as i32))
}

struct Inner {
    cfg: KafkaConfig,
    partitions: i32,
    producer: KProducer,
    /// Group-less consumer for offsets-for-times.
    meta: Arc<LowConsumer>,
    /// One consumer per consumer group, for committed offsets.
    groups: Mutex<HashMap<String, Arc<LowConsumer>>>,
}

/// The ingest log on a Kafka topic. See the module docs.
pub struct KafkaLog {
    inner: Option<Arc<Inner>>,
}

impl fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("KafkaLog");
        if let Some(inner) = &self.inner {
            d.field("address", &inner.cfg.address)
                .field("topic", &inner.cfg.topic)
                .field("partitions", &inner.partitions);
        }
        d.finish()
    }
}

impl Drop for KafkaLog {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            drop_off_runtime(inner);
        }
    }
}

impl KafkaLog {
    /// Connects to the brokers, makes sure the topic exists (creating it with
    /// `auto_create_topic_default_partitions` partitions when missing and
    /// allowed) and learns its partition count.
    ///
    /// Fails with [`LogError::Unavailable`] naming the address when no broker
    /// answers within `dial_timeout`.
    pub async fn connect(cfg: &KafkaConfig) -> Result<Self, LogError> {
        cfg.validate()?;
        let cfg = cfg.clone();
        tracing::info!(address = %cfg.address, topic = %cfg.topic, "connecting to Kafka");

        let (producer, state) = {
            let cfg = cfg.clone();
            blocking(move || {
                let producer: KProducer = cfg
                    .producer_config()
                    .create_with_context(TracingContext)
                    .map_err(|e| map_err("cannot create the Kafka producer", &e))?;
                let state = topic_state(&producer, &cfg.topic, cfg.dial_timeout).map_err(|e| {
                    LogError::Unavailable(format!(
                        "cannot reach Kafka brokers at {} within {}: {e}",
                        cfg.address,
                        humantime_serde::re::humantime::format_duration(cfg.dial_timeout)
                    ))
                })?;
                Ok((producer, state))
            })
            .await?
        };
        // From here on, early returns must not drop the producer on a runtime
        // thread.
        let guard = DropGuard(Some(producer));

        let partitions = match state {
            TopicState::Ready(n) => {
                if cfg.auto_create_topic_enabled && n != cfg.auto_create_topic_default_partitions {
                    tracing::info!(
                        topic = %cfg.topic,
                        partitions = n,
                        configured = cfg.auto_create_topic_default_partitions,
                        "Kafka topic exists with a different partition count; using the topic's"
                    );
                }
                n
            }
            TopicState::Missing | TopicState::NotReady(_) if cfg.auto_create_topic_enabled => {
                if matches!(state, TopicState::Missing) {
                    create_topic(&cfg).await?;
                }
                wait_for_topic(guard.get()?, &cfg).await?
            }
            TopicState::Missing => {
                return Err(LogError::Config(format!(
                    "Kafka topic {:?} does not exist at {} and auto_create_topic_enabled is false",
                    cfg.topic, cfg.address
                )))
            }
            TopicState::NotReady(why) => {
                return Err(LogError::Unavailable(format!(
                    "Kafka topic {:?} is not ready: {why}",
                    cfg.topic
                )))
            }
        };

        let meta = {
            let cfg = cfg.clone();
            blocking(move || {
                let c: LowConsumer = cfg
                    .consumer_config(None)
                    .create_with_context(TracingContext)
                    .map_err(|e| map_err("cannot create the Kafka consumer", &e))?;
                Ok(Arc::new(c))
            })
            .await?
        };
        let producer = guard.take()?;

        tracing::info!(address = %cfg.address, topic = %cfg.topic, partitions, "connected to Kafka");
        Ok(KafkaLog {
            inner: Some(Arc::new(Inner {
                cfg,
                partitions,
                producer,
                meta,
                groups: Mutex::new(HashMap::new()),
            })),
        })
    }

    /// The topic this log writes to.
    pub fn topic(&self) -> &str {
        self.inner()
            .map(|i| i.cfg.topic.as_str())
            .unwrap_or_default()
    }

    fn inner(&self) -> Result<&Arc<Inner>, LogError> {
        self.inner
            .as_ref()
            .ok_or_else(|| LogError::Unavailable("the Kafka log is closed".into()))
    }

    fn check_partition(&self, partition: i32) -> Result<&Arc<Inner>, LogError> {
        let inner = self.inner()?;
        if partition < 0 || partition >= inner.partitions {
            return Err(LogError::NoSuchPartition {
                partition,
                count: inner.partitions,
            });
        }
        Ok(inner)
    }
}

/// Holds a client so it is dropped off the runtime on every exit path.
struct DropGuard<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> DropGuard<T> {
    fn get(&self) -> Result<&T, LogError> {
        self.0
            .as_ref()
            .ok_or_else(|| LogError::Other("client already taken".into()))
    }

    fn take(mut self) -> Result<T, LogError> {
        self.0
            .take()
            .ok_or_else(|| LogError::Other("client already taken".into()))
    }
}

impl<T: Send + 'static> Drop for DropGuard<T> {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            drop_off_runtime(v);
        }
    }
}

/// Creates the topic through the admin API, with the brokers' default
/// replication factor, or 1 when the broker does not take the default (-1).
async fn create_topic(cfg: &KafkaConfig) -> Result<(), LogError> {
    let admin: AdminClient<TracingContext> = {
        let cfg = cfg.clone();
        blocking(move || {
            cfg.admin_config()
                .create_with_context(TracingContext)
                .map_err(|e| map_err("cannot create the Kafka admin client", &e))
        })
        .await?
    };
    let admin = DropGuard(Some(admin));
    let opts = AdminOptions::new()
        .request_timeout(Some(cfg.write_timeout))
        .operation_timeout(Some(cfg.write_timeout));
    let partitions = cfg.auto_create_topic_default_partitions;
    let mut last_error = String::new();
    for replication in [-1, 1] {
        tracing::info!(topic = %cfg.topic, partitions, replication, "creating Kafka topic");
        let new_topic = NewTopic::new(&cfg.topic, partitions, TopicReplication::Fixed(replication));
        let outcome = admin.get()?.create_topics([&new_topic], &opts).await;
        let code = match outcome {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) => {
                    tracing::info!(topic = %cfg.topic, partitions, replication, "created Kafka topic");
                    return Ok(());
                }
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
                    tracing::info!(topic = %cfg.topic, "Kafka topic was created concurrently");
                    return Ok(());
                }
                Some(Err((_, code))) => Some(code),
                None => None,
            },
            Err(e) => {
                last_error = e.to_string();
                e.rdkafka_error_code()
            }
        };
        if let Some(code) = code {
            last_error = code.to_string();
        }
        tracing::warn!(topic = %cfg.topic, replication, error = %last_error, "creating the Kafka topic failed");
        if code.is_some_and(is_transient) {
            return Err(LogError::Unavailable(format!(
                "cannot create Kafka topic {:?}: {last_error}",
                cfg.topic
            )));
        }
    }
    Err(LogError::Other(format!(
        "cannot create Kafka topic {:?} at {}: {last_error} (create it with {} partitions, or check the broker's CreateTopics support)",
        cfg.topic, cfg.address, partitions
    )))
}

/// Waits until a just-created topic shows up in the metadata with its
/// partitions.
async fn wait_for_topic(producer: &KProducer, cfg: &KafkaConfig) -> Result<i32, LogError> {
    let deadline = tokio::time::Instant::now() + cfg.write_timeout;
    loop {
        let state = {
            let producer = producer.clone();
            let topic = cfg.topic.clone();
            let timeout = cfg.write_timeout;
            blocking(move || {
                let state = topic_state(&producer, &topic, timeout);
                drop(producer);
                state.map_err(|e| map_err("cannot read the Kafka topic metadata", &e))
            })
            .await?
        };
        let why = match state {
            TopicState::Ready(n) => return Ok(n),
            TopicState::Missing => "missing".to_string(),
            TopicState::NotReady(why) => why,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(LogError::Unavailable(format!(
                "Kafka topic {:?} did not become ready within {}: {why}",
                cfg.topic,
                humantime_serde::re::humantime::format_duration(cfg.write_timeout)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Inner {
    /// The consumer holding `group`'s committed offsets, created on first use.
    /// Blocking: call on the blocking pool.
    fn group_consumer(&self, group: &str) -> Result<Arc<LowConsumer>, LogError> {
        let mut groups = self.groups.lock();
        if let Some(c) = groups.get(group) {
            return Ok(c.clone());
        }
        let c: LowConsumer = self
            .cfg
            .consumer_config(Some(group))
            .create_with_context(TracingContext)
            .map_err(|e| {
                map_err(
                    &format!("cannot create a Kafka consumer for group {group:?}"),
                    &e,
                )
            })?;
        let c = Arc::new(c);
        groups.insert(group.to_string(), c.clone());
        Ok(c)
    }

    fn tpl(&self, partition: i32, offset: Offset) -> Result<TopicPartitionList, LogError> {
        let mut tpl = TopicPartitionList::with_capacity(1);
        tpl.add_partition_offset(&self.cfg.topic, partition, offset)
            .map_err(|e| map_err("invalid offset", &e))?;
        Ok(tpl)
    }

    /// (earliest, latest) offsets. Blocking.
    fn watermarks(&self, partition: i32) -> Result<(i64, i64), LogError> {
        self.producer
            .client()
            .fetch_watermarks(&self.cfg.topic, partition, self.cfg.write_timeout)
            .map_err(|e| {
                map_err(
                    &format!("cannot read watermarks of partition {partition}"),
                    &e,
                )
            })
    }

    /// The deadline of a blocking call, plus slack for the blocking pool.
    fn call_deadline(&self) -> Duration {
        self.cfg.write_timeout + Duration::from_secs(2)
    }
}

/// Runs `f` with the log's inner state on the blocking pool, failing as
/// unavailable if it does not return in time (the call then finishes in the
/// background).
async fn with_inner<T, F>(inner: &Arc<Inner>, what: &str, f: F) -> Result<T, LogError>
where
    F: FnOnce(&Inner) -> Result<T, LogError> + Send + 'static,
    T: Send + 'static,
{
    let deadline = inner.call_deadline();
    let inner = inner.clone();
    match tokio::time::timeout(deadline, blocking(move || f(&inner))).await {
        Ok(r) => r,
        Err(_) => Err(LogError::Unavailable(format!(
            "{what}: Kafka did not answer within {}",
            humantime_serde::re::humantime::format_duration(deadline)
        ))),
    }
}

fn produce_err(
    err: &KafkaError,
    partition: i32,
    count: i32,
    record: &Record,
    limit: usize,
) -> LogError {
    use RDKafkaErrorCode as C;
    match err.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::MessageBatchTooLarge | C::InvalidMessageSize) => {
            LogError::RecordTooLarge {
                size: record.encoded_len(),
                limit,
            }
        }
        Some(C::UnknownPartition) => LogError::NoSuchPartition { partition, count },
        _ => map_err(&format!("producing to partition {partition} failed"), err),
    }
}

#[async_trait]
impl IngestLog for KafkaLog {
    fn partition_count(&self) -> i32 {
        self.inner.as_ref().map(|i| i.partitions).unwrap_or(0)
    }

    async fn produce(&self, partition: i32, records: Vec<Record>) -> Result<(), LogError> {
        let inner = self.check_partition(partition)?;
        let limit = inner.cfg.producer_max_record_size_bytes;
        if let Some(r) = records.iter().find(|r| r.encoded_len() > limit) {
            return Err(LogError::RecordTooLarge {
                size: r.encoded_len(),
                limit,
            });
        }
        let count = inner.partitions;
        let deadline = tokio::time::Instant::now() + inner.cfg.write_timeout;

        // Enqueue in order (the idempotent producer keeps that order on the
        // wire), then wait for every acknowledgement at once.
        let mut deliveries = Vec::with_capacity(records.len());
        for r in &records {
            let compressed = match inner.cfg.producer_compression {
                KafkaCompression::Lz4 => record_lz4::compress(&r.value),
                _ => None,
            };
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len() + 1);
            for h in &r.headers {
                headers = headers.insert(KafkaHeader {
                    key: &h.key,
                    value: Some(h.value.as_ref()),
                });
            }
            if compressed.is_some() {
                headers = headers.insert(KafkaHeader {
                    key: record_lz4::COMPRESSION_HEADER,
                    value: Some(record_lz4::LZ4),
                });
            }
            let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&inner.cfg.topic)
                .partition(partition)
                .key(r.key.as_ref())
                .payload(compressed.as_deref().unwrap_or(&r.value))
                .headers(headers);
            loop {
                match inner.producer.send_result(rec) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((e, back))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                    {
                        if tokio::time::Instant::now() >= deadline {
                            return Err(LogError::Unavailable(format!(
                                "Kafka producer buffer is full ({} bytes buffered): {e}",
                                inner.cfg.producer_max_buffered_bytes
                            )));
                        }
                        rec = back;
                        tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                    }
                    Err((e, _)) => return Err(produce_err(&e, partition, count, r, limit)),
                }
            }
        }

        // librdkafka fails each message after message.timeout.ms; the outer
        // timeout is a safety net.
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now())
            + Duration::from_secs(5);
        let results = tokio::time::timeout(wait, futures::future::join_all(deliveries))
            .await
            .map_err(|_| {
                LogError::Unavailable(format!(
                    "Kafka did not acknowledge records for partition {partition} within {}",
                    humantime_serde::re::humantime::format_duration(wait)
                ))
            })?;
        for (result, record) in results.into_iter().zip(&records) {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(produce_err(&e, partition, count, record, limit)),
                Err(_) => return Err(LogError::Unavailable("the Kafka producer shut down".into())),
            }
        }
        Ok(())
    }

    async fn reader(
        &self,
        partition: i32,
        offset: i64,
    ) -> Result<Box<dyn PartitionReader>, LogError> {
        let inner = self.check_partition(partition)?;
        let group_id = reader_group_id(&inner.cfg.client_id);
        let consumer = with_inner(inner, "opening a Kafka partition reader", move |inner| {
            let (earliest, latest) = inner.watermarks(partition)?;
            if offset > latest {
                return Err(LogError::OffsetOutOfRange { partition, offset, earliest, latest });
            }
            let start = offset.max(earliest);
            let consumer: ReaderConsumer = inner
                .cfg
                .consumer_config(Some(&group_id))
                .create_with_context(TracingContext)
                .map_err(|e| map_err("cannot create the Kafka reader", &e))?;
            consumer
                .assign(&inner.tpl(partition, Offset::Offset(start))?)
                .map_err(|e| map_err(&format!("cannot assign partition {partition}"), &e))?;
            tracing::debug!(topic = %inner.cfg.topic, partition, offset = start, group = %group_id, "Kafka reader assigned");
            Ok(consumer)
        })
        .await?;
        Ok(Box::new(KafkaPartitionReader {
            consumer: Some(consumer),
            partition,
            buf: BytesMut::new(),
        }))
    }

    async fn committed_offset(&self, group: &str, partition: i32) -> Result<Option<i64>, LogError> {
        let inner = self.check_partition(partition)?;
        let group = group.to_string();
        with_inner(inner, "reading a committed offset", move |inner| {
            let consumer = inner.group_consumer(&group)?;
            let result = consumer.committed_offsets(
                inner.tpl(partition, Offset::Invalid)?,
                inner.cfg.write_timeout,
            );
            drain_events(&consumer);
            let tpl = result.map_err(|e| {
                map_err(
                    &format!("cannot read the offset of group {group:?} for partition {partition}"),
                    &e,
                )
            })?;
            let elem = tpl
                .find_partition(&inner.cfg.topic, partition)
                .ok_or_else(|| {
                    LogError::Other("Kafka returned no committed offset for the partition".into())
                })?;
            elem.error().map_err(|e| {
                map_err(
                    &format!("cannot read the offset of group {group:?} for partition {partition}"),
                    &e,
                )
            })?;
            Ok(match elem.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            })
        })
        .await
    }

    async fn commit_offset(
        &self,
        group: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), LogError> {
        let inner = self.check_partition(partition)?;
        if offset < 0 {
            return Err(LogError::Other(format!(
                "cannot commit negative offset {offset}"
            )));
        }
        let group = group.to_string();
        with_inner(inner, "committing an offset", move |inner| {
            let consumer = inner.group_consumer(&group)?;
            let result = consumer.commit(&inner.tpl(partition, Offset::Offset(offset))?, CommitMode::Sync);
            drain_events(&consumer);
            result.map_err(|e| {
                map_err(&format!("cannot commit offset {offset} of group {group:?} for partition {partition}"), &e)
            })
        })
        .await
    }

    async fn earliest_offset(&self, partition: i32) -> Result<i64, LogError> {
        let inner = self.check_partition(partition)?;
        with_inner(inner, "reading the earliest offset", move |inner| {
            Ok(inner.watermarks(partition)?.0)
        })
        .await
    }

    async fn latest_offset(&self, partition: i32) -> Result<i64, LogError> {
        let inner = self.check_partition(partition)?;
        with_inner(inner, "reading the latest offset", move |inner| {
            Ok(inner.watermarks(partition)?.1)
        })
        .await
    }

    async fn offset_for_timestamp(
        &self,
        partition: i32,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, LogError> {
        let inner = self.check_partition(partition)?;
        // Negative timestamps are Kafka's special "earliest"/"latest" values.
        let ts = timestamp_ms.max(0);
        let answer = with_inner(inner, "looking up an offset by timestamp", move |inner| {
            let what = format!("cannot look up the offset of partition {partition} at {ts}ms");
            let result = inner.meta.offsets_for_times(
                inner.tpl(partition, Offset::Offset(ts))?,
                inner.cfg.write_timeout,
            );
            drain_events(&inner.meta);
            let tpl = result.map_err(|e| map_err(&what, &e))?;
            let elem = tpl
                .find_partition(&inner.cfg.topic, partition)
                .ok_or_else(|| LogError::Other(format!("{what}: no answer for the partition")))?;
            elem.error().map_err(|e| map_err(&what, &e))?;
            // Kafka answers -1 ("end") when every record is older.
            let offset = match elem.offset() {
                Offset::Offset(o) if o >= 0 => o,
                _ => return Ok(None),
            };
            let (earliest, latest) = inner.watermarks(partition)?;
            Ok(Some((offset, earliest, latest)))
        })
        .await?;
        let Some((offset, earliest, latest)) = answer else {
            return Ok(None);
        };
        if offset >= latest {
            // No record there: nothing at or after the timestamp.
            return Ok(None);
        }
        if offset > earliest {
            return Ok(Some(offset));
        }
        // The answer is the earliest record. Some Kafka-compatible brokers
        // (Tansu 0.6) answer offset 0 instead of -1 when every record is
        // older, so confirm with the record itself. Kafka's answer always has
        // a timestamp at or after the one asked for.
        let record = self.first_record_from(partition, offset).await?;
        Ok((record.timestamp_ms >= ts).then_some(record.offset))
    }
}

impl KafkaLog {
    /// The first record at or after `offset` (clamped to the earliest), which
    /// must exist.
    async fn first_record_from(
        &self,
        partition: i32,
        offset: i64,
    ) -> Result<ConsumedRecord, LogError> {
        let wait = self.inner()?.cfg.write_timeout;
        let deadline = tokio::time::Instant::now() + wait;
        let mut reader = self.reader(partition, offset).await?;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Some(first) = reader.poll(remaining).await?.into_iter().next() {
                return Ok(first);
            }
            if remaining.is_zero() {
                return Err(LogError::Unavailable(format!(
                    "Kafka returned no record of partition {partition} from offset {offset} within {}",
                    humantime_serde::re::humantime::format_duration(wait)
                )));
            }
        }
    }
}

fn reader_group_id(client_id: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{client_id}-reader-{}-{nanos:x}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Reads one partition through an explicitly assigned consumer.
struct KafkaPartitionReader {
    consumer: Option<ReaderConsumer>,
    partition: i32,
    /// What records are copied (or decompressed) into: librdkafka lends
    /// them only until the next poll. Reused by the next poll once the
    /// records of this one are dropped: fresh memory for every poll costs a
    /// page fault every 4 KiB.
    buf: BytesMut,
}

/// What one poll takes, about, as the embedded log's polls: a poll stops
/// once its records hold this much, so that they fit in the buffer it
/// reuses; librdkafka keeps the rest (compressed) for the next poll.
const POLL_BYTES: usize = 16 << 20;

/// Room for the record that crosses [`POLL_BYTES`] (records are at most
/// `producer_max_record_size_bytes`, 1 MB by default); a larger one gets
/// memory of its own.
const POLL_SLACK_BYTES: usize = 2 << 20;

impl Drop for KafkaPartitionReader {
    fn drop(&mut self) {
        if let Some(c) = self.consumer.take() {
            drop_off_runtime(c);
        }
    }
}

/// Copies a message lent by librdkafka into `buf`; the record's parts are
/// views of it. A value compressed by [`record_lz4`] is decompressed into
/// `buf` instead (and loses its compression header). A message that does
/// not fit in what is left of `buf` gets memory of its own: growing `buf`
/// would leave it in fresh memory, page fault by page fault, instead of the
/// buffer the next poll takes back.
fn to_consumed(m: &BorrowedMessage<'_>, buf: &mut BytesMut) -> ConsumedRecord {
    let payload = m.payload().unwrap_or_default();
    let stored_headers = || m.headers().into_iter().flat_map(|hs| hs.iter());
    let compression = stored_headers()
        .find(|h| h.key == record_lz4::COMPRESSION_HEADER)
        .map(|h| h.value.unwrap_or_default());
    let value_len = match compression {
        Some(_) => record_lz4::decompressed_len(payload).unwrap_or(0),
        None => payload.len(),
    };
    let header_bytes: usize = stored_headers().map(|h| h.value.map_or(0, <[u8]>::len)).sum();
    let fits = buf.capacity() - buf.len() >= m.key_len() + value_len + header_bytes;
    let mut own = BytesMut::new();
    let target = if fits { &mut *buf } else { &mut own };
    let copy = |target: &mut BytesMut, bytes: &[u8]| {
        target.extend_from_slice(bytes);
        target.split().freeze()
    };
    let key = copy(target, m.key().unwrap_or_default());
    let value = match compression {
        None => Ok(copy(target, payload)),
        Some(record_lz4::LZ4) => record_lz4::decompress_into(payload, target).map_err(|e| e.to_string()),
        Some(other) => Err(format!("unknown compression {:?}", String::from_utf8_lossy(other))),
    };
    let (value, headers) = match value {
        Ok(value) => {
            let headers = stored_headers()
                .filter(|h| h.key != record_lz4::COMPRESSION_HEADER)
                .map(|h| Header { key: h.key.to_string(), value: copy(target, h.value.unwrap_or_default()) })
                .collect();
            (value, headers)
        }
        Err(reason) => {
            tracing::error!(partition = m.partition(), offset = m.offset(), %reason, "cannot decompress a record; passing it on with no value and no headers but {}, so that readers skip it", record_lz4::DECOMPRESSION_ERROR_HEADER);
            let header = Header { key: record_lz4::DECOMPRESSION_ERROR_HEADER.into(), value: Bytes::from(reason) };
            (Bytes::new(), vec![header])
        }
    };
    ConsumedRecord {
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
        record: Record { key, value, headers },
    }
}

#[async_trait]
impl PartitionReader for KafkaPartitionReader {
    async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedRecord>, LogError> {
        let partition = self.partition;
        let consumer = self
            .consumer
            .as_ref()
            .ok_or_else(|| LogError::Unavailable("the Kafka reader is closed".into()))?;
        // Takes the previous poll's buffer back when its records are gone.
        let buf = &mut self.buf;
        buf.clear();
        buf.reserve(POLL_BYTES + POLL_SLACK_BYTES);
        let first = tokio::time::timeout(max_wait, async {
            consumer.recv().await.map(|m| to_consumed(&m, buf))
        })
        .await;
        let first = match first {
            Err(_) => return Ok(Vec::new()),
            Ok(Err(e)) => {
                return Err(map_err(
                    &format!("reading partition {partition} failed"),
                    &e,
                ))
            }
            Ok(Ok(r)) => r,
        };
        let mut taken = first.record.encoded_len();
        let mut out = vec![first];
        // Then whatever else is already fetched, without waiting.
        let mut stream = consumer.stream();
        while out.len() < MAX_POLL_RECORDS && taken < POLL_BYTES {
            match futures::StreamExt::next(&mut stream).now_or_never() {
                Some(Some(Ok(m))) => {
                    let r = to_consumed(&m, buf);
                    taken += r.record.encoded_len();
                    out.push(r);
                }
                Some(Some(Err(e))) => {
                    tracing::warn!(partition, error = %e, "Kafka reader error after a batch; returning the batch");
                    break;
                }
                Some(None) | None => break,
            }
        }
        out.retain(|r| r.partition == partition);
        Ok(out)
    }
}
