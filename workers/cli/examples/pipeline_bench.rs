//! The full local pipeline next to the engine alone, on the same corpus and settings.
//!
//! 1. Engine alone: `prism_resize::bench::run` (what `prism-resize bench` runs), no writes.
//! 2. Pipeline: `prism dev` on a temp dir; the whole corpus as one batch through the real HTTP
//!    flow (create → presigned POST uploads → upload events → resize → manifests → metadata →
//!    long-poll until complete). Overhead = pipeline wall / engine wall − 1.
//! 3. Latency: one 12 MP photo alone, upload-to-complete through the pipeline, next to the
//!    engine's time for the same file.
//!
//! `cargo run --release -p prism --example pipeline_bench -- [CORPUS_DIR] [--webp-only]`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a measurement tool

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use prism_resize::bench::{BenchOptions, run as engine_bench};
use prism_resize::render::{EncodeSettings, Limits};
use shared::variant::OutputFormat;
use tokio_util::sync::CancellationToken;

const PHOTO: &str = "phone-12mp-orient6.jpg";

fn files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("corpus dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            !n.starts_with('.')
                && !n.ends_with(".md")
                && !n.ends_with(".txt")
                && !n.ends_with(".json")
        })
        .collect();
    v.sort();
    v
}

async fn pipeline(
    paths: Vec<PathBuf>,
    formats: &[&str],
    concurrency: usize,
) -> (f64, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bench.toml");
    std::fs::write(&cfg, format!("[consumer]\nconcurrency = {concurrency}\nwait_time_secs = 1\n[log]\nfilter = \"warn\"\n")).unwrap();
    let shutdown = CancellationToken::new();
    let dev = prism::dev::start(
        dir.path(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(&cfg),
        shutdown,
    )
    .await
    .unwrap();
    let args = prism::upload::UploadArgs {
        paths,
        api: dev.url.clone(),
        token: dev.token.clone(),
        widths: vec![320, 640, 1280, 2048],
        formats: formats.iter().map(|s| (*s).to_owned()).collect(),
        keep_original: false,
        wait_secs: 1800,
        progress: false,
        ..Default::default()
    };
    let t = Instant::now();
    let batch = prism::upload::run(&args).await.unwrap();
    let wall = t.elapsed().as_secs_f64();
    assert_eq!(batch["status"], "complete");
    dev.stop().await;
    (wall, batch)
}

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let webp_only = args.iter().any(|a| a == "--webp-only");
    args.retain(|a| a != "--webp-only");
    let corpus = args
        .first()
        .map_or_else(|| PathBuf::from("../shared/corpus"), PathBuf::from);
    let formats: Vec<&str> = if webp_only {
        vec!["webp"]
    } else {
        vec!["webp", "avif"]
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let out = tempfile::tempdir().unwrap();
    let options = |dir: PathBuf| BenchOptions {
        corpus: dir,
        out: out.path().to_path_buf(),
        widths: vec![320, 640, 1280, 2048],
        formats: formats
            .iter()
            .map(|f| {
                if *f == "webp" {
                    OutputFormat::Webp
                } else {
                    OutputFormat::Avif
                }
            })
            .collect(),
        concurrency: cores,
        // The worker's own model (one blocking task per image, encodes on the global rayon
        // pool, arrival order), so the comparison with the pipeline is like for like.
        schedule: prism_resize::bench::Schedule::Threads,
        order: prism_resize::bench::Order::Name,
        settings: EncodeSettings::default(),
        limits: Limits::default(),
        no_write: true,
        isolation: prism_resize::isolate::Isolation::None,
        quality: None,
    };

    eprintln!("engine alone on {} ...", corpus.display());
    let engine = engine_bench(&options(corpus.clone())).unwrap();
    eprintln!("pipeline on {} ...", corpus.display());
    let (wall, batch) = pipeline(files(&corpus), &formats, cores).await;
    let done = batch["counts"]["done"].as_u64().unwrap();
    let pipe_ips = done as f64 / wall;

    // One 12 MP photo alone.
    let single = tempfile::tempdir().unwrap();
    std::fs::copy(corpus.join(PHOTO), single.path().join(PHOTO))
        .expect("the 12 MP photo is in the corpus");
    let engine_one = engine_bench(&options(single.path().to_path_buf())).unwrap();
    let (latency, _) = pipeline(vec![single.path().join(PHOTO)], &formats, cores).await;

    println!(
        "mode {} | {} cores | widths 320,640,1280,2048",
        formats.join("+"),
        cores
    );
    println!("                         images   wall s   images/s");
    println!(
        "engine alone             {:>6}   {:>6.2}   {:>8.3}",
        engine.images, engine.wall_s, engine.images_per_s
    );
    println!(
        "full local pipeline      {:>6}   {:>6.2}   {:>8.3}",
        done, wall, pipe_ips
    );
    println!(
        "pipeline overhead        {:+.1}% of engine wall time (target <= 10%)",
        (wall / engine.wall_s - 1.0) * 100.0
    );
    println!(
        "{PHOTO}: engine {:.0} ms, upload-to-complete {:.0} ms, difference {:+.0} ms (target <= +250 ms)",
        engine_one.wall_s * 1000.0,
        latency * 1000.0,
        (latency - engine_one.wall_s) * 1000.0
    );
}
