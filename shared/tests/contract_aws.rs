//! The port contract suites on the AWS adapters, against a moto server each test starts on a
//! free loopback port (`pip install 'moto[server]'`; a missing moto fails, never skips).

#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shared::adapter::aws::{DynamoMetadataStore, S3BlobStore, SnsTopic, SqsQueue, provision};
use shared::port::{BlobStore, PutOptions, Queue, QueueSettings, UploadMethod, UploadPolicy};
use shared::testing::moto::Moto;
use shared::testing::{blob_store, metadata_store, queue, topic, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_blob_store_passes_the_contract() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let bucket = unique_name("bucket");
    provision::ensure_bucket(&c, &bucket).await.unwrap();
    blob_store::blob_store_contract(Arc::new(S3BlobStore::new(&c, &bucket)) as Arc<dyn BlobStore>)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_queue_passes_the_contract() {
    let moto = Moto::start();
    let c = moto.clients().await;
    queue::queue_contract_with(
        |s: QueueSettings| {
            let c = c.clone();
            async move {
                let q = provision::ensure_queue(&c, &s).await.unwrap();
                Arc::new(SqsQueue::new(&c, &s.name, &q.url, &q.dlq_url)) as Arc<dyn Queue>
            }
        },
        queue::Capabilities {
            reports_oldest_age: false,
            guards_stale_receipts: false,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sns_topic_passes_the_contract() {
    let moto = Moto::start();
    let c = moto.clients().await;
    topic::topic_contract(|| {
        let c = c.clone();
        async move {
            let arn = provision::ensure_topic(&c, &unique_name("events"))
                .await
                .unwrap();
            let mut queues = Vec::new();
            for (name, filter, raw) in [
                ("filtered", Some(topic::uploads_filter()), true),
                ("all", None, true),
                ("env", None, false),
            ] {
                let s = QueueSettings::new(&unique_name(name));
                let q = provision::ensure_queue(&c, &s).await.unwrap();
                provision::subscribe_queue(&c, &arn, &q, filter.as_ref(), raw)
                    .await
                    .unwrap();
                queues.push(Arc::new(SqsQueue::new(&c, &s.name, &q.url, &q.dlq_url)));
            }
            topic::TopicFixture {
                topic: Arc::new(SnsTopic::new(&c, &arn)),
                filtered_raw: queues[0].clone(),
                all_raw: queues[1].clone(),
                all_enveloped: queues[2].clone(),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamo_metadata_store_passes_the_contract() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let table = unique_name("metadata");
    provision::ensure_table(&c, &table).await.unwrap();
    metadata_store::metadata_store_contract(Arc::new(DynamoMetadataStore::new(&c, &table))).await;
}

/// A presigned PUT with the headers its instructions name stores the object with its content
/// type and metadata. (moto ignores signatures, so the refusals are the local store's and the
/// signed-header unit test's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presigned_put_uploads_with_its_headers() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let bucket = unique_name("uploads");
    provision::ensure_bucket(&c, &bucket).await.unwrap();
    let store = S3BlobStore::new(&c, &bucket);
    blob_store::presigned_put_contract(&store, false).await;
}

/// The presigned POST is a form a plain HTTP client can send, and the presigned GET reads the
/// object back; neither URL carries a checksum parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presigned_post_uploads_and_presigned_get_downloads() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let bucket = unique_name("uploads");
    provision::ensure_bucket(&c, &bucket).await.unwrap();
    let store = S3BlobStore::new(&c, &bucket);
    let policy = UploadPolicy {
        key: "uploads/b1/f 1+x".into(),
        content_type: "image/jpeg".into(),
        max_bytes: 1024,
        metadata: BTreeMap::from([("prism-file-id".to_owned(), "f1".to_owned())]),
        expires_in: Duration::from_secs(300),
        method: UploadMethod::Post,
    };
    let up = store.presign_upload(&policy).await.unwrap();
    assert_eq!(up.method, UploadMethod::Post);
    assert!(
        up.url.starts_with(&moto.endpoint),
        "path-style URL: {}",
        up.url
    );
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in up.fields.clone().unwrap() {
        form = form.text(k, v);
    }
    let body = b"\xff\xd8\xff\xe0 not really a jpeg".to_vec();
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(body.clone()).file_name("x.jpg"),
    );
    let resp = reqwest::Client::new()
        .post(&up.url)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "POST answered {}",
        resp.status()
    );
    let head = store.head(&policy.key).await.unwrap();
    assert_eq!(head.size, body.len() as u64);
    assert_eq!(head.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(
        head.metadata.get("prism-file-id").map(String::as_str),
        Some("f1")
    );

    let url = store
        .presign_download(&policy.key, Duration::from_secs(60))
        .await
        .unwrap();
    for forbidden in ["x-amz-checksum", "x-amz-sdk-checksum-algorithm"] {
        assert!(!url.to_ascii_lowercase().contains(forbidden), "{url}");
    }
    let got = reqwest::get(&url).await.unwrap();
    assert!(got.status().is_success());
    assert_eq!(got.bytes().await.unwrap(), Bytes::from(body));

    // A presigned PUT from the same client carries no checksum either.
    let put = c
        .s3_presign
        .put_object()
        .bucket(&bucket)
        .key("k")
        .content_type("image/png")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(60)).unwrap(),
        )
        .await
        .unwrap();
    let uri = put.uri().to_ascii_lowercase();
    assert!(
        !uri.contains("x-amz-checksum") && !uri.contains("x-amz-sdk-checksum"),
        "{uri}"
    );
    assert!(
        put.headers()
            .all(|(k, _)| !k.to_ascii_lowercase().starts_with("x-amz-checksum"))
    );
    store
        .put("plain", Bytes::from_static(b"x"), PutOptions::default())
        .await
        .unwrap();
}
