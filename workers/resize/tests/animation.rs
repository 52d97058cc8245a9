//! Animated GIF, APNG and WebP inputs rendered as animated WebP, over files nobody on the
//! project wrote (sharp's animated fixtures, the Web Platform Tests' APNG dispose/blend cases,
//! see `tests/fixtures/animation/SOURCES.md`).
//!
//! The outputs are decoded by image-rs's WebP decoder (image-webp, independent of the libwebp
//! that encodes them) and compared frame by frame with references Pillow decoded and resized
//! (`scripts/make_animation_refs.py`, committed under `tests/fixtures/animation/refs/`; the WPT
//! APNGs' frames by APNG Disassembler, Pillow gets dispose-to-previous wrong): frame
//! timing, loop count, dimensions and SSIM of each frame shown at each source frame's start.

#[path = "support/ssim.rs"]
mod ssim;
use prism_resize::render::animation::frame_duration;
use prism_resize::render::{self, EncodeSettings, Limits, RenderError, Rendered};
use shared::error::ErrorCode;
use shared::variant::{FocalPoint, Lossless, OutputFormat, VariantRequest};

fn dir() -> String {
    format!("{}/tests/fixtures/animation", env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}", dir());
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

fn request(widths: &[u32], formats: &[OutputFormat], animated: bool) -> VariantRequest {
    VariantRequest {
        widths: widths.to_vec(),
        formats: formats.to_vec(),
        animated,
        ..VariantRequest::default()
    }
    .normalise()
    .expect("a valid request")
}

fn render_with(
    bytes: &[u8],
    request: &VariantRequest,
    limits: &Limits,
) -> Result<Rendered, RenderError> {
    render::render(bytes, request, limits, &EncodeSettings::default())
}

/// What Pillow says about one fixture (`refs/refs.json`).
#[derive(serde::Deserialize)]
struct Reference {
    width: u32,
    height: u32,
    frames: usize,
    durations_ms: Vec<u32>,
    loop_count: u32,
}

fn reference(name: &str) -> (Reference, Vec<image::RgbaImage>) {
    let json = std::fs::read(format!("{}/refs/refs.json", dir())).expect("refs.json");
    let mut all: std::collections::BTreeMap<String, Reference> =
        serde_json::from_slice(&json).expect("refs.json parses");
    let r = all.remove(name).expect("a reference for the fixture");
    let strip = image::open(format!("{}/refs/{name}.w{}.png", dir(), r.width))
        .expect("reference strip")
        .to_rgba8();
    let frames = (0..r.frames as u32)
        .map(|k| image::imageops::crop_imm(&strip, 0, k * r.height, r.width, r.height).to_image())
        .collect();
    (r, frames)
}

/// The frames (with their durations in ms) of an animated WebP and its loop count, by
/// image-webp, with disposed areas cleared to transparent as browsers do (without a background
/// colour set, image-webp leaves them).
fn decode_animation(bytes: &[u8]) -> (Vec<(image::RgbaImage, u32)>, u32) {
    let mut dec = image_webp::WebPDecoder::new(std::io::Cursor::new(bytes))
        .expect("the variant is a WebP file");
    assert!(dec.is_animated(), "an animated WebP");
    dec.set_background_color([0, 0, 0, 0])
        .expect("an animated WebP takes a background");
    let (w, h) = dec.dimensions();
    let loops = match dec.loop_count() {
        image_webp::LoopCount::Forever => 0,
        image_webp::LoopCount::Times(n) => u32::from(n.get()),
    };
    let frames = (0..dec.num_frames())
        .map(|_| {
            let mut buf = vec![0_u8; dec.output_buffer_size().expect("a sane size")];
            let delay = dec.read_frame(&mut buf).expect("every frame decodes");
            let img = if dec.has_alpha() {
                image::RgbaImage::from_raw(w, h, buf).expect("RGBA frame")
            } else {
                image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, buf).expect("RGB"))
                    .to_rgba8()
            };
            (img, delay)
        })
        .collect();
    (frames, loops)
}

/// Luma of the image composited over mid grey (so transparency counts).
fn luma_over_grey(img: &image::RgbaImage) -> Vec<f64> {
    img.pixels()
        .map(|p| {
            let a = f64::from(p[3]) / 255.0;
            let c = |v: u8| f64::from(v) * a + 128.0 * (1.0 - a);
            0.299 * c(p[0]) + 0.587 * c(p[1]) + 0.114 * c(p[2])
        })
        .collect()
}

/// Mean SSIM of two images composited over mid grey ([`ssim::ssim`] of their luma).
fn ssim(a: &image::RgbaImage, b: &image::RgbaImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let (w, h) = (a.width() as usize, a.height() as usize);
    ssim::ssim(&luma_over_grey(a), &luma_over_grey(b), w, h)
}

/// Render `name` at the reference's width and check the animated WebP against Pillow's frames.
/// Returns the render for further checks.
fn round_trip(name: &str, formats: &[OutputFormat], min_ssim: f64) -> Rendered {
    let (r, refs) = reference(name);
    let rendered = render_with(
        &fixture(name),
        &request(&[r.width], formats, true),
        &Limits::default(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let clamped: Vec<u32> = r.durations_ms.iter().map(|&d| frame_duration(d)).collect();
    let total: u64 = clamped.iter().map(|&d| u64::from(d)).sum();
    let facts = rendered
        .facts
        .animation
        .expect("the source is recorded as animated");
    assert_eq!(facts.frames as usize, r.frames, "{name}: source frames");
    assert_eq!(facts.duration_ms, total, "{name}: source duration");
    assert_eq!(facts.loop_count, r.loop_count, "{name}: loop count");

    let webp = rendered
        .variants
        .iter()
        .find(|v| v.format == OutputFormat::Webp)
        .expect("a WebP variant");
    assert_eq!((webp.width, webp.height), (r.width, r.height), "{name}");
    let anim = webp.animation.expect("the WebP variant is animated");
    let (frames, loops) = decode_animation(&webp.bytes);
    assert_eq!(loops, r.loop_count, "{name}: loop count of the output");
    assert_eq!(
        anim.frames as usize,
        frames.len(),
        "{name}: recorded frames"
    );
    assert_eq!(anim.duration_ms, total, "{name}: recorded duration");
    let out_total: u64 = frames.iter().map(|(_, d)| u64::from(*d)).sum();
    assert_eq!(out_total, total, "{name}: duration of the output");
    for (img, _) in &frames {
        assert_eq!(img.dimensions(), (r.width, r.height), "{name}: frame size");
    }
    // libwebp merges identical consecutive frames (adding up their durations): compare the
    // frame shown at each source frame's start.
    let mut start = 0_u64;
    for (k, reference) in refs.iter().enumerate() {
        let mut t = 0_u64;
        let shown = frames
            .iter()
            .find(|(_, d)| {
                t += u64::from(*d);
                t > start
            })
            .map(|(img, _)| img)
            .expect("a frame covers every instant");
        let s = ssim(shown, reference);
        assert!(s >= min_ssim, "{name}: frame {k} SSIM {s:.4} < {min_ssim}");
        start += u64::from(clamped[k]);
    }
    rendered
}

#[test]
fn animated_gifs_keep_every_frame_their_timing_and_loop_count() {
    // 30 frames of 30 ms, looping forever; disposal to background between frames.
    round_trip("rotating-squares.gif", &[OutputFormat::Webp], 0.85);
    // NETSCAPE2.0 repeat count 2: three plays; 3 s frames and a 15 s last frame.
    round_trip("animated-loop-3.gif", &[OutputFormat::Webp], 0.85);
}

#[test]
fn animated_webps_keep_every_frame_their_timing_and_loop_count() {
    // Uneven durations (120/90/30 ms) and sub-rectangle frames with blending.
    round_trip("rotating-squares.webp", &[OutputFormat::Webp], 0.85);
    round_trip("animated-loop-3.webp", &[OutputFormat::Webp], 0.85);
}

#[test]
fn apngs_apply_every_dispose_and_blend_op() {
    for name in [
        "wpt-fcTL-dispose-in-region-none.png",
        "wpt-fcTL-dispose-in-region-background.png",
        "wpt-fcTL-dispose-in-region-previous.png",
        "wpt-fcTL-blend-source-transparent.png",
    ] {
        round_trip(name, &[OutputFormat::Webp], 0.9);
    }
}

#[test]
fn avif_variants_of_an_animation_are_its_first_frame() {
    let r = round_trip(
        "rotating-squares.gif",
        &[OutputFormat::Webp, OutputFormat::Avif],
        0.85,
    );
    let formats: Vec<OutputFormat> = r.variants.iter().map(|v| v.format).collect();
    assert_eq!(formats, [OutputFormat::Webp, OutputFormat::Avif]);
    let avif = &r.variants[1];
    assert!(avif.animation.is_none());
    assert_eq!(
        &avif.bytes[4..12],
        b"ftypavif",
        "a still AVIF, not an image sequence"
    );
}

#[test]
fn animated_false_renders_the_first_frame_as_before() {
    let bytes = fixture("rotating-squares.gif");
    let still = render_with(
        &bytes,
        &request(&[40], &[OutputFormat::Webp], false),
        &Limits::default(),
    )
    .unwrap();
    assert!(still.facts.animation.is_none());
    assert_eq!(
        still.facts.frames, 30,
        "the header's count is still recorded"
    );
    let v = &still.variants[0];
    assert!(v.animation.is_none());
    assert!(!v.bytes.windows(4).any(|w| w == b"ANIM"), "a still WebP");
    let (r, refs) = reference("rotating-squares.gif");
    let img = image::load_from_memory(&v.bytes).unwrap().to_rgba8();
    assert_eq!(img.dimensions(), (r.width, r.height));
    assert!(ssim(&img, &refs[0]) >= 0.85);
}

#[test]
fn still_inputs_render_the_same_bytes_whether_animated_or_not() {
    // The first frame of an animation, re-encoded as a still WebP by the engine, is a still
    // input: `animated` must not change a byte of it.
    let still = render_with(
        &fixture("rotating-squares.gif"),
        &request(&[40], &[OutputFormat::Webp], false),
        &Limits::default(),
    )
    .unwrap()
    .variants
    .remove(0)
    .bytes;
    let a = render_with(
        &still,
        &request(&[32], &[OutputFormat::Webp], true),
        &Limits::default(),
    )
    .unwrap();
    let b = render_with(
        &still,
        &request(&[32], &[OutputFormat::Webp], false),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(a.variants[0].bytes, b.variants[0].bytes);
    assert!(a.variants[0].animation.is_none() && a.facts.animation.is_none());
}

#[test]
fn too_many_frames_fail_with_their_code() {
    let limits = Limits {
        max_frames: 29,
        ..Limits::default()
    };
    let err = render_with(
        &fixture("rotating-squares.gif"),
        &request(&[40], &[OutputFormat::Webp], true),
        &limits,
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TooManyFrames);
}

#[test]
fn too_many_animation_pixels_fail_unless_only_the_first_frame_is_asked() {
    let bytes = fixture("rotating-squares.gif");
    // 30 frames of 80x80 = 192,000 pixels.
    let limits = Limits {
        max_animation_pixels: 191_999,
        ..Limits::default()
    };
    let err = render_with(
        &bytes,
        &request(&[40], &[OutputFormat::Webp], true),
        &limits,
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge);
    assert!(err.to_string().contains("frames"), "{err}");
    let ok = Limits {
        max_animation_pixels: 192_000,
        ..Limits::default()
    };
    assert!(render_with(&bytes, &request(&[40], &[OutputFormat::Webp], true), &ok).is_ok());
    render_with(
        &bytes,
        &request(&[40], &[OutputFormat::Webp], false),
        &limits,
    )
    .expect("the first frame alone is within the limits");
}

#[test]
fn output_pixels_count_every_frame_of_every_animated_variant() {
    let bytes = fixture("rotating-squares.gif");
    // 40x40 and 64x64, 30 frames: (1,600 + 4,096) × 30 = 170,880 pixels.
    let req = request(&[40, 64], &[OutputFormat::Webp], true);
    let over = Limits {
        max_output_pixels: 170_879,
        ..Limits::default()
    };
    assert_eq!(
        render_with(&bytes, &req, &over).unwrap_err().code(),
        ErrorCode::ImageTooLarge
    );
    let exact = Limits {
        max_output_pixels: 170_880,
        ..Limits::default()
    };
    let r = render_with(&bytes, &req, &exact).unwrap();
    assert_eq!(r.variants.len(), 2);
    assert!(r.variants.iter().all(|v| v.animation.is_some()));
}

#[test]
fn admission_counts_the_animation_pass() {
    let bytes = fixture("animated-loop-3.gif");
    let probe = render::decode::probe(&bytes, &Limits::default()).unwrap();
    let settings = EncodeSettings::default();
    let animated = request(&[160], &[OutputFormat::Webp], true);
    let still = request(&[160], &[OutputFormat::Webp], false);
    let a = render::memory::estimate(&probe, bytes.len() as u64, &animated, &settings, 2);
    let s = render::memory::estimate(&probe, bytes.len() as u64, &still, &settings, 2);
    assert_eq!(s.animation, 0);
    assert!(a.animation > 0);
    assert!(a.total() > s.total());
}

fn request_with(
    widths: &[u32],
    sizes: &[&str],
    formats: &[OutputFormat],
    lossless: Lossless,
    focal_point: Option<FocalPoint>,
) -> VariantRequest {
    VariantRequest {
        widths: widths.to_vec(),
        sizes: sizes
            .iter()
            .map(|s| serde_json::from_str(s).expect("a size"))
            .collect(),
        formats: formats.to_vec(),
        lossless,
        focal_point,
        ..VariantRequest::default()
    }
    .normalise()
    .expect("a valid request")
}

/// The frame of `frames` shown at the start of each source frame (libwebp merges identical
/// consecutive frames), for source frames lasting `durations` (as played).
fn shown_at_source_starts<'a>(
    frames: &'a [(image::RgbaImage, u32)],
    durations: &[u32],
) -> Vec<&'a image::RgbaImage> {
    let mut start = 0_u64;
    durations
        .iter()
        .map(|&d| {
            let mut t = 0_u64;
            let shown = frames
                .iter()
                .find(|(_, fd)| {
                    t += u64::from(*fd);
                    t > start
                })
                .map(|(img, _)| img)
                .expect("a frame covers every instant");
            start += u64::from(frame_duration(d));
            shown
        })
        .collect()
}

fn crop(img: &image::RgbaImage, x: u32, y: u32, w: u32, h: u32) -> image::RgbaImage {
    image::imageops::crop_imm(img, x, y, w, h).to_image()
}

#[test]
fn sized_animations_crop_and_pad_every_frame_the_same_way() {
    // 80x80, 30 frames; the reference frames are Pillow's at 40x40 (half size): a `cover`
    // 40x20 is the middle 20 rows of each, a `cover` 40x18 on a focal point at the top edge
    // the top 18 rows, a `contain` 60x40 each frame between 10 px bars.
    let (r, refs) = reference("rotating-squares.gif");
    assert_eq!((r.width, r.height), (40, 40));
    let req = request_with(
        &[],
        &[
            r#"{"width": 40, "height": 20, "fit": "cover"}"#,
            r#"{"width": 40, "height": 18, "fit": "cover", "focus": "focal_point"}"#,
            r##"{"width": 60, "height": 40, "fit": "contain", "background": "#0000ff"}"##,
        ],
        &[OutputFormat::Webp],
        Lossless::Off,
        Some(FocalPoint { x: 0.5, y: 0.0 }),
    );
    let rendered = render_with(&fixture("rotating-squares.gif"), &req, &Limits::default()).unwrap();
    assert_eq!(rendered.variants.len(), 3, "one WebP per size, no widths");
    let facts = rendered.facts.animation.expect("animated");
    for (k, v) in rendered.variants.iter().enumerate() {
        // The request's sizes, normalised (sorted), in order.
        assert_eq!(v.size, Some(req.sizes[k]));
        let y0 = match (req.sizes[k].fit, req.sizes[k].height) {
            (shared::variant::Fit::Cover, 20) => Some((10, 20)),
            (shared::variant::Fit::Cover, 18) => Some((0, 18)),
            _ => None,
        };
        let anim = v.animation.expect("every size is animated");
        assert_eq!(anim.duration_ms, facts.duration_ms);
        let (frames, loops) = decode_animation(&v.bytes);
        assert_eq!(loops, r.loop_count);
        let shown = shown_at_source_starts(&frames, &r.durations_ms);
        for (f, (img, reference)) in shown.iter().zip(&refs).enumerate() {
            match y0 {
                Some((y0, h)) => {
                    assert_eq!(img.dimensions(), (40, h));
                    let s = ssim(img, &crop(reference, 0, y0, 40, h));
                    assert!(s >= 0.85, "size {k}, frame {f}: SSIM {s:.4}");
                }
                None => {
                    assert_eq!(img.dimensions(), (60, 40));
                    let s = ssim(&crop(img, 10, 0, 40, 40), reference);
                    assert!(s >= 0.85, "contain, frame {f}: SSIM {s:.4}");
                    for x in (0..8).chain(52..60) {
                        for y in 0..40 {
                            let p = img.get_pixel(x, y).0;
                            let blue = p[2] > 240 && p[0] < 16 && p[1] < 16 && p[3] == 255;
                            assert!(blue, "contain, frame {f}: bar pixel {x},{y} is {p:?}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn an_auto_focus_crops_every_frame_with_the_window_of_the_first() {
    // A 20x40 window of the 40x40 frames: its offset is chosen once, from the first frame, so
    // one offset must match every frame of the output.
    let (r, refs) = reference("rotating-squares.gif");
    let req = request_with(
        &[],
        &[r#"{"width": 20, "height": 40, "fit": "cover", "focus": "auto"}"#],
        &[OutputFormat::Webp],
        Lossless::Off,
        None,
    );
    let rendered = render_with(&fixture("rotating-squares.gif"), &req, &Limits::default()).unwrap();
    assert!(rendered.timings.attention_ms > 0.0);
    let (frames, _) = decode_animation(&rendered.variants[0].bytes);
    let shown = shown_at_source_starts(&frames, &r.durations_ms);
    let best = (0..=20)
        .max_by(|&a, &b| {
            let s = |x| ssim(shown[0], &crop(&refs[0], x, 0, 20, 40));
            s(a).total_cmp(&s(b))
        })
        .unwrap();
    for (f, (img, reference)) in shown.iter().zip(&refs).enumerate() {
        let s = ssim(img, &crop(reference, best, 0, 20, 40));
        assert!(s >= 0.85, "frame {f} at x = {best}: SSIM {s:.4}");
    }
}

/// The reference composited over white (what JPEG output does with transparency).
fn over_white(img: &image::RgbaImage) -> image::RgbaImage {
    image::RgbaImage::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y).0;
        let a = u32::from(p[3]);
        let c = |v: u8| ((u32::from(v) * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgba([c(p[0]), c(p[1]), c(p[2]), 255])
    })
}

#[test]
fn jpeg_and_png_variants_of_an_animation_are_its_first_frame() {
    let (_, refs) = reference("rotating-squares.gif");
    let bytes = fixture("rotating-squares.gif");
    let req = request_with(
        &[40],
        &[r#"{"width": 40, "height": 20, "fit": "cover"}"#],
        &[OutputFormat::Webp, OutputFormat::Jpeg, OutputFormat::Png],
        Lossless::Off,
        None,
    );
    let r = render_with(&bytes, &req, &Limits::default()).unwrap();
    let shape: Vec<(OutputFormat, bool, bool)> = r
        .variants
        .iter()
        .map(|v| (v.format, v.size.is_some(), v.animation.is_some()))
        .collect();
    use OutputFormat::{Jpeg, Png, Webp};
    assert_eq!(
        shape,
        [
            (Webp, false, true),
            (Jpeg, false, false),
            (Png, false, false),
            (Webp, true, true),
            (Jpeg, true, false),
            (Png, true, false),
        ],
        "widths then sizes, formats in request order, only WebP animated"
    );
    let jpeg = image::load_from_memory(&r.variants[1].bytes)
        .unwrap()
        .to_rgba8();
    assert_eq!(&r.variants[1].bytes[..3], b"\xff\xd8\xff");
    let s = ssim(&jpeg, &over_white(&refs[0]));
    assert!(s >= 0.85, "JPEG against the first frame: {s:.4}");
    let png = image::load_from_memory(&r.variants[2].bytes)
        .unwrap()
        .to_rgba8();
    assert!(r.variants[2].lossless);
    let s = ssim(&png, &refs[0]);
    assert!(s >= 0.9, "PNG against the first frame: {s:.4}");
    let png_size = image::load_from_memory(&r.variants[5].bytes)
        .unwrap()
        .to_rgba8();
    let s = ssim(&png_size, &crop(&refs[0], 0, 10, 40, 20));
    assert!(s >= 0.85, "PNG cover against the first frame: {s:.4}");

    // Without a WebP output nothing is animated: the first frame, and no animation facts.
    let stills = render_with(
        &bytes,
        &request_with(&[40], &[], &[Jpeg, Png], Lossless::Off, None),
        &Limits::default(),
    )
    .unwrap();
    assert!(stills.facts.animation.is_none());
    assert!(stills.variants.iter().all(|v| v.animation.is_none()));
    assert_eq!(
        stills.variants[1].bytes, r.variants[2].bytes,
        "the same PNG"
    );
}

/// The WebP chunks inside an animated WebP's frames: lossless (`VP8L`) or lossy (`VP8 `).
fn frame_bitstreams(bytes: &[u8]) -> (bool, bool) {
    let has = |tag: &[u8]| bytes.windows(4).any(|w| w == tag);
    (has(b"VP8L"), has(b"VP8 "))
}

#[test]
fn lossless_animations_keep_every_frame_exactly() {
    let bytes = fixture("rotating-squares.gif");
    let (r, refs) = reference("rotating-squares.gif");
    let req = |lossless, animated| VariantRequest {
        animated,
        ..request_with(&[40], &[], &[OutputFormat::Webp], lossless, None)
    };
    let lossless = render_with(&bytes, &req(Lossless::On, true), &Limits::default()).unwrap();
    let v = &lossless.variants[0];
    assert!(v.lossless && v.animation.is_some());
    assert_eq!(
        frame_bitstreams(&v.bytes),
        (true, false),
        "every frame VP8L"
    );
    let (frames, _) = decode_animation(&v.bytes);
    let shown = shown_at_source_starts(&frames, &r.durations_ms);
    for (f, (img, reference)) in shown.iter().zip(&refs).enumerate() {
        let s = ssim(img, reference);
        assert!(s >= 0.9, "frame {f}: SSIM {s:.4}");
    }
    // The first frame is exactly the still lossless variant of the first frame (same resize,
    // no loss on either side), where it is not fully transparent.
    let still = render_with(&bytes, &req(Lossless::On, false), &Limits::default()).unwrap();
    let first = image::load_from_memory(&still.variants[0].bytes)
        .unwrap()
        .to_rgba8();
    for (a, b) in first.pixels().zip(shown[0].pixels()) {
        if a[3] > 0 {
            assert_eq!(a, b);
        }
    }
    let lossy = render_with(&bytes, &req(Lossless::Off, true), &Limits::default()).unwrap();
    assert!(!lossy.variants[0].lossless);
    assert!(
        !frame_bitstreams(&lossy.variants[0].bytes).0,
        "lossy frames"
    );

    // `auto` decides once per output, on its first frame, and says what it chose.
    let auto = render_with(&bytes, &req(Lossless::Auto, true), &Limits::default()).unwrap();
    let v = &auto.variants[0];
    let (vp8l, vp8) = frame_bitstreams(&v.bytes);
    assert_eq!((vp8l, vp8), (v.lossless, !v.lossless));
    let first = {
        let (frames, _) = decode_animation(&lossless.variants[0].bytes);
        frames[0].0.clone()
    };
    let raster = prism_resize::render::resize::Raster {
        width: first.width(),
        height: first.height(),
        channels: 4,
        data: first.into_raw(),
    };
    // Lossless where the first frame passes the pre-filter and its still lossless WebP is no
    // larger than its still lossy one; the still `auto` variant of that frame agrees.
    let still_lossy = render_with(&bytes, &req(Lossless::Off, false), &Limits::default()).unwrap();
    let still_auto = render_with(&bytes, &req(Lossless::Auto, false), &Limits::default()).unwrap();
    let (exact, lossy) = (
        still.variants[0].bytes.len(),
        still_lossy.variants[0].bytes.len(),
    );
    let synthetic = prism_resize::render::encode::looks_synthetic(&raster);
    assert_eq!(
        v.lossless,
        synthetic && exact <= lossy,
        "{exact} B vs {lossy} B"
    );
    assert_eq!(v.lossless, still_auto.variants[0].lossless);
}

#[test]
fn output_pixels_and_admission_count_every_frame_of_sized_variants() {
    let bytes = fixture("rotating-squares.gif");
    // cover 40x20 and contain 60x40 (padded size), 30 frames, WebP: (800 + 2,400) × 30 =
    // 96,000; a PNG of each adds its first frame, 3,200.
    let req = request_with(
        &[],
        &[
            r#"{"width": 40, "height": 20, "fit": "cover"}"#,
            r#"{"width": 60, "height": 40, "fit": "contain"}"#,
        ],
        &[OutputFormat::Webp, OutputFormat::Png],
        Lossless::Off,
        None,
    );
    let probe = render::decode::probe(&bytes, &Limits::default()).unwrap();
    assert_eq!(render::memory::output_pixels(&probe, &req), 99_200);
    let over = Limits {
        max_output_pixels: 99_199,
        ..Limits::default()
    };
    assert_eq!(
        render_with(&bytes, &req, &over).unwrap_err().code(),
        ErrorCode::ImageTooLarge
    );
    let exact = Limits {
        max_output_pixels: 99_200,
        ..Limits::default()
    };
    assert_eq!(render_with(&bytes, &req, &exact).unwrap().variants.len(), 4);

    // Admission: every size's encoder is charged, lossless more, and an auto focus its map.
    let settings = EncodeSettings::default();
    let estimate = |req: &VariantRequest| {
        render::memory::estimate(&probe, bytes.len() as u64, req, &settings, 2).animation
    };
    let one = request_with(
        &[],
        &[r#"{"width": 40, "height": 20, "fit": "cover"}"#],
        &[OutputFormat::Webp],
        Lossless::Off,
        None,
    );
    let auto = request_with(
        &[],
        &[r#"{"width": 40, "height": 20, "fit": "cover", "focus": "auto"}"#],
        &[OutputFormat::Webp],
        Lossless::Off,
        None,
    );
    let lossless = VariantRequest {
        lossless: Lossless::On,
        ..one.clone()
    };
    assert!(estimate(&one) > 0);
    assert!(estimate(&req) > estimate(&one));
    assert!(estimate(&auto) > estimate(&one));
    assert!(estimate(&lossless) > estimate(&one));
}

#[test]
fn lossless_auto_animations_follow_the_still_rule_on_their_first_frame() {
    // Each animated `auto` variant is lossless exactly where the still variant of its first
    // frame keeps lossless (pre-filter passed, lossless no larger than lossy); both outcomes
    // occur over these fixtures and widths.
    let mut kinds = (0, 0);
    for (name, width) in [
        ("rotating-squares.gif", 40),
        ("rotating-squares.gif", 400),
        ("animated-loop-3.gif", 40),
        ("animated-loop-3.gif", 300),
    ] {
        let bytes = fixture(name);
        let req = |lossless, animated| VariantRequest {
            animated,
            ..request_with(&[width], &[], &[OutputFormat::Webp], lossless, None)
        };
        let one = |lossless, animated| {
            render_with(&bytes, &req(lossless, animated), &Limits::default())
                .unwrap()
                .variants
                .remove(0)
        };
        let anim = one(Lossless::Auto, true);
        assert!(anim.animation.is_some(), "{name} at {width}");
        let (still_auto, still_on, still_off) = (
            one(Lossless::Auto, false),
            one(Lossless::On, false),
            one(Lossless::Off, false),
        );
        let first = image::load_from_memory(&still_on.bytes).unwrap().to_rgba8();
        let raster = prism_resize::render::resize::Raster {
            width: first.width(),
            height: first.height(),
            channels: 4,
            data: first.into_raw(),
        };
        let keep = prism_resize::render::encode::looks_synthetic(&raster)
            && still_on.bytes.len() <= still_off.bytes.len();
        println!(
            "{name} at {width}: lossless {} B, lossy {} B, keep {keep}",
            still_on.bytes.len(),
            still_off.bytes.len()
        );
        assert_eq!(still_auto.lossless, keep, "{name} at {width}");
        assert_eq!(anim.lossless, keep, "{name} at {width}");
        assert_eq!(
            frame_bitstreams(&anim.bytes),
            (keep, !keep),
            "{name} at {width}: every frame so encoded"
        );
        if keep {
            kinds.0 += 1;
        } else {
            kinds.1 += 1;
        }
    }
    assert!(kinds.0 > 0 && kinds.1 > 0, "both kinds: {kinds:?}");
}
