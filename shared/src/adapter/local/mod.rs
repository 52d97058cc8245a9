//! Embedded adapters: files under a data dir and SQLite in WAL mode, safe for several processes
//! sharing one data dir.

mod db;
pub mod filter_policy;
pub mod fs_blob_store;
pub mod signing;
pub mod sqlite_metadata_store;
pub mod sqlite_queue;
pub mod sqlite_topic;
pub mod stack;

pub use fs_blob_store::{FsBlobStore, NotificationRule};
pub use signing::LocalSigner;
pub use sqlite_metadata_store::SqliteMetadataStore;
pub use sqlite_queue::SqliteQueue;
pub use sqlite_topic::SqliteTopic;
pub use stack::LocalStack;

/// File name of the queues-and-topics database inside a data dir.
pub const QUEUES_DB: &str = "queues.sqlite";
/// File name of the metadata database inside a data dir.
pub const METADATA_DB: &str = "metadata.sqlite";
/// Directory of the blob store inside a data dir.
pub const BLOBS_DIR: &str = "blobs";
