//! Encoders: WebP (lossy or lossless) through libwebp, AVIF through ravif (rav1e) or, with
//! [`EncodeSettings::aom`], libheif and libaom, JPEG through libjpeg-turbo and PNG through the
//! `png` crate.
//!
//! Invariants: output carries no metadata (no EXIF, no ICC: the pixels are sRGB, which is what
//! an untagged image means); an RGBA raster whose alpha is all 255 is encoded without alpha;
//! each call is single-image and thread-safe, so the caller runs them in parallel.
//!
//! The JPEG, PNG and lossless-WebP settings are fixed here (not in [`EncodeSettings`], whose
//! serialised form names the engine in every variant tag): changing one is an engine change.

use serde::{Deserialize, Serialize};
use shared::variant::{Lossless, OutputFormat, VariantRequest};

use super::RenderError;
use super::resize::Raster;

/// Encoder and decoder knobs that are not part of the per-batch [`VariantRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EncodeSettings {
    /// libwebp `method` (0 = fastest, 6 = smallest). sharp's `effort: 4` is method 4.
    pub webp_method: u8,
    /// libwebp `thread_level` (0 or 1); 1 moves analysis and the alpha plane to a second
    /// thread without changing the output. sharp leaves it at 0.
    pub webp_thread_level: u8,
    /// rav1e speed preset (1 = slowest/smallest, 10 = fastest).
    pub avif_speed: u8,
    /// Added to the request's AVIF quality before it is handed to ravif. ravif's quality scale
    /// is not libaom's: this offset maps the request's libaom-style number (sharp's `quality`)
    /// to the ravif quality that gives about the same bytes and SSIM on our corpus.
    pub avif_quality_offset: f32,
    /// AVIF threads per encode. rav1e: `None` encodes tiles on the shared rayon pool, which
    /// keeps both cores busy when one large AVIF is the last job of a batch (measured: corpus
    /// wall time 22.9 s with `Some(1)`, 20.1 s with `None`, +0.6% bytes from the extra tile).
    /// libaom: `None` uses as many threads as the current rayon pool has; its encodes run one
    /// at a time per process (see [`avif`]).
    pub avif_threads: Option<usize>,
    /// AVIF through libaom (libheif) with these settings instead of rav1e; `None`, the
    /// default, is rav1e. Left out of the serialised form when `None`, so the engine id of the
    /// default settings is what it was before the option existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aom: Option<AomSettings>,
    /// The JPEG DCT-domain downscale must leave at least this factor for the Lanczos3 pass
    /// (see [`super::plan_jpeg_scale`]); `f64::INFINITY` disables DCT scaling.
    pub jpeg_min_residual: f64,
    /// A smaller variant is resized from an already-made larger one when that one is at least
    /// this many times wider (and taller); otherwise from the decoded frame.
    /// `f64::INFINITY` always resizes from the decoded frame. 1.5 makes the 1280 variant from
    /// the 2048 one, which saves a full-frame Lanczos pass per large image (about 1.5% of the
    /// WebP-only corpus CPU) for a mean WebP SSIM-Y of 0.9787 against 0.9788 with 2.0.
    pub resize_chain_min_ratio: f64,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        Self {
            webp_method: 4,
            webp_thread_level: 0,
            avif_speed: 8,
            avif_quality_offset: 13.0,
            avif_threads: None,
            aom: None,
            jpeg_min_residual: 1.0,
            resize_chain_min_ratio: 1.5,
        }
    }
}

/// Which library encodes AVIF (the configuration's `avif_encoder`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AvifEncoder {
    /// rav1e through ravif (speed 8): the default, and the lower peak memory.
    #[default]
    Rav1e,
    /// libaom through libheif, libvips' (sharp's) route: at speed 6, 4 points of SSIMULACRA 2
    /// more than rav1e at the same bytes for 42% less CPU, at about 35 bytes per pixel of
    /// encoder memory (see the README).
    Aom,
}

impl AvifEncoder {
    /// The [`EncodeSettings::aom`] this choice means, with libaom's default settings.
    pub fn aom(self) -> Option<AomSettings> {
        (self == Self::Aom).then(AomSettings::default)
    }
}

/// libaom's settings when it encodes AVIF ([`EncodeSettings::aom`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AomSettings {
    /// libaom speed (`cpu-used`, 0 = slowest/smallest, 9 = fastest); sharp's `effort: 4` is
    /// speed 5.
    pub speed: u8,
    /// Added to the request's AVIF quality (sharp's scale) before it is handed to libheif.
    /// sharp's libaom (3.13 and later) runs libheif's `tune=iq` quality table; the libaom
    /// linked here predates it and takes libheif's linear one, so the same number is not the
    /// same quantiser (see the README's table).
    pub quality_offset: f32,
}

impl Default for AomSettings {
    fn default() -> Self {
        Self {
            speed: 6,
            quality_offset: 1.0,
        }
    }
}

impl std::str::FromStr for AvifEncoder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rav1e" => Ok(Self::Rav1e),
            "aom" => Ok(Self::Aom),
            other => Err(format!("unknown AVIF encoder {other:?} (rav1e or aom)")),
        }
    }
}

/// One encoded variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The file.
    pub bytes: Vec<u8>,
    /// Whether the pixels are stored exactly (PNG, lossless WebP).
    pub lossless: bool,
}

/// Encode one raster.
///
/// # Errors
/// [`RenderError::Encode`] when the encoder fails (out of memory, invalid configuration).
pub fn encode(
    raster: &Raster,
    format: OutputFormat,
    request: &VariantRequest,
    settings: &EncodeSettings,
) -> Result<Vec<u8>, RenderError> {
    encode_variant(raster, format, request, settings).map(|e| e.bytes)
}

/// Encode one raster, saying whether the result is lossless (`"lossless": "auto"` decides
/// per raster, see [`auto_lossless`]).
///
/// # Errors
/// [`RenderError::Encode`] when the encoder fails (out of memory, invalid configuration).
pub fn encode_variant(
    raster: &Raster,
    format: OutputFormat,
    request: &VariantRequest,
    settings: &EncodeSettings,
) -> Result<Encoded, RenderError> {
    let raster = &*opaque(raster);
    let lossy = |bytes| Encoded {
        bytes,
        lossless: false,
    };
    let exact = |bytes| Encoded {
        bytes,
        lossless: true,
    };
    match format {
        OutputFormat::Webp => match request.lossless_for(format) {
            Lossless::Off => webp(raster, request.webp_quality, settings).map(lossy),
            Lossless::On => webp_lossless(raster, settings).map(exact),
            Lossless::Auto => {
                let lossy_encode = || webp(raster, request.webp_quality, settings);
                let (bytes, kept) = auto_lossless(raster, settings, lossy_encode, Vec::len)?;
                Ok(kept.map_or_else(|| lossy(bytes), exact))
            }
        },
        OutputFormat::Avif => avif(raster, request.avif_quality, settings).map(lossy),
        OutputFormat::Jpeg => jpeg(raster, request.jpeg_quality).map(lossy),
        OutputFormat::Png => png(raster).map(exact),
    }
}

/// Encode `raster` (opaque RGB, or RGBA with transparency) as lossy WebP or AVIF at
/// `quality` (the request's scale), with `settings`: what a fixed quality of that number
/// encodes. Used by the quality search ([`super::perceptual`]).
///
/// # Errors
/// [`RenderError::Encode`] when the encoder fails, or for a format that has no lossy quality
/// to search (JPEG keeps its fixed quality, PNG is lossless).
pub fn encode_lossy(
    raster: &Raster,
    format: OutputFormat,
    quality: u8,
    settings: &EncodeSettings,
) -> Result<Vec<u8>, RenderError> {
    match format {
        OutputFormat::Webp => webp(raster, quality, settings),
        OutputFormat::Avif => avif(raster, quality, settings),
        f => Err(RenderError::Encode(format!("{f} has no searched quality"))),
    }
}

/// The `"lossless": "auto"` rule for one raster (opaque RGB, or RGBA with transparency, as the
/// encoders see it): `lossy` encodes it lossy (at the request's quality, or the quality search)
/// and `len` gives the size of that encode. A raster that does not pass [`looks_synthetic`]
/// (a photo) is only encoded lossy. One that does is also encoded as lossless WebP, in
/// parallel on the rayon pool, and the lossless bytes are kept when they are no larger than
/// the lossy ones: then they are both smaller and exact. Returns the lossy result and, when
/// kept, the lossless bytes.
///
/// # Errors
/// Either encoder's error.
pub fn auto_lossless<T: Send>(
    raster: &Raster,
    settings: &EncodeSettings,
    lossy: impl FnOnce() -> Result<T, RenderError> + Send,
    len: impl FnOnce(&T) -> usize,
) -> Result<(T, Option<Vec<u8>>), RenderError> {
    if !looks_synthetic(raster) {
        return Ok((lossy()?, None));
    }
    let (exact, lossy) = rayon::join(|| webp_lossless(raster, settings), lossy);
    let (exact, lossy) = (exact?, lossy?);
    let kept = (exact.len() <= len(&lossy)).then_some(exact);
    Ok((lossy, kept))
}

/// Whether `"lossless": "auto"` keeps lossless WebP for `raster` against lossy WebP at
/// `quality` ([`auto_lossless`]); an animation decides this on its first frame.
///
/// # Errors
/// Either encoder's error.
pub fn auto_keeps_lossless(
    raster: &Raster,
    quality: u8,
    settings: &EncodeSettings,
) -> Result<bool, RenderError> {
    let raster = &*opaque(raster);
    let lossy = || webp(raster, quality, settings);
    auto_lossless(raster, settings, lossy, Vec::len).map(|(_, kept)| kept.is_some())
}

/// A raster as the encoders see it: RGBA whose alpha is all 255 without its alpha.
pub fn opaque(raster: &Raster) -> std::borrow::Cow<'_, Raster> {
    if raster.channels == 4 && !raster.has_transparency() {
        std::borrow::Cow::Owned(raster.without_alpha())
    } else {
        std::borrow::Cow::Borrowed(raster)
    }
}

/// The share of pixels (in 1/1000) that must equal their left neighbour exactly for
/// `"lossless": "auto"` to try lossless WebP. Measured (see the README): screenshots, charts
/// and line art resized to the default widths repeat most pixels (flat fills survive Lanczos3),
/// photos almost none.
pub const AUTO_LOSSLESS_MIN_REPEATS: u32 = 500;
/// ... and at most this many distinct colours may appear on a sampling grid of
/// [`AUTO_LOSSLESS_GRID`] pixels: a photo with a flat backdrop repeats pixels too, but its
/// subject brings thousands of colours.
pub const AUTO_LOSSLESS_MAX_COLOURS: usize = 1024;
/// Pixels sampled (at most, evenly) for the colour count of [`looks_synthetic`].
pub const AUTO_LOSSLESS_GRID: usize = 16_384;

/// The `"lossless": "auto"` pre-filter for one resized variant: `true` when it looks like a
/// screenshot, chart or line art, whose lossless WebP may be smaller than its lossy WebP, so
/// [`auto_lossless`] encodes both; `false` for a photo, which is only encoded lossy. One pass comparing each
/// pixel with its left neighbour, plus a colour count over an evenly spread sample, bounded by
/// [`AUTO_LOSSLESS_GRID`]; about a millisecond per megapixel.
pub fn looks_synthetic(raster: &Raster) -> bool {
    let (repeats, colours) = synthetic_stats(raster);
    repeats >= AUTO_LOSSLESS_MIN_REPEATS && colours <= AUTO_LOSSLESS_MAX_COLOURS
}

/// What [`looks_synthetic`] decides on: the share of pixels equal to their left neighbour, in
/// 1/1000, and the distinct colours on the sampling grid (counting stops past
/// [`AUTO_LOSSLESS_MAX_COLOURS`], and is skipped, reported as `usize::MAX`, when the repeats
/// already rule lossless out).
pub fn synthetic_stats(raster: &Raster) -> (u32, usize) {
    let c = raster.channels;
    let (w, h) = (raster.width as usize, raster.height as usize);
    if w == 0 || h == 0 || c == 0 || raster.data.len() != w * h * c {
        return (0, usize::MAX);
    }
    let mut repeats: u64 = 0;
    for line in raster.data.chunks_exact(w * c) {
        repeats += line
            .chunks_exact(c)
            .zip(line.chunks_exact(c).skip(1))
            .filter(|(a, b)| a == b)
            .count() as u64;
    }
    let comparisons = (h * (w - 1)).max(1) as u64;
    let permille = u32::try_from(repeats * 1000 / comparisons).unwrap_or(1000);
    if permille < AUTO_LOSSLESS_MIN_REPEATS {
        return (permille, usize::MAX);
    }
    let step = (w * h).div_ceil(AUTO_LOSSLESS_GRID).max(1);
    let mut colours = std::collections::HashSet::with_capacity(AUTO_LOSSLESS_MAX_COLOURS + 1);
    for px in raster.data.chunks_exact(c).step_by(step) {
        let mut key = [0_u8; 4];
        key[..c.min(4)].copy_from_slice(&px[..c.min(4)]);
        colours.insert(u32::from_le_bytes(key));
        if colours.len() > AUTO_LOSSLESS_MAX_COLOURS {
            break;
        }
    }
    (permille, colours.len())
}

fn webp(raster: &Raster, quality: u8, settings: &EncodeSettings) -> Result<Vec<u8>, RenderError> {
    super::webp::encode(
        raster,
        super::webp::WebpOptions {
            quality,
            method: settings.webp_method,
            thread_level: settings.webp_thread_level,
        },
    )
}

fn webp_lossless(raster: &Raster, settings: &EncodeSettings) -> Result<Vec<u8>, RenderError> {
    super::webp::encode_lossless(
        raster,
        super::webp::LosslessOptions {
            method: settings.webp_method,
            effort: WEBP_LOSSLESS_EFFORT,
            thread_level: settings.webp_thread_level,
        },
    )
}

/// libwebp's lossless `quality` (an effort: how hard it searches, not a loss): libwebp's own
/// default, which is also what `cwebp -lossless` uses.
pub const WEBP_LOSSLESS_EFFORT: u8 = 75;

/// Where JPEG output composites transparency: white, what an e-mail client or a social
/// preview shows behind an image.
pub const JPEG_BACKGROUND: [u8; 3] = [255, 255, 255];

/// Progressive JPEG with optimised Huffman tables, 4:2:0, through libjpeg-turbo. libjpeg-turbo
/// writes a JFIF header and nothing else (no EXIF, no ICC). Alpha is composited onto
/// [`JPEG_BACKGROUND`].
fn jpeg(raster: &Raster, quality: u8) -> Result<Vec<u8>, RenderError> {
    let fail = |e: turbojpeg::Error| RenderError::Encode(format!("libjpeg-turbo: {e}"));
    let flat;
    let raster = if raster.channels == 4 {
        flat = composite(raster, JPEG_BACKGROUND);
        &flat
    } else {
        raster
    };
    if raster.channels != 3 || raster.data.len() != raster.pixels() * 3 {
        return Err(RenderError::Encode(
            "libjpeg-turbo: only RGB rasters are encoded".into(),
        ));
    }
    let mut c = turbojpeg::Compressor::new().map_err(fail)?;
    c.set_quality(i32::from(quality.clamp(1, 100)))
        .map_err(fail)?;
    c.set_subsamp(turbojpeg::Subsamp::Sub2x2).map_err(fail)?;
    c.set_optimize(true).map_err(fail)?;
    c.set_progressive(true).map_err(fail)?;
    let image = turbojpeg::Image {
        pixels: raster.data.as_slice(),
        width: raster.width as usize,
        pitch: raster.width as usize * 3,
        height: raster.height as usize,
        format: turbojpeg::PixelFormat::RGB,
    };
    let out = c.compress_to_owned(image).map_err(fail)?;
    Ok(out.to_vec())
}

/// `raster` (RGBA, straight alpha) over an opaque `background`, rounded.
fn composite(raster: &Raster, background: [u8; 3]) -> Raster {
    let mut data = Vec::with_capacity(raster.pixels() * 3);
    for px in raster.data.chunks_exact(4) {
        let a = u32::from(px[3]);
        for (c, bg) in px[..3].iter().zip(background) {
            let v = (u32::from(*c) * a + u32::from(bg) * (255 - a) + 127) / 255;
            data.push(v as u8);
        }
    }
    Raster {
        width: raster.width,
        height: raster.height,
        channels: 3,
        data,
    }
}

/// zlib level 6 with adaptive filtering, the usual middle setting between the `png` crate's
/// fastest (`fdeflate`) and level 9.
const PNG_COMPRESSION: image::codecs::png::CompressionType =
    image::codecs::png::CompressionType::Default;

/// 8-bit RGB, or RGBA when the raster has transparency; no ancillary chunks.
fn png(raster: &Raster) -> Result<Vec<u8>, RenderError> {
    use image::ImageEncoder as _;
    let color = match raster.channels {
        3 => image::ExtendedColorType::Rgb8,
        4 => image::ExtendedColorType::Rgba8,
        _ => {
            return Err(RenderError::Encode(
                "png: only RGB(A) rasters are encoded".into(),
            ));
        }
    };
    if raster.data.len() != raster.pixels() * raster.channels {
        return Err(RenderError::Encode(
            "png: raster size does not match its dimensions".into(),
        ));
    }
    let mut out = Vec::with_capacity(raster.pixels() / 2 + 1024);
    image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        PNG_COMPRESSION,
        image::codecs::png::FilterType::Adaptive,
    )
    .write_image(&raster.data, raster.width, raster.height, color)
    .map_err(|e| RenderError::Encode(format!("png: {e}")))?;
    Ok(out)
}

/// The largest raster libheif lets libaom 3.6.0 encode (it refuses bigger ones: that release
/// corrupts them): width, height, pixels. Debian 12's libaom reports 3.6.0.
const AOM_3_6_0_LIMITS: (u32, u32, u64) = (8192 * 2, 4352 * 2, 8192 * 4352);

/// Serialises libaom encodes within the process (see [`avif`]).
static AOM_ENCODE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Lossy AVIF with rav1e or, with [`EncodeSettings::aom`], libheif's libaom encoder, the route
/// libvips (sharp) takes: libaom's all-intra mode, 4:4:4 chroma (sharp's default), alpha as an
/// auxiliary image at the same quality. libheif converts the RGB(A) raster to YCbCr (full range, the matrix named in the AV1
/// sequence header) and writes no colour box: an untagged AVIF is sRGB, as sharp's files are
/// (their boxes are the same). A raster past [`AOM_3_6_0_LIMITS`] (a long strip, or over
/// 35 MP) goes to rav1e even then.
///
/// One libaom encode runs at a time in a process ([`AOM_ENCODE`]), on all the pool's threads
/// (libaom's row multithreading): libaom holds about 35 bytes per pixel while it encodes (109
/// MiB for 2048 × 1536), and two large encodes side by side made the worker's peak resident
/// set half as large again. Two threads encode a 3 MP variant 1.78 times as fast as one.
fn avif(raster: &Raster, quality: u8, settings: &EncodeSettings) -> Result<Vec<u8>, RenderError> {
    let (max_w, max_h, max_px) = AOM_3_6_0_LIMITS;
    let aom_takes_it =
        raster.width <= max_w && raster.height <= max_h && raster.pixels() as u64 <= max_px;
    match settings.aom {
        Some(aom) if aom_takes_it => avif_aom(raster, quality, aom, settings.avif_threads),
        _ => avif_rav1e(raster, quality, settings),
    }
}

/// [`avif`] through rav1e (ravif), 8-bit 4:4:4.
fn avif_rav1e(
    raster: &Raster,
    quality: u8,
    settings: &EncodeSettings,
) -> Result<Vec<u8>, RenderError> {
    use ravif::{BitDepth, Img, RGB8, RGBA8};
    let q = (f32::from(quality) + settings.avif_quality_offset).clamp(1.0, 100.0);
    let encoder = ravif::Encoder::new()
        .with_quality(q)
        .with_alpha_quality(q)
        .with_speed(settings.avif_speed.clamp(1, 10))
        .with_bit_depth(BitDepth::Eight)
        .with_num_threads(settings.avif_threads);
    let (w, h) = (raster.width as usize, raster.height as usize);
    let result = if raster.channels == 4 {
        let px: &[RGBA8] = bytemuck::cast_slice(&raster.data);
        encoder.encode_rgba(Img::new(px, w, h))
    } else {
        let px: &[RGB8] = bytemuck::cast_slice(&raster.data);
        encoder.encode_rgb(Img::new(px, w, h))
    };
    result
        .map(|e| e.avif_file)
        .map_err(|e| RenderError::Encode(format!("ravif: {e}")))
}

/// [`avif`] through libheif and libaom.
fn avif_aom(
    raster: &Raster,
    quality: u8,
    aom: AomSettings,
    threads: Option<usize>,
) -> Result<Vec<u8>, RenderError> {
    use libheif_rs::{
        Channel, ColorSpace, CompressionFormat, EncoderParameterValue, EncoderQuality, HeifContext,
        Image, LibHeif, RgbChroma,
    };
    let fail = |e: libheif_rs::HeifError| RenderError::Encode(format!("libheif/aom: {e}"));
    let q = (f32::from(quality) + aom.quality_offset)
        .round()
        .clamp(1.0, 100.0) as u8;
    let chroma = match raster.channels {
        3 => RgbChroma::Rgb,
        4 => RgbChroma::Rgba,
        _ => {
            return Err(RenderError::Encode(
                "AVIF: only RGB and RGBA rasters".into(),
            ));
        }
    };
    let row = raster.width as usize * raster.channels;
    if raster.data.len() != row * raster.height as usize {
        return Err(RenderError::Encode(
            "AVIF: raster size does not match its dimensions".into(),
        ));
    }
    let mut image =
        Image::new(raster.width, raster.height, ColorSpace::Rgb(chroma)).map_err(fail)?;
    image
        .create_plane(Channel::Interleaved, raster.width, raster.height, 8)
        .map_err(fail)?;
    {
        let planes = image.planes_mut();
        let plane = planes
            .interleaved
            .ok_or_else(|| RenderError::Encode("AVIF: libheif made no plane".into()))?;
        for (y, src) in raster.data.chunks_exact(row).enumerate() {
            let at = y * plane.stride;
            plane
                .data
                .get_mut(at..at + row)
                .ok_or_else(|| RenderError::Encode("AVIF: libheif's plane is short".into()))?
                .copy_from_slice(src);
        }
    }
    let lib = LibHeif::new();
    let mut encoder = lib
        .encoder_for_format(CompressionFormat::Av1)
        .map_err(fail)?;
    encoder
        .set_quality(EncoderQuality::Lossy(q))
        .map_err(fail)?;
    let threads = threads
        .unwrap_or_else(rayon::current_num_threads)
        .clamp(1, 64);
    for (name, value) in [
        (
            "speed",
            EncoderParameterValue::Int(i32::from(aom.speed.min(9))),
        ),
        ("chroma", EncoderParameterValue::String("444".into())),
        ("threads", EncoderParameterValue::Int(threads as i32)),
    ] {
        encoder.set_parameter_value(name, value).map_err(fail)?;
    }
    let mut context = HeifContext::new().map_err(fail)?;
    {
        // Nothing inside panics (libheif is C), so a poisoned lock only means another
        // thread's panic elsewhere: the lock itself is still sound.
        let _one_at_a_time = AOM_ENCODE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let encoded = context.encode_image(&image, &mut encoder, None);
        drop(encoder);
        crate::alloc::release_free_memory();
        encoded.map_err(fail)?;
    }
    context.write_to_bytes().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(channels: usize, alpha: u8) -> Raster {
        let (w, h) = (48_u32, 32_u32);
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let px = [(x * 5) as u8, (y * 7) as u8, 128, alpha];
                data.extend_from_slice(&px[..channels]);
            }
        }
        Raster {
            width: w,
            height: h,
            channels,
            data,
        }
    }

    #[test]
    fn webp_output_is_a_riff_webp_file() {
        let out = encode(
            &gradient(3, 255),
            OutputFormat::Webp,
            &VariantRequest::default(),
            &EncodeSettings::default(),
        )
        .unwrap();
        assert_eq!(&out[0..4], b"RIFF");
        assert_eq!(&out[8..12], b"WEBP");
    }

    #[test]
    fn avif_goes_to_libaom_within_its_range_and_to_rav1e_past_it() {
        let settings = EncodeSettings {
            aom: AvifEncoder::Aom.aom(),
            ..EncodeSettings::default()
        };
        let strip = |w: u32, h: u32| Raster {
            width: w,
            height: h,
            channels: 3,
            data: (0..w * h * 3).map(|i| (i % 251) as u8).collect(),
        };
        let (_, max_h, _) = AOM_3_6_0_LIMITS;
        let rav1e = EncodeSettings::default();
        for (raster, settings, aom) in [
            (strip(4, max_h), &settings, true),
            (strip(4, max_h + 1), &settings, false),
            (strip(4, 4), &rav1e, false),
        ] {
            let out = avif(&raster, 50, settings).unwrap();
            let probe =
                super::super::decode::probe(&out, &super::super::Limits::default()).unwrap();
            assert_eq!((probe.width, probe.height), (raster.width, raster.height));
            // The writers differ in their `ftyp`: libheif lists three compatible brands
            // (28 bytes), ravif's avif-serialize two (24).
            let ftyp = u32::from_be_bytes([out[0], out[1], out[2], out[3]]);
            assert_eq!(&out[4..8], b"ftyp");
            let expected = if aom { 28 } else { 24 };
            assert_eq!(ftyp, expected, "{}x{}", raster.width, raster.height);
        }
    }

    #[test]
    fn avif_output_has_an_avif_brand_and_keeps_alpha() {
        let out = encode(
            &gradient(4, 100),
            OutputFormat::Avif,
            &VariantRequest::default(),
            &EncodeSettings::default(),
        )
        .unwrap();
        assert_eq!(&out[4..12], b"ftypavif");
        let decoded = image::load_from_memory(&out);
        // The image crate here has no AVIF decoder; the alpha item is checked by its box type.
        assert!(decoded.is_err());
        assert!(
            out.windows(4).any(|w| w == b"auxC"),
            "no alpha auxiliary item"
        );
    }
}
