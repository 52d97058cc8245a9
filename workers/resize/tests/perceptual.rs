//! `"quality": "auto"`: the quality search on material nobody on the project drew (sharp's
//! fixtures in `testdata/corpus`): a flat illustration (the Dutch flag, three flat bands) and a
//! detailed photo (Landscape_3.jpg). Each recorded score is checked by scoring the variant
//! again, decoded, against the engine's own resized raster.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use prism_resize::render::{
    self, EncodeSettings, Limits, Rendered, color, decode, orient, perceptual, resize,
};
use shared::variant::{AutoQuality, OutputFormat, Quality, VariantRequest};

fn corpus(name: &str) -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/corpus")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn request(widths: &[u32], quality: Option<Quality>) -> VariantRequest {
    VariantRequest {
        widths: widths.to_vec(),
        formats: vec![OutputFormat::Webp, OutputFormat::Avif],
        quality,
        ..VariantRequest::default()
    }
    .normalise()
    .unwrap()
}

fn render(bytes: &[u8], req: &VariantRequest) -> Rendered {
    render::render(bytes, req, &Limits::default(), &EncodeSettings::default()).unwrap()
}

/// The sRGB rasters the engine encodes for `sizes` (largest first: decoded, converted, the
/// largest resized from the frame, each smaller one from the one before, as the engine's
/// resize chain makes them when each is at most 2/3 of the one before).
fn engine_rasters(bytes: &[u8], sizes: &[(u32, u32)]) -> Vec<resize::Raster> {
    let limits = Limits::default();
    let settings = EncodeSettings::default();
    let probe = decode::probe(bytes, &limits).unwrap();
    let (mut from, _) =
        color::to_srgb8(decode::decode(bytes, &probe, sizes[0].0, &settings).unwrap()).unwrap();
    let mut out = Vec::new();
    for &(w, h) in sizes {
        // 180° at most here (the fixtures' orientations 1 and 3): the size stays.
        let r = resize::resize(&from, w, h).unwrap();
        from = r.clone();
        out.push(orient::apply(r, probe.orientation_to_apply()));
    }
    out
}

const GOOD: Option<Quality> = Some(Quality::Auto(AutoQuality::Good));

#[test]
fn search_converges_within_its_bounds_and_records_what_it_measured() {
    for name in ["Flag_of_the_Netherlands-16bit.png", "Landscape_3.jpg"] {
        let bytes = corpus(name);
        let r = render(&bytes, &request(&[160, 320], GOOD));
        assert_eq!(r.variants.len(), 4, "{name}");
        let mut sizes: Vec<(u32, u32)> = r.variants.iter().map(|v| (v.width, v.height)).collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes.reverse();
        let rasters = engine_rasters(&bytes, &sizes);
        for v in &r.variants {
            let c = v
                .auto
                .unwrap_or_else(|| panic!("{name} {}: no auto record", v.format));
            let (lo, hi) = perceptual::quality_bounds(v.format);
            assert!((lo..=hi).contains(&c.quality), "{name}: {c:?}");
            // The recorded score is the variant's: decode it and score it again.
            let reference = rasters.iter().find(|r| r.width == v.width).unwrap();
            let again =
                perceptual::score_encoded(reference, &v.bytes, &EncodeSettings::default()).unwrap();
            assert_eq!(again, c.score, "{name} {} {}w", v.format, v.width);
            let target = perceptual::target_score(AutoQuality::Good, v.format);
            if v.target_width == 160 {
                // The calibration: bounded, and it ends near the target (or runs out of
                // trials having tried).
                assert!(
                    (1..=perceptual::MAX_TRIALS as u8).contains(&c.trials),
                    "{name}: {c:?}"
                );
                assert!(
                    (c.score - target).abs() <= perceptual::TOLERANCE
                        || c.trials == perceptual::MAX_TRIALS as u8,
                    "{name} {}: {c:?}",
                    v.format
                );
                assert!(c.score >= target - 3.0, "{name} {}: {c:?}", v.format);
            } else {
                // A larger width is encoded once at the calibrated quality.
                assert_eq!(c.trials, 1, "{name}: {c:?}");
            }
            eprintln!(
                "{name} {} {}x{}: q{} score {} trials {} bytes {}",
                v.format,
                v.width,
                v.height,
                c.quality,
                c.score,
                c.trials,
                v.bytes.len()
            );
        }
    }
}

#[test]
fn a_flat_illustration_gets_a_lower_quality_and_fewer_bytes_than_a_photo() {
    let flag = render(
        &corpus("Flag_of_the_Netherlands-16bit.png"),
        &request(&[320], GOOD),
    );
    let photo = render(&corpus("Landscape_3.jpg"), &request(&[320], GOOD));
    for format in [OutputFormat::Webp, OutputFormat::Avif] {
        let pick = |r: &Rendered| {
            let v = r.variants.iter().find(|v| v.format == format).unwrap();
            (
                v.auto.unwrap().quality,
                v.bytes.len() as f64 / f64::from(v.width * v.height),
            )
        };
        let ((qf, bf), (qp, bp)) = (pick(&flag), pick(&photo));
        assert!(qf < qp, "{format}: flag q{qf}, photo q{qp}");
        assert!(bf * 4.0 < bp, "{format}: flag {bf} B/px, photo {bp} B/px");
    }
}

#[test]
fn levels_order_the_quality_and_a_fixed_quality_records_nothing() {
    let bytes = corpus("Landscape_3.jpg");
    let q = |level| {
        let r = render(&bytes, &request(&[320], Some(Quality::Auto(level))));
        r.variants
            .iter()
            .map(|v| v.auto.unwrap().quality)
            .collect::<Vec<_>>()
    };
    let (eco, good, high) = (
        q(AutoQuality::Eco),
        q(AutoQuality::Good),
        q(AutoQuality::High),
    );
    for i in 0..2 {
        assert!(
            eco[i] < good[i] && good[i] < high[i],
            "{eco:?} {good:?} {high:?}"
        );
    }
    let fixed = render(&bytes, &request(&[320], Some(Quality::Fixed(70))));
    assert!(fixed.variants.iter().all(|v| v.auto.is_none()));
    let default = render(&bytes, &request(&[320], None));
    assert!(default.variants.iter().all(|v| v.auto.is_none()));
}
