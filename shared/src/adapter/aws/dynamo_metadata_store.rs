//! `DynamoMetadataStore`: batches and files in one DynamoDB table (`pk`/`sk` strings, TTL
//! attribute `ttl`), with the conditional semantics of the SQLite adapter.
//!
//! | item | `pk` | `sk` | holds |
//! |---|---|---|---|
//! | batch | `B#{batch}` | `#BATCH` | principal, times, request, callback, trace, `file_count`, `open_count` (files not terminal), `received_count`, `version`, the callback delivery's state (`wh_*`) |
//! | file | `B#{batch}` | `F#{file}` | `ord`, name, type, size, `status`, error, rendered |
//! | recent index | `RECENT` | `{created µs, 20 digits}#{batch}` | newest-first listing without a scan |
//! | pending uploads | `Q#{principal}` | `#PENDING` | `pending`: the principal's files awaiting upload (the quota) |
//! | expiry index | `EXPIRY` | `{expires µs, 20 digits}#{batch}` | batches whose files may still expire; removed once none can |
//! | outbox | `WEBHOOKS` | `{due µs, 20 digits}#{webhook id}` | a pending delivery: url, body, principal, attempts |
//! | outbox id | `W#{webhook id}` | `#W` | one delivery per id |
//! | image owner | `I#{file}` | `#OWNER` | `principal`, `batch_id`: scopes client events to the owner |
//! | image request | `I#{file}` | `E#{event}` | one per counted `IMAGE_REQUESTED` event (dedup) |
//! | request counter | `I#{file}` | `#COUNT` | `request_count`, `last_requested_at` |
//! | idempotency key | `K#{sha256(principal, key)}` | `#KEY` | `batch_id`, `request_sha256`, `expires_at`: a create's `Idempotency-Key`, put in the batch's transaction (conditioned on none unexpired) |
//!
//! A batch and its files share a partition, so one consistent `Query` reads a batch. A file
//! transition is one `TransactWriteItems`: the file update conditioned on the status just read,
//! and the batch counters conditioned on the `open_count` just read; the transition that takes
//! `open_count` from 1 to 0 also sets `completed_at`, so exactly one reports `batch_completed`
//! and a crash cannot separate a file's status from the batch's counts. A cancelled transaction
//! (a concurrent transition won) is re-read and retried. Counts are derived from the file items
//! at read time, like the SQLite adapter. Every transition also adds one to the batch's
//! `version` (what long-polls watch: one item) and, when the file leaves `awaiting_upload`,
//! takes it off its principal's `pending` counter in the same transaction. A batch is created
//! by one transaction too (batch item, `pending` raised under the quota's condition, the expiry
//! and recent indexes), after its file items, so a crash leaves at most unreachable files.
//!
//! The outbox is ordered by due time: claiming a delivery moves its item to the end of the
//! lease (delete + put, conditioned on the old item existing, so one claimer wins), and an
//! attempt is recorded the same way from the claimed key, so a claimer whose lease ran out
//! changes nothing.
//!
//! The recent, expiry and outbox indexes are one partition each: DynamoDB serves about 1,000 writes/s per partition key,
//! far above the rate batches are created at; a dashboard reads it with one `Query`.
//!
//! Every item carries `ttl` = the batch's upload expiry plus the retention period; reads filter
//! expired items out because DynamoDB deletes them lazily.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use time::OffsetDateTime;

use super::Clients;
use super::classify::{Fault, classify, describe};
use crate::port::metadata_store::{
    BatchCounts, BatchRecord, BatchStatus, BatchTrace, BatchVersion, ExpiredFile, FileError,
    FileRecord, FileStatus, MetadataStore, MetadataStoreError, NewBatch, NewWebhook, RenderedFile,
    Transition, WebhookAttempt, WebhookJob, WebhookState, WebhookStatus,
};

/// Partition key attribute.
pub const PK: &str = "pk";
/// Sort key attribute.
pub const SK: &str = "sk";
/// TTL attribute (epoch seconds).
pub const TTL: &str = "ttl";
/// Most items one `BatchWriteItem` takes.
pub const BATCH_WRITE_MAX: usize = 25;
/// Most keys one `BatchGetItem` takes.
pub const BATCH_GET_MAX: usize = 100;
/// Partition of the recent-batches index.
const RECENT_PK: &str = "RECENT";
/// Partition of the expiry index.
const EXPIRY_PK: &str = "EXPIRY";
/// Partition of the webhook outbox.
const OUTBOX_PK: &str = "WEBHOOKS";
const PENDING_SK: &str = "#PENDING";
const WEBHOOK_ID_SK: &str = "#W";

const BATCH_SK: &str = "#BATCH";
const COUNT_SK: &str = "#COUNT";
const OWNER_SK: &str = "#OWNER";
const IDEMPOTENCY_SK: &str = "#KEY";

/// The item of `principal`'s idempotency key `k`: hashed, so neither can be confused with the
/// other's separator or push the key past DynamoDB's limits.
fn idempotency_key(principal: &str, k: &str) -> HashMap<String, AttributeValue> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(principal.as_bytes());
    h.update([0]);
    h.update(k.as_bytes());
    key(
        format!("K#{}", hex::encode(h.finalize())),
        IDEMPOTENCY_SK.to_owned(),
    )
}

type SdkError<E> = aws_sdk_dynamodb::error::SdkError<E, aws_smithy_runtime_api::http::Response>;

fn classified<E>(op: &str, e: &SdkError<E>) -> MetadataStoreError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    let what = format!("DynamoDB {op}: {}", describe(e));
    match classify(e) {
        Fault::Throttled => MetadataStoreError::Throttled(what),
        Fault::Unavailable => MetadataStoreError::Unavailable(what),
        Fault::Timeout => MetadataStoreError::Timeout(what),
        Fault::Permanent => MetadataStoreError::Other(what),
    }
}

fn us(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

fn from_us(v: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn batch_pk(batch_id: &str) -> String {
    format!("B#{batch_id}")
}

fn pending_key(principal: &str) -> HashMap<String, AttributeValue> {
    key(format!("Q#{principal}"), PENDING_SK.to_owned())
}

/// A sort key that orders by time: 20 digits of µs since the epoch, then `#` and `id`.
fn timed_sk(t: OffsetDateTime, id: &str) -> String {
    format!("{:020}#{id}", us(t).max(0))
}

type TransactError =
    SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError>;

fn is_cancelled(e: &TransactError) -> bool {
    e.as_service_error()
        .is_some_and(|s| s.is_transaction_canceled_exception())
}

/// The cancellation reasons' codes of a cancelled transaction, one per item (`None` where that
/// item was not the cause).
fn cancel_codes(e: &TransactError) -> Vec<Option<String>> {
    match e.as_service_error() {
        Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => c
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().filter(|c| *c != "None").map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn key(pk: String, sk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

type Item = HashMap<String, AttributeValue>;

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn corrupt(what: &str) -> MetadataStoreError {
    MetadataStoreError::Other(format!("stored item is missing or has a bad {what}"))
}

fn json<T: serde::de::DeserializeOwned>(v: Option<&str>) -> Result<Option<T>, MetadataStoreError> {
    v.map(|v| {
        serde_json::from_str(v)
            .map_err(|e| MetadataStoreError::Other(format!("stored JSON is invalid: {e}")))
    })
    .transpose()
}

/// Batches and files in DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoMetadataStore {
    ddb: aws_sdk_dynamodb::Client,
    table: String,
    retention: Duration,
}

impl DynamoMetadataStore {
    /// The store in `table`; items expire 90 days after their batch's upload grants.
    pub fn new(clients: &Clients, table: &str) -> Self {
        Self::with_client(clients.dynamodb.clone(), table)
    }

    /// The store on a prebuilt client (tests use a mocked one).
    pub fn with_client(ddb: aws_sdk_dynamodb::Client, table: &str) -> Self {
        Self {
            ddb,
            table: table.to_owned(),
            retention: Duration::from_secs(90 * 24 * 3600),
        }
    }

    /// Keep items `retention` past their batch's upload expiry (then DynamoDB's TTL deletes them).
    #[must_use]
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    fn ttl(&self, expires_at: OffsetDateTime) -> i64 {
        (expires_at + self.retention).unix_timestamp()
    }

    fn expired(item: &Item, now: OffsetDateTime) -> bool {
        get_n(item, TTL).is_some_and(|t| t < now.unix_timestamp())
    }

    /// [`MetadataStoreError::IdempotencyKeyTaken`] when `principal`'s key `k` is recorded and
    /// unexpired at `now`.
    async fn idempotency_taken(
        &self,
        principal: &str,
        k: &str,
        now: OffsetDateTime,
    ) -> Result<Option<MetadataStoreError>, MetadataStoreError> {
        let Some(item) = self.get_item(idempotency_key(principal, k)).await? else {
            return Ok(None);
        };
        if get_n(&item, "expires_at").is_none_or(|e| e <= us(now)) {
            return Ok(None);
        }
        Ok(Some(MetadataStoreError::IdempotencyKeyTaken {
            batch_id: get_s(&item, "batch_id")
                .ok_or_else(|| corrupt("batch_id"))?
                .to_owned(),
            request_sha256: get_s(&item, "request_sha256")
                .ok_or_else(|| corrupt("request_sha256"))?
                .to_owned(),
        }))
    }

    async fn get_item(&self, k: Item) -> Result<Option<Item>, MetadataStoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .set_key(Some(k))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classified("GetItem", &e))?;
        Ok(out
            .item
            .filter(|i| !Self::expired(i, OffsetDateTime::now_utc())))
    }

    /// Write every request, 25 per `BatchWriteItem`, retrying `UnprocessedItems` with
    /// exponential backoff (DynamoDB returns them under load; the call itself succeeds).
    ///
    /// # Errors
    /// A classified failure, or [`MetadataStoreError::Throttled`] when items stay unprocessed.
    pub async fn batch_write_all(
        &self,
        requests: Vec<WriteRequest>,
    ) -> Result<(), MetadataStoreError> {
        for chunk in requests.chunks(BATCH_WRITE_MAX) {
            let mut pending = HashMap::from([(self.table.clone(), chunk.to_vec())]);
            let mut delay = Duration::from_millis(25);
            for attempt in 0.. {
                let out = self
                    .ddb
                    .batch_write_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                    .map_err(|e| classified("BatchWriteItem", &e))?;
                pending = out
                    .unprocessed_items
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(_, v)| !v.is_empty())
                    .collect();
                if pending.is_empty() {
                    break;
                }
                if attempt >= 8 {
                    return Err(MetadataStoreError::Throttled(format!(
                        "DynamoDB BatchWriteItem: {} items still unprocessed after {} attempts",
                        pending.values().map(Vec::len).sum::<usize>(),
                        attempt + 1
                    )));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
        Ok(())
    }

    /// Read many items by key, 100 per `BatchGetItem`, retrying `UnprocessedKeys`.
    async fn batch_get_all(&self, keys: Vec<Item>) -> Result<Vec<Item>, MetadataStoreError> {
        let mut items = Vec::new();
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| MetadataStoreError::Other(format!("batch get keys: {e}")))?,
            );
            let mut delay = Duration::from_millis(25);
            let mut attempt = 0;
            while let Some(keys) = pending.take() {
                let out = self
                    .ddb
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(|e| classified("BatchGetItem", &e))?;
                if let Some(mut r) = out.responses {
                    items.extend(r.remove(&self.table).unwrap_or_default());
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
                if pending.is_some() {
                    attempt += 1;
                    if attempt > 8 {
                        return Err(MetadataStoreError::Throttled(
                            "DynamoDB BatchGetItem: keys still unprocessed".into(),
                        ));
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        let now = OffsetDateTime::now_utc();
        items.retain(|i| !Self::expired(i, now));
        Ok(items)
    }

    async fn query_all(
        &self,
        pk: String,
        sk_after: Option<String>,
        newest_first: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, MetadataStoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .ddb
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .scan_index_forward(!newest_first)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start.take());
            q = match &sk_after {
                Some(after) => q
                    .key_condition_expression("#pk = :pk AND #sk > :after")
                    .expression_attribute_names("#sk", SK)
                    .expression_attribute_values(":after", s(after.clone())),
                None => q.key_condition_expression("#pk = :pk"),
            };
            if let Some(l) = limit {
                q = q.limit(i32::try_from(l.saturating_sub(items.len()).max(1)).unwrap_or(100));
            }
            let out = q.send().await.map_err(|e| classified("Query", &e))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() || limit.is_some_and(|l| items.len() >= l) {
                break;
            }
        }
        let now = OffsetDateTime::now_utc();
        items.retain(|i| !Self::expired(i, now));
        Ok(items)
    }

    async fn load_batch(&self, batch_id: &str) -> Result<Option<BatchRecord>, MetadataStoreError> {
        let items = self
            .query_all(batch_pk(batch_id), None, false, None)
            .await?;
        let Some(batch) = items.iter().find(|i| get_s(i, SK) == Some(BATCH_SK)) else {
            return Ok(None);
        };
        let mut files: Vec<(i64, FileRecord)> = Vec::new();
        for i in items
            .iter()
            .filter(|i| get_s(i, SK).is_some_and(|k| k.starts_with("F#")))
        {
            let status = get_s(i, "status")
                .and_then(FileStatus::parse)
                .ok_or_else(|| corrupt("status"))?;
            files.push((
                get_n(i, "ord").unwrap_or(0),
                FileRecord {
                    file_id: get_s(i, "file_id")
                        .ok_or_else(|| corrupt("file_id"))?
                        .to_owned(),
                    name: get_s(i, "name").unwrap_or_default().to_owned(),
                    content_type: get_s(i, "content_type").unwrap_or_default().to_owned(),
                    size: get_n(i, "size").unwrap_or(0).max(0) as u64,
                    status,
                    error: json::<FileError>(get_s(i, "error"))?,
                    rendered: json::<RenderedFile>(get_s(i, "rendered"))?,
                    request_count: 0,
                    last_requested_at: None,
                },
            ));
        }
        files.sort_by_key(|(ord, _)| *ord);
        let mut files: Vec<FileRecord> = files.into_iter().map(|(_, f)| f).collect();
        let counters = self
            .batch_get_all(
                files
                    .iter()
                    .map(|f| key(format!("I#{}", f.file_id), COUNT_SK.to_owned()))
                    .collect(),
            )
            .await?;
        let counters: HashMap<&str, &Item> = counters
            .iter()
            .filter_map(|i| {
                get_s(i, PK)
                    .and_then(|p| p.strip_prefix("I#"))
                    .map(|id| (id, i))
            })
            .collect();
        let mut counts = BatchCounts::default();
        for f in &mut files {
            if let Some(c) = counters.get(f.file_id.as_str()) {
                f.request_count = get_n(c, "request_count").unwrap_or(0).max(0) as u64;
                f.last_requested_at = get_n(c, "last_requested_at").map(from_us);
            }
            counts.add(f.status);
        }
        let completed_at = get_n(batch, "completed_at").map(from_us);
        let status = BatchStatus::derive(completed_at.is_some(), &counts);
        Ok(Some(BatchRecord {
            batch_id: batch_id.to_owned(),
            principal: get_s(batch, "principal").unwrap_or_default().to_owned(),
            status,
            created_at: from_us(get_n(batch, "created_at").ok_or_else(|| corrupt("created_at"))?),
            expires_at: from_us(get_n(batch, "expires_at").ok_or_else(|| corrupt("expires_at"))?),
            completed_at,
            request: json(get_s(batch, "request"))?.ok_or_else(|| corrupt("request"))?,
            callback_url: get_s(batch, "callback_url").map(str::to_owned),
            traceparent: get_s(batch, "traceparent").map(str::to_owned),
            announced_at: get_n(batch, "announced_at").map(from_us),
            counts,
            files,
            version: get_n(batch, "version").unwrap_or(0).max(0) as u64,
            webhook: webhook_state(batch),
        }))
    }

    async fn transition(
        &self,
        batch_id: &str,
        file_id: &str,
        to: FileStatus,
        extra: Option<(&'static str, String)>,
        at: OffsetDateTime,
    ) -> Result<Transition, MetadataStoreError> {
        let not_found = || MetadataStoreError::NotFound(format!("file {batch_id}/{file_id}"));
        let file_key = key(batch_pk(batch_id), format!("F#{file_id}"));
        let batch_key = key(batch_pk(batch_id), BATCH_SK.to_owned());
        let mut delay = Duration::from_millis(10);
        for _ in 0..20 {
            let file = self
                .get_item(file_key.clone())
                .await?
                .ok_or_else(not_found)?;
            let current = get_s(&file, "status")
                .and_then(FileStatus::parse)
                .ok_or_else(|| corrupt("status"))?;
            if !current.may_become(to) {
                return Ok(Transition::Unchanged);
            }
            let batch = self
                .get_item(batch_key.clone())
                .await?
                .ok_or_else(not_found)?;
            let open = get_n(&batch, "open_count").ok_or_else(|| corrupt("open_count"))?;
            let principal = get_s(&batch, "principal").ok_or_else(|| corrupt("principal"))?;

            let mut set = String::from("SET #st = :to, updated_at = :at");
            let mut file_update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(file_key.clone()))
                .condition_expression("#st = :cur")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":to", s(to.as_str()))
                .expression_attribute_values(":cur", s(current.as_str()))
                .expression_attribute_values(":at", n(us(at)));
            if let Some((attr, value)) = &extra {
                set.push_str(", #x = :extra");
                file_update = file_update
                    .expression_attribute_names("#x", *attr)
                    .expression_attribute_values(":extra", s(value.clone()));
            }
            let file_update = file_update
                .update_expression(set)
                .build()
                .map_err(|e| MetadataStoreError::Other(format!("file update: {e}")))?;

            let received_inc =
                i64::from(current == FileStatus::AwaitingUpload && to != FileStatus::Expired);
            let terminal = to.is_terminal();
            let completes = terminal && open == 1;
            let mut batch_update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(batch_key.clone()))
                .expression_attribute_values(":ri", n(received_inc))
                .expression_attribute_values(":od", n(-i64::from(terminal)))
                .expression_attribute_values(":open", n(open))
                .expression_attribute_values(":one", n(1));
            let mut expr = String::from("ADD received_count :ri, open_count :od, version :one");
            if completes {
                expr.push_str(" SET completed_at = :at");
                batch_update = batch_update.expression_attribute_values(":at", n(us(at)));
            }
            let batch_update = batch_update
                .update_expression(expr)
                .condition_expression("open_count = :open")
                .build()
                .map_err(|e| MetadataStoreError::Other(format!("batch update: {e}")))?;

            let mut tx = self
                .ddb
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(file_update).build())
                .transact_items(TransactWriteItem::builder().update(batch_update).build());
            if current == FileStatus::AwaitingUpload {
                let pending = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(pending_key(principal)))
                    .update_expression("ADD pending :minus")
                    .expression_attribute_values(":minus", n(-1))
                    .build()
                    .map_err(|e| MetadataStoreError::Other(format!("pending update: {e}")))?;
                tx = tx.transact_items(TransactWriteItem::builder().update(pending).build());
            }
            match tx.send().await {
                Ok(_) => {
                    return Ok(Transition::Applied {
                        batch_completed: completes,
                    });
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_transaction_canceled_exception()) =>
                {
                    // Another transition of this file or batch won: read again and retry.
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(classified("TransactWriteItems", &e)),
            }
        }
        Err(MetadataStoreError::Unavailable(format!(
            "file {batch_id}/{file_id}: transition kept conflicting with concurrent ones"
        )))
    }
}

impl DynamoMetadataStore {
    /// Delete the outbox item at `old_sk` (conditioned on it existing), put `new` in its place
    /// and apply `also`, in one transaction. Returns `false` when the old item was gone (another
    /// claimer moved it).
    async fn move_outbox_item(
        &self,
        old_sk: &str,
        new: Option<Item>,
        also: Option<TransactWriteItem>,
    ) -> Result<bool, MetadataStoreError> {
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(OUTBOX_PK.to_owned(), old_sk.to_owned())))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(|e| MetadataStoreError::Other(format!("delete: {e}")))?;
        let mut tx = self
            .ddb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build());
        if let Some(item) = new {
            let put = aws_sdk_dynamodb::types::Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build()
                .map_err(|e| MetadataStoreError::Other(format!("put: {e}")))?;
            tx = tx.transact_items(TransactWriteItem::builder().put(put).build());
        }
        if let Some(also) = also {
            tx = tx.transact_items(also);
        }
        match tx.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_cancelled(&e) => {
                if cancel_codes(&e)
                    .first()
                    .and_then(Option::as_deref)
                    .is_some_and(|c| c == "ConditionalCheckFailed")
                {
                    Ok(false)
                } else {
                    Err(MetadataStoreError::Unavailable(
                        "an outbox write conflicted with another; retry".into(),
                    ))
                }
            }
            Err(e) => Err(classified("TransactWriteItems", &e)),
        }
    }

    /// The batch item's `wh_*` attributes set to `state` (conditioned on the batch existing).
    fn webhook_state_update(
        &self,
        batch_id: &str,
        state: &WebhookState,
    ) -> Result<TransactWriteItem, MetadataStoreError> {
        let mut set = vec!["wh_status = :st", "wh_attempts = :n"];
        let mut remove = Vec::new();
        let mut u = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(batch_pk(batch_id), BATCH_SK.to_owned())))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":st", s(state.status.as_str()))
            .expression_attribute_values(":n", n(state.attempts));
        let optional: [(&str, &str, Option<AttributeValue>); 4] = [
            ("wh_last_at", ":la", state.last_attempt_at.map(|t| n(us(t)))),
            ("wh_last_status", ":ls", state.last_status.map(n)),
            ("wh_last_error", ":le", state.last_error.clone().map(s)),
            ("wh_next_at", ":na", state.next_attempt_at.map(|t| n(us(t)))),
        ];
        let mut sets = Vec::new();
        for (attr, placeholder, value) in optional {
            match value {
                Some(v) => {
                    sets.push(format!("{attr} = {placeholder}"));
                    u = u.expression_attribute_values(placeholder, v);
                }
                None => remove.push(attr),
            }
        }
        let mut expr = format!(
            "SET {}",
            set.drain(..)
                .map(str::to_owned)
                .chain(sets)
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let u = u
            .update_expression(expr)
            .build()
            .map_err(|e| MetadataStoreError::Other(format!("update: {e}")))?;
        Ok(TransactWriteItem::builder().update(u).build())
    }
}

/// An outbox item for `job`, due at `due`.
fn outbox_item(job: &WebhookJob, due: OffsetDateTime, ttl: i64) -> Item {
    let mut item = key(OUTBOX_PK.to_owned(), timed_sk(due, &job.id));
    item.extend([
        ("id".to_owned(), s(job.id.clone())),
        ("batch_id".to_owned(), s(job.batch_id.clone())),
        ("principal".to_owned(), s(job.principal.clone())),
        ("url".to_owned(), s(job.url.clone())),
        ("body".to_owned(), s(job.body.clone())),
        ("attempts".to_owned(), n(job.attempts)),
        (TTL.to_owned(), n(ttl)),
    ]);
    item
}

/// The delivery an outbox item holds (its claim is left empty).
fn outbox_job(item: &Item) -> Option<WebhookJob> {
    Some(WebhookJob {
        id: get_s(item, "id")?.to_owned(),
        batch_id: get_s(item, "batch_id")?.to_owned(),
        principal: get_s(item, "principal")?.to_owned(),
        url: get_s(item, "url")?.to_owned(),
        body: get_s(item, "body")?.to_owned(),
        attempts: u32::try_from(get_n(item, "attempts").unwrap_or(0).max(0)).unwrap_or(u32::MAX),
        claim: String::new(),
    })
}

/// The completion callback's delivery state kept on a batch item.
fn webhook_state(batch: &Item) -> Option<WebhookState> {
    let status = WebhookStatus::parse(get_s(batch, "wh_status")?)?;
    Some(WebhookState {
        status,
        attempts: u32::try_from(get_n(batch, "wh_attempts").unwrap_or(0).max(0)).unwrap_or(0),
        last_attempt_at: get_n(batch, "wh_last_at").map(from_us),
        last_status: get_n(batch, "wh_last_status").and_then(|v| u16::try_from(v).ok()),
        last_error: get_s(batch, "wh_last_error").map(str::to_owned),
        next_attempt_at: get_n(batch, "wh_next_at").map(from_us),
    })
}

#[async_trait]
impl MetadataStore for DynamoMetadataStore {
    async fn create_batch(&self, batch: &NewBatch) -> Result<(), MetadataStoreError> {
        let n_files = batch.files.len() as u64;
        if let Some(quota) = batch.max_pending_uploads
            && n_files > quota
        {
            let pending = self.pending_uploads(&batch.principal).await?;
            return Err(MetadataStoreError::QuotaExceeded { pending, quota });
        }
        // A key already taken creates nothing: answered before any file item is written (the
        // transaction's condition below settles a race).
        if let Some(idem) = &batch.idempotency
            && let Some(taken) = self
                .idempotency_taken(&batch.principal, &idem.key, batch.created_at)
                .await?
        {
            return Err(taken);
        }
        let ttl = self.ttl(batch.expires_at);
        let request = serde_json::to_string(&batch.request)
            .map_err(|e| MetadataStoreError::Other(e.to_string()))?;
        let pk = batch_pk(&batch.batch_id);
        let put_req = |item: Item| {
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map(|p| WriteRequest::builder().put_request(p).build())
                .map_err(|e| MetadataStoreError::Other(format!("put request: {e}")))
        };
        // The files first: until the batch item exists they are unreachable (a batch is read
        // from its item), so a crash or a refused quota leaves nothing visible.
        let mut files = Vec::with_capacity(batch.files.len() * 2);
        for (ord, f) in batch.files.iter().enumerate() {
            let mut item = key(pk.clone(), format!("F#{}", f.file_id));
            item.extend([
                ("file_id".to_owned(), s(f.file_id.clone())),
                ("ord".to_owned(), n(ord)),
                ("name".to_owned(), s(f.name.clone())),
                ("content_type".to_owned(), s(f.content_type.clone())),
                ("size".to_owned(), n(f.size)),
                ("status".to_owned(), s(FileStatus::AwaitingUpload.as_str())),
                ("updated_at".to_owned(), n(us(batch.created_at))),
                (TTL.to_owned(), n(ttl)),
            ]);
            files.push(put_req(item)?);
            let mut owner = key(format!("I#{}", f.file_id), OWNER_SK.to_owned());
            owner.extend([
                ("principal".to_owned(), s(batch.principal.clone())),
                ("batch_id".to_owned(), s(batch.batch_id.clone())),
                (TTL.to_owned(), n(ttl)),
            ]);
            files.push(put_req(owner)?);
        }
        self.batch_write_all(files).await?;

        let create_token = uuid::Uuid::new_v4().to_string();
        let mut item = key(pk.clone(), BATCH_SK.to_owned());
        item.extend([
            ("principal".to_owned(), s(batch.principal.clone())),
            ("created_at".to_owned(), n(us(batch.created_at))),
            ("expires_at".to_owned(), n(us(batch.expires_at))),
            ("request".to_owned(), s(request)),
            ("file_count".to_owned(), n(batch.files.len())),
            ("open_count".to_owned(), n(batch.files.len())),
            ("received_count".to_owned(), n(0)),
            ("version".to_owned(), n(0)),
            // Tells this call's own earlier attempt apart from another create of the same id.
            ("create_token".to_owned(), s(create_token.clone())),
            (TTL.to_owned(), n(ttl)),
        ]);
        if let Some(c) = &batch.callback_url {
            item.insert("callback_url".to_owned(), s(c.clone()));
        }
        if let Some(t) = &batch.traceparent {
            item.insert("traceparent".to_owned(), s(t.clone()));
        }
        let put = |item: Item, condition: Option<&str>| {
            let mut p = aws_sdk_dynamodb::types::Put::builder()
                .table_name(&self.table)
                .set_item(Some(item));
            if let Some(c) = condition {
                p = p
                    .condition_expression(c)
                    .expression_attribute_names("#pk", PK);
            }
            p.build()
                .map(|p| TransactWriteItem::builder().put(p).build())
                .map_err(|e| MetadataStoreError::Other(format!("put: {e}")))
        };
        let mut pending = Update::builder()
            .table_name(&self.table)
            .set_key(Some(pending_key(&batch.principal)))
            .update_expression("ADD pending :n")
            .expression_attribute_values(":n", n(n_files));
        if let Some(quota) = batch.max_pending_uploads {
            pending = pending
                .condition_expression("attribute_not_exists(pending) OR pending <= :room")
                .expression_attribute_values(":room", n(quota - n_files));
        }
        let pending = pending
            .build()
            .map_err(|e| MetadataStoreError::Other(format!("pending update: {e}")))?;
        let mut expiry = key(
            EXPIRY_PK.to_owned(),
            timed_sk(batch.expires_at, &batch.batch_id),
        );
        expiry.extend([
            ("batch_id".to_owned(), s(batch.batch_id.clone())),
            (TTL.to_owned(), n(ttl)),
        ]);
        let mut recent = key(
            RECENT_PK.to_owned(),
            timed_sk(batch.created_at, &batch.batch_id),
        );
        recent.extend([
            ("batch_id".to_owned(), s(batch.batch_id.clone())),
            (TTL.to_owned(), n(ttl)),
        ]);
        let idem = match &batch.idempotency {
            Some(idem) => {
                let mut k = idempotency_key(&batch.principal, &idem.key);
                k.extend([
                    ("batch_id".to_owned(), s(batch.batch_id.clone())),
                    ("request_sha256".to_owned(), s(idem.request_sha256.clone())),
                    ("expires_at".to_owned(), n(us(batch.expires_at))),
                    (TTL.to_owned(), n(ttl)),
                ]);
                let p = aws_sdk_dynamodb::types::Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(k))
                    .condition_expression("attribute_not_exists(#pk) OR expires_at <= :now")
                    .expression_attribute_names("#pk", PK)
                    .expression_attribute_values(":now", n(us(batch.created_at)))
                    .build()
                    .map_err(|e| MetadataStoreError::Other(format!("put: {e}")))?;
                Some(TransactWriteItem::builder().put(p).build())
            }
            None => None,
        };
        let mut delay = Duration::from_millis(20);
        for _ in 0..8 {
            let mut write = self
                .ddb
                .transact_write_items()
                .transact_items(put(item.clone(), Some("attribute_not_exists(#pk)"))?)
                .transact_items(TransactWriteItem::builder().update(pending.clone()).build())
                .transact_items(put(expiry.clone(), None)?)
                .transact_items(put(recent.clone(), None)?);
            if let Some(i) = &idem {
                // Last: the first four keep their positions in the cancellation codes.
                write = write.transact_items(i.clone());
            }
            let out = write.send().await;
            let e = match out {
                Ok(_) => return Ok(()),
                Err(e) if is_cancelled(&e) => e,
                Err(e) => return Err(classified("TransactWriteItems", &e)),
            };
            let codes = cancel_codes(&e);
            let failed = |i: usize| {
                codes
                    .get(i)
                    .and_then(Option::as_deref)
                    .is_some_and(|c| c == "ConditionalCheckFailed")
            };
            if failed(0) {
                // Taken, unless by this very batch: an earlier attempt that succeeded after
                // the SDK gave up waiting for it (its retry then finds the item).
                let mine = self
                    .get_item(key(pk.clone(), BATCH_SK.to_owned()))
                    .await?
                    .is_some_and(|b| get_s(&b, "create_token") == Some(create_token.as_str()));
                return if mine {
                    Ok(())
                } else {
                    Err(MetadataStoreError::AlreadyExists(batch.batch_id.clone()))
                };
            }
            if failed(4)
                && let Some(idem) = &batch.idempotency
                && let Some(taken) = self
                    .idempotency_taken(&batch.principal, &idem.key, batch.created_at)
                    .await?
            {
                return Err(taken);
            }
            if failed(1) {
                let pending = self.pending_uploads(&batch.principal).await?;
                return Err(MetadataStoreError::QuotaExceeded {
                    pending,
                    quota: batch.max_pending_uploads.unwrap_or(0),
                });
            }
            // A conflict with a concurrent transaction on the principal's counter: again.
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
        Err(MetadataStoreError::Unavailable(format!(
            "creating batch {} kept conflicting with concurrent writes",
            batch.batch_id
        )))
    }

    async fn get_batch(&self, batch_id: &str) -> Result<Option<BatchRecord>, MetadataStoreError> {
        self.load_batch(batch_id).await
    }

    async fn batch_trace(&self, batch_id: &str) -> Result<Option<BatchTrace>, MetadataStoreError> {
        let Some(item) = self
            .get_item(key(batch_pk(batch_id), BATCH_SK.to_owned()))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(BatchTrace {
            created_at: from_us(get_n(&item, "created_at").ok_or_else(|| corrupt("created_at"))?),
            traceparent: get_s(&item, "traceparent").map(str::to_owned),
        }))
    }

    async fn recent_batches(&self, limit: usize) -> Result<Vec<BatchRecord>, MetadataStoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let items = self
            .query_all(RECENT_PK.to_owned(), None, true, Some(limit))
            .await?;
        let mut ids: Vec<String> = items
            .iter()
            .filter_map(|i| get_s(i, "batch_id").map(str::to_owned))
            .collect();
        ids.truncate(limit);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(b) = self.load_batch(&id).await? {
                out.push(b);
            }
        }
        Ok(out)
    }

    async fn mark_received(
        &self,
        batch_id: &str,
        file_id: &str,
        at: OffsetDateTime,
    ) -> Result<Transition, MetadataStoreError> {
        self.transition(batch_id, file_id, FileStatus::Received, None, at)
            .await
    }

    async fn mark_done(
        &self,
        batch_id: &str,
        file_id: &str,
        rendered: &RenderedFile,
        at: OffsetDateTime,
    ) -> Result<Transition, MetadataStoreError> {
        let r = serde_json::to_string(rendered)
            .map_err(|e| MetadataStoreError::Other(e.to_string()))?;
        self.transition(
            batch_id,
            file_id,
            FileStatus::Done,
            Some(("rendered", r)),
            at,
        )
        .await
    }

    async fn mark_failed(
        &self,
        batch_id: &str,
        file_id: &str,
        error: &FileError,
        at: OffsetDateTime,
    ) -> Result<Transition, MetadataStoreError> {
        let e =
            serde_json::to_string(error).map_err(|e| MetadataStoreError::Other(e.to_string()))?;
        self.transition(
            batch_id,
            file_id,
            FileStatus::Failed,
            Some(("error", e)),
            at,
        )
        .await
    }

    async fn replace_rendered(
        &self,
        batch_id: &str,
        file_id: &str,
        rendered: &RenderedFile,
        at: OffsetDateTime,
    ) -> Result<bool, MetadataStoreError> {
        let r = serde_json::to_string(rendered)
            .map_err(|e| MetadataStoreError::Other(e.to_string()))?;
        let file_key = key(batch_pk(batch_id), format!("F#{file_id}"));
        let file_update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(file_key.clone()))
            .update_expression("SET rendered = :r, updated_at = :at")
            .condition_expression(
                "#st = :done AND (attribute_not_exists(rendered) OR rendered <> :r)",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":done", s(FileStatus::Done.as_str()))
            .expression_attribute_values(":r", s(r))
            .expression_attribute_values(":at", n(us(at)))
            .build()
            .map_err(|e| MetadataStoreError::Other(format!("file update: {e}")))?;
        let batch_update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(batch_pk(batch_id), BATCH_SK.to_owned())))
            .update_expression("ADD version :one")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(|e| MetadataStoreError::Other(format!("batch update: {e}")))?;
        let sent = self
            .ddb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(file_update).build())
            .transact_items(TransactWriteItem::builder().update(batch_update).build())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e) if is_cancelled(&e) => {
                // Not done, unchanged, or missing: tell the last apart.
                if self.get_item(file_key).await?.is_none() {
                    return Err(MetadataStoreError::NotFound(format!(
                        "file {batch_id}/{file_id}"
                    )));
                }
                Ok(false)
            }
            Err(e) => Err(classified("TransactWriteItems", &e)),
        }
    }

    async fn mark_announced(
        &self,
        batch_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, MetadataStoreError> {
        let k = key(batch_pk(batch_id), BATCH_SK.to_owned());
        let out = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(k.clone()))
            .update_expression("SET announced_at = :at")
            .condition_expression("attribute_exists(#pk) AND attribute_not_exists(announced_at)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":at", n(us(at)))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                // Announced before (a duplicate: success), or no such batch.
                match self.get_item(k).await? {
                    Some(_) => Ok(false),
                    None => Err(MetadataStoreError::NotFound(format!("batch {batch_id}"))),
                }
            }
            Err(e) => Err(classified("UpdateItem", &e)),
        }
    }

    async fn pending_uploads(&self, principal: &str) -> Result<u64, MetadataStoreError> {
        Ok(self
            .get_item(pending_key(principal))
            .await?
            .and_then(|i| get_n(&i, "pending"))
            .unwrap_or(0)
            .max(0) as u64)
    }

    async fn batch_version(
        &self,
        batch_id: &str,
    ) -> Result<Option<BatchVersion>, MetadataStoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(batch_pk(batch_id), BATCH_SK.to_owned())))
            .consistent_read(true)
            .projection_expression("principal, version, completed_at, #ttl")
            .expression_attribute_names("#ttl", TTL)
            .send()
            .await
            .map_err(|e| classified("GetItem", &e))?;
        let Some(item) = out
            .item
            .filter(|i| !Self::expired(i, OffsetDateTime::now_utc()))
        else {
            return Ok(None);
        };
        Ok(Some(BatchVersion {
            principal: get_s(&item, "principal").unwrap_or_default().to_owned(),
            version: get_n(&item, "version").unwrap_or(0).max(0) as u64,
            complete: item.contains_key("completed_at"),
        }))
    }

    async fn expire_uploads(
        &self,
        cutoff: OffsetDateTime,
        at: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ExpiredFile>, MetadataStoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        'pages: loop {
            let page = self
                .ddb
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("#pk = :pk AND #sk < :cutoff")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", s(EXPIRY_PK))
                .expression_attribute_values(":cutoff", s(format!("{:020}", us(cutoff).max(0))))
                .limit(100)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classified("Query", &e))?;
            for index in page.items.unwrap_or_default() {
                let Some(batch_id) = get_s(&index, "batch_id").map(str::to_owned) else {
                    continue;
                };
                let awaiting: Vec<String> = match self.load_batch(&batch_id).await? {
                    Some(b) => b
                        .files
                        .into_iter()
                        .filter(|f| f.status == FileStatus::AwaitingUpload)
                        .map(|f| f.file_id)
                        .collect(),
                    None => Vec::new(),
                };
                let mut left = awaiting.len();
                for file_id in awaiting {
                    if out.len() >= limit {
                        break 'pages;
                    }
                    match self
                        .transition(&batch_id, &file_id, FileStatus::Expired, None, at)
                        .await?
                    {
                        Transition::Applied { batch_completed } => out.push(ExpiredFile {
                            batch_id: batch_id.clone(),
                            file_id,
                            batch_completed,
                        }),
                        Transition::Unchanged => {}
                    }
                    left -= 1;
                }
                if left == 0 {
                    // No file of this batch can expire any more: drop it from the index (a
                    // concurrent sweeper deleting it too is harmless).
                    self.ddb
                        .delete_item()
                        .table_name(&self.table)
                        .set_key(Some(key(
                            EXPIRY_PK.to_owned(),
                            get_s(&index, SK).unwrap_or_default().to_owned(),
                        )))
                        .send()
                        .await
                        .map_err(|e| classified("DeleteItem", &e))?;
                }
            }
            start = page.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() || out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn enqueue_webhook(&self, webhook: &NewWebhook) -> Result<bool, MetadataStoreError> {
        let ttl = self.ttl(webhook.due_at);
        let mut dedup = key(format!("W#{}", webhook.id), WEBHOOK_ID_SK.to_owned());
        dedup.insert(TTL.to_owned(), n(ttl));
        let dedup = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .set_item(Some(dedup))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(|e| MetadataStoreError::Other(format!("put: {e}")))?;
        let job = WebhookJob {
            id: webhook.id.clone(),
            batch_id: webhook.batch_id.clone(),
            principal: webhook.principal.clone(),
            url: webhook.url.clone(),
            body: webhook.body.clone(),
            attempts: 0,
            claim: String::new(),
        };
        let item = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .set_item(Some(outbox_item(&job, webhook.due_at, ttl)))
            .build()
            .map_err(|e| MetadataStoreError::Other(format!("put: {e}")))?;
        let state = WebhookState {
            status: WebhookStatus::Pending,
            attempts: 0,
            last_attempt_at: None,
            last_status: None,
            last_error: None,
            next_attempt_at: Some(webhook.due_at),
        };
        let out = self
            .ddb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(dedup).build())
            .transact_items(TransactWriteItem::builder().put(item).build())
            .transact_items(self.webhook_state_update(&webhook.batch_id, &state)?)
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if is_cancelled(&e) => {
                let codes = cancel_codes(&e);
                if codes
                    .first()
                    .and_then(Option::as_deref)
                    .is_some_and(|c| c == "ConditionalCheckFailed")
                {
                    Ok(false)
                } else if codes
                    .get(2)
                    .and_then(Option::as_deref)
                    .is_some_and(|c| c == "ConditionalCheckFailed")
                {
                    Err(MetadataStoreError::NotFound(format!(
                        "batch {}",
                        webhook.batch_id
                    )))
                } else {
                    Err(MetadataStoreError::Unavailable(format!(
                        "enqueueing webhook {} conflicted; retry",
                        webhook.id
                    )))
                }
            }
            Err(e) => Err(classified("TransactWriteItems", &e)),
        }
    }

    async fn claim_webhooks(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<WebhookJob>, MetadataStoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let due = self
            .ddb
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND #sk < :upto")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(OUTBOX_PK))
            // `~` sorts after `#`: every key due at `now` exactly is included.
            .expression_attribute_values(":upto", s(format!("{:020}~", us(now).max(0))))
            .limit(i32::try_from(limit).unwrap_or(100))
            .send()
            .await
            .map_err(|e| classified("Query", &e))?;
        let until = now + lease;
        let mut jobs = Vec::new();
        for item in due.items.unwrap_or_default() {
            let Some(mut job) = outbox_job(&item) else {
                continue;
            };
            let old_sk = get_s(&item, SK).unwrap_or_default().to_owned();
            job.claim = timed_sk(until, &job.id);
            let ttl = get_n(&item, TTL).unwrap_or_else(|| self.ttl(until));
            let moved = self
                .move_outbox_item(&old_sk, Some(outbox_item(&job, until, ttl)), None)
                .await?;
            if moved {
                jobs.push(job);
            }
        }
        Ok(jobs)
    }

    async fn record_webhook_attempt(
        &self,
        job: &WebhookJob,
        attempt: &WebhookAttempt,
    ) -> Result<bool, MetadataStoreError> {
        let attempts = job.attempts.saturating_add(1);
        let next = match (attempt.status, attempt.next_attempt_at) {
            (WebhookStatus::Pending, Some(at)) => {
                let mut j = job.clone();
                j.attempts = attempts;
                Some(outbox_item(&j, at, self.ttl(at)))
            }
            _ => None,
        };
        let state = WebhookState {
            status: attempt.status,
            attempts,
            last_attempt_at: Some(attempt.at),
            last_status: attempt.http_status,
            last_error: attempt.error.clone(),
            next_attempt_at: attempt
                .next_attempt_at
                .filter(|_| attempt.status == WebhookStatus::Pending),
        };
        let update = self.webhook_state_update(&job.batch_id, &state)?;
        self.move_outbox_item(&job.claim, next, Some(update)).await
    }

    async fn image_owner(&self, image_id: &str) -> Result<Option<String>, MetadataStoreError> {
        Ok(self
            .get_item(key(format!("I#{image_id}"), OWNER_SK.to_owned()))
            .await?
            .and_then(|i| get_s(&i, "principal").map(str::to_owned)))
    }

    async fn record_image_request(
        &self,
        image_id: &str,
        event_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, MetadataStoreError> {
        let pk = format!("I#{image_id}");
        // Request records outlive no batch by much: keep them the retention period.
        let ttl = self.ttl(at);
        let mut event = key(pk.clone(), format!("E#{event_id}"));
        event.extend([("at".to_owned(), n(us(at))), (TTL.to_owned(), n(ttl))]);
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .set_item(Some(event))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(|e| MetadataStoreError::Other(format!("put: {e}")))?;
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk.clone(), COUNT_SK.to_owned())))
            .update_expression("ADD request_count :one SET #ttl = :ttl")
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", n(ttl))
            .build()
            .map_err(|e| MetadataStoreError::Other(format!("update: {e}")))?;
        let out = self
            .ddb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(count).build())
            .send()
            .await;
        match out {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_transaction_canceled_exception()) =>
            {
                // The event item exists: counted before (a duplicate is success). Anything
                // else (a conflict) is worth a retry.
                let seen = self
                    .get_item(key(pk.clone(), format!("E#{event_id}")))
                    .await?
                    .is_some();
                return if seen {
                    Ok(false)
                } else {
                    Err(MetadataStoreError::Unavailable(format!(
                        "counting request {event_id} for {image_id} conflicted; retry"
                    )))
                };
            }
            Err(e) => return Err(classified("TransactWriteItems", &e)),
        }
        // The latest request time only moves forward.
        let last = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, COUNT_SK.to_owned())))
            .update_expression("SET last_requested_at = :at")
            .condition_expression(
                "attribute_not_exists(last_requested_at) OR last_requested_at < :at",
            )
            .expression_attribute_values(":at", n(us(at)))
            .send()
            .await;
        match last {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(true)
            }
            Err(e) => Err(classified("UpdateItem", &e)),
        }
    }
}
