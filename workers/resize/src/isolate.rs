//! Crash isolation and render deadlines: every render runs in a supervised child process.
//!
//! A codec that aborts, segfaults, overflows its stack or runs out of memory takes down the
//! process it runs in. With [`Isolation::Process`] that process is a child: the worker's own
//! binary re-executed with the hidden subcommand [`CHILD_SUBCOMMAND`] (both `prism-resize` and
//! `prism` accept it, so `prism dev` isolates too). Each child renders one image at a time and
//! lives for many renders; the [`Pool`] holds up to the render concurrency of them, spawns one
//! when none is idle, and throws a child away when anything about its exchange goes wrong.
//!
//! **Framing** (stdin → child, child → stdout), both directions the same:
//! `MAGIC` (4 bytes), header length (u32 LE), the header as JSON, then blobs, each a u64 LE
//! length and the bytes. A request's header carries the variant request, the limits and the
//! encode settings, and one blob (the upload). A response's header is either the facts, the
//! timings and one entry per variant (then one blob per variant) or a [`RenderError`] kind
//! and message. Headers are capped at [`MAX_HEADER`] and blobs at [`MAX_BLOB`], so a child
//! that writes garbage costs the parent nothing; garbage counts as a crash.
//!
//! **Limits**: the child sets them on itself before reading anything: `RLIMIT_CORE` 0 (a
//! crash writes no core file) and `RLIMIT_AS` from `--address-space-mib` (the worker sizes it
//! from the admission budget, see `config::ResizeConfig::child_address_space_mib`), so a
//! decoder asking for 137 GB fails its allocation inside the child, which aborts, and the file
//! is charged with the crash.
//!
//! **Deaths** (EOF on stdout, a broken pipe, a malformed response, any exit) are charged to the
//! one file whose request the child was holding: the child is reaped, the render is tried
//! once more in a fresh child, and a second death fails the file with `render_crashed`. An idle
//! child found dead before use is replaced without charging anyone.
//!
//! **Deadline**: [`Pool::render`] takes one deadline for both attempts; past it the child is
//! sent SIGKILL (its CPU and memory are released at once) and the file fails with
//! `render_timeout`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shared::variant::{OutputFormat, VariantRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tracing::{debug, warn};

use crate::render::animation::AnimationFacts;
use crate::render::hdr::HdrSource;
use crate::render::{
    self, EncodeSettings, Limits, RenderError, Rendered, SourceFacts, SourceFormat, Timings,
    Variant,
};

/// The hidden subcommand that turns `prism-resize` (or `prism`) into a render child.
pub const CHILD_SUBCOMMAND: &str = "render-child";

/// The first bytes of every frame.
const MAGIC: &[u8; 4] = b"PRZ1";
/// Largest header accepted, in bytes.
pub const MAX_HEADER: u32 = 1 << 20;
/// Largest blob accepted (an upload or an encoded variant), in bytes.
pub const MAX_BLOB: u64 = 1 << 30;

/// Where renders run: `[resize] isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// In a pool of child processes (crash isolation, a deadline that frees the CPU).
    #[default]
    Process,
    /// On a blocking thread of this process (a crash takes the worker down; a render past its
    /// deadline is abandoned but keeps its thread busy until it ends).
    None,
}

/// The child's command line after [`CHILD_SUBCOMMAND`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ChildArgs {
    /// `RLIMIT_AS` in MiB (0: unlimited).
    #[arg(long, default_value_t = 0)]
    pub address_space_mib: u64,
}

/// The request header.
#[derive(Debug, Serialize, Deserialize)]
struct RequestHeader {
    request: VariantRequest,
    limits: Limits,
    settings: EncodeSettings,
    /// Threads the child may render with (0: its default pool, one thread per core).
    #[serde(default)]
    threads: usize,
}

/// The response header.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ResponseHeader {
    Rendered {
        facts: WireFacts,
        timings: WireTimings,
        variants: Vec<WireVariant>,
    },
    Failed {
        kind: String,
        message: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct WireVariant {
    target_width: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<shared::variant::SizeSpec>,
    width: u32,
    height: u32,
    format: OutputFormat,
    #[serde(default)]
    lossless: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    animation: Option<AnimationFacts>,
    /// `"quality": "auto"`: quality, score and trials of the search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auto: Option<(u8, f64, u8)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireTimings {
    decode_ms: f64,
    resize_ms: f64,
    encode_ms: f64,
    #[serde(default)]
    attention_ms: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireFacts {
    format: String,
    width: u32,
    height: u32,
    bytes: u64,
    sha256: String,
    has_alpha: bool,
    color_profile: Option<String>,
    orientation: u8,
    frames: u32,
    thumbhash: String,
    dominant_color: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hdr: Option<HdrSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    animation: Option<AnimationFacts>,
}

impl From<SourceFacts> for WireFacts {
    fn from(f: SourceFacts) -> Self {
        Self {
            format: f.format.as_str().to_owned(),
            width: f.width,
            height: f.height,
            bytes: f.bytes,
            sha256: f.sha256,
            has_alpha: f.has_alpha,
            color_profile: f.color_profile,
            orientation: f.orientation,
            frames: f.frames,
            thumbhash: f.thumbhash,
            dominant_color: f.dominant_color,
            hdr: f.hdr,
            animation: f.animation,
        }
    }
}

fn source_format(s: &str) -> Option<SourceFormat> {
    [
        SourceFormat::Jpeg,
        SourceFormat::Png,
        SourceFormat::Gif,
        SourceFormat::Webp,
        SourceFormat::Tiff,
        SourceFormat::Avif,
        SourceFormat::Heic,
        SourceFormat::Svg,
    ]
    .into_iter()
    .find(|f| f.as_str() == s)
}

impl WireFacts {
    fn into_facts(self) -> Option<SourceFacts> {
        Some(SourceFacts {
            format: source_format(&self.format)?,
            width: self.width,
            height: self.height,
            bytes: self.bytes,
            sha256: self.sha256,
            has_alpha: self.has_alpha,
            color_profile: self.color_profile,
            orientation: self.orientation,
            frames: self.frames,
            thumbhash: self.thumbhash,
            dominant_color: self.dominant_color,
            hdr: self.hdr,
            animation: self.animation,
        })
    }
}

fn error_kind(e: &RenderError) -> (&'static str, String) {
    match e {
        RenderError::UnsupportedFormat(m) => ("unsupported_format", m.clone()),
        RenderError::Undecodable(m) => ("undecodable", m.clone()),
        RenderError::Truncated(m) => ("truncated", m.clone()),
        RenderError::TooLarge(m) => ("too_large", m.clone()),
        RenderError::TooManyFrames(m) => ("too_many_frames", m.clone()),
        RenderError::InvalidColorProfile(m) => ("invalid_color_profile", m.clone()),
        RenderError::Encode(m) => ("encode", m.clone()),
    }
}

fn render_error(kind: &str, m: String) -> Option<RenderError> {
    Some(match kind {
        "unsupported_format" => RenderError::UnsupportedFormat(m),
        "undecodable" => RenderError::Undecodable(m),
        "truncated" => RenderError::Truncated(m),
        "too_large" => RenderError::TooLarge(m),
        "too_many_frames" => RenderError::TooManyFrames(m),
        "invalid_color_profile" => RenderError::InvalidColorProfile(m),
        "encode" => RenderError::Encode(m),
        _ => return None,
    })
}

/// JSON has no infinity: the two ratios that use it to mean "never" travel as `f64::MAX`,
/// which compares the same way against any real width.
fn wire_settings(mut s: EncodeSettings) -> EncodeSettings {
    for v in [&mut s.jpeg_min_residual, &mut s.resize_chain_min_ratio] {
        if !v.is_finite() {
            *v = f64::MAX;
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The child.

/// Run as a render child until stdin ends: apply the limits, then answer one request at a time.
/// Returns success on a clean end of input, failure on a protocol or I/O error.
pub fn child_main(args: &ChildArgs) -> ExitCode {
    crate::alloc::tune_render_process();
    if let Err(e) = apply_limits(args) {
        eprintln!("render-child: cannot set resource limits: {e}");
        return ExitCode::FAILURE;
    }
    // Before the first request (the pool's warm-up render), so no image pays for it.
    crate::render::color::prepare();
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let (mut input, mut output) = (stdin.lock(), std::io::BufWriter::new(stdout.lock()));
    loop {
        let header = match read_frame_header_sync(&mut input) {
            Ok(Some(h)) => h,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("render-child: bad request: {e}");
                return ExitCode::FAILURE;
            }
        };
        let outcome = read_request_sync(&mut input, &header)
            .and_then(|(req, bytes)| write_response_sync(&mut output, &render_one(&req, &bytes)));
        if let Err(e) = outcome {
            eprintln!("render-child: {e}");
            return ExitCode::FAILURE;
        }
    }
}

fn apply_limits(args: &ChildArgs) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    if args.address_space_mib > 0 {
        let bytes = args.address_space_mib.saturating_mul(1024 * 1024);
        setrlimit(
            Resource::As,
            Rlimit {
                current: Some(bytes),
                maximum: Some(bytes),
            },
        )?;
    }
    Ok(())
}

fn render_one(req: &RequestHeader, bytes: &[u8]) -> Result<Rendered, RenderError> {
    #[cfg(feature = "test-hooks")]
    test_hooks::apply(bytes);
    let run = || render::render(bytes, &req.request, &req.limits, &req.settings);
    match thread_pool(req.threads) {
        Some(pool) => pool.install(run),
        None => run(),
    }
}

/// The child's rayon pool of `threads` threads (built once per size), which a render runs in
/// whole: its decode and resize on one of the pool's threads, its encodes spread over them.
/// `None` for 0, or when no pool can be built (the render then uses the global pool).
fn thread_pool(threads: usize) -> Option<std::sync::Arc<rayon::ThreadPool>> {
    static POOLS: std::sync::OnceLock<
        Mutex<std::collections::HashMap<usize, std::sync::Arc<rayon::ThreadPool>>>,
    > = std::sync::OnceLock::new();
    if threads == 0 {
        return None;
    }
    let mut pools = POOLS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(p) = pools.get(&threads) {
        return Some(p.clone());
    }
    let pool = std::sync::Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("render-{threads}-{i}"))
            .build()
            .ok()?,
    );
    pools.insert(threads, pool.clone());
    Some(pool)
}

/// Test-only ways to make a child misbehave, chosen by the upload's last bytes (after a valid
/// image, where decoders ignore them). Compiled only with the `test-hooks` feature.
#[cfg(feature = "test-hooks")]
pub mod test_hooks {
    /// Appended to an image, makes the child `abort()` when it receives it.
    pub const ABORT: &[u8] = b"\0prism-test-hook:abort";
    /// Appended to an image, makes the child loop (burning CPU) until it is killed.
    pub const SPIN: &[u8] = b"\0prism-test-hook:spin";

    pub(super) fn apply(bytes: &[u8]) {
        if bytes.ends_with(ABORT) {
            std::process::abort();
        }
        if bytes.ends_with(SPIN) {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
    }
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// The header length after the magic, or `None` at a clean end of input.
fn read_frame_header_sync(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut magic[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(invalid("input ends inside a frame")),
            n => got += n,
        }
    }
    if &magic != MAGIC {
        return Err(invalid("bad frame magic"));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_HEADER {
        return Err(invalid("header too large"));
    }
    let mut header = vec![0u8; len as usize];
    r.read_exact(&mut header)?;
    Ok(Some(header))
}

fn read_request_sync(
    r: &mut impl Read,
    header: &[u8],
) -> std::io::Result<(RequestHeader, Vec<u8>)> {
    let req: RequestHeader = serde_json::from_slice(header).map_err(|e| invalid(e.to_string()))?;
    let mut len = [0u8; 8];
    r.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > MAX_BLOB.min(req.limits.max_input_bytes) {
        return Err(invalid("input blob too large"));
    }
    let mut bytes = vec![0u8; len as usize];
    r.read_exact(&mut bytes)?;
    Ok((req, bytes))
}

fn write_header_sync(w: &mut impl Write, header: &[u8]) -> std::io::Result<()> {
    w.write_all(MAGIC)?;
    let len = u32::try_from(header.len()).map_err(|_| invalid("header too large"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(header)
}

fn write_response_sync(
    w: &mut impl Write,
    rendered: &Result<Rendered, RenderError>,
) -> std::io::Result<()> {
    let header = match rendered {
        Ok(r) => ResponseHeader::Rendered {
            facts: r.facts.clone().into(),
            timings: WireTimings {
                decode_ms: r.timings.decode_ms,
                resize_ms: r.timings.resize_ms,
                encode_ms: r.timings.encode_ms,
                attention_ms: r.timings.attention_ms,
            },
            variants: r
                .variants
                .iter()
                .map(|v| WireVariant {
                    target_width: v.target_width,
                    size: v.size,
                    width: v.width,
                    height: v.height,
                    format: v.format,
                    lossless: v.lossless,
                    animation: v.animation,
                    auto: v.auto.map(|c| (c.quality, c.score, c.trials)),
                })
                .collect(),
        },
        Err(e) => {
            let (kind, message) = error_kind(e);
            ResponseHeader::Failed {
                kind: kind.to_owned(),
                message,
            }
        }
    };
    let header = serde_json::to_vec(&header).map_err(|e| invalid(e.to_string()))?;
    write_header_sync(w, &header)?;
    if let Ok(r) = rendered {
        for v in &r.variants {
            w.write_all(&(v.bytes.len() as u64).to_le_bytes())?;
            w.write_all(&v.bytes)?;
        }
    }
    w.flush()
}

// ---------------------------------------------------------------------------------------------
// The parent.

/// Why [`Pool::render`] produced no variants.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The engine refused the image (the child answered).
    #[error(transparent)]
    Render(#[from] RenderError),
    /// Past the deadline; the child was killed.
    #[error("the render did not finish within {0:?}; its process was killed")]
    Timeout(Duration),
    /// The child died on this file on both attempts.
    #[error("the render process died twice on this file: {0}")]
    Crashed(String),
    /// No child could be started (a worker problem, not the file's).
    #[error("cannot start a render process: {0}")]
    Unavailable(String),
}

struct Proc {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

/// A pool of render children.
pub struct Pool {
    program: PathBuf,
    args: Vec<OsString>,
    permits: tokio::sync::Semaphore,
    idle: Mutex<Vec<Proc>>,
    size: usize,
    cores: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("program", &self.program)
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

/// The executable that runs the children: `configured` when given; else this process's own
/// executable when it is `prism-resize` or `prism` (both accept [`CHILD_SUBCOMMAND`]); else, for a
/// process that embeds the worker (a test harness), a `prism` or `prism-resize` beside it or one
/// folder up (cargo puts test binaries in `target/<profile>/deps`).
///
/// # Errors
/// When none of those exists.
pub fn locate_child_program(configured: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = configured {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("resize.render_child_program {p:?} is not a file"))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    let names = ["prism-resize", "prism"];
    if exe
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| names.contains(&n))
    {
        return Ok(exe);
    }
    // `prism` first: a process embedding the worker is `prism dev`'s stack (its tests).
    let dir = exe.parent();
    for d in [dir, dir.and_then(Path::parent)].into_iter().flatten() {
        for n in ["prism", "prism-resize"] {
            let p = d.join(n);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(format!(
        "{exe:?} is neither prism-resize nor prism and neither is beside it; set resize.render_child_program"
    ))
}

impl Pool {
    /// Up to `size` children of `program render-child --address-space-mib N`.
    pub fn new(program: PathBuf, address_space_mib: u64, size: usize) -> Self {
        Self {
            program,
            args: vec![
                CHILD_SUBCOMMAND.into(),
                "--address-space-mib".into(),
                address_space_mib.to_string().into(),
            ],
            permits: tokio::sync::Semaphore::new(size.max(1)),
            idle: Mutex::new(Vec::new()),
            size: size.max(1),
            cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        }
    }

    /// Start every child now and have each render a tiny image in `formats`, so the first
    /// real renders pay neither a process start nor the codecs' first-use set-up (tables,
    /// allocator arenas). Returns how many children are ready; a child that fails its warm-up
    /// is dropped (a later render starts another).
    pub async fn warm(&self, formats: &[OutputFormat], settings: &EncodeSettings) -> usize {
        let request = VariantRequest {
            widths: vec![shared::variant::MIN_WIDTH],
            formats: formats.to_vec(),
            ..VariantRequest::default()
        };
        let request = match request.normalise() {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "No warm-up request.");
                return 0;
            }
        };
        let Ok(header) = serde_json::to_vec(&RequestHeader {
            request,
            limits: Limits::default(),
            settings: wire_settings(*settings),
            // Every child busy: the thread count of a full pool.
            threads: (self.cores / self.size).max(1),
        }) else {
            return 0;
        };
        let input = warm_up_image();
        let mut procs = Vec::with_capacity(self.size);
        for _ in 0..self.size {
            match self.spawn() {
                Ok(p) => procs.push(p),
                Err(e) => warn!(error = %e, "A render process could not be started."),
            }
        }
        let warmed = futures::future::join_all(procs.into_iter().map(|mut p| {
            let (header, input) = (&header, &input);
            async move {
                let outcome =
                    tokio::time::timeout(Duration::from_secs(30), exchange(&mut p, header, input))
                        .await;
                let ok = match outcome {
                    Ok(Ok(Ok(_))) => true,
                    Ok(Ok(Err(e))) => {
                        warn!(error = %e, "A render process failed its warm-up render.");
                        false
                    }
                    Ok(Err(e)) => {
                        warn!(error = %e, "A render process died in its warm-up render.");
                        false
                    }
                    Err(_) => {
                        warn!("A render process did not finish its warm-up render in 30 s.");
                        false
                    }
                };
                (p, ok)
            }
        }))
        .await;
        let mut ready = 0;
        for (p, ok) in warmed {
            if ok {
                ready += 1;
                self.idle
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(p);
            } else {
                kill(p).await;
            }
        }
        ready
    }

    /// Threads for a render starting now: the cores shared among the renders in flight (this
    /// one included), at least one. Every child having a pool of its own, giving each all the
    /// cores would run `renders × cores` threads on `cores`; sharing them keeps one thread per
    /// core while the pool is busy, and lets a render that runs alone (the last of a batch)
    /// use every core.
    fn threads_now(&self) -> usize {
        let in_flight = self
            .size
            .saturating_sub(self.permits.available_permits())
            .max(1);
        (self.cores / in_flight).max(1)
    }

    fn take_idle(&self) -> Option<Proc> {
        loop {
            let mut p = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop()?;
            // A child that died while idle is nobody's fault: replace it quietly.
            match p.child.try_wait() {
                Ok(None) => return Some(p),
                Ok(Some(status)) => {
                    warn!(status = %describe(status), "An idle render process died; replacing it.")
                }
                Err(e) => {
                    warn!(error = %e, "An idle render process cannot be checked; replacing it.")
                }
            }
        }
    }

    fn spawn(&self) -> Result<Proc, PoolError> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| PoolError::Unavailable(format!("{:?}: {e}", self.program)))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(PoolError::Unavailable("no pipes to the child".into()));
        };
        debug!(pid = child.id(), "Render process started.");
        Ok(Proc {
            child,
            stdin: BufWriter::with_capacity(1 << 16, stdin),
            stdout: BufReader::with_capacity(1 << 16, stdout),
        })
    }

    /// Render `input` in a child within `deadline` (both attempts together). Cancel-safe: a
    /// dropped future kills the child it was using.
    ///
    /// # Errors
    /// See [`PoolError`].
    pub async fn render(
        &self,
        input: &[u8],
        request: &VariantRequest,
        limits: &Limits,
        settings: &EncodeSettings,
        deadline: Duration,
    ) -> Result<Rendered, PoolError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PoolError::Unavailable("the pool is closed".into()))?;
        let header = serde_json::to_vec(&RequestHeader {
            request: request.clone(),
            limits: *limits,
            settings: wire_settings(*settings),
            threads: self.threads_now(),
        })
        .map_err(|e| PoolError::Unavailable(format!("request header: {e}")))?;
        let until = Instant::now() + deadline;
        let mut deaths = Vec::new();
        for attempt in 1..=2 {
            let mut proc = match self.take_idle() {
                Some(p) => p,
                None => self.spawn()?,
            };
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, exchange(&mut proc, &header, input)).await {
                Ok(Ok(answer)) => {
                    self.idle
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(proc);
                    return answer;
                }
                Ok(Err(e)) => {
                    let status = reap(proc).await;
                    warn!(attempt, error = %e, status = %status, "The render process died on this file.");
                    deaths.push(format!("attempt {attempt}: {status} ({e})"));
                }
                Err(_) => {
                    let pid = proc.child.id();
                    kill(proc).await;
                    warn!(
                        pid,
                        deadline_s = deadline.as_secs_f64(),
                        "Render past its deadline; process killed."
                    );
                    return Err(PoolError::Timeout(deadline));
                }
            }
        }
        Err(PoolError::Crashed(deaths.join("; ")))
    }

    /// End every idle child: close its stdin (it exits at the end of input) and reap it, so
    /// its CPU time is accounted to this process. Renders in flight are not waited for.
    pub async fn close(&self) {
        let idle = std::mem::take(
            &mut *self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for mut p in idle {
            drop(p.stdin);
            if tokio::time::timeout(Duration::from_secs(5), p.child.wait())
                .await
                .is_err()
            {
                let _ = p.child.start_kill();
                let _ = p.child.wait().await;
            }
        }
    }

    /// [`Pool::render`] from a thread outside the runtime `rt` (the bench).
    ///
    /// # Errors
    /// See [`PoolError`].
    pub fn render_blocking(
        &self,
        rt: &tokio::runtime::Handle,
        input: &[u8],
        request: &VariantRequest,
        limits: &Limits,
        settings: &EncodeSettings,
        deadline: Duration,
    ) -> Result<Rendered, PoolError> {
        rt.block_on(self.render(input, request, limits, settings, deadline))
    }
}

/// How a child ended, for the failure message.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(sig)) => format!("killed by signal {sig}{}", signal_name(sig)),
        (Some(code), None) => format!("exited with status {code}"),
        (None, None) => "ended".to_owned(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        7 => " (SIGBUS)",
        4 => " (SIGILL)",
        8 => " (SIGFPE)",
        24 => " (SIGXCPU)",
        _ => "",
    }
}

/// Wait a moment for a child that broke its pipe to finish dying, then make sure of it.
async fn reap(mut proc: Proc) -> String {
    drop(proc.stdin);
    match tokio::time::timeout(Duration::from_secs(2), proc.child.wait()).await {
        Ok(Ok(status)) => describe(status),
        Ok(Err(e)) => format!("unknown end ({e})"),
        Err(_) => {
            let _ = proc.child.start_kill();
            match proc.child.wait().await {
                Ok(_) => "stopped answering (killed)".to_owned(),
                Err(e) => format!("stopped answering ({e})"),
            }
        }
    }
}

async fn kill(mut proc: Proc) {
    if let Err(e) = proc.child.start_kill() {
        warn!(error = %e, "Could not kill the render process.");
    }
    let _ = proc.child.wait().await;
}

/// One request and its answer. `Err` means the child is unusable (dead, or it broke the
/// protocol); `Ok(Err(PoolError::Render))` is the engine's answer.
/// A 32×32 PNG with some structure, rendered by [`Pool::warm`] at the smallest width.
fn warm_up_image() -> Vec<u8> {
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 8) as u8, ((x + y) * 4) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    // Writing a 16×16 PNG to memory cannot fail; an empty input would only fail its warm-up.
    let _ = img.write_to(&mut out, image::ImageFormat::Png);
    out.into_inner()
}

async fn exchange(
    proc: &mut Proc,
    header: &[u8],
    input: &[u8],
) -> std::io::Result<Result<Rendered, PoolError>> {
    let w = &mut proc.stdin;
    w.write_all(MAGIC).await?;
    w.write_all(&(header.len() as u32).to_le_bytes()).await?;
    w.write_all(header).await?;
    w.write_all(&(input.len() as u64).to_le_bytes()).await?;
    w.write_all(input).await?;
    w.flush().await?;

    let r = &mut proc.stdout;
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).await?;
    if &magic != MAGIC {
        return Err(invalid("bad response magic"));
    }
    let len = r.read_u32_le().await?;
    if len > MAX_HEADER {
        return Err(invalid("response header too large"));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).await?;
    let header: ResponseHeader =
        serde_json::from_slice(&buf).map_err(|e| invalid(format!("response header: {e}")))?;
    match header {
        ResponseHeader::Failed { kind, message } => {
            let e = render_error(&kind, message)
                .ok_or_else(|| invalid(format!("unknown error kind {kind:?}")))?;
            Ok(Err(PoolError::Render(e)))
        }
        ResponseHeader::Rendered {
            facts,
            timings,
            variants,
        } => {
            let facts = facts
                .into_facts()
                .ok_or_else(|| invalid("unknown source format"))?;
            let mut out = Vec::with_capacity(variants.len());
            for v in variants {
                let n = r.read_u64_le().await?;
                if n > MAX_BLOB {
                    return Err(invalid("variant blob too large"));
                }
                let mut bytes = vec![0u8; n as usize];
                r.read_exact(&mut bytes).await?;
                out.push(Variant {
                    target_width: v.target_width,
                    size: v.size,
                    width: v.width,
                    height: v.height,
                    format: v.format,
                    lossless: v.lossless,
                    bytes,
                    animation: v.animation,
                    auto: v.auto.map(|(quality, score, trials)| {
                        crate::render::perceptual::Chosen {
                            quality,
                            score: if score.is_finite() { score } else { 0.0 },
                            trials,
                        }
                    }),
                });
            }
            Ok(Ok(Rendered {
                facts,
                variants: out,
                timings: Timings {
                    decode_ms: timings.decode_ms,
                    resize_ms: timings.resize_ms,
                    encode_ms: timings.encode_ms,
                    attention_ms: timings.attention_ms,
                },
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_render_error_round_trips() {
        for e in [
            RenderError::UnsupportedFormat("a".into()),
            RenderError::Undecodable("b".into()),
            RenderError::Truncated("c".into()),
            RenderError::TooLarge("d".into()),
            RenderError::TooManyFrames("e".into()),
            RenderError::InvalidColorProfile("f".into()),
            RenderError::Encode("g".into()),
        ] {
            let (kind, m) = error_kind(&e);
            assert_eq!(render_error(kind, m), Some(e));
        }
    }

    #[test]
    fn infinite_settings_survive_json() {
        let s = EncodeSettings {
            jpeg_min_residual: f64::INFINITY,
            ..EncodeSettings::default()
        };
        let json = serde_json::to_vec(&wire_settings(s)).unwrap();
        let back: EncodeSettings = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.jpeg_min_residual, f64::MAX);
        assert_eq!(back.resize_chain_min_ratio, s.resize_chain_min_ratio);
    }

    #[test]
    fn every_source_format_parses() {
        for f in ["jpeg", "png", "gif", "webp", "tiff", "avif", "heic", "svg"] {
            assert_eq!(source_format(f).map(SourceFormat::as_str), Some(f));
        }
        assert_eq!(source_format("bmp"), None);
    }

    #[test]
    fn a_request_frame_reads_back() {
        let req = RequestHeader {
            request: VariantRequest::default(),
            limits: Limits::default(),
            settings: EncodeSettings::default(),
            threads: 1,
        };
        let header = serde_json::to_vec(&req).unwrap();
        let mut frame = Vec::new();
        write_header_sync(&mut frame, &header).unwrap();
        frame.extend_from_slice(&3u64.to_le_bytes());
        frame.extend_from_slice(b"abc");
        let mut r = frame.as_slice();
        let h = read_frame_header_sync(&mut r).unwrap().unwrap();
        let (_, bytes) = read_request_sync(&mut r, &h).unwrap();
        assert_eq!(bytes, b"abc");
        assert!(read_frame_header_sync(&mut r).unwrap().is_none());
    }
}
