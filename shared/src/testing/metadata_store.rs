//! The `MetadataStore` contract: conditional transitions, exact counts, completion once.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::port::metadata_store::{
    BatchStatus, FileError, FileStatus, MetadataStore, MetadataStoreError, NewBatch, NewFile,
    RenderedFile, SourceFacts, Transition, VariantRecord,
};
use crate::variant::{OutputFormat, VariantRequest};

/// A batch of `n` files with fresh ids.
pub fn new_batch(n: usize) -> NewBatch {
    let now = OffsetDateTime::now_utc();
    NewBatch {
        batch_id: uuid::Uuid::now_v7().to_string(),
        principal: "alice".into(),
        created_at: now,
        expires_at: now + Duration::from_secs(900),
        request: VariantRequest::default(),
        callback_url: Some("https://example.com/hook".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        files: (0..n)
            .map(|i| NewFile {
                file_id: uuid::Uuid::now_v7().to_string(),
                name: format!("photo {i}.jpg"),
                content_type: "image/jpeg".into(),
                size: 1000 + i as u64,
            })
            .collect(),
    }
}

/// A plausible rendered file.
pub fn rendered(batch_id: &str, file_id: &str) -> RenderedFile {
    RenderedFile {
        source: SourceFacts {
            format: "jpeg".into(),
            width: 640,
            height: 480,
            bytes: 1000,
            sha256: "00".repeat(32),
            has_alpha: false,
            color_profile: None,
            orientation: 1,
        },
        variants: vec![VariantRecord {
            width: 320,
            height: 240,
            format: OutputFormat::Webp,
            bytes: 100,
            key: crate::keys::variant_key(batch_id, file_id, 320, OutputFormat::Webp),
        }],
        original_key: None,
        placeholder: Some("LEHV6nWB2yk8pyo0adR*.7kCMdnj".into()),
        dominant_color: Some("#336699".into()),
    }
}

/// Run every rule of the contract against an empty store.
///
/// # Panics
/// On the first broken rule.
pub async fn metadata_store_contract(store: Arc<dyn MetadataStore>) {
    create_and_read_back(&*store).await;
    transitions_are_conditional_and_counts_exact(&*store).await;
    completion_is_reported_exactly_once_under_races(store.clone()).await;
    unknown_files_are_not_found(&*store).await;
    image_requests_count_once_per_event(&*store).await;
    images_are_owned_by_their_batch_principal(&*store).await;
    recent_batches_newest_first(&*store).await;
    awaiting_uploads_are_counted_per_principal(&*store).await;
}

async fn awaiting_uploads_are_counted_per_principal(store: &dyn MetadataStore) {
    let principal = uuid::Uuid::new_v4().to_string();
    let mut b = new_batch(3);
    b.principal = principal.clone();
    store.create_batch(&b).await.expect("create");
    let mut expired = new_batch(5);
    expired.principal = principal.clone();
    expired.expires_at = OffsetDateTime::now_utc() - Duration::from_secs(1);
    store.create_batch(&expired).await.expect("create expired");
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        store
            .count_awaiting_uploads(&principal, now)
            .await
            .expect("count"),
        3
    );
    store
        .mark_received(&b.batch_id, &b.files[0].file_id, now)
        .await
        .expect("recv");
    assert_eq!(
        store
            .count_awaiting_uploads(&principal, now)
            .await
            .expect("count"),
        2
    );
    assert_eq!(
        store
            .count_awaiting_uploads("someone-else", now)
            .await
            .expect("count"),
        0
    );
}

async fn create_and_read_back(store: &dyn MetadataStore) {
    let b = new_batch(2);
    store.create_batch(&b).await.expect("create");
    let e = store.create_batch(&b).await.expect_err("duplicate create");
    assert!(matches!(e, MetadataStoreError::AlreadyExists(_)), "{e:?}");
    let got = store
        .get_batch(&b.batch_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.status, BatchStatus::Pending);
    assert_eq!(got.principal, "alice");
    assert_eq!(got.request, b.request);
    assert_eq!(got.callback_url, b.callback_url);
    assert_eq!(got.traceparent, b.traceparent);
    assert_eq!(got.counts.files, 2);
    let trace = store
        .batch_trace(&b.batch_id)
        .await
        .expect("batch_trace")
        .expect("exists");
    assert_eq!(trace.traceparent, b.traceparent);
    assert_eq!(trace.created_at, got.created_at);
    assert!(
        store
            .batch_trace("no-such-batch")
            .await
            .expect("batch_trace")
            .is_none()
    );
    assert_eq!(
        got.created_at.unix_timestamp(),
        b.created_at.unix_timestamp()
    );
    let names: Vec<_> = got.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["photo 0.jpg", "photo 1.jpg"],
        "files keep creation order"
    );
    assert!(
        got.files
            .iter()
            .all(|f| f.status == FileStatus::AwaitingUpload)
    );
    assert!(
        store
            .get_batch("no-such-batch")
            .await
            .expect("get")
            .is_none()
    );
}

async fn transitions_are_conditional_and_counts_exact(store: &dyn MetadataStore) {
    let b = new_batch(3);
    store.create_batch(&b).await.expect("create");
    let (id, f) = (&b.batch_id, |i: usize| b.files[i].file_id.clone());
    let now = OffsetDateTime::now_utc();
    let applied = Transition::Applied {
        batch_completed: false,
    };

    assert_eq!(
        store.mark_received(id, &f(0), now).await.expect("recv"),
        applied
    );
    assert_eq!(
        store.mark_received(id, &f(0), now).await.expect("dup recv"),
        Transition::Unchanged
    );
    let got = store.get_batch(id).await.expect("get").expect("exists");
    assert_eq!(got.status, BatchStatus::Processing);
    assert_eq!((got.counts.received, got.counts.done), (1, 0));

    // Out of order: the manifest of file 1 arrives before its upload event.
    assert_eq!(
        store
            .mark_done(id, &f(1), &rendered(id, &f(1)), now)
            .await
            .expect("done"),
        applied
    );
    assert_eq!(
        store
            .mark_received(id, &f(1), now)
            .await
            .expect("late recv"),
        Transition::Unchanged
    );
    // A late failure never overrides done; a duplicate done changes nothing.
    let err = FileError {
        code: "undecodable_image".into(),
        message: "x".into(),
    };
    assert_eq!(
        store
            .mark_failed(id, &f(1), &err, now)
            .await
            .expect("late fail"),
        Transition::Unchanged
    );
    assert_eq!(
        store
            .mark_done(id, &f(1), &rendered(id, &f(1)), now)
            .await
            .expect("dup"),
        Transition::Unchanged
    );

    assert_eq!(
        store
            .mark_done(id, &f(0), &rendered(id, &f(0)), now)
            .await
            .expect("done 0"),
        applied
    );
    let last = store
        .mark_failed(id, &f(2), &err, now)
        .await
        .expect("fail 2");
    assert_eq!(
        last,
        Transition::Applied {
            batch_completed: true
        }
    );
    assert_eq!(
        store
            .mark_done(id, &f(2), &rendered(id, &f(2)), now)
            .await
            .expect("after"),
        Transition::Unchanged
    );

    let got = store.get_batch(id).await.expect("get").expect("exists");
    assert_eq!(got.status, BatchStatus::Complete);
    assert!(got.announced_at.is_none());
    assert!(store.mark_announced(id, now).await.expect("announce"));
    assert!(
        !store.mark_announced(id, now).await.expect("announce again"),
        "announced twice"
    );
    assert!(
        store
            .get_batch(id)
            .await
            .expect("get")
            .expect("exists")
            .announced_at
            .is_some()
    );
    assert!(matches!(
        store.mark_announced("nope", now).await,
        Err(MetadataStoreError::NotFound(_))
    ));
    let got = store.get_batch(id).await.expect("get").expect("exists");
    assert!(got.completed_at.is_some());
    assert_eq!(
        (
            got.counts.files,
            got.counts.received,
            got.counts.done,
            got.counts.failed
        ),
        (3, 3, 2, 1)
    );
    assert_eq!(got.files[1].rendered, Some(rendered(id, &f(1))));
    assert_eq!(got.files[1].status, FileStatus::Done);
    assert_eq!(got.files[2].error, Some(err));
    assert_eq!(got.files[2].status, FileStatus::Failed);
}

async fn completion_is_reported_exactly_once_under_races(store: Arc<dyn MetadataStore>) {
    let b = new_batch(4);
    store.create_batch(&b).await.expect("create");
    let mut tasks = Vec::new();
    // Every file is marked done three times concurrently, and received concurrently too.
    for _ in 0..3 {
        for f in &b.files {
            let (s, id, fid) = (store.clone(), b.batch_id.clone(), f.file_id.clone());
            tasks.push(tokio::spawn(async move {
                let r = rendered(&id, &fid);
                let now = OffsetDateTime::now_utc();
                let _ = s.mark_received(&id, &fid, now).await.expect("recv");
                s.mark_done(&id, &fid, &r, now).await.expect("done")
            }));
        }
    }
    let mut completions = 0;
    let mut applied = 0;
    for t in tasks {
        match t.await.expect("task") {
            Transition::Applied { batch_completed } => {
                applied += 1;
                completions += usize::from(batch_completed);
            }
            Transition::Unchanged => {}
        }
    }
    assert_eq!(applied, 4, "each file applies done exactly once");
    assert_eq!(completions, 1, "the batch completes exactly once");
    let got = store
        .get_batch(&b.batch_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((got.counts.done, got.counts.received), (4, 4));
}

async fn unknown_files_are_not_found(store: &dyn MetadataStore) {
    let b = new_batch(1);
    store.create_batch(&b).await.expect("create");
    let now = OffsetDateTime::now_utc();
    let e = store
        .mark_received(&b.batch_id, "nope", now)
        .await
        .expect_err("unknown file");
    assert!(matches!(e, MetadataStoreError::NotFound(_)), "{e:?}");
    assert!(!e.is_transient());
    let e = store
        .mark_done("nope", "nope", &rendered("a", "b"), now)
        .await
        .expect_err("unknown batch");
    assert!(matches!(e, MetadataStoreError::NotFound(_)), "{e:?}");
}

async fn image_requests_count_once_per_event(store: &dyn MetadataStore) {
    let b = new_batch(1);
    store.create_batch(&b).await.expect("create");
    let fid = &b.files[0].file_id;
    let t1 = OffsetDateTime::now_utc();
    let t2 = t1 + Duration::from_secs(5);
    assert!(
        store
            .record_image_request(fid, "ev-1", t1)
            .await
            .expect("count")
    );
    assert!(
        !store
            .record_image_request(fid, "ev-1", t1)
            .await
            .expect("redelivered")
    );
    assert!(
        store
            .record_image_request(fid, "ev-2", t2)
            .await
            .expect("count")
    );
    let got = store
        .get_batch(&b.batch_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.files[0].request_count, 2);
    assert_eq!(
        got.files[0].last_requested_at.map(|t| t.unix_timestamp()),
        Some(t2.unix_timestamp())
    );
}

async fn images_are_owned_by_their_batch_principal(store: &dyn MetadataStore) {
    let mut b = new_batch(2);
    b.principal = format!("owner-{}", uuid::Uuid::new_v4());
    store.create_batch(&b).await.expect("create");
    for f in &b.files {
        assert_eq!(
            store.image_owner(&f.file_id).await.expect("owner"),
            Some(b.principal.clone())
        );
    }
    assert_eq!(
        store
            .image_owner(&uuid::Uuid::new_v4().to_string())
            .await
            .expect("unknown image"),
        None
    );
}

async fn recent_batches_newest_first(store: &dyn MetadataStore) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut b = new_batch(1);
        b.created_at = OffsetDateTime::now_utc() + Duration::from_secs(3600 + ids.len() as u64);
        store.create_batch(&b).await.expect("create");
        ids.push(b.batch_id);
    }
    let recent = store.recent_batches(2).await.expect("recent");
    let got: Vec<_> = recent.iter().map(|b| b.batch_id.clone()).collect();
    assert_eq!(got, vec![ids[2].clone(), ids[1].clone()]);
}
