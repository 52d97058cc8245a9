//! `shared`: everything two prism binaries need.
//!
//! Crate map (one line per module):
//! - [`api`]: the HTTP API's wire types (its OpenAPI schemas) and the typed client.
//! - [`error`]: `Disposition`, `HandlerError`, the closed `ErrorCode` set, `ResultExt`.
//! - [`variant`]: the variant request fixed at batch creation and carried with each upload.
//! - [`event`]: S3 event records, the SNS envelope, both body shapes, key decoding.
//! - [`keys`]: the deterministic object keys of uploads, variants, manifests and failures.
//! - [`manifest`]: `manifest.json` and `failure.json`, written by resize, read by metadata.
//! - [`topology`]: queue names and the topic's subscription filter policies.
//! - [`port`]: the four ports (`BlobStore`, `Queue`, `Topic`, `MetadataStore`) and their errors.
//! - [`adapter`]: port implementations; `adapter::local` is the embedded backend.
//! - [`callback`]: completion callbacks: SSRF-safe URL checks and HMAC signatures.
//! - [`busy`]: the in-flight count the consumer reports (scale-in protection watches it).
//! - [`consumer`]: the queue loop: receive, bounded concurrency, heartbeat, ack/retry/dead-letter.
//! - [`admission`]: admission by budget (the resize worker's pixel budget).
//! - [`cli`]: the flags and start-up every binary shares.
//! - [`config`]: layered config (defaults, file, `PRISM__` env, CLI), validated, secrets redacted.
//! - [`telemetry`]: tracing setup, metric names and helpers, `/metrics` + `/healthz`.
//! - [`shutdown`]: SIGTERM/SIGINT to a cancellation token.
//! - `testing` (feature `test-util`): the port contract suites every adapter must pass.

pub mod adapter;
pub mod admission;
pub mod api;
pub mod busy;
pub mod callback;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod error;
pub mod event;
pub mod keys;
pub mod manifest;
pub mod port;
pub mod rerender;
pub mod shutdown;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod topology;
pub mod variant;
