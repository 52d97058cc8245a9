//! The `prism` command.
//!
//! - [`dev`]: the whole stack in one process on the embedded backend (API, resize, metadata,
//!   archiver),
//!   with the topic and queue wiring of [`shared::topology`].
//! - [`dev_aws`]: the same components in AWS mode against an endpoint (moto, LocalStack), after
//!   provisioning the topology there.
//! - [`dlq`]: list, show and redrive dead letters on either backend.
//! - [`dashboard`]: the operators' view `prism dev` serves at `/` (queues, workers, recent
//!   batches), read through the ports.
//! - [`ops`] and [`rerender`]: the operator commands' ports on either backend, and
//!   `prism rerender` (re-render files with a new spec through the resize worker).
//! - [`stack`]: `--stack NAME`, a deployment's resources from its CloudFormation outputs.
//! - [`upload`]: create a batch, upload files through the presigned instructions, wait, report.
//! - [`uploader`]: the drag-and-drop page `prism dev` serves at `/upload`.

pub mod dashboard;
pub mod dev;
pub mod dev_aws;
pub mod dlq;
pub mod ops;
pub mod rerender;
pub mod stack;
pub mod upload;
pub mod uploader;
