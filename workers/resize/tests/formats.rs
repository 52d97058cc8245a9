//! JPEG, PNG and lossless WebP output, and `"lossless": "auto"`, over the public test corpus
//! (`testdata/corpus`, sharp's fixtures): every new format decoded back by the `image` crate
//! (not the engine's decoders) and compared by SSIM with the source decoded and resized by the
//! `image` crate; lossless outputs pixel-identical to the engine's own resized raster; the
//! container facts the format promises (progressive JPEG, 4:2:0, no metadata, alpha kept or
//! composited); and `auto` keeping lossless WebP only where it is no larger than the lossy
//! one (screenshots, charts, flat drawings), lossy for photos and for line art whose lossless
//! file is larger.

#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

#[path = "support/ssim.rs"]
mod ssim;
use prism_resize::render::{
    self, EncodeSettings, Limits, Rendered, color, decode, encode, resize::Raster,
};
use shared::variant::{Lossless, OutputFormat, VariantRequest};

fn corpus(name: &str) -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/corpus")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn request(widths: &[u32], formats: &[OutputFormat], lossless: Lossless) -> VariantRequest {
    VariantRequest {
        widths: widths.to_vec(),
        formats: formats.to_vec(),
        lossless,
        ..VariantRequest::default()
    }
    .normalise()
    .unwrap()
}

fn render(bytes: &[u8], req: &VariantRequest) -> Rendered {
    render::render(bytes, req, &Limits::default(), &EncodeSettings::default()).unwrap()
}

fn variant(r: &Rendered, format: OutputFormat) -> &render::Variant {
    r.variants.iter().find(|v| v.format == format).unwrap()
}

/// SSIM of a decoded variant against `reference` resized (Lanczos3, `image` crate) to its size.
fn ssim_against(variant: &image::DynamicImage, reference: &image::DynamicImage) -> f64 {
    let (w, h) = (variant.width(), variant.height());
    let reference = reference
        .resize_exact(w, h, image::imageops::FilterType::Lanczos3)
        .to_rgb8();
    ssim::ssim(
        &ssim::luma(&variant.to_rgb8()),
        &ssim::luma(&reference),
        w as usize,
        h as usize,
    )
}

/// The engine's resized raster for a one-width request on a source without orientation or
/// colour profile: the decoded sRGB frame through `resize::resize`, as `render` makes it.
fn engine_raster(bytes: &[u8], width: u32) -> Raster {
    let (limits, settings) = (Limits::default(), EncodeSettings::default());
    let probe = decode::probe(bytes, &limits).unwrap();
    assert_eq!(probe.orientation_to_apply(), 1);
    let (frame, _) =
        color::to_srgb8(decode::decode(bytes, &probe, width, &settings).unwrap()).unwrap();
    let height = render::scaled_height(frame.width, frame.height, width);
    render::resize::resize(&frame, width, height).unwrap()
}

/// The JPEG's SOF marker and its components' (id, horizontal, vertical) sampling factors.
fn jpeg_frame(bytes: &[u8]) -> (u8, Vec<(u8, u8, u8)>) {
    assert_eq!(&bytes[..2], [0xFF, 0xD8]);
    let mut i = 2;
    while i + 4 <= bytes.len() {
        assert_eq!(bytes[i], 0xFF, "marker at {i}");
        let marker = bytes[i + 1];
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if (0xC0..=0xC2).contains(&marker) {
            let seg = &bytes[i + 4..i + 2 + len];
            let components = (0..usize::from(seg[5]))
                .map(|c| {
                    let s = &seg[6 + 3 * c..9 + 3 * c];
                    (s[0], s[1] >> 4, s[1] & 15)
                })
                .collect();
            return (marker, components);
        }
        // Only JFIF (APP0), quantisation and Huffman tables may come before the frame: no
        // EXIF (APP1), no ICC (APP2), no comment.
        assert!(
            marker == 0xE0 || marker == 0xDB || marker == 0xC4,
            "unexpected marker {marker:#x}"
        );
        i += 2 + len;
    }
    panic!("no frame header")
}

/// The chunk types of a PNG, in order.
fn png_chunks(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 8;
    while i + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&bytes[i + 4..i + 8]).into_owned());
        i += 12 + len;
    }
    out
}

#[test]
fn jpeg_is_progressive_420_without_metadata_and_looks_like_the_source() {
    // Orientation 3 and a Generic RGB profile: the variant must come out upright, like the
    // reference the `image` crate decodes and rotates itself.
    let bytes = corpus("Landscape_3.jpg");
    let r = render(
        &bytes,
        &request(
            &[320],
            &[OutputFormat::Jpeg, OutputFormat::Png],
            Lossless::Off,
        ),
    );
    let jpeg = variant(&r, OutputFormat::Jpeg);
    assert_eq!((jpeg.width, jpeg.height), (320, 240));
    assert!(!jpeg.lossless);
    let (sof, components) = jpeg_frame(&jpeg.bytes);
    assert_eq!(sof, 0xC2, "progressive (SOF2)");
    assert_eq!(
        components,
        vec![(1, 2, 2), (2, 1, 1), (3, 1, 1)],
        "YCbCr 4:2:0"
    );
    let reference = image::load_from_memory(&bytes).unwrap().rotate180();
    let decoded =
        image::load_from_memory_with_format(&jpeg.bytes, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (320, 240));
    let s = ssim_against(&decoded, &reference);

    let png = variant(&r, OutputFormat::Png);
    assert!(png.lossless);
    assert_eq!(
        png_chunks(&png.bytes),
        ["IHDR", "IDAT", "IEND"],
        "no metadata"
    );
    let decoded = image::load_from_memory_with_format(&png.bytes, image::ImageFormat::Png).unwrap();
    assert_eq!(decoded.color(), image::ColorType::Rgb8, "opaque: RGB");
    let s_png = ssim_against(&decoded, &reference);
    let webp = render(
        &bytes,
        &request(&[320], &[OutputFormat::Webp], Lossless::Off),
    );
    let s_webp = ssim_against(
        &image::load_from_memory(&variant(&webp, OutputFormat::Webp).bytes).unwrap(),
        &reference,
    );
    println!("SSIM jpeg {s:.4} png {s_png:.4} webp {s_webp:.4}");
    // Measured: PNG 0.969 (what is left is the colour conversion and the two resizers),
    // lossy WebP 0.949, JPEG 0.924 at quality 80 on this detailed 320 px photo.
    assert!(s_png >= 0.95, "PNG SSIM {s_png:.4}");
    assert!(s >= 0.90 && s >= s_webp - 0.05, "JPEG SSIM {s:.4}");
    // The quality is the request's: lower quality, fewer bytes.
    let low = render(
        &bytes,
        &VariantRequest {
            jpeg_quality: 40,
            ..request(&[320], &[OutputFormat::Jpeg], Lossless::Off)
        },
    );
    assert!(variant(&low, OutputFormat::Jpeg).bytes.len() < jpeg.bytes.len());
}

#[test]
fn jpeg_composites_transparency_onto_white() {
    // blackbug.png: a drawing on a transparent background.
    let bytes = corpus("blackbug.png");
    let r = render(
        &bytes,
        &request(&[320], &[OutputFormat::Jpeg], Lossless::Off),
    );
    let decoded = image::load_from_memory_with_format(
        &variant(&r, OutputFormat::Jpeg).bytes,
        image::ImageFormat::Jpeg,
    )
    .unwrap()
    .to_rgb8();
    let source = image::load_from_memory(&bytes).unwrap().to_rgba8();
    assert_eq!(source.get_pixel(0, 0)[3], 0, "the corner is transparent");
    let corner = decoded.get_pixel(2, 2);
    assert!(corner.0.iter().all(|&c| c >= 250), "{corner:?}");
    // Compared over white, the drawing matches the source composited by the `image` crate.
    let mut over_white = image::RgbaImage::from_pixel(
        source.width(),
        source.height(),
        image::Rgba([255, 255, 255, 255]),
    );
    image::imageops::overlay(&mut over_white, &source, 0, 0);
    let s = ssim_against(
        &image::DynamicImage::ImageRgb8(decoded),
        &image::DynamicImage::ImageRgba8(over_white),
    );
    assert!(s >= 0.90, "SSIM over white {s:.4}");
}

#[test]
fn png_and_lossless_webp_are_the_engines_raster_exactly() {
    // With transparency (RGBA kept, colour under transparent pixels kept too) and without.
    for (name, width, channels) in [("blackbug.png", 640, 4), ("50020484-00001.png", 480, 3)] {
        let bytes = corpus(name);
        let r = render(
            &bytes,
            &request(
                &[width],
                &[OutputFormat::Webp, OutputFormat::Png],
                Lossless::On,
            ),
        );
        let want = engine_raster(&bytes, width);
        let want = if want.channels == 4 && !want.has_transparency() {
            want.without_alpha()
        } else {
            want
        };
        assert_eq!(want.channels, channels, "{name}");
        for v in &r.variants {
            assert!(v.lossless, "{name} {:?}", v.format);
            let img = image::load_from_memory(&v.bytes).unwrap();
            let got = if channels == 4 {
                img.to_rgba8().into_raw()
            } else {
                assert!(!img.color().has_alpha(), "{name} {:?}", v.format);
                img.to_rgb8().into_raw()
            };
            assert_eq!((img.width(), img.height()), (want.width, want.height));
            assert!(got == want.data, "{name} {:?} is not exact", v.format);
        }
        let webp = &variant(&r, OutputFormat::Webp).bytes;
        assert!(webp.windows(4).any(|w| w == b"VP8L"), "{name}: lossless");
    }
}

/// A bar chart drawn here: flat background, grid lines, five flat bar colours, dark axes.
fn chart(width: u32, height: u32) -> Vec<u8> {
    let palette = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
    ];
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let (bx, by) = (x * 100 / width, y * 100 / height);
        if bx < 8 && by < 90 && x % 37 < 3 {
            return image::Rgb([40, 40, 40]); // tick labels, roughly
        }
        if bx == 9 || by == 90 {
            return image::Rgb([0, 0, 0]);
        }
        if bx > 10 && by < 90 {
            let bar = (bx - 10) / 8;
            let top = 20 + (bar * 37) % 60;
            if (bx - 10) % 8 < 5 && by >= top {
                return image::Rgb(palette[bar as usize % 5]);
            }
            if by % 10 == 0 {
                return image::Rgb([220, 220, 220]);
            }
        }
        image::Rgb([255, 255, 255])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The engine's raster of a one-width request, as the encoders see it (alpha dropped when
/// all opaque).
fn encoder_raster(bytes: &[u8], width: u32) -> Raster {
    let r = engine_raster(bytes, width);
    if r.channels == 4 && !r.has_transparency() {
        r.without_alpha()
    } else {
        r
    }
}

/// The one WebP variant of `bytes` at `width` with `lossless`.
fn webp_at(bytes: &[u8], width: u32, lossless: Lossless) -> render::Variant {
    let r = render(bytes, &request(&[width], &[OutputFormat::Webp], lossless));
    variant(&r, OutputFormat::Webp).clone()
}

#[test]
fn auto_keeps_lossless_where_it_is_smaller_and_exact() {
    // A chart drawn here and sharp's `blackbug.png` (a flat drawing with alpha): synthetic,
    // and their lossless WebP is smaller than the lossy one.
    for (name, bytes, width) in [
        ("chart", chart(1600, 1000), 640),
        ("blackbug.png", corpus("blackbug.png"), 640),
    ] {
        let want = encoder_raster(&bytes, width);
        assert!(encode::looks_synthetic(&want), "{name}");
        let (lossy, exact) = (
            webp_at(&bytes, width, Lossless::Off),
            webp_at(&bytes, width, Lossless::On),
        );
        assert!(
            exact.bytes.len() <= lossy.bytes.len(),
            "{name}: lossless {} B, lossy {} B",
            exact.bytes.len(),
            lossy.bytes.len()
        );
        let auto = webp_at(&bytes, width, Lossless::Auto);
        assert!(auto.lossless, "{name}");
        assert_eq!(
            auto.bytes, exact.bytes,
            "{name}: auto kept the lossless encode"
        );
        assert!(auto.bytes.windows(4).any(|w| w == b"VP8L"), "{name}");
        let img = image::load_from_memory(&auto.bytes).unwrap();
        let got = if want.channels == 4 {
            img.to_rgba8().into_raw()
        } else {
            img.to_rgb8().into_raw()
        };
        assert_eq!((img.width(), img.height()), (want.width, want.height));
        assert!(got == want.data, "{name}: not pixel-exact");
    }
}

#[test]
fn auto_goes_lossy_where_lossless_would_be_larger() {
    // sharp's `50020484-00001.png`, a scanned line drawing: at 640 px it passes the
    // pre-filter, but its anti-aliased strokes make the lossless WebP larger than the lossy.
    let bytes = corpus("50020484-00001.png");
    let width = 640;
    assert!(encode::looks_synthetic(&encoder_raster(&bytes, width)));
    let (lossy, exact) = (
        webp_at(&bytes, width, Lossless::Off),
        webp_at(&bytes, width, Lossless::On),
    );
    assert!(
        exact.bytes.len() > lossy.bytes.len(),
        "lossless {} B, lossy {} B",
        exact.bytes.len(),
        lossy.bytes.len()
    );
    let auto = webp_at(&bytes, width, Lossless::Auto);
    assert!(!auto.lossless);
    assert!(
        auto.bytes.windows(4).any(|w| w == b"VP8 "),
        "lossy bitstream"
    );
    assert_eq!(auto.bytes, lossy.bytes, "auto kept the lossy encode");
    assert!(auto.bytes.len() <= exact.bytes.len());
}

#[test]
fn auto_is_lossy_for_photos_without_a_lossless_encode() {
    for name in ["concert.jpg", "4.webp", "Crash_test.gif"] {
        let bytes = corpus(name);
        assert!(
            !encode::looks_synthetic(&encoder_raster(&bytes, 320)),
            "{name}"
        );
        let auto = webp_at(&bytes, 320, Lossless::Auto);
        assert!(!auto.lossless, "{name}");
        assert_eq!(
            auto.bytes,
            webp_at(&bytes, 320, Lossless::Off).bytes,
            "{name}"
        );
    }
}

#[test]
fn auto_is_never_larger_than_the_smaller_of_lossy_and_lossless() {
    let widths = [320, 640, 1280];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("chart", chart(1600, 1000)),
        ("50020484-00001.png", corpus("50020484-00001.png")),
        ("blackbug.png", corpus("blackbug.png")),
        ("Landscape_3.jpg", corpus("Landscape_3.jpg")),
        ("Crash_test.gif", corpus("Crash_test.gif")),
    ];
    let mut kinds = (0, 0);
    for (name, bytes) in cases {
        let make = |lossless| render(&bytes, &request(&widths, &[OutputFormat::Webp], lossless));
        let (auto, lossy, exact) = (
            make(Lossless::Auto),
            make(Lossless::Off),
            make(Lossless::On),
        );
        for ((a, l), e) in auto
            .variants
            .iter()
            .zip(&lossy.variants)
            .zip(&exact.variants)
        {
            let smaller = l.bytes.len().min(e.bytes.len());
            assert!(
                a.bytes.len() <= smaller,
                "{name} at {}: auto {} B, lossy {} B, lossless {} B",
                a.width,
                a.bytes.len(),
                l.bytes.len(),
                e.bytes.len()
            );
            // The flag says which encode was kept.
            assert_eq!(&a.bytes, if a.lossless { &e.bytes } else { &l.bytes });
            if a.lossless {
                kinds.0 += 1;
            } else {
                kinds.1 += 1;
            }
        }
    }
    assert!(kinds.0 > 0 && kinds.1 > 0, "both kinds kept: {kinds:?}");
}

#[test]
fn auto_with_searched_quality_keeps_lossless_only_where_smaller() {
    // `"quality": "auto"`: the searched lossy variant is what lossless is compared with.
    let req = |bytes: &[u8], lossless| {
        let r = VariantRequest {
            quality: Some(shared::variant::Quality::Auto(
                shared::variant::AutoQuality::Good,
            )),
            ..request(&[320, 640], &[OutputFormat::Webp], lossless)
        };
        render(bytes, &r.normalise().unwrap())
    };
    let mut kinds = (0, 0);
    for (name, bytes) in [
        ("chart", chart(1600, 1000)),
        ("50020484-00001.png", corpus("50020484-00001.png")),
        ("concert.jpg", corpus("concert.jpg")),
    ] {
        let (auto, lossy, exact) = (
            req(&bytes, Lossless::Auto),
            req(&bytes, Lossless::Off),
            req(&bytes, Lossless::On),
        );
        for ((a, l), e) in auto
            .variants
            .iter()
            .zip(&lossy.variants)
            .zip(&exact.variants)
        {
            let keep = e.bytes.len() <= l.bytes.len()
                && encode::looks_synthetic(&encoder_raster(&bytes, a.width));
            assert_eq!(a.lossless, keep, "{name} at {}", a.width);
            if a.lossless {
                kinds.0 += 1;
                assert_eq!(a.bytes, e.bytes, "{name} at {}", a.width);
                assert!(a.auto.is_none(), "a lossless variant records no search");
            } else {
                kinds.1 += 1;
                assert_eq!(a.bytes, l.bytes, "{name} at {}", a.width);
                assert_eq!(a.auto, l.auto, "{name} at {}", a.width);
            }
        }
    }
    assert!(kinds.0 > 0 && kinds.1 > 0, "both kinds kept: {kinds:?}");
}

#[test]
fn auto_decision_reads_the_resized_pixels() {
    let flat = Raster {
        width: 128,
        height: 128,
        channels: 3,
        data: vec![200; 128 * 128 * 3],
    };
    assert!(encode::looks_synthetic(&flat));
    // Noise: no pixel repeats its neighbour.
    let mut state = 1_u32;
    let noise = Raster {
        data: (0..128 * 128 * 3)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect(),
        ..flat.clone()
    };
    assert!(!encode::looks_synthetic(&noise));
    // Flat halves, but thousands of colours in the other half (a photo on a white backdrop).
    let mut backdrop = noise.clone();
    for row in backdrop.data.chunks_exact_mut(128 * 3) {
        row[..96 * 3].fill(255);
    }
    let (repeats, colours) = encode::synthetic_stats(&backdrop);
    assert!(repeats >= encode::AUTO_LOSSLESS_MIN_REPEATS, "{repeats}");
    assert!(colours > encode::AUTO_LOSSLESS_MAX_COLOURS, "{colours}");
    assert!(!encode::looks_synthetic(&backdrop));
    // A raster whose buffer does not match its size is never called synthetic (no panic).
    let short = Raster {
        data: vec![0; 10],
        ..flat
    };
    assert!(!encode::looks_synthetic(&short));
}
