//! AWS adapter paths moto cannot exercise, on SDK clients mocked with aws-smithy-mocks: error
//! classification from real wire error bodies, `DeleteMessageBatch` chunking and per-entry
//! failures, `BatchWriteItem` unprocessed-item retries (moto never returns them), and
//! conditional-check failures.

#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::{Response as HttpResponse, StatusCode};
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use shared::adapter::aws::{Clients, DynamoMetadataStore, S3BlobStore, SqsQueue};
use shared::port::{
    BlobStore, BlobStoreError, MetadataStore, MetadataStoreError, NewBatch, NewFile, PutOptions,
    Queue, QueueError,
};

fn no_rules() -> Vec<&'static Rule> {
    Vec::new()
}

fn clients(
    s3: Option<aws_sdk_s3::Client>,
    sqs: Option<aws_sdk_sqs::Client>,
    dynamodb: Option<aws_sdk_dynamodb::Client>,
) -> Clients {
    let s3 = s3.unwrap_or_else(|| mock_client!(aws_sdk_s3, no_rules()));
    Clients {
        sdk: aws_config::SdkConfig::builder().build(),
        s3_presign: s3.clone(),
        s3,
        sqs: sqs.unwrap_or_else(|| mock_client!(aws_sdk_sqs, no_rules())),
        sns: mock_client!(aws_sdk_sns, no_rules()),
        dynamodb: dynamodb.unwrap_or_else(|| mock_client!(aws_sdk_dynamodb, no_rules())),
        region: "us-east-1".into(),
        endpoint_url: None,
    }
}

fn xml_error(status: u16, code: &str) -> HttpResponse {
    HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>m</Message></Error>"
        )),
    )
}

fn json_error(status: u16, kind: &str) -> HttpResponse {
    let mut r = HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(format!("{{\"__type\":\"{kind}\",\"message\":\"m\"}}")),
    );
    r.headers_mut()
        .insert("content-type", "application/x-amz-json-1.0");
    r
}

fn s3_with(rule: &Rule) -> S3BlobStore {
    let s3 = mock_client!(aws_sdk_s3, RuleMode::Sequential, [rule], |c| c
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled()));
    S3BlobStore::new(&clients(Some(s3), None, None), "bucket")
}

#[tokio::test]
async fn s3_failures_are_classified_by_variant_status_and_code() {
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::types::error::NoSuchKey;

    let missing = mock!(aws_sdk_s3::Client::get_object)
        .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build()));
    let e = s3_with(&missing).get("k").await.unwrap_err();
    assert!(matches!(e, BlobStoreError::NotFound(_)), "{e:?}");
    assert!(!e.is_transient());

    let slow =
        mock!(aws_sdk_s3::Client::get_object).then_http_response(|| xml_error(503, "SlowDown"));
    let e = s3_with(&slow).get("k").await.unwrap_err();
    assert!(matches!(e, BlobStoreError::Throttled(_)), "{e:?}");
    assert!(e.is_transient());

    let broken = mock!(aws_sdk_s3::Client::get_object)
        .then_http_response(|| xml_error(500, "InternalError"));
    let e = s3_with(&broken).get("k").await.unwrap_err();
    assert!(matches!(e, BlobStoreError::Unavailable(_)), "{e:?}");

    let denied =
        mock!(aws_sdk_s3::Client::put_object).then_http_response(|| xml_error(403, "AccessDenied"));
    let e = s3_with(&denied)
        .put("k", Bytes::from_static(b"x"), PutOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, BlobStoreError::Other(_)), "{e:?}");
    assert!(!e.is_transient());
    assert!(e.to_string().contains("AccessDenied"), "{e}");
}

fn sqs_with(rules: &[&Rule]) -> SqsQueue {
    let sqs = mock_client!(
        aws_sdk_sqs,
        RuleMode::MatchAny,
        rules.iter().copied(),
        |c| c.retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
    );
    SqsQueue::new(
        &clients(None, Some(sqs), None),
        "q",
        "https://q",
        "https://dlq",
    )
}

#[tokio::test]
async fn sqs_stale_receipts_and_throttling_are_classified() {
    use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
    use aws_sdk_sqs::types::error::ReceiptHandleIsInvalid;

    let stale = mock!(aws_sdk_sqs::Client::delete_message).then_error(|| {
        DeleteMessageError::ReceiptHandleIsInvalid(ReceiptHandleIsInvalid::builder().build())
    });
    let e = sqs_with(&[&stale]).ack("r").await.unwrap_err();
    assert!(matches!(e, QueueError::StaleReceipt), "{e:?}");

    let throttled = mock!(aws_sdk_sqs::Client::receive_message)
        .then_http_response(|| json_error(400, "com.amazonaws.sqs#RequestThrottled"));
    let e = sqs_with(&[&throttled])
        .receive(10, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(e, QueueError::Throttled(_)), "{e:?}");

    let down = mock!(aws_sdk_sqs::Client::send_message)
        .then_http_response(|| json_error(500, "com.amazonaws.sqs#InternalError"));
    let e = sqs_with(&[&down]).send("x").await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
}

#[tokio::test]
async fn ack_batch_chunks_by_ten_and_reports_every_failed_entry() {
    use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchOutput;
    use aws_sdk_sqs::types::{BatchResultErrorEntry, DeleteMessageBatchResultEntry};

    // Every chunk: entry "1" failed with a stale receipt, entry "2" with a server fault.
    let rule = mock!(aws_sdk_sqs::Client::delete_message_batch)
        .match_requests(|r| r.entries().len() <= 10)
        .then_compute_output(|r| {
            let mut out = DeleteMessageBatchOutput::builder();
            for e in r.entries() {
                match e.id() {
                    "1" => {
                        out = out.failed(
                            BatchResultErrorEntry::builder()
                                .id("1")
                                .code("ReceiptHandleIsInvalid")
                                .sender_fault(true)
                                .build()
                                .unwrap(),
                        );
                    }
                    "2" => {
                        out = out.failed(
                            BatchResultErrorEntry::builder()
                                .id("2")
                                .code("InternalError")
                                .sender_fault(false)
                                .build()
                                .unwrap(),
                        );
                    }
                    id => {
                        out = out.successful(
                            DeleteMessageBatchResultEntry::builder()
                                .id(id)
                                .build()
                                .unwrap(),
                        );
                    }
                }
            }
            out.build().unwrap()
        });
    let q = sqs_with(&[&rule]);
    let receipts: Vec<String> = (0..25).map(|i| format!("r{i}")).collect();
    let failed = q.ack_batch(&receipts).await.unwrap();
    assert_eq!(
        rule.num_calls(),
        3,
        "25 receipts take three requests of at most 10"
    );
    let got: BTreeMap<&str, bool> = failed
        .iter()
        .map(|(r, e)| (r.as_str(), matches!(e, QueueError::StaleReceipt)))
        .collect();
    let want = BTreeMap::from([
        ("r1", true),
        ("r2", false),
        ("r11", true),
        ("r12", false),
        ("r21", true),
        ("r22", false),
    ]);
    assert_eq!(got, want);
    assert!(failed.iter().any(|(_, e)| e.is_transient()));
}

fn put(i: usize) -> WriteRequest {
    WriteRequest::builder()
        .put_request(
            PutRequest::builder()
                .item("pk", AttributeValue::S(format!("p{i}")))
                .item("sk", AttributeValue::S("s".into()))
                .build()
                .unwrap(),
        )
        .build()
}

#[tokio::test]
async fn batch_write_retries_unprocessed_items_until_written() {
    use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemOutput;

    // First call: 3 of the chunk come back unprocessed; second call (only those 3): all done.
    let rule = mock!(aws_sdk_dynamodb::Client::batch_write_item)
        .sequence()
        .output(|| {
            BatchWriteItemOutput::builder()
                .set_unprocessed_items(Some(HashMap::from([(
                    "t".to_owned(),
                    vec![put(1), put(2), put(3)],
                )])))
                .build()
        })
        .output(|| BatchWriteItemOutput::builder().build())
        .repeatedly()
        .build();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let sizes = mock!(aws_sdk_dynamodb::Client::batch_write_item)
        .match_requests(move |r| {
            let n = r
                .request_items()
                .map_or(0, |m| m.values().map(Vec::len).sum());
            s.lock().unwrap().push(n);
            false
        })
        .then_output(|| BatchWriteItemOutput::builder().build());
    let ddb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&sizes, &rule]);
    let store = DynamoMetadataStore::with_client(ddb, "t");
    store
        .batch_write_all((0..30).map(put).collect())
        .await
        .unwrap();
    // 30 items: a chunk of 25 (3 unprocessed, retried alone), then a chunk of 5.
    assert_eq!(*seen.lock().unwrap(), vec![25, 3, 5]);
    assert_eq!(rule.num_calls(), 3);
}

#[tokio::test]
async fn batch_write_gives_up_as_throttled_when_items_stay_unprocessed() {
    use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemOutput;

    let rule = mock!(aws_sdk_dynamodb::Client::batch_write_item).then_output(|| {
        BatchWriteItemOutput::builder()
            .set_unprocessed_items(Some(HashMap::from([("t".to_owned(), vec![put(1)])])))
            .build()
    });
    let ddb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]);
    let store = DynamoMetadataStore::with_client(ddb, "t");
    let e = store.batch_write_all(vec![put(1)]).await.unwrap_err();
    assert!(matches!(e, MetadataStoreError::Throttled(_)), "{e:?}");
    assert!(rule.num_calls() > 1);
}

fn batch() -> NewBatch {
    let now = time::OffsetDateTime::now_utc();
    NewBatch {
        batch_id: "b1".into(),
        principal: "p".into(),
        created_at: now,
        expires_at: now + time::Duration::hours(1),
        request: serde_json::from_value(serde_json::json!({"widths": [320], "formats": ["webp"]}))
            .unwrap(),
        callback_url: None,
        traceparent: None,
        files: vec![NewFile {
            file_id: "f1".into(),
            name: "a.jpg".into(),
            content_type: "image/jpeg".into(),
            size: 3,
        }],
        max_pending_uploads: Some(10),
        idempotency: None,
    }
}

#[tokio::test]
async fn dynamo_conditional_failures_and_throttling_are_classified() {
    use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemOutput;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;

    // The batch item's condition failed: the id is taken.
    let cancelled = |reasons: [&'static str; 4]| {
        let reasons = reasons.to_vec();
        move || {
            let mut b = TransactionCanceledException::builder();
            for r in &reasons {
                b = b.cancellation_reasons(CancellationReason::builder().code(*r).build());
            }
            TransactWriteItemsError::TransactionCanceledException(b.build())
        }
    };
    let written = mock!(aws_sdk_dynamodb::Client::batch_write_item)
        .then_output(|| BatchWriteItemOutput::builder().build());
    let dup = mock!(aws_sdk_dynamodb::Client::transact_write_items).then_error(cancelled([
        "ConditionalCheckFailed",
        "None",
        "None",
        "None",
    ]));
    // The item found is another create's (no token of this call).
    let other = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
        GetItemOutput::builder()
            .item(
                "create_token",
                aws_sdk_dynamodb::types::AttributeValue::S("other".into()),
            )
            .build()
    });
    let ddb = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        [&written, &dup, &other]
    );
    let e = DynamoMetadataStore::with_client(ddb, "t")
        .create_batch(&batch())
        .await
        .unwrap_err();
    assert!(matches!(e, MetadataStoreError::AlreadyExists(_)), "{e:?}");

    // The pending counter's condition failed: over quota, with the count read back.
    let quota = mock!(aws_sdk_dynamodb::Client::transact_write_items).then_error(cancelled([
        "None",
        "ConditionalCheckFailed",
        "None",
        "None",
    ]));
    let counter = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
        GetItemOutput::builder()
            .item(
                "pending",
                aws_sdk_dynamodb::types::AttributeValue::N("10".into()),
            )
            .build()
    });
    let ddb = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        [&written, &quota, &counter]
    );
    let e = DynamoMetadataStore::with_client(ddb, "t")
        .create_batch(&batch())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            MetadataStoreError::QuotaExceeded {
                pending: 10,
                quota: 10
            }
        ),
        "{e:?}"
    );

    let hot = mock!(aws_sdk_dynamodb::Client::batch_write_item).then_http_response(|| {
        json_error(
            400,
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        )
    });
    let ddb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&hot], |c| c
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled()));
    let e = DynamoMetadataStore::with_client(ddb, "t")
        .create_batch(&batch())
        .await
        .unwrap_err();
    assert!(matches!(e, MetadataStoreError::Throttled(_)), "{e:?}");
}

/// A DLQ message whose code attribute is not a code this version knows (set by an older
/// version, or by hand) lists under `internal`; one without the attribute was moved by the
/// redrive policy.
#[tokio::test]
async fn sqs_dead_letters_read_an_unknown_code_attribute_as_internal() {
    use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
    use aws_sdk_sqs::types::{Message, MessageAttributeValue};
    use shared::error::ErrorCode;
    use shared::port::DeadLetterReason;

    let message = |id: &str, code: Option<&str>| {
        let mut m = Message::builder().message_id(id).body(id);
        if let Some(code) = code {
            m = m.message_attributes(
                "prism-error-code",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(code)
                    .build()
                    .unwrap(),
            );
        }
        m.build()
    };
    let rule = mock!(aws_sdk_sqs::Client::receive_message).then_output(move || {
        ReceiveMessageOutput::builder()
            .messages(message("old", Some("decode_failed")))
            .messages(message("new", Some("undecodable_image")))
            .messages(message("moved", None))
            .build()
    });
    let dl = sqs_with(&[&rule]).dead_letters(10).await.unwrap();
    let got: Vec<_> = dl.iter().map(|d| (d.body.as_str(), d.reason())).collect();
    assert_eq!(
        got,
        [
            ("old", DeadLetterReason::Failed(ErrorCode::Internal)),
            ("new", DeadLetterReason::Failed(ErrorCode::UndecodableImage)),
            ("moved", DeadLetterReason::MaxReceiveCountExceeded),
        ]
    );
}
