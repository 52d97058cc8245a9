//! `prism dev --aws-endpoint URL [--region R] [--stack NAME]`: provision the AWS topology on an
//! endpoint (moto, LocalStack) idempotently, or find a deployed one by its stack outputs, then
//! run every component in AWS mode against it.
//!
//! Provisioned ([`shared::adapter::aws::provision`]): the uploads, media and archive buckets;
//! S3 → SNS notifications (uploads: every created object; media: `manifest.json` and
//! `failure.json`); the topic; the resize, metadata and archive queues with DLQs, raw delivery
//! and message-body filter policies; the metadata table with TTL. The components then run with
//! `backend = aws`, the same code paths the Fargate services run. The API accepts the dev token
//! of `--data-dir` and the metadata writer signs callbacks with the data dir's local secret.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use shared::adapter::aws::provision::{self, Provisioned};
use shared::adapter::aws::{AwsStack, Clients};
use shared::config::{AwsConfig, Secret};
use shared::port::QueueSettings;
use shared::topology;
use tokio_util::sync::CancellationToken;

use crate::dev::{Components, DevStack, concrete, load, spawn};

/// What a running AWS-mode dev stack exposes: the AWS adapters and what was provisioned.
pub type AwsDevStack = DevStack<AwsStack, Provisioned>;

/// Provision on `endpoint` and start the stack, the API on `listen` (port 0 picks one).
///
/// # Errors
/// Invalid config, an unreachable endpoint, or a provisioning step that fails.
pub async fn start_aws(
    endpoint: &url::Url,
    region: Option<&str>,
    data_dir: &Path,
    listen: SocketAddr,
    config_file: Option<&Path>,
    shutdown: CancellationToken,
) -> anyhow::Result<AwsDevStack> {
    start_aws_on(
        endpoint,
        region,
        data_dir,
        listen,
        config_file,
        shutdown,
        None,
    )
    .await
}

/// [`start_aws`], or with `stack` the components run against that deployment as its stacks'
/// outputs name it ([`crate::stack::discover`]) and nothing is provisioned.
///
/// # Errors
/// Invalid config, an unreachable endpoint, a provisioning step that fails, or a stack that
/// cannot be found.
pub async fn start_aws_on(
    endpoint: &url::Url,
    region: Option<&str>,
    data_dir: &Path,
    listen: SocketAddr,
    config_file: Option<&Path>,
    shutdown: CancellationToken,
    stack: Option<&str>,
) -> anyhow::Result<AwsDevStack> {
    let listen = concrete(listen)?;
    std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let region = region
        .unwrap_or(shared::adapter::aws::DEFAULT_REGION)
        .to_owned();
    let dir = data_dir.display().to_string();

    // Read the queue settings each worker wants before provisioning, with the local backend
    // (whose validation needs no ARN yet).
    let local = [("data_dir", dir.clone()), ("backend", "local".to_owned())];
    let resize_pre: prism_resize::Config = load(config_file, &local)?;
    let meta_pre: prism_metadata::Config = load(config_file, &local)?;
    let archive_pre: prism_archiver::Config = load(config_file, &local)?;
    let settings = |name: &'static str| {
        let (vis, max) = match name {
            topology::RESIZE_QUEUE => (
                resize_pre.consumer.visibility_timeout_secs,
                resize_pre.max_receive_count,
            ),
            topology::METADATA_QUEUE => (
                meta_pre.consumer.visibility_timeout_secs,
                meta_pre.max_receive_count,
            ),
            _ => (
                archive_pre.consumer.visibility_timeout_secs,
                archive_pre.max_receive_count,
            ),
        };
        QueueSettings {
            visibility_timeout: std::time::Duration::from_secs(vis),
            max_receive_count: max,
            ..QueueSettings::new(name)
        }
    };
    let aws = AwsConfig {
        region: Some(region.clone()),
        endpoint_url: Some(endpoint.clone()),
    };
    let clients = Clients::new(&aws).await;
    let provisioned = match stack {
        Some(name) => {
            let d = crate::stack::discover(&clients, name).await?;
            tracing::info!(%endpoint, stack = %d.stateful_stack, "Running against a deployed stack.");
            d.provisioned(&clients).await?
        }
        None => {
            // Emulators (moto 5.2.1) lack `$or` in body filter policies; see FilterDialect.
            let p = provision::provision(
                &clients,
                &resize_pre.common.resources,
                &settings,
                provision::FilterDialect::NoOr,
            )
            .await
            .with_context(|| format!("provisioning on {endpoint}"))?;
            tracing::info!(%endpoint, topic = %p.resources.topic_arn, "Provisioned the AWS topology.");
            p
        }
    };

    let r = &provisioned.resources;
    let common = |queue: Option<&str>| {
        let mut o = vec![
            ("data_dir", dir.clone()),
            ("backend", "aws".to_owned()),
            ("aws.region", region.clone()),
            ("aws.endpoint_url", endpoint.to_string()),
            ("resources.uploads_bucket", r.uploads_bucket.clone()),
            ("resources.media_bucket", r.media_bucket.clone()),
            ("resources.archive_bucket", r.archive_bucket.clone()),
            ("resources.topic_arn", r.topic_arn.clone()),
            ("resources.table_name", r.table_name.clone()),
        ];
        if let Some(q) = queue.and_then(|q| provisioned.queues.get(q)) {
            o.push(("resources.queue_url", q.url.clone()));
            o.push(("resources.dlq_url", q.dlq_url.clone()));
        }
        o
    };
    let token = prism_api::dev_token(data_dir)?;
    let mut api_overrides = common(None);
    api_overrides.push(("http.listen_addr", listen.to_string()));
    let mut api_cfg: prism_api::Config = load(config_file, &api_overrides)?;
    if api_cfg.auth.token_sha256s.is_empty() {
        api_cfg.auth.token_sha256s = vec![format!(
            "{}:{}",
            shared::config::DEV_PRINCIPAL,
            prism_api::auth::token_digest(&token)
        )];
    }
    let url = api_cfg
        .http
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{listen}"));
    api_cfg.http.public_base_url = Some(url.clone());
    let resize_cfg: prism_resize::Config =
        load(config_file, &common(Some(topology::RESIZE_QUEUE)))?;
    let mut meta_cfg: prism_metadata::Config =
        load(config_file, &common(Some(topology::METADATA_QUEUE)))?;
    let archive_cfg: prism_archiver::Config =
        load(config_file, &common(Some(topology::ARCHIVE_QUEUE)))?;
    meta_cfg.callback.allow_loopback_http = true;
    if meta_cfg.callback.signing_secret.expose().is_none() {
        let key = shared::adapter::local::signing::load_or_create_key(
            data_dir,
            prism_metadata::CALLBACK_SECRET_FILE,
        )?;
        meta_cfg.callback.signing_secret = Secret::new(hex::encode(key));
    }

    let stack = AwsStack::with_clients(clients, &api_cfg.common);
    let components = Components {
        api: (api_cfg, prism_api::Deps::aws(&stack)),
        resize: (
            resize_cfg.clone(),
            prism_resize::aws_deps(&resize_cfg, &stack, None)?,
        ),
        metadata: (
            meta_cfg.clone(),
            prism_metadata::aws_deps(&meta_cfg, &stack, None)?,
        ),
        archiver: (
            archive_cfg.clone(),
            prism_archiver::aws_deps(&archive_cfg, &stack, None)?,
        ),
    };
    let tasks = spawn(components, &shutdown).await?;
    Ok(DevStack {
        url,
        token,
        data_dir: data_dir.to_path_buf(),
        stack,
        provisioned,
        tasks,
        shutdown,
    })
}
