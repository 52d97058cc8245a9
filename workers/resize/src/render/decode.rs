//! Format sniffing, header probing (where every limit is enforced) and first-frame decoding.
//!
//! Invariants: the format comes from magic bytes only (file names and declared content types
//! are never trusted); [`probe`] reads headers only and rejects anything over [`Limits`] before a
//! pixel buffer exists; [`decode`] returns the samples exactly as stored (any depth, any colour
//! model) with the embedded ICC profile, leaving colour management to [`super::color`].

use std::io::Cursor;

use image::ImageDecoder;
use image::codecs::{gif::GifDecoder, png::PngDecoder, webp::WebPDecoder};
use image::metadata::Orientation;
use serde::Serialize;

use super::color::Nclx;
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
    /// The EXIF orientation found (1..=8; 1 when absent).
    pub orientation: u8,
    /// The container already orients the pixels (HEIF `irot`/`imir`): EXIF must not be applied.
    pub container_oriented: bool,
    /// Pixels of a buffer the decoder allocates besides the stored frame (a GIF whose first
    /// frame does not match its logical screen is decoded into a frame-sized buffer first).
    extra_pixels: u64,
    jpeg: Option<JpegHeader>,
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

    /// The EXIF orientation the engine must still apply to the decoded pixels.
    pub fn orientation_to_apply(&self) -> u8 {
        if self.container_oriented {
            1
        } else {
            self.orientation
        }
    }
}

/// How the decoded samples are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One gray channel.
    Gray,
    /// Gray + alpha.
    GrayAlpha,
    /// R, G, B.
    Rgb,
    /// R, G, B, unassociated alpha.
    Rgba,
    /// C, M, Y, K; `inverted` when 0 means full ink (Adobe JPEGs).
    Cmyk {
        /// Adobe-style inverted CMYK.
        inverted: bool,
    },
}

impl Layout {
    /// Samples per pixel.
    pub fn channels(self) -> usize {
        match self {
            Layout::Gray => 1,
            Layout::GrayAlpha => 2,
            Layout::Rgb => 3,
            Layout::Rgba | Layout::Cmyk { .. } => 4,
        }
    }

    /// Whether the layout carries alpha.
    pub fn has_alpha(self) -> bool {
        matches!(self, Layout::GrayAlpha | Layout::Rgba)
    }
}

/// Decoded samples at their stored depth.
#[derive(Debug, Clone)]
pub enum Samples {
    /// 8 bits per sample.
    U8(Vec<u8>),
    /// 16 bits per sample, native endian, full range.
    U16(Vec<u16>),
}

/// One decoded frame, not yet colour managed or oriented.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Pixel width (after any DCT-domain scaling).
    pub width: u32,
    /// Pixel height (after any DCT-domain scaling).
    pub height: u32,
    /// Channel layout.
    pub layout: Layout,
    /// The samples, row-major, no padding.
    pub samples: Samples,
    /// Embedded ICC profile, if any.
    pub icc: Option<Vec<u8>>,
    /// Colour signalled by code points (HEIF/AVIF `nclx`); used only when there is no ICC.
    pub nclx: Option<Nclx>,
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
        orientation: 1,
        container_oriented: false,
        extra_pixels: 0,
        jpeg: None,
    };
    match format {
        SourceFormat::Jpeg => {
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
        }
        SourceFormat::Png => {
            // IHDR is always the first chunk: read the size before the decoder does anything.
            if bytes.len() < 24 || &bytes[12..16] != b"IHDR" {
                return Err(RenderError::Undecodable("PNG without an IHDR chunk".into()));
            }
            probe.width = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
            probe.height = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
            check_dimensions(probe.width, probe.height, limits)?;
            probe.frames = count_apng_frames(bytes);
            check_frames(probe.frames, limits)?;
            let mut dec = PngDecoder::new(Cursor::new(bytes)).map_err(image_error)?;
            probe.orientation = exif_orientation(dec.orientation().ok());
        }
        SourceFormat::Gif => {
            if bytes.len() < 13 {
                return Err(RenderError::Truncated("GIF header is incomplete".into()));
            }
            probe.width = u32::from(u16::from_le_bytes([bytes[6], bytes[7]]));
            probe.height = u32::from(u16::from_le_bytes([bytes[8], bytes[9]]));
            check_dimensions(probe.width, probe.height, limits)?;
            let gif = scan_gif(bytes, limits)?;
            probe.frames = gif.frames;
            // image-rs decodes a first frame that does not span the screen's width (or leaves
            // it) into a buffer of the frame's own size, which the screen size does not bound.
            if let Some((left, top, w, h)) = gif.first {
                let fits = left == 0 && w == probe.width && top + h <= probe.height;
                if !fits {
                    probe.extra_pixels = u64::from(w) * u64::from(h);
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
        }
        SourceFormat::Webp => {
            // Count the animation frames from the chunk headers before the decoder parses
            // anything else.
            probe.frames = count_webp_frames(bytes, limits.max_frames);
            check_frames(probe.frames, limits)?;
            let mut dec = WebPDecoder::new(Cursor::new(bytes)).map_err(image_error)?;
            (probe.width, probe.height) = dec.dimensions();
            check_dimensions(probe.width, probe.height, limits)?;
            probe.orientation = exif_orientation(dec.orientation().ok());
        }
        SourceFormat::Tiff => {
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
        }
        SourceFormat::Avif | SourceFormat::Heic => {
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
        }
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
            decode_jpeg(bytes, header, eighths)
        }
        SourceFormat::Png => {
            let dec = PngDecoder::new(Cursor::new(bytes)).map_err(image_error)?;
            decode_with_image(dec)
        }
        SourceFormat::Gif => {
            let dec = GifDecoder::new(Cursor::new(bytes)).map_err(image_error)?;
            decode_with_image(dec)
        }
        SourceFormat::Webp => {
            let dec = WebPDecoder::new(Cursor::new(bytes)).map_err(image_error)?;
            decode_with_image(dec)
        }
        SourceFormat::Tiff => decode_tiff(bytes),
        SourceFormat::Avif | SourceFormat::Heic => decode_heif(bytes),
    }
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

fn decode_jpeg(bytes: &[u8], header: &JpegHeader, eighths: u32) -> Result<Decoded, RenderError> {
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

fn decode_tiff(bytes: &[u8]) -> Result<Decoded, RenderError> {
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

fn decode_heif(bytes: &[u8]) -> Result<Decoded, RenderError> {
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

fn jpeg_error(err: turbojpeg::Error) -> RenderError {
    RenderError::Undecodable(err.to_string())
}

/// What a JPEG's marker segments say.
#[derive(Debug, Clone)]
struct JpegHeader {
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
    let mut icc_chunks: Vec<(u8, Vec<u8>)> = Vec::new();
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
                icc_chunks.push((seg[12], seg[14..].to_vec()));
            }
            0xEE if seg.starts_with(b"Adobe") => h.adobe = true,
            _ => {}
        }
        pos = seg_end;
        if marker == 0xDA {
            if !seen_sof {
                return Err(RenderError::Undecodable(
                    "JPEG scan before its frame".into(),
                ));
            }
            // Entropy-coded data: 0xFF is followed by 0x00 (stuffing) or RSTn inside it; any
            // other marker ends the scan.
            loop {
                match data[pos..].iter().position(|&b| b == 0xFF) {
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
    if !icc_chunks.is_empty() {
        icc_chunks.sort_by_key(|(seq, _)| *seq);
        h.icc = Some(icc_chunks.into_iter().flat_map(|(_, c)| c).collect());
    }
    Ok(h)
}

/// Count GIF image descriptors, stopping once `max + 1` are seen. Walks the block structure
/// without decompressing anything.
/// What [`scan_gif`] finds without decoding.
struct GifScan {
    /// Frames counted (stops one past the limit).
    frames: u32,
    /// The first frame's left, top, width and height.
    first: Option<(u32, u32, u32, u32)>,
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
    loop {
        match data.get(pos) {
            None => {
                // A GIF without its trailer still renders if a frame was seen; browsers accept it.
                return if frames > 0 {
                    Ok(GifScan { frames, first })
                } else {
                    Err(truncated())
                };
            }
            Some(0x3B) => return Ok(GifScan { frames, first }),
            Some(0x21) => {
                pos = skip_sub_blocks(pos + 2).ok_or_else(truncated)?;
            }
            Some(0x2C) => {
                frames += 1;
                if frames > max {
                    return Ok(GifScan { frames, first });
                }
                let flags = *data.get(pos + 9).ok_or_else(truncated)?;
                let field =
                    |i: usize| u32::from(u16::from_le_bytes([data[pos + i], data[pos + i + 1]]));
                let (left, top, w, h) = (field(1), field(3), field(5), field(7));
                check_dimensions(w, h, limits)?;
                first.get_or_insert((left, top, w, h));
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

/// APNG frame count from the `acTL` chunk (which must precede the image data); 1 for a plain
/// PNG. Only chunk headers are read.
fn count_apng_frames(data: &[u8]) -> u32 {
    let mut pos = 8;
    while pos + 8 <= data.len() {
        let len = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        let kind = &data[pos + 4..pos + 8];
        if kind == b"IDAT" || kind == b"IEND" {
            break;
        }
        if kind == b"acTL" && pos + 12 <= data.len() {
            let n =
                u32::from_be_bytes([data[pos + 8], data[pos + 9], data[pos + 10], data[pos + 11]]);
            return n.max(1);
        }
        // length + type + data + CRC
        pos = pos.saturating_add(12).saturating_add(len as usize);
    }
    1
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
        assert_eq!(sniff(b"<svg xmlns="), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn rejects_empty_input_as_unsupported() {
        let err = probe(&[], &Limits::default()).unwrap_err();
        assert_eq!(err.code(), shared::error::ErrorCode::UnsupportedFormat);
    }

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
        assert_eq!(count_apng_frames(&plain), 1);
        png.extend(chunk(b"acTL", &[0, 0, 0, 12, 0, 0, 0, 0]));
        png.extend(chunk(b"IDAT", &[0; 3]));
        assert_eq!(count_apng_frames(&png), 12);
    }

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
