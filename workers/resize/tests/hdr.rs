//! HDR sources through the engine: public PQ AVIF files (libavif's test data, kept in
//! `tests/conformance/files/hdr/` with their sources and licences) render, are tone-mapped, and
//! the manifest facts say so; a gain-map JPEG renders its SDR base and is not called HDR. The
//! pixels are compared with the independent reference by the conformance suite (`hdr` group).

use prism_resize::render::hdr::{HdrSource, Transfer};
use prism_resize::render::{self, EncodeSettings, Limits, Rendered};
use shared::variant::{OutputFormat, VariantRequest};

fn file(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/conformance/files/hdr/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn render(name: &str) -> Rendered {
    let request = VariantRequest {
        widths: vec![256],
        formats: vec![OutputFormat::Webp],
        ..VariantRequest::default()
    }
    .normalise()
    .expect("a valid request");
    render::render(
        &file(name),
        &request,
        &Limits::default(),
        &EncodeSettings::default(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn pixels(r: &Rendered) -> image::RgbImage {
    image::load_from_memory(&r.variants[0].bytes)
        .expect("the variant decodes")
        .to_rgb8()
}

#[test]
fn pq_avif_with_max_cll_is_tone_mapped_from_it() {
    let r = render("seine_hdr_rec2020.avif");
    assert_eq!(
        r.facts.hdr,
        Some(HdrSource {
            transfer: Transfer::Pq,
            content_peak_nits: 703,
        })
    );
    assert_eq!(
        r.facts.color_profile.as_deref(),
        Some("BT.2020, PQ transfer (nclx 9/16/9)")
    );
    let manifest = serde_json::to_value(&r.facts).unwrap();
    assert_eq!(
        manifest["hdr"],
        serde_json::json!({"transfer": "pq", "content_peak_nits": 703})
    );
    // An overcast sky: bright, not clipped to a flat white, and not dim.
    let img = pixels(&r);
    let top: Vec<u8> = (0..img.width()).map(|x| img.get_pixel(x, 4)[1]).collect();
    let mean = top.iter().map(|&v| f64::from(v)).sum::<f64>() / top.len() as f64;
    assert!(mean > 180.0 && mean < 250.0, "sky {mean}");
}

#[test]
fn pq_avif_without_metadata_uses_1000_nits_and_p3_primaries() {
    let r = render("cosmos1650_yuv444_10bpc_p3pq.avif");
    assert_eq!(
        r.facts.hdr,
        Some(HdrSource {
            transfer: Transfer::Pq,
            content_peak_nits: 1000,
        })
    );
    assert_eq!(
        r.facts.color_profile.as_deref(),
        Some("Display P3, PQ transfer (nclx 12/16/12)")
    );
    assert_eq!((r.variants[0].width, r.variants[0].height), (256, 107));
}

#[test]
fn gain_map_jpeg_renders_its_sdr_base_and_is_not_hdr() {
    let r = render("paris_exif_xmp_gainmap_littleendian.jpg");
    assert_eq!(r.facts.hdr, None);
    // The base image: its size and colour, not the gain map's (the second image of the file,
    // a 512x384 gray JPEG).
    assert_eq!((r.facts.width, r.facts.height), (403, 302));
    let img = pixels(&r);
    let chroma = img
        .pixels()
        .map(|p| u64::from(p[0].abs_diff(p[2])))
        .sum::<u64>()
        / u64::from(img.width() * img.height());
    assert!(chroma > 5, "gray output: {chroma}");
    let manifest = serde_json::to_value(&r.facts).unwrap();
    assert!(manifest.get("hdr").is_none(), "{manifest}");
}
