//! `sizes`: exact-size variants (`cover` crops, `contain` pads) and bounded boxes (`inside`),
//! and where a `cover` crop is centred (`center`, the file's focal point, or `auto`).
//!
//! Geometry is planned in the upright (oriented) image, as the request and the focal point
//! speak of it, and carried out in the stored frame, as the rest of the pipeline: the crop
//! window is found in the stored frame (the focal point is mapped into it, the attention map is
//! computed on it), cropped and resized in one Lanczos3 pass to the stored-frame size of the
//! output, then oriented; `contain` pads the oriented result. Invariants:
//!
//! - `cover` and `contain` always give exactly width × height, upscaling a smaller source (the
//!   request's 8192 bound per side and `Limits::max_output_pixels` bound the output); `inside`
//!   never upscales.
//! - A `cover` window has the output's aspect ratio and is as large as the frame allows; it is
//!   centred on the focus and then shifted to stay inside the frame.
//! - The attention map is computed once per file, on a copy at most [`ATTENTION_SIDE`] pixels
//!   on its longer side; each `auto` size then searches it in one dimension (the window spans
//!   the frame's full height or full width).

use shared::variant::{Background, Fit, FocalPoint, Focus, SizeSpec};

use super::RenderError;
use super::resize::{self, Raster};

/// Longer side of the copy the attention map is computed on.
pub const ATTENTION_SIDE: u32 = 256;

/// The upright size a `sizes` entry scales the whole `ow` × `oh` image (or, for `cover`, its
/// crop window) to, before any pad: `cover` the exact size, `contain` the largest size that
/// fits the box (up or down), `inside` the same but never above the source.
pub fn scaled_size(size: &SizeSpec, ow: u32, oh: u32) -> (u32, u32) {
    if size.fit == Fit::Cover {
        return (size.width, size.height);
    }
    let (ow, oh) = (f64::from(ow.max(1)), f64::from(oh.max(1)));
    let mut s = (f64::from(size.width) / ow).min(f64::from(size.height) / oh);
    if size.fit == Fit::Inside {
        s = s.min(1.0);
    }
    let w = ((ow * s).round() as u32).clamp(1, size.width);
    let h = ((oh * s).round() as u32).clamp(1, size.height);
    (w, h)
}

/// The final upright size of a `sizes` entry's output: width × height for `cover` and
/// `contain`, [`scaled_size`] for `inside`.
pub fn output_size(size: &SizeSpec, ow: u32, oh: u32) -> (u32, u32) {
    match size.fit {
        Fit::Inside => scaled_size(size, ow, oh),
        Fit::Cover | Fit::Contain => (size.width, size.height),
    }
}

/// The width the whole upright image has at the entry's scale (what a decoder that can reduce
/// must still deliver, like a `widths` entry's width).
pub fn equivalent_width(size: &SizeSpec, ow: u32, oh: u32) -> u32 {
    if size.fit != Fit::Cover {
        return scaled_size(size, ow, oh).0;
    }
    let (fw, fh) = (f64::from(ow.max(1)), f64::from(oh.max(1)));
    let s = (f64::from(size.width) / fw).max(f64::from(size.height) / fh);
    (fw * s).ceil().min(f64::from(u32::MAX)) as u32
}

/// The stored-frame relative position of the upright relative point `(u, v)` under EXIF
/// orientation `o` (the inverse of what [`super::orient::transform`] does to pixels).
pub fn stored_point(o: u8, (u, v): (f64, f64)) -> (f64, f64) {
    match o {
        2 => (1.0 - u, v),
        3 => (1.0 - u, 1.0 - v),
        4 => (u, 1.0 - v),
        5 => (v, u),
        6 => (v, 1.0 - u),
        7 => (1.0 - v, 1.0 - u),
        8 => (1.0 - v, u),
        _ => (u, v),
    }
}

/// The largest window of aspect `aw` : `ah` in a `fw` × `fh` frame, centred on the relative
/// point `centre` as far as the frame allows: `(left, top, width, height)` in frame pixels.
pub fn cover_window(fw: u32, fh: u32, (aw, ah): (u32, u32), centre: (f64, f64)) -> [f64; 4] {
    let (fw, fh) = (f64::from(fw.max(1)), f64::from(fh.max(1)));
    let aspect = f64::from(aw.max(1)) / f64::from(ah.max(1));
    let (w, h) = if fw / fh > aspect {
        (fh * aspect, fh)
    } else {
        (fw, fw / aspect)
    };
    let left = (centre.0 * fw - w / 2.0).clamp(0.0, fw - w);
    let top = (centre.1 * fh - h / 2.0).clamp(0.0, fh - h);
    [left, top, w, h]
}

/// Per-pixel interest of a small copy of the stored frame, in the spirit of libvips'
/// `attention` crop: edges (the 4-neighbour Laplacian of luma), skin tones and saturation,
/// weighted by alpha.
#[derive(Debug, Clone)]
pub struct AttentionMap {
    /// Width of the map.
    pub width: usize,
    /// Height of the map.
    pub height: usize,
    /// Row-major scores.
    pub score: Vec<f32>,
}

impl AttentionMap {
    /// Compute the map of `frame` (on a copy at most [`ATTENTION_SIDE`] on its longer side).
    ///
    /// # Errors
    /// As [`resize::thumbnail`].
    pub fn of(frame: &Raster) -> Result<Self, RenderError> {
        let small = resize::thumbnail(frame, ATTENTION_SIDE)?;
        let (w, h, c) = (small.width as usize, small.height as usize, small.channels);
        let px = |i: usize| &small.data[i * c..i * c + c];
        let luma: Vec<f32> = (0..w * h)
            .map(|i| {
                let p = px(i);
                0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
            })
            .collect();
        // The normalised skin colour of libvips' attention strategy.
        let skin = {
            let v = [0.78_f32, 0.57, 0.44];
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            [v[0] / n, v[1] / n, v[2] / n]
        };
        let mut score = vec![0.0_f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let at = |xx: usize, yy: usize| luma[yy * w + xx];
                let l = luma[i];
                let lap = 4.0 * l
                    - at(x.saturating_sub(1), y)
                    - at((x + 1).min(w - 1), y)
                    - at(x, y.saturating_sub(1))
                    - at(x, (y + 1).min(h - 1));
                let edge = (lap.abs() / 64.0).min(1.0);
                let p = px(i);
                let (r, g, b) = (f32::from(p[0]), f32::from(p[1]), f32::from(p[2]));
                let (max, min) = (r.max(g).max(b), r.min(g).min(b));
                let sat = if max > 0.0 { (max - min) / max } else { 0.0 };
                // Saturated colour counts only when it is not too dark to see.
                let sat = sat * (max / 255.0);
                let norm = (r * r + g * g + b * b).sqrt();
                let skin_score = if norm > 0.0 && (40.0..=240.0).contains(&l) {
                    let cos = (r * skin[0] + g * skin[1] + b * skin[2]) / norm;
                    ((cos - 0.98) / 0.02).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let alpha = if c == 4 { f32::from(p[3]) / 255.0 } else { 1.0 };
                score[i] = alpha * (edge + 0.5 * sat + skin_score);
            }
        }
        Ok(AttentionMap {
            width: w,
            height: h,
            score,
        })
    }

    /// The relative centre of the window of aspect `aw` : `ah` (as large as the frame allows)
    /// with the highest total score; the most central one among equals.
    pub fn best_centre(&self, (aw, ah): (u32, u32)) -> (f64, f64) {
        let (w, h) = (self.width.max(1), self.height.max(1));
        let [_, _, cw, ch] = cover_window(w as u32, h as u32, (aw, ah), (0.5, 0.5));
        // The window spans the whole of one axis; slide it along the other.
        let horizontal = cw < w as f64 - 0.5;
        let (n, len) = if horizontal {
            (w, (cw.round() as usize).clamp(1, w))
        } else {
            (h, (ch.round() as usize).clamp(1, h))
        };
        if len >= n {
            return (0.5, 0.5);
        }
        let mut line = vec![0.0_f64; n];
        for y in 0..h {
            for x in 0..w {
                let s = f64::from(self.score[y * w + x]);
                line[if horizontal { x } else { y }] += s;
            }
        }
        // Leave the centre only for a window that scores higher than the centred one; among
        // equals, the most central.
        let sums: Vec<f64> = {
            let mut sum: f64 = line[..len].iter().sum();
            let mut v = Vec::with_capacity(n - len + 1);
            v.push(sum);
            for start in 1..=n - len {
                sum += line[start + len - 1] - line[start - 1];
                v.push(sum);
            }
            v
        };
        let mid = (n - len) as f64 / 2.0;
        let centred = sums[mid.floor() as usize].max(sums[mid.ceil() as usize]);
        let top = sums.iter().copied().fold(f64::MIN, f64::max);
        if top <= centred + 1e-6 * centred.abs().max(1.0) {
            return (0.5, 0.5);
        }
        // Of the windows within 1% of the best, the one whose centre is nearest the centre of
        // mass of the best window's scores: the subject ends up centred, not on an edge.
        let first_best = sums.iter().position(|&v| v == top).unwrap_or(0);
        let mass: f64 = line[first_best..first_best + len].iter().sum();
        let centroid = if mass > 0.0 {
            line[first_best..first_best + len]
                .iter()
                .enumerate()
                .map(|(i, v)| (first_best + i) as f64 * v)
                .sum::<f64>()
                / mass
                + 0.5
        } else {
            first_best as f64 + len as f64 / 2.0
        };
        let best_at = sums
            .iter()
            .enumerate()
            .filter(|&(_, &v)| v >= top - 0.01 * top.abs())
            .map(|(start, _)| start)
            .min_by(|&a, &b| {
                let d = |s: usize| (s as f64 + len as f64 / 2.0 - centroid).abs();
                d(a).total_cmp(&d(b))
            })
            .unwrap_or(first_best);
        let c = (best_at as f64 + len as f64 / 2.0) / n as f64;
        if horizontal { (c, 0.5) } else { (0.5, c) }
    }
}

/// The relative stored-frame point a `cover` size of `oriented` aspect centres on.
pub fn focus_centre(
    size: &SizeSpec,
    orientation: u8,
    focal_point: Option<FocalPoint>,
    attention: Option<&AttentionMap>,
) -> (f64, f64) {
    let swap = orientation >= 5;
    let aspect = if swap {
        (size.height, size.width)
    } else {
        (size.width, size.height)
    };
    match (size.focus, focal_point, attention) {
        (Focus::FocalPoint, Some(p), _) => stored_point(orientation, (p.x, p.y)),
        (Focus::Auto, _, Some(map)) => map.best_centre(aspect),
        _ => (0.5, 0.5),
    }
}

/// Make one `sizes` entry from the stored `frame` (not yet oriented, not yet padded): the
/// stored-frame raster that, oriented, is [`scaled_size`].
///
/// # Errors
/// As [`resize::resize_crop`].
pub fn make(
    frame: &Raster,
    size: &SizeSpec,
    oriented: (u32, u32),
    orientation: u8,
    centre: (f64, f64),
) -> Result<Raster, RenderError> {
    let (sw, sh) = scaled_size(size, oriented.0, oriented.1);
    let swap = orientation >= 5;
    let (tw, th) = if swap { (sh, sw) } else { (sw, sh) };
    if size.fit != Fit::Cover {
        return resize::resize(frame, tw, th);
    }
    let [l, t, w, h] = cover_window(frame.width, frame.height, (tw, th), centre);
    resize::resize_crop(frame, (l, t, w, h), tw, th)
}

/// Pad the upright `scaled` raster to exactly `width` × `height`, centred, with `background`
/// (RGBA unless the raster and the colour are both opaque).
pub fn pad(scaled: &Raster, width: u32, height: u32, background: Background) -> Raster {
    if scaled.width == width && scaled.height == height {
        return scaled.clone();
    }
    let opaque = background.0[3] == 255 && scaled.channels == 3;
    let c = if opaque { 3 } else { 4 };
    let [r, g, b, a] = background.0;
    let fill: &[u8] = if opaque { &[r, g, b] } else { &[r, g, b, a] };
    let mut data = fill.repeat(width as usize * height as usize);
    let x0 = ((width - scaled.width.min(width)) / 2) as usize;
    let y0 = ((height - scaled.height.min(height)) / 2) as usize;
    let (w, sc) = (width as usize, scaled.channels);
    for y in 0..(scaled.height.min(height) as usize) {
        let row =
            &scaled.data[y * scaled.width as usize * sc..(y + 1) * scaled.width as usize * sc];
        let dst = &mut data[((y0 + y) * w + x0) * c..((y0 + y) * w + x0 + row.len() / sc) * c];
        if sc == c {
            dst.copy_from_slice(row);
        } else {
            for (d, s) in dst.chunks_exact_mut(4).zip(row.chunks_exact(3)) {
                d.copy_from_slice(&[s[0], s[1], s[2], 255]);
            }
        }
    }
    Raster {
        width,
        height,
        channels: c,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::orient;

    fn size(width: u32, height: u32, fit: Fit) -> SizeSpec {
        SizeSpec {
            width,
            height,
            fit,
            focus: Focus::Center,
            background: None,
        }
    }

    #[test]
    fn sizes_scale_as_their_fit_says() {
        assert_eq!(
            scaled_size(&size(200, 200, Fit::Inside), 1000, 500),
            (200, 100)
        );
        assert_eq!(
            scaled_size(&size(200, 200, Fit::Inside), 100, 50),
            (100, 50)
        );
        assert_eq!(
            scaled_size(&size(200, 200, Fit::Contain), 100, 50),
            (200, 100)
        );
        assert_eq!(
            scaled_size(&size(200, 200, Fit::Cover), 100, 50),
            (200, 200)
        );
        assert_eq!(
            output_size(&size(200, 200, Fit::Contain), 1000, 500),
            (200, 200)
        );
        assert_eq!(
            output_size(&size(200, 200, Fit::Inside), 1000, 500),
            (200, 100)
        );
        // Cover 200×200 of 1000×500: the height is scaled to 200, the width to 400.
        assert_eq!(
            equivalent_width(&size(200, 200, Fit::Cover), 1000, 500),
            400
        );
        // A 1×10000 strip contained in 16×16 keeps at least a pixel.
        assert_eq!(scaled_size(&size(16, 16, Fit::Contain), 1, 10_000), (1, 16));
    }

    #[test]
    fn windows_have_the_aspect_and_stay_inside() {
        assert_eq!(
            cover_window(1000, 500, (1, 1), (0.5, 0.5)),
            [250.0, 0.0, 500.0, 500.0]
        );
        assert_eq!(
            cover_window(1000, 500, (1, 1), (0.0, 0.5)),
            [0.0, 0.0, 500.0, 500.0]
        );
        assert_eq!(
            cover_window(1000, 500, (1, 1), (0.9, 0.5)),
            [500.0, 0.0, 500.0, 500.0]
        );
        assert_eq!(
            cover_window(500, 1000, (2, 1), (0.5, 0.1)),
            [0.0, 0.0, 500.0, 250.0]
        );
    }

    #[test]
    fn stored_points_follow_the_pixels_of_every_orientation() {
        // A 5×3 stored raster with one marked pixel; orient it, find the mark upright, and map
        // its (pixel-centre) position back.
        let (w, h) = (5_u32, 3_u32);
        for o in 1..=8_u8 {
            for (mx, my) in [(0_u32, 0_u32), (4, 0), (1, 2), (3, 1)] {
                let mut data = vec![0_u8; (w * h * 3) as usize];
                data[((my * w + mx) * 3) as usize] = 255;
                let up = orient::transform(
                    &Raster {
                        width: w,
                        height: h,
                        channels: 3,
                        data,
                    },
                    o,
                );
                let at = up.data.chunks_exact(3).position(|p| p[0] == 255).unwrap() as u32;
                let (ux, uy) = (at % up.width, at / up.width);
                let u = (f64::from(ux) + 0.5) / f64::from(up.width);
                let v = (f64::from(uy) + 0.5) / f64::from(up.height);
                let (x, y) = stored_point(o, (u, v));
                let want = (
                    (f64::from(mx) + 0.5) / f64::from(w),
                    (f64::from(my) + 0.5) / f64::from(h),
                );
                assert!(
                    (x - want.0).abs() < 1e-9 && (y - want.1).abs() < 1e-9,
                    "orientation {o}: ({x}, {y}) != {want:?}"
                );
            }
        }
    }

    #[test]
    fn attention_finds_the_busy_window_and_prefers_the_centre_when_flat() {
        let (w, h) = (300_u32, 100_u32);
        let mut data = [128_u8, 128, 128].repeat((w * h) as usize);
        // A saturated checkerboard from x = 200 to 260.
        for y in 20..80 {
            for x in 200..260 {
                let i = ((y * w + x) * 3) as usize;
                let on = (x / 4 + y / 4) % 2 == 0;
                data[i..i + 3].copy_from_slice(if on { &[255, 0, 0] } else { &[0, 0, 255] });
            }
        }
        let frame = Raster {
            width: w,
            height: h,
            channels: 3,
            data,
        };
        let map = AttentionMap::of(&frame).unwrap();
        // Computed on a copy bounded to ATTENTION_SIDE, whatever the frame.
        assert_eq!((map.width, map.height), (256, 85));
        let (cx, cy) = map.best_centre((1, 1));
        let [l, _, cw, _] = cover_window(w, h, (1, 1), (cx, cy));
        assert!(l <= 200.0 && l + cw >= 260.0, "window {l}..{}", l + cw);
        let flat = Raster {
            width: w,
            height: h,
            channels: 3,
            data: [90_u8, 90, 90].repeat((w * h) as usize),
        };
        assert_eq!(
            AttentionMap::of(&flat).unwrap().best_centre((1, 1)),
            (0.5, 0.5)
        );
    }

    #[test]
    fn pads_centre_the_image_with_the_colour() {
        let img = Raster {
            width: 2,
            height: 1,
            channels: 3,
            data: vec![9; 6],
        };
        let out = pad(&img, 4, 3, Background([1, 2, 3, 255]));
        assert_eq!((out.width, out.height, out.channels), (4, 3, 3));
        assert_eq!(&out.data[(4 + 1) * 3..(4 + 3) * 3], &[9; 6]);
        assert_eq!(&out.data[..3], &[1, 2, 3]);
        let out = pad(&img, 4, 3, Background::TRANSPARENT);
        assert_eq!(out.channels, 4);
        assert_eq!(&out.data[(4 + 1) * 4..(4 + 2) * 4], &[9, 9, 9, 255]);
        assert_eq!(&out.data[..4], &[0, 0, 0, 0]);
    }
}
