//! prism-archiver on the embedded backend.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prism_archiver::handler::{RAW_PREFIX, decode};
use prism_archiver::{Archiver, Config};
use shared::adapter::local::{LocalStack, SqliteQueue};
use shared::config::Resources;
use shared::port::{BlobStore, MetadataStore, PutOptions, Queue, Topic};
use shared::testing::eventually;
use tokio_util::sync::CancellationToken;

struct Env {
    dir: tempfile::TempDir,
    stack: LocalStack,
    queue: SqliteQueue,
}

async fn env(vis: u64) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::open(dir.path(), &Resources::default(), "http://127.0.0.1:1")
        .await
        .unwrap();
    let queue = stack
        .queue("archive", Duration::from_secs(vis), 5)
        .await
        .unwrap();
    Env { dir, stack, queue }
}

fn cfg(max_messages: usize, max_bytes: usize, max_age_secs: u64) -> Config {
    let mut c = Config::default();
    c.flush.max_messages = max_messages;
    c.flush.max_bytes = max_bytes;
    c.flush.max_age_secs = max_age_secs;
    c.consumer.wait_time_secs = 1;
    c
}

impl Env {
    fn start(&self, c: &Config) -> (CancellationToken, tokio::task::JoinHandle<u64>) {
        let deps = prism_archiver::Deps {
            queue: Arc::new(self.queue.clone()),
            store: Arc::new(self.stack.archive.clone()),
            busy: None,
        };
        let token = CancellationToken::new();
        let a = Archiver::new(c, deps);
        let t = token.clone();
        (token, tokio::spawn(async move { a.run(t).await }))
    }
    async fn objects(&self) -> Vec<(String, Vec<prism_archiver::handler::Line>)> {
        let mut out = Vec::new();
        for o in self.stack.archive.list(RAW_PREFIX).await.unwrap() {
            let bytes = self.stack.archive.get(&o.key).await.unwrap();
            out.push((o.key, decode(&bytes).unwrap()));
        }
        out
    }
    async fn publish(&self, n: usize, tag: &str) {
        for i in 0..n {
            self.stack
                .topic
                .publish(&format!(
                    "{{\"event_name\":\"TEST\",\"n\":{i},\"tag\":\"{tag}\"}}"
                ))
                .await
                .unwrap();
        }
    }
}

fn key_shape_ok(key: &str) -> bool {
    // raw/dt=YYYY-MM-DD/hour=HH/<stamp>-<uuid>.ndjson.gz
    let parts: Vec<&str> = key.split('/').collect();
    parts.len() == 4
        && parts[1].starts_with("dt=")
        && parts[1].len() == 13
        && parts[2].starts_with("hour=")
        && parts[2].len() == 7
        && parts[3].ends_with(".ndjson.gz")
        && parts[3][..8] == parts[1][3..].replace('-', "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_at_the_message_count() {
    let e = env(180).await;
    e.publish(12, "count").await;
    let (token, run) = e.start(&cfg(5, 1 << 20, 60));
    let objs = eventually(Duration::from_secs(10), "two full objects", || async {
        let o = e.objects().await;
        (o.len() >= 2).then_some(o)
    })
    .await;
    assert!(
        objs.iter().all(|(_, l)| l.len() == 5),
        "{:?}",
        objs.iter().map(|(_, l)| l.len()).collect::<Vec<_>>()
    );
    // The two left over are acked only by the shutdown flush.
    assert_eq!(e.queue.stats().await.unwrap().in_flight, 2);
    token.cancel();
    assert_eq!(run.await.unwrap(), 12);
    let objs = e.objects().await;
    assert_eq!(objs.iter().map(|(_, l)| l.len()).sum::<usize>(), 12);
    let s = e.queue.stats().await.unwrap();
    assert_eq!((s.visible, s.in_flight), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_at_the_byte_size() {
    let e = env(180).await;
    let big = format!(
        "{{\"event_name\":\"BIG\",\"pad\":\"{}\"}}",
        "x".repeat(3000)
    );
    for _ in 0..4 {
        e.stack.topic.publish(&big).await.unwrap();
    }
    let (token, run) = e.start(&cfg(1000, 4096, 60));
    let objs = eventually(Duration::from_secs(10), "objects by size", || async {
        let o = e.objects().await;
        (o.len() >= 2).then_some(o)
    })
    .await;
    assert!(objs.iter().all(|(_, l)| l.len() <= 2));
    token.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_at_the_age_of_the_first_message() {
    let e = env(180).await;
    e.publish(3, "age").await;
    let t = std::time::Instant::now();
    let (token, run) = e.start(&cfg(1000, 1 << 20, 1));
    let objs = eventually(Duration::from_secs(10), "an object by age", || async {
        let o = e.objects().await;
        (!o.is_empty()).then_some(o)
    })
    .await;
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "flushed before the age trigger"
    );
    assert_eq!(objs[0].1.len(), 3);
    eventually(Duration::from_secs(5), "acked", || async {
        (e.queue.stats().await.unwrap().in_flight == 0).then_some(())
    })
    .await;
    token.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_is_valid_gzip_ndjson_under_an_hourly_key() {
    let e = env(180).await;
    e.publish(7, "shape").await;
    let upload = shared::event::object_created_event(
        "local",
        "uploads",
        "uploads/b/f",
        1,
        "e",
        "ObjectCreated:Post",
        "1",
        time::OffsetDateTime::now_utc(),
    );
    let upload_json = serde_json::to_string(&upload).unwrap();
    e.stack.topic.publish(&upload_json).await.unwrap();
    let (token, run) = e.start(&cfg(3, 1 << 20, 60));
    eventually(Duration::from_secs(10), "some objects", || async {
        (e.objects().await.len() >= 2).then_some(())
    })
    .await;
    token.cancel();
    run.await.unwrap();
    let objs = e.objects().await;
    let mut bodies = Vec::new();
    for (key, lines) in &objs {
        assert!(key_shape_ok(key), "{key}");
        // The raw gzip is what any NDJSON tool reads: decode it independently of our decoder.
        let raw = e.stack.archive.get(key).await.unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&raw[..]), &mut text)
            .unwrap();
        assert!(text.ends_with('\n'));
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(
                v["received_at"].is_string()
                    && v["message_id"].is_string()
                    && v["body"].is_string(),
                "{l}"
            );
        }
        bodies.extend(lines.iter().map(|l| l.body.clone()));
    }
    assert_eq!(bodies.len(), 8);
    assert!(
        bodies.contains(&upload_json),
        "bodies are kept exactly as received"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_flush_loses_nothing() {
    let e = env(2).await;
    e.publish(20, "crash").await;
    let mut c = cfg(1000, 1 << 20, 60);
    c.consumer.visibility_timeout_secs = 2;
    // A crash: the archiver task dies with a full buffer and nothing written or acked.
    let (_token, run) = e.start(&c);
    eventually(Duration::from_secs(5), "buffered", || async {
        (e.queue.stats().await.unwrap().in_flight == 20).then_some(())
    })
    .await;
    run.abort();
    let _ = run.await;
    assert!(e.objects().await.is_empty());
    // The messages reappear after their visibility timeout and the next archiver keeps them.
    let (token, run) = e.start(&cfg(20, 1 << 20, 60));
    let objs = eventually(
        Duration::from_secs(15),
        "archived after restart",
        || async {
            let o = e.objects().await;
            (o.iter().map(|(_, l)| l.len()).sum::<usize>() == 20).then_some(o)
        },
    )
    .await;
    assert_eq!(objs.len(), 1);
    token.cancel();
    run.await.unwrap();
    let s = e.queue.stats().await.unwrap();
    assert_eq!((s.visible, s.in_flight, s.dlq_visible), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_flush_duplicates_lines_that_replay_publishes_once() {
    let e = env(2).await;
    e.publish(6, "dup").await;
    // A flush whose object was written but whose acks were lost: receive, write, do not ack.
    let mut received = Vec::new();
    while received.len() < 6 {
        received.extend(e.queue.receive(10, Duration::from_secs(1)).await.unwrap());
    }
    let now = time::OffsetDateTime::now_utc();
    let lines: Vec<_> = received
        .iter()
        .map(|m| prism_archiver::handler::Line {
            received_at: now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
            message_id: m.id.clone(),
            body: m.body.clone(),
        })
        .collect();
    let key = prism_archiver::handler::object_key(now);
    e.stack
        .archive
        .put(
            &key,
            Bytes::from(prism_archiver::handler::encode(&lines)),
            PutOptions::default(),
        )
        .await
        .unwrap();
    // After the visibility timeout the archiver archives them again: duplicate lines.
    let mut c = cfg(6, 1 << 20, 60);
    c.consumer.visibility_timeout_secs = 180;
    let (token, run) = e.start(&c);
    eventually(Duration::from_secs(15), "archived twice", || async {
        (e.objects()
            .await
            .iter()
            .map(|(_, l)| l.len())
            .sum::<usize>()
            == 12)
            .then_some(())
    })
    .await;
    token.cancel();
    run.await.unwrap();
    // Replay publishes each distinct event once.
    let q = e
        .stack
        .queue("replay-probe", Duration::from_secs(30), 5)
        .await
        .unwrap();
    e.stack
        .topic
        .subscribe("replay-probe", None, true)
        .await
        .unwrap();
    let from = now - time::Duration::hours(1);
    let to = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
    let counts =
        prism_archiver::replay::replay(&e.stack.archive, &*e.stack.topic, from, to, false, |_| {})
            .await
            .unwrap();
    assert_eq!(
        (counts.lines, counts.distinct, counts.published),
        (12, 6, 6),
        "{counts:?}"
    );
    let mut got = 0;
    loop {
        let m = q.receive(10, Duration::from_millis(300)).await.unwrap();
        if m.is_empty() {
            break;
        }
        got += m.len();
        for x in m {
            q.ack(&x.receipt).await.unwrap();
        }
    }
    assert_eq!(got, 6);
    // A dry run counts without publishing; a range outside the archive finds nothing.
    let dry =
        prism_archiver::replay::replay(&e.stack.archive, &*e.stack.topic, from, to, true, |_| {})
            .await
            .unwrap();
    assert_eq!((dry.distinct, dry.published), (6, 0));
    let none = prism_archiver::replay::replay(
        &e.stack.archive,
        &*e.stack.topic,
        from - time::Duration::days(2),
        from - time::Duration::days(1),
        false,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(none.lines, 0);
    let _ = &e.dir;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_over_a_completed_batch_changes_nothing() {
    let e = env(180).await;
    // The metadata writer and the archiver run; a batch completes through real events.
    let mut mcfg = prism_metadata::Config::default();
    mcfg.common.data_dir = e.dir.path().to_path_buf();
    mcfg.consumer.wait_time_secs = 1;
    let mdeps = prism_metadata::local_deps(&mcfg, &e.stack).await.unwrap();
    let mtoken = CancellationToken::new();
    let mt = mtoken.clone();
    let mrun = tokio::spawn(async move { prism_metadata::run(&mcfg, mdeps, mt).await });
    let (atoken, arun) = e.start(&cfg(1000, 1 << 20, 1));

    let b = shared::testing::metadata_store::new_batch(2);
    e.stack.metadata.create_batch(&b).await.unwrap();
    for f in &b.files {
        e.stack
            .uploads
            .put(
                &shared::keys::upload_key(&b.batch_id, &f.file_id),
                Bytes::from_static(b"x"),
                PutOptions::default(),
            )
            .await
            .unwrap();
        let m = shared::manifest::Manifest {
            schema_version: 1,
            batch_id: b.batch_id.clone(),
            file_id: f.file_id.clone(),
            rendered_at: time::OffsetDateTime::now_utc(),
            rendered: shared::testing::metadata_store::rendered(&b.batch_id, &f.file_id),
            request_sha256: None,
        };
        e.stack
            .media
            .put(
                &shared::keys::manifest_key(&b.batch_id, &f.file_id),
                Bytes::from(serde_json::to_vec(&m).unwrap()),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }
    // As the API publishes it: stamped with the owner and the receive time.
    e.stack.topic.publish(&serde_json::json!({"event_name": "IMAGE_REQUESTED", "image_id": b.files[0].file_id, "event_id": "r1", "principal": b.principal, "received_at": "2026-12-05T10:00:00Z"}).to_string()).await.unwrap();
    let before = eventually(Duration::from_secs(10), "complete", || async {
        let got = e
            .stack
            .metadata
            .get_batch(&b.batch_id)
            .await
            .unwrap()
            .unwrap();
        (got.status == shared::port::BatchStatus::Complete && got.files[0].request_count == 1)
            .then_some(got)
    })
    .await;
    // Let the archiver flush everything (uploads, manifests, request, batch.completed).
    eventually(Duration::from_secs(10), "archived", || async {
        let n: usize = e.objects().await.iter().map(|(_, l)| l.len()).sum();
        (n >= 6).then_some(())
    })
    .await;
    let completions_before = e
        .objects()
        .await
        .iter()
        .flat_map(|(_, l)| l.iter())
        .filter(|l| l.body.contains("batch.completed"))
        .count();
    assert_eq!(completions_before, 1);

    let from = before.created_at - time::Duration::minutes(1);
    let to = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
    let counts =
        prism_archiver::replay::replay(&e.stack.archive, &*e.stack.topic, from, to, false, |_| {})
            .await
            .unwrap();
    assert!(counts.published >= 6, "{counts:?}");
    let meta_q = e
        .stack
        .queue("metadata", Duration::from_secs(60), 5)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "replayed events handled",
        || async {
            let s = meta_q.stats().await.unwrap();
            (s.visible == 0 && s.in_flight == 0).then_some(())
        },
    )
    .await;
    let after = e
        .stack
        .metadata
        .get_batch(&b.batch_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.counts, before.counts);
    assert_eq!(
        after.files, before.files,
        "replay changed a file (status, variants or request count)"
    );
    assert_eq!(after.completed_at, before.completed_at);
    assert_eq!(
        after.announced_at, before.announced_at,
        "replay re-announced the batch"
    );
    // The replayed upload events reached the resize queue: that is the backfill path.
    let resize_q = e
        .stack
        .queue("resize", Duration::from_secs(60), 5)
        .await
        .unwrap();
    assert!(resize_q.stats().await.unwrap().visible >= 4);
    assert_eq!(meta_q.stats().await.unwrap().dlq_visible, 0);
    atoken.cancel();
    mtoken.cancel();
    arun.await.unwrap();
    mrun.await.unwrap();
}

/// A failed archive write is counted under the store error's own code (a permanent refusal is
/// `internal`, not `store_unavailable`), and nothing is acked, so the lines are archived later.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_write_is_counted_under_its_own_code() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let e = env(1).await;
    let store = shared::testing::failing::FailingPuts::new(Arc::new(e.stack.archive.clone()));
    store.fail_next(1, |k| {
        shared::port::BlobStoreError::Other(format!("denied: {k}"))
    });
    let deps = prism_archiver::Deps {
        queue: Arc::new(e.queue.clone()),
        store: Arc::new(store.clone()),
        busy: None,
    };
    let token = CancellationToken::new();
    let a = Archiver::new(&cfg(1, 1 << 20, 3600), deps);
    let t = token.clone();
    let run = tokio::spawn(async move { a.run(t).await });
    e.publish(1, "refused").await;
    // The refused line reappears after its visibility timeout and is archived then.
    eventually(
        Duration::from_secs(30),
        "the line archived after the failure",
        || async {
            let o = e.objects().await;
            (o.len() == 1).then_some(())
        },
    )
    .await;
    token.cancel();
    run.await.unwrap();
    assert_eq!(store.failed(), 1);
    let errors: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == "prism_errors_total")
        .map(|(k, ..)| {
            k.key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    assert_eq!(
        errors,
        vec!["worker=archiver,stage=sending,error_code=internal".to_owned()],
        "{errors:?}"
    );
}
