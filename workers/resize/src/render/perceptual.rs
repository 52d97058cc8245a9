//! Perceptual-budget encoding: `"quality": "auto[:level]"`.
//!
//! For every file and every lossy format that is searched (WebP, AVIF), the engine looks for
//! the lowest encoder quality whose output reaches the level's SSIMULACRA 2 score
//! ([`target_score`]), measured against the resized raster the variant is encoded from (the
//! encoded bytes are decoded back through the engine's own decoders: libwebp via the `image`
//! crate for WebP, libheif/dav1d for AVIF).
//!
//! The method, and why (the crate README has the measured figures):
//!
//! 1. **Calibrate on the smallest variant.** [`calibrate`] encodes the smallest variant at a
//!    start quality ([`start_quality`]: the format's fixed default moved along a prior slope
//!    toward the target), scores it, and steps toward the target score: the first step uses
//!    the prior slope ([`prior_slope`], score points per quality unit, measured on the corpus),
//!    the next ones the secant through the two latest trials. At most [`MAX_TRIALS`] encodes,
//!    stopping as soon as a trial lands within [`TOLERANCE`] of the target. The smallest
//!    variant is a few percent of a file's pixels, so its trials cost little next to the
//!    larger encodes, and it sees the same content, so the quality-score relation it measures
//!    carries over to the other widths.
//! 2. **Apply to the larger variants.** Each larger variant of the format is encoded once, at
//!    the calibrated quality moved by [`width_adjustment`] (a larger variant of the same image
//!    scores higher at the same quality: its detail is spread over more pixels), and scored
//!    once to record what it measured. No re-encode: the work per file is bounded by
//!    [`MAX_TRIALS`] small encodes plus one score per variant.
//! 3. **Bounded scoring.** A variant over [`SCORE_MAX_PIXELS`] is scored on its centred window
//!    of at most that many pixels (full resolution: a downscaled copy would hide the very
//!    artefacts the score is for); alpha is composited onto mid grey first; a side under 8
//!    pixels (SSIMULACRA 2's minimum) is padded by repeating its edge.
//!
//! The chosen quality is on the request's scale (what the same number as a fixed quality would
//! encode: for AVIF before [`EncodeSettings::avif_quality_offset`]).

use shared::variant::{AutoQuality, OutputFormat};
use ssimulacra2::{LinearRgb, compute_frame_ssimulacra2};

use super::resize::Raster;
use super::{EncodeSettings, Limits, RenderError, color, decode};

/// Names the search method in variant tags (with the level): bump it with any change to the
/// targets, the start qualities, the slopes or the search that can change a variant's bytes.
pub const METHOD_VERSION: u32 = 1;

/// What the variant tag hashes for a searched variant: the level and [`METHOD_VERSION`],
/// e.g. `auto:good/1`.
pub fn tag_input(level: AutoQuality) -> String {
    format!("{}/{METHOD_VERSION}", level.as_str())
}

/// Most trial encodes of the calibration (on the smallest variant, per format).
pub const MAX_TRIALS: usize = 3;

/// A trial within this many score points of the target ends the calibration.
pub const TOLERANCE: f64 = 1.0;

/// Largest window scored, in pixels (1024 × 1024): a larger variant is scored on its centred
/// window of this size.
pub const SCORE_MAX_PIXELS: usize = 1 << 20;

/// The SSIMULACRA 2 score each level aims for, per format.
///
/// `auto:good` is the score sharp's defaults reach on a typical photo variant of the corpus
/// (WebP q80: 77-78; AVIF q50: 62-67, measured with `examples/quality_curve.rs`): the same look
/// as the fixed defaults, at the bytes each image needs for it. `auto:high` is 10 points more
/// (about 88 for WebP: between "very high quality, no difference side by side at 1:1" (80) and
/// "visually lossless, no difference in a flicker test" (90) on the metric's documented
/// scale), `auto:eco` 10 points less (about 68 for WebP: near "high quality, artefacts hard to
/// notice without the original" (70)). AVIF's targets are lower than WebP's because that is
/// where sharp's AVIF default sits: its q50 scores some 12 points under its WebP q80.
pub fn target_score(level: AutoQuality, format: OutputFormat) -> f64 {
    let good = default_score(format);
    match level {
        AutoQuality::High => good + 10.0,
        AutoQuality::Good => good,
        AutoQuality::Eco => good - 10.0,
    }
}

/// About what the fixed default quality of `format` scores on a photo (see [`target_score`]).
fn default_score(format: OutputFormat) -> f64 {
    match format {
        OutputFormat::Avif => 65.0,
        _ => 78.0,
    }
}

/// Search bounds of the quality, per format (request scale).
pub fn quality_bounds(format: OutputFormat) -> (u8, u8) {
    match format {
        OutputFormat::Avif => (5, 87),
        _ => (10, 100),
    }
}

/// The prior slope of the score against the quality near the default, in score points per
/// quality unit (measured on the corpus's smallest variants; see the README).
pub fn prior_slope(format: OutputFormat) -> f64 {
    match format {
        OutputFormat::Avif => 0.7,
        _ => 0.6,
    }
}

/// The quality the calibration starts from: the format's fixed default (WebP 80, AVIF 50)
/// moved from what it scores toward `level`'s target along [`prior_slope`].
pub fn start_quality(format: OutputFormat, level: AutoQuality) -> u8 {
    let default = match format {
        OutputFormat::Avif => 50.0,
        _ => 80.0,
    };
    clamp_quality(
        format,
        default + (target_score(level, format) - default_score(format)) / prior_slope(format),
    )
}

/// The quality change applied to a variant `width` pixels wide when the calibration ran on
/// one `smallest` wide: none for now (the measured scores of the larger variants are
/// recorded; see the README for what they showed).
pub fn width_adjustment(_format: OutputFormat, _smallest: u32, _width: u32) -> f64 {
    0.0
}

fn clamp_quality(format: OutputFormat, q: f64) -> u8 {
    let (lo, hi) = quality_bounds(format);
    if !q.is_finite() {
        return lo;
    }
    q.round().clamp(f64::from(lo), f64::from(hi)) as u8
}

/// What the search chose for one variant: the quality (request scale) and the score measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chosen {
    /// Encoder quality, request scale.
    pub quality: u8,
    /// SSIMULACRA 2 score of the encoded variant against its raster.
    pub score: f64,
    /// Encodes made for this variant (1 for a variant encoded at a calibrated quality).
    pub trials: u8,
}

/// Encode `raster` (opaque RGB or RGBA with transparency) as lossy `format` at `quality`.
fn encode_at(
    raster: &Raster,
    format: OutputFormat,
    quality: u8,
    settings: &EncodeSettings,
) -> Result<Vec<u8>, RenderError> {
    super::encode::encode_lossy(raster, format, quality, settings)
}

/// Encode `raster` at `quality` and score the result.
///
/// # Errors
/// An encoder failure, or the encoded bytes failing to decode (a [`RenderError::Encode`]).
pub fn encode_scored(
    raster: &Raster,
    format: OutputFormat,
    quality: u8,
    settings: &EncodeSettings,
) -> Result<(Vec<u8>, Chosen), RenderError> {
    let bytes = encode_at(raster, format, quality, settings)?;
    let score = score_encoded(raster, &bytes, settings)?;
    Ok((
        bytes,
        Chosen {
            quality,
            score,
            trials: 1,
        },
    ))
}

/// Search the quality of `format` that reaches `level`'s target on `raster` (see the module
/// docs): at most [`MAX_TRIALS`] encodes. Returns the chosen trial's bytes (the variant itself)
/// and what was chosen: the lowest-quality trial that reached the target within
/// [`TOLERANCE`], else the highest-scoring trial.
///
/// # Errors
/// As [`encode_scored`].
pub fn calibrate(
    raster: &Raster,
    format: OutputFormat,
    level: AutoQuality,
    settings: &EncodeSettings,
) -> Result<(Vec<u8>, Chosen), RenderError> {
    let target = target_score(level, format);
    let mut trials: Vec<(Vec<u8>, Chosen)> = Vec::with_capacity(MAX_TRIALS);
    let mut q = start_quality(format, level);
    loop {
        let trial = encode_scored(raster, format, q, settings)?;
        let s = trial.1.score;
        trials.push(trial);
        if (s - target).abs() <= TOLERANCE || trials.len() >= MAX_TRIALS {
            break;
        }
        let slope = match trials.as_slice() {
            [.., a, b] => {
                let dq = f64::from(b.1.quality) - f64::from(a.1.quality);
                let ds = b.1.score - a.1.score;
                // Scores are noisy at a step of a few qualities; a flat or inverted secant
                // falls back on the prior.
                if dq.abs() >= 1.0 && ds / dq > 0.05 {
                    ds / dq
                } else {
                    prior_slope(format)
                }
            }
            _ => prior_slope(format),
        };
        let next = clamp_quality(format, f64::from(q) + (target - s) / slope);
        if trials.iter().any(|t| t.1.quality == next) {
            break;
        }
        q = next;
    }
    let n = trials.len() as u8;
    let reached = trials
        .iter()
        .enumerate()
        .filter(|(_, t)| t.1.score >= target - TOLERANCE)
        .min_by_key(|(_, t)| t.1.quality)
        .map(|(i, _)| i);
    let pick = reached.unwrap_or_else(|| {
        trials
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.1.score.total_cmp(&b.1.1.score))
            .map_or(0, |(i, _)| i)
    });
    let (bytes, chosen) = trials.swap_remove(pick);
    Ok((
        bytes,
        Chosen {
            trials: n,
            ..chosen
        },
    ))
}

/// The SSIMULACRA 2 score of `encoded` (WebP or AVIF bytes) against `reference`, the raster it
/// was encoded from.
///
/// # Errors
/// [`RenderError::Encode`] when the bytes do not decode to the reference's size.
pub fn score_encoded(
    reference: &Raster,
    encoded: &[u8],
    settings: &EncodeSettings,
) -> Result<f64, RenderError> {
    let fail = |e: RenderError| RenderError::Encode(format!("decoding a scored variant: {e}"));
    let limits = Limits::default();
    let probe = decode::probe(encoded, &limits).map_err(fail)?;
    let decoded = decode::decode(encoded, &probe, reference.width, settings).map_err(fail)?;
    let (distorted, _) = color::to_srgb8(decoded).map_err(fail)?;
    score(reference, &distorted)
}

/// The SSIMULACRA 2 score of `distorted` against `reference` (same size), bounded as the
/// module docs say.
///
/// # Errors
/// [`RenderError::Encode`] when the sizes differ.
pub fn score(reference: &Raster, distorted: &Raster) -> Result<f64, RenderError> {
    if (reference.width, reference.height) != (distorted.width, distorted.height) {
        return Err(RenderError::Encode(format!(
            "scored variant is {}x{}, its raster {}x{}",
            distorted.width, distorted.height, reference.width, reference.height
        )));
    }
    let window = window(reference.width as usize, reference.height as usize);
    let a = linear(reference, window);
    let b = linear(distorted, window);
    let s = compute_frame_ssimulacra2(a, b)
        .map_err(|e| RenderError::Encode(format!("ssimulacra2: {e}")))?;
    // Round to two decimals, as recorded; a non-finite score cannot come from finite pixels,
    // but it must not reach the manifest.
    Ok(if s.is_finite() {
        (s * 100.0).round() / 100.0
    } else {
        0.0
    })
}

/// The centred window `(x, y, w, h)` of at most [`SCORE_MAX_PIXELS`] pixels, keeping the
/// aspect ratio when the whole does not fit.
fn window(w: usize, h: usize) -> (usize, usize, usize, usize) {
    if w * h <= SCORE_MAX_PIXELS {
        return (0, 0, w, h);
    }
    let k = (SCORE_MAX_PIXELS as f64 / (w * h) as f64).sqrt();
    let ww = ((w as f64 * k) as usize).clamp(8.min(w), w);
    let hh = (SCORE_MAX_PIXELS / ww.max(1)).clamp(8.min(h), h);
    ((w - ww) / 2, (h - hh) / 2, ww, hh)
}

/// sRGB (8-bit) to linear light.
fn srgb_lut() -> [f32; 256] {
    std::array::from_fn(|i| {
        let c = i as f64 / 255.0;
        let l = if c <= 0.040_45 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        };
        l as f32
    })
}

/// Mid grey, what transparency is composited onto before scoring.
const SCORE_BACKGROUND: u32 = 128;

/// The window of `r` as linear RGB, alpha composited onto [`SCORE_BACKGROUND`], each side
/// padded to at least 8 by repeating the last row or column.
fn linear(r: &Raster, (x0, y0, w, h): (usize, usize, usize, usize)) -> LinearRgb {
    let lut = srgb_lut();
    let c = r.channels;
    let stride = r.width as usize * c;
    let (pw, ph) = (w.max(8), h.max(8));
    let mut data = Vec::with_capacity(pw * ph);
    for y in 0..ph {
        let row = y0 + y.min(h.saturating_sub(1));
        for x in 0..pw {
            let col = x0 + x.min(w.saturating_sub(1));
            let i = row * stride + col * c;
            let px = r.data.get(i..i + c).unwrap_or(&[0, 0, 0]);
            let rgb = if c == 4 {
                let a = u32::from(px[3]);
                let mix = |v: u8| {
                    ((u32::from(v) * a + SCORE_BACKGROUND * (255 - a) + 127) / 255) as usize
                };
                [lut[mix(px[0])], lut[mix(px[1])], lut[mix(px[2])]]
            } else {
                [
                    lut[usize::from(px[0])],
                    lut[usize::from(px[1])],
                    lut[usize::from(px[2.min(c - 1)])],
                ]
            };
            data.push(rgb);
        }
    }
    LinearRgb::new(data, pw, ph).expect("the buffer is pw × ph pixels")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_bounded_and_centred() {
        assert_eq!(window(320, 240), (0, 0, 320, 240));
        let (x, y, w, h) = window(2048, 1536);
        assert!(w * h <= SCORE_MAX_PIXELS, "{w}x{h}");
        assert!(w * h > SCORE_MAX_PIXELS * 9 / 10, "{w}x{h}");
        assert_eq!((x, y), ((2048 - w) / 2, (1536 - h) / 2));
        let (x, y, w, h) = window(8000, 200);
        assert!(w * h <= SCORE_MAX_PIXELS && h >= 8 && x + w <= 8000 && y + h <= 200);
    }

    #[test]
    fn identical_rasters_score_100_and_noise_scores_less() {
        let (w, h) = (64_u32, 48_u32);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let a = Raster {
            width: w,
            height: h,
            channels: 3,
            data,
        };
        assert!((score(&a, &a).unwrap() - 100.0).abs() < 0.01);
        let mut b = a.clone();
        for (i, v) in b.data.iter_mut().enumerate() {
            *v = v.wrapping_add((i % 5) as u8 * 6);
        }
        assert!(score(&a, &b).unwrap() < 90.0);
        let tiny = Raster {
            width: 16,
            height: 2,
            channels: 3,
            data: vec![100; 16 * 2 * 3],
        };
        assert!((score(&tiny, &tiny).unwrap() - 100.0).abs() < 0.01);
        assert!(score(&a, &tiny).is_err());
    }

    #[test]
    fn start_qualities_follow_the_level() {
        for f in [OutputFormat::Webp, OutputFormat::Avif] {
            let (hi, good, eco) = (
                start_quality(f, AutoQuality::High),
                start_quality(f, AutoQuality::Good),
                start_quality(f, AutoQuality::Eco),
            );
            assert!(hi > good && good > eco, "{f}: {hi} {good} {eco}");
        }
        assert_eq!(start_quality(OutputFormat::Webp, AutoQuality::Good), 80);
        assert_eq!(start_quality(OutputFormat::Avif, AutoQuality::Good), 50);
    }
}
