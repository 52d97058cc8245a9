//! Measures the peak memory of each stage of a render, per pixel, in fresh processes, and
//! compares whole renders with the admission model (`prism_resize::render::memory`).
//!
//! ```sh
//! cargo run --release -p prism-resize --example memory_model [STAGE...]
//! ```
//!
//! Every measurement runs in its own child process (this executable re-run with `--case`):
//! the child builds its input, resets its peak resident set (`/proc/self/clear_refs`, "5"),
//! runs one stage, and reports `VmHWM` minus the resident set it had before the stage. The
//! parent prints bytes per pixel for two sizes, so the slope is visible apart from fixed costs.
//! The constants in `render/memory.rs` come from this output.

use std::process::Command;

#[path = "../tests/support/memory_probe.rs"]
mod memory_probe;

use memory_probe::{jpeg, peak_growth, photo, png_rgba, request};

use prism_resize::render::{self, EncodeSettings, Limits, decode, memory, resize::Raster};
use shared::variant::{Lossless, OutputFormat};

fn raster(width: u32, height: u32, channels: usize) -> Raster {
    Raster {
        width,
        height,
        channels,
        data: photo(width, height, channels),
    }
}

/// Run one stage in this (child) process; returns (pixels the stage is charged per, model
/// estimate in bytes or 0).
fn run_case(case: &str, w: u32, h: u32) -> (u64, u64) {
    let settings = EncodeSettings::default();
    let limits = Limits::default();
    let px = u64::from(w) * u64::from(h);
    let measure = |f: &mut dyn FnMut()| println!("{}", peak_growth(f));
    match case {
        "decode-jpeg" | "decode-png8" | "decode-png16" => {
            let bytes = match case {
                "decode-jpeg" => jpeg(w, h),
                "decode-png8" => png_rgba(w, h, false),
                _ => png_rgba(w, h, true),
            };
            let probe = decode::probe(&bytes, &limits).expect("probe");
            measure(&mut || {
                let d = decode::decode(&bytes, &probe, w, &settings).expect("decode");
                let r = render::color::to_srgb8_or_defer(d, px).expect("colour");
                std::hint::black_box(&r);
            });
        }
        "resize-half" | "resize-half-rgb" => {
            let src = raster(w, h, if case == "resize-half" { 4 } else { 3 });
            measure(&mut || {
                let r = render::resize::resize(&src, w / 2, h / 2).expect("resize");
                std::hint::black_box(&r);
            });
            // Charged per pixel of the intermediate (destination width x source height).
            return (px / 2, 0);
        }
        "webp" | "avif" | "avif-alpha" => {
            // With 4 channels, `photo` has real transparency, so the alpha plane is encoded.
            let raster = raster(w, h, if case == "avif-alpha" { 4 } else { 3 });
            let format = if case == "webp" {
                OutputFormat::Webp
            } else {
                OutputFormat::Avif
            };
            let req = request(&[w], &[format]);
            // One encode at a time: the encoder's own working set, not the pool's.
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("pool");
            measure(&mut || {
                let out = pool
                    .install(|| render::encode::encode(&raster, format, &req, &settings))
                    .expect("encode");
                std::hint::black_box(&out);
            });
        }
        "jpeg-enc" | "png-enc" | "webp-lossless" => {
            // `photo` is the worst case for each: no flat areas, every pixel different.
            let raster = raster(w, h, 3);
            let (format, lossless) = match case {
                "jpeg-enc" => (OutputFormat::Jpeg, Lossless::Off),
                "png-enc" => (OutputFormat::Png, Lossless::Off),
                _ => (OutputFormat::Webp, Lossless::On),
            };
            let req = shared::variant::VariantRequest {
                lossless,
                ..request(&[w], &[format])
            };
            measure(&mut || {
                let out = render::encode::encode(&raster, format, &req, &settings).expect("encode");
                std::hint::black_box(&out);
            });
        }
        "render" => {
            // The whole engine on a JPEG asked for large widths in WebP+AVIF: the model must
            // bound it from above.
            let bytes = jpeg(w, h);
            let req = request(
                &[w * 7 / 8, w * 3 / 4, w / 2, w / 4],
                &[OutputFormat::Webp, OutputFormat::Avif],
            );
            let probe = decode::probe(&bytes, &limits).expect("probe");
            let estimate = memory::estimate(
                &probe,
                bytes.len() as u64,
                &req,
                &settings,
                rayon::current_num_threads(),
            );
            measure(&mut || {
                let r = render::render(&bytes, &req, &limits, &settings).expect("render");
                std::hint::black_box(&r);
            });
            return (px, estimate.total());
        }
        other => panic!("unknown case {other}"),
    }
    (px, 0)
}

fn main() {
    prism_resize::alloc::tune();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        let w: u32 = args[i + 2].parse().expect("width");
        let h: u32 = args[i + 3].parse().expect("height");
        let (px, estimate) = run_case(&args[i + 1], w, h);
        println!("{px} {estimate}");
        return;
    }
    let me = std::env::current_exe().expect("current exe");
    let cases: &[(&str, &[(u32, u32)])] = &[
        ("decode-jpeg", &[(2000, 1500), (4000, 3000)]),
        ("decode-png8", &[(2000, 1500), (4000, 3000)]),
        ("decode-png16", &[(2000, 1500), (4000, 3000)]),
        ("resize-half", &[(2000, 1500), (4000, 3000)]),
        ("resize-half-rgb", &[(2000, 1500), (4000, 3000)]),
        ("webp", &[(2000, 1500), (4000, 3000)]),
        ("avif", &[(1000, 750), (2000, 1500)]),
        ("avif-alpha", &[(1000, 750), (2000, 1500)]),
        ("jpeg-enc", &[(2000, 1500), (4000, 3000)]),
        ("png-enc", &[(2000, 1500), (4000, 3000)]),
        ("webp-lossless", &[(1000, 750), (2000, 1500)]),
        ("render", &[(2000, 1500), (4000, 3000)]),
    ];
    // Stage names given on the command line run only those stages.
    let only: Vec<&String> = args.iter().skip(1).collect();
    println!(
        "{:<14} {:>11} {:>12} {:>10} {:>14}",
        "stage", "size", "peak MiB", "B/pixel", "model MiB"
    );
    for (case, sizes) in cases {
        if !only.is_empty() && !only.iter().any(|o| o == case) {
            continue;
        }
        for &(w, h) in *sizes {
            let out = Command::new(&me)
                .args(["--case", case, &w.to_string(), &h.to_string()])
                .output()
                .expect("spawn");
            assert!(
                out.status.success(),
                "{case} {w}x{h}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let peak: u64 = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
            let mut last = lines.next().unwrap_or("0 0").split(' ');
            let px: u64 = last.next().and_then(|v| v.parse().ok()).unwrap_or(1);
            let model: u64 = last.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            println!(
                "{:<14} {:>11} {:>12.1} {:>10.2} {:>14}",
                case,
                format!("{w}x{h}"),
                peak as f64 / 1048576.0,
                peak as f64 / px.max(1) as f64,
                if model > 0 {
                    format!("{:.1}", model as f64 / 1048576.0)
                } else {
                    "-".into()
                }
            );
        }
    }
}
