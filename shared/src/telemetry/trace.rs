//! One trace per batch, across processes: a W3C `traceparent` is made when the API creates the
//! batch (continuing the caller's trace when the request carries one), travels with every upload
//! (the object's `prism-traceparent` metadata, the batch record, the manifest), and every worker
//! that handles a file continues it. The spans of one file therefore share the batch's trace id:
//!
//! ```text
//! create_batch (api)
//! ├── presign                 one per file
//! ├── upload                  presign → object created (recorded by the metadata writer)
//! ├── queue wait              enqueued → received, per worker
//! ├── resize                  (resize worker) ── render, write variants
//! ├── queue wait
//! └── metadata                (metadata writer), once for the upload, once for the manifest
//! ```
//!
//! Export is over OTLP/HTTP (protobuf) and **off by default**: it is on when `[trace]
//! otlp_endpoint` is set or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables are (`OTEL_SDK_DISABLED=true` turns it off).
//! When off, the context still travels and each handler span records `trace_id`, so logs of one
//! batch can be found across binaries.
//!
//! Only spans with target [`TARGET`] are exported: the ones above, made on purpose, not every
//! span of every library.

use std::fmt;
use std::sync::OnceLock;
use std::time::SystemTime;

use opentelemetry::Context;
pub use opentelemetry::KeyValue;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of exported spans.
pub const TARGET: &str = "prism::trace";

/// Instrumentation scope name of prism's spans.
pub const SCOPE: &str = "prism";

static EXPORTING: OnceLock<bool> = OnceLock::new();

/// Whether spans are exported (set once by [`crate::telemetry::tracing::init_with`]).
pub fn exporting() -> bool {
    EXPORTING.get().copied().unwrap_or(false)
}

pub(crate) fn set_exporting(on: bool) {
    let _ = EXPORTING.set(on);
}

/// A parsed W3C `traceparent` (version 00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// The parent span, 8 bytes, never all zero.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parse a `traceparent` header value; `None` for anything malformed, an all-zero id, or
    /// version `ff`. Future versions are read by their first four fields, as the spec asks.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let mut parts = s.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version.eq_ignore_ascii_case("ff") {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let lower = |p: &str| {
            p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if ![version, trace, span, flags].into_iter().all(lower) {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        let mut flag = [0u8; 1];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(span, &mut span_id).ok()?;
        hex::decode_to_slice(flags, &mut flag).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags: flag[0],
        })
    }

    /// A fresh, sampled trace with a fresh parent span id.
    pub fn random() -> Self {
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        while trace_id == [0; 16] {
            trace_id = rand::random();
        }
        while span_id == [0; 8] {
            span_id = rand::random();
        }
        Self {
            trace_id,
            span_id,
            flags: 1,
        }
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// As a remote OpenTelemetry parent context.
    pub fn context(&self) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        ))
    }

    /// The context of an OpenTelemetry span, if it is a valid one.
    fn from_span_context(sc: &SpanContext) -> Option<Self> {
        sc.is_valid().then(|| Self {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            flags: sc.trace_flags().to_u8(),
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            self.flags
        )
    }
}

/// Make `span` (not yet entered, no children yet) a child of `parent` in the exported trace, and
/// record its `trace_id` field for the logs. Declare the span with `trace_id = Empty`.
pub fn adopt(span: &tracing::Span, parent: &TraceParent) {
    span.record("trace_id", parent.trace_id_hex());
    if exporting()
        && let Err(e) = span.set_parent(parent.context())
    {
        tracing::debug!(error = %e, "Cannot set the span's trace parent.");
    }
}

/// The `traceparent` to hand downstream from inside `span`: the span itself as the parent when
/// spans are exported, else `fallback` (the incoming one, or a fresh trace) so the trace id still
/// travels.
pub fn downstream(span: &tracing::Span, fallback: TraceParent) -> TraceParent {
    if exporting() {
        let cx = span.context();
        if let Some(tp) = TraceParent::from_span_context(&cx.span().span_context().clone()) {
            return tp;
        }
    }
    fallback
}

/// Export a span whose times are known after the fact (an upload, a wait in a queue), as a child
/// of `parent`. A no-op when export is off, or when `end` is not after `start`.
pub fn record_span(
    name: &'static str,
    parent: &TraceParent,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
) {
    if !exporting() || end <= start {
        return;
    }
    let tracer = opentelemetry::global::tracer(SCOPE);
    let span = tracer
        .span_builder(name)
        .with_start_time(start)
        .with_attributes(attributes)
        .start_with_context(&tracer, &parent.context());
    let mut span = span;
    opentelemetry::trace::Span::end_with_timestamp(&mut span, end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_the_spec_example() {
        let s = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let tp = TraceParent::parse(s).unwrap();
        assert_eq!(tp.to_string(), s);
        assert_eq!(tp.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(tp.flags, 1);
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319-gb7ad6b7169203331-01",
            "0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad:?} accepted");
        }
        // A later version may add fields; its first four are read.
        assert!(
            TraceParent::parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what")
                .is_some()
        );
    }

    #[test]
    fn random_ones_round_trip_and_differ() {
        let a = TraceParent::random();
        let b = TraceParent::random();
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(TraceParent::parse(&a.to_string()), Some(a));
    }
}
