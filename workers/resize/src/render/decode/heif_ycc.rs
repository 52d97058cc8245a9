//! The YCbCr → RGB step for 8-bit 4:2:0 HEIF images (every iPhone photo), done by the engine
//! straight into the frame's buffer instead of by libheif.
//!
//! Asked for RGB, libheif converts such an image with `Op_YCbCr420_to_RGB24` (nearest-neighbour
//! chroma, full range, 8.8 fixed-point coefficients) into an image of its own, which the decoder
//! then copied out: one pass over the pixels in scalar C, one copy, and both buffers alive at
//! once (73 MB for 12 MP). Here libheif returns the decoded planes as they are and
//! [`convert`] writes the RGB frame in one pass, cropped to the clean aperture, with the same
//! arithmetic: the samples are identical to libheif's (`tests` compare both on every HEIF/AVIF
//! test file).
//!
//! Invariants: [`Coefficients::new`] answers only where libheif would use that conversion
//! (8-bit 4:2:0, no alpha, full range, matrix not 0/8/11/14) and its coefficients do not come
//! from the colour primaries (matrices 12/13); everything else keeps libheif's conversion.

use super::heif_geometry::Rect;

/// The fixed-point (× 256) YCbCr → RGB coefficients libheif derives from an nclx matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Coefficients {
    r_cr: i32,
    g_cb: i32,
    g_cr: i32,
    b_cb: i32,
}

impl Coefficients {
    /// The coefficients for an image with the given nclx `(matrix_coefficients,
    /// full_range)`, `None` meaning no nclx (libheif then assumes BT.601, full range). `None`
    /// back where libheif would not use its 4:2:0 conversion or where it derives the matrix
    /// from the primaries.
    pub(super) fn new(nclx: Option<(u16, bool)>) -> Option<Self> {
        let (matrix, full_range) = nclx.unwrap_or((2, true));
        if !full_range || matches!(matrix, 0 | 8 | 11 | 12 | 13 | 14) {
            return None;
        }
        // Kr and Kb per matrix (ITU-T H.273 table 4), as libheif's `get_Kr_Kb`; other code
        // points (unspecified, reserved) take BT.601's decoding coefficients below.
        let kr_kb: Option<(f32, f32)> = match matrix {
            1 => Some((0.2126, 0.0722)),
            4 => Some((0.30, 0.11)),
            5 | 6 => Some((0.299, 0.114)),
            7 => Some((0.212, 0.087)),
            9 | 10 => Some((0.2627, 0.0593)),
            _ => None,
        };
        // libheif computes in `float` and rounds 256 × coefficient with `lround`.
        let (r_cr, g_cb, g_cr, b_cb) = match kr_kb {
            Some((kr, kb)) => (
                2.0 * (-kr + 1.0),
                2.0 * kb * (-kb + 1.0) / (kb + kr - 1.0),
                2.0 * kr * (-kr + 1.0) / (kb + kr - 1.0),
                2.0 * (-kb + 1.0),
            ),
            None => (1.402_f32, -0.344_136, -0.714_136, 1.772),
        };
        let fixed = |c: f32| (256.0 * c).round() as i32;
        Some(Self {
            r_cr: fixed(r_cr),
            g_cb: fixed(g_cb),
            g_cr: fixed(g_cr),
            b_cb: fixed(b_cb),
        })
    }
}

/// One 8-bit plane as libheif returns it: rows of `stride` bytes.
#[derive(Clone, Copy)]
pub(super) struct Plane<'a> {
    pub data: &'a [u8],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

impl Plane<'_> {
    fn row(&self, y: usize) -> &[u8] {
        &self.data[y * self.stride..y * self.stride + self.width]
    }
}

/// The RGB frame of `window` (in luma samples) from 4:2:0 planes: `window` must lie inside
/// `y`, and the chroma planes must have half of `y`'s size, rounded up. `None` when they do
/// not (the caller falls back to libheif's conversion).
pub(super) fn convert(
    y: Plane,
    cb: Plane,
    cr: Plane,
    window: Rect,
    c: Coefficients,
) -> Option<Vec<u8>> {
    let (x0, y0) = (window.x as usize, window.y as usize);
    let (w, h) = (window.width as usize, window.height as usize);
    let chroma = (y.width.div_ceil(2), y.height.div_ceil(2));
    let fits = |p: &Plane| {
        p.data.len() >= p.stride * p.height.saturating_sub(1) + p.width && p.stride >= p.width
    };
    if x0 + w > y.width
        || y0 + h > y.height
        || (cb.width, cb.height) != chroma
        || (cr.width, cr.height) != chroma
        || ![&y, &cb, &cr].into_iter().all(fits)
    {
        return None;
    }
    let mut out = vec![0_u8; w * h * 3];
    // The chroma columns the window reads, and their offsets per chroma row: two luma rows
    // share them.
    let (c0, c1) = (x0 / 2, (x0 + w).div_ceil(2));
    let mut offsets = vec![[0_i32; 3]; c1 - c0];
    let mut offsets_row = usize::MAX;
    for (dy, out_row) in out.chunks_exact_mut(w * 3).enumerate() {
        let sy = y0 + dy;
        if sy / 2 != offsets_row {
            offsets_row = sy / 2;
            let (cb_row, cr_row) = (&cb.row(offsets_row)[c0..c1], &cr.row(offsets_row)[c0..c1]);
            for ((o, &b), &r) in offsets.iter_mut().zip(cb_row).zip(cr_row) {
                let (b, r) = (i32::from(b) - 128, i32::from(r) - 128);
                *o = [
                    (c.r_cr * r + 128) >> 8,
                    (c.g_cb * b + c.g_cr * r + 128) >> 8,
                    (c.b_cb * b + 128) >> 8,
                ];
            }
        }
        let luma = &y.row(sy)[x0..x0 + w];
        // Pixels from an odd first column: its chroma sample is shared with the column left
        // of the window.
        let (first, luma, out_row, offsets) = if x0 % 2 == 1 {
            let (px, rest) = out_row.split_at_mut(3);
            (
                Some((px, luma[0], offsets[0])),
                &luma[1..],
                rest,
                &offsets[1..],
            )
        } else {
            (None, luma, out_row, &offsets[..])
        };
        if let Some((px, l, o)) = first {
            put(px, l, o);
        }
        let pairs = out_row.chunks_exact_mut(6).zip(luma.chunks_exact(2));
        for ((px, l), o) in pairs.zip(offsets) {
            let (a, b) = px.split_at_mut(3);
            put(a, l[0], *o);
            put(b, l[1], *o);
        }
        if luma.len() % 2 == 1 {
            let n = luma.len();
            put(
                &mut out_row[3 * (n - 1)..],
                luma[n - 1],
                offsets[(n - 1) / 2],
            );
        }
    }
    Some(out)
}

/// One pixel: luma plus its chroma's offsets, clamped.
#[inline(always)]
fn put(px: &mut [u8], l: u8, o: [i32; 3]) {
    let l = i32::from(l);
    px[0] = (l + o[0]).clamp(0, 255) as u8;
    px[1] = (l + o[1]).clamp(0, 255) as u8;
    px[2] = (l + o[2]).clamp(0, 255) as u8;
}

#[cfg(test)]
mod tests {
    use super::super::{Limits, Samples, heif};
    use super::*;

    /// Every HEIF and AVIF file in the repository's test corpus and conformance files.
    fn heif_test_files() -> Vec<std::path::PathBuf> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        let mut dirs = vec![
            root.join("../../testdata/corpus"),
            root.join("tests/conformance/files"),
        ];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
                let path = entry.unwrap().path();
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                if path.is_dir() {
                    dirs.push(path);
                } else if ["heic", "heif", "avif"].contains(&ext.to_ascii_lowercase().as_str()) {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    /// Decodes `bytes` with the engine's YCbCr conversion and with libheif's and checks the
    /// samples are the same; true when the engine's conversion was taken.
    fn same_both_ways(bytes: &[u8], name: &str) -> Option<bool> {
        let probe = super::super::probe(bytes, &Limits::default()).ok()?;
        let (libheif, _) = heif::decode_with(bytes, &probe, false).ok()?;
        let (ours, took) =
            heif::decode_with(bytes, &probe, true).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (ours.width, ours.height, ours.layout),
            (libheif.width, libheif.height, libheif.layout),
            "{name}"
        );
        let same = match (&ours.samples, &libheif.samples) {
            (Samples::U8(a), Samples::U8(b)) => a == b,
            (Samples::U16(a), Samples::U16(b)) => a == b,
            _ => false,
        };
        assert!(same, "{name}: samples differ");
        Some(took)
    }

    #[test]
    fn own_ycbcr_conversion_gives_libheifs_samples() {
        let (mut own, mut total) = (Vec::new(), 0);
        for path in heif_test_files() {
            let bytes = std::fs::read(&path).unwrap();
            if let Some(took) = same_both_ways(&bytes, &format!("{path:?}")) {
                total += 1;
                if took {
                    own.push(path);
                }
            }
        }
        assert!(
            total >= 20 && own.iter().any(|p| p.ends_with("iphone_7.heic")),
            "{} of {total} files took the engine's conversion: {own:?}",
            own.len()
        );
    }

    /// An 8-bit 4:2:0 AVIF of noise, `w` × `h`, through libheif and libaom, given a `colr`
    /// nclx property with `matrix` and `full_range` ([`with_nclx`]).
    fn noise_avif(w: u32, h: u32, matrix: u16, full_range: bool) -> Vec<u8> {
        use libheif_rs::{
            Channel, ColorSpace, CompressionFormat, EncoderParameterValue, EncoderQuality, Image,
            LibHeif, RgbChroma,
        };
        // RGB noise: libheif makes 4:2:0 planes with chroma of every extreme, so every clamp
        // of the conversion back is reached.
        let mut image = Image::new(w, h, ColorSpace::Rgb(RgbChroma::Rgb)).unwrap();
        image.create_plane(Channel::Interleaved, w, h, 8).unwrap();
        let mut seed = 0x2545_f491_u32;
        let planes = image.planes_mut();
        for v in planes.interleaved.unwrap().data.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            *v = (seed >> 24) as u8;
        }
        let lib = LibHeif::new();
        let mut encoder = lib.encoder_for_format(CompressionFormat::Av1).unwrap();
        encoder.set_quality(EncoderQuality::Lossy(90)).unwrap();
        encoder
            .set_parameter_value("chroma", EncoderParameterValue::String("420".into()))
            .unwrap();
        encoder
            .set_parameter_value("speed", EncoderParameterValue::Int(9))
            .unwrap();
        let mut ctx = libheif_rs::HeifContext::new().unwrap();
        ctx.encode_image(&image, &mut encoder, None).unwrap();
        with_nclx(&ctx.write_to_bytes().unwrap(), matrix, full_range)
    }

    /// `file` (libheif's output for one image: `meta` before `mdat`) with a `colr` nclx
    /// property (BT.709 primaries, sRGB transfer, `matrix`, `full_range`) added to its item.
    fn with_nclx(file: &[u8], matrix: u16, full_range: bool) -> Vec<u8> {
        let be32 = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
        // (start, size) of the first box named `kind` among the boxes in `range`.
        let find = |b: &[u8], range: std::ops::Range<usize>, kind: &[u8]| {
            let mut at = range.start;
            while at + 8 <= range.end {
                let size = be32(b, at) as usize;
                if &b[at + 4..at + 8] == kind {
                    return (at, size);
                }
                at += size;
            }
            panic!("no {} box", String::from_utf8_lossy(kind));
        };
        let mut out = file.to_vec();
        let (meta, meta_size) = find(file, 0..file.len(), b"meta");
        let (iprp, iprp_size) = find(file, meta + 12..meta + meta_size, b"iprp");
        let (ipco, ipco_size) = find(file, iprp + 8..iprp + iprp_size, b"ipco");
        let (ipma, ipma_size) = find(file, iprp + 8..iprp + iprp_size, b"ipma");
        let (iloc, _) = find(file, meta + 12..meta + meta_size, b"iloc");
        let mut properties = 0;
        let mut at = ipco + 8;
        while at < ipco + ipco_size {
            properties += 1;
            at += be32(file, at) as usize;
        }
        // One ipma entry of version 0 with 1-byte associations: its count, then add one.
        assert_eq!(
            (file[ipma + 8], be32(file, ipma + 12)),
            (0, 1),
            "one item, version 0"
        );
        let count_at = ipma + 18;
        let assoc_end = count_at + 1 + usize::from(file[count_at]);
        assert_eq!(assoc_end, ipma + ipma_size, "one entry");
        // iloc version 0 with 4-byte offsets, one item: the data moves 20 bytes on.
        assert_eq!(
            (file[iloc + 8], file[iloc + 12]),
            (0, 0x44),
            "iloc v0, 4-byte fields"
        );
        // The data's offset is the base offset plus the extent's: one of them moves.
        let base_size = usize::from(file[iloc + 13] >> 4);
        let extent_at = iloc + 22 + base_size;
        let field = if base_size == 4 && be32(file, iloc + 20) != 0 {
            iloc + 20
        } else {
            extent_at
        };
        assert!(
            be32(file, field) as usize >= meta + meta_size,
            "the data follows meta"
        );
        let offset = be32(file, field) + 20;
        out[field..field + 4].copy_from_slice(&offset.to_be_bytes());
        for (at, size) in [(meta, meta_size + 20), (iprp, iprp_size + 20)] {
            out[at..at + 4].copy_from_slice(&(size as u32).to_be_bytes());
        }
        out[ipco..ipco + 4].copy_from_slice(&(ipco_size as u32 + 19).to_be_bytes());
        out[ipma..ipma + 4].copy_from_slice(&(ipma_size as u32 + 1).to_be_bytes());
        out[count_at] += 1;
        let mut colr = Vec::from(*b"\0\0\0\x13colrnclx");
        for v in [1_u16, 13, matrix] {
            colr.extend_from_slice(&v.to_be_bytes());
        }
        colr.push(if full_range { 0x80 } else { 0 });
        let mut file = out[..ipco + ipco_size].to_vec();
        file.extend_from_slice(&colr);
        file.extend_from_slice(&out[ipco + ipco_size..assoc_end]);
        file.push(properties + 1);
        file.extend_from_slice(&out[assoc_end..]);
        file
    }

    #[test]
    fn own_ycbcr_conversion_follows_the_nclx_matrix_and_odd_sizes() {
        for (w, h) in [(37, 23), (64, 48), (1, 1), (2, 3)] {
            for (matrix, full_range, took) in [
                (1, true, true),
                (4, true, true),
                (5, true, true),
                (6, true, true),
                (7, true, true),
                (9, true, true),
                (2, true, true),
                (6, false, false),
                (12, true, false),
                (0, true, false),
            ] {
                let name = format!("{w}x{h} matrix {matrix} full range {full_range}");
                let bytes = noise_avif(w, h, matrix, full_range);
                assert_eq!(same_both_ways(&bytes, &name), Some(took), "{name}");
            }
        }
    }

    #[test]
    fn coefficients_are_libheifs() {
        // libheif's `YCbCr_to_RGB_coefficients::defaults()` (BT.601) in 8.8 fixed point.
        let bt601 = Coefficients {
            r_cr: 359,
            g_cb: -88,
            g_cr: -183,
            b_cb: 454,
        };
        assert_eq!(Coefficients::new(None), Some(bt601));
        assert_eq!(Coefficients::new(Some((6, true))), Some(bt601));
        assert_eq!(Coefficients::new(Some((2, true))), Some(bt601));
        assert_eq!(
            Coefficients::new(Some((1, true))),
            Some(Coefficients {
                r_cr: 403,
                g_cb: -48,
                g_cr: -120,
                b_cb: 475,
            })
        );
        for other in [
            (6, false),
            (0, true),
            (8, true),
            (12, true),
            (13, true),
            (14, true),
        ] {
            assert_eq!(Coefficients::new(Some(other)), None, "{other:?}");
        }
    }

    #[test]
    fn odd_windows_take_the_chroma_of_their_own_column() {
        // 5×3 luma, 3×2 chroma; a window starting at an odd column and row.
        let luma: Vec<u8> = (0..15).map(|i| 100 + i).collect();
        let cb: [u8; 6] = [128, 160, 96, 128, 128, 200];
        let cr: [u8; 6] = [128, 128, 128, 60, 128, 128];
        let plane = |data: &'static [u8], width, height| Plane {
            data,
            stride: width,
            width,
            height,
        };
        let luma: &'static [u8] = Box::leak(luma.into_boxed_slice());
        let c = Coefficients::new(None).unwrap();
        let window = Rect {
            x: 1,
            y: 1,
            width: 4,
            height: 2,
        };
        let rgb = convert(
            plane(luma, 5, 3),
            plane(Box::leak(Box::new(cb)), 3, 2),
            plane(Box::leak(Box::new(cr)), 3, 2),
            window,
            c,
        )
        .unwrap();
        let expect = |l: i32, b: i32, r: i32| {
            let (b, r) = (b - 128, r - 128);
            [
                (l + ((359 * r + 128) >> 8)).clamp(0, 255) as u8,
                (l + ((-88 * b - 183 * r + 128) >> 8)).clamp(0, 255) as u8,
                (l + ((454 * b + 128) >> 8)).clamp(0, 255) as u8,
            ]
        };
        let mut want = Vec::new();
        for sy in 1..3_usize {
            for sx in 1..5_usize {
                let ci = (sy / 2) * 3 + sx / 2;
                want.extend(expect(
                    i32::from(luma[sy * 5 + sx]),
                    i32::from(cb[ci]),
                    i32::from(cr[ci]),
                ));
            }
        }
        assert_eq!(rgb, want);
        // Chroma planes of the wrong size are refused.
        assert!(
            convert(
                plane(luma, 5, 3),
                plane(Box::leak(Box::new([128_u8; 4])), 2, 2),
                plane(Box::leak(Box::new([128_u8; 4])), 2, 2),
                window,
                c,
            )
            .is_none()
        );
    }
}
