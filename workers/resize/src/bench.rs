//! `prism-resize bench`: run the engine over a folder, exactly the job of the sharp baseline
//! benchmark script (`sharp-baseline.mjs`, kept with the benchmark corpus, outside this
//! repository), and report in that script's terms.
//!
//! The job per file: sniff, orient, sRGB, every requested width smaller than the oriented
//! source width (else one variant at the source width), WebP q80 method 4 and AVIF q50, first
//! frame only. `--concurrency` defaults to the core count, as in the sharp script: by default
//! ([`Schedule::Pool`]) it is the size of one rayon pool that runs every image and every encode,
//! started most expensive first ([`Order::Cost`]); with [`Schedule::Threads`] it is the number
//! of images in flight, each on its own thread, with the encodes on the global rayon pool. A
//! file that fails is recorded as rejected with its code and the run goes on.
//!
//! This is a tool, so it reports with `anyhow` rather than a matchable error type.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;
use shared::variant::{OutputFormat, VariantRequest};

use shared::error::ErrorCode;

use crate::isolate::{self, Isolation, Pool, PoolError};
use crate::render::{self, EncodeSettings, Limits, Timings};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Folder of input images (not recursive).
    pub corpus: PathBuf,
    /// Folder for the variants and `results.json`.
    pub out: PathBuf,
    /// Target widths.
    pub widths: Vec<u32>,
    /// Output formats.
    pub formats: Vec<OutputFormat>,
    /// Images in flight ([`Schedule::Threads`]) or threads of the pool ([`Schedule::Pool`]).
    pub concurrency: usize,
    /// How images are spread over the cores.
    pub schedule: Schedule,
    /// The order images are started in.
    pub order: Order,
    /// Encoder knobs.
    pub settings: EncodeSettings,
    /// Limits.
    pub limits: Limits,
    /// Skip writing the variants (results.json is still written).
    pub no_write: bool,
    /// Render in this process (`none`, the default) or in a pool of `concurrency` render
    /// processes (`process`, as the worker does).
    pub isolation: Isolation,
    /// The request's `quality`: `None` for the defaults (sharp's job), a number, or an `auto`
    /// level (each variant then records its chosen quality and SSIMULACRA 2 score).
    pub quality: Option<shared::variant::Quality>,
}

/// Where the bench renders: in this process, or through a pool of render processes.
struct Engine {
    pool: Option<(Pool, tokio::runtime::Runtime)>,
}

impl Engine {
    fn new(options: &BenchOptions) -> anyhow::Result<Self> {
        let pool = match options.isolation {
            Isolation::None => {
                // What a render process builds before its warm-up render (the in-process
                // worker does it when it starts).
                render::color::prepare();
                None
            }
            Isolation::Process => {
                let program =
                    isolate::locate_child_program(None).map_err(|e| anyhow::anyhow!(e))?;
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .context("starting the bench's runtime")?;
                let pool = Pool::new(program, 0, options.concurrency);
                // Start and warm every render process before the clock starts, as the worker
                // does when it starts: a long-lived worker never pays these per image.
                let ready = rt.block_on(pool.warm(&options.formats, &options.settings));
                anyhow::ensure!(ready > 0, "no render process could be started");
                Some((pool, rt))
            }
        };
        Ok(Self { pool })
    }

    /// Stop the render processes (after the timed run), so their CPU time is reaped.
    fn close(&self) {
        if let Some((pool, rt)) = &self.pool {
            rt.block_on(pool.close());
        }
    }

    fn render(
        &self,
        bytes: &[u8],
        request: &VariantRequest,
        options: &BenchOptions,
    ) -> Result<render::Rendered, (ErrorCode, String)> {
        let Some((pool, rt)) = &self.pool else {
            return render::render(bytes, request, &options.limits, &options.settings)
                .map_err(|e| (e.code(), e.to_string()));
        };
        let day = std::time::Duration::from_secs(86_400);
        pool.render_blocking(
            rt.handle(),
            bytes,
            request,
            &options.limits,
            &options.settings,
            day,
        )
        .map_err(|e| {
            let code = match &e {
                PoolError::Render(r) => r.code(),
                PoolError::Timeout(_) => ErrorCode::RenderTimeout,
                PoolError::Crashed(_) => ErrorCode::RenderCrashed,
                PoolError::Unavailable(_) => ErrorCode::Internal,
            };
            (code, e.to_string())
        })
    }
}

/// How the bench spreads images over the cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// `concurrency` plain threads each take the next image and run it (decode, colour,
    /// resize) themselves; the encodes go to the global rayon pool and the thread blocks until
    /// they are done. Images in flight = `concurrency`, threads = `concurrency` + the pool.
    Threads,
    /// Every image is a job on one rayon pool of `concurrency` threads, the encodes of each
    /// image too; a thread that waits for an image's encodes runs other jobs meanwhile (that
    /// image's encodes, another image's, or the next image), so no core waits while there is
    /// work, and there are only as many threads as cores.
    Pool,
}

/// The order the bench starts images in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Most expensive first, by [`render::estimate_cost`] from each file's header (read and
    /// probed on the pool, inside the timed run): a long image never starts last while the
    /// other cores run out of work. Files whose header does not probe go last.
    Cost,
    /// File name order, as the sharp script reads them.
    Name,
}

/// The JSON summary printed on stdout; field names follow the sharp script.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Always "prism".
    pub tool: &'static str,
    /// "webp+avif" or "webp-only" (or the format list otherwise).
    pub mode: String,
    /// Images in flight (threads) or pool threads (pool).
    pub concurrency: usize,
    /// How images were spread over the cores.
    pub schedule: Schedule,
    /// The order images were started in.
    pub order: Order,
    /// Logical CPUs.
    pub cpus: usize,
    /// Engine settings in effect.
    pub settings: SummarySettings,
    /// Input files seen.
    pub inputs: usize,
    /// Inputs rendered.
    pub images: usize,
    /// Inputs rejected.
    pub rejected: usize,
    /// File and code of each rejected input.
    pub rejected_files: Vec<RejectedFile>,
    /// Variants written.
    pub variants: usize,
    /// WebP variants.
    pub variants_webp: usize,
    /// AVIF variants.
    pub variants_avif: usize,
    /// Bytes of all inputs.
    pub input_bytes_total: u64,
    /// Bytes of the inputs that rendered.
    pub input_bytes_ok: u64,
    /// Bytes of all WebP variants.
    pub output_bytes_webp: u64,
    /// Bytes of all AVIF variants.
    pub output_bytes_avif: u64,
    /// `auto` quality: the request's level, and per format the mean SSIMULACRA 2 score the
    /// variants measured and their mean chosen quality.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_quality: Option<AutoSummary>,
    /// Wall time from the first read to the last write, seconds.
    pub wall_s: f64,
    /// `images / wall_s`.
    pub images_per_s: f64,
    /// `variants / wall_s`.
    pub variants_per_s: f64,
    /// Where the renders ran.
    pub isolation: Isolation,
    /// Peak RSS in kB: the bench process's own `VmHWM` plus the `VmHWM` of every render
    /// process (`--isolation process`), each read from `/proc` before the process exits, or
    /// [`Summary::peak_rss_sampled_kb`] when that is larger (the kernel updates `VmHWM` lazily:
    /// memory returned with `madvise`, as glibc trims its thread arenas, can leave it below a
    /// resident size sampled earlier). An upper bound of the combined peak: the processes need
    /// not peak at the same moment.
    pub peak_rss_kb: u64,
    /// The largest sum of `VmRSS` over the bench process and its render processes at one
    /// moment, sampled every [`MEMORY_SAMPLE_MS`] ms during the run: a lower bound of the
    /// combined peak.
    pub peak_rss_sampled_kb: u64,
    /// Render processes seen (0 with `--isolation none`).
    pub render_processes: usize,
    /// The part of [`Summary::peak_rss_kb`] that is the render processes' (the sum of their
    /// `VmHWM`), kB.
    pub render_processes_peak_rss_kb: u64,
    /// How the peak RSS figures were measured.
    pub peak_rss_method: &'static str,
    /// The cost of an `auto` focus, measured apart from the run above (not in its wall time).
    pub auto_focus: AutoFocusCost,
}

/// What the attention map of an `auto` focus costs per image: measured after the run, one
/// image at a time, on each rendered input decoded as a `256x256` `cover` size would decode it
/// (JPEG at a reduced DCT scale), timing only [`render::fit::AttentionMap::of`] (the decode is
/// not counted).
#[derive(Debug, Clone, Serialize)]
pub struct AutoFocusCost {
    /// Images measured.
    pub images: usize,
    /// Mean milliseconds per image.
    pub attention_ms_mean: f64,
    /// Median milliseconds per image.
    pub attention_ms_p50: f64,
    /// Largest milliseconds of one image.
    pub attention_ms_max: f64,
}

/// Measure [`AutoFocusCost`] over `files` (the inputs that rendered).
fn auto_focus_cost(files: &[PathBuf], options: &BenchOptions) -> AutoFocusCost {
    let size = shared::variant::SizeSpec {
        width: 256,
        height: 256,
        fit: shared::variant::Fit::Cover,
        focus: shared::variant::Focus::Auto,
        background: None,
    };
    let request = VariantRequest {
        widths: vec![],
        sizes: vec![size],
        formats: vec![OutputFormat::Webp],
        ..VariantRequest::default()
    };
    let mut ms: Vec<f64> = files
        .iter()
        .filter_map(|path| {
            let bytes = std::fs::read(path).ok()?;
            let probe = render::decode::probe(&bytes, &options.limits).ok()?;
            let (ow, oh) = probe.oriented_dimensions();
            let target = render::max_target_width(&request, ow, oh);
            let decoded = render::decode::decode(&bytes, &probe, target, &options.settings).ok()?;
            let (raster, _, _) = render::color::to_srgb8_or_defer(decoded, u64::MAX).ok()?;
            let t = Instant::now();
            render::fit::AttentionMap::of(&raster).ok()?;
            Some(t.elapsed().as_secs_f64() * 1000.0)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
    AutoFocusCost {
        images: ms.len(),
        attention_ms_mean: round3(ms.iter().sum::<f64>() / ms.len().max(1) as f64),
        attention_ms_p50: round3(ms.get(ms.len() / 2).copied().unwrap_or(0.0)),
        attention_ms_max: round3(ms.last().copied().unwrap_or(0.0)),
    }
}

/// What [`Summary::peak_rss_method`] says.
const PEAK_RSS_METHOD: &str = "peak_rss_kb = VmHWM of the bench process + sum of VmHWM of each \
render process (read from /proc/<pid>/status before it exits), or peak_rss_sampled_kb when \
larger (VmHWM lags memory returned with madvise); upper bound; \
peak_rss_sampled_kb = largest sum of VmRSS of the bench and its render processes, sampled \
every 50 ms (lower bound)";

/// How often [`MemoryWatch`] samples, in milliseconds.
pub const MEMORY_SAMPLE_MS: u64 = 50;

/// The peak memory of the bench and its render processes. `/usr/bin/time` and `getrusage`
/// report the largest single process, which leaves the render processes out of the bench's
/// figure; this thread samples `/proc` instead: this process's `VmRSS`, and `VmRSS` and
/// `VmHWM` of each child listed in `/proc/self/task/*/children`. A child's `VmHWM` only grows
/// while it lives, so the last sample (taken before the pool closes) has its whole peak.
struct MemoryWatch {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    /// The largest `VmHWM` seen per child process id, kB.
    child_hwm_kb: std::collections::HashMap<u32, u64>,
    /// The largest combined `VmRSS` at one sample, kB.
    sampled_kb: u64,
}

impl Memory {
    fn sample(&mut self) {
        let mut total = proc_status_kb("self").map_or(0, |(rss, _)| rss);
        for pid in child_pids() {
            if let Some((rss, hwm)) = proc_status_kb(&pid.to_string()) {
                total += rss;
                let seen = self.child_hwm_kb.entry(pid).or_insert(0);
                *seen = (*seen).max(hwm);
            }
        }
        self.sampled_kb = self.sampled_kb.max(total);
    }
}

/// `VmRSS` and `VmHWM` of `/proc/<pid>/status`, kB.
fn proc_status_kb(pid: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The children of every thread of this process.
fn child_pids() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

impl MemoryWatch {
    fn start() -> anyhow::Result<Self> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-memory".into())
            .spawn(move || {
                let mut memory = Memory::default();
                let every = std::time::Duration::from_millis(MEMORY_SAMPLE_MS);
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    memory.sample();
                }
                memory.sample();
                memory
            })
            .context("starting the bench's memory sampler")?;
        Ok(Self { stop, thread })
    }

    /// Take a last sample and stop; call while the render processes still live.
    fn finish(self) -> anyhow::Result<Memory> {
        drop(self.stop);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the bench's memory sampler panicked"))
    }
}

/// Settings echoed in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct SummarySettings {
    /// Target widths.
    pub widths: Vec<u32>,
    /// Resize kernel.
    pub kernel: &'static str,
    /// WebP quality.
    pub webp_quality: u8,
    /// AVIF quality (request scale).
    pub avif_quality: u8,
    /// Engine knobs.
    pub engine: EncodeSettings,
}

/// A rejected input.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedFile {
    /// File name.
    pub file: String,
    /// Closed-set code.
    pub code: ErrorCode,
    /// Human message.
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
struct FileResult {
    file: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<SourceInfo>,
    variants: Vec<VariantInfo>,
    ms: f64,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    timings: Option<Timings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    facts: Option<render::SourceFacts>,
}

#[derive(Debug, Clone, Serialize)]
struct SourceInfo {
    format: &'static str,
    width: u32,
    height: u32,
}

#[derive(Debug, Clone, Serialize)]
struct VariantInfo {
    width: u32,
    height: u32,
    format: OutputFormat,
    bytes: u64,
    path: String,
    /// `auto` quality: the chosen quality and the measured score.
    #[serde(skip_serializing_if = "Option::is_none")]
    quality: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssimulacra2: Option<f64>,
}

/// The files the sharp script would process: plain files, sorted, minus dotfiles and notes.
fn list_inputs(corpus: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(corpus).with_context(|| format!("reading {corpus:?}"))? {
        let entry = entry?;
        // Follow symlinks, so a folder of links to a corpus subset works.
        if !std::fs::metadata(entry.path())?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let lower = name.to_ascii_lowercase();
        let skip = name.starts_with('.')
            || [".md", ".txt", ".json", ".sha256"]
                .iter()
                .any(|ext| lower.ends_with(ext));
        if !skip {
            files.push(entry.path());
        }
    }
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no input files in {corpus:?}");
    Ok(files)
}

/// Run the benchmark; writes the variants and `results.json` under `options.out`.
///
/// # Errors
/// Fails on I/O errors (unreadable corpus, unwritable output) and on an invalid request;
/// image failures are results, not errors.
pub fn run(options: &BenchOptions) -> anyhow::Result<Summary> {
    let request = VariantRequest {
        widths: options.widths.clone(),
        formats: options.formats.clone(),
        quality: options.quality,
        ..VariantRequest::default()
    }
    .normalise()
    .context("invalid widths, formats or quality")?;
    let files = list_inputs(&options.corpus)?;
    std::fs::create_dir_all(&options.out).with_context(|| format!("creating {:?}", options.out))?;

    let results = Mutex::new(Vec::with_capacity(files.len()));
    let engine = Engine::new(options)?;
    let memory = MemoryWatch::start()?;
    let t0 = Instant::now();
    match options.schedule {
        Schedule::Threads => {
            let files = ordered_inputs(files, &request, options);
            run_threads(&files, &request, options, &engine, &results)?;
        }
        Schedule::Pool => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(options.concurrency.max(1))
                .thread_name(|i| format!("bench-{i}"))
                .build()
                .context("starting the bench's thread pool")?;
            let files = pool.install(|| ordered_inputs(files, &request, options));
            run_pool(&pool, &files, &request, options, &engine, &results)?;
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let memory = memory.finish()?;
    let own_hwm_kb = proc_status_kb("self").map_or(0, |(_, hwm)| hwm);
    let children_hwm_kb: u64 = memory.child_hwm_kb.values().sum();
    engine.close();
    let mut results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a bench worker panicked"))?;
    results.sort_by(|a, b| a.file.cmp(&b.file));

    let ok: Vec<&FileResult> = results.iter().filter(|r| r.status == "ok").collect();
    let count = |f: OutputFormat| {
        ok.iter()
            .flat_map(|r| &r.variants)
            .filter(|v| v.format == f)
            .fold((0, 0), |(n, b), v| (n + 1, b + v.bytes))
    };
    let (variants_webp, output_bytes_webp) = count(OutputFormat::Webp);
    let (variants_avif, output_bytes_avif) = count(OutputFormat::Avif);
    let variants = variants_webp + variants_avif;
    let mode = match request.formats.as_slice() {
        [OutputFormat::Webp, OutputFormat::Avif] => "webp+avif".to_owned(),
        [OutputFormat::Webp] => "webp-only".to_owned(),
        other => other
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("+"),
    };
    let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let rendered: Vec<PathBuf> = ok.iter().map(|r| options.corpus.join(&r.file)).collect();
    let auto_focus = auto_focus_cost(&rendered, options);
    eprintln!(
        "auto focus (attention map, apart from the run): {} images, mean {:.3} ms, p50 {:.3} ms, max {:.3} ms per image",
        auto_focus.images,
        auto_focus.attention_ms_mean,
        auto_focus.attention_ms_p50,
        auto_focus.attention_ms_max
    );
    let summary = Summary {
        tool: "prism",
        mode,
        concurrency: options.concurrency,
        schedule: options.schedule,
        order: options.order,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        settings: SummarySettings {
            widths: request.widths.clone(),
            kernel: "lanczos3",
            webp_quality: request.webp_quality,
            avif_quality: request.avif_quality,
            engine: options.settings,
        },
        inputs: results.len(),
        images: ok.len(),
        rejected: results.len() - ok.len(),
        rejected_files: results
            .iter()
            .filter(|r| r.status != "ok")
            .map(|r| RejectedFile {
                file: r.file.clone(),
                code: r.code.unwrap_or(ErrorCode::Internal),
                error: r.message.clone().unwrap_or_default(),
            })
            .collect(),
        variants,
        variants_webp,
        variants_avif,
        input_bytes_total: results.iter().map(|r| r.bytes).sum(),
        input_bytes_ok: ok.iter().map(|r| r.bytes).sum(),
        output_bytes_webp,
        output_bytes_avif,
        auto_quality: request.quality.and_then(|q| match q {
            shared::variant::Quality::Auto(level) => {
                let mean = |f: OutputFormat, pick: fn(&VariantInfo) -> Option<f64>| {
                    let xs: Vec<f64> = ok
                        .iter()
                        .flat_map(|r| &r.variants)
                        .filter(|v| v.format == f)
                        .filter_map(pick)
                        .collect();
                    (!xs.is_empty()).then(|| round3(xs.iter().sum::<f64>() / xs.len() as f64))
                };
                Some(AutoSummary {
                    level: level.as_str().to_owned(),
                    ssimulacra2_mean_webp: mean(OutputFormat::Webp, |v| v.ssimulacra2),
                    ssimulacra2_mean_avif: mean(OutputFormat::Avif, |v| v.ssimulacra2),
                    quality_mean_webp: mean(OutputFormat::Webp, |v| v.quality.map(f64::from)),
                    quality_mean_avif: mean(OutputFormat::Avif, |v| v.quality.map(f64::from)),
                })
            }
            shared::variant::Quality::Fixed(_) => None,
        }),
        wall_s: round3(wall_s),
        images_per_s: round3(ok.len() as f64 / wall_s),
        variants_per_s: round3(variants as f64 / wall_s),
        isolation: options.isolation,
        peak_rss_kb: (own_hwm_kb + children_hwm_kb).max(memory.sampled_kb),
        peak_rss_sampled_kb: memory.sampled_kb,
        render_processes: memory.child_hwm_kb.len(),
        render_processes_peak_rss_kb: children_hwm_kb,
        peak_rss_method: PEAK_RSS_METHOD,
        auto_focus,
    };
    let doc = serde_json::json!({ "summary": &summary, "images": &results });
    std::fs::write(
        options.out.join("results.json"),
        serde_json::to_vec_pretty(&doc)?,
    )?;
    Ok(summary)
}

/// What `auto` quality chose over the run, per format.
#[derive(Debug, Clone, Serialize)]
pub struct AutoSummary {
    /// `auto:good`, ...
    pub level: String,
    /// Mean SSIMULACRA 2 of the WebP variants.
    pub ssimulacra2_mean_webp: Option<f64>,
    /// Mean SSIMULACRA 2 of the AVIF variants.
    pub ssimulacra2_mean_avif: Option<f64>,
    /// Mean chosen WebP quality.
    pub quality_mean_webp: Option<f64>,
    /// Mean chosen AVIF quality (request scale).
    pub quality_mean_avif: Option<f64>,
}

type Results = Mutex<Vec<FileResult>>;

/// `files` in [`BenchOptions::order`]; with [`Order::Cost`] every file is read and probed (in
/// parallel on the current rayon pool) and the most expensive go first, ties by name; files
/// that cannot be read or probed go last. `request` must be normalised.
pub fn start_order(
    files: Vec<PathBuf>,
    request: &VariantRequest,
    options: &BenchOptions,
) -> Vec<PathBuf> {
    ordered_inputs(files, request, options)
        .into_iter()
        .map(|i| i.path)
        .collect()
}

/// A file to render. Its bytes are read when its render starts, as the sharp script reads each
/// file when it starts it: the cost order's header pass reads every file once to probe it and
/// drops the bytes, so the bench never holds the whole folder (the second read comes from the
/// page cache, about a millisecond per 4 MB here).
struct Input {
    path: PathBuf,
}

impl Input {
    /// The file's bytes, read now.
    fn take_bytes(&self) -> anyhow::Result<Vec<u8>> {
        std::fs::read(&self.path).with_context(|| format!("reading {:?}", self.path))
    }
}

/// The files in [`start_order`].
fn ordered_inputs(
    files: Vec<PathBuf>,
    request: &VariantRequest,
    options: &BenchOptions,
) -> Vec<Input> {
    use rayon::prelude::*;
    if options.order == Order::Name {
        return files.into_iter().map(|path| Input { path }).collect();
    }
    let mut costed: Vec<(u64, PathBuf)> = files
        .into_par_iter()
        .map(|path| {
            let cost = std::fs::read(&path)
                .ok()
                .and_then(|b| render::decode::probe(&b, &options.limits).ok())
                .map_or(0, |probe| {
                    render::estimate_cost(&probe, request, &options.settings)
                });
            (cost, path)
        })
        .collect();
    costed.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    costed.into_iter().map(|(_, path)| Input { path }).collect()
}

fn record(results: &Results, result: FileResult) -> anyhow::Result<()> {
    eprintln!(
        "{:<8} {} {} ms",
        result.status,
        result.file,
        result.ms.round()
    );
    results
        .lock()
        .map_err(|_| anyhow::anyhow!("a bench worker panicked"))?
        .push(result);
    Ok(())
}

/// [`Schedule::Threads`]: `concurrency` threads, each taking the next file.
fn run_threads(
    files: &[Input],
    request: &VariantRequest,
    options: &BenchOptions,
    engine: &Engine,
    results: &Results,
) -> anyhow::Result<()> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..options.concurrency.clamp(1, files.len()))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(input) = files.get(i) else {
                            return Ok(());
                        };
                        record(results, run_one(input, request, options, engine)?)?;
                    }
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a bench worker panicked"))??;
        }
        Ok(())
    })
}

/// [`Schedule::Pool`]: every file is a job on one pool of `concurrency` threads, taken in
/// order; the engine's encodes land on the same pool, and a thread waiting for them runs
/// other jobs meanwhile.
fn run_pool(
    pool: &rayon::ThreadPool,
    files: &[Input],
    request: &VariantRequest,
    options: &BenchOptions,
    engine: &Engine,
    results: &Results,
) -> anyhow::Result<()> {
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    pool.scope_fifo(|scope| {
        for input in files {
            let first_error = &first_error;
            scope.spawn_fifo(move |_| {
                let outcome =
                    run_one(input, request, options, engine).and_then(|r| record(results, r));
                if let Err(e) = outcome {
                    first_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get_or_insert(e);
                }
            });
        }
    });
    match first_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn run_one(
    input: &Input,
    request: &VariantRequest,
    options: &BenchOptions,
    engine: &Engine,
) -> anyhow::Result<FileResult> {
    let file = input
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let t0 = Instant::now();
    let bytes = input.take_bytes()?;
    let rendered = engine.render(&bytes, request, options);
    let mut result = FileResult {
        file: file.clone(),
        status: "ok",
        code: None,
        message: None,
        source: None,
        variants: Vec::new(),
        ms: 0.0,
        bytes: bytes.len() as u64,
        timings: None,
        facts: None,
    };
    match rendered {
        Ok(r) => {
            let stem = Path::new(&file)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.clone());
            for v in &r.variants {
                let name = format!("{stem}-{}w.{}", v.target_width, v.format);
                let out = options.out.join(&name);
                if !options.no_write {
                    std::fs::write(&out, &v.bytes).with_context(|| format!("writing {out:?}"))?;
                }
                result.variants.push(VariantInfo {
                    width: v.width,
                    height: v.height,
                    format: v.format,
                    bytes: v.bytes.len() as u64,
                    path: name,
                    quality: v.auto.map(|c| c.quality),
                    ssimulacra2: v.auto.map(|c| c.score),
                });
            }
            result.source = Some(SourceInfo {
                format: r.facts.format.as_str(),
                width: r.facts.width,
                height: r.facts.height,
            });
            result.timings = Some(r.timings);
            result.facts = Some(r.facts);
        }
        Err((code, message)) => {
            result.status = "rejected";
            result.code = Some(code);
            result.message = Some(message);
        }
    }
    result.ms = (t0.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    Ok(result)
}

/// What animation costs for one animated input: the same request rendered with `animated`
/// on and off, one after the other on the calling thread.
#[derive(Debug, Clone, Serialize)]
pub struct AnimationCost {
    /// File name.
    pub file: String,
    /// Frames in the source.
    pub frames: u32,
    /// Wall time of the animated render, in milliseconds.
    pub animated_ms: f64,
    /// Wall time of the first-frame render, in milliseconds.
    pub first_frame_ms: f64,
    /// Bytes of the animated WebP variants.
    pub animated_webp_bytes: u64,
    /// Bytes of the first-frame WebP variants.
    pub first_frame_webp_bytes: u64,
}

/// [`AnimationCost`] of every animated GIF, APNG or WebP directly in `dir` (others skipped),
/// with `widths` and `formats` at the request's defaults otherwise.
///
/// # Errors
/// An unreadable folder or an invalid request; a file that fails to render is skipped.
pub fn animation_costs(
    dir: &Path,
    widths: &[u32],
    formats: &[OutputFormat],
    settings: &EncodeSettings,
) -> anyhow::Result<Vec<AnimationCost>> {
    let limits = Limits::default();
    let request = |animated| {
        VariantRequest {
            widths: widths.to_vec(),
            formats: formats.to_vec(),
            animated,
            ..VariantRequest::default()
        }
        .normalise()
        .context("invalid widths or formats")
    };
    let (on, off) = (request(true)?, request(false)?);
    let mut out = Vec::new();
    for path in list_inputs(dir)? {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(probe) = render::decode::probe(&bytes, &limits) else {
            continue;
        };
        if !render::animation::applies(&probe, &on) {
            continue;
        }
        let timed = |req: &VariantRequest| {
            let t = Instant::now();
            render::render(&bytes, req, &limits, settings).map(|r| {
                let webp = r
                    .variants
                    .iter()
                    .filter(|v| v.format == OutputFormat::Webp)
                    .map(|v| v.bytes.len() as u64)
                    .sum::<u64>();
                (t.elapsed().as_secs_f64() * 1000.0, webp)
            })
        };
        let (Ok((animated_ms, animated_webp_bytes)), Ok((first_frame_ms, first_frame_webp_bytes))) =
            (timed(&on), timed(&off))
        else {
            continue;
        };
        out.push(AnimationCost {
            file: path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            frames: probe.frames,
            animated_ms,
            first_frame_ms,
            animated_webp_bytes,
            first_frame_webp_bytes,
        });
    }
    Ok(out)
}
