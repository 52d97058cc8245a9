//! The `prism-resize` binary. For now it has one subcommand, `bench`; the worker mode plugs in
//! beside it. This file only parses the command line and maps the result to an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prism_resize::bench::{self, BenchOptions};
use prism_resize::render::{EncodeSettings, Limits};
use shared::variant::OutputFormat;

#[derive(Debug, Parser)]
#[command(
    name = "prism-resize",
    version,
    about = "The prism resize worker and image engine."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render every image in a folder like ../shared/bench/sharp-baseline.mjs and print a JSON
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
        /// rav1e speed preset 1..=10.
        #[arg(long)]
        avif_speed: Option<u8>,
        /// Offset from the request's AVIF quality to ravif's quality.
        #[arg(long)]
        avif_quality_offset: Option<f32>,
        /// Minimum Lanczos factor left after JPEG DCT scaling ("inf" disables DCT scaling).
        #[arg(long)]
        jpeg_min_residual: Option<f64>,
        /// Do not write the variants.
        #[arg(long)]
        no_write: bool,
    },
}

fn parse_format(s: &str) -> Result<OutputFormat, String> {
    match s {
        "webp" => Ok(OutputFormat::Webp),
        "avif" => Ok(OutputFormat::Avif),
        other => Err(format!("unknown format {other:?} (webp, avif)")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench {
            corpus,
            out,
            widths,
            formats,
            concurrency,
            avif_speed,
            avif_quality_offset,
            jpeg_min_residual,
            no_write,
        } => {
            let mut settings = EncodeSettings::default();
            if let Some(s) = avif_speed {
                settings.avif_speed = s;
            }
            if let Some(o) = avif_quality_offset {
                settings.avif_quality_offset = o;
            }
            if let Some(r) = jpeg_min_residual {
                settings.jpeg_min_residual = r;
            }
            let options = BenchOptions {
                corpus,
                out,
                widths,
                formats,
                concurrency: concurrency
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                settings,
                limits: Limits::default(),
                no_write,
            };
            match bench::run(&options) {
                Ok(summary) => match serde_json::to_string_pretty(&summary) {
                    Ok(json) => {
                        println!("{json}");
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
