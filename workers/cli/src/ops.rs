//! The ports the operator commands (`prism replay`, `prism rerender`) work through, on either
//! backend: the embedded one of a data dir, or AWS (buckets, topic, table and the resize queue
//! named in [`AwsTarget`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use shared::adapter::aws::{Clients, DynamoMetadataStore, S3BlobStore, SnsTopic, SqsQueue};
use shared::config::Resources;
use shared::port::{BlobStore, MetadataStore, Queue, QueueSettings, Topic};

/// The adapters of one deployment.
#[derive(Clone)]
pub struct Ops {
    /// Uploads bucket.
    pub uploads: Arc<dyn BlobStore>,
    /// Media bucket.
    pub media: Arc<dyn BlobStore>,
    /// Archive bucket.
    pub archive: Arc<dyn BlobStore>,
    /// The events topic.
    pub topic: Arc<dyn Topic>,
    /// Batches and files.
    pub metadata: Arc<dyn MetadataStore>,
    /// The resize worker's queue (re-render messages go straight to it); `None` when the
    /// target names none.
    pub resize: Option<Arc<dyn Queue>>,
}

/// Where the AWS resources are.
#[derive(Debug, Clone)]
pub struct AwsTarget {
    /// Bucket, topic and table names.
    pub resources: Resources,
    /// The resize queue's URL and its dead-letter queue's URL, when needed.
    pub resize_queue: Option<(String, String)>,
}

impl Ops {
    /// The embedded backend of `data_dir` (as `prism dev` laid it out).
    ///
    /// # Errors
    /// When the data dir cannot be opened.
    pub async fn local(data_dir: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            data_dir.join(shared::adapter::local::QUEUES_DB).exists(),
            "no prism data in {} (run `prism dev --data-dir {}` first)",
            data_dir.display(),
            data_dir.display()
        );
        let resources = Resources::default();
        let stack =
            shared::adapter::local::LocalStack::open(data_dir, &resources, "http://127.0.0.1")
                .await?;
        let resize = shared::adapter::local::SqliteQueue::open(
            &data_dir.join(shared::adapter::local::QUEUES_DB),
            QueueSettings::new(shared::topology::RESIZE_QUEUE),
        )
        .await?;
        Ok(Self {
            uploads: Arc::new(stack.uploads.clone()),
            media: Arc::new(stack.media.clone()),
            archive: Arc::new(stack.archive.clone()),
            topic: stack.topic.clone(),
            metadata: stack.metadata.clone(),
            resize: Some(Arc::new(resize)),
        })
    }

    /// The AWS resources of `target`, through `clients`.
    pub fn aws(clients: &Clients, target: &AwsTarget) -> Self {
        let r = &target.resources;
        Self {
            uploads: Arc::new(S3BlobStore::new(clients, &r.uploads_bucket)),
            media: Arc::new(S3BlobStore::new(clients, &r.media_bucket)),
            archive: Arc::new(S3BlobStore::new(clients, &r.archive_bucket)),
            topic: Arc::new(SnsTopic::new(clients, &r.topic_arn)),
            metadata: Arc::new(DynamoMetadataStore::new(clients, &r.table_name)),
            resize: target.resize_queue.as_ref().map(|(url, dlq)| {
                Arc::new(SqsQueue::new(
                    clients,
                    shared::topology::RESIZE_QUEUE,
                    url,
                    dlq,
                )) as Arc<dyn Queue>
            }),
        }
    }
}

/// The URL of SQS queue `name`.
///
/// # Errors
/// When there is no such queue.
pub async fn queue_url(clients: &Clients, name: &str) -> anyhow::Result<String> {
    clients
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .with_context(|| format!("no SQS queue named {name}"))?
        .queue_url
        .with_context(|| format!("SQS returned no URL for {name}"))
}
