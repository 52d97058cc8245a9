//! The `prism` command.
//!
//! - [`dev`]: the whole stack in one process on the embedded backend (API, resize, metadata,
//!   archiver),
//!   with the topic and queue wiring of DESIGN §8.
//! - [`dashboard`]: the operators' view `prism dev` serves at `/` (queues, workers, recent
//!   batches), read through the ports.
//! - [`upload`]: create a batch, upload files through the presigned instructions, wait, report.

pub mod dashboard;
pub mod dev;
pub mod upload;
