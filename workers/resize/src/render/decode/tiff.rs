//! TIFF (the first page), through the tiff crate.

use std::io::Cursor;

use super::{Decoded, Layout, Limits, Probe, RenderError, Samples, check_dimensions, check_frames};

/// Size and orientation from the first IFD, pages along the IFD chain.
pub(super) fn probe(bytes: &[u8], limits: &Limits, probe: &mut Probe) -> Result<(), RenderError> {
    let mut dec = tiff::decoder::Decoder::new(Cursor::new(bytes)).map_err(tiff_error)?;
    (probe.width, probe.height) = dec.dimensions().map_err(tiff_error)?;
    check_dimensions(probe.width, probe.height, limits)?;
    probe.frames = count_tiff_pages(bytes, limits.max_frames)?;
    check_frames(probe.frames, limits)?;
    probe.orientation = dec
        .find_tag_unsigned::<u16>(tiff::tags::Tag::Orientation)
        .ok()
        .flatten()
        .and_then(|o| u8::try_from(o).ok())
        .filter(|o| (1..=8).contains(o))
        .unwrap_or(1);
    Ok(())
}

/// Decode the first page.
pub(super) fn decode(bytes: &[u8]) -> Result<Decoded, RenderError> {
    use tiff::ColorType as C;
    use tiff::decoder::DecodingResult as R;
    let mut dec = tiff::decoder::Decoder::new(Cursor::new(bytes))
        .map_err(tiff_error)?
        .with_limits(tiff::decoder::Limits::unlimited());
    let (width, height) = dec.dimensions().map_err(tiff_error)?;
    let icc = dec
        .find_tag_unsigned_vec::<u8>(tiff::tags::Tag::IccProfile)
        .ok()
        .flatten();
    let layout = match dec.colortype().map_err(tiff_error)? {
        C::Gray(8 | 16) => Layout::Gray,
        C::GrayA(8 | 16) => Layout::GrayAlpha,
        C::RGB(8 | 16) => Layout::Rgb,
        C::RGBA(8 | 16) => Layout::Rgba,
        C::CMYK(8) => Layout::Cmyk { inverted: false },
        other => {
            return Err(RenderError::UnsupportedFormat(format!(
                "TIFF sample type {other:?} is not supported"
            )));
        }
    };
    let samples = match dec.read_image().map_err(tiff_error)? {
        R::U8(v) => Samples::U8(v),
        R::U16(v) => Samples::U16(v),
        _ => {
            return Err(RenderError::UnsupportedFormat(
                "TIFF sample format is not supported".into(),
            ));
        }
    };
    Ok(Decoded {
        width,
        height,
        layout,
        samples,
        icc,
        nclx: None,
    })
}

fn tiff_error(err: tiff::TiffError) -> RenderError {
    match &err {
        tiff::TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            RenderError::Truncated(err.to_string())
        }
        tiff::TiffError::LimitsExceeded => RenderError::TooLarge(err.to_string()),
        tiff::TiffError::UnsupportedError(_) => RenderError::UnsupportedFormat(err.to_string()),
        _ => RenderError::Undecodable(err.to_string()),
    }
}

/// TIFF page count: the IFD chain, following only the next-IFD offsets (no pixel data), and
/// stopping once `max + 1` are seen or an offset repeats.
fn count_tiff_pages(data: &[u8], max: u32) -> Result<u32, RenderError> {
    let little = data.starts_with(b"II");
    let bad = || RenderError::Undecodable("TIFF IFD chain points outside the file".into());
    let u16_at = |at: usize| -> Option<u16> {
        let b = data.get(at..at + 2)?;
        Some(if little {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b = data.get(at..at + 4)?;
        let b = [b[0], b[1], b[2], b[3]];
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let mut seen = std::collections::HashSet::new();
    let mut offset = u32_at(4).ok_or_else(bad)? as usize;
    let mut pages = 0_u32;
    while offset != 0 && seen.insert(offset) {
        pages += 1;
        if pages > max {
            break;
        }
        let entries = usize::from(u16_at(offset).ok_or_else(bad)?);
        let next = offset + 2 + entries * 12;
        offset = u32_at(next).ok_or_else(bad)? as usize;
    }
    Ok(pages.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tiff_pages_along_the_ifd_chain() {
        // Little-endian header, then three empty IFDs chained 8 -> 14 -> 20 -> end.
        let mut t = b"II*\0".to_vec();
        t.extend_from_slice(&8_u32.to_le_bytes());
        for next in [14_u32, 20, 0] {
            t.extend_from_slice(&0_u16.to_le_bytes());
            t.extend_from_slice(&next.to_le_bytes());
        }
        assert_eq!(count_tiff_pages(&t, 1000).unwrap(), 3);
        assert_eq!(count_tiff_pages(&t, 1).unwrap(), 2, "stops past the limit");
        // A loop back to the first IFD ends the walk.
        let mut looped = t.clone();
        looped[20 + 2..20 + 6].copy_from_slice(&8_u32.to_le_bytes());
        assert_eq!(count_tiff_pages(&looped, 1000).unwrap(), 3);
    }
}
