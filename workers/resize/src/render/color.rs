//! Colour management: any decoded layout and depth to 8-bit sRGB (RGB or RGBA).
//!
//! Invariants: an embedded ICC profile is applied with lcms2 (perceptual intent); untagged
//! RGB/gray is taken as sRGB; a profile whose colour space does not match the samples (e.g. an
//! RGB profile on a gray JPEG) is ignored the way browsers ignore it; 16-bit samples are reduced
//! to 8 bits *after* the conversion (lcms reads 16 bits and writes 8), so no precision is lost
//! before the transform; alpha is carried through unchanged (scaled to 8 bits).
//!
//! HEIF/AVIF may signal colour with ITU-T H.273 code points (an `nclx` colour box) instead of
//! an ICC profile: colour primaries, transfer characteristics and matrix coefficients. libheif
//! applies the matrix (YCbCr → RGB); here the primaries and transfer become an RGB
//! matrix-shaper profile built with lcms2 ([`Nclx::profile`]), and the pixels are converted to
//! sRGB like any tagged image (Display P3, BT.2020, DCI-P3, BT.601, ...). Unspecified code points
//! mean BT.709 primaries and the sRGB curve; the BT.709/601/2020 curves are the inverse of
//! their camera OETF, as browsers apply them. PQ and HLG (HDR) frames are tone-mapped by
//! [`super::hdr`] instead (BT.2100 to display light, the BT.2390 EETF, gamut compression).
//!
//! CMYK without a profile (JPEG, TIFF, Adobe-inverted too) is converted through a press
//! profile shipped in the engine, as libvips does: `assets/profiles/prism-fogra39.icc`, built
//! with ArgyllCMS from Fogra's FOGRA39L characterisation data (offset on coated paper, ISO
//! 12647-2; freely redistributable, see `assets/profiles/README.md`). The manifest's colour
//! profile then reads [`PRESS_PROFILE_DESCRIPTION`].

use lcms2::{
    CIExyY, CIExyYTRIPLE, ColorSpaceSignature, DisallowCache, Flags, GlobalContext, InfoType,
    Intent, Locale, PixelFormat, Profile, Tag, TagSignature, ToneCurve, Transform,
};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex, OnceLock};

use super::RenderError;
pub use super::frame::Nclx;
use super::frame::{Decoded, Layout, Samples};
use super::hdr;
use super::resize::Raster;
use super::shaper::MatrixShaper;

/// Pixels per lcms call in the parallel conversion; large enough to amortise the call, small
/// enough to spread a big image over every core.
const CHUNK_PIXELS: usize = 64 * 1024;

/// Convert to 8-bit sRGB. Returns the raster and, for the manifest, the description of the
/// embedded ICC profile (if one was present and readable) or of the nclx code points.
///
/// # Errors
/// [`RenderError::InvalidColorProfile`] when lcms2 cannot build a transform from a profile it
/// could parse (a broken CMYK profile, say); unparseable profiles are ignored instead, because
/// the pixels are still meaningful as sRGB.
pub fn to_srgb8(decoded: Decoded) -> Result<(Raster, Option<String>), RenderError> {
    let (raster, description, deferred) = to_srgb8_or_defer(decoded, u64::MAX)?;
    debug_assert!(
        deferred.is_none(),
        "nothing is deferred without variants to convert"
    );
    Ok((raster, description))
}

/// A conversion to sRGB left for after the resize: applied in place to each variant resized
/// from the unconverted frame ([`Deferred::apply`]).
pub struct Deferred(Arc<ToSrgb>);

impl Deferred {
    /// Convert `raster` (8-bit RGB(A) in the source's colour space) to sRGB in place.
    pub fn apply(&self, raster: &mut Raster) {
        let channels = raster.channels;
        raster
            .data
            .par_chunks_mut(CHUNK_PIXELS * channels)
            .for_each(|c| self.0.in_place(c, channels));
    }
}

/// A conversion from one source profile to 8-bit sRGB: the engine's own for 8-bit RGB(A) with
/// a plain matrix-shaper profile ([`MatrixShaper`]), lcms for everything else.
enum ToSrgb {
    Shaper(Box<MatrixShaper>),
    Lcms(Transform<u8, u8, GlobalContext, DisallowCache>),
}

impl ToSrgb {
    /// Convert pixels whose input and output have the same bytes per pixel (8-bit RGB → RGB,
    /// RGBA → RGBA) in place.
    fn in_place(&self, pixels: &mut [u8], channels: usize) {
        match self {
            Self::Shaper(s) => s.apply(pixels, channels),
            Self::Lcms(t) => t.transform_in_place(pixels),
        }
    }

    /// Convert `src` into `dst`. A [`ToSrgb::Shaper`] is only built for 8-bit RGB(A) to the
    /// same layout, so its source and destination have the same size.
    fn pixels(&self, src: &[u8], dst: &mut [u8], channels: usize) {
        match self {
            Self::Shaper(s) => {
                dst.copy_from_slice(src);
                s.apply(dst, channels);
            }
            Self::Lcms(t) => t.transform_pixels(src, dst),
        }
    }
}

/// What identifies a conversion: a digest of the source profile (its ICC bytes, or the nclx
/// code points it was built from) and the pixel formats.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ProfileKey {
    profile: [u8; 32],
    layout: Layout,
    sixteen: bool,
    out_channels: usize,
}

/// How many conversions stay built. Building one from a table-based profile (CMYK, a v4
/// sRGB) samples the whole table and costs tens of milliseconds; photos from one camera or
/// phone share one profile, so the last few cover most of a batch. A few MB at most.
const CACHED_TRANSFORMS: usize = 8;

/// The conversions built lately, least recently used first.
static TRANSFORMS: Mutex<Vec<(ProfileKey, Arc<ToSrgb>)>> = Mutex::new(Vec::new());

/// The digest [`ProfileKey`] carries for an embedded ICC profile.
fn icc_digest(icc: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"icc\0")
        .chain_update(icc)
        .finalize()
        .into()
}

/// The digest [`ProfileKey`] carries for a profile built from nclx code points (only the
/// primaries and the transfer shape it).
fn nclx_digest(n: Nclx) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"nclx\0")
        .chain_update(n.primaries.to_le_bytes())
        .chain_update(n.transfer.to_le_bytes())
        .finalize()
        .into()
}

/// [`to_srgb8`], except that an 8-bit RGB(A) frame whose profile has sRGB's tone curves (Display
/// P3, the iPhone case; see [`has_srgb_curves`]) is returned *unconverted*, with the transform
/// to apply to what is resized from it, when the variants add up to at most half its pixels
/// (`variant_pixels`): converting a 12 MP photo costs more than converting its four variants.
/// With the same curves, resampling the source's values is resampling sRGB-encoded values, so
/// the variants stay as close to the reference as when converted first (SSIM-Y within 0.0002
/// on `iphone_7.heic`); other curves (gamma 1.8, linear, PQ, …) change what the filter
/// averages, and are converted first. Small frames, CMYK, gray and 16-bit input are too.
///
/// # Errors
/// As [`to_srgb8`].
pub fn to_srgb8_or_defer(
    decoded: Decoded,
    variant_pixels: u64,
) -> Result<(Raster, Option<String>, Option<Deferred>), RenderError> {
    let Decoded {
        width,
        height,
        layout,
        samples,
        icc,
        nclx,
    } = decoded;
    let alpha = layout.has_alpha();
    let out_channels = if alpha { 4 } else { 3 };
    let pixels = width as usize * height as usize;

    // PQ and HLG: tone-mapped to SDR, never through an lcms profile.
    if let Some((n, transfer)) = nclx
        .filter(|_| icc.is_none() && !matches!(layout, Layout::Cmyk { .. }))
        .and_then(|n| Some((n, hdr::Transfer::of(n)?)))
    {
        // Unknown primaries with an HDR transfer: BT.2100's own (BT.2020).
        let primaries = n.primaries().map_or(hdr::BT2020, |p| p.1);
        let raster = hdr::to_srgb8(
            width, height, layout, &samples, transfer, primaries, n.light,
        );
        return Ok((raster, Some(n.describe()), None));
    }

    let icc_profile = icc
        .as_deref()
        .and_then(|b| Some((Profile::new_icc(b).ok()?, icc_digest(b))));
    let (profile, description, is_srgb) = match (icc_profile, nclx) {
        (Some((p, digest)), _) => {
            // Profiles carry localised descriptions (Apple's Generic RGB lists a dozen); ask
            // for English, which lcms falls back from when absent.
            let d = p
                .info(InfoType::Description, Locale::new("en_US"))
                .map(|d| d.trim().to_owned());
            // An embedded sRGB profile needs no work; the common case for camera JPEGs.
            let srgb = d.as_deref().is_some_and(|d| d.starts_with("sRGB"));
            (Some((p, digest)), d, srgb)
        }
        (None, Some(n)) => {
            let srgb = n.is_srgb();
            let p = if srgb {
                None
            } else {
                n.profile().map(|p| (p, nclx_digest(n)))
            };
            // Code points we cannot build a profile for are treated as sRGB, and say so.
            let d = if srgb || p.is_some() {
                n.describe()
            } else {
                format!("{} (unsupported, treated as sRGB)", n.describe())
            };
            (p, Some(d), srgb)
        }
        (None, None) => (None, None, false),
    };
    let profile = profile.filter(|(p, _)| profile_matches(p, layout));
    if let (None, Layout::Cmyk { inverted }) = (&profile, layout) {
        let sixteen = matches!(samples, Samples::U16(_));
        let t = press_transform(inverted, sixteen)?;
        let data = apply(t, layout, &samples, pixels, out_channels);
        let raster = Raster {
            width,
            height,
            channels: out_channels,
            data,
        };
        return Ok((raster, Some(PRESS_PROFILE_DESCRIPTION.to_owned()), None));
    }
    let frame_pixels = u64::from(width) * u64::from(height);
    let deferrable = variant_pixels.saturating_mul(2) <= frame_pixels
        && matches!(layout, Layout::Rgb | Layout::Rgba);

    let data = match (profile, is_srgb, samples) {
        (Some((profile, digest)), false, Samples::U8(s))
            if deferrable && has_srgb_curves(&profile) =>
        {
            let t = srgb_transform(&profile, digest, layout, false, out_channels)?;
            let raster = Raster {
                width,
                height,
                channels: out_channels,
                data: s,
            };
            return Ok((raster, description, Some(Deferred(t))));
        }
        (Some((profile, digest)), false, samples) => {
            transform(&profile, digest, layout, samples, pixels, out_channels)?
        }
        // 8-bit RGB(A) that needs no transform is already the raster: keep the buffer.
        (_, _, Samples::U8(s)) if matches!(layout, Layout::Rgb | Layout::Rgba) => s,
        (_, _, samples) => {
            let mut out = vec![0_u8; pixels * out_channels];
            match &samples {
                Samples::U8(s) => untagged(s, layout, &mut out, |v| v),
                Samples::U16(s) => untagged(s, layout, &mut out, to8),
            }
            out
        }
    };
    Ok((
        Raster {
            width,
            height,
            channels: out_channels,
            data,
        },
        description,
        None,
    ))
}

/// Chromaticities: red, green, blue, white (x, y).
type Chromaticities = [(f64, f64); 4];

const D65: (f64, f64) = (0.3127, 0.3290);
const ILLUMINANT_C: (f64, f64) = (0.310, 0.316);

impl Nclx {
    /// Name and chromaticities of the colour primaries; `None` when not supported.
    pub(super) fn primaries(self) -> Option<(&'static str, Chromaticities)> {
        let bt709 = [(0.640, 0.330), (0.300, 0.600), (0.150, 0.060), D65];
        let bt601_525 = [(0.630, 0.340), (0.310, 0.595), (0.155, 0.070), D65];
        let p3 = [(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)];
        Some(match self.primaries {
            1 => ("BT.709", bt709),
            2 => ("unspecified (BT.709)", bt709),
            4 => (
                "BT.470 System M",
                [(0.67, 0.33), (0.21, 0.71), (0.14, 0.08), ILLUMINANT_C],
            ),
            5 => (
                "BT.601 625",
                [(0.64, 0.33), (0.29, 0.60), (0.15, 0.06), D65],
            ),
            6 => ("BT.601 525", bt601_525),
            7 => ("SMPTE 240M", bt601_525),
            8 => (
                "generic film",
                [(0.681, 0.319), (0.243, 0.692), (0.145, 0.049), ILLUMINANT_C],
            ),
            9 => (
                "BT.2020",
                [(0.708, 0.292), (0.170, 0.797), (0.131, 0.046), D65],
            ),
            11 => ("DCI-P3", [p3[0], p3[1], p3[2], (0.314, 0.351)]),
            12 => ("Display P3", [p3[0], p3[1], p3[2], D65]),
            22 => (
                "EBU Tech 3213",
                [(0.630, 0.340), (0.295, 0.605), (0.155, 0.077), D65],
            ),
            _ => return None,
        })
    }

    /// Name of the transfer characteristics; `None` when not supported.
    fn transfer_name(self) -> Option<&'static str> {
        Some(match self.transfer {
            1 => "BT.709",
            2 => "unspecified (sRGB)",
            4 => "gamma 2.2",
            5 => "gamma 2.8",
            6 => "BT.601",
            7 => "SMPTE 240M",
            8 => "linear",
            13 => "sRGB",
            14 => "BT.2020 10-bit",
            15 => "BT.2020 12-bit",
            16 => "PQ",
            18 => "HLG",
            _ => return None,
        })
    }

    /// Whether the code points mean sRGB (BT.709 primaries, sRGB curve), unspecified
    /// counting as sRGB: the pixels are then used as they are.
    pub fn is_srgb(self) -> bool {
        matches!(self.primaries, 1 | 2) && matches!(self.transfer, 2 | 13)
    }

    /// A short description for the manifest, e.g. `Display P3, sRGB transfer (nclx 12/13/6)`.
    pub fn describe(self) -> String {
        let code = |v: u16| {
            if v == u16::MAX {
                "?".to_owned()
            } else {
                v.to_string()
            }
        };
        let codes = format!(
            "nclx {}/{}/{}",
            code(self.primaries),
            code(self.transfer),
            code(self.matrix)
        );
        if self.is_srgb() {
            return format!("sRGB ({codes})");
        }
        let primaries = self.primaries().map_or_else(
            || format!("primaries {}", code(self.primaries)),
            |p| p.0.to_owned(),
        );
        let transfer = self.transfer_name().map_or_else(
            || format!("transfer {}", code(self.transfer)),
            str::to_owned,
        );
        format!("{primaries}, {transfer} transfer ({codes})")
    }

    /// The RGB matrix-shaper profile these code points describe; `None` for code points
    /// without a supported meaning, and for PQ and HLG (tone-mapped by [`super::hdr`]).
    pub fn profile(self) -> Option<Profile> {
        let (_, [r, g, b, w]) = self.primaries()?;
        let curve = self.tone_curve()?;
        let xy = |(x, y): (f64, f64)| CIExyY { x, y, Y: 1.0 };
        let primaries = CIExyYTRIPLE {
            Red: xy(r),
            Green: xy(g),
            Blue: xy(b),
        };
        Profile::new_rgb(&xy(w), &primaries, &[&curve, &curve, &curve]).ok()
    }

    /// Signal value → relative linear light, as an lcms tone curve.
    fn tone_curve(self) -> Option<ToneCurve> {
        // lcms parametric type 4: Y = (aX + b)^g for X >= d, Y = cX below.
        let bt709 = [1.0 / 0.45, 1.0 / 1.099, 0.099 / 1.099, 1.0 / 4.5, 0.081];
        let param = |p: &[f64]| ToneCurve::new_parametric(4, p).ok();
        match self.transfer {
            2 | 13 => param(&[2.4, 1.0 / 1.055, 0.055 / 1.055, 1.0 / 12.92, 0.04045]),
            1 | 6 | 14 | 15 => param(&bt709),
            7 => param(&[1.0 / 0.45, 1.0 / 1.1115, 0.1115 / 1.1115, 1.0 / 4.0, 0.0913]),
            4 => ToneCurve::new_parametric(1, &[2.2]).ok(),
            5 => ToneCurve::new_parametric(1, &[2.8]).ok(),
            8 => ToneCurve::new_parametric(1, &[1.0]).ok(),
            _ => None,
        }
    }
}

/// The press profile assumed for CMYK without an embedded profile.
const PRESS_PROFILE: &[u8] = include_bytes!("../../assets/profiles/prism-fogra39.icc");

/// What the manifest says of CMYK converted through [`PRESS_PROFILE`].
pub const PRESS_PROFILE_DESCRIPTION: &str = "no profile; assumed FOGRA39 (prism press profile)";

type PressSlot = OnceLock<Result<ToSrgb, String>>;
/// [`press_transform`]'s transforms, by `inverted * 2 + sixteen`.
static PRESS_TRANSFORMS: [PressSlot; 4] = [const { OnceLock::new() }; 4];

/// Build now what every process would otherwise build on its first use: the 8-bit CMYK
/// transforms through [`PRESS_PROFILE`] (plain, as TIFF stores CMYK, and inverted, as Adobe's
/// JPEGs do), about 35 ms each. Called when a render process or an in-process engine starts,
/// beside the codec warm-up, so that no image pays for them; 16-bit CMYK without a profile
/// stays lazy.
pub fn prepare() {
    for inverted in [false, true] {
        if let Err(e) = press_transform(inverted, false) {
            tracing::warn!(error = %e, "The press profile transform could not be built.");
        }
    }
}

/// The transform from profile-less CMYK (`inverted` for Adobe's, 8 or 16 bits) to 8-bit sRGB
/// through [`PRESS_PROFILE`], built once per process: the profile's 4-D table makes building a
/// transform cost far more than parsing a small profile. NO_CACHE transforms are `Sync`.
fn press_transform(inverted: bool, sixteen: bool) -> Result<&'static ToSrgb, RenderError> {
    let slot = &PRESS_TRANSFORMS[usize::from(inverted) * 2 + usize::from(sixteen)];
    slot.get_or_init(|| {
        let profile = Profile::new_icc(PRESS_PROFILE).map_err(|e| e.to_string())?;
        let in_format = match (inverted, sixteen) {
            (false, false) => PixelFormat::CMYK_8,
            (true, false) => PixelFormat::CMYK_8_REV,
            (false, true) => PixelFormat::CMYK_16,
            (true, true) => PixelFormat::CMYK_16_REV,
        };
        Transform::new_flags_context(
            GlobalContext::new(),
            &profile,
            in_format,
            &Profile::new_srgb(),
            PixelFormat::RGB_8,
            Intent::Perceptual,
            Flags::NO_CACHE,
        )
        .map(ToSrgb::Lcms)
        .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| RenderError::InvalidColorProfile(format!("the press profile: {e}")))
}

fn to8(v: u16) -> u8 {
    // Round to nearest: v / 257.
    u8::try_from((u32::from(v) * 255 + 32_767) / 65_535).expect("a u16 scaled to 0..=255")
}

fn profile_matches(p: &Profile, layout: Layout) -> bool {
    let space = p.color_space();
    match layout {
        Layout::Gray | Layout::GrayAlpha => space == ColorSpaceSignature::GrayData,
        Layout::Rgb | Layout::Rgba => space == ColorSpaceSignature::RgbData,
        Layout::Cmyk { .. } => space == ColorSpaceSignature::CmykData,
    }
}

fn untagged<T: Copy + Sync>(src: &[T], layout: Layout, out: &mut [u8], conv: impl Fn(T) -> u8) {
    let inch = layout.channels();
    let outch = if layout.has_alpha() { 4 } else { 3 };
    for (s, d) in src.chunks_exact(inch).zip(out.chunks_exact_mut(outch)) {
        match layout {
            Layout::Gray => {
                let g = conv(s[0]);
                d.copy_from_slice(&[g, g, g]);
            }
            Layout::GrayAlpha => {
                let g = conv(s[0]);
                d.copy_from_slice(&[g, g, g, conv(s[1])]);
            }
            Layout::Rgb => {
                d.copy_from_slice(&[conv(s[0]), conv(s[1]), conv(s[2])]);
            }
            Layout::Rgba => {
                d.copy_from_slice(&[conv(s[0]), conv(s[1]), conv(s[2]), conv(s[3])]);
            }
            Layout::Cmyk { inverted } => {
                let mut v = [conv(s[0]), conv(s[1]), conv(s[2]), conv(s[3])];
                if inverted {
                    v = v.map(|x| 255 - x);
                }
                let k = 255 - u32::from(v[3]);
                let ch = |c: u8| {
                    u8::try_from((255 - u32::from(c)) * k / 255).expect("product of two ≤255 / 255")
                };
                d.copy_from_slice(&[ch(v[0]), ch(v[1]), ch(v[2])]);
            }
        }
    }
}

fn transform(
    profile: &Profile,
    digest: [u8; 32],
    layout: Layout,
    samples: Samples,
    pixels: usize,
    out_channels: usize,
) -> Result<Vec<u8>, RenderError> {
    let sixteen = matches!(samples, Samples::U16(_));
    let t = srgb_transform(profile, digest, layout, sixteen, out_channels)?;
    let in_bpp = layout.channels() * if sixteen { 2 } else { 1 };
    match samples {
        // 8-bit RGB(A) in, the same layout out: convert in the decode buffer, sparing a
        // zeroed output buffer (each pixel is read before it is written).
        Samples::U8(mut s) if in_bpp == out_channels => {
            s.par_chunks_mut(CHUNK_PIXELS * in_bpp)
                .for_each(|c| t.in_place(c, out_channels));
            Ok(s)
        }
        ref samples => Ok(apply(&t, layout, samples, pixels, out_channels)),
    }
}

/// Convert `samples` (in `layout`) to a new 8-bit buffer of `out_channels` with `t`, on every
/// core.
fn apply(
    t: &ToSrgb,
    layout: Layout,
    samples: &Samples,
    pixels: usize,
    out_channels: usize,
) -> Vec<u8> {
    let (src, in_bpp): (&[u8], usize) = match samples {
        Samples::U8(s) => (s, layout.channels()),
        Samples::U16(s) => (bytemuck::cast_slice(s), layout.channels() * 2),
    };
    let mut out = vec![0_u8; pixels * out_channels];
    src.par_chunks(CHUNK_PIXELS * in_bpp)
        .zip(out.par_chunks_mut(CHUNK_PIXELS * out_channels))
        .for_each(|(s, d)| t.pixels(s, d, out_channels));
    out
}

/// Whether the red, green and blue tone curves of `profile` decode every code value to within
/// 0.2% of full scale of what the sRGB curve gives (Display P3 and most camera "sRGB-like"
/// profiles do; gamma 1.8 and 2.2, linear, PQ and HLG curves, and LUT-only profiles do not).
fn has_srgb_curves(profile: &Profile) -> bool {
    let srgb = |v: f32| {
        if v <= 0.040_45 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    [
        TagSignature::RedTRCTag,
        TagSignature::GreenTRCTag,
        TagSignature::BlueTRCTag,
    ]
    .into_iter()
    .all(|sig| match profile.read_tag(sig) {
        Tag::ToneCurve(curve) => (0..=255_u8).all(|i| {
            let v = f32::from(i) / 255.0;
            (curve.eval(v) - srgb(v)).abs() <= 0.002
        }),
        _ => false,
    })
}

/// The conversion from `profile` (samples in `layout`, 8 or 16 bits; `digest` identifies it)
/// to 8-bit sRGB with `out_channels` channels: one of the last [`CACHED_TRANSFORMS`] built, or
/// a new one.
fn srgb_transform(
    profile: &Profile,
    digest: [u8; 32],
    layout: Layout,
    sixteen: bool,
    out_channels: usize,
) -> Result<Arc<ToSrgb>, RenderError> {
    let key = ProfileKey {
        profile: digest,
        layout,
        sixteen,
        out_channels,
    };
    let lock = || {
        TRANSFORMS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    {
        let mut cached = lock();
        if let Some(i) = cached.iter().position(|(k, _)| *k == key) {
            let entry = cached.remove(i);
            let t = Arc::clone(&entry.1);
            cached.push(entry);
            return Ok(t);
        }
    }
    // Built outside the lock: another render may build the same one meanwhile, which only
    // costs the time.
    let t = Arc::new(new_srgb_transform(profile, layout, sixteen, out_channels)?);
    let mut cached = lock();
    if cached.len() >= CACHED_TRANSFORMS {
        cached.remove(0);
    }
    cached.push((key, Arc::clone(&t)));
    Ok(t)
}

fn new_srgb_transform(
    profile: &Profile,
    layout: Layout,
    sixteen: bool,
    out_channels: usize,
) -> Result<ToSrgb, RenderError> {
    let same_layout_8bit =
        !sixteen && matches!((layout, out_channels), (Layout::Rgb, 3) | (Layout::Rgba, 4));
    if same_layout_8bit && let Some(shaper) = MatrixShaper::new(profile) {
        return Ok(ToSrgb::Shaper(Box::new(shaper)));
    }
    let in_format = match (layout, sixteen) {
        (Layout::Gray, false) => PixelFormat::GRAY_8,
        (Layout::Gray, true) => PixelFormat::GRAY_16,
        (Layout::GrayAlpha, false) => PixelFormat::GRAYA_8,
        (Layout::GrayAlpha, true) => PixelFormat::GRAYA_16,
        (Layout::Rgb, false) => PixelFormat::RGB_8,
        (Layout::Rgb, true) => PixelFormat::RGB_16,
        (Layout::Rgba, false) => PixelFormat::RGBA_8,
        (Layout::Rgba, true) => PixelFormat::RGBA_16,
        (Layout::Cmyk { inverted: false }, false) => PixelFormat::CMYK_8,
        (Layout::Cmyk { inverted: true }, false) => PixelFormat::CMYK_8_REV,
        (Layout::Cmyk { .. }, true) => PixelFormat::CMYK_16,
    };
    let out_format = if out_channels == 4 {
        PixelFormat::RGBA_8
    } else {
        PixelFormat::RGB_8
    };
    let srgb = Profile::new_srgb();
    // NO_CACHE makes the transform Sync so one image converts on every core; COPY_ALPHA
    // carries the extra channel through.
    Transform::new_flags_context(
        GlobalContext::new(),
        profile,
        in_format,
        &srgb,
        out_format,
        Intent::Perceptual,
        Flags::NO_CACHE | Flags::COPY_ALPHA,
    )
    .map(ToSrgb::Lcms)
    .map_err(|e| RenderError::InvalidColorProfile(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_builds_the_8_bit_press_transforms() {
        // nextest runs every test in its own process: nothing was built before.
        prepare();
        for (inverted, sixteen) in [(false, false), (true, false)] {
            let slot = &PRESS_TRANSFORMS[usize::from(inverted) * 2 + usize::from(sixteen)];
            assert!(matches!(slot.get(), Some(Ok(_))), "inverted {inverted}");
        }
    }

    fn decoded(layout: Layout, samples: Samples, icc: Option<Vec<u8>>) -> Decoded {
        Decoded {
            width: 1,
            height: 1,
            layout,
            samples,
            icc,
            nclx: None,
        }
    }

    #[test]
    fn conversions_are_built_once_per_profile_and_the_cache_is_bounded() {
        let p3 = Nclx {
            primaries: 12,
            transfer: 13,
            matrix: 6,
            full_range: true,
            light: super::super::frame::ContentLight::default(),
        };
        let profile = p3.profile().unwrap();
        let get = |digest, layout, channels| {
            srgb_transform(&profile, digest, layout, false, channels).unwrap()
        };
        let first = get(nclx_digest(p3), Layout::Rgb, 3);
        assert!(
            matches!(*first, ToSrgb::Shaper(_)),
            "Display P3 is a matrix-shaper"
        );
        assert!(Arc::ptr_eq(&first, &get(nclx_digest(p3), Layout::Rgb, 3)));
        // Another layout is another conversion.
        assert!(!Arc::ptr_eq(&first, &get(nclx_digest(p3), Layout::Rgba, 4)));
        // Tests run in parallel and share the cache: fill it with many more profiles than it
        // keeps, and check it never grows past its bound.
        for i in 0..3 * CACHED_TRANSFORMS {
            let digest = icc_digest(&i.to_le_bytes());
            get(digest, Layout::Rgb, 3);
            let len = TRANSFORMS.lock().unwrap().len();
            assert!(len <= CACHED_TRANSFORMS, "{len} conversions kept");
        }
    }

    #[test]
    fn untagged_rgb_passes_through() {
        let (r, desc) =
            to_srgb8(decoded(Layout::Rgb, Samples::U8(vec![10, 20, 30]), None)).unwrap();
        assert_eq!(r.data, vec![10, 20, 30]);
        assert_eq!(desc, None);
    }

    #[test]
    fn sixteen_bit_rounds_to_eight() {
        let (r, _) = to_srgb8(decoded(
            Layout::Rgba,
            Samples::U16(vec![65_535, 0, 32_896, 65_535]),
            None,
        ))
        .unwrap();
        assert_eq!(r.data, vec![255, 0, 128, 255]);
    }

    #[test]
    fn cmyk_without_profile_goes_through_the_press_profile() {
        // Adobe-inverted (255 = no ink) and plain CMYK, 8 and 16 bits: paper white, full cyan
        // ink, and 100% K, as FOGRA39 prints them.
        let plain: [[u8; 4]; 3] = [[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255]];
        let mut seen = Vec::new();
        for inverted in [false, true] {
            for sixteen in [false, true] {
                let px: Vec<u8> = plain
                    .iter()
                    .flatten()
                    .map(|&v| if inverted { 255 - v } else { v })
                    .collect();
                let samples = if sixteen {
                    Samples::U16(px.iter().map(|&v| u16::from(v) * 257).collect())
                } else {
                    Samples::U8(px)
                };
                let mut d = decoded(Layout::Cmyk { inverted }, samples, None);
                d.width = 3;
                let (r, desc) = to_srgb8(d).unwrap();
                assert_eq!(desc.as_deref(), Some(PRESS_PROFILE_DESCRIPTION));
                seen.push(r.data);
            }
        }
        assert!(seen.iter().all(|s| s == &seen[0]), "{seen:?}");
        let p = &seen[0];
        // Perceptual intent: the paper maps to white.
        assert!(p[0..3].iter().all(|&v| v >= 250), "{p:?}");
        // Press cyan is a much duller cyan than the formula's (0, 255, 255): red stays low,
        // green and blue well under full.
        assert!(
            p[3] < 60 && (130..=190).contains(&p[4]) && p[5] > 200,
            "{p:?}"
        );
        // 100% K alone is a dark grey, not the formula's black (0, 0, 0).
        assert!(p[6..9].iter().all(|&v| (15..=60).contains(&v)), "{p:?}");
    }

    #[test]
    fn an_embedded_srgb_profile_is_recognised_and_reported() {
        let icc = Profile::new_srgb().icc().unwrap();
        let (r, desc) = to_srgb8(decoded(
            Layout::Rgb,
            Samples::U8(vec![200, 100, 50]),
            Some(icc),
        ))
        .unwrap();
        assert_eq!(r.data, vec![200, 100, 50]);
        assert!(desc.unwrap().contains("sRGB"));
    }

    #[test]
    fn describes_nclx_code_points() {
        let n = |primaries, transfer| Nclx {
            primaries,
            transfer,
            matrix: 6,
            full_range: true,
            light: Default::default(),
        };
        assert!(n(1, 13).is_srgb() && n(2, 2).is_srgb());
        assert!(!n(12, 13).is_srgb() && !n(1, 1).is_srgb());
        assert_eq!(n(1, 13).describe(), "sRGB (nclx 1/13/6)");
        assert_eq!(
            n(12, 13).describe(),
            "Display P3, sRGB transfer (nclx 12/13/6)"
        );
        assert_eq!(n(9, 16).describe(), "BT.2020, PQ transfer (nclx 9/16/6)");
        assert!(n(99, 13).profile().is_none());
        assert!(n(u16::MAX, 13).describe().contains("primaries ?"));
    }

    #[test]
    fn nclx_display_p3_converts_like_the_icc_profile() {
        // Display P3 pure red is outside sRGB: it must clip to red, and P3 mid-grey stays grey.
        let p3 = Nclx {
            primaries: 12,
            transfer: 13,
            matrix: 6,
            full_range: true,
            light: Default::default(),
        };
        let mut d = decoded(
            Layout::Rgb,
            Samples::U8(vec![255, 0, 0, 128, 128, 128]),
            None,
        );
        d.width = 2;
        d.nclx = Some(p3);
        let (r, desc) = to_srgb8(d).unwrap();
        assert_eq!(
            desc.as_deref(),
            Some("Display P3, sRGB transfer (nclx 12/13/6)")
        );
        assert!(
            r.data[0] == 255 && r.data[1] < 10 && r.data[2] < 10,
            "{:?}",
            r.data
        );
        for c in &r.data[3..6] {
            assert!(c.abs_diff(128) <= 1, "{:?}", r.data);
        }
    }

    fn nclx(primaries: u16, transfer: u16) -> Nclx {
        Nclx {
            primaries,
            transfer,
            matrix: 6,
            full_range: true,
            light: Default::default(),
        }
    }

    #[test]
    fn only_srgb_tone_curves_count_as_srgb_curves() {
        assert!(has_srgb_curves(&Profile::new_srgb()));
        assert!(has_srgb_curves(&nclx(12, 13).profile().unwrap()));
        for transfer in [1, 4, 8] {
            let p = nclx(12, transfer).profile().unwrap();
            assert!(!has_srgb_curves(&p), "transfer {transfer}");
        }
        // Apple's Generic RGB (the Landscape_* files): gamma 1.8.
        let gamma18 = ToneCurve::new(1.8);
        let xy = |x, y| CIExyY { x, y, Y: 1.0 };
        let primaries = CIExyYTRIPLE {
            Red: xy(0.63, 0.34),
            Green: xy(0.295, 0.605),
            Blue: xy(0.155, 0.077),
        };
        let generic = Profile::new_rgb(&xy(D65.0, D65.1), &primaries, &[&gamma18; 3]).unwrap();
        assert!(!has_srgb_curves(&generic));
    }

    /// A `width` × 1 Display P3 (ICC) RGB frame of varied colours.
    fn p3_frame(width: u32) -> Decoded {
        let data = (0..width * 3).map(|i| (i * 37 % 256) as u8).collect();
        Decoded {
            width,
            height: 1,
            layout: Layout::Rgb,
            samples: Samples::U8(data),
            icc: Some(nclx(12, 13).profile().unwrap().icc().unwrap()),
            nclx: None,
        }
    }

    #[test]
    fn a_deferred_transform_converts_like_the_direct_one() {
        let (direct, description) = to_srgb8(p3_frame(1000)).unwrap();
        // Variants of at most half the frame: deferred, and the pixels come back untouched.
        let (mut raster, deferred_description, deferred) =
            to_srgb8_or_defer(p3_frame(1000), 500).unwrap();
        let deferred = deferred.expect("a large P3 frame defers its transform");
        assert_eq!(raster.data, p3_frame(1000).samples_u8());
        assert_eq!(deferred_description, description);
        deferred.apply(&mut raster);
        assert_eq!(raster, direct);
        // Variants of more than half the frame: converted first.
        let (raster, _, deferred) = to_srgb8_or_defer(p3_frame(1000), 501).unwrap();
        assert!(deferred.is_none());
        assert_eq!(raster, direct);
    }

    #[test]
    fn gamma_2_2_and_sixteen_bit_frames_are_never_deferred() {
        let mut d = p3_frame(1000);
        d.icc = Some(nclx(12, 4).profile().unwrap().icc().unwrap());
        assert!(to_srgb8_or_defer(d, 1).unwrap().2.is_none());
        let mut d = p3_frame(1000);
        d.samples = Samples::U16(vec![30_000; 3000]);
        assert!(to_srgb8_or_defer(d, 1).unwrap().2.is_none());
    }

    impl Decoded {
        fn samples_u8(self) -> Vec<u8> {
            match self.samples {
                Samples::U8(s) => s,
                Samples::U16(_) => unreachable!("8-bit test frame"),
            }
        }
    }
}
