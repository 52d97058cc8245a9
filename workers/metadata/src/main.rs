//! prism-metadata: parse flags, then the shared worker entry (config, telemetry, adapters, run).

use std::process::ExitCode;

use clap::Parser;
use shared::cli::{CommonArgs, WorkerCommand};

/// The prism metadata writer.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<WorkerCommand>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    shared::cli::run_worker::<prism_metadata::MetadataWorker>(&cli.common, cli.command)
}
