//! `prism`: the local stack, uploads, batch queries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// prism: image ingest.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A render process of the resize worker's pool (`prism dev` starts these itself).
    #[command(name = "render-child", hide = true)]
    RenderChild(prism_resize::isolate::ChildArgs),
    /// Run the whole stack in one process on the embedded backend (files + SQLite), or with
    /// `--aws-endpoint` on AWS APIs (moto, LocalStack) after provisioning them.
    Dev {
        /// Where the data lives (with --aws-endpoint: only the dev token and callback secret).
        #[arg(long, default_value = "prism-data")]
        data_dir: PathBuf,
        /// Where the API listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A TOML config file, applied to every component.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Provision and run against this AWS endpoint (e.g. http://127.0.0.1:5000 for moto).
        #[arg(long, value_name = "URL")]
        aws_endpoint: Option<url::Url>,
        /// AWS region with --aws-endpoint.
        #[arg(long, value_name = "REGION", requires = "aws_endpoint")]
        region: Option<String>,
        /// With --aws-endpoint: provision nothing, run against the deployment these
        /// CloudFormation stack outputs name (`Prism-dev`, or either stack's full name).
        #[arg(long, value_name = "NAME", requires = "aws_endpoint")]
        stack: Option<String>,
        /// Let pages on this origin (e.g. http://localhost:5173) call the API and upload
        /// through it (CORS); repeatable. Embedded backend only.
        #[arg(
            long = "cors-origin",
            value_name = "ORIGIN",
            conflicts_with = "aws_endpoint"
        )]
        cors_origins: Vec<String>,
        /// Serve the media bucket publicly and read-only at API/media/{key} (as a CDN would),
        /// and hand out those stable URLs instead of presigned GETs.
        #[arg(long, conflicts_with = "aws_endpoint")]
        public_media: bool,
    },
    /// Upload images as one batch, wait, and print the variants.
    Upload {
        /// Image files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// API base URL.
        #[arg(long, env = "PRISM_API", default_value = "http://127.0.0.1:8080")]
        api: String,
        /// Bearer token (default: the dev token in --data-dir).
        #[arg(long, env = "PRISM_TOKEN")]
        token: Option<String>,
        /// Data dir whose dev-token to use when no token is given.
        #[arg(long, default_value = "prism-data")]
        data_dir: PathBuf,
        /// Variant widths.
        #[arg(long, value_delimiter = ',', default_value = "320,640,1280,2048")]
        widths: Vec<u32>,
        /// Variant formats: webp, avif, jpeg, png.
        #[arg(long, value_delimiter = ',', default_value = "webp,avif")]
        formats: Vec<String>,
        /// Keep the original in the media bucket.
        #[arg(long)]
        keep_original: bool,
        /// A variant of a given size, beside the widths (repeatable):
        /// `WxH[:inside|cover|contain[:FOCUS|#COLOUR]]`, e.g. `256x256:cover:auto`,
        /// `400x300:contain:#ffffff`. FOCUS (cover): center, auto or focal_point.
        #[arg(long = "size", value_name = "SIZE", value_parser = prism::upload::parse_size)]
        sizes: Vec<shared::variant::SizeSpec>,
        /// Every file's focal point, `X,Y` (each 0..1 of the upright image), for sizes with
        /// focus focal_point.
        #[arg(long, value_name = "X,Y", value_parser = prism::upload::parse_focal_point)]
        focal_point: Option<shared::variant::FocalPoint>,
        /// JPEG quality (1-100; default: the API's, 80).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
        jpeg_quality: Option<u8>,
        /// Lossless WebP: false, true or auto (lossless where it is no larger than lossy).
        #[arg(long, value_name = "false|true|auto", default_value = "false", value_parser = parse_lossless)]
        lossless: shared::variant::Lossless,
        /// Render animated GIF, APNG and WebP uploads as their first frame only (by default
        /// they become animated WebP variants).
        #[arg(long)]
        no_animation: bool,
        /// Quality of every lossy format: 1-100, or auto, auto:high, auto:good (= auto),
        /// auto:eco (the WebP and AVIF quality searched per file for a SSIMULACRA 2 score).
        #[arg(long, value_name = "Q|auto[:high|good|eco]", value_parser = prism::upload::parse_quality)]
        quality: Option<shared::variant::Quality>,
        /// Longest wait for completion, in seconds (0: do not wait).
        #[arg(long, default_value_t = 300)]
        wait: u64,
        /// Print the batch as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// How to upload: a presigned form POST or a presigned PUT of the raw file.
        #[arg(long, value_name = "METHOD", default_value = "post", value_parser = parse_upload_method)]
        upload_method: shared::api::UploadMethodSpec,
    },
    /// Re-publish archived events received in a time range (backfill without re-upload), on
    /// the embedded backend or on AWS.
    Replay {
        /// Start of the range (RFC 3339), inclusive.
        #[arg(long)]
        from: String,
        /// End of the range (RFC 3339), exclusive.
        #[arg(long)]
        to: String,
        /// Archive bucket (default: resources.archive_bucket).
        #[arg(long)]
        bucket: Option<String>,
        /// Count what would be published without publishing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Render existing files again with a new variant spec (new variant keys), through the
    /// resize worker: by batch, by batch creation time, or by file. Idempotent and resumable
    /// (a checkpoint file); announces each batch's re-render when all its files have ended.
    Rerender {
        /// Every file of this batch (repeatable).
        #[arg(long = "batch", value_name = "BATCH_ID")]
        batches: Vec<String>,
        /// This file (repeatable).
        #[arg(long = "file", value_name = "BATCH_ID/FILE_ID")]
        files: Vec<String>,
        /// Files of the batches created at or after this time (RFC 3339; with --to).
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// Files of the batches created before this time (RFC 3339; with --from).
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// How many of the newest batches a time range looks through.
        #[arg(long, default_value_t = 10_000)]
        max_batches: usize,
        /// The new variant widths.
        #[arg(long, value_delimiter = ',', required = true)]
        widths: Vec<u32>,
        /// The new variant formats.
        #[arg(long, value_delimiter = ',', default_value = "webp,avif")]
        formats: Vec<String>,
        /// WebP quality (1-100).
        #[arg(long, default_value_t = shared::variant::DEFAULT_WEBP_QUALITY)]
        webp_quality: u8,
        /// AVIF quality (1-100).
        #[arg(long, default_value_t = shared::variant::DEFAULT_AVIF_QUALITY)]
        avif_quality: u8,
        /// JPEG quality (1-100).
        #[arg(long, default_value_t = shared::variant::DEFAULT_JPEG_QUALITY)]
        jpeg_quality: u8,
        /// Lossless WebP: false, true or auto.
        #[arg(long, value_name = "false|true|auto", default_value = "false", value_parser = parse_lossless)]
        lossless: shared::variant::Lossless,
        /// The checkpoint file (default: prism-rerender-{spec hash}.json here).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Files in flight at once.
        #[arg(long, default_value_t = 16)]
        in_flight: usize,
        /// Longest wait for one file, in seconds; a file past it is left for the next run.
        #[arg(long, default_value_t = 600)]
        file_timeout: u64,
        /// Select and count, send nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Dead letters of a worker queue: list, show one, or redrive them all.
    Dlq {
        /// `list`, `show ID`, or `redrive`.
        #[command(subcommand)]
        action: DlqAction,
        /// Data dir of the local backend.
        #[arg(long, default_value = "prism-data", global = true)]
        data_dir: PathBuf,
        /// Use SQS (default credential chain) instead of the local backend.
        #[arg(long, global = true)]
        aws: bool,
        /// SQS at a custom endpoint (moto, LocalStack); implies --aws.
        #[arg(long, value_name = "URL", global = true)]
        aws_endpoint: Option<url::Url>,
        /// AWS region.
        #[arg(long, global = true)]
        region: Option<String>,
        /// The deployment whose CloudFormation outputs name the queues (`Prism`, `Prism-dev`,
        /// or either stack's full name); implies --aws.
        #[arg(long, value_name = "NAME", env = "PRISM_STACK", global = true)]
        stack: Option<String>,
        /// Print JSON.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Completion callbacks (webhooks): `secret --principal NAME` prints that principal's
    /// signing secret. Deliveries and their attempts show in `prism batch`.
    Webhooks {
        #[command(subcommand)]
        action: WebhooksAction,
    },
    /// Print a batch.
    Batch {
        /// Batch id.
        batch_id: String,
        /// API base URL.
        #[arg(long, env = "PRISM_API", default_value = "http://127.0.0.1:8080")]
        api: String,
        /// Bearer token (default: the dev token in --data-dir).
        #[arg(long, env = "PRISM_TOKEN")]
        token: Option<String>,
        /// Data dir whose dev-token to use when no token is given.
        #[arg(long, default_value = "prism-data")]
        data_dir: PathBuf,
        /// Take the API URL from this deployment's compute stack (its `ApiUrl` output) instead
        /// of --api; the token must then be given (--token or PRISM_TOKEN).
        #[arg(long, value_name = "NAME", conflicts_with = "api")]
        stack: Option<String>,
        /// AWS at a custom endpoint (moto, LocalStack), for --stack.
        #[arg(long, value_name = "URL", requires = "stack")]
        aws_endpoint: Option<url::Url>,
        /// AWS region, for --stack.
        #[arg(long, requires = "stack")]
        region: Option<String>,
    },
}

/// Which deployment an operator command works on.
#[derive(clap::Args)]
struct TargetArgs {
    /// Data dir of the local backend.
    #[arg(long, default_value = "prism-data")]
    data_dir: PathBuf,
    /// Use AWS (default credential chain) instead of the local backend.
    #[arg(long)]
    aws: bool,
    /// AWS at a custom endpoint (moto, LocalStack); implies --aws.
    #[arg(long, value_name = "URL")]
    aws_endpoint: Option<url::Url>,
    /// AWS region.
    #[arg(long)]
    region: Option<String>,
    /// The deployment whose CloudFormation outputs name every resource (`Prism`, `Prism-dev`,
    /// or either stack's full name); implies --aws and replaces the resource flags below.
    #[arg(long, value_name = "NAME", env = "PRISM_STACK")]
    stack: Option<String>,
    /// Uploads bucket on AWS.
    #[arg(
        long,
        env = "PRISM__RESOURCES__UPLOADS_BUCKET",
        default_value = "uploads"
    )]
    uploads_bucket: String,
    /// Media bucket on AWS.
    #[arg(long, env = "PRISM__RESOURCES__MEDIA_BUCKET", default_value = "media")]
    media_bucket: String,
    /// Archive bucket on AWS.
    #[arg(
        long,
        env = "PRISM__RESOURCES__ARCHIVE_BUCKET",
        default_value = "archive"
    )]
    archive_bucket: String,
    /// Events topic ARN on AWS (default: the topic named `events`).
    #[arg(long, env = "PRISM__RESOURCES__TOPIC_ARN")]
    topic_arn: Option<String>,
    /// Metadata table on AWS.
    #[arg(long, env = "PRISM__RESOURCES__TABLE_NAME", default_value = "metadata")]
    table: String,
    /// The resize queue's URL on AWS (default: the queue named `resize`, and `resize-dlq`).
    #[arg(long, value_name = "URL")]
    resize_queue_url: Option<String>,
}

impl TargetArgs {
    /// Open the ports; `resize`: the resize queue is needed.
    async fn open(&self, resize: bool) -> anyhow::Result<prism::ops::Ops> {
        if !self.on_aws() {
            return prism::ops::Ops::local(&self.data_dir).await;
        }
        let clients = aws_clients(self.aws_endpoint.clone(), self.region.clone()).await;
        if let Some(name) = &self.stack {
            let d = prism::stack::discover(&clients, name).await?;
            let q = d.queue(shared::topology::RESIZE_QUEUE)?;
            let target = prism::ops::AwsTarget {
                resources: d.resources.clone(),
                resize_queue: resize.then(|| (q.url.clone(), q.dlq_url.clone())),
            };
            return Ok(prism::ops::Ops::aws(&clients, &target));
        }
        let topic_arn = match &self.topic_arn {
            Some(a) => a.clone(),
            None => find_topic(&clients, "events").await?,
        };
        let resize_queue = if resize {
            let url = match &self.resize_queue_url {
                Some(u) => u.clone(),
                None => prism::ops::queue_url(&clients, shared::topology::RESIZE_QUEUE).await?,
            };
            let dlq = prism::ops::queue_url(&clients, "resize-dlq")
                .await
                .unwrap_or_else(|_| url.clone());
            Some((url, dlq))
        } else {
            None
        };
        let target = prism::ops::AwsTarget {
            resources: shared::config::Resources {
                uploads_bucket: self.uploads_bucket.clone(),
                media_bucket: self.media_bucket.clone(),
                archive_bucket: self.archive_bucket.clone(),
                topic_arn,
                table_name: self.table.clone(),
                queue_url: None,
                dlq_url: None,
            },
            resize_queue,
        };
        Ok(prism::ops::Ops::aws(&clients, &target))
    }
}

impl TargetArgs {
    fn on_aws(&self) -> bool {
        self.aws || self.aws_endpoint.is_some() || self.stack.is_some()
    }
}

async fn aws_clients(
    endpoint_url: Option<url::Url>,
    region: Option<String>,
) -> shared::adapter::aws::Clients {
    shared::adapter::aws::Clients::new(&shared::config::AwsConfig {
        region,
        endpoint_url,
    })
    .await
}

/// The ARN of the topic named `name` (looking through at most 100 pages of topics).
async fn find_topic(clients: &shared::adapter::aws::Clients, name: &str) -> anyhow::Result<String> {
    let mut token = None;
    for _ in 0..100 {
        let page = clients
            .sns
            .list_topics()
            .set_next_token(token)
            .send()
            .await?;
        if let Some(arn) = page
            .topics()
            .iter()
            .filter_map(|t| t.topic_arn())
            .find(|a| a.rsplit(':').next() == Some(name))
        {
            return Ok(arn.to_owned());
        }
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    anyhow::bail!("no SNS topic named {name}: pass --topic-arn")
}

#[derive(Subcommand)]
enum WebhooksAction {
    /// Print the `whsec_…` secret a principal's completion callbacks are signed with, as its
    /// receiver configures it (derived from the master secret unless prism-metadata's
    /// `[callback] principal_secrets` names one; pass the same config).
    Secret {
        /// The principal (the name before `:` in `[auth] token_sha256s`; `dev` for prism dev).
        #[arg(long)]
        principal: String,
        /// prism-metadata's config file (for `principal_secrets`), if any.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data dir whose generated key to use when no master secret is set (prism dev).
        #[arg(long, default_value = "prism-data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// List dead letters with their reason and receive count.
    List {
        /// Queue: resize, metadata or archive.
        queue: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Show one dead letter with its body.
    Show {
        /// Queue: resize, metadata or archive.
        queue: String,
        /// The dead letter's id (from `list`).
        id: String,
    },
    /// Move every dead letter back to the queue.
    Redrive {
        /// Queue: resize, metadata or archive.
        queue: String,
    },
}

fn token(given: Option<String>, data_dir: &std::path::Path) -> anyhow::Result<String> {
    if let Some(t) = given {
        return Ok(t);
    }
    std::fs::read_to_string(data_dir.join(prism_api::DEV_TOKEN_FILE))
        .map(|t| t.trim().to_owned())
        .map_err(|_| anyhow::anyhow!("no token: pass --token, set PRISM_TOKEN, or run `prism dev` so {}/dev-token exists", data_dir.display()))
}

/// `--upload-method`: `post` or `put`.
fn parse_upload_method(s: &str) -> Result<shared::api::UploadMethodSpec, String> {
    match s {
        "post" => Ok(shared::api::UploadMethodSpec::Post),
        "put" => Ok(shared::api::UploadMethodSpec::Put),
        other => Err(format!("{other:?} is not an upload method (post or put)")),
    }
}

fn parse_lossless(s: &str) -> Result<shared::variant::Lossless, String> {
    shared::variant::Lossless::parse(s)
        .ok_or_else(|| format!("{s:?} is not a lossless setting (false, true or auto)"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `prism dev` runs the resize worker in this process and its renders in children of this
    // same executable (`prism render-child`, see prism_resize::isolate): no runtime for those.
    if let Command::RenderChild(args) = &cli.command {
        return prism_resize::isolate::child_main(args);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("prism: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> ExitCode {
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("prism: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::RenderChild(args) => Ok(prism_resize::isolate::child_main(&args)),
        Command::Dev {
            data_dir,
            listen,
            config,
            aws_endpoint,
            region,
            stack,
            cors_origins,
            public_media,
        } => {
            let log = shared::config::LogConfig::default();
            // Span export follows the OTEL_EXPORTER_OTLP_*ENDPOINT variables; the guard
            // flushes what is buffered when `prism dev` stops.
            let _trace = shared::telemetry::tracing::init_with(
                &log,
                &shared::config::TraceConfig::default(),
                "prism-dev",
            );
            let shutdown = shared::shutdown::on_signal();
            if let Some(endpoint) = aws_endpoint {
                let dev = prism::dev_aws::start_aws_on(
                    &endpoint,
                    region.as_deref(),
                    &data_dir,
                    listen,
                    config.as_deref(),
                    shutdown,
                    stack.as_deref(),
                )
                .await?;
                println!("prism dev is running in AWS mode against {endpoint}");
                println!("  API        {}", dev.url);
                println!("  token      {}", dev.token);
                println!("  topic      {}", dev.provisioned.resources.topic_arn);
                println!(
                    "  try        prism upload --api {} --token {} photo.jpg",
                    dev.url, dev.token
                );
                dev.wait().await;
                return Ok(ExitCode::SUCCESS);
            }
            let options = prism::dev::DevOptions {
                public_media,
                cors_origins: cors_origins.clone(),
            };
            let dev =
                prism::dev::start_with(&data_dir, listen, config.as_deref(), options, shutdown)
                    .await?;
            println!(
                "prism dev is running on the embedded backend in {}",
                dev.data_dir.display()
            );
            println!("  API        {}", dev.url);
            println!(
                "  token      {}   (also in {}/dev-token)",
                dev.token,
                dev.data_dir.display()
            );
            println!(
                "  try        prism upload --api {} --data-dir {} photo.jpg",
                dev.url,
                dev.data_dir.display()
            );
            println!("  metrics    {}/metrics", dev.url);
            println!("  dashboard  {}/", dev.url);
            println!("  uploader   {}/upload#token={}", dev.url, dev.token);
            if !cors_origins.is_empty() {
                println!("  CORS       {}", cors_origins.join(", "));
            }
            if public_media {
                println!(
                    "  media      {}/media/media/…   (public, read-only)",
                    dev.url
                );
            }
            dev.wait().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Upload {
            paths,
            api,
            token: t,
            data_dir,
            widths,
            formats,
            keep_original,
            sizes,
            focal_point,
            jpeg_quality,
            lossless,
            no_animation,
            quality,
            wait,
            json,
            upload_method,
        } => {
            let args = prism::upload::UploadArgs {
                paths,
                api,
                token: token(t, &data_dir)?,
                widths,
                formats,
                keep_original,
                jpeg_quality,
                lossless,
                animated: !no_animation,
                quality,
                wait_secs: wait,
                progress: !json,
            };
            let sized = prism::upload::SizeArgs { sizes, focal_point };
            let batch = serde_json::to_value(
                prism::upload::run_sized(&args, upload_method, &sized).await?,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&batch)?);
            } else {
                print!("{}", prism::upload::table(&batch));
            }
            let bad = prism::upload::unsuccessful(&batch);
            if bad > 0 {
                eprintln!("{bad} file(s) failed or did not finish");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            from,
            to,
            bucket,
            dry_run,
            mut target,
        } => {
            use time::format_description::well_known::Rfc3339;
            let from = time::OffsetDateTime::parse(&from, &Rfc3339)
                .map_err(|e| anyhow::anyhow!("--from: {e}"))?;
            let to = time::OffsetDateTime::parse(&to, &Rfc3339)
                .map_err(|e| anyhow::anyhow!("--to: {e}"))?;
            if let Some(b) = &bucket {
                anyhow::ensure!(
                    target.on_aws(),
                    "--bucket names an archive bucket on AWS (--aws, --aws-endpoint or --stack)"
                );
                target.archive_bucket = b.clone();
            }
            let mut ops = target.open(false).await?;
            if let (Some(b), Some(_)) = (bucket, &target.stack) {
                // An archive bucket named beside --stack (another deployment's, say) wins.
                let clients = aws_clients(target.aws_endpoint.clone(), target.region.clone()).await;
                ops.archive =
                    std::sync::Arc::new(shared::adapter::aws::S3BlobStore::new(&clients, &b));
            }
            let counts = prism_archiver::replay::replay(
                &*ops.archive,
                &*ops.topic,
                from,
                to,
                dry_run,
                |c| {
                    eprintln!(
                        "objects {} lines {} distinct {} published {}",
                        c.objects, c.lines, c.distinct, c.published
                    );
                },
            )
            .await?;
            println!("{}", serde_json::to_string(&counts)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Rerender {
            batches,
            files,
            from,
            to,
            max_batches,
            widths,
            formats,
            webp_quality,
            avif_quality,
            jpeg_quality,
            lossless,
            state,
            in_flight,
            file_timeout,
            dry_run,
            target,
        } => {
            use time::format_description::well_known::Rfc3339;
            let created = match (from, to) {
                (Some(f), Some(t)) => Some((
                    time::OffsetDateTime::parse(&f, &Rfc3339)
                        .map_err(|e| anyhow::anyhow!("--from: {e}"))?,
                    time::OffsetDateTime::parse(&t, &Rfc3339)
                        .map_err(|e| anyhow::anyhow!("--to: {e}"))?,
                )),
                _ => None,
            };
            let files = files
                .iter()
                .map(|f| {
                    f.split_once('/')
                        .map(|(b, f)| (b.to_owned(), f.to_owned()))
                        .ok_or_else(|| anyhow::anyhow!("--file {f:?}: expected BATCH_ID/FILE_ID"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            anyhow::ensure!(
                !batches.is_empty() || !files.is_empty() || created.is_some(),
                "select files with --batch, --file or --from/--to"
            );
            let formats = formats
                .iter()
                .map(|f| match f.as_str() {
                    "webp" => Ok(shared::variant::OutputFormat::Webp),
                    "avif" => Ok(shared::variant::OutputFormat::Avif),
                    "jpeg" => Ok(shared::variant::OutputFormat::Jpeg),
                    "png" => Ok(shared::variant::OutputFormat::Png),
                    other => Err(anyhow::anyhow!(
                        "{other:?} is not a format (webp, avif, jpeg, png)"
                    )),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let request = shared::variant::VariantRequest {
                widths,
                formats,
                webp_quality,
                avif_quality,
                jpeg_quality,
                lossless,
                ..shared::variant::VariantRequest::default()
            }
            .normalise()?;
            let state = match state {
                Some(s) => s,
                None => prism::rerender::default_state(&request)?,
            };
            let ops = target.open(true).await?;
            let opts = prism::rerender::Options {
                request,
                state: state.clone(),
                in_flight,
                file_timeout: std::time::Duration::from_secs(file_timeout),
                poll: std::time::Duration::from_millis(500),
                dry_run,
            };
            let sel = prism::rerender::Selection {
                batches,
                files,
                created,
                max_batches,
            };
            eprintln!("checkpoint {}", state.display());
            let counts = prism::rerender::run(&ops, &sel, &opts, |c| {
                eprintln!(
                    "files {}  rendered {}  already {}  failed {}  sent {}",
                    c.selected, c.rendered, c.already, c.failed, c.sent
                );
            })
            .await?;
            println!("{}", serde_json::to_string(&counts)?);
            Ok(if counts.failed > 0 || counts.pending > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Dlq {
            action,
            data_dir,
            aws,
            aws_endpoint,
            region,
            stack,
            json,
        } => {
            let backend = if aws || aws_endpoint.is_some() || stack.is_some() {
                prism::dlq::Backend::Aws {
                    endpoint: aws_endpoint,
                    region,
                    stack,
                }
            } else {
                prism::dlq::Backend::Local(&data_dir)
            };
            match action {
                DlqAction::List { queue, max } => {
                    let q = prism::dlq::open(backend, &queue).await?;
                    let letters = q.dead_letters(max).await?;
                    if json {
                        let v: Vec<_> = letters.iter().map(prism::dlq::to_json).collect();
                        println!("{}", serde_json::to_string_pretty(&v)?);
                    } else {
                        print!("{}", prism::dlq::table(&letters));
                    }
                }
                DlqAction::Show { queue, id } => {
                    let q = prism::dlq::open(backend, &queue).await?;
                    let Some(d) = prism::dlq::find(&*q, &id).await? else {
                        eprintln!("no dead letter {id} in {queue}");
                        return Ok(ExitCode::FAILURE);
                    };
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&prism::dlq::to_json(&d))?
                    );
                }
                DlqAction::Redrive { queue } => {
                    let q = prism::dlq::open(backend, &queue).await?;
                    let n = q.redrive().await?;
                    println!("redriving {n} message(s) from {queue}-dlq back to {queue}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Webhooks {
            action:
                WebhooksAction::Secret {
                    principal,
                    config,
                    data_dir,
                },
        } => {
            // The same sources prism-metadata reads: the file, then PRISM__* variables
            // (PRISM__CALLBACK__SIGNING_SECRET on AWS).
            let cfg: prism_metadata::Config = shared::config::load(config.as_deref(), &[])?;
            println!(
                "{}",
                prism_metadata::principal_whsec(&cfg, &data_dir, &principal)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Batch {
            batch_id,
            api,
            token: t,
            data_dir,
            stack,
            aws_endpoint,
            region,
        } => {
            let api = match &stack {
                Some(name) => {
                    anyhow::ensure!(
                        t.is_some(),
                        "--stack needs the API token: --token or PRISM_TOKEN"
                    );
                    let clients = aws_clients(aws_endpoint, region).await;
                    let d = prism::stack::discover(&clients, name).await?;
                    d.api_url.with_context(|| {
                        format!(
                            "{} has no compute stack with an ApiUrl output",
                            d.stateful_stack
                        )
                    })?
                }
                None => api,
            };
            let t = token(t, &data_dir)?;
            let view = shared::api::Client::new(&api, &t)?
                .get_batch(&batch_id, None)
                .await?;
            let body = serde_json::to_value(view)?;
            print!("{}", prism::upload::table(&body));
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod animation_flag_tests {
    use super::*;

    fn no_animation(args: &[&str]) -> bool {
        let cli = Cli::try_parse_from(args).expect("the command line parses");
        match cli.command {
            Command::Upload { no_animation, .. } => no_animation,
            _ => panic!("not an upload"),
        }
    }

    #[test]
    fn upload_no_animation_turns_animated_off_in_the_request() {
        assert!(!no_animation(&["prism", "upload", "a.gif"]));
        assert!(no_animation(&[
            "prism",
            "upload",
            "--no-animation",
            "a.gif"
        ]));
        let body = |animated: bool| {
            let mut v = shared::api::VariantSpec::new(vec![320], vec![]);
            v.animated = prism::upload::animated_field(animated);
            serde_json::to_value(&v).expect("serialises")
        };
        assert_eq!(body(false)["animated"], serde_json::json!(false));
        assert!(
            body(true).get("animated").is_none(),
            "the default is left out"
        );
        assert!(
            Cli::try_parse_from(["prism", "upload", "--no-animation=yes", "a.gif"]).is_err(),
            "a flag takes no value"
        );
    }
}
