//! WebP (lossy, lossless, alpha; the first frame), through image-webp behind image-rs.

use std::io::Cursor;

use image::ImageDecoder;
use image::codecs::webp::WebPDecoder;

use super::{
    Decoded, Limits, Probe, RenderError, check_dimensions, check_frames, decode_with_image,
    exif_orientation, image_error,
};

/// Frames from the chunk headers, then size and orientation from the decoder.
pub(super) fn probe(bytes: &[u8], limits: &Limits, probe: &mut Probe) -> Result<(), RenderError> {
    check_chunks(bytes)?;
    // Count the animation frames from the chunk headers before the decoder parses
    // anything else.
    probe.frames = count_webp_frames(bytes, limits.max_frames);
    probe.loop_count = webp_loop_count(bytes);
    check_frames(probe.frames, limits)?;
    let mut dec = WebPDecoder::new(Cursor::new(bytes)).map_err(image_error)?;
    (probe.width, probe.height) = dec.dimensions();
    check_dimensions(probe.width, probe.height, limits)?;
    probe.orientation = exif_orientation(dec.orientation().ok());
    Ok(())
}

/// Decode the first frame.
pub(super) fn decode(bytes: &[u8]) -> Result<Decoded, RenderError> {
    let dec = WebPDecoder::new(Cursor::new(bytes)).map_err(image_error)?;
    decode_with_image(dec)
}

/// The composited frames of an animated WebP and its ICC profile, through image-webp directly:
/// a frame disposed to the background is cleared to transparent black, as browsers and libwebp
/// do (the `ANIM` background colour is only a hint; image-rs's wrapper sets none, and then
/// image-webp leaves disposed frames on the canvas). The chunks were bounded by the probe.
pub(super) fn frames(bytes: &[u8]) -> Result<super::Animation<'_>, RenderError> {
    let webp_err = |e: image_webp::DecodingError| RenderError::Undecodable(format!("WebP: {e}"));
    let mut dec = image_webp::WebPDecoder::new(Cursor::new(bytes)).map_err(webp_err)?;
    let icc = dec.icc_profile().ok().flatten();
    dec.set_background_color([0, 0, 0, 0]).map_err(webp_err)?;
    let (width, height) = dec.dimensions();
    let channels = if dec.has_alpha() { 4 } else { 3 };
    let total = dec.num_frames();
    let mut read = 0;
    let iter = std::iter::from_fn(move || {
        if read == total {
            return None;
        }
        read += 1;
        let mut data = vec![0_u8; width as usize * height as usize * channels];
        Some(match dec.read_frame(&mut data) {
            Ok(delay_ms) => Ok(super::AnimFrame {
                raster: crate::render::resize::Raster {
                    width,
                    height,
                    channels,
                    data,
                },
                delay_ms,
            }),
            Err(e) => Err(webp_err(e)),
        })
    });
    Ok((Box::new(iter), icc))
}

/// The `ANIM` chunk's loop count (0 = forever); 1 without one. Chunk headers only.
fn webp_loop_count(data: &[u8]) -> u32 {
    let mut pos = 12;
    while pos + 8 <= data.len() {
        let kind = &data[pos..pos + 4];
        let len = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        if kind == b"ANIM" && len >= 6 && pos + 14 <= data.len() {
            return u32::from(u16::from_le_bytes([data[pos + 12], data[pos + 13]]));
        }
        pos = pos
            .saturating_add(8)
            .saturating_add(len as usize)
            .saturating_add(len as usize & 1);
    }
    1
}

/// Every chunk (ICCP, EXIF, XMP, ANMF, the bitstream) must lie inside the file and inside the
/// RIFF size, before image-webp sizes any buffer from a declared length.
fn check_chunks(data: &[u8]) -> Result<(), RenderError> {
    if data.len() < 12 {
        return Err(RenderError::Truncated("WebP header is incomplete".into()));
    }
    let riff = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
    let end = riff.saturating_add(8);
    if end > data.len() {
        return Err(RenderError::Truncated(format!(
            "the RIFF header declares {end} bytes, the file has {}",
            data.len()
        )));
    }
    let mut pos = 12;
    while pos + 8 <= end {
        let kind = &data[pos..pos + 4];
        let len = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        let next = (pos + 8).saturating_add(len as usize);
        if next > end {
            return Err(RenderError::Truncated(format!(
                "WebP chunk {} declares {len} bytes past the end of the file",
                String::from_utf8_lossy(kind)
            )));
        }
        pos = next.saturating_add(len as usize & 1);
    }
    Ok(())
}

/// WebP frame count: the `ANMF` chunks of an animated file (1 for a still image), walking the
/// RIFF chunk headers only and stopping once `max + 1` are seen.
fn count_webp_frames(data: &[u8], max: u32) -> u32 {
    let mut pos = 12;
    let mut frames = 0_u32;
    while pos + 8 <= data.len() {
        let kind = &data[pos..pos + 4];
        let len = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        if kind == b"ANMF" {
            frames += 1;
            if frames > max {
                break;
            }
        }
        // Chunks are padded to an even size.
        pos = pos
            .saturating_add(8)
            .saturating_add(len as usize)
            .saturating_add(len as usize & 1);
    }
    frames.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_webp_animation_frames_from_chunk_headers() {
        let chunk = |kind: &[u8; 4], len: u32| {
            let mut c = kind.to_vec();
            c.extend_from_slice(&len.to_le_bytes());
            c.extend(std::iter::repeat_n(0_u8, (len + (len & 1)) as usize));
            c
        };
        let mut file = b"RIFF\0\0\0\0WEBP".to_vec();
        file.extend(chunk(b"VP8X", 10));
        file.extend(chunk(b"ANIM", 6));
        for _ in 0..7 {
            file.extend(chunk(b"ANMF", 21)); // odd: padded
        }
        assert_eq!(count_webp_frames(&file, 1000), 7);
        assert_eq!(count_webp_frames(&file, 3), 4, "stops past the limit");
        let mut still = b"RIFF\0\0\0\0WEBP".to_vec();
        still.extend(chunk(b"VP8L", 5));
        assert_eq!(count_webp_frames(&still, 1000), 1);
    }
}
