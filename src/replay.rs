//! `tidemark block-builder replay`: rebuilds the blocks of an offset range
//! of one partition from the ingest log, after a bucket loss or to take in
//! late data. Blocks get the identity of their partition and range, so
//! replaying a range twice overwrites the same blocks; overlap with blocks
//! already built is removed by the query path and the compactor. Offsets
//! are not committed: the block-builder's own progress is unchanged.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use tidemark_block_builder::{BlockBuilder, BlockBuilderMetrics};
use tidemark_ingest_log::IngestLog;

use crate::config::Flags;

#[derive(Debug, Subcommand)]
pub enum BlockBuilderCommand {
    /// Rebuild the blocks of an offset range of one partition from the log.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Partition to replay.
    #[arg(long)]
    pub partition: i32,
    /// First record: an offset, an RFC 3339 time (the first record written
    /// at or after it), or `start` (the oldest record still in the log).
    #[arg(long)]
    pub from: String,
    /// End of the range, excluded: an offset, an RFC 3339 time, or `end`
    /// (default: the end of the partition now).
    #[arg(long, default_value = "end")]
    pub to: String,
    /// The server's flags (ingest log, blocks storage, ...).
    #[command(flatten)]
    pub flags: Flags,
}

pub async fn run(cmd: BlockBuilderCommand) -> anyhow::Result<()> {
    let BlockBuilderCommand::Replay(args) = cmd;
    let cfg = args.flags.into_config()?;
    let mut registry = prometheus_client::registry::Registry::default();
    let log = crate::server::open_log(&cfg, &mut registry).await?;
    if args.partition < 0 || args.partition >= log.partition_count() {
        bail!(
            "partition {} does not exist: the ingest log has {} partitions",
            args.partition,
            log.partition_count()
        );
    }
    let bucket = cfg
        .blocks_storage
        .open(&cfg.default_bucket_dir())
        .context("cannot open the blocks bucket")?;
    let from = resolve(&*log, args.partition, &args.from).await?;
    let to = resolve(&*log, args.partition, &args.to).await?;
    if to <= from {
        eprintln!("nothing to replay: the range [{from}, {to}) of partition {} is empty", args.partition);
        return Ok(());
    }
    eprintln!("replaying partition {} offsets [{from}, {to}) into blocks", args.partition);
    let builder = BlockBuilder::new(log.clone(), bucket, cfg.block_builder.clone(), BlockBuilderMetrics::default());
    let started = Instant::now();
    let mut bar = Progress::new(from, to);
    let summary = builder
        .build_range_with_progress(args.partition, from, to, |next, _| bar.update(next))
        .await
        .context("replay failed; nothing was committed, run it again")?;
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replayed partition {} offsets [{}, {}): {} records ({} undecodable), {} samples, {} blocks, {} bytes in {:.1}s ({:.0} samples/s)",
        summary.partition,
        summary.from_offset,
        summary.to_offset,
        summary.records,
        summary.records_failed,
        summary.samples,
        summary.blocks,
        summary.bytes,
        secs,
        summary.samples as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// An offset from `start`, `end`, a number or an RFC 3339 time.
async fn resolve(log: &dyn IngestLog, partition: i32, spec: &str) -> anyhow::Result<i64> {
    match spec.trim() {
        "start" => Ok(log.earliest_offset(partition).await?),
        "end" => Ok(log.latest_offset(partition).await?),
        s => {
            if let Ok(offset) = s.parse::<i64>() {
                if offset < 0 {
                    bail!("offset {offset} is negative");
                }
                return Ok(offset);
            }
            let t = humantime::parse_rfc3339_weak(s).with_context(|| {
                format!("{s:?} is neither an offset, an RFC 3339 time, `start` nor `end`")
            })?;
            let ms = t
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            Ok(match log.offset_for_timestamp(partition, ms).await? {
                Some(o) => o,
                None => log.latest_offset(partition).await?,
            })
        }
    }
}

/// A progress bar on a terminal, a line every 10% otherwise.
struct Progress {
    from: i64,
    to: i64,
    started: Instant,
    tty: bool,
    last_decile: i64,
    last_draw: Instant,
}

impl Progress {
    fn new(from: i64, to: i64) -> Self {
        Progress {
            from,
            to,
            started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            last_decile: -1,
            last_draw: Instant::now(),
        }
    }

    fn update(&mut self, next: i64) {
        let total = (self.to - self.from).max(1);
        let done = (next - self.from).clamp(0, total);
        let pct = done * 100 / total;
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = if done > 0 {
            elapsed * (total - done) as f64 / done as f64
        } else {
            0.0
        };
        if self.tty {
            if self.last_draw.elapsed().as_millis() < 100 && done < total {
                return;
            }
            self.last_draw = Instant::now();
            let width = 30;
            let filled = (done * width / total) as usize;
            eprint!(
                "\r[{}{}] {pct:3}% {done}/{total} records, ETA {eta:.0}s ",
                "=".repeat(filled),
                " ".repeat(width as usize - filled)
            );
            let _ = std::io::stderr().flush();
        } else if pct / 10 > self.last_decile {
            self.last_decile = pct / 10;
            eprintln!("{pct}% ({done}/{total} records, ETA {eta:.0}s)");
        }
    }

    fn finish(&mut self) {
        self.update(self.to);
        if self.tty {
            eprintln!();
        }
    }
}
