//! The variant request: which widths and formats a batch wants.
//!
//! It is fixed at batch creation and travels with every upload as signed object metadata (under
//! [`META_REQUEST`]), so the resize worker needs nothing but the object. The wire form is compact
//! JSON because S3 user metadata is limited to 2 KiB in total.

use serde::{Deserialize, Serialize};

/// User-metadata key (without the `x-amz-meta-` prefix) holding the JSON variant request.
pub const META_REQUEST: &str = "prism-request";
/// User-metadata key holding the batch id.
pub const META_BATCH_ID: &str = "prism-batch-id";
/// User-metadata key holding the file id.
pub const META_FILE_ID: &str = "prism-file-id";
/// User-metadata key holding the client's file name, percent-encoded (metadata is ASCII only).
pub const META_FILE_NAME: &str = "prism-file-name";
/// User-metadata key holding the W3C `traceparent` of the batch.
pub const META_TRACEPARENT: &str = "prism-traceparent";

/// Smallest width a batch may ask for.
pub const MIN_WIDTH: u32 = 16;
/// Largest width a batch may ask for.
pub const MAX_WIDTH: u32 = 8192;
/// Most widths one batch may ask for.
pub const MAX_WIDTHS: usize = 8;

/// An output format.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Lossy WebP (libwebp).
    Webp,
    /// AVIF (AV1 still image).
    Avif,
}

impl OutputFormat {
    /// File extension and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Webp => "webp",
            OutputFormat::Avif => "avif",
        }
    }

    /// The MIME type of the encoded bytes.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Webp => "image/webp",
            OutputFormat::Avif => "image/avif",
        }
    }
}

impl Fit {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Fit::Inside => "inside",
        }
    }
}

impl std::fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a variant fits its requested width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Scale to the width keeping the aspect ratio; never upscale.
    #[default]
    Inside,
}

/// Default lossy WebP quality.
pub const DEFAULT_WEBP_QUALITY: u8 = 80;
/// Default AVIF quality.
pub const DEFAULT_AVIF_QUALITY: u8 = 50;

/// What a batch asks the resize worker to produce for each of its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantRequest {
    /// Target widths in pixels, ascending and distinct after [`VariantRequest::normalise`].
    pub widths: Vec<u32>,
    /// Output formats, distinct.
    pub formats: Vec<OutputFormat>,
    /// Fit mode.
    #[serde(default)]
    pub fit: Fit,
    /// WebP quality 1-100.
    #[serde(default = "default_webp_quality")]
    pub webp_quality: u8,
    /// AVIF quality 1-100.
    #[serde(default = "default_avif_quality")]
    pub avif_quality: u8,
    /// Copy the upload unchanged to `media/{batch}/{file}/original`.
    #[serde(default)]
    pub keep_original: bool,
    /// Render animated GIF, APNG and WebP inputs as animated WebP variants (other formats
    /// stay first-frame); `false` renders the first frame only. Serialised only when `false`.
    #[serde(default = "default_animated", skip_serializing_if = "is_true")]
    pub animated: bool,
}

fn default_animated() -> bool {
    true
}
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_true(b: &bool) -> bool {
    *b
}

fn default_webp_quality() -> u8 {
    DEFAULT_WEBP_QUALITY
}
fn default_avif_quality() -> u8 {
    DEFAULT_AVIF_QUALITY
}

impl Default for VariantRequest {
    fn default() -> Self {
        Self {
            widths: vec![320, 640, 1280, 2048],
            formats: vec![OutputFormat::Webp, OutputFormat::Avif],
            fit: Fit::Inside,
            webp_quality: DEFAULT_WEBP_QUALITY,
            avif_quality: DEFAULT_AVIF_QUALITY,
            keep_original: false,
            animated: true,
        }
    }
}

/// Why a variant request is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariantRequestError {
    /// Width count outside 1..=8.
    #[error("between 1 and {MAX_WIDTHS} widths are required, got {0}")]
    WidthCount(usize),
    /// A width outside 16..=8192.
    #[error("width {0} is outside {MIN_WIDTH}..={MAX_WIDTH}")]
    WidthRange(u32),
    /// No formats.
    #[error("at least one format (webp, avif) is required")]
    NoFormats,
    /// Quality outside 1..=100.
    #[error("quality {0} is outside 1..=100")]
    Quality(u8),
    /// The metadata value is not a valid request.
    #[error("variant request metadata is not valid JSON: {0}")]
    Malformed(String),
}

impl VariantRequest {
    /// Sort and deduplicate widths and formats, then check every bound.
    ///
    /// # Errors
    /// Returns the first bound the request breaks.
    pub fn normalise(mut self) -> Result<Self, VariantRequestError> {
        self.widths.sort_unstable();
        self.widths.dedup();
        self.formats.sort_unstable();
        self.formats.dedup();
        if self.widths.is_empty() || self.widths.len() > MAX_WIDTHS {
            return Err(VariantRequestError::WidthCount(self.widths.len()));
        }
        if let Some(&w) = self
            .widths
            .iter()
            .find(|w| !(MIN_WIDTH..=MAX_WIDTH).contains(*w))
        {
            return Err(VariantRequestError::WidthRange(w));
        }
        if self.formats.is_empty() {
            return Err(VariantRequestError::NoFormats);
        }
        for q in [self.webp_quality, self.avif_quality] {
            if !(1..=100).contains(&q) {
                return Err(VariantRequestError::Quality(q));
            }
        }
        Ok(self)
    }

    /// The quality asked for `format`.
    pub fn quality(&self, format: OutputFormat) -> u8 {
        match format {
            OutputFormat::Webp => self.webp_quality,
            OutputFormat::Avif => self.avif_quality,
        }
    }

    /// The compact JSON stored under [`META_REQUEST`].
    pub fn to_metadata(&self) -> String {
        serde_json::to_string(self).expect("a VariantRequest always serialises")
    }

    /// Parse and validate the value stored under [`META_REQUEST`].
    ///
    /// # Errors
    /// Returns [`VariantRequestError::Malformed`] for bad JSON, or the broken bound.
    pub fn from_metadata(value: &str) -> Result<Self, VariantRequestError> {
        serde_json::from_str::<VariantRequest>(value)
            .map_err(|e| VariantRequestError::Malformed(e.to_string()))?
            .normalise()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_is_small() {
        let r = VariantRequest {
            keep_original: true,
            ..Default::default()
        };
        let s = r.to_metadata();
        assert!(s.len() < 200, "{s}");
        assert_eq!(VariantRequest::from_metadata(&s).unwrap(), r);
    }

    #[test]
    fn normalise_sorts_dedups_and_checks_bounds() {
        let r = VariantRequest {
            widths: vec![640, 320, 640],
            formats: vec![OutputFormat::Avif, OutputFormat::Webp, OutputFormat::Avif],
            ..Default::default()
        }
        .normalise()
        .unwrap();
        assert_eq!(r.widths, vec![320, 640]);
        assert_eq!(r.formats, vec![OutputFormat::Webp, OutputFormat::Avif]);
        let bad = VariantRequest {
            widths: vec![8],
            ..Default::default()
        }
        .normalise();
        assert_eq!(bad, Err(VariantRequestError::WidthRange(8)));
        let bad = VariantRequest {
            widths: (1..=9).map(|i| i * 100).collect(),
            ..Default::default()
        };
        assert_eq!(bad.normalise(), Err(VariantRequestError::WidthCount(9)));
        let bad = VariantRequest {
            formats: vec![],
            ..Default::default()
        }
        .normalise();
        assert_eq!(bad, Err(VariantRequestError::NoFormats));
    }

    #[test]
    fn animated_is_on_by_default_and_written_only_when_off() {
        let on = VariantRequest::default();
        assert!(on.animated);
        assert!(
            !on.to_metadata().contains("animated"),
            "{}",
            on.to_metadata()
        );
        let old = VariantRequest::from_metadata(r#"{"widths":[320],"formats":["webp"]}"#).unwrap();
        assert!(old.animated);
        let off = VariantRequest {
            animated: false,
            ..Default::default()
        };
        assert!(off.to_metadata().contains(r#""animated":false"#));
        assert_eq!(
            VariantRequest::from_metadata(&off.to_metadata()).unwrap(),
            off
        );
        assert!(
            VariantRequest::from_metadata(r#"{"widths":[320],"formats":["webp"],"animated":"no"}"#)
                .is_err()
        );
    }

    #[test]
    fn rejects_unknown_fields_and_formats() {
        assert!(VariantRequest::from_metadata(r#"{"widths":[320],"formats":["gif"]}"#).is_err());
        assert!(
            VariantRequest::from_metadata(r#"{"widths":[320],"formats":["webp"],"x":1}"#).is_err()
        );
        let ok = VariantRequest::from_metadata(r#"{"widths":[320],"formats":["webp"]}"#).unwrap();
        assert_eq!(ok.webp_quality, 80);
    }
}
