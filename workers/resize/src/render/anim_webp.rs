//! Animated WebP through libwebp's animation encoder (`WebPAnimEncoder`, libwebp's `libwebpmux`,
//! compiled into `libwebp-sys` with the rest of libwebp), called directly.
//!
//! Frames are handed over one at a time as full-canvas RGBA rasters; the encoder keeps only the
//! previous canvas and the encoded frames, so the caller never holds the whole animation. Each
//! frame is encoded lossy with the same configuration as a still WebP variant (libvips'
//! `webpsave`: the default preset at the request's quality, `method` = effort, `alpha_quality`
//! 100), or lossless with the still lossless variant's ([`AnimEncoder::new_lossless`]); the
//! encoder picks sub-rectangles, blending and key frames itself.
#![allow(unsafe_code)]

use std::ffi::c_int;

use libwebp_sys as sys;

use super::RenderError;
use super::resize::Raster;
use super::webp::{LosslessOptions, WebpOptions};

/// How the frames of an [`AnimEncoder`] are compressed.
#[derive(Debug, Clone, Copy)]
enum FrameMode {
    Lossy(WebpOptions),
    Lossless(LosslessOptions),
}

fn fail(what: &str) -> RenderError {
    RenderError::Encode(format!("libwebp animation: {what}"))
}

/// One animated WebP being encoded: add frames in display order, then [`AnimEncoder::finish`].
pub struct AnimEncoder {
    enc: *mut sys::WebPAnimEncoder,
    config: sys::WebPConfig,
    width: u32,
    height: u32,
    /// The next frame's start, in milliseconds from the first frame.
    timestamp_ms: u64,
    frames: u32,
}

// SAFETY: the encoder is owned by this value alone and libwebp keeps no thread-local state in
// it; it is used by one thread at a time (the caller's `&mut self`).
unsafe impl Send for AnimEncoder {}

impl AnimEncoder {
    /// An encoder for a `width` × `height` canvas that loops `loop_count` times (0 = forever).
    ///
    /// # Errors
    /// [`RenderError::Encode`] when libwebp rejects the size or the configuration.
    pub fn new(
        width: u32,
        height: u32,
        loop_count: u32,
        options: WebpOptions,
    ) -> Result<Self, RenderError> {
        Self::with_mode(width, height, loop_count, FrameMode::Lossy(options))
    }

    /// An encoder like [`AnimEncoder::new`] whose frames are lossless (libwebp's lossless
    /// bitstream at the given method and effort, `exact` on): decoding each frame of the
    /// animation gives back the raster handed to [`AnimEncoder::add`].
    ///
    /// # Errors
    /// As [`AnimEncoder::new`].
    pub fn new_lossless(
        width: u32,
        height: u32,
        loop_count: u32,
        options: LosslessOptions,
    ) -> Result<Self, RenderError> {
        Self::with_mode(width, height, loop_count, FrameMode::Lossless(options))
    }

    fn with_mode(
        width: u32,
        height: u32,
        loop_count: u32,
        mode: FrameMode,
    ) -> Result<Self, RenderError> {
        let (quality, method, thread_level, lossless) = match mode {
            FrameMode::Lossy(o) => (o.quality, o.method, o.thread_level, false),
            FrameMode::Lossless(o) => (o.effort, o.method, o.thread_level, true),
        };
        let w = c_int::try_from(width).map_err(|_| fail("width out of range"))?;
        let h = c_int::try_from(height).map_err(|_| fail("height out of range"))?;
        let mut anim = std::mem::MaybeUninit::<sys::WebPAnimEncoderOptions>::uninit();
        // SAFETY: fully initialises the struct; 0 only on an ABI mismatch.
        let ok = unsafe {
            sys::WebPAnimEncoderOptionsInitInternal(
                anim.as_mut_ptr(),
                sys::WEBP_MUX_ABI_VERSION as c_int,
            )
        };
        if ok == 0 {
            return Err(fail("options init failed (ABI mismatch)"));
        }
        // SAFETY: initialised above.
        let mut anim = unsafe { anim.assume_init() };
        // The loop count is 16 bits in the ANIM chunk.
        anim.anim_params.loop_count = c_int::from(u16::try_from(loop_count).unwrap_or(0));
        // Transparent black where no frame has drawn yet, as GIF and APNG canvases start.
        anim.anim_params.bgcolor = 0;

        let config = super::webp::config(quality, method, thread_level, lossless).map_err(fail)?;
        // SAFETY: `anim` is initialised; libwebp copies the options.
        let enc = unsafe {
            sys::WebPAnimEncoderNewInternal(w, h, &anim, sys::WEBP_MUX_ABI_VERSION as c_int)
        };
        if enc.is_null() {
            return Err(fail("encoder init failed (size or memory)"));
        }
        Ok(Self {
            enc,
            config,
            width,
            height,
            timestamp_ms: 0,
            frames: 0,
        })
    }

    /// Frames added so far.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Add one full-canvas frame (RGB or RGBA, unassociated alpha) shown for `duration_ms`.
    ///
    /// # Errors
    /// [`RenderError::Encode`] when the raster does not match the canvas, the animation would
    /// last longer than libwebp's timestamps reach (2^31 ms), or libwebp fails.
    pub fn add(&mut self, raster: &Raster, duration_ms: u32) -> Result<(), RenderError> {
        if raster.width != self.width || raster.height != self.height {
            return Err(fail("frame size differs from the canvas"));
        }
        let channels = raster.channels;
        if (channels != 3 && channels != 4) || raster.data.len() != raster.pixels() * channels {
            return Err(fail("raster size does not match its dimensions"));
        }
        let stride = c_int::try_from(raster.width as usize * channels)
            .map_err(|_| fail("row stride out of range"))?;
        let ts = c_int::try_from(self.timestamp_ms).map_err(|_| fail("animation too long"))?;
        let mut picture = super::webp::Picture::new().ok_or_else(|| fail("picture init failed"))?;
        picture.0.width = c_int::try_from(self.width).map_err(|_| fail("width"))?;
        picture.0.height = c_int::try_from(self.height).map_err(|_| fail("height"))?;
        // The animation encoder works on ARGB canvases.
        picture.0.use_argb = 1;
        // SAFETY: `raster.data` holds `height` rows of `stride` bytes (checked above); the
        // import copies them into buffers the picture owns.
        let imported = unsafe {
            if channels == 4 {
                sys::WebPPictureImportRGBA(&mut picture.0, raster.data.as_ptr(), stride)
            } else {
                sys::WebPPictureImportRGB(&mut picture.0, raster.data.as_ptr(), stride)
            }
        };
        if imported == 0 {
            return Err(fail("picture import failed"));
        }
        // SAFETY: the encoder, picture and config are valid; the encoder copies what it keeps.
        let ok = unsafe { sys::WebPAnimEncoderAdd(self.enc, &mut picture.0, ts, &self.config) };
        if ok == 0 {
            return Err(fail(&self.error()));
        }
        self.frames += 1;
        self.timestamp_ms += u64::from(duration_ms);
        Ok(())
    }

    /// Close the animation (the last frame lasts until the current timestamp) and return the
    /// WebP file.
    ///
    /// # Errors
    /// [`RenderError::Encode`] without frames or when libwebp fails to assemble.
    pub fn finish(self) -> Result<Vec<u8>, RenderError> {
        if self.frames == 0 {
            return Err(fail("no frames"));
        }
        let ts = c_int::try_from(self.timestamp_ms).map_err(|_| fail("animation too long"))?;
        // SAFETY: a null frame flushes the encoder, giving the last frame's end time.
        let ok = unsafe {
            sys::WebPAnimEncoderAdd(self.enc, std::ptr::null_mut(), ts, std::ptr::null())
        };
        if ok == 0 {
            return Err(fail(&self.error()));
        }
        let mut data = sys::WebPData::default();
        // SAFETY: `data` is an empty WebPData libwebp fills with a buffer it allocates.
        let ok = unsafe { sys::WebPAnimEncoderAssemble(self.enc, &mut data) };
        if ok == 0 {
            return Err(fail(&self.error()));
        }
        // SAFETY: on success `data` points at `size` bytes libwebp allocated; they are copied
        // out, then released with libwebp's own free.
        let out = unsafe { std::slice::from_raw_parts(data.bytes, data.size).to_vec() };
        // SAFETY: releases the buffer allocated by the assembly above.
        unsafe { sys::WebPDataClear(&mut data) };
        Ok(out)
    }

    fn error(&self) -> String {
        // SAFETY: returns a pointer to a NUL-terminated string owned by the encoder.
        let msg = unsafe { sys::WebPAnimEncoderGetError(self.enc) };
        if msg.is_null() {
            return "unknown error".into();
        }
        // SAFETY: non-null, NUL-terminated, alive while the encoder is.
        unsafe { std::ffi::CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for AnimEncoder {
    fn drop(&mut self) {
        // SAFETY: `enc` came from WebPAnimEncoderNewInternal and is deleted once.
        unsafe { sys::WebPAnimEncoderDelete(self.enc) };
    }
}

/// Frames in a WebP file and its total duration in milliseconds, from libwebp's demuxer
/// (headers only); `None` when it is not a valid WebP file.
pub fn frames_and_duration(bytes: &[u8]) -> Option<(u32, u64)> {
    let data = sys::WebPData {
        bytes: bytes.as_ptr(),
        size: bytes.len(),
    };
    // SAFETY: `data` points at `bytes`, which outlive the demuxer (deleted below).
    let demux = unsafe {
        sys::WebPDemuxInternal(
            &data,
            0,
            std::ptr::null_mut(),
            sys::WEBP_DEMUX_ABI_VERSION as c_int,
        )
    };
    if demux.is_null() {
        return None;
    }
    // SAFETY: a valid demuxer.
    let count = unsafe { sys::WebPDemuxGetI(demux, sys::WebPFormatFeature::WEBP_FF_FRAME_COUNT) };
    let mut total = 0_u64;
    let mut iter = std::mem::MaybeUninit::<sys::WebPIterator>::zeroed();
    // SAFETY: the iterator is filled by WebPDemuxGetFrame and released once.
    unsafe {
        if sys::WebPDemuxGetFrame(demux, 1, iter.as_mut_ptr()) != 0 {
            loop {
                let it = &*iter.as_ptr();
                total += u64::try_from(it.duration).unwrap_or(0);
                if sys::WebPDemuxNextFrame(iter.as_mut_ptr()) == 0 {
                    break;
                }
            }
            sys::WebPDemuxReleaseIterator(iter.as_mut_ptr());
        }
        sys::WebPDemuxDelete(demux);
    }
    Some((count, total))
}
