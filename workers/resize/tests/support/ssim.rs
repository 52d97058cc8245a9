//! Mean SSIM (Wang et al. 2004) of two luma planes, shared by the engine's tests: 8×8 windows
//! at stride 4 (plus the last window of each row and column, so the edges count), constants
//! for 8-bit values.
#![allow(dead_code)] // each includer uses a subset

/// Luma (BT.601 weights) of RGB pixels, 0..=255.
pub fn luma(img: &image::RgbImage) -> Vec<f64> {
    img.pixels()
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect()
}

/// Mean SSIM of the `w`×`h` planes `x` and `y` (both at least 8×8).
pub fn ssim(x: &[f64], y: &[f64], w: usize, h: usize) -> f64 {
    const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
    const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);
    assert!(w >= 8 && h >= 8, "{w}x{h} is smaller than one window");
    assert_eq!(x.len(), w * h);
    assert_eq!(y.len(), w * h);
    let starts = |n: usize| {
        let mut v: Vec<usize> = (0..=n - 8).step_by(4).collect();
        if *v.last().expect("n >= 8") != n - 8 {
            v.push(n - 8);
        }
        v
    };
    let (mut total, mut count) = (0.0, 0.0);
    for &wy in &starts(h) {
        for &wx in &starts(w) {
            let (mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for r in wy..wy + 8 {
                for c in wx..wx + 8 {
                    let (a, b) = (x[r * w + c], y[r * w + c]);
                    sx += a;
                    sy += b;
                    sxx += a * a;
                    syy += b * b;
                    sxy += a * b;
                }
            }
            let n = 64.0;
            let (mx, my) = (sx / n, sy / n);
            let (vx, vy, cov) = (sxx / n - mx * mx, syy / n - my * my, sxy / n - mx * my);
            total += ((2.0 * mx * my + C1) * (2.0 * cov + C2))
                / ((mx * mx + my * my + C1) * (vx + vy + C2));
            count += 1.0;
        }
    }
    total / count
}
