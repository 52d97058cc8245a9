//! Deploy the CDK app's stateful template onto moto, as CloudFormation would, so the end-to-end
//! tests run on the names and wiring the deployed stack declares.
//!
//! moto's own CloudFormation cannot create this template (it has no `AWS::SNS::Subscription`,
//! no `AWS::SecretsManager::Secret`, and runs no custom-resource Lambdas, which is how the CDK
//! sets bucket notifications). So this interpreter reads the template
//! (`cdk/test/fixtures/Prism-dev-Stateful.template.json`, kept equal to what the app
//! synthesizes by `cdk/test/template-fixture.test.ts`) and makes what it declares through the
//! SDK: buckets, the topic, queues with their redrive policies, subscriptions with their filter
//! policies, the bucket notifications the `Custom::S3BucketNotifications` resources carry, and
//! the table. Names are generated the way CloudFormation does (stack, logical id, random
//! suffix), so nothing can rely on fixed names. The stack's outputs are then registered in
//! moto's CloudFormation under the stack's name, so `--stack` finds them with
//! `DescribeStacks`, as on AWS.
//!
//! Deliberate differences, each because moto does not model it: encryption (KMS keys and
//! SSE settings), policies (IAM, bucket, queue and topic policies; moto checks no permission)
//! and secrets (ECS injects them; no binary reads Secrets Manager) are skipped; a body filter
//! policy with a top-level `$or` is left off (moto 5.2.1 drops events for every subscription of
//! the topic when it meets one; the metadata writer skips what is not for it). Any other
//! resource type, or an intrinsic function this does not know, fails the deployment, so a new
//! resource in the stack must be handled here before the tests pass.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context as _, bail};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    S3KeyFilter, TopicConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};
use shared::adapter::aws::Clients;

/// The stateful template of a `dev`, ephemeral stage.
pub fn stateful_template() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../cdk/test/fixtures/Prism-dev-Stateful.template.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("read the template fixture"))
        .expect("the template fixture is JSON")
}

/// Resource types made here, in the order they are made (each only refers to earlier ones).
const MADE: [&str; 6] = [
    "AWS::S3::Bucket",
    "AWS::SNS::Topic",
    "AWS::SQS::Queue",
    "AWS::SNS::Subscription",
    "Custom::S3BucketNotifications",
    "AWS::DynamoDB::Table",
];

/// Resource types with no effect on moto (see the module docs); they get placeholder ids.
const SKIPPED: [&str; 12] = [
    "AWS::KMS::Key",
    "AWS::SecretsManager::Secret",
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::Lambda::Function",
    "Custom::S3AutoDeleteObjects",
    "AWS::CDK::Metadata",
    "AWS::Logs::LogGroup",
    "AWS::CloudWatch::Alarm",
];

const ACCOUNT: &str = "123456789012";

/// What a made resource answers to `Ref` and `Fn::GetAtt`.
#[derive(Debug, Clone, Default)]
struct Physical {
    reference: String,
    attrs: HashMap<&'static str, String>,
}

struct Deployer<'a> {
    c: &'a Clients,
    stack: String,
    resources: BTreeMap<String, Value>,
    made: HashMap<String, Physical>,
}

/// Deploy `template` as stack `stack` on the clients' endpoint (moto) and register its outputs
/// there. Returns the outputs.
pub async fn deploy(
    c: &Clients,
    stack: &str,
    template: &Value,
) -> anyhow::Result<HashMap<String, String>> {
    let resources: BTreeMap<String, Value> = template["Resources"]
        .as_object()
        .context("no Resources")?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (id, r) in &resources {
        let ty = r["Type"].as_str().unwrap_or_default();
        anyhow::ensure!(
            MADE.contains(&ty) || SKIPPED.contains(&ty),
            "{id}: resource type {ty} is neither made nor deliberately skipped on moto"
        );
        anyhow::ensure!(
            r.get("Condition").is_none(),
            "{id}: conditions are not interpreted"
        );
    }
    let mut d = Deployer {
        c,
        stack: stack.to_owned(),
        resources,
        made: HashMap::new(),
    };
    for (id, r) in d.resources.clone() {
        let ty = r["Type"].as_str().unwrap_or_default();
        if SKIPPED.contains(&ty) {
            let arn = format!(
                "arn:aws:{}:{}:{ACCOUNT}:{}",
                ty.split("::").nth(1).unwrap_or("x").to_lowercase(),
                c.region,
                d.name(&id, 64)
            );
            d.made.insert(
                id,
                Physical {
                    reference: arn.clone(),
                    attrs: HashMap::from([("Arn", arn)]),
                },
            );
        }
    }
    for ty in MADE {
        // Queues that others dead-letter into first.
        let mut ids: Vec<(String, Value)> = d
            .resources
            .iter()
            .filter(|(_, r)| r["Type"] == ty)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ids.sort_by_key(|(_, r)| r["Properties"].get("RedrivePolicy").is_some());
        for (id, r) in ids {
            let p = d.resolve(&r["Properties"])?;
            let physical = d
                .make(ty, &id, &p)
                .await
                .with_context(|| format!("{ty} {id}"))?;
            d.made.insert(id, physical);
        }
    }
    let mut outputs = HashMap::new();
    for (k, o) in template["Outputs"].as_object().context("no Outputs")? {
        let v = d.resolve(&o["Value"])?;
        let v = v
            .as_str()
            .with_context(|| format!("output {k} is not a string: {v}"))?;
        outputs.insert(k.clone(), v.to_owned());
    }
    register(c, stack, &outputs).await?;
    Ok(outputs)
}

/// Register `outputs` as stack `stack` in moto's CloudFormation (one resource that makes
/// nothing, the outputs as literals).
pub async fn register(
    c: &Clients,
    stack: &str,
    outputs: &HashMap<String, String>,
) -> anyhow::Result<()> {
    let body = json!({
        "Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": outputs
            .iter()
            .map(|(k, v)| (k.clone(), json!({"Value": v})))
            .collect::<serde_json::Map<String, Value>>(),
    });
    aws_sdk_cloudformation::Client::new(&c.sdk)
        .create_stack()
        .stack_name(stack)
        .template_body(body.to_string())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("CreateStack {stack}: {e:?}"))?;
    Ok(())
}

fn s(v: &Value, what: &str) -> anyhow::Result<String> {
    v.as_str()
        .map(str::to_owned)
        .or_else(|| v.as_i64().map(|n| n.to_string()))
        .or_else(|| v.as_bool().map(|b| b.to_string()))
        .with_context(|| format!("{what}: expected a scalar, got {v}"))
}

impl Deployer<'_> {
    /// A CloudFormation-style generated name: `{stack}-{logical id}-{suffix}`, at most `max`.
    fn name(&self, id: &str, max: usize) -> String {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let mut base = format!("{}-{id}", self.stack);
        base.truncate(max.saturating_sub(suffix.len() + 1));
        format!("{base}-{suffix}")
    }

    fn resolve(&self, v: &Value) -> anyhow::Result<Value> {
        Ok(match v {
            Value::Object(m) if m.len() == 1 && m.contains_key("Ref") => {
                let r = s(&m["Ref"], "Ref")?;
                Value::String(match r.as_str() {
                    "AWS::Region" => self.c.region.clone(),
                    "AWS::AccountId" => ACCOUNT.to_owned(),
                    "AWS::Partition" => "aws".to_owned(),
                    "AWS::StackName" => self.stack.clone(),
                    "AWS::URLSuffix" => "amazonaws.com".to_owned(),
                    _ => self
                        .made
                        .get(&r)
                        .with_context(|| format!("Ref to {r}, which is not made yet"))?
                        .reference
                        .clone(),
                })
            }
            Value::Object(m) if m.len() == 1 && m.contains_key("Fn::GetAtt") => {
                let (id, attr) = (
                    s(&m["Fn::GetAtt"][0], "GetAtt")?,
                    s(&m["Fn::GetAtt"][1], "GetAtt")?,
                );
                let p = self
                    .made
                    .get(&id)
                    .with_context(|| format!("GetAtt on {id}, which is not made yet"))?;
                Value::String(
                    p.attrs
                        .get(attr.as_str())
                        .with_context(|| format!("GetAtt {id}.{attr} is not known"))?
                        .clone(),
                )
            }
            Value::Object(m) if m.len() == 1 && m.contains_key("Fn::Join") => {
                let sep = s(&m["Fn::Join"][0], "Join separator")?;
                let parts = m["Fn::Join"][1].as_array().context("Join list")?;
                let parts: anyhow::Result<Vec<String>> = parts
                    .iter()
                    .map(|p| s(&self.resolve(p)?, "Join part"))
                    .collect();
                Value::String(parts?.join(&sep))
            }
            Value::Object(m) => {
                if let Some(k) = m.keys().find(|k| k.starts_with("Fn::")) {
                    bail!("intrinsic {k} is not interpreted");
                }
                Value::Object(
                    m.iter()
                        .map(|(k, v)| Ok((k.clone(), self.resolve(v)?)))
                        .collect::<anyhow::Result<_>>()?,
                )
            }
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|v| self.resolve(v))
                    .collect::<anyhow::Result<_>>()?,
            ),
            other => other.clone(),
        })
    }

    async fn make(&self, ty: &str, id: &str, p: &Value) -> anyhow::Result<Physical> {
        let c = self.c;
        match ty {
            "AWS::S3::Bucket" => {
                anyhow::ensure!(p.get("BucketName").is_none(), "fixed bucket names");
                let name = self.name(id, 63).to_lowercase();
                shared::adapter::aws::provision::ensure_bucket(c, &name).await?;
                Ok(Physical {
                    reference: name.clone(),
                    attrs: HashMap::from([("Arn", format!("arn:aws:s3:::{name}"))]),
                })
            }
            "AWS::SNS::Topic" => {
                anyhow::ensure!(p.get("TopicName").is_none(), "fixed topic names");
                let name = self.name(id, 256);
                let arn = shared::adapter::aws::provision::ensure_topic(c, &name).await?;
                Ok(Physical {
                    reference: arn.clone(),
                    attrs: HashMap::from([("TopicName", name), ("TopicArn", arn)]),
                })
            }
            "AWS::SQS::Queue" => {
                anyhow::ensure!(p.get("QueueName").is_none(), "fixed queue names");
                let name = self.name(id, 80);
                let mut req = c.sqs.create_queue().queue_name(&name);
                for (k, attr) in [
                    ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
                    (
                        "MessageRetentionPeriod",
                        QueueAttributeName::MessageRetentionPeriod,
                    ),
                    ("MaximumMessageSize", QueueAttributeName::MaximumMessageSize),
                    (
                        "ReceiveMessageWaitTimeSeconds",
                        QueueAttributeName::ReceiveMessageWaitTimeSeconds,
                    ),
                ] {
                    if let Some(v) = p.get(k) {
                        req = req.attributes(attr, s(v, k)?);
                    }
                }
                if let Some(r) = p.get("RedrivePolicy") {
                    req = req.attributes(QueueAttributeName::RedrivePolicy, r.to_string());
                }
                let url = req
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("CreateQueue: {e:?}"))?
                    .queue_url
                    .context("no queue URL")?;
                let arn = format!("arn:aws:sqs:{}:{ACCOUNT}:{name}", c.region);
                Ok(Physical {
                    reference: url,
                    attrs: HashMap::from([("Arn", arn), ("QueueName", name)]),
                })
            }
            "AWS::SNS::Subscription" => {
                let mut req = c
                    .sns
                    .subscribe()
                    .topic_arn(s(&p["TopicArn"], "TopicArn")?)
                    .protocol(s(&p["Protocol"], "Protocol")?)
                    .endpoint(s(&p["Endpoint"], "Endpoint")?)
                    .return_subscription_arn(true);
                if let Some(v) = p.get("RawMessageDelivery") {
                    req = req.attributes("RawMessageDelivery", s(v, "RawMessageDelivery")?);
                }
                let moto_reads_it = p
                    .get("FilterPolicy")
                    .is_some_and(|f| f.get("$or").is_none());
                if moto_reads_it {
                    req = req.attributes("FilterPolicy", p["FilterPolicy"].to_string());
                    if let Some(v) = p.get("FilterPolicyScope") {
                        req = req.attributes("FilterPolicyScope", s(v, "FilterPolicyScope")?);
                    }
                }
                let arn = req
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("Subscribe: {e:?}"))?
                    .subscription_arn
                    .unwrap_or_default();
                Ok(Physical {
                    reference: arn,
                    attrs: HashMap::new(),
                })
            }
            "Custom::S3BucketNotifications" => {
                let bucket = s(&p["BucketName"], "BucketName")?;
                let cfg = &p["NotificationConfiguration"];
                for k in cfg.as_object().context("NotificationConfiguration")?.keys() {
                    anyhow::ensure!(k == "TopicConfigurations", "{k} is not interpreted");
                }
                let mut topics = Vec::new();
                for t in cfg["TopicConfigurations"].as_array().context("topics")? {
                    let mut b =
                        TopicConfiguration::builder().topic_arn(s(&t["TopicArn"], "TopicArn")?);
                    for e in t["Events"].as_array().context("Events")? {
                        b = b.events(Event::from(s(e, "event")?.as_str()));
                    }
                    if let Some(rules) = t.pointer("/Filter/Key/FilterRules") {
                        let mut key = S3KeyFilter::builder();
                        for r in rules.as_array().context("FilterRules")? {
                            key = key.filter_rules(
                                FilterRule::builder()
                                    .name(FilterRuleName::from(s(&r["Name"], "Name")?.as_str()))
                                    .value(s(&r["Value"], "Value")?)
                                    .build(),
                            );
                        }
                        b = b.filter(
                            NotificationConfigurationFilter::builder()
                                .key(key.build())
                                .build(),
                        );
                    }
                    topics.push(b.build().map_err(|e| anyhow::anyhow!("{e}"))?);
                }
                c.s3.put_bucket_notification_configuration()
                    .bucket(&bucket)
                    .notification_configuration(
                        NotificationConfiguration::builder()
                            .set_topic_configurations(Some(topics))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("PutBucketNotificationConfiguration: {e:?}"))?;
                Ok(Physical::default())
            }
            "AWS::DynamoDB::Table" => {
                anyhow::ensure!(p.get("TableName").is_none(), "fixed table names");
                let name = self.name(id, 255);
                let key = |k: &Value| -> anyhow::Result<KeySchemaElement> {
                    Ok(KeySchemaElement::builder()
                        .attribute_name(s(&k["AttributeName"], "AttributeName")?)
                        .key_type(KeyType::from(s(&k["KeyType"], "KeyType")?.as_str()))
                        .build()?)
                };
                let mut req =
                    c.dynamodb
                        .create_table()
                        .table_name(&name)
                        .billing_mode(BillingMode::from(
                            s(&p["BillingMode"], "BillingMode")?.as_str(),
                        ));
                for a in p["AttributeDefinitions"].as_array().context("attributes")? {
                    req = req.attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(s(&a["AttributeName"], "AttributeName")?)
                            .attribute_type(ScalarAttributeType::from(
                                s(&a["AttributeType"], "AttributeType")?.as_str(),
                            ))
                            .build()?,
                    );
                }
                for k in p["KeySchema"].as_array().context("KeySchema")? {
                    req = req.key_schema(key(k)?);
                }
                for g in p["GlobalSecondaryIndexes"].as_array().into_iter().flatten() {
                    let mut b = GlobalSecondaryIndex::builder()
                        .index_name(s(&g["IndexName"], "IndexName")?)
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::from(
                                    s(&g["Projection"]["ProjectionType"], "ProjectionType")?
                                        .as_str(),
                                ))
                                .build(),
                        );
                    for k in g["KeySchema"].as_array().context("index KeySchema")? {
                        b = b.key_schema(key(k)?);
                    }
                    req = req.global_secondary_indexes(b.build()?);
                }
                req.send()
                    .await
                    .map_err(|e| anyhow::anyhow!("CreateTable: {e:?}"))?;
                if let Some(ttl) = p.get("TimeToLiveSpecification") {
                    c.dynamodb
                        .update_time_to_live()
                        .table_name(&name)
                        .time_to_live_specification(
                            TimeToLiveSpecification::builder()
                                .attribute_name(s(&ttl["AttributeName"], "AttributeName")?)
                                .enabled(ttl["Enabled"].as_bool().unwrap_or(false))
                                .build()?,
                        )
                        .send()
                        .await
                        .map_err(|e| anyhow::anyhow!("UpdateTimeToLive: {e:?}"))?;
                }
                let arn = format!("arn:aws:dynamodb:{}:{ACCOUNT}:table/{name}", c.region);
                Ok(Physical {
                    reference: name,
                    attrs: HashMap::from([("Arn", arn)]),
                })
            }
            other => bail!("{other} is not made"),
        }
    }
}
