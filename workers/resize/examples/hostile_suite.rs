//! Write the generated hostile suite to a folder, one file per bound plus a few valid
//! neighbours, for `prism-resize bench --corpus DIR` (see the README's "Robustness" section):
//!
//! ```text
//! cargo run -p prism-resize --example hostile_suite -- /tmp/hostile
//! ```
//!
//! The generators are the tests' (`tests/support/hostile_inputs.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a tool: a panic is the report

#[path = "../tests/support/hostile_inputs.rs"]
mod hostile_inputs;

use hostile_inputs as gen_;

fn main() {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: hostile_suite OUTPUT_DIR"),
    );
    std::fs::create_dir_all(&dir).unwrap();
    let tile = gen_::grid_tile();
    let mut files: Vec<(String, Vec<u8>)> = vec![
        // TIFF
        ("tiff-icc-count.tif".into(), gen_::tiff_icc_count_bomb()),
        (
            "tiff-planar-rgba.tif".into(),
            gen_::tiff_planar_rgba(64, 48),
        ),
        (
            "tiff-huge-jpeg-tile.tif".into(),
            gen_::tiff_huge_jpeg_tile(),
        ),
        (
            "tiff-100000-strips.tif".into(),
            gen_::tiff_many_strips(100_000, 1024),
        ),
        (
            "tiff-60m-offsets-declared.tif".into(),
            gen_::tiff_chunk_tables(60_000_000, false),
        ),
        (
            "tiff-8m-offsets-declared.tif".into(),
            gen_::tiff_chunk_tables(8_000_000, false),
        ),
        (
            "tiff-2m-offsets-stored.tif".into(),
            gen_::tiff_chunk_tables(2_000_000, true),
        ),
        (
            "tiff-jpeg-strip-16000.tif".into(),
            gen_::tiff_jpeg_strip_bomb(16_000),
        ),
        (
            "tiff-jpeg-strip-60000.tif".into(),
            gen_::tiff_jpeg_strip_bomb(60_000),
        ),
        // PNG
        (
            "png-header-bomb.png".into(),
            gen_::png_header_bomb(100_000, 100_000),
        ),
        (
            "png-zero-bomb-4000.png".into(),
            gen_::png_zero_bomb(4000, 4000),
        ),
        (
            "png-exif-12mib.png".into(),
            gen_::png_with_chunk(b"eXIf", &vec![0; 12 << 20]),
        ),
        // WebP
        (
            "webp-lying-iccp.webp".into(),
            gen_::webp_lying_iccp(0xFFFF_FF00),
        ),
        // JPEG
        (
            "jpeg-header-bomb.jpg".into(),
            gen_::jpeg_header_bomb(65_000, 65_000),
        ),
        (
            "jpeg-5000-scans.jpg".into(),
            gen_::jpeg_repeated_scans(256, 256, 5_000),
        ),
        // GIF
        (
            "gif-screen-bomb.gif".into(),
            gen_::gif_screen_bomb(65_535, 65_535),
        ),
        (
            "gif-frame-6000-on-1x1.gif".into(),
            gen_::gif_frame_bomb(1, 1, 6000, 6000),
        ),
        (
            "gif-frame-12000-on-1x1.gif".into(),
            gen_::gif_frame_bomb(1, 1, 12_000, 12_000),
        ),
        // AVIF
        ("avif-grid-bomb.avif".into(), gen_::avif_grid_bomb(&tile)),
        (
            "avif-alpha-grid-bomb.avif".into(),
            gen_::avif_alpha_grid_bomb(&tile),
        ),
        (
            "avif-grid-honest.avif".into(),
            gen_::avif_grid(&tile, 2, (2000, 1500), (2000, 1500)),
        ),
    ];
    for kind in [b"iCCP", b"zTXt", b"iTXt"] {
        let name = String::from_utf8_lossy(kind).to_ascii_lowercase();
        files.push((
            format!("png-{name}-bomb.png"),
            gen_::png_compressed_chunk_bomb(kind, 128 << 20),
        ));
    }
    for (i, chunks) in [
        &[(3_u8, 2_u8), (1, 2)][..],
        &[(1, 2), (1, 2)][..],
        &[(1, 3), (2, 200)][..],
        &[(1, 255); 255][..],
    ]
    .iter()
    .enumerate()
    {
        files.push((
            format!("jpeg-bogus-icc-{i}.jpg"),
            gen_::jpeg_bogus_icc(chunks),
        ));
    }
    for (name, bytes) in gen_::valid_images() {
        files.push((format!("neighbour-{name}"), bytes));
    }
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
        println!("{:>10} {name}", bytes.len());
    }
    println!("{} files in {}", files.len(), dir.display());
}
