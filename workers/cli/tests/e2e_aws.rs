//! The whole flow in AWS mode against moto (started by the test on a free loopback port):
//! `prism dev --aws-endpoint` provisions buckets, notifications, topic, queues, subscriptions
//! and table; a batch is created through the API; every file is uploaded with a plain HTTP
//! client through its presigned S3 POST; S3 notifies SNS, SNS fans out to SQS, the workers
//! render and record to DynamoDB; `GET /v1/batches/{id}` reports the batch complete, and every
//! variant downloads through its presigned GET and decodes.
//!
//! The images are `testdata/corpus` in the repository (or `$PRISM_CORPUS`); moto is
//! `pip install 'moto[server]'` (installed by `.ci/run`).
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shared::port::Queue;
use shared::testing::moto::Moto;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_flows_through_s3_sns_sqs_and_dynamodb_on_moto() {
    let corpus = shared::testing::corpus();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let endpoint: url::Url = moto.endpoint.parse().unwrap();
    let dev = prism::dev_aws::start_aws(
        &endpoint,
        Some("us-east-1"),
        dir.path(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
        shutdown.clone(),
    )
    .await
    .unwrap();

    // Provisioning is idempotent: a second run over the same endpoint changes nothing.
    let again = shared::adapter::aws::provision::provision(
        &dev.stack.clients,
        &dev.provisioned.resources,
        &|n| shared::port::QueueSettings::new(n),
        shared::adapter::aws::provision::FilterDialect::NoOr,
    )
    .await
    .unwrap();
    assert_eq!(
        again.resources.topic_arn,
        dev.provisioned.resources.topic_arn
    );

    let good = ["Landscape_6.jpg", "p3.png", "5_webp_a.webp"];
    let mut paths: Vec<PathBuf> = good.iter().map(|n| corpus.join(n)).collect();
    paths.push(corpus.join("truncated.jpg"));
    let named = dir.path().join("red flower+1 %.jpg");
    std::fs::copy(corpus.join("Landscape_3.jpg"), &named).unwrap();
    paths.push(named);

    let batch = prism::upload::run(&prism::upload::UploadArgs {
        paths,
        api: dev.url.clone(),
        token: dev.token.clone(),
        widths: vec![320, 640],
        formats: vec!["webp".into(), "avif".into()],
        keep_original: false,
        wait_secs: 240,
        progress: false,
    })
    .await
    .unwrap();
    assert_eq!(batch["status"], "complete", "{batch:#}");
    assert_eq!(batch["counts"]["files"], 5);
    assert_eq!(batch["counts"]["received"], 5);
    assert_eq!(batch["counts"]["done"], 4, "{batch:#}");
    assert_eq!(batch["counts"]["failed"], 1);

    let http = reqwest::Client::new();
    for f in batch["files"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        if name == "truncated.jpg" {
            assert_eq!(f["status"], "failed");
            assert_eq!(f["error"]["code"], "truncated_image", "{f:#}");
            continue;
        }
        assert_eq!(f["status"], "done", "{name}: {f:#}");
        let variants = f["variants"].as_array().unwrap();
        assert!(!variants.is_empty(), "{name}");
        for v in variants {
            let url = v["url"].as_str().unwrap();
            assert!(url.starts_with(&moto.endpoint), "a presigned S3 URL: {url}");
            assert!(!url.contains("x-amz-checksum"), "{url}");
            let resp = http.get(url).send().await.unwrap();
            assert!(
                resp.status().is_success(),
                "{name} {url}: {}",
                resp.status()
            );
            let bytes = resp.bytes().await.unwrap();
            assert_eq!(bytes.len() as u64, v["bytes"].as_u64().unwrap(), "{name}");
            let (w, h) = match v["format"].as_str().unwrap() {
                "webp" => {
                    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::WebP)
                        .unwrap();
                    (img.width(), img.height())
                }
                _ => {
                    let p = prism_resize::render::decode::probe(
                        &bytes,
                        &prism_resize::render::Limits::default(),
                    )
                    .unwrap();
                    (p.width, p.height)
                }
            };
            assert_eq!(
                (u64::from(w), u64::from(h)),
                (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap()),
                "{name}"
            );
        }
    }

    // The batch is in DynamoDB, and the queues are drained with nothing dead-lettered.
    let id = batch["batch_id"].as_str().unwrap();
    let record = shared::port::MetadataStore::get_batch(&*dev.stack.metadata, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.counts.done, 4);
    for (name, q) in &dev.provisioned.queues {
        let queue =
            shared::adapter::aws::SqsQueue::new(&dev.stack.clients, name, &q.url, &q.dlq_url);
        // The archiver holds what it buffers until its flush (checked after the stop below).
        let archive = *name == shared::topology::ARCHIVE_QUEUE;
        let s = shared::testing::eventually(Duration::from_secs(30), "queues drained", || async {
            let s = queue.stats().await.unwrap();
            (archive || (s.visible == 0 && s.in_flight == 0)).then_some(s)
        })
        .await;
        assert_eq!(s.dlq_visible, 0, "{name}");
    }
    // The operators' dashboard reads the same ports on AWS: three queues, this batch.
    let state: serde_json::Value = http
        .get(format!("{}/dashboard/api/state", dev.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["queues"].as_array().unwrap().len(), 3, "{state:#}");
    assert!(state["batches_error"].is_null(), "{state:#}");
    assert!(
        state["batches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["batch_id"] == id),
        "{state:#}"
    );

    // The archiver flushed every event it took (on shutdown at the latest).
    dev.stop().await;
    let archived = shared::port::BlobStore::list(&dev_archive(&moto).await, "raw/")
        .await
        .unwrap();
    assert!(!archived.is_empty(), "nothing archived");
}

/// A presigned S3 PUT (the instructions' headers, signed with the exact length) reaches
/// `done` through S3 → SNS → SQS like a POST: the object carries the same metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_upload_flows_through_moto() {
    let corpus = shared::testing::corpus();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint: url::Url = moto.endpoint.parse().unwrap();
    let dev = prism::dev_aws::start_aws(
        &endpoint,
        Some("us-east-1"),
        dir.path(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let args = prism::upload::UploadArgs {
        paths: vec![corpus.join("Landscape_6.jpg")],
        api: dev.url.clone(),
        token: dev.token.clone(),
        widths: vec![320],
        formats: vec!["webp".into()],
        keep_original: false,
        wait_secs: 240,
        progress: false,
    };
    let batch = prism::upload::run_as(&args, shared::api::UploadMethodSpec::Put)
        .await
        .unwrap();
    assert_eq!(batch["status"], "complete", "{batch:#}");
    assert_eq!(batch["counts"]["done"], 1, "{batch:#}");
    let f = &batch["files"][0];
    assert_eq!(f["variants"][0]["width"], 320, "{f:#}");
    dev.stop().await;
}

async fn dev_archive(moto: &Moto) -> shared::adapter::aws::S3BlobStore {
    shared::adapter::aws::S3BlobStore::new(&moto.clients().await, "archive")
}
