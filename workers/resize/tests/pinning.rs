//! One upload grant stores one object: the resize worker pins each file to the first upload it
//! processed. A later object at the same key (a replayed presigned POST, which S3 cannot refuse)
//! never replaces the variants, the manifest or its recorded hash; a redelivery of the same
//! object still re-renders. Driven through the real handler on the embedded backend.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

#[path = "support/hostile_inputs.rs"]
mod hostile_inputs;

use std::collections::BTreeMap;

use bytes::Bytes;
use prism_resize::isolate::Isolation;
use prism_resize::{Config, ResizeHandler, local_deps};
use shared::adapter::local::LocalStack;
use shared::config::Resources;
use shared::consumer::{Handler, Outcome};
use shared::event::object_created_event;
use shared::keys;
use shared::manifest::{FailureRecord, Manifest};
use shared::port::{BlobStore, Message, PutOptions};
use shared::variant::{META_REQUEST, OutputFormat, VariantRequest};
use time::OffsetDateTime;

struct Harness {
    _dir: tempfile::TempDir,
    stack: LocalStack,
    handler: ResizeHandler,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::open(dir.path(), &Resources::default(), "http://127.0.0.1:1")
        .await
        .unwrap();
    let mut cfg = Config::default();
    cfg.resize.isolation = Isolation::None;
    let deps = local_deps(&cfg, &stack).await.unwrap();
    let handler = ResizeHandler::new(&cfg, deps);
    Harness {
        _dir: dir,
        stack,
        handler,
    }
}

impl Harness {
    /// Store `bytes` at the file's upload key (as a presigned upload would) and hand the
    /// worker its `ObjectCreated` event.
    async fn upload(&self, batch: &str, file: &str, bytes: Vec<u8>) -> Outcome {
        let request = VariantRequest {
            widths: vec![24],
            formats: vec![OutputFormat::Webp],
            ..VariantRequest::default()
        }
        .normalise()
        .unwrap();
        let key = keys::upload_key(batch, file);
        let size = bytes.len() as u64;
        let opts = PutOptions {
            content_type: Some("image/png".into()),
            metadata: BTreeMap::from([(META_REQUEST.to_owned(), request.to_metadata())]),
            ..Default::default()
        };
        self.stack
            .uploads
            .put(&key, Bytes::from(bytes), opts)
            .await
            .unwrap();
        let event = object_created_event(
            "local",
            self.stack.uploads.bucket(),
            &key,
            size,
            "etag",
            "ObjectCreated:Post",
            "0001",
            OffsetDateTime::now_utc(),
        );
        let message = Message {
            id: uuid::Uuid::new_v4().to_string(),
            receipt: "r".into(),
            body: serde_json::to_string(&event).unwrap(),
            receive_count: 1,
            sent_at: OffsetDateTime::now_utc(),
        };
        self.handler.handle(&message).await.unwrap()
    }

    async fn media(&self, key: &str) -> Option<Bytes> {
        self.stack.media.get(key).await.ok()
    }
}

/// The key of the harness request's one variant under the default engine settings.
fn variant_key(batch: &str, file: &str) -> String {
    let engine = prism_resize::render::engine_id(&Config::default().encode_settings());
    let tag = keys::variant_tag(
        &engine,
        OutputFormat::Webp,
        shared::variant::DEFAULT_WEBP_QUALITY,
        shared::variant::Fit::Inside,
        24,
        shared::variant::Lossless::Off,
    );
    keys::variant_key(batch, file, 24, &tag, OutputFormat::Webp)
}

fn sha256(bytes: &[u8]) -> String {
    prism_resize::render::facts::sha256_hex(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_object_at_a_processed_key_never_replaces_the_first() {
    let h = harness().await;
    let (batch, file) = ("b1", "f1");
    let first = hostile_inputs::png_solid(64, 48);
    let second = hostile_inputs::png_solid(96, 30);
    assert_eq!(h.upload(batch, file, first.clone()).await, Outcome::Success);
    let manifest = h.media(&keys::manifest_key(batch, file)).await.unwrap();
    let variant = h.media(&variant_key(batch, file)).await.unwrap();
    let m: Manifest = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(m.rendered.source.sha256, sha256(&first));
    assert_eq!(m.rendered.variants[0].key, variant_key(batch, file));

    // The replayed grant: another object at the same key. Nothing changes.
    assert_eq!(h.upload(batch, file, second).await, Outcome::Duplicate);
    assert_eq!(
        h.media(&keys::manifest_key(batch, file)).await.unwrap(),
        manifest
    );
    assert_eq!(h.media(&variant_key(batch, file)).await.unwrap(), variant);

    // The first object again (a redelivery, or the same bytes) renders as before.
    assert_eq!(h.upload(batch, file, first.clone()).await, Outcome::Success);
    let again: Manifest =
        serde_json::from_slice(&h.media(&keys::manifest_key(batch, file)).await.unwrap()).unwrap();
    assert_eq!(again.rendered.source.sha256, sha256(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_file_stays_failed_when_another_object_is_uploaded_over_it() {
    let h = harness().await;
    let (batch, file) = ("b2", "f1");
    let junk = b"\x89PNG\r\n\x1a\nnot really a png".to_vec();
    assert_eq!(h.upload(batch, file, junk.clone()).await, Outcome::Success);
    let failure = h.media(&keys::failure_key(batch, file)).await.unwrap();
    let f: FailureRecord = serde_json::from_slice(&failure).unwrap();
    assert_eq!(f.source_sha256.as_deref(), Some(sha256(&junk).as_str()));

    let valid = hostile_inputs::png_solid(40, 40);
    assert_eq!(h.upload(batch, file, valid).await, Outcome::Duplicate);
    assert!(
        h.media(&keys::manifest_key(batch, file)).await.is_none(),
        "a replayed grant turned a failed file into a rendered one"
    );
    assert_eq!(
        h.media(&keys::failure_key(batch, file)).await.unwrap(),
        failure
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_are_immutable_and_a_rerender_with_other_settings_writes_new_keys() {
    let h = harness().await;
    let (batch, file) = ("b3", "f1");
    let png = hostile_inputs::png_solid(64, 48);
    assert_eq!(h.upload(batch, file, png.clone()).await, Outcome::Success);
    let first: Manifest =
        serde_json::from_slice(&h.media(&keys::manifest_key(batch, file)).await.unwrap()).unwrap();
    let key = first.rendered.variants[0].key.clone();
    assert_eq!(key, variant_key(batch, file));
    let head = h.stack.media.head(&key).await.unwrap();
    assert_eq!(
        head.cache_control.as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(head.content_type.as_deref(), Some("image/webp"));
    let manifest_head = h
        .stack
        .media
        .head(&keys::manifest_key(batch, file))
        .await
        .unwrap();
    assert_eq!(manifest_head.cache_control.as_deref(), Some("no-cache"));

    // The same engine renders a redelivery to the same key (an idempotent overwrite).
    assert_eq!(h.upload(batch, file, png.clone()).await, Outcome::Success);
    let again: Manifest =
        serde_json::from_slice(&h.media(&keys::manifest_key(batch, file)).await.unwrap()).unwrap();
    assert_eq!(again.rendered.variants[0].key, key);

    // Other encoder settings on the same stack: a re-render writes a new key and leaves the
    // bytes behind the old one as they were.
    let old_bytes = h.media(&key).await.unwrap();
    let mut cfg = Config::default();
    cfg.resize.isolation = Isolation::None;
    cfg.resize.webp_method = Some(6);
    let other = ResizeHandler::new(&cfg, local_deps(&cfg, &h.stack).await.unwrap());
    let h2 = Harness {
        _dir: tempfile::tempdir().unwrap(),
        stack: h.stack.clone(),
        handler: other,
    };
    assert_eq!(h2.upload(batch, file, png).await, Outcome::Success);
    let rerendered: Manifest =
        serde_json::from_slice(&h.media(&keys::manifest_key(batch, file)).await.unwrap()).unwrap();
    let new_key = &rerendered.rendered.variants[0].key;
    assert_ne!(*new_key, key);
    assert!(new_key.starts_with(&keys::media_dir(batch, file)) && new_key.ends_with(".webp"));
    assert!(h.media(new_key).await.is_some());
    assert_eq!(h.media(&key).await.unwrap(), old_bytes);
}
