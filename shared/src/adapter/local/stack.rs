//! Everything the embedded backend needs, opened from one data dir and declared idempotently:
//! the topic with its three raw-delivery subscriptions and filter policies ([`crate::topology`]), the
//! uploads bucket notifying every created object, the media bucket notifying only manifests and
//! failure records, the archive bucket, the metadata store and the shared signing secret. Every
//! binary opens it at start, so each can be started, stopped or killed on its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{
    BLOBS_DIR, FsBlobStore, LocalSigner, METADATA_DB, NotificationRule, QUEUES_DB,
    SqliteMetadataStore, SqliteQueue, SqliteTopic,
};
use crate::config::Resources;
use crate::port::QueueSettings;
use crate::topology;

/// Why the stack cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the local backend in {dir}: {message}")]
pub struct StackError {
    dir: String,
    message: String,
}

/// The embedded backend of one data dir.
#[derive(Clone)]
pub struct LocalStack {
    /// Root dir.
    pub data_dir: PathBuf,
    /// The events topic.
    pub topic: Arc<SqliteTopic>,
    /// Uploads bucket (notifies every created object).
    pub uploads: FsBlobStore,
    /// Media bucket (notifies manifests and failure records).
    pub media: FsBlobStore,
    /// Archive bucket.
    pub archive: FsBlobStore,
    /// Batches and files.
    pub metadata: Arc<SqliteMetadataStore>,
    /// Signs and verifies presigned grants.
    pub signer: LocalSigner,
}

impl LocalStack {
    /// Open (creating) the backend; `public_base_url` is where presigned grants point (the
    /// API's address).
    ///
    /// # Errors
    /// [`StackError`] describing the first failure.
    pub async fn open(
        data_dir: &Path,
        resources: &Resources,
        public_base_url: &str,
    ) -> Result<Self, StackError> {
        let fail = |m: String| StackError {
            dir: data_dir.display().to_string(),
            message: m,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| fail(e.to_string()))?;
        let secret = LocalSigner::load_or_create_secret(data_dir)
            .map_err(|e| fail(format!("signing secret: {e}")))?;
        let signer = LocalSigner::new(public_base_url, &secret);
        let queues_db = data_dir.join(QUEUES_DB);
        let topic =
            SqliteTopic::open(&queues_db, &resources.topic_arn).map_err(|e| fail(e.to_string()))?;
        let subs = [
            (
                topology::RESIZE_QUEUE,
                Some(topology::resize_filter(&resources.uploads_bucket)),
            ),
            (
                topology::METADATA_QUEUE,
                Some(topology::metadata_filter(
                    &resources.uploads_bucket,
                    &resources.media_bucket,
                )),
            ),
            (topology::ARCHIVE_QUEUE, None),
        ];
        for (queue, filter) in subs {
            topic
                .subscribe(queue, filter, true)
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        let topic = Arc::new(topic);
        let blobs = data_dir.join(BLOBS_DIR);
        let uploads = FsBlobStore::open(&blobs, &resources.uploads_bucket)
            .map_err(|e| fail(e.to_string()))?
            .with_signer(signer.clone())
            .with_notifications(topic.clone(), vec![NotificationRule::all()])
            .await
            .map_err(|e| fail(e.to_string()))?;
        let media_rules = topology::media_notification_suffixes()
            .iter()
            .map(|s| NotificationRule {
                prefix: String::new(),
                suffix: (*s).to_owned(),
            })
            .collect();
        let media = FsBlobStore::open(&blobs, &resources.media_bucket)
            .map_err(|e| fail(e.to_string()))?
            .with_signer(signer.clone())
            .with_notifications(topic.clone(), media_rules)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let archive = FsBlobStore::open(&blobs, &resources.archive_bucket)
            .map_err(|e| fail(e.to_string()))?
            .with_signer(signer.clone());
        let metadata = Arc::new(
            SqliteMetadataStore::open(&data_dir.join(METADATA_DB))
                .map_err(|e| fail(e.to_string()))?,
        );
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            topic,
            uploads,
            media,
            archive,
            metadata,
            signer,
        })
    }

    /// Open queue `name` (declaring it with its DLQ).
    ///
    /// # Errors
    /// [`StackError`] when the database cannot be opened.
    pub async fn queue(
        &self,
        name: &str,
        visibility_timeout: Duration,
        max_receive_count: u32,
    ) -> Result<SqliteQueue, StackError> {
        let settings = QueueSettings {
            visibility_timeout,
            max_receive_count,
            ..QueueSettings::new(name)
        };
        SqliteQueue::open(&self.data_dir.join(QUEUES_DB), settings)
            .await
            .map_err(|e| StackError {
                dir: self.data_dir.display().to_string(),
                message: e.to_string(),
            })
    }
}
