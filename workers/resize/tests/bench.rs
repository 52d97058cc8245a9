#![allow(clippy::unwrap_used, missing_docs)]
//! `prism-resize bench`'s runners over the fixture images: the pool schedule with the
//! cost order writes exactly the variants (byte for byte) and the results of the plain thread
//! runner in name order, and the cost order starts the most expensive files first; libaom's
//! flags without the libaom encoder are refused.

use std::path::{Path, PathBuf};

use prism_resize::bench::{self, BenchOptions, Order, Schedule};
use prism_resize::render::{self, EncodeSettings, Limits};
use shared::variant::{OutputFormat, VariantRequest};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prism-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(out: PathBuf, schedule: Schedule, order: Order) -> BenchOptions {
    BenchOptions {
        corpus: fixtures(),
        out,
        widths: vec![16, 48],
        formats: vec![OutputFormat::Webp],
        concurrency: 2,
        schedule,
        order,
        settings: EncodeSettings::default(),
        limits: Limits::default(),
        no_write: false,
        isolation: prism_resize::isolate::Isolation::None,
        quality: None,
    }
}

/// `results.json`'s per-file entries without the timings, and every written file's bytes.
fn outcome(dir: &Path) -> (Vec<serde_json::Value>, Vec<(String, Vec<u8>)>) {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    let images = doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let o = r.as_object_mut().unwrap();
            o.remove("ms");
            o.remove("timings");
            r
        })
        .collect();
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "webp"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    (images, files)
}

#[test]
fn pool_in_cost_order_writes_what_threads_in_name_order_write() {
    let (a, b) = (scratch("threads"), scratch("pool"));
    let threads = bench::run(&options(a.clone(), Schedule::Threads, Order::Name)).unwrap();
    let pool = bench::run(&options(b.clone(), Schedule::Pool, Order::Cost)).unwrap();
    assert_eq!(threads.inputs, pool.inputs);
    assert_eq!(threads.images, pool.images);
    assert_eq!(threads.variants, pool.variants);
    assert!(pool.images >= 15, "most fixtures render: {pool:?}");
    assert!(
        pool.rejected >= 4,
        "the broken fixtures are rejected: {pool:?}"
    );
    let (ra, fa) = outcome(&a);
    let (rb, fb) = outcome(&b);
    assert_eq!(ra, rb, "per-file results differ between the runners");
    // Outputs are named `{stem}-{width}w.webp`, so quadrants.jpg/.png/.gif share names; which
    // of them lands last depends on timing. Compare the files exactly one input writes.
    let mut names: Vec<&str> = ra
        .iter()
        .flat_map(|r| r["variants"].as_array().unwrap())
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    let unique: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| names.iter().filter(|m| *m == n).count() == 1)
        .collect();
    assert!(unique.len() >= 20, "{unique:?}");
    let pick = |files: &[(String, Vec<u8>)]| -> Vec<(String, Vec<u8>)> {
        files
            .iter()
            .filter(|(n, _)| unique.contains(&n.as_str()))
            .cloned()
            .collect()
    };
    assert_eq!(pick(&fa).len(), unique.len());
    assert!(
        pick(&fa) == pick(&fb),
        "the runners wrote different variants"
    );
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn cost_order_starts_the_most_expensive_first_and_unprobeable_files_last() {
    let opts = options(scratch("order"), Schedule::Pool, Order::Cost);
    let request = VariantRequest {
        widths: opts.widths.clone(),
        formats: opts.formats.clone(),
        ..VariantRequest::default()
    }
    .normalise()
    .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let ordered = bench::start_order(files.clone(), &request, &opts);
    let mut sorted = ordered.clone();
    sorted.sort();
    assert_eq!(sorted, files, "start_order is a permutation");
    let costs: Vec<u64> = ordered
        .iter()
        .map(|p| {
            render::decode::probe(&std::fs::read(p).unwrap(), &opts.limits).map_or(0, |probe| {
                render::estimate_cost(&probe, &request, &opts.settings)
            })
        })
        .collect();
    assert!(
        costs.windows(2).all(|w| w[0] >= w[1]),
        "not most expensive first: {:?}",
        ordered.iter().zip(&costs).collect::<Vec<_>>()
    );
    assert!(costs[0] > *costs.last().unwrap());
    let name_order = bench::start_order(
        files.clone(),
        &request,
        &options(scratch("name"), Schedule::Pool, Order::Name),
    );
    assert_eq!(name_order, files);
    // The empty file, the bombs and the truncated JPEG do not probe: they go last (the SVG
    // probes like any image).
    let last: Vec<String> = ordered[ordered.len() - 4..]
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for name in &last {
        assert!(
            ["empty.jpg", "bomb.jpg", "bomb.png", "truncated.jpg"].contains(&name.as_str()),
            "{name} is among the last four"
        );
    }
}

/// The summary's peak RSS covers the render processes with `--isolation process`: their
/// high-water marks are added to the bench's own; the in-process run has none to add.
#[test]
fn the_peak_rss_includes_the_render_processes() {
    use prism_resize::isolate::Isolation;
    let (a, b) = (scratch("rss-none"), scratch("rss-process"));
    let none = bench::run(&options(a.clone(), Schedule::Pool, Order::Cost)).unwrap();
    let process = bench::run(&BenchOptions {
        isolation: Isolation::Process,
        ..options(b.clone(), Schedule::Pool, Order::Cost)
    })
    .unwrap();
    assert_eq!(none.isolation, Isolation::None);
    assert_eq!(
        (none.render_processes, none.render_processes_peak_rss_kb),
        (0, 0)
    );
    assert!(none.peak_rss_kb > 0 && none.peak_rss_sampled_kb <= none.peak_rss_kb);
    assert_eq!(process.isolation, Isolation::Process);
    assert!(
        (1..=2).contains(&process.render_processes),
        "{} render processes for a pool of 2",
        process.render_processes
    );
    // A render process (its binary's pages, its heap) is at least a few MB.
    assert!(
        process.render_processes_peak_rss_kb >= 1024 * process.render_processes as u64,
        "{process:?}"
    );
    assert!(process.peak_rss_kb > process.render_processes_peak_rss_kb);
    assert!(process.peak_rss_sampled_kb <= process.peak_rss_kb);
    // The same files render either way. (Not compared byte for byte here: from a test binary
    // the render processes run a `prism` or `prism-resize` found in the target folder, which
    // may be an older build; tests/isolation.rs compares a child with the engine.)
    assert_eq!(
        (process.images, process.rejected),
        (none.images, none.rejected)
    );
    let _ = std::fs::remove_dir_all(a);
    let _ = std::fs::remove_dir_all(b);
}

#[test]
fn libaom_flags_without_the_libaom_encoder_are_refused() {
    let out = scratch("aom-flags");
    for flags in [
        &["--aom-speed", "5"][..],
        &["--aom-quality-offset", "1", "--avif-encoder", "rav1e"][..],
    ] {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_prism-resize"))
            .args(["bench", "--corpus"])
            .arg(fixtures())
            .arg("--out")
            .arg(&out)
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains("--avif-encoder aom"), "{flags:?}: {stderr}");
    }
}
