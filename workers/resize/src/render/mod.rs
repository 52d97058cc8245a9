//! The image engine: one upload's bytes plus a [`VariantRequest`] in, encoded variants plus the
//! facts the manifest records out.
//!
//! This module is pure and synchronous: no I/O, no async, no global state. Callers run it on a
//! blocking thread (the worker through `spawn_blocking`, the bench on plain threads); inside, the
//! independent encodes of one image run in parallel on the rayon pool.
//!
//! The pipeline, in order, and the invariants each stage keeps:
//!
//! 1. [`decode::probe`] sniffs the format from magic bytes and reads only the header: stored
//!    dimensions, frame count, orientation. Every limit in [`Limits`] is checked here, before a
//!    pixel buffer is allocated, so a decompression bomb costs a header parse.
//! 2. [`decode::decode`] decodes the first frame once. JPEG is decoded with libjpeg-turbo's
//!    DCT-domain scaling when the largest requested variant is small enough (see
//!    [`plan_jpeg_scale`]); HEIF/AVIF come out of libheif with the container's `irot`/`imir`
//!    already applied.
//! 3. [`color`] converts to 8-bit sRGB through the embedded ICC profile with lcms2, or for
//!    HEIF/AVIF without one through the profile its nclx code points describe (untagged means
//!    sRGB; CMYK without a profile goes through a shipped press profile); PQ and HLG (HDR)
//!    frames are tone-mapped by [`hdr`]; 16-bit input is reduced to 8 bits after the
//!    conversion. Alpha is kept. A large 8-bit RGB(A) frame with sRGB tone curves
//!    (Display P3) whose variants add up to at most half its pixels is converted after the
//!    resize instead, variant by variant ([`color::to_srgb8_or_defer`]).
//! 4. [`resize`] makes each target width (Lanczos3, SIMD, alpha premultiplied during the filter)
//!    in the stored frame, largest first, a smaller width from a larger variant when that one is
//!    at least [`EncodeSettings::resize_chain_min_ratio`] times its size; the frame is dropped
//!    as soon as the last width needing it is made, to keep the peak resident set small.
//! 5. [`orient`] applies the EXIF orientation (all eight) to each resized variant, so the
//!    encoders see upright pixels and no output carries the tag.
//! 6. [`encode`] writes WebP (libwebp, [`webp`]; lossy, lossless, or chosen per variant),
//!    AVIF (rav1e through ravif, or libaom through libheif), JPEG (libjpeg-turbo) and PNG on
//!    the rayon pool, each variant's encodes starting as soon as it is resized; no metadata is
//!    written into any output.
//! 7. [`facts`] computes the manifest facts (hash, placeholder, dominant colour).

pub mod anim_webp;
pub mod animation;
pub mod color;
pub mod decode;
pub mod encode;
pub mod facts;
pub mod fit;
pub mod frame;
pub mod hdr;
pub mod memory;
pub mod orient;
pub mod perceptual;
pub mod resize;
mod shaper;
mod thumbhash;
pub mod webp;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;
use shared::error::ErrorCode;
use shared::variant::{AutoQuality, Fit, Focus, Lossless, OutputFormat, SizeSpec, VariantRequest};

pub use decode::SourceFormat;
pub use encode::{AomSettings, AvifEncoder, EncodeSettings};
pub use facts::SourceFacts;

/// Version of the engine's output. Every variant key carries it (through
/// [`shared::keys::variant_tag`]), so bump it with any change that can alter a variant's bytes
/// (decoding, colour, resizing, orientation, an encoder or its library upgraded): re-renders
/// then write new keys instead of changing bytes that caches keep as immutable.
///
/// 2: BT.2390 tone mapping of PQ/HLG, profile-less CMYK through the press profile, HEIF
/// transforms applied by the engine, SVG, bilevel and CIELab TIFF.
///
/// 3: `"lossless": "auto"` keeps lossless WebP only where it is no larger than the lossy
/// encode (before, every synthetic-looking variant was lossless); 8-bit RGB(A) with a plain
/// matrix-shaper ICC profile is converted to sRGB by the engine's own tables instead of lcms
/// (within one code value of lcms's result).
pub const ENGINE_VERSION: u32 = 3;

/// What names the engine in variant tags: [`ENGINE_VERSION`] and every encoder setting (the
/// settings are configurable per deployment and change the bytes).
pub fn engine_id(settings: &EncodeSettings) -> String {
    format!(
        "{ENGINE_VERSION}:{}",
        serde_json::to_string(settings).expect("encode settings serialise")
    )
}

/// Resource limits checked against the header before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most pixels (width × height of the stored image) accepted.
    pub max_pixels: u64,
    /// Longest side accepted, in pixels.
    pub max_dimension: u32,
    /// Largest input accepted, in bytes.
    pub max_input_bytes: u64,
    /// Most frames an animated input may have.
    pub max_frames: u32,
    /// Most pixels the frames of an animation rendered as animated WebP may add up to (canvas
    /// × frames): every frame is composited, converted and resized.
    pub max_animation_pixels: u64,
    /// Most pixels one file's variants may add up to, over every width and format (the
    /// encoders' work and memory grow with it).
    pub max_output_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pixels: 100_000_000,
            max_dimension: 32_768,
            max_input_bytes: 64 * 1024 * 1024,
            max_frames: 1_000,
            max_animation_pixels: 500_000_000,
            max_output_pixels: 100_000_000,
        }
    }
}

/// Why an image could not be rendered. Every variant maps to one closed-set [`ErrorCode`]
/// through [`RenderError::code`]; all of them are permanent (the same bytes fail the same way).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The bytes are not a format we read (including empty input).
    #[error("unsupported format: {0}")]
    UnsupportedFormat(String),
    /// The bytes claim a supported format but cannot be decoded.
    #[error("undecodable image: {0}")]
    Undecodable(String),
    /// The image data ends early.
    #[error("truncated image: {0}")]
    Truncated(String),
    /// Pixel, dimension or byte limits exceeded.
    #[error("image too large: {0}")]
    TooLarge(String),
    /// More frames than [`Limits::max_frames`].
    #[error("too many frames: {0}")]
    TooManyFrames(String),
    /// The embedded colour profile cannot be applied to the pixels.
    #[error("invalid colour profile: {0}")]
    InvalidColorProfile(String),
    /// An encoder failed.
    #[error("encode failed: {0}")]
    Encode(String),
}

impl RenderError {
    /// The closed-set code for metrics, the failure record and the batch status.
    pub fn code(&self) -> ErrorCode {
        match self {
            RenderError::UnsupportedFormat(_) => ErrorCode::UnsupportedFormat,
            RenderError::Undecodable(_) => ErrorCode::UndecodableImage,
            RenderError::Truncated(_) => ErrorCode::TruncatedImage,
            RenderError::TooLarge(_) => ErrorCode::ImageTooLarge,
            RenderError::TooManyFrames(_) => ErrorCode::TooManyFrames,
            RenderError::InvalidColorProfile(_) => ErrorCode::InvalidColorProfile,
            RenderError::Encode(_) => ErrorCode::EncodeFailed,
        }
    }
}

/// One encoded output.
#[derive(Debug, Clone)]
pub struct Variant {
    /// The width that was asked for (the key's `{width}w`); equals the source width when the
    /// source is narrower than every requested width.
    pub target_width: u32,
    /// The `sizes` entry this variant was made for (`None`: a `widths` variant).
    pub size: Option<SizeSpec>,
    /// Actual pixel width.
    pub width: u32,
    /// Actual pixel height.
    pub height: u32,
    /// Encoding.
    pub format: OutputFormat,
    /// Whether the pixels are stored exactly (PNG, lossless WebP).
    pub lossless: bool,
    /// The encoded file.
    pub bytes: Vec<u8>,
    /// For an animated WebP variant, its frames, duration and loop count; `None` for a still.
    pub animation: Option<animation::AnimationFacts>,
    /// `"quality": "auto"`: the quality the search chose and the score the variant measured
    /// (`None` for a fixed quality and for lossless output).
    pub auto: Option<perceptual::Chosen>,
}

/// Where the time of one render went, for logs and the bench.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    /// Header probe + decode + colour conversion + orientation, in milliseconds.
    pub decode_ms: f64,
    /// All resizes, orientation and the facts, in milliseconds (encodes already run meanwhile).
    pub resize_ms: f64,
    /// Wall time from the end of the resizes until the last encode finished, in milliseconds.
    pub encode_ms: f64,
    /// Computing the attention map of an `auto` focus (part of `resize_ms`; 0 without one), in
    /// milliseconds.
    pub attention_ms: f64,
}

/// The result of [`render`].
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Facts about the source for the manifest.
    pub facts: SourceFacts,
    /// One entry per (target width, format), widths ascending, formats in request order.
    pub variants: Vec<Variant>,
    /// Where the time went.
    pub timings: Timings,
}

/// The widths to produce for an (oriented) source width, following the sharp baseline's rule:
/// every requested width strictly smaller than the source; if none is, one variant at the
/// source width (never an upscale, never 0).
pub fn plan_widths(requested: &[u32], source_width: u32) -> Vec<u32> {
    let mut widths: Vec<u32> = requested
        .iter()
        .copied()
        .filter(|&w| w > 0 && w < source_width)
        .collect();
    widths.sort_unstable();
    widths.dedup();
    if widths.is_empty() {
        widths.push(source_width.max(1));
    }
    widths
}

/// Width of the raster made only for the manifest facts when a request asks for `sizes` and no
/// `widths` (never encoded).
pub const FACTS_WIDTH: u32 = 320;

/// The `widths` rasters [`render`] makes for an oriented source width: [`plan_widths`] of the
/// request's widths, or, for a request of `sizes` only, one facts-only width
/// ([`FACTS_WIDTH`], not encoded).
pub fn planned_widths(request: &VariantRequest, source_width: u32) -> Vec<u32> {
    if request.widths.is_empty() {
        plan_widths(&[FACTS_WIDTH], source_width)
    } else {
        plan_widths(&request.widths, source_width)
    }
}

/// One encoded output of a request, made in every requested format: a `widths` entry (as
/// planned by [`plan_widths`]) or a `sizes` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A planned `widths` entry.
    Width(u32),
    /// A `sizes` entry.
    Size(SizeSpec),
}

/// The encoded outputs of `request` for an oriented `ow`-wide source, in the order of the
/// variants: the planned widths ascending (none for a request of `sizes` only), then the sizes
/// in request order.
pub fn planned_targets(request: &VariantRequest, ow: u32) -> Vec<Target> {
    let widths = if request.widths.is_empty() {
        Vec::new()
    } else {
        plan_widths(&request.widths, ow)
    };
    widths
        .into_iter()
        .map(Target::Width)
        .chain(request.sizes.iter().copied().map(Target::Size))
        .collect()
}

/// The upright size of every encoded output of `request` for an `ow` × `oh` (oriented)
/// source, in [`planned_targets`] order (once each, whatever the formats).
pub fn planned_outputs(request: &VariantRequest, ow: u32, oh: u32) -> Vec<(u32, u32)> {
    planned_targets(request, ow)
        .into_iter()
        .map(|target| match target {
            Target::Width(w) => (w, scaled_height(ow, oh, w)),
            Target::Size(size) => fit::output_size(&size, ow, oh),
        })
        .collect()
}

/// The widest the whole upright image must be for any variant of `request` (a `widths` entry's
/// width, a `sizes` entry's [`fit::equivalent_width`]): what a reducing decoder must deliver.
pub fn max_target_width(request: &VariantRequest, ow: u32, oh: u32) -> u32 {
    let widths = planned_widths(request, ow);
    request
        .sizes
        .iter()
        .map(|s| fit::equivalent_width(s, ow, oh))
        .chain(widths.last().copied())
        .max()
        .unwrap_or(ow)
}

/// Height for `width` keeping the aspect ratio of `src_w` × `src_h`, rounded, at least 1.
pub fn scaled_height(src_w: u32, src_h: u32, width: u32) -> u32 {
    let h = (u64::from(src_h) * u64::from(width) + u64::from(src_w) / 2) / u64::from(src_w.max(1));
    u32::try_from(h.max(1)).unwrap_or(u32::MAX)
}

/// The libjpeg-turbo DCT scale, in eighths (1..=8), for a JPEG whose oriented width is
/// `oriented_w` when the largest variant is `max_target_w` wide.
///
/// libjpeg-turbo's reduced-size inverse DCT is a cheap, good low-pass: we take the smallest
/// scale that still leaves at least `min_residual` × the target width for the Lanczos3 pass,
/// so the final filter always does the last step (the ratio and the allowed scales were chosen
/// by measuring time and SSIM on the corpus; see the README). The output size libjpeg-turbo
/// produces is `ceil(w · n / 8)`.
pub fn plan_jpeg_scale(oriented_w: u32, max_target_w: u32, min_residual: f64) -> u32 {
    JPEG_SCALES
        .iter()
        .copied()
        .find(|&n| {
            let scaled = (u64::from(oriented_w) * u64::from(n)).div_ceil(8);
            scaled as f64 >= f64::from(max_target_w) * min_residual
        })
        .unwrap_or(8)
}

/// A relative estimate of the CPU one render of `probe`'s image costs, from its header alone,
/// in units of "pixels one WebP encode sees": the pixels of every planned variant (an AVIF
/// pixel counts 8, measured: AVIF is about 8× WebP's CPU on the corpus) plus a quarter of the
/// pixels the decoder produces (after the JPEG DCT scaling [`render`] will use; HEIF/AVIF
/// pixels count half, HEVC/AV1 decoding costs about twice JPEG's per pixel).
///
/// The bench uses it to start the most expensive images first, so that a long image does not
/// start last while the other cores run out of work.
pub fn estimate_cost(
    probe: &decode::Probe,
    request: &VariantRequest,
    settings: &EncodeSettings,
) -> u64 {
    let (ow, oh) = probe.oriented_dimensions();
    let per_pixel: u64 = request
        .formats
        .iter()
        .map(|&f| format_cost(f, request))
        .sum();
    let encoded: u64 = planned_outputs(request, ow, oh)
        .iter()
        .map(|&(w, h)| u64::from(w) * u64::from(h) * per_pixel)
        .sum();
    let stored = probe.decode_pixels();
    let decoded = match probe.format {
        SourceFormat::Jpeg => {
            let max_target = max_target_width(request, ow, oh);
            let n = u64::from(plan_jpeg_scale(ow, max_target, settings.jpeg_min_residual));
            stored * n * n / 64 / 4
        }
        SourceFormat::Heic | SourceFormat::Avif => stored / 2,
        // Rasterised at the largest variant's size; drawing costs about what decoding does.
        SourceFormat::Svg => {
            let max_target = max_target_width(request, ow, oh);
            let (w, h) = decode::svg::raster_size(probe.width, probe.height, max_target);
            u64::from(w) * u64::from(h) / 2
        }
        _ => stored / 4,
    };
    encoded + decoded
}

/// The CPU weight of one pixel encoded as `format`, in lossy-WebP pixels (measured on the
/// corpus: AVIF 8; progressive JPEG with optimised Huffman tables and PNG about 1 each;
/// lossless WebP at method 4 about 4, and `auto` as both, which a synthetic-looking variant
/// pays).
pub fn format_cost(format: OutputFormat, request: &VariantRequest) -> u64 {
    match format {
        OutputFormat::Webp if request.lossless == Lossless::Auto => 5,
        OutputFormat::Webp if !request.lossless.is_off() => 4,
        OutputFormat::Webp | OutputFormat::Jpeg | OutputFormat::Png => 1,
        OutputFormat::Avif => 8,
    }
}

/// The eighths libjpeg-turbo may decode at, smallest first: 1/8, 1/4, 1/2 and 1. These have
/// SIMD inverse DCTs; the other eighths (3/8, 3/4, ...) were measured to lose SSIM on the
/// corpus (0.9732 against 0.9788 mean WebP SSIM-Y) for little time, so they are not used.
const JPEG_SCALES: [u32; 4] = [1, 2, 4, 8];

/// The newest of the `stored` variants a `tw` × `th` resize may start from: at least `ratio`
/// times that size in both directions (a resize chain), if any.
fn chain_from(
    stored: &[Arc<resize::Raster>],
    (tw, th): (u32, u32),
    ratio: f64,
) -> Option<&Arc<resize::Raster>> {
    stored.iter().rev().find(|r| {
        f64::from(r.width) >= f64::from(tw) * ratio && f64::from(r.height) >= f64::from(th) * ratio
    })
}

/// Render every variant of one image, and its facts.
///
/// `request` must be normalised ([`VariantRequest::normalise`]); widths are then planned with
/// [`plan_widths`] against the oriented source width.
///
/// # Errors
/// Returns a [`RenderError`] (see [`RenderError::code`]) when the input is not a supported
/// image, exceeds `limits`, is truncated or corrupt, or an encoder fails.
pub fn render(
    bytes: &[u8],
    request: &VariantRequest,
    limits: &Limits,
    settings: &EncodeSettings,
) -> Result<Rendered, RenderError> {
    let t0 = Instant::now();
    let probe = decode::probe(bytes, limits)?;
    check_output(&probe, request, limits)?;
    animation::check(&probe, request, limits)?;
    if animation::applies(&probe, request) {
        return animation::render(bytes, &probe, request, limits, settings, t0);
    }
    render_probed(bytes, &probe, request, settings, t0)
}

/// [`render`] after the probe and the limits: the still pipeline, from the first frame.
fn render_probed(
    bytes: &[u8],
    probe: &decode::Probe,
    request: &VariantRequest,
    settings: &EncodeSettings,
    t0: Instant,
) -> Result<Rendered, RenderError> {
    let (oriented_w, oriented_h) = probe.oriented_dimensions();
    let widths = planned_widths(request, oriented_w);
    // A request of `sizes` only still makes one `widths` raster, for the facts; it is not
    // encoded.
    let encode_widths = !request.widths.is_empty();
    let max_target = if request.sizes.is_empty() {
        widths.last().copied().unwrap_or(oriented_w)
    } else {
        max_target_width(request, oriented_w, oriented_h)
    };
    let decoded = decode::decode(bytes, probe, max_target, settings)?;
    let hdr = decoded.nclx.and_then(hdr::HdrSource::of);
    let (src_w, src_h) = probe.oriented_dimensions();
    let variant_pixels = widths
        .iter()
        .map(|&w| u64::from(w) * u64::from(scaled_height(src_w, src_h, w)))
        .chain(request.sizes.iter().map(|s| {
            let (w, h) = fit::scaled_size(s, src_w, src_h);
            u64::from(w) * u64::from(h)
        }))
        .sum();
    // A large tagged frame may come back unconverted, with its colour transform deferred to
    // the variants made from it (see `color::to_srgb8_or_defer`).
    let (raster, source_color, deferred) = color::to_srgb8_or_defer(decoded, variant_pixels)?;
    let has_alpha = raster.has_transparency();
    let orientation = probe.orientation_to_apply();
    let decode_ms = ms(t0);

    // Resize in the stored frame and orient only the small results: rotating a 12 MP frame
    // costs more than all the variants together. Widths are made largest first so a smaller
    // one can start from a larger variant (`settings.resize_chain_min_ratio`), and each
    // variant's encodes are handed to the rayon pool as soon as it exists, so the largest
    // (longest) encode runs while the smaller variants are still being resized.
    let t1 = Instant::now();
    let swap = orientation >= 5;
    let nf = request.formats.len();
    let ns = request.sizes.len();
    let slots: Vec<EncodeSlot> = (0..(widths.len() + ns) * nf)
        .map(|_| Mutex::new(None))
        .collect();
    let mut upright: Vec<Option<Arc<resize::Raster>>> = vec![None; widths.len()];
    let mut size_upright: Vec<Option<Arc<resize::Raster>>> = vec![None; ns];
    let mut resize_ms = 0.0;
    let mut attention_ms = 0.0;
    let facts = rayon::in_place_scope(|scope| -> Result<SourceFacts, RenderError> {
        let raster = raster;
        let slots = &slots;
        // `sizes` first, each from the frame: crop (cover) and resize in one pass in the
        // stored frame, apply any deferred colour transform, orient, pad (contain).
        if ns > 0 {
            let wants_attention = request
                .sizes
                .iter()
                .any(|s| s.fit == Fit::Cover && s.focus == Focus::Auto);
            let attention = if wants_attention {
                let ta = Instant::now();
                let map = fit::AttentionMap::of(&raster)?;
                attention_ms = ms(ta);
                Some(map)
            } else {
                None
            };
            for (k, size) in request.sizes.iter().enumerate() {
                let centre =
                    fit::focus_centre(size, orientation, request.focal_point, attention.as_ref());
                let mut made = fit::make(&raster, size, (src_w, src_h), orientation, centre)?;
                if let Some(d) = &deferred {
                    d.apply(&mut made);
                }
                let up = orient::apply(made, orientation);
                let up = if size.fit == Fit::Contain {
                    fit::pad(&up, size.width, size.height, size.pad())
                } else {
                    up
                };
                let up = Arc::new(up);
                for (fi, &format) in request.formats.iter().enumerate() {
                    let up = Arc::clone(&up);
                    let slot = &slots[(widths.len() + k) * nf + fi];
                    scope.spawn(move |_| {
                        let out = encode_one(&up, format, request, settings);
                        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(out);
                    });
                }
                size_upright[k] = Some(up);
            }
        }
        // The stored-frame size of width `w`.
        let target = |w: u32| {
            let h = scaled_height(src_w, src_h, w);
            if swap { (h, w) } else { (w, h) }
        };
        let mut frame = Some(raster);
        let mut stored: Vec<Arc<resize::Raster>> = Vec::with_capacity(widths.len());
        for (k, &w) in widths.iter().enumerate().rev() {
            let (tw, th) = target(w);
            let chained = chain_from(&stored, (tw, th), settings.resize_chain_min_ratio);
            let from = match chained {
                Some(r) => &**r,
                None => frame
                    .as_ref()
                    .expect("the frame is kept while a width needs it"),
            };
            let mut resized = resize::resize(from, tw, th)?;
            if let (None, Some(d)) = (chained, &deferred) {
                d.apply(&mut resized);
            }
            let resized = Arc::new(resized);
            let up = if orient::is_identity(orientation) {
                Arc::clone(&resized)
            } else {
                Arc::new(orient::transform(&resized, orientation))
            };
            for (fi, &format) in request.formats.iter().enumerate() {
                if !encode_widths {
                    break;
                }
                // A searched format waits for the smallest width (made last), which
                // calibrates its quality for the others.
                if request.auto_quality_for(format).is_some() {
                    continue;
                }
                let up = Arc::clone(&up);
                let slot = &slots[k * nf + fi];
                scope.spawn(move |_| {
                    let out =
                        encode::encode_variant(&up, format, request, settings).map(|e| (e, None));
                    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(out);
                });
            }
            stored.push(resized);
            upright[k] = Some(up);
            // Once every width still to make can start from a variant, the frame, the largest
            // allocation, is freed before their resizes.
            let ratio = settings.resize_chain_min_ratio;
            if widths[..k]
                .iter()
                .all(|&w| chain_from(&stored, target(w), ratio).is_some())
            {
                frame = None;
            }
        }
        if encode_widths {
            let made: Vec<Arc<resize::Raster>> = upright.iter().flatten().cloned().collect();
            for (fi, &format) in request.formats.iter().enumerate() {
                if let Some(level) = request.auto_quality_for(format) {
                    let made = made.clone();
                    scope.spawn(move |scope| {
                        searched_widths(
                            scope, &made, format, level, fi, nf, slots, request, settings,
                        );
                    });
                }
            }
        }
        // The full frame is the largest allocation; free it while the encoders run.
        drop(frame);
        drop(stored);
        let smallest = upright
            .first()
            .and_then(Option::as_deref)
            .expect("plan_widths always yields at least one width");
        let facts = facts::compute(
            bytes,
            probe,
            has_alpha,
            smallest,
            (src_w, src_h),
            source_color,
        )
        .map(|f| SourceFacts { hdr, ..f });
        resize_ms = ms(t1);
        facts
    })?;
    let encode_ms = ms(t1) - resize_ms;

    let mut variants = Vec::with_capacity(slots.len());
    for (j, slot) in slots.into_iter().enumerate() {
        let (k, format) = (j / nf, request.formats[j % nf]);
        if k < widths.len() && !encode_widths {
            continue;
        }
        let (r, target_width, size) = if k < widths.len() {
            let r = upright[k].as_deref();
            (r, widths[k], None)
        } else {
            let size = request.sizes[k - widths.len()];
            let r = size_upright[k - widths.len()].as_deref();
            (r, size.width, Some(size))
        };
        let r = r.expect("every variant was made before the scope ended");
        let encoded = slot
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or_else(|| Err(RenderError::Encode("encode job did not run".into())))?;
        let (encoded, auto) = encoded;
        variants.push(Variant {
            target_width,
            size,
            width: r.width,
            height: r.height,
            format,
            lossless: encoded.lossless,
            bytes: encoded.bytes,
            animation: None,
            auto,
        });
    }

    Ok(Rendered {
        facts,
        variants,
        timings: Timings {
            decode_ms,
            resize_ms,
            encode_ms,
            attention_ms,
        },
    })
}

/// Refuse a request whose variants add up to more than [`Limits::max_output_pixels`].
///
/// # Errors
/// [`RenderError::TooLarge`] over the limit.
pub fn check_output(
    probe: &decode::Probe,
    request: &VariantRequest,
    limits: &Limits,
) -> Result<(), RenderError> {
    let output = memory::output_pixels(probe, request);
    if output > limits.max_output_pixels {
        return Err(RenderError::TooLarge(format!(
            "the variants add up to {output} pixels, the limit is {}",
            limits.max_output_pixels
        )));
    }
    Ok(())
}

/// Where one encode job leaves its output (`None` until it has run), with what a quality
/// search chose for it.
type EncodeSlot = Mutex<Option<Result<(encode::Encoded, Option<perceptual::Chosen>), RenderError>>>;

/// The level searched for `format`: the request's `auto` level, unless the variant is
/// lossless WebP (`"lossless": true`). With `"auto"` the lossy variant is searched, and
/// [`searched_or_lossless`] may then keep the lossless one instead.
fn searched_level(format: OutputFormat, request: &VariantRequest) -> Option<AutoQuality> {
    let level = request.auto_quality_for(format)?;
    match request.lossless_for(format) {
        Lossless::Off | Lossless::Auto => Some(level),
        Lossless::On => None,
    }
}

/// A searched variant of `up`: `search` makes the lossy variant (on the raster as the encoders
/// see it, [`encode::opaque`]), and with `"lossless": "auto"` the lossless WebP is kept instead where
/// [`encode::auto_lossless`] says so. Returns the variant and what the search chose, also when
/// the lossless one is kept (a calibration goes on from it).
fn searched_or_lossless(
    up: &resize::Raster,
    format: OutputFormat,
    request: &VariantRequest,
    settings: &EncodeSettings,
    search: impl FnOnce(&resize::Raster) -> Result<(Vec<u8>, perceptual::Chosen), RenderError> + Send,
) -> Result<
    (
        (encode::Encoded, Option<perceptual::Chosen>),
        perceptual::Chosen,
    ),
    RenderError,
> {
    let up = encode::opaque(up);
    let ((bytes, chosen), kept) = if request.lossless_for(format) == Lossless::Auto {
        encode::auto_lossless(&up, settings, || search(&up), |(b, _)| b.len())?
    } else {
        (search(&up)?, None)
    };
    let variant = match kept {
        Some(bytes) => encode::Encoded {
            bytes,
            lossless: true,
        },
        None => lossy(bytes),
    };
    let recorded = (!variant.lossless).then_some(chosen);
    Ok(((variant, recorded), chosen))
}

/// One variant on its own (a `sizes` entry): a fixed quality, or its own calibration.
fn encode_one(
    up: &resize::Raster,
    format: OutputFormat,
    request: &VariantRequest,
    settings: &EncodeSettings,
) -> Result<(encode::Encoded, Option<perceptual::Chosen>), RenderError> {
    match searched_level(format, request) {
        None => encode::encode_variant(up, format, request, settings).map(|e| (e, None)),
        Some(level) => searched_or_lossless(up, format, request, settings, |r| {
            perceptual::calibrate(r, format, level, settings)
        })
        .map(|(variant, _)| variant),
    }
}

/// Every `widths` variant of a searched format: calibrate on the smallest (`made[0]`), then
/// encode and score each larger one once at the calibrated quality (in parallel on `scope`).
/// With `"lossless": "auto"` every width is searched and may then be kept lossless
/// ([`searched_or_lossless`]); the smallest calibrates either way.
#[allow(clippy::too_many_arguments)]
fn searched_widths<'s>(
    scope: &rayon::Scope<'s>,
    made: &[Arc<resize::Raster>],
    format: OutputFormat,
    level: AutoQuality,
    fi: usize,
    nf: usize,
    slots: &'s [EncodeSlot],
    request: &'s VariantRequest,
    settings: &'s EncodeSettings,
) {
    let put = |k: usize, out| {
        *slots[k * nf + fi]
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(out);
    };
    let mut calibrated: Option<(u8, u32)> = None;
    for (k, up) in made.iter().enumerate() {
        if searched_level(format, request).is_none() {
            put(
                k,
                encode::encode_variant(up, format, request, settings).map(|e| (e, None)),
            );
            continue;
        }
        let Some((q, from_width)) = calibrated else {
            let out = searched_or_lossless(up, format, request, settings, |r| {
                perceptual::calibrate(r, format, level, settings)
            });
            if let Ok((_, c)) = &out {
                calibrated = Some((c.quality, up.width));
            }
            put(k, out.map(|(variant, _)| variant));
            continue;
        };
        let up = Arc::clone(up);
        let slot = &slots[k * nf + fi];
        scope.spawn(move |_| {
            let adjust = perceptual::width_adjustment(format, from_width, up.width);
            let (lo, hi) = perceptual::quality_bounds(format);
            let q = (f64::from(q) + adjust)
                .round()
                .clamp(f64::from(lo), f64::from(hi)) as u8;
            let out = searched_or_lossless(&up, format, request, settings, |r| {
                perceptual::encode_scored(r, format, q, settings)
            })
            .map(|(variant, _)| variant);
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(out);
        });
    }
}

fn lossy(bytes: Vec<u8>) -> encode::Encoded {
    encode::Encoded {
        bytes,
        lossless: false,
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_widths_like_the_sharp_baseline() {
        let req = [320, 640, 1280, 2048];
        assert_eq!(plan_widths(&req, 2725), vec![320, 640, 1280, 2048]);
        assert_eq!(plan_widths(&req, 2048), vec![320, 640, 1280]);
        assert_eq!(plan_widths(&req, 321), vec![320]);
        assert_eq!(plan_widths(&req, 320), vec![320]);
        assert_eq!(plan_widths(&req, 32), vec![32]);
        assert_eq!(plan_widths(&req, 0), vec![1]);
    }

    #[test]
    fn scaled_height_never_reaches_zero() {
        assert_eq!(scaled_height(4000, 10, 320), 1);
        assert_eq!(scaled_height(2725, 2225, 320), 261);
        assert_eq!(scaled_height(600, 450, 320), 240);
    }

    #[test]
    fn jpeg_scale_leaves_room_for_the_final_filter() {
        // In eighths: 1/2 of 6000 is 3000 >= 2048; 1/2 of 3024 is not.
        assert_eq!(plan_jpeg_scale(6000, 2048, 1.0), 4);
        assert_eq!(plan_jpeg_scale(6000, 2048, 2.0), 8);
        assert_eq!(plan_jpeg_scale(3024, 2048, 1.0), 8);
        assert_eq!(plan_jpeg_scale(2725, 320, 1.0), 1);
        assert_eq!(plan_jpeg_scale(2725, 320, 2.0), 2);
        assert_eq!(plan_jpeg_scale(600, 600, 1.0), 8);
    }

    #[test]
    fn cost_grows_with_the_variants_and_the_decode() {
        let limits = Limits::default();
        let settings = EncodeSettings::default();
        let webp = VariantRequest {
            formats: vec![OutputFormat::Webp],
            ..VariantRequest::default()
        }
        .normalise()
        .unwrap();
        let both = VariantRequest::default().normalise().unwrap();
        let png = |w: u32, h: u32| {
            let img = image::RgbImage::new(w, h);
            let mut out = std::io::Cursor::new(Vec::new());
            img.write_to(&mut out, image::ImageFormat::Png).unwrap();
            decode::probe(&out.into_inner(), &limits).unwrap()
        };
        let (small, large) = (png(300, 200), png(3000, 2000));
        // 300 wide: one variant at 300×200, plus a quarter of the 60,000 decoded pixels.
        assert_eq!(estimate_cost(&small, &webp, &settings), 60_000 + 15_000);
        assert!(
            estimate_cost(&large, &webp, &settings) > 50 * estimate_cost(&small, &webp, &settings)
        );
        // AVIF on top of WebP weighs 8 more per variant pixel.
        assert_eq!(estimate_cost(&small, &both, &settings), 9 * 60_000 + 15_000);
    }

    #[test]
    fn every_error_has_its_code() {
        assert_eq!(
            RenderError::Truncated(String::new()).code(),
            ErrorCode::TruncatedImage
        );
        assert_eq!(
            RenderError::TooLarge(String::new()).code(),
            ErrorCode::ImageTooLarge
        );
    }
}
