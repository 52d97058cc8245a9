//! Lossy WebP through libwebp's advanced encoding API, called directly through `libwebp-sys`.
//!
//! This is the only module of the crate that uses `unsafe`: the FFI calls below. We call
//! libwebp ourselves (rather than through the `webp` crate) for three measured reasons:
//!
//! - `libwebp-sys` 0.14 bundles libwebp 1.6.0, the version prebuilt sharp ships; the `webp`
//!   crate pins `libwebp-sys` 0.9 (libwebp 1.3.1).
//! - The `webp` crate sets `use_argb = 1`, so an RGB(A) raster is first packed into ARGB and
//!   then converted to YUV inside `WebPEncode`. libvips (sharp) leaves `use_argb = 0` for lossy
//!   output, which imports RGB(A) straight to YUV 4:2:0: one pass and one buffer fewer.
//! - The encoded bytes are appended to a Rust `Vec` by the writer callback instead of being
//!   collected in libwebp's own buffer and copied out.
//!
//! The encoder configuration is exactly libvips' `webpsave` for sharp's `webp({ quality,
//! effort })`: `WebPConfigPreset(WEBP_PRESET_DEFAULT, quality)`, `method = effort`,
//! `alpha_quality = 100`, everything else at libwebp's defaults (one pass, four segments,
//! `sns_strength` 50, `filter_strength` 60, no sharp YUV, `thread_level` 0, one partition).
#![allow(unsafe_code)]

use std::ffi::c_int;

use libwebp_sys as sys;

use super::RenderError;
use super::resize::Raster;

/// The encoder settings sharp uses (see the module docs), plus our `thread_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebpOptions {
    /// 0..=100.
    pub quality: u8,
    /// libwebp `method` 0..=6 (sharp's `effort`).
    pub method: u8,
    /// libwebp `thread_level`: 1 runs the analysis pass and the alpha-plane encode on a second
    /// thread. It changes no output byte.
    pub thread_level: u8,
}

/// Lossy settings the engine leaves at libwebp's defaults (sharp's), for measuring what
/// other choices would buy (`examples/webp_oracle.rs`). `Tuning::default()` is the engine's
/// encode, byte for byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tuning {
    /// libwebp `use_sharp_yuv`: the iterative RGB to YUV 4:2:0 conversion (the raster is then
    /// imported as ARGB and converted inside the encode).
    pub sharp_yuv: bool,
    /// libwebp `sns_strength` 0..=100 (default 50).
    pub sns_strength: Option<u8>,
    /// libwebp `filter_strength` 0..=100 (default 60).
    pub filter_strength: Option<u8>,
    /// libwebp `segments` 1..=4 (default 4).
    pub segments: Option<u8>,
}

/// The libwebp version linked in, as `major.minor.revision`.
pub fn encoder_version() -> String {
    // SAFETY: a pure function without arguments.
    let v = unsafe { sys::WebPGetEncoderVersion() };
    format!("{}.{}.{}", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff)
}

/// Encode an RGB or RGBA raster (unassociated alpha) to lossy WebP.
///
/// # Errors
/// [`RenderError::Encode`] when libwebp rejects the configuration or the picture (too large:
/// libwebp's limit is 16383 px a side) or runs out of memory.
pub fn encode(raster: &Raster, options: WebpOptions) -> Result<Vec<u8>, RenderError> {
    encode_with(raster, Mode::Lossy(options, Tuning::default()))
}

/// [`encode`] with `tuning` applied over sharp's configuration.
///
/// # Errors
/// As [`encode`], and when libwebp refuses a tuning value.
pub fn encode_tuned(
    raster: &Raster,
    options: WebpOptions,
    tuning: Tuning,
) -> Result<Vec<u8>, RenderError> {
    encode_with(raster, Mode::Lossy(options, tuning))
}

/// Lossless WebP settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LosslessOptions {
    /// libwebp `method` 0..=6.
    pub method: u8,
    /// libwebp `quality` 0..=100, which for lossless is an effort (bigger: smaller and slower),
    /// never a loss.
    pub effort: u8,
    /// libwebp `thread_level`, as for lossy.
    pub thread_level: u8,
}

/// Encode `raster` (RGB or RGBA, 8-bit) as lossless WebP: decoding it gives back every pixel,
/// the colour of fully transparent ones included (`exact`).
///
/// # Errors
/// [`RenderError::Encode`] when libwebp refuses the picture or runs out of memory.
pub fn encode_lossless(raster: &Raster, options: LosslessOptions) -> Result<Vec<u8>, RenderError> {
    encode_with(raster, Mode::Lossless(options))
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Lossy(WebpOptions, Tuning),
    Lossless(LosslessOptions),
}

fn encode_with(raster: &Raster, mode: Mode) -> Result<Vec<u8>, RenderError> {
    let (quality, method, thread_level, lossless, tuning) = match mode {
        Mode::Lossy(o, t) => (o.quality, o.method, o.thread_level, false, t),
        Mode::Lossless(o) => (o.effort, o.method, o.thread_level, true, Tuning::default()),
    };
    let fail = |what: &str| RenderError::Encode(format!("libwebp: {what}"));
    let width = c_int::try_from(raster.width).map_err(|_| fail("width out of range"))?;
    let height = c_int::try_from(raster.height).map_err(|_| fail("height out of range"))?;
    let channels = raster.channels;
    if channels != 3 && channels != 4 {
        return Err(fail("only RGB and RGBA rasters are encoded"));
    }
    let stride = c_int::try_from(raster.width as usize * channels)
        .map_err(|_| fail("row stride out of range"))?;
    if raster.data.len() != raster.pixels() * channels {
        return Err(fail("raster size does not match its dimensions"));
    }

    let mut config = config(quality, method, thread_level, lossless).map_err(fail)?;
    if tuning != Tuning::default() {
        config.use_sharp_yuv = c_int::from(tuning.sharp_yuv);
        let set = |field: &mut c_int, v: Option<u8>| {
            if let Some(v) = v {
                *field = c_int::from(v);
            }
        };
        set(&mut config.sns_strength, tuning.sns_strength);
        set(&mut config.filter_strength, tuning.filter_strength);
        set(&mut config.segments, tuning.segments);
        // SAFETY: `config` is a valid, initialised WebPConfig.
        if unsafe { sys::WebPValidateConfig(&config) } == 0 {
            return Err(fail("invalid tuning"));
        }
    }

    let mut picture = Picture::new().ok_or_else(|| fail("picture init failed"))?;
    let mut out: Vec<u8> = Vec::with_capacity(raster.pixels() / 8 + 1024);
    {
        let pic = &mut picture.0;
        pic.width = width;
        pic.height = height;
        // Lossy without sharp YUV: import straight to YUV(A) 4:2:0, as libvips does. Lossless
        // works on ARGB, and sharp YUV converts from it inside the encode: import to ARGB.
        pic.use_argb = c_int::from(lossless || tuning.sharp_yuv);
        pic.writer = Some(write_to_vec);
        pic.custom_ptr = std::ptr::from_mut(&mut out).cast();
    }
    // SAFETY: `raster.data` holds `height` rows of `stride` bytes (checked above) and outlives
    // the call; the import copies the pixels into buffers the picture owns.
    let imported = unsafe {
        if channels == 4 {
            sys::WebPPictureImportRGBA(&mut picture.0, raster.data.as_ptr(), stride)
        } else {
            sys::WebPPictureImportRGB(&mut picture.0, raster.data.as_ptr(), stride)
        }
    };
    if imported == 0 {
        return Err(fail(&format!(
            "picture import failed ({:?})",
            picture.0.error_code
        )));
    }
    // SAFETY: config and picture are valid; the writer callback only touches `out`, which
    // lives until after the call and is not otherwise borrowed during it.
    let ok = unsafe { sys::WebPEncode(&config, &mut picture.0) };
    if ok == 0 {
        return Err(fail(&format!("encode failed ({:?})", picture.0.error_code)));
    }
    drop(picture);
    Ok(out)
}

/// A `WebPPicture` that frees its buffers when dropped (still and animated encodes).
pub(super) struct Picture(pub(super) sys::WebPPicture);

impl Picture {
    pub(super) fn new() -> Option<Self> {
        let mut pic = std::mem::MaybeUninit::<sys::WebPPicture>::uninit();
        // SAFETY: WebPPictureInitInternal zeroes and initialises the struct; 0 means an ABI
        // mismatch, in which case the struct is not used.
        let ok = unsafe {
            sys::WebPPictureInitInternal(pic.as_mut_ptr(), sys::WEBP_ENCODER_ABI_VERSION as c_int)
        };
        // SAFETY: initialised by the successful call above.
        (ok != 0).then(|| Self(unsafe { pic.assume_init() }))
    }
}

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: the picture was initialised; WebPPictureFree releases what the import
        // allocated and is a no-op for buffers never allocated.
        unsafe { sys::WebPPictureFree(&mut self.0) };
    }
}

/// libwebp's output callback: append the chunk to the `Vec<u8>` in `custom_ptr`.
extern "C" fn write_to_vec(
    data: *const u8,
    size: usize,
    picture: *const sys::WebPPicture,
) -> c_int {
    if size == 0 {
        return 1;
    }
    // SAFETY: libwebp passes the picture we configured, whose `custom_ptr` points at the
    // `Vec<u8>` owned by `encode` for the duration of WebPEncode, and `data` points at `size`
    // readable bytes.
    unsafe {
        let out = &mut *(*picture).custom_ptr.cast::<Vec<u8>>();
        out.extend_from_slice(std::slice::from_raw_parts(data, size));
    }
    1
}

/// libwebp's configuration for one encode, as sharp sets it: `WebPConfigPreset(DEFAULT,
/// quality)`, then `method`, `alpha_quality = 100`, `thread_level`, and for lossless
/// `lossless = 1` with `exact = 1` (the RGB under fully transparent pixels is kept: the output
/// is the raster, exactly). Shared by still and animated encodes.
///
/// # Errors
/// What failed, when libwebp's ABI does not match or it refuses the configuration.
pub(super) fn config(
    quality: u8,
    method: u8,
    thread_level: u8,
    lossless: bool,
) -> Result<sys::WebPConfig, &'static str> {
    let mut config = std::mem::MaybeUninit::<sys::WebPConfig>::uninit();
    // SAFETY: WebPConfigInitInternal fully initialises the struct it is given (this is what the
    // WebPConfigPreset macro of encode.h expands to) and returns 0 only on an ABI mismatch.
    let ok = unsafe {
        sys::WebPConfigInitInternal(
            config.as_mut_ptr(),
            sys::WebPPreset::WEBP_PRESET_DEFAULT,
            f32::from(quality.min(100)),
            sys::WEBP_ENCODER_ABI_VERSION as c_int,
        )
    };
    if ok == 0 {
        return Err("config init failed (ABI mismatch)");
    }
    // SAFETY: initialised by the successful call above.
    let mut config = unsafe { config.assume_init() };
    config.method = c_int::from(method.min(6));
    config.alpha_quality = 100;
    config.thread_level = c_int::from(thread_level.min(1));
    if lossless {
        config.lossless = 1;
        config.exact = 1;
    }
    // SAFETY: `config` is a valid, initialised WebPConfig.
    if unsafe { sys::WebPValidateConfig(&config) } == 0 {
        return Err("invalid configuration");
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_libwebp_1_6() {
        assert!(
            encoder_version().starts_with("1.6."),
            "{}",
            encoder_version()
        );
    }

    #[test]
    fn rejects_a_raster_whose_buffer_is_short() {
        let r = Raster {
            width: 4,
            height: 4,
            channels: 3,
            data: vec![0; 10],
        };
        let opts = WebpOptions {
            quality: 80,
            method: 4,
            thread_level: 0,
        };
        assert!(matches!(encode(&r, opts), Err(RenderError::Encode(_))));
    }
}
