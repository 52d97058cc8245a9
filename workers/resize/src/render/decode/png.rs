//! PNG (the first frame of an APNG), through the png crate behind image-rs.

use std::io::Cursor;

use image::ImageDecoder;
use image::codecs::png::PngDecoder;

use super::{
    Decoded, Limits, Probe, RenderError, check_dimensions, check_frames, decode_with_image,
    exif_orientation, image_error,
};

/// Size from IHDR, frames from `acTL`, orientation from `eXIf`.
pub(super) fn probe(bytes: &[u8], limits: &Limits, probe: &mut Probe) -> Result<(), RenderError> {
    // IHDR is always the first chunk: read the size before the decoder does anything.
    if bytes.len() < 24 || &bytes[12..16] != b"IHDR" {
        return Err(RenderError::Undecodable("PNG without an IHDR chunk".into()));
    }
    probe.width = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    probe.height = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    check_dimensions(probe.width, probe.height, limits)?;
    (probe.frames, probe.loop_count) = count_apng_frames(bytes);
    check_frames(probe.frames, limits)?;
    let mut dec = open(bytes)?;
    probe.orientation = exif_orientation(dec.orientation().ok());
    Ok(())
}

/// Decode the first frame.
pub(super) fn decode(bytes: &[u8]) -> Result<Decoded, RenderError> {
    decode_with_image(open(bytes)?)
}

/// What the png crate may allocate for metadata, in bytes: the inflated `iCCP` profile and the
/// raw `tEXt`/`zTXt`/`iTXt`/`eXIf` chunks together (compressed text is never inflated), plus a
/// row buffer: 8 MiB + 1 MiB. An `iCCP` that inflates past it is dropped (the image renders
/// untagged, the inflation stops at the limit); text or `eXIf` past it refuses the file.
pub const MAX_METADATA_BYTES: usize = 8 << 20;

fn open(bytes: &[u8]) -> Result<PngDecoder<Cursor<&[u8]>>, RenderError> {
    let mut limits = image::Limits::default();
    limits.max_alloc = Some((MAX_METADATA_BYTES + (1 << 20)) as u64);
    limits.max_image_width = None;
    limits.max_image_height = None;
    PngDecoder::with_limits(Cursor::new(bytes), limits).map_err(image_error)
}

/// The composited frames of an APNG (blend and dispose ops applied by the decoder); the
/// canvas was bounded by the probe and the png crate keeps every frame inside it.
pub(super) fn frames(bytes: &[u8]) -> Result<(image::Frames<'_>, Option<Vec<u8>>), RenderError> {
    use image::AnimationDecoder;
    let mut dec = open(bytes)?;
    let icc = dec.icc_profile().ok().flatten();
    dec.set_limits(super::animation_limits())
        .map_err(image_error)?;
    Ok((dec.apng().map_err(image_error)?.into_frames(), icc))
}

/// APNG frame count and play count (0 = forever) from the `acTL` chunk (which must precede
/// the image data); 1 and 1 for a plain PNG. Only chunk headers are read.
fn count_apng_frames(data: &[u8]) -> (u32, u32) {
    let mut pos = 8;
    while pos + 8 <= data.len() {
        let len = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        let kind = &data[pos + 4..pos + 8];
        if kind == b"IDAT" || kind == b"IEND" {
            break;
        }
        if kind == b"acTL" && pos + 16 <= data.len() {
            let field =
                |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
            return (field(pos + 8).max(1), field(pos + 12));
        }
        // length + type + data + CRC
        pos = pos.saturating_add(12).saturating_add(len as usize);
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_apng_frames_from_actl() {
        let chunk = |kind: &[u8; 4], payload: &[u8]| {
            let mut c = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(payload);
            c.extend_from_slice(&[0; 4]);
            c
        };
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &[0; 13]));
        let plain = [png.clone(), chunk(b"IDAT", &[0; 3])].concat();
        assert_eq!(count_apng_frames(&plain), (1, 1));
        png.extend(chunk(b"acTL", &[0, 0, 0, 12, 0, 0, 0, 3]));
        png.extend(chunk(b"IDAT", &[0; 3]));
        assert_eq!(count_apng_frames(&png), (12, 3));
    }
}
