//! prism-metadata: drains the metadata queue and keeps per-file status and variants.
//!
//! - upload `ObjectCreated` → file `received`
//! - `manifest.json` created → file `done`, with variants and facts read from the manifest
//! - `failure.json` created → file `failed`, with its code and message
//! - `IMAGE_REQUESTED` client event → the file's request count (once per event id)
//!
//! Transitions are conditional in the store, so duplicate, late and reordered deliveries change
//! nothing and counts stay exact. When the last file of a batch becomes terminal (done, failed,
//! or expired by the sweep in [`expiry`]), the batch is announced: a `batch.completed` event on
//! the topic and, if the batch has a `callback_url`, a delivery in the outbox, which
//! [`callback::run_outbox`] posts (Standard Webhooks, signed with the owner's key,
//! SSRF-checked again at delivery, retried with backoff over hours) outside the queue handler.
//! The announcement is recorded after it is made, so a crash in between repeats it (at least
//! once) rather than losing it.
//!
//! | failure | disposition |
//! |---|---|
//! | body not an event; unknown schema | dead-letter |
//! | manifest/failure record missing or malformed | dead-letter |
//! | unknown batch or file | dead-letter |
//! | store throttled/unavailable, publish failed | retry |

pub mod callback;
pub mod config;
pub mod expiry;
pub mod handler;

use std::sync::Arc;
use std::time::Duration;

use shared::consumer::{Consumer, RunReport};
use shared::port::{BlobStore, MetadataStore, Queue, Topic};
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use handler::MetadataHandler;

/// The adapters the writer uses.
pub struct Deps {
    /// The metadata queue.
    pub queue: Arc<dyn Queue>,
    /// The media bucket (manifests and failure records).
    pub media: Arc<dyn BlobStore>,
    /// The uploads bucket's name (to recognise upload events).
    pub uploads_bucket: String,
    /// Batches and files.
    pub metadata: Arc<dyn MetadataStore>,
    /// Where `batch.completed` is announced.
    pub topic: Arc<dyn Topic>,
    /// Master key the principals' callback signing keys derive from.
    pub callback_secret: Vec<u8>,
    /// Told the in-flight count (ECS task scale-in protection while non-zero).
    pub busy: Option<shared::busy::BusySignal>,
}

/// Build the local-backend adapters from `stack`.
///
/// # Errors
/// When the queue or callback secret cannot be opened.
pub async fn local_deps(
    cfg: &Config,
    stack: &shared::adapter::local::LocalStack,
) -> anyhow::Result<Deps> {
    let queue = stack
        .queue(
            shared::topology::METADATA_QUEUE,
            Duration::from_secs(cfg.consumer.visibility_timeout_secs),
            cfg.max_receive_count,
        )
        .await?;
    let callback_secret = match cfg.callback.signing_secret.expose() {
        Some(s) => shared::callback::webhook_key(s),
        None => shared::adapter::local::signing::load_or_create_key(
            &stack.data_dir,
            CALLBACK_SECRET_FILE,
        )?,
    };
    // The dev principal's secret, for local receivers (`prism dev`'s token is that principal's).
    let keys = callback::Keys::new(callback_secret.clone(), &cfg.callback);
    write_webhook_secret(
        &stack.data_dir,
        &keys.for_principal(shared::config::DEV_PRINCIPAL),
    )?;
    Ok(Deps {
        queue: Arc::new(queue),
        media: Arc::new(stack.media.clone()),
        uploads_bucket: cfg.common.resources.uploads_bucket.clone(),
        metadata: stack.metadata.clone(),
        topic: stack.topic.clone(),
        callback_secret,
        busy: None,
    })
}

/// Build the AWS adapters: the metadata queue from `resources.queue_url`/`dlq_url`, the media
/// bucket, the table and the topic. Completion callbacks are signed with
/// `callback.signing_secret`, which AWS mode requires.
///
/// # Errors
/// When the queue URLs or the callback secret are missing.
pub fn aws_deps(
    cfg: &Config,
    stack: &shared::adapter::aws::AwsStack,
    busy: Option<shared::busy::BusySignal>,
) -> anyhow::Result<Deps> {
    let callback_secret = cfg
        .callback
        .signing_secret
        .expose()
        .map(shared::callback::webhook_key)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "callback.signing_secret (PRISM__CALLBACK__SIGNING_SECRET) is required with backend = aws"
            )
        })?;
    Ok(Deps {
        queue: Arc::new(stack.worker_queue(shared::topology::METADATA_QUEUE, &cfg.common)?),
        media: Arc::new(stack.media.clone()),
        uploads_bucket: cfg.common.resources.uploads_bucket.clone(),
        metadata: stack.metadata.clone(),
        topic: stack.topic.clone(),
        callback_secret,
        busy,
    })
}

/// The `whsec_…` secret `principal`'s callbacks are signed with, as its receiver configures
/// it: `callback.principal_secrets` when it names the principal, else the key derived from the
/// master secret (`callback.signing_secret`, or locally the generated key in `data_dir`).
/// What `prism webhooks secret --principal NAME` prints.
///
/// # Errors
/// When the local key cannot be read or created.
pub fn principal_whsec(
    cfg: &Config,
    data_dir: &std::path::Path,
    principal: &str,
) -> anyhow::Result<String> {
    let master = match cfg.callback.signing_secret.expose() {
        Some(s) => shared::callback::webhook_key(s),
        None => {
            shared::adapter::local::signing::load_or_create_key(data_dir, CALLBACK_SECRET_FILE)?
        }
    };
    let keys = callback::Keys::new(master, &cfg.callback);
    Ok(shared::callback::whsec(&keys.for_principal(principal)))
}

/// File (in the data dir) holding the local callback signing key (raw bytes).
pub const CALLBACK_SECRET_FILE: &str = "callback-secret";

/// File (in the data dir) holding the dev principal's signing key as a receiver configures it:
/// `whsec_<base64>`.
pub const WEBHOOK_SECRET_FILE: &str = "webhook-secret";

/// Write [`WEBHOOK_SECRET_FILE`] for `key` (readable by the owner only; replaced atomically,
/// so concurrent writers of the same key are harmless).
fn write_webhook_secret(data_dir: &std::path::Path, key: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = data_dir.join(format!(".{WEBHOOK_SECRET_FILE}.{}", uuid::Uuid::new_v4()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(format!("{}\n", shared::callback::whsec(key)).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, data_dir.join(WEBHOOK_SECRET_FILE))
}

/// Run the writer until `shutdown`, then drain: the queue consumer, the webhook outbox's
/// delivery loop and the expiry sweep.
pub async fn run(cfg: &Config, deps: Deps, shutdown: CancellationToken) -> RunReport {
    let (queue, busy) = (deps.queue.clone(), deps.busy.clone());
    let keys = Arc::new(callback::Keys::new(
        deps.callback_secret.clone(),
        &cfg.callback,
    ));
    let announcer = handler::Announcer::new(deps.metadata.clone(), deps.topic.clone());
    let outbox = tokio::spawn(callback::run_outbox(
        cfg.callback.clone(),
        keys,
        deps.metadata.clone(),
        shutdown.clone(),
    ));
    let sweep = tokio::spawn(expiry::run(
        cfg.expiry.clone(),
        deps.metadata.clone(),
        announcer,
        shutdown.clone(),
    ));
    let handler = MetadataHandler::new(deps);
    let consumer = Consumer::new("metadata", queue, Arc::new(handler), cfg.consumer.clone())
        .with_busy_signal(busy);
    let report = consumer
        .run(
            shutdown,
            Duration::from_secs(cfg.common.shutdown.drain_timeout_secs),
        )
        .await;
    let _ = outbox.await;
    let _ = sweep.await;
    report
}

/// The metadata writer, for [`shared::cli::run_worker`].
pub struct MetadataWorker;

impl shared::cli::Worker for MetadataWorker {
    const NAME: &'static str = "prism-metadata";
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
