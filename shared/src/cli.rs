//! The flags every prism binary shares, and the start-up every `main.rs` runs: parse flags, load
//! and validate config, init telemetry, serve `/metrics` + `/healthz`, cancel on signals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::config::{self, CommonConfig, ConfigError, Validate};
use crate::telemetry::{self, Health};

/// Flags of a worker binary.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// A TOML config file (layered over the defaults, under `PRISM__…` env vars).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective config (secrets redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// `local` (files + SQLite) or `aws`.
    #[arg(long, value_name = "BACKEND")]
    pub backend: Option<String>,
    /// Data dir of the local backend.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where `/metrics` and `/healthz` listen.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// How long in-flight work may finish after SIGTERM.
    #[arg(long, value_name = "SECS")]
    pub drain_timeout_secs: Option<u64>,
}

impl CommonArgs {
    /// The flags as config overrides.
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut o = Vec::new();
        if let Some(b) = &self.backend {
            o.push(("backend", b.clone()));
        }
        if let Some(d) = &self.data_dir {
            o.push(("data_dir", d.display().to_string()));
        }
        if let Some(a) = &self.metrics_addr {
            o.push(("metrics.listen_addr", a.to_string()));
        }
        if let Some(s) = &self.drain_timeout_secs {
            o.push(("shutdown.drain_timeout_secs", s.to_string()));
        }
        o
    }

    /// Load and validate `T`, printing it and exiting when `--print-config` was given.
    ///
    /// # Errors
    /// A [`ConfigError`] to report before exiting non-zero.
    pub fn load<T>(&self, extra: &[(&'static str, String)]) -> Result<T, ConfigError>
    where
        T: Default + Serialize + DeserializeOwned + Validate,
    {
        let mut o = self.overrides();
        o.extend_from_slice(extra);
        let borrowed: Vec<(&str, String)> = o.iter().map(|(k, v)| (*k, v.clone())).collect();
        let cfg: T = config::load(self.config.as_deref(), &borrowed)?;
        if self.print_config {
            println!("{}", config::redacted_json(&cfg));
            std::process::exit(0);
        }
        Ok(cfg)
    }
}

/// What start-up hands a binary's `run`.
pub struct Runtime {
    /// Cancelled on SIGTERM/SIGINT.
    pub shutdown: CancellationToken,
    /// `/healthz` state.
    pub health: Health,
    /// The metrics handle.
    pub metrics: PrometheusHandle,
    /// Where the ops endpoints listen (None when not served separately).
    pub ops_addr: Option<SocketAddr>,
    /// Flushes exported spans when the runtime drops.
    pub trace: telemetry::tracing::TraceGuard,
    /// The EMF writer (`[metrics] emf = true`); it writes a last flush after `shutdown`.
    pub emf: Option<tokio::task::JoinHandle<()>>,
}

impl Runtime {
    /// Let the EMF writer make its last flush (the interval's samples since the previous one),
    /// at most 5 s, then drop the runtime (which flushes exported spans). Call it after the
    /// worker's loop returns: a task still pending when `main` returns is dropped unrun.
    pub async fn finish(self) {
        self.shutdown.cancel();
        if let Some(emf) = self.emf
            && tokio::time::timeout(std::time::Duration::from_secs(5), emf)
                .await
                .is_err()
        {
            tracing::warn!("EMF: the last flush did not finish within 5 s.");
        }
    }
}

/// Init logs and metrics, log the redacted config, cancel on signals, and serve the ops
/// endpoints on `common.metrics.listen_addr` when `serve_ops`.
///
/// # Errors
/// When the ops address cannot be bound.
pub async fn start<T: Serialize>(
    name: &str,
    cfg: &T,
    common: &CommonConfig,
    serve_ops: bool,
) -> std::io::Result<Runtime> {
    let trace = telemetry::tracing::init_with(&common.log, &common.trace, name);
    let metrics = telemetry::metrics::install();
    tracing::info!(binary = name, config = %config::redacted_json(cfg), "Starting.");
    let shutdown = crate::shutdown::on_signal();
    let health = Health::new();
    let ops_addr = if serve_ops {
        let addr = telemetry::serve_ops(
            common.metrics.listen_addr,
            metrics.clone(),
            health.clone(),
            shutdown.clone(),
        )
        .await
        .map_err(|e| {
            bind_error(
                e,
                "/metrics and /healthz",
                common.metrics.listen_addr,
                "--metrics-addr ADDR, [metrics] listen_addr or PRISM__METRICS__LISTEN_ADDR",
            )
        })?;
        tracing::info!(%addr, "Serving /metrics and /healthz.");
        Some(addr)
    } else {
        None
    };
    let emf = common.metrics.emf.then(|| {
        tracing::info!(
            namespace = %common.metrics.emf_namespace,
            interval_secs = common.metrics.emf_interval_secs,
            "Writing CloudWatch EMF metrics to stdout."
        );
        telemetry::emf::spawn(
            telemetry::emf::EmfSettings {
                namespace: common.metrics.emf_namespace.clone(),
            },
            std::time::Duration::from_secs(common.metrics.emf_interval_secs),
            shutdown.clone(),
        )
    });
    Ok(Runtime {
        shutdown,
        health,
        metrics,
        ops_addr,
        trace,
        emf,
    })
}

/// A failed bind as an error that names the address and what to change: `what` is served on
/// `addr`, `how` lists the flag, config key and environment variable that move it.
#[must_use]
pub fn bind_error(e: std::io::Error, what: &str, addr: SocketAddr, how: &str) -> std::io::Error {
    std::io::Error::new(
        e.kind(),
        format!("cannot serve {what} on {addr}: {e}; pick another address with {how}"),
    )
}

/// The subcommands every worker binary has.
#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum WorkerCommand {
    /// Exit 0 when this process's /healthz answers 200 (container health checks run this).
    Healthcheck,
}

/// Load a binary's config; on failure print it as `NAME: error` and give exit code 2.
///
/// # Errors
/// The exit code to return from `main`.
pub fn load_config<T>(
    name: &str,
    args: &CommonArgs,
    extra: &[(&'static str, String)],
) -> Result<T, std::process::ExitCode>
where
    T: Default + Serialize + DeserializeOwned + Validate,
{
    args.load(extra).map_err(|e| {
        eprintln!("{name}: {e}");
        std::process::ExitCode::from(2)
    })
}

/// A run's result as an exit code, the error chain printed as `NAME: error: cause`.
pub fn exit_code<E: std::fmt::Display>(
    name: &str,
    result: Result<(), E>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Open the data dir's embedded backend for a worker (presigned grants are the API's business,
/// so the base URL is a placeholder).
///
/// # Errors
/// When the backend cannot be opened.
pub async fn open_local_stack(
    common: &CommonConfig,
) -> Result<crate::adapter::local::LocalStack, crate::adapter::local::stack::StackError> {
    crate::adapter::local::LocalStack::open(&common.data_dir, &common.resources, "http://127.0.0.1")
        .await
}

/// Open the AWS backend and, on ECS (`ECS_AGENT_URI` set), start task scale-in protection
/// for a queue worker; returns the busy signal to hand the worker's consumer.
pub async fn open_aws_stack(
    common: &CommonConfig,
    shutdown: &CancellationToken,
) -> (
    crate::adapter::aws::AwsStack,
    Option<crate::busy::BusySignal>,
) {
    let stack = crate::adapter::aws::AwsStack::open(common).await;
    let busy = config::ecs_agent_uri().map(|uri| {
        tracing::info!("Holding ECS task scale-in protection while messages are in flight.");
        crate::adapter::aws::task_protection::TaskProtection::spawn(uri, shutdown.clone()).signal()
    });
    (stack, busy)
}

/// The `healthcheck` subcommand: exit 0 when `/healthz` on `addr` answers 200.
pub async fn healthcheck_exit(addr: SocketAddr) -> std::process::ExitCode {
    if telemetry::healthcheck(addr).await {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("unhealthy: no 200 from http://{addr}/healthz");
        std::process::ExitCode::FAILURE
    }
}

/// What a queue worker crate hands [`run_worker`]: its config, how to build its adapters on
/// either backend, and its loop. The crate's `lib.rs` implements it; its `main.rs` only parses
/// flags and calls [`run_worker`].
pub trait Worker {
    /// The binary's name (logs, the `Starting.` line, error messages).
    const NAME: &'static str;
    /// The binary's config (its `[common]` part is what start-up reads).
    type Config: Default + Serialize + DeserializeOwned + Validate;
    /// The adapters the worker runs on.
    type Deps;

    /// The shared part of the config.
    fn common(cfg: &Self::Config) -> &CommonConfig;

    /// The adapters on the embedded backend.
    fn local_deps(
        cfg: &Self::Config,
        stack: &crate::adapter::local::LocalStack,
    ) -> impl std::future::Future<Output = anyhow::Result<Self::Deps>>;

    /// The adapters on AWS; `busy` is told the in-flight count (task scale-in protection).
    ///
    /// # Errors
    /// When an adapter cannot be built from the config.
    fn aws_deps(
        cfg: &Self::Config,
        stack: &crate::adapter::aws::AwsStack,
        busy: Option<crate::busy::BusySignal>,
    ) -> anyhow::Result<Self::Deps>;

    /// Run until `shutdown`, then drain.
    fn run(
        cfg: &Self::Config,
        deps: Self::Deps,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = ()>;
}

/// The one entry of every queue worker binary: load and validate the config (exit 2 when it is
/// invalid), answer `healthcheck` when asked, else start telemetry and the `/metrics` +
/// `/healthz` server, open the configured backend, build the worker's adapters, run it until
/// SIGTERM/SIGINT, and map the result to the exit code (1, the error chain printed, when
/// start-up fails).
pub fn run_worker<W: Worker>(args: &CommonArgs, command: Option<WorkerCommand>) -> ExitCode {
    let cfg: W::Config = match load_config(W::NAME, args, &[]) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return exit_code(W::NAME, Err(e)),
    };
    if let Some(WorkerCommand::Healthcheck) = command {
        return runtime.block_on(healthcheck_exit(W::common(&cfg).metrics.listen_addr));
    }
    exit_code(W::NAME, runtime.block_on(start_worker::<W>(&cfg)))
}

async fn start_worker<W: Worker>(cfg: &W::Config) -> anyhow::Result<()> {
    let common = W::common(cfg);
    let rt = start(W::NAME, cfg, common, true).await?;
    let deps = match common.backend {
        config::Backend::Local => W::local_deps(cfg, &open_local_stack(common).await?).await?,
        config::Backend::Aws => {
            let (stack, busy) = open_aws_stack(common, &rt.shutdown).await;
            W::aws_deps(cfg, &stack, busy)?
        }
    };
    W::run(cfg, deps, rt.shutdown.clone()).await;
    rt.finish().await;
    Ok(())
}
