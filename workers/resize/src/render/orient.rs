//! EXIF orientation: turn stored pixels into displayed pixels.
//!
//! Invariant: after [`apply`] the raster is upright and the orientation is 1; encoders write no
//! metadata, so the tag cannot be applied twice downstream. Values outside 1..=8 mean 1.

use super::resize::Raster;

/// Apply EXIF orientation `o` (1..=8).
pub fn apply(src: Raster, o: u8) -> Raster {
    if !(2..=8).contains(&o) {
        return src;
    }
    let (w, h, c) = (src.width as usize, src.height as usize, src.channels);
    let swap = o >= 5;
    let (dw, dh) = if swap { (h, w) } else { (w, h) };
    let mut out = vec![0_u8; src.data.len()];
    // For each destination pixel, the source pixel it shows. The eight cases follow the EXIF
    // definition of where row 0 / column 0 of the stored image are displayed.
    for dy in 0..dh {
        for dx in 0..dw {
            let (sx, sy) = match o {
                2 => (w - 1 - dx, dy),         // mirror horizontal
                3 => (w - 1 - dx, h - 1 - dy), // rotate 180
                4 => (dx, h - 1 - dy),         // mirror vertical
                5 => (dy, dx),                 // transpose
                6 => (dy, h - 1 - dx),         // rotate 90 CW
                7 => (w - 1 - dy, h - 1 - dx), // transverse
                _ => (w - 1 - dy, dx),         // 8: rotate 270 CW
            };
            let s = (sy * w + sx) * c;
            let d = (dy * dw + dx) * c;
            out[d..d + c].copy_from_slice(&src.data[s..s + c]);
        }
    }
    Raster {
        width: u32::try_from(dw).expect("dimension came from a u32"),
        height: u32::try_from(dh).expect("dimension came from a u32"),
        channels: c,
        data: out,
    }
}

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
