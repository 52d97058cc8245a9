//! Declare the AWS topology idempotently on an endpoint (moto, LocalStack, or an account for a
//! quick trial): buckets with S3 → SNS notifications, the topic, three queues with DLQs and
//! raw-delivery, message-body-filtered subscriptions ([`crate::topology`]), and the
//! metadata table with TTL. This is what `prism dev --aws-endpoint` runs; on AWS proper the CDK
//! app declares the same shape with encryption, retention and alarms on top.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Event, FilterRule, FilterRuleName,
    NotificationConfiguration, NotificationConfigurationFilter, S3KeyFilter, TopicConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

use super::Clients;
use super::classify::describe;
use super::dynamo_metadata_store::{PK, SK, TTL};
use crate::config::Resources;
use crate::port::QueueSettings;
use crate::topology;

/// A provisioning step failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot provision {what}: {message}")]
pub struct ProvisionError {
    what: String,
    message: String,
}

fn fail(what: impl Into<String>) -> impl FnOnce(String) -> ProvisionError {
    let what = what.into();
    move |message| ProvisionError { what, message }
}

/// A queue and its DLQ, as provisioned.
#[derive(Debug, Clone)]
pub struct ProvisionedQueue {
    /// Queue URL.
    pub url: String,
    /// Queue ARN.
    pub arn: String,
    /// DLQ URL.
    pub dlq_url: String,
}

/// Everything [`provision`] declared.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// Resource names for every binary's config (`topic_arn` is the real ARN).
    pub resources: Resources,
    /// Queue URLs by queue name ([`topology::RESIZE_QUEUE`], …).
    pub queues: HashMap<&'static str, ProvisionedQueue>,
}

/// Create `bucket` unless it exists.
///
/// # Errors
/// When S3 refuses for another reason.
pub async fn ensure_bucket(c: &Clients, bucket: &str) -> Result<(), ProvisionError> {
    if c.s3.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    let mut req = c.s3.create_bucket().bucket(bucket);
    if c.region != "us-east-1" {
        req = req.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(c.region.as_str()))
                .build(),
        );
    }
    match req.send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(fail(format!("bucket {bucket}"))(describe(&e))),
    }
}

/// Create topic `name` (SNS `CreateTopic` is idempotent) and return its ARN.
///
/// # Errors
/// When SNS refuses.
pub async fn ensure_topic(c: &Clients, name: &str) -> Result<String, ProvisionError> {
    let out = c
        .sns
        .create_topic()
        .name(name)
        .send()
        .await
        .map_err(|e| fail(format!("topic {name}"))(describe(&e)))?;
    out.topic_arn
        .ok_or_else(|| fail(format!("topic {name}"))("no ARN returned".into()))
}

async fn queue_arn(c: &Clients, url: &str) -> Result<String, ProvisionError> {
    let out = c
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| fail(format!("queue {url}"))(describe(&e)))?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| fail(format!("queue {url}"))("no QueueArn attribute".into()))
}

async fn create_or_update_queue(
    c: &Clients,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<String, ProvisionError> {
    let created = c
        .sqs
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes.clone()))
        .send()
        .await;
    let url = match created {
        Ok(o) => o.queue_url.unwrap_or_default(),
        // It exists with other attributes: look it up and update them.
        Err(_) => c
            .sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| fail(format!("queue {name}"))(describe(&e)))?
            .queue_url
            .unwrap_or_default(),
    };
    c.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .set_attributes(Some(attributes))
        .send()
        .await
        .map_err(|e| fail(format!("queue {name}"))(describe(&e)))?;
    Ok(url)
}

/// Create `settings.name` and its DLQ with the redrive policy, visibility timeout and
/// retention (DLQ retention 14 days: expiry counts from the original enqueue).
///
/// # Errors
/// When SQS refuses.
pub async fn ensure_queue(
    c: &Clients,
    settings: &QueueSettings,
) -> Result<ProvisionedQueue, ProvisionError> {
    let dlq_url = create_or_update_queue(
        c,
        &settings.dlq_name,
        HashMap::from([(
            QueueAttributeName::MessageRetentionPeriod,
            (14 * 24 * 3600).to_string(),
        )]),
    )
    .await?;
    let dlq_arn = queue_arn(c, &dlq_url).await?;
    let redrive = json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": settings.max_receive_count,
    });
    let url = create_or_update_queue(
        c,
        &settings.name,
        HashMap::from([
            (
                QueueAttributeName::VisibilityTimeout,
                settings.visibility_timeout.as_secs().to_string(),
            ),
            (
                QueueAttributeName::MessageRetentionPeriod,
                (4 * 24 * 3600).to_string(),
            ),
            (QueueAttributeName::MaximumMessageSize, "1048576".to_owned()),
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
        ]),
    )
    .await?;
    let arn = queue_arn(c, &url).await?;
    Ok(ProvisionedQueue { url, arn, dlq_url })
}

/// Subscribe queue `q` to `topic_arn` with raw delivery on or off and an optional message-body
/// filter policy; also lets the topic send to the queue (its access policy).
///
/// # Errors
/// When SNS or SQS refuses.
pub async fn subscribe_queue(
    c: &Clients,
    topic_arn: &str,
    q: &ProvisionedQueue,
    filter: Option<&Value>,
    raw: bool,
) -> Result<String, ProvisionError> {
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "topic-may-send",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": q.arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
        }],
    });
    c.sqs
        .set_queue_attributes()
        .queue_url(&q.url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .map_err(|e| fail(format!("queue policy of {}", q.url))(describe(&e)))?;
    let mut req = c
        .sns
        .subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(&q.arn)
        .return_subscription_arn(true)
        .attributes("RawMessageDelivery", if raw { "true" } else { "false" });
    if let Some(f) = filter {
        req = req
            .attributes("FilterPolicyScope", "MessageBody")
            .attributes("FilterPolicy", f.to_string());
    }
    let out = req
        .send()
        .await
        .map_err(|e| fail(format!("subscription of {}", q.arn))(describe(&e)))?;
    Ok(out.subscription_arn.unwrap_or_default())
}

/// Allow S3 to publish to `topic_arn` (the topic's access policy).
///
/// # Errors
/// When SNS refuses.
pub async fn allow_s3_to_publish(c: &Clients, topic_arn: &str) -> Result<(), ProvisionError> {
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "s3-may-publish",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": topic_arn,
        }],
    });
    c.sns
        .set_topic_attributes()
        .topic_arn(topic_arn)
        .attribute_name("Policy")
        .attribute_value(policy.to_string())
        .send()
        .await
        .map_err(|e| fail(format!("topic policy of {topic_arn}"))(describe(&e)))?;
    Ok(())
}

/// Make `bucket` notify `topic_arn` of every created object, or only of keys ending in one of
/// `suffixes`.
///
/// # Errors
/// When S3 refuses.
pub async fn ensure_notifications(
    c: &Clients,
    bucket: &str,
    topic_arn: &str,
    suffixes: &[&str],
) -> Result<(), ProvisionError> {
    let config = |id: String, suffix: Option<&str>| {
        let mut b = TopicConfiguration::builder()
            .id(id)
            .topic_arn(topic_arn)
            .events(Event::from("s3:ObjectCreated:*"));
        if let Some(s) = suffix {
            b = b.filter(
                NotificationConfigurationFilter::builder()
                    .key(
                        S3KeyFilter::builder()
                            .filter_rules(
                                FilterRule::builder()
                                    .name(FilterRuleName::Suffix)
                                    .value(s)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            );
        }
        b.build()
            .map_err(|e| fail(format!("notifications of {bucket}"))(e.to_string()))
    };
    let mut configs = Vec::new();
    if suffixes.is_empty() {
        configs.push(config("all-created".into(), None)?);
    }
    for (i, s) in suffixes.iter().enumerate() {
        configs.push(config(format!("created-suffix-{i}"), Some(s))?);
    }
    c.s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .set_topic_configurations(Some(configs))
                .build(),
        )
        .send()
        .await
        .map_err(|e| fail(format!("notifications of {bucket}"))(describe(&e)))?;
    Ok(())
}

/// Create the metadata table (`pk`/`sk` strings, on-demand) unless it exists, wait until it is
/// active, and enable TTL on `ttl`.
///
/// # Errors
/// When DynamoDB refuses or the table does not become active in 60 s.
pub async fn ensure_table(c: &Clients, table: &str) -> Result<(), ProvisionError> {
    let err = |m: String| fail(format!("table {table}"))(m);
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| err(e.to_string()))
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| err(e.to_string()))
    };
    let created = c
        .dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(PK)?)
        .attribute_definitions(attr(SK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(err(describe(&e))),
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = c
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| err(describe(&e)))?;
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(err("not active after 60 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ttl = c
        .dynamodb
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| err(describe(&e)))?;
    let enabled = ttl
        .time_to_live_description()
        .and_then(|d| d.attribute_name())
        == Some(TTL);
    if !enabled {
        c.dynamodb
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL)
                    .build()
                    .map_err(|e| err(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| err(describe(&e)))?;
    }
    Ok(())
}

/// Which filter-policy features the endpoint implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterDialect {
    /// Amazon SNS: every policy of [`crate::topology`], `$or` included.
    Sns,
    /// An emulator without `$or` in message-body policies (moto 5.2.1).
    NoOr,
}

/// The topic's name when `topic` is a name, or the name part of an ARN.
pub fn topic_name(topic: &str) -> &str {
    topic.rsplit(':').next().unwrap_or(topic)
}

/// Declare everything prism needs, named after `resources` (bucket and table names; the topic
/// named after `resources.topic_arn`'s last segment) and the queue names of
/// [`crate::topology`], each with the settings `queue_settings` gives for its name (visibility
/// timeout and receives before dead-lettering come from each worker's config).
///
/// `dialect` says whether the endpoint evaluates `$or` in message-body filter policies. SNS
/// does; moto 5.2.1 does not (its matcher raises on the metadata policy's `$or` and the event
/// is then dropped for *every* subscription of the topic), so on emulators the metadata
/// subscription is left unfiltered: the metadata writer skips what is not for it, at the cost
/// of more messages.
///
/// # Errors
/// The first step that fails.
pub async fn provision(
    c: &Clients,
    resources: &Resources,
    queue_settings: &(dyn Fn(&'static str) -> QueueSettings + Sync),
    dialect: FilterDialect,
) -> Result<Provisioned, ProvisionError> {
    for b in [
        &resources.uploads_bucket,
        &resources.media_bucket,
        &resources.archive_bucket,
    ] {
        ensure_bucket(c, b).await?;
    }
    let topic_arn = ensure_topic(c, topic_name(&resources.topic_arn)).await?;
    allow_s3_to_publish(c, &topic_arn).await?;
    let mut queues = HashMap::new();
    let subs = [
        (
            topology::RESIZE_QUEUE,
            Some(topology::resize_filter(&resources.uploads_bucket)),
        ),
        (
            topology::METADATA_QUEUE,
            (dialect == FilterDialect::Sns).then(|| {
                topology::metadata_filter(&resources.uploads_bucket, &resources.media_bucket)
            }),
        ),
        (topology::ARCHIVE_QUEUE, None),
    ];
    for (name, filter) in subs {
        let q = ensure_queue(c, &queue_settings(name)).await?;
        subscribe_queue(c, &topic_arn, &q, filter.as_ref(), true).await?;
        queues.insert(name, q);
    }
    // Notifications last: S3 validates the destination (and sends s3:TestEvent) when they are
    // configured, so the topic and its subscriptions must exist.
    ensure_notifications(c, &resources.uploads_bucket, &topic_arn, &[]).await?;
    ensure_notifications(
        c,
        &resources.media_bucket,
        &topic_arn,
        &topology::media_notification_suffixes(),
    )
    .await?;
    ensure_table(c, &resources.table_name).await?;
    Ok(Provisioned {
        resources: Resources {
            topic_arn,
            ..resources.clone()
        },
        queues,
    })
}
