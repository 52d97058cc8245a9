//! Conformance: the engine over public test files nobody on this project wrote, each compared
//! with an independent reference rendering.
//!
//! Every `tests/conformance/cases/*.toml` lists cases of one group (`[[case]]` tables, fields
//! in [`Case`]). A case's input lies under `tests/conformance/files/`, with its origin and
//! licence in that group's `SOURCES.md`; its reference under `tests/conformance/expected/`,
//! made by a tool other than prism (Pillow with LittleCMS through `pillow_reference.py`, the
//! PNGs a test suite ships beside its files, or a colour-science script for HDR), as the
//! group's `SOURCES.md` says, command included.
//!
//! Each case renders one WebP variant at quality 95 with the real engine, checks that its
//! aspect ratio is the reference's (a sideways or wrongly cropped picture fails here), resizes
//! the reference to the variant's size (Lanczos3), composites both over mid-grey, and requires
//! the SSIM of the luma and the CIEDE2000 colour difference to stay within the case's
//! tolerances. Every case runs before the test fails, and the table of figures is printed, so
//! one run shows every regression.

#[path = "support/ssim.rs"]
mod ssim;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use prism_resize::render::{self, EncodeSettings, Limits};
use serde::Deserialize;
use shared::variant::{OutputFormat, VariantRequest};

/// One file and what its rendering must agree with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// The input, relative to `tests/conformance/files/`.
    file: String,
    /// The independent reference, relative to `tests/conformance/expected/`: upright, sRGB,
    /// any size with the displayed image's aspect ratio.
    reference: String,
    /// The variant width rendered and compared.
    #[serde(default = "default_width")]
    width: u32,
    /// Least SSIM of the luma (8×8 windows, stride 4); skipped for images under 8 px.
    #[serde(default = "default_min_ssim")]
    min_ssim: f64,
    /// Largest mean CIEDE2000 over the pixels.
    #[serde(default = "default_max_mean_delta_e")]
    max_mean_delta_e: f64,
    /// Largest 95th percentile of CIEDE2000, when given.
    #[serde(default)]
    max_p95_delta_e: Option<f64>,
    /// Why the file is here.
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for the reader of the case file")]
    note: String,
}

fn default_width() -> u32 {
    256
}
fn default_min_ssim() -> f64 {
    0.95
}
fn default_max_mean_delta_e() -> f64 {
    3.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    case: Vec<Case>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

/// Every case of every group, as (group, case), groups in name order.
fn cases() -> Vec<(String, Case)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("cases"))
        .expect("tests/conformance/cases")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let group = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a UTF-8 group name")
            .to_owned();
        let text = std::fs::read_to_string(&path).expect("a readable case file");
        let parsed: CaseFile =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.extend(parsed.case.into_iter().map(|c| (group.clone(), c)));
    }
    out
}

/// An image as linear-light-free sRGB floats in 0..=1, RGBA.
struct Rgba {
    width: u32,
    height: u32,
    data: Vec<[f32; 4]>,
}

impl Rgba {
    fn from_image(img: &image::DynamicImage) -> Self {
        let f = img.to_rgba32f();
        Self {
            width: f.width(),
            height: f.height(),
            data: f.pixels().map(|p| p.0).collect(),
        }
    }

    /// Composite over mid-grey: transparent areas compare by what a viewer sees, not by the
    /// colour hidden under alpha 0.
    fn over_grey(&self) -> Vec<[f64; 3]> {
        self.data
            .iter()
            .map(|p| {
                let a = f64::from(p[3].clamp(0.0, 1.0));
                let c = |v: f32| f64::from(v.clamp(0.0, 1.0)) * a + 0.5 * (1.0 - a);
                [c(p[0]), c(p[1]), c(p[2])]
            })
            .collect()
    }
}

/// What one comparison measured.
struct Scores {
    ssim: Option<f64>,
    mean_delta_e: f64,
    p95_delta_e: f64,
}

fn compare(a: &Rgba, b: &Rgba) -> Scores {
    assert_eq!((a.width, a.height), (b.width, b.height));
    let (pa, pb) = (a.over_grey(), b.over_grey());
    let mut de: Vec<f64> = pa
        .iter()
        .zip(&pb)
        .map(|(x, y)| ciede2000(srgb_to_lab(*x), srgb_to_lab(*y)))
        .collect();
    let mean_delta_e = de.iter().sum::<f64>() / de.len() as f64;
    de.sort_by(f64::total_cmp);
    let p95_delta_e = de[((de.len() - 1) as f64 * 0.95).round() as usize];
    let luma = |p: &[[f64; 3]]| -> Vec<f64> {
        p.iter()
            .map(|c| 255.0 * (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]))
            .collect()
    };
    let ssim = (a.width >= 8 && a.height >= 8)
        .then(|| ssim::ssim(&luma(&pa), &luma(&pb), a.width as usize, a.height as usize));
    Scores {
        ssim,
        mean_delta_e,
        p95_delta_e,
    }
}

/// sRGB (0..=1, D65) → CIE L*a*b* (D65 white).
fn srgb_to_lab(c: [f64; 3]) -> [f64; 3] {
    let lin = |v: f64| {
        if v <= 0.040_45 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    let [r, g, b] = c.map(lin);
    let x = 0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b;
    let y = 0.212_672_9 * r + 0.715_152_2 * g + 0.072_175_0 * b;
    let z = 0.019_333_9 * r + 0.119_192_0 * g + 0.950_304_1 * b;
    let f = |t: f64| {
        if t > 216.0 / 24_389.0 {
            t.cbrt()
        } else {
            (24_389.0 / 27.0 * t + 16.0) / 116.0
        }
    };
    let (fx, fy, fz) = (f(x / 0.950_47), f(y), f(z / 1.088_83));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// CIEDE2000 (Sharma, Wu and Dalal 2005), kL = kC = kH = 1.
fn ciede2000(lab1: [f64; 3], lab2: [f64; 3]) -> f64 {
    let [l1, a1, b1] = lab1;
    let [l2, a2, b2] = lab2;
    let c_bar = (a1.hypot(b1) + a2.hypot(b2)) / 2.0;
    let g = 0.5 * (1.0 - (c_bar.powi(7) / (c_bar.powi(7) + 25f64.powi(7))).sqrt());
    let (a1p, a2p) = ((1.0 + g) * a1, (1.0 + g) * a2);
    let (c1p, c2p) = (a1p.hypot(b1), a2p.hypot(b2));
    let hue = |b: f64, a: f64| {
        if a == 0.0 && b == 0.0 {
            0.0
        } else {
            b.atan2(a).to_degrees().rem_euclid(360.0)
        }
    };
    let (h1p, h2p) = (hue(b1, a1p), hue(b2, a2p));
    let dl = l2 - l1;
    let dc = c2p - c1p;
    let dh = if c1p * c2p == 0.0 {
        0.0
    } else if (h2p - h1p).abs() <= 180.0 {
        h2p - h1p
    } else if h2p - h1p > 180.0 {
        h2p - h1p - 360.0
    } else {
        h2p - h1p + 360.0
    };
    let d_big_h = 2.0 * (c1p * c2p).sqrt() * (dh.to_radians() / 2.0).sin();
    let l_bar = (l1 + l2) / 2.0;
    let c_bar_p = (c1p + c2p) / 2.0;
    let h_bar = if c1p * c2p == 0.0 {
        h1p + h2p
    } else if (h1p - h2p).abs() <= 180.0 {
        (h1p + h2p) / 2.0
    } else if h1p + h2p < 360.0 {
        (h1p + h2p + 360.0) / 2.0
    } else {
        (h1p + h2p - 360.0) / 2.0
    };
    let t = 1.0 - 0.17 * (h_bar - 30.0).to_radians().cos()
        + 0.24 * (2.0 * h_bar).to_radians().cos()
        + 0.32 * (3.0 * h_bar + 6.0).to_radians().cos()
        - 0.20 * (4.0 * h_bar - 63.0).to_radians().cos();
    let d_theta = 30.0 * (-((h_bar - 275.0) / 25.0).powi(2)).exp();
    let rc = 2.0 * (c_bar_p.powi(7) / (c_bar_p.powi(7) + 25f64.powi(7))).sqrt();
    let sl = 1.0 + 0.015 * (l_bar - 50.0).powi(2) / (20.0 + (l_bar - 50.0).powi(2)).sqrt();
    let sc = 1.0 + 0.045 * c_bar_p;
    let sh = 1.0 + 0.015 * c_bar_p * t;
    let rt = -(2.0 * d_theta).to_radians().sin() * rc;
    ((dl / sl).powi(2)
        + (dc / sc).powi(2)
        + (d_big_h / sh).powi(2)
        + rt * (dc / sc) * (d_big_h / sh))
        .sqrt()
}

/// Render `case` and compare it; `Err` says what is wrong, `Ok` the figures.
fn run(case: &Case) -> Result<Scores, String> {
    let input = std::fs::read(root().join("files").join(&case.file))
        .map_err(|e| format!("input {}: {e}", case.file))?;
    let reference = image::open(root().join("expected").join(&case.reference))
        .map_err(|e| format!("reference {}: {e}", case.reference))?;
    let request = VariantRequest {
        widths: vec![case.width],
        formats: vec![OutputFormat::Webp],
        webp_quality: 95,
        ..VariantRequest::default()
    }
    .normalise()
    .map_err(|e| format!("request: {e}"))?;
    let rendered = render::render(
        &input,
        &request,
        &Limits::default(),
        &EncodeSettings::default(),
    )
    .map_err(|e| format!("render failed with {}: {e}", e.code()))?;
    let [variant] = rendered.variants.as_slice() else {
        return Err(format!(
            "{} variants, expected one",
            rendered.variants.len()
        ));
    };
    let got = image::load_from_memory(&variant.bytes).map_err(|e| format!("variant: {e}"))?;
    let (w, h) = (got.width(), got.height());
    // Same aspect ratio within a pixel of rounding at the variant's size.
    let expected_h = f64::from(reference.height()) * f64::from(w) / f64::from(reference.width());
    if (expected_h - f64::from(h)).abs() > 1.0 + f64::from(h) * 0.005 {
        return Err(format!(
            "variant is {w}x{h} but the reference {}x{} would be {w}x{expected_h:.1}: \
             wrong orientation or crop",
            reference.width(),
            reference.height()
        ));
    }
    let reference = if (reference.width(), reference.height()) == (w, h) {
        reference
    } else {
        reference.resize_exact(w, h, FilterType::Lanczos3)
    };
    Ok(compare(
        &Rgba::from_image(&got),
        &Rgba::from_image(&reference),
    ))
}

#[test]
fn every_public_file_renders_like_its_independent_reference() {
    let cases = cases();
    assert!(!cases.is_empty(), "no conformance cases found");
    let mut table = String::new();
    let mut failures = Vec::new();
    for (group, case) in &cases {
        let name = format!("{group}: {}", case.file);
        match run(case) {
            Ok(s) => {
                let mut wrong = Vec::new();
                if let Some(v) = s.ssim.filter(|v| *v < case.min_ssim) {
                    wrong.push(format!("SSIM {v:.4} < {}", case.min_ssim));
                }
                if s.mean_delta_e > case.max_mean_delta_e {
                    wrong.push(format!(
                        "mean ΔE00 {:.2} > {}",
                        s.mean_delta_e, case.max_mean_delta_e
                    ));
                }
                if let Some(max) = case.max_p95_delta_e.filter(|m| s.p95_delta_e > *m) {
                    wrong.push(format!("p95 ΔE00 {:.2} > {max}", s.p95_delta_e));
                }
                let ssim = s
                    .ssim
                    .map_or_else(|| "   -  ".to_owned(), |v| format!("{v:.4}"));
                writeln!(
                    table,
                    "{name:<70} ssim {ssim}  ΔE00 mean {:>5.2} p95 {:>5.2}  {}",
                    s.mean_delta_e,
                    s.p95_delta_e,
                    if wrong.is_empty() { "ok" } else { "FAIL" }
                )
                .expect("writing to a String");
                if !wrong.is_empty() {
                    failures.push(format!("{name}: {}", wrong.join(", ")));
                }
            }
            Err(e) => {
                writeln!(table, "{name:<70} FAIL {e}").expect("writing to a String");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    println!("{table}");
    assert!(
        failures.is_empty(),
        "{} of {} conformance cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_metrics_tell_a_wrong_rendering_from_a_right_one() {
    // The comparison itself must be able to fail: a picture against itself scores perfectly,
    // against its mirror image or a tinted copy it does not.
    let img = image::open(root().join("expected/sdr/Landscape_8.png")).expect("a reference");
    let same = compare(&Rgba::from_image(&img), &Rgba::from_image(&img));
    assert!(same.ssim.expect("large enough") > 0.9999 && same.mean_delta_e < 1e-9);
    let mirrored = compare(&Rgba::from_image(&img), &Rgba::from_image(&img.fliph()));
    assert!(
        mirrored.ssim.expect("large enough") < 0.8,
        "a mirrored picture must fail"
    );
    let mut tinted = img.to_rgb8();
    for p in tinted.pixels_mut() {
        p.0[2] = p.0[2].saturating_add(40);
    }
    let tinted = compare(
        &Rgba::from_image(&img),
        &Rgba::from_image(&image::DynamicImage::ImageRgb8(tinted)),
    );
    assert!(
        tinted.mean_delta_e > 5.0,
        "a blue cast must fail: {}",
        tinted.mean_delta_e
    );
}

#[test]
fn ciede2000_matches_the_published_test_data() {
    // Sharma, Wu and Dalal (2005), table 1: pairs 1, 7, 17 and 25.
    let pairs = [
        ([50.0, 2.6772, -79.7751], [50.0, 0.0, -82.7485], 2.0425),
        ([50.0, 0.0, 0.0], [50.0, -1.0, 2.0], 2.3669),
        ([50.0, 2.5, 0.0], [73.0, 25.0, -18.0], 27.1492),
        (
            [60.2574, -34.0099, 36.2677],
            [60.4626, -34.1751, 39.4387],
            1.2644,
        ),
    ];
    for (a, b, want) in pairs {
        let got = ciede2000(a, b);
        assert!((got - want).abs() < 1e-4, "{a:?} {b:?}: {got} != {want}");
    }
}
