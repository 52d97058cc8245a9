//! Hostile input at the engine's entry point, beyond the fixture cases of `engine.rs` (truncated,
//! empty, SVG, the header bombs): random bytes, other documents under image names, generated
//! decompression bombs, GIFs with hundreds of large frames or a first frame bigger than its
//! logical screen, and degenerate shapes (1x1, 10000x1, 1x10000), and one input per decoder
//! bound (TIFF tags, chunk tables and JPEG chunks, PNG metadata, WebP chunks, JPEG scans and
//! profiles, AVIF grid and alpha items under libheif's security limits), and SVG documents built
//! to amplify (entities, nesting, `use` fan-out, layers, filters, overdraw, external and
//! embedded images). Every input either
//! renders or fails with its closed-set code; none may panic or allocate past the limits.
//!
//! The generators live in `tests/support/hostile_inputs.rs`, shared with the pipeline test in
//! `workers/cli/tests/hostile.rs`.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

#[path = "support/hostile_inputs.rs"]
mod hostile_inputs;

use hostile_inputs as gen_;

/// Bytes allocated per thread, so a test can bound what one call allocates on its thread
/// (decoders written in Rust; libheif and libjpeg-turbo allocate through malloc, unseen).
/// The one unsafe code of the tests: a `GlobalAlloc` forwarding to the system allocator.
#[allow(unsafe_code)]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static LIVE: Cell<usize> = const { Cell::new(0) };
        static PEAK: Cell<usize> = const { Cell::new(0) };
    }

    fn add(n: usize) {
        let _ = LIVE.try_with(|live| {
            let v = live.get().saturating_add(n);
            live.set(v);
            let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
        });
    }

    fn sub(n: usize) {
        let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(n)));
    }

    // SAFETY: every call is forwarded to the system allocator unchanged; the counters are
    // const-initialised thread-locals, which never allocate.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract is the system allocator's.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                add(layout.size());
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as above.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                add(layout.size());
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) };
            sub(layout.size());
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as above.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                sub(layout.size());
                add(new_size);
            }
            p
        }
    }

    /// The most bytes live on this thread while `f` ran, over those live when it began.
    pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let out = f();
        (out, PEAK.with(Cell::get).saturating_sub(base))
    }
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;
use prism_resize::render::{self, EncodeSettings, Limits, RenderError, Rendered};
use shared::error::ErrorCode;
use shared::variant::{OutputFormat, VariantRequest};

fn request(widths: &[u32]) -> VariantRequest {
    VariantRequest {
        widths: widths.to_vec(),
        formats: vec![OutputFormat::Webp, OutputFormat::Avif],
        ..VariantRequest::default()
    }
    .normalise()
    .expect("a valid request")
}

fn render_with(bytes: &[u8], limits: &Limits) -> Result<Rendered, RenderError> {
    render::render(
        bytes,
        &request(&[16, 64]),
        limits,
        &EncodeSettings::default(),
    )
}

fn render(bytes: &[u8]) -> Result<Rendered, RenderError> {
    render_with(bytes, &Limits::default())
}

fn code_of(bytes: &[u8]) -> ErrorCode {
    match render(bytes) {
        Ok(r) => panic!("rendered {} variants, expected a failure", r.variants.len()),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            e.code()
        }
    }
}

#[test]
fn random_bytes_and_other_documents_are_unsupported() {
    for (name, bytes) in gen_::not_images() {
        assert_eq!(code_of(&bytes), ErrorCode::UnsupportedFormat, "{name}");
    }
}

#[test]
fn random_bytes_behind_a_valid_magic_fail_with_a_decode_code() {
    // The magic says JPEG/PNG/GIF/WebP/TIFF/HEIF, the rest is noise: never a panic, always one
    // of the codes a corrupt file may have.
    let allowed = [
        ErrorCode::UndecodableImage,
        ErrorCode::TruncatedImage,
        ErrorCode::ImageTooLarge,
        ErrorCode::UnsupportedFormat,
        ErrorCode::TooManyFrames,
        ErrorCode::InvalidColorProfile,
    ];
    for seed in 0..64 {
        for (name, bytes) in gen_::noise_behind_magic(seed) {
            if let Err(e) = render(&bytes) {
                assert!(allowed.contains(&e.code()), "{name} seed {seed}: {e}");
            }
        }
    }
}

#[test]
fn truncated_files_of_every_format_fail_cleanly() {
    for (name, bytes) in gen_::valid_images() {
        for cut in [
            1,
            8,
            16,
            33,
            bytes.len() / 3,
            bytes.len() / 2,
            bytes.len() - 1,
        ] {
            let head = &bytes[..cut.min(bytes.len() - 1)];
            if let Err(e) = render(head) {
                assert!(
                    [
                        ErrorCode::TruncatedImage,
                        ErrorCode::UndecodableImage,
                        ErrorCode::UnsupportedFormat
                    ]
                    .contains(&e.code()),
                    "{name} cut at {cut}: {e}"
                );
            }
        }
    }
}

#[test]
fn header_bombs_are_refused_before_decoding() {
    // A few hundred bytes each, declaring gigapixels.
    for (name, bytes) in [
        ("png", gen_::png_header_bomb(100_000, 100_000)),
        ("jpeg", gen_::jpeg_header_bomb(65_000, 65_000)),
        ("gif", gen_::gif_screen_bomb(65_535, 65_535)),
        ("svg", gen_::svg_intrinsic_bomb()),
    ] {
        assert!(bytes.len() < 4096, "{name}: {} bytes", bytes.len());
        let err = render::decode::probe(&bytes, &Limits::default()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{name}: {err}");
    }
}

#[test]
fn compressed_bombs_within_the_pixel_limit_are_refused_by_a_tighter_limit() {
    // 4000x4000 of zeros deflates to a few tens of KB: a real decompression bomb. Under the
    // default 100 MP it is a legitimate (if silly) image; under a 10 MP limit it is refused
    // from its header, before the 48 MB of samples exist.
    let png = gen_::png_zero_bomb(4000, 4000);
    println!("4000x4000 PNG of zeros: {} bytes", png.len());
    assert!(png.len() < 200_000, "{} bytes", png.len());
    let tight = Limits {
        max_pixels: 10_000_000,
        ..Limits::default()
    };
    assert_eq!(
        render_with(&png, &tight).unwrap_err().code(),
        ErrorCode::ImageTooLarge
    );
    let r = render(&png).unwrap();
    assert_eq!((r.facts.width, r.facts.height), (4000, 4000));
}

#[test]
fn gif_frame_larger_than_its_logical_screen_is_refused() {
    // A 1x1 logical screen whose first frame is 12000x12000: the decoder would allocate the
    // frame's 576 MB, far past what the header's 1 pixel admitted. The probe must look at the
    // frame descriptors, not only the screen.
    let bomb = gen_::gif_frame_bomb(1, 1, 12_000, 12_000);
    println!("1x1 GIF with a 12000x12000 frame: {} bytes", bomb.len());
    assert!(bomb.len() < 200_000, "{} bytes", bomb.len());
    let limits = Limits {
        max_pixels: 50_000_000,
        ..Limits::default()
    };
    let err = render_with(&bomb, &limits).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{err}");
    // Within the limits, the probe accounts for the frame it will decode.
    let small = gen_::gif_frame_bomb(1, 1, 3000, 2000);
    let p = render::decode::probe(&small, &limits).unwrap();
    assert!(p.decode_pixels() >= 6_000_000, "{}", p.decode_pixels());
}

#[test]
fn gif_with_hundreds_of_large_frames_renders_its_first_frame_or_is_refused() {
    let gif = gen_::gif_frames(1500, 1000, 300);
    println!("GIF of 300 1500x1000 frames: {} bytes", gif.len());
    assert!(gif.len() < 2_000_000, "{} bytes", gif.len());
    let r = render(&gif).unwrap();
    assert_eq!(r.facts.frames, 300);
    assert_eq!((r.facts.width, r.facts.height), (1500, 1000));
    let limits = Limits {
        max_frames: 100,
        ..Limits::default()
    };
    assert_eq!(
        render_with(&gif, &limits).unwrap_err().code(),
        ErrorCode::TooManyFrames
    );
}

#[test]
fn degenerate_shapes_render_without_upscaling() {
    for (w, h) in [(1, 1), (10_000, 1), (1, 10_000), (3, 1), (20_000, 2)] {
        for (name, bytes) in [
            ("png", gen_::png_solid(w, h)),
            ("gif", gen_::gif_frames(w, h, 1)),
        ] {
            let r = render(&bytes).unwrap_or_else(|e| panic!("{name} {w}x{h}: {e}"));
            assert!(!r.variants.is_empty());
            for v in &r.variants {
                assert!(
                    v.width >= 1 && v.height >= 1 && v.width <= w && v.height <= h,
                    "{name} {w}x{h} -> {}x{}",
                    v.width,
                    v.height
                );
                match v.format {
                    OutputFormat::Webp => assert_eq!(&v.bytes[8..12], b"WEBP"),
                    OutputFormat::Avif => assert_eq!(&v.bytes[4..12], b"ftypavif"),
                    other => panic!("{other} was not asked for"),
                }
            }
        }
    }
    // A JPEG cannot be wider than 65535; its extreme shape still renders.
    let jpeg = gen_::jpeg_solid(8000, 8);
    let r = render(&jpeg).unwrap();
    assert_eq!(r.variants[0].width, 16);
}

/// Fails unless `f` returns within a generous wall-clock bound (a bound that works takes
/// milliseconds; one that does not takes minutes).
fn quickly<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let t0 = std::time::Instant::now();
    let out = f();
    let took = t0.elapsed();
    assert!(took.as_secs() < 30, "{name} took {took:?}");
    out
}

#[test]
fn tiff_icc_tag_declaring_four_gigabytes_is_never_allocated() {
    let bomb = gen_::tiff_icc_count_bomb();
    assert!(bomb.len() < 200, "{} bytes", bomb.len());
    // The profile is dropped (over the IFD value limit); the one gray pixel renders.
    match quickly("tiff icc", || render(&bomb)) {
        Ok(r) => assert_eq!((r.facts.width, r.facts.height), (1, 1)),
        Err(e) => assert_eq!(e.code(), ErrorCode::InvalidColorProfile, "{e}"),
    }
}

#[test]
fn planar_rgba_tiff_renders_with_every_plane_interleaved() {
    let (w, h) = (64, 48);
    let tiff = gen_::tiff_planar_rgba(w, h);
    let probe = render::decode::probe(&tiff, &Limits::default()).unwrap();
    let decoded = render::decode::decode(&tiff, &probe, 64, &EncodeSettings::default()).unwrap();
    assert_eq!((decoded.width, decoded.height), (w, h));
    assert_eq!(decoded.layout, render::decode::Layout::Rgba);
    let render::decode::Samples::U8(px) = &decoded.samples else {
        panic!("8-bit samples expected");
    };
    assert_eq!(px.len(), (w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            let at = ((y * w + x) * 4) as usize;
            assert_eq!(&px[at..at + 4], &gen_::planar_pixel(x, y), "pixel {x},{y}");
        }
    }
    let r = quickly("planar tiff", || render(&tiff)).unwrap();
    assert_eq!((r.facts.width, r.facts.height), (w, h));
    assert!(!r.variants.is_empty());
}

#[test]
fn tiff_with_a_huge_jpeg_tile_is_refused_from_its_ifd() {
    let tiff = gen_::tiff_huge_jpeg_tile();
    assert!(tiff.len() < 4096, "{} bytes", tiff.len());
    let err = quickly("huge tile", || render(&tiff)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{err}");
    // Refused by the header probe, before admission.
    let err = render::decode::probe(&tiff, &Limits::default()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{err}");
}

#[test]
fn tiff_with_100000_strips_sharing_one_jpeg_is_refused() {
    let tiff = gen_::tiff_many_strips(100_000, 1024);
    println!("100,000-strip TIFF: {} bytes", tiff.len());
    assert!(tiff.len() < 2_000_000, "{} bytes", tiff.len());
    let err = quickly("100k strips", || render(&tiff)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UndecodableImage, "{err}");
}

#[test]
fn png_compressed_metadata_bombs_are_bounded() {
    // 128 MiB of inflated zeros in each compressed chunk kind (under 1 MiB of file each).
    for kind in [b"iCCP", b"zTXt", b"iTXt"] {
        let name = String::from_utf8_lossy(kind).into_owned();
        let png = gen_::png_compressed_chunk_bomb(kind, 128 << 20);
        assert!(png.len() < 1 << 20, "{name}: {} bytes", png.len());
        // Text is never inflated; the profile is inflated only up to the metadata limit and
        // then dropped: the image renders, untagged.
        let r = quickly(&name, || render(&png)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((r.facts.width, r.facts.height), (32, 24), "{name}");
        let probe = render::decode::probe(&png, &Limits::default()).unwrap();
        let d = render::decode::decode(&png, &probe, 32, &EncodeSettings::default()).unwrap();
        assert!(d.icc.is_none(), "{name}: a profile was kept");
    }
}

#[test]
fn png_metadata_over_the_limit_is_refused() {
    // 12 MiB of raw eXIf: over the 8 MiB metadata limit the decoder holds in memory.
    let png = gen_::png_with_chunk(b"eXIf", &vec![0; 12 << 20]);
    let err = quickly("exif", || render(&png)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{err}");
}

#[test]
fn webp_chunk_lying_about_its_size_is_refused() {
    let webp = gen_::webp_lying_iccp(0xFFFF_FF00);
    assert!(webp.len() < 1024, "{} bytes", webp.len());
    let (res, peak) = counting::peak_during(|| quickly("webp", || render(&webp)));
    // Refused from the chunk headers, before a buffer of the declared size is reserved.
    assert!(peak < 16 << 20, "rendering allocated {peak} bytes");
    let err = res.unwrap_err();
    assert_eq!(err.code(), ErrorCode::TruncatedImage, "{err}");
    // The same file telling the truth about a 64-byte profile is read (the profile is junk,
    // so at worst it fails on the profile, never on size).
    let honest = gen_::webp_lying_iccp(64);
    if let Err(e) = render(&honest) {
        assert!(
            [ErrorCode::InvalidColorProfile, ErrorCode::UndecodableImage].contains(&e.code()),
            "{e}"
        );
    }
}

#[test]
fn jpeg_with_inconsistent_icc_chunks_is_untagged_or_refused() {
    // The header walk drops the profile (bounded, never concatenated); libjpeg-turbo itself
    // may then refuse the file ("bad ICC marker"): either way a code, never a bogus profile.
    for chunks in [
        &[(3_u8, 2_u8), (1, 2)][..], // a sequence number past the count
        &[(1, 2), (1, 2)][..],       // a duplicate, one missing
        &[(1, 3), (2, 200)][..],     // counts that disagree
        &[(1, 255); 255][..],        // 255 copies of chunk 1
    ] {
        let jpeg = gen_::jpeg_bogus_icc(chunks);
        match quickly("jpeg icc", || render(&jpeg)) {
            Ok(r) => assert_eq!((r.facts.width, r.facts.height), (64, 48)),
            Err(e) => assert_eq!(e.code(), ErrorCode::UndecodableImage, "{chunks:?}: {e}"),
        }
        let probe = render::decode::probe(&jpeg, &Limits::default()).unwrap();
        if let Ok(d) = render::decode::decode(&jpeg, &probe, 64, &EncodeSettings::default()) {
            assert!(d.icc.is_none(), "{chunks:?}: a profile was kept");
        }
    }
    // libjpeg-turbo reads a consistent profile of any size (255 x 65519 bytes); the header
    // walk stops reassembling past 4 MiB and drops it. 80 chunks of 65 KB: 5.2 MB, consistent.
    let chunks: Vec<(u8, u8)> = (1..=80).map(|i| (i, 80)).collect();
    let jpeg = gen_::jpeg_icc_chunks(&chunks, 65_000);
    let probe = render::decode::probe(&jpeg, &Limits::default()).unwrap();
    let d = render::decode::decode(&jpeg, &probe, 64, &EncodeSettings::default()).unwrap();
    assert!(d.icc.is_none(), "a 5.2 MB profile was kept");
    let r = quickly("jpeg big icc", || render(&jpeg)).unwrap();
    assert_eq!((r.facts.width, r.facts.height), (64, 48));
}

#[test]
fn progressive_jpeg_repeating_a_scan_thousands_of_times_is_refused() {
    let jpeg = gen_::jpeg_repeated_scans(256, 256, 5_000);
    println!("JPEG with 5,000 repeated scans: {} bytes", jpeg.len());
    let err = quickly("scans", || render(&jpeg)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UndecodableImage, "{err}");
    // Refused by the scan count in the header walk, not by whatever libjpeg-turbo says after
    // decoding every scan.
    assert!(err.to_string().contains("500 scans"), "{err}");
    // An ordinary progressive JPEG (ten-odd scans) renders.
    let ok = gen_::jpeg_repeated_scans(256, 256, 0);
    quickly("progressive", || render(&ok)).unwrap();
}

#[test]
fn gif_frame_far_larger_than_its_screen_is_refused_under_the_pixel_limit() {
    // 36 MP of frame behind a 1x1 screen: under the 100 MP limit, but past the 16 Mi pixels a
    // frame may overflow its screen by.
    let bomb = gen_::gif_frame_bomb(1, 1, 6000, 6000);
    assert!(bomb.len() < 200_000, "{} bytes", bomb.len());
    let err = quickly("gif", || render(&bomb)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{err}");
}

#[test]
fn avif_grid_far_larger_than_its_ispe_is_refused_before_its_canvas_exists() {
    let tile = gen_::grid_tile();
    // The generator writes real grids: an honest 2x2 grid of the tile renders.
    let honest = gen_::avif_grid(&tile, 2, (2000, 1500), (2000, 1500));
    let r = quickly("honest grid", || render(&honest)).unwrap();
    assert_eq!((r.facts.width, r.facts.height), (2000, 1500));
    // The bomb's header passes (its ispe is 64x64); libheif's grid path, under the security
    // limits set from `Limits`, refuses the 31744x31744 canvas before allocating it.
    let bomb = gen_::avif_grid_bomb(&tile);
    println!("AVIF grid bomb: {} bytes", bomb.len());
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let p = render::decode::probe(&bomb, &Limits::default()).unwrap();
    assert_eq!((p.width, p.height), (64, 64));
    let err = quickly("avif grid", || render(&bomb)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{err}");
    assert!(err.to_string().contains("31744x31744"), "{err}");
}

#[test]
fn avif_alpha_grid_far_larger_than_its_image_is_refused() {
    let tile = gen_::grid_tile();
    let bomb = gen_::avif_alpha_grid_bomb(&tile);
    println!("AVIF alpha grid bomb: {} bytes", bomb.len());
    let p = render::decode::probe(&bomb, &Limits::default()).unwrap();
    assert_eq!((p.width, p.height), (64, 64));
    let err = quickly("avif alpha grid", || render(&bomb)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{err}");
    assert!(err.to_string().contains("31744x31744"), "{err}");
}

#[test]
fn tiff_chunk_tables_are_bounded_before_the_tiff_crate_reads_them() {
    // Tables declared but not in the file: 8 million entries (under the crate's own 8 Mi
    // list limit: it would reserve 8 M x 32 bytes for each) and 60 million (over it).
    for entries in [8_000_000, 60_000_000] {
        let tiff = gen_::tiff_chunk_tables(entries, false);
        assert!(tiff.len() < 4096, "{} bytes", tiff.len());
        let (res, peak) = counting::peak_during(|| {
            quickly("declared tables", || {
                render::decode::probe(&tiff, &Limits::default())
            })
        });
        assert!(
            peak < 1 << 20,
            "{entries}: the probe allocated {peak} bytes"
        );
        let err = res.unwrap_err();
        assert_eq!(err.code(), ErrorCode::UndecodableImage, "{entries}: {err}");
        assert!(err.to_string().contains("past the end"), "{entries}: {err}");
    }
    // Tables really stored: 2 million strips (16 MB of file) are over the 1 Mi chunk limit.
    let tiff = gen_::tiff_chunk_tables(2_000_000, true);
    let (res, peak) = counting::peak_during(|| render::decode::probe(&tiff, &Limits::default()));
    assert!(peak < 1 << 20, "the probe allocated {peak} bytes");
    let err = res.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{err}");
    assert!(err.to_string().contains("limit is 1048576"), "{err}");
    let err = quickly("stored tables", || render(&tiff)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{err}");
}

#[test]
fn tiff_strip_holding_a_jpeg_larger_than_the_strip_is_refused() {
    // 16000 is under zune-jpeg's own 16384 limit (a 768 MB frame); 60000 is over it.
    for side in [16_000, 60_000] {
        let tiff = gen_::tiff_jpeg_strip_bomb(side);
        assert!(tiff.len() < 4096, "{} bytes", tiff.len());
        let (res, peak) = counting::peak_during(|| quickly("jpeg strip", || render(&tiff)));
        assert!(peak < 16 << 20, "{side}: rendering allocated {peak} bytes");
        assert_eq!(res.unwrap_err().code(), ErrorCode::ImageTooLarge);
        let err = render::decode::probe(&tiff, &Limits::default()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{side}: {err}");
        assert!(err.to_string().contains("JPEG"), "{side}: {err}");
    }
    // An honest JPEG strip of the same layout renders.
    let honest = gen_::tiff_jpeg_strip_bomb(16);
    if let Err(e) = render(&honest) {
        assert_ne!(e.code(), ErrorCode::ImageTooLarge, "{e}");
    }
}

fn render_svg_at(bytes: &[u8], width: u32) -> Result<Rendered, RenderError> {
    render::render(
        bytes,
        &VariantRequest {
            widths: vec![width],
            formats: vec![OutputFormat::Webp],
            ..VariantRequest::default()
        }
        .normalise()
        .expect("a valid request"),
        &Limits::default(),
        &EncodeSettings::default(),
    )
}

#[test]
fn svg_amplifications_are_refused_quickly_and_small() {
    // Each is a few kilobytes (the deep nesting under a megabyte) that would expand to
    // gigabytes of text, billions of elements or hours of pixel work.
    for (name, bytes) in [
        ("billion laughs", gen_::svg_billion_laughs()),
        ("100000 nested groups", gen_::svg_deep_nesting(100_000)),
        ("300 nested groups", gen_::svg_deep_nesting(300)),
        ("use fan-out 10^10", gen_::svg_use_fanout(10, 10)),
        ("200 nested layers", gen_::svg_nested_layers(2048, 200)),
        ("morphology radius 1000", gen_::svg_morphology(2048, 1000)),
        (
            "20000 full-canvas rectangles",
            gen_::svg_overdraw(2048, 20_000),
        ),
        (
            "embedded PNG header bomb",
            gen_::svg_embedding("image/png", &gen_::png_header_bomb(100_000, 100_000)),
        ),
    ] {
        assert!(bytes.len() < 1 << 20, "{name}: {} bytes", bytes.len());
        let t0 = std::time::Instant::now();
        let (result, peak) = quickly(name, || {
            counting::peak_during(|| render_svg_at(&bytes, 2048))
        });
        let err = result.expect_err(name);
        eprintln!("{name}: {:?}, peak {} KiB: {err}", t0.elapsed(), peak >> 10);
        assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{name}: {err}");
        assert!(peak < 256 << 20, "{name}: peak {peak} bytes");
    }
}

#[test]
fn svg_within_the_bounds_still_renders() {
    // The neighbours of the refused cases: a short entity, modest nesting and fan-out.
    let entity = br#"<?xml version="1.0"?>
<!DOCTYPE svg [<!ENTITY ns "http://www.w3.org/2000/svg"><!ENTITY c "green">]>
<svg xmlns="&ns;" width="64" height="32"><rect width="64" height="32" fill="&c;"/></svg>"#;
    for (name, bytes) in [
        ("entities", entity.to_vec()),
        ("100 nested groups", gen_::svg_deep_nesting(100)),
        ("use fan-out 10^4", gen_::svg_use_fanout(4, 10)),
        ("8 nested layers", gen_::svg_nested_layers(512, 8)),
        ("morphology radius 3", gen_::svg_morphology(512, 3)),
        ("200 full-canvas rectangles", gen_::svg_overdraw(512, 200)),
    ] {
        let r =
            quickly(name, || render_svg_at(&bytes, 256)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.facts.format.as_str(), "svg", "{name}");
        assert!(!r.variants.is_empty(), "{name}");
    }
}

#[test]
fn svg_giant_blur_renders_in_bounded_time() {
    // resvg blurs with box passes whose cost does not grow with the radius; the filter region
    // is clamped to the canvas' neighbourhood. A 2048 px raster under a 10^6 px blur:
    let bytes = gen_::svg_blur(2048, 1e6);
    let t0 = std::time::Instant::now();
    let (r, peak) = quickly("giant blur", || {
        counting::peak_during(|| render_svg_at(&bytes, 2048))
    });
    let r = r.unwrap();
    eprintln!(
        "giant blur at 2048 px: {:?}, peak {} MiB on the rendering thread",
        t0.elapsed(),
        peak >> 20
    );
    assert_eq!(r.variants[0].width, 2048);
    // Admission charges at least what the decode and resize stages held.
    let probe = render::decode::probe(&bytes, &Limits::default()).unwrap();
    let request = VariantRequest {
        widths: vec![2048],
        formats: vec![OutputFormat::Webp],
        ..VariantRequest::default()
    }
    .normalise()
    .unwrap();
    let estimate = render::memory::estimate(
        &probe,
        bytes.len() as u64,
        &request,
        &EncodeSettings::default(),
        1,
    );
    eprintln!("estimate {} MiB", estimate.total_mib());
    assert!(
        peak as u64 <= estimate.total(),
        "peak {peak} over {estimate:?}"
    );
}

#[test]
fn svg_never_reads_files_or_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let red = dir.path().join("red.png");
    image::RgbImage::from_pixel(8, 8, image::Rgb([255, 0, 0]))
        .save(&red)
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let http = format!(
        "http://127.0.0.1:{}/red.png",
        listener.local_addr().unwrap().port()
    );
    let file_url = format!("file://{}", red.display());
    let path = red.display().to_string();
    let bytes = gen_::svg_external_images(&[
        &file_url,
        &path,
        &http,
        "file:///etc/passwd",
        "/etc/passwd",
        "red.png",
    ]);
    let r = render_svg_at(&bytes, 64).unwrap();
    let img = image::load_from_memory(&r.variants[0].bytes)
        .unwrap()
        .to_rgba8();
    assert!(
        img.pixels().all(|p| p[3] == 0),
        "an external image was drawn"
    );
    assert!(
        listener.accept().is_err(),
        "the renderer connected to {http}"
    );
}

#[test]
fn svg_embedded_images_go_through_the_engines_decoders() {
    let png = gen_::png_solid(8, 8);
    let solid = image::load_from_memory(&png).unwrap().to_rgba8();
    let want = solid.get_pixel(4, 4);
    let r = render_svg_at(&gen_::svg_embedding("image/png", &png), 64).unwrap();
    let img = image::load_from_memory(&r.variants[0].bytes)
        .unwrap()
        .to_rgba8();
    let got = img.get_pixel(32, 32);
    for c in 0..3 {
        assert!(
            (i32::from(got[c]) - i32::from(want[c])).abs() <= 8,
            "embedded PNG drawn as {got:?}, want {want:?}"
        );
    }
    assert!(got[3] > 250);
    // A nested SVG document is left out (never parsed), a broken image too.
    for (mime, data) in [
        (
            "image/svg+xml",
            gen_::svg_doc(
                r#"width="8" height="8""#,
                r#"<rect width="8" height="8" fill="red"/>"#,
            ),
        ),
        ("image/png", png[..png.len() / 2].to_vec()),
    ] {
        let r = render_svg_at(&gen_::svg_embedding(mime, &data), 64).unwrap();
        let img = image::load_from_memory(&r.variants[0].bytes)
            .unwrap()
            .to_rgba8();
        assert!(img.pixels().all(|p| p[3] == 0), "{mime} was drawn");
    }
}

#[test]
fn fax_row_that_never_advances_is_refused_after_a_bounded_number_of_codes() {
    // 300,000 zero-length runs (675 KB): the row's changes are capped at its width, so the
    // decoder stops after about 4,096 of them.
    let tiff = gen_::tiff_fax_row_without_progress(300_000);
    assert!(tiff.len() > 600_000, "{} bytes", tiff.len());
    let err = quickly("fax row without progress", || render(&tiff)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UndecodableImage, "{err}");
    assert!(
        err.to_string().contains("more changes than pixels"),
        "{err}"
    );
}

#[test]
fn fax_runs_longer_than_the_row_are_refused() {
    for group4 in [false, true] {
        let tiff = gen_::tiff_fax_row_past_width(group4);
        let err = quickly("fax row past width", || render(&tiff)).unwrap_err();
        assert_eq!(
            err.code(),
            ErrorCode::UndecodableImage,
            "group4 {group4}: {err}"
        );
        assert!(err.to_string().contains("past its width"), "{err}");
    }
}

#[test]
fn fax_data_coding_more_rows_than_the_page_renders_the_page_only() {
    let tiff = gen_::tiff_fax_extra_rows(100_000);
    let probe = render::decode::probe(&tiff, &Limits::default()).unwrap();
    let decoded = render::decode::decode(&tiff, &probe, 16, &EncodeSettings::default()).unwrap();
    assert_eq!((decoded.width, decoded.height), (16, 4));
    assert_eq!(decoded.layout, render::decode::Layout::Gray);
    let render::decode::Samples::U8(px) = &decoded.samples else {
        panic!("8-bit gray expected");
    };
    // All white (WhiteIsZero: the white runs are 255).
    assert_eq!(px, &vec![255; 64]);
}

#[test]
fn fax_strip_byte_count_lying_short_or_long_fails_with_a_code() {
    // Short: the count ends the data inside the first row.
    let err = quickly("fax cut row", || render(&gen_::tiff_fax_cut_row())).unwrap_err();
    assert_eq!(err.code(), ErrorCode::TruncatedImage, "{err}");
    // Long: the count runs past the end of the file.
    let data = gen_::bit_string(&format!("{}{}", gen_::fax_code::EOL, "1011".repeat(16)));
    let tiff = gen_::tiff_fax(64, 8, 3, 0, &data, 1 << 20);
    let err = quickly("fax long count", || render(&tiff)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UndecodableImage, "{err}");
}

#[test]
fn svg_paths_reaching_past_the_rasteriser_range_fail_with_a_code() {
    // Found by the image_probe fuzz target: a quadratic curve whose control point lies
    // 1.4 x 10^30 units away made tiny-skia's edge builder assert. Swept here over every
    // distance, and the same reach through a stroke width and a transform.
    let curve = |big: &str| {
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><path d="M30,76q6-{big}-13,11-27,,13-26q6-12,14-23q8-12,13-17q3-4,6-6q1-1,5-2q8-1,12-1q1,0,1,1z" fill="green"/></svg>"#
        )
    };
    let mut cases = Vec::new();
    for digits in 2..=31 {
        for lead in ["1", "4", "9"] {
            cases.push((
                format!("curve 10^{digits}"),
                curve(&format!("{lead}{}", "2".repeat(digits))),
            ));
        }
    }
    cases.push((
        "stroke width 10^12".into(),
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><path d="M10,10L90,90" stroke="red" stroke-width="1e12"/></svg>"#.into(),
    ));
    cases.push((
        "scale 10^12".into(),
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><path transform="scale(1e12)" d="M0,0L1,3L3,1z" fill="red"/></svg>"#.into(),
    ));
    // The renderer's own panic guard must not be what saves the case (the fuzzer's hook
    // aborts on any panic, caught or not): count every panic while the cases run.
    static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let previous = std::sync::Arc::new(std::panic::take_hook());
    let chained = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        chained(info);
    }));
    for (name, svg) in &cases {
        for width in [16, 100] {
            match quickly(name, || render_svg_at(svg.as_bytes(), width)) {
                Ok(r) => assert!(!r.variants.is_empty(), "{name}"),
                Err(e) => assert_eq!(e.code(), ErrorCode::UndecodableImage, "{name}: {e}"),
            }
        }
    }
    let _ = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| previous(info)));
    assert_eq!(
        PANICS.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a case panicked"
    );
    // A path reaching a million pixels past a small canvas still renders.
    let near = curve("1000000");
    render_svg_at(near.as_bytes(), 100).expect("a path 10^6 px away");
}
