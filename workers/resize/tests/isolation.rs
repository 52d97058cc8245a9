//! Crash isolation and render deadlines, with real render processes (`prism-resize
//! render-child`, built with the `test-hooks` feature): a render whose process aborts fails
//! exactly that file with `render_crashed` while its siblings complete; a render that never
//! ends is killed at its deadline with `render_timeout`; the pool keeps working after both.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

#[path = "support/hostile_inputs.rs"]
mod hostile_inputs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hostile_inputs as gen_;
use prism_resize::isolate::{Pool, PoolError, test_hooks};
use prism_resize::render::{EncodeSettings, Limits, RenderError, Rendered};
use shared::variant::{OutputFormat, VariantRequest};

fn program() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_prism-resize"))
}

fn request() -> VariantRequest {
    VariantRequest {
        widths: vec![16, 48],
        formats: vec![OutputFormat::Webp],
        ..VariantRequest::default()
    }
    .normalise()
    .unwrap()
}

fn with_hook(mut image: Vec<u8>, hook: &[u8]) -> Vec<u8> {
    image.extend_from_slice(hook);
    image
}

async fn render(pool: &Pool, bytes: &[u8], deadline: Duration) -> Result<Rendered, PoolError> {
    pool.render(
        bytes,
        &request(),
        &Limits::default(),
        &EncodeSettings::default(),
        deadline,
    )
    .await
}

fn assert_rendered(r: &Result<Rendered, PoolError>, what: &str) {
    let r = r
        .as_ref()
        .unwrap_or_else(|e| panic!("{what}: expected variants, got {e}"));
    assert!(!r.variants.is_empty(), "{what}");
    assert!(r.variants.iter().all(|v| !v.bytes.is_empty()), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_render_fails_only_its_file() {
    let pool = Arc::new(Pool::new(program(), 4096, 3));
    let mut files: Vec<Vec<u8>> = (0..6).map(|i| gen_::png_solid(60 + i, 40)).collect();
    files[2] = with_hook(gen_::png_solid(70, 50), test_hooks::ABORT);
    let tasks: Vec<_> = files
        .into_iter()
        .map(|bytes| {
            let pool = pool.clone();
            tokio::spawn(async move { render(&pool, &bytes, Duration::from_secs(60)).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    for (i, r) in results.iter().enumerate() {
        if i == 2 {
            match r {
                Err(PoolError::Crashed(why)) => {
                    assert!(why.contains("SIGABRT"), "{why}");
                    assert!(why.contains("attempt 2"), "retried once: {why}");
                }
                other => panic!("file 2: expected a crash, got {:?}", other.as_ref().err()),
            }
        } else {
            assert_rendered(r, &format!("sibling {i}"));
        }
    }
    // The pool replaced the dead process: the next renders work, and a refusal from the
    // engine is an answer, not a death.
    assert_rendered(
        &render(&pool, &gen_::png_solid(30, 30), Duration::from_secs(60)).await,
        "after the crash",
    );
    match render(&pool, b"not an image", Duration::from_secs(60)).await {
        Err(PoolError::Render(RenderError::UnsupportedFormat(_))) => {}
        other => panic!("expected unsupported_format, got {:?}", other.err()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_past_its_deadline_is_killed_and_the_pool_goes_on() {
    let pool = Arc::new(Pool::new(program(), 4096, 2));
    let spin = with_hook(gen_::png_solid(40, 40), test_hooks::SPIN);
    let sibling = {
        let pool = pool.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            render(&pool, &gen_::png_solid(64, 64), Duration::from_secs(60)).await
        })
    };
    let t0 = Instant::now();
    let r = render(&pool, &spin, Duration::from_secs(2)).await;
    let took = t0.elapsed();
    match r {
        Err(PoolError::Timeout(d)) => assert_eq!(d, Duration::from_secs(2)),
        other => panic!("expected a timeout, got {:?}", other.err()),
    }
    assert!(
        took < Duration::from_secs(5),
        "the deadline is kept: {took:?}"
    );
    assert_rendered(&sibling.await.unwrap(), "sibling");
    assert_rendered(
        &render(&pool, &gen_::png_solid(30, 30), Duration::from_secs(60)).await,
        "after the timeout",
    );
}

/// The bench's process mode renders the same bytes as the in-process engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_renders_what_the_engine_renders() {
    let pool = Pool::new(program(), 0, 1);
    let bytes = gen_::jpeg_solid(200, 120);
    let direct = prism_resize::render::render(
        &bytes,
        &request(),
        &Limits::default(),
        &EncodeSettings::default(),
    )
    .unwrap();
    let child = render(&pool, &bytes, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(child.facts, direct.facts);
    let sizes = |r: &Rendered| {
        r.variants
            .iter()
            .map(|v| (v.target_width, v.width, v.height, v.format, v.bytes.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(sizes(&child), sizes(&direct));
}
