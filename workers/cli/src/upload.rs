//! `prism upload`: create a batch, upload every file through its presigned instructions (POST
//! form or PUT — whatever the API answered, so it works against AWS too), long-poll until the
//! batch completes, print a table. Every API call goes through the typed
//! [`shared::api::Client`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde_json::Value;
use shared::api::{
    BatchView, Client, CreateBatchRequest, FileSpec, FocalPoint, OutputFormat, SizeSpec,
    UploadInstructions, UploadMethodSpec, VariantSpec,
};
use shared::variant::{Background, Fit, Focus};

/// What to upload and where.
#[derive(Debug, Clone)]
pub struct UploadArgs {
    /// Files.
    pub paths: Vec<PathBuf>,
    /// API base URL.
    pub api: String,
    /// Bearer token.
    pub token: String,
    /// Variant widths.
    pub widths: Vec<u32>,
    /// Variant formats.
    pub formats: Vec<String>,
    /// Keep the original.
    pub keep_original: bool,
    /// JPEG quality (`None`: the API's default).
    pub jpeg_quality: Option<u8>,
    /// Lossless WebP: off, on or auto.
    pub lossless: shared::variant::Lossless,
    /// Render animated GIF/APNG/WebP uploads as animated WebP (`false`: first frame only).
    pub animated: bool,
    /// `quality`: a number for every lossy format, or an `auto` level (`None`: the API's
    /// per-format defaults).
    pub quality: Option<shared::variant::Quality>,
    /// Longest time to wait for completion (0: do not wait).
    pub wait_secs: u64,
    /// Show a progress bar.
    pub progress: bool,
}

/// No files, no API, no widths or formats; the variant options at the API's defaults
/// (JPEG quality unset, lossless off, animations kept), no wait, no progress bar. Callers set
/// what they use and take the rest from here.
impl Default for UploadArgs {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            api: String::new(),
            token: String::new(),
            widths: Vec::new(),
            formats: Vec::new(),
            keep_original: false,
            jpeg_quality: None,
            lossless: shared::variant::Lossless::Off,
            animated: true,
            quality: None,
            wait_secs: 0,
            progress: false,
        }
    }
}

/// `--size` and `--focal-point`: the batch's `sizes` and the focal point given to every file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SizeArgs {
    /// Sizes, beside the widths.
    pub sizes: Vec<SizeSpec>,
    /// Every file's focal point.
    pub focal_point: Option<FocalPoint>,
}

/// Parse `--quality`: a number 1-100, `auto`, `auto:high`, `auto:good` or `auto:eco`.
///
/// # Errors
/// Anything else.
pub fn parse_quality(s: &str) -> Result<shared::variant::Quality, String> {
    use shared::variant::{AutoQuality, Quality};
    if let Some(level) = AutoQuality::parse(s) {
        return Ok(Quality::Auto(level));
    }
    match s.parse::<u8>() {
        Ok(q) if (1..=100).contains(&q) => Ok(Quality::Fixed(q)),
        _ => Err(format!(
            "{s:?} is not a quality: 1-100, auto, auto:high, auto:good or auto:eco"
        )),
    }
}

/// Parse `--size`: `WxH[:FIT[:FOCUS|BACKGROUND]]`, e.g. `256x256:cover:auto`,
/// `400x300:contain:#ffffff`, `800x600` (fit `inside`). The third part is the focus of `cover`
/// (`center`, `auto`, `focal_point`) or the pad colour of `contain`; the API checks the rest.
///
/// # Errors
/// A value of another shape, or an unknown fit, focus or colour.
pub fn parse_size(s: &str) -> Result<SizeSpec, String> {
    let bad = || format!("{s:?} is not WxH[:inside|cover|contain[:focus or #colour]]");
    let mut parts = s.split(':');
    let (w, h) = parts
        .next()
        .and_then(|d| d.split_once('x'))
        .ok_or_else(bad)?;
    let mut size = SizeSpec {
        width: w.parse().map_err(|_| bad())?,
        height: h.parse().map_err(|_| bad())?,
        fit: Fit::Inside,
        focus: Focus::Center,
        background: None,
    };
    if let Some(fit) = parts.next() {
        size.fit = Fit::parse(fit)
            .ok_or_else(|| format!("{fit:?} is not a fit (inside, cover, contain)"))?;
    }
    if let Some(third) = parts.next() {
        if third.starts_with('#') {
            size.background = Some(
                Background::parse(third)
                    .ok_or_else(|| format!("{third:?} is not #rrggbb or #rrggbbaa"))?,
            );
        } else {
            size.focus = Focus::parse(third)
                .ok_or_else(|| format!("{third:?} is not a focus (center, auto, focal_point)"))?;
        }
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(size)
}

/// Parse `--focal-point`: `X,Y`, each 0..=1 (relative to the upright image).
///
/// # Errors
/// Not two numbers within 0..=1.
pub fn parse_focal_point(s: &str) -> Result<FocalPoint, String> {
    FocalPoint::from_metadata(s).ok_or_else(|| format!("{s:?} is not X,Y with each within 0..=1"))
}

/// The `animated` field of the batch request for the `--no-animation` choice: sent only when
/// off (the API's default is on).
pub fn animated_field(animated: bool) -> Option<bool> {
    (!animated).then_some(false)
}

/// The declared content type, from the extension (a hint: the worker sniffs the bytes).
pub fn content_type(path: &std::path::Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("tif" | "tiff") => "image/tiff",
        Some("avif") => "image/avif",
        Some("heic" | "heif") => "image/heic",
        Some("svg") => "image/svg+xml",
        _ => "image/x-unknown",
    }
}

/// Upload one file's bytes as its presigned instruction (`up`, one entry of a created batch's
/// `uploads`) says, through [`shared::api::upload`].
///
/// # Errors
/// Instructions that are not the API's shape, or a refused or failed upload.
pub async fn upload_one(
    http: &reqwest::Client,
    up: &Value,
    bytes: Vec<u8>,
    ct: &str,
) -> anyhow::Result<()> {
    let up: UploadInstructions =
        serde_json::from_value(up.clone()).context("upload instructions of another shape")?;
    shared::api::upload(http, &up, bytes, ct).await?;
    Ok(())
}

/// The batch request's `variants` for `args`.
///
/// # Errors
/// A format that is not webp, avif, jpeg or png.
pub fn variant_spec(args: &UploadArgs) -> anyhow::Result<VariantSpec> {
    let formats = args
        .formats
        .iter()
        .map(|f| match f.as_str() {
            "webp" => Ok(OutputFormat::Webp),
            "avif" => Ok(OutputFormat::Avif),
            "jpeg" => Ok(OutputFormat::Jpeg),
            "png" => Ok(OutputFormat::Png),
            other => bail!("unknown format {other:?} (webp, avif, jpeg or png)"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut variants = VariantSpec::new(args.widths.clone(), formats);
    variants.keep_original = args.keep_original;
    variants.jpeg_quality = args.jpeg_quality;
    variants.lossless = args.lossless;
    variants.animated = animated_field(args.animated);
    variants.quality = args.quality;
    Ok(variants)
}

/// Run an upload with presigned POST forms; returns the final batch view as JSON (see
/// [`run_typed`]).
///
/// # Errors
/// An unreadable file, an API refusal or an unreachable API.
pub async fn run(args: &UploadArgs) -> anyhow::Result<Value> {
    run_as(args, UploadMethodSpec::Post).await
}

/// Run an upload, asking the API for `upload_method` instructions (POST forms or PUTs);
/// returns the final batch view as JSON.
///
/// # Errors
/// An unreadable file, an API refusal or an unreachable API.
pub async fn run_as(args: &UploadArgs, upload_method: UploadMethodSpec) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(run_typed(args, upload_method).await?)?)
}

/// Run an upload through the typed API client, asking for `upload_method` instructions;
/// returns the final batch view.
///
/// # Errors
/// An unreadable file, an API refusal or an unreachable API.
pub async fn run_typed(
    args: &UploadArgs,
    upload_method: UploadMethodSpec,
) -> anyhow::Result<BatchView> {
    run_sized(args, upload_method, &SizeArgs::default()).await
}

/// [`run_typed`] with `sizes` beside the widths and a focal point for every file.
///
/// # Errors
/// An unreadable file, an API refusal or an unreachable API.
pub async fn run_sized(
    args: &UploadArgs,
    upload_method: UploadMethodSpec,
    sizes: &SizeArgs,
) -> anyhow::Result<BatchView> {
    let client = Client::new(&args.api, &args.token)?;
    let mut files = Vec::new();
    for p in &args.paths {
        let meta = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        let name = p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        files.push(FileSpec {
            name,
            content_type: content_type(p).to_owned(),
            size: meta.len(),
            focal_point: sizes.focal_point,
        });
    }
    let mut variants = variant_spec(args)?;
    variants.sizes.clone_from(&sizes.sizes);
    let req = CreateBatchRequest {
        files,
        variants,
        callback_url: None,
        upload_method,
    };
    let created = client
        .create_batch(&req)
        .await
        .context("creating the batch")?;
    let batch_id = created.batch_id.clone();
    let total: u64 = args
        .paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bar = if args.progress {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} uploading [{bar:30}] {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> =
        futures::stream::iter(args.paths.iter().zip(created.uploads.iter()))
            .map(|(p, up)| {
                let (client, bar) = (client.clone(), bar.clone());
                async move {
                    let bytes = tokio::fs::read(p)
                        .await
                        .with_context(|| format!("cannot read {}", p.display()))?;
                    let n = bytes.len() as u64;
                    client
                        .upload(up, bytes, content_type(p))
                        .await
                        .with_context(|| format!("uploading {}", p.display()))?;
                    bar.inc(n);
                    Ok(())
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
    bar.finish_with_message(format!("in {:.1}s", started.elapsed().as_secs_f64()));
    for r in results {
        r?;
    }
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
            .min(60);
        let batch = client
            .get_batch(&batch_id, Some(left))
            .await
            .context("reading the batch")?;
        if batch.is_complete() || left == 0 {
            return Ok(batch);
        }
    }
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / 1_048_576.0)
    } else {
        format!("{:.1} KB", bytes as f64 / 1024.0)
    }
}

/// A table of the batch's files and variants.
pub fn table(batch: &Value) -> String {
    let mut out = format!(
        "batch {}  status {}  counts {}\n",
        batch["batch_id"].as_str().unwrap_or("?"),
        batch["status"].as_str().unwrap_or("?"),
        batch["counts"]
    );
    if let Some(w) = batch["webhook"].as_object() {
        let field = |k: &str| w.get(k).filter(|v| !v.is_null());
        out.push_str(&format!(
            "webhook {}  attempts {}",
            w.get("status").and_then(Value::as_str).unwrap_or("?"),
            w.get("attempts").unwrap_or(&Value::Null)
        ));
        if let Some(s) = field("last_status") {
            out.push_str(&format!("  last status {s}"));
        }
        if let Some(e) = field("last_error").and_then(Value::as_str) {
            out.push_str(&format!("  last error {e}"));
        }
        if let Some(n) = field("next_attempt_at").and_then(Value::as_str) {
            out.push_str(&format!("  next attempt {n}"));
        }
        out.push('\n');
    }
    for f in batch["files"].as_array().into_iter().flatten() {
        let name = f["name"].as_str().unwrap_or("?");
        let status = f["status"].as_str().unwrap_or("?");
        out.push_str(&format!("\n{name}  [{status}]"));
        if let Some(src) = f["source"].as_object() {
            out.push_str(&format!(
                "  {} {}x{}",
                src.get("format").and_then(Value::as_str).unwrap_or("?"),
                src.get("width").unwrap_or(&Value::Null),
                src.get("height").unwrap_or(&Value::Null)
            ));
        }
        out.push('\n');
        if !f["error"].is_null() {
            out.push_str(&format!(
                "    error {}: {}\n",
                f["error"]["code"].as_str().unwrap_or("?"),
                f["error"]["message"].as_str().unwrap_or("")
            ));
        }
        for v in f["variants"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "    {:>5}x{:<5} {:<4} {:>9}  {}\n",
                v["width"],
                v["height"],
                v["format"].as_str().unwrap_or("?"),
                human(v["bytes"].as_u64().unwrap_or(0)),
                v["url"].as_str().unwrap_or("")
            ));
        }
    }
    out
}

/// Files that failed or are not finished.
pub fn unsuccessful(batch: &Value) -> usize {
    batch["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["status"] != "done")
        .count()
}
