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
/// User-metadata key holding the file's focal point, `x,y` (see [`FocalPoint::to_metadata`]).
pub const META_FOCAL_POINT: &str = "prism-focal-point";

/// Smallest width a batch may ask for.
pub const MIN_WIDTH: u32 = 16;
/// Largest width a batch may ask for.
pub const MAX_WIDTH: u32 = 8192;
/// Most widths one batch may ask for.
pub const MAX_WIDTHS: usize = 8;
/// Most variants (`widths` and `sizes` together) one batch may ask for.
pub const MAX_VARIANTS: usize = 8;

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
            Fit::Cover => "cover",
            Fit::Contain => "contain",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Fit::Inside, Fit::Cover, Fit::Contain]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

impl std::fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a variant fits its requested width (and height, for a size).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Scale to fit within the width (and height) keeping the aspect ratio; never upscale.
    #[default]
    Inside,
    /// Scale to cover exactly width × height, then crop what overflows (around `focus`).
    Cover,
    /// Scale to fit within width × height, then pad to exactly width × height with
    /// `background`.
    Contain,
}

impl Fit {
    fn is_inside(&self) -> bool {
        *self == Fit::Inside
    }
}

/// Where a `cover` crop is centred.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Focus {
    /// The centre of the image.
    #[default]
    Center,
    /// The most interesting window (edges, skin tones, saturation), found once per file.
    Auto,
    /// The file's `focal_point` (given per file at batch creation); the centre without one.
    FocalPoint,
}

impl Focus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Focus::Center => "center",
            Focus::Auto => "auto",
            Focus::FocalPoint => "focal_point",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Focus::Center, Focus::Auto, Focus::FocalPoint]
            .into_iter()
            .find(|f| f.as_str() == s)
    }

    fn is_center(&self) -> bool {
        *self == Focus::Center
    }
}

/// A `contain` pad colour, sRGB with unassociated alpha: `#rrggbb` (opaque) or `#rrggbbaa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Background(pub [u8; 4]);

impl Background {
    /// Fully transparent (the default pad).
    pub const TRANSPARENT: Background = Background([0, 0, 0, 0]);

    /// Parse `#rrggbb` or `#rrggbbaa` (hex digits in either case).
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix('#')?;
        if !(hex.len() == 6 || hex.len() == 8) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        let a = if hex.len() == 8 { byte(6)? } else { 255 };
        Some(Background([byte(0)?, byte(2)?, byte(4)?, a]))
    }

    /// `#rrggbb` when opaque, else `#rrggbbaa` (lowercase).
    pub fn as_string(&self) -> String {
        let [r, g, b, a] = self.0;
        if a == 255 {
            format!("#{r:02x}{g:02x}{b:02x}")
        } else {
            format!("#{r:02x}{g:02x}{b:02x}{a:02x}")
        }
    }
}

impl Serialize for Background {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}

impl<'de> Deserialize<'de> for Background {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if s.len() > 9 {
            return Err(serde::de::Error::custom(
                "background is #rrggbb or #rrggbbaa",
            ));
        }
        Background::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("background is #rrggbb or #rrggbbaa"))
    }
}

/// A point of the upright image, relative: `x` from the left, `y` from the top, each 0..=1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FocalPoint {
    /// 0 (left edge) to 1 (right edge).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub x: f64,
    /// 0 (top edge) to 1 (bottom edge).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub y: f64,
}

// Valid focal points are finite (JSON has no NaN, and `check` refuses one anyway).
impl Eq for FocalPoint {}

/// Decimals a focal point keeps in metadata (and in variant tags).
const FOCAL_DECIMALS: usize = 4;

impl FocalPoint {
    /// Whether both coordinates are finite and within 0..=1.
    pub fn is_valid(&self) -> bool {
        [self.x, self.y]
            .iter()
            .all(|v| v.is_finite() && (0.0..=1.0).contains(v))
    }

    /// The canonical `x,y` with four decimals stored under [`META_FOCAL_POINT`].
    pub fn to_metadata(&self) -> String {
        format!("{:.prec$},{:.prec$}", self.x, self.y, prec = FOCAL_DECIMALS)
    }

    /// Parse (and round to four decimals) the value stored under [`META_FOCAL_POINT`].
    pub fn from_metadata(value: &str) -> Option<Self> {
        if value.len() > 32 {
            return None;
        }
        let (x, y) = value.split_once(',')?;
        let num = |s: &str| -> Option<f64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return None;
            }
            s.parse().ok()
        };
        let p = FocalPoint {
            x: num(x)?,
            y: num(y)?,
        };
        if !p.is_valid() {
            return None;
        }
        // Round through the canonical text, so a tag hashes what the metadata says.
        let canon = p.to_metadata();
        let (x, y) = canon.split_once(',')?;
        Some(FocalPoint {
            x: x.parse().ok()?,
            y: y.parse().ok()?,
        })
    }
}

/// One exact-size (or bounded-box) variant of a batch request.
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
#[serde(deny_unknown_fields)]
pub struct SizeSpec {
    /// Width in pixels, 16-8192.
    #[schema(minimum = 16, maximum = 8192)]
    pub width: u32,
    /// Height in pixels, 16-8192 (for `inside`, the height of the box the variant fits in).
    #[schema(minimum = 16, maximum = 8192)]
    pub height: u32,
    /// `inside` (default), `cover` or `contain`.
    #[serde(default, skip_serializing_if = "Fit::is_inside")]
    pub fit: Fit,
    /// Where a `cover` crop is centred: `center` (default), `auto` or `focal_point`. Only
    /// `cover` crops, so any other fit takes only `center`.
    #[serde(default, skip_serializing_if = "Focus::is_center")]
    pub focus: Focus,
    /// `contain` only: the pad colour, `#rrggbb` or `#rrggbbaa` (default: transparent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^#([0-9A-Fa-f]{6}|[0-9A-Fa-f]{8})$", example = "#ffffff")]
    pub background: Option<Background>,
}

impl SizeSpec {
    /// The key label, `{width}x{height}-{fit}`.
    pub fn label(&self) -> String {
        format!("{}x{}-{}", self.width, self.height, self.fit.as_str())
    }

    /// The pad colour of a `contain` variant.
    pub fn pad(&self) -> Background {
        self.background.unwrap_or(Background::TRANSPARENT)
    }

    fn check(&self) -> Result<(), VariantRequestError> {
        for v in [self.width, self.height] {
            if !(MIN_WIDTH..=MAX_WIDTH).contains(&v) {
                return Err(VariantRequestError::SizeRange(v));
            }
        }
        if self.fit != Fit::Cover && self.focus != Focus::Center {
            return Err(VariantRequestError::FocusWithoutCover);
        }
        if self.fit != Fit::Contain && self.background.is_some() {
            return Err(VariantRequestError::BackgroundWithoutContain);
        }
        Ok(())
    }
}

/// Default lossy WebP quality.
pub const DEFAULT_WEBP_QUALITY: u8 = 80;
/// Default AVIF quality.
pub const DEFAULT_AVIF_QUALITY: u8 = 50;
/// Default JPEG quality (libjpeg scale).
pub const DEFAULT_JPEG_QUALITY: u8 = 80;

/// Whether WebP variants are lossless: `false` (lossy, the default), `true`, or `"auto"`
/// (per variant, lossless where the lossless file is no larger than the lossy one; only a
/// resized image that looks like a screenshot or line art is encoded both ways, see the resize
/// worker's README). Only WebP reads it: PNG is always lossless, JPEG and AVIF always lossy.
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

/// A perceptual quality level of `"quality": "auto:…"`: the encoder quality of every WebP and
/// AVIF variant is searched, per file, for a target SSIMULACRA 2 score (the resize worker's
/// README gives the scores and the method). `"auto"` is [`AutoQuality::Good`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum AutoQuality {
    /// `auto:high`: visually lossless for most viewers.
    High,
    /// `auto:good` (and `auto`): very high quality, the default level.
    #[default]
    Good,
    /// `auto:eco`: high quality at the fewest bytes.
    Eco,
}

impl AutoQuality {
    /// Canonical wire form: `auto:high`, `auto:good` or `auto:eco`.
    pub fn as_str(self) -> &'static str {
        match self {
            AutoQuality::High => "auto:high",
            AutoQuality::Good => "auto:good",
            AutoQuality::Eco => "auto:eco",
        }
    }

    /// Parse `auto`, `auto:high`, `auto:good` or `auto:eco` (exactly, lowercase).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" | "auto:good" => Some(AutoQuality::Good),
            "auto:high" => Some(AutoQuality::High),
            "auto:eco" => Some(AutoQuality::Eco),
            _ => None,
        }
    }
}

impl std::fmt::Display for AutoQuality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `quality` of a request: a fixed encoder quality 1-100 for every lossy format, or a
/// perceptual level ([`AutoQuality`]) searched per file for WebP and AVIF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    /// A number: the encoder quality of WebP, AVIF and JPEG (1-100, checked by
    /// [`VariantRequest::normalise`]).
    Fixed(u8),
    /// `"auto"`, `"auto:high"`, `"auto:good"` or `"auto:eco"`.
    Auto(AutoQuality),
}

impl Serialize for Quality {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Quality::Fixed(q) => s.serialize_u8(*q),
            Quality::Auto(level) => s.serialize_str(level.as_str()),
        }
    }
}

impl<'de> Deserialize<'de> for Quality {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Quality;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a whole number 1-100, \"auto\", \"auto:high\", \"auto:good\" or \"auto:eco\"",
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quality, E> {
                match u8::try_from(v) {
                    Ok(q) if (1..=100).contains(&q) => Ok(Quality::Fixed(q)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self)),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quality, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quality, E> {
                AutoQuality::parse(v)
                    .map(Quality::Auto)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// What `"quality": "auto"` chose for one variant, as the manifest and the batch view record
/// it: the encoder quality (on the request's scale, what the same number as a fixed quality
/// would encode) and the SSIMULACRA 2 score the variant measured against the resized image it
/// was encoded from (100 is identical; about 90 visually lossless, 80 very high, 70 high).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AutoChoice {
    /// The encoder quality used, 1-100.
    #[schema(minimum = 1, maximum = 100)]
    pub quality: u8,
    /// The measured SSIMULACRA 2 score, two decimals.
    #[schema(example = 80.25)]
    pub ssimulacra2: f64,
}

// Scores are finite (the engine rounds a finite score; JSON has no NaN).
impl Eq for AutoChoice {}

/// What a batch asks the resize worker to produce for each of its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantRequest {
    /// Target widths in pixels, ascending and distinct after [`VariantRequest::normalise`]
    /// (may be empty when `sizes` is not).
    #[serde(default)]
    pub widths: Vec<u32>,
    /// Output formats, distinct.
    pub formats: Vec<OutputFormat>,
    /// Fit mode of `widths` (only `inside`).
    #[serde(default)]
    pub fit: Fit,
    /// Exact-size or bounded-box variants, beside `widths`; sorted after
    /// [`VariantRequest::normalise`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sizes: Vec<SizeSpec>,
    /// The file's focal point. Never part of the batch's [`META_REQUEST`] value: the API signs
    /// it per file under [`META_FOCAL_POINT`] and the worker sets it from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focal_point: Option<FocalPoint>,
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
    /// Render animated GIF, APNG and WebP inputs as animated WebP variants (other formats
    /// stay first-frame); `false` renders the first frame only. Serialised only when `false`.
    #[serde(default = "default_animated", skip_serializing_if = "is_true")]
    pub animated: bool,
    /// `quality` for every lossy format: a number sets `webp_quality`, `avif_quality` and
    /// `jpeg_quality` (and is gone after [`VariantRequest::normalise`], so the metadata and the
    /// variant tags are those of the three numbers); `"auto[:level]"` searches the WebP and
    /// AVIF quality per file (JPEG keeps `jpeg_quality`). Serialised only when `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
}

fn default_jpeg_quality() -> u8 {
    DEFAULT_JPEG_QUALITY
}
fn is_default_jpeg_quality(q: &u8) -> bool {
    *q == DEFAULT_JPEG_QUALITY
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
            sizes: Vec::new(),
            focal_point: None,
            webp_quality: DEFAULT_WEBP_QUALITY,
            avif_quality: DEFAULT_AVIF_QUALITY,
            keep_original: false,
            jpeg_quality: DEFAULT_JPEG_QUALITY,
            lossless: Lossless::Off,
            animated: true,
            quality: None,
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
    /// `widths` and `sizes` together outside 1..=8.
    #[error("between 1 and {MAX_VARIANTS} widths and sizes together are required, got {0}")]
    VariantCount(usize),
    /// A size's width or height outside 16..=8192.
    #[error("size dimension {0} is outside {MIN_WIDTH}..={MAX_WIDTH}")]
    SizeRange(u32),
    /// A focus other than `center` on a size that does not crop.
    #[error("focus applies only to fit cover")]
    FocusWithoutCover,
    /// A background on a size that does not pad.
    #[error("background applies only to fit contain")]
    BackgroundWithoutContain,
    /// Two sizes with the same width, height and fit.
    #[error("size {0} is asked for twice")]
    DuplicateSize(String),
    /// `fit` of `widths` other than `inside` (use `sizes`).
    #[error("widths are always fit inside; ask for cover or contain in sizes")]
    WidthsFit,
    /// A focal point outside 0..=1.
    #[error("focal point coordinates must be within 0..=1")]
    FocalPoint,
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
        if self.sizes.is_empty() {
            if self.widths.is_empty() || self.widths.len() > MAX_WIDTHS {
                return Err(VariantRequestError::WidthCount(self.widths.len()));
            }
        } else {
            let n = self.widths.len() + self.sizes.len();
            if n > MAX_VARIANTS {
                return Err(VariantRequestError::VariantCount(n));
            }
            for size in &self.sizes {
                size.check()?;
            }
            self.sizes.sort_unstable();
            if let Some(w) = self.sizes.windows(2).find(|w| {
                (w[0].width, w[0].height, w[0].fit) == (w[1].width, w[1].height, w[1].fit)
            }) {
                return Err(VariantRequestError::DuplicateSize(w[0].label()));
            }
        }
        if self.fit != Fit::Inside {
            return Err(VariantRequestError::WidthsFit);
        }
        if self.focal_point.is_some_and(|p| !p.is_valid()) {
            return Err(VariantRequestError::FocalPoint);
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
        if let Some(Quality::Fixed(q)) = self.quality {
            if !(1..=100).contains(&q) {
                return Err(VariantRequestError::Quality(q));
            }
            self.webp_quality = q;
            self.avif_quality = q;
            self.jpeg_quality = q;
            self.quality = None;
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

    /// The perceptual level searched for `format`: the request's `auto` level for WebP and
    /// AVIF, `None` for a fixed quality and for JPEG and PNG (a lossless WebP variant ignores
    /// it: see the resize worker).
    pub fn auto_quality_for(&self, format: OutputFormat) -> Option<AutoQuality> {
        match (self.quality, format) {
            (Some(Quality::Auto(level)), OutputFormat::Webp | OutputFormat::Avif) => Some(level),
            _ => None,
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
    fn quality_is_a_number_or_an_auto_level() {
        let auto = VariantRequest::from_metadata(
            r#"{"widths":[320],"formats":["webp","avif","jpeg"],"quality":"auto"}"#,
        )
        .unwrap();
        assert_eq!(auto.quality, Some(Quality::Auto(AutoQuality::Good)));
        assert_eq!(
            auto.auto_quality_for(OutputFormat::Webp),
            Some(AutoQuality::Good)
        );
        assert_eq!(
            auto.auto_quality_for(OutputFormat::Avif),
            Some(AutoQuality::Good)
        );
        assert_eq!(auto.auto_quality_for(OutputFormat::Jpeg), None);
        // Canonical form in the metadata: the level is always named.
        let s = auto.to_metadata();
        assert!(s.contains(r#""quality":"auto:good""#), "{s}");
        assert_eq!(VariantRequest::from_metadata(&s).unwrap(), auto);
        for (text, level) in [
            ("auto:high", AutoQuality::High),
            ("auto:good", AutoQuality::Good),
            ("auto:eco", AutoQuality::Eco),
        ] {
            let r = VariantRequest::from_metadata(&format!(
                r#"{{"widths":[320],"formats":["webp"],"quality":"{text}"}}"#
            ))
            .unwrap();
            assert_eq!(r.quality, Some(Quality::Auto(level)));
            assert_eq!(level.as_str(), text);
        }
        // A number is every lossy format's fixed quality and leaves no trace of itself.
        let fixed =
            VariantRequest::from_metadata(r#"{"widths":[320],"formats":["webp"],"quality":62}"#)
                .unwrap();
        assert_eq!(fixed.quality, None);
        assert_eq!(
            (fixed.webp_quality, fixed.avif_quality, fixed.jpeg_quality),
            (62, 62, 62)
        );
        assert_eq!(fixed.auto_quality_for(OutputFormat::Webp), None);
        assert!(!fixed.to_metadata().contains(r#""quality""#));
        for bad in [
            r#""auto:wrong""#,
            r#""AUTO""#,
            r#""auto:""#,
            r#""80""#,
            "0",
            "101",
            "-5",
            "80.5",
            "true",
        ] {
            let json = format!(r#"{{"widths":[320],"formats":["webp"],"quality":{bad}}}"#);
            assert!(VariantRequest::from_metadata(&json).is_err(), "{bad}");
        }
        // Built in code, a fixed quality out of range is refused by `normalise`.
        for q in [0, 101] {
            let r = VariantRequest {
                quality: Some(Quality::Fixed(q)),
                ..Default::default()
            };
            assert_eq!(r.normalise(), Err(VariantRequestError::Quality(q)));
        }
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

    fn size(width: u32, height: u32, fit: Fit) -> SizeSpec {
        SizeSpec {
            width,
            height,
            fit,
            focus: Focus::Center,
            background: None,
        }
    }

    #[test]
    fn sizes_at_the_most_fit_the_metadata_limit_and_round_trip() {
        let sizes: Vec<SizeSpec> = (0..MAX_VARIANTS as u32)
            .map(|i| SizeSpec {
                width: MAX_WIDTH - i,
                height: MAX_WIDTH - i,
                fit: Fit::Contain,
                focus: Focus::Center,
                background: Some(Background([0xff, 0xee, 0xdd, 0x80])),
            })
            .collect();
        let r = VariantRequest {
            widths: vec![],
            sizes,
            keep_original: true,
            focal_point: Some(FocalPoint { x: 0.3333, y: 1.0 }),
            ..Default::default()
        }
        .normalise()
        .unwrap();
        let s = r.to_metadata();
        // Every other signed metadata value (ids, name, traceparent) fits in the remainder.
        assert!(s.len() <= 1024, "{} bytes: {s}", s.len());
        assert_eq!(VariantRequest::from_metadata(&s).unwrap(), r);
        let cover = VariantRequest {
            widths: vec![320],
            sizes: vec![SizeSpec {
                focus: Focus::FocalPoint,
                ..size(256, 256, Fit::Cover)
            }],
            ..Default::default()
        };
        let s = cover.to_metadata();
        assert!(
            s.contains(
                r#""sizes":[{"width":256,"height":256,"fit":"cover","focus":"focal_point"}]"#
            ),
            "{s}"
        );
        assert_eq!(VariantRequest::from_metadata(&s).unwrap(), cover);
    }

    #[test]
    fn old_metadata_has_no_sizes_and_serialises_as_before() {
        let old = r#"{"widths":[320,640],"formats":["webp"],"fit":"inside","webp_quality":80,"avif_quality":50,"keep_original":false}"#;
        let r = VariantRequest::from_metadata(old).unwrap();
        assert!(r.sizes.is_empty() && r.focal_point.is_none());
        assert_eq!(r.to_metadata(), old);
    }

    #[test]
    fn sizes_are_checked() {
        let with = |sizes: Vec<SizeSpec>, widths: Vec<u32>| {
            VariantRequest {
                widths,
                sizes,
                ..Default::default()
            }
            .normalise()
        };
        assert!(with(vec![size(256, 256, Fit::Cover)], vec![]).is_ok());
        assert_eq!(
            with(vec![size(256, 8, Fit::Cover)], vec![]),
            Err(VariantRequestError::SizeRange(8))
        );
        assert_eq!(
            with(vec![size(9000, 256, Fit::Contain)], vec![]),
            Err(VariantRequestError::SizeRange(9000))
        );
        assert_eq!(
            with(
                vec![size(256, 256, Fit::Cover)],
                (1..=8).map(|i| i * 100).collect()
            ),
            Err(VariantRequestError::VariantCount(9))
        );
        assert_eq!(
            with(
                vec![
                    size(256, 256, Fit::Cover),
                    SizeSpec {
                        focus: Focus::Auto,
                        ..size(256, 256, Fit::Cover)
                    }
                ],
                vec![]
            ),
            Err(VariantRequestError::DuplicateSize("256x256-cover".into()))
        );
        assert!(
            with(
                vec![size(256, 256, Fit::Cover), size(256, 256, Fit::Contain)],
                vec![]
            )
            .is_ok()
        );
        assert_eq!(
            with(
                vec![SizeSpec {
                    focus: Focus::Auto,
                    ..size(256, 256, Fit::Contain)
                }],
                vec![]
            ),
            Err(VariantRequestError::FocusWithoutCover)
        );
        assert_eq!(
            with(
                vec![SizeSpec {
                    background: Some(Background::TRANSPARENT),
                    ..size(256, 256, Fit::Cover)
                }],
                vec![]
            ),
            Err(VariantRequestError::BackgroundWithoutContain)
        );
        let bad_point = VariantRequest {
            focal_point: Some(FocalPoint { x: 1.5, y: 0.0 }),
            ..Default::default()
        };
        assert_eq!(bad_point.normalise(), Err(VariantRequestError::FocalPoint));
        let cover_widths = VariantRequest {
            fit: Fit::Cover,
            ..Default::default()
        };
        assert_eq!(
            cover_widths.normalise(),
            Err(VariantRequestError::WidthsFit)
        );
        assert!(VariantRequest::from_metadata(r#"{"formats":["webp"]}"#).is_err());
        assert!(
            VariantRequest::from_metadata(
                r#"{"formats":["webp"],"sizes":[{"width":64,"height":64,"fit":"fill"}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn backgrounds_and_focal_points_parse_strictly() {
        assert_eq!(
            Background::parse("#FF0080"),
            Some(Background([255, 0, 128, 255]))
        );
        assert_eq!(
            Background::parse("#ff008000"),
            Some(Background([255, 0, 128, 0]))
        );
        for bad in [
            "ff0080",
            "#ff008",
            "#ff00800",
            "#gg0080",
            "#ff0080000",
            "#+f0080",
        ] {
            assert_eq!(Background::parse(bad), None, "{bad}");
        }
        assert_eq!(Background([255, 0, 128, 255]).as_string(), "#ff0080");
        let p = FocalPoint::from_metadata("0.25,1").unwrap();
        assert_eq!(p, FocalPoint { x: 0.25, y: 1.0 });
        assert_eq!(p.to_metadata(), "0.2500,1.0000");
        assert_eq!(
            FocalPoint::from_metadata("0.123456,0")
                .unwrap()
                .to_metadata(),
            "0.1235,0.0000"
        );
        for bad in [
            "",
            "0.5",
            "0.5,",
            "1.5,0",
            "-0.1,0",
            "nan,0",
            "0.5,0.5,0.5",
            "1e-1,0",
        ] {
            assert_eq!(FocalPoint::from_metadata(bad), None, "{bad}");
        }
    }
}
