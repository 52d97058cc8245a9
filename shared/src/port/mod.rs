//! The four ports workers and the API depend on (docs/architecture.md, "Ports and adapters"). Adapters live in
//! [`crate::adapter`]; every adapter passes the same contract suite in `crate::testing`.
//!
//! Each port has its own error enum with `is_transient()`: adapters classify, handlers decide.

pub mod blob_store;
pub mod metadata_store;
pub mod queue;
pub mod topic;

pub use blob_store::{
    BlobStore, BlobStoreError, ObjectInfo, ObjectMeta, PresignedUpload, PutOptions, UploadMethod,
    UploadPolicy,
};
pub use metadata_store::{
    AnimationFacts, BatchCounts, BatchRecord, BatchStatus, BatchTrace, BatchVersion, ExpiredFile,
    FileError, FileRecord, FileStatus, HdrFacts, IdempotencyKey, MetadataStore, MetadataStoreError,
    NewBatch, NewFile, NewWebhook, RenderedFile, SourceFacts, Transition, VariantRecord,
    WebhookAttempt, WebhookJob, WebhookState, WebhookStatus,
};
pub use queue::{
    DeadLetter, DeadLetterInfo, DeadLetterReason, Message, Queue, QueueError, QueueSettings,
    QueueStats,
};
pub use topic::{Topic, TopicError};
