//! `tracing` subscriber setup: JSON lines on AWS, pretty output locally, and the OTLP span
//! exporter when one is configured (see [`super::trace`]).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use super::trace;
use crate::config::{LogConfig, LogFormat, TraceConfig};

/// Flushes and stops the span exporter when dropped (keep it alive for the life of the process).
#[derive(Default)]
#[must_use = "spans are flushed when the guard drops"]
pub struct TraceGuard(Option<SdkTracerProvider>);

impl TraceGuard {
    /// Flush what is buffered and stop exporting.
    pub fn shutdown(&mut self) {
        if let Some(p) = self.0.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("prism: flushing spans failed: {e}");
        }
    }
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Install the global subscriber, logs only. A second call (several components in one
/// process) is a no-op.
pub fn init(cfg: &LogConfig) {
    let _ = try_install(cfg, None);
}

/// Install the global subscriber with span export when `trace` (or the `OTEL_EXPORTER_OTLP_*`
/// environment) names an endpoint. `service` is the OpenTelemetry `service.name`.
pub fn init_with(cfg: &LogConfig, trace: &TraceConfig, service: &str) -> TraceGuard {
    let provider = trace.traces_url().and_then(|url| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .build()
            .map_err(|e| eprintln!("prism: cannot export spans to {url}: {e}"))
            .ok()?;
        Some((
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    Resource::builder()
                        .with_service_name(service.to_owned())
                        .build(),
                )
                .build(),
            url,
        ))
    });
    let installed = try_install(cfg, provider.as_ref().map(|(p, _)| p));
    match provider {
        Some((p, url)) if installed => {
            opentelemetry::global::set_tracer_provider(p.clone());
            trace::set_exporting(true);
            tracing::info!(endpoint = %url, service, "Exporting spans over OTLP.");
            TraceGuard(Some(p))
        }
        _ => {
            trace::set_exporting(false);
            TraceGuard(None)
        }
    }
}

fn try_install(cfg: &LogConfig, provider: Option<&SdkTracerProvider>) -> bool {
    let filter = EnvFilter::try_new(&cfg.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match cfg.format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => fmt.compact().with_filter(filter).boxed(),
    };
    let spans = provider.map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(trace::SCOPE))
            .with_filter(Targets::new().with_target(trace::TARGET, tracing::Level::INFO))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .is_ok()
}
