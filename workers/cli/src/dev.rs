//! `prism dev`: every component (API, resize, metadata, archiver) in one process on one data
//! dir.
//!
//! Each component keeps its own config type and is configured from the same layers (defaults,
//! `--config` file, `PRISM__…` env), so `prism dev` behaves like the separate binaries started
//! on the same data dir — which also works, and lets each be scaled, stopped or killed alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use shared::adapter::local::LocalStack;
use shared::config::{self, Validate};
use shared::telemetry::Health;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::dashboard::Dashboard;

/// What a running dev stack exposes: `S` is the backend's adapters, `P` what was provisioned
/// for it (nothing locally; [`crate::dev_aws::AwsDevStack`] on AWS).
pub struct DevStack<S = LocalStack, P = ()> {
    /// The API's base URL.
    pub url: String,
    /// The dev bearer token.
    pub token: String,
    /// The data dir (dev token, callback secret; the files and databases locally).
    pub data_dir: PathBuf,
    /// The backend, for tests and tooling.
    pub stack: S,
    /// What was provisioned.
    pub provisioned: P,
    pub(crate) tasks: Vec<JoinHandle<()>>,
    pub(crate) shutdown: CancellationToken,
}

impl<S, P> DevStack<S, P> {
    /// Stop every component and wait for them to drain.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Wait until `shutdown` (a signal) stops everything.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

pub(crate) fn load<T>(file: Option<&Path>, overrides: &[(&str, String)]) -> anyhow::Result<T>
where
    T: Default + serde::Serialize + serde::de::DeserializeOwned + Validate,
{
    Ok(config::load::<T>(file, overrides)?)
}

/// `listen` with a concrete port (port 0 reserves a free one), so presigned URLs can name it.
pub(crate) fn concrete(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    if listen.port() != 0 {
        return Ok(listen);
    }
    let l = std::net::TcpListener::bind(listen).context("bind the API address")?;
    Ok(l.local_addr()?)
}

/// Every component's config and adapters, on either backend.
pub(crate) struct Components {
    pub api: (prism_api::Config, prism_api::Deps),
    pub resize: (prism_resize::Config, prism_resize::Deps),
    pub metadata: (prism_metadata::Config, prism_metadata::Deps),
    pub archiver: (prism_archiver::Config, prism_archiver::Deps),
}

/// Start the API (with the dashboard) and wait until it listens, then the three workers and the
/// dashboard's sampler; all stop on `shutdown`.
pub(crate) async fn spawn(
    c: Components,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let metrics = shared::telemetry::metrics::install();
    let mut tasks = Vec::new();
    let ((api_cfg, api_deps), s) = (c.api, shutdown.clone());
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let dashboard = Dashboard::new(
        api_deps.metadata.clone(),
        api_deps.media.clone(),
        metrics.clone(),
    );
    let extra = dashboard.router().merge(crate::uploader::router());
    tasks.push(tokio::spawn(async move {
        let on_bound = |a| {
            let _ = bound_tx.send(a);
        };
        if let Err(e) = prism_api::run_with(
            api_cfg,
            api_deps,
            metrics,
            Health::new(),
            s.clone(),
            extra,
            on_bound,
        )
        .await
        {
            tracing::error!(error = %e, "API stopped with an error.");
            s.cancel();
        }
    }));
    bound_rx.await.context("the API did not start")?;

    let ((resize_cfg, resize_deps), s) = (c.resize, shutdown.clone());
    dashboard.watch_queue(resize_deps.queue.clone());
    tasks.push(tokio::spawn(async move {
        prism_resize::run(&resize_cfg, resize_deps, s).await;
    }));
    let ((meta_cfg, meta_deps), s) = (c.metadata, shutdown.clone());
    dashboard.watch_queue(meta_deps.queue.clone());
    tasks.push(tokio::spawn(async move {
        prism_metadata::run(&meta_cfg, meta_deps, s).await;
    }));
    let ((archive_cfg, archive_deps), s) = (c.archiver, shutdown.clone());
    dashboard.watch_queue(archive_deps.queue.clone());
    tasks.push(dashboard.spawn_sampler(shutdown.clone()));
    tasks.push(tokio::spawn(async move {
        prism_archiver::Archiver::new(&archive_cfg, archive_deps)
            .run(s)
            .await;
    }));
    Ok(tasks)
}

/// Options of the local `prism dev` beyond its config.
#[derive(Debug, Clone, Default)]
pub struct DevOptions {
    /// Serve the media bucket publicly, read-only, at `{url}/media/{key}` and hand out those
    /// stable URLs instead of presigned GETs (sets `[http] public_media`), as a CDN in front of
    /// the media bucket does on AWS.
    pub public_media: bool,
    /// Origins (`prism dev --cors-origin`) added to the API's `[http] cors_allowed_origins`:
    /// pages on them may call the API and upload and download through it.
    pub cors_origins: Vec<String>,
}

/// Start the stack on `data_dir`, the API on `listen` (port 0 picks one), cancelled by
/// `shutdown`.
///
/// # Errors
/// Invalid config, or a backend that cannot be opened.
pub async fn start(
    data_dir: &Path,
    listen: SocketAddr,
    config_file: Option<&Path>,
    shutdown: CancellationToken,
) -> anyhow::Result<DevStack> {
    start_with(
        data_dir,
        listen,
        config_file,
        DevOptions::default(),
        shutdown,
    )
    .await
}

/// [`start`] with `options`.
///
/// # Errors
/// Invalid config (a CORS origin that is not `scheme://host[:port]` among them), or a backend
/// that cannot be opened.
pub async fn start_with(
    data_dir: &Path,
    listen: SocketAddr,
    config_file: Option<&Path>,
    options: DevOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<DevStack> {
    let listen = concrete(listen)?;
    let dir = data_dir.display().to_string();
    let common = [("data_dir", dir.clone()), ("backend", "local".to_owned())];
    let mut api_cfg: prism_api::Config = load(
        config_file,
        &[
            common[0].clone(),
            common[1].clone(),
            ("http.listen_addr", listen.to_string()),
        ],
    )?;
    let resize_cfg: prism_resize::Config = load(config_file, &common)?;
    let mut meta_cfg: prism_metadata::Config = load(config_file, &common)?;
    let archive_cfg: prism_archiver::Config = load(config_file, &common)?;
    // Local mode: completion callbacks may go to a receiver on this machine.
    meta_cfg.callback.allow_loopback_http = true;
    let url = api_cfg
        .http
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{listen}"));
    api_cfg.http.public_base_url = Some(url.clone());
    for o in &options.cors_origins {
        if !api_cfg.http.cors_allowed_origins.contains(o) {
            api_cfg.http.cors_allowed_origins.push(o.clone());
        }
    }
    api_cfg.validate().context("--cors-origin")?;
    if options.public_media {
        api_cfg.http.public_media = true;
        // The API defaults `media_base_url` to `{url}/media` (unless configured).
    }

    let stack = LocalStack::open(data_dir, &api_cfg.common.resources, &url).await?;
    let token = prism_api::dev_token(data_dir)?;
    let components = Components {
        api: (api_cfg, prism_api::Deps::local(&stack)),
        resize: (
            resize_cfg.clone(),
            prism_resize::local_deps(&resize_cfg, &stack).await?,
        ),
        metadata: (
            meta_cfg.clone(),
            prism_metadata::local_deps(&meta_cfg, &stack).await?,
        ),
        archiver: (
            archive_cfg.clone(),
            prism_archiver::local_deps(&archive_cfg, &stack).await?,
        ),
    };
    let tasks = spawn(components, &shutdown).await?;
    Ok(DevStack {
        url,
        token,
        data_dir: data_dir.to_path_buf(),
        stack,
        provisioned: (),
        tasks,
        shutdown,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;
    use shared::config::{ConfigError, TOP_LEVEL_KEYS, load_from_env, top_level_keys};

    fn keys_of_every_binary() -> BTreeSet<String> {
        [
            top_level_keys::<prism_api::Config>(),
            top_level_keys::<prism_resize::Config>(),
            top_level_keys::<prism_metadata::Config>(),
            top_level_keys::<prism_archiver::Config>(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    #[test]
    fn the_shared_list_of_top_level_keys_is_what_the_four_binaries_read() {
        let listed: BTreeSet<String> = TOP_LEVEL_KEYS.iter().map(|k| (*k).to_owned()).collect();
        assert_eq!(keys_of_every_binary(), listed);
    }

    /// Every binary's defaults merged into one JSON object, without the unset (null) values
    /// TOML cannot write.
    fn every_default() -> Value {
        fn merge(into: &mut Value, from: Value) {
            match (into, from) {
                (Value::Object(a), Value::Object(b)) => {
                    for (k, v) in b {
                        if !v.is_null() {
                            let slot = a
                                .entry(k)
                                .or_insert_with(|| Value::Object(serde_json::Map::new()));
                            merge(slot, v);
                        }
                    }
                }
                (slot, v) => *slot = v,
            }
        }
        let mut all = Value::Object(serde_json::Map::new());
        for v in [
            serde_json::to_value(prism_api::Config::default()).unwrap(),
            serde_json::to_value(prism_resize::Config::default()).unwrap(),
            serde_json::to_value(prism_metadata::Config::default()).unwrap(),
            serde_json::to_value(prism_archiver::Config::default()).unwrap(),
        ] {
            merge(&mut all, v);
        }
        all
    }

    fn load_all(file: &std::path::Path) -> [Result<(), ConfigError>; 4] {
        let no_env = Vec::<(String, String)>::new;
        [
            load_from_env::<prism_api::Config, _>(Some(file), &[], no_env()).map(drop),
            load_from_env::<prism_resize::Config, _>(Some(file), &[], no_env()).map(drop),
            load_from_env::<prism_metadata::Config, _>(Some(file), &[], no_env()).map(drop),
            load_from_env::<prism_archiver::Config, _>(Some(file), &[], no_env()).map(drop),
        ]
    }

    #[test]
    fn one_file_with_every_binarys_sections_configures_each_and_a_misspelled_key_stops_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prism.toml");
        let all = every_default();
        std::fs::write(&file, toml::to_string(&all).unwrap()).unwrap();
        for r in load_all(&file) {
            r.unwrap();
        }

        // A misspelled key in resize's section stops prism-resize, naming the key and the file;
        // the other binaries do not read that section.
        let mut typo = all.clone();
        typo["resize"]["limits"]["max_pixel"] = Value::from(1000);
        std::fs::write(&file, toml::to_string(&typo).unwrap()).unwrap();
        let [api, resize, metadata, archiver] = load_all(&file);
        let e = resize.unwrap_err().to_string();
        assert!(
            e.contains("max_pixel") && e.contains(&file.display().to_string()),
            "{e}"
        );
        for r in [api, metadata, archiver] {
            r.unwrap();
        }

        // A key no binary reads stops every one of them.
        let mut typo = all.clone();
        typo["max_pixel"] = Value::from(1000);
        std::fs::write(&file, toml::to_string(&typo).unwrap()).unwrap();
        for r in load_all(&file) {
            let e = r.unwrap_err();
            assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e}");
            let e = e.to_string();
            assert!(
                e.contains("`max_pixel`") && e.contains(&file.display().to_string()),
                "{e}"
            );
        }
    }
}
