//! The topic → queue wiring (docs/architecture.md, "The flow"), shared by every backend and declared idempotently by
//! each binary at start (locally) or by the CDK app (on AWS, the same filter policies).
//!
//! - resize ← object-created records of the uploads bucket
//! - metadata ← records of the uploads bucket and of the media bucket (which only notifies for
//!   `manifest.json` / `failure.json`), and client `IMAGE_REQUESTED` events
//! - archive ← everything

use serde_json::{Value, json};

/// Name of the resize queue (local) / logical id.
pub const RESIZE_QUEUE: &str = "resize";
/// Name of the archive queue.
pub const ARCHIVE_QUEUE: &str = "archive";
/// Name of the metadata queue.
pub const METADATA_QUEUE: &str = "metadata";

/// Client event names the metadata writer consumes.
pub const METADATA_CLIENT_EVENTS: &[&str] = &["IMAGE_REQUESTED"];

/// Message-body filter policy of the resize subscription.
pub fn resize_filter(uploads_bucket: &str) -> Value {
    json!({"Records": {
        "eventName": [{"prefix": "ObjectCreated:"}],
        "s3": {"bucket": {"name": [uploads_bucket]}}
    }})
}

/// Message-body filter policy of the metadata subscription.
pub fn metadata_filter(uploads_bucket: &str, media_bucket: &str) -> Value {
    json!({"$or": [
        {"Records": {
            "eventName": [{"prefix": "ObjectCreated:"}],
            "s3": {"bucket": {"name": [uploads_bucket, media_bucket]}}
        }},
        {"event_name": METADATA_CLIENT_EVENTS}
    ]})
}

/// Notification rules of the media bucket: only the records the metadata writer reads.
pub fn media_notification_suffixes() -> [&'static str; 2] {
    ["/manifest.json", "/failure.json"]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::local::filter_policy::FilterPolicy;
    use crate::event::object_created_event;

    fn ev(bucket: &str, key: &str) -> Value {
        let at = time::OffsetDateTime::now_utc();
        serde_json::to_value(object_created_event(
            "r",
            bucket,
            key,
            1,
            "e",
            "ObjectCreated:Post",
            "1",
            at,
        ))
        .unwrap()
    }

    #[test]
    fn each_queue_gets_exactly_its_events() {
        let resize = FilterPolicy::parse(&resize_filter("up")).unwrap();
        let meta = FilterPolicy::parse(&metadata_filter("up", "media")).unwrap();
        let upload = ev("up", "uploads/b/f");
        let manifest = ev("media", "media/b/f/manifest.json");
        let requested = json!({"event_name": "IMAGE_REQUESTED", "image_id": "f"});
        let completed = json!({"event_name": "batch.completed", "batch_id": "b"});
        assert!(resize.matches(&upload));
        assert!(!resize.matches(&manifest) && !resize.matches(&requested));
        assert!(meta.matches(&upload) && meta.matches(&manifest) && meta.matches(&requested));
        assert!(
            !meta.matches(&completed),
            "the writer must not consume its own announcements"
        );
        assert!(!meta.matches(&ev("elsewhere", "x")));
    }
}
