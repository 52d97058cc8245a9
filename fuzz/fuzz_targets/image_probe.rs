//! The image engine's entry point: sniff + header probe (where every limit is enforced), then,
//! for what passes, a full decode and a small WebP render. Any input may be refused with a
//! `RenderError`; none may panic, hang or allocate past the limits (libFuzzer's `-rss_limit_mb`
//! and `-timeout` catch the last two).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_resize::render::{self, EncodeSettings, Limits};
use shared::variant::{OutputFormat, VariantRequest};

fuzz_target!(|data: &[u8]| {
    // Tight limits keep each execution fast; they are the same code paths as the defaults.
    let limits = Limits {
        max_pixels: 4_000_000,
        max_dimension: 8192,
        max_input_bytes: 1 << 20,
        max_frames: 64,
        max_output_pixels: 4_000_000,
        max_animation_pixels: 16_000_000,
    };
    let _ = render::decode::sniff(data);
    let Ok(probe) = render::decode::probe(data, &limits) else {
        return;
    };
    assert!(probe.width >= 1 && probe.height >= 1);
    assert!(u64::from(probe.width) * u64::from(probe.height) <= limits.max_pixels);
    assert!(probe.decode_pixels() <= limits.max_pixels);
    let request = VariantRequest {
        widths: vec![16],
        formats: vec![OutputFormat::Webp],
        ..VariantRequest::default()
    }
    .normalise()
    .expect("a valid request");
    if let Ok(r) = render::render(data, &request, &limits, &EncodeSettings::default()) {
        assert!(!r.variants.is_empty());
        for v in &r.variants {
            assert!(v.width >= 1 && v.height >= 1 && v.width <= probe.width.max(probe.height));
        }
    }
});
