//! The `Topic` contract. Subscribing is adapter-specific, so the factory wires the topic to
//! three fresh queues: an upload-filtered raw one, an unfiltered raw one, an unfiltered one
//! with the SNS envelope.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::event::{EventBody, object_created_event, parse_body};
use crate::port::{Queue, Topic};

/// What the factory builds.
pub struct TopicFixture {
    /// The topic.
    pub topic: Arc<dyn Topic>,
    /// Subscribed raw with [`uploads_filter`].
    pub filtered_raw: Arc<dyn Queue>,
    /// Subscribed raw with no filter.
    pub all_raw: Arc<dyn Queue>,
    /// Subscribed with the SNS envelope and no filter.
    pub all_enveloped: Arc<dyn Queue>,
}

/// The filter the factory must put on `filtered_raw`: object-created records of bucket
/// `uploads-bucket`.
pub fn uploads_filter() -> Value {
    json!({"Records": {"s3": {"bucket": {"name": ["uploads-bucket"]}},
        "eventName": [{"prefix": "ObjectCreated:"}]}})
}

/// Run every rule of the contract.
///
/// # Panics
/// On the first broken rule.
pub async fn topic_contract<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = TopicFixture>,
{
    let f = make().await;
    let at = time::OffsetDateTime::now_utc();
    let upload = object_created_event(
        "us-east-1",
        "uploads-bucket",
        "uploads/b/f",
        3,
        "e",
        "ObjectCreated:Put",
        "01",
        at,
    );
    let upload = serde_json::to_string(&upload).expect("json");
    let media = object_created_event(
        "us-east-1",
        "media-bucket",
        "media/b/f/manifest.json",
        3,
        "e",
        "ObjectCreated:Put",
        "01",
        at,
    );
    let media = serde_json::to_string(&media).expect("json");
    let client = json!({"event_name": "IMAGE_REQUESTED", "image_id": "f"}).to_string();

    for m in [&upload, &media, &client] {
        f.topic.publish(m).await.expect("publish");
    }
    let drain = |q: Arc<dyn Queue>, n: usize| async move {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while got.len() < n && tokio::time::Instant::now() < deadline {
            for m in q
                .receive(10, Duration::from_secs(1))
                .await
                .expect("receive")
            {
                q.ack(&m.receipt).await.expect("ack");
                got.push(m.body);
            }
        }
        // Nothing more arrives.
        assert!(
            q.receive(10, Duration::from_millis(500))
                .await
                .expect("receive")
                .is_empty(),
            "extra message"
        );
        got
    };
    let filtered = drain(f.filtered_raw.clone(), 1).await;
    assert_eq!(
        filtered,
        vec![upload.clone()],
        "the filtered queue gets only the upload event, raw"
    );

    let mut all = drain(f.all_raw.clone(), 3).await;
    all.sort();
    let mut want = vec![upload.clone(), media.clone(), client.clone()];
    want.sort();
    assert_eq!(
        all, want,
        "the unfiltered raw queue gets every message as published"
    );

    let enveloped = drain(f.all_enveloped.clone(), 3).await;
    assert_eq!(enveloped.len(), 3);
    let mut inner = Vec::new();
    for body in &enveloped {
        let parsed = parse_body(body).expect("parse");
        let env = parsed.envelope.expect("an SNS envelope");
        assert_eq!(env.kind, "Notification");
        let original: Value = serde_json::from_str(&env.message).expect("inner json");
        inner.push(original);
        if let EventBody::S3(e) = parsed.body {
            assert_eq!(e.records.len(), 1);
        }
    }
    for m in [&upload, &media, &client] {
        let v: Value = serde_json::from_str(m).expect("json");
        assert!(inner.contains(&v), "envelope lost {m}");
    }

    // A message that is not JSON reaches only unfiltered subscriptions.
    f.topic.publish("plain text").await.expect("publish text");
    assert_eq!(
        drain(f.all_raw.clone(), 1).await,
        vec!["plain text".to_owned()]
    );
    assert!(drain(f.filtered_raw.clone(), 0).await.is_empty());
    drain(f.all_enveloped.clone(), 1).await;
}
