//! Test support for every crate (feature `test-util`): the port contract suites that each
//! adapter must pass, and helpers to build embedded backends in a temp dir.
//!
//! A suite is a plain async function that panics on the first broken rule; adapters call it
//! from a `#[tokio::test]` with a factory for fresh resources (uuid-named, so suites can run in
//! parallel against one server).

pub mod blob_store;
pub mod counting;
pub mod failing;
pub mod fault_proxy;
pub mod metadata_store;
pub mod moto;
pub mod otlp;
pub mod queue;
pub mod topic;

use std::future::Future;
use std::time::Duration;

/// Poll `check` every 20 ms until it returns `Some`, or panic after `timeout` with `what`.
///
/// # Panics
/// When `timeout` passes first.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A unique lower-case name with `prefix`, for buckets, queues and tables.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The test images: `$PRISM_CORPUS`, else `testdata/corpus` in the repository (sources and
/// licences in its `MANIFEST.md`).
///
/// # Panics
/// When it is missing, with what to do about it.
pub fn corpus() -> std::path::PathBuf {
    let dir = std::env::var_os("PRISM_CORPUS").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus"),
        std::path::PathBuf::from,
    );
    assert!(
        dir.join("MANIFEST.md").is_file(),
        "the test corpus is missing at {}: it is testdata/corpus in the repository; \
         PRISM_CORPUS must name a folder with the same files and a MANIFEST.md",
        dir.display()
    );
    dir
}
