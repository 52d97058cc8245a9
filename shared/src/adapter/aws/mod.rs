//! AWS adapters on aws-sdk-rust: [`S3BlobStore`], [`SqsQueue`], [`SnsTopic`] and
//! [`DynamoMetadataStore`], passing the same contract suites as the embedded ones (run against
//! moto server in the tests).
//!
//! AWS's own semantics (SQS visibility and batch-delete partial failures, S3 presigning and
//! event encoding, DynamoDB conditional writes) are subtle; what this module gets right:
//! - **Classification** ([`classify`]): throttling codes and 429 → throttled; 5xx, dispatch and
//!   response failures → unavailable; timeouts → timeout; modelled 4xx → permanent. Adapters
//!   match modelled error *variants* first (`NoSuchKey`, `ReceiptHandleIsInvalid`,
//!   `ConditionalCheckFailedException`, …), never message strings.
//! - **Emulators**: an `endpoint_url` (config or `AWS_ENDPOINT_URL`) switches S3 to path-style
//!   addressing; with an endpoint and no credentials in the environment, the emulator's
//!   conventional `test`/`test` credentials are used.
//! - **Timeouts** per service ([`Clients::new`]): the SQS attempt timeout is above the 20 s
//!   long-poll wait; S3, SNS and DynamoDB get shorter ones.
//! - **Checksums**: the presigning S3 client computes checksums only "when required", so no
//!   `x-amz-checksum-*` ends up in a presigned URL (aws-sdk-rust ≥ 1.69 broke presigned PUTs).

pub mod classify;
pub mod dynamo_metadata_store;
pub mod post_policy;
pub mod provision;
pub mod s3_blob_store;
pub mod sns_topic;
pub mod sqs_queue;
pub mod stack;
pub mod task_protection;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;

pub use dynamo_metadata_store::DynamoMetadataStore;
pub use s3_blob_store::S3BlobStore;
pub use sns_topic::SnsTopic;
pub use sqs_queue::SqsQueue;
pub use stack::AwsStack;

use crate::config::AwsConfig;

/// Region used when neither the config nor the environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// One client per service, built once and cloned (clients share pools and identity caches).
#[derive(Clone, Debug)]
pub struct Clients {
    /// The shared SDK config (region, credentials, endpoint).
    pub sdk: aws_config::SdkConfig,
    /// S3, for object reads and writes.
    pub s3: aws_sdk_s3::Client,
    /// S3 for presigning: checksum calculation "when required" only.
    pub s3_presign: aws_sdk_s3::Client,
    /// SQS: attempt timeout above the long-poll wait.
    pub sqs: aws_sdk_sqs::Client,
    /// SNS.
    pub sns: aws_sdk_sns::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The resolved region.
    pub region: String,
    /// The custom endpoint, if any (emulators).
    pub endpoint_url: Option<String>,
}

fn timeouts(attempt: Duration, operation: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(3100))
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build()
}

impl Clients {
    /// Load the SDK config through the default chain (env, profile, web identity, ECS task
    /// role, IMDS) with `cfg`'s region and endpoint on top, and build every client.
    pub async fn new(cfg: &AwsConfig) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(3));
        if let Some(region) = &cfg.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let endpoint = cfg.endpoint_url.as_ref().map(|u| {
            let s = u.as_str();
            s.strip_suffix('/').unwrap_or(s).to_owned()
        });
        if let Some(url) = &endpoint {
            loader = loader.endpoint_url(url.clone());
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
                && std::env::var_os("AWS_PROFILE").is_none()
            {
                // Emulators (moto, LocalStack) accept any credentials; don't probe IMDS for them.
                loader = loader
                    .credentials_provider(Credentials::new("test", "test", None, None, "emulator"));
            }
        }
        let sdk = loader.load().await;
        Self::from_sdk_config(sdk)
    }

    /// Build every client from a loaded SDK config.
    pub fn from_sdk_config(sdk: aws_config::SdkConfig) -> Self {
        let region = sdk
            .region()
            .map_or_else(|| DEFAULT_REGION.to_owned(), ToString::to_string);
        let endpoint_url = sdk.endpoint_url().map(str::to_owned);
        let custom_endpoint = endpoint_url.is_some();
        let region_or_default = |b: aws_sdk_s3::config::Builder| {
            if sdk.region().is_none() {
                b.region(aws_sdk_s3::config::Region::new(DEFAULT_REGION))
            } else {
                b
            }
        };
        let s3_conf = || {
            region_or_default(
                aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(custom_endpoint)
                    .timeout_config(timeouts(Duration::from_secs(30), Duration::from_secs(120))),
            )
        };
        let s3 = aws_sdk_s3::Client::from_conf(s3_conf().build());
        let s3_presign = aws_sdk_s3::Client::from_conf(
            s3_conf()
                .request_checksum_calculation(
                    aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                )
                .response_checksum_validation(
                    aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
                )
                .build(),
        );
        let region_obj = sdk
            .region()
            .cloned()
            .unwrap_or_else(|| aws_config::Region::new(DEFAULT_REGION));
        // Long polls wait up to 20 s: the attempt timeout must exceed that.
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .region(region_obj.clone())
                .timeout_config(timeouts(Duration::from_secs(30), Duration::from_secs(75)))
                .build(),
        );
        let sns = aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::config::Builder::from(&sdk)
                .region(region_obj.clone())
                .timeout_config(timeouts(Duration::from_secs(10), Duration::from_secs(30)))
                .build(),
        );
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .region(region_obj)
                .timeout_config(timeouts(Duration::from_secs(5), Duration::from_secs(20)))
                .build(),
        );
        Self {
            sdk,
            s3,
            s3_presign,
            sqs,
            sns,
            dynamodb,
            region,
            endpoint_url,
        }
    }
}
