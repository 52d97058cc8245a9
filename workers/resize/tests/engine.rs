//! The engine over tiny generated fixtures (`tests/fixtures/images/`, made by
//! `scripts/make_fixtures.py`): every picture DISPLAYS as 64x48 quadrants — red top-left, green
//! top-right, blue bottom-left, white bottom-right — so orientation and colour are checked by
//! sampling quadrant centres of the decoded output. Properties, not golden bytes.

use prism_resize::render::{self, EncodeSettings, Limits, RenderError, Rendered};
use shared::error::ErrorCode;
use shared::variant::{OutputFormat, VariantRequest};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/images/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

fn request(widths: &[u32], formats: &[OutputFormat]) -> VariantRequest {
    VariantRequest {
        widths: widths.to_vec(),
        formats: formats.to_vec(),
        ..VariantRequest::default()
    }
    .normalise()
    .expect("a valid request")
}

fn render_webp(name: &str) -> Result<Rendered, RenderError> {
    render::render(
        &fixture(name),
        &request(&[320, 640], &[OutputFormat::Webp]),
        &Limits::default(),
        &EncodeSettings::default(),
    )
}

fn decode(bytes: &[u8]) -> image::RgbaImage {
    image::load_from_memory(bytes)
        .expect("the variant decodes")
        .to_rgba8()
}

/// Mean colour of a 6x6 patch centred on (x, y).
fn patch(img: &image::RgbaImage, x: u32, y: u32) -> [f64; 4] {
    let mut sum = [0.0; 4];
    for dy in 0..6 {
        for dx in 0..6 {
            let p = img.get_pixel(x + dx - 3, y + dy - 3);
            for c in 0..4 {
                sum[c] += f64::from(p[c]);
            }
        }
    }
    sum.map(|s| s / 36.0)
}

fn assert_close(got: [f64; 4], want: [u8; 3], tol: f64, what: &str) {
    for c in 0..3 {
        assert!(
            (got[c] - f64::from(want[c])).abs() <= tol,
            "{what}: got {got:?}, want {want:?}"
        );
    }
}

fn assert_quadrants(img: &image::RgbaImage, what: &str) {
    let (w, h) = img.dimensions();
    assert_eq!((w, h), (64, 48), "{what}: displayed size");
    assert_close(
        patch(img, w / 4, h / 4),
        [255, 0, 0],
        40.0,
        &format!("{what} top-left"),
    );
    assert_close(
        patch(img, 3 * w / 4, h / 4),
        [0, 255, 0],
        40.0,
        &format!("{what} top-right"),
    );
    assert_close(
        patch(img, w / 4, 3 * h / 4),
        [0, 0, 255],
        40.0,
        &format!("{what} bottom-left"),
    );
    assert_close(
        patch(img, 3 * w / 4, 3 * h / 4),
        [255, 255, 255],
        40.0,
        &format!("{what} bottom-right"),
    );
}

#[test]
fn renders_every_input_format_with_the_right_colours() {
    for (name, format) in [
        ("quadrants.jpg", "jpeg"),
        ("quadrants-progressive.jpg", "jpeg"),
        ("quadrants.png", "png"),
        ("quadrants.gif", "gif"),
        ("quadrants-lossy.webp", "webp"),
        ("rgb16.png", "png"),
    ] {
        let r = render_webp(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.facts.format.as_str(), format, "{name}");
        assert_eq!(r.variants.len(), 1, "{name}: one variant at source width");
        assert_quadrants(&decode(&r.variants[0].bytes), name);
    }
}

#[test]
fn applies_all_eight_exif_orientations() {
    for o in 1..=8_u8 {
        let name = format!("orient-{o}.jpg");
        let r = render_webp(&name).unwrap();
        assert_eq!(r.facts.orientation, o);
        assert_eq!((r.facts.width, r.facts.height), (64, 48), "{name}");
        let v = &r.variants[0];
        assert_eq!((v.width, v.height), (64, 48), "{name}");
        assert_quadrants(&decode(&v.bytes), &name);
        assert!(
            !v.bytes.windows(4).any(|w| w == b"Exif" || w == b"EXIF"),
            "{name}: output carries EXIF"
        );
    }
}

#[test]
fn cmyk_without_a_profile_falls_back_to_a_sane_conversion() {
    // Pure magenta + yellow ink, no black: red. The JPEG is Adobe-inverted, the TIFF is not.
    for name in ["cmyk-adobe.jpg", "cmyk.tif"] {
        let r = render_webp(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let img = decode(&r.variants[0].bytes);
        assert_close(patch(&img, 32, 24), [255, 0, 0], 30.0, name);
    }
}

#[test]
fn grayscale_stays_neutral() {
    let r = render_webp("gray.jpg").unwrap();
    let img = decode(&r.variants[0].bytes);
    for (x, y) in [(16, 12), (48, 12), (16, 36), (48, 36)] {
        let p = patch(&img, x, y);
        assert!(
            (p[0] - p[1]).abs() < 6.0 && (p[1] - p[2]).abs() < 6.0,
            "{p:?}"
        );
    }
}

#[test]
fn keeps_alpha_and_transparent_pixels_stay_transparent() {
    for name in ["alpha.png", "alpha.webp", "gray-alpha.png"] {
        let r = render_webp(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(r.facts.has_alpha, "{name}");
        let img = decode(&r.variants[0].bytes);
        assert!(patch(&img, 16, 12)[3] > 250.0, "{name}: left half opaque");
        assert!(
            patch(&img, 48, 12)[3] < 5.0,
            "{name}: right half transparent"
        );
    }
    let r = render_webp("alpha.png").unwrap();
    assert_close(
        patch(&decode(&r.variants[0].bytes), 16, 12),
        [255, 0, 0],
        40.0,
        "alpha red",
    );
}

#[test]
fn animated_gif_renders_the_first_frame_and_counts_frames() {
    let r = render_webp("animated.gif").unwrap();
    assert_eq!(r.facts.frames, 3);
    assert_quadrants(&decode(&r.variants[0].bytes), "animated.gif");
    let limits = Limits {
        max_frames: 2,
        ..Limits::default()
    };
    let err = render::render(
        &fixture("animated.gif"),
        &request(&[320], &[OutputFormat::Webp]),
        &limits,
        &EncodeSettings::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TooManyFrames);
}

#[test]
fn rejects_bad_inputs_with_their_codes() {
    for (name, code) in [
        ("truncated.jpg", ErrorCode::TruncatedImage),
        ("empty.jpg", ErrorCode::UnsupportedFormat),
        ("not-an-image.svg", ErrorCode::UnsupportedFormat),
        ("bomb.png", ErrorCode::ImageTooLarge),
        ("bomb.jpg", ErrorCode::ImageTooLarge),
    ] {
        let err = render_webp(name).unwrap_err();
        assert_eq!(err.code(), code, "{name}: {err}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn bomb_is_rejected_from_its_header_before_any_decode() {
    // 10 gigapixels declared in 66 bytes: the probe alone must refuse it.
    let bytes = fixture("bomb.png");
    let err = render::decode::probe(&bytes, &Limits::default()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge);
}

#[test]
fn enforces_byte_and_dimension_limits() {
    let bytes = fixture("quadrants.png");
    let tight = Limits {
        max_input_bytes: 10,
        ..Limits::default()
    };
    let err = render::decode::probe(&bytes, &tight).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge);
    let narrow = Limits {
        max_dimension: 63,
        ..Limits::default()
    };
    let err = render::decode::probe(&bytes, &narrow).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge);
}

#[test]
fn never_upscales_and_keeps_the_aspect_ratio() {
    let r = render::render(
        &fixture("quadrants.png"),
        &request(&[16, 32, 640], &[OutputFormat::Webp, OutputFormat::Avif]),
        &Limits::default(),
        &EncodeSettings::default(),
    )
    .unwrap();
    let sizes: Vec<(u32, u32, OutputFormat)> = r
        .variants
        .iter()
        .map(|v| (v.width, v.height, v.format))
        .collect();
    assert_eq!(
        sizes,
        vec![
            (16, 12, OutputFormat::Webp),
            (16, 12, OutputFormat::Avif),
            (32, 24, OutputFormat::Webp),
            (32, 24, OutputFormat::Avif),
        ]
    );
    for v in &r.variants {
        match v.format {
            OutputFormat::Webp => assert_eq!(&v.bytes[8..12], b"WEBP"),
            OutputFormat::Avif => assert_eq!(&v.bytes[4..12], b"ftypavif"),
        }
        assert!(v.bytes.len() < 4096, "a 32 px variant is small");
    }
}

#[test]
fn facts_describe_the_source() {
    let bytes = fixture("orient-6.jpg");
    let r = render_webp("orient-6.jpg").unwrap();
    let f = &r.facts;
    assert_eq!(f.bytes, bytes.len() as u64);
    assert_eq!(f.sha256.len(), 64);
    assert!(f.sha256.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(!f.has_alpha);
    assert_eq!(f.color_profile, None);
    assert!(f.thumbhash.len() > 10, "{}", f.thumbhash);
    assert!(f.dominant_color.starts_with('#') && f.dominant_color.len() == 7);
    let json = serde_json::to_value(f).unwrap();
    assert_eq!(json["format"], "jpeg");
}
