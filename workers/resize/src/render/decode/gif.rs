//! GIF (the first frame), through the gif crate behind image-rs.

use std::io::Cursor;

use image::codecs::gif::GifDecoder;

use super::{
    Decoded, Limits, Probe, RenderError, check_dimensions, check_frames, decode_with_image,
    image_error,
};

/// Screen size, frame count and the first frame's rectangle, from the block structure.
pub(super) fn probe(bytes: &[u8], limits: &Limits, probe: &mut Probe) -> Result<(), RenderError> {
    if bytes.len() < 13 {
        return Err(RenderError::Truncated("GIF header is incomplete".into()));
    }
    probe.width = u32::from(u16::from_le_bytes([bytes[6], bytes[7]]));
    probe.height = u32::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    check_dimensions(probe.width, probe.height, limits)?;
    let gif = scan_gif(bytes, limits)?;
    probe.frames = gif.frames;
    probe.loop_count = gif.loop_count;
    probe.extra_frame_pixels = gif.largest_frame;
    // image-rs decodes a first frame that does not span the screen's width (or leaves
    // it) into a buffer of the frame's own size, which the screen size does not bound.
    if let Some((left, top, w, h)) = gif.first {
        let fits = left == 0 && w == probe.width && top + h <= probe.height;
        if !fits {
            probe.extra_pixels = u64::from(w) * u64::from(h);
            let screen = u64::from(probe.width) * u64::from(probe.height);
            if probe.extra_pixels > screen.max(MAX_OFFSCREEN_FRAME_PIXELS) {
                return Err(RenderError::TooLarge(format!(
                    "the first frame ({w}x{h}) overflows the {}x{} screen by more than {} pixels",
                    probe.width, probe.height, MAX_OFFSCREEN_FRAME_PIXELS
                )));
            }
            if probe.decode_pixels() > limits.max_pixels {
                return Err(RenderError::TooLarge(format!(
                    "the first frame ({w}x{h}) and the {}x{} screen together exceed {} pixels",
                    probe.width, probe.height, limits.max_pixels
                )));
            }
        }
    }
    check_frames(probe.frames, limits)?;
    if probe.frames == 0 {
        return Err(RenderError::Undecodable("GIF without any frame".into()));
    }
    Ok(())
}

/// The largest first frame, in pixels, that may overflow the logical screen when it is larger
/// than the screen itself: 16 Mi pixels (64 MiB of RGBA). The decoder allocates the frame's own
/// size, which the screen does not bound; browsers clip such a frame to the screen. The LZW
/// output is bounded by the frame: the gif crate decodes into the frame's buffer only.
pub const MAX_OFFSCREEN_FRAME_PIXELS: u64 = 16 << 20;

/// Decode the first frame.
pub(super) fn decode(bytes: &[u8]) -> Result<Decoded, RenderError> {
    let dec = GifDecoder::new(Cursor::new(bytes)).map_err(image_error)?;
    decode_with_image(dec)
}

/// What [`scan_gif`] finds without decoding.
struct GifScan {
    /// Frames counted (stops one past the limit).
    frames: u32,
    /// The first frame's left, top, width and height.
    first: Option<(u32, u32, u32, u32)>,
    /// Times the animation plays, in WebP's terms (0 = forever): the NETSCAPE2.0 extension's
    /// repeat count plus one (browsers play a GIF once more than it repeats), 1 without it.
    loop_count: u32,
    /// Pixels of the largest frame rectangle (the animation decoder allocates one of these
    /// besides the canvas).
    largest_frame: u64,
}

/// The repeat count of a NETSCAPE2.0 (or ANIMEXTS1.0) application extension starting at its
/// label byte (`0xFF`), `None` for any other extension.
fn netscape_loop(ext: &[u8]) -> Option<u16> {
    let app = ext.get(..16)?;
    let named = app[0] == 0xFF
        && app[1] == 11
        && (&app[2..13] == b"NETSCAPE2.0" || &app[2..13] == b"ANIMEXTS1.0");
    (named && app[13] == 3 && app[14] == 1)
        .then(|| u16::from_le_bytes([app[15], *ext.get(16).unwrap_or(&0)]))
}

/// The composited frames of an animated GIF (disposal applied by the decoder), bounded by the
/// probe: every frame rectangle was checked against the limits.
pub(super) fn frames(bytes: &[u8]) -> Result<image::Frames<'_>, RenderError> {
    use image::{AnimationDecoder, ImageDecoder};
    let mut dec = GifDecoder::new(Cursor::new(bytes)).map_err(image_error)?;
    dec.set_limits(super::animation_limits())
        .map_err(image_error)?;
    Ok(dec.into_frames())
}

/// Count frames up to `limits.max_frames` + 1 and check every frame's declared size against
/// the pixel and dimension limits (a frame may claim more than its logical screen).
fn scan_gif(data: &[u8], limits: &Limits) -> Result<GifScan, RenderError> {
    let max = limits.max_frames;
    let mut first = None;
    let truncated = || RenderError::Truncated("GIF data ends inside a block".into());
    let mut pos = 13;
    let flags = data[10];
    if flags & 0x80 != 0 {
        pos += 3 * (1 << ((flags & 0x07) + 1));
    }
    let skip_sub_blocks = |mut p: usize| -> Option<usize> {
        loop {
            let n = usize::from(*data.get(p)?);
            p += 1;
            if n == 0 {
                return Some(p);
            }
            p += n;
        }
    };
    let mut frames = 0;
    let mut loop_count = 1;
    let mut largest_frame = 0_u64;
    loop {
        match data.get(pos) {
            None => {
                // A GIF without its trailer still renders if a frame was seen; browsers accept it.
                return if frames > 0 {
                    Ok(GifScan {
                        frames,
                        first,
                        loop_count,
                        largest_frame,
                    })
                } else {
                    Err(truncated())
                };
            }
            Some(0x3B) => {
                return Ok(GifScan {
                    frames,
                    first,
                    loop_count,
                    largest_frame,
                });
            }
            Some(0x21) => {
                if let Some(n) = netscape_loop(data.get(pos + 1..).unwrap_or_default()) {
                    loop_count = if n == 0 { 0 } else { u32::from(n) + 1 };
                }
                pos = skip_sub_blocks(pos + 2).ok_or_else(truncated)?;
            }
            Some(0x2C) => {
                frames += 1;
                if frames > max {
                    return Ok(GifScan {
                        frames,
                        first,
                        loop_count,
                        largest_frame,
                    });
                }
                let flags = *data.get(pos + 9).ok_or_else(truncated)?;
                let field =
                    |i: usize| u32::from(u16::from_le_bytes([data[pos + i], data[pos + i + 1]]));
                let (left, top, w, h) = (field(1), field(3), field(5), field(7));
                check_dimensions(w, h, limits)?;
                first.get_or_insert((left, top, w, h));
                largest_frame = largest_frame.max(u64::from(w) * u64::from(h));
                pos += 10;
                if flags & 0x80 != 0 {
                    pos += 3 * (1 << ((flags & 0x07) + 1));
                }
                // LZW minimum code size, then the data sub-blocks.
                pos = skip_sub_blocks(pos + 1).ok_or_else(|| {
                    if frames > 1 {
                        RenderError::Truncated("GIF ends inside a later frame".into())
                    } else {
                        truncated()
                    }
                })?;
            }
            Some(b) => {
                return Err(RenderError::Undecodable(format!(
                    "unexpected GIF block 0x{b:02x}"
                )));
            }
        }
    }
}
