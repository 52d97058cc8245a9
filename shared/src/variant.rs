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
    /// Baseline-compatible progressive JPEG with optimised Huffman tables (libjpeg-turbo),
    /// 4:2:0, no alpha (composited onto white). Files end in `.jpg`.
    Jpeg,
    /// Lossless PNG, 8-bit RGB, or RGBA when the image has transparency.
    Png,
}

impl OutputFormat {
    /// Wire name (and the extension, but for JPEG: see [`OutputFormat::extension`]).
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Webp => "webp",
            OutputFormat::Avif => "avif",
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::Png => "png",
        }
    }

    /// The file extension of a variant key: the wire name, but `jpg` for JPEG (the extension
    /// most tools and CDNs expect).
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            f => f.as_str(),
        }
    }

    /// The format whose [`OutputFormat::extension`] is `ext`.
    pub fn from_extension(ext: &str) -> Option<Self> {
        [
            OutputFormat::Webp,
            OutputFormat::Avif,
            OutputFormat::Jpeg,
            OutputFormat::Png,
        ]
        .into_iter()
        .find(|f| f.extension() == ext)
    }

    /// The MIME type of the encoded bytes.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Webp => "image/webp",
            OutputFormat::Avif => "image/avif",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
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
/// Default JPEG quality (libjpeg scale).
pub const DEFAULT_JPEG_QUALITY: u8 = 80;

/// Whether WebP variants are lossless: `false` (lossy, the default), `true`, or `"auto"`
/// (per variant, lossless when the resized image looks like a screenshot or line art and the
/// lossless file is not larger than the lossy one would be worth; see the resize worker's
/// README). Only WebP reads it: PNG is always lossless, JPEG and AVIF always lossy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lossless {
    /// Lossy WebP (`false`).
    #[default]
    Off,
    /// Lossless WebP (`true`).
    On,
    /// Chosen per variant (`"auto"`).
    Auto,
}

impl Lossless {
    /// `true` for [`Lossless::Off`], the default (to skip it when serialising).
    pub fn is_off(&self) -> bool {
        *self == Lossless::Off
    }

    /// Wire form as text: `false`, `true` or `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lossless::Off => "false",
            Lossless::On => "true",
            Lossless::Auto => "auto",
        }
    }

    /// Parse `false`, `true` or `auto` (the CLI's spelling of the wire values).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "false" => Some(Lossless::Off),
            "true" => Some(Lossless::On),
            "auto" => Some(Lossless::Auto),
            _ => None,
        }
    }
}

impl std::fmt::Display for Lossless {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Lossless {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Lossless::Off => s.serialize_bool(false),
            Lossless::On => s.serialize_bool(true),
            Lossless::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Lossless {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Lossless;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("false, true or \"auto\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Lossless, E> {
                Ok(if v { Lossless::On } else { Lossless::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Lossless, E> {
                if v == "auto" {
                    Ok(Lossless::Auto)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

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
    /// JPEG quality 1-100 (serialised only when not the default, to keep the metadata small).
    #[serde(
        default = "default_jpeg_quality",
        skip_serializing_if = "is_default_jpeg_quality"
    )]
    pub jpeg_quality: u8,
    /// Lossless WebP (serialised only when not `false`).
    #[serde(default, skip_serializing_if = "Lossless::is_off")]
    pub lossless: Lossless,
}

fn default_jpeg_quality() -> u8 {
    DEFAULT_JPEG_QUALITY
}
fn is_default_jpeg_quality(q: &u8) -> bool {
    *q == DEFAULT_JPEG_QUALITY
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
            jpeg_quality: DEFAULT_JPEG_QUALITY,
            lossless: Lossless::Off,
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
    #[error("at least one format (webp, avif, jpeg, png) is required")]
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
        for q in [self.webp_quality, self.avif_quality, self.jpeg_quality] {
            if !(1..=100).contains(&q) {
                return Err(VariantRequestError::Quality(q));
            }
        }
        Ok(self)
    }

    /// The quality asked for `format` (PNG has none: 0).
    pub fn quality(&self, format: OutputFormat) -> u8 {
        match format {
            OutputFormat::Webp => self.webp_quality,
            OutputFormat::Avif => self.avif_quality,
            OutputFormat::Jpeg => self.jpeg_quality,
            OutputFormat::Png => 0,
        }
    }

    /// The lossless setting as it applies to `format`: the request's for WebP,
    /// [`Lossless::Off`] for every other format (which the setting does not change).
    pub fn lossless_for(&self, format: OutputFormat) -> Lossless {
        match format {
            OutputFormat::Webp => self.lossless,
            _ => Lossless::Off,
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
    fn rejects_unknown_fields_and_formats() {
        assert!(VariantRequest::from_metadata(r#"{"widths":[320],"formats":["gif"]}"#).is_err());
        assert!(
            VariantRequest::from_metadata(r#"{"widths":[320],"formats":["webp"],"x":1}"#).is_err()
        );
        let ok = VariantRequest::from_metadata(r#"{"widths":[320],"formats":["webp"]}"#).unwrap();
        assert_eq!(ok.webp_quality, 80);
        // Metadata written before JPEG, PNG and lossless existed reads as today's request.
        assert_eq!(ok.jpeg_quality, DEFAULT_JPEG_QUALITY);
        assert_eq!(ok.lossless, Lossless::Off);
    }

    #[test]
    fn new_formats_and_lossless_round_trip_and_default_fields_stay_out() {
        let r = VariantRequest {
            formats: vec![OutputFormat::Webp, OutputFormat::Jpeg, OutputFormat::Png],
            jpeg_quality: 70,
            lossless: Lossless::Auto,
            ..Default::default()
        }
        .normalise()
        .unwrap();
        let s = r.to_metadata();
        assert!(s.contains(r#""jpeg_quality":70"#), "{s}");
        assert!(s.contains(r#""lossless":"auto""#), "{s}");
        assert!(s.contains(r#"["webp","jpeg","png"]"#), "{s}");
        assert_eq!(VariantRequest::from_metadata(&s).unwrap(), r);
        let on = VariantRequest {
            lossless: Lossless::On,
            ..Default::default()
        };
        assert!(on.to_metadata().contains(r#""lossless":true"#));
        assert_eq!(
            VariantRequest::from_metadata(&on.to_metadata()).unwrap(),
            on
        );
        let plain = VariantRequest::default().to_metadata();
        assert!(
            !plain.contains("jpeg_quality") && !plain.contains("lossless"),
            "{plain}"
        );
        for bad in [
            r#"{"widths":[320],"formats":["jpeg"],"jpeg_quality":0}"#,
            r#"{"widths":[320],"formats":["jpeg"],"jpeg_quality":101}"#,
            r#"{"widths":[320],"formats":["webp"],"lossless":"yes"}"#,
            r#"{"widths":[320],"formats":["webp"],"lossless":1}"#,
            r#"{"widths":[320],"formats":["jpg"]}"#,
        ] {
            assert!(VariantRequest::from_metadata(bad).is_err(), "{bad}");
        }
        assert_eq!(r.quality(OutputFormat::Jpeg), 70);
        assert_eq!(r.lossless_for(OutputFormat::Webp), Lossless::Auto);
        assert_eq!(r.lossless_for(OutputFormat::Png), Lossless::Off);
    }

    #[test]
    fn extensions_and_content_types() {
        for (f, ext, ct) in [
            (OutputFormat::Webp, "webp", "image/webp"),
            (OutputFormat::Avif, "avif", "image/avif"),
            (OutputFormat::Jpeg, "jpg", "image/jpeg"),
            (OutputFormat::Png, "png", "image/png"),
        ] {
            assert_eq!((f.extension(), f.content_type()), (ext, ct));
            assert_eq!(OutputFormat::from_extension(ext), Some(f));
        }
        assert_eq!(OutputFormat::from_extension("jpeg"), None);
    }
}
