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

/// A failure stored by another version, holding a code this version does not know, reads as
/// `internal` with its message intact: the read never fails and no label leaves the closed set.
#[tokio::test]
async fn a_stored_failure_with_a_code_this_version_does_not_know_reads_as_internal() {
    use shared::error::ErrorCode;
    use shared::port::{FileError, MetadataStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.sqlite");
    let store = SqliteMetadataStore::open(&path).unwrap();
    let batch = shared::testing::metadata_store::new_batch(2);
    store.create_batch(&batch).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    for f in &batch.files {
        let err = FileError {
            code: ErrorCode::TruncatedImage,
            message: "ends early".into(),
        };
        store
            .mark_failed(&batch.batch_id, &f.file_id, &err, now)
            .await
            .unwrap();
    }
    // What this version writes is the label.
    let db = rusqlite::Connection::open(&path).unwrap();
    let stored: String = db
        .query_row(
            "SELECT error FROM files WHERE file_id = ?1",
            [&batch.files[1].file_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stored).unwrap(),
        serde_json::json!({"code": "truncated_image", "message": "ends early"})
    );
    db.execute(
        "UPDATE files SET error = ?2 WHERE file_id = ?1",
        [
            batch.files[0].file_id.as_str(),
            r#"{"code":"decode_failed","message":"an old failure"}"#,
        ],
    )
    .unwrap();
    let read = store.get_batch(&batch.batch_id).await.unwrap().unwrap();
    let errors: Vec<_> = read
        .files
        .iter()
        .map(|f| f.error.clone().unwrap())
        .collect();
    assert_eq!(
        errors,
        [
            FileError {
                code: ErrorCode::Internal,
                message: "an old failure".into()
            },
            FileError {
                code: ErrorCode::TruncatedImage,
                message: "ends early".into()
            },
        ]
    );
}

/// A dead letter stored with a code this version does not know still lists, under `internal`
/// (it does not pass for one the redrive policy moved).
#[tokio::test]
async fn a_dead_letter_with_a_code_this_version_does_not_know_reads_as_internal() {
    use shared::error::ErrorCode;
    use shared::port::{DeadLetterInfo, DeadLetterReason};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queues.sqlite");
    let q = SqliteQueue::open(&path, QueueSettings::new("work"))
        .await
        .unwrap();
    for body in ["old", "new"] {
        q.send(body).await.unwrap();
        let m = q
            .receive(1, std::time::Duration::from_secs(1))
            .await
            .unwrap()
            .pop()
            .unwrap();
        let info = DeadLetterInfo {
            error_code: ErrorCode::UndecodableImage,
            worker: "resize".into(),
            reason: "not an image".into(),
        };
        q.dead_letter(&m, &info).await.unwrap();
    }
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute(
        "UPDATE queue_messages SET dead_letter = ?1 WHERE body = 'old'",
        [r#"{"error_code":"decode_failed","worker":"resize","reason":"an old failure"}"#],
    )
    .unwrap();
    let mut dl = q.dead_letters(10).await.unwrap();
    dl.sort_by(|a, b| a.body.cmp(&b.body));
    let got: Vec<_> = dl
        .iter()
        .map(|d| (d.body.as_str(), d.reason(), d.info.clone().unwrap().reason))
        .collect();
    assert_eq!(
        got,
        [
            (
                "new",
                DeadLetterReason::Failed(ErrorCode::UndecodableImage),
                "not an image".to_owned()
            ),
            (
                "old",
                DeadLetterReason::Failed(ErrorCode::Internal),
                "an old failure".to_owned()
            ),
        ]
    );
}
