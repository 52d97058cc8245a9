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
fn blank_svg_renders_transparent_at_its_intrinsic_size() {
    // Once refused as unsupported: an SVG with a size and nothing drawn is a transparent image.
    let r = render_webp("blank.svg").unwrap();
    assert_eq!(r.facts.format.as_str(), "svg");
    assert_eq!((r.facts.width, r.facts.height), (10, 10));
    assert!(r.facts.has_alpha);
    assert_eq!(r.variants.len(), 1);
    assert_eq!((r.variants[0].width, r.variants[0].height), (10, 10));
    assert!(decode(&r.variants[0].bytes).pixels().all(|p| p[3] == 0));
}

#[test]
fn svg_renders_each_width_from_the_vector_source() {
    // A 400 x 200 viewBox: left half red, right half transparent, a blue stroke in the middle.
    let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 200">
        <rect width="200" height="200" fill="#ff0000"/>
        <rect x="300" y="50" width="50" height="100" fill="#0000ff"/></svg>"##;
    let r = render::render(
        svg,
        &request(&[100, 320, 640], &[OutputFormat::Webp]),
        &Limits::default(),
        &EncodeSettings::default(),
    )
    .unwrap();
    assert_eq!((r.facts.width, r.facts.height), (400, 200));
    let sizes: Vec<_> = r.variants.iter().map(|v| (v.width, v.height)).collect();
    assert_eq!(sizes, [(100, 50), (320, 160)]);
    let img = decode(&r.variants[1].bytes);
    assert_close(patch(&img, 80, 80), [255, 0, 0], 6.0, "red half");
    assert!(patch(&img, 200, 20)[3] < 2.0, "transparent right half");
    assert_close(patch(&img, 260, 80), [0, 0, 255], 8.0, "blue bar");
}

#[test]
fn rejects_bad_inputs_with_their_codes() {
    for (name, code) in [
        ("truncated.jpg", ErrorCode::TruncatedImage),
        ("empty.jpg", ErrorCode::UnsupportedFormat),
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
            other => panic!("{other} was not asked for"),
        }
        assert!(v.bytes.len() < 4096, "a 32 px variant is small");
    }
}

/// Widths too close to chain keep the decoded frame until the last of them is made (it is
/// freed once every width left can start from a variant): each is byte-identical to the same
/// width asked for alone, which is always made from the frame.
#[test]
fn widths_that_cannot_chain_are_made_from_the_frame() {
    let img = image::RgbImage::from_fn(1200, 900, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let png = png.into_inner();
    let run = |widths: &[u32]| {
        render::render(
            &png,
            &request(widths, &[OutputFormat::Webp]),
            &Limits::default(),
            &EncodeSettings::default(),
        )
        .unwrap()
    };
    // 1100 and 1000 from the frame (less than 1.5x apart), 300 from 1000, 200 from 300.
    let all = run(&[200, 300, 1000, 1100]);
    let sizes: Vec<(u32, u32)> = all.variants.iter().map(|v| (v.width, v.height)).collect();
    assert_eq!(
        sizes,
        vec![(200, 150), (300, 225), (1000, 750), (1100, 825)]
    );
    for w in [1000, 1100] {
        let alone = run(&[w]);
        let made = all.variants.iter().find(|v| v.width == w).unwrap();
        assert_eq!(made.bytes, alone.variants[0].bytes, "{w} px");
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

/// A 64x48 four-quadrant raster (the fixtures' picture).
fn quadrants_raster() -> render::resize::Raster {
    let (w, h) = (64_u32, 48_u32);
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            data.extend_from_slice(match (x < w / 2, y < h / 2) {
                (true, true) => &[255, 0, 0],
                (false, true) => &[0, 255, 0],
                (true, false) => &[0, 0, 255],
                (false, false) => &[255, 255, 255],
            });
        }
    }
    render::resize::Raster {
        width: w,
        height: h,
        channels: 3,
        data,
    }
}

fn riff_chunk(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut c = kind.to_vec();
    c.extend_from_slice(
        &u32::try_from(payload.len())
            .expect("a small chunk")
            .to_le_bytes(),
    );
    c.extend_from_slice(payload);
    if payload.len() % 2 == 1 {
        c.push(0);
    }
    c
}

fn u24(v: u32) -> [u8; 3] {
    let b = v.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// An animated WebP of `frames` identical 64x48 frames (VP8X + ANIM + one ANMF per frame),
/// each frame a lossy VP8 bitstream from the engine's own encoder.
fn animated_webp(frames: usize) -> Vec<u8> {
    let still = render::webp::encode(
        &quadrants_raster(),
        render::webp::WebpOptions {
            quality: 90,
            method: 4,
            thread_level: 0,
        },
    )
    .expect("a 64x48 frame encodes");
    // The still file is RIFF/WEBP + one "VP8 " chunk: reuse that chunk as the frame data.
    let vp8 = &still[12..];
    assert_eq!(&vp8[..4], b"VP8 ");
    let mut vp8x = vec![0x02, 0, 0, 0]; // animation flag
    vp8x.extend_from_slice(&u24(63));
    vp8x.extend_from_slice(&u24(47));
    let mut body = b"WEBP".to_vec();
    body.extend(riff_chunk(b"VP8X", &vp8x));
    body.extend(riff_chunk(b"ANIM", &[0, 0, 0, 0, 0, 0]));
    for _ in 0..frames {
        let mut anmf = Vec::new();
        anmf.extend_from_slice(&u24(0)); // x / 2
        anmf.extend_from_slice(&u24(0)); // y / 2
        anmf.extend_from_slice(&u24(63)); // width - 1
        anmf.extend_from_slice(&u24(47)); // height - 1
        anmf.extend_from_slice(&u24(100)); // duration, ms
        anmf.push(0); // blend, no dispose
        anmf.extend_from_slice(vp8);
        body.extend(riff_chunk(b"ANMF", &anmf));
    }
    let mut file = b"RIFF".to_vec();
    file.extend_from_slice(
        &u32::try_from(body.len())
            .expect("a small file")
            .to_le_bytes(),
    );
    file.extend(body);
    file
}

#[test]
fn animated_webp_counts_frames_from_its_header() {
    let bytes = animated_webp(5);
    // Valid by an independent decoder.
    assert_quadrants(&decode(&bytes), "generated animated WebP");

    let r = render::render(
        &bytes,
        &request(&[320], &[OutputFormat::Webp]),
        &Limits::default(),
        &EncodeSettings::default(),
    )
    .unwrap();
    assert_eq!(r.facts.frames, 5);
    assert_quadrants(
        &decode(&r.variants[0].bytes),
        "first frame of the animated WebP",
    );

    let limits = Limits {
        max_frames: 4,
        ..Limits::default()
    };
    // Refused by the header probe alone, before any pixel is decoded.
    let err = render::decode::probe(&bytes, &limits).unwrap_err();
    assert_eq!(err.code(), ErrorCode::TooManyFrames, "{err}");
    let err = render::render(
        &bytes,
        &request(&[320], &[OutputFormat::Webp]),
        &limits,
        &EncodeSettings::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TooManyFrames, "{err}");
}

/// A 64x48 AVIF of one flat colour whose `colr` box says nclx `primaries`/`transfer` (the
/// pixels are written as they are; only the signalled meaning changes). No ICC profile.
fn nclx_avif(rgb: [u8; 3], primaries: u16, transfer: u16) -> Vec<u8> {
    nclx_avif_sized(rgb, primaries, transfer, 64, 48, ravif::BitDepth::Auto)
}

/// [`nclx_avif`] at `width` × `height` and `depth` (ravif's `Auto` writes 10 bits).
fn nclx_avif_sized(
    rgb: [u8; 3],
    primaries: u16,
    transfer: u16,
    width: usize,
    height: usize,
    depth: ravif::BitDepth,
) -> Vec<u8> {
    let px = vec![ravif::RGB8::new(rgb[0], rgb[1], rgb[2]); width * height];
    // RGB coding (identity matrix) makes ravif write its colr box, which we then patch.
    let mut avif = ravif::Encoder::new()
        .with_quality(100.0)
        .with_speed(10)
        .with_bit_depth(depth)
        .with_internal_color_model(ravif::ColorModel::RGB)
        .encode_rgb(ravif::Img::new(&px[..], width, height))
        .expect("a flat AVIF encodes")
        .avif_file;
    let at = avif
        .windows(8)
        .position(|w| w == b"colrnclx")
        .expect("ravif writes an nclx colour box");
    avif[at + 8..at + 10].copy_from_slice(&primaries.to_be_bytes());
    avif[at + 10..at + 12].copy_from_slice(&transfer.to_be_bytes());
    assert!(!avif.windows(4).any(|w| w == b"prof" || w == b"rICC"));
    avif
}

/// Independent reference: signal → linear with `eotf`, a linear RGB → linear sRGB matrix (both
/// D65), then the sRGB curve.
fn to_srgb_reference(rgb: [u8; 3], eotf: fn(f64) -> f64, m: [[f64; 3]; 3]) -> [u8; 3] {
    let lin = rgb.map(|v| eotf(f64::from(v) / 255.0));
    let mut out = [0_u8; 3];
    for (i, row) in m.iter().enumerate() {
        let l = (row[0] * lin[0] + row[1] * lin[1] + row[2] * lin[2]).clamp(0.0, 1.0);
        let v = if l <= 0.003_130_8 {
            12.92 * l
        } else {
            1.055 * l.powf(1.0 / 2.4) - 0.055
        };
        out[i] = (v * 255.0).round() as u8;
    }
    out
}

/// Linear Display P3 → linear sRGB (both D65).
const P3_TO_SRGB: [[f64; 3]; 3] = [
    [1.224_940_2, -0.224_940_2, 0.0],
    [-0.042_056_9, 1.042_057_1, 0.0],
    [-0.019_637_6, -0.078_636_1, 1.098_273_5],
];

fn srgb_eotf(v: f64) -> f64 {
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

fn bt709_inverse_oetf(v: f64) -> f64 {
    if v < 0.081 {
        v / 4.5
    } else {
        ((v + 0.099) / 1.099).powf(1.0 / 0.45)
    }
}

#[test]
fn nclx_only_avif_is_converted_to_srgb() {
    const BT2020_TO_SRGB: [[f64; 3]; 3] = [
        [1.660_491, -0.587_641_1, -0.072_849_9],
        [-0.124_550_5, 1.132_899_9, -0.008_349_4],
        [-0.018_150_8, -0.100_578_9, 1.118_729_7],
    ];
    let colour = [200, 120, 60];
    for (primaries, transfer, eotf, matrix, description) in [
        (
            12,
            13,
            srgb_eotf as fn(f64) -> f64,
            P3_TO_SRGB,
            "Display P3, sRGB transfer (nclx 12/13/0)",
        ),
        (
            9,
            1,
            bt709_inverse_oetf,
            BT2020_TO_SRGB,
            "BT.2020, BT.709 transfer (nclx 9/1/0)",
        ),
    ] {
        let bytes = nclx_avif(colour, primaries, transfer);
        let want = to_srgb_reference(colour, eotf, matrix);
        // The conversion must move the colour well beyond the codec's error.
        assert!(
            want.iter().zip(colour).any(|(w, c)| w.abs_diff(c) > 10),
            "{want:?}"
        );
        let r = render::render(
            &bytes,
            &request(&[320], &[OutputFormat::Webp]),
            &Limits::default(),
            &EncodeSettings::default(),
        )
        .unwrap();
        assert_eq!(r.facts.format.as_str(), "avif");
        assert_eq!(r.facts.color_profile.as_deref(), Some(description));
        let got = patch(&decode(&r.variants[0].bytes), 32, 24);
        assert_close(got, want, 5.0, description);
    }

    // sRGB code points leave the pixels alone, and are reported as such.
    let bytes = nclx_avif(colour, 1, 13);
    let r = render::render(
        &bytes,
        &request(&[320], &[OutputFormat::Webp]),
        &Limits::default(),
        &EncodeSettings::default(),
    )
    .unwrap();
    assert_eq!(r.facts.color_profile.as_deref(), Some("sRGB (nclx 1/13/0)"));
    assert_close(
        patch(&decode(&r.variants[0].bytes), 32, 24),
        colour,
        4.0,
        "sRGB nclx",
    );
}

#[test]
fn a_large_display_p3_frame_is_converted_once_per_variant() {
    // 1600x1200 Display P3 with widths 320 and 640: the variants are well under half the
    // frame, so the colour transform is deferred to the 640 variant (resized from the frame)
    // and the 320 one is resized from that already converted variant. Both must carry the
    // sRGB colour: once, not zero times and not twice.
    let colour = [200, 120, 60];
    let want = to_srgb_reference(colour, srgb_eotf, P3_TO_SRGB);
    let twice = to_srgb_reference(want, srgb_eotf, P3_TO_SRGB);
    assert!(
        want.iter().zip(twice).any(|(w, t)| w.abs_diff(t) > 10),
        "{want:?} {twice:?}"
    );
    // 8 bits, like an iPhone HEIC: deeper frames are always converted first.
    let bytes = nclx_avif_sized(colour, 12, 13, 1600, 1200, ravif::BitDepth::Eight);
    let r = render::render(
        &bytes,
        &request(&[320, 640], &[OutputFormat::Webp]),
        &Limits::default(),
        &EncodeSettings::default(),
    )
    .unwrap();
    assert_eq!(r.variants.len(), 2);
    for v in &r.variants {
        let img = decode(&v.bytes);
        let got = patch(&img, img.width() / 2, img.height() / 2);
        assert_close(got, want, 5.0, &format!("{} px variant", v.width));
    }
}
