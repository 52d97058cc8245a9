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

#[path = "support/cfn_moto.rs"]
mod cfn_moto;
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
        jpeg_quality: None,
        quality: None,
        lossless: shared::variant::Lossless::Off,
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
        jpeg_quality: None,
        quality: None,
        lossless: shared::variant::Lossless::Off,
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

/// The prism binary, run against moto.
fn prism_cli(endpoint: &url::Url, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args)
        .args(["--aws-endpoint", endpoint.as_str(), "--region", "us-east-1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prism {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Operating a deployed stack on moto. The CDK app's stateful template (a `dev` stage) is
/// deployed onto moto with CloudFormation-generated names (`support/cfn_moto.rs`), and every
/// component and command finds the resources through the stacks' outputs (`--stack Prism-dev`),
/// as on AWS.
///
/// `prism rerender`, the resize worker doing the work: a batch that kept its originals (its
/// uploads deleted, as they expire) is re-rendered with new widths; the first run is killed
/// once a file has ended and a second run finishes. Every file is rendered once with the new
/// spec (its manifest is not rewritten again, the counts add up to the batch), the batch view
/// lists the new variants under new keys, and a third run finds nothing to do. `prism batch`
/// and `prism dlq list` work through `--stack`; then `prism replay --stack` re-publishes the
/// archived upload events to the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rerender_survives_a_kill_and_replay_republishes_on_a_deployed_stack_on_moto() {
    use prism::rerender::{Options, Selection, run};
    use shared::port::{BlobStore, MetadataStore};
    use shared::variant::{OutputFormat, VariantRequest};

    let corpus = shared::testing::corpus();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint: url::Url = moto.endpoint.parse().unwrap();
    let started = time::OffsetDateTime::now_utc() - Duration::from_secs(5);
    let clients = moto.clients().await;
    cfn_moto::deploy(
        &clients,
        "Prism-dev-Stateful",
        &cfn_moto::stateful_template(),
    )
    .await
    .unwrap();
    let deployed = prism::stack::discover(&clients, "Prism-dev").await.unwrap();
    assert_eq!(deployed.stateful_stack, "Prism-dev-Stateful");
    assert!(
        deployed
            .resources
            .uploads_bucket
            .starts_with("prism-dev-stateful-uploadsbucket"),
        "generated names, none of prism dev's: {deployed:?}"
    );
    let dev = prism::dev_aws::start_aws_on(
        &endpoint,
        Some("us-east-1"),
        dir.path(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
        CancellationToken::new(),
        Some("Prism-dev"),
    )
    .await
    .unwrap();
    assert_eq!(
        dev.provisioned.resources.table_name,
        deployed.resources.table_name
    );
    let names = [
        "Landscape_6.jpg",
        "4.webp",
        "Channel_digital_image_CMYK_color.jpg",
    ];
    let batch = prism::upload::run(&prism::upload::UploadArgs {
        paths: names.iter().map(|n| corpus.join(n)).collect(),
        api: dev.url.clone(),
        token: dev.token.clone(),
        widths: vec![320],
        formats: vec!["webp".into()],
        keep_original: true,
        jpeg_quality: None,
        quality: None,
        lossless: shared::variant::Lossless::Off,
        wait_secs: 240,
        progress: false,
    })
    .await
    .unwrap();
    assert_eq!(batch["counts"]["done"], 3, "{batch:#}");
    let id = batch["batch_id"].as_str().unwrap().to_owned();
    let before = dev.stack.metadata.get_batch(&id).await.unwrap().unwrap();
    // The uploads expired: only the kept originals remain to render from.
    for f in &before.files {
        dev.stack
            .uploads
            .delete(&shared::keys::upload_key(&id, &f.file_id))
            .await
            .unwrap();
    }

    // What `--stack Prism-dev` opens for the operator commands.
    let q = deployed.queue(shared::topology::RESIZE_QUEUE).unwrap();
    let ops = prism::ops::Ops::aws(
        &dev.stack.clients,
        &prism::ops::AwsTarget {
            resources: deployed.resources.clone(),
            resize_queue: Some((q.url.clone(), q.dlq_url.clone())),
        },
    );
    let request = VariantRequest {
        widths: vec![200, 400],
        formats: vec![OutputFormat::Webp],
        ..VariantRequest::default()
    };
    let opts = Options {
        request: request.clone(),
        state: dir.path().join("rerender.json"),
        in_flight: 1,
        file_timeout: Duration::from_secs(180),
        poll: Duration::from_millis(200),
        dry_run: false,
    };
    let sel = Selection {
        batches: vec![id.clone()],
        ..Selection::default()
    };

    // The first run, killed as soon as one file has ended.
    let (tx, mut rx) = tokio::sync::watch::channel(prism::rerender::Counts::default());
    let first = tokio::spawn({
        let (ops, sel, opts) = (ops.clone(), sel.clone(), opts.clone());
        async move {
            run(&ops, &sel, &opts, |c| {
                let _ = tx.send(*c);
            })
            .await
        }
    });
    let at_kill = *rx.wait_for(|c| c.rendered + c.already >= 1).await.unwrap();
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    assert!(
        at_kill.rendered + at_kill.already < 3,
        "killed half-way: {at_kill:?}"
    );
    let sent_first = rx.borrow().sent;

    let second = run(&ops, &sel, &opts, |_| {}).await.unwrap();
    assert_eq!(
        (
            second.selected,
            second.rendered,
            second.already,
            second.failed
        ),
        (3, 3, 0, 0),
        "{second:?}"
    );
    assert_eq!(second.pending, 0);
    assert_eq!(second.announced, 1, "the batch's re-render is announced");
    assert_eq!(
        sent_first + second.sent,
        3,
        "one message per file over both runs: {sent_first} + {second:?}"
    );

    // Let every message drain, then check nothing rendered a file a second time.
    let resize = shared::adapter::aws::SqsQueue::new(
        &dev.stack.clients,
        shared::topology::RESIZE_QUEUE,
        &q.url,
        &q.dlq_url,
    );
    shared::testing::eventually(Duration::from_secs(60), "resize queue drained", || async {
        let s = resize.stats().await.unwrap();
        (s.visible == 0 && s.in_flight == 0).then_some(())
    })
    .await;
    let sha = shared::rerender::request_sha256(&request);
    let mut rendered_at = Vec::new();
    for f in &before.files {
        let m = shared::manifest::parse_manifest(
            &ops.media
                .get(&shared::keys::manifest_key(&id, &f.file_id))
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(m.request_sha256.as_deref(), Some(sha.as_str()));
        rendered_at.push(m.rendered_at);
    }

    // The batch view lists the new variants, under keys the old ones never had.
    let after = shared::testing::eventually(
        Duration::from_secs(60),
        "metadata records the re-render",
        || async {
            let b = dev.stack.metadata.get_batch(&id).await.unwrap().unwrap();
            b.files
                .iter()
                .all(|f| {
                    let widths: Vec<u32> = f
                        .rendered
                        .as_ref()
                        .map(|r| r.variants.iter().map(|v| v.width).collect())
                        .unwrap_or_default();
                    widths == [200, 400]
                })
                .then_some(b)
        },
    )
    .await;
    for (old, new) in before.files.iter().zip(&after.files) {
        let (old, new) = (
            old.rendered.as_ref().unwrap(),
            new.rendered.as_ref().unwrap(),
        );
        assert_eq!(old.source.sha256, new.source.sha256);
        assert!(new.original_key.is_some(), "the original is still kept");
        for v in &new.variants {
            assert!(old.variants.iter().all(|o| o.key != v.key), "{}", v.key);
            assert!(ops.media.head(&v.key).await.is_ok(), "{}", v.key);
        }
        // The old variants stay where caches may still point.
        for v in &old.variants {
            assert!(ops.media.head(&v.key).await.is_ok(), "{}", v.key);
        }
    }

    // A third run, with a fresh checkpoint, finds every file rendered with the spec.
    let third = run(
        &ops,
        &sel,
        &Options {
            state: dir.path().join("again.json"),
            ..opts.clone()
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        (third.sent, third.rendered, third.already),
        (0, 0, 3),
        "{third:?}"
    );
    for (f, at) in before.files.iter().zip(&rendered_at) {
        let m = shared::manifest::parse_manifest(
            &ops.media
                .get(&shared::keys::manifest_key(&id, &f.file_id))
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(m.rendered_at, *at, "{}: rendered again", f.file_id);
    }

    // The commands through --stack: the batch (API URL from the compute stack's output;
    // moto cannot run the compute stack, so its output names the running API), the DLQ.
    cfn_moto::register(
        &clients,
        "Prism-dev-Compute",
        &[("ApiUrl".to_owned(), dev.url.clone())].into(),
    )
    .await
    .unwrap();
    let table = prism_cli(
        &endpoint,
        &["batch", &id, "--stack", "Prism-dev", "--token", &dev.token],
    );
    for n in names {
        assert!(table.contains(n), "{n} in {table}");
    }
    let letters: serde_json::Value = serde_json::from_str(&prism_cli(
        &endpoint,
        &["dlq", "list", "resize", "--stack", "Prism-dev", "--json"],
    ))
    .unwrap();
    assert_eq!(letters, serde_json::json!([]));

    // Replay on AWS: with the workers stopped, the archived events go back to the topic and
    // the resize queue receives the three upload events again.
    dev.stop().await;
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let counts: serde_json::Value = serde_json::from_str(&prism_cli(
        &endpoint,
        &[
            "replay",
            "--from",
            &rfc(started),
            "--to",
            &rfc(time::OffsetDateTime::now_utc() + Duration::from_secs(5)),
            "--stack",
            "Prism-dev",
        ],
    ))
    .unwrap();
    assert!(
        counts["objects"].as_u64() >= Some(1) && counts["distinct"].as_u64() >= Some(3),
        "{counts}"
    );
    assert_eq!(counts["published"], counts["distinct"], "{counts}");
    let got = shared::testing::eventually(Duration::from_secs(30), "uploads replayed", || async {
        // A receive the stopping worker had outstanding may hold one in flight.
        let s = resize.stats().await.unwrap();
        (s.visible + s.in_flight >= 3).then_some(s.visible + s.in_flight)
    })
    .await;
    assert_eq!(
        got, 3,
        "exactly the three upload events reach the resize queue"
    );
}
