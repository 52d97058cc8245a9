//! HDR → SDR: PQ and HLG frames (signalled by nclx code points) tone-mapped to 8-bit sRGB.
//!
//! The steps, per pixel, all in `f32` on the full-depth code values:
//!
//! 1. Signal → display light in cd/m². PQ: the SMPTE ST 2084 EOTF (a table over the 16-bit
//!    codes). HLG: the BT.2100 inverse OETF (a table), then the OOTF for a 1000 cd/m² display,
//!    `Fd = Lw · Ys^(γ−1) · E` with `γ = 1.2` and `Ys` the BT.2020 luminance of the scene light
//!    (one gain for the three channels, not a curve per channel).
//! 2. Highlights: the ITU-R BT.2390 EETF in the PQ domain, normalised by the source peak, from
//!    the content's peak down to the SDR peak: identity below the knee `KS = 1.5·maxLum − 0.5`,
//!    a Hermite spline above it that lands the source peak on the SDR peak. It is evaluated on
//!    `max(R, G, B)` and the three channels are scaled by the same ratio, so hue and saturation
//!    are kept where a curve per channel would bleach and shift them. The content peak is
//!    MaxCLL (`clli`), else the mastering display's peak (`mdcv`), else 1000 cd/m²; values
//!    outside [`MIN_PEAK_NITS`]..=[`MAX_PEAK_NITS`] are not trusted. HLG's peak is its display's,
//!    1000 cd/m².
//! 3. Reference white: the SDR peak is [`SDR_PEAK_NITS`] (203 cd/m², ITU-R BT.2408's HDR
//!    reference white) after the EETF; so content mastered no brighter than 203 cd/m² passes
//!    unchanged, and in brighter content reference white lands a little under SDR white (about
//!    82% linear, 92% in sRGB code values, from a 1000 cd/m² peak), leaving room for highlights.
//! 4. Primaries → sRGB in linear light through the matrix of the two sets of chromaticities
//!    (BT.2020 gives BT.2087's matrix; P3 its own; a white other than D65 is adapted with
//!    Bradford). Out-of-gamut colours are then pulled toward the achromatic axis at the same
//!    luminance: just enough to lift a negative channel to 0, then just enough to bring a
//!    channel over 1 down to 1. Mixing with grey of the same luminance keeps the dominant
//!    wavelength, i.e. the hue.
//! 5. The sRGB OETF (a table) to 8 bits; alpha is carried through.
//!
//! Rows run in parallel on rayon; the tables that do not depend on the image are built once.

use std::sync::OnceLock;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::frame::{ContentLight, Layout, Nclx, Samples};
use super::resize::Raster;

/// SDR white after tone mapping, in cd/m²: BT.2408's reference white.
pub const SDR_PEAK_NITS: f64 = 203.0;
/// Peak assumed when the content states none (or one we do not trust), in cd/m².
pub const DEFAULT_PEAK_NITS: f64 = 1000.0;
/// Smallest stated content peak we believe, in cd/m²: below this a MaxCLL or mastering peak is
/// taken for a broken value (tone mapping to it would clip the picture).
pub const MIN_PEAK_NITS: f64 = 100.0;
/// Largest stated content peak we believe, in cd/m²: PQ's own ceiling.
pub const MAX_PEAK_NITS: f64 = 10_000.0;
/// The display HLG is rendered for (BT.2100's reference), in cd/m².
const HLG_DISPLAY_PEAK: f64 = 1000.0;

/// An HDR transfer characteristic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transfer {
    /// SMPTE ST 2084 perceptual quantiser (nclx transfer 16).
    Pq,
    /// ARIB STD-B67 hybrid log-gamma (nclx transfer 18).
    Hlg,
}

impl Transfer {
    /// Wire name: `pq` or `hlg` (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            Transfer::Pq => "pq",
            Transfer::Hlg => "hlg",
        }
    }

    /// The HDR transfer these code points signal, if any.
    pub fn of(nclx: Nclx) -> Option<Transfer> {
        match nclx.transfer {
            16 => Some(Transfer::Pq),
            18 => Some(Transfer::Hlg),
            _ => None,
        }
    }
}

/// What the manifest records about an HDR source: `{"transfer": "pq", "content_peak_nits": 1000}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HdrSource {
    /// The transfer characteristic of the source.
    pub transfer: Transfer,
    /// The peak the tone mapping started from, in cd/m² (see [`content_peak`]).
    pub content_peak_nits: u32,
}

impl HdrSource {
    /// The facts for a frame signalled by `nclx`; `None` for SDR.
    pub fn of(nclx: Nclx) -> Option<HdrSource> {
        let transfer = Transfer::of(nclx)?;
        Some(HdrSource {
            transfer,
            content_peak_nits: content_peak(transfer, nclx.light).round() as u32,
        })
    }
}

/// The peak luminance tone mapping starts from, in cd/m²: for PQ, MaxCLL, else the mastering
/// display's peak, else [`DEFAULT_PEAK_NITS`], each only when within
/// [`MIN_PEAK_NITS`]..=[`MAX_PEAK_NITS`]; for HLG, its 1000 cd/m² display.
pub fn content_peak(transfer: Transfer, light: ContentLight) -> f64 {
    if transfer == Transfer::Hlg {
        return HLG_DISPLAY_PEAK;
    }
    let sane = |v: f64| (MIN_PEAK_NITS..=MAX_PEAK_NITS).contains(&v).then_some(v);
    light
        .max_cll
        .and_then(|v| sane(f64::from(v)))
        .or_else(|| light.mastering_peak.and_then(|v| sane(f64::from(v))))
        .unwrap_or(DEFAULT_PEAK_NITS)
}

/// SMPTE ST 2084 constants.
const M1: f64 = 2610.0 / 16384.0;
const M2: f64 = 2523.0 / 4096.0 * 128.0;
const C1: f64 = 3424.0 / 4096.0;
const C2: f64 = 2413.0 / 4096.0 * 32.0;
const C3: f64 = 2392.0 / 4096.0 * 32.0;

/// PQ EOTF: signal 0..=1 → cd/m².
pub fn pq_to_nits(v: f64) -> f64 {
    let p = v.clamp(0.0, 1.0).powf(1.0 / M2);
    10_000.0 * ((p - C1).max(0.0) / (C2 - C3 * p)).powf(1.0 / M1)
}

/// Inverse PQ EOTF: cd/m² → signal 0..=1.
pub fn nits_to_pq(nits: f64) -> f64 {
    let y = (nits / 10_000.0).clamp(0.0, 1.0).powf(M1);
    ((C1 + C2 * y) / (1.0 + C3 * y)).powf(M2)
}

/// HLG inverse OETF: signal 0..=1 → normalised scene light 0..=1.
pub fn hlg_to_scene(v: f64) -> f64 {
    let (a, b, c) = (0.178_832_77, 0.284_668_92, 0.559_910_73);
    let v = v.clamp(0.0, 1.0);
    if v <= 0.5 {
        v * v / 3.0
    } else {
        (((v - c) / a).exp() + b) / 12.0
    }
}

/// The HLG OOTF gain for a pixel whose scene-light BT.2020 luminance is `ys`, on a
/// [`HLG_DISPLAY_PEAK`] display: display light = gain · scene light, in cd/m².
fn hlg_ootf_gain(ys: f32) -> f32 {
    // γ = 1.2 + 0.42·log10(Lw / 1000) = 1.2 at 1000 cd/m².
    const GAMMA: f32 = 1.2;
    HLG_DISPLAY_PEAK as f32 * ys.max(0.0).powf(GAMMA - 1.0)
}

/// The ITU-R BT.2390 EETF from a `source_peak` to a `target_peak` (cd/m², black 0 on both),
/// applied to `nits`. Inputs above the source peak map to the target peak.
pub fn eetf(nits: f64, source_peak: f64, target_peak: f64) -> f64 {
    if target_peak >= source_peak {
        return nits.min(source_peak);
    }
    let src = nits_to_pq(source_peak);
    let max_lum = nits_to_pq(target_peak) / src;
    let ks = 1.5 * max_lum - 0.5;
    let e1 = (nits_to_pq(nits) / src).min(1.0);
    let e2 = if e1 < ks {
        e1
    } else {
        let t = (e1 - ks) / (1.0 - ks);
        let (t2, t3) = (t * t, t * t * t);
        (2.0 * t3 - 3.0 * t2 + 1.0) * ks
            + (t3 - 2.0 * t2 + t) * (1.0 - ks)
            + (-2.0 * t3 + 3.0 * t2) * max_lum
    };
    pq_to_nits(e2 * src)
}

/// A 3×3 matrix, rows.
type Mat = [[f64; 3]; 3];

fn mul(a: &Mat, b: &Mat) -> Mat {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

fn inverse(m: &Mat) -> Mat {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let c = |r0: usize, r1: usize, c0: usize, c1: usize| {
        (m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]) / det
    };
    [
        [c(1, 2, 1, 2), -c(0, 2, 1, 2), c(0, 1, 1, 2)],
        [-c(1, 2, 0, 2), c(0, 2, 0, 2), -c(0, 1, 0, 2)],
        [c(1, 2, 0, 1), -c(0, 2, 0, 1), c(0, 1, 0, 1)],
    ]
}

fn xyz((x, y): (f64, f64)) -> [f64; 3] {
    [x / y, 1.0, (1.0 - x - y) / y]
}

/// RGB → XYZ for chromaticities red, green, blue, white.
fn rgb_to_xyz(c: [(f64, f64); 4]) -> Mat {
    let [r, g, b, w] = c.map(xyz);
    let p = [[r[0], g[0], b[0]], [r[1], g[1], b[1]], [r[2], g[2], b[2]]];
    let s = inverse(&p);
    let k: [f64; 3] = std::array::from_fn(|i| (0..3).map(|j| s[i][j] * w[j]).sum());
    std::array::from_fn(|i| std::array::from_fn(|j| p[i][j] * k[j]))
}

const D65: (f64, f64) = (0.3127, 0.3290);
const SRGB: [(f64, f64); 4] = [(0.640, 0.330), (0.300, 0.600), (0.150, 0.060), D65];
/// BT.2020 (and BT.2100) primaries.
pub const BT2020: [(f64, f64); 4] = [(0.708, 0.292), (0.170, 0.797), (0.131, 0.046), D65];

/// Linear RGB with chromaticities `c` → linear sRGB; a white point other than D65 is adapted
/// with the Bradford transform.
pub fn to_srgb_matrix(c: [(f64, f64); 4]) -> Mat {
    let bradford: Mat = [
        [0.8951, 0.2664, -0.1614],
        [-0.7502, 1.7135, 0.0367],
        [0.0389, -0.0685, 1.0296],
    ];
    let src_to_xyz = rgb_to_xyz(c);
    let cone = |w| {
        let v = xyz(w);
        std::array::from_fn::<f64, 3, _>(|i| (0..3).map(|j| bradford[i][j] * v[j]).sum())
    };
    let (s, d) = (cone(c[3]), cone(D65));
    let scale: Mat =
        std::array::from_fn(|i| std::array::from_fn(|j| if i == j { d[i] / s[i] } else { 0.0 }));
    let adapt = mul(&inverse(&bradford), &mul(&scale, &bradford));
    mul(&inverse(&rgb_to_xyz(SRGB)), &mul(&adapt, &src_to_xyz))
}

/// BT.709 / sRGB luminance weights (linear sRGB).
const SRGB_LUMA: [f32; 3] = [0.2126, 0.7152, 0.0722];
/// BT.2020 luminance weights.
const BT2020_LUMA: [f32; 3] = [0.2627, 0.6780, 0.0593];

/// Pull a linear sRGB colour into the gamut [0, 1]³ toward grey of its own luminance: first
/// just enough that no channel is negative, then just enough that none exceeds 1. Colours
/// whose luminance is outside 0..1 become black or white.
pub fn compress_gamut(rgb: [f32; 3]) -> [f32; 3] {
    let y = rgb[0] * SRGB_LUMA[0] + rgb[1] * SRGB_LUMA[1] + rgb[2] * SRGB_LUMA[2];
    if y <= 0.0 {
        return [0.0; 3];
    }
    if y >= 1.0 {
        return [1.0; 3];
    }
    let mut c = rgb;
    let lo = c[0].min(c[1]).min(c[2]);
    if lo < 0.0 {
        let t = y / (y - lo);
        c = c.map(|v| y + t * (v - y));
    }
    let hi = c[0].max(c[1]).max(c[2]);
    if hi > 1.0 {
        let t = (1.0 - y) / (hi - y);
        c = c.map(|v| y + t * (v - y));
    }
    c.map(|v| v.clamp(0.0, 1.0))
}

/// sRGB OETF table: linear 0..=1 in [`OETF_STEPS`] steps → 8-bit code.
const OETF_STEPS: usize = 1 << 16;

fn oetf_table() -> &'static [u8] {
    static T: OnceLock<Vec<u8>> = OnceLock::new();
    T.get_or_init(|| {
        (0..OETF_STEPS)
            .map(|i| {
                let l = i as f64 / (OETF_STEPS - 1) as f64;
                let v = if l <= 0.003_130_8 {
                    12.92 * l
                } else {
                    1.055 * l.powf(1.0 / 2.4) - 0.055
                };
                (v * 255.0).round().clamp(0.0, 255.0) as u8
            })
            .collect()
    })
}

fn oetf(table: &[u8], l: f32) -> u8 {
    table[(l.clamp(0.0, 1.0) * (OETF_STEPS - 1) as f32 + 0.5) as usize]
}

/// Per 16-bit code: PQ → cd/m², or HLG → scene light.
fn signal_table(transfer: Transfer) -> &'static [f32] {
    static PQ: OnceLock<Vec<f32>> = OnceLock::new();
    static HLG: OnceLock<Vec<f32>> = OnceLock::new();
    let f = match transfer {
        Transfer::Pq => pq_to_nits,
        Transfer::Hlg => hlg_to_scene,
    };
    let cell = match transfer {
        Transfer::Pq => &PQ,
        Transfer::Hlg => &HLG,
    };
    cell.get_or_init(|| {
        (0..=u16::MAX)
            .map(|i| f(f64::from(i) / 65_535.0) as f32)
            .collect()
    })
}

/// Entries of the tone-mapping gain table, indexed by `sqrt(max / peak)`.
const GAIN_STEPS: usize = 4096;

/// The tone-mapping gain as a function of `max(R, G, B)` in cd/m²: multiplies display light
/// into SDR-relative linear light (1.0 = [`SDR_PEAK_NITS`] after the EETF).
struct Gain {
    peak: f32,
    table: Vec<f32>,
}

impl Gain {
    fn new(peak: f64) -> Gain {
        let target = SDR_PEAK_NITS.min(peak);
        let table = (0..GAIN_STEPS)
            .map(|i| {
                let u = i as f64 / (GAIN_STEPS - 1) as f64;
                let m = u * u * peak;
                if i == 0 {
                    1.0 / SDR_PEAK_NITS as f32
                } else {
                    (eetf(m, peak, target) / (m * SDR_PEAK_NITS)) as f32
                }
            })
            .collect();
        Gain {
            peak: peak as f32,
            table,
        }
    }

    fn at(&self, max: f32) -> f32 {
        if max >= self.peak {
            // Above the stated peak: clipped to where the peak lands.
            return self.table[GAIN_STEPS - 1] * self.peak / max;
        }
        let x = (max.max(0.0) / self.peak).sqrt() * (GAIN_STEPS - 1) as f32;
        let i = (x as usize).min(GAIN_STEPS - 2);
        let f = x - i as f32;
        self.table[i] + f * (self.table[i + 1] - self.table[i])
    }
}

/// Tone-map a PQ or HLG frame to 8-bit sRGB. `layout` is gray or RGB, with or without alpha
/// (never CMYK: the caller routes only those); `primaries` are the source chromaticities.
pub fn to_srgb8(
    width: u32,
    height: u32,
    layout: Layout,
    samples: &Samples,
    transfer: Transfer,
    primaries: [(f64, f64); 4],
    light: ContentLight,
) -> Raster {
    let inch = layout.channels();
    let alpha = layout.has_alpha();
    let outch = if alpha { 4 } else { 3 };
    let gray = matches!(layout, Layout::Gray | Layout::GrayAlpha);
    let w = width as usize;
    let mut data = vec![0_u8; w * height as usize * outch];
    if w == 0 {
        return Raster {
            width,
            height,
            channels: outch,
            data,
        };
    }
    let m = to_srgb_matrix(primaries).map(|r| r.map(|v| v as f32));
    let gain = Gain::new(content_peak(transfer, light));
    let signal = signal_table(transfer);
    let out_table = oetf_table();
    // The source luminance weights for the HLG OOTF (BT.2100 defines it on BT.2020 light).
    let ys_weights = BT2020_LUMA;

    let pixel = |codes: [u16; 3], a: Option<u8>, out: &mut [u8]| {
        let mut c = codes.map(|v| signal[usize::from(v)]);
        if transfer == Transfer::Hlg {
            let ys = c[0] * ys_weights[0] + c[1] * ys_weights[1] + c[2] * ys_weights[2];
            let g = hlg_ootf_gain(ys);
            c = c.map(|v| v * g);
        }
        let k = gain.at(c[0].max(c[1]).max(c[2]));
        let c = c.map(|v| v * k);
        let s: [f32; 3] = std::array::from_fn(|i| m[i][0] * c[0] + m[i][1] * c[1] + m[i][2] * c[2]);
        let s = compress_gamut(s);
        out[0] = oetf(out_table, s[0]);
        out[1] = oetf(out_table, s[1]);
        out[2] = oetf(out_table, s[2]);
        if let Some(a) = a {
            out[3] = a;
        }
    };
    let codes = |s: &[u16]| {
        if gray {
            [s[0], s[0], s[0]]
        } else {
            [s[0], s[1], s[2]]
        }
    };
    match samples {
        Samples::U16(src) => data
            .par_chunks_mut(w * outch)
            .zip(src.par_chunks(w * inch))
            .for_each(|(out, row)| {
                for (o, s) in out.chunks_exact_mut(outch).zip(row.chunks_exact(inch)) {
                    let a = alpha.then(|| to8(s[inch - 1]));
                    pixel(codes(s), a, o);
                }
            }),
        Samples::U8(src) => data
            .par_chunks_mut(w * outch)
            .zip(src.par_chunks(w * inch))
            .for_each(|(out, row)| {
                let mut wide = [0_u16; 4];
                for (o, s) in out.chunks_exact_mut(outch).zip(row.chunks_exact(inch)) {
                    for (d, v) in wide.iter_mut().zip(s) {
                        *d = u16::from(*v) * 257;
                    }
                    let a = alpha.then(|| s[inch - 1]);
                    pixel(codes(&wide[..inch]), a, o);
                }
            }),
    }
    Raster {
        width,
        height,
        channels: outch,
        data,
    }
}

fn to8(v: u16) -> u8 {
    u8::try_from((u32::from(v) * 255 + 32_767) / 65_535).expect("a u16 scaled to 0..=255")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn light(max_cll: Option<u16>, mastering_peak: Option<u32>) -> ContentLight {
        ContentLight {
            max_cll,
            mastering_peak,
        }
    }

    #[test]
    fn eotfs_hit_their_known_points() {
        // BT.2408: PQ 58% (0.5806) and HLG 75% on a 1000 cd/m² display are reference white.
        assert!(
            (pq_to_nits(0.5806) - 203.0).abs() < 0.5,
            "{}",
            pq_to_nits(0.5806)
        );
        assert!((pq_to_nits(1.0) - 10_000.0).abs() < 1e-6);
        assert!(pq_to_nits(0.0) < 1e-6);
        let scene = hlg_to_scene(0.75);
        let nits = f64::from(hlg_ootf_gain(scene as f32)) * scene;
        assert!((nits - 203.0).abs() < 1.0, "{nits}");
        assert!((hlg_to_scene(1.0) - 1.0).abs() < 1e-6);
        assert!((hlg_to_scene(0.5) - 1.0 / 12.0).abs() < 1e-9);
        // The inverse PQ round-trips.
        for nits in [0.01, 1.0, 100.0, 203.0, 1000.0, 4000.0, 10_000.0] {
            let back = pq_to_nits(nits_to_pq(nits));
            assert!((back - nits).abs() < nits * 1e-9 + 1e-9, "{nits} → {back}");
        }
    }

    #[test]
    fn eetf_is_identity_below_the_knee_monotonic_and_lands_the_peak() {
        let (src, dst) = (1000.0, SDR_PEAK_NITS);
        // Knee: KS = 1.5·maxLum − 0.5 in PQ normalised by the source peak.
        let max_lum = nits_to_pq(dst) / nits_to_pq(src);
        let ks_nits = pq_to_nits((1.5 * max_lum - 0.5) * nits_to_pq(src));
        assert!(ks_nits > 50.0 && ks_nits < 203.0, "{ks_nits}");
        for nits in [0.0, 0.5, 10.0, 50.0, ks_nits * 0.99] {
            assert!((eetf(nits, src, dst) - nits).abs() < 1e-6 * (1.0 + nits));
        }
        assert!((eetf(src, src, dst) - dst).abs() < 1e-6);
        assert!((eetf(5000.0, src, dst) - dst).abs() < 1e-6);
        let mut last = 0.0;
        for i in 0..=10_000 {
            let v = eetf(f64::from(i) / 10.0, src, dst);
            assert!(v >= last - 1e-9, "not monotonic at {i}");
            last = v;
        }
        // Reference white from a 1000 cd/m² peak lands a little under SDR white.
        let white = eetf(203.0, src, dst) / dst;
        assert!(white > 0.75 && white < 0.9, "{white}");
        // Nothing to compress when the content is no brighter than SDR.
        assert_eq!(eetf(150.0, 180.0, dst), 150.0);
        // A 4000 cd/m² master, too.
        assert!((eetf(4000.0, 4000.0, dst) - dst).abs() < 1e-6);
    }

    #[test]
    fn the_gain_table_follows_the_eetf() {
        let gain = Gain::new(1000.0);
        for nits in [0.1_f32, 1.0, 50.0, 203.0, 500.0, 999.0, 1000.0] {
            let want = eetf(f64::from(nits), 1000.0, SDR_PEAK_NITS) / SDR_PEAK_NITS;
            let got = f64::from(gain.at(nits) * nits);
            assert!((got - want).abs() < 1e-3, "{nits}: {got} vs {want}");
        }
        assert!((gain.at(3000.0) * 3000.0 - 1.0).abs() < 1e-5);
    }

    #[test]
    fn the_content_peak_comes_from_clli_then_mdcv_then_the_default() {
        let pq = Transfer::Pq;
        assert_eq!(content_peak(pq, light(Some(4000), Some(1000))), 4000.0);
        assert_eq!(content_peak(pq, light(None, Some(1000))), 1000.0);
        assert_eq!(content_peak(pq, light(None, None)), DEFAULT_PEAK_NITS);
        // Zero and absurd values are not trusted.
        assert_eq!(content_peak(pq, light(Some(0), Some(0))), DEFAULT_PEAK_NITS);
        assert_eq!(content_peak(pq, light(Some(3), Some(600))), 600.0);
        assert_eq!(
            content_peak(pq, light(None, Some(50_000))),
            DEFAULT_PEAK_NITS
        );
        assert_eq!(
            content_peak(Transfer::Hlg, light(Some(4000), None)),
            HLG_DISPLAY_PEAK
        );
    }

    #[test]
    fn the_bt2020_matrix_is_bt2087s() {
        let m = to_srgb_matrix(BT2020);
        let want = [
            [1.6605, -0.5876, -0.0728],
            [-0.1246, 1.1329, -0.0083],
            [-0.0182, -0.1006, 1.1187],
        ];
        for i in 0..3 {
            for j in 0..3 {
                assert!((m[i][j] - want[i][j]).abs() < 5e-4, "{m:?}");
            }
        }
        // sRGB to itself is the identity.
        let id = to_srgb_matrix(SRGB);
        for (i, row) in id.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-9);
            }
        }
    }

    /// CIE L*a*b* hue angle (degrees) of a linear sRGB colour.
    fn hue(rgb: [f32; 3]) -> f64 {
        let m = rgb_to_xyz(SRGB);
        let c = rgb.map(f64::from);
        let x: [f64; 3] = std::array::from_fn(|i| (0..3).map(|j| m[i][j] * c[j]).sum());
        let w = xyz(D65);
        let f = |t: f64| {
            if t > 216.0 / 24389.0 {
                t.cbrt()
            } else {
                (24389.0 / 27.0 * t + 16.0) / 116.0
            }
        };
        let (fx, fy, fz) = (f(x[0] / w[0]), f(x[1] / w[1]), f(x[2] / w[2]));
        (200.0 * (fy - fz)).atan2(500.0 * (fx - fy)).to_degrees()
    }

    fn hue_diff(a: f64, b: f64) -> f64 {
        let d = (a - b).rem_euclid(360.0);
        d.min(360.0 - d)
    }

    /// The angle (degrees) of a linear sRGB colour's CIE xy chromaticity around D65: its
    /// dominant wavelength, which mixing with white or scaling does not move.
    fn xy_hue(rgb: [f32; 3]) -> f64 {
        let m = rgb_to_xyz(SRGB);
        let c = rgb.map(f64::from);
        let x: [f64; 3] = std::array::from_fn(|i| (0..3).map(|j| m[i][j] * c[j]).sum());
        let sum = x[0] + x[1] + x[2];
        (x[1] / sum - D65.1).atan2(x[0] / sum - D65.0).to_degrees()
    }

    #[test]
    fn out_of_gamut_primaries_land_in_gamut_without_a_hue_flip() {
        let m = to_srgb_matrix(BT2020).map(|r| r.map(|v| v as f32));
        for (src, name) in [
            ([0.5_f32, 0.0, 0.0], "red"),
            ([0.0, 0.5, 0.0], "green"),
            ([0.0, 0.0, 0.5], "blue"),
            ([0.0, 0.4, 0.4], "cyan"),
            ([0.6, 0.0, 0.6], "magenta"),
            ([0.9, 0.9, 0.0], "yellow"),
        ] {
            let lin: [f32; 3] =
                std::array::from_fn(|i| m[i][0] * src[0] + m[i][1] * src[1] + m[i][2] * src[2]);
            assert!(lin.iter().any(|v| *v < 0.0 || *v > 1.0), "{name} {lin:?}");
            let out = compress_gamut(lin);
            assert!(
                out.iter().all(|v| (0.0..=1.0).contains(v)),
                "{name} {out:?}"
            );
            // The dominant wavelength is kept exactly (the mix moves the chromaticity straight
            // toward the white point) ...
            let d = hue_diff(xy_hue(lin), xy_hue(out));
            assert!(d < 0.01, "{name}: dominant wavelength moved {d}°");
            // ... and the CIELAB hue, whose lines of constant hue are curved (BT.2020 red
            // moves most, 13.6°), does not flip.
            let d = hue_diff(hue(lin), hue(out));
            assert!(d < 15.0, "{name}: CIELAB hue moved {d}°");
        }
        // In-gamut colours are untouched.
        assert_eq!(compress_gamut([0.2, 0.5, 0.9]), [0.2, 0.5, 0.9]);
        assert_eq!(compress_gamut([-0.1, -0.2, -0.1]), [0.0; 3]);
    }

    /// Tone-map one BT.2020 PQ pixel given in cd/m² per channel; returns 8-bit sRGB.
    fn map_pq(nits: [f64; 3], light: ContentLight) -> [u8; 3] {
        let codes = nits.map(|n| (nits_to_pq(n) * 65_535.0).round() as u16);
        let r = to_srgb8(
            1,
            1,
            Layout::Rgb,
            &Samples::U16(codes.to_vec()),
            Transfer::Pq,
            BT2020,
            light,
        );
        [r.data[0], r.data[1], r.data[2]]
    }

    fn srgb_to_linear(v: u8) -> f32 {
        let v = f32::from(v) / 255.0;
        if v <= 0.040_45 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    }

    #[test]
    fn a_saturated_highlight_keeps_its_hue() {
        // A bright orange-red at 800 cd/m² peak channel: a per-channel curve bleaches it toward
        // yellow-white; max(RGB) scaling keeps the ratios, so the hue.
        let nits = [800.0, 200.0, 40.0];
        let m = to_srgb_matrix(BT2020);
        let lin: [f32; 3] =
            std::array::from_fn(|i| (0..3).map(|j| m[i][j] * nits[j] / 203.0).sum::<f64>() as f32);
        let out = map_pq(nits, light(None, None)).map(srgb_to_linear);
        // Tone mapping scales the three channels alike and gamut compression mixes toward
        // white, so the dominant wavelength is kept (up to 8-bit rounding).
        let d = hue_diff(xy_hue(lin), xy_hue(out));
        assert!(d < 1.5, "hue moved {d}°: {out:?}");
        // A curve per channel (the output channels each from their own input) would move it:
        // the check above can fail.
        let per_channel = nits.map(|n| (eetf(n, 1000.0, SDR_PEAK_NITS) / SDR_PEAK_NITS) as f32);
        let pc: [f32; 3] =
            std::array::from_fn(|i| (0..3).map(|j| m[i][j] as f32 * per_channel[j]).sum::<f32>());
        assert!(hue_diff(xy_hue(lin), xy_hue(compress_gamut(pc))) > 1.5);
        // Reference white stays neutral and bright; black stays black; the peak is white.
        let white = map_pq([203.0; 3], light(None, None));
        assert!(white[0] == white[1] && white[1] == white[2], "{white:?}");
        assert!((225..=245).contains(&white[0]), "{white:?}");
        assert_eq!(map_pq([0.0; 3], light(None, None)), [0, 0, 0]);
        assert_eq!(map_pq([1000.0; 3], light(None, None)), [255, 255, 255]);
        // With a 203 cd/m² MaxCLL nothing is compressed: reference white is SDR white.
        assert_eq!(map_pq([203.0; 3], light(Some(203), None)), [255, 255, 255]);
    }

    #[test]
    fn hlg_reference_white_and_gray_frames() {
        let code = (0.75 * 65_535.0_f64).round() as u16;
        let r = to_srgb8(
            2,
            1,
            Layout::GrayAlpha,
            &Samples::U16(vec![code, 65_535, 0, 0]),
            Transfer::Hlg,
            BT2020,
            light(None, None),
        );
        assert_eq!(r.channels, 4);
        // The same place as PQ's reference white, from the same 1000 cd/m² peak.
        let pq_white = map_pq([203.0; 3], light(None, None));
        assert!(r.data[0].abs_diff(pq_white[0]) <= 1, "{:?}", r.data);
        assert_eq!(&r.data[1..4], &[r.data[0], r.data[0], 255]);
        assert_eq!(&r.data[4..8], &[0, 0, 0, 0]);
        // 8-bit samples go through the same tables.
        let r8 = to_srgb8(
            1,
            1,
            Layout::Rgb,
            &Samples::U8(vec![191, 191, 191]),
            Transfer::Hlg,
            BT2020,
            light(None, None),
        );
        assert!(r8.data[0].abs_diff(pq_white[0]) <= 2, "{:?}", r8.data);
    }

    #[test]
    fn the_manifest_facts_name_the_transfer_and_the_peak() {
        let nclx = |transfer, max_cll| Nclx {
            primaries: 9,
            transfer,
            matrix: 9,
            full_range: false,
            light: light(max_cll, None),
        };
        assert_eq!(HdrSource::of(nclx(13, None)), None);
        let pq = HdrSource::of(nclx(16, Some(4000))).unwrap();
        assert_eq!(
            serde_json::to_value(pq).unwrap(),
            serde_json::json!({"transfer": "pq", "content_peak_nits": 4000})
        );
        let hlg = HdrSource::of(nclx(18, None)).unwrap();
        assert_eq!(
            serde_json::to_value(hlg).unwrap(),
            serde_json::json!({"transfer": "hlg", "content_peak_nits": 1000})
        );
    }
}
