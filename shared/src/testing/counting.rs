//! A `MetadataStore` that counts the calls made to it, by method, and forwards them: what the
//! API's long-poll tests and benchmarks measure store reads with.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::port::metadata_store::{
    BatchRecord, BatchTrace, BatchVersion, ExpiredFile, FileError, MetadataStore,
    MetadataStoreError, NewBatch, NewWebhook, RenderedFile, Transition, WebhookAttempt, WebhookJob,
};

/// Counts every call by method name, then forwards it to the inner store.
pub struct CountingMetadataStore {
    inner: Arc<dyn MetadataStore>,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl CountingMetadataStore {
    /// Count calls to `inner`.
    pub fn new(inner: Arc<dyn MetadataStore>) -> Self {
        Self {
            inner,
            calls: Mutex::new(BTreeMap::new()),
        }
    }

    fn hit(&self, method: &'static str) {
        *self
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(method)
            .or_default() += 1;
    }

    /// Calls of `method` so far.
    pub fn calls(&self, method: &str) -> u64 {
        self.snapshot().get(method).copied().unwrap_or(0)
    }

    /// Every method's calls so far.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl MetadataStore for CountingMetadataStore {
    async fn create_batch(&self, batch: &NewBatch) -> Result<(), MetadataStoreError> {
        self.hit("create_batch");
        self.inner.create_batch(batch).await
    }

    async fn get_batch(&self, batch_id: &str) -> Result<Option<BatchRecord>, MetadataStoreError> {
        self.hit("get_batch");
        self.inner.get_batch(batch_id).await
    }

    async fn batch_trace(&self, batch_id: &str) -> Result<Option<BatchTrace>, MetadataStoreError> {
        self.hit("batch_trace");
        self.inner.batch_trace(batch_id).await
    }

    async fn recent_batches(&self, limit: usize) -> Result<Vec<BatchRecord>, MetadataStoreError> {
        self.hit("recent_batches");
        self.inner.recent_batches(limit).await
    }

    async fn mark_received(
        &self,
        batch_id: &str,
        file_id: &str,
        at: OffsetDateTime,
    ) -> Result<Transition, MetadataStoreError> {
        self.hit("mark_received");
        self.inner.mark_received(batch_id, file_id, at).await
    }

    async fn mark_done(
        &self,
        batch_id: &str,
        file_id: &str,
        rendered: &RenderedFile,
        at: OffsetDateTime,
    ) -> Result<Transition, MetadataStoreError> {
        self.hit("mark_done");
        self.inner.mark_done(batch_id, file_id, rendered, at).await
    }

    async fn mark_failed(
        &self,
        batch_id: &str,
        file_id: &str,
        error: &FileError,
        at: OffsetDateTime,
    ) -> Result<Transition, MetadataStoreError> {
        self.hit("mark_failed");
        self.inner.mark_failed(batch_id, file_id, error, at).await
    }

    async fn replace_rendered(
        &self,
        batch_id: &str,
        file_id: &str,
        rendered: &RenderedFile,
        at: OffsetDateTime,
    ) -> Result<bool, MetadataStoreError> {
        self.hit("replace_rendered");
        self.inner
            .replace_rendered(batch_id, file_id, rendered, at)
            .await
    }

    async fn mark_announced(
        &self,
        batch_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, MetadataStoreError> {
        self.hit("mark_announced");
        self.inner.mark_announced(batch_id, at).await
    }

    async fn pending_uploads(&self, principal: &str) -> Result<u64, MetadataStoreError> {
        self.hit("pending_uploads");
        self.inner.pending_uploads(principal).await
    }

    async fn batch_version(
        &self,
        batch_id: &str,
    ) -> Result<Option<BatchVersion>, MetadataStoreError> {
        self.hit("batch_version");
        self.inner.batch_version(batch_id).await
    }

    async fn expire_uploads(
        &self,
        cutoff: OffsetDateTime,
        at: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ExpiredFile>, MetadataStoreError> {
        self.hit("expire_uploads");
        self.inner.expire_uploads(cutoff, at, limit).await
    }

    async fn enqueue_webhook(&self, webhook: &NewWebhook) -> Result<bool, MetadataStoreError> {
        self.hit("enqueue_webhook");
        self.inner.enqueue_webhook(webhook).await
    }

    async fn claim_webhooks(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<WebhookJob>, MetadataStoreError> {
        self.hit("claim_webhooks");
        self.inner.claim_webhooks(now, lease, limit).await
    }

    async fn record_webhook_attempt(
        &self,
        job: &WebhookJob,
        attempt: &WebhookAttempt,
    ) -> Result<bool, MetadataStoreError> {
        self.hit("record_webhook_attempt");
        self.inner.record_webhook_attempt(job, attempt).await
    }

    async fn image_owner(&self, image_id: &str) -> Result<Option<String>, MetadataStoreError> {
        self.hit("image_owner");
        self.inner.image_owner(image_id).await
    }

    async fn record_image_request(
        &self,
        image_id: &str,
        event_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, MetadataStoreError> {
        self.hit("record_image_request");
        self.inner
            .record_image_request(image_id, event_id, at)
            .await
    }
}
