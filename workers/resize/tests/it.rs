//! The resize worker's handler on the embedded backend: an upload event in, variants and a
//! manifest (or `failure.json`) out, and a store failure retried.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use prism_resize::isolate::Isolation;
use prism_resize::{Config, ResizeHandler, local_deps};
use shared::adapter::local::LocalStack;
use shared::config::Resources;
use shared::consumer::{Handler, Outcome};
use shared::error::{Disposition, ErrorCode};
use shared::event::object_created_event;
use shared::keys;
use shared::manifest::{parse_failure, parse_manifest};
use shared::port::{BlobStore, BlobStoreError, Message, PutOptions};
use shared::testing::failing::FailingPuts;
use shared::variant::{META_REQUEST, OutputFormat, VariantRequest};
use time::OffsetDateTime;

struct Harness {
    _dir: tempfile::TempDir,
    stack: LocalStack,
    /// The media bucket as the handler sees it: puts fail on demand.
    media: FailingPuts,
    handler: ResizeHandler,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::open(dir.path(), &Resources::default(), "http://127.0.0.1:1")
        .await
        .unwrap();
    let mut cfg = Config::default();
    cfg.resize.isolation = Isolation::None;
    let mut deps = local_deps(&cfg, &stack).await.unwrap();
    let media = FailingPuts::new(Arc::new(stack.media.clone()));
    deps.media = Arc::new(media.clone());
    let handler = ResizeHandler::new(&cfg, deps);
    Harness {
        _dir: dir,
        stack,
        media,
        handler,
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/images")
            .join(name),
    )
    .unwrap()
}

fn request() -> VariantRequest {
    VariantRequest {
        widths: vec![16, 32],
        formats: vec![OutputFormat::Webp, OutputFormat::Avif],
        ..VariantRequest::default()
    }
    .normalise()
    .unwrap()
}

/// The user metadata of an upload asked for `request`.
fn request_metadata(request: &VariantRequest) -> BTreeMap<String, String> {
    BTreeMap::from([(META_REQUEST.to_owned(), request.to_metadata())])
}

impl Harness {
    /// Store `bytes` at the file's upload key, as a presigned upload would.
    async fn store_upload(&self, batch: &str, file: &str, bytes: Vec<u8>) -> Message {
        self.store_upload_with(batch, file, bytes, request_metadata(&request()))
            .await
    }

    /// [`Self::store_upload`] with the given user metadata.
    async fn store_upload_with(
        &self,
        batch: &str,
        file: &str,
        bytes: Vec<u8>,
        metadata: BTreeMap<String, String>,
    ) -> Message {
        let key = keys::upload_key(batch, file);
        let size = bytes.len() as u64;
        let opts = PutOptions {
            metadata,
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
        Message {
            id: uuid::Uuid::new_v4().to_string(),
            receipt: "r".into(),
            body: serde_json::to_string(&event).unwrap(),
            receive_count: 1,
            sent_at: OffsetDateTime::now_utc(),
        }
    }

    async fn media(&self, key: &str) -> Option<Bytes> {
        self.stack.media.get(key).await.ok()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_file_ends_done_with_its_variants_and_manifest() {
    let h = harness().await;
    let (batch, file) = ("b1", "f1");
    let jpeg = fixture("quadrants.jpg");
    let message = h.store_upload(batch, file, jpeg.clone()).await;
    assert_eq!(h.handler.handle(&message).await.unwrap(), Outcome::Success);

    let manifest =
        parse_manifest(&h.media(&keys::manifest_key(batch, file)).await.unwrap()).unwrap();
    assert_eq!(
        (manifest.batch_id.as_str(), manifest.file_id.as_str()),
        (batch, file)
    );
    assert_eq!(manifest.rendered.source.format, "jpeg");
    assert_eq!(
        manifest.rendered.source.sha256,
        prism_resize::render::facts::sha256_hex(&jpeg)
    );
    let mut got: Vec<(u32, OutputFormat)> = manifest
        .rendered
        .variants
        .iter()
        .map(|v| (v.width, v.format))
        .collect();
    got.sort_by_key(|(w, f)| (*w, f.as_str()));
    assert_eq!(
        got,
        vec![
            (16, OutputFormat::Avif),
            (16, OutputFormat::Webp),
            (32, OutputFormat::Avif),
            (32, OutputFormat::Webp),
        ]
    );
    for v in &manifest.rendered.variants {
        let bytes = h
            .media(&v.key)
            .await
            .expect("every variant in the manifest exists");
        assert_eq!(bytes.len() as u64, v.bytes, "{}", v.key);
        let magic_ok = match v.format {
            OutputFormat::Webp => bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP",
            OutputFormat::Avif => &bytes[4..12] == b"ftypavif",
            OutputFormat::Jpeg => bytes.starts_with(&[0xff, 0xd8, 0xff]),
            OutputFormat::Png => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        };
        assert!(magic_ok, "{} is not a {}", v.key, v.format.as_str());
    }
    assert!(h.media(&keys::failure_key(batch, file)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_fails_with_its_code_and_no_variants() {
    let h = harness().await;
    for (file, bytes, code) in [
        ("bomb", fixture("bomb.png"), ErrorCode::ImageTooLarge),
        (
            "text",
            b"hello, not an image".to_vec(),
            ErrorCode::UnsupportedFormat,
        ),
    ] {
        let message = h.store_upload("b2", file, bytes).await;
        // The file's failure is recorded and the message acked, never retried.
        assert_eq!(h.handler.handle(&message).await.unwrap(), Outcome::Success);
        let failure =
            parse_failure(&h.media(&keys::failure_key("b2", file)).await.unwrap()).unwrap();
        assert_eq!(failure.error.code, code, "{file}");
        assert!(
            h.media(&keys::manifest_key("b2", file)).await.is_none(),
            "{file}"
        );
    }
    assert!(
        h.stack
            .media
            .list("b2/")
            .await
            .unwrap()
            .iter()
            .all(|o| o.key.ends_with("/failure.json"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_store_error_retries_and_the_redelivery_completes() {
    let h = harness().await;
    let (batch, file) = ("b3", "f1");
    let message = h.store_upload(batch, file, fixture("quadrants.png")).await;
    h.media
        .fail_next(1, |k| BlobStoreError::Throttled(format!("slow down: {k}")));
    let err = h.handler.handle(&message).await.unwrap_err();
    assert_eq!(
        (err.disposition, err.code),
        (Disposition::Retry, ErrorCode::Throttled),
        "{err}"
    );
    assert_eq!(h.media.failed(), 1);
    assert!(
        h.media(&keys::manifest_key(batch, file)).await.is_none(),
        "no manifest before every variant is written"
    );
    assert!(h.media(&keys::failure_key(batch, file)).await.is_none());

    // The redelivery renders the file to the end.
    assert_eq!(h.handler.handle(&message).await.unwrap(), Outcome::Success);
    let manifest =
        parse_manifest(&h.media(&keys::manifest_key(batch, file)).await.unwrap()).unwrap();
    assert_eq!(manifest.rendered.variants.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerender_crops_around_the_focal_point_the_file_was_uploaded_with() {
    use shared::rerender::RerenderMessage;
    use shared::variant::{FocalPoint, Focus, META_FOCAL_POINT, SizeSpec};
    let h = harness().await;
    let (batch, file) = ("b4", "f1");
    // Red top-left, green top-right, blue bottom-left, white bottom-right; the focal point
    // sits in the bottom row.
    let first = VariantRequest {
        widths: vec![16],
        formats: vec![OutputFormat::Webp],
        keep_original: true,
        ..VariantRequest::default()
    }
    .normalise()
    .unwrap();
    let point = FocalPoint { x: 0.5, y: 0.9 };
    let metadata = BTreeMap::from([
        (META_REQUEST.to_owned(), first.to_metadata()),
        (META_FOCAL_POINT.to_owned(), point.to_metadata()),
    ]);
    let message = h
        .store_upload_with(batch, file, fixture("quadrants.jpg"), metadata)
        .await;
    assert_eq!(h.handler.handle(&message).await.unwrap(), Outcome::Success);
    let manifest =
        parse_manifest(&h.media(&keys::manifest_key(batch, file)).await.unwrap()).unwrap();
    assert_eq!(manifest.rendered.source.focal_point, Some(point));
    // The upload is gone (expired): the re-render reads the kept original, and the focal
    // point from the manifest.
    h.stack
        .uploads
        .delete(&keys::upload_key(batch, file))
        .await
        .unwrap();

    // A 64x16 cover of the 64x48 picture keeps a third of its rows: the bottom ones.
    let spec = VariantRequest {
        widths: vec![],
        sizes: vec![SizeSpec {
            width: 64,
            height: 16,
            fit: shared::variant::Fit::Cover,
            focus: Focus::FocalPoint,
            background: None,
        }],
        formats: vec![OutputFormat::Webp],
        keep_original: true,
        ..VariantRequest::default()
    };
    let rerender = RerenderMessage::new(batch, file, &spec).unwrap();
    let message = Message {
        id: uuid::Uuid::new_v4().to_string(),
        receipt: "r".into(),
        body: serde_json::to_string(&rerender).unwrap(),
        receive_count: 1,
        sent_at: OffsetDateTime::now_utc(),
    };
    assert_eq!(h.handler.handle(&message).await.unwrap(), Outcome::Success);
    let manifest =
        parse_manifest(&h.media(&keys::manifest_key(batch, file)).await.unwrap()).unwrap();
    assert_eq!(manifest.rendered.source.focal_point, Some(point));
    let v = &manifest.rendered.variants[0];
    assert_eq!((v.width, v.height), (64, 16));
    let img = image::load_from_memory(&h.media(&v.key).await.unwrap())
        .unwrap()
        .to_rgb8();
    for (x, want, name) in [(16, [0, 0, 255], "blue"), (48, [255, 255, 255], "white")] {
        let p = img.get_pixel(x, 8).0;
        for c in 0..3 {
            assert!(
                (i32::from(p[c]) - want[c]).abs() < 40,
                "pixel {x},8 is {p:?}, not {name}: the crop ignored the focal point"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_animation_with_sizes_and_lossless_gets_its_own_key_per_variant() {
    let h = harness().await;
    let (batch, file) = ("b9", "f1");
    let gif = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/animation/rotating-squares.gif"),
    )
    .unwrap();
    let size = |json: &str| -> shared::variant::SizeSpec { serde_json::from_str(json).unwrap() };
    let request = VariantRequest {
        widths: vec![32],
        sizes: vec![
            size(r#"{"width": 24, "height": 24, "fit": "cover", "focus": "auto"}"#),
            size(r#"{"width": 40, "height": 24, "fit": "contain"}"#),
        ],
        formats: vec![OutputFormat::Webp, OutputFormat::Png],
        lossless: shared::variant::Lossless::On,
        ..VariantRequest::default()
    }
    .normalise()
    .unwrap();
    let message = h
        .store_upload_with(batch, file, gif, request_metadata(&request))
        .await;
    assert_eq!(h.handler.handle(&message).await.unwrap(), Outcome::Success);
    let manifest =
        parse_manifest(&h.media(&keys::manifest_key(batch, file)).await.unwrap()).unwrap();
    assert_eq!(manifest.rendered.source.animation.unwrap().frames, 30);
    let variants = &manifest.rendered.variants;
    assert_eq!(variants.len(), 6);
    let distinct: std::collections::BTreeSet<&str> =
        variants.iter().map(|v| v.key.as_str()).collect();
    assert_eq!(distinct.len(), 6, "every variant has its own key");
    let engine = prism_resize::render::engine_id(&Config::default().encode_settings());
    for v in variants {
        let animated = v.format == OutputFormat::Webp;
        assert_eq!(v.animation.is_some(), animated, "{}", v.key);
        assert!(v.lossless, "lossless WebP and PNG: {}", v.key);
        let engine = keys::tag_engine(&engine, animated);
        let quality = request.quality(v.format);
        let lossless = request.lossless_for(v.format);
        let expected = match request.sizes.iter().find(|s| {
            v.key
                .contains(&format!("/{}x{}-{}.", s.width, s.height, s.fit.as_str()))
        }) {
            Some(s) => {
                let tag = keys::size_variant_tag(&engine, v.format, quality, s, None, lossless);
                keys::size_variant_key(batch, file, s, &tag, v.format)
            }
            None => {
                let tag = keys::variant_tag(
                    &engine,
                    v.format,
                    quality,
                    shared::variant::Fit::Inside,
                    32,
                    lossless,
                );
                keys::variant_key(batch, file, 32, &tag, v.format)
            }
        };
        assert_eq!(v.key, expected);
        assert!(h.media(&v.key).await.is_some(), "{} stored", v.key);
    }
}
