//! The wiring `prism dev` makes (locally, and `--aws-endpoint`'s provisioning) routes every
//! event to the same queues as the wiring the CDK app deploys. The CDK side is read from the
//! synthesized stateful template (`cdk/test/fixtures/`, kept equal to the app's synth by
//! `cdk/test/template-fixture.test.ts`): its bucket notifications and its subscriptions' filter
//! policies, evaluated with the same filter-policy engine the embedded topic uses, over events
//! of every kind the pipeline publishes.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use serde_json::{Value, json};
use shared::adapter::local::filter_policy::FilterPolicy;
use shared::topology;

#[path = "support/cfn_moto.rs"]
mod cfn_moto;

const UP: &str = "up-bucket";
const MEDIA: &str = "media-bucket";
const ARCHIVE: &str = "archive-bucket";

/// Replace `{"Ref": <bucket>}` by the bucket names above.
fn names(v: &Value, buckets: &[(String, &str)]) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("Ref") => buckets
            .iter()
            .find(|(id, _)| m["Ref"] == *id.as_str())
            .map_or_else(|| v.clone(), |(_, n)| json!(n)),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), names(v, buckets)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| names(v, buckets)).collect()),
        other => other.clone(),
    }
}

fn s3(bucket: &str, key: &str, event: &str) -> Value {
    serde_json::to_value(shared::event::object_created_event(
        "us-east-1",
        bucket,
        key,
        1,
        "e",
        event,
        "1",
        time::OffsetDateTime::now_utc(),
    ))
    .unwrap()
}

#[test]
fn every_event_reaches_the_same_queues_as_on_the_deployed_stack() {
    let t = cfn_moto::stateful_template();
    let res = t["Resources"].as_object().unwrap();
    let id = |prefix: &str, ty: &str| -> String {
        let ids: Vec<&String> = res
            .iter()
            .filter(|(k, r)| k.starts_with(prefix) && r["Type"] == ty)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(ids.len(), 1, "{prefix} {ty}: {ids:?}");
        ids[0].clone()
    };
    let buckets = [
        (id("UploadsBucket", "AWS::S3::Bucket"), UP),
        (id("MediaBucket", "AWS::S3::Bucket"), MEDIA),
        (id("ArchiveBucket", "AWS::S3::Bucket"), ARCHIVE),
    ];

    // The deployed side: which bucket notifies which keys, and each queue's filter.
    let mut notify: Vec<(String, Vec<String>)> = Vec::new();
    for r in res
        .values()
        .filter(|r| r["Type"] == "Custom::S3BucketNotifications")
    {
        let p = names(&r["Properties"], &buckets);
        for c in p["NotificationConfiguration"]["TopicConfigurations"]
            .as_array()
            .unwrap()
        {
            assert_eq!(c["Events"], json!(["s3:ObjectCreated:*"]));
            let suffixes = c
                .pointer("/Filter/Key/FilterRules")
                .and_then(Value::as_array)
                .map(|rules| {
                    rules
                        .iter()
                        .map(|r| {
                            assert_eq!(r["Name"], "suffix", "{r}");
                            r["Value"].as_str().unwrap().to_owned()
                        })
                        .collect()
                })
                .unwrap_or_default();
            notify.push((p["BucketName"].as_str().unwrap().to_owned(), suffixes));
        }
    }
    let deployed_notifies = |bucket: &str, key: &str| {
        notify.iter().any(|(b, sfx)| {
            b == bucket && (sfx.is_empty() || sfx.iter().any(|s| key.ends_with(s.as_str())))
        })
    };
    let queue_of = |endpoint: &Value| -> &'static str {
        let q = endpoint["Fn::GetAtt"][0].as_str().unwrap();
        [
            topology::RESIZE_QUEUE,
            topology::METADATA_QUEUE,
            topology::ARCHIVE_QUEUE,
        ]
        .into_iter()
        .find(|n| q.to_lowercase().starts_with(&format!("{n}queue")))
        .unwrap_or_else(|| panic!("subscription of {q}"))
    };
    let mut deployed: Vec<(&str, Option<FilterPolicy>)> = Vec::new();
    for r in res
        .values()
        .filter(|r| r["Type"] == "AWS::SNS::Subscription")
    {
        let p = names(&r["Properties"], &buckets);
        assert_eq!(p["RawMessageDelivery"], true);
        let filter = p.get("FilterPolicy").map(|f| {
            assert_eq!(p["FilterPolicyScope"], "MessageBody");
            FilterPolicy::parse(f).unwrap()
        });
        deployed.push((queue_of(&p["Endpoint"]), filter));
    }
    deployed.sort_by_key(|(q, _)| *q);
    assert_eq!(
        deployed.iter().map(|(q, _)| *q).collect::<Vec<_>>(),
        ["archive", "metadata", "resize"]
    );

    // The local side: topology's notifications and filters.
    let local_notifies = |bucket: &str, key: &str| match bucket {
        UP => true,
        MEDIA => topology::media_notification_suffixes()
            .iter()
            .any(|s| key.ends_with(s)),
        _ => false,
    };
    let local: Vec<(&str, Option<FilterPolicy>)> = vec![
        (topology::ARCHIVE_QUEUE, None),
        (
            topology::METADATA_QUEUE,
            Some(FilterPolicy::parse(&topology::metadata_filter(UP, MEDIA)).unwrap()),
        ),
        (
            topology::RESIZE_QUEUE,
            Some(FilterPolicy::parse(&topology::resize_filter(UP)).unwrap()),
        ),
    ];

    let s3_events = [
        (UP, "uploads/b/f", "ObjectCreated:Post"),
        (UP, "uploads/b/f", "ObjectCreated:Put"),
        (UP, "uploads/b/f", "ObjectCreated:CompleteMultipartUpload"),
        (MEDIA, "media/b/f/manifest.json", "ObjectCreated:Put"),
        (MEDIA, "media/b/f/failure.json", "ObjectCreated:Put"),
        (MEDIA, "media/b/f/rerender.json", "ObjectCreated:Put"),
        (MEDIA, "media/b/f/320w.0123456789.webp", "ObjectCreated:Put"),
        (MEDIA, "media/b/f/original", "ObjectCreated:Copy"),
        (
            ARCHIVE,
            "archive/2026/12/05/10/x.ndjson",
            "ObjectCreated:Put",
        ),
    ];
    let client_events = [
        json!({"event_name": "IMAGE_REQUESTED", "image_id": "f"}),
        json!({"event_name": "batch.completed", "batch_id": "b"}),
        json!({"event_name": "batch.rerendered", "batch_id": "b"}),
    ];
    let route = |subs: &[(&str, Option<FilterPolicy>)], m: &Value| -> Vec<String> {
        subs.iter()
            .filter(|(_, f)| f.as_ref().is_none_or(|f| f.matches(m)))
            .map(|(q, _)| (*q).to_owned())
            .collect()
    };
    for (bucket, key, name) in s3_events {
        let m = s3(bucket, key, name);
        let on_aws = if deployed_notifies(bucket, key) {
            route(&deployed, &m)
        } else {
            vec![]
        };
        let locally = if local_notifies(bucket, key) {
            route(&local, &m)
        } else {
            vec![]
        };
        assert_eq!(locally, on_aws, "{name} of {bucket}/{key}");
    }
    for m in &client_events {
        assert_eq!(route(&local, m), route(&deployed, m), "{m}");
    }
    // And the routes are the intended ones, not merely equal.
    let m = s3(UP, "uploads/b/f", "ObjectCreated:Post");
    assert_eq!(route(&local, &m), ["archive", "metadata", "resize"]);
    assert_eq!(route(&local, &client_events[1]), ["archive"]);
}
