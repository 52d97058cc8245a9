//! An RGB matrix-shaper profile to sRGB, for 8-bit pixels, without lcms on the pixels.
//!
//! Most tagged photos carry a matrix-shaper profile (Display P3 from phones, Adobe RGB, Apple's
//! Generic RGB, the profiles built from HEIF `nclx` code points): three tone curves and a 3×3
//! matrix to the D50 connection space. For those lcms's own 8-bit path evaluates the curves and
//! the matrix in 1.14 fixed point per pixel, one call per chunk, and was the largest cost of
//! colour management in the engine's profile (about a tenth of an iPhone HEIC's render). Here
//! the same conversion is three tables and one matrix:
//!
//! 1. each 8-bit code value → relative linear light through the profile's own curve
//!    (evaluated by lcms once per code value, 256 per channel);
//! 2. the source colorants (D50) followed by the inverse of lcms's built-in sRGB colorants: the
//!    matrix lcms itself composes for a relative colorimetric (and, for matrix-shapers,
//!    perceptual) transform between two matrix-shaper profiles;
//! 3. each channel clipped to 0..1 and encoded with the sRGB curve through a 65,536-entry
//!    table (finer than one output step everywhere, near black included).
//!
//! The result matches lcms's transform to within one code value (`tests` compare both over
//! every grey level and random colours for several real profiles). Only plain matrix-shapers
//! take this path: a profile with any `A2B`/`D2B` table (which lcms would prefer for the
//! perceptual intent), curves that are not tone curves, or a matrix that is not finite and
//! invertible stays with lcms.

use lcms2::{CIEXYZ, ColorSpaceSignature, Profile, Tag, TagSignature};

/// Entries of the linear → sRGB table.
const OUT_STEPS: usize = 1 << 16;

/// An 8-bit RGB(A) matrix-shaper → 8-bit sRGB conversion (alpha passes through).
pub struct MatrixShaper {
    /// Code value → linear light, per channel.
    linear: [[f32; 256]; 3],
    /// Linear source RGB → linear sRGB (row major).
    matrix: [[f32; 3]; 3],
    /// Linear light (0..=1 in `OUT_STEPS - 1` steps) → sRGB code value.
    encode: Box<[u8; OUT_STEPS]>,
}

impl MatrixShaper {
    /// The conversion for `profile`, or `None` when it is not a plain RGB matrix-shaper.
    pub fn new(profile: &Profile) -> Option<Self> {
        if profile.color_space() != ColorSpaceSignature::RgbData {
            return None;
        }
        let tables = [
            TagSignature::AToB0Tag,
            TagSignature::AToB1Tag,
            TagSignature::AToB2Tag,
            TagSignature::DToB0Tag,
            TagSignature::DToB1Tag,
            TagSignature::DToB2Tag,
        ];
        if tables.into_iter().any(|t| profile.has_tag(t)) {
            return None;
        }
        let source = colorants(profile)?;
        let srgb = colorants(&Profile::new_srgb())?;
        let to_srgb = multiply(&invert(&srgb)?, &source);
        if to_srgb.iter().flatten().any(|v| !v.is_finite()) {
            return None;
        }
        let mut linear = [[0_f32; 256]; 3];
        let trcs = [
            TagSignature::RedTRCTag,
            TagSignature::GreenTRCTag,
            TagSignature::BlueTRCTag,
        ];
        for (table, sig) in linear.iter_mut().zip(trcs) {
            let Tag::ToneCurve(curve) = profile.read_tag(sig) else {
                return None;
            };
            for (i, v) in table.iter_mut().enumerate() {
                let y = curve.eval(i as f32 / 255.0);
                if !y.is_finite() {
                    return None;
                }
                *v = y;
            }
        }
        #[allow(clippy::cast_possible_truncation)] // narrowed once, after the f64 products
        let matrix = to_srgb.map(|row| row.map(|v| v as f32));
        let encode = (0..OUT_STEPS)
            .map(|i| srgb_encode(i as f64 / (OUT_STEPS - 1) as f64))
            .collect::<Box<[u8]>>()
            .try_into()
            .ok()?;
        Some(Self {
            linear,
            matrix,
            encode,
        })
    }

    /// Convert `pixels` (RGB when `channels` is 3, RGBA when 4) in place.
    pub fn apply(&self, pixels: &mut [u8], channels: usize) {
        debug_assert!(channels == 3 || channels == 4);
        if channels == 3 {
            self.apply_n::<3>(pixels);
        } else {
            self.apply_n::<4>(pixels);
        }
    }

    /// Four pixels at a time (SSE2 on x86-64, which every x86-64 CPU has), the rest one by one.
    fn apply_n<const N: usize>(&self, pixels: &mut [u8]) {
        let mut quads = pixels.chunks_exact_mut(4 * N);
        #[cfg(target_arch = "x86_64")]
        for quad in &mut quads {
            // SAFETY: SSE2 is part of the x86-64 baseline: every CPU this runs on has it.
            #[allow(unsafe_code)]
            unsafe {
                self.four_sse2::<N>(quad);
            }
        }
        for px in quads.into_remainder().chunks_exact_mut(N) {
            self.one(px);
        }
    }

    /// One pixel: the reference the SSE2 path reproduces bit for bit (the same `f32`
    /// operations in the same order; `tests` compare both).
    fn one(&self, px: &mut [u8]) {
        let [lr, lg, lb] = &self.linear;
        let (r, g, b) = (
            lr[usize::from(px[0])],
            lg[usize::from(px[1])],
            lb[usize::from(px[2])],
        );
        for (out, row) in px.iter_mut().zip(&self.matrix) {
            *out = self.encode[encode_index(row[0] * r + row[1] * g + row[2] * b)];
        }
    }

    /// Four pixels of `N` bytes: the three table lookups per pixel are scalar, the matrix,
    /// clamp and scaling run on four pixels at once, and the truncating conversion
    /// (`cvttps2dq`) is the one `as` does for these in-range values.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "sse2")]
    fn four_sse2<const N: usize>(&self, quad: &mut [u8]) {
        use std::arch::x86_64::{
            _mm_add_ps, _mm_cvttps_epi32, _mm_extract_epi16, _mm_max_ps, _mm_min_ps, _mm_mul_ps,
            _mm_set_ps, _mm_set1_ps, _mm_setzero_ps,
        };
        let [lr, lg, lb] = &self.linear;
        let at = |i: usize, c: usize| usize::from(quad[i * N + c]);
        let r = _mm_set_ps(lr[at(3, 0)], lr[at(2, 0)], lr[at(1, 0)], lr[at(0, 0)]);
        let g = _mm_set_ps(lg[at(3, 1)], lg[at(2, 1)], lg[at(1, 1)], lg[at(0, 1)]);
        let b = _mm_set_ps(lb[at(3, 2)], lb[at(2, 2)], lb[at(1, 2)], lb[at(0, 2)]);
        let mut out = [[0_u8; 4]; 3];
        for (o, row) in out.iter_mut().zip(&self.matrix) {
            let v = _mm_add_ps(
                _mm_add_ps(
                    _mm_mul_ps(_mm_set1_ps(row[0]), r),
                    _mm_mul_ps(_mm_set1_ps(row[1]), g),
                ),
                _mm_mul_ps(_mm_set1_ps(row[2]), b),
            );
            // max(v, 0) gives +0 for -0 where `clamp` keeps -0: both scale to the same index.
            let v = _mm_min_ps(_mm_max_ps(v, _mm_setzero_ps()), _mm_set1_ps(1.0));
            #[allow(clippy::cast_precision_loss)] // 65,535 is exact in f32
            let scaled = _mm_add_ps(
                _mm_mul_ps(v, _mm_set1_ps((OUT_STEPS - 1) as f32)),
                _mm_set1_ps(0.5),
            );
            let i = _mm_cvttps_epi32(scaled);
            // The indexes are 0..=65,535: the low 16 bits of each 32-bit lane.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let lane = |v: i32| usize::from(v as u16);
            *o = [
                self.encode[lane(_mm_extract_epi16::<0>(i))],
                self.encode[lane(_mm_extract_epi16::<2>(i))],
                self.encode[lane(_mm_extract_epi16::<4>(i))],
                self.encode[lane(_mm_extract_epi16::<6>(i))],
            ];
        }
        for (i, px) in quad.chunks_exact_mut(N).enumerate() {
            px[0] = out[0][i];
            px[1] = out[1][i];
            px[2] = out[2][i];
        }
    }
}

/// Linear light → index into [`MatrixShaper::encode`]: clipped to 0..=1, rounded to the
/// nearest of the `OUT_STEPS` steps.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to the table
fn encode_index(v: f32) -> usize {
    usize::from((v.clamp(0.0, 1.0) * (OUT_STEPS - 1) as f32 + 0.5) as u16)
}

/// The red, green and blue colorants (columns of the RGB → XYZ matrix), or `None` when a tag
/// is missing.
fn colorants(profile: &Profile) -> Option<[[f64; 3]; 3]> {
    let read = |sig| match profile.read_tag(sig) {
        Tag::CIEXYZ(&CIEXYZ { X, Y, Z }) => Some([X, Y, Z]),
        _ => None,
    };
    let r = read(TagSignature::RedColorantTag)?;
    let g = read(TagSignature::GreenColorantTag)?;
    let b = read(TagSignature::BlueColorantTag)?;
    Some([0, 1, 2].map(|i| [r[i], g[i], b[i]]))
}

fn multiply(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    [0, 1, 2].map(|i| [0, 1, 2].map(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

fn invert(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if !det.is_finite() || det.abs() < 1e-9 {
        return None;
    }
    let c =
        |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    Some([
        [
            c(1, 1, 2, 2) / det,
            -c(0, 1, 2, 2) / det,
            c(0, 1, 1, 2) / det,
        ],
        [
            -c(1, 0, 2, 2) / det,
            c(0, 0, 2, 2) / det,
            -c(0, 0, 1, 2) / det,
        ],
        [
            c(1, 0, 2, 1) / det,
            -c(0, 0, 2, 1) / det,
            c(0, 0, 1, 1) / det,
        ],
    ])
}

/// Linear light (0..=1) → 8-bit sRGB, rounded.
fn srgb_encode(v: f64) -> u8 {
    let e = if v <= 0.003_130_8 {
        v * 12.92
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to 0..=255
    let code = (e * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use lcms2::{DisallowCache, Flags, GlobalContext, Intent, PixelFormat, Transform};

    fn lcms(profile: &Profile) -> Transform<u8, u8, GlobalContext, DisallowCache> {
        Transform::new_flags_context(
            GlobalContext::new(),
            profile,
            PixelFormat::RGB_8,
            &Profile::new_srgb(),
            PixelFormat::RGB_8,
            Intent::Perceptual,
            Flags::NO_CACHE,
        )
        .unwrap()
    }

    /// Every grey level and 20,000 pseudo-random colours: the largest difference from lcms, in
    /// code values, and how many values differ at all.
    fn compare(profile: &Profile) -> (u8, usize) {
        let shaper = MatrixShaper::new(profile).expect("a matrix-shaper");
        let mut pixels: Vec<u8> = (0..=255_u8).flat_map(|v| [v, v, v]).collect();
        let mut x = 0x2545_f491_u32;
        for _ in 0..20_000 * 3 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            pixels.push(x.to_le_bytes()[0]);
        }
        let mut ours = pixels.clone();
        shaper.apply(&mut ours, 3);
        let mut theirs = pixels;
        lcms(profile).transform_in_place(&mut theirs);
        let worst = ours.iter().zip(&theirs).map(|(a, b)| a.abs_diff(*b)).max();
        let differ = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        (worst.unwrap_or(0), differ)
    }

    fn nclx(primaries: u16, transfer: u16) -> Profile {
        super::super::frame::Nclx {
            primaries,
            transfer,
            matrix: 6,
            full_range: true,
            light: super::super::frame::ContentLight::default(),
        }
        .profile()
        .unwrap()
    }

    #[test]
    fn matches_lcms_within_one_code_value() {
        let profiles = [
            ("Display P3 (nclx 12/13)", nclx(12, 13)),
            ("BT.2020 (nclx 9/1)", nclx(9, 1)),
            ("BT.709 gamma 2.2 (nclx 1/4)", nclx(1, 4)),
            ("linear BT.709 (nclx 1/8)", nclx(1, 8)),
        ];
        for (name, profile) in &profiles {
            let (worst, differ) = compare(profile);
            assert!(worst <= 1, "{name}: off by up to {worst}");
            assert!(differ < 60_000 / 20, "{name}: {differ} values differ");
        }
    }

    #[test]
    fn four_at_a_time_equals_one_at_a_time() {
        // Every channel on a 3-step grid against the others, plus the extremes and a few odd
        // values, for a wide-gamut (clipping) and two narrower profiles, as RGB and RGBA, with
        // lengths that leave a remainder for the one-by-one path.
        let mut pixels = Vec::new();
        for r in (0..=255_u8).step_by(3).chain([255]) {
            for g in (0..=255_u8).step_by(3).chain([255]) {
                for b in (0..=255_u8).step_by(3).chain([1, 254, 255]) {
                    pixels.extend([r, g, b]);
                }
            }
        }
        pixels.extend([7, 200, 13, 255, 0, 255]);
        for profile in [nclx(9, 1), nclx(12, 13), nclx(1, 4)] {
            let shaper = MatrixShaper::new(&profile).expect("a matrix-shaper");
            let mut fast = pixels.clone();
            shaper.apply(&mut fast, 3);
            let mut slow = pixels.clone();
            slow.chunks_exact_mut(3).for_each(|px| shaper.one(px));
            assert_eq!(fast, slow);
            let rgba: Vec<u8> = pixels
                .chunks_exact(3)
                .enumerate()
                .flat_map(|(i, p)| [p[0], p[1], p[2], (i % 251) as u8])
                .collect();
            let mut fast4 = rgba.clone();
            shaper.apply(&mut fast4, 4);
            let alpha_kept = fast4
                .chunks_exact(4)
                .zip(rgba.chunks_exact(4))
                .all(|(a, b)| a[3] == b[3]);
            assert!(alpha_kept, "alpha passes through");
            let colour: Vec<u8> = fast4
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect();
            assert_eq!(colour, fast);
        }
    }

    #[test]
    fn embedded_profiles_of_real_files_match_lcms() {
        // Apple's Generic RGB (gamma 1.8 curves), Display P3 and ProPhoto RGB as embedded in
        // the conformance suite's files (sharp's and the WebKit test suite's, see its
        // SOURCES.md), read by the engine's own decoders.
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/files/sdr");
        for (name, description) in [
            ("Landscape_5.jpg", "Generic RGB Profile"),
            ("p3.png", "Display P3"),
            ("prophoto.png", "ProPhoto RGB"),
        ] {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            let limits = crate::render::Limits::default();
            let probe = crate::render::decode::probe(&bytes, &limits).unwrap();
            let settings = crate::render::EncodeSettings::default();
            let decoded =
                crate::render::decode::decode(&bytes, &probe, u32::MAX, &settings).unwrap();
            let profile = Profile::new_icc(&decoded.icc.expect("an embedded profile")).unwrap();
            let found = profile
                .info(lcms2::InfoType::Description, lcms2::Locale::new("en_US"))
                .unwrap_or_default();
            assert_eq!(found.trim(), description, "{name}");
            let (worst, _) = compare(&profile);
            assert!(worst <= 1, "{name}: off by up to {worst}");
        }
    }

    #[test]
    fn profiles_with_tables_stay_with_lcms() {
        let srgb_v2_with_lut = {
            let mut p = Profile::new_srgb();
            // A profile whose perceptual intent is a table: lcms would use the table.
            let lut = lcms2::Pipeline::new(3, 3).unwrap();
            assert!(p.write_tag(TagSignature::AToB0Tag, Tag::Pipeline(&lut)));
            p
        };
        assert!(MatrixShaper::new(&srgb_v2_with_lut).is_none());
        assert!(
            MatrixShaper::new(
                &Profile::new_gray(
                    &lcms2::CIExyY {
                        x: 0.3127,
                        y: 0.329,
                        Y: 1.0
                    },
                    &lcms2::ToneCurve::new(2.2)
                )
                .unwrap()
            )
            .is_none()
        );
    }
}
