//! Peak-memory measurement of one stage in a fresh process, and the photo-like inputs it is
//! measured on. Shared by `workers/resize/tests/memory.rs` and
//! `workers/resize/examples/memory_model.rs` through `#[path]`.
#![allow(dead_code)] // each includer uses a subset

/// A `kB` field of `/proc/self/status`, 0 when absent.
pub fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Run `f` and return how far the peak resident set rose above the resident set before it,
/// in bytes. The peak is reset first (`/proc/self/clear_refs`, "5"), so earlier allocations
/// of this process do not hide the stage's own peak.
pub fn peak_growth(f: impl FnOnce()) -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak resident set");
    let before = status_kb("VmRSS:");
    f();
    status_kb("VmHWM:").saturating_sub(before) * 1024
}

/// Photo-like samples: gradients with a little noise (encoders then see texture, not a flat
/// field, which would understate their working memory); with 4 channels, a third of the
/// 64-pixel blocks are transparent.
pub fn photo(width: u32, height: u32, channels: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(width as usize * height as usize * channels);
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    for y in 0..height {
        for x in 0..width {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let n = (seed >> 59) as u32;
            let a = if (x / 64 + y / 64) % 3 == 0 { 0 } else { 255 };
            let px = [
                (x * 255 / width.max(1) + n) as u8,
                (y * 255 / height.max(1) + n) as u8,
                ((x + y) % 256) as u8,
                a,
            ];
            data.extend_from_slice(&px[..channels]);
        }
    }
    data
}

/// A baseline 4:2:0 JPEG of [`photo`].
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let pixels = photo(width, height, 3);
    let image = turbojpeg::Image {
        pixels: pixels.as_slice(),
        width: width as usize,
        pitch: width as usize * 3,
        height: height as usize,
        format: turbojpeg::PixelFormat::RGB,
    };
    turbojpeg::compress(image, 90, turbojpeg::Subsamp::Sub2x2)
        .expect("jpeg")
        .to_vec()
}

/// An RGBA PNG of [`photo`], 8 or 16 bits per sample.
pub fn png_rgba(width: u32, height: u32, sixteen: bool) -> Vec<u8> {
    let samples = photo(width, height, 4);
    let mut out = std::io::Cursor::new(Vec::new());
    if sixteen {
        let wide: Vec<u16> = samples.iter().map(|&v| u16::from(v) * 257).collect();
        image::ImageBuffer::<image::Rgba<u16>, _>::from_raw(width, height, wide)
            .expect("buffer")
            .write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
    } else {
        image::RgbaImage::from_raw(width, height, samples)
            .expect("buffer")
            .write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
    }
    out.into_inner()
}

/// A normalised request for `widths` in `formats`.
pub fn request(
    widths: &[u32],
    formats: &[shared::variant::OutputFormat],
) -> shared::variant::VariantRequest {
    shared::variant::VariantRequest {
        widths: widths.to_vec(),
        formats: formats.to_vec(),
        ..shared::variant::VariantRequest::default()
    }
    .normalise()
    .expect("valid request")
}
