//! prism-resize: the image engine (a pure library) and the resize worker.
//!
//! Crate map:
//! - [`render`]: the engine. `render::render(bytes, request, limits, settings)` decodes once,
//!   orients, converts to sRGB, resizes every width and encodes WebP/AVIF; it also returns the
//!   manifest facts. No I/O.
//!   - `render::decode`: format sniffing, header probe with the limits, first-frame decode.
//!   - `render::color`: ICC → sRGB with lcms2, 16 → 8 bit.
//!   - `render::orient`: the eight EXIF orientations.
//!   - `render::resize`: the sRGB raster and Lanczos3 resizing.
//!   - `render::encode`: libwebp and ravif (or libaom through libheif); `render::webp`: the
//!     libwebp FFI.
//!   - `render::facts`: hash, ThumbHash, dominant colour.
//! - [`isolate`]: crash isolation: renders in a supervised pool of child processes, each
//!   with resource limits and a deadline.
//! - [`handler`]: the queue worker's handler: upload event → variants → manifest (or
//!   `failure.json`); [`config`]: the worker's config; this file: its adapters and wiring.
//! - [`alloc`]: glibc malloc tuning applied at start-up (large buffers stay in the heap).
//! - [`bench`]: the `prism-resize bench` subcommand, the side-by-side measurement against the
//!   sharp baseline.

pub mod alloc;
pub mod bench;
pub mod config;
pub mod handler;
pub mod isolate;
pub mod render;

use std::sync::Arc;
use std::time::Duration;

use shared::consumer::{Consumer, RunReport};
use shared::port::{BlobStore, Queue};
use tokio_util::sync::CancellationToken;

pub use config::{Config, ResizeConfig};
pub use handler::ResizeHandler;

/// The adapters the worker uses.
pub struct Deps {
    /// The resize queue.
    pub queue: Arc<dyn Queue>,
    /// Uploads bucket (read).
    pub uploads: Arc<dyn BlobStore>,
    /// Media bucket (write).
    pub media: Arc<dyn BlobStore>,
    /// Told the in-flight count (ECS task scale-in protection while non-zero).
    pub busy: Option<shared::busy::BusySignal>,
}

/// Build the local-backend adapters.
///
/// # Errors
/// When the queue cannot be opened.
pub async fn local_deps(
    cfg: &Config,
    stack: &shared::adapter::local::LocalStack,
) -> anyhow::Result<Deps> {
    let queue = stack
        .queue(
            shared::topology::RESIZE_QUEUE,
            Duration::from_secs(cfg.consumer.visibility_timeout_secs),
            cfg.max_receive_count,
        )
        .await?;
    Ok(Deps {
        queue: Arc::new(queue),
        uploads: Arc::new(stack.uploads.clone()),
        media: Arc::new(stack.media.clone()),
        busy: None,
    })
}

/// Build the AWS adapters: the resize queue from `resources.queue_url`/`dlq_url` and the two
/// buckets.
///
/// # Errors
/// When the queue URLs are missing.
pub fn aws_deps(
    cfg: &Config,
    stack: &shared::adapter::aws::AwsStack,
    busy: Option<shared::busy::BusySignal>,
) -> anyhow::Result<Deps> {
    Ok(Deps {
        queue: Arc::new(stack.worker_queue(shared::topology::RESIZE_QUEUE, &cfg.common)?),
        uploads: Arc::new(stack.uploads.clone()),
        media: Arc::new(stack.media.clone()),
        busy,
    })
}

/// Run the worker until `shutdown`, then drain.
pub async fn run(cfg: &Config, deps: Deps, shutdown: CancellationToken) -> RunReport {
    let (queue, busy) = (deps.queue.clone(), deps.busy.clone());
    let handler = ResizeHandler::new(cfg, deps);
    Consumer::new("resize", queue, Arc::new(handler), cfg.consumer.clone())
        .with_busy_signal(busy)
        .run(
            shutdown,
            Duration::from_secs(cfg.common.shutdown.drain_timeout_secs),
        )
        .await
}

/// The resize worker, for [`shared::cli::run_worker`].
pub struct ResizeWorker;

impl shared::cli::Worker for ResizeWorker {
    const NAME: &'static str = "prism-resize";
    type Config = Config;
    type Deps = Deps;

    fn common(cfg: &Config) -> &shared::config::CommonConfig {
        &cfg.common
    }
    async fn local_deps(
        cfg: &Config,
        stack: &shared::adapter::local::LocalStack,
    ) -> anyhow::Result<Deps> {
        local_deps(cfg, stack).await
    }
    fn aws_deps(
        cfg: &Config,
        stack: &shared::adapter::aws::AwsStack,
        busy: Option<shared::busy::BusySignal>,
    ) -> anyhow::Result<Deps> {
        aws_deps(cfg, stack, busy)
    }
    async fn run(cfg: &Config, deps: Deps, shutdown: CancellationToken) {
        let report = run(cfg, deps, shutdown).await;
        tracing::info!(abandoned = report.abandoned, "Stopped.");
    }
}
