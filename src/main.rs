//! `tidemark`: one binary for every role (`-target`), and `tidemark bench`,
//! the load generator.

mod backfill;
mod bench;
mod config;
mod flags;
mod membership;
mod replay;
mod server;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::{Cli, Command};

fn init_tracing(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{level},librdkafka=warn")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse_from(flags::normalize_args(std::env::args()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tidemark: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Some(Command::Bench(args)) => {
                init_tracing("warn");
                bench::run(args).await
            }
            Some(Command::Backfill(args)) => {
                init_tracing("warn");
                backfill::run(args).await
            }
            Some(Command::BlockBuilder(cmd)) => {
                init_tracing("warn");
                replay::run(cmd).await
            }
            None => {
                let check = cli.flags.config_check.unwrap_or(false);
                let cfg = cli.flags.into_config()?;
                if check {
                    println!(
                        "configuration OK: target {}, ingest log {}, blocks storage {}",
                        serde_yaml::to_string(&cfg.target).unwrap_or_default().trim(),
                        if cfg.uses_kafka() { "kafka" } else { "embedded" },
                        serde_yaml::to_string(&cfg.blocks_storage.backend).unwrap_or_default().trim(),
                    );
                    return Ok(());
                }
                init_tracing(&cfg.log.level);
                server::run(cfg).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidemark: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
