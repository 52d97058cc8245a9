//! `shared`: everything two prism binaries need.
//!
//! Crate map (one line per module):
//! - [`error`]: `Disposition`, `HandlerError`, the closed `ErrorCode` set, `ResultExt`.
//! - [`variant`]: the variant request fixed at batch creation and carried with each upload.
//! - [`event`]: S3 event records, the SNS envelope, both body shapes, key decoding.
//! - [`keys`]: the deterministic object keys of uploads, variants, manifests and failures.
//! - [`port`]: the four ports (`BlobStore`, `Queue`, `Topic`, `MetadataStore`) and their errors.
//! - [`adapter`]: port implementations; `adapter::local` is the embedded backend.
//! - `testing` (feature `test-util`): the port contract suites every adapter must pass.

pub mod adapter;
pub mod error;
pub mod event;
pub mod keys;
pub mod port;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod variant;
