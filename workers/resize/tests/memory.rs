//! Admission's memory model against real peaks: each render runs alone in a fresh process
//! (this test binary re-run with `PRISM_MEMORY_CASE`), which resets its peak resident set
//! before the render (`/proc/self/clear_refs`) and reports `VmHWM` growth beside the model's
//! estimate. The estimate must bound the peak from above, and not by more than 4x (a model
//! that loose would idle most of the budget). The default encoders and libaom (`avif_encoder =
//! "aom"`) are both measured.

#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::process::Command;

use prism_resize::render::{self, AvifEncoder, EncodeSettings, Limits, decode, memory};
use shared::error::ErrorCode;
use shared::variant::{Lossless, OutputFormat, VariantRequest};

#[path = "support/memory_probe.rs"]
mod memory_probe;

use memory_probe::{jpeg, peak_growth, png_rgba, request};

const CASE_ENV: &str = "PRISM_MEMORY_CASE";

/// The renders measured: (name, input, request, encoder settings).
fn cases() -> Vec<(&'static str, Vec<u8>, VariantRequest, EncodeSettings)> {
    let aom = EncodeSettings {
        aom: AvifEncoder::Aom.aom(),
        ..EncodeSettings::default()
    };
    let mut cases: Vec<_> = default_encoder_cases()
        .into_iter()
        .map(|(name, bytes, req)| (name, bytes, req, EncodeSettings::default()))
        .collect();
    // `[resize] avif_encoder = "aom"`: libaom's own working memory (one encode at a time).
    let both = [OutputFormat::Webp, OutputFormat::Avif];
    cases.extend([
        (
            "jpeg 3 MP, four large widths, WebP+AVIF through libaom",
            jpeg(2000, 1500),
            request(&[1750, 1500, 1000, 500], &both),
            aom,
        ),
        (
            "16-bit RGBA png 2 MP with transparency, two widths, WebP+AVIF through libaom",
            png_rgba(1600, 1200, true),
            request(&[1400, 700], &both),
            aom,
        ),
    ]);
    cases
}

/// The renders measured with the default encoders: (name, input, request).
fn default_encoder_cases() -> Vec<(&'static str, Vec<u8>, VariantRequest)> {
    let both = [OutputFormat::Webp, OutputFormat::Avif];
    let (jpeg_png, webp) = (
        &[OutputFormat::Jpeg, OutputFormat::Png][..],
        &[OutputFormat::Webp][..],
    );
    vec![
        (
            "jpeg 3 MP, four large widths, WebP+AVIF",
            jpeg(2000, 1500),
            request(&[1750, 1500, 1000, 500], &both),
        ),
        (
            "jpeg 6 MP, the default widths, WebP+AVIF",
            jpeg(3000, 2000),
            request(&[320, 640, 1280, 2048], &both),
        ),
        (
            "16-bit RGBA png 2 MP with transparency, two widths, WebP+AVIF",
            png_rgba(1600, 1200, true),
            request(&[1400, 700], &both),
        ),
        (
            "jpeg 12 MP, one width, WebP only",
            jpeg(4000, 3000),
            request(&[3500], &[OutputFormat::Webp]),
        ),
        (
            "16-bit RGBA png 2 MP with transparency, two widths, JPEG+PNG+lossless WebP",
            png_rgba(1600, 1200, true),
            VariantRequest {
                lossless: Lossless::On,
                ..request(&[1400, 700], &[jpeg_png, webp].concat())
            },
        ),
        (
            "jpeg 6 MP, two large widths, JPEG+PNG+lossless WebP",
            jpeg(3000, 2000),
            VariantRequest {
                lossless: Lossless::On,
                ..request(&[2800, 1400], &[jpeg_png, webp].concat())
            },
        ),
    ]
}

/// In the child: render case `index` and print the peak growth and the estimate.
fn child(index: usize) {
    prism_resize::alloc::tune();
    let (_, bytes, req, settings) = cases().swap_remove(index);
    let limits = Limits::default();
    let probe = decode::probe(&bytes, &limits).unwrap();
    let estimate = memory::estimate(
        &probe,
        bytes.len() as u64,
        &req,
        &settings,
        rayon::current_num_threads(),
    );
    let peak = peak_growth(|| {
        let out = render::render(&bytes, &req, &limits, &settings).unwrap();
        std::hint::black_box(&out);
    });
    println!("MEASURED {peak} {}", estimate.total());
}

#[test]
fn the_admission_estimate_bounds_each_render_peak() {
    if let Some(i) = std::env::var(CASE_ENV).ok().and_then(|v| v.parse().ok()) {
        return child(i);
    }
    let me = std::env::current_exe().unwrap();
    let mut failures = Vec::new();
    for (i, (name, ..)) in cases().iter().enumerate() {
        let out = Command::new(&me)
            .args([
                "the_admission_estimate_bounds_each_render_peak",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CASE_ENV, i.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split("MEASURED ").nth(1))
            .unwrap_or_else(|| panic!("{name}: no measurement in {stdout}"));
        let mut it = line.split(' ').map(|v| v.parse::<u64>().unwrap());
        let (peak, estimate) = (it.next().unwrap(), it.next().unwrap());
        let mib = |b: u64| b as f64 / 1_048_576.0;
        println!(
            "{name}: peak {:.1} MiB, estimate {:.1} MiB ({:.2}x)",
            mib(peak),
            mib(estimate),
            estimate as f64 / peak.max(1) as f64
        );
        if peak > estimate || estimate > 4 * peak {
            failures.push(format!(
                "{name}: peak {:.1} MiB, estimate {:.1} MiB",
                mib(peak),
                mib(estimate)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn an_8000x6000_photo_asked_for_six_widths_near_full_size_is_refused_up_front() {
    let bytes = jpeg(8000, 6000);
    let req = request(
        &[7000, 7200, 7400, 7600, 7800, 8000],
        &[OutputFormat::Webp, OutputFormat::Avif],
    );
    let limits = Limits::default();
    let probe = decode::probe(&bytes, &limits).unwrap();
    // Five widths are planned (8000 is not a downscale), about 210 MP per format.
    let output = memory::output_pixels(&probe, &req);
    assert!(output > limits.max_output_pixels, "{output}");
    let err = render::render(&bytes, &req, &limits, &EncodeSettings::default()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{err}");
    assert!(err.to_string().contains("variants add up to"), "{err}");
    // Under a raised output cap, the memory estimate alone would not fit the default budget
    // of the worker: several GiB for the frames and the concurrent AV1 encodes.
    let estimate = memory::estimate(
        &probe,
        bytes.len() as u64,
        &req,
        &EncodeSettings::default(),
        2,
    );
    assert!(estimate.total_mib() > 2560, "{estimate:?}");
}
