//! The metadata writer's message handler.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use shared::consumer::{Handler, Outcome};
use shared::error::{ErrorCode, HandlerError, ResultExt};
use shared::event::{EventBody, S3EventRecord, parse_body};
use shared::keys::{MediaKind, parse_media_key, parse_upload_key};
use shared::manifest::{parse_failure, parse_manifest};
use shared::port::{
    BatchRecord, BatchStatus, Message, MetadataStore, NewWebhook, Topic, Transition,
};
use shared::telemetry::trace::{self, KeyValue, TraceParent};
use time::OffsetDateTime;
use tracing::{Instrument, info, warn};

use crate::Deps;

/// A content-derived id for events that carry none, so a redelivered id-less event counts once.
fn content_id(body: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256-{}", hex::encode(Sha256::digest(body.as_bytes())))
}

/// Handles one metadata-queue message.
pub struct MetadataHandler {
    deps: Deps,
    announcer: Announcer,
}

/// Announces completed batches: the `batch.completed` event on the topic and, when the batch
/// has a callback URL, its delivery into the outbox (`crate::callback` delivers it). Used by
/// the handler and by the expiry sweep.
#[derive(Clone)]
pub struct Announcer {
    metadata: Arc<dyn MetadataStore>,
    topic: Arc<dyn Topic>,
}

impl Announcer {
    /// An announcer over `metadata` and `topic`.
    pub fn new(metadata: Arc<dyn MetadataStore>, topic: Arc<dyn Topic>) -> Self {
        Self { metadata, topic }
    }

    /// Announce `batch_id` if it is complete and was not announced yet. The announcement is
    /// recorded after it is made, so a crash in between repeats it (at least once; the
    /// outbox holds one delivery per batch) rather than losing it.
    ///
    /// # Errors
    /// A classified failure of the store or the topic (the caller retries).
    pub async fn announce(&self, batch_id: &str) -> Result<(), HandlerError> {
        let Some(batch) = self.metadata.get_batch(batch_id).await? else {
            return Ok(());
        };
        if batch.status != BatchStatus::Complete || batch.announced_at.is_some() {
            return Ok(());
        }
        let event = completion_event(&batch);
        self.topic.publish(&event.to_string()).await?;
        if let Some(url) = &batch.callback_url {
            self.metadata
                .enqueue_webhook(&NewWebhook {
                    id: completion_msg_id(batch_id),
                    batch_id: batch_id.to_owned(),
                    principal: batch.principal.clone(),
                    url: url.clone(),
                    body: event.to_string(),
                    due_at: OffsetDateTime::now_utc(),
                })
                .await?;
        }
        if self
            .metadata
            .mark_announced(batch_id, OffsetDateTime::now_utc())
            .await?
        {
            info!(
                batch_id,
                files = batch.counts.files,
                failed = batch.counts.failed,
                expired = batch.counts.expired,
                "Batch completed."
            );
        }
        Ok(())
    }
}

impl Announcer {
    /// Announce that a re-render (`prism rerender`) of `batch_id` with the spec
    /// `request_sha256` ended for every file it covered: a `batch.rerendered` event on the
    /// topic and, when the batch has a callback URL, its delivery into the outbox, under one
    /// `webhook-id` per batch and spec (so a resumed re-render repeats no delivery). `counts` is
    /// the re-render's own tally. Returns `false` when the batch does not exist.
    ///
    /// # Errors
    /// A classified failure of the store or the topic.
    pub async fn announce_rerender(
        &self,
        batch_id: &str,
        request_sha256: &str,
        counts: &Value,
    ) -> Result<bool, HandlerError> {
        let Some(batch) = self.metadata.get_batch(batch_id).await? else {
            return Ok(false);
        };
        let now = OffsetDateTime::now_utc();
        let event = json!({
            "event_name": "batch.rerendered",
            "schema_version": 1,
            "batch_id": batch.batch_id,
            "principal": batch.principal,
            "request_sha256": request_sha256,
            "counts": counts,
            "completed_at": now.format(&time::format_description::well_known::Rfc3339).ok(),
        });
        self.topic.publish(&event.to_string()).await?;
        if let Some(url) = &batch.callback_url {
            self.metadata
                .enqueue_webhook(&NewWebhook {
                    id: rerender_msg_id(batch_id, request_sha256),
                    batch_id: batch_id.to_owned(),
                    principal: batch.principal.clone(),
                    url: url.clone(),
                    body: event.to_string(),
                    due_at: now,
                })
                .await?;
        }
        info!(batch_id, request_sha256, "Batch re-render completed.");
        Ok(true)
    }
}

/// The `webhook-id` of a batch's re-render completion: one per batch and spec.
pub fn rerender_msg_id(batch_id: &str, request_sha256: &str) -> String {
    let spec: String = request_sha256.chars().take(16).collect();
    format!("msg_{batch_id}_rerendered_{spec}")
}

impl MetadataHandler {
    /// A handler over `deps`.
    pub fn new(deps: Deps) -> Self {
        let announcer = Announcer::new(deps.metadata.clone(), deps.topic.clone());
        Self { deps, announcer }
    }

    async fn on_record(
        &self,
        r: &S3EventRecord,
        enqueued_at: OffsetDateTime,
    ) -> Result<Outcome, HandlerError> {
        r.check_version().permanent(ErrorCode::UnsupportedSchema)?;
        if !r.is_object_created() {
            return Ok(Outcome::Skipped);
        }
        let key =
            r.s3.object
                .decoded_key()
                .permanent(ErrorCode::InvalidEvent)?;
        let at = r.event_time().unwrap_or_else(OffsetDateTime::now_utc);
        let bucket = &r.s3.bucket.name;
        if !trace::exporting() {
            return self.apply(bucket, &key, at).await;
        }
        let span = tracing::info_span!(target: trace::TARGET, "metadata", trace_id = tracing::field::Empty, batch_id = tracing::field::Empty, file_id = tracing::field::Empty, object = %key);
        let traced = self.continue_trace(&span, bucket, &key, enqueued_at).await;
        let outcome = self.apply(bucket, &key, at).instrument(span).await?;
        if let Some((tp, Some(created_at), file)) = traced {
            // The upload itself, from the presign to the object's creation, once per file.
            if outcome == Outcome::Success {
                trace::record_span(
                    "upload",
                    &tp,
                    created_at.into(),
                    at.into(),
                    vec![KeyValue::new("prism.file_id", file)],
                );
            }
        }
        Ok(outcome)
    }

    /// With span export on: look up the file's batch trace, record the message's wait in the
    /// queue, and make `span` its child. Returns the trace, the batch's creation time for an
    /// upload event, and the file id. Tracing never fails the message: a failed lookup is logged.
    async fn continue_trace(
        &self,
        span: &tracing::Span,
        bucket: &str,
        key: &str,
        enqueued_at: OffsetDateTime,
    ) -> Option<(TraceParent, Option<OffsetDateTime>, String)> {
        let (batch, file, upload) = if bucket == self.deps.uploads_bucket {
            parse_upload_key(key).map(|(b, f)| (b, f, true))?
        } else if bucket == self.deps.media.bucket() {
            parse_media_key(key).map(|(b, f, _)| (b, f, false))?
        } else {
            return None;
        };
        span.record("batch_id", batch);
        span.record("file_id", file);
        let found = match self.deps.metadata.batch_trace(batch).await {
            Ok(found) => found?,
            Err(e) => {
                tracing::debug!(error = %e, batch_id = batch, "Cannot read the batch's trace context.");
                return None;
            }
        };
        let tp = found.traceparent.as_deref().and_then(TraceParent::parse)?;
        trace::record_span(
            "queue wait",
            &tp,
            enqueued_at.into(),
            std::time::SystemTime::now(),
            vec![
                KeyValue::new("prism.worker", "metadata"),
                KeyValue::new("prism.file_id", file.to_owned()),
            ],
        );
        trace::adopt(span, &tp);
        Some((tp, upload.then_some(found.created_at), file.to_owned()))
    }

    async fn apply(
        &self,
        bucket: &str,
        key: &str,
        at: OffsetDateTime,
    ) -> Result<Outcome, HandlerError> {
        let key = key.to_owned();
        if *bucket == self.deps.uploads_bucket {
            let Some((batch, file)) = parse_upload_key(&key) else {
                warn!(key = %key, "Upload key outside the uploads/{{batch}}/{{file}} layout; skipped.");
                return Ok(Outcome::Skipped);
            };
            let t = self.deps.metadata.mark_received(batch, file, at).await?;
            return self.after(batch, t, false).await;
        }
        if bucket == self.deps.media.bucket() {
            let Some((batch, file, kind)) = parse_media_key(&key) else {
                return Ok(Outcome::Skipped);
            };
            let (t, terminal) = match kind {
                MediaKind::Manifest => {
                    let bytes = self.deps.media.get(&key).await?;
                    let m = parse_manifest(&bytes).permanent(ErrorCode::InvalidEvent)?;
                    if m.batch_id != batch || m.file_id != file {
                        return Err(HandlerError::permanent(
                            ErrorCode::InvalidEvent,
                            format!("manifest at {key} names {}/{}", m.batch_id, m.file_id),
                        ));
                    }
                    let t = self
                        .deps
                        .metadata
                        .mark_done(batch, file, &m.rendered, at)
                        .await?;
                    // A done file whose manifest was rewritten (`prism rerender`): record the
                    // new variants. The manifest read is the current one, so a late event of
                    // an older manifest records the newest too.
                    if t == Transition::Unchanged
                        && self
                            .deps
                            .metadata
                            .replace_rendered(batch, file, &m.rendered, at)
                            .await?
                    {
                        info!(
                            batch_id = batch,
                            file_id = file,
                            "Re-rendered variants recorded."
                        );
                        return Ok(Outcome::Success);
                    }
                    (t, true)
                }
                MediaKind::Failure => {
                    let bytes = self.deps.media.get(&key).await?;
                    let f = parse_failure(&bytes).permanent(ErrorCode::InvalidEvent)?;
                    (
                        self.deps
                            .metadata
                            .mark_failed(batch, file, &f.error, at)
                            .await?,
                        true,
                    )
                }
                MediaKind::Variant | MediaKind::Other => return Ok(Outcome::Skipped),
            };
            return self.after(batch, t, terminal).await;
        }
        Ok(Outcome::Skipped)
    }

    /// After a transition: announce the batch when this transition completed it, or when a
    /// duplicate terminal record finds it complete but never announced (a crash between the
    /// transition and the announcement).
    async fn after(
        &self,
        batch_id: &str,
        t: Transition,
        terminal: bool,
    ) -> Result<Outcome, HandlerError> {
        match t {
            Transition::Applied {
                batch_completed: true,
            } => {
                self.announcer.announce(batch_id).await?;
                Ok(Outcome::Success)
            }
            Transition::Applied {
                batch_completed: false,
            } => Ok(Outcome::Success),
            Transition::Unchanged => {
                if terminal {
                    self.announcer.announce(batch_id).await?;
                }
                Ok(Outcome::Duplicate)
            }
        }
    }

    async fn on_client_event(&self, v: &Value, body: &str) -> Result<Outcome, HandlerError> {
        if v.get("event_name").and_then(Value::as_str) != Some("IMAGE_REQUESTED") {
            return Ok(Outcome::Skipped);
        }
        let Some(image_id) = v.get("image_id").and_then(Value::as_str) else {
            return Err(HandlerError::permanent(
                ErrorCode::InvalidEvent,
                "IMAGE_REQUESTED without a string image_id",
            ));
        };
        // Only the owner's requests count: the API stamped the event with its principal (and
        // refused other principals already; this holds for any other publisher too).
        let principal = v.get("principal").and_then(Value::as_str);
        let owner = self.deps.metadata.image_owner(image_id).await?;
        if principal.is_none() || owner.as_deref() != principal {
            warn!(
                image_id,
                "IMAGE_REQUESTED from a principal that does not own the image; not counted."
            );
            return Ok(Outcome::Skipped);
        }
        let event_id = v
            .get("event_id")
            .and_then(Value::as_str)
            .map_or_else(|| content_id(body), str::to_owned);
        // The server's receive time, never the client's `timestamp` (kept in the event as data):
        // a client must not move `last_requested_at` or a TTL to year 1 or 9999.
        let at = v
            .get("received_at")
            .and_then(Value::as_str)
            .and_then(shared::event::parse_lenient_time)
            .unwrap_or_else(OffsetDateTime::now_utc);
        let counted = self
            .deps
            .metadata
            .record_image_request(image_id, &event_id, at)
            .await?;
        Ok(if counted {
            Outcome::Success
        } else {
            Outcome::Duplicate
        })
    }
}

/// The `webhook-id` of a batch's completion callback: one per batch, so a receiver can drop a
/// repeated delivery (a retry, or a redelivered completion).
pub fn completion_msg_id(batch_id: &str) -> String {
    format!("msg_{batch_id}_completed")
}

/// The completion event, as published to the topic and posted to the callback URL.
pub fn completion_event(b: &BatchRecord) -> Value {
    json!({
        "event_name": "batch.completed",
        "schema_version": 1,
        "batch_id": b.batch_id,
        "principal": b.principal,
        "status": "complete",
        "counts": b.counts,
        "completed_at": b.completed_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
    })
}

#[async_trait]
impl Handler for MetadataHandler {
    async fn handle(&self, message: &Message) -> Result<Outcome, HandlerError> {
        let parsed = parse_body(&message.body).permanent(ErrorCode::InvalidEvent)?;
        match parsed.body {
            EventBody::TestEvent(_) => Ok(Outcome::Skipped),
            EventBody::S3(event) => {
                let mut outcome = Outcome::Skipped;
                for r in &event.records {
                    match self.on_record(r, message.sent_at).await? {
                        Outcome::Success => outcome = Outcome::Success,
                        Outcome::Duplicate if outcome != Outcome::Success => {
                            outcome = Outcome::Duplicate
                        }
                        _ => {}
                    }
                }
                Ok(outcome)
            }
            EventBody::Json(v) => {
                let inner = parsed
                    .envelope
                    .as_ref()
                    .map_or(message.body.as_str(), |e| e.message.as_str());
                self.on_client_event(&v, inner).await
            }
        }
    }
}
