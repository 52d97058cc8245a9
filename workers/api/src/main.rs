//! prism-api: parse flags, load config, start telemetry, build adapters, serve.

use std::process::ExitCode;

use clap::Parser;
use prism_api::{Config, Deps};
use shared::cli::{CommonArgs, WorkerCommand};
use shared::config::Backend;

/// The prism API.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Where the API listens.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    command: Option<WorkerCommand>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let extra: Vec<(&'static str, String)> = cli
        .listen
        .map(|a| ("http.listen_addr", a.to_string()))
        .into_iter()
        .collect();
    let cfg: Config = match shared::cli::load_config("prism-api", &cli.common, &extra) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(WorkerCommand::Healthcheck) = cli.command {
        return shared::cli::healthcheck_exit(cfg.http.listen_addr).await;
    }
    shared::cli::exit_code("prism-api", run(cfg).await)
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    // The API serves /metrics and /healthz on its own port.
    let rt = shared::cli::start("prism-api", &cfg, &cfg.common, false).await?;
    let public = cfg
        .http
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.http.listen_addr));
    let deps = match cfg.common.backend {
        Backend::Local => Deps::local(
            &shared::adapter::local::LocalStack::open(
                &cfg.common.data_dir,
                &cfg.common.resources,
                &public,
            )
            .await?,
        ),
        Backend::Aws => Deps::aws(&shared::adapter::aws::AwsStack::open(&cfg.common).await),
    };
    let served = prism_api::run(
        cfg,
        deps,
        rt.metrics.clone(),
        rt.health.clone(),
        rt.shutdown.clone(),
        |addr| println!("prism-api listening on http://{addr}"),
    )
    .await;
    rt.finish().await;
    served
}
