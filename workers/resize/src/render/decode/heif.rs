//! HEIF containers (AVIF and HEIC) through libheif.

use super::super::frame::Nclx;
use super::{Decoded, Layout, Limits, Probe, RenderError, Samples, check_dimensions, check_frames};

/// Displayed size, frames (items or sequence samples) and the `ispe` size, from libheif.
pub(super) fn probe(bytes: &[u8], limits: &Limits, probe: &mut Probe) -> Result<(), RenderError> {
    let ctx = libheif_rs::HeifContext::read_from_bytes(bytes).map_err(heif_error)?;
    let handle = ctx.primary_image_handle().map_err(heif_error)?;
    // libheif reports the size after irot/imir/clap, i.e. the displayed size.
    probe.width = handle.width();
    probe.height = handle.height();
    probe.container_oriented = true;
    check_dimensions(probe.width, probe.height, limits)?;
    // Frames: the top-level images (a burst or collection), or the samples of an image
    // sequence track (animated AVIF/HEIF), whichever is more.
    let items = u32::try_from(ctx.image_ids().len()).unwrap_or(u32::MAX);
    probe.frames = items.max(count_isobmff_samples(bytes)).max(1);
    check_frames(probe.frames, limits)?;
    check_dimensions(
        u32::try_from(handle.ispe_width()).unwrap_or(0),
        u32::try_from(handle.ispe_height()).unwrap_or(0),
        limits,
    )?;
    Ok(())
}

/// Decode the primary image, with the container's transforms applied.
pub(super) fn decode(bytes: &[u8]) -> Result<Decoded, RenderError> {
    use libheif_rs::{ColorSpace, RgbChroma};
    let lib = libheif_rs::LibHeif::new();
    let mut ctx = libheif_rs::HeifContext::read_from_bytes(bytes).map_err(heif_error)?;
    // Grid tiles (an iPhone photo is 48 of them) are decoded on this thread, not on libheif's
    // own pool: several images are always in flight, on the worker and in the bench.
    ctx.set_max_decoding_threads(0);
    let handle = ctx.primary_image_handle().map_err(heif_error)?;
    let alpha = handle.has_alpha_channel();
    // An ICC profile ("prof"/"rICC") wins; otherwise the nclx code points say what the RGB
    // that libheif produces (it applies the nclx matrix itself) means.
    let icc = handle.color_profile_raw().map(|p| p.data);
    let nclx = if icc.is_none() {
        handle.color_profile_nclx().map(|n| {
            use libheif_rs::{
                ColorPrimaries as P, MatrixCoefficients as M, TransferCharacteristics as T,
            };
            // Code points libheif-rs has no name for come back as `Unknown`: keep them unknown.
            Nclx {
                primaries: if n.color_primaries() == P::Unknown {
                    u16::MAX
                } else {
                    n.color_primaries() as u16
                },
                transfer: if n.transfer_characteristics() == T::Unknown {
                    u16::MAX
                } else {
                    n.transfer_characteristics() as u16
                },
                matrix: if n.matrix_coefficients() == M::Unknown {
                    u16::MAX
                } else {
                    n.matrix_coefficients() as u16
                },
                full_range: n.full_range_flag() != 0,
            }
        })
    } else {
        None
    };
    // More than 8 bits (10-bit AVIF, HDR) are kept at 16 bits through the colour transform.
    let deep = handle.luma_bits_per_pixel() > 8;
    let chroma = match (alpha, deep) {
        (false, false) => RgbChroma::Rgb,
        (true, false) => RgbChroma::Rgba,
        (false, true) => RgbChroma::HdrRgbLe,
        (true, true) => RgbChroma::HdrRgbaLe,
    };
    // Decoding applies irot/imir/clap: the pixels come out as displayed.
    let image = lib
        .decode(&handle, ColorSpace::Rgb(chroma), None)
        .map_err(heif_error)?;
    let planes = image.planes();
    let plane = planes
        .interleaved
        .ok_or_else(|| RenderError::Undecodable("libheif returned no interleaved plane".into()))?;
    let channels = if alpha { 4 } else { 3 };
    let (w, h) = (plane.width as usize, plane.height as usize);
    let samples = if deep {
        // Little-endian samples of `bits_per_pixel` significant bits: scale to full 16 bits.
        let bits = u32::from(plane.bits_per_pixel.clamp(9, 16));
        let max = (1_u32 << bits) - 1;
        let row = w * channels * 2;
        let mut out = Vec::with_capacity(w * h * channels);
        for y in 0..h {
            let start = y * plane.stride;
            out.extend(plane.data[start..start + row].chunks_exact(2).map(|b| {
                let v = u32::from(u16::from_le_bytes([b[0], b[1]])).min(max);
                u16::try_from((v * 65_535 + max / 2) / max).unwrap_or(u16::MAX)
            }));
        }
        Samples::U16(out)
    } else {
        let row = w * channels;
        let mut out = Vec::with_capacity(row * h);
        for y in 0..h {
            let start = y * plane.stride;
            out.extend_from_slice(&plane.data[start..start + row]);
        }
        Samples::U8(out)
    };
    Ok(Decoded {
        width: plane.width,
        height: plane.height,
        layout: if alpha { Layout::Rgba } else { Layout::Rgb },
        samples,
        icc,
        nclx,
    })
}

fn heif_error(err: libheif_rs::HeifError) -> RenderError {
    let msg = format!("{err}");
    if msg.contains("nd of data") || msg.contains("EOF") || msg.contains("truncated") {
        RenderError::Truncated(msg)
    } else if msg.contains("ecurity limit") {
        RenderError::TooLarge(msg)
    } else if msg.contains("Unsupported") || msg.contains("No decoding plugin") {
        RenderError::UnsupportedFormat(msg)
    } else {
        RenderError::Undecodable(msg)
    }
}

/// The largest sample count of any track of an ISO-BMFF file (`moov/trak/mdia/minf/stbl/stsz`
/// or `stz2`): the frame count of an AVIF/HEIF image sequence. 0 when there is no track.
/// Reads box headers only.
fn count_isobmff_samples(data: &[u8]) -> u32 {
    /// The boxes directly inside `data`: (type, payload).
    fn boxes(mut data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
        std::iter::from_fn(move || {
            if data.len() < 8 {
                return None;
            }
            let size = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as u64;
            let kind = &data[4..8];
            let (header, size) = match size {
                0 => (8, data.len() as u64),
                1 if data.len() >= 16 => {
                    let mut b = [0_u8; 8];
                    b.copy_from_slice(&data[8..16]);
                    (16, u64::from_be_bytes(b))
                }
                1 => return None,
                s => (8, s),
            };
            let size = usize::try_from(size)
                .ok()
                .filter(|&s| s >= header && s <= data.len())?;
            let payload = &data[header..size];
            data = &data[size..];
            Some((kind, payload))
        })
    }
    fn child<'a>(data: &'a [u8], kind: &[u8]) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let kind = kind.to_vec();
        boxes(data)
            .filter(move |(k, _)| *k == kind.as_slice())
            .map(|(_, p)| p)
    }
    let be32 = |b: &[u8], at: usize| {
        b.get(at..at + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut most = 0;
    for moov in child(data, b"moov") {
        for trak in child(moov, b"trak") {
            for mdia in child(trak, b"mdia") {
                for minf in child(mdia, b"minf") {
                    for stbl in child(minf, b"stbl") {
                        for (kind, payload) in boxes(stbl) {
                            // Both are full boxes (4 bytes version/flags); stsz has a 4-byte
                            // sample size before the count, stz2 3 reserved bytes + field size.
                            if kind == b"stsz" || kind == b"stz2" {
                                most = most.max(be32(payload, 8));
                            }
                        }
                    }
                }
            }
        }
    }
    most
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_image_sequence_samples_in_isobmff() {
        fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
            let mut b = u32::try_from(payload.len() + 8)
                .unwrap()
                .to_be_bytes()
                .to_vec();
            b.extend_from_slice(kind);
            b.extend_from_slice(payload);
            b
        }
        let mut stsz = vec![0_u8; 4]; // version + flags
        stsz.extend_from_slice(&0_u32.to_be_bytes()); // sample size
        stsz.extend_from_slice(&42_u32.to_be_bytes()); // sample count
        let stbl = bx(b"stbl", &bx(b"stsz", &stsz));
        let moov = bx(b"moov", &bx(b"trak", &bx(b"mdia", &bx(b"minf", &stbl))));
        let file = [bx(b"ftyp", b"avis\0\0\0\0"), bx(b"meta", &[0; 8]), moov].concat();
        assert_eq!(count_isobmff_samples(&file), 42);
        assert_eq!(count_isobmff_samples(&bx(b"ftyp", b"avif\0\0\0\0")), 0);
    }
}
