//! prism-archiver: keeps every event that crosses the topic, so any upload can be re-driven later
//! without asking the producer again.
//!
//! The archive queue is subscribed to everything. The archiver buffers message bodies exactly as
//! received and writes them as one gzip-compressed NDJSON object per flush, under
//! `raw/dt=YYYY-MM-DD/hour=HH/<first-received-at>-<uuid>.ndjson.gz`; each line is
//! `{"received_at","message_id","body"}`. A flush happens at `max_messages`, `max_bytes` or
//! `max_age_secs` after the first buffered message, whichever comes first, and on shutdown.
//!
//! Invariant: a message is acked only after the object holding it is durably written. A crash
//! before that loses nothing (the messages reappear after their visibility timeout); a crash
//! after it, before the ack, duplicates lines, which replay tolerates (it deduplicates by
//! content hash). This worker runs its own loop rather than `shared::consumer` because it acks a
//! whole flush at once, in batches, which is what makes it fast.
//!
//! [`replay`] reads the archive for a time range and re-publishes each distinct event.

pub mod archive;
pub mod config;
pub mod replay;

pub use archive::{Archiver, Deps, aws_deps, local_deps};
pub use config::Config;
