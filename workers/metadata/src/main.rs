//! prism-metadata: parse flags, load config, start telemetry, build adapters, run.

use std::process::ExitCode;

use clap::Parser;
use prism_metadata::Config;
use shared::cli::{CommonArgs, WorkerCommand};
use shared::config::Backend;

/// The prism metadata writer.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<WorkerCommand>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg: Config = match shared::cli::load_config("prism-metadata", &cli.common, &[]) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(WorkerCommand::Healthcheck) = cli.command {
        return shared::cli::healthcheck_exit(cfg.common.metrics.listen_addr).await;
    }
    shared::cli::exit_code("prism-metadata", run(cfg).await)
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let rt = shared::cli::start("prism-metadata", &cfg, &cfg.common, true).await?;
    let deps = match cfg.common.backend {
        Backend::Local => {
            prism_metadata::local_deps(&cfg, &shared::cli::open_local_stack(&cfg.common).await?)
                .await?
        }
        Backend::Aws => {
            let (stack, busy) = shared::cli::open_aws_stack(&cfg.common, &rt.shutdown).await;
            prism_metadata::aws_deps(&cfg, &stack, busy)?
        }
    };
    let report = prism_metadata::run(&cfg, deps, rt.shutdown.clone()).await;
    tracing::info!(abandoned = report.abandoned, "Stopped.");
    rt.finish().await;
    Ok(())
}
