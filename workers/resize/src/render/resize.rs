//! The 8-bit sRGB raster every later stage works on, and Lanczos3 downscaling.
//!
//! Invariants: a [`Raster`] is tightly packed RGB or RGBA (unassociated alpha); resizing uses
//! fast_image_resize's SIMD convolution with alpha premultiplied for the filter and divided out
//! afterwards, so transparent pixels never bleed their colour into visible ones.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::RenderError;

/// Tightly packed 8-bit sRGB pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raster {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 3 (RGB) or 4 (RGBA, unassociated alpha).
    pub channels: usize,
    /// Row-major samples, `width * height * channels` bytes.
    pub data: Vec<u8>,
}

impl Raster {
    /// Number of pixels.
    pub fn pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// Whether any pixel is not fully opaque.
    pub fn has_transparency(&self) -> bool {
        self.channels == 4 && self.data.chunks_exact(4).any(|p| p[3] != 255)
    }

    /// The same pixels without the alpha channel (for opaque RGBA rasters).
    pub fn without_alpha(&self) -> Raster {
        if self.channels == 3 {
            return self.clone();
        }
        let data = self
            .data
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        Raster {
            width: self.width,
            height: self.height,
            channels: 3,
            data,
        }
    }

    fn pixel_type(&self) -> PixelType {
        if self.channels == 4 {
            PixelType::U8x4
        } else {
            PixelType::U8x3
        }
    }
}

/// Resize to exactly `width` × `height` with Lanczos3. Returns a copy when the size is unchanged.
///
/// # Errors
/// [`RenderError::Encode`] if the resizer rejects the buffers (a bug: sizes are derived from
/// the raster itself).
pub fn resize(src: &Raster, width: u32, height: u32) -> Result<Raster, RenderError> {
    if src.width == width && src.height == height {
        return Ok(src.clone());
    }
    let width = width.max(1);
    let height = height.max(1);
    let fail = |e: &dyn std::fmt::Display| RenderError::Encode(format!("resize: {e}"));
    let view =
        ImageRef::new(src.width, src.height, &src.data, src.pixel_type()).map_err(|e| fail(&e))?;
    let mut dst = Image::new(width, height, src.pixel_type());
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .use_alpha(src.channels == 4);
    Resizer::new()
        .resize(&view, &mut dst, &options)
        .map_err(|e| fail(&e))?;
    Ok(Raster {
        width,
        height,
        channels: src.channels,
        data: dst.into_vec(),
    })
}

/// Crop the window `crop` = (left, top, width, height) of `src` (in its pixels, fractional
/// edges allowed) and resize it to exactly `width` × `height` with Lanczos3, in one pass (alpha
/// premultiplied during the filter, as [`resize`]). The window is clamped to the raster.
///
/// # Errors
/// [`RenderError::Encode`] if the resizer rejects the buffers (a bug, as for [`resize`]).
pub fn resize_crop(
    src: &Raster,
    crop: (f64, f64, f64, f64),
    width: u32,
    height: u32,
) -> Result<Raster, RenderError> {
    let width = width.max(1);
    let height = height.max(1);
    let (sw, sh) = (f64::from(src.width), f64::from(src.height));
    let left = crop.0.clamp(0.0, sw - 1.0);
    let top = crop.1.clamp(0.0, sh - 1.0);
    let cw = crop.2.clamp(1.0, sw - left);
    let ch = crop.3.clamp(1.0, sh - top);
    let fail = |e: &dyn std::fmt::Display| RenderError::Encode(format!("resize: {e}"));
    let view =
        ImageRef::new(src.width, src.height, &src.data, src.pixel_type()).map_err(|e| fail(&e))?;
    let mut dst = Image::new(width, height, src.pixel_type());
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .crop(left, top, cw, ch)
        .use_alpha(src.channels == 4);
    Resizer::new()
        .resize(&view, &mut dst, &options)
        .map_err(|e| fail(&e))?;
    Ok(Raster {
        width,
        height,
        channels: src.channels,
        data: dst.into_vec(),
    })
}

/// A cheap box-filtered copy of `src` at most `max_side` pixels on its longer side (for
/// analysis, never for output).
///
/// # Errors
/// As [`resize`].
pub fn thumbnail(src: &Raster, max_side: u32) -> Result<Raster, RenderError> {
    let long = src.width.max(src.height).max(1);
    if long <= max_side {
        return Ok(src.clone());
    }
    let scale = f64::from(max_side) / f64::from(long);
    let w = ((f64::from(src.width) * scale).round() as u32).max(1);
    let h = ((f64::from(src.height) * scale).round() as u32).max(1);
    let fail = |e: &dyn std::fmt::Display| RenderError::Encode(format!("resize: {e}"));
    let view =
        ImageRef::new(src.width, src.height, &src.data, src.pixel_type()).map_err(|e| fail(&e))?;
    let mut dst = Image::new(w, h, src.pixel_type());
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Box))
        .use_alpha(src.channels == 4);
    Resizer::new()
        .resize(&view, &mut dst, &options)
        .map_err(|e| fail(&e))?;
    Ok(Raster {
        width: w,
        height: h,
        channels: src.channels,
        data: dst.into_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downscales_a_flat_colour_without_shifting_it() {
        let src = Raster {
            width: 64,
            height: 32,
            channels: 3,
            data: [200_u8, 30, 90].repeat(64 * 32),
        };
        let out = resize(&src, 16, 8).unwrap();
        assert_eq!((out.width, out.height, out.data.len()), (16, 8, 16 * 8 * 3));
        assert!(out.data.chunks_exact(3).all(|p| p == [200, 30, 90]));
    }

    #[test]
    fn transparent_pixels_do_not_bleed_colour() {
        // Left half opaque red, right half fully transparent green.
        let mut data = Vec::new();
        for _y in 0..16 {
            for x in 0..32 {
                data.extend_from_slice(if x < 16 {
                    &[255, 0, 0, 255]
                } else {
                    &[0, 255, 0, 0]
                });
            }
        }
        let src = Raster {
            width: 32,
            height: 16,
            channels: 4,
            data,
        };
        let out = resize(&src, 8, 4).unwrap();
        for p in out.data.chunks_exact(4).filter(|p| p[3] > 0) {
            assert!(p[1] < 10, "green bled into a visible pixel: {p:?}");
        }
    }
}
