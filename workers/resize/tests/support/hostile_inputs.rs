//! Generators of hostile (and a few valid) image files, made in the test rather than stored:
//! bombs are tiny files declaring huge sizes, so the repository keeps only this code. Shared by
//! `workers/resize/tests/hostile.rs` (engine) and `workers/cli/tests/hostile.rs` (pipeline)
//! through `#[path]`.
#![allow(dead_code)] // each including test uses a subset

use std::io::Cursor;

use image::ImageEncoder as _;

/// A deterministic xorshift stream, so a failure names a reproducible seed.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Files that are not images at all (zero bytes, noise, other documents), by name.
pub fn not_images() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("zero-bytes.jpg", Vec::new()),
        ("one-byte.png", vec![0x89]),
        ("random.jpg", noise(1, 4096)),
        ("random-big.png", noise(2, 200_000)),
        (
            "page.jpg",
            b"<!doctype html><html><head><title>x</title></head><body><img src=x onerror=alert(1)></body></html>".to_vec(),
        ),
        (
            "doc.png",
            b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
                .to_vec(),
        ),
        (
            "feed.webp",
            br#"<?xml version="1.0"?><rss version="2.0"><channel><title>x</title></channel></rss>"#.to_vec(),
        ),
        (
            "inline.png",
            b"<!DOCTYPE html><html><body><svg xmlns=\"http://www.w3.org/2000/svg\"/></body></html>".to_vec(),
        ),
        ("archive.gif", b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec()),
        ("almost.gif", b"GIF8".to_vec()),
    ]
}

/// Every magic the engine sniffs, followed by noise.
pub fn noise_behind_magic(seed: u64) -> Vec<(&'static str, Vec<u8>)> {
    let len = 16 + (seed as usize * 37) % 3000;
    let magics: [(&str, &[u8]); 7] = [
        ("jpeg", &[0xFF, 0xD8, 0xFF]),
        ("png", b"\x89PNG\r\n\x1a\n"),
        ("gif", b"GIF89a"),
        ("webp", b"RIFF\x00\x10\x00\x00WEBPVP8 "),
        ("tiff", b"II*\x00"),
        ("avif", b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1"),
        ("heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1"),
    ];
    magics
        .iter()
        .map(|(name, magic)| {
            let mut v = magic.to_vec();
            v.extend(noise(seed * 7 + v.len() as u64, len));
            (*name, v)
        })
        .collect()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFF_u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut c = kind.to_vec();
    c.extend_from_slice(data);
    out.extend_from_slice(&c);
    out.extend(crc32(&c).to_be_bytes());
}

/// A PNG whose IHDR declares `w`×`h` RGB, with one tiny (empty-ish) IDAT: a header bomb.
pub fn png_header_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    // zlib header + an empty final stored block + adler32 of nothing.
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A real PNG of `w`×`h` gray zeros at the best compression: a decompression bomb whose
/// pixels all exist (a few tens of KB for 16 MP).
pub fn png_zero_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let pixels = vec![0_u8; w as usize * h as usize];
    image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Best,
        image::codecs::png::FilterType::NoFilter,
    )
    .write_image(&pixels, w, h, image::ExtendedColorType::L8)
    .expect("PNG encodes");
    out
}

/// A solid RGB PNG.
pub fn png_solid(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let pixels: Vec<u8> = (0..w as usize * h as usize)
        .flat_map(|i| [(i % 251) as u8, 90, 200])
        .collect();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&pixels, w, h, image::ExtendedColorType::Rgb8)
        .expect("PNG encodes");
    out
}

/// A JPEG of `w`×`h` (a smooth gradient), quality 80.
pub fn jpeg_solid(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let pixels: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| [(x % 256) as u8, (y % 256) as u8, 128]))
        .collect();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .write_image(&pixels, w, h, image::ExtendedColorType::Rgb8)
        .expect("JPEG encodes");
    out
}

/// An 8x8 JPEG whose SOF claims `w`×`h`: a header bomb.
pub fn jpeg_header_bomb(w: u16, h: u16) -> Vec<u8> {
    let mut j = jpeg_solid(8, 8);
    let sof = j
        .windows(2)
        .position(|m| m[0] == 0xFF && (m[1] == 0xC0 || m[1] == 0xC2))
        .expect("a SOF marker");
    // FF C0, length (2), precision (1), height (2), width (2).
    j[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    j[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    j
}

/// GIF LZW data (minimum code size 2) for `n` zero indices, as sub-blocks with a terminator.
fn gif_lzw_zeros(n: usize) -> Vec<u8> {
    let mut codes = Vec::new();
    let mut enc = weezl::encode::Encoder::new(weezl::BitOrder::Lsb, 2);
    let res = enc
        .into_stream(&mut codes)
        .encode_all(std::io::BufReader::new(std::io::Read::take(
            std::io::repeat(0),
            n as u64,
        )));
    res.status.expect("LZW encodes");
    let mut out = vec![2_u8];
    for block in codes.chunks(255) {
        out.push(block.len() as u8);
        out.extend_from_slice(block);
    }
    out.push(0);
    out
}

fn gif_header(screen_w: u16, screen_h: u16) -> Vec<u8> {
    let mut g = b"GIF89a".to_vec();
    g.extend(screen_w.to_le_bytes());
    g.extend(screen_h.to_le_bytes());
    // Global colour table of 4 entries (flags 0x81), background 0, aspect 0.
    g.extend([0x81, 0, 0]);
    g.extend([200, 30, 30, 30, 200, 30, 30, 30, 200, 255, 255, 255]);
    g
}

fn gif_frame(left: u16, top: u16, w: u16, h: u16, lzw: &[u8]) -> Vec<u8> {
    // Graphic control extension (10 ms delay), then the image descriptor.
    let mut f = vec![0x21, 0xF9, 4, 0, 1, 0, 0, 0];
    f.push(0x2C);
    f.extend(left.to_le_bytes());
    f.extend(top.to_le_bytes());
    f.extend(w.to_le_bytes());
    f.extend(h.to_le_bytes());
    f.push(0);
    f.extend_from_slice(lzw);
    f
}

/// An animated GIF of `frames` full-screen `w`×`h` frames (one colour): hundreds of large
/// frames in little space (the frame's bytes are repeated).
///
/// # Panics
/// When a side does not fit in 16 bits.
pub fn gif_frames(w: u32, h: u32, frames: usize) -> Vec<u8> {
    let (w16, h16) = (
        u16::try_from(w).expect("GIF side"),
        u16::try_from(h).expect("GIF side"),
    );
    let mut g = gif_header(w16, h16);
    // Netscape loop extension, as real animations carry.
    g.extend(b"\x21\xFF\x0BNETSCAPE2.0\x03\x01\x00\x00\x00");
    let frame = gif_frame(0, 0, w16, h16, &gif_lzw_zeros(w as usize * h as usize));
    for _ in 0..frames {
        g.extend_from_slice(&frame);
    }
    g.push(0x3B);
    g
}

/// A GIF whose logical screen declares `w`×`h` and whose one frame is 1x1: a header bomb.
pub fn gif_screen_bomb(w: u16, h: u16) -> Vec<u8> {
    let mut g = gif_header(w, h);
    g.extend(gif_frame(0, 0, 1, 1, &gif_lzw_zeros(1)));
    g.push(0x3B);
    g
}

/// A GIF with a small logical screen and a first frame far larger than it: the frame buffer
/// the decoder allocates is the frame's, not the screen's.
pub fn gif_frame_bomb(screen_w: u16, screen_h: u16, frame_w: u16, frame_h: u16) -> Vec<u8> {
    let mut g = gif_header(screen_w, screen_h);
    g.extend(gif_frame(
        0,
        0,
        frame_w,
        frame_h,
        &gif_lzw_zeros(usize::from(frame_w) * usize::from(frame_h)),
    ));
    g.push(0x3B);
    g
}

/// Small valid images of every format the generators can write (for truncation and as valid
/// neighbours in a hostile batch).
pub fn valid_images() -> Vec<(&'static str, Vec<u8>)> {
    let mut webp = Vec::new();
    let pixels: Vec<u8> = (0..48 * 32)
        .flat_map(|i| [(i % 256) as u8, 100, 50, 255])
        .collect();
    image::codecs::webp::WebPEncoder::new_lossless(Cursor::new(&mut webp))
        .write_image(&pixels, 48, 32, image::ExtendedColorType::Rgba8)
        .expect("WebP encodes");
    vec![
        ("valid.png", png_solid(64, 40)),
        ("valid.jpg", jpeg_solid(72, 48)),
        ("valid.gif", gif_frames(40, 30, 3)),
        ("valid.webp", webp),
    ]
}

/// One IFD entry of a generated TIFF: tag, field type (3 SHORT, 4 LONG, 7 UNDEFINED), count,
/// and the value bytes (inline when at most 4, else stored after the IFD; an empty value with
/// a count keeps the count as declared, pointing at offset 8: a lying tag).
pub struct TiffEntry {
    pub tag: u16,
    pub kind: u16,
    pub count: u32,
    pub value: Vec<u8>,
}

pub fn tiff_short(tag: u16, values: &[u16]) -> TiffEntry {
    TiffEntry {
        tag,
        kind: 3,
        count: values.len() as u32,
        value: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

pub fn tiff_long(tag: u16, values: &[u32]) -> TiffEntry {
    TiffEntry {
        tag,
        kind: 4,
        count: values.len() as u32,
        value: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// A little-endian TIFF: `data` at offset 8 (strip/tile offsets are relative to the file, so
/// data starts at 8), then one IFD with `entries`, then the out-of-line values.
pub fn tiff_file(data: &[u8], mut entries: Vec<TiffEntry>) -> Vec<u8> {
    entries.sort_by_key(|e| e.tag);
    let mut out = b"II*\0".to_vec();
    let ifd = (8 + data.len()).next_multiple_of(2);
    out.extend((ifd as u32).to_le_bytes());
    out.extend_from_slice(data);
    out.resize(ifd, 0);
    out.extend((entries.len() as u16).to_le_bytes());
    let mut extra_at = ifd + 2 + entries.len() * 12 + 4;
    let mut extra = Vec::new();
    for e in &entries {
        out.extend(e.tag.to_le_bytes());
        out.extend(e.kind.to_le_bytes());
        out.extend(e.count.to_le_bytes());
        if e.value.is_empty() {
            out.extend(8_u32.to_le_bytes());
        } else if e.value.len() <= 4 {
            let mut v = e.value.clone();
            v.resize(4, 0);
            out.extend(v);
        } else {
            out.extend((extra_at as u32).to_le_bytes());
            extra.extend_from_slice(&e.value);
            if extra.len() % 2 == 1 {
                extra.push(0);
            }
            extra_at = ifd + 2 + entries.len() * 12 + 4 + extra.len();
        }
    }
    out.extend(0_u32.to_le_bytes());
    out.extend(extra);
    out
}

/// The tags of an uncompressed 8-bit image in one strip at offset 8.
fn tiff_basic(w: u32, h: u32, samples: u16, photometric: u16, len: usize) -> Vec<TiffEntry> {
    vec![
        tiff_long(256, &[w]),
        tiff_long(257, &[h]),
        tiff_short(258, &vec![8; usize::from(samples)]),
        tiff_short(259, &[1]),
        tiff_short(262, &[photometric]),
        tiff_long(273, &[8]),
        tiff_short(277, &[samples]),
        tiff_long(278, &[h]),
        tiff_long(279, &[len as u32]),
    ]
}

/// A 1x1 gray TIFF whose ICC-profile tag declares 4,294,967,295 bytes (a ~120-byte file).
pub fn tiff_icc_count_bomb() -> Vec<u8> {
    let mut entries = tiff_basic(1, 1, 1, 1, 1);
    entries.push(TiffEntry {
        tag: 34675,
        kind: 1, // BYTE: the tiff crate builds one 32-byte value per declared entry
        count: u32::MAX,
        value: Vec::new(),
    });
    tiff_file(&[128], entries)
}

/// The RGBA value the planar TIFF generator stores at (x, y).
pub fn planar_pixel(x: u32, y: u32) -> [u8; 4] {
    [
        (x * 4) as u8,
        (y * 5) as u8,
        100 + (x + y) as u8 % 50,
        255 - (x % 7) as u8,
    ]
}

/// A valid `w`×`h` RGBA TIFF with PlanarConfiguration=2: four strips, one per sample plane.
pub fn tiff_planar_rgba(w: u32, h: u32) -> Vec<u8> {
    let plane_len = (w * h) as usize;
    let mut data = Vec::new();
    for s in 0..4 {
        for y in 0..h {
            for x in 0..w {
                data.push(planar_pixel(x, y)[s]);
            }
        }
    }
    let offsets: Vec<u32> = (0..4).map(|s| 8 + (s * plane_len) as u32).collect();
    let mut entries = vec![
        tiff_long(256, &[w]),
        tiff_long(257, &[h]),
        tiff_short(258, &[8, 8, 8, 8]),
        tiff_short(259, &[1]),
        tiff_short(262, &[2]),
        tiff_long(273, &offsets),
        tiff_short(277, &[4]),
        tiff_long(278, &[h]),
        tiff_long(279, &[plane_len as u32; 4]),
        tiff_short(284, &[2]),
    ];
    entries.push(tiff_short(338, &[2])); // ExtraSamples: unassociated alpha
    tiff_file(&data, entries)
}

/// A 16x16 RGB TIFF in one JPEG-compressed 65520x65520 tile (the tile holds a small JPEG).
pub fn tiff_huge_jpeg_tile() -> Vec<u8> {
    let jpeg = jpeg_solid(16, 16);
    let entries = vec![
        tiff_long(256, &[16]),
        tiff_long(257, &[16]),
        tiff_short(258, &[8, 8, 8]),
        tiff_short(259, &[7]),
        tiff_short(262, &[6]),
        tiff_short(277, &[3]),
        tiff_long(322, &[65520]),
        tiff_long(323, &[65520]),
        tiff_long(324, &[8]),
        tiff_long(325, &[jpeg.len() as u32]),
    ];
    tiff_file(&jpeg, entries)
}

/// A 16-wide planar RGBA TIFF of `strips` one-row JPEG strips (a quarter per plane) that all
/// point at the same `jpeg_side`² JPEG: each strip would decode the whole embedded picture.
pub fn tiff_many_strips(strips: u32, jpeg_side: u32) -> Vec<u8> {
    let jpeg = jpeg_solid(jpeg_side, jpeg_side);
    let n = strips as usize;
    let entries = vec![
        tiff_long(256, &[16]),
        tiff_long(257, &[strips / 4]),
        tiff_short(258, &[8, 8, 8, 8]),
        tiff_short(259, &[7]),
        tiff_short(262, &[2]),
        tiff_long(273, &vec![8; n]),
        tiff_short(277, &[4]),
        tiff_long(278, &[1]),
        tiff_long(279, &vec![jpeg.len() as u32; n]),
        tiff_short(284, &[2]),
        tiff_short(338, &[2]),
    ];
    tiff_file(&jpeg, entries)
}

/// A 16-wide gray TIFF of `entries` one-row strips whose StripOffsets and StripByteCounts
/// tables have `entries` LONG values: stored in the file when `stored`, else only declared (a
/// 200-byte file claiming tables of `entries` values).
pub fn tiff_chunk_tables(entries: u32, stored: bool) -> Vec<u8> {
    let n = entries as usize;
    let table = |v: u32| TiffEntry {
        tag: 0,
        kind: 4,
        count: entries,
        value: if stored {
            v.to_le_bytes().repeat(n)
        } else {
            Vec::new()
        },
    };
    let mut entries_ = tiff_basic(16, entries, 1, 1, 16);
    entries_.retain(|e| e.tag != 273 && e.tag != 279 && e.tag != 278);
    entries_.push(tiff_long(278, &[1]));
    entries_.push(TiffEntry {
        tag: 273,
        ..table(8)
    });
    entries_.push(TiffEntry {
        tag: 279,
        ..table(16)
    });
    tiff_file(&[128; 16], entries_)
}

/// A 16x16 RGB TIFF in one JPEG-compressed strip whose JPEG's frame header claims
/// `side`x`side` (the data is an 8x8 JPEG's). Photometric RGB, which the tiff crate decodes
/// (it refuses YCbCr before reading any chunk).
pub fn tiff_jpeg_strip_bomb(side: u16) -> Vec<u8> {
    let jpeg = jpeg_header_bomb(side, side);
    let entries = vec![
        tiff_long(256, &[16]),
        tiff_long(257, &[16]),
        tiff_short(258, &[8, 8, 8]),
        tiff_short(259, &[7]),
        tiff_short(262, &[2]),
        tiff_long(273, &[8]),
        tiff_short(277, &[3]),
        tiff_long(278, &[16]),
        tiff_long(279, &[jpeg.len() as u32]),
    ];
    tiff_file(&jpeg, entries)
}

/// A zlib stream of `n` zero bytes in fixed-Huffman deflate: a literal 0, then matches of 258
/// at distance 1 (13 bits per 258 bytes, about 160:1), then the Adler-32 of the zeros.
pub fn zlib_zeros(n: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u32,
        len: u32,
    }
    impl Bits {
        fn put(&mut self, value: u32, bits: u32) {
            self.acc |= value << self.len;
            self.len += bits;
            while self.len >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.len -= 8;
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u32, bits: u32) {
            let reversed = code.reverse_bits() >> (32 - bits);
            self.put(reversed, bits);
        }
    }
    let mut b = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        len: 0,
    };
    b.put(1, 1); // BFINAL
    b.put(1, 2); // fixed Huffman
    let mut left = n;
    if left > 0 {
        b.code(0x30, 8); // literal 0
        left -= 1;
    }
    while left >= 258 {
        b.code(0b1100_0101, 8); // length code 285: 258
        b.code(0, 5); // distance code 0: 1
        left -= 258;
    }
    for _ in 0..left {
        b.code(0x30, 8);
    }
    b.code(0, 7); // end of block
    if b.len > 0 {
        b.out.push(b.acc as u8);
    }
    let adler = (((n % 65_521) as u32) << 16) | 1;
    b.out.extend(adler.to_be_bytes());
    b.out
}

/// A valid 32x24 PNG with `kind` (`iCCP`, `zTXt`, `iTXt` or `eXIf`) whose payload is
/// `payload`, inserted before the image data.
pub fn png_with_chunk(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let png = png_solid(32, 24);
    // Signature (8) + IHDR (25).
    let mut out = png[..33].to_vec();
    png_chunk(&mut out, kind, payload);
    out.extend_from_slice(&png[33..]);
    out
}

/// A PNG whose `kind` chunk (`iCCP`, `zTXt` or `iTXt`) inflates to `inflated` bytes of zeros.
pub fn png_compressed_chunk_bomb(kind: &[u8; 4], inflated: usize) -> Vec<u8> {
    let mut payload = match kind {
        b"iCCP" => b"icc\0\0".to_vec(),
        b"zTXt" => b"Comment\0\0".to_vec(),
        _ => b"Comment\0\x01\0\0\0".to_vec(), // iTXt: compressed, no language, no translation
    };
    payload.extend(zlib_zeros(inflated));
    png_with_chunk(kind, &payload)
}

/// A lossless 16x16 WebP with an extended header and an `ICCP` chunk declaring `declared`
/// bytes (far more than the file holds).
pub fn webp_lying_iccp(declared: u32) -> Vec<u8> {
    let mut lossless = Vec::new();
    let pixels = vec![90_u8; 16 * 16 * 4];
    image::codecs::webp::WebPEncoder::new_lossless(Cursor::new(&mut lossless))
        .write_image(&pixels, 16, 16, image::ExtendedColorType::Rgba8)
        .expect("WebP encodes");
    let vp8l = &lossless[12..]; // the VP8L chunk
    let mut body = b"WEBP".to_vec();
    body.extend(b"VP8X");
    body.extend(10_u32.to_le_bytes());
    body.extend([0x20 | 0x10, 0, 0, 0]); // ICC + alpha
    body.extend(&15_u32.to_le_bytes()[..3]);
    body.extend(&15_u32.to_le_bytes()[..3]);
    body.extend(b"ICCP");
    body.extend(declared.to_le_bytes());
    body.extend([0_u8; 64]);
    body.extend_from_slice(vp8l);
    let mut out = b"RIFF".to_vec();
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

/// A 64x48 JPEG with ICC APP2 chunks whose sequence numbers and counts disagree: (seq, count)
/// pairs given, each carrying 1000 bytes.
pub fn jpeg_bogus_icc(chunks: &[(u8, u8)]) -> Vec<u8> {
    jpeg_icc_chunks(chunks, 1000)
}

/// A 64x48 JPEG with ICC APP2 chunks (seq, count) of `len` bytes each (at most 65519).
pub fn jpeg_icc_chunks(chunks: &[(u8, u8)], len: usize) -> Vec<u8> {
    let j = jpeg_solid(64, 48);
    let mut out = j[..2].to_vec();
    for &(seq, count) in chunks {
        let mut seg = b"ICC_PROFILE\0".to_vec();
        seg.extend([seq, count]);
        seg.extend(std::iter::repeat_n(0x41, len));
        out.extend([0xFF, 0xE2]);
        out.extend(((seg.len() + 2) as u16).to_be_bytes());
        out.extend(seg);
    }
    out.extend_from_slice(&j[2..]);
    out
}

/// A progressive `w`×`h` JPEG whose last scan is repeated `repeats` more times.
pub fn jpeg_repeated_scans(w: u32, h: u32, repeats: usize) -> Vec<u8> {
    let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i % 253) as u8).collect();
    let mut c = turbojpeg::Compressor::new().expect("compressor");
    c.set_progressive(true).expect("progressive");
    c.set_quality(80).expect("quality");
    let img = turbojpeg::Image {
        pixels: pixels.as_slice(),
        width: w as usize,
        pitch: w as usize * 3,
        height: h as usize,
        format: turbojpeg::PixelFormat::RGB,
    };
    let j = c.compress_to_vec(img).expect("JPEG compresses");
    let last_sos = j
        .windows(2)
        .rposition(|m| m == [0xFF, 0xDA])
        .expect("a scan");
    let eoi = j.len() - 2;
    let scan = j[last_sos..eoi].to_vec();
    let mut out = j[..eoi].to_vec();
    for _ in 0..repeats {
        out.extend_from_slice(&scan);
    }
    out.extend([0xFF, 0xD9]);
    out
}

/// An AVIF of `png` at `width`, from the engine's own encoder (speed 10): real AV1 data for the
/// generated HEIF files below.
pub fn avif_from_png(png: &[u8], width: u32) -> Vec<u8> {
    use prism_resize::render::{EncodeSettings, Limits};
    use shared::variant::{OutputFormat, VariantRequest};
    let request = VariantRequest {
        widths: vec![width],
        formats: vec![OutputFormat::Avif],
        ..VariantRequest::default()
    }
    .normalise()
    .expect("a valid request");
    let settings = EncodeSettings {
        avif_speed: 10,
        ..EncodeSettings::default()
    };
    let r = prism_resize::render::render(png, &request, &Limits::default(), &settings)
        .expect("the PNG renders");
    r.variants
        .into_iter()
        .find(|v| v.format == OutputFormat::Avif)
        .expect("an AVIF variant")
        .bytes
}

/// A minimal ISO-BMFF reader and writer for the HEIF generators: enough to lift the primary
/// item of an AVIF (its properties and its coded data) and to write new files around it.
pub mod isobmff {
    /// The boxes directly inside `data`: (type, payload). Stops at the first malformed size.
    pub fn boxes(mut data: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        while data.len() >= 8 && out.len() < 10_000 {
            let size = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
            let kind = [data[4], data[5], data[6], data[7]];
            let size = if size == 0 { data.len() } else { size };
            if size < 8 || size > data.len() {
                break;
            }
            out.push((kind, &data[8..size]));
            data = &data[size..];
        }
        out
    }

    /// The payload of the first child of type `kind`.
    pub fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
        boxes(data)
            .into_iter()
            .find(|(k, _)| k == kind)
            .map(|(_, p)| p)
    }

    /// A box of `kind` around `payload`.
    pub fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut b = u32::try_from(payload.len() + 8)
            .expect("box size")
            .to_be_bytes()
            .to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(payload);
        b
    }

    /// A full box (version, 24-bit flags).
    pub fn full(kind: &[u8; 4], version: u8, flags: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![version];
        p.extend_from_slice(&flags.to_be_bytes()[1..]);
        p.extend_from_slice(payload);
        bx(kind, &p)
    }

    /// An `ispe` property.
    pub fn ispe(width: u32, height: u32) -> Vec<u8> {
        let mut p = width.to_be_bytes().to_vec();
        p.extend(height.to_be_bytes());
        full(b"ispe", 0, 0, &p)
    }

    /// A coded image item lifted from a file: its property boxes (whole, in association
    /// order, with their essential flags), its `ispe` size and its data.
    pub struct Item {
        pub properties: Vec<(Vec<u8>, bool)>,
        pub width: u32,
        pub height: u32,
        pub data: Vec<u8>,
    }

    /// Big-endian unsigned integer of `n` bytes (0..=8) at `*at`, advancing it.
    fn uint(b: &[u8], at: &mut usize, n: usize) -> u64 {
        let v = b[*at..*at + n]
            .iter()
            .fold(0_u64, |a, &x| (a << 8) | u64::from(x));
        *at += n;
        v
    }

    /// The primary item of a HEIF file written by a well-behaved encoder (iloc construction
    /// method 0, one data reference). Panics on anything else: the input is our own encoder's.
    pub fn primary_item(file: &[u8]) -> Item {
        let meta = &child(file, b"meta").expect("a meta box")[4..];
        let pitm = child(meta, b"pitm").expect("a pitm box");
        let primary = if pitm[0] == 0 {
            u64::from(u16::from_be_bytes([pitm[4], pitm[5]]))
        } else {
            u64::from(u32::from_be_bytes([pitm[4], pitm[5], pitm[6], pitm[7]]))
        };
        let iprp = child(meta, b"iprp").expect("an iprp box");
        // Whole property boxes: the payloads returned by `boxes` are slices of `ipco`, so the
        // header is the 8 bytes before each.
        let ipco = child(iprp, b"ipco").expect("an ipco box");
        let mut props = Vec::new();
        let mut at = 0;
        for (_, payload) in boxes(ipco) {
            props.push(ipco[at..at + 8 + payload.len()].to_vec());
            at += 8 + payload.len();
        }
        let ipma = child(iprp, b"ipma").expect("an ipma box");
        let (version, flags) = (ipma[0], ipma[3]);
        let mut at = 4;
        let entries = uint(ipma, &mut at, 4);
        let mut properties = Vec::new();
        for _ in 0..entries {
            let id = uint(ipma, &mut at, if version < 1 { 2 } else { 4 });
            let count = uint(ipma, &mut at, 1);
            for _ in 0..count {
                let (essential, index) = if flags & 1 == 1 {
                    let v = uint(ipma, &mut at, 2);
                    (v & 0x8000 != 0, v & 0x7FFF)
                } else {
                    let v = uint(ipma, &mut at, 1);
                    (v & 0x80 != 0, v & 0x7F)
                };
                if id == primary && index > 0 {
                    properties.push((props[index as usize - 1].clone(), essential));
                }
            }
        }
        let ispe = properties
            .iter()
            .find(|(p, _)| &p[4..8] == b"ispe")
            .expect("an ispe property");
        let width = u32::from_be_bytes([ispe.0[12], ispe.0[13], ispe.0[14], ispe.0[15]]);
        let height = u32::from_be_bytes([ispe.0[16], ispe.0[17], ispe.0[18], ispe.0[19]]);
        let iloc = child(meta, b"iloc").expect("an iloc box");
        let version = iloc[0];
        let mut at = 4;
        let sizes = uint(iloc, &mut at, 1);
        let (offset_size, length_size) = ((sizes >> 4) as usize, (sizes & 15) as usize);
        let sizes = uint(iloc, &mut at, 1);
        let base_size = (sizes >> 4) as usize;
        let index_size = if version > 0 {
            (sizes & 15) as usize
        } else {
            0
        };
        let count = uint(iloc, &mut at, if version < 2 { 2 } else { 4 });
        let mut data = Vec::new();
        for _ in 0..count {
            let id = uint(iloc, &mut at, if version < 2 { 2 } else { 4 });
            if version > 0 {
                assert_eq!(uint(iloc, &mut at, 2) & 15, 0, "construction method 0");
            }
            uint(iloc, &mut at, 2); // data reference index
            let base = uint(iloc, &mut at, base_size);
            let extents = uint(iloc, &mut at, 2);
            for _ in 0..extents {
                uint(iloc, &mut at, index_size);
                let offset = (base + uint(iloc, &mut at, offset_size)) as usize;
                let length = uint(iloc, &mut at, length_size) as usize;
                if id == primary {
                    data.extend_from_slice(&file[offset..offset + length]);
                }
            }
        }
        assert!(!data.is_empty(), "the primary item has data");
        Item {
            properties,
            width,
            height,
            data,
        }
    }

    /// An item of a file to write: its ID, type, whether it is hidden, its properties (1-based
    /// indices into the file's property list, with the essential flag) and its data.
    pub struct NewItem<'a> {
        pub id: u16,
        pub kind: [u8; 4],
        pub hidden: bool,
        pub properties: Vec<(u8, bool)>,
        pub data: &'a [u8],
    }

    /// A HEIF file with brand `brand`: `items` (the first is primary), the property boxes
    /// `properties`, item references `(type, from, to…)`, every item's data in one `mdat`.
    pub fn heif_file(
        brand: &[u8; 4],
        items: &[NewItem<'_>],
        properties: &[Vec<u8>],
        references: &[([u8; 4], u16, Vec<u16>)],
    ) -> Vec<u8> {
        let mut ftyp = brand.to_vec();
        ftyp.extend([0; 4]);
        for b in [brand, b"mif1", b"miaf"] {
            ftyp.extend_from_slice(b);
        }
        let ftyp = bx(b"ftyp", &ftyp);
        // Items whose data is the same slice share one copy in `mdat` (a grid's tiles are
        // distinct items, as libheif refuses an item referenced twice, but may be one picture).
        let first_with_data = |i: usize| {
            items[..i]
                .iter()
                .position(|o| std::ptr::eq(o.data, items[i].data))
                .unwrap_or(i)
        };
        let placement = |mdat_data: usize| {
            let mut offsets: Vec<usize> = Vec::new();
            let mut next = mdat_data;
            for (i, it) in items.iter().enumerate() {
                let first = first_with_data(i);
                if first < i {
                    offsets.push(offsets[first]);
                } else {
                    offsets.push(next);
                    next += it.data.len();
                }
            }
            offsets
        };
        let meta = |mdat_data: usize| {
            let mut hdlr = vec![0; 4];
            hdlr.extend(b"pict");
            hdlr.extend([0; 13]);
            let mut m = full(b"hdlr", 0, 0, &hdlr);
            m.extend(full(b"pitm", 0, 0, &items[0].id.to_be_bytes()));
            let mut iinf = u16::try_from(items.len()).unwrap().to_be_bytes().to_vec();
            for it in items {
                let mut infe = it.id.to_be_bytes().to_vec();
                infe.extend([0, 0]);
                infe.extend(it.kind);
                infe.push(0);
                iinf.extend(full(b"infe", 2, u32::from(it.hidden), &infe));
            }
            m.extend(full(b"iinf", 0, 0, &iinf));
            if !references.is_empty() {
                let mut iref = Vec::new();
                for (kind, from, to) in references {
                    let mut r = from.to_be_bytes().to_vec();
                    r.extend(u16::try_from(to.len()).unwrap().to_be_bytes());
                    r.extend(to.iter().flat_map(|t| t.to_be_bytes()));
                    iref.extend(bx(kind, &r));
                }
                m.extend(full(b"iref", 0, 0, &iref));
            }
            let mut ipma = u32::try_from(items.len()).unwrap().to_be_bytes().to_vec();
            for it in items {
                ipma.extend(it.id.to_be_bytes());
                ipma.push(u8::try_from(it.properties.len()).unwrap());
                ipma.extend(
                    it.properties
                        .iter()
                        .map(|&(i, essential)| i | if essential { 0x80 } else { 0 }),
                );
            }
            let mut iprp = bx(b"ipco", &properties.concat());
            iprp.extend(full(b"ipma", 0, 0, &ipma));
            m.extend(bx(b"iprp", &iprp));
            let mut iloc = vec![0x44, 0x00];
            iloc.extend(u16::try_from(items.len()).unwrap().to_be_bytes());
            for (it, offset) in items.iter().zip(placement(mdat_data)) {
                iloc.extend(it.id.to_be_bytes());
                iloc.extend([0, 0, 0, 1]); // data reference 0, one extent
                iloc.extend(u32::try_from(offset).unwrap().to_be_bytes());
                iloc.extend(u32::try_from(it.data.len()).unwrap().to_be_bytes());
            }
            m.extend(full(b"iloc", 0, 0, &iloc));
            full(b"meta", 0, 0, &m)
        };
        // The offsets do not change the meta box's size: measure it, then write it.
        let mdat_data = ftyp.len() + meta(0).len() + 8;
        let mut out = ftyp;
        out.extend(meta(mdat_data));
        let data: Vec<u8> = (0..items.len())
            .filter(|&i| first_with_data(i) == i)
            .flat_map(|i| items[i].data.to_vec())
            .collect();
        out.extend(bx(b"mdat", &data));
        out
    }

    /// A `grid` item's data: `rows` x `columns` tiles making a `width` x `height` image.
    pub fn grid_descriptor(rows: u8, columns: u8, width: u32, height: u32) -> Vec<u8> {
        let mut g = vec![0, 1, rows - 1, columns - 1]; // version 0, 32-bit sizes
        g.extend(width.to_be_bytes());
        g.extend(height.to_be_bytes());
        g
    }
}

/// Side of the real AV1 tile of the HEIF grid bombs: 1024, so that the 961 tiles one item
/// may reference under libheif's item limit (1000) cover a gigapixel.
pub const GRID_TILE: u32 = 1024;
/// Tiles across and down a grid bomb.
pub const GRID_TILES: u8 = 31;

/// The AV1 tile of the grid bombs: a `GRID_TILE`² image from the engine's encoder.
pub fn grid_tile() -> isobmff::Item {
    let tile = isobmff::primary_item(&avif_from_png(&png_solid(GRID_TILE, GRID_TILE), GRID_TILE));
    assert_eq!((tile.width, tile.height), (GRID_TILE, GRID_TILE));
    tile
}

/// An AVIF whose primary item is a `grid` of `tiles` x `tiles` references to `tile`, making a
/// `width` x `height` image, with an `ispe` of `ispe`.
pub fn avif_grid(
    tile: &isobmff::Item,
    tiles: u8,
    (width, height): (u32, u32),
    ispe: (u32, u32),
) -> Vec<u8> {
    use isobmff::{NewItem, grid_descriptor, heif_file};
    let grid = grid_descriptor(tiles, tiles, width, height);
    let mut properties: Vec<Vec<u8>> = tile.properties.iter().map(|p| p.0.clone()).collect();
    let tile_props: Vec<(u8, bool)> = (1..=properties.len() as u8)
        .zip(tile.properties.iter().map(|p| p.1))
        .collect();
    properties.push(isobmff::ispe(ispe.0, ispe.1));
    let grid_ispe = properties.len() as u8;
    let mut items = vec![NewItem {
        id: 1,
        kind: *b"grid",
        hidden: false,
        properties: vec![(grid_ispe, false)],
        data: &grid,
    }];
    let tile_ids = tile_items(&mut items, 2, tiles, tile, &tile_props);
    heif_file(b"avif", &items, &properties, &[(*b"dimg", 1, tile_ids)])
}

/// `tiles`² hidden `av01` items from `first_id` on, all with `tile`'s data (stored once).
fn tile_items<'a>(
    items: &mut Vec<isobmff::NewItem<'a>>,
    first_id: u16,
    tiles: u8,
    tile: &'a isobmff::Item,
    properties: &[(u8, bool)],
) -> Vec<u16> {
    let n = u16::from(tiles) * u16::from(tiles);
    let ids: Vec<u16> = (first_id..first_id + n).collect();
    for &id in &ids {
        items.push(isobmff::NewItem {
            id,
            kind: *b"av01",
            hidden: true,
            properties: properties.to_vec(),
            data: &tile.data,
        });
    }
    ids
}

/// An AVIF whose primary item is a `grid` whose `ispe` says 64x64 but whose descriptor makes a
/// 31744x31744 image (1.0 gigapixel, just under libheif's default 32768² limit) of 31x31
/// references to one real 1024x1024 AV1 tile. libheif checks the composed grid against the
/// `ispe` only after it has allocated the canvas and pasted every tile into it.
pub fn avif_grid_bomb(tile: &isobmff::Item) -> Vec<u8> {
    let side = GRID_TILE * u32::from(GRID_TILES);
    avif_grid(tile, GRID_TILES, (side, side), (64, 64))
}

/// A 64x64 AVIF whose alpha (`auxl`) item is a `grid` like [`avif_grid_bomb`]'s: a 64x64
/// `ispe`, a 31744x31744 descriptor of references to the 1024x1024 tile. The primary's header
/// is honest; the alpha plane libheif would compose is a gigapixel.
pub fn avif_alpha_grid_bomb(tile: &isobmff::Item) -> Vec<u8> {
    use isobmff::{NewItem, full, grid_descriptor, heif_file, ispe};
    let primary = isobmff::primary_item(&avif_from_png(&png_solid(64, 64), 64));
    let side = GRID_TILE * u32::from(GRID_TILES);
    let grid = grid_descriptor(GRID_TILES, GRID_TILES, side, side);
    let mut properties: Vec<Vec<u8>> = Vec::new();
    let mut add = |item: &isobmff::Item| -> Vec<(u8, bool)> {
        item.properties
            .iter()
            .map(|(p, essential)| {
                properties.push(p.clone());
                (properties.len() as u8, *essential)
            })
            .collect()
    };
    let primary_props = add(&primary);
    let tile_props = add(tile);
    properties.push(ispe(64, 64));
    let small = properties.len() as u8;
    properties.push(full(
        b"auxC",
        0,
        0,
        b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha\0",
    ));
    let aux = properties.len() as u8;
    let mut items = vec![
        NewItem {
            id: 1,
            kind: *b"av01",
            hidden: false,
            properties: primary_props,
            data: &primary.data,
        },
        NewItem {
            id: 2,
            kind: *b"grid",
            hidden: false,
            properties: vec![(small, false), (aux, true)],
            data: &grid,
        },
    ];
    let tile_ids = tile_items(&mut items, 3, GRID_TILES, tile, &tile_props);
    heif_file(
        b"avif",
        &items,
        &properties,
        &[(*b"auxl", 2, vec![1]), (*b"dimg", 2, tile_ids)],
    )
}

/// An SVG document: the root element with `attrs`, then `body`.
pub fn svg_doc(attrs: &str, body: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" {attrs}>{body}</svg>"#
    )
    .into_bytes()
}

/// An SVG whose intrinsic size is 100000 × 100000 (the `vector.webp` case of old).
pub fn svg_intrinsic_bomb() -> Vec<u8> {
    svg_doc(
        r#"width="100000" height="100000""#,
        r#"<rect width="100%" height="100%"/>"#,
    )
}

/// "Billion laughs": ten levels of entities, each naming the one below ten times (10^10 copies
/// of "lol" from under a kilobyte).
pub fn svg_billion_laughs() -> Vec<u8> {
    let mut dtd = String::from("<!ENTITY lol0 \"lol\">\n");
    for i in 1..10 {
        let refs: String = (0..10).map(|_| format!("&lol{};", i - 1)).collect();
        dtd.push_str(&format!("<!ENTITY lol{i} \"{refs}\">\n"));
    }
    format!(
        r#"<?xml version="1.0"?>
<!DOCTYPE svg [
{dtd}]>
<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><text x="0" y="20">&lol9;</text></svg>"#
    )
    .into_bytes()
}

/// `depth` nested `<g>` elements around one rectangle.
pub fn svg_deep_nesting(depth: usize) -> Vec<u8> {
    let body = format!(
        "{}<rect width=\"10\" height=\"10\" fill=\"red\"/>{}",
        "<g>".repeat(depth),
        "</g>".repeat(depth)
    );
    svg_doc(r#"width="64" height="64""#, &body)
}

/// `levels` groups, each holding `fan` `<use>` of the one below: `fan^levels` rectangles
/// once expanded, from a few kilobytes.
pub fn svg_use_fanout(levels: usize, fan: usize) -> Vec<u8> {
    let mut defs = String::from(r#"<rect id="l0" width="1" height="1"/>"#);
    for l in 1..=levels {
        defs.push_str(&format!("<g id=\"l{l}\">"));
        for _ in 0..fan {
            defs.push_str(&format!("<use xlink:href=\"#l{}\"/>", l - 1));
        }
        defs.push_str("</g>");
    }
    svg_doc(
        r#"width="64" height="64""#,
        &format!("<defs>{defs}</defs><use xlink:href=\"#l{levels}\"/>"),
    )
}

/// Images by reference: each `href` given fills the whole canvas if it is ever loaded.
pub fn svg_external_images(hrefs: &[&str]) -> Vec<u8> {
    let body: String = hrefs
        .iter()
        .map(|h| {
            format!(
                r#"<image x="0" y="0" width="64" height="64" preserveAspectRatio="none" xlink:href="{h}" href="{h}"/>"#
            )
        })
        .collect();
    svg_doc(r#"width="64" height="64""#, &body)
}

/// A rectangle under a Gaussian blur of standard deviation `std_dev`, `side` px square.
pub fn svg_blur(side: u32, std_dev: f64) -> Vec<u8> {
    svg_doc(
        &format!(r#"width="{side}" height="{side}""#),
        &format!(
            r#"<filter id="b" x="-50%" y="-50%" width="200%" height="200%"><feGaussianBlur stdDeviation="{std_dev}"/></filter><rect x="25%" y="25%" width="50%" height="50%" fill="blue" filter="url(#b)"/>"#
        ),
    )
}

/// A rectangle dilated by `radius` (a morphology filter visits its whole window per pixel).
pub fn svg_morphology(side: u32, radius: u32) -> Vec<u8> {
    svg_doc(
        &format!(r#"width="{side}" height="{side}""#),
        &format!(
            r#"<filter id="m"><feMorphology operator="dilate" radius="{radius}"/></filter><rect x="25%" y="25%" width="50%" height="50%" filter="url(#m)"/>"#
        ),
    )
}

/// `n` nested translucent groups (each an isolated layer alive while the ones inside it are
/// drawn).
pub fn svg_nested_layers(side: u32, n: usize) -> Vec<u8> {
    let body = format!(
        "{}<rect width=\"100%\" height=\"100%\" fill=\"green\"/>{}",
        "<g opacity=\"0.99\">".repeat(n),
        "</g>".repeat(n)
    );
    svg_doc(&format!(r#"width="{side}" height="{side}""#), &body)
}

/// `n` rectangles each covering the whole canvas.
pub fn svg_overdraw(side: u32, n: usize) -> Vec<u8> {
    let body = r##"<rect width="100%" height="100%" fill="#123456"/>"##.repeat(n);
    svg_doc(&format!(r#"width="{side}" height="{side}""#), &body)
}

/// An SVG embedding `image` (any bytes) as a base64 `data:` URL of type `mime`.
pub fn svg_embedding(mime: &str, image: &[u8]) -> Vec<u8> {
    let b64 = base64(image);
    svg_doc(
        r#"width="64" height="64""#,
        &format!(
            r#"<image width="64" height="64" preserveAspectRatio="none" xlink:href="data:{mime};base64,{b64}"/>"#
        ),
    )
}

/// Standard base64 with padding (kept here so every crate including this file can use it).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(A[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Pack a string of '0' and '1' (other characters are ignored) into bytes, first bit in the
/// most significant position, the last byte padded with zeros.
pub fn bit_string(bits: &str) -> Vec<u8> {
    let bits: Vec<bool> = bits
        .chars()
        .filter(|c| matches!(c, '0' | '1'))
        .map(|c| c == '1')
        .collect();
    bits.chunks(8)
        .map(|byte| {
            byte.iter()
                .enumerate()
                .fold(0_u8, |a, (i, &b)| a | (u8::from(b) << (7 - i)))
        })
        .collect()
}

/// CCITT code words used by the fax generators (ITU-T T.4 tables).
pub mod fax_code {
    /// End of line: eleven zeros and a one.
    pub const EOL: &str = "000000000001";
    /// White and black runs of length zero.
    pub const WHITE_0: &str = "00110101";
    pub const BLACK_0: &str = "0000110111";
    /// White run of 4.
    pub const WHITE_4: &str = "1011";
    /// White make-up code of 2560 (followed by a terminating code).
    pub const WHITE_2560: &str = "000000011111";
    /// 2-D modes: horizontal, and vertical with no offset.
    pub const HORIZONTAL: &str = "001";
    pub const V0: &str = "1";
}

/// A `w`×`h` bilevel (WhiteIsZero) TIFF in one strip of `data`, declared `declared_len` bytes
/// long, with Compression `compression` (2 CCITT RLE, 3 Group 3, 4 Group 4) and T4Options
/// `t4_options` for Group 3.
pub fn tiff_fax(
    w: u32,
    h: u32,
    compression: u16,
    t4_options: u32,
    data: &[u8],
    declared_len: u32,
) -> Vec<u8> {
    let mut entries = vec![
        tiff_long(256, &[w]),
        tiff_long(257, &[h]),
        tiff_short(258, &[1]),
        tiff_short(259, &[compression]),
        tiff_short(262, &[0]),
        tiff_long(273, &[8]),
        tiff_short(277, &[1]),
        tiff_long(278, &[h]),
        tiff_long(279, &[declared_len]),
    ];
    if compression == 3 {
        entries.push(tiff_long(292, &[t4_options]));
    }
    tiff_file(data, entries)
}

/// A Group 3 row that never ends: after the EOL, `pairs` pairs of zero-length white and black
/// runs (each 18 bits that move nothing) in a 4096-wide, 64-high page.
pub fn tiff_fax_row_without_progress(pairs: usize) -> Vec<u8> {
    use fax_code::*;
    let mut s = String::from(EOL);
    for _ in 0..pairs {
        s.push_str(WHITE_0);
        s.push_str(BLACK_0);
    }
    let data = bit_string(&s);
    tiff_fax(4096, 64, 3, 0, &data, data.len() as u32)
}

/// A 16-wide page whose first row's runs add up to 2560 pixels, in Group 3 1-D (`group4`
/// false) or in a Group 4 horizontal-mode code.
pub fn tiff_fax_row_past_width(group4: bool) -> Vec<u8> {
    use fax_code::*;
    let s = if group4 {
        format!("{HORIZONTAL}{WHITE_2560}{WHITE_0}{BLACK_0}")
    } else {
        format!("{EOL}{WHITE_2560}{WHITE_0}{EOL}")
    };
    let data = bit_string(&s);
    tiff_fax(
        16,
        4,
        if group4 { 4 } else { 3 },
        0,
        &data,
        data.len() as u32,
    )
}

/// A 16x4 Group 4 page whose data codes `rows` all-white rows (one V0 code each against the
/// white reference row).
pub fn tiff_fax_extra_rows(rows: usize) -> Vec<u8> {
    let data = bit_string(&fax_code::V0.repeat(rows));
    tiff_fax(16, 4, 4, 0, &data, data.len() as u32)
}

/// A 64x8 Group 3 page whose strip byte count cuts its first row after a run of 4 pixels,
/// inside the file.
pub fn tiff_fax_cut_row() -> Vec<u8> {
    use fax_code::*;
    let full = bit_string(&format!("{EOL}{WHITE_4}{BLACK_0}00000000{EOL}"));
    tiff_fax(64, 8, 3, 0, &full, 2)
}
