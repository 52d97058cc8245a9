//! Hostile input through the real pipeline: one batch mixing hostile files (random bytes,
//! documents under image names, truncated files, PNG/JPEG/GIF bombs, a GIF with hundreds of
//! large frames, degenerate shapes) with valid neighbours, under hostile names (spaces, `+`,
//! `%`, unicode, `..`), uploaded through the presigned POSTs of `prism dev`'s in-process stack.
//! Every hostile file ends `failed` with its closed-set code (or `done`, for the ones that are
//! legitimate images), the valid neighbours are unaffected, no handler panics or retries, and
//! the process's peak resident set stays within the admission budget (printed).
//!
//! The only test in this file, so the test process's `VmHWM` is this pipeline's peak (nextest
//! runs every test in its own process; `cargo test` runs this binary's one test alone).
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

#[path = "../../resize/tests/support/hostile_inputs.rs"]
mod hostile_inputs;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hostile_inputs as gen_;
use serde_json::Value;
use shared::api::{
    ClientError, CreateBatchRequest, ErrorCode, FileSpec, OutputFormat, VariantSpec,
};
use tokio_util::sync::CancellationToken;

/// MiB of estimated render memory the resize worker admits at once.
const ADMISSION_MIB: u64 = 400;
/// The largest image it accepts.
const MAX_PIXELS: u64 = 32_000_000;

/// Peak RSS allowed, for the pipeline process and for each render process: a fixed allowance
/// for the runtime, the stack and the test's own buffers, plus the admission budget (the
/// renders in flight are charged an upper bound of their peak). A decoder allocating past what
/// admission charged (the GIF frame bomb below, before the probe counted frame buffers: 1 GB
/// for a "1x1" image) breaks this bound.
const BASE_ALLOWANCE_MB: u64 = 200;

/// The largest peak RSS (VmHWM) among this process's children (the render processes), sampled
/// every 50 ms until `stop`: a child's high-water mark only grows while it lives.
struct ChildSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

fn sample_children() -> ChildSampler {
    fn once(me: &str) -> u64 {
        let mut peak = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str() else { continue };
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
            };
            if field("PPid:") != Some(me) {
                continue;
            }
            let hwm = field("VmHWM:")
                .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
            peak = peak.max(hwm);
        }
        peak
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let me = std::process::id().to_string();
        let mut peak = 0;
        while !flag.load(Ordering::Relaxed) {
            peak = peak.max(once(&me));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        peak.max(once(&me))
    });
    ChildSampler { stop, thread }
}

fn vm_hwm_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// What a file must end as: `None` for done, else the code.
type Expect = Option<&'static str>;

fn cases() -> Vec<(String, Vec<u8>, Expect)> {
    let mut c: Vec<(String, Vec<u8>, Expect)> = Vec::new();
    let unsupported = Some("unsupported_format");
    for (name, bytes) in gen_::not_images() {
        if !bytes.is_empty() {
            c.push((format!("not-image {name}"), bytes, unsupported));
        }
    }
    // Valid neighbours under hostile names.
    for (i, name) in [
        "my photo (1).png",
        "a+b=c.png",
        "100% real.png",
        "naïve 写真 🙂.png",
        "../../../etc/passwd.png",
        "..",
        "a/../../b.png",
        "%2e%2e%2fescape.png",
        "C:\\windows\\system32.png",
    ]
    .iter()
    .enumerate()
    {
        c.push(((*name).to_owned(), gen_::png_solid(60 + i as u32, 40), None));
    }
    for (name, bytes) in gen_::valid_images() {
        let truncated = bytes[..bytes.len() / 2].to_vec();
        c.push((format!("truncated {name}"), truncated, Some("truncated")));
        c.push((name.to_owned(), bytes, None));
    }
    c.extend([
        (
            "png header bomb.png".into(),
            gen_::png_header_bomb(100_000, 100_000),
            Some("image_too_large"),
        ),
        (
            "jpeg header bomb.jpg".into(),
            gen_::jpeg_header_bomb(65_000, 65_000),
            Some("image_too_large"),
        ),
        (
            "svg size bomb.svg".into(),
            gen_::svg_intrinsic_bomb(),
            Some("image_too_large"),
        ),
        (
            "billion laughs.svg".into(),
            gen_::svg_billion_laughs(),
            Some("image_too_large"),
        ),
        (
            "gif screen bomb.gif".into(),
            gen_::gif_screen_bomb(65_535, 65_535),
            Some("image_too_large"),
        ),
        (
            "gif frame bomb.gif".into(),
            gen_::gif_frame_bomb(1, 1, 16_000, 16_000),
            Some("image_too_large"),
        ),
        // 36 MP of zeros in a few tens of KB: over the 32 MP limit.
        (
            "png zero bomb 6000.png".into(),
            gen_::png_zero_bomb(6000, 6000),
            Some("image_too_large"),
        ),
        // 16 MP of zeros: within the limit, a legitimate image that must not blow the budget.
        (
            "png zero bomb 4000.png".into(),
            gen_::png_zero_bomb(4000, 4000),
            None,
        ),
        (
            "300 large frames.gif".into(),
            gen_::gif_frames(1500, 1000, 300),
            None,
        ),
        (
            "1200 frames.gif".into(),
            gen_::gif_frames(200, 150, 1200),
            Some("too_many_frames"),
        ),
        ("1x1.png".into(), gen_::png_solid(1, 1), None),
        ("10000x1.png".into(), gen_::png_solid(10_000, 1), None),
        ("1x10000.png".into(), gen_::png_solid(1, 10_000), None),
        ("10000x1.gif".into(), gen_::gif_frames(10_000, 1, 1), None),
        ("8000x8.jpg".into(), gen_::jpeg_solid(8000, 8), None),
    ]);
    // libheif's security limits (set from the 32 MP limit) refuse the gigapixel canvas of a
    // grid whose ispe says 64x64, and of an alpha item far larger than its image.
    let tile = gen_::grid_tile();
    c.extend([
        (
            "avif grid bomb.avif".into(),
            gen_::avif_grid_bomb(&tile),
            Some("image_too_large"),
        ),
        (
            "avif alpha grid bomb.avif".into(),
            gen_::avif_alpha_grid_bomb(&tile),
            Some("image_too_large"),
        ),
        (
            "avif honest grid.avif".into(),
            gen_::avif_grid(&tile, 2, (2000, 1500), (2000, 1500)),
            None,
        ),
        // Strip tables declared past the end of a 200-byte file; a strip's JPEG far larger
        // than the strip.
        (
            "tiff 60m offsets.tif".into(),
            gen_::tiff_chunk_tables(60_000_000, false),
            Some("undecodable_image"),
        ),
        (
            "tiff jpeg strip 16000.tif".into(),
            gen_::tiff_jpeg_strip_bomb(16_000),
            Some("image_too_large"),
        ),
    ]);
    for seed in 0..3 {
        for (fmt, bytes) in gen_::noise_behind_magic(seed) {
            c.push((format!("noise {seed} {fmt}.jpg"), bytes, Some("decode")));
        }
    }
    c
}

/// Codes a file may end with when it only has to fail as a corrupt file.
fn code_ok(expect: &str, got: &str) -> bool {
    match expect {
        "truncated" => ["truncated_image", "undecodable_image"].contains(&got),
        "decode" => [
            "undecodable_image",
            "truncated_image",
            "unsupported_format",
            "image_too_large",
            "invalid_color_profile",
        ]
        .contains(&got),
        exact => exact == got,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_batch_fails_each_file_cleanly_within_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prism.toml");
    std::fs::write(
        &config,
        format!(
            "[resize]\nadmission_mib = {ADMISSION_MIB}\navif_speed = 10\n\
             [resize.limits]\nmax_pixels = {MAX_PIXELS}\n"
        ),
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let dev = prism::dev::start(
        &dir.path().join("data"),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(&config),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let children = sample_children();
    let baseline_kb = vm_hwm_kb();
    let http = reqwest::Client::new();
    let api = dev.url.trim_end_matches('/');

    let client = shared::api::Client::with_http(http.clone(), api, &dev.token);
    let request =
        |files: Vec<FileSpec>, widths: Vec<u32>, formats: Vec<OutputFormat>| CreateBatchRequest {
            files,
            variants: VariantSpec::new(widths, formats),
            callback_url: None,
            upload_method: Default::default(),
        };
    let spec = |name: &str, content_type: &str, size: u64| FileSpec {
        name: name.to_owned(),
        content_type: content_type.to_owned(),
        size,
        focal_point: None,
    };

    // Refused at the door: a zero-byte file and a name with a control character.
    for (name, size) in [("empty.jpg", 0), ("tab\there.png", 10)] {
        let refused = client
            .create_batch(&request(
                vec![spec(name, "image/jpeg", size)],
                vec![32],
                vec![OutputFormat::Webp],
            ))
            .await
            .unwrap_err();
        assert!(
            matches!(
                refused,
                ClientError::Api {
                    status: 400,
                    code: ErrorCode::InvalidRequest,
                    ..
                }
            ),
            "{name}: {refused}"
        );
    }

    let cases = cases();
    let created = client
        .create_batch(&request(
            cases
                .iter()
                .map(|(name, bytes, _)| spec(name, "image/png", bytes.len() as u64))
                .collect(),
            vec![32, 320],
            vec![OutputFormat::Webp, OutputFormat::Avif],
        ))
        .await
        .unwrap();
    let batch_id = created.batch_id.clone();
    let uploads = &created.uploads;
    assert_eq!(uploads.len(), cases.len());
    for ((name, bytes, _), up) in cases.iter().zip(uploads) {
        assert_eq!(up.name, *name);
        client
            .upload(up, bytes.clone(), "image/png")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    // An upload whose size differs from the declared one is refused by the policy.
    let liar_batch = client
        .create_batch(&request(
            vec![spec("liar.png", "image/png", 1000)],
            vec![32],
            vec![OutputFormat::Webp],
        ))
        .await
        .unwrap();
    let liar = client
        .upload(&liar_batch.uploads[0], gen_::noise(9, 5000), "image/png")
        .await;
    assert!(liar.is_err(), "an oversized upload was accepted");

    let mut view = Value::Null;
    for _ in 0..60 {
        let batch = client.get_batch(&batch_id, Some(10)).await.unwrap();
        let complete = batch.is_complete();
        view = serde_json::to_value(batch).unwrap();
        if complete {
            break;
        }
    }
    assert_eq!(view["status"], "complete", "{:#}", view["counts"]);
    let listed: HashMap<&str, &Value> = view["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f))
        .collect();
    assert_eq!(listed.len(), cases.len(), "every name exactly once");
    let mut report = Vec::new();
    for (name, _, expect) in &cases {
        let f = listed[name.as_str()];
        match expect {
            None => {
                assert_eq!(f["status"], "done", "{name}: {f:#}");
                assert!(!f["variants"].as_array().unwrap().is_empty(), "{name}");
                report.push(format!("{name:?}: done"));
            }
            Some(code) => {
                assert_eq!(f["status"], "failed", "{name}: {f:#}");
                let got = f["error"]["code"].as_str().unwrap();
                assert!(
                    code_ok(code, got),
                    "{name}: expected {code}, got {got}: {f:#}"
                );
                assert!(
                    shared::error::ErrorCode::ALL
                        .iter()
                        .any(|c| c.as_str() == got),
                    "{got} is not a closed-set code"
                );
                assert!(!f["error"]["message"].as_str().unwrap().is_empty());
                report.push(format!("{name:?}: {got}"));
            }
        }
    }
    let done = cases.iter().filter(|c| c.2.is_none()).count() as u64;
    assert_eq!(view["counts"]["done"], done);
    assert_eq!(view["counts"]["failed"], cases.len() as u64 - done);

    // No panic, no retry (a retry means a worker failed transiently on poison), no DLQ.
    let metrics = http
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            !(line.contains("outcome=\"retry\"") || line.contains("outcome=\"dead_letter\""))
                || line.ends_with(" 0"),
            "{line}"
        );
        assert!(!line.contains("error_code=\"panic\""), "{line}");
    }
    for q in ["resize", "metadata"] {
        let queue = dev
            .stack
            .queue(q, Duration::from_secs(60), 5)
            .await
            .unwrap();
        let s = shared::port::Queue::stats(&queue).await.unwrap();
        assert_eq!((s.visible, s.in_flight, s.dlq_visible), (0, 0, 0), "{q}");
    }
    dev.stop().await;

    let peak_kb = vm_hwm_kb();
    children.stop.store(true, Ordering::Relaxed);
    let child_peak_kb = children.thread.join().unwrap();
    let budget_mb = BASE_ALLOWANCE_MB + ADMISSION_MIB;
    println!(
        "hostile batch: {} files\n  {}",
        cases.len(),
        report.join("\n  ")
    );
    println!(
        "peak RSS (VmHWM) {} MB (stack up: {} MB); bound {} MB = {BASE_ALLOWANCE_MB} MB + {ADMISSION_MIB} MiB admission",
        peak_kb / 1024,
        baseline_kb / 1024,
        budget_mb
    );
    println!(
        "peak RSS of the largest render process {} MB",
        child_peak_kb / 1024
    );
    assert!(
        peak_kb / 1024 <= budget_mb,
        "peak RSS {} MB over the {budget_mb} MB bound",
        peak_kb / 1024
    );
    assert!(
        child_peak_kb > 0,
        "the renders ran in child processes, and they were reaped"
    );
    assert!(
        child_peak_kb / 1024 <= budget_mb,
        "a render process peaked at {} MB, over the {budget_mb} MB bound",
        child_peak_kb / 1024
    );
}
