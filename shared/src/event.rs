//! S3 event notifications, the SNS envelope around them, and object-key decoding.
//!
//! Workers consume S3 event-notification JSON (`Records[]`) whichever backend produced it, either
//! raw (SNS raw delivery, or the embedded topic) or wrapped in an SNS envelope whose `Message` is
//! a JSON *string*. [`parse_body`] accepts both. Invariants worth knowing:
//!
//! - Object keys in events are form-URL-encoded (`+` is a space): [`decode_key`] turns `+` into a
//!   space first and only then percent-decodes, so a literal `+` (sent as `%2B`) survives.
//! - `eventTime` differs between emulators (moto writes local time with microseconds and no
//!   zone), so it is kept verbatim and parsed leniently by [`S3EventRecord::event_time`].
//! - `s3:TestEvent` has no `Records`; it is recognised so it can be acked, never dead-lettered.
//! - Fields we do not model are kept in `extra` maps so a record round-trips unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// Why a message body is not an event we understand.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not JSON at all.
    #[error("message body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON of an S3/SNS shape, but a field has the wrong type or is missing.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// Which shape was being parsed.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// An object key that does not decode to UTF-8.
    #[error("object key is not valid UTF-8 after decoding")]
    KeyNotUtf8,
    /// An S3 event whose major `eventVersion` is not 2.
    #[error("unsupported S3 eventVersion {0}")]
    UnsupportedVersion(String),
}

/// An S3 event notification: what S3 (or the embedded blob store) publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct S3Event {
    /// One record per object change; S3 sends one, but the shape allows many.
    #[serde(rename = "Records")]
    pub records: Vec<S3EventRecord>,
}

/// One record of an [`S3Event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3EventRecord {
    /// `major.minor`, e.g. `2.1`; the major must be 2.
    pub event_version: String,
    /// Always `aws:s3`.
    pub event_source: String,
    /// The bucket's region.
    pub aws_region: String,
    /// Verbatim timestamp; see [`S3EventRecord::event_time`].
    pub event_time: String,
    /// E.g. `ObjectCreated:Put` (no `s3:` prefix).
    pub event_name: String,
    /// Who made the request (absent in moto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
    /// The requester's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_parameters: Option<RequestParameters>,
    /// `x-amz-request-id` and `x-amz-id-2` (absent in moto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_elements: Option<Map<String, Value>>,
    /// Bucket and object.
    pub s3: S3Entity,
    /// Anything else S3 may add (`glacierEventData`, `lifecycleEventData`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `userIdentity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    /// Amazon customer id of the requester.
    pub principal_id: String,
}

/// `requestParameters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestParameters {
    /// IP address of the requester.
    #[serde(rename = "sourceIPAddress")]
    pub source_ip_address: String,
}

/// The `s3` member of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Entity {
    /// `1.0`.
    pub s3_schema_version: String,
    /// The notification configuration id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_id: Option<String>,
    /// The bucket.
    pub bucket: S3Bucket,
    /// The object.
    pub object: S3Object,
}

/// The bucket of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Bucket {
    /// Bucket name.
    pub name: String,
    /// Owner of the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_identity: Option<UserIdentity>,
    /// Bucket ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

/// The object of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Object {
    /// Form-URL-encoded key; use [`S3Object::decoded_key`].
    pub key: String,
    /// Size in bytes (absent for deletes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Opaque version token (not an MD5 for SSE-KMS or multipart objects).
    #[serde(rename = "eTag", default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    /// Present on versioned buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Orders events for the same key only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
}

impl S3Object {
    /// The object key, decoded.
    ///
    /// # Errors
    /// [`EventError::KeyNotUtf8`] when the decoded bytes are not UTF-8.
    pub fn decoded_key(&self) -> Result<String, EventError> {
        decode_key(&self.key)
    }
}

impl S3EventRecord {
    /// `true` for `ObjectCreated:*` events.
    pub fn is_object_created(&self) -> bool {
        self.event_name.starts_with("ObjectCreated:")
    }

    /// Check the major `eventVersion` is 2 (minor versions only add fields).
    ///
    /// # Errors
    /// [`EventError::UnsupportedVersion`] for any other major version.
    pub fn check_version(&self) -> Result<(), EventError> {
        match self.event_version.split('.').next() {
            Some("2") => Ok(()),
            _ => Err(EventError::UnsupportedVersion(self.event_version.clone())),
        }
    }

    /// `eventTime`, parsed leniently: RFC 3339 (real S3), or a zone-less timestamp with
    /// optional fraction (moto), read as UTC. `None` when neither fits.
    pub fn event_time(&self) -> Option<OffsetDateTime> {
        parse_lenient_time(&self.event_time)
    }

    /// A stable idempotency key for this object version: bucket, decoded key, and the
    /// version id or eTag when present. Never a queue message id: a redelivery has a new one.
    ///
    /// # Errors
    /// [`EventError::KeyNotUtf8`] when the key does not decode.
    pub fn idempotency_key(&self) -> Result<String, EventError> {
        let key = self.s3.object.decoded_key()?;
        let version = self
            .s3
            .object
            .version_id
            .as_deref()
            .or(self.s3.object.e_tag.as_deref());
        Ok(match version {
            Some(v) => format!("{}/{}#{}", self.s3.bucket.name, key, v),
            None => format!("{}/{}", self.s3.bucket.name, key),
        })
    }
}

/// Parse RFC 3339, or `YYYY-MM-DDTHH:MM:SS[.frac]` without a zone (read as UTC).
pub fn parse_lenient_time(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    time::PrimitiveDateTime::parse(s, &fmt)
        .ok()
        .map(|t| t.assume_utc())
}

/// The message S3 sends when notifications are configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct S3TestEvent {
    /// `Amazon S3`.
    #[serde(rename = "Service")]
    pub service: String,
    /// `s3:TestEvent`.
    #[serde(rename = "Event")]
    pub event: String,
    /// When it was sent.
    #[serde(rename = "Time", default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The bucket being configured.
    #[serde(rename = "Bucket", default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Other fields (`RequestId`, `HostId`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The SNS envelope around a message when raw delivery is off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnsEnvelope {
    /// `Notification`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// SNS message id (reused when SNS retries; never an idempotency key).
    #[serde(rename = "MessageId")]
    pub message_id: String,
    /// The topic.
    #[serde(rename = "TopicArn", default, skip_serializing_if = "Option::is_none")]
    pub topic_arn: Option<String>,
    /// Only when the publisher set one.
    #[serde(rename = "Subject", default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The published message: a JSON *string*.
    #[serde(rename = "Message")]
    pub message: String,
    /// When SNS received it.
    #[serde(rename = "Timestamp", default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Signature fields and message attributes, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What a queue message turned out to hold.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    /// An S3 event notification.
    S3(S3Event),
    /// `s3:TestEvent`: ack and move on.
    TestEvent(S3TestEvent),
    /// Any other JSON value (client events such as `IMAGE_REQUESTED`, `batch.completed`).
    Json(Value),
}

/// A parsed queue message body.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedMessage {
    /// The SNS envelope, when the body had one.
    pub envelope: Option<SnsEnvelope>,
    /// The payload.
    pub body: EventBody,
}

/// Parse a queue message body: raw or SNS-wrapped; S3 event, test event or other JSON.
///
/// # Errors
/// [`EventError::NotJson`] when the body (or an envelope's `Message`) is not JSON, and
/// [`EventError::Malformed`] when it has an S3/SNS shape with wrong field types.
pub fn parse_body(body: &str) -> Result<ParsedMessage, EventError> {
    let value: Value = serde_json::from_str(body).map_err(EventError::NotJson)?;
    let is_envelope = value.get("Type").and_then(Value::as_str) == Some("Notification")
        && value.get("Message").is_some_and(Value::is_string);
    if is_envelope {
        let envelope: SnsEnvelope =
            serde_json::from_value(value).map_err(|source| EventError::Malformed {
                what: "SNS envelope",
                source,
            })?;
        let inner: Value = serde_json::from_str(&envelope.message).map_err(EventError::NotJson)?;
        let body = classify(inner)?;
        return Ok(ParsedMessage {
            envelope: Some(envelope),
            body,
        });
    }
    Ok(ParsedMessage {
        envelope: None,
        body: classify(value)?,
    })
}

fn classify(value: Value) -> Result<EventBody, EventError> {
    if value.get("Records").is_some() {
        let event: S3Event =
            serde_json::from_value(value).map_err(|source| EventError::Malformed {
                what: "S3 event",
                source,
            })?;
        return Ok(EventBody::S3(event));
    }
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        let event: S3TestEvent =
            serde_json::from_value(value).map_err(|source| EventError::Malformed {
                what: "S3 test event",
                source,
            })?;
        return Ok(EventBody::TestEvent(event));
    }
    Ok(EventBody::Json(value))
}

/// Decode an object key as `application/x-www-form-urlencoded`: `+` becomes a space first, then
/// `%XX` sequences are decoded. Malformed `%` sequences are kept literally, as S3 consumers do.
///
/// # Errors
/// [`EventError::KeyNotUtf8`] when the decoded bytes are not UTF-8.
pub fn decode_key(raw: &str) -> Result<String, EventError> {
    let spaced = raw.replace('+', " ");
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(&spaced).collect();
    String::from_utf8(bytes).map_err(|_| EventError::KeyNotUtf8)
}

/// Encode a key the way S3 does in events: form-URL encoding that keeps `/` (real S3 keeps it;
/// moto encodes it as `%2F`, which [`decode_key`] handles too).
pub fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|seg| form_urlencoded::byte_serialize(seg.as_bytes()).collect::<String>())
        .collect::<Vec<_>>()
        .join("/")
}

/// Build an S3-shaped `ObjectCreated` event for one object, as the embedded blob store emits.
#[allow(clippy::too_many_arguments)]
pub fn object_created_event(
    region: &str,
    bucket: &str,
    key: &str,
    size: u64,
    e_tag: &str,
    event_name: &str,
    sequencer: &str,
    at: OffsetDateTime,
) -> S3Event {
    let time = at
        .format(&time::format_description::well_known::Rfc3339)
        .expect("an OffsetDateTime always formats as RFC 3339");
    S3Event {
        records: vec![S3EventRecord {
            event_version: "2.1".into(),
            event_source: "aws:s3".into(),
            aws_region: region.into(),
            event_time: time,
            event_name: event_name.into(),
            user_identity: Some(UserIdentity {
                principal_id: "prism-local".into(),
            }),
            request_parameters: Some(RequestParameters {
                source_ip_address: "127.0.0.1".into(),
            }),
            response_elements: None,
            s3: S3Entity {
                s3_schema_version: "1.0".into(),
                configuration_id: Some("prism-local".into()),
                bucket: S3Bucket {
                    name: bucket.into(),
                    owner_identity: Some(UserIdentity {
                        principal_id: "prism-local".into(),
                    }),
                    arn: Some(format!("arn:aws:s3:::{bucket}")),
                },
                object: S3Object {
                    key: encode_key(key),
                    size: Some(size),
                    e_tag: Some(e_tag.into()),
                    version_id: None,
                    sequencer: Some(sequencer.into()),
                },
            },
            extra: Map::new(),
        }],
    }
}

#[cfg(test)]
mod tests;
