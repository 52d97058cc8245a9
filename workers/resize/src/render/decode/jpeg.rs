//! JPEG: a marker walk for the header (size, orientation, ICC, Adobe, completeness), then
//! libjpeg-turbo for the pixels.

use image::metadata::Orientation;

use super::{Decoded, Layout, Limits, Probe, RenderError, Samples, check_dimensions};

/// Read the frame header, the orientation and the ICC profile from the marker segments.
pub(super) fn probe(bytes: &[u8], limits: &Limits, probe: &mut Probe) -> Result<(), RenderError> {
    let header = parse_jpeg(bytes)?;
    probe.width = header.width;
    probe.height = header.height;
    probe.orientation = header.orientation;
    check_dimensions(probe.width, probe.height, limits)?;
    if !header.complete {
        return Err(RenderError::Truncated(
            "JPEG entropy-coded data ends before the end-of-image marker".into(),
        ));
    }
    probe.jpeg = Some(header);
    Ok(())
}

/// The most scans (SOS markers) a JPEG may have: 500, as libvips and ImageMagick default to.
/// A progressive JPEG has about ten; one repeating a scan thousands of times makes
/// libjpeg-turbo redo the whole image per scan. The turbojpeg crate does not expose
/// `TJPARAM_SCANLIMIT`, so the marker walk counts them and refuses the file.
pub const MAX_SCANS: u32 = 500;

/// The largest ICC profile reassembled from APP2 chunks: 4 MiB. Chunks whose sequence numbers
/// or counts disagree, repeat or leave gaps, or that add up to more, are dropped (the image
/// renders untagged, as libjpeg's own reader does); they never grow a buffer past it.
pub const MAX_ICC_BYTES: usize = 4 << 20;

/// Decode with libjpeg-turbo at `eighths`/8 of the stored size.
pub(super) fn decode(
    bytes: &[u8],
    header: &JpegHeader,
    eighths: u32,
) -> Result<Decoded, RenderError> {
    let mut dec = turbojpeg::Decompressor::new().map_err(jpeg_error)?;
    // libjpeg-turbo only accepts its scaling factors in lowest terms (1/4, not 2/8).
    let eighths = eighths.clamp(1, 8) as usize;
    let common = 1 << eighths.trailing_zeros().min(3);
    let scale = turbojpeg::ScalingFactor::new(eighths / common, 8 / common);
    dec.set_scaling_factor(scale).map_err(jpeg_error)?;
    let info = dec.read_header(bytes).map_err(jpeg_error)?.scaled(scale);
    let (format, layout) = match header.components {
        1 => (turbojpeg::PixelFormat::GRAY, Layout::Gray),
        // libjpeg-turbo turns YCCK into CMYK; the values stay as stored. Adobe's APP14
        // marker means Photoshop wrote them inverted (0 = full ink).
        4 => (
            turbojpeg::PixelFormat::CMYK,
            Layout::Cmyk {
                inverted: header.adobe,
            },
        ),
        _ => (turbojpeg::PixelFormat::RGB, Layout::Rgb),
    };
    let channels = layout.channels();
    let mut pixels = vec![0_u8; info.width * info.height * channels];
    let image = turbojpeg::Image {
        pixels: pixels.as_mut_slice(),
        width: info.width,
        pitch: info.width * channels,
        height: info.height,
        format,
    };
    if let Err(err) = dec.decompress(bytes, image) {
        // The turbojpeg crate reports libjpeg warnings (which still yield a complete image)
        // and fatal errors alike and does not expose tj3GetErrorCode, so classify by the
        // libjpeg message. Structural truncation was already caught by the marker walk in
        // `probe`; "Corrupt JPEG data: N extraneous bytes" and friends are common in
        // camera files and harmless, so those are accepted.
        let msg = err.to_string();
        if msg.contains("Premature end") {
            return Err(RenderError::Truncated(msg));
        }
        if !(msg.contains("Corrupt JPEG data") || msg.contains("Warning")) {
            return Err(RenderError::Undecodable(msg));
        }
    }
    Ok(Decoded {
        width: u32::try_from(info.width).expect("scaled width fits the header's u16"),
        height: u32::try_from(info.height).expect("scaled height fits the header's u16"),
        layout,
        samples: Samples::U8(pixels),
        icc: header.icc.clone(),
        nclx: None,
    })
}

fn jpeg_error(err: turbojpeg::Error) -> RenderError {
    RenderError::Undecodable(err.to_string())
}

/// What a JPEG's marker segments say.
#[derive(Debug, Clone)]
pub(super) struct JpegHeader {
    width: u32,
    height: u32,
    components: u8,
    orientation: u8,
    icc: Option<Vec<u8>>,
    /// An Adobe APP14 marker is present (CMYK is then stored inverted).
    adobe: bool,
    /// The walk reached EOI through complete segments and entropy-coded data.
    complete: bool,
}

impl JpegHeader {
    /// Colour components of the frame.
    pub(super) fn components(&self) -> u8 {
        self.components
    }
}

/// Walk the marker segments (and skim the entropy-coded data between them) without decoding.
///
/// This gives the frame size for the limit check, the EXIF orientation, the ICC profile
/// (reassembled from its APP2 chunks) and the Adobe marker; and it tells a truncated file
/// (data ends before EOI) from a complete one, which libjpeg reports only as a warning.
fn parse_jpeg(data: &[u8]) -> Result<JpegHeader, RenderError> {
    let mut h = JpegHeader {
        width: 0,
        height: 0,
        components: 0,
        orientation: 1,
        icc: None,
        adobe: false,
        complete: false,
    };
    let mut icc_chunks: Vec<(u8, u8, &[u8])> = Vec::new();
    let mut icc_bytes = 0_usize;
    let mut icc_valid = true;
    let mut scans = 0_u32;
    let mut seen_sof = false;
    let mut pos = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while pos < data.len() && data[pos] == 0xFF {
            pos += 1;
        }
        if pos >= data.len() {
            break;
        }
        if data[pos - 1] != 0xFF {
            return Err(RenderError::Undecodable(format!(
                "expected a JPEG marker at byte {pos}"
            )));
        }
        let marker = data[pos];
        pos += 1;
        match marker {
            0xD9 => {
                h.complete = true;
                break;
            }
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        if pos + 2 > data.len() {
            break;
        }
        let len = usize::from(u16::from_be_bytes([data[pos], data[pos + 1]]));
        if len < 2 {
            return Err(RenderError::Undecodable("JPEG segment length < 2".into()));
        }
        let seg_end = pos + len;
        if seg_end > data.len() {
            if !seen_sof && (0xC0..=0xCF).contains(&marker) {
                return Err(RenderError::Truncated(
                    "JPEG ends inside its frame header".into(),
                ));
            }
            break;
        }
        let seg = &data[pos + 2..seg_end];
        match marker {
            0xC0..=0xCF if marker != 0xC4 && marker != 0xC8 && marker != 0xCC => {
                if seg.len() < 6 {
                    return Err(RenderError::Undecodable("short JPEG frame header".into()));
                }
                if !seen_sof {
                    h.height = u32::from(u16::from_be_bytes([seg[1], seg[2]]));
                    h.width = u32::from(u16::from_be_bytes([seg[3], seg[4]]));
                    h.components = seg[5];
                    seen_sof = true;
                }
            }
            0xE1 if seg.starts_with(b"Exif\0\0") && h.orientation == 1 => {
                h.orientation = Orientation::from_exif_chunk(&seg[6..])
                    .map(Orientation::to_exif)
                    .unwrap_or(1);
            }
            0xE2 if seg.starts_with(b"ICC_PROFILE\0") && seg.len() > 14 => {
                icc_bytes += seg.len() - 14;
                if icc_bytes > MAX_ICC_BYTES || icc_chunks.len() >= 255 {
                    icc_valid = false;
                } else if icc_valid {
                    icc_chunks.push((seg[12], seg[13], &seg[14..]));
                }
            }
            0xEE if seg.starts_with(b"Adobe") => h.adobe = true,
            _ => {}
        }
        pos = seg_end;
        if marker == 0xDA {
            scans += 1;
            if scans > MAX_SCANS {
                return Err(RenderError::Undecodable(format!(
                    "JPEG has more than {MAX_SCANS} scans"
                )));
            }
            if !seen_sof {
                return Err(RenderError::Undecodable(
                    "JPEG scan before its frame".into(),
                ));
            }
            // Entropy-coded data: 0xFF is followed by 0x00 (stuffing) or RSTn inside it; any
            // other marker ends the scan.
            loop {
                match memchr::memchr(0xFF, &data[pos..]) {
                    None => {
                        pos = data.len();
                        break;
                    }
                    Some(off) => {
                        let at = pos + off;
                        match data.get(at + 1) {
                            None => {
                                pos = data.len();
                                break;
                            }
                            Some(0x00 | 0xD0..=0xD7 | 0xFF) => pos = at + 1,
                            Some(_) => {
                                pos = at;
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
    if !seen_sof {
        return Err(if h.complete {
            RenderError::Undecodable("JPEG without a frame header".into())
        } else {
            RenderError::Truncated("JPEG ends before its frame header".into())
        });
    }
    if icc_valid && !icc_chunks.is_empty() {
        icc_chunks.sort_by_key(|(seq, _, _)| *seq);
        // Sequence numbers 1..=count, each once, all chunks agreeing on the count.
        let count = icc_chunks[0].1;
        let consistent = usize::from(count) == icc_chunks.len()
            && icc_chunks
                .iter()
                .enumerate()
                .all(|(i, (seq, n, _))| *n == count && usize::from(*seq) == i + 1);
        if consistent {
            h.icc = Some(
                icc_chunks
                    .iter()
                    .flat_map(|(_, _, c)| c.iter().copied())
                    .collect(),
            );
        }
    }
    Ok(h)
}
