//! EXIF orientation: turn stored pixels into displayed pixels.
//!
//! Invariant: after [`apply`] the raster is upright and the orientation is 1; encoders write no
//! metadata, so the tag cannot be applied twice downstream. Values outside 1..=8 mean 1.

use super::resize::Raster;

/// Apply EXIF orientation `o` (1..=8).
pub fn apply(src: Raster, o: u8) -> Raster {
    if is_identity(o) {
        return src;
    }
    transform(&src, o)
}

/// Whether orientation `o` leaves the pixels as stored (1, or any value outside 2..=8).
pub fn is_identity(o: u8) -> bool {
    !(2..=8).contains(&o)
}

/// The upright copy of `src` for orientation `o` (a plain copy when [`is_identity`]).
pub fn transform(src: &Raster, o: u8) -> Raster {
    if is_identity(o) {
        return src.clone();
    }
    let (w, h, c) = (src.width as usize, src.height as usize, src.channels);
    let swap = o >= 5;
    let (dw, dh) = if swap { (h, w) } else { (w, h) };
    // For each destination pixel (dx, dy), the source pixel it shows, following the EXIF
    // definition of where row 0 / column 0 of the stored image are displayed. Every case is
    // affine: source index = start + dx * step_x + dy * step_y (in pixels).
    let (wi, hi) = (w as isize, h as isize);
    let (start, step_x, step_y) = match o {
        2 => (wi - 1, -1, wi),                  // mirror horizontal: (w-1-dx, dy)
        3 => ((hi - 1) * wi + wi - 1, -1, -wi), // rotate 180: (w-1-dx, h-1-dy)
        4 => ((hi - 1) * wi, 1, -wi),           // mirror vertical: (dx, h-1-dy)
        5 => (0, wi, 1),                        // transpose: (dy, dx)
        6 => ((hi - 1) * wi, -wi, 1),           // rotate 90 CW: (dy, h-1-dx)
        7 => ((hi - 1) * wi + wi - 1, -wi, -1), // transverse: (w-1-dy, h-1-dx)
        _ => (wi - 1, wi, -1),                  // 8, rotate 270 CW: (w-1-dy, dx)
    };
    let mut out = vec![0_u8; src.data.len()];
    match c {
        3 => remap::<3>(&src.data, &mut out, dw, start, step_x, step_y),
        4 => remap::<4>(&src.data, &mut out, dw, start, step_x, step_y),
        _ => {
            for (dy, row) in out.chunks_exact_mut(dw * c).enumerate() {
                for (dx, d) in row.chunks_exact_mut(c).enumerate() {
                    let s = source_index(start, step_x, step_y, dx, dy) * c;
                    d.copy_from_slice(&src.data[s..s + c]);
                }
            }
        }
    }
    Raster {
        width: u32::try_from(dw).expect("dimension came from a u32"),
        height: u32::try_from(dh).expect("dimension came from a u32"),
        channels: c,
        data: out,
    }
}

fn source_index(start: isize, step_x: isize, step_y: isize, dx: usize, dy: usize) -> usize {
    let i = start + dx as isize * step_x + dy as isize * step_y;
    usize::try_from(i).expect("the orientation maps inside the image")
}

/// The pixel copy with a fixed pixel size, so each copy is a plain move.
fn remap<const C: usize>(
    src: &[u8],
    out: &mut [u8],
    dw: usize,
    start: isize,
    step_x: isize,
    step_y: isize,
) {
    let src: &[[u8; C]] = bytemuck::cast_slice(src);
    let out: &mut [[u8; C]] = bytemuck::cast_slice_mut(out);
    let dh = out.len() / dw;
    // In square tiles: a rotation reads the source down its columns, and a tile keeps the
    // rows it touches in cache (2-4x faster than whole destination rows on a 12 MP frame).
    for ty in (0..dh).step_by(TILE) {
        for tx in (0..dw).step_by(TILE) {
            for dy in ty..(ty + TILE).min(dh) {
                let row = &mut out[dy * dw + tx..dy * dw + (tx + TILE).min(dw)];
                let mut s = start + dy as isize * step_y + tx as isize * step_x;
                for d in row {
                    *d = src[usize::try_from(s).expect("the orientation maps inside the image")];
                    s += step_x;
                }
            }
        }
    }
}

/// Side of the square tiles [`remap`] copies, in pixels.
const TILE: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    /// 2×3 stored image with distinct gray values, row-major:
    /// 1 2
    /// 3 4
    /// 5 6
    fn stored() -> Raster {
        Raster {
            width: 2,
            height: 3,
            channels: 3,
            data: (1..=6_u8).flat_map(|v| [v, v, v]).collect(),
        }
    }

    fn values(r: &Raster) -> Vec<u8> {
        r.data.chunks_exact(3).map(|p| p[0]).collect()
    }

    #[test]
    fn tiles_cover_every_pixel_of_odd_sizes() {
        // 70 x 45 (not a multiple of the tile side) with unique pixel values, against the
        // per-pixel definition of each orientation.
        let (w, h) = (70_usize, 45_usize);
        let data: Vec<u8> = (0..w * h)
            .flat_map(|i| [(i % 256) as u8, (i / 256) as u8, 7, 9])
            .collect();
        let src = Raster {
            width: w as u32,
            height: h as u32,
            channels: 4,
            data,
        };
        for o in 2..=8_u8 {
            let r = transform(&src, o);
            let (dw, dh) = (r.width as usize, r.height as usize);
            for dy in 0..dh {
                for dx in 0..dw {
                    let (sx, sy) = match o {
                        2 => (w - 1 - dx, dy),
                        3 => (w - 1 - dx, h - 1 - dy),
                        4 => (dx, h - 1 - dy),
                        5 => (dy, dx),
                        6 => (dy, h - 1 - dx),
                        7 => (w - 1 - dy, h - 1 - dx),
                        _ => (w - 1 - dy, dx),
                    };
                    let (d, s) = ((dy * dw + dx) * 4, (sy * w + sx) * 4);
                    assert_eq!(r.data[d..d + 4], src.data[s..s + 4], "o={o} at ({dx},{dy})");
                }
            }
        }
    }

    #[test]
    fn applies_all_eight_orientations() {
        let cases: [(u8, (u32, u32), [u8; 6]); 8] = [
            (1, (2, 3), [1, 2, 3, 4, 5, 6]),
            (2, (2, 3), [2, 1, 4, 3, 6, 5]),
            (3, (2, 3), [6, 5, 4, 3, 2, 1]),
            (4, (2, 3), [5, 6, 3, 4, 1, 2]),
            (5, (3, 2), [1, 3, 5, 2, 4, 6]),
            (6, (3, 2), [5, 3, 1, 6, 4, 2]),
            (7, (3, 2), [6, 4, 2, 5, 3, 1]),
            (8, (3, 2), [2, 4, 6, 1, 3, 5]),
        ];
        for (o, dims, expect) in cases {
            let r = apply(stored(), o);
            assert_eq!((r.width, r.height), dims, "orientation {o}");
            assert_eq!(values(&r), expect, "orientation {o}");
        }
    }
}
