//! `sizes`: `cover`, `contain` and `inside` boxes, and the three focuses, over the quadrant
//! fixtures (every picture DISPLAYS as 64x48 quadrants — red top-left, green top-right, blue
//! bottom-left, white bottom-right, whatever its EXIF orientation) and a generated image with an
//! off-centre subject. Properties of the decoded output, not golden bytes.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use prism_resize::render::{self, EncodeSettings, Limits, Rendered};
use shared::variant::{Background, Fit, FocalPoint, Focus, OutputFormat, SizeSpec, VariantRequest};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/images/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

fn size(width: u32, height: u32, fit: Fit, focus: Focus) -> SizeSpec {
    SizeSpec {
        width,
        height,
        fit,
        focus,
        background: None,
    }
}

fn render_sizes(
    bytes: &[u8],
    widths: &[u32],
    sizes: &[SizeSpec],
    focal_point: Option<FocalPoint>,
) -> Rendered {
    let request = VariantRequest {
        widths: widths.to_vec(),
        sizes: sizes.to_vec(),
        formats: vec![OutputFormat::Webp],
        focal_point,
        ..VariantRequest::default()
    }
    .normalise()
    .expect("a valid request");
    render::render(
        bytes,
        &request,
        &Limits::default(),
        &EncodeSettings::default(),
    )
    .expect("renders")
}

fn decode(bytes: &[u8]) -> image::RgbaImage {
    image::load_from_memory(bytes)
        .expect("the variant decodes")
        .to_rgba8()
}

/// The only variant made for `s`.
fn only<'a>(r: &'a Rendered, s: &SizeSpec) -> &'a render::Variant {
    let mut found = r.variants.iter().filter(|v| v.size.as_ref() == Some(s));
    let v = found.next().expect("a variant for the size");
    assert!(found.next().is_none());
    v
}

/// Mean colour of a 4x4 patch at (x, y) (its top-left corner).
fn patch(img: &image::RgbaImage, x: u32, y: u32) -> [f64; 4] {
    let mut sum = [0.0; 4];
    for dy in 0..4 {
        for dx in 0..4 {
            let p = img.get_pixel(x + dx, y + dy);
            for c in 0..4 {
                sum[c] += f64::from(p[c]);
            }
        }
    }
    sum.map(|s| s / 16.0)
}

fn assert_near(got: [f64; 4], want: [u8; 4], what: &str) {
    for c in 0..4 {
        assert!(
            (got[c] - f64::from(want[c])).abs() <= 40.0,
            "{what}: got {got:?}, want {want:?}"
        );
    }
}

const RED: [u8; 4] = [255, 0, 0, 255];
const GREEN: [u8; 4] = [0, 255, 0, 255];
const BLUE: [u8; 4] = [0, 0, 255, 255];

#[test]
fn cover_gives_the_exact_size_up_or_down_and_inside_never_upscales() {
    let bytes = fixture("quadrants.png");
    let sizes = [
        size(32, 32, Fit::Cover, Focus::Center),
        size(200, 100, Fit::Cover, Focus::Center),
        size(32, 32, Fit::Inside, Focus::Center),
        size(200, 200, Fit::Inside, Focus::Center),
        size(100, 100, Fit::Contain, Focus::Center),
    ];
    let r = render_sizes(&bytes, &[], &sizes, None);
    // Only the sizes are encoded (the facts raster is not a variant).
    assert_eq!(r.variants.len(), sizes.len());
    let want = [(32, 32), (200, 100), (32, 24), (64, 48), (100, 100)];
    for (s, (w, h)) in sizes.iter().zip(want) {
        let v = only(&r, s);
        assert_eq!((v.width, v.height), (w, h), "{}", s.label());
        assert_eq!(decode(&v.bytes).dimensions(), (w, h), "{}", s.label());
        assert_eq!(v.target_width, s.width);
    }
    // The facts come from the whole image, not a crop.
    assert_eq!((r.facts.width, r.facts.height), (64, 48));
}

#[test]
fn cover_centre_keeps_the_middle() {
    let s = size(32, 32, Fit::Cover, Focus::Center);
    let r = render_sizes(&fixture("quadrants.png"), &[], &[s], None);
    // The 48x48 window from x = 8: half red and half green on top, blue and white below.
    let img = decode(&only(&r, &s).bytes);
    assert_near(patch(&img, 4, 4), RED, "top-left");
    assert_near(patch(&img, 24, 4), GREEN, "top-right");
    assert_near(patch(&img, 4, 24), BLUE, "bottom-left");
}

#[test]
fn focal_point_crops_contain_the_point_in_every_orientation() {
    // (0.9, 0.5) of the upright image is in the green/white half: the window is the rightmost
    // 48x48 (x 16..64), a third red and two thirds green on top.
    let s = size(32, 32, Fit::Cover, Focus::FocalPoint);
    let p = Some(FocalPoint { x: 0.9, y: 0.5 });
    for o in 1..=8 {
        let name = format!("orient-{o}.jpg");
        let r = render_sizes(&fixture(&name), &[], &[s], p);
        let img = decode(&only(&r, &s).bytes);
        assert_eq!(img.dimensions(), (32, 32), "{name}");
        assert_near(patch(&img, 1, 4), RED, &format!("{name} left third"));
        assert_near(patch(&img, 16, 4), GREEN, &format!("{name} middle"));
        assert_near(patch(&img, 26, 4), GREEN, &format!("{name} right"));
        assert_near(
            patch(&img, 16, 24),
            [255, 255, 255, 255],
            &format!("{name} bottom"),
        );
        // The other corner: (0.1, 0.5) keeps the red/blue side.
        let left = render_sizes(
            &fixture(&name),
            &[],
            &[s],
            Some(FocalPoint { x: 0.1, y: 0.5 }),
        );
        let img = decode(&only(&left, &s).bytes);
        assert_near(patch(&img, 14, 4), RED, &format!("{name} left crop"));
        assert_near(
            patch(&img, 14, 24),
            BLUE,
            &format!("{name} left crop bottom"),
        );
        assert_near(
            patch(&img, 27, 4),
            GREEN,
            &format!("{name} left crop right edge"),
        );
    }
    // Without a focal point the focus is the centre.
    let none = render_sizes(&fixture("orient-6.jpg"), &[], &[s], None);
    let img = decode(&only(&none, &s).bytes);
    assert_near(patch(&img, 4, 4), RED, "no point: left");
    assert_near(patch(&img, 24, 4), GREEN, "no point: right");
}

#[test]
fn cover_with_orientation_gives_upright_exact_sizes() {
    // A tall crop of a wide upright image: for 6 and 8 the stored frame is tall, the crop is
    // found and made in it, then turned.
    let s = size(24, 48, Fit::Cover, Focus::Center);
    for o in [1, 6, 8] {
        let name = format!("orient-{o}.jpg");
        let r = render_sizes(&fixture(&name), &[], &[s], None);
        let img = decode(&only(&r, &s).bytes);
        assert_eq!(img.dimensions(), (24, 48), "{name}");
        // The middle 24 columns of 64: (20..44): red|green on top, blue|white below.
        assert_near(patch(&img, 2, 8), RED, &format!("{name} top-left"));
        assert_near(patch(&img, 18, 8), GREEN, &format!("{name} top-right"));
        assert_near(patch(&img, 2, 36), BLUE, &format!("{name} bottom-left"));
    }
}

/// A 400x200 flat grey image with a red/yellow checkered 80x80 subject from x = 290.
fn off_centre_subject() -> Vec<u8> {
    let mut img = image::RgbImage::from_pixel(400, 200, image::Rgb([128, 128, 128]));
    for y in 60..140 {
        for x in 290..370 {
            let on = (x / 5 + y / 5) % 2 == 0;
            img.put_pixel(
                x,
                y,
                image::Rgb(if on { [230, 20, 20] } else { [240, 220, 30] }),
            );
        }
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn subject_pixels(img: &image::RgbaImage) -> usize {
    img.pixels().filter(|p| p[0] > 180 && p[2] < 100).count()
}

#[test]
fn auto_focus_keeps_an_off_centre_subject() {
    let bytes = off_centre_subject();
    let auto = size(100, 100, Fit::Cover, Focus::Auto);
    let centre = size(100, 100, Fit::Contain, Focus::Center);
    let plain = size(50, 50, Fit::Cover, Focus::Center);
    // The whole image at the auto crop's scale (a half), encoded alike, is the reference.
    let r = render_sizes(&bytes, &[200], &[auto, centre, plain], None);
    let whole = r.variants.iter().find(|v| v.size.is_none()).unwrap();
    let all = subject_pixels(&decode(&whole.bytes));
    assert!(all > 1000, "{all}");
    let got = subject_pixels(&decode(&only(&r, &auto).bytes));
    assert!(
        got * 100 >= all * 97,
        "auto crop keeps {got} of {all} subject pixels"
    );
    // The centre crop (x 100..300) cuts it: a quarter of it, at a quarter scale.
    let cut = subject_pixels(&decode(&only(&r, &plain).bytes));
    assert!(
        cut * 8 < all,
        "centre crop keeps {cut} of {all} at half the scale"
    );
    assert!(r.timings.attention_ms > 0.0);
    // Only a cover auto size pays for the map.
    let r = render_sizes(&bytes, &[], &[plain], None);
    assert_eq!(r.timings.attention_ms, 0.0);
}

#[test]
fn contain_pads_with_the_colour_or_transparency() {
    let bytes = fixture("quadrants.png");
    let clear = size(100, 100, Fit::Contain, Focus::Center);
    let magenta = SizeSpec {
        background: Some(Background([255, 0, 255, 255])),
        ..size(100, 120, Fit::Contain, Focus::Center)
    };
    let r = render_sizes(&bytes, &[], &[clear, magenta], None);
    // 64x48 scaled up to 100x75, centred: 12 rows of pad above, 13 below.
    let img = decode(&only(&r, &clear).bytes);
    assert_eq!(img.dimensions(), (100, 100));
    for (x, y) in [(0, 0), (96, 4), (48, 96)] {
        assert!(
            patch(&img, x, y)[3] < 5.0,
            "pad at ({x}, {y}) is not transparent"
        );
    }
    assert_near(patch(&img, 20, 24), RED, "image top-left");
    assert_near(patch(&img, 20, 70), BLUE, "image bottom-left");
    let img = decode(&only(&r, &magenta).bytes);
    assert_eq!(img.dimensions(), (100, 120));
    assert_near(patch(&img, 48, 2), [255, 0, 255, 255], "pad top");
    assert_near(patch(&img, 48, 114), [255, 0, 255, 255], "pad bottom");
    assert_near(patch(&img, 20, 40), RED, "image");
}

#[test]
fn sizes_leave_the_widths_bytes_as_they_were() {
    let bytes = fixture("quadrants.jpg");
    let alone = render_sizes(&bytes, &[32, 48], &[], None);
    let both = render_sizes(
        &bytes,
        &[32, 48],
        &[size(40, 40, Fit::Cover, Focus::Auto)],
        None,
    );
    let widths = |r: &Rendered| -> Vec<(u32, Vec<u8>)> {
        r.variants
            .iter()
            .filter(|v| v.size.is_none())
            .map(|v| (v.target_width, v.bytes.clone()))
            .collect()
    };
    assert_eq!(widths(&alone).len(), 2);
    assert_eq!(widths(&alone), widths(&both));
    assert_eq!(alone.facts.thumbhash, both.facts.thumbhash);
}

#[test]
fn admission_and_the_output_limit_count_the_sizes() {
    let bytes = fixture("quadrants.png");
    let limits = Limits::default();
    let probe = render::decode::probe(&bytes, &limits).unwrap();
    let big = VariantRequest {
        widths: vec![],
        sizes: vec![size(8192, 8192, Fit::Contain, Focus::Center); 1]
            .into_iter()
            .chain([size(8000, 8000, Fit::Cover, Focus::Auto)])
            .collect(),
        formats: vec![OutputFormat::Webp],
        ..VariantRequest::default()
    }
    .normalise()
    .unwrap();
    // 8192² + 8000² pixels pass the default 100 MP output limit.
    assert!(render::memory::output_pixels(&probe, &big) > limits.max_output_pixels);
    let err = render::render(&bytes, &big, &limits, &EncodeSettings::default()).unwrap_err();
    assert_eq!(err.code(), shared::error::ErrorCode::ImageTooLarge);
    let small = VariantRequest {
        widths: vec![],
        sizes: vec![size(64, 64, Fit::Cover, Focus::Center)],
        formats: vec![OutputFormat::Webp],
        ..VariantRequest::default()
    }
    .normalise()
    .unwrap();
    let est = |r: &VariantRequest| {
        render::memory::estimate(&probe, bytes.len() as u64, r, &EncodeSettings::default(), 2)
    };
    // A contain pad and an attention map are counted.
    assert!(est(&big).variants > 2 * 8192 * 8192 * 4);
    assert!(est(&big).variants > est(&small).variants);
}
