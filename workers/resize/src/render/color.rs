//! Colour management: any decoded layout and depth to 8-bit sRGB (RGB or RGBA).
//!
//! Invariants: an embedded ICC profile is applied with lcms2 (perceptual intent); untagged
//! RGB/gray is taken as sRGB; a profile whose colour space does not match the samples (e.g. an
//! RGB profile on a gray JPEG) is ignored the way browsers ignore it; 16-bit samples are reduced
//! to 8 bits *after* the conversion (lcms reads 16 bits and writes 8), so no precision is lost
//! before the transform; alpha is carried through unchanged (scaled to 8 bits).
//!
//! CMYK without a profile has no defined meaning. We use the textbook conversion
//! `R = 255·(1-C)·(1-K)` (after un-inverting Adobe CMYK): it never fails and keeps hues, though
//! it is more saturated than a press profile would give. Shipping a press profile (e.g. FOGRA39
//! or SWOP) would be closer, but those are not freely redistributable.

use lcms2::{
    ColorSpaceSignature, DisallowCache, Flags, GlobalContext, InfoType, Intent, Locale,
    PixelFormat, Profile, Transform,
};
use rayon::prelude::*;

use super::RenderError;
use super::decode::{Decoded, Layout, Samples};
use super::resize::Raster;

/// Pixels per lcms call in the parallel conversion; large enough to amortise the call, small
/// enough to spread a big image over every core.
const CHUNK_PIXELS: usize = 64 * 1024;

/// Convert to 8-bit sRGB. Returns the raster and the description of the embedded profile (if
/// one was present and readable), for the manifest.
///
/// # Errors
/// [`RenderError::InvalidColorProfile`] when lcms2 cannot build a transform from a profile it
/// could parse (a broken CMYK profile, say); unparseable profiles are ignored instead, because
/// the pixels are still meaningful as sRGB.
pub fn to_srgb8(decoded: Decoded) -> Result<(Raster, Option<String>), RenderError> {
    let Decoded {
        width,
        height,
        layout,
        samples,
        icc,
    } = decoded;
    let alpha = layout.has_alpha();
    let out_channels = if alpha { 4 } else { 3 };
    let pixels = width as usize * height as usize;

    let profile = icc.as_deref().and_then(|b| Profile::new_icc(b).ok());
    let description = profile
        .as_ref()
        // Profiles carry localised descriptions (Apple's Generic RGB lists a dozen); ask for
        // English, which lcms falls back from when absent.
        .and_then(|p| p.info(InfoType::Description, Locale::new("en_US")))
        .map(|d| d.trim().to_owned());
    let profile = profile.filter(|p| profile_matches(p, layout));
    // An embedded sRGB profile needs no work; this is the common case for camera JPEGs.
    let is_srgb = description
        .as_deref()
        .is_some_and(|d| d.starts_with("sRGB"));

    let data = match (profile, is_srgb) {
        (Some(profile), false) => transform(&profile, layout, &samples, pixels, out_channels)?,
        _ => {
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
    ))
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
    layout: Layout,
    samples: &Samples,
    pixels: usize,
    out_channels: usize,
) -> Result<Vec<u8>, RenderError> {
    let sixteen = matches!(samples, Samples::U16(_));
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
    let t: Transform<u8, u8, GlobalContext, DisallowCache> = Transform::new_flags_context(
        GlobalContext::new(),
        profile,
        in_format,
        &srgb,
        out_format,
        Intent::Perceptual,
        Flags::NO_CACHE | Flags::COPY_ALPHA,
    )
    .map_err(|e| RenderError::InvalidColorProfile(e.to_string()))?;
    let in_bpp = layout.channels() * if sixteen { 2 } else { 1 };
    let src: &[u8] = match samples {
        Samples::U8(s) => s,
        Samples::U16(s) => bytemuck::cast_slice(s),
    };
    let mut out = vec![0_u8; pixels * out_channels];
    src.par_chunks(CHUNK_PIXELS * in_bpp)
        .zip(out.par_chunks_mut(CHUNK_PIXELS * out_channels))
        .for_each(|(s, d)| t.transform_pixels(s, d));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(layout: Layout, samples: Samples, icc: Option<Vec<u8>>) -> Decoded {
        Decoded {
            width: 1,
            height: 1,
            layout,
            samples,
            icc,
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
    fn adobe_inverted_cmyk_without_profile_falls_back() {
        // Inverted: 255 = no ink. Pure cyan ink (C=255 → stored 0), no K (stored 255).
        let (r, _) = to_srgb8(decoded(
            Layout::Cmyk { inverted: true },
            Samples::U8(vec![0, 255, 255, 255]),
            None,
        ))
        .unwrap();
        assert_eq!(r.data, vec![0, 255, 255]);
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
}
