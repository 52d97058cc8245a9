//! The fault-injecting proxy against moto: every fault it injects, on every service, reaches
//! the adapters as the port error real AWS would cause (so the SDK parsed the wire shape as
//! intended), a reset after forwarding has really taken effect, a permanent rule hits only its
//! key, and a long poll passes through without delay.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use bytes::Bytes;
use shared::adapter::aws::{
    Clients, DynamoMetadataStore, S3BlobStore, SnsTopic, SqsQueue, provision,
};
use shared::config::AwsConfig;
use shared::port::{
    BlobStore as _, BlobStoreError, MetadataStore as _, MetadataStoreError, PutOptions, Queue as _,
    QueueError, QueueSettings, Topic as _, TopicError,
};
use shared::testing::fault_proxy::{FaultKind, FaultPlan, FaultProxy, Service};
use shared::testing::moto::Moto;
use shared::testing::unique_name;

/// A plan that injects only `kind`, on every signed call.
fn only(kind: FaultKind) -> FaultPlan {
    let mut p = FaultPlan {
        seed: 7,
        throttle: 0.0,
        server_error: 0.0,
        reset_before: 0.0,
        reset_after: 0.0,
        cover_every_kind: false,
    };
    match kind {
        FaultKind::Throttle => p.throttle = 1.0,
        FaultKind::ServerError => p.server_error = 1.0,
        FaultKind::ResetBefore => p.reset_before = 1.0,
        FaultKind::ResetAfter => p.reset_after = 1.0,
        FaultKind::Permanent => {}
    }
    p
}

struct Resources {
    bucket: String,
    queue: (String, String, String),
    topic: String,
    table: String,
}

async fn clients_via(proxy: &FaultProxy) -> Clients {
    Clients::new(&AwsConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(proxy.endpoint.parse().unwrap()),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn injected_faults_reach_the_ports_as_aws_faults_would() {
    let moto = Moto::start();
    let direct = moto.clients().await;
    let bucket = unique_name("bucket");
    provision::ensure_bucket(&direct, &bucket).await.unwrap();
    let settings = QueueSettings::new(&unique_name("q"));
    let q = provision::ensure_queue(&direct, &settings).await.unwrap();
    let topic = provision::ensure_topic(&direct, &unique_name("t"))
        .await
        .unwrap();
    let table = unique_name("table");
    provision::ensure_table(&direct, &table).await.unwrap();
    let r = Resources {
        bucket,
        queue: (settings.name.clone(), q.url.clone(), q.dlq_url.clone()),
        topic,
        table,
    };
    S3BlobStore::new(&direct, &r.bucket)
        .put("k", Bytes::from_static(b"x"), PutOptions::default())
        .await
        .unwrap();
    let direct_queue = SqsQueue::new(&direct, &r.queue.0, &r.queue.1, &r.queue.2);

    for kind in FaultKind::RANDOM {
        let proxy = FaultProxy::start(&moto.endpoint, only(kind)).await;
        proxy.set_enabled(true);
        let c = clients_via(&proxy).await;
        let throttled = kind == FaultKind::Throttle;

        let e = S3BlobStore::new(&c, &r.bucket).get("k").await.unwrap_err();
        assert!(
            if throttled {
                matches!(e, BlobStoreError::Throttled(_))
            } else {
                matches!(e, BlobStoreError::Unavailable(_))
            },
            "{kind:?}: S3 {e:?}"
        );
        let e = SqsQueue::new(&c, &r.queue.0, &r.queue.1, &r.queue.2)
            .send("hello")
            .await
            .unwrap_err();
        assert!(
            if throttled {
                matches!(e, QueueError::Throttled(_))
            } else {
                matches!(e, QueueError::Unavailable(_))
            },
            "{kind:?}: SQS {e:?}"
        );
        let e = SnsTopic::new(&c, &r.topic)
            .publish("hello")
            .await
            .unwrap_err();
        assert!(
            if throttled {
                matches!(e, TopicError::Throttled(_))
            } else {
                matches!(e, TopicError::Unavailable(_))
            },
            "{kind:?}: SNS {e:?}"
        );
        let e = DynamoMetadataStore::new(&c, &r.table)
            .get_batch("b")
            .await
            .unwrap_err();
        assert!(
            if throttled {
                matches!(e, MetadataStoreError::Throttled(_))
            } else {
                matches!(e, MetadataStoreError::Unavailable(_))
            },
            "{kind:?}: DynamoDB {e:?}"
        );

        // Every attempt (the SDK makes 3) met the fault.
        let counts = proxy.counts();
        for s in Service::ALL {
            assert_eq!(counts.get(s, kind), 3, "{kind:?} on {s:?}:\n{counts}");
        }
        // A reset after forwarding hid a send that happened: one per attempt.
        let sent = direct_queue.stats().await.unwrap().visible;
        let expected = if kind == FaultKind::ResetAfter { 3 } else { 0 };
        assert_eq!(sent, expected, "{kind:?}: messages moto accepted");
        if sent > 0 {
            let got = direct_queue.receive(10, Duration::ZERO).await.unwrap();
            for m in got {
                direct_queue.ack(&m.receipt).await.unwrap();
            }
        }
    }

    // A permanent rule denies its key's reads only, until lifted; it is not retried (once).
    let proxy = FaultProxy::start(&moto.endpoint, only(FaultKind::Permanent)).await;
    let c = clients_via(&proxy).await;
    let store = S3BlobStore::new(&c, &r.bucket);
    store
        .put("denied/a", Bytes::from_static(b"a"), PutOptions::default())
        .await
        .unwrap();
    proxy.deny_s3_get(&r.bucket, "denied/");
    let e = store.get("denied/a").await.unwrap_err();
    assert!(
        matches!(&e, BlobStoreError::Other(m) if m.contains("AccessDenied")),
        "{e:?}"
    );
    assert_eq!(proxy.counts().get(Service::S3, FaultKind::Permanent), 1);
    assert_eq!(&store.get("k").await.unwrap()[..], b"x");
    assert!(
        store.head("denied/a").await.is_ok(),
        "only GetObject is denied"
    );
    proxy.lift_permanent();
    assert_eq!(&store.get("denied/a").await.unwrap()[..], b"a");

    // A long poll waits at moto for as long as it asked, no longer.
    let queue = SqsQueue::new(&c, &r.queue.0, &r.queue.1, &r.queue.2);
    let t = Instant::now();
    let got = queue.receive(1, Duration::from_secs(2)).await.unwrap();
    let waited = t.elapsed();
    assert!(got.is_empty());
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
        "a 2 s long poll took {waited:?} through the proxy"
    );
}
