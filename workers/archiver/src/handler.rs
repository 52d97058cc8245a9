//! The archive loop: receive → buffer → flush (gzip NDJSON object, durably written) → ack.

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use shared::port::{Message, PutOptions};
use shared::telemetry::metrics;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Deps;
use crate::config::{Config, FlushConfig};

/// Prefix of every archive object.
pub const RAW_PREFIX: &str = "raw/";

/// One NDJSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// When the archiver received the message (RFC 3339).
    pub received_at: String,
    /// Queue message id.
    pub message_id: String,
    /// The body exactly as received.
    pub body: String,
}

/// The object key of a flush whose first message was received at `first`.
pub fn object_key(first: OffsetDateTime) -> String {
    let first = first.to_offset(time::UtcOffset::UTC);
    format!(
        "{RAW_PREFIX}dt={:04}-{:02}-{:02}/hour={:02}/{:04}{:02}{:02}T{:02}{:02}{:02}.{:06}Z-{}.ndjson.gz",
        first.year(),
        u8::from(first.month()),
        first.day(),
        first.hour(),
        first.year(),
        u8::from(first.month()),
        first.day(),
        first.hour(),
        first.minute(),
        first.second(),
        first.microsecond(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Gzip the lines as NDJSON.
///
/// # Panics
/// Never in practice: writing to a `Vec` cannot fail.
pub fn encode(lines: &[Line]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    for l in lines {
        serde_json::to_writer(&mut gz, l).expect("a line serialises");
        gz.write_all(b"\n").expect("writing to memory");
    }
    gz.finish().expect("writing to memory")
}

/// Decode an archive object.
///
/// # Errors
/// Not gzip, or a line that is not a [`Line`].
pub fn decode(bytes: &[u8]) -> anyhow::Result<Vec<Line>> {
    use std::io::BufRead as _;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(bytes));
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line)?);
    }
    Ok(out)
}

struct Buffer {
    lines: Vec<Line>,
    receipts: Vec<String>,
    bytes: usize,
    first_at: Option<(OffsetDateTime, Instant)>,
}

impl Buffer {
    fn new() -> Self {
        Self {
            lines: Vec::new(),
            receipts: Vec::new(),
            bytes: 0,
            first_at: None,
        }
    }

    fn push(&mut self, m: Message) {
        let now = OffsetDateTime::now_utc();
        if self.first_at.is_none() {
            self.first_at = Some((now, Instant::now()));
        }
        self.bytes += Self::cost(&m);
        self.receipts.push(m.receipt);
        self.lines.push(Line {
            received_at: now.format(&Rfc3339).expect("RFC 3339 formats any time"),
            message_id: m.id,
            body: m.body,
        });
    }

    /// Approximate NDJSON bytes of a message's line.
    fn cost(m: &Message) -> usize {
        m.body.len() + m.id.len() + 64
    }

    fn due(&self, f: &FlushConfig) -> bool {
        self.lines.len() >= f.max_messages
            || self.bytes >= f.max_bytes
            || self
                .first_at
                .is_some_and(|(_, t)| t.elapsed() >= Duration::from_secs(f.max_age_secs))
    }
}

/// The archiver.
pub struct Archiver {
    deps: Deps,
    cfg: Config,
}

impl Archiver {
    /// An archiver over `deps`.
    pub fn new(cfg: &Config, deps: Deps) -> Self {
        Self {
            deps,
            cfg: cfg.clone(),
        }
    }

    /// Run until `shutdown`, then flush what is buffered. Returns the number of messages
    /// archived and acked.
    pub async fn run(self, shutdown: CancellationToken) -> u64 {
        let mut buf = Buffer::new();
        let mut archived = 0u64;
        let f = self.cfg.flush.clone();
        info!(
            queue = self.deps.queue.name(),
            max_messages = f.max_messages,
            max_bytes = f.max_bytes,
            max_age_secs = f.max_age_secs,
            "Archiver started."
        );
        shared::consumer::spawn_depth_sampler(
            self.deps.queue.clone(),
            shared::consumer::QUEUE_SAMPLE_INTERVAL,
            shutdown.clone(),
        );
        loop {
            // Wait no longer than the age trigger of what is buffered.
            let mut wait = Duration::from_secs(self.cfg.consumer.wait_time_secs);
            if let Some((_, t)) = buf.first_at {
                wait = wait.min(Duration::from_secs(f.max_age_secs).saturating_sub(t.elapsed()));
            }
            // Never take more than the buffer has room for, so an object holds at most
            // max_messages lines.
            let room = (f.max_messages - buf.lines.len()).max(1);
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                r = self.deps.queue.receive(room, wait) => r,
            };
            match received {
                Ok(msgs) => {
                    for m in msgs {
                        let age = (OffsetDateTime::now_utc() - m.sent_at).unsigned_abs();
                        metrics::message_received("archiver", age);
                        // Flush first when this message would take the object past max_bytes.
                        if !buf.lines.is_empty() && buf.bytes + Buffer::cost(&m) > f.max_bytes {
                            archived += self.flush(&mut buf).await;
                        }
                        buf.push(m);
                        if buf.lines.len() >= f.max_messages {
                            archived += self.flush(&mut buf).await;
                        }
                    }
                }
                Err(e) => {
                    metrics::error("archiver", "receiving", e.code());
                    warn!(error = %e, "Receive failed; retrying.");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
            if buf.due(&f) {
                archived += self.flush(&mut buf).await;
            }
            if let Some(b) = &self.deps.busy {
                b.set(buf.lines.len());
            }
        }
        if !buf.lines.is_empty() {
            archived += self.flush(&mut buf).await;
        }
        info!(archived, "Archiver stopped.");
        archived
    }

    /// Write the buffer as one object, then ack its messages. On a write failure nothing is
    /// acked: the messages reappear after their visibility timeout and are archived again.
    async fn flush(&self, buf: &mut Buffer) -> u64 {
        let taken = std::mem::replace(buf, Buffer::new());
        let Some((first, _)) = taken.first_at else {
            return 0;
        };
        let started = std::time::Instant::now();
        let key = object_key(first);
        let body = Bytes::from(encode(&taken.lines));
        let opts = PutOptions {
            content_type: Some("application/x-ndjson".into()),
            ..Default::default()
        };
        let mut attempt = 0u32;
        loop {
            match self.deps.store.put(&key, body.clone(), opts.clone()).await {
                Ok(()) => break,
                Err(e) if e.is_transient() && attempt < 4 => {
                    attempt += 1;
                    warn!(error = %e, attempt, "Archive write failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(e) => {
                    metrics::error("archiver", "sending", e.code());
                    warn!(error = %e, messages = taken.lines.len(), "Archive write failed; the messages will be redelivered.");
                    return 0;
                }
            }
        }
        // One call for the whole flush: the local queue deletes it in one transaction; the SQS
        // adapter splits it into DeleteMessageBatch calls of 10.
        let acked = match self.deps.queue.ack_batch(&taken.receipts).await {
            Ok(failed) => {
                for (_, e) in &failed {
                    warn!(error = %e, "Ack failed after the archive write; the line may be archived twice (replay deduplicates).");
                }
                (taken.receipts.len() - failed.len()) as u64
            }
            Err(e) => {
                warn!(error = %e, "Ack failed after the archive write; lines may be archived twice (replay deduplicates).");
                0
            }
        };
        let elapsed = started.elapsed();
        for _ in 0..acked {
            metrics::message_processed("archiver", "success", elapsed);
        }
        info!(key = %key, messages = taken.lines.len(), bytes = body.len(), "Archive object written.");
        acked
    }
}
