//! Everything the AWS backend needs, opened from config: the clients, the three buckets, the
//! topic, the metadata table, and the worker queues by URL. Opening does no I/O beyond loading
//! credentials; the resources are the CDK app's (or [`super::provision`]'s) business.

use std::sync::Arc;

use super::{Clients, DynamoMetadataStore, S3BlobStore, SnsTopic, SqsQueue};
use crate::config::CommonConfig;

/// Why the AWS backend cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the AWS backend: {0}")]
pub struct AwsStackError(String);

/// The AWS backend of one deployment.
#[derive(Clone, Debug)]
pub struct AwsStack {
    /// The SDK clients.
    pub clients: Clients,
    /// Uploads bucket.
    pub uploads: S3BlobStore,
    /// Media bucket.
    pub media: S3BlobStore,
    /// Archive bucket.
    pub archive: S3BlobStore,
    /// The events topic.
    pub topic: Arc<SnsTopic>,
    /// Batches and files.
    pub metadata: Arc<DynamoMetadataStore>,
}

impl AwsStack {
    /// Build the clients from `common.aws` and address `common.resources`.
    pub async fn open(common: &CommonConfig) -> Self {
        Self::with_clients(Clients::new(&common.aws).await, common)
    }

    /// Address `common.resources` with prebuilt clients.
    pub fn with_clients(clients: Clients, common: &CommonConfig) -> Self {
        let r = &common.resources;
        Self {
            uploads: S3BlobStore::new(&clients, &r.uploads_bucket),
            media: S3BlobStore::new(&clients, &r.media_bucket),
            archive: S3BlobStore::new(&clients, &r.archive_bucket),
            topic: Arc::new(SnsTopic::new(&clients, &r.topic_arn)),
            metadata: Arc::new(DynamoMetadataStore::new(&clients, &r.table_name)),
            clients,
        }
    }

    /// The worker's queue from `resources.queue_url` / `resources.dlq_url`, labelled `name`.
    ///
    /// # Errors
    /// When either URL is missing.
    pub fn worker_queue(
        &self,
        name: &str,
        common: &CommonConfig,
    ) -> Result<SqsQueue, AwsStackError> {
        let r = &common.resources;
        match (&r.queue_url, &r.dlq_url) {
            (Some(url), Some(dlq)) => Ok(SqsQueue::new(&self.clients, name, url, dlq)),
            _ => Err(AwsStackError(format!(
                "the {name} worker needs resources.queue_url and resources.dlq_url \
                 (PRISM__RESOURCES__QUEUE_URL, PRISM__RESOURCES__DLQ_URL)"
            ))),
        }
    }
}
