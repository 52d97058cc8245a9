//! Process-wide allocator tuning for the engine's allocation pattern.
//!
//! Every image allocates a few large, short-lived buffers (the decoded frame: 36 MB for a
//! 12 MP photo; the resized variants; libwebp's YUV planes). glibc serves anything above its
//! mmap threshold (dynamic, at most 32 MiB) with a fresh `mmap` and returns it with `munmap`
//! on free, so every image page-faults its buffers in again, 4 KiB at a time: about 8% of the
//! engine's CPU in profiles. Raising the threshold keeps those buffers in the malloc heap and
//! reuses them. Measured on the WebP-only corpus (2 cores): 4.42/4.15 → 4.18/4.11 CPU-s and
//! 2.45/2.50 → 2.34/2.31 s wall, peak RSS 245-255 → 327-349 MB (sharp: 470-500 MB).
#![allow(unsafe_code)]

/// Allocations up to this size come from the heap instead of their own `mmap`.
pub const MMAP_THRESHOLD: usize = 64 * 1024 * 1024;
/// Free memory at the top of a heap is returned to the OS only above this size.
pub const TRIM_THRESHOLD: usize = 128 * 1024 * 1024;
/// malloc arenas in a render process (`src/isolate.rs`).
///
/// glibc gives each thread that allocates concurrently its own arena (up to 8 per core), and
/// with the thresholds above every arena keeps the freed buffers of the largest image it has
/// seen. In one process that retention is shared by all images in flight; with crash
/// isolation every render process keeps its own, so the worker's total grows with the number
/// of processes. A render process handles one image at a time (its decode and resize on the
/// main thread, its encodes on rayon), so one arena serves it: measured on the WebP-only
/// corpus (2 render processes, 3 alternated runs each): combined peak RSS 340-341 → 253-254
/// MB, CPU-s 4.15-4.20 → 4.13-4.15 (a busy machine: compare the pairs, not the level).
pub const RENDER_PROCESS_ARENA_MAX: usize = 1;

/// Apply [`MMAP_THRESHOLD`] and [`TRIM_THRESHOLD`]; call once at start-up, before threads
/// start. Does nothing where the C library is not glibc. Returns whether both were accepted.
pub fn tune() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let as_int = |v: usize| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets allocator parameters; it is called before any other
        // thread exists, and with values glibc documents as valid for these options.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, as_int(MMAP_THRESHOLD)) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, as_int(TRIM_THRESHOLD)) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// [`tune`], plus [`RENDER_PROCESS_ARENA_MAX`]: for a render process, at its start, before
/// threads start. Returns whether every setting was accepted.
pub fn tune_render_process() -> bool {
    let tuned = tune();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = libc::c_int::try_from(RENDER_PROCESS_ARENA_MAX).unwrap_or(1);
        // SAFETY: as in `tune`: no other thread exists yet, and M_ARENA_MAX takes any
        // positive count.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 && tuned }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        tuned
    }
}

/// Return the free memory of every malloc arena to the OS (glibc's `malloc_trim`).
///
/// With [`MMAP_THRESHOLD`] raised, a libaom encode's buffers (about 35 bytes per pixel) come
/// from the heap, and the arena of whichever thread ran the encode keeps them after it ends.
/// Called after each AVIF encode (`render::encode`), so that memory does not stay resident
/// beside the next image's; the WebP-only path never calls it.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe (it locks each arena).
    unsafe {
        libc::malloc_trim(0);
    }
}
