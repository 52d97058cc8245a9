//! prism-resize: the image engine (a pure library) and the resize worker.
//!
//! Crate map:
//! - [`render`]: the engine. `render::render(bytes, request, limits, settings)` decodes once,
//!   orients, converts to sRGB, resizes every width and encodes WebP/AVIF; it also returns the
//!   manifest facts. No I/O.
//!   - `render::decode`: format sniffing, header probe with the limits, first-frame decode.
//!   - `render::color`: ICC → sRGB with lcms2, 16 → 8 bit.
//!   - `render::orient`: the eight EXIF orientations.
//!   - `render::resize`: the sRGB raster and Lanczos3 resizing.
//!   - `render::encode`: libwebp and ravif; `render::webp`: the libwebp FFI.
//!   - `render::facts`: hash, ThumbHash, dominant colour.
//! - [`isolate`]: crash isolation: renders in a supervised pool of child processes, each
//!   with resource limits and a deadline.
//! - [`worker`]: the queue worker: upload event → variants → manifest (or `failure.json`).
//! - [`alloc`]: glibc malloc tuning applied at start-up (large buffers stay in the heap).
//! - [`bench`]: the `prism-resize bench` subcommand, the side-by-side measurement against the
//!   sharp baseline.

pub mod alloc;
pub mod bench;
pub mod isolate;
pub mod render;
pub mod worker;
