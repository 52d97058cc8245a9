//! Animated GIF, APNG and WebP inputs rendered as animated WebP variants.
//!
//! The frames are streamed: the decoder composites one full-canvas frame at a time (GIF
//! disposal, APNG and WebP blend and dispose ops), the frame is converted to sRGB, made into
//! every planned WebP output and handed to that output's [`AnimEncoder`], then dropped.
//! Nothing holds more than one decoded frame; each encoder keeps its previous canvas and its
//! encoded frames.
//!
//! The WebP outputs are the `widths` (resized, Lanczos3, alpha kept, the same
//! [`resize::resize`] as still images) and the `sizes` (the same [`fit::make`] crop-and-resize
//! and [`fit::pad`] as still images), each frame oriented. Every frame of a `cover` size is
//! cropped with the same window: its centre (the focal point, or the attention centre of an
//! `auto` focus) is computed once, on the first frame. `"lossless": true` makes lossless
//! animated WebP; `"auto"` decides once per output, on its first frame, as for a still variant
//! ([`encode::auto_keeps_lossless`]: a synthetic-looking first frame is encoded both ways as a
//! still WebP, lossless kept when no larger), and keeps that choice for every frame.
//!
//! Every other format of the request (AVIF, JPEG, PNG: none of them carries an animation here)
//! is rendered from the first frame by the still pipeline, which also computes the facts
//! (placeholder, colour) from the first frame.
//!
//! Bounds, all checked from the headers before a frame is decoded ([`check`]): the frame count
//! (`Limits::max_frames`, in the probe), the pixels of all frames
//! (`Limits::max_animation_pixels`) and the output pixels of every frame of every output
//! (`Limits::max_output_pixels`, through [`super::memory::output_pixels`]). Frame durations are
//! clamped as browsers play them ([`frame_duration`]).

use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shared::variant::{Fit, Focus, Lossless, OutputFormat, VariantRequest};

use super::anim_webp::{self, AnimEncoder};
use super::decode::{self, Probe, SourceFormat};
use super::resize::{self, Raster};
use super::webp::{LosslessOptions, WebpOptions};
use super::{
    EncodeSettings, Limits, RenderError, Rendered, Target, Variant, color, encode, fit, ms, orient,
    planned_outputs, planned_targets, scaled_height,
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
/// every output (`widths` and `sizes`, padded size for `contain`).
pub fn extra_output_pixels(probe: &Probe, request: &VariantRequest) -> u64 {
    if !applies(probe, request) {
        return 0;
    }
    let (w, h) = probe.oriented_dimensions();
    planned_outputs(request, w, h)
        .iter()
        .map(|&(vw, vh)| u64::from(vw) * u64::from(vh))
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
    let still_formats: Vec<OutputFormat> = request
        .formats
        .iter()
        .copied()
        .filter(|&f| f != OutputFormat::Webp)
        .collect();
    // Without a still format the first-frame pass only computes the facts: its sizes would be
    // made and never encoded.
    let still_sizes = if still_formats.is_empty() {
        Vec::new()
    } else {
        request.sizes.clone()
    };
    let still_request = VariantRequest {
        formats: still_formats,
        sizes: still_sizes,
        ..request.clone()
    };
    let still = super::render_probed(bytes, probe, &still_request, settings, t0)?;
    let t1 = Instant::now();
    let (animated, facts, attention_ms) =
        encode_animation(bytes, probe, request, limits, settings)?;
    let anim_ms = ms(t1);

    // Widths ascending, then sizes, formats in request order, as the still pipeline orders
    // them.
    let mut still_variants = still.variants.into_iter().peekable();
    let mut animated = animated.into_iter();
    let mut variants = Vec::new();
    for target in planned_targets(request, probe.oriented_dimensions().0) {
        for &format in &request.formats {
            let v = if format == OutputFormat::Webp {
                animated.next()
            } else {
                still_variants.next_if(|v| {
                    v.format == format
                        && match target {
                            Target::Width(w) => v.size.is_none() && v.target_width == w,
                            Target::Size(s) => v.size == Some(s),
                        }
                })
            };
            variants.push(v.ok_or_else(|| {
                RenderError::Encode(format!("no {format} variant for {target:?}"))
            })?);
        }
    }
    let mut timings = still.timings;
    timings.encode_ms += anim_ms;
    timings.attention_ms += attention_ms;
    Ok(Rendered {
        facts: super::SourceFacts {
            animation: Some(facts),
            ..still.facts
        },
        variants,
        timings,
    })
}

/// One animated output being encoded.
struct Output {
    target: Target,
    /// Where a `cover` size's window is centred in the stored frame (see [`fit::make`]).
    centre: (f64, f64),
    /// Created on the first frame, once `"lossless": "auto"` has looked at it.
    encoder: Option<AnimEncoder>,
    /// Whether the frames are lossless.
    lossless: bool,
    /// The upright size of every frame.
    size: (u32, u32),
}

/// The upright frame of `target` made from one stored-frame `raster` (the sRGB composite).
fn make_frame(
    raster: &Raster,
    target: Target,
    oriented: (u32, u32),
    orientation: u8,
    centre: (f64, f64),
) -> Result<Raster, RenderError> {
    let (src_w, src_h) = oriented;
    match target {
        Target::Width(w) => {
            let h = scaled_height(src_w, src_h, w);
            let (tw, th) = if orientation >= 5 { (h, w) } else { (w, h) };
            let resized = resize::resize(raster, tw, th)?;
            Ok(orient::apply(resized, orientation))
        }
        Target::Size(size) => {
            let made = fit::make(raster, &size, oriented, orientation, centre)?;
            let up = orient::apply(made, orientation);
            Ok(if size.fit == Fit::Contain {
                fit::pad(&up, size.width, size.height, size.pad())
            } else {
                up
            })
        }
    }
}

/// The animation encoder of an output whose first upright frame is `first`.
fn start_encoder(
    first: &Raster,
    request: &VariantRequest,
    settings: &EncodeSettings,
    loop_count: u32,
) -> Result<(AnimEncoder, bool), RenderError> {
    let lossless = match request.lossless_for(OutputFormat::Webp) {
        Lossless::Off => false,
        Lossless::On => true,
        Lossless::Auto => encode::auto_keeps_lossless(first, request.webp_quality, settings)?,
    };
    let encoder = if lossless {
        AnimEncoder::new_lossless(
            first.width,
            first.height,
            loop_count,
            LosslessOptions {
                method: settings.webp_method,
                effort: encode::WEBP_LOSSLESS_EFFORT,
                thread_level: settings.webp_thread_level,
            },
        )?
    } else {
        AnimEncoder::new(
            first.width,
            first.height,
            loop_count,
            WebpOptions {
                quality: request.webp_quality,
                method: settings.webp_method,
                thread_level: settings.webp_thread_level,
            },
        )?
    };
    Ok((encoder, lossless))
}

/// Decode every frame once and encode one animated WebP per output ([`targets`]); also the
/// milliseconds the attention map of an `auto` focus took.
fn encode_animation(
    bytes: &[u8],
    probe: &Probe,
    request: &VariantRequest,
    limits: &Limits,
    settings: &EncodeSettings,
) -> Result<(Vec<Variant>, AnimationFacts, f64), RenderError> {
    let (src_w, src_h) = probe.oriented_dimensions();
    let orientation = probe.orientation_to_apply();
    let mut outputs: Vec<Output> = planned_targets(request, src_w)
        .into_iter()
        .map(|target| Output {
            target,
            centre: (0.5, 0.5),
            encoder: None,
            lossless: false,
            size: (0, 0),
        })
        .collect();
    let (frames, icc) = decode::frames(bytes, probe)?
        .ok_or_else(|| RenderError::UnsupportedFormat("not an animated format".into()))?;
    let mut count = 0_u32;
    let mut duration_ms = 0_u64;
    let mut attention_ms = 0.0;
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
        if count == 1 {
            // The crop windows of every frame, from the first one.
            let wants_attention = outputs.iter().any(|o| {
                matches!(o.target, Target::Size(s) if s.fit == Fit::Cover && s.focus == Focus::Auto)
            });
            let ta = Instant::now();
            let attention = if wants_attention {
                Some(fit::AttentionMap::of(&raster)?)
            } else {
                None
            };
            attention_ms = ms(ta);
            for o in &mut outputs {
                if let Target::Size(size) = o.target {
                    o.centre = fit::focus_centre(
                        &size,
                        orientation,
                        request.focal_point,
                        attention.as_ref(),
                    );
                }
            }
        }
        outputs
            .par_iter_mut()
            .try_for_each(|o| -> Result<(), RenderError> {
                let up = make_frame(&raster, o.target, (src_w, src_h), orientation, o.centre)?;
                let encoder = match &mut o.encoder {
                    Some(e) => e,
                    None => {
                        let (e, lossless) =
                            start_encoder(&up, request, settings, probe.loop_count)?;
                        o.lossless = lossless;
                        o.size = (up.width, up.height);
                        o.encoder.insert(e)
                    }
                };
                encoder.add(&up, delay)
            })?;
    }
    if count == 0 {
        return Err(RenderError::Undecodable(
            "the animation has no frame".into(),
        ));
    }
    let out: Vec<(Output, Result<Vec<u8>, RenderError>)> = outputs
        .into_par_iter()
        .map(|mut o| {
            let bytes = match o.encoder.take() {
                Some(e) => e.finish(),
                None => Err(RenderError::Encode("an output got no frame".into())),
            };
            (o, bytes)
        })
        .collect();
    let mut variants = Vec::with_capacity(out.len());
    for (o, bytes) in out {
        let bytes = bytes?;
        let (frames, duration) = anim_webp::frames_and_duration(&bytes)
            .ok_or_else(|| RenderError::Encode("libwebp wrote an unreadable animation".into()))?;
        let (target_width, size) = match o.target {
            Target::Width(w) => (w, None),
            Target::Size(s) => (s.width, Some(s)),
        };
        variants.push(Variant {
            target_width,
            size,
            width: o.size.0,
            height: o.size.1,
            format: OutputFormat::Webp,
            lossless: o.lossless,
            bytes,
            animation: Some(AnimationFacts {
                frames,
                duration_ms: duration,
                loop_count: probe.loop_count,
            }),
            // An animation is encoded at the fixed `webp_quality`: `"quality": "auto"` searches
            // still variants only.
            auto: None,
        });
    }
    Ok((
        variants,
        AnimationFacts {
            frames: count,
            duration_ms,
            loop_count: probe.loop_count,
        },
        attention_ms,
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
