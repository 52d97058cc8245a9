//! `shared`: everything two prism binaries need.
//!
//! Crate map (one line per module):
//! - [`error`]: `Disposition`, `HandlerError`, the closed `ErrorCode` set, `ResultExt`.
//! - [`variant`]: the variant request fixed at batch creation and carried with each upload.

pub mod error;
pub mod variant;
