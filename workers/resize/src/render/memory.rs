//! How much memory one render needs at its peak, from the header and the request alone.
//!
//! Admission charges this estimate, so it must bound the real peak from above for every
//! input the probe lets through. It adds up what is alive at the worst moment of
//! [`super::render`]: the input bytes, the decode stage (the decoded frame and its 8-bit sRGB
//! copy), every variant raster (all are kept until the encodes end, twice when an orientation
//! makes an upright copy), the resize scratch of the largest resize, and the working memory of
//! the encoders that can run at once (one per thread of the pool).
//!
//! The per-pixel figures are measured, not guessed: `cargo run --release -p prism-resize
//! --example memory_model` runs each stage alone in a fresh process and prints its peak
//! resident set per pixel next to these constants, then whole renders next to the estimate.
//! Measured on x86-64, 2026-12-05, bytes per pixel at two sizes (the stage's peak growth):
//!
//! | stage | measured | constant |
//! |---|---|---|
//! | JPEG decode + sRGB, 3 and 12 MP (RGB, converted in place) | 2.98, 3.00 | 4 ([`DECODE_JPEG_RGB`]) |
//! | PNG decode + sRGB, 8-bit RGBA, 3 and 12 MP | 4.07, 4.00 | 12 ([`DECODE_OTHER`]) |
//! | PNG decode + sRGB, 16-bit RGBA, 3 and 12 MP | 12.05, 12.01 | 12 ([`DECODE_OTHER`]) |
//! | Lanczos3 RGB to half size, per destination width × source height, incl. the result | 5.52, 4.80 | 4 ([`RESIZE_SCRATCH`]) + the variant's 4 |
//! | Lanczos3 RGBA to half size, same | 15.15, 14.31 | the above + 4 per source pixel ([`PREMULTIPLIED`]) |
//! | libwebp, 3 and 12 MP RGB | 8.43, 8.20 | 12 ([`ENCODE_WEBP`], + 3 for the RGB copy of an opaque RGBA raster) |
//! | rav1e (ravif, speed 8), 0.75 and 3 MP RGB | 36.70, 30.86 | 44 ([`ENCODE_AVIF`]) |
//! | rav1e, 0.75 and 3 MP RGBA with transparency | 43.92, 34.29 | 44 |
//! | libaom through libheif (`avif_encoder` aom, speed 6, 4:4:4), 0.75 and 3 MP RGB | 55.13, 37.01 | 64 ([`ENCODE_AVIF_AOM`]) + 32 MiB per encode ([`ENCODE_AVIF_AOM_BASE`]) |
//! | libaom, 0.75 and 3 MP RGBA with transparency | 78.23, 48.79 | the same |
//! | libaom, RGBA at 64x64, 320x240 and 640x480 (MiB) | 7.9, 13.2, 27.7 | 32.3, 36.7, 50.8 |
//! | libjpeg-turbo progressive 4:2:0, 3 and 12 MP RGB | 3.93, 3.71 | 8 ([`ENCODE_JPEG`], incl. 3 for the RGB copy of an RGBA raster) |
//! | PNG (zlib level 6, adaptive filters), 3 and 12 MP RGB | 2.75, 2.31 | 4 ([`ENCODE_PNG`]) |
//! | libwebp lossless (method 4, effort 75), 0.75 and 3 MP RGB | 47.62, 33.16 | 48 ([`ENCODE_WEBP_LOSSLESS`]) |
//!
//! Whole renders against the estimate are checked by `tests/memory.rs` (the estimate must
//! bound each measured peak, by at most 4x).

use shared::variant::{Fit, Focus, Lossless, OutputFormat, VariantRequest};

use super::decode::{Probe, SourceFormat, svg};
use super::{
    EncodeSettings, fit, max_target_width, plan_jpeg_scale, planned_outputs, planned_widths,
    scaled_height,
};

/// Bytes per decoded pixel of a three-component JPEG's decode stage (RGB, converted to sRGB in
/// place). Gray and CMYK frames are converted into a new raster: their components plus
/// [`VARIANT`] bytes per pixel.
pub const DECODE_JPEG_RGB: u64 = 4;
/// Bytes per decoded pixel of the decode stage of PNG, GIF, WebP and TIFF: up to 16-bit RGBA
/// (8 bytes) plus the 8-bit sRGB raster made from it (4).
pub const DECODE_OTHER: u64 = 12;
/// Bytes per decoded pixel of the decode stage of HEIF/AVIF: libheif's interleaved image (up to
/// 8 bytes at 16-bit RGBA), our copy of it (8) and the sRGB raster (4).
pub const DECODE_HEIF: u64 = 20;
/// Bytes of resize scratch per pixel of the intermediate image (destination width × source
/// height, the horizontal pass's output); the destination is a variant, counted apart.
pub const RESIZE_SCRATCH: u64 = 4;
/// Bytes per source pixel of the premultiplied copy the resizer makes of a source with alpha
/// (any format but JPEG may have it; the header does not always say).
pub const PREMULTIPLIED: u64 = 4;
/// Bytes per pixel a variant raster takes (RGBA at most).
pub const VARIANT: u64 = 4;
/// Bytes per raster pixel of an SVG's decode stage: tiny-skia's canvas (4, demultiplied in
/// place into the frame) and the isolated layers resvg may hold at once, which the SVG decoder
/// bounds to [`svg::MAX_LIVE_LAYERS`] canvases (4 each).
pub const DECODE_SVG: u64 = 4 + 4 * svg::MAX_LIVE_LAYERS;
/// The floor under an SVG's layers ([`svg::MIN_WORK_PIXELS`] at 4 bytes), for tiny rasters.
pub const SVG_LAYER_FLOOR: u64 = 4 * svg::MIN_WORK_PIXELS;
/// Bytes per input byte of the parsed SVG (roxmltree's document, usvg's trees and paths).
pub const SVG_TREE: u64 = 48;
/// Bytes per pixel of an image embedded in an SVG: prism's decode and sRGB raster (up to 12),
/// the PNG handed to resvg and resvg's decoded copy (4 + 4).
pub const DECODE_SVG_EMBEDDED: u64 = 20;
/// libwebp's working memory per encoded pixel.
pub const ENCODE_WEBP: u64 = 12;
/// rav1e's working memory per encoded pixel (alpha is a second, monochrome encode).
pub const ENCODE_AVIF: u64 = 44;
/// libaom's working memory per encoded pixel, with libheif's YCbCr copy of the raster (alpha
/// is a second, monochrome encode). libaom's peak per pixel falls with the size (78 bytes at
/// 0.75 MP RGBA, 49 at 3 MP), so the slope is paired with [`ENCODE_AVIF_AOM_BASE`]; whole
/// renders of RGBA sources need the margin (`tests/memory.rs`).
pub const ENCODE_AVIF_AOM: u64 = 64;
/// What every libaom encode costs beside its pixels: the encoder instance and its tables.
pub const ENCODE_AVIF_AOM_BASE: u64 = 32 << 20;
/// The attention map of an `auto` focus: its RGBA copy of at most
/// [`fit::ATTENTION_SIDE`]² pixels and two `f32` maps of the same size (12 bytes a pixel); its
/// box resize's intermediate image is counted with the other resizes'.
pub const ATTENTION: u64 = 12 * (fit::ATTENTION_SIDE as u64) * (fit::ATTENTION_SIDE as u64);
/// libjpeg-turbo's working memory per encoded pixel (progressive: every DCT coefficient is
/// kept until the scans are written), the RGB copy of an RGBA raster composited for it (3), and
/// the output.
pub const ENCODE_JPEG: u64 = 8;
/// The PNG encoder's working memory per encoded pixel: the output (up to the raw pixels) and
/// the filtered rows.
pub const ENCODE_PNG: u64 = 4;
/// libwebp's lossless working memory per encoded pixel (ARGB copies, transforms, hash chains
/// and backward references); `"lossless": "auto"` is charged this plus [`ENCODE_WEBP`]: it may
/// run both encodes of a variant at once.
pub const ENCODE_WEBP_LOSSLESS: u64 = 48;
/// What a render costs whatever the image: codec tables, lcms transforms, thread stacks.
pub const FIXED: u64 = 32 << 20;

/// The working memory of encoding a `width` × `height` raster as `format` for `request` with
/// `settings` (libaom's AVIF differs from rav1e's).
pub fn encoder_bytes(
    format: OutputFormat,
    request: &VariantRequest,
    settings: &EncodeSettings,
    width: u64,
    height: u64,
) -> u64 {
    let pixels = width.saturating_mul(height);
    if format == OutputFormat::Avif && settings.aom.is_some() {
        return pixels.saturating_mul(ENCODE_AVIF_AOM) + ENCODE_AVIF_AOM_BASE;
    }
    pixels.saturating_mul(encoder_per_pixel(format, request))
}

/// The working memory per pixel of encoding `format` for `request`.
pub fn encoder_per_pixel(format: OutputFormat, request: &VariantRequest) -> u64 {
    match format {
        OutputFormat::Webp if request.lossless == Lossless::Auto => {
            ENCODE_WEBP_LOSSLESS + ENCODE_WEBP
        }
        OutputFormat::Webp if !request.lossless.is_off() => ENCODE_WEBP_LOSSLESS,
        OutputFormat::Webp => ENCODE_WEBP,
        OutputFormat::Avif => ENCODE_AVIF,
        OutputFormat::Jpeg => ENCODE_JPEG,
        OutputFormat::Png => ENCODE_PNG,
    }
}

/// A render's peak memory, by stage, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The input file, held for the whole render.
    pub input: u64,
    /// The decoded frame and its sRGB raster.
    pub decode: u64,
    /// Every variant raster (and its upright copy).
    pub variants: u64,
    /// The largest resize's scratch.
    pub resize_scratch: u64,
    /// The encoders that can run at once.
    pub encoders: u64,
    /// Fixed costs.
    pub fixed: u64,
    /// An animation's pass, after the first-frame pass: the decoder's canvases, each width's
    /// resized frame and animation encoder, and the encoded frames ([`animation_memory`]).
    pub animation: u64,
}

impl MemoryEstimate {
    /// The peak: everything above at once.
    pub fn total(&self) -> u64 {
        self.input
            .saturating_add(self.decode)
            .saturating_add(self.variants)
            .saturating_add(self.resize_scratch)
            .saturating_add(self.encoders)
            .saturating_add(self.fixed)
            .saturating_add(self.animation)
    }

    /// The peak in MiB, rounded up.
    pub fn total_mib(&self) -> u64 {
        self.total().div_ceil(1 << 20)
    }
}

/// The pixels of every variant `request` makes of `probe`'s image, summed.
pub fn output_pixels(probe: &Probe, request: &VariantRequest) -> u64 {
    let (w, h) = probe.oriented_dimensions();
    planned_outputs(request, w, h)
        .iter()
        .map(|&(vw, vh)| u64::from(vw) * u64::from(vh))
        .sum::<u64>()
        .saturating_mul(request.formats.len() as u64)
        .saturating_add(super::animation::extra_output_pixels(probe, request))
}

/// The peak memory of rendering `probe`'s image (`input_len` bytes) for `request` with
/// `settings`, on a pool of `threads` threads.
pub fn estimate(
    probe: &Probe,
    input_len: u64,
    request: &VariantRequest,
    settings: &EncodeSettings,
    threads: usize,
) -> MemoryEstimate {
    let (ow, oh) = probe.oriented_dimensions();
    let widths = planned_widths(request, ow);
    let max_target = max_target_width(request, ow, oh);
    // The decoded frame, in the stored orientation (libjpeg-turbo decodes a JPEG at a reduced
    // DCT scale when the variants allow it).
    let (fw, fh) = match probe.format {
        SourceFormat::Jpeg => {
            let n = u64::from(plan_jpeg_scale(ow, max_target, settings.jpeg_min_residual));
            (
                (u64::from(probe.width) * n).div_ceil(8),
                (u64::from(probe.height) * n).div_ceil(8),
            )
        }
        SourceFormat::Svg => {
            let (w, h) = svg::raster_size(probe.width, probe.height, max_target);
            (u64::from(w), u64::from(h))
        }
        _ => (u64::from(probe.width), u64::from(probe.height)),
    };
    let decode = match probe.format {
        SourceFormat::Jpeg => {
            let per_pixel = match probe.jpeg_components() {
                Some(3) => DECODE_JPEG_RGB,
                c => u64::from(c.unwrap_or(4)) + VARIANT,
            };
            fw * fh * per_pixel
        }
        SourceFormat::Avif | SourceFormat::Heic => {
            probe.decode_pixels().saturating_mul(DECODE_HEIF)
        }
        // The raster is drawn at the largest variant's size, not the intrinsic size.
        SourceFormat::Svg => (fw * fh * DECODE_SVG)
            .max(SVG_LAYER_FLOOR)
            .saturating_add(input_len.saturating_mul(SVG_TREE))
            .saturating_add(
                probe
                    .decode_pixels()
                    .saturating_sub(u64::from(probe.width) * u64::from(probe.height))
                    .saturating_mul(DECODE_SVG_EMBEDDED),
            ),
        _ => probe.decode_pixels().saturating_mul(DECODE_OTHER),
    };
    let copies = if probe.orientation_to_apply() == 1 {
        1
    } else {
        2
    };
    // Every raster made: the `widths` (one facts-only width for a request of `sizes` only),
    // then each `sizes` entry at its output size (a `contain` pad is one more copy).
    let sizes: Vec<(u64, u64)> = widths
        .iter()
        .map(|&w| (u64::from(w), u64::from(scaled_height(ow, oh, w))))
        .chain(request.sizes.iter().map(|s| {
            let (w, h) = fit::output_size(s, ow, oh);
            (u64::from(w), u64::from(h))
        }))
        .collect();
    let pads = request
        .sizes
        .iter()
        .filter(|s| s.fit == Fit::Contain)
        .map(|s| u64::from(s.width) * u64::from(s.height) * VARIANT)
        .sum::<u64>();
    let attention = if request
        .sizes
        .iter()
        .any(|s| s.fit == Fit::Cover && s.focus == Focus::Auto)
    {
        ATTENTION
    } else {
        0
    };
    let variants = sizes
        .iter()
        .map(|(w, h)| w * h * VARIANT * copies)
        .sum::<u64>()
        + pads
        + attention;
    // Every width may be made from the full frame: the intermediate image is the destination
    // width × the frame's height (or the other way round, whichever pass runs first).
    let swap = probe.orientation_to_apply() >= 5;
    let side = u64::from(fit::ATTENTION_SIDE);
    let attention_resize = (attention > 0).then(|| (side * fh).max(fw * side));
    let intermediate = sizes
        .iter()
        .map(|&(w, h)| {
            let (tw, th) = if swap { (h, w) } else { (w, h) };
            (tw * fh).max(fw * th)
        })
        .chain(attention_resize)
        .max()
        .unwrap_or(0);
    let premultiplied = if probe.format == SourceFormat::Jpeg {
        0
    } else {
        fw * fh * PREMULTIPLIED
    };
    let resize_scratch = intermediate * RESIZE_SCRATCH + premultiplied;
    let outputs: Vec<(u64, u64)> = planned_outputs(request, ow, oh)
        .into_iter()
        .map(|(w, h)| (u64::from(w), u64::from(h)))
        .collect();
    let mut encodes: Vec<u64> = outputs
        .iter()
        .flat_map(|(w, h)| {
            request
                .formats
                .iter()
                .map(move |&f| encoder_bytes(f, request, settings, *w, *h))
        })
        .collect();
    encodes.sort_unstable_by(|a, b| b.cmp(a));
    let encoders = encodes.iter().take(threads.max(1)).sum();
    MemoryEstimate {
        input: input_len,
        decode,
        variants,
        resize_scratch,
        encoders,
        fixed: FIXED,
        animation: animation_memory(probe, request),
    }
}

/// Bytes per canvas pixel of an animation's decode: the decoder's canvas and its copy for
/// dispose-to-previous, the composited frame handed out, our sRGB raster of it, and the
/// decoder's frame buffer (4 each, plus 4 of slack for the PNG/WebP row conversion).
pub const ANIM_DECODE: u64 = 24;
/// Bytes per output pixel of one animation encoder and its frame, beside the encoder's own
/// working memory: libwebp's previous, current and disposed ARGB canvases (12), the imported
/// picture (4), and the resized, upright and padded frame (12). The encoder itself is charged
/// two candidate encodes of the frame at libwebp's lossy or lossless figure
/// ([`encoder_per_pixel`]).
pub const ANIM_FRAME: u64 = 12 + 4 + 12;
/// Bytes per output pixel of the encoded frames the encoders keep until the end: a lossy
/// WebP frame takes well under a byte per pixel; 1 bounds noise at quality 100. Lossless
/// frames are kept as lossless bitstreams: up to the raw pixels ([`VARIANT`]).
pub const ANIM_OUTPUT: u64 = 1;

/// The animation pass's peak (0 for a still render): see [`ANIM_DECODE`], [`ANIM_FRAME`],
/// [`ANIM_OUTPUT`]; every output's encoder (`widths` and `sizes`) is alive at once, and an
/// `auto` focus adds one attention map of the first frame.
pub fn animation_memory(probe: &Probe, request: &VariantRequest) -> u64 {
    if !super::animation::applies(probe, request) {
        return 0;
    }
    let (ow, oh) = probe.oriented_dimensions();
    let canvas = u64::from(probe.width) * u64::from(probe.height);
    let decode = canvas * ANIM_DECODE + probe.extra_frame_pixels * VARIANT;
    let outputs = planned_outputs(request, ow, oh);
    let per_frame: u64 = outputs
        .iter()
        .map(|&(w, h)| u64::from(w) * u64::from(h))
        .sum();
    let encoder = 2 * encoder_per_pixel(OutputFormat::Webp, request);
    let kept = if request.lossless.is_off() {
        ANIM_OUTPUT
    } else {
        VARIANT
    };
    // The resizes of one frame run at once, one per output: each needs its intermediate
    // image (destination width or height × the canvas's longer side at most) and the
    // premultiplied canvas.
    let resize = outputs
        .iter()
        .map(|&(w, h)| {
            u64::from(w.max(h)) * u64::from(probe.width.max(probe.height)) * RESIZE_SCRATCH
                + canvas * PREMULTIPLIED
        })
        .sum::<u64>();
    let attention = if request
        .sizes
        .iter()
        .any(|s| s.fit == Fit::Cover && s.focus == Focus::Auto)
    {
        ATTENTION + canvas.min(u64::from(fit::ATTENTION_SIDE).pow(2)) * RESIZE_SCRATCH
    } else {
        0
    };
    decode
        .saturating_add(per_frame.saturating_mul(ANIM_FRAME + encoder))
        .saturating_add(resize)
        .saturating_add(attention)
        .saturating_add(
            per_frame
                .saturating_mul(u64::from(probe.frames))
                .saturating_mul(kept),
        )
}
