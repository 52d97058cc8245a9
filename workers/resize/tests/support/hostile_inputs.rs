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
            "vector.webp",
            br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"><rect width="100%" height="100%"/></svg>"#.to_vec(),
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
