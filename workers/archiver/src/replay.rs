//! Replay: read the archive for a time range and re-publish each distinct event to the topic
//! (backfill after a new width or a fix, with no re-upload).
//!
//! Events are deduplicated by the SHA-256 of their payload (the SNS envelope, when there was
//! one, is unwrapped first, since the topic wraps again for subscribers that want envelopes), so
//! the duplicate lines a crash between write and ack leaves are published once. Everything
//! downstream is idempotent: replayed upload events re-render to the same keys, the metadata
//! writer's transitions are conditional, and client events carry event ids.

use std::collections::HashSet;

use serde_json::Value;
use sha2::{Digest, Sha256};
use shared::port::{BlobStore, Topic};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::handler::{RAW_PREFIX, decode};

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplayCounts {
    /// Archive objects read.
    pub objects: u64,
    /// Lines read in the range.
    pub lines: u64,
    /// Distinct events among them.
    pub distinct: u64,
    /// Events published (0 in a dry run).
    pub published: u64,
    /// Lines or objects that could not be read.
    pub malformed: u64,
}

/// The payload to publish for an archived body: the inner message of an SNS envelope, or the
/// body itself.
pub fn payload(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body)
        && v.get("Type").and_then(Value::as_str) == Some("Notification")
        && let Some(m) = v.get("Message").and_then(Value::as_str)
    {
        return m.to_owned();
    }
    body.to_owned()
}

fn hours(from: OffsetDateTime, to: OffsetDateTime) -> Vec<String> {
    let mut out = Vec::new();
    let mut t = from
        .to_offset(time::UtcOffset::UTC)
        .replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(from);
    while t < to {
        out.push(format!(
            "{RAW_PREFIX}dt={:04}-{:02}-{:02}/hour={:02}/",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour()
        ));
        t += time::Duration::HOUR;
    }
    out
}

/// Re-publish the distinct events received in `[from, to)`. `progress` is called after each
/// object.
///
/// # Errors
/// A listing or publish failure (what was published before it stays published; a rerun is
/// harmless).
pub async fn replay(
    store: &dyn BlobStore,
    topic: &dyn Topic,
    from: OffsetDateTime,
    to: OffsetDateTime,
    dry_run: bool,
    mut progress: impl FnMut(&ReplayCounts),
) -> anyhow::Result<ReplayCounts> {
    anyhow::ensure!(from < to, "--from must be before --to");
    anyhow::ensure!(
        to - from <= time::Duration::days(366),
        "a replay spans at most a year"
    );
    let mut counts = ReplayCounts::default();
    let mut seen = HashSet::new();
    for prefix in hours(from, to) {
        for obj in store.list(&prefix).await? {
            let bytes = store.get(&obj.key).await?;
            counts.objects += 1;
            let lines = match decode(&bytes) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(key = %obj.key, error = %e, "Unreadable archive object; skipped.");
                    counts.malformed += 1;
                    continue;
                }
            };
            for line in lines {
                let Ok(at) = OffsetDateTime::parse(&line.received_at, &Rfc3339) else {
                    counts.malformed += 1;
                    continue;
                };
                if at < from || at >= to {
                    continue;
                }
                counts.lines += 1;
                let payload = payload(&line.body);
                if !seen.insert(Sha256::digest(payload.as_bytes())) {
                    continue;
                }
                counts.distinct += 1;
                if !dry_run {
                    topic.publish(&payload).await?;
                    counts.published += 1;
                }
            }
            progress(&counts);
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_unwrapped() {
        assert_eq!(
            payload(r#"{"Type":"Notification","MessageId":"m","Message":"{\"a\":1}"}"#),
            r#"{"a":1}"#
        );
        assert_eq!(payload(r#"{"a":1}"#), r#"{"a":1}"#);
        assert_eq!(payload("not json"), "not json");
    }

    #[test]
    fn hours_cover_the_range() {
        let from = OffsetDateTime::parse("2026-11-23T22:30:00Z", &Rfc3339).unwrap();
        let to = OffsetDateTime::parse("2026-11-24T00:10:00Z", &Rfc3339).unwrap();
        assert_eq!(
            hours(from, to),
            [
                "raw/dt=2026-11-23/hour=22/",
                "raw/dt=2026-11-23/hour=23/",
                "raw/dt=2026-11-24/hour=00/"
            ]
        );
    }
}
