//! The engine over the test images (`testdata/corpus` in the repository, or `$PRISM_CORPUS`): the files
//! the sharp baseline accepts must render, and so must `iphone_7.heic`; the two reject cases get
//! their codes; the orientation cases come out upright and the colour cases in sRGB.
//!
//! Sources and licences are in `testdata/corpus/MANIFEST.md`. When the folder is missing these
//! tests fail with a message saying where it was looked for (they never skip silently).

use std::path::PathBuf;

use prism_resize::render::{self, EncodeSettings, Limits, Rendered};
use rayon::prelude::*;
use shared::error::ErrorCode;
use shared::variant::{OutputFormat, VariantRequest};

fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("PRISM_CORPUS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/corpus"),
        PathBuf::from,
    );
    assert!(
        dir.join("MANIFEST.md").is_file(),
        "the test corpus is missing: looked in {dir:?}. It is testdata/corpus in the \
         repository; PRISM_CORPUS must name a folder with the same files and a MANIFEST.md."
    );
    dir
}

fn read(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn render_320(name: &str) -> Result<Rendered, render::RenderError> {
    let request = VariantRequest {
        widths: vec![320],
        formats: vec![OutputFormat::Webp],
        ..VariantRequest::default()
    };
    render::render(
        &read(name),
        &request,
        &Limits::default(),
        &EncodeSettings::default(),
    )
}

fn decode(bytes: &[u8]) -> image::RgbImage {
    image::load_from_memory(bytes)
        .expect("the variant decodes")
        .to_rgb8()
}

/// Mean RGB over a rectangle given in fractions of the image.
fn mean(img: &image::RgbImage, x0: f64, y0: f64, x1: f64, y1: f64) -> [f64; 3] {
    let (w, h) = img.dimensions();
    let (xa, xb) = ((x0 * f64::from(w)) as u32, (x1 * f64::from(w)) as u32);
    let (ya, yb) = ((y0 * f64::from(h)) as u32, (y1 * f64::from(h)) as u32);
    let mut sum = [0.0; 3];
    let mut n = 0.0;
    for y in ya..yb {
        for x in xa..xb {
            let p = img.get_pixel(x, y);
            for c in 0..3 {
                sum[c] += f64::from(p[c]);
            }
            n += 1.0;
        }
    }
    sum.map(|s| s / n)
}

#[test]
fn every_file_sharp_accepts_renders_and_so_does_heic() {
    let dir = corpus_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !n.ends_with(".md"))
        .filter(|n| n != "giant-image.jpg" && n != "truncated.jpg")
        .collect();
    names.sort();
    assert!(names.iter().any(|n| n == "iphone_7.heic"));
    let failures: Vec<String> = names
        .par_iter()
        .filter_map(|n| match render_320(n) {
            Ok(r) if !r.variants.is_empty() => None,
            Ok(_) => Some(format!("{n}: no variants")),
            Err(e) => Some(format!("{n}: {e}")),
        })
        .collect();
    assert!(failures.is_empty(), "failed: {failures:#?}");
}

#[test]
fn heic_renders_upright_at_its_full_size() {
    let r = render_320("iphone_7.heic").unwrap();
    assert_eq!(r.facts.format.as_str(), "heic");
    assert_eq!((r.facts.width, r.facts.height), (4032, 3024));
    assert_eq!((r.variants[0].width, r.variants[0].height), (320, 240));
}

#[test]
fn giant_image_is_rejected_from_its_header() {
    let err = render_320("giant-image.jpg").unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{err}");
}

#[test]
fn truncated_jpeg_is_reported_as_truncated() {
    let err = render_320("truncated.jpg").unwrap_err();
    assert_eq!(err.code(), ErrorCode::TruncatedImage, "{err}");
}

#[test]
fn exif_orientations_come_out_upright_and_identical() {
    // Landscape_N.jpg are one landscape photo stored under orientation N; applied correctly,
    // all of them display the same 600x450 picture.
    let outputs: Vec<(String, image::RgbImage)> = [
        "Landscape_3.jpg",
        "Landscape_5.jpg",
        "Landscape_6.jpg",
        "Landscape_8.jpg",
    ]
    .iter()
    .map(|n| {
        let r = render_320(n).unwrap();
        assert_eq!((r.facts.width, r.facts.height), (600, 450), "{n}");
        (n.to_string(), decode(&r.variants[0].bytes))
    })
    .collect();
    let (first_name, first) = &outputs[0];
    for (name, img) in &outputs[1..] {
        assert_eq!(img.dimensions(), first.dimensions(), "{name}");
        let diff: f64 = img
            .as_raw()
            .iter()
            .zip(first.as_raw())
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
            .sum::<f64>()
            / img.as_raw().len() as f64;
        assert!(
            diff < 6.0,
            "{name} differs from {first_name} by {diff:.1} on average"
        );
    }
}

#[test]
fn phone_photo_with_orientation_6_is_portrait_and_upright() {
    let r = render_320("phone-12mp-orient6.jpg").unwrap();
    assert_eq!(r.facts.orientation, 6);
    assert_eq!((r.facts.width, r.facts.height), (3024, 4032));
    let v = &r.variants[0];
    assert_eq!((v.width, v.height), (320, 427));
    // Independent path: the image crate's JPEG decoder (which ignores EXIF) on the stored
    // pixels, rotated 90 degrees clockwise as orientation 6 says, then resized.
    let stored = image::load_from_memory(&read("phone-12mp-orient6.jpg"))
        .unwrap()
        .to_rgb8();
    assert_eq!(stored.dimensions(), (4032, 3024));
    let upright = image::imageops::rotate90(&stored);
    let expected =
        image::imageops::resize(&upright, 320, 427, image::imageops::FilterType::Lanczos3);
    let got = decode(&v.bytes);
    let diff = |a: &image::RgbImage, b: &image::RgbImage| {
        a.as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
            .sum::<f64>()
            / a.as_raw().len() as f64
    };
    let upright_diff = diff(&got, &expected);
    let wrong = image::imageops::resize(
        &image::imageops::rotate270(&stored),
        320,
        427,
        image::imageops::FilterType::Lanczos3,
    );
    assert!(
        upright_diff < 8.0,
        "differs from the upright picture by {upright_diff:.1}"
    );
    assert!(
        diff(&got, &wrong) > 2.0 * upright_diff,
        "indistinguishable from the wrong rotation"
    );
}

#[test]
fn colour_managed_inputs_land_in_srgb() {
    // Expected whole-image means come from an independent path: Pillow + littleCMS
    // (ImageCms.profileToProfile to sRGB, perceptual). The untagged means (what you get when
    // the profile is ignored) are listed to show each case really needs the conversion.
    let cases: [(&str, [f64; 3], [f64; 3]); 5] = [
        // CMYK JPEG, SWOP profile (untagged: 109.0, 132.1, 109.6)
        (
            "Channel_digital_image_CMYK_color.jpg",
            [120.9, 126.4, 115.2],
            [109.0, 132.1, 109.6],
        ),
        // CMYK TIFF, FOGRA39, flat 0/100/100/0 (untagged: pure red)
        (
            "fogra-0-100-100-0.tif",
            [227.0, 6.0, 20.0],
            [255.0, 0.0, 0.0],
        ),
        // 16-bit Adobe RGB (1998) TIFF
        (
            "tifftag-photoshop.tiff",
            [42.5, 43.7, 9.3],
            [49.2, 48.6, 17.8],
        ),
        // Gray JPEG with a Gray Gamma 2.2 profile
        ("concert.jpg", [36.7, 36.7, 36.7], [38.7, 38.7, 38.7]),
        // Display P3 PNG, saturated red (untagged: 248, 0, 0)
        ("p3.png", [255.0, 0.0, 0.0], [248.0, 0.0, 0.0]),
    ];
    for (name, want, untagged) in cases {
        let r = render_320(name).unwrap();
        assert!(
            r.facts.color_profile.is_some(),
            "{name}: profile not reported"
        );
        let got = mean(&decode(&r.variants[0].bytes), 0.0, 0.0, 1.0, 1.0);
        for c in 0..3 {
            assert!(
                (got[c] - want[c]).abs() <= 3.0,
                "{name}: got {got:?}, want {want:?} (untagged would be {untagged:?})"
            );
        }
    }
}
