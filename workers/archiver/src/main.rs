//! prism-archiver: parse flags, load config, start telemetry, build adapters, run.

use std::process::ExitCode;

use clap::Parser;
use prism_archiver::{Archiver, Config};
use shared::cli::{CommonArgs, WorkerCommand};
use shared::config::Backend;

/// The prism raw-payload archiver.
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
    let cfg: Config = match shared::cli::load_config("prism-archiver", &cli.common, &[]) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(WorkerCommand::Healthcheck) = cli.command {
        return shared::cli::healthcheck_exit(cfg.common.metrics.listen_addr).await;
    }
    shared::cli::exit_code("prism-archiver", run(cfg).await)
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let rt = shared::cli::start("prism-archiver", &cfg, &cfg.common, true).await?;
    let deps = match cfg.common.backend {
        Backend::Local => {
            prism_archiver::local_deps(&cfg, &shared::cli::open_local_stack(&cfg.common).await?)
                .await?
        }
        Backend::Aws => {
            let (stack, busy) = shared::cli::open_aws_stack(&cfg.common, &rt.shutdown).await;
            prism_archiver::aws_deps(&cfg, &stack, busy)?
        }
    };
    Archiver::new(&cfg, deps).run(rt.shutdown.clone()).await;
    rt.finish().await;
    Ok(())
}
