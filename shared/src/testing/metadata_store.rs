//! The `MetadataStore` contract: conditional transitions, exact counts, completion once.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::port::metadata_store::{
    BatchStatus, FileError, FileStatus, IdempotencyKey, MetadataStore, MetadataStoreError,
    NewBatch, NewFile, NewWebhook, RenderedFile, SourceFacts, Transition, VariantRecord,
    WebhookAttempt, WebhookStatus,
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
        max_pending_uploads: None,
        idempotency: None,
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
            hdr: None,
            focal_point: None,
            animation: None,
        },
        variants: vec![VariantRecord {
            width: 320,
            height: 240,
            fit: crate::variant::Fit::Inside,
            format: OutputFormat::Webp,
            bytes: 100,
            key: crate::keys::variant_key(batch_id, file_id, 320, "0123456789", OutputFormat::Webp),
            lossless: false,
            animation: None,
            auto: None,
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
    pending_uploads_are_a_quota_checked_at_creation(&*store).await;
    unreceived_files_expire_and_complete_their_batch(store.clone()).await;
    versions_move_with_every_change(&*store).await;
    the_webhook_outbox_leases_and_records_attempts(&*store).await;
    idempotency_keys_are_recorded_with_the_batch(store.clone()).await;
    a_done_file_can_have_its_variants_replaced(&*store).await;
}

/// `replace_rendered` changes only a `done` file, reports whether it changed anything, and
/// moves the batch's version only then.
async fn a_done_file_can_have_its_variants_replaced(store: &dyn MetadataStore) {
    let b = new_batch(2);
    store.create_batch(&b).await.expect("create");
    let (done, open) = (&b.files[0].file_id, &b.files[1].file_id);
    let now = OffsetDateTime::now_utc();
    store
        .mark_done(&b.batch_id, done, &rendered(&b.batch_id, done), now)
        .await
        .expect("done");
    let mut again = rendered(&b.batch_id, done);
    again.variants[0].key =
        crate::keys::variant_key(&b.batch_id, done, 320, "abcdef0123", OutputFormat::Webp);
    let v0 = store
        .batch_version(&b.batch_id)
        .await
        .expect("version")
        .expect("exists");
    assert!(
        store
            .replace_rendered(&b.batch_id, done, &again, now)
            .await
            .expect("replace"),
        "a done file's variants are replaced"
    );
    assert!(
        !store
            .replace_rendered(&b.batch_id, done, &again, now)
            .await
            .expect("replace again"),
        "the same record again changes nothing"
    );
    assert!(
        !store
            .replace_rendered(&b.batch_id, open, &again, now)
            .await
            .expect("not done"),
        "a file that is not done is left alone"
    );
    let v1 = store
        .batch_version(&b.batch_id)
        .await
        .expect("version")
        .expect("exists");
    assert_eq!(
        v1.version,
        v0.version + 1,
        "the change moved the version once"
    );
    let got = store
        .get_batch(&b.batch_id)
        .await
        .expect("get")
        .expect("exists");
    let f = got.files.iter().find(|f| &f.file_id == done).expect("file");
    assert_eq!(f.rendered.as_ref(), Some(&again));
    let o = got.files.iter().find(|f| &f.file_id == open).expect("file");
    assert!(o.rendered.is_none());
    assert!(matches!(
        store
            .replace_rendered(&b.batch_id, "no-such-file", &again, now)
            .await,
        Err(MetadataStoreError::NotFound(_))
    ));
}

/// A batch created with an idempotency key holds it (per principal) until its grants expire:
/// another create with the key creates nothing, counts nothing against the quota, and names
/// the first batch and its request hash; of concurrent creates with one key exactly one wins.
async fn idempotency_keys_are_recorded_with_the_batch(store: Arc<dyn MetadataStore>) {
    let principal = uuid::Uuid::new_v4().to_string();
    let keyed = |n: usize, key: &str, hash: &str| {
        let mut b = new_batch(n);
        b.principal = principal.clone();
        b.max_pending_uploads = Some(100);
        b.idempotency = Some(IdempotencyKey {
            key: key.to_owned(),
            request_sha256: hash.to_owned(),
        });
        b
    };
    let first = keyed(2, "order-42 retry#1", "aa");
    store.create_batch(&first).await.expect("create");
    for (again, what) in [
        (keyed(2, "order-42 retry#1", "aa"), "same request"),
        (keyed(3, "order-42 retry#1", "bb"), "different request"),
    ] {
        let e = store.create_batch(&again).await.expect_err(what);
        match e {
            MetadataStoreError::IdempotencyKeyTaken {
                batch_id,
                request_sha256,
            } => {
                assert_eq!(batch_id, first.batch_id, "{what}");
                assert_eq!(request_sha256, "aa", "{what}");
            }
            e => panic!("{what}: {e:?}"),
        }
        assert!(
            store
                .get_batch(&again.batch_id)
                .await
                .expect("get")
                .is_none(),
            "{what}: nothing created"
        );
    }
    assert_eq!(
        store.pending_uploads(&principal).await.expect("pending"),
        2,
        "a refused retry counts nothing"
    );
    // Keys are per principal: another principal's same key is its own.
    let mut other = keyed(1, "order-42 retry#1", "aa");
    other.principal = uuid::Uuid::new_v4().to_string();
    store.create_batch(&other).await.expect("other principal");
    // A key whose batch's grants expired is free again.
    let mut old = keyed(1, "expired-key", "cc");
    old.created_at -= Duration::from_secs(3600);
    old.expires_at = OffsetDateTime::now_utc() - Duration::from_secs(1);
    store.create_batch(&old).await.expect("old");
    let reuse = keyed(1, "expired-key", "dd");
    store
        .create_batch(&reuse)
        .await
        .expect("an expired key is free");
    let e = store
        .create_batch(&keyed(1, "expired-key", "dd"))
        .await
        .expect_err("taken again");
    assert!(
        matches!(&e, MetadataStoreError::IdempotencyKeyTaken { batch_id, .. } if *batch_id == reuse.batch_id),
        "{e:?}"
    );
    // Concurrent creates with one key: exactly one batch.
    let racers: Vec<_> = (0..4).map(|_| keyed(1, "raced", "ee")).collect();
    let results = futures::future::join_all(racers.iter().map(|b| {
        let store = store.clone();
        let b = b.clone();
        async move { store.create_batch(&b).await }
    }))
    .await;
    let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    let winner = &racers[results.iter().position(Result::is_ok).unwrap_or(0)];
    for r in &results {
        match r {
            Ok(()) => {}
            Err(MetadataStoreError::IdempotencyKeyTaken { batch_id, .. }) => {
                assert_eq!(batch_id, &winner.batch_id);
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

async fn pending_uploads_are_a_quota_checked_at_creation(store: &dyn MetadataStore) {
    let principal = uuid::Uuid::new_v4().to_string();
    let batch = |n: usize| {
        let mut b = new_batch(n);
        b.principal = principal.clone();
        b.max_pending_uploads = Some(5);
        b
    };
    let pending = || async { store.pending_uploads(&principal).await.expect("pending") };
    assert_eq!(pending().await, 0);
    let b = batch(3);
    store.create_batch(&b).await.expect("create");
    assert_eq!(pending().await, 3);
    // 3 + 3 > 5: refused, and nothing of it is visible or counted.
    let over = batch(3);
    let e = store.create_batch(&over).await.expect_err("over quota");
    assert!(
        matches!(
            e,
            MetadataStoreError::QuotaExceeded {
                pending: 3,
                quota: 5
            }
        ),
        "{e:?}"
    );
    assert!(
        store
            .get_batch(&over.batch_id)
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(pending().await, 3);
    // A batch larger than the whole quota is refused too.
    let e = store.create_batch(&batch(6)).await.expect_err("over quota");
    assert!(
        matches!(e, MetadataStoreError::QuotaExceeded { .. }),
        "{e:?}"
    );
    // Receiving a file frees its place; a duplicate receive frees nothing more.
    let now = OffsetDateTime::now_utc();
    let f0 = &b.files[0].file_id;
    store
        .mark_received(&b.batch_id, f0, now)
        .await
        .expect("recv");
    store
        .mark_received(&b.batch_id, f0, now)
        .await
        .expect("recv again");
    store
        .mark_done(&b.batch_id, f0, &rendered(&b.batch_id, f0), now)
        .await
        .expect("done");
    assert_eq!(pending().await, 2);
    // A file failed before its upload event frees its place too.
    store
        .mark_failed(
            &b.batch_id,
            &b.files[1].file_id,
            &FileError {
                code: crate::error::ErrorCode::UndecodableImage,
                message: "x".into(),
            },
            now,
        )
        .await
        .expect("failed");
    assert_eq!(pending().await, 1);
    store.create_batch(&batch(4)).await.expect("fits now");
    assert_eq!(pending().await, 5);
    assert_eq!(
        store
            .pending_uploads("someone-else")
            .await
            .expect("pending"),
        0
    );
    // Without a quota nothing is checked (but the files still count).
    let mut free = new_batch(2);
    free.principal = principal.clone();
    store.create_batch(&free).await.expect("no quota");
    assert_eq!(pending().await, 7);
}

async fn unreceived_files_expire_and_complete_their_batch(store: Arc<dyn MetadataStore>) {
    let now = OffsetDateTime::now_utc();
    let principal = uuid::Uuid::new_v4().to_string();
    let mut b = new_batch(3);
    b.principal = principal.clone();
    b.expires_at = now - Duration::from_secs(60);
    store.create_batch(&b).await.expect("create");
    let mut fresh = new_batch(1);
    fresh.principal = principal.clone();
    store.create_batch(&fresh).await.expect("create unexpired");
    let f0 = &b.files[0].file_id;
    store
        .mark_received(&b.batch_id, f0, now)
        .await
        .expect("recv");
    assert_eq!(store.pending_uploads(&principal).await.expect("pending"), 3);

    // Nothing is due before the cutoff passes the expiry.
    let early = store
        .expire_uploads(b.expires_at - Duration::from_secs(1), now, 100)
        .await
        .expect("sweep");
    assert!(early.iter().all(|f| f.batch_id != b.batch_id), "{early:?}");

    // Two sweepers at once: each file expires once; the batch is not complete yet (one file
    // is still being rendered).
    let (x, y) = tokio::join!(
        store.expire_uploads(now, now, 100),
        store.expire_uploads(now, now, 100)
    );
    let mut ours: Vec<_> = x
        .expect("sweep")
        .into_iter()
        .chain(y.expect("sweep"))
        .filter(|f| f.batch_id == b.batch_id)
        .collect();
    ours.sort_by(|a, c| a.file_id.cmp(&c.file_id));
    let ids: Vec<_> = ours.iter().map(|f| f.file_id.clone()).collect();
    let mut expect = vec![b.files[1].file_id.clone(), b.files[2].file_id.clone()];
    expect.sort();
    assert_eq!(ids, expect, "each unreceived file expires exactly once");
    assert!(ours.iter().all(|f| !f.batch_completed));
    assert_eq!(store.pending_uploads(&principal).await.expect("pending"), 1);
    let got = store
        .get_batch(&b.batch_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.counts.expired, 2);
    assert_eq!(got.counts.received, 1);
    assert_eq!(got.status, BatchStatus::Processing);
    assert_eq!(got.files[1].status, FileStatus::Expired);
    // The unexpired batch is untouched.
    let untouched = store
        .get_batch(&fresh.batch_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(untouched.files[0].status, FileStatus::AwaitingUpload);

    // A late upload event for an expired file changes nothing.
    assert_eq!(
        store
            .mark_received(&b.batch_id, &b.files[1].file_id, now)
            .await
            .expect("late"),
        Transition::Unchanged
    );
    // The last open file ends: that transition completes the batch.
    assert_eq!(
        store
            .mark_done(&b.batch_id, f0, &rendered(&b.batch_id, f0), now)
            .await
            .expect("done"),
        Transition::Applied {
            batch_completed: true
        }
    );
    let got = store
        .get_batch(&b.batch_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.status, BatchStatus::Complete);
    assert_eq!((got.counts.done, got.counts.expired), (1, 2));

    // A batch whose every file expires is completed by the expiry that closes it.
    let mut lost = new_batch(2);
    lost.principal = principal.clone();
    lost.expires_at = now - Duration::from_secs(60);
    store.create_batch(&lost).await.expect("create");
    let swept = store.expire_uploads(now, now, 100).await.expect("sweep");
    let ours: Vec<_> = swept
        .iter()
        .filter(|f| f.batch_id == lost.batch_id)
        .collect();
    assert_eq!(ours.len(), 2);
    assert_eq!(ours.iter().filter(|f| f.batch_completed).count(), 1);
    let got = store
        .get_batch(&lost.batch_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.status, BatchStatus::Complete);
    assert_eq!(store.pending_uploads(&principal).await.expect("pending"), 1);
}

async fn versions_move_with_every_change(store: &dyn MetadataStore) {
    let b = new_batch(2);
    store.create_batch(&b).await.expect("create");
    let v0 = store
        .batch_version(&b.batch_id)
        .await
        .expect("version")
        .expect("exists");
    assert_eq!(v0.principal, "alice");
    assert!(!v0.complete);
    let now = OffsetDateTime::now_utc();
    let f0 = &b.files[0].file_id;
    store
        .mark_received(&b.batch_id, f0, now)
        .await
        .expect("recv");
    let v1 = store
        .batch_version(&b.batch_id)
        .await
        .expect("v")
        .expect("exists");
    assert!(v1.version > v0.version);
    // A duplicate changes nothing, so the version stays.
    store
        .mark_received(&b.batch_id, f0, now)
        .await
        .expect("dup");
    let v1b = store
        .batch_version(&b.batch_id)
        .await
        .expect("v")
        .expect("exists");
    assert_eq!(v1b.version, v1.version);
    for f in &b.files {
        store
            .mark_done(
                &b.batch_id,
                &f.file_id,
                &rendered(&b.batch_id, &f.file_id),
                now,
            )
            .await
            .expect("done");
    }
    let v2 = store
        .batch_version(&b.batch_id)
        .await
        .expect("v")
        .expect("exists");
    assert!(v2.version > v1.version);
    assert!(v2.complete);
    let got = store
        .get_batch(&b.batch_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.version, v2.version);
    assert!(
        store
            .batch_version("no-such-batch")
            .await
            .expect("v")
            .is_none()
    );
}

async fn the_webhook_outbox_leases_and_records_attempts(store: &dyn MetadataStore) {
    let b = new_batch(1);
    store.create_batch(&b).await.expect("create");
    let now = OffsetDateTime::now_utc();
    let hook = NewWebhook {
        id: format!("msg_{}_completed", b.batch_id),
        batch_id: b.batch_id.clone(),
        principal: "alice".into(),
        url: "https://example.com/hook".into(),
        body: "{\"event_name\":\"batch.completed\"}".into(),
        due_at: now,
    };
    assert!(store.enqueue_webhook(&hook).await.expect("enqueue"));
    assert!(
        !store.enqueue_webhook(&hook).await.expect("enqueue again"),
        "one delivery per id"
    );
    let got = store
        .get_batch(&b.batch_id)
        .await
        .expect("get")
        .expect("exists");
    let state = got.webhook.expect("webhook state");
    assert_eq!((state.status, state.attempts), (WebhookStatus::Pending, 0));

    // Other tests' deliveries may be in the table: look at ours only.
    let lease = Duration::from_secs(60);
    let id = hook.id.as_str();
    let claim = |at: OffsetDateTime| async move {
        store
            .claim_webhooks(at, lease, 100)
            .await
            .expect("claim")
            .into_iter()
            .filter(|j| j.id == id)
            .collect::<Vec<_>>()
    };
    let jobs = claim(now).await;
    assert_eq!(jobs.len(), 1);
    let job = jobs[0].clone();
    assert_eq!((job.attempts, job.principal.as_str()), (0, "alice"));
    assert_eq!(job.body, hook.body);
    // Leased: nobody else gets it until the lease ends; then it is due again.
    assert!(claim(now).await.is_empty());
    let again = claim(now + lease + Duration::from_secs(1)).await;
    assert_eq!(
        again.len(),
        1,
        "a lease that ran out makes the delivery due again"
    );
    let job2 = again[0].clone();
    // The first claimer's late record is stale: nothing changes.
    let failed = WebhookAttempt {
        at: now,
        status: WebhookStatus::Pending,
        http_status: Some(503),
        error: Some("answered 503".into()),
        next_attempt_at: Some(now + Duration::from_secs(30)),
    };
    assert!(
        !store
            .record_webhook_attempt(&job, &failed)
            .await
            .expect("stale")
    );
    assert!(
        store
            .record_webhook_attempt(&job2, &failed)
            .await
            .expect("record")
    );
    let state = store
        .get_batch(&b.batch_id)
        .await
        .expect("get")
        .expect("exists")
        .webhook
        .expect("state");
    assert_eq!(state.status, WebhookStatus::Pending);
    assert_eq!((state.attempts, state.last_status), (1, Some(503)));
    assert_eq!(
        state.next_attempt_at.map(|t| t.unix_timestamp()),
        Some((now + Duration::from_secs(30)).unix_timestamp())
    );
    // Not due before its backoff ends.
    assert!(claim(now + Duration::from_secs(10)).await.is_empty());
    let third = claim(now + Duration::from_secs(31)).await;
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].attempts, 1);
    let delivered = WebhookAttempt {
        at: now + Duration::from_secs(31),
        status: WebhookStatus::Delivered,
        http_status: Some(204),
        error: None,
        next_attempt_at: None,
    };
    assert!(
        store
            .record_webhook_attempt(&third[0], &delivered)
            .await
            .expect("record")
    );
    let state = store
        .get_batch(&b.batch_id)
        .await
        .expect("get")
        .expect("exists")
        .webhook
        .expect("state");
    assert_eq!(state.status, WebhookStatus::Delivered);
    assert_eq!(
        (state.attempts, state.last_status, state.last_error),
        (2, Some(204), None)
    );
    assert!(state.next_attempt_at.is_none());
    assert!(
        claim(now + Duration::from_secs(3600 * 24)).await.is_empty(),
        "delivered is final"
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
        code: crate::error::ErrorCode::UndecodableImage,
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
