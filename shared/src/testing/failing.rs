//! A blob store that fails its next puts on demand, for tests of what a worker does with a
//! store failure (its code, its disposition, its retries).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::port::{
    BlobStore, BlobStoreError, ObjectInfo, ObjectMeta, PresignedUpload, PutOptions, UploadPolicy,
};

/// Makes the error a failing put returns.
pub type MakeError = fn(&str) -> BlobStoreError;

/// Wraps a blob store; while armed, each put fails with the armed error (nothing is written)
/// until the armed count runs out. Everything else passes through.
#[derive(Clone)]
pub struct FailingPuts {
    inner: Arc<dyn BlobStore>,
    armed: Arc<Mutex<Option<(MakeError, u32)>>>,
    failed: Arc<Mutex<u32>>,
}

impl FailingPuts {
    /// Pass-through until [`fail_next`](Self::fail_next).
    pub fn new(inner: Arc<dyn BlobStore>) -> Self {
        Self {
            inner,
            armed: Arc::new(Mutex::new(None)),
            failed: Arc::new(Mutex::new(0)),
        }
    }

    /// Fail the next `n` puts with `make(key)`.
    ///
    /// # Panics
    /// When the lock is poisoned (a test already failed).
    pub fn fail_next(&self, n: u32, make: MakeError) {
        *self.armed.lock().expect("lock") = Some((make, n));
    }

    /// How many puts have failed so far.
    ///
    /// # Panics
    /// When the lock is poisoned (a test already failed).
    pub fn failed(&self) -> u32 {
        *self.failed.lock().expect("lock")
    }
}

#[async_trait]
impl BlobStore for FailingPuts {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }
    async fn get(&self, key: &str) -> Result<Bytes, BlobStoreError> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> Result<ObjectMeta, BlobStoreError> {
        self.inner.head(key).await
    }
    async fn put(&self, key: &str, body: Bytes, options: PutOptions) -> Result<(), BlobStoreError> {
        let fail = {
            let mut armed = self.armed.lock().expect("lock");
            match armed.as_mut() {
                Some((make, n)) if *n > 0 => {
                    *n -= 1;
                    Some(*make)
                }
                _ => None,
            }
        };
        if let Some(make) = fail {
            *self.failed.lock().expect("lock") += 1;
            return Err(make(key));
        }
        self.inner.put(key, body, options).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BlobStoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), BlobStoreError> {
        self.inner.delete(key).await
    }
    async fn presign_upload(
        &self,
        policy: &UploadPolicy,
    ) -> Result<PresignedUpload, BlobStoreError> {
        self.inner.presign_upload(policy).await
    }
    async fn presign_download(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, BlobStoreError> {
        self.inner.presign_download(key, expires_in).await
    }
}
