//! Encoders: lossy WebP through libwebp and AVIF through ravif (rav1e).
//!
//! Invariants: output carries no metadata (no EXIF, no ICC: the pixels are sRGB, which is what
//! an untagged image means); an RGBA raster whose alpha is all 255 is encoded without alpha;
//! each call is single-image and thread-safe, so the caller runs them in parallel.

use ravif::{BitDepth, Img, RGB8, RGBA8};
use serde::{Deserialize, Serialize};
use shared::variant::{OutputFormat, VariantRequest};

use super::RenderError;
use super::resize::Raster;

/// Encoder and decoder knobs that are not part of the per-batch [`VariantRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EncodeSettings {
    /// libwebp `method` (0 = fastest, 6 = smallest). sharp's `effort: 4` is method 4.
    pub webp_method: u8,
    /// libwebp `thread_level` (0 or 1); 1 moves analysis and the alpha plane to a second
    /// thread without changing the output. sharp leaves it at 0.
    pub webp_thread_level: u8,
    /// rav1e speed preset (1 = slowest/smallest, 10 = fastest).
    pub avif_speed: u8,
    /// Added to the request's AVIF quality before it is handed to ravif. ravif's quality scale
    /// is not libaom's: this offset maps the request's libaom-style number (sharp's `quality`)
    /// to the ravif quality that gives about the same bytes and SSIM on our corpus.
    pub avif_quality_offset: f32,
    /// rav1e threads per encode; `None` encodes tiles on the shared rayon pool, which keeps
    /// both cores busy when one large AVIF is the last job of a batch (measured: corpus wall
    /// time 22.9 s with `Some(1)`, 20.1 s with `None`, +0.6% bytes from the extra tile).
    pub avif_threads: Option<usize>,
    /// The JPEG DCT-domain downscale must leave at least this factor for the Lanczos3 pass
    /// (see [`super::plan_jpeg_scale`]); `f64::INFINITY` disables DCT scaling.
    pub jpeg_min_residual: f64,
    /// A smaller variant is resized from an already-made larger one when that one is at least
    /// this many times wider (and taller); otherwise from the decoded frame.
    /// `f64::INFINITY` always resizes from the decoded frame. 1.5 makes the 1280 variant from
    /// the 2048 one, which saves a full-frame Lanczos pass per large image (about 1.5% of the
    /// WebP-only corpus CPU) for a mean WebP SSIM-Y of 0.9787 against 0.9788 with 2.0.
    pub resize_chain_min_ratio: f64,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        Self {
            webp_method: 4,
            webp_thread_level: 0,
            avif_speed: 8,
            avif_quality_offset: 13.0,
            avif_threads: None,
            jpeg_min_residual: 1.0,
            resize_chain_min_ratio: 1.5,
        }
    }
}

/// Encode one raster.
///
/// # Errors
/// [`RenderError::Encode`] when the encoder fails (out of memory, invalid configuration).
pub fn encode(
    raster: &Raster,
    format: OutputFormat,
    request: &VariantRequest,
    settings: &EncodeSettings,
) -> Result<Vec<u8>, RenderError> {
    let opaque;
    let raster = if raster.channels == 4 && !raster.has_transparency() {
        opaque = raster.without_alpha();
        &opaque
    } else {
        raster
    };
    match format {
        OutputFormat::Webp => webp(raster, request.webp_quality, settings),
        OutputFormat::Avif => avif(raster, request.avif_quality, settings),
    }
}

fn webp(raster: &Raster, quality: u8, settings: &EncodeSettings) -> Result<Vec<u8>, RenderError> {
    super::webp::encode(
        raster,
        super::webp::WebpOptions {
            quality,
            method: settings.webp_method,
            thread_level: settings.webp_thread_level,
        },
    )
}

fn avif(raster: &Raster, quality: u8, settings: &EncodeSettings) -> Result<Vec<u8>, RenderError> {
    let q = (f32::from(quality) + settings.avif_quality_offset).clamp(1.0, 100.0);
    let encoder = ravif::Encoder::new()
        .with_quality(q)
        .with_alpha_quality(q)
        .with_speed(settings.avif_speed.clamp(1, 10))
        .with_bit_depth(BitDepth::Eight)
        .with_num_threads(settings.avif_threads);
    let (w, h) = (raster.width as usize, raster.height as usize);
    let result = if raster.channels == 4 {
        let px: &[RGBA8] = bytemuck::cast_slice(&raster.data);
        encoder.encode_rgba(Img::new(px, w, h))
    } else {
        let px: &[RGB8] = bytemuck::cast_slice(&raster.data);
        encoder.encode_rgb(Img::new(px, w, h))
    };
    result
        .map(|e| e.avif_file)
        .map_err(|e| RenderError::Encode(format!("ravif: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(channels: usize, alpha: u8) -> Raster {
        let (w, h) = (48_u32, 32_u32);
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let px = [(x * 5) as u8, (y * 7) as u8, 128, alpha];
                data.extend_from_slice(&px[..channels]);
            }
        }
        Raster {
            width: w,
            height: h,
            channels,
            data,
        }
    }

    #[test]
    fn webp_output_is_a_riff_webp_file() {
        let out = encode(
            &gradient(3, 255),
            OutputFormat::Webp,
            &VariantRequest::default(),
            &EncodeSettings::default(),
        )
        .unwrap();
        assert_eq!(&out[0..4], b"RIFF");
        assert_eq!(&out[8..12], b"WEBP");
    }

    #[test]
    fn avif_output_has_an_avif_brand_and_keeps_alpha() {
        let out = encode(
            &gradient(4, 100),
            OutputFormat::Avif,
            &VariantRequest::default(),
            &EncodeSettings::default(),
        )
        .unwrap();
        assert_eq!(&out[4..12], b"ftypavif");
        let decoded = image::load_from_memory(&out);
        // The image crate here has no AVIF decoder; the alpha item is checked by its box type.
        assert!(decoded.is_err());
        assert!(
            out.windows(4).any(|w| w == b"auxC"),
            "no alpha auxiliary item"
        );
    }
}
