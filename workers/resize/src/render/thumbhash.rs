//! ThumbHash placeholders: the `thumbhash` crate's encoder, byte for byte, with the cosine
//! terms of a DCT row summed in one pass.
//!
//! The crate walks every pixel once per coefficient (up to 25 passes per channel), recomputing
//! the cosines each time, and each pass is one long chain of dependent float additions. Here
//! one pass per coefficient row adds into up to [`LANES`] independent sums, one per column
//! term. Each sum still adds the same products (`value * fx * fy`, the same cosines) in the
//! same order, so every coefficient, and so the hash, is bit-identical to the crate's (a test
//! compares both); the independent sums just keep the vector units busy.

use std::f32::consts::PI;

/// Column terms summed together: the most any channel has (luminance: 7).
const LANES: usize = 8;

/// The ThumbHash of a `w` × `h` RGBA image (unassociated alpha, row-major), `w` and `h` at
/// most 100 (the caller's thumbnail).
///
/// # Panics
/// If `w` or `h` exceeds 100 or `rgba` is not `w * h * 4` bytes, as the crate does: a bug in
/// the caller, never something an input file controls.
pub fn encode(w: usize, h: usize, rgba: &[u8]) -> Vec<u8> {
    assert!(w <= 100 && h <= 100, "ThumbHash input is at most 100x100");
    assert_eq!(rgba.len(), w * h * 4, "ThumbHash input size");

    // The average colour.
    let (mut avg_r, mut avg_g, mut avg_b, mut avg_a) = (0.0_f32, 0.0_f32, 0.0_f32, 0.0_f32);
    for px in rgba.chunks_exact(4) {
        let alpha = f32::from(px[3]) / 255.0;
        avg_r += alpha / 255.0 * f32::from(px[0]);
        avg_g += alpha / 255.0 * f32::from(px[1]);
        avg_b += alpha / 255.0 * f32::from(px[2]);
        avg_a += alpha;
    }
    if avg_a > 0.0 {
        avg_r /= avg_a;
        avg_g /= avg_a;
        avg_b /= avg_a;
    }

    let has_alpha = avg_a < (w * h) as f32;
    let l_limit = if has_alpha { 5 } else { 7 };
    let lx = (((l_limit * w) as f32 / w.max(h) as f32).round() as usize).max(1);
    let ly = (((l_limit * h) as f32 / w.max(h) as f32).round() as usize).max(1);

    // RGBA to LPQA, composited over the average colour.
    let n = w * h;
    let (mut l, mut p, mut q, mut a) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for px in rgba.chunks_exact(4) {
        let alpha = f32::from(px[3]) / 255.0;
        let r = avg_r * (1.0 - alpha) + alpha / 255.0 * f32::from(px[0]);
        let g = avg_g * (1.0 - alpha) + alpha / 255.0 * f32::from(px[1]);
        let b = avg_b * (1.0 - alpha) + alpha / 255.0 * f32::from(px[2]);
        l.push((r + g + b) / 3.0);
        p.push((r + g) / 2.0 - b);
        q.push(r - g);
        a.push(alpha);
    }

    let (l_dc, l_ac, l_scale) = encode_channel(&l, w, h, lx.max(3), ly.max(3));
    let (p_dc, p_ac, p_scale) = encode_channel(&p, w, h, 3, 3);
    let (q_dc, q_ac, q_scale) = encode_channel(&q, w, h, 3, 3);
    let (a_dc, a_ac, a_scale) = if has_alpha {
        encode_channel(&a, w, h, 5, 5)
    } else {
        (1.0, Vec::new(), 1.0)
    };

    // The constants.
    let is_landscape = w > h;
    let header24 = (63.0 * l_dc).round() as u32
        | (((31.5 + 31.5 * p_dc).round() as u32) << 6)
        | (((31.5 + 31.5 * q_dc).round() as u32) << 12)
        | (((31.0 * l_scale).round() as u32) << 18)
        | if has_alpha { 1 << 23 } else { 0 };
    let header16 = (if is_landscape { ly } else { lx }) as u16
        | (((63.0 * p_scale).round() as u16) << 3)
        | (((63.0 * q_scale).round() as u16) << 9)
        | if is_landscape { 1 << 15 } else { 0 };
    let mut hash = Vec::with_capacity(25);
    hash.extend_from_slice(&[
        (header24 & 255) as u8,
        ((header24 >> 8) & 255) as u8,
        (header24 >> 16) as u8,
        (header16 & 255) as u8,
        (header16 >> 8) as u8,
    ]);
    if has_alpha {
        hash.push((15.0 * a_dc).round() as u8 | (((15.0 * a_scale).round() as u8) << 4));
    }

    // The varying factors, two per byte.
    let mut is_odd = false;
    for f in l_ac.into_iter().chain(p_ac).chain(q_ac).chain(a_ac) {
        let u = (15.0 * f).round() as u8;
        match hash.last_mut() {
            Some(last) if is_odd => *last |= u << 4,
            _ => hash.push(u),
        }
        is_odd = !is_odd;
    }
    hash
}

/// One channel's DC term, its AC terms normalised to 0..1, and their scale: the terms
/// (`cx`, `cy`) with `cx * ny < nx * (ny - cy)`, row by row, as the crate orders them.
fn encode_channel(
    channel: &[f32],
    w: usize,
    h: usize,
    nx: usize,
    ny: usize,
) -> (f32, Vec<f32>, f32) {
    debug_assert!(nx <= LANES);
    // The crate's column cosines, for every term at once.
    let fx: Vec<[f32; LANES]> = (0..w)
        .map(|x| std::array::from_fn(|cx| (PI / w as f32 * cx as f32 * (x as f32 + 0.5)).cos()))
        .collect();
    let mut dc = 0.0;
    let mut ac = Vec::with_capacity(nx * ny / 2);
    let mut scale = 0.0_f32;
    for cy in 0..ny {
        let terms = (0..nx).take_while(|cx| cx * ny < nx * (ny - cy)).count();
        let mut sums = [0.0_f32; LANES];
        for (y, row) in channel.chunks_exact(w).enumerate().take(h) {
            let fy = (PI / h as f32 * cy as f32 * (y as f32 + 0.5)).cos();
            for (&value, fx) in row.iter().zip(&fx) {
                for (sum, &fx) in sums.iter_mut().zip(fx) {
                    *sum += value * fx * fy;
                }
            }
        }
        for (cx, &sum) in sums.iter().enumerate().take(terms) {
            let f = sum / (w * h) as f32;
            if cx > 0 || cy > 0 {
                ac.push(f);
                scale = f.abs().max(scale);
            } else {
                dc = f;
            }
        }
    }
    if scale > 0.0 {
        for ac in &mut ac {
            *ac = 0.5 + 0.5 / scale * *ac;
        }
    }
    (dc, ac, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random byte stream (xorshift).
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn equals_the_thumbhash_crate_bit_for_bit() {
        let sizes = [
            (1, 1),
            (1, 7),
            (7, 1),
            (3, 3),
            (100, 75),
            (75, 100),
            (100, 100),
            (64, 9),
        ];
        let mut seed = 1;
        for (w, h) in sizes {
            // Opaque noise, noise with alpha, smooth gradients, flat colour, fully transparent.
            let mut images = vec![
                noise(seed, w * h * 4)
                    .chunks_exact(4)
                    .flat_map(|p| [p[0], p[1], p[2], 255])
                    .collect::<Vec<u8>>(),
                noise(seed + 1, w * h * 4),
                (0..w * h)
                    .flat_map(|i| {
                        let (x, y) = (i % w, i / w);
                        [
                            (x * 255 / w) as u8,
                            (y * 255 / h) as u8,
                            128,
                            (255 - x) as u8,
                        ]
                    })
                    .collect(),
                [200_u8, 30, 90, 255].repeat(w * h),
                vec![0_u8; w * h * 4],
            ];
            seed += 2;
            for (k, rgba) in images.drain(..).enumerate() {
                assert_eq!(
                    encode(w, h, &rgba),
                    thumbhash::rgba_to_thumb_hash(w, h, &rgba),
                    "{w}x{h}, image {k}"
                );
            }
        }
    }
}
