//! Tidemark's configuration: one validated struct, read from defaults, then
//! an optional YAML file (`-config.file`), then environment variables and
//! flags (each flag has an env twin, `TIDEMARK_` plus the flag name in upper
//! case with `.` and `-` as `_`). Names follow Mimir's wherever Mimir has the
//! same setting.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use tidemark_ingest_log::embedded::EmbeddedConfig;
use tidemark_ingest_log::kafka::{KafkaCompression, KafkaConfig};
use tidemark_block_builder::BlockBuilderConfig;
use tidemark_block_storage::{BucketConfig, StorageBackend};
use tidemark_compactor::CompactorConfig;
use tidemark_partition_consumers::IngesterConfig;
use tidemark_producers::DistributorConfig;
use tidemark_query::{EngineOptions, TieredOptions};
use tidemark_store_gateway::StoreGatewayConfig;
use crate::membership::{MemberlistConfig, RingConfig};

/// Which components a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Every component in one process.
    #[default]
    All,
    Distributor,
    Ingester,
    Querier,
    BlockBuilder,
    StoreGateway,
    Compactor,
}

impl Target {
    pub fn runs_distributor(self) -> bool {
        matches!(self, Target::All | Target::Distributor)
    }
    pub fn runs_ingester(self) -> bool {
        matches!(self, Target::All | Target::Ingester)
    }
    pub fn runs_querier(self) -> bool {
        matches!(self, Target::All | Target::Querier)
    }
    pub fn runs_block_builder(self) -> bool {
        matches!(self, Target::All | Target::BlockBuilder)
    }
    pub fn runs_store_gateway(self) -> bool {
        matches!(self, Target::All | Target::StoreGateway)
    }
    pub fn runs_compactor(self) -> bool {
        matches!(self, Target::All | Target::Compactor)
    }
    /// Whether the process reads or writes the ingest log.
    pub fn uses_log(self) -> bool {
        self.runs_distributor() || self.runs_ingester() || self.runs_block_builder()
    }
    /// Whether the process reads or writes object storage.
    pub fn uses_bucket(self) -> bool {
        self.runs_block_builder() || self.runs_store_gateway() || self.runs_compactor()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub target: Target,
    /// Where local state lives: the embedded log, and more as features come.
    pub data_dir: PathBuf,
    /// This process's name; an ingester's partition is its numeric suffix.
    pub instance_id: String,
    /// Require `X-Scope-OrgID` on every request (`-auth.multitenancy-enabled`).
    pub multitenancy_enabled: bool,
    pub server: ServerConfig,
    pub ingest_storage: IngestStorageConfig,
    pub distributor: DistributorConfig,
    pub ingester: IngesterConfig,
    pub querier: QuerierConfig,
    /// Object storage for blocks (`-blocks-storage.*`).
    pub blocks_storage: BucketConfig,
    /// The store-gateway's bucket index and caches
    /// (`-blocks-storage.bucket-store.*`).
    pub store_gateway: StoreGatewayConfig,
    pub block_builder: BlockBuilderConfig,
    pub compactor: CompactorConfig,
    pub log: LogConfig,
    /// Per-tenant limits' defaults (`limits:` as in Mimir; see docs/limits.md).
    pub limits: tidemark_limits::Limits,
    /// Per-tenant overrides file, reloaded without restart (`-runtime-config.*`).
    pub runtime_config: tidemark_limits::RuntimeConfigSettings,
    /// Gossip membership (`-memberlist.*`); off without `join_members`.
    pub memberlist: MemberlistConfig,
    /// This process in the ring and the partition ring's timing (`-ring.*`).
    pub ring: RingConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub http_listen_address: String,
    pub http_listen_port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct IngestStorageConfig {
    /// Kafka; used when `kafka.address` is set.
    pub kafka: KafkaConfig,
    /// The embedded log under `data_dir`, used when no Kafka address is set.
    pub embedded: EmbeddedSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedSettings {
    pub partitions: i32,
    pub segment_size_bytes: u64,
    pub fsync: bool,
    #[serde(with = "humantime_serde")]
    pub retention_period: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuerierConfig {
    /// Base URLs of the ingesters to query (`http://host:port`), one or more
    /// per partition. Needed by `-target=querier`; `all` queries its own.
    pub ingester_addresses: Vec<String>,
    /// Timeout of one call to an ingester.
    #[serde(with = "humantime_serde")]
    pub ingester_client_timeout: Duration,
    /// Base URLs of the store-gateways (`http://host:port`) for
    /// `-target=querier`; `all` reads its own.
    pub store_gateway_addresses: Vec<String>,
    /// Ask ingesters only for queries reaching into this recent window.
    #[serde(with = "humantime_serde")]
    pub query_ingesters_within: Duration,
    /// Ask the store only for queries reaching further back than this.
    #[serde(with = "humantime_serde")]
    pub query_store_after: Duration,
    /// Default read consistency of queries without `X-Read-Consistency`.
    pub read_consistency: ReadConsistency,
    #[serde(flatten)]
    pub engine: EngineOptions,
}

/// Whether a query waits for the ingesters to have consumed what was
/// written before it (`strong`) or not (`eventual`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    #[default]
    Eventual,
    Strong,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// debug, info, warn or error (or a `tracing` filter).
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            target: Target::All,
            data_dir: PathBuf::from("./data"),
            instance_id: default_instance_id(),
            multitenancy_enabled: true,
            server: ServerConfig::default(),
            ingest_storage: IngestStorageConfig::default(),
            distributor: DistributorConfig::default(),
            ingester: IngesterConfig::default(),
            querier: QuerierConfig::default(),
            blocks_storage: BucketConfig::default(),
            store_gateway: StoreGatewayConfig::default(),
            block_builder: BlockBuilderConfig::default(),
            compactor: CompactorConfig::default(),
            log: LogConfig::default(),
            limits: tidemark_limits::Limits::default(),
            runtime_config: tidemark_limits::RuntimeConfigSettings::default(),
            memberlist: MemberlistConfig::default(),
            ring: RingConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_listen_address: "0.0.0.0".into(),
            http_listen_port: 9009,
        }
    }
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        let d = EmbeddedConfig::default();
        EmbeddedSettings {
            partitions: d.partitions,
            segment_size_bytes: d.segment_size_bytes,
            fsync: d.fsync,
            retention_period: d.retention_period,
        }
    }
}

impl Default for QuerierConfig {
    fn default() -> Self {
        QuerierConfig {
            ingester_addresses: Vec::new(),
            ingester_client_timeout: Duration::from_secs(30),
            store_gateway_addresses: Vec::new(),
            query_ingesters_within: TieredOptions::default().query_ingesters_within,
            query_store_after: TieredOptions::default().query_store_after,
            read_consistency: ReadConsistency::Eventual,
            engine: EngineOptions::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

fn default_instance_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tidemark".into())
}

impl Config {
    /// Whether the ingest log is Kafka (else the embedded log).
    pub fn uses_kafka(&self) -> bool {
        !self.ingest_storage.kafka.address.trim().is_empty()
    }

    pub fn embedded_log(&self) -> EmbeddedConfig {
        let e = &self.ingest_storage.embedded;
        EmbeddedConfig {
            dir: self.data_dir.join("ingest-log"),
            partitions: e.partitions,
            segment_size_bytes: e.segment_size_bytes,
            fsync: e.fsync,
            retention_period: e.retention_period,
            ..EmbeddedConfig::default()
        }
    }

    /// The bucket directory of the filesystem backend when none is set.
    pub fn default_bucket_dir(&self) -> PathBuf {
        self.data_dir.join("blocks")
    }

    pub fn tiered_options(&self) -> TieredOptions {
        TieredOptions {
            query_ingesters_within: self.querier.query_ingesters_within,
            query_store_after: self.querier.query_store_after,
        }
    }

    /// The partitions an ingester of this process consumes.
    pub fn ingester_partitions(&self, partition_count: i32) -> anyhow::Result<Vec<i32>> {
        if self.target == Target::All && self.ingester.partition_id.is_none() {
            return Ok((0..partition_count).collect());
        }
        let p = match self.ingester.partition_id {
            Some(p) => p,
            None => tidemark_partition_consumers::config::partition_from_instance_id(&self.instance_id)
                .with_context(|| {
                    format!(
                        "cannot tell which partition to consume: set -ingester.partition-id, or an instance ID \
                         ending in -<number> (got {:?})",
                        self.instance_id
                    )
                })?,
        };
        if p >= partition_count {
            bail!("ingester partition {p} does not exist: the ingest log has {partition_count} partitions");
        }
        Ok(vec![p])
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.target == Target::Querier
            && self.querier.ingester_addresses.is_empty()
            && !self.memberlist.enabled()
        {
            bail!("-target=querier needs -memberlist.join (to find the ingesters in the ring) or -querier.ingester-addresses");
        }
        self.memberlist.validate().map_err(|e| anyhow::anyhow!(e))?;
        // A querier reads ingesters over HTTP and never the log.
        if matches!(
            self.target,
            Target::Distributor | Target::Ingester | Target::BlockBuilder
        ) && !self.uses_kafka()
        {
            bail!(
                "-target={} runs one component of a cluster and needs Kafka (-ingest-storage.kafka.address); \
                 use -target=all for a single process on the embedded log",
                serde_yaml::to_string(&self.target).unwrap_or_default().trim()
            );
        }
        if self.uses_kafka() {
            self.ingest_storage
                .kafka
                .validate()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        } else {
            self.embedded_log()
                .validate()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        self.distributor
            .validate()
            .map_err(|e| anyhow::anyhow!(e))?;
        self.ingester.validate().map_err(|e| anyhow::anyhow!(e))?;
        self.blocks_storage
            .validate()
            .map_err(|e| anyhow::anyhow!(e))?;
        self.store_gateway
            .validate()
            .map_err(|e| anyhow::anyhow!(e))?;
        self.block_builder
            .validate()
            .map_err(|e| anyhow::anyhow!(e))?;
        self.compactor.validate().map_err(|e| anyhow::anyhow!(e))?;
        self.limits
            .validate()
            .map_err(|e| anyhow::anyhow!("limits: {e}"))?;
        self.runtime_config
            .validate()
            .map_err(|e| anyhow::anyhow!(e))?;
        if self.store_gateway.ignore_deletion_marks_delay >= self.compactor.deletion_delay {
            bail!("-blocks-storage.bucket-store.ignore-deletion-marks-delay must be shorter than -compactor.deletion-delay, or queriers read deleted blocks");
        }
        if self.querier.query_ingesters_within > Duration::ZERO
            && self.querier.query_store_after > Duration::ZERO
            && self.querier.query_store_after >= self.querier.query_ingesters_within
        {
            bail!("-querier.query-store-after must be shorter than -querier.query-ingesters-within, or queries miss the time between them");
        }
        for a in self
            .querier
            .ingester_addresses
            .iter()
            .chain(&self.querier.store_gateway_addresses)
        {
            if !(a.starts_with("http://") || a.starts_with("https://")) {
                bail!("querier address {a:?} must start with http:// or https://");
            }
        }
        if self.querier.ingester_client_timeout.is_zero() {
            bail!("querier.ingester_client_timeout must be positive");
        }
        let engine = &self.querier.engine;
        if engine.default_subquery_step.as_millis() == 0 {
            bail!("querier.default_evaluation_interval must be at least 1ms");
        }
        if engine.timeout.is_zero() {
            bail!("querier.timeout must be positive");
        }
        if engine.max_samples == 0 {
            bail!("querier.max_samples must be positive");
        }
        Ok(())
    }

    /// The effective configuration as YAML, secrets redacted.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self)
            .unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }
}

/// The validation limits can be set in YAML under `distributor:` (as
/// before per-tenant limits) or `limits:`; a value left at its default in
/// `limits:` takes the `distributor:` one. `limits:` is then authoritative.
fn reconcile_validation_limits(
    d: &tidemark_producers::config::ValidationLimits,
    l: &mut tidemark_limits::Limits,
) {
    let ld = tidemark_limits::Limits::default();
    if l.max_label_names_per_series == ld.max_label_names_per_series {
        l.max_label_names_per_series = d.max_label_names_per_series;
    }
    if l.max_label_name_length == ld.max_label_name_length {
        l.max_label_name_length = d.max_label_name_length;
    }
    if l.max_label_value_length == ld.max_label_value_length {
        l.max_label_value_length = d.max_label_value_length;
    }
    if l.creation_grace_period == ld.creation_grace_period {
        l.creation_grace_period = d.creation_grace_period;
    }
    if l.past_grace_period == ld.past_grace_period {
        l.past_grace_period = d.past_grace_period;
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

fn parse_backend(s: &str) -> Result<StorageBackend, String> {
    serde_yaml::from_str(s)
        .map_err(|_| format!("unknown blocks storage backend {s:?}: use filesystem, s3, gcs or azure"))
}

fn parse_compression(s: &str) -> Result<KafkaCompression, String> {
    serde_yaml::from_str(s)
        .map_err(|_| format!("unknown compression {s:?}: use none, gzip, snappy, lz4 or zstd"))
}

/// Command line: `tidemark [flags]` runs the server; `tidemark bench` runs
/// the load generator.
#[derive(Debug, Parser)]
#[command(
    name = "tidemark",
    version,
    about = "Tidemark: a horizontally scalable, multi-tenant, long-term store for Prometheus metrics, built on a Kafka ingest log.",
    long_about = None,
    after_help = "Flags may be written with one dash, as in Mimir (-target=all), or two (--target all). \
                  Every flag has an environment variable twin, shown in brackets."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate realistic series and remote-write them at a server as fast as it accepts.
    Bench(crate::bench::BenchArgs),
    /// Load historic samples (OpenMetrics files or Prometheus remote read) into the ingest log with their original timestamps.
    Backfill(crate::backfill::BackfillArgs),
    /// Block-builder tools.
    #[command(name = "block-builder", subcommand)]
    BlockBuilder(crate::replay::BlockBuilderCommand),
}

macro_rules! flag_env {
    ($name:literal) => {
        concat!("TIDEMARK_", $name)
    };
}

#[derive(Debug, Default, Args)]
pub struct Flags {
    // --- General
    /// Components to run: all, distributor, ingester, querier, block-builder, store-gateway or compactor.
    #[arg(long = "target", env = flag_env!("TARGET"), value_enum, help_heading = "General")]
    pub target: Option<Target>,
    /// YAML configuration file; flags and env variables override it.
    #[arg(long = "config.file", env = flag_env!("CONFIG_FILE"), help_heading = "General")]
    pub config_file: Option<PathBuf>,
    /// Validate the configuration (file, env, flags), print a summary and exit without starting.
    #[arg(long = "config.check", env = flag_env!("CONFIG_CHECK"), num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, help_heading = "General")]
    pub config_check: Option<bool>,
    /// Directory for local state (default ./data).
    #[arg(long = "data-dir", env = flag_env!("DATA_DIR"), help_heading = "General")]
    pub data_dir: Option<PathBuf>,
    /// Instance ID; an ingester consumes the partition named by its numeric suffix (ingester-zone-a-3 → 3).
    #[arg(long = "ingester.ring.instance-id", env = flag_env!("INGESTER_RING_INSTANCE_ID"), help_heading = "General")]
    pub instance_id: Option<String>,
    /// Require X-Scope-OrgID on every request; when off every request is tenant "anonymous" (default true).
    #[arg(long = "auth.multitenancy-enabled", env = flag_env!("AUTH_MULTITENANCY_ENABLED"), num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, help_heading = "General")]
    pub multitenancy_enabled: Option<bool>,
    /// Log level: debug, info, warn, error.
    #[arg(long = "log.level", env = flag_env!("LOG_LEVEL"), help_heading = "General")]
    pub log_level: Option<String>,

    // --- Server
    /// HTTP listen address (default 0.0.0.0).
    #[arg(long = "server.http-listen-address", env = flag_env!("SERVER_HTTP_LISTEN_ADDRESS"), help_heading = "Server")]
    pub http_listen_address: Option<String>,
    /// HTTP listen port (default 9009).
    #[arg(long = "server.http-listen-port", env = flag_env!("SERVER_HTTP_LISTEN_PORT"), help_heading = "Server")]
    pub http_listen_port: Option<u16>,

    // --- Membership
    /// Members to join over gossip, comma-separated host:port; turns the ring on (default: none, no ring).
    #[arg(long = "memberlist.join", env = flag_env!("MEMBERLIST_JOIN"), value_delimiter = ',', help_heading = "Membership")]
    pub memberlist_join: Option<Vec<String>>,
    /// IP address gossip listens on (default 0.0.0.0).
    #[arg(long = "memberlist.bind-addr", env = flag_env!("MEMBERLIST_BIND_ADDR"), help_heading = "Membership")]
    pub memberlist_bind_addr: Option<String>,
    /// UDP port gossip listens on (default 7946).
    #[arg(long = "memberlist.bind-port", env = flag_env!("MEMBERLIST_BIND_PORT"), help_heading = "Membership")]
    pub memberlist_bind_port: Option<u16>,
    /// IP address others gossip with this process at (default: what the host name resolves to).
    #[arg(long = "memberlist.advertise-addr", env = flag_env!("MEMBERLIST_ADVERTISE_ADDR"), help_heading = "Membership")]
    pub memberlist_advertise_addr: Option<String>,
    /// Only members with the same label form a cluster (default tidemark).
    #[arg(long = "memberlist.cluster-label", env = flag_env!("MEMBERLIST_CLUSTER_LABEL"), help_heading = "Membership")]
    pub memberlist_cluster_label: Option<String>,
    /// Time between gossip rounds (default 200ms).
    #[arg(long = "memberlist.gossip-interval", env = flag_env!("MEMBERLIST_GOSSIP_INTERVAL"), value_parser = parse_duration, help_heading = "Membership")]
    pub memberlist_gossip_interval: Option<Duration>,
    /// How long a member that stopped answering, and the partition states it announced, stay in the ring (default 1h).
    #[arg(long = "memberlist.left-ingesters-timeout", env = flag_env!("MEMBERLIST_LEFT_INGESTERS_TIMEOUT"), value_parser = parse_duration, help_heading = "Membership")]
    pub memberlist_left_timeout: Option<Duration>,
    /// Host or IP others reach this process's HTTP server at (default: the gossip advertise address).
    #[arg(long = "ring.instance-addr", env = flag_env!("RING_INSTANCE_ADDR"), help_heading = "Membership")]
    pub ring_instance_addr: Option<String>,
    /// Port of -ring.instance-addr (default: the HTTP listen port).
    #[arg(long = "ring.instance-port", env = flag_env!("RING_INSTANCE_PORT"), help_heading = "Membership")]
    pub ring_instance_port: Option<u16>,
    /// Availability zone of this process (default: zone-x from an instance ID like ingester-zone-x-3).
    #[arg(long = "ring.instance-availability-zone", alias = "ingester.ring.instance-availability-zone", env = flag_env!("RING_INSTANCE_AVAILABILITY_ZONE"), help_heading = "Membership")]
    pub ring_zone: Option<String>,
    /// A new partition takes writes once it has had an owner this long (default 10s).
    #[arg(long = "ingester.partition-ring.min-partition-owners-duration", env = flag_env!("INGESTER_PARTITION_RING_MIN_PARTITION_OWNERS_DURATION"), value_parser = parse_duration, help_heading = "Membership")]
    pub min_partition_owners_duration: Option<Duration>,
    /// An inactive partition without a healthy owner leaves the ring once inactive this long (default 13h).
    #[arg(long = "ingester.partition-ring.delete-inactive-partition-after", env = flag_env!("INGESTER_PARTITION_RING_DELETE_INACTIVE_PARTITION_AFTER"), value_parser = parse_duration, help_heading = "Membership")]
    pub delete_inactive_partition_after: Option<Duration>,
    /// Zone a querier reads each partition from first (default: its own).
    #[arg(long = "querier.prefer-availability-zone", env = flag_env!("QUERIER_PREFER_AVAILABILITY_ZONE"), help_heading = "Membership")]
    pub querier_prefer_zone: Option<String>,

    // --- Kafka
    /// Kafka bootstrap brokers, comma-separated. Unset: the embedded log.
    #[arg(long = "ingest-storage.kafka.address", env = flag_env!("INGEST_STORAGE_KAFKA_ADDRESS"), help_heading = "Ingest storage (Kafka)")]
    pub kafka_address: Option<String>,
    /// Kafka topic (default tidemark).
    #[arg(long = "ingest-storage.kafka.topic", env = flag_env!("INGEST_STORAGE_KAFKA_TOPIC"), help_heading = "Ingest storage (Kafka)")]
    pub kafka_topic: Option<String>,
    /// Kafka client ID.
    #[arg(long = "ingest-storage.kafka.client-id", env = flag_env!("INGEST_STORAGE_KAFKA_CLIENT_ID"), help_heading = "Ingest storage (Kafka)")]
    pub kafka_client_id: Option<String>,
    /// Time allowed to reach the brokers at start-up.
    #[arg(long = "ingest-storage.kafka.dial-timeout", env = flag_env!("INGEST_STORAGE_KAFKA_DIAL_TIMEOUT"), value_parser = parse_duration, help_heading = "Ingest storage (Kafka)")]
    pub kafka_dial_timeout: Option<Duration>,
    /// Time allowed for a produce to be acknowledged.
    #[arg(long = "ingest-storage.kafka.write-timeout", env = flag_env!("INGEST_STORAGE_KAFKA_WRITE_TIMEOUT"), value_parser = parse_duration, help_heading = "Ingest storage (Kafka)")]
    pub kafka_write_timeout: Option<Duration>,
    /// Create the topic when missing (default true).
    #[arg(long = "ingest-storage.kafka.auto-create-topic-enabled", env = flag_env!("INGEST_STORAGE_KAFKA_AUTO_CREATE_TOPIC_ENABLED"), num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, help_heading = "Ingest storage (Kafka)")]
    pub kafka_auto_create_topic_enabled: Option<bool>,
    /// Partitions of an auto-created topic.
    #[arg(long = "ingest-storage.kafka.auto-create-topic-default-partitions", env = flag_env!("INGEST_STORAGE_KAFKA_AUTO_CREATE_TOPIC_DEFAULT_PARTITIONS"), help_heading = "Ingest storage (Kafka)")]
    pub kafka_auto_create_partitions: Option<i32>,
    /// Largest record produced; larger batches are split.
    #[arg(long = "ingest-storage.kafka.producer-max-record-size-bytes", env = flag_env!("INGEST_STORAGE_KAFKA_PRODUCER_MAX_RECORD_SIZE_BYTES"), help_heading = "Ingest storage (Kafka)")]
    pub kafka_max_record_size: Option<usize>,
    /// Most bytes buffered in the producer before produce calls fail.
    #[arg(long = "ingest-storage.kafka.producer-max-buffered-bytes", env = flag_env!("INGEST_STORAGE_KAFKA_PRODUCER_MAX_BUFFERED_BYTES"), help_heading = "Ingest storage (Kafka)")]
    pub kafka_max_buffered_bytes: Option<u64>,
    /// How long the producer waits to fill a batch.
    #[arg(long = "ingest-storage.kafka.producer-linger", env = flag_env!("INGEST_STORAGE_KAFKA_PRODUCER_LINGER"), value_parser = parse_duration, help_heading = "Ingest storage (Kafka)")]
    pub kafka_linger: Option<Duration>,
    /// Largest producer batch in bytes.
    #[arg(long = "ingest-storage.kafka.producer-batch-size-bytes", env = flag_env!("INGEST_STORAGE_KAFKA_PRODUCER_BATCH_SIZE_BYTES"), help_heading = "Ingest storage (Kafka)")]
    pub kafka_batch_size: Option<usize>,
    /// Compression: none, gzip, snappy, lz4 (default) or zstd.
    #[arg(long = "ingest-storage.kafka.producer-compression", env = flag_env!("INGEST_STORAGE_KAFKA_PRODUCER_COMPRESSION"), value_parser = parse_compression, help_heading = "Ingest storage (Kafka)")]
    pub kafka_compression: Option<KafkaCompression>,
    /// librdkafka security.protocol: plaintext, ssl, sasl_plaintext or sasl_ssl.
    #[arg(long = "ingest-storage.kafka.security-protocol", env = flag_env!("INGEST_STORAGE_KAFKA_SECURITY_PROTOCOL"), help_heading = "Ingest storage (Kafka)")]
    pub kafka_security_protocol: Option<String>,
    /// SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
    #[arg(long = "ingest-storage.kafka.sasl-mechanism", env = flag_env!("INGEST_STORAGE_KAFKA_SASL_MECHANISM"), help_heading = "Ingest storage (Kafka)")]
    pub kafka_sasl_mechanism: Option<String>,
    /// SASL user name.
    #[arg(long = "ingest-storage.kafka.sasl-username", env = flag_env!("INGEST_STORAGE_KAFKA_SASL_USERNAME"), help_heading = "Ingest storage (Kafka)")]
    pub kafka_sasl_username: Option<String>,
    /// SASL password.
    #[arg(long = "ingest-storage.kafka.sasl-password", env = flag_env!("INGEST_STORAGE_KAFKA_SASL_PASSWORD"), hide_env_values = true, help_heading = "Ingest storage (Kafka)")]
    pub kafka_sasl_password: Option<String>,
    /// CA certificate file for TLS.
    #[arg(long = "ingest-storage.kafka.tls-ca-path", env = flag_env!("INGEST_STORAGE_KAFKA_TLS_CA_PATH"), help_heading = "Ingest storage (Kafka)")]
    pub kafka_tls_ca_path: Option<String>,
    /// Client certificate file for TLS.
    #[arg(long = "ingest-storage.kafka.tls-cert-path", env = flag_env!("INGEST_STORAGE_KAFKA_TLS_CERT_PATH"), help_heading = "Ingest storage (Kafka)")]
    pub kafka_tls_cert_path: Option<String>,
    /// Client key file for TLS.
    #[arg(long = "ingest-storage.kafka.tls-key-path", env = flag_env!("INGEST_STORAGE_KAFKA_TLS_KEY_PATH"), help_heading = "Ingest storage (Kafka)")]
    pub kafka_tls_key_path: Option<String>,

    // --- Embedded log
    /// Partitions of the embedded log (fixed when it is created; default 2).
    #[arg(long = "ingest-storage.embedded.partitions", env = flag_env!("INGEST_STORAGE_EMBEDDED_PARTITIONS"), help_heading = "Ingest storage (embedded)")]
    pub embedded_partitions: Option<i32>,
    /// Segment file size of the embedded log.
    #[arg(long = "ingest-storage.embedded.segment-size-bytes", env = flag_env!("INGEST_STORAGE_EMBEDDED_SEGMENT_SIZE_BYTES"), help_heading = "Ingest storage (embedded)")]
    pub embedded_segment_size: Option<u64>,
    /// fsync before acknowledging writes (default true; turning it off risks acknowledged data on power loss).
    #[arg(long = "ingest-storage.embedded.fsync", env = flag_env!("INGEST_STORAGE_EMBEDDED_FSYNC"), num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, help_heading = "Ingest storage (embedded)")]
    pub embedded_fsync: Option<bool>,

    /// Delete embedded-log segments older than this (default 168h; 0 keeps everything).
    #[arg(long = "ingest-storage.embedded.retention-period", env = flag_env!("INGEST_STORAGE_EMBEDDED_RETENTION_PERIOD"), value_parser = parse_duration, help_heading = "Ingest storage (embedded)")]
    pub embedded_retention: Option<Duration>,

    // --- Distributor
    /// Largest push request, compressed or not (default 100 MiB).
    #[arg(long = "distributor.max-recv-msg-size", env = flag_env!("DISTRIBUTOR_MAX_RECV_MSG_SIZE"), help_heading = "Distributor")]
    pub max_recv_msg_size: Option<usize>,
    /// Most labels per series (default 30).
    #[arg(long = "validation.max-label-names-per-series", env = flag_env!("VALIDATION_MAX_LABEL_NAMES_PER_SERIES"), help_heading = "Distributor")]
    pub max_label_names_per_series: Option<usize>,
    /// Longest label name (default 1024).
    #[arg(long = "validation.max-length-label-name", env = flag_env!("VALIDATION_MAX_LENGTH_LABEL_NAME"), help_heading = "Distributor")]
    pub max_label_name_length: Option<usize>,
    /// Longest label value (default 2048).
    #[arg(long = "validation.max-length-label-value", env = flag_env!("VALIDATION_MAX_LENGTH_LABEL_VALUE"), help_heading = "Distributor")]
    pub max_label_value_length: Option<usize>,
    /// How far in the future a sample may be (default 10m).
    #[arg(long = "validation.create-grace-period", env = flag_env!("VALIDATION_CREATE_GRACE_PERIOD"), value_parser = parse_duration, help_heading = "Distributor")]
    pub creation_grace_period: Option<Duration>,
    /// How far in the past a sample may be (default 0 = no limit).
    #[arg(long = "validation.past-grace-period", env = flag_env!("VALIDATION_PAST_GRACE_PERIOD"), value_parser = parse_duration, help_heading = "Limits")]
    pub past_grace_period: Option<Duration>,
    /// Samples per second per tenant in each distributor (default 10000; 0 = no limit).
    #[arg(long = "distributor.ingestion-rate-limit", env = flag_env!("DISTRIBUTOR_INGESTION_RATE_LIMIT"), help_heading = "Limits")]
    pub ingestion_rate: Option<f64>,
    /// Samples per tenant allowed at once above the rate (default 200000).
    #[arg(long = "distributor.ingestion-burst-size", env = flag_env!("DISTRIBUTOR_INGESTION_BURST_SIZE"), help_heading = "Limits")]
    pub ingestion_burst_size: Option<u64>,
    /// Push requests per second per tenant in each distributor (default 0 = no limit).
    #[arg(long = "distributor.request-rate-limit", env = flag_env!("DISTRIBUTOR_REQUEST_RATE_LIMIT"), help_heading = "Limits")]
    pub request_rate: Option<f64>,
    /// Push requests per tenant allowed at once above the request rate (default 0: 1).
    #[arg(long = "distributor.request-burst-size", env = flag_env!("DISTRIBUTOR_REQUEST_BURST_SIZE"), help_heading = "Limits")]
    pub request_burst_size: Option<u64>,
    /// In-memory series per tenant over all partitions (default 150000; 0 = no limit).
    #[arg(long = "ingester.max-global-series-per-user", env = flag_env!("INGESTER_MAX_GLOBAL_SERIES_PER_USER"), help_heading = "Limits")]
    pub max_global_series_per_user: Option<u64>,
    /// In-memory series per metric name per tenant over all partitions (default 0 = no limit).
    #[arg(long = "ingester.max-global-series-per-metric", env = flag_env!("INGESTER_MAX_GLOBAL_SERIES_PER_METRIC"), help_heading = "Limits")]
    pub max_global_series_per_metric: Option<u64>,
    /// Per-tenant overrides file (YAML `overrides: {tenant: {...}}`), reloaded without restart.
    #[arg(long = "runtime-config.file", env = flag_env!("RUNTIME_CONFIG_FILE"), help_heading = "Limits")]
    pub runtime_config_file: Option<PathBuf>,
    /// How often the runtime configuration file is re-read (default 10s).
    #[arg(long = "runtime-config.reload-period", env = flag_env!("RUNTIME_CONFIG_RELOAD_PERIOD"), value_parser = parse_duration, help_heading = "Limits")]
    pub runtime_config_reload_period: Option<Duration>,

    /// Longest metric family name, help or unit of metric metadata (default 1024).
    #[arg(long = "validation.max-metadata-length", env = flag_env!("VALIDATION_MAX_METADATA_LENGTH"), help_heading = "Distributor")]
    pub max_metadata_length: Option<usize>,
    /// How much older than a series' newest sample a sample may be and still be ingested (default 0: refused as out of order).
    #[arg(long = "ingester.out-of-order-time-window", env = flag_env!("INGESTER_OUT_OF_ORDER_TIME_WINDOW"), value_parser = parse_duration, help_heading = "Ingester")]
    pub out_of_order_time_window: Option<Duration>,
    /// OTLP resource attributes copied onto every series as labels, comma-separated (default none).
    #[arg(long = "distributor.otel-promote-resource-attributes", env = flag_env!("DISTRIBUTOR_OTEL_PROMOTE_RESOURCE_ATTRIBUTES"), value_delimiter = ',', help_heading = "Distributor")]
    pub otel_promote_resource_attributes: Option<Vec<String>>,

    // --- Ingester
    /// Partition to consume (default: the instance ID's numeric suffix; -target=all consumes every partition).
    #[arg(long = "ingester.partition-id", env = flag_env!("INGESTER_PARTITION_ID"), help_heading = "Ingester")]
    pub partition_id: Option<i32>,
    /// Consumer group for committed offsets (default: the instance ID).
    #[arg(long = "ingest-storage.kafka.consumer-group", env = flag_env!("INGEST_STORAGE_KAFKA_CONSUMER_GROUP"), help_heading = "Ingester")]
    pub consumer_group: Option<String>,
    /// How often consumed offsets are committed (default 1s).
    #[arg(long = "ingester.offset-commit-interval", env = flag_env!("INGESTER_OFFSET_COMMIT_INTERVAL"), value_parser = parse_duration, help_heading = "Ingester")]
    pub offset_commit_interval: Option<Duration>,
    /// Recent data kept in memory and replayed at start-up (default 24h).
    #[arg(long = "ingester.head-retention", env = flag_env!("INGESTER_HEAD_RETENTION"), value_parser = parse_duration, help_heading = "Ingester")]
    pub head_retention: Option<Duration>,
    /// Ready when the start-up replay is within this many records of the end (default 0).
    #[arg(long = "ingester.max-consumer-lag-records-at-startup", env = flag_env!("INGESTER_MAX_CONSUMER_LAG_RECORDS_AT_STARTUP"), help_heading = "Ingester")]
    pub max_lag_records: Option<i64>,
    /// Ready only after reaching an end of the partition fetched at most this long before; a slower replay consumes to the new end (default 15s; 0: the end as at start-up).
    #[arg(long = "ingest-storage.kafka.max-consumer-lag-at-startup", env = flag_env!("INGEST_STORAGE_KAFKA_MAX_CONSUMER_LAG_AT_STARTUP"), value_parser = parse_duration, help_heading = "Ingester")]
    pub max_lag_at_startup: Option<Duration>,

    // --- Querier
    /// Ingester base URLs for -target=querier, comma-separated (http://host:port).
    #[arg(long = "querier.ingester-addresses", env = flag_env!("QUERIER_INGESTER_ADDRESSES"), value_delimiter = ',', help_heading = "Querier")]
    pub ingester_addresses: Option<Vec<String>>,
    /// Timeout of one call to an ingester (default 30s).
    #[arg(long = "querier.ingester-client-timeout", env = flag_env!("QUERIER_INGESTER_CLIENT_TIMEOUT"), value_parser = parse_duration, help_heading = "Querier")]
    pub ingester_client_timeout: Option<Duration>,
    /// How far back an instant selector looks for a sample (default 5m).
    #[arg(long = "querier.lookback-delta", env = flag_env!("QUERIER_LOOKBACK_DELTA"), value_parser = parse_duration, help_heading = "Querier")]
    pub lookback_delta: Option<Duration>,
    /// Most samples one query may load (default 50000000).
    #[arg(long = "querier.max-samples", env = flag_env!("QUERIER_MAX_SAMPLES"), help_heading = "Querier")]
    pub max_samples: Option<usize>,
    /// Longest a query may run (default 2m).
    #[arg(long = "querier.timeout", env = flag_env!("QUERIER_TIMEOUT"), value_parser = parse_duration, help_heading = "Querier")]
    pub query_timeout: Option<Duration>,
    /// Resolution of subqueries that give none, as `x[1h:]` (default 1m).
    #[arg(long = "querier.default-evaluation-interval", env = flag_env!("QUERIER_DEFAULT_EVALUATION_INTERVAL"), value_parser = parse_duration, help_heading = "Querier")]
    pub default_evaluation_interval: Option<Duration>,
    /// Store-gateway base URLs for -target=querier, comma-separated (http://host:port).
    #[arg(long = "querier.store-gateway-addresses", env = flag_env!("QUERIER_STORE_GATEWAY_ADDRESSES"), value_delimiter = ',', help_heading = "Querier")]
    pub store_gateway_addresses: Option<Vec<String>>,
    /// Query ingesters only for queries reaching into this recent window; 0 always (default 13h).
    #[arg(long = "querier.query-ingesters-within", env = flag_env!("QUERIER_QUERY_INGESTERS_WITHIN"), value_parser = parse_duration, help_heading = "Querier")]
    pub query_ingesters_within: Option<Duration>,
    /// Query the long-term store only for queries reaching further back than this; 0 always (default 12h).
    #[arg(long = "querier.query-store-after", env = flag_env!("QUERIER_QUERY_STORE_AFTER"), value_parser = parse_duration, help_heading = "Querier")]
    pub query_store_after: Option<Duration>,
    /// Default read consistency of queries: eventual, or strong (wait until the ingesters consumed what was written before the query; per query with the X-Read-Consistency header).
    #[arg(long = "ingest-storage.read-consistency", env = flag_env!("INGEST_STORAGE_READ_CONSISTENCY"), value_enum, help_heading = "Querier")]
    pub read_consistency: Option<ReadConsistency>,
    /// Enable PromQL functions Prometheus marks experimental: limitk, limit_ratio, histogram_quantiles, sort_by_label, mad_over_time, ts_of_*_over_time (default false).
    #[arg(long = "querier.promql-experimental-functions-enabled", env = flag_env!("QUERIER_PROMQL_EXPERIMENTAL_FUNCTIONS_ENABLED"), num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, help_heading = "Querier")]
    pub experimental_functions: Option<bool>,

    // --- Blocks storage
    /// Object storage for blocks: filesystem (default), s3, gcs or azure.
    #[arg(long = "blocks-storage.backend", env = flag_env!("BLOCKS_STORAGE_BACKEND"), value_parser = parse_backend, help_heading = "Blocks storage")]
    pub blocks_backend: Option<StorageBackend>,
    /// Directory of the filesystem backend (default <data-dir>/blocks).
    #[arg(long = "blocks-storage.filesystem.dir", env = flag_env!("BLOCKS_STORAGE_FILESYSTEM_DIR"), help_heading = "Blocks storage")]
    pub blocks_filesystem_dir: Option<PathBuf>,
    /// S3 endpoint, host:port or URL (default AWS).
    #[arg(long = "blocks-storage.s3.endpoint", env = flag_env!("BLOCKS_STORAGE_S3_ENDPOINT"), help_heading = "Blocks storage")]
    pub s3_endpoint: Option<String>,
    /// S3 bucket name.
    #[arg(long = "blocks-storage.s3.bucket-name", env = flag_env!("BLOCKS_STORAGE_S3_BUCKET_NAME"), help_heading = "Blocks storage")]
    pub s3_bucket_name: Option<String>,
    /// S3 region (default us-east-1).
    #[arg(long = "blocks-storage.s3.region", env = flag_env!("BLOCKS_STORAGE_S3_REGION"), help_heading = "Blocks storage")]
    pub s3_region: Option<String>,
    /// S3 access key ID.
    #[arg(long = "blocks-storage.s3.access-key-id", env = flag_env!("BLOCKS_STORAGE_S3_ACCESS_KEY_ID"), help_heading = "Blocks storage")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key.
    #[arg(long = "blocks-storage.s3.secret-access-key", env = flag_env!("BLOCKS_STORAGE_S3_SECRET_ACCESS_KEY"), hide_env_values = true, help_heading = "Blocks storage")]
    pub s3_secret_access_key: Option<String>,
    /// Plain HTTP to the S3 endpoint (default false).
    #[arg(long = "blocks-storage.s3.insecure", env = flag_env!("BLOCKS_STORAGE_S3_INSECURE"), num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, help_heading = "Blocks storage")]
    pub s3_insecure: Option<bool>,
    /// GCS bucket name.
    #[arg(long = "blocks-storage.gcs.bucket-name", env = flag_env!("BLOCKS_STORAGE_GCS_BUCKET_NAME"), help_heading = "Blocks storage")]
    pub gcs_bucket_name: Option<String>,
    /// Path of a GCS service account JSON key (default: application default credentials).
    #[arg(long = "blocks-storage.gcs.service-account-path", env = flag_env!("BLOCKS_STORAGE_GCS_SERVICE_ACCOUNT_PATH"), help_heading = "Blocks storage")]
    pub gcs_service_account_path: Option<String>,
    /// Azure storage account name.
    #[arg(long = "blocks-storage.azure.account-name", env = flag_env!("BLOCKS_STORAGE_AZURE_ACCOUNT_NAME"), help_heading = "Blocks storage")]
    pub azure_account_name: Option<String>,
    /// Azure storage account key.
    #[arg(long = "blocks-storage.azure.account-key", env = flag_env!("BLOCKS_STORAGE_AZURE_ACCOUNT_KEY"), hide_env_values = true, help_heading = "Blocks storage")]
    pub azure_account_key: Option<String>,
    /// Azure container name.
    #[arg(long = "blocks-storage.azure.container-name", env = flag_env!("BLOCKS_STORAGE_AZURE_CONTAINER_NAME"), help_heading = "Blocks storage")]
    pub azure_container_name: Option<String>,
    /// Azure endpoint (Azurite, sovereign clouds).
    #[arg(long = "blocks-storage.azure.endpoint", env = flag_env!("BLOCKS_STORAGE_AZURE_ENDPOINT"), help_heading = "Blocks storage")]
    pub azure_endpoint: Option<String>,
    /// How often the store-gateway refreshes its bucket index (default 1m).
    #[arg(long = "blocks-storage.bucket-store.sync-interval", env = flag_env!("BLOCKS_STORAGE_BUCKET_STORE_SYNC_INTERVAL"), value_parser = parse_duration, help_heading = "Blocks storage")]
    pub bucket_sync_interval: Option<Duration>,
    /// Blocks marked for deletion stay queried this long (default 1h).
    #[arg(long = "blocks-storage.bucket-store.ignore-deletion-marks-delay", env = flag_env!("BLOCKS_STORAGE_BUCKET_STORE_IGNORE_DELETION_MARKS_DELAY"), value_parser = parse_duration, help_heading = "Blocks storage")]
    pub ignore_deletion_marks_delay: Option<Duration>,
    /// Memory for opened blocks' metadata (default 64 MiB).
    #[arg(long = "blocks-storage.bucket-store.metadata-cache-max-bytes", env = flag_env!("BLOCKS_STORAGE_BUCKET_STORE_METADATA_CACHE_MAX_BYTES"), help_heading = "Blocks storage")]
    pub metadata_cache_max_bytes: Option<u64>,
    /// Memory for series labels read from blocks (default 256 MiB).
    #[arg(long = "blocks-storage.bucket-store.series-cache-max-bytes", env = flag_env!("BLOCKS_STORAGE_BUCKET_STORE_SERIES_CACHE_MAX_BYTES"), help_heading = "Blocks storage")]
    pub series_cache_max_bytes: Option<u64>,
    /// Memory for chunk columns read from blocks (default 512 MiB).
    #[arg(long = "blocks-storage.bucket-store.chunks-cache-max-bytes", env = flag_env!("BLOCKS_STORAGE_BUCKET_STORE_CHUNKS_CACHE_MAX_BYTES"), help_heading = "Blocks storage")]
    pub chunks_cache_max_bytes: Option<u64>,

    // --- Block-builder
    /// How often the block-builder cuts blocks from the log (default 1h).
    #[arg(long = "block-builder.consume-interval", env = flag_env!("BLOCK_BUILDER_CONSUME_INTERVAL"), value_parser = parse_duration, help_heading = "Block-builder")]
    pub bb_consume_interval: Option<Duration>,
    /// Consumer group of the block-builder's offsets (default block-builder).
    #[arg(long = "block-builder.consumer-group", env = flag_env!("BLOCK_BUILDER_CONSUMER_GROUP"), help_heading = "Block-builder")]
    pub bb_consumer_group: Option<String>,
    /// Partitions this block-builder owns, comma-separated (default all).
    #[arg(long = "block-builder.partitions", env = flag_env!("BLOCK_BUILDER_PARTITIONS"), value_delimiter = ',', help_heading = "Block-builder")]
    pub bb_partitions: Option<Vec<i32>>,
    /// Where a partition with no committed offset starts: this far back (default 168h).
    #[arg(long = "block-builder.lookback-on-no-commit", env = flag_env!("BLOCK_BUILDER_LOOKBACK_ON_NO_COMMIT"), value_parser = parse_duration, help_heading = "Block-builder")]
    pub bb_lookback: Option<Duration>,

    // --- Compactor
    /// How often the compactor runs (default 1h).
    #[arg(long = "compactor.compaction-interval", env = flag_env!("COMPACTOR_COMPACTION_INTERVAL"), value_parser = parse_duration, help_heading = "Compactor")]
    pub compaction_interval: Option<Duration>,
    /// Block ranges to merge into, comma-separated, smallest first (default 2h,12h,24h).
    #[arg(long = "compactor.block-ranges", env = flag_env!("COMPACTOR_BLOCK_RANGES"), value_delimiter = ',', value_parser = parse_duration, help_heading = "Compactor")]
    pub compactor_block_ranges: Option<Vec<Duration>>,
    /// How long replaced blocks stay before deletion (default 12h).
    #[arg(long = "compactor.deletion-delay", env = flag_env!("COMPACTOR_DELETION_DELAY"), value_parser = parse_duration, help_heading = "Compactor")]
    pub deletion_delay: Option<Duration>,
    /// Delete blocks older than this; 0 keeps everything (default 0).
    #[arg(long = "compactor.blocks-retention-period", env = flag_env!("COMPACTOR_BLOCKS_RETENTION_PERIOD"), value_parser = parse_duration, help_heading = "Compactor")]
    pub blocks_retention_period: Option<Duration>,
    /// Merge a window only once it ended this long ago (default 1h).
    #[arg(long = "compactor.compaction-wait-period", env = flag_env!("COMPACTOR_COMPACTION_WAIT_PERIOD"), value_parser = parse_duration, help_heading = "Compactor")]
    pub compaction_wait_period: Option<Duration>,
}

macro_rules! set {
    ($target:expr, $value:expr) => {
        if let Some(v) = $value {
            $target = v;
        }
    };
}

impl Flags {
    /// Builds the effective configuration: defaults, then the YAML file,
    /// then env variables and flags.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut c = match &self.config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the configuration file {}", path.display())
                })?;
                serde_yaml::from_str::<Config>(&text)
                    .with_context(|| format!("invalid configuration file {}", path.display()))?
            }
            None => Config::default(),
        };
        set!(c.target, self.target);
        set!(c.data_dir, self.data_dir);
        set!(c.instance_id, self.instance_id);
        set!(c.multitenancy_enabled, self.multitenancy_enabled);
        set!(c.log.level, self.log_level);
        set!(c.server.http_listen_address, self.http_listen_address);
        set!(c.server.http_listen_port, self.http_listen_port);
        let m = &mut c.memberlist;
        if let Some(join) = self.memberlist_join {
            m.join_members = join
                .into_iter()
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect();
        }
        set!(m.bind_addr, self.memberlist_bind_addr);
        set!(m.bind_port, self.memberlist_bind_port);
        set!(m.advertise_addr, self.memberlist_advertise_addr);
        set!(m.cluster_label, self.memberlist_cluster_label);
        set!(m.gossip_interval, self.memberlist_gossip_interval);
        set!(m.left_members_timeout, self.memberlist_left_timeout);
        let r = &mut c.ring;
        set!(r.instance_addr, self.ring_instance_addr);
        set!(r.instance_port, self.ring_instance_port);
        set!(r.instance_availability_zone, self.ring_zone);
        set!(r.min_partition_owners_duration, self.min_partition_owners_duration);
        set!(r.querier_prefer_availability_zone, self.querier_prefer_zone);
        set!(r.delete_inactive_partition_after, self.delete_inactive_partition_after);
        let k = &mut c.ingest_storage.kafka;
        set!(k.address, self.kafka_address);
        set!(k.topic, self.kafka_topic);
        set!(k.client_id, self.kafka_client_id);
        set!(k.dial_timeout, self.kafka_dial_timeout);
        set!(k.write_timeout, self.kafka_write_timeout);
        set!(
            k.auto_create_topic_enabled,
            self.kafka_auto_create_topic_enabled
        );
        set!(
            k.auto_create_topic_default_partitions,
            self.kafka_auto_create_partitions
        );
        set!(k.producer_max_record_size_bytes, self.kafka_max_record_size);
        set!(k.producer_max_buffered_bytes, self.kafka_max_buffered_bytes);
        set!(k.producer_linger, self.kafka_linger);
        set!(k.producer_batch_size_bytes, self.kafka_batch_size);
        set!(k.producer_compression, self.kafka_compression);
        for (field, value) in [
            (&mut k.security_protocol, self.kafka_security_protocol),
            (&mut k.sasl_mechanism, self.kafka_sasl_mechanism),
            (&mut k.sasl_username, self.kafka_sasl_username),
            (&mut k.sasl_password, self.kafka_sasl_password),
            (&mut k.tls_ca_path, self.kafka_tls_ca_path),
            (&mut k.tls_cert_path, self.kafka_tls_cert_path),
            (&mut k.tls_key_path, self.kafka_tls_key_path),
        ] {
            if value.is_some() {
                *field = value;
            }
        }
        let e = &mut c.ingest_storage.embedded;
        set!(e.partitions, self.embedded_partitions);
        set!(e.segment_size_bytes, self.embedded_segment_size);
        set!(e.fsync, self.embedded_fsync);
        set!(e.retention_period, self.embedded_retention);
        let d = &mut c.distributor;
        set!(d.max_recv_msg_size, self.max_recv_msg_size);
        set!(
            d.limits.max_label_names_per_series,
            self.max_label_names_per_series
        );
        set!(d.limits.max_label_name_length, self.max_label_name_length);
        set!(d.limits.max_label_value_length, self.max_label_value_length);
        set!(d.limits.creation_grace_period, self.creation_grace_period);
        if let Some(attrs) = self.otel_promote_resource_attributes {
            d.otel_promote_resource_attributes = attrs
                .into_iter()
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect();
        }
        reconcile_validation_limits(&c.distributor.limits, &mut c.limits);
        let l = &mut c.limits;
        set!(l.max_label_names_per_series, self.max_label_names_per_series);
        set!(l.max_label_name_length, self.max_label_name_length);
        set!(l.max_label_value_length, self.max_label_value_length);
        set!(l.creation_grace_period, self.creation_grace_period);
        set!(l.past_grace_period, self.past_grace_period);
        set!(l.max_metadata_length, self.max_metadata_length);
        set!(l.out_of_order_time_window, self.out_of_order_time_window);
        set!(l.ingestion_rate, self.ingestion_rate);
        set!(l.ingestion_burst_size, self.ingestion_burst_size);
        set!(l.request_rate, self.request_rate);
        set!(l.request_burst_size, self.request_burst_size);
        set!(l.max_global_series_per_user, self.max_global_series_per_user);
        set!(l.max_global_series_per_metric, self.max_global_series_per_metric);
        c.distributor.limits = tidemark_producers::config::ValidationLimits::from(&c.limits);
        if self.runtime_config_file.is_some() {
            c.runtime_config.file = self.runtime_config_file;
        }
        set!(c.runtime_config.period, self.runtime_config_reload_period);
        let i = &mut c.ingester;
        if self.partition_id.is_some() {
            i.partition_id = self.partition_id;
        }
        if self.consumer_group.is_some() {
            i.consumer_group = self.consumer_group;
        }
        set!(i.offset_commit_interval, self.offset_commit_interval);
        set!(i.head_retention, self.head_retention);
        set!(i.max_consumer_lag_records_at_startup, self.max_lag_records);
        set!(i.max_consumer_lag_at_startup, self.max_lag_at_startup);
        let q = &mut c.querier;
        set!(q.ingester_addresses, self.ingester_addresses);
        set!(q.ingester_client_timeout, self.ingester_client_timeout);
        set!(q.engine.lookback_delta, self.lookback_delta);
        set!(q.engine.max_samples, self.max_samples);
        set!(q.engine.timeout, self.query_timeout);
        set!(q.engine.default_subquery_step, self.default_evaluation_interval);
        set!(q.engine.experimental_functions, self.experimental_functions);
        set!(q.store_gateway_addresses, self.store_gateway_addresses);
        set!(q.query_ingesters_within, self.query_ingesters_within);
        set!(q.query_store_after, self.query_store_after);
        set!(q.read_consistency, self.read_consistency);
        let b = &mut c.blocks_storage;
        set!(b.backend, self.blocks_backend);
        set!(b.filesystem.dir, self.blocks_filesystem_dir);
        set!(b.s3.endpoint, self.s3_endpoint);
        set!(b.s3.bucket_name, self.s3_bucket_name);
        set!(b.s3.region, self.s3_region);
        set!(b.s3.access_key_id, self.s3_access_key_id);
        set!(b.s3.secret_access_key, self.s3_secret_access_key);
        set!(b.s3.insecure, self.s3_insecure);
        set!(b.gcs.bucket_name, self.gcs_bucket_name);
        set!(b.gcs.service_account_path, self.gcs_service_account_path);
        set!(b.azure.account_name, self.azure_account_name);
        set!(b.azure.account_key, self.azure_account_key);
        set!(b.azure.container_name, self.azure_container_name);
        set!(b.azure.endpoint, self.azure_endpoint);
        let g = &mut c.store_gateway;
        set!(g.sync_interval, self.bucket_sync_interval);
        set!(g.ignore_deletion_marks_delay, self.ignore_deletion_marks_delay);
        set!(g.metadata_cache_max_bytes, self.metadata_cache_max_bytes);
        set!(g.series_cache_max_bytes, self.series_cache_max_bytes);
        set!(g.chunks_cache_max_bytes, self.chunks_cache_max_bytes);
        let bb = &mut c.block_builder;
        set!(bb.consume_interval, self.bb_consume_interval);
        set!(bb.consumer_group, self.bb_consumer_group);
        set!(bb.partitions, self.bb_partitions);
        set!(bb.lookback_on_no_commit, self.bb_lookback);
        let k = &mut c.compactor;
        set!(k.compaction_interval, self.compaction_interval);
        set!(k.block_ranges, self.compactor_block_ranges);
        set!(k.deletion_delay, self.deletion_delay);
        set!(k.blocks_retention_period, self.blocks_retention_period);
        set!(k.wait_period, self.compaction_wait_period);
        // The distributor splits records at the log's record size limit.
        c.distributor.max_record_size_bytes = if c.uses_kafka() {
            c.ingest_storage.kafka.producer_max_record_size_bytes
        } else {
            c.embedded_log().max_record_size_bytes
        };
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let argv = crate::flags::normalize_args(
            std::iter::once("tidemark".to_string()).chain(args.iter().map(|s| s.to_string())),
        );
        let cli = Cli::try_parse_from(argv)?;
        cli.flags.into_config()
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.target, Target::All);
        assert_eq!(c.server.http_listen_port, 9009);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(c.multitenancy_enabled);
        assert!(!c.uses_kafka());
    }

    #[test]
    fn mimir_style_flags() {
        let c = parse(&[
            "-target=all",
            "-server.http-listen-port=9100",
            "-auth.multitenancy-enabled=false",
            "-querier.lookback-delta",
            "1m",
            "-ingest-storage.kafka.address=localhost:9092",
            "-ingest-storage.kafka.producer-compression=zstd",
            "-distributor.otel-promote-resource-attributes=k8s.pod.name, cloud.region",
        ])
        .unwrap();
        assert_eq!(c.server.http_listen_port, 9100);
        assert!(!c.multitenancy_enabled);
        assert_eq!(c.querier.engine.lookback_delta, Duration::from_secs(60));
        assert!(c.uses_kafka());
        assert_eq!(
            c.ingest_storage.kafka.producer_compression,
            KafkaCompression::Zstd
        );
        assert_eq!(
            c.distributor.max_record_size_bytes,
            c.ingest_storage.kafka.producer_max_record_size_bytes
        );
        assert_eq!(
            c.distributor.otel_promote_resource_attributes,
            vec!["k8s.pod.name", "cloud.region"]
        );
    }

    #[test]
    fn limits_flags_and_yaml() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.limits, tidemark_limits::Limits::default());
        assert_eq!(c.runtime_config.period, Duration::from_secs(10));
        let c = parse(&[
            "-distributor.ingestion-rate-limit=5.5",
            "-distributor.ingestion-burst-size=50",
            "-distributor.request-rate-limit=2",
            "-ingester.max-global-series-per-user=7",
            "-ingester.max-global-series-per-metric=3",
            "-validation.past-grace-period=2h",
            "-validation.max-label-names-per-series=12",
            "-runtime-config.file=/tmp/rt.yaml",
            "-runtime-config.reload-period=1s",
        ])
        .unwrap();
        assert_eq!(c.limits.ingestion_rate, 5.5);
        assert_eq!(c.limits.ingestion_burst_size, 50);
        assert_eq!(c.limits.request_rate, 2.0);
        assert_eq!(c.limits.max_global_series_per_user, 7);
        assert_eq!(c.limits.max_global_series_per_metric, 3);
        assert_eq!(c.limits.past_grace_period, Duration::from_secs(7200));
        assert_eq!(c.limits.max_label_names_per_series, 12);
        assert_eq!(c.distributor.limits.max_label_names_per_series, 12);
        assert_eq!(c.distributor.limits.past_grace_period, Duration::from_secs(7200));
        assert_eq!(c.runtime_config.file.as_deref(), Some(std::path::Path::new("/tmp/rt.yaml")));
        assert_eq!(c.runtime_config.period, Duration::from_secs(1));
        assert!(parse(&["-distributor.ingestion-rate-limit=-1"]).is_err());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "limits:\n  ingestion_rate: 3\n  max_label_value_length: 99\ndistributor:\n  max_label_name_length: 77\nruntime_config:\n  file: /x.yaml\n  period: 5s\n",
        )
        .unwrap();
        let c = parse(&[&format!("-config.file={}", path.display())]).unwrap();
        assert_eq!(c.limits.ingestion_rate, 3.0);
        assert_eq!(c.limits.max_label_value_length, 99);
        assert_eq!(c.limits.max_label_name_length, 77, "the distributor: key still works");
        assert_eq!(c.distributor.limits.max_label_value_length, 99);
        assert_eq!(c.runtime_config.period, Duration::from_secs(5));
    }

    #[test]
    fn yaml_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "server:\n  http_listen_port: 9200\nmultitenancy_enabled: false\ningester:\n  head_retention: 2h\nquerier:\n  lookback_delta: 1m\n  ingester_client_timeout: 5s\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = parse(&["-config.file", p]).unwrap();
        assert_eq!(c.server.http_listen_port, 9200);
        assert_eq!(c.ingester.head_retention, Duration::from_secs(7200));
        assert_eq!(c.querier.engine.lookback_delta, Duration::from_secs(60));
        assert_eq!(c.querier.ingester_client_timeout, Duration::from_secs(5));
        let c = parse(&["-config.file", p, "-server.http-listen-port=9300"]).unwrap();
        assert_eq!(c.server.http_listen_port, 9300);
        std::fs::write(&path, "server:\n  http_port: 1\n").unwrap();
        let err = parse(&["-config.file", p]).unwrap_err();
        assert!(format!("{err:#}").contains("http_port"), "{err:#}");
    }

    #[test]
    fn invalid_combinations_are_refused() {
        assert!(
            parse(&["-target=querier"]).is_err(),
            "querier without ingesters"
        );
        assert!(
            parse(&["-target=ingester"]).is_err(),
            "ingester without Kafka"
        );
        // A querier never opens the log, so it needs no Kafka address.
        assert!(parse(&["-target=querier", "-querier.ingester-addresses=http://i:9009"]).is_ok());
        // Or it finds them in the ring.
        let c = parse(&["-target=querier", "-memberlist.join=distributor:7946, querier:7946", "-memberlist.gossip-interval=100ms"]).unwrap();
        assert_eq!(c.memberlist.join_members, vec!["distributor:7946", "querier:7946"]);
        assert_eq!(c.memberlist.gossip_interval, Duration::from_millis(100));
        assert!(parse(&["-target=querier"]).is_err(), "a querier with neither");
        assert!(parse(&["-memberlist.join=nohostport"]).is_err());
        assert!(parse(&["-memberlist.join=a:7946", "-memberlist.bind-addr=localhost"]).is_err(), "bind address is an IP");
        assert!(parse(&["-ingest-storage.embedded.partitions=0"]).is_err());
        assert!(parse(&["-querier.lookback-delta=abc"]).is_err());
    }

    #[test]
    fn effective_config_redacts_secrets() {
        let c = parse(&[
            "-ingest-storage.kafka.address=k:9092",
            "-ingest-storage.kafka.sasl-username=u",
            "-ingest-storage.kafka.sasl-password=hunter2",
        ])
        .unwrap();
        let y = c.to_yaml();
        assert!(!y.contains("hunter2"));
        assert!(y.contains("http_listen_port: 9009"));
        let back: Config = serde_yaml::from_str(&y.replace("<redacted>", "x")).unwrap();
        assert_eq!(back.server, c.server);
    }

    #[test]
    fn partition_from_instance_id() {
        let mut c = Config {
            target: Target::Ingester,
            instance_id: "ingester-zone-a-3".into(),
            ..Config::default()
        };
        assert_eq!(c.ingester_partitions(4).unwrap(), vec![3]);
        assert!(c.ingester_partitions(2).is_err());
        c.instance_id = "ingester".into();
        assert!(c.ingester_partitions(4).is_err());
        c.target = Target::All;
        assert_eq!(c.ingester_partitions(2).unwrap(), vec![0, 1]);
    }
}
