//! Object keys. Keys are deterministic so redelivery overwrites the same objects.
//!
//! - uploads: `uploads/{batch_id}/{file_id}` (the client's file name travels as metadata)
//! - variants: `media/{batch_id}/{file_id}/{width}w.{tag}.{format}`, where the [`variant_tag`]
//!   names everything besides the source that determines the bytes (engine version and
//!   settings, format, quality, fit, width). A re-render that can produce other bytes writes
//!   other keys, so a variant key's bytes never change and caches may keep them for good; the
//!   same upload with the same request always renders to the same keys.
//! - `sizes` variants: `media/{batch_id}/{file_id}/{width}x{height}-{fit}.{tag}.{format}`, the
//!   [`size_variant_tag`] naming also the height, fit, focus, pad colour and focal point.
//! - then `media/{batch_id}/{file_id}/manifest.json` last, or `failure.json`
//! - `media/{batch_id}/{file_id}/original` when the batch keeps originals.

use sha2::{Digest as _, Sha256};

use crate::variant::{Fit, FocalPoint, Focus, Lossless, OutputFormat, SizeSpec};

/// Prefix of upload keys.
pub const UPLOADS_PREFIX: &str = "uploads/";
/// Prefix of media keys.
pub const MEDIA_PREFIX: &str = "media/";
/// File name of the manifest written after every variant.
pub const MANIFEST_NAME: &str = "manifest.json";
/// File name of the failure record.
pub const FAILURE_NAME: &str = "failure.json";

/// `true` when `id` is a safe id segment: 1-64 ASCII letters, digits, `-` or `_`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `uploads/{batch_id}/{file_id}`.
pub fn upload_key(batch_id: &str, file_id: &str) -> String {
    format!("{UPLOADS_PREFIX}{batch_id}/{file_id}")
}

/// Split an upload key into `(batch_id, file_id)`; `None` for any other key.
pub fn parse_upload_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(UPLOADS_PREFIX)?;
    let (batch, file) = rest.split_once('/')?;
    (is_valid_id(batch) && is_valid_id(file)).then_some((batch, file))
}

/// `media/{batch_id}/{file_id}/`.
pub fn media_dir(batch_id: &str, file_id: &str) -> String {
    format!("{MEDIA_PREFIX}{batch_id}/{file_id}/")
}

/// Hex digits in a [`variant_tag`].
pub const VARIANT_TAG_LEN: usize = 10;

/// The tag of a variant key: the first [`VARIANT_TAG_LEN`] hex digits of a SHA-256 over what,
/// besides the source, determines the variant's bytes: `engine` (the resize worker's engine
/// version and encoder settings), the format, its quality, the fit, the requested width, and
/// the lossless setting as it applies to the format ([`crate::variant::VariantRequest::lossless_for`]).
/// [`Lossless::Off`] adds nothing to the hash, so every tag made before the setting existed is
/// unchanged.
pub fn variant_tag(
    engine: &str,
    format: OutputFormat,
    quality: u8,
    fit: Fit,
    width: u32,
    lossless: Lossless,
) -> String {
    variant_tag_auto(engine, format, quality, fit, width, lossless, None)
}

/// [`variant_tag`] of a variant whose quality may be searched per file (`"quality": "auto"`):
/// `auto` names the level and the engine's search method (e.g. `auto:good/1`), which then
/// determine the bytes instead of a fixed quality. `None` is [`variant_tag`] exactly.
pub fn variant_tag_auto(
    engine: &str,
    format: OutputFormat,
    quality: u8,
    fit: Fit,
    width: u32,
    lossless: Lossless,
    auto: Option<&str>,
) -> String {
    let mut h = tag_hash(engine, format, quality);
    h.update(fit.as_str().as_bytes());
    h.update([0]);
    h.update(width.to_le_bytes());
    finish_tag(h, lossless, auto)
}

/// The inputs every variant tag starts with: a version marker, then `engine` (length-prefixed,
/// so no two inputs share an encoding), the format and its quality.
fn tag_hash(engine: &str, format: OutputFormat, quality: u8) -> Sha256 {
    let mut h = Sha256::new();
    h.update(b"prism-variant-tag-v1\0");
    h.update((engine.len() as u64).to_le_bytes());
    h.update(engine.as_bytes());
    h.update(format.as_str().as_bytes());
    h.update([0, quality, 0]);
    h
}

/// The inputs every variant tag ends with (the lossless setting unless off, the searched
/// quality's level), then the first [`VARIANT_TAG_LEN`] hex digits of the hash.
fn finish_tag(mut h: Sha256, lossless: Lossless, auto: Option<&str>) -> String {
    if !lossless.is_off() {
        h.update(b"\0lossless\0");
        h.update(lossless.as_str().as_bytes());
    }
    if let Some(auto) = auto {
        h.update(b"\0quality-auto\0");
        h.update((auto.len() as u64).to_le_bytes());
        h.update(auto.as_bytes());
    }
    let mut tag = hex::encode(&h.finalize()[..VARIANT_TAG_LEN.div_ceil(2)]);
    tag.truncate(VARIANT_TAG_LEN);
    tag
}

/// The `engine` a [`variant_tag`] hashes for an animated variant (an animated WebP made of
/// every frame): the engine id with `:animated` appended, so its key differs from the
/// first-frame variant of the same request. Still variants keep `engine` as it is.
pub fn tag_engine(engine: &str, animated: bool) -> std::borrow::Cow<'_, str> {
    if animated {
        std::borrow::Cow::Owned(format!("{engine}:animated"))
    } else {
        std::borrow::Cow::Borrowed(engine)
    }
}

/// `media/{batch_id}/{file_id}/{width}w.{tag}.{ext}`, `tag` from [`variant_tag`], `ext` the
/// format's [`OutputFormat::extension`] (`jpg` for JPEG).
pub fn variant_key(
    batch_id: &str,
    file_id: &str,
    width: u32,
    tag: &str,
    format: OutputFormat,
) -> String {
    format!(
        "{}{width}w.{tag}.{}",
        media_dir(batch_id, file_id),
        format.extension()
    )
}

/// The tag of a `sizes` variant key: like [`variant_tag`] (same prefix of inputs), then a
/// distinct marker and everything of the size that determines its bytes: width, height, fit,
/// focus, the pad colour of `contain`, the file's focal point when the focus is
/// `focal_point` (four decimals, as the metadata carries it; `-` without one), and the lossless
/// setting as it applies to the format.
pub fn size_variant_tag(
    engine: &str,
    format: OutputFormat,
    quality: u8,
    size: &SizeSpec,
    focal_point: Option<FocalPoint>,
    lossless: Lossless,
) -> String {
    size_variant_tag_auto(engine, format, quality, size, focal_point, lossless, None)
}

/// [`size_variant_tag`] with the searched quality's `auto` (see [`variant_tag_auto`]).
pub fn size_variant_tag_auto(
    engine: &str,
    format: OutputFormat,
    quality: u8,
    size: &SizeSpec,
    focal_point: Option<FocalPoint>,
    lossless: Lossless,
    auto: Option<&str>,
) -> String {
    let mut h = tag_hash(engine, format, quality);
    h.update(b"size\0");
    h.update(size.width.to_le_bytes());
    h.update(size.height.to_le_bytes());
    h.update(size.fit.as_str().as_bytes());
    h.update([0]);
    h.update(size.focus.as_str().as_bytes());
    h.update([0]);
    if size.fit == Fit::Contain {
        h.update(size.pad().0);
    }
    if size.focus == Focus::FocalPoint {
        let p = focal_point.map_or_else(|| "-".to_owned(), |p| p.to_metadata());
        h.update(p.as_bytes());
        h.update([0]);
    }
    finish_tag(h, lossless, auto)
}

/// `media/{batch_id}/{file_id}/{width}x{height}-{fit}.{tag}.{format}`, `tag` from
/// [`size_variant_tag`].
pub fn size_variant_key(
    batch_id: &str,
    file_id: &str,
    size: &SizeSpec,
    tag: &str,
    format: OutputFormat,
) -> String {
    format!(
        "{}{}.{tag}.{}",
        media_dir(batch_id, file_id),
        size.label(),
        format.extension()
    )
}

/// What a variant key's name says was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariantLabel {
    /// `{width}w`: a `widths` variant.
    Width(u32),
    /// `{width}x{height}-{fit}`: a `sizes` variant.
    Size {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// Fit.
        fit: Fit,
    },
}

impl VariantLabel {
    /// The requested width.
    pub fn width(self) -> u32 {
        match self {
            VariantLabel::Width(w) | VariantLabel::Size { width: w, .. } => w,
        }
    }
}

/// Split a variant key's last segment, `{width}w.{tag}.{format}` or
/// `{width}x{height}-{fit}.{tag}.{format}`, into its parts; `None` for anything else (a
/// manifest, an original, a key of the untagged scheme).
pub fn parse_variant_label(name: &str) -> Option<(VariantLabel, &str, OutputFormat)> {
    let (label, rest) = name.split_once('.')?;
    let (tag, format) = rest.split_once('.')?;
    let format = OutputFormat::from_extension(format)?;
    let valid_tag = tag.len() == VARIANT_TAG_LEN
        && tag
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !valid_tag {
        return None;
    }
    let number = |s: &str| -> Option<u32> {
        let ok = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
        if ok { s.parse().ok() } else { None }
    };
    let label = if let Some(width) = label.strip_suffix('w') {
        VariantLabel::Width(number(width)?)
    } else {
        let (dims, fit) = label.split_once('-')?;
        let (width, height) = dims.split_once('x')?;
        VariantLabel::Size {
            width: number(width)?,
            height: number(height)?,
            fit: Fit::parse(fit)?,
        }
    };
    Some((label, tag, format))
}

/// Split a variant key's last segment into (requested width, tag, format); `None` for anything
/// that is not a variant (see [`parse_variant_label`], which also says the height and fit).
pub fn parse_variant_name(name: &str) -> Option<(u32, &str, OutputFormat)> {
    let (label, tag, format) = parse_variant_label(name)?;
    Some((label.width(), tag, format))
}

/// `media/{batch_id}/{file_id}/manifest.json`.
pub fn manifest_key(batch_id: &str, file_id: &str) -> String {
    format!("{}{MANIFEST_NAME}", media_dir(batch_id, file_id))
}

/// `media/{batch_id}/{file_id}/failure.json`.
pub fn failure_key(batch_id: &str, file_id: &str) -> String {
    format!("{}{FAILURE_NAME}", media_dir(batch_id, file_id))
}

/// `media/{batch_id}/{file_id}/original`.
pub fn original_key(batch_id: &str, file_id: &str) -> String {
    format!("{}original", media_dir(batch_id, file_id))
}

/// What a media key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// `manifest.json`.
    Manifest,
    /// `failure.json`.
    Failure,
    /// A variant (`{width}w.{tag}.{format}` or `{width}x{height}-{fit}.{tag}.{format}`).
    Variant,
    /// The original, or anything else.
    Other,
}

/// Split a media key into `(batch_id, file_id, kind)`; `None` for any other key.
pub fn parse_media_key(key: &str) -> Option<(&str, &str, MediaKind)> {
    let rest = key.strip_prefix(MEDIA_PREFIX)?;
    let mut parts = rest.splitn(3, '/');
    let (batch, file, name) = (parts.next()?, parts.next()?, parts.next()?);
    if !is_valid_id(batch) || !is_valid_id(file) {
        return None;
    }
    let kind = match name {
        MANIFEST_NAME => MediaKind::Manifest,
        FAILURE_NAME => MediaKind::Failure,
        n if parse_variant_name(n).is_some() => MediaKind::Variant,
        _ => MediaKind::Other,
    };
    Some((batch, file, kind))
}

#[cfg(test)]
mod tests {
    const PINNED: [&str; 5] = [
        "a7b049299c",
        "2da654e78c",
        "06656d2366",
        "7d002c0995",
        "93c674b96d",
    ];
    #[test]
    fn tags_are_pinned_byte_for_byte() {
        // A changed tag renames every stored variant: these values were made by the code that
        // wrote the first keys of each kind, and must never change.
        let size = SizeSpec {
            width: 256,
            height: 128,
            fit: Fit::Cover,
            focus: Focus::FocalPoint,
            background: None,
        };
        let point = Some(FocalPoint { x: 0.25, y: 0.5 });
        let got = [
            variant_tag(
                "1:abc",
                OutputFormat::Webp,
                80,
                Fit::Inside,
                320,
                Lossless::Off,
            ),
            variant_tag(
                "1:abc",
                OutputFormat::Avif,
                50,
                Fit::Inside,
                640,
                Lossless::On,
            ),
            variant_tag_auto(
                "1:abc",
                OutputFormat::Webp,
                80,
                Fit::Inside,
                320,
                Lossless::Off,
                Some("auto:good/1"),
            ),
            size_variant_tag("1:abc", OutputFormat::Webp, 80, &size, point, Lossless::Off),
            size_variant_tag_auto(
                "1:abc",
                OutputFormat::Png,
                80,
                &size,
                None,
                Lossless::Auto,
                Some("auto:eco/1"),
            ),
        ];
        assert_eq!(got, PINNED);
    }

    use super::*;

    #[test]
    fn upload_keys_round_trip() {
        let k = upload_key("b-1", "f_2");
        assert_eq!(k, "uploads/b-1/f_2");
        assert_eq!(parse_upload_key(&k), Some(("b-1", "f_2")));
        assert_eq!(parse_upload_key("uploads/b/../x"), None);
        assert_eq!(parse_upload_key("uploads/b/f/extra"), None);
        assert_eq!(parse_upload_key("media/b/f"), None);
        assert_eq!(parse_upload_key("uploads//f"), None);
    }

    #[test]
    fn auto_quality_tags_differ_from_fixed_ones_and_from_each_other() {
        let fixed = variant_tag(
            "1:{}",
            OutputFormat::Webp,
            80,
            Fit::Inside,
            320,
            Lossless::Off,
        );
        let tag = |auto| {
            variant_tag_auto(
                "1:{}",
                OutputFormat::Webp,
                80,
                Fit::Inside,
                320,
                Lossless::Off,
                auto,
            )
        };
        assert_eq!(tag(None), fixed, "no auto is the plain tag exactly");
        let good = tag(Some("auto:good/1"));
        let set = [
            fixed.clone(),
            good.clone(),
            tag(Some("auto:eco/1")),
            tag(Some("auto:good/2")),
        ];
        let distinct: std::collections::BTreeSet<_> = set.iter().collect();
        assert_eq!(distinct.len(), set.len(), "{set:?}");
        let size = SizeSpec {
            width: 64,
            height: 64,
            fit: Fit::Cover,
            focus: Focus::Center,
            background: None,
        };
        let plain = size_variant_tag("1:{}", OutputFormat::Avif, 50, &size, None, Lossless::Off);
        let auto = |a| {
            size_variant_tag_auto(
                "1:{}",
                OutputFormat::Avif,
                50,
                &size,
                None,
                Lossless::Off,
                a,
            )
        };
        assert_eq!(auto(None), plain);
        assert_ne!(auto(Some("auto:good/1")), plain);
    }

    #[test]
    fn variant_tags_name_everything_that_determines_the_bytes() {
        let base = variant_tag(
            "1:{}",
            OutputFormat::Webp,
            80,
            Fit::Inside,
            320,
            Lossless::Off,
        );
        assert_eq!(base.len(), VARIANT_TAG_LEN);
        // Deterministic: the same render writes the same key (idempotent overwrite).
        assert_eq!(
            base,
            variant_tag(
                "1:{}",
                OutputFormat::Webp,
                80,
                Fit::Inside,
                320,
                Lossless::Off
            )
        );
        // Pinned: changing the scheme changes every key, which must be deliberate.
        assert_eq!(base, "16de6b5151");
        let others = [
            variant_tag(
                "2:{}",
                OutputFormat::Webp,
                80,
                Fit::Inside,
                320,
                Lossless::Off,
            ),
            variant_tag(
                "1:{\"avif_speed\":7}",
                OutputFormat::Webp,
                80,
                Fit::Inside,
                320,
                Lossless::Off,
            ),
            variant_tag(
                "1:{}",
                OutputFormat::Avif,
                80,
                Fit::Inside,
                320,
                Lossless::Off,
            ),
            variant_tag(
                "1:{}",
                OutputFormat::Webp,
                81,
                Fit::Inside,
                320,
                Lossless::Off,
            ),
            variant_tag(
                "1:{}",
                OutputFormat::Webp,
                80,
                Fit::Inside,
                640,
                Lossless::Off,
            ),
            variant_tag(
                "1:{}",
                OutputFormat::Webp,
                80,
                Fit::Inside,
                320,
                Lossless::On,
            ),
            variant_tag(
                "1:{}",
                OutputFormat::Webp,
                80,
                Fit::Inside,
                320,
                Lossless::Auto,
            ),
            variant_tag(
                "1:{}",
                OutputFormat::Jpeg,
                80,
                Fit::Inside,
                320,
                Lossless::Off,
            ),
            variant_tag(
                "1:{}",
                OutputFormat::Png,
                0,
                Fit::Inside,
                320,
                Lossless::Off,
            ),
        ];
        for (i, t) in others.iter().enumerate() {
            assert_ne!(*t, base, "input {i} does not change the tag");
        }
        let distinct: std::collections::BTreeSet<_> = others.iter().collect();
        assert_eq!(distinct.len(), others.len(), "two inputs share a tag");
    }

    #[test]
    fn variant_keys_round_trip() {
        let tag = variant_tag("e", OutputFormat::Avif, 50, Fit::Inside, 320, Lossless::Off);
        let key = variant_key("b", "f", 320, &tag, OutputFormat::Avif);
        assert_eq!(key, format!("media/b/f/320w.{tag}.avif"));
        assert_eq!(parse_media_key(&key), Some(("b", "f", MediaKind::Variant)));
        let name = key.rsplit('/').next().unwrap();
        assert_eq!(
            parse_variant_name(name),
            Some((320, tag.as_str(), OutputFormat::Avif))
        );
        for bad in [
            "320w.avif",
            "320w.0123456789.gif",
            "320w.0123456789.jpeg",
            "320w.0123456789.JPG",
            "320w.0123456789a.webp",
            "320w.012345678G.webp",
            "w.0123456789.webp",
            "99999999999w.0123456789.webp",
            "-1w.0123456789.webp",
        ] {
            assert_eq!(parse_variant_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn size_keys_round_trip_and_old_keys_still_parse() {
        let size = SizeSpec {
            width: 256,
            height: 128,
            fit: Fit::Cover,
            focus: Focus::Auto,
            background: None,
        };
        let tag = size_variant_tag("e", OutputFormat::Webp, 80, &size, None, Lossless::Off);
        let key = size_variant_key("b", "f", &size, &tag, OutputFormat::Webp);
        assert_eq!(key, format!("media/b/f/256x128-cover.{tag}.webp"));
        assert_eq!(parse_media_key(&key), Some(("b", "f", MediaKind::Variant)));
        let name = key.rsplit('/').next().unwrap();
        assert_eq!(
            parse_variant_label(name),
            Some((
                VariantLabel::Size {
                    width: 256,
                    height: 128,
                    fit: Fit::Cover
                },
                tag.as_str(),
                OutputFormat::Webp
            ))
        );
        assert_eq!(
            parse_variant_name(name),
            Some((256, tag.as_str(), OutputFormat::Webp))
        );
        assert_eq!(
            parse_variant_label("320w.0123456789.webp"),
            Some((VariantLabel::Width(320), "0123456789", OutputFormat::Webp))
        );
        for bad in [
            "256x128-fill.0123456789.webp",
            "256x-cover.0123456789.webp",
            "x128-cover.0123456789.webp",
            "256x128.0123456789.webp",
            "256x128-cover.012345678.webp",
            "999999x1-cover.0123456789.webp",
        ] {
            assert_eq!(parse_variant_label(bad), None, "{bad}");
        }
    }

    #[test]
    fn jpeg_and_png_keys_round_trip() {
        for (format, ext) in [(OutputFormat::Jpeg, "jpg"), (OutputFormat::Png, "png")] {
            let tag = variant_tag("e", format, 80, Fit::Inside, 640, Lossless::Off);
            let key = variant_key("b", "f", 640, &tag, format);
            assert_eq!(key, format!("media/b/f/640w.{tag}.{ext}"));
            assert_eq!(parse_media_key(&key), Some(("b", "f", MediaKind::Variant)));
            let name = key.rsplit('/').next().unwrap();
            assert_eq!(parse_variant_name(name), Some((640, tag.as_str(), format)));
        }
    }

    #[test]
    fn size_tags_name_everything_that_determines_the_bytes() {
        let size = SizeSpec {
            width: 256,
            height: 128,
            fit: Fit::Cover,
            focus: Focus::FocalPoint,
            background: None,
        };
        let p = Some(FocalPoint { x: 0.25, y: 0.5 });
        let base = size_variant_tag("e", OutputFormat::Webp, 80, &size, p, Lossless::Off);
        let contain = SizeSpec {
            fit: Fit::Contain,
            focus: Focus::Center,
            ..size
        };
        let c = size_variant_tag("e", OutputFormat::Webp, 80, &contain, None, Lossless::Off);
        let others = [
            size_variant_tag("f", OutputFormat::Webp, 80, &size, p, Lossless::Off),
            size_variant_tag("e", OutputFormat::Avif, 80, &size, p, Lossless::Off),
            size_variant_tag("e", OutputFormat::Webp, 81, &size, p, Lossless::Off),
            size_variant_tag("e", OutputFormat::Webp, 80, &size, None, Lossless::Off),
            size_variant_tag(
                "e",
                OutputFormat::Webp,
                80,
                &size,
                Some(FocalPoint { x: 0.25, y: 0.6 }),
                Lossless::Off,
            ),
            size_variant_tag(
                "e",
                OutputFormat::Webp,
                80,
                &SizeSpec { width: 255, ..size },
                p,
                Lossless::Off,
            ),
            size_variant_tag(
                "e",
                OutputFormat::Webp,
                80,
                &SizeSpec {
                    height: 127,
                    ..size
                },
                p,
                Lossless::Off,
            ),
            size_variant_tag(
                "e",
                OutputFormat::Webp,
                80,
                &SizeSpec {
                    focus: Focus::Auto,
                    ..size
                },
                p,
                Lossless::Off,
            ),
            size_variant_tag("e", OutputFormat::Webp, 80, &size, p, Lossless::On),
            c.clone(),
            variant_tag("e", OutputFormat::Webp, 80, Fit::Inside, 256, Lossless::Off),
        ];
        for (i, t) in others.iter().enumerate() {
            assert_ne!(*t, base, "input {i} does not change the tag");
        }
        // The pad colour names contain's bytes; the focal point does not (it only moves crops).
        let red = SizeSpec {
            background: Some(crate::variant::Background([255, 0, 0, 255])),
            ..contain
        };
        assert_ne!(
            size_variant_tag("e", OutputFormat::Webp, 80, &red, None, Lossless::Off),
            c
        );
        assert_eq!(
            size_variant_tag("e", OutputFormat::Webp, 80, &contain, p, Lossless::Off),
            c
        );
    }

    #[test]
    fn animated_still_size_and_lossless_keys_never_collide() {
        // Every key one file can get for one engine: widths and sizes of every fit, still and
        // animated (WebP only animates), every lossless setting, every format.
        let size = |fit| SizeSpec {
            width: 256,
            height: 256,
            fit,
            focus: Focus::Center,
            background: None,
        };
        let mut keys = std::collections::BTreeSet::new();
        let mut n = 0;
        for animated in [false, true] {
            let engine = tag_engine("1:{}", animated);
            for format in [
                OutputFormat::Webp,
                OutputFormat::Avif,
                OutputFormat::Jpeg,
                OutputFormat::Png,
            ] {
                if animated && format != OutputFormat::Webp {
                    continue;
                }
                for lossless in [Lossless::Off, Lossless::On, Lossless::Auto] {
                    let l = if format == OutputFormat::Webp {
                        lossless
                    } else {
                        Lossless::Off
                    };
                    let tag = variant_tag(&engine, format, 80, Fit::Inside, 256, l);
                    keys.insert(variant_key("b", "f", 256, &tag, format));
                    n += 1;
                    for fit in [Fit::Inside, Fit::Cover, Fit::Contain] {
                        let s = size(fit);
                        let tag = size_variant_tag(&engine, format, 80, &s, None, l);
                        keys.insert(size_variant_key("b", "f", &s, &tag, format));
                        n += 1;
                    }
                }
            }
        }
        // Formats other than WebP ignore the lossless setting: their three entries are one key.
        // 12 still WebP (3 lossless × 4 shapes), 36 for the other formats, 12 animated WebP.
        assert_eq!(n, 60);
        // ... and 36 distinct keys: 12 still WebP, 3 × 4 other formats, 12 animated WebP.
        assert_eq!(keys.len(), 36);
        // A still variant's engine is the engine as it was before animations existed.
        assert_eq!(tag_engine("1:{}", false), "1:{}");
        assert_ne!(tag_engine("1:{}", true), "1:{}");
    }

    #[test]
    fn media_keys_are_classified() {
        assert_eq!(
            parse_media_key(&manifest_key("b", "f")),
            Some(("b", "f", MediaKind::Manifest))
        );
        assert_eq!(
            parse_media_key(&failure_key("b", "f")),
            Some(("b", "f", MediaKind::Failure))
        );
        assert_eq!(
            parse_media_key(&original_key("b", "f")),
            Some(("b", "f", MediaKind::Other))
        );
        assert_eq!(parse_media_key("media/b/f"), None);
        assert_eq!(parse_media_key("media/b c/f/manifest.json"), None);
    }
}
