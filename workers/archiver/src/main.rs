//! prism-archiver: parse flags, load config, start telemetry, build adapters, run.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prism_archiver::{Archiver, Config};
use shared::cli::CommonArgs;
use shared::config::Backend;

/// The prism raw-payload archiver.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Exit 0 when this worker's /healthz answers 200.
    Healthcheck,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg: Config = match cli.common.load(&[]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("prism-archiver: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Healthcheck) = cli.command {
        return shared::cli::healthcheck_exit(cfg.common.metrics.listen_addr).await;
    }
    match run(cfg).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prism-archiver: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let rt = shared::cli::start("prism-archiver", &cfg, &cfg.common, true).await?;
    let deps = match cfg.common.backend {
        Backend::Local => {
            let stack = shared::adapter::local::LocalStack::open(
                &cfg.common.data_dir,
                &cfg.common.resources,
                "http://127.0.0.1",
            )
            .await?;
            prism_archiver::local_deps(&cfg, &stack).await?
        }
        Backend::Aws => {
            anyhow::bail!("backend = aws is not available in this build yet (see issue 6)")
        }
    };
    Archiver::new(&cfg, deps).run(rt.shutdown).await;
    Ok(())
}
