//! The `prism-resize` binary: with no subcommand it runs the worker and `healthcheck` probes a
//! running one (both through the shared worker entry, `shared::cli::run_worker`); `bench`
//! measures the engine against the sharp baseline; `render-child` is a render process of the
//! worker's pool. This file only parses the command line and dispatches.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prism_resize::bench::{self, BenchOptions};
use prism_resize::isolate::{ChildArgs, Isolation};
use prism_resize::render::{EncodeSettings, Limits};
use shared::variant::OutputFormat;

#[derive(Debug, Parser)]
#[command(
    name = "prism-resize",
    version,
    about = "The prism resize worker and image engine."
)]
struct Cli {
    #[command(flatten)]
    common: shared::cli::CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Exit 0 when this worker's /healthz answers 200 (container health checks run this).
    Healthcheck,
    /// Render every image in a folder like the sharp baseline script and print a JSON
    /// summary with that script's field names.
    Bench {
        /// Folder of input images.
        #[arg(long)]
        corpus: PathBuf,
        /// Output folder for the variants and results.json.
        #[arg(long)]
        out: PathBuf,
        /// Target widths.
        #[arg(long, value_delimiter = ',', default_value = "320,640,1280,2048")]
        widths: Vec<u32>,
        /// Output formats.
        #[arg(long, value_delimiter = ',', default_value = "webp,avif", value_parser = parse_format)]
        formats: Vec<OutputFormat>,
        /// Images in flight (default: the number of CPUs, like the sharp script).
        #[arg(long)]
        concurrency: Option<usize>,
        /// How images are spread over the cores: `pool` (one rayon pool of `--concurrency`
        /// threads runs images and encodes, a waiting thread takes other work) or `threads`
        /// (`--concurrency` threads each run one image and block on its encodes).
        #[arg(long, value_enum, default_value = "pool")]
        schedule: bench::Schedule,
        /// The order images start in: `cost` (most expensive first, estimated from each
        /// header) or `name` (the sharp script's order).
        #[arg(long, value_enum, default_value = "cost")]
        order: bench::Order,
        /// rav1e speed preset 1..=10.
        #[arg(long)]
        avif_speed: Option<u8>,
        /// Offset from the request's AVIF quality to ravif's quality.
        #[arg(long)]
        avif_quality_offset: Option<f32>,
        /// The AVIF encoder: `rav1e` (the default) or `aom` (libaom through libheif).
        #[arg(long)]
        avif_encoder: Option<prism_resize::render::AvifEncoder>,
        /// libaom speed 0..=9 with `--avif-encoder aom` (sharp's effort 4 is speed 5).
        #[arg(long)]
        aom_speed: Option<u8>,
        /// Offset from the request's AVIF quality to libheif's with `--avif-encoder aom`.
        #[arg(long)]
        aom_quality_offset: Option<f32>,
        /// Minimum Lanczos factor left after JPEG DCT scaling ("inf" disables DCT scaling).
        #[arg(long)]
        jpeg_min_residual: Option<f64>,
        /// libwebp thread_level (0 or 1).
        #[arg(long)]
        webp_thread_level: Option<u8>,
        /// Make a width from an already-made one at least this many times larger ("inf":
        /// always from the decoded frame).
        #[arg(long)]
        resize_chain_min_ratio: Option<f64>,
        /// Do not write the variants.
        #[arg(long)]
        no_write: bool,
        /// Render in this process (`none`) or in a pool of `--concurrency` render processes
        /// (`process`, as the worker does by default).
        #[arg(long, value_enum, default_value = "none")]
        isolation: Isolation,
        /// A folder of animated GIF/APNG/WebP files: after the bench, each is rendered with
        /// `animated` on and off (same widths and formats) and the cost of the animation is
        /// printed on stderr, one `animation:` line per image ("none": skip).
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/animation"))]
        animation_corpus: PathBuf,
        /// The request's quality: 1-100 for every format, or auto, auto:high, auto:good,
        /// auto:eco (default: WebP 80 and AVIF 50, sharp's defaults).
        #[arg(long, value_parser = parse_quality)]
        quality: Option<shared::variant::Quality>,
    },
    /// A render process of the worker's pool: framed requests on stdin, answers on stdout.
    #[command(name = "render-child", hide = true)]
    RenderChild(ChildArgs),
}

fn parse_format(s: &str) -> Result<OutputFormat, String> {
    match s {
        "webp" => Ok(OutputFormat::Webp),
        "avif" => Ok(OutputFormat::Avif),
        other => Err(format!("unknown format {other:?} (webp, avif)")),
    }
}

fn parse_quality(s: &str) -> Result<shared::variant::Quality, String> {
    use shared::variant::{AutoQuality, Quality};
    if let Some(level) = AutoQuality::parse(s) {
        return Ok(Quality::Auto(level));
    }
    match s.parse::<u8>() {
        Ok(q) if (1..=100).contains(&q) => Ok(Quality::Fixed(q)),
        _ => Err(format!(
            "{s:?}: 1-100, auto, auto:high, auto:good or auto:eco"
        )),
    }
}

fn main() -> ExitCode {
    prism_resize::alloc::tune();
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        return shared::cli::run_worker::<prism_resize::ResizeWorker>(&cli.common, None);
    };
    match command {
        Command::RenderChild(args) => prism_resize::isolate::child_main(&args),
        Command::Healthcheck => shared::cli::run_worker::<prism_resize::ResizeWorker>(
            &cli.common,
            Some(shared::cli::WorkerCommand::Healthcheck),
        ),
        Command::Bench {
            corpus,
            out,
            widths,
            formats,
            concurrency,
            schedule,
            order,
            avif_speed,
            avif_quality_offset,
            avif_encoder,
            aom_speed,
            aom_quality_offset,
            jpeg_min_residual,
            webp_thread_level,
            resize_chain_min_ratio,
            no_write,
            isolation,
            animation_corpus,
            quality,
        } => {
            let mut settings = EncodeSettings::default();
            if let Some(s) = avif_speed {
                settings.avif_speed = s;
            }
            if let Some(o) = avif_quality_offset {
                settings.avif_quality_offset = o;
            }
            if let Some(e) = avif_encoder {
                settings.aom = e.aom();
            }
            if settings.aom.is_none() && (aom_speed.is_some() || aom_quality_offset.is_some()) {
                eprintln!(
                    "error: --aom-speed and --aom-quality-offset set libaom, which only \
                     --avif-encoder aom uses (the default AVIF encoder is rav1e: --avif-speed, \
                     --avif-quality-offset)"
                );
                return ExitCode::from(2);
            }
            if let Some(aom) = settings.aom.as_mut() {
                aom.speed = aom_speed.unwrap_or(aom.speed);
                aom.quality_offset = aom_quality_offset.unwrap_or(aom.quality_offset);
            }
            if let Some(r) = jpeg_min_residual {
                settings.jpeg_min_residual = r;
            }
            if let Some(t) = webp_thread_level {
                settings.webp_thread_level = t;
            }
            if let Some(r) = resize_chain_min_ratio {
                settings.resize_chain_min_ratio = r;
            }
            let options = BenchOptions {
                corpus,
                out,
                widths,
                formats,
                concurrency: concurrency
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                schedule,
                order,
                settings,
                limits: Limits::default(),
                no_write,
                isolation,
                quality,
            };
            match bench::run(&options) {
                Ok(summary) => match serde_json::to_string_pretty(&summary) {
                    Ok(json) => {
                        println!("{json}");
                        if animation_corpus.is_dir() {
                            print_animation_costs(&animation_corpus, &options);
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                },
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The separate animation figure of the bench: one line per animated image.
fn print_animation_costs(dir: &std::path::Path, options: &BenchOptions) {
    match bench::animation_costs(dir, &options.widths, &options.formats, &options.settings) {
        Ok(costs) => {
            for c in costs {
                eprintln!(
                    "animation: {}: {} frames, animated {:.1} ms ({} B WebP) vs first frame {:.1} ms ({} B WebP): +{:.1} ms, {:.2} ms per frame",
                    c.file,
                    c.frames,
                    c.animated_ms,
                    c.animated_webp_bytes,
                    c.first_frame_ms,
                    c.first_frame_webp_bytes,
                    c.animated_ms - c.first_frame_ms,
                    c.animated_ms / f64::from(c.frames.max(1)),
                );
            }
        }
        Err(e) => eprintln!("animation: {e:#}"),
    }
}
