//! `FsBlobStore` configured as a bucket with notifications: S3-shaped `ObjectCreated` records
//! reach the topic after the object is visible, filtered by rules, and survive a crash between
//! the rename and the publish.

#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shared::adapter::local::{FsBlobStore, NotificationRule, SqliteQueue, SqliteTopic};
use shared::event::{EventBody, parse_body};
use shared::port::{BlobStore, PutOptions, Queue, QueueSettings, Topic, TopicError};

async fn wired(dir: &std::path::Path) -> (SqliteTopic, SqliteQueue) {
    let db = dir.join("queues.sqlite");
    let topic = SqliteTopic::open(&db, "events").unwrap();
    topic.subscribe("all", None, false).await.unwrap();
    (
        topic,
        SqliteQueue::open(&db, QueueSettings::new("all"))
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn created_objects_publish_s3_records_after_they_are_visible() {
    let dir = tempfile::tempdir().unwrap();
    let (topic, q) = wired(dir.path()).await;
    let media = FsBlobStore::open(&dir.path().join("blobs"), "media")
        .unwrap()
        .with_notifications(
            Arc::new(topic),
            vec![
                NotificationRule {
                    prefix: "media/".into(),
                    suffix: "/manifest.json".into(),
                },
                NotificationRule {
                    prefix: "media/".into(),
                    suffix: "/failure.json".into(),
                },
            ],
        )
        .await
        .unwrap();
    media
        .put(
            "media/b/f/320w.webp",
            Bytes::from_static(b"x"),
            PutOptions::default(),
        )
        .await
        .unwrap();
    media
        .put(
            "media/b/f name+/manifest.json",
            Bytes::from_static(b"{}"),
            PutOptions::default(),
        )
        .await
        .unwrap();
    let got = q.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 1, "only the manifest matches the rules");
    let parsed = parse_body(&got[0].body).unwrap();
    assert!(parsed.envelope.is_some());
    let EventBody::S3(ev) = parsed.body else {
        panic!("not an S3 event")
    };
    let r = &ev.records[0];
    assert_eq!(r.event_name, "ObjectCreated:Put");
    assert_eq!(r.s3.bucket.name, "media");
    assert_eq!(
        r.s3.object.key, "media/b/f+name%2B/manifest.json",
        "keys are form-encoded like S3"
    );
    let key = r.s3.object.decoded_key().unwrap();
    assert_eq!(key, "media/b/f name+/manifest.json");
    assert_eq!(r.s3.object.size, Some(2));
    // The event names an object that is already visible.
    assert_eq!(media.get(&key).await.unwrap(), Bytes::from_static(b"{}"));
}

/// A topic that fails, as if the process died between the rename and the publish.
struct Down;

#[async_trait::async_trait]
impl Topic for Down {
    async fn publish(&self, _: &str) -> Result<String, TopicError> {
        Err(TopicError::Unavailable("down".into()))
    }
}

#[tokio::test]
async fn a_crash_after_the_rename_still_publishes_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    let broken = FsBlobStore::open(&blobs, "uploads")
        .unwrap()
        .with_notifications(Arc::new(Down), vec![NotificationRule::all()])
        .await
        .unwrap();
    let e = broken
        .put(
            "uploads/b/f",
            Bytes::from_static(b"img"),
            PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    // The object is visible; its event is journalled.
    assert_eq!(
        broken.get("uploads/b/f").await.unwrap(),
        Bytes::from_static(b"img")
    );
    let (topic, q) = wired(dir.path()).await;
    let _restarted = FsBlobStore::open(&blobs, "uploads")
        .unwrap()
        .with_notifications(Arc::new(topic), vec![NotificationRule::all()])
        .await
        .unwrap();
    let got = q.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 1, "the journalled event was re-published");
    let EventBody::S3(ev) = parse_body(&got[0].body).unwrap().body else {
        panic!()
    };
    assert_eq!(
        ev.records[0].s3.object.decoded_key().unwrap(),
        "uploads/b/f"
    );
    // And only once: the journal entry is gone.
    let (topic2, _) = wired(dir.path()).await;
    FsBlobStore::open(&blobs, "uploads")
        .unwrap()
        .with_notifications(Arc::new(topic2), vec![NotificationRule::all()])
        .await
        .unwrap();
    assert!(
        q.receive(10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
}

fn age(path: &std::path::Path, by: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - by)
        .unwrap();
}

/// Several processes share a data dir and any may restart at any moment: a restart must not
/// discard the journal entry of a put another live process has not renamed yet (if that process
/// then died between its rename and its publish, the event would be lost). Only an entry old
/// enough that its writer must be dead is discarded.
#[tokio::test]
async fn a_restart_keeps_the_journal_entry_of_a_put_still_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    let store = FsBlobStore::open(&blobs, "uploads").unwrap();
    // What a writer leaves between its journal write and its rename.
    let entry = store.root().join(".pending").join("in-progress.json");
    let event = shared::event::object_created_event(
        "local",
        "uploads",
        "uploads/b/f",
        3,
        "etag",
        "ObjectCreated:Post",
        "0001",
        time::OffsetDateTime::now_utc(),
    );
    let journal =
        serde_json::json!({"key": "uploads/b/f", "event": serde_json::to_string(&event).unwrap()});
    std::fs::write(&entry, serde_json::to_vec(&journal).unwrap()).unwrap();
    let torn = store.root().join(".pending").join("torn.json");
    std::fs::write(&torn, b"{\"key\": \"upl").unwrap();

    let (topic, q) = wired(dir.path()).await;
    let topic = Arc::new(topic);
    FsBlobStore::open(&blobs, "uploads")
        .unwrap()
        .with_notifications(topic.clone(), vec![NotificationRule::all()])
        .await
        .unwrap();
    assert!(
        entry.exists() && torn.exists(),
        "a young entry was discarded"
    );
    assert!(
        q.receive(10, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );

    // Hours later its writer is certainly dead and the object never appeared.
    age(&entry, Duration::from_secs(3600));
    age(&torn, Duration::from_secs(3600));
    FsBlobStore::open(&blobs, "uploads")
        .unwrap()
        .with_notifications(topic, vec![NotificationRule::all()])
        .await
        .unwrap();
    assert!(!entry.exists() && !torn.exists(), "stale entries were kept");
    assert!(
        q.receive(10, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A writer killed before its rename leaves a temp file: invisible, never listed, and swept
/// when a store opens once it is old enough that no live put can own it.
#[tokio::test]
async fn temp_files_of_dead_writers_are_swept_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    let store = FsBlobStore::open(&blobs, "media").unwrap();
    let fresh = store.root().join(".tmp").join("fresh");
    let stale = store.root().join(".tmp").join("stale");
    std::fs::write(&fresh, b"partial").unwrap();
    std::fs::write(&stale, b"partial").unwrap();
    age(&stale, Duration::from_secs(3600));
    assert!(
        store.list("").await.unwrap().is_empty(),
        "temp files are not objects"
    );
    FsBlobStore::open(&blobs, "media").unwrap();
    assert!(fresh.exists(), "a put in progress lost its temp file");
    assert!(!stale.exists(), "a dead writer's temp file was kept");
}
