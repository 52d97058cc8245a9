//! Object keys (DESIGN §4). Keys are deterministic so redelivery overwrites the same objects.
//!
//! - uploads: `uploads/{batch_id}/{file_id}` (the client's file name travels as metadata)
//! - variants: `media/{batch_id}/{file_id}/{width}w.{format}`
//! - then `media/{batch_id}/{file_id}/manifest.json` last, or `failure.json`
//! - `media/{batch_id}/{file_id}/original` when the batch keeps originals.

use crate::variant::OutputFormat;

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

/// `media/{batch_id}/{file_id}/{width}w.{format}`.
pub fn variant_key(batch_id: &str, file_id: &str, width: u32, format: OutputFormat) -> String {
    format!(
        "{}{width}w.{}",
        media_dir(batch_id, file_id),
        format.as_str()
    )
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
    /// A variant or the original.
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
        _ => MediaKind::Other,
    };
    Some((batch, file, kind))
}

#[cfg(test)]
mod tests {
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
    fn media_keys_are_classified() {
        assert_eq!(
            variant_key("b", "f", 320, OutputFormat::Avif),
            "media/b/f/320w.avif"
        );
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
