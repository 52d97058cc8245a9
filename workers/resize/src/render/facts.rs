//! The facts about a source that the manifest records.
//!
//! Invariants: computed from the original bytes (hash, size) and from the upright sRGB raster
//! (alpha, placeholder, colour), so they describe what the viewer sees, not how it was stored.

use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::RenderError;
use super::decode::{Probe, SourceFormat};
use super::hdr::HdrSource;
use super::resize::{self, Raster};

/// Facts about one source image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFacts {
    /// Sniffed input format.
    pub format: SourceFormat,
    /// Width as displayed (after orientation).
    pub width: u32,
    /// Height as displayed (after orientation).
    pub height: u32,
    /// Input size in bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the input bytes.
    pub sha256: String,
    /// Whether any pixel is not fully opaque.
    pub has_alpha: bool,
    /// Description of the embedded ICC profile (e.g. "Display P3"), or for HEIF/AVIF signalled
    /// by nclx code points only, of those (e.g. "Display P3, sRGB transfer (nclx 12/13/6)").
    pub color_profile: Option<String>,
    /// EXIF orientation as stored (1..=8). Already applied to every variant.
    pub orientation: u8,
    /// Frames in the input, as the header counts them.
    pub frames: u32,
    /// For an input rendered as an animation: its frames, duration and loop count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub animation: Option<super::animation::AnimationFacts>,
    /// ThumbHash placeholder, base64 (standard alphabet, padded).
    pub thumbhash: String,
    /// Dominant colour as `#rrggbb`.
    pub dominant_color: String,
    /// For an HDR (PQ or HLG) source, its transfer and the peak it was tone-mapped from,
    /// e.g. `{"transfer": "pq", "content_peak_nits": 1000}`; absent for SDR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hdr: Option<HdrSource>,
}

/// Compute the facts. `raster` is any upright rendition of the source (the engine passes its
/// smallest variant: the placeholder needs at most 100 px); `oriented` is the displayed size
/// of the full-resolution source.
///
/// # Errors
/// [`RenderError::Encode`] if the thumbnail resize fails (a bug).
pub fn compute(
    bytes: &[u8],
    probe: &Probe,
    has_alpha: bool,
    raster: &Raster,
    oriented: (u32, u32),
    color_profile: Option<String>,
) -> Result<SourceFacts, RenderError> {
    // ThumbHash wants at most 100×100.
    let scale = 100.0 / f64::from(raster.width.max(raster.height));
    let (tw, th) = if scale < 1.0 {
        (
            ((f64::from(raster.width) * scale).round() as u32).max(1),
            ((f64::from(raster.height) * scale).round() as u32).max(1),
        )
    } else {
        (raster.width, raster.height)
    };
    let thumb = resize::resize(raster, tw, th)?;
    let rgba: Vec<u8> = if thumb.channels == 4 {
        thumb.data.clone()
    } else {
        thumb
            .data
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect()
    };
    let hash = super::thumbhash::encode(tw as usize, th as usize, &rgba);
    Ok(SourceFacts {
        format: probe.format,
        width: oriented.0,
        height: oriented.1,
        bytes: bytes.len() as u64,
        sha256: sha256_hex(bytes),
        has_alpha,
        color_profile,
        orientation: probe.orientation,
        frames: probe.frames,
        animation: None,
        thumbhash: base64::engine::general_purpose::STANDARD.encode(hash),
        dominant_color: dominant_color(&rgba),
        hdr: None,
    })
}

/// SHA-256 of `bytes`, lower-case hex (the manifest's `source.sha256`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The most populated colour cell (4 bits per channel, weighted by alpha), reported as the
/// mean of the pixels in it. A plain mean would turn a red-and-blue flag into purple.
fn dominant_color(rgba: &[u8]) -> String {
    let mut weight = vec![0_u64; 4096];
    let mut sums = vec![[0_u64; 3]; 4096];
    for p in rgba.chunks_exact(4) {
        let a = u64::from(p[3]);
        if a == 0 {
            continue;
        }
        let cell =
            (usize::from(p[0] >> 4) << 8) | (usize::from(p[1] >> 4) << 4) | usize::from(p[2] >> 4);
        weight[cell] += a;
        for c in 0..3 {
            sums[cell][c] += u64::from(p[c]) * a;
        }
    }
    let (best, w) = weight
        .iter()
        .enumerate()
        .max_by_key(|(_, w)| **w)
        .map(|(i, w)| (i, *w))
        .unwrap_or((0, 0));
    if w == 0 {
        return "#000000".into();
    }
    let [r, g, b] = sums[best].map(|s| s / w);
    format!("#{r:02x}{g:02x}{b:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dominant_colour_is_the_largest_cell_not_the_mean() {
        let mut px = [255_u8, 0, 0, 255].repeat(60);
        px.extend([0_u8, 0, 255, 255].repeat(40));
        assert_eq!(dominant_color(&px), "#ff0000");
    }

    #[test]
    fn fully_transparent_images_have_a_defined_colour() {
        assert_eq!(dominant_color(&[1, 2, 3, 0]), "#000000");
    }
}
