//! `tidemark backfill`: loads historic samples, with their original
//! timestamps, into the ingest log through the distributor (validation,
//! sharding, record format), so that the block-builder writes them into
//! the blocks of their 2h windows. Sources: OpenMetrics or Prometheus text
//! files, or a Prometheus remote-read endpoint read in time slices.
//! Progress is kept in a checkpoint file after every acknowledged batch, so
//! an interrupted run resumes where it stopped; see docs/backfill.md.

pub mod remote_read;
pub mod text;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{BufReader, IsTerminal, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::Args;
use prost::Message;
use serde::{Deserialize, Serialize};
use tidemark_producers::distributor::prepare_with;
use tidemark_producers::metrics::DistributorMetrics;
use tidemark_producers::{Distributor, PushError};
use tidemark_schemas::prometheus::{Label, Sample, TimeSeries, WriteRequest};

use crate::config::{Config, Flags};
use text::{TextFormat, TextReader, TextSample};

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Tenant to write to (default: `anonymous`, the tenant of a server
    /// without -auth.multitenancy-enabled).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Text exposition files to load, in order (OpenMetrics by default,
    /// see --format). Every sample needs a timestamp.
    #[arg(long = "from-openmetrics", value_name = "FILE", num_args = 1.., conflicts_with = "from_remote_read")]
    pub from_openmetrics: Vec<PathBuf>,
    /// Format of the files: openmetrics (timestamps in seconds) or
    /// prometheus (the 0.0.4 text format, timestamps in milliseconds).
    #[arg(long, value_enum, default_value = "openmetrics")]
    pub format: TextFormat,
    /// A Prometheus remote-read endpoint (`http://prometheus:9090/api/v1/read`).
    #[arg(long = "from-remote-read", value_name = "URL")]
    pub from_remote_read: Option<String>,
    /// Series selector to read (repeatable), e.g. `{__name__=~".+"}`.
    #[arg(long = "match", value_name = "SELECTOR")]
    pub matches: Vec<String>,
    /// Start of the time range to read (RFC 3339), included.
    #[arg(long, value_name = "RFC3339")]
    pub start: Option<String>,
    /// End of the time range to read (RFC 3339), included.
    #[arg(long, value_name = "RFC3339")]
    pub end: Option<String>,
    /// Time range of one remote-read request: bounds memory.
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = humantime::parse_duration)]
    pub slice: Duration,
    /// Header for the remote-read requests (repeatable), `Name: value`.
    #[arg(long = "remote-read-header", value_name = "NAME: VALUE")]
    pub remote_read_headers: Vec<String>,
    /// Timeout of one remote-read request.
    #[arg(long = "remote-read-timeout", value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub remote_read_timeout: Duration,
    /// Samples per write (one remote-write request through the distributor).
    #[arg(long = "batch-size", value_name = "SAMPLES", default_value_t = 5000)]
    pub batch_size: usize,
    /// Samples per second at most (default: unlimited).
    #[arg(long, value_name = "SAMPLES_PER_SEC")]
    pub rate: Option<f64>,
    /// Progress file (default: `<data-dir>/backfill-<hash of the inputs>.json`).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Ignore an existing checkpoint and load everything again.
    #[arg(long)]
    pub restart: bool,
    /// The server's flags (ingest log, limits, ...).
    #[command(flatten)]
    pub flags: Flags,
}

/// Progress of a run, kept in the checkpoint file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// What is being loaded; a checkpoint of other inputs is refused.
    pub inputs: String,
    /// Files: those before `file_index` are loaded, and that one up to
    /// byte `offset` (the start of line `line + 1`).
    #[serde(default)]
    pub file_index: usize,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub line: u64,
    /// Remote read: every slice up to this time (ms, included) is loaded.
    #[serde(default)]
    pub done_until_ms: Option<i64>,
    /// Everything is loaded.
    #[serde(default)]
    pub complete: bool,
    /// Samples written by every run so far.
    #[serde(default)]
    pub samples: u64,
}

impl Checkpoint {
    fn load(path: &Path) -> anyhow::Result<Option<Checkpoint>> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).with_context(|| {
                format!(
                    "the checkpoint {} is unreadable: delete it or pass --restart",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read the checkpoint {}", path.display()))
            }
        }
    }

    /// Writes the checkpoint atomically (temporary file, fsync, rename).
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(self)?;
        let mut f =
            File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&body)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot write the checkpoint {}", path.display()))?;
        Ok(())
    }
}

/// FNV-1a: a hash that stays the same across builds, for file names.
fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn parse_time(s: &str, what: &str) -> anyhow::Result<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim()).with_context(|| {
        format!("--{what} {s:?} is not an RFC 3339 time (2026-11-24T00:00:00Z)")
    })?;
    Ok(match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    })
}

fn parse_header(h: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = h
        .split_once(':')
        .ok_or_else(|| anyhow!("--remote-read-header {h:?} is not `Name: value`"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

enum Source {
    Files(Vec<PathBuf>),
    RemoteRead {
        url: String,
        selectors: Vec<Vec<tidemark_schemas::prometheus::LabelMatcher>>,
        start_ms: i64,
        end_ms: i64,
    },
}

pub async fn run(args: BackfillArgs) -> anyhow::Result<()> {
    let BackfillArgs {
        tenant,
        from_openmetrics,
        format,
        from_remote_read,
        matches,
        start,
        end,
        slice,
        remote_read_headers,
        remote_read_timeout,
        batch_size,
        rate,
        checkpoint,
        restart,
        flags,
    } = args;
    let tenant = tenant.unwrap_or_else(|| tidemark_storage::tenant::ANONYMOUS.to_owned());
    tidemark_storage::tenant::validate_tenant_id(&tenant)
        .map_err(|e| anyhow!("--tenant {tenant:?}: {e}"))?;
    if batch_size == 0 {
        bail!("--batch-size must be positive");
    }
    if let Some(r) = rate {
        if !r.is_finite() || r <= 0.0 {
            bail!("--rate must be a positive number of samples per second");
        }
    }
    let (source, inputs) = match (from_openmetrics.is_empty(), from_remote_read) {
        (false, None) => {
            if !matches.is_empty() || start.is_some() || end.is_some() {
                bail!(
                    "--match, --start and --end are for --from-remote-read; files are loaded whole"
                );
            }
            let mut files = Vec::new();
            for f in &from_openmetrics {
                files.push(
                    std::fs::canonicalize(f)
                        .with_context(|| format!("cannot open {}", f.display()))?,
                );
            }
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            let inputs = format!(
                "tenant={tenant}\nformat={format:?}\nfiles={}",
                names.join("\n")
            );
            (Source::Files(files), inputs)
        }
        (true, Some(url)) => {
            if matches.is_empty() {
                bail!("--from-remote-read needs at least one --match selector, e.g. --match '{{__name__=~\".+\"}}'");
            }
            let (Some(start), Some(end)) = (start, end) else {
                bail!("--from-remote-read needs --start and --end (RFC 3339)");
            };
            let (start_ms, end_ms) = (parse_time(&start, "start")?, parse_time(&end, "end")?);
            if end_ms < start_ms {
                bail!("--end is before --start");
            }
            if slice.as_millis() == 0 {
                bail!("--slice must be positive");
            }
            let selectors = matches
                .iter()
                .map(|m| remote_read::parse_selector(m))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let inputs = format!(
                "tenant={tenant}\nurl={url}\nmatch={}\nstart={start_ms}\nend={end_ms}",
                matches.join("\n")
            );
            (
                Source::RemoteRead {
                    url,
                    selectors,
                    start_ms,
                    end_ms,
                },
                inputs,
            )
        }
        (false, Some(_)) => bail!("use either --from-openmetrics or --from-remote-read, not both"),
        (true, None) => {
            bail!("nothing to load: pass --from-openmetrics FILE... or --from-remote-read URL")
        }
    };

    let cfg = flags.into_config()?;
    let checkpoint_path = match checkpoint {
        Some(p) => p,
        None => {
            std::fs::create_dir_all(&cfg.data_dir).with_context(|| {
                format!("cannot create the data dir {}", cfg.data_dir.display())
            })?;
            cfg.data_dir
                .join(format!("backfill-{:016x}.json", stable_hash(&inputs)))
        }
    };
    let mut cp = match Checkpoint::load(&checkpoint_path)? {
        Some(cp) if !restart => {
            if cp.inputs != inputs {
                bail!(
                    "the checkpoint {} belongs to other inputs:\n{}\nuse another --checkpoint, delete it, or pass --restart",
                    checkpoint_path.display(),
                    cp.inputs
                );
            }
            cp
        }
        _ => Checkpoint {
            inputs: inputs.clone(),
            ..Checkpoint::default()
        },
    };
    if cp.complete {
        println!(
            "nothing to do: the checkpoint {} says these inputs were all loaded ({} samples); pass --restart to load them again",
            checkpoint_path.display(),
            cp.samples
        );
        return Ok(());
    }

    let distributor = open_distributor(&cfg, &tenant).await?;
    let mut sink = Sink {
        distributor,
        tenant: tenant.clone(),
        rate,
        started: Instant::now(),
        attempted: 0,
        stats: Stats::default(),
        checkpoint_path,
        last_save: Instant::now(),
    };
    let result = match &source {
        Source::Files(files) => load_files(&mut sink, &mut cp, files, format, batch_size).await,
        Source::RemoteRead {
            url,
            selectors,
            start_ms,
            end_ms,
        } => {
            let headers = remote_read_headers
                .iter()
                .map(|h| parse_header(h))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let reader = remote_read::RemoteReader::new(url, headers, remote_read_timeout)?;
            load_remote_read(
                &mut sink, &mut cp, &reader, selectors, *start_ms, *end_ms, slice, batch_size,
            )
            .await
        }
    };
    // Keep what was acknowledged, whatever happened.
    let saved = sink.save(&cp, true);
    sink.print_summary(result.is_ok());
    result?;
    saved?;
    Ok(())
}

/// A distributor on the configured log with no rate limit and no limit on
/// the age of samples (samples too far in the future are still refused).
async fn open_distributor(cfg: &Config, tenant: &str) -> anyhow::Result<Distributor> {
    let mut registry = prometheus_client::registry::Registry::default();
    let overrides = tidemark_limits::Overrides::load(
        cfg.limits.clone(),
        &cfg.runtime_config,
        tidemark_limits::RuntimeConfigMetrics::new(&mut registry),
    )
    .context("cannot load the runtime configuration (-runtime-config.file)")?;
    let mut limits = (*overrides.get(tenant)).clone();
    limits.ingestion_rate = 0.0;
    limits.request_rate = 0.0;
    limits.past_grace_period = Duration::ZERO;
    let overrides = tidemark_limits::Overrides::fixed(limits);

    if !cfg.uses_kafka() {
        let host = match cfg.server.http_listen_address.as_str() {
            "" | "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
            h => h,
        };
        let addr = format!("{host}:{}", cfg.server.http_listen_port);
        let probe = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(&addr),
        )
        .await;
        if let Ok(Ok(_)) = probe {
            bail!(
                "something listens on {addr}, probably the Tidemark server: the embedded ingest log in {} cannot be shared, stop the server before backfilling (or pass the server's -server.http-listen-port if it is another process)",
                cfg.embedded_log().dir.display()
            );
        }
    }
    let log = crate::server::open_log(cfg, &mut registry).await.with_context(|| {
        if cfg.uses_kafka() {
            "cannot open the Kafka ingest log".to_owned()
        } else {
            format!(
                "cannot open the embedded ingest log in {} (with the embedded log the server must be stopped while backfilling)",
                cfg.embedded_log().dir.display()
            )
        }
    })?;
    let metrics = Arc::new(DistributorMetrics::new(&mut registry));
    Ok(Distributor::new(log, cfg.distributor.clone(), metrics).with_overrides(overrides))
}

#[derive(Default)]
struct Stats {
    samples: u64,
    batches: u64,
    series: SeriesCounter,
    rejected_series: u64,
    rejected_samples: u64,
    /// Refused series per reason.
    reasons: BTreeMap<String, u64>,
    /// `samples` when the checkpoint's total was last brought up to date.
    reported: u64,
}

impl Stats {
    /// Samples written since the last call, for the checkpoint's total.
    fn take_new_samples(&mut self) -> u64 {
        let d = self.samples - self.reported;
        self.reported = self.samples;
        d
    }
}

/// Distinct series, by hash; stops counting at a bound to keep memory flat.
#[derive(Default)]
struct SeriesCounter {
    seen: HashSet<u64>,
    saturated: bool,
}

const MAX_COUNTED_SERIES: usize = 5_000_000;

impl SeriesCounter {
    fn add(&mut self, labels: &[Label]) {
        if self.saturated {
            return;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for l in labels {
            l.name.hash(&mut h);
            0xffu8.hash(&mut h);
            l.value.hash(&mut h);
            0xffu8.hash(&mut h);
        }
        self.seen.insert(h.finish());
        if self.seen.len() >= MAX_COUNTED_SERIES {
            self.saturated = true;
        }
    }

    fn describe(&self) -> String {
        if self.saturated {
            format!("{}+", self.seen.len())
        } else {
            self.seen.len().to_string()
        }
    }
}

/// Writes batches through the distributor, paced by `--rate`.
struct Sink {
    distributor: Distributor,
    tenant: String,
    rate: Option<f64>,
    started: Instant,
    attempted: u64,
    stats: Stats,
    checkpoint_path: PathBuf,
    last_save: Instant,
}

impl Sink {
    /// Writes one batch and returns once it is durable in the log.
    async fn push(&mut self, req: WriteRequest) -> anyhow::Result<()> {
        let samples: u64 = req.timeseries.iter().map(|t| t.samples.len() as u64).sum();
        if samples == 0 {
            return Ok(());
        }
        if let Some(rate) = self.rate {
            let due = self.started + Duration::from_secs_f64(self.attempted as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        self.attempted += samples;
        for ts in &req.timeseries {
            self.stats.series.add(&ts.labels);
        }
        let body = req.encode_to_vec();
        let mut attempt = 0u32;
        loop {
            match self.distributor.push(&self.tenant, &body).await {
                Ok(out) => {
                    self.stats.samples += out.samples as u64;
                    break;
                }
                Err(PushError::Validation { written, .. }) => {
                    self.stats.samples += written as u64;
                    self.count_refused(&body);
                    break;
                }
                Err(PushError::Log(e)) if e.is_retryable() && attempt < 10 => {
                    attempt += 1;
                    let wait = Duration::from_millis(100 << attempt.min(6));
                    eprintln!("writing to the ingest log failed ({e}); retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    return Err(anyhow!(e).context("writing a batch to the ingest log failed"))
                }
            }
        }
        self.stats.batches += 1;
        Ok(())
    }

    /// The reasons of refused series: the request is validated again, without
    /// I/O, to learn each series' reason.
    fn count_refused(&mut self, body: &[u8]) {
        let limits = self.distributor.overrides().get(&self.tenant);
        let validation = tidemark_producers::config::ValidationLimits::from(&*limits);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        match prepare_with(
            &self.tenant,
            body,
            1,
            self.distributor.config(),
            &validation,
            now,
        ) {
            Ok(p) if !p.errors.is_empty() => {
                for e in p.errors {
                    self.stats.rejected_series += 1;
                    self.stats.rejected_samples += e.discarded_samples as u64;
                    *self.stats.reasons.entry(e.reason.to_owned()).or_default() += 1;
                }
            }
            _ => {
                self.stats.rejected_series += 1;
                *self.stats.reasons.entry("invalid".to_owned()).or_default() += 1;
            }
        }
    }

    /// Saves the checkpoint now when `force`, else at most once a second.
    fn save(&mut self, cp: &Checkpoint, force: bool) -> anyhow::Result<()> {
        if !force && self.last_save.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.last_save = Instant::now();
        cp.save(&self.checkpoint_path)
    }

    fn print_summary(&self, ok: bool) {
        let secs = self.started.elapsed().as_secs_f64();
        let s = &self.stats;
        let rejected = if s.rejected_series == 0 {
            "none".to_owned()
        } else {
            let reasons: Vec<String> = s.reasons.iter().map(|(r, n)| format!("{r}: {n}")).collect();
            format!(
                "{} series ({} samples): {}",
                s.rejected_series,
                s.rejected_samples,
                reasons.join(", ")
            )
        };
        println!(
            "backfill {}: {} samples, {} series, {} batches in {:.1}s ({:.0} samples/s); rejected: {rejected}; checkpoint {}",
            if ok { "complete" } else { "stopped" },
            s.samples,
            s.series.describe(),
            s.batches,
            secs,
            s.samples as f64 / secs.max(1e-9),
            self.checkpoint_path.display()
        );
    }
}

type TextLabels = Vec<(String, String)>;

/// Samples of one batch, grouped by series.
#[derive(Default)]
struct TextBatch {
    index: HashMap<TextLabels, usize>,
    series: Vec<(TextLabels, Vec<Sample>)>,
    samples: usize,
}

impl TextBatch {
    fn add(&mut self, s: TextSample) {
        let sample = Sample {
            value: s.value,
            timestamp: s.timestamp_ms,
        };
        match self.index.get(&s.labels) {
            Some(&i) => self.series[i].1.push(sample),
            None => {
                self.index.insert(s.labels.clone(), self.series.len());
                self.series.push((s.labels, vec![sample]));
            }
        }
        self.samples += 1;
    }

    fn take(&mut self) -> WriteRequest {
        self.index.clear();
        self.samples = 0;
        let timeseries = std::mem::take(&mut self.series)
            .into_iter()
            .map(|(mut labels, mut samples)| {
                labels.sort_by(|a, b| a.0.cmp(&b.0));
                samples.sort_by_key(|s| s.timestamp);
                TimeSeries {
                    labels: labels
                        .into_iter()
                        .map(|(n, v)| Label {
                            name: Bytes::from(n.into_bytes()),
                            value: Bytes::from(v.into_bytes()),
                        })
                        .collect(),
                    samples,
                    exemplars: vec![],
                }
            })
            .collect();
        WriteRequest {
            timeseries,
            metadata: vec![],
        }
    }
}

async fn load_files(
    sink: &mut Sink,
    cp: &mut Checkpoint,
    files: &[PathBuf],
    format: TextFormat,
    batch_size: usize,
) -> anyhow::Result<()> {
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .map(|m| m.len())
                .with_context(|| format!("cannot read {}", f.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let total: u64 = sizes.iter().sum();
    let before = |i: usize| sizes[..i.min(sizes.len())].iter().sum::<u64>();
    if cp.file_index > files.len()
        || (cp.file_index < files.len() && cp.offset > sizes[cp.file_index])
    {
        bail!("the checkpoint is beyond the end of the input: were the files changed? Pass --restart to load them again");
    }
    if cp.file_index > 0 || cp.offset > 0 {
        eprintln!(
            "resuming from the checkpoint {}: file {} of {} at byte {} (after line {})",
            sink.checkpoint_path.display(),
            cp.file_index + 1,
            files.len(),
            cp.offset,
            cp.line
        );
    }
    let mut progress = Progress::new(total, before(cp.file_index) + cp.offset, Unit::Bytes);
    for (i, path) in files.iter().enumerate().skip(cp.file_index) {
        let (offset, line) = if i == cp.file_index {
            (cp.offset, cp.line)
        } else {
            (0, 0)
        };
        let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        f.seek(SeekFrom::Start(offset))
            .with_context(|| format!("cannot seek in {}", path.display()))?;
        let mut reader =
            TextReader::new(BufReader::with_capacity(256 << 10, f), format, offset, line);
        let mut batch = TextBatch::default();
        loop {
            let next = reader
                .next_sample()
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
            let end = next.is_none();
            if let Some(s) = next {
                batch.add(s);
            }
            if batch.samples >= batch_size || (end && batch.samples > 0) {
                sink.push(batch.take()).await?;
                cp.samples = cp.samples.saturating_add(sink.stats.take_new_samples());
                cp.file_index = i;
                cp.offset = reader.offset;
                cp.line = reader.line;
                sink.save(cp, false)?;
                progress.update(before(i) + reader.offset, &sink.stats);
            }
            if end {
                break;
            }
        }
        cp.file_index = i + 1;
        cp.offset = 0;
        cp.line = 0;
        sink.save(cp, true)?;
        progress.update(before(i + 1), &sink.stats);
    }
    cp.complete = true;
    progress.finish(&sink.stats);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn load_remote_read(
    sink: &mut Sink,
    cp: &mut Checkpoint,
    reader: &remote_read::RemoteReader,
    selectors: &[Vec<tidemark_schemas::prometheus::LabelMatcher>],
    start_ms: i64,
    end_ms: i64,
    slice: Duration,
    batch_size: usize,
) -> anyhow::Result<()> {
    let slice_ms = (slice.as_millis() as i64).max(1);
    let mut from = match cp.done_until_ms {
        Some(done) => {
            eprintln!(
                "resuming from the checkpoint {}: everything up to {} is loaded",
                sink.checkpoint_path.display(),
                fmt_ms(done)
            );
            done.saturating_add(1)
        }
        None => start_ms,
    };
    let total = (end_ms - start_ms + 1) as u64;
    let mut progress = Progress::new(total, (from - start_ms).max(0) as u64, Unit::Time);
    while from <= end_ms {
        let to = from.saturating_add(slice_ms - 1).min(end_ms);
        let resp = reader.read(selectors, from, to).await?;
        let mut batch = WriteRequest::default();
        let mut in_batch = 0usize;
        for result in resp.results {
            for ts in result.timeseries {
                let mut samples = ts.samples;
                while !samples.is_empty() {
                    let room = batch_size - in_batch;
                    let rest = if samples.len() > room {
                        samples.split_off(room)
                    } else {
                        Vec::new()
                    };
                    in_batch += samples.len();
                    batch.timeseries.push(TimeSeries {
                        labels: ts.labels.clone(),
                        samples,
                        exemplars: vec![],
                    });
                    samples = rest;
                    if in_batch >= batch_size {
                        sink.push(std::mem::take(&mut batch)).await?;
                        in_batch = 0;
                    }
                }
            }
        }
        if in_batch > 0 {
            sink.push(std::mem::take(&mut batch)).await?;
        }
        cp.samples = cp.samples.saturating_add(sink.stats.take_new_samples());
        cp.done_until_ms = Some(to);
        sink.save(cp, true)?;
        progress.update((to - start_ms + 1) as u64, &sink.stats);
        from = to.saturating_add(1);
    }
    cp.complete = true;
    progress.finish(&sink.stats);
    Ok(())
}

fn fmt_ms(ms: i64) -> String {
    if ms < 0 {
        return format!("{ms}ms");
    }
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64))
        .to_string()
}

#[derive(Clone, Copy)]
enum Unit {
    Bytes,
    Time,
}

/// A line every 5s (or a redrawn line on a terminal): samples, series,
/// share of the input done and ETA.
struct Progress {
    total: u64,
    start_done: u64,
    done: u64,
    unit: Unit,
    started: Instant,
    last: Instant,
    tty: bool,
}

impl Progress {
    fn new(total: u64, done: u64, unit: Unit) -> Self {
        let tty = std::io::stderr().is_terminal();
        Progress {
            total: total.max(1),
            start_done: done,
            done,
            unit,
            started: Instant::now(),
            last: Instant::now(),
            tty,
        }
    }

    fn update(&mut self, done: u64, stats: &Stats) {
        self.done = done.min(self.total);
        let every = if self.tty {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() >= every {
            self.last = Instant::now();
            self.draw(stats);
        }
    }

    fn draw(&self, stats: &Stats) {
        let pct = self.done as f64 * 100.0 / self.total as f64;
        let elapsed = self.started.elapsed().as_secs_f64();
        let this_run = self.done.saturating_sub(self.start_done) as f64;
        let eta = if this_run > 0.0 {
            format!(
                "{:.0}s",
                elapsed * (self.total - self.done) as f64 / this_run
            )
        } else {
            "?".to_owned()
        };
        let what = match self.unit {
            Unit::Bytes => "of the input bytes",
            Unit::Time => "of the time range",
        };
        let line = format!(
            "{} samples, {} series, {:.1}% {what}, {:.0} samples/s, ETA {eta}",
            stats.samples,
            stats.series.describe(),
            pct,
            stats.samples as f64 / elapsed.max(1e-9)
        );
        if self.tty {
            eprint!("\r{line}   ");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&mut self, stats: &Stats) {
        self.done = self.total;
        if self.tty {
            self.draw(stats);
            eprintln!();
        }
    }
}
