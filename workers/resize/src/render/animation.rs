//! Animated GIF, APNG and WebP inputs rendered as animated WebP variants.
//!
//! The frames are streamed: the decoder composites one full-canvas frame at a time (GIF
//! disposal, APNG and WebP blend and dispose ops), the frame is converted to sRGB, resized to
//! every planned width (Lanczos3, alpha kept, the same [`resize::resize`] as still images),
//! oriented, and handed to that width's [`AnimEncoder`], then dropped. Nothing holds more than
//! one decoded frame; each encoder keeps its previous canvas and its encoded frames.
//!
//! Every other format of the request (AVIF) is rendered from the first frame by the still
//! pipeline, which also computes the facts (placeholder, colour) from the first frame.
//!
//! Bounds, all checked from the headers before a frame is decoded ([`check`]): the frame count
//! (`Limits::max_frames`, in the probe), the pixels of all frames
//! (`Limits::max_animation_pixels`) and the output pixels of every frame of every variant
//! (`Limits::max_output_pixels`, through [`super::memory::output_pixels`]). Frame durations are
//! clamped as browsers play them ([`frame_duration`]).

use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shared::variant::{OutputFormat, VariantRequest};

use super::anim_webp::{self, AnimEncoder};
use super::decode::{self, Probe, SourceFormat};
use super::resize;
use super::webp::WebpOptions;
use super::{
    EncodeSettings, Limits, RenderError, Rendered, Variant, color, ms, orient, plan_widths,
    scaled_height,
};

/// A frame shown this long or shorter is shown for [`DEFAULT_FRAME_DURATION_MS`] instead, as
/// Chromium, Firefox and Safari play GIF, APNG and WebP animations (a 0 or 10 ms delay would
/// otherwise spin as fast as the display allows).
pub const MIN_FRAME_DURATION_MS: u32 = 10;
/// The duration a too-short frame gets.
pub const DEFAULT_FRAME_DURATION_MS: u32 = 100;
/// The longest a single frame is kept on screen (an APNG delay may claim 65535 s); longer
/// durations are shortened to it, which keeps every timestamp inside libwebp's 31 bits.
pub const MAX_FRAME_DURATION_MS: u32 = 600_000;

/// How an animation plays, for the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnimationFacts {
    /// Frames.
    pub frames: u32,
    /// Total duration of one play, in milliseconds (after [`frame_duration`]).
    pub duration_ms: u64,
    /// Plays (0 = forever), in WebP's terms.
    pub loop_count: u32,
}

/// The duration a frame of `ms` milliseconds is shown for (see [`MIN_FRAME_DURATION_MS`] and
/// [`MAX_FRAME_DURATION_MS`]).
pub fn frame_duration(ms: u32) -> u32 {
    if ms <= MIN_FRAME_DURATION_MS {
        DEFAULT_FRAME_DURATION_MS
    } else {
        ms.min(MAX_FRAME_DURATION_MS)
    }
}

/// Whether `request` renders `probe`'s image as an animation: an animated GIF, APNG or WebP,
/// `animated` asked for, and WebP among the formats (the only animated output).
pub fn applies(probe: &Probe, request: &VariantRequest) -> bool {
    request.animated
        && probe.frames > 1
        && matches!(
            probe.format,
            SourceFormat::Gif | SourceFormat::Png | SourceFormat::Webp
        )
        && request.formats.contains(&OutputFormat::Webp)
}

/// Pixels the decoder composites over the whole animation (canvas × frames); 0 when the
/// request renders a still.
pub fn decoded_pixels(probe: &Probe, request: &VariantRequest) -> u64 {
    if !applies(probe, request) {
        return 0;
    }
    (u64::from(probe.width) * u64::from(probe.height)).saturating_mul(u64::from(probe.frames))
}

/// The pixels the animated WebP variants add over their first frame: every further frame of
/// every width.
pub fn extra_output_pixels(probe: &Probe, request: &VariantRequest) -> u64 {
    if !applies(probe, request) {
        return 0;
    }
    let (w, h) = probe.oriented_dimensions();
    plan_widths(&request.widths, w)
        .iter()
        .map(|&vw| u64::from(vw) * u64::from(scaled_height(w, h, vw)))
        .sum::<u64>()
        .saturating_mul(u64::from(probe.frames - 1))
}

/// Refuse an animation whose frames add up to more than [`Limits::max_animation_pixels`].
///
/// # Errors
/// [`RenderError::TooLarge`] over the limit.
pub fn check(probe: &Probe, request: &VariantRequest, limits: &Limits) -> Result<(), RenderError> {
    let decoded = decoded_pixels(probe, request);
    if decoded > limits.max_animation_pixels {
        return Err(RenderError::TooLarge(format!(
            "the {} frames add up to {decoded} pixels, the limit is {}",
            probe.frames, limits.max_animation_pixels
        )));
    }
    Ok(())
}

/// Render an animated input: WebP variants animated, the other formats and the facts from the
/// first frame. Callers check [`applies`] and the limits first.
///
/// # Errors
/// As [`super::render`]; [`RenderError::TooManyFrames`] when the decoder yields more frames
/// than `limits.max_frames`.
pub fn render(
    bytes: &[u8],
    probe: &Probe,
    request: &VariantRequest,
    limits: &Limits,
    settings: &EncodeSettings,
    t0: Instant,
) -> Result<Rendered, RenderError> {
    let still_request = VariantRequest {
        formats: request
            .formats
            .iter()
            .copied()
            .filter(|&f| f != OutputFormat::Webp)
            .collect(),
        ..request.clone()
    };
    let still = super::render_probed(bytes, probe, &still_request, settings, t0)?;
    let t1 = Instant::now();
    let (animated, facts) = encode_animation(bytes, probe, request, limits, settings)?;
    let anim_ms = ms(t1);

    // Widths ascending, formats in request order, as the still pipeline orders them.
    let mut still_variants = still.variants.into_iter().peekable();
    let mut animated = animated.into_iter();
    let mut variants = Vec::new();
    for target in plan_widths(&request.widths, probe.oriented_dimensions().0) {
        for &format in &request.formats {
            let v = if format == OutputFormat::Webp {
                animated.next()
            } else {
                still_variants.next_if(|v| v.target_width == target && v.format == format)
            };
            variants.push(v.ok_or_else(|| {
                RenderError::Encode(format!("no {format} variant at {target} px"))
            })?);
        }
    }
    let mut timings = still.timings;
    timings.encode_ms += anim_ms;
    Ok(Rendered {
        facts: super::SourceFacts {
            animation: Some(facts),
            ..still.facts
        },
        variants,
        timings,
    })
}

/// Decode every frame once and encode one animated WebP per planned width.
fn encode_animation(
    bytes: &[u8],
    probe: &Probe,
    request: &VariantRequest,
    limits: &Limits,
    settings: &EncodeSettings,
) -> Result<(Vec<Variant>, AnimationFacts), RenderError> {
    let (src_w, src_h) = probe.oriented_dimensions();
    let widths = plan_widths(&request.widths, src_w);
    let orientation = probe.orientation_to_apply();
    let swap = orientation >= 5;
    let options = WebpOptions {
        quality: request.webp_quality,
        method: settings.webp_method,
        thread_level: settings.webp_thread_level,
    };
    let mut encoders = Vec::with_capacity(widths.len());
    for &w in &widths {
        let h = scaled_height(src_w, src_h, w);
        let (tw, th) = if swap { (h, w) } else { (w, h) };
        encoders.push((tw, th, AnimEncoder::new(w, h, probe.loop_count, options)?));
    }
    let (frames, icc) = decode::frames(bytes, probe)?
        .ok_or_else(|| RenderError::UnsupportedFormat("not an animated format".into()))?;
    let mut count = 0_u32;
    let mut duration_ms = 0_u64;
    for frame in frames {
        count += 1;
        if count > limits.max_frames {
            return Err(RenderError::TooManyFrames(format!(
                "more than {} frames",
                limits.max_frames
            )));
        }
        let decode::AnimFrame {
            mut raster,
            delay_ms,
        } = frame?;
        let delay = frame_duration(delay_ms);
        duration_ms += u64::from(delay);
        let (width, height) = (raster.width, raster.height);
        if icc.is_some() {
            raster = color::to_srgb8(decode::Decoded {
                width,
                height,
                layout: if raster.channels == 4 {
                    decode::Layout::Rgba
                } else {
                    decode::Layout::Rgb
                },
                samples: decode::Samples::U8(raster.data),
                icc: icc.clone(),
                nclx: None,
            })?
            .0;
        }
        encoders
            .par_iter_mut()
            .try_for_each(|(tw, th, enc)| -> Result<(), RenderError> {
                let resized = resize::resize(&raster, *tw, *th)?;
                if orient::is_identity(orientation) {
                    enc.add(&resized, delay)
                } else {
                    enc.add(&orient::transform(&resized, orientation), delay)
                }
            })?;
    }
    if count == 0 {
        return Err(RenderError::Undecodable(
            "the animation has no frame".into(),
        ));
    }
    let out: Vec<(u32, u32, Result<Vec<u8>, RenderError>)> = encoders
        .into_par_iter()
        .map(|(tw, th, enc)| (tw, th, enc.finish()))
        .collect();
    let mut variants = Vec::with_capacity(out.len());
    for (k, (tw, th, bytes)) in out.into_iter().enumerate() {
        let bytes = bytes?;
        let (frames, duration) = anim_webp::frames_and_duration(&bytes)
            .ok_or_else(|| RenderError::Encode("libwebp wrote an unreadable animation".into()))?;
        let (width, height) = if swap { (th, tw) } else { (tw, th) };
        variants.push(Variant {
            target_width: widths[k],
            size: None,
            width,
            height,
            format: OutputFormat::Webp,
            lossless: false,
            bytes,
            animation: Some(AnimationFacts {
                frames,
                duration_ms: duration,
                loop_count: probe.loop_count,
            }),
        });
    }
    Ok((
        variants,
        AnimationFacts {
            frames: count,
            duration_ms,
            loop_count: probe.loop_count,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_frames_play_as_browsers_play_them() {
        assert_eq!(frame_duration(0), 100);
        assert_eq!(frame_duration(10), 100);
        assert_eq!(frame_duration(11), 11);
        assert_eq!(frame_duration(70), 70);
        assert_eq!(frame_duration(u32::MAX), MAX_FRAME_DURATION_MS);
    }
}
