//! The in-process API the integration tests drive: a local stack on a temporary data dir, the
//! API on a free loopback port, stopped when the [`App`] is dropped.
#![allow(dead_code)] // each test binary uses its own part

use prism_api::{Config, Deps};
use shared::adapter::local::LocalStack;
use shared::config::Resources;
use tokio_util::sync::CancellationToken;

/// A running API and what the tests reach around it.
pub struct App {
    /// The data dir (removed on drop).
    pub dir: tempfile::TempDir,
    /// Where the API listens.
    pub addr: std::net::SocketAddr,
    /// `http://{addr}`.
    pub base: String,
    /// The dev bearer token.
    pub token: String,
    /// The local adapters under the API.
    pub stack: LocalStack,
    /// A plain HTTP client (for raw and hostile requests).
    pub http: reqwest::Client,
    /// Stops the API (also on drop).
    pub stop: CancellationToken,
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl App {
    /// The typed API client, as a well-behaved caller uses the API.
    pub fn client(&self) -> shared::api::Client {
        shared::api::Client::with_http(self.http.clone(), &self.base, &self.token)
    }
}

/// The API with its default config.
pub async fn spawn_app() -> App {
    spawn_app_with(|_| {}).await
}

/// The API with `tune` applied to its config.
pub async fn spawn_app_with(tune: impl FnOnce(&mut Config)) -> App {
    spawn_app_wrapped(tune, |_| {}).await
}

/// [`spawn_app_with`], with `wrap` applied to the adapters before the API starts.
pub async fn spawn_app_wrapped(
    tune: impl FnOnce(&mut Config),
    wrap: impl FnOnce(&mut Deps),
) -> App {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = Config::default();
    cfg.common.data_dir = dir.path().to_path_buf();
    cfg.http.listen_addr = addr;
    tune(&mut cfg);
    let base = format!("http://{addr}");
    let stack = LocalStack::open(dir.path(), &Resources::default(), &base)
        .await
        .unwrap();
    let mut deps = Deps::local(&stack);
    wrap(&mut deps);
    let stop = CancellationToken::new();
    prism_api::spawn(cfg, deps, stop.clone()).await.unwrap();
    let token = prism_api::dev_token(dir.path()).unwrap();
    App {
        dir,
        addr,
        base,
        token,
        stack,
        http: reqwest::Client::new(),
        stop,
    }
}
