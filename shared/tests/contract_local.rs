//! The port contract suites on the embedded adapters.

#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::sync::Arc;

use shared::adapter::local::{
    FsBlobStore, LocalSigner, SqliteMetadataStore, SqliteQueue, SqliteTopic,
};
use shared::port::{BlobStore, Queue, QueueSettings};
use shared::testing::{blob_store, metadata_store, queue, topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fs_blob_store_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path(), "bucket")
        .unwrap()
        .with_signer(LocalSigner::new("http://127.0.0.1:1", b"k"));
    blob_store::blob_store_contract(Arc::new(store) as Arc<dyn BlobStore>).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_queue_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queues.sqlite");
    queue::queue_contract(|s: QueueSettings| {
        let db = db.clone();
        async move { Arc::new(SqliteQueue::open(&db, s).await.unwrap()) as Arc<dyn Queue> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_topic_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queues.sqlite");
    topic::topic_contract(|| {
        let db = db.clone();
        async move {
            let t = SqliteTopic::open(&db, &shared::testing::unique_name("events")).unwrap();
            let q = |n: &str| QueueSettings::new(&shared::testing::unique_name(n));
            let (a, b, c) = (q("filtered"), q("all"), q("env"));
            t.subscribe(&a.name, Some(topic::uploads_filter()), true)
                .await
                .unwrap();
            t.subscribe(&b.name, None, true).await.unwrap();
            t.subscribe(&c.name, None, false).await.unwrap();
            topic::TopicFixture {
                topic: Arc::new(t),
                filtered_raw: Arc::new(SqliteQueue::open(&db, a).await.unwrap()),
                all_raw: Arc::new(SqliteQueue::open(&db, b).await.unwrap()),
                all_enveloped: Arc::new(SqliteQueue::open(&db, c).await.unwrap()),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_metadata_store_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetadataStore::open(&dir.path().join("metadata.sqlite")).unwrap();
    metadata_store::metadata_store_contract(Arc::new(store)).await;
}
