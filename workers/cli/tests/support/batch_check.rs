//! Checks shared by the whole-pipeline robustness tests (chaos, AWS fault injection): a batch
//! view's counts are exact and no file appears twice; variants decode to their dimensions.
#![allow(dead_code, clippy::unwrap_used)] // test support: each test uses what it needs

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

/// Assert `view` (a `GET /v1/batches/{id}` answer) lists exactly `n` files, all received,
/// `want_done` of them done and the rest failed, each name and each file id once. Returns the
/// files by name.
pub fn exact_listing<'a>(
    view: &'a Value,
    batch_id: &str,
    n: usize,
    want_done: usize,
) -> HashMap<&'a str, &'a Value> {
    let c = &view["counts"];
    assert_eq!(
        (c["files"].as_u64(), c["received"].as_u64()),
        (Some(n as u64), Some(n as u64)),
        "{c}"
    );
    assert_eq!(c["done"].as_u64(), Some(want_done as u64), "{c}");
    assert_eq!(c["failed"].as_u64(), Some((n - want_done) as u64), "{c}");
    let listed = view["files"].as_array().unwrap();
    assert_eq!(listed.len(), n, "files listed in {batch_id}");
    let by_name: HashMap<&str, &Value> = listed
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f))
        .collect();
    assert_eq!(by_name.len(), n, "a file name appears twice in {batch_id}");
    let ids: BTreeSet<&str> = listed
        .iter()
        .map(|f| f["file_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), n, "a file id appears twice in {batch_id}");
    by_name
}

/// Decode a variant (WebP with the image crate, the others with the engine) and return its size.
pub fn decode_variant(bytes: &[u8], format: shared::variant::OutputFormat) -> (u32, u32) {
    match format {
        shared::variant::OutputFormat::Webp => {
            let img = image::load_from_memory_with_format(bytes, image::ImageFormat::WebP).unwrap();
            (img.width(), img.height())
        }
        _ => {
            let limits = prism_resize::render::Limits::default();
            let p = prism_resize::render::decode::probe(bytes, &limits).unwrap();
            let d = prism_resize::render::decode::decode(
                bytes,
                &p,
                p.width,
                &prism_resize::render::EncodeSettings::default(),
            )
            .unwrap();
            (d.width, d.height)
        }
    }
}
