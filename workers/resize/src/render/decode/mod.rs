//! Format sniffing, header probing (where every limit is enforced) and first-frame decoding.
//!
//! Invariants: the format comes from magic bytes only (for SVG: the document's prolog and root
//! element name, see `svg::sniff`; file names and declared content types
//! are never trusted); [`probe`] reads headers only and rejects anything over [`Limits`] before a
//! pixel buffer exists; [`decode`] returns the samples exactly as stored (any depth, any colour
//! model) with the embedded ICC profile, leaving colour management to [`super::color`].
//!
//! Each container has its own module, its limits beside its decoder: `jpeg`, `png`,
//! `gif`, `webp`, `tiff`, `heif` (AVIF and HEIC), `svg` (rasterised with resvg under its own
//! bounds).

mod gif;
mod heif;
mod heif_geometry;
mod heif_ycc;
mod jpeg;
mod png;
pub mod svg;
mod tiff;
mod webp;

use image::ImageDecoder;
use image::metadata::Orientation;
use serde::Serialize;

pub use super::frame::{Decoded, Layout, Samples};
use super::{EncodeSettings, Limits, RenderError, plan_jpeg_scale};

/// An input format, as sniffed from the magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// JPEG (JFIF/EXIF; baseline, progressive, grayscale, CMYK/YCCK).
    Jpeg,
    /// PNG (first frame of an APNG).
    Png,
    /// GIF (first frame).
    Gif,
    /// WebP (lossy, lossless, alpha; first frame).
    Webp,
    /// TIFF (first page).
    Tiff,
    /// AVIF (HEIF container, AV1).
    Avif,
    /// HEIC/HEIF (HEIF container, HEVC).
    Heic,
    /// SVG (rasterised at the size of the largest variant; no external resources).
    Svg,
}

impl SourceFormat {
    /// Wire name, also the manifest's `source.format`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "jpeg",
            SourceFormat::Png => "png",
            SourceFormat::Gif => "gif",
            SourceFormat::Webp => "webp",
            SourceFormat::Tiff => "tiff",
            SourceFormat::Avif => "avif",
            SourceFormat::Heic => "heic",
            SourceFormat::Svg => "svg",
        }
    }

    /// MIME type of the original (for `keep_original`).
    pub fn content_type(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "image/jpeg",
            SourceFormat::Png => "image/png",
            SourceFormat::Gif => "image/gif",
            SourceFormat::Webp => "image/webp",
            SourceFormat::Tiff => "image/tiff",
            SourceFormat::Avif => "image/avif",
            SourceFormat::Heic => "image/heic",
            SourceFormat::Svg => "image/svg+xml",
        }
    }
}

/// Identify the format from the leading bytes; `None` when it is none we read.
pub fn sniff(bytes: &[u8]) -> Option<SourceFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(SourceFormat::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(SourceFormat::Png);
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Some(SourceFormat::Gif);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some(SourceFormat::Webp);
    }
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        return Some(SourceFormat::Tiff);
    }
    if bytes.len() >= 16 && &bytes[4..8] == b"ftyp" {
        let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let end = size.clamp(16, bytes.len());
        // Major brand at 8..12, then minor version, then compatible brands.
        let brands = std::iter::once(&bytes[8..12]).chain(bytes[16..end].chunks_exact(4));
        let mut heif = false;
        for brand in brands {
            match brand {
                b"avif" | b"avis" => return Some(SourceFormat::Avif),
                b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1" => {
                    heif = true;
                }
                _ => {}
            }
        }
        if heif {
            return Some(SourceFormat::Heic);
        }
    }
    if svg::sniff(bytes) {
        return Some(SourceFormat::Svg);
    }
    None
}

/// What the header says, before any pixel is decoded.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Sniffed format.
    pub format: SourceFormat,
    /// Stored width (for HEIF: after the container's transforms).
    pub width: u32,
    /// Stored height (for HEIF: after the container's transforms).
    pub height: u32,
    /// Frames counted from the headers (1 for still images): GIF images, APNG `acTL`, WebP
    /// `ANMF` chunks, TIFF pages, HEIF top-level images or sequence samples. Counting stops
    /// past `max_frames`.
    pub frames: u32,
    /// How many times an animation plays, as WebP's `ANIM` chunk counts it (0 = forever):
    /// APNG `acTL` plays, WebP `ANIM` loop count, GIF NETSCAPE2.0 repeats + 1; 1 for stills.
    pub loop_count: u32,
    /// Pixels of the largest frame rectangle of an animation, which its decoder holds besides
    /// the canvas (GIF; APNG and WebP frames lie inside the canvas, 0 there).
    pub extra_frame_pixels: u64,
    /// The EXIF orientation found (1..=8; 1 when absent).
    pub orientation: u8,
    /// The container's transforms are authoritative (HEIF `clap`/`irot`/`imir`): an EXIF
    /// orientation inside the file is informative and never applied.
    pub container_oriented: bool,
    /// With `container_oriented`, the orientation (as an EXIF value, 1..=8) the container's
    /// `irot`/`imir` amount to, applied to the decoded (already cropped) frame like EXIF.
    pub container_orientation: u8,
    /// Pixels of a buffer the decoder allocates besides the stored frame (a GIF whose first
    /// frame does not match its logical screen is decoded into a frame-sized buffer first).
    extra_pixels: u64,
    jpeg: Option<jpeg::JpegHeader>,
    /// A HEIF primary image's crop and orientation, from its item properties.
    heif: Option<heif_geometry::Geometry>,
    /// The limits the probe checked, for decoders that enforce them while decoding (libheif).
    limits: Limits,
}

impl Probe {
    /// Dimensions after orientation (the axes swap for EXIF 5..=8).
    pub fn oriented_dimensions(&self) -> (u32, u32) {
        if self.orientation_to_apply() >= 5 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }

    /// Pixels the decoder holds at once: the stored frame plus any intermediate buffer the
    /// format needs. Admission charges this, not the declared size, so a small header cannot
    /// smuggle in a large allocation.
    pub fn decode_pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) + self.extra_pixels
    }

    /// Colour components of a JPEG's frame (1 gray, 3 YCbCr/RGB, 4 CMYK/YCCK); `None` for
    /// other formats.
    pub fn jpeg_components(&self) -> Option<u8> {
        self.jpeg.as_ref().map(jpeg::JpegHeader::components)
    }

    /// The EXIF orientation the engine must still apply to the decoded pixels.
    pub fn orientation_to_apply(&self) -> u8 {
        if self.container_oriented {
            self.container_orientation
        } else {
            self.orientation
        }
    }
}

/// Read the header, check every limit and count frames. Allocates nothing proportional to
/// the pixel count.
///
/// # Errors
/// [`RenderError::UnsupportedFormat`] for unknown or empty input, [`RenderError::TooLarge`] /
/// [`RenderError::TooManyFrames`] over the limits, [`RenderError::Truncated`] when a JPEG's
/// entropy-coded data ends before its EOI marker, [`RenderError::Undecodable`] for corrupt
/// headers.
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<Probe, RenderError> {
    if bytes.is_empty() {
        return Err(RenderError::UnsupportedFormat("empty input".into()));
    }
    if bytes.len() as u64 > limits.max_input_bytes {
        return Err(RenderError::TooLarge(format!(
            "input is {} bytes, the limit is {}",
            bytes.len(),
            limits.max_input_bytes
        )));
    }
    let format = sniff(bytes).ok_or_else(|| {
        RenderError::UnsupportedFormat("the leading bytes match no supported image format".into())
    })?;
    let mut probe = Probe {
        format,
        width: 0,
        height: 0,
        frames: 1,
        loop_count: 1,
        extra_frame_pixels: 0,
        orientation: 1,
        container_oriented: false,
        container_orientation: 1,
        extra_pixels: 0,
        jpeg: None,
        heif: None,
        limits: *limits,
    };
    match format {
        SourceFormat::Jpeg => jpeg::probe(bytes, limits, &mut probe)?,
        SourceFormat::Png => png::probe(bytes, limits, &mut probe)?,
        SourceFormat::Gif => gif::probe(bytes, limits, &mut probe)?,
        SourceFormat::Webp => webp::probe(bytes, limits, &mut probe)?,
        SourceFormat::Tiff => tiff::probe(bytes, limits, &mut probe)?,
        SourceFormat::Avif | SourceFormat::Heic => heif::probe(bytes, limits, &mut probe)?,
        SourceFormat::Svg => svg::probe(bytes, limits, &mut probe)?,
    }
    if probe.width == 0 || probe.height == 0 {
        return Err(RenderError::Undecodable(format!(
            "the header declares a {}x{} image",
            probe.width, probe.height
        )));
    }
    Ok(probe)
}

fn check_frames(frames: u32, limits: &Limits) -> Result<(), RenderError> {
    if frames > limits.max_frames {
        return Err(RenderError::TooManyFrames(format!(
            "more than {} frames",
            limits.max_frames
        )));
    }
    Ok(())
}

fn check_dimensions(width: u32, height: u32, limits: &Limits) -> Result<(), RenderError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(RenderError::TooLarge(format!(
            "{width}x{height} is {pixels} pixels, the limit is {}",
            limits.max_pixels
        )));
    }
    if width.max(height) > limits.max_dimension {
        return Err(RenderError::TooLarge(format!(
            "{width}x{height} has a side over the {} px limit",
            limits.max_dimension
        )));
    }
    Ok(())
}

fn exif_orientation(o: Option<Orientation>) -> u8 {
    o.map(Orientation::to_exif).unwrap_or(1)
}

/// Decode the first frame. For JPEG, `max_target_width` (the largest variant that will be
/// made) lets libjpeg-turbo decode at a reduced DCT scale.
///
/// # Errors
/// [`RenderError::Truncated`] or [`RenderError::Undecodable`] when the data is corrupt,
/// [`RenderError::UnsupportedFormat`] for sample layouts we do not handle (e.g. float TIFF).
pub fn decode(
    bytes: &[u8],
    probe: &Probe,
    max_target_width: u32,
    settings: &EncodeSettings,
) -> Result<Decoded, RenderError> {
    match probe.format {
        SourceFormat::Jpeg => {
            let header = probe
                .jpeg
                .as_ref()
                .ok_or_else(|| RenderError::Undecodable("JPEG header missing".into()))?;
            let eighths = plan_jpeg_scale(
                probe.oriented_dimensions().0,
                max_target_width,
                settings.jpeg_min_residual,
            );
            jpeg::decode(bytes, header, eighths)
        }
        SourceFormat::Png => png::decode(bytes),
        SourceFormat::Gif => gif::decode(bytes),
        SourceFormat::Webp => webp::decode(bytes),
        SourceFormat::Tiff => tiff::decode(bytes, probe),
        SourceFormat::Avif | SourceFormat::Heic => heif::decode(bytes, probe),
        SourceFormat::Svg => svg::decode(bytes, probe, max_target_width),
    }
}

/// One composited full-canvas frame of an animation.
#[derive(Debug)]
pub struct AnimFrame {
    /// The canvas, RGB or RGBA (unassociated alpha), 8 bits, as stored (not colour managed).
    pub raster: super::resize::Raster,
    /// How long it is shown, in milliseconds, as stored.
    pub delay_ms: u32,
}

/// The frames of an animation, decoded one at a time.
pub type AnimFrames<'a> = Box<dyn Iterator<Item = Result<AnimFrame, RenderError>> + 'a>;

/// An animation's frames and its embedded ICC profile.
pub type Animation<'a> = (AnimFrames<'a>, Option<Vec<u8>>);

/// The composited full-canvas frames of an animated GIF, APNG or WebP, one at a time, with the
/// embedded ICC profile; `None` for other formats.
///
/// # Errors
/// As [`decode`].
pub fn frames<'a>(bytes: &'a [u8], probe: &Probe) -> Result<Option<Animation<'a>>, RenderError> {
    Ok(Some(match probe.format {
        SourceFormat::Gif => (from_image_frames(gif::frames(bytes)?), None),
        SourceFormat::Png => {
            let (frames, icc) = png::frames(bytes)?;
            (from_image_frames(frames), icc)
        }
        SourceFormat::Webp => webp::frames(bytes)?,
        _ => return Ok(None),
    }))
}

fn from_image_frames(frames: image::Frames<'_>) -> AnimFrames<'_> {
    Box::new(frames.map(|f| {
        let f = f.map_err(image_error)?;
        let (num, den) = f.delay().numer_denom_ms();
        let delay_ms = u32::try_from(u64::from(num) / u64::from(den.max(1))).unwrap_or(u32::MAX);
        let buffer = f.into_buffer();
        let (width, height) = buffer.dimensions();
        Ok(AnimFrame {
            raster: super::resize::Raster {
                width,
                height,
                channels: 4,
                data: buffer.into_raw(),
            },
            delay_ms,
        })
    }))
}

/// The image-rs limits of the animation decoders: the probe bounded the canvas and every frame
/// rectangle; this guards the decoders' own allocations per frame.
fn animation_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(2 * 1024 * 1024 * 1024);
    limits.max_image_width = None;
    limits.max_image_height = None;
    limits
}

fn decode_with_image(mut dec: impl ImageDecoder) -> Result<Decoded, RenderError> {
    use image::ColorType as C;
    let icc = dec.icc_profile().ok().flatten();
    let mut limits = image::Limits::default();
    // The probe already bounded the pixel count; this guards the decoder's own allocations.
    limits.max_alloc = Some(2 * 1024 * 1024 * 1024);
    dec.set_limits(limits).map_err(image_error)?;
    let (width, height) = dec.dimensions();
    let color = dec.color_type();
    let (layout, sixteen) = match color {
        C::L8 => (Layout::Gray, false),
        C::La8 => (Layout::GrayAlpha, false),
        C::Rgb8 => (Layout::Rgb, false),
        C::Rgba8 => (Layout::Rgba, false),
        C::L16 => (Layout::Gray, true),
        C::La16 => (Layout::GrayAlpha, true),
        C::Rgb16 => (Layout::Rgb, true),
        C::Rgba16 => (Layout::Rgba, true),
        other => {
            return Err(RenderError::UnsupportedFormat(format!(
                "sample type {other:?} is not supported"
            )));
        }
    };
    let total = usize::try_from(dec.total_bytes())
        .map_err(|_| RenderError::TooLarge("decoded size overflows memory".into()))?;
    let samples = if sixteen {
        let mut buf = vec![0_u16; total / 2];
        dec.read_image(bytemuck::cast_slice_mut(&mut buf))
            .map_err(image_error)?;
        Samples::U16(buf)
    } else {
        let mut buf = vec![0_u8; total];
        dec.read_image(&mut buf).map_err(image_error)?;
        Samples::U8(buf)
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

fn image_error(err: image::ImageError) -> RenderError {
    use image::ImageError as E;
    match &err {
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            RenderError::Truncated(err.to_string())
        }
        E::Limits(_) => RenderError::TooLarge(err.to_string()),
        E::Unsupported(_) => RenderError::UnsupportedFormat(err.to_string()),
        _ => {
            let msg = err.to_string();
            if msg.contains("EOF") || msg.contains("end of file") || msg.contains("eof") {
                RenderError::Truncated(msg)
            } else {
                RenderError::Undecodable(msg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_every_supported_format_from_magic_bytes() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0"), Some(SourceFormat::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(SourceFormat::Png));
        assert_eq!(sniff(b"GIF89a......"), Some(SourceFormat::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(SourceFormat::Webp));
        assert_eq!(sniff(b"II*\0\x08\0\0\0"), Some(SourceFormat::Tiff));
        assert_eq!(
            sniff(b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf"),
            Some(SourceFormat::Avif)
        );
        assert_eq!(
            sniff(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"),
            Some(SourceFormat::Heic)
        );
        assert_eq!(
            sniff(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"),
            Some(SourceFormat::Svg)
        );
        assert_eq!(
            sniff(b"<?xml version=\"1.0\"?>\n<!DOCTYPE svg><svg>"),
            Some(SourceFormat::Svg)
        );
        assert_eq!(sniff(b"<svg xmlns="), Some(SourceFormat::Svg));
        assert_eq!(sniff(b"<html><body><svg></svg>"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn rejects_empty_input_as_unsupported() {
        let err = probe(&[], &Limits::default()).unwrap_err();
        assert_eq!(err.code(), shared::error::ErrorCode::UnsupportedFormat);
    }
}
