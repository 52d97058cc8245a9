//! HEIF containers (AVIF and HEIC) through libheif.

use libheif_rs::HeifContext;

use super::super::frame::{ContentLight, Nclx};
use super::{
    Decoded, Layout, Limits, Probe, RenderError, Samples, SourceFormat, check_dimensions,
    check_frames,
};
use super::{heif_geometry, heif_ycc};

/// Displayed size, frames (items or sequence samples) and the `ispe` size, from libheif; the
/// crop and orientation of the primary image from its transformative properties
/// ([`heif_geometry`]).
pub(super) fn probe(bytes: &[u8], limits: &Limits, probe: &mut Probe) -> Result<(), RenderError> {
    // Sequence samples first, from the box headers: too many is `too_many_frames`, before
    // libheif's own sequence limit would call it a security limit.
    let samples = count_isobmff_samples(bytes);
    check_frames(samples, limits)?;
    let geometry = heif_geometry::read(bytes)?;
    let hidden = geometry.as_ref().map_or(&[][..], |g| &g.hidden[..]);
    let ctx = context(bytes, limits, hidden)?;
    let handle = ctx.primary_image_handle().map_err(heif_error)?;
    // The container's transforms are authoritative; EXIF orientation is never read.
    probe.container_oriented = true;
    if let Some(g) = &geometry {
        // libheif, handed the file without its transformative properties, sizes the primary
        // as its coded frame: it must have read the same item and size as we did.
        let (w, h) = g.coded;
        if handle.item_id() != g.primary || (handle.width(), handle.height()) != (w, h) {
            return Err(RenderError::Undecodable(format!(
                "libheif reads the primary image as item {} of {}x{}, the properties say item {} \
                 of {}x{}",
                handle.item_id(),
                handle.width(),
                handle.height(),
                g.primary,
                w,
                h
            )));
        }
        check_dimensions(w, h, limits)?;
        probe.width = g.crop.width;
        probe.height = g.crop.height;
        probe.container_orientation = g.orientation;
        // libheif decodes the whole coded frame; the crop is copied out of it.
        if (g.crop.width, g.crop.height) != g.coded {
            probe.extra_pixels = u64::from(w) * u64::from(h);
        }
    } else {
        probe.width = handle.width();
        probe.height = handle.height();
    }
    probe.heif = geometry;
    check_dimensions(probe.width, probe.height, limits)?;
    // Frames: the top-level images (a burst or collection), or the samples of an image
    // sequence track (animated AVIF/HEIF), whichever is more.
    let items = u32::try_from(ctx.image_ids().len()).unwrap_or(u32::MAX);
    probe.frames = items.max(samples).max(1);
    check_frames(probe.frames, limits)?;
    check_dimensions(
        u32::try_from(handle.ispe_width()).unwrap_or(0),
        u32::try_from(handle.ispe_height()).unwrap_or(0),
        limits,
    )?;
    Ok(())
}

/// libheif's security limits for an input under `limits`. libheif checks them while it parses
/// (item, reference and box counts, profile and item sizes) and before every allocation (image
/// planes, compressed data), so an image whose header the probe accepted but whose decoding
/// would allocate far more (a `grid` item with a small `ispe` and a huge grid descriptor, an
/// alpha item larger than its image) fails with a security-limit error instead.
///
/// - `max_image_size_pixels`: `max_pixels`, checked for every plane libheif allocates (the grid
///   canvas included), not only for the declared size the probe saw.
/// - `max_memory_block_size`: one allocation, which includes one image plane: at most the
///   interleaved 16-bit RGBA output of a `max_pixels` image (8 bytes per pixel) plus
///   `max_input_bytes` (rounding of plane sizes; no item data is larger than the input).
///   An item's data alone is bounded by the input size anyway.
/// - `max_total_memory`: every allocation alive at once, per context: the decoded planes (at
///   most 8 bytes per pixel: three 16-bit planes and a 16-bit alpha) and the interleaved
///   RGB(A) the colour conversion writes (at most 8 more), so 16 bytes per pixel, plus
///   `max_input_bytes` for the compressed data.
/// - `max_sequence_frames`: `max_frames` (the probe counts the samples first, so an image
///   sequence over the limit is `too_many_frames`).
/// - `max_color_profile_size`: 4 MiB, the bound on ICC profiles of the other formats.
/// - `max_number_of_tiles`: 4096, for `tili` tiled and uncompressed (`unci`) images, whose
///   tile tables libheif allocates up front: 4096 tiles of 256x256 are 268 MP. `grid` tiles are
///   references, bounded by `max_items`.
/// - `max_items`: libheif's 1000, which also bounds the references of one item (a grid's
///   tiles: an iPhone photo has 48).
/// - `max_children_per_box` (100), `max_iloc_extents_per_item` (32), `max_components` (256,
///   uncompressed images only), `max_size_entity_group` (64), the sample-description and brand
///   counts: libheif's defaults, each already a few kilobytes of parse state at most.
fn security_limits(limits: &Limits) -> libheif_rs::SecurityLimits {
    let mut s = libheif_rs::SecurityLimits::new();
    s.set_max_image_size_pixels(limits.max_pixels);
    s.set_max_memory_block_size(
        limits
            .max_pixels
            .saturating_mul(8)
            .saturating_add(limits.max_input_bytes),
    );
    s.set_max_total_memory(
        limits
            .max_pixels
            .saturating_mul(16)
            .saturating_add(limits.max_input_bytes),
    );
    s.set_max_sequence_frames(limits.max_frames);
    s.set_max_color_profile_size(MAX_COLOR_PROFILE_BYTES);
    s.set_max_number_of_tiles(MAX_TILES);
    s.set_max_items(MAX_ITEMS);
    s
}

/// Largest ICC profile libheif reads: 4 MiB, as for the other formats.
const MAX_COLOR_PROFILE_BYTES: u32 = 4 << 20;
/// Most `tili`/`unci` tiles (see [`security_limits`]).
const MAX_TILES: u64 = 4096;
/// Most items, and most references from one item (see [`security_limits`]).
const MAX_ITEMS: u32 = 1000;

/// A context reading `bytes` under [`security_limits`]: the limits are set before anything is
/// parsed. The transformative properties whose type fields are at `hidden` are shown to
/// libheif as `free` boxes; the engine applies them itself ([`heif_geometry`]). libheif sizes
/// items after their transforms and would otherwise fail on valid files: 1.23.1 bounds the
/// decoder's frame by the cropped size instead of the coded one (strukturag/libheif#1856,
/// fixed upstream after that release), so a strongly cropped image fails, and a grid whose
/// tiles carry `irot` (libavif 0.11 writes them) fails its "tiles cover the image" check.
fn context<'a>(
    bytes: &'a [u8],
    limits: &Limits,
    hidden: &[usize],
) -> Result<HeifContext<'a>, RenderError> {
    let mut ctx: HeifContext<'a> = HeifContext::new().map_err(heif_error)?;
    ctx.set_security_limits(&security_limits(limits))
        .map_err(heif_error)?;
    if hidden.is_empty() {
        ctx.read_bytes(bytes).map_err(heif_error)?;
    } else {
        ctx.read_reader(Box::new(TransformsHidden {
            bytes,
            at: 0,
            hidden: hidden.to_vec(),
        }))
        .map_err(heif_error)?;
    }
    Ok(ctx)
}

/// The input as libheif reads it, with the four bytes at each of `hidden` reading `free`.
struct TransformsHidden<'a> {
    bytes: &'a [u8],
    at: u64,
    hidden: Vec<usize>,
}

impl libheif_rs::Reader for TransformsHidden<'_> {
    fn position(&mut self) -> u64 {
        self.at
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = usize::try_from(self.at).unwrap_or(usize::MAX);
        let src = self.bytes.get(start..).unwrap_or(&[]);
        let n = buf.len().min(src.len());
        buf[..n].copy_from_slice(&src[..n]);
        for &h in &self.hidden {
            for (i, b) in b"free".iter().enumerate() {
                if let Some(d) = (h + i)
                    .checked_sub(start)
                    .filter(|&d| d < n)
                    .and_then(|d| buf.get_mut(d))
                {
                    *d = *b;
                }
            }
        }
        self.at += n as u64;
        if n < buf.len() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(n)
    }

    fn seek(&mut self, position: u64) -> std::io::Result<u64> {
        self.at = position.min(self.bytes.len() as u64);
        Ok(self.at)
    }

    fn wait_for_file_size(&mut self, target_size: u64) -> libheif_rs::ReaderGrowStatus {
        if target_size > self.bytes.len() as u64 {
            libheif_rs::ReaderGrowStatus::SizeBeyondEof
        } else {
            libheif_rs::ReaderGrowStatus::SizeReached
        }
    }
}

/// Limited ("video") range of `bits`-bit luma: black at 16 and white at 235, scaled to the
/// depth (ITU-T H.273 / BT.601).
#[derive(Clone, Copy)]
struct LimitedRange {
    black: u32,
    span: u32,
    max: u32,
}

impl LimitedRange {
    fn new(bits: u32) -> Self {
        let scale = 1_u32 << (bits - 8);
        Self {
            black: 16 * scale,
            span: 219 * scale,
            max: (1_u32 << bits) - 1,
        }
    }

    /// A limited-range sample to full range, rounded and clamped.
    fn expand(self, v: u32) -> u32 {
        let v = v.saturating_sub(self.black);
        ((v * self.max + self.span / 2) / self.span).min(self.max)
    }
}

/// Decode the primary image under the same [`security_limits`] as the probe: the coded frame
/// without libheif's transforms, cropped to the probe's clean aperture while it is copied out.
/// The orientation is left to the engine (the probe's `container_orientation`).
pub(super) fn decode(bytes: &[u8], probe: &Probe) -> Result<Decoded, RenderError> {
    decode_with(bytes, probe, true).map(|(decoded, _)| decoded)
}

/// [`decode`], converting 8-bit 4:2:0 through [`heif_ycc`] when `own_ycc` (its tests compare
/// both ways); true beside the frame when it did.
pub(super) fn decode_with(
    bytes: &[u8],
    probe: &Probe,
    own_ycc: bool,
) -> Result<(Decoded, bool), RenderError> {
    use libheif_rs::{Chroma, ColorSpace, RgbChroma};
    let lib = libheif_rs::LibHeif::new();
    let geometry = probe.heif.as_ref();
    let hidden = geometry.map_or(&[][..], |g| &g.hidden[..]);
    let mut ctx = context(bytes, &probe.limits, hidden)?;
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
                light: ContentLight::default(),
            }
        })
    } else {
        None
    };
    // PQ and HLG: the static HDR metadata (`clli`, `mdcv`) says how bright the content gets.
    let nclx = nclx.map(|mut n| {
        if matches!(n.transfer, 16 | 18) {
            n.light = content_light(bytes);
        }
        n
    });
    // More than 8 bits (10-bit AVIF, HDR) are kept at 16 bits through the colour transform.
    let deep = handle.luma_bits_per_pixel() > 8;
    // libheif's monochrome-to-RGB conversion copies the luma samples as they are, limited
    // ("video") range included, where its YCbCr conversion expands the range: a limited-range
    // monochrome image is expanded below while its samples are copied out, or its blacks would
    // be lifted to code 16 and its whites dimmed to 235.
    let expand_limited_range = nclx.as_ref().is_some_and(|n| !n.full_range)
        && matches!(
            handle.preferred_decoding_colorspace(),
            Ok(ColorSpace::Monochrome)
        );
    // 8-bit 4:2:0 without alpha (every iPhone photo): the engine converts the planes itself.
    if own_ycc && !alpha && !deep && !expand_limited_range {
        let native = handle.preferred_decoding_colorspace();
        let item_nclx = handle.color_profile_nclx();
        let coefficients = ycc_coefficients(item_nclx.as_ref());
        // Without an nclx property, AV1 brings its own from the sequence header, which
        // libheif would convert to sRGB's before returning the planes: those keep libheif's
        // conversion. libheif's HEVC decoder reports none.
        let known_nclx = item_nclx.is_some() || probe.format == SourceFormat::Heic;
        if let (Ok(ColorSpace::YCbCr(Chroma::C420)), Some(_), true) =
            (native, coefficients, known_nclx)
            && let Some(samples) = decode_ycc420(&lib, &handle, item_nclx, geometry, probe)?
        {
            let decoded = Decoded {
                width: probe.width,
                height: probe.height,
                layout: Layout::Rgb,
                samples: Samples::U8(samples),
                icc,
                nclx,
            };
            return Ok((decoded, true));
        }
    }
    let chroma = match (alpha, deep) {
        (false, false) => RgbChroma::Rgb,
        (true, false) => RgbChroma::Rgba,
        (false, true) => RgbChroma::HdrRgbLe,
        (true, true) => RgbChroma::HdrRgbaLe,
    };
    // The coded frame, alpha included, without irot/imir/clap: one crop and one orientation
    // below transform colour and alpha alike.
    let mut options = libheif_rs::DecodingOptions::new()
        .ok_or_else(|| RenderError::Undecodable("libheif decoding options".into()))?;
    options.set_ignore_transformations(true);
    let image = lib
        .decode(&handle, ColorSpace::Rgb(chroma), Some(options))
        .map_err(heif_error)?;
    let planes = image.planes();
    let plane = planes
        .interleaved
        .ok_or_else(|| RenderError::Undecodable("libheif returned no interleaved plane".into()))?;
    let channels = if alpha { 4 } else { 3 };
    let crop = crop_window(geometry, probe, (plane.width, plane.height))?;
    let (w, h) = (crop.width as usize, crop.height as usize);
    let (x0, y0) = (crop.x as usize, crop.y as usize);
    let samples = if deep {
        // Little-endian samples of `bits_per_pixel` significant bits: scale to full 16 bits.
        let bits = u32::from(plane.bits_per_pixel.clamp(9, 16));
        let max = (1_u32 << bits) - 1;
        let range = LimitedRange::new(bits);
        let row = w * channels * 2;
        let mut out = Vec::with_capacity(w * h * channels);
        for y in y0..y0 + h {
            let start = y * plane.stride + x0 * channels * 2;
            out.extend(
                plane.data[start..start + row]
                    .chunks_exact(2)
                    .enumerate()
                    .map(|(i, b)| {
                        let mut v = u32::from(u16::from_le_bytes([b[0], b[1]])).min(max);
                        if expand_limited_range && !(alpha && i % 4 == 3) {
                            v = range.expand(v);
                        }
                        u16::try_from((v * 65_535 + max / 2) / max).unwrap_or(u16::MAX)
                    }),
            );
        }
        Samples::U16(out)
    } else {
        let row = w * channels;
        let mut out = Vec::with_capacity(row * h);
        for y in y0..y0 + h {
            let start = y * plane.stride + x0 * channels;
            out.extend_from_slice(&plane.data[start..start + row]);
        }
        if expand_limited_range {
            let range = LimitedRange::new(8);
            for (i, v) in out.iter_mut().enumerate() {
                if !(alpha && i % 4 == 3) {
                    *v = u8::try_from(range.expand(u32::from(*v))).unwrap_or(u8::MAX);
                }
            }
        }
        Samples::U8(out)
    };
    let decoded = Decoded {
        width: crop.width,
        height: crop.height,
        layout: if alpha { Layout::Rgba } else { Layout::Rgb },
        samples,
        icc,
        nclx,
    };
    Ok((decoded, false))
}

/// The window of the decoded `coded` frame the image shows: the probe's clean aperture,
/// checked against what libheif decoded.
fn crop_window(
    geometry: Option<&heif_geometry::Geometry>,
    probe: &Probe,
    coded: (u32, u32),
) -> Result<heif_geometry::Rect, RenderError> {
    let crop = match geometry {
        Some(g) => {
            if coded != g.coded {
                return Err(RenderError::Undecodable(format!(
                    "libheif decoded {}x{}, the ispe says {}x{}",
                    coded.0, coded.1, g.coded.0, g.coded.1
                )));
            }
            g.crop
        }
        None => heif_geometry::Rect {
            x: 0,
            y: 0,
            width: coded.0,
            height: coded.1,
        },
    };
    if (crop.width, crop.height) != (probe.width, probe.height) {
        return Err(RenderError::Undecodable(format!(
            "libheif decoded {}x{}, the header says {}x{}",
            crop.width, crop.height, probe.width, probe.height
        )));
    }
    Ok(crop)
}

/// The YCbCr coefficients libheif's 4:2:0 conversion would use for an image with `nclx`, if
/// it would use that conversion ([`heif_ycc::Coefficients::new`]).
fn ycc_coefficients(nclx: Option<&libheif_rs::ColorProfileNCLX>) -> Option<heif_ycc::Coefficients> {
    heif_ycc::Coefficients::new(
        nclx.map(|n| (n.matrix_coefficients() as u16, n.full_range_flag() != 0)),
    )
}

/// The RGB samples of the primary image's window through [`heif_ycc`] (`item_nclx`: the
/// item's nclx property), or `None` when the decoded planes are not what it converts (the
/// caller then asks libheif for RGB).
fn decode_ycc420(
    lib: &libheif_rs::LibHeif,
    handle: &libheif_rs::ImageHandle,
    item_nclx: Option<libheif_rs::ColorProfileNCLX>,
    geometry: Option<&heif_geometry::Geometry>,
    probe: &Probe,
) -> Result<Option<Vec<u8>>, RenderError> {
    use libheif_rs::{Chroma, ColorSpace};
    let mut options = libheif_rs::DecodingOptions::new()
        .ok_or_else(|| RenderError::Undecodable("libheif decoding options".into()))?;
    options.set_ignore_transformations(true);
    // libheif converts the planes to the output nclx (sRGB's by default) when the image's
    // differs: asking for the image's own keeps them as decoded.
    let had_item_nclx = item_nclx.is_some();
    options.set_output_image_nclx_profile(item_nclx);
    let image = lib
        .decode(handle, ColorSpace::YCbCr(Chroma::C420), Some(options))
        .map_err(heif_error)?;
    let decoded_nclx = image.color_profile_nclx();
    // Without an nclx property, planes that come back tagged with sRGB's nclx may have been
    // converted to it from the codec's: only libheif's own conversion is then certain.
    let srgb = |n: &libheif_rs::ColorProfileNCLX| {
        (
            n.color_primaries() as u16,
            n.transfer_characteristics() as u16,
            n.matrix_coefficients() as u16,
            n.full_range_flag(),
        ) == (1, 13, 6, 1)
    };
    if !had_item_nclx && decoded_nclx.as_ref().is_some_and(srgb) {
        return Ok(None);
    }
    // The coefficients follow the decoded image's nclx, as libheif's own conversion does.
    let Some(coefficients) = ycc_coefficients(decoded_nclx.as_ref()) else {
        return Ok(None);
    };
    if image.color_space() != Some(ColorSpace::YCbCr(Chroma::C420)) {
        return Ok(None);
    }
    let planes = image.planes();
    let (Some(y), Some(cb), Some(cr)) = (planes.y, planes.cb, planes.cr) else {
        return Ok(None);
    };
    if [&y, &cb, &cr]
        .iter()
        .any(|p| p.bits_per_pixel != 8 || p.storage_bits_per_pixel != 8)
    {
        return Ok(None);
    }
    let crop = crop_window(geometry, probe, (y.width, y.height))?;
    fn plane<'a>(p: &libheif_rs::Plane<&'a [u8]>) -> heif_ycc::Plane<'a> {
        heif_ycc::Plane {
            data: p.data,
            stride: p.stride,
            width: p.width as usize,
            height: p.height as usize,
        }
    }
    Ok(heif_ycc::convert(
        plane(&y),
        plane(&cb),
        plane(&cr),
        crop,
        coefficients,
    ))
}

/// The primary image's `clli` (MaxCLL) and `mdcv` (mastering peak) properties, which
/// libheif-rs does not expose: read through libheif's C API on a second, header-only parse of
/// the same bytes (the first parse, under [`security_limits`], already accepted them; this
/// one runs under libheif's default limits). Anything that fails reads as absent; the values
/// are checked for sense where they are used (`hdr::content_peak`).
#[allow(unsafe_code)]
fn content_light(bytes: &[u8]) -> ContentLight {
    use libheif_sys as lh;
    let mut light = ContentLight::default();
    // SAFETY: the context is allocated and freed here, and reads `bytes`, which outlive it
    // (`without_copy`); the handle is released before the context is freed; the two out
    // structs are plain data that libheif fills only when it returns non-zero.
    unsafe {
        let ctx = lh::heif_context_alloc();
        if ctx.is_null() {
            return light;
        }
        let read = lh::heif_context_read_from_memory_without_copy(
            ctx,
            bytes.as_ptr().cast(),
            bytes.len(),
            std::ptr::null(),
        );
        let mut handle = std::ptr::null_mut();
        if read.code == lh::heif_error_code_heif_error_Ok
            && lh::heif_context_get_primary_image_handle(ctx, &raw mut handle).code
                == lh::heif_error_code_heif_error_Ok
            && !handle.is_null()
        {
            let mut clli = lh::heif_content_light_level {
                max_content_light_level: 0,
                max_pic_average_light_level: 0,
            };
            if lh::heif_image_handle_get_content_light_level(handle, &raw mut clli) != 0 {
                light.max_cll = Some(clli.max_content_light_level);
            }
            let mut mdcv = lh::heif_mastering_display_colour_volume {
                display_primaries_x: [0; 3],
                display_primaries_y: [0; 3],
                white_point_x: 0,
                white_point_y: 0,
                max_display_mastering_luminance: 0,
                min_display_mastering_luminance: 0,
            };
            if lh::heif_image_handle_get_mastering_display_colour_volume(handle, &raw mut mdcv) != 0
            {
                // Stored in units of 0.0001 cd/m².
                light.mastering_peak = Some(mdcv.max_display_mastering_luminance / 10_000);
            }
            lh::heif_image_handle_release(handle);
        }
        lh::heif_context_free(ctx);
    }
    light
}

fn heif_error(err: libheif_rs::HeifError) -> RenderError {
    use libheif_rs::HeifErrorSubCode as Sub;
    let msg = format!("{err}");
    // Every exceeded security limit carries this sub-code (with `Memory_allocation_error` or
    // `Invalid_input` as the code).
    if matches!(err.sub_code, Sub::SecurityLimitExceeded) {
        RenderError::TooLarge(msg)
    } else if msg.contains("nd of data") || msg.contains("EOF") || msg.contains("truncated") {
        RenderError::Truncated(msg)
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
    fn limited_range_luma_expands_to_full_range() {
        let r8 = LimitedRange::new(8);
        assert_eq!(
            [0, 16, 126, 235, 255].map(|v| r8.expand(v)),
            [0, 0, 128, 255, 255]
        );
        let r10 = LimitedRange::new(10);
        assert_eq!(
            [0, 64, 502, 940, 1023].map(|v| r10.expand(v)),
            [0, 0, 512, 1023, 1023]
        );
    }

    #[test]
    #[allow(unsafe_code)]
    fn the_security_limits_we_pass_have_every_field_the_library_reads() {
        // SAFETY: libheif returns a pointer to its static global limits; only a field is read.
        let version = unsafe { (*libheif_sys::heif_get_global_security_limits()).version };
        // libheif reads the fields of the version a struct names, and ours start as a copy of
        // the global limits: the binding must be at least that version (4 is libheif 1.23's,
        // whose last fields are `max_bad_pixels` .. `parent`).
        let ours = libheif_rs::SecurityLimits::new();
        let _fields_of_version_4 = |l: libheif_sys::heif_security_limits| {
            (
                l.max_bad_pixels,
                l.max_iso23001_17_pixel_size_bytes,
                l.parent,
            )
        };
        assert!(version <= 4, "libheif's limits are version {version}");
        assert_eq!(
            ours.max_items(),
            security_limits(&Limits::default()).max_items()
        );
    }

    #[test]
    fn security_limits_follow_the_engine_limits() {
        let d = security_limits(&Limits::default());
        assert_eq!(d.max_image_size_pixels(), 100_000_000);
        assert_eq!(d.max_memory_block_size(), 800_000_000 + (64 << 20));
        assert_eq!(d.max_total_memory(), 1_600_000_000 + (64 << 20));
        assert_eq!(d.max_sequence_frames(), 1_000);
        assert_eq!(d.max_color_profile_size(), 4 << 20);
        assert_eq!(d.max_number_of_tiles(), 4096);
        assert_eq!(d.max_items(), 1000);
        // Left at libheif's defaults.
        let lib = libheif_rs::SecurityLimits::new();
        assert_eq!(d.max_children_per_box(), lib.max_children_per_box());
        assert_eq!(
            d.max_iloc_extents_per_item(),
            lib.max_iloc_extents_per_item()
        );
        assert_eq!(d.max_components(), lib.max_components());
        // Tighter engine limits give tighter libheif limits; no limit is ever 0 (disabled).
        let tight = security_limits(&Limits {
            max_pixels: 1_000_000,
            max_dimension: 2000,
            max_input_bytes: 1 << 20,
            max_frames: 10,
            ..Limits::default()
        });
        assert_eq!(tight.max_image_size_pixels(), 1_000_000);
        assert_eq!(tight.max_memory_block_size(), 8_000_000 + (1 << 20));
        assert_eq!(tight.max_total_memory(), 16_000_000 + (1 << 20));
        assert_eq!(tight.max_sequence_frames(), 10);
        let huge = security_limits(&Limits {
            max_pixels: u64::MAX,
            max_dimension: u32::MAX,
            max_input_bytes: u64::MAX,
            max_frames: u32::MAX,
            ..Limits::default()
        });
        assert_eq!(
            huge.max_total_memory(),
            u64::MAX,
            "saturates, never wraps to 0"
        );
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
