//! Presigned uploads and downloads for the embedded backend, as strict as S3's POST policy.
//!
//! The upload grant is an S3-style POST form: `key`, `Content-Type`, `x-amz-meta-*`, a base64
//! JSON `policy` (expiration + conditions) and `x-prism-signature`, an HMAC-SHA256 of the policy
//! under a secret shared by every process of a data dir. [`LocalSigner::verify_post`] enforces
//! what S3 enforces: a valid signature, an unexpired policy, every condition (exact key, content
//! type, metadata, `content-length-range`), and no form field the policy does not cover.
//!
//! The PUT grant ([`LocalSigner::presign_put`]) is a URL whose query names the grant's terms
//! (`content-type`, the exact `content-length`, every `x-amz-meta-*` value, `expires`) and an
//! HMAC-SHA256 `signature` over the method, bucket, key and those terms.
//! [`LocalSigner::verify_put_query`] checks the signature and expiry from the URL alone; the
//! returned [`PutGrant`] then checks the request's headers (the exact `Content-Type`, every
//! `x-amz-meta-*` header exactly and no other) and its length, as S3 checks the signed headers
//! of a presigned PutObject.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::port::blob_store::{PresignedUpload, UploadMethod, UploadPolicy};

type HmacSha256 = Hmac<Sha256>;

/// Form field carrying the signature.
pub const SIGNATURE_FIELD: &str = "x-prism-signature";
/// Form field carrying the policy.
pub const POLICY_FIELD: &str = "policy";
/// File name of the shared signing secret inside a data dir.
pub const SECRET_FILE: &str = "signing-key";

/// Why an upload or download grant is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// A required field is missing.
    #[error("missing form field {0:?}")]
    Missing(String),
    /// The signature does not match.
    #[error("signature does not match")]
    BadSignature,
    /// The policy is not base64 JSON of the expected shape.
    #[error("malformed policy: {0}")]
    Malformed(String),
    /// The grant expired.
    #[error("grant expired")]
    Expired,
    /// A form field breaks a policy condition.
    #[error("field {0:?} does not satisfy the policy")]
    ConditionFailed(String),
    /// A form field that no policy condition covers.
    #[error("field {0:?} is not allowed by the policy")]
    Uncovered(String),
    /// The body is outside `content-length-range`.
    #[error("body of {size} bytes is outside the allowed {min}..={max}")]
    SizeOutOfRange {
        /// Body size.
        size: u64,
        /// Minimum.
        min: u64,
        /// Maximum.
        max: u64,
    },
}

impl GrantError {
    /// HTTP status S3 would answer: 400 for a size outside the range, 403 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::SizeOutOfRange { .. } | Self::Missing(_) | Self::Malformed(_) => 400,
            _ => 403,
        }
    }
}

/// What a verified POST upload may store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUpload {
    /// The key.
    pub key: String,
    /// The content type.
    pub content_type: String,
    /// User metadata (without `x-amz-meta-`).
    pub metadata: BTreeMap<String, String>,
}

/// A POST upload whose form fields verified; the file's size is still to be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostGrant {
    /// What the upload may store.
    pub upload: VerifiedUpload,
    min_bytes: u64,
    max_bytes: u64,
}

impl PostGrant {
    /// The largest file the grant allows.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Check a file's size against the grant's `content-length-range`.
    ///
    /// # Errors
    /// [`GrantError::SizeOutOfRange`].
    pub fn check_size(&self, size: u64) -> Result<(), GrantError> {
        if size < self.min_bytes || size > self.max_bytes {
            return Err(GrantError::SizeOutOfRange {
                size,
                min: self.min_bytes,
                max: self.max_bytes,
            });
        }
        Ok(())
    }
}

/// A PUT upload whose URL verified (signature, expiry); its headers and length are still to be
/// checked against the grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutGrant {
    /// What the upload may store.
    pub upload: VerifiedUpload,
    size: u64,
}

/// Largest query string of a PUT grant (the metadata values make most of it).
pub const MAX_PUT_QUERY_BYTES: usize = 16 * 1024;
/// Most terms in a PUT grant's query.
const MAX_PUT_TERMS: usize = 64;
/// Query parameter of a PUT grant carrying the signature.
pub const PUT_SIGNATURE_PARAM: &str = "signature";

impl PutGrant {
    /// The exact body length the grant allows.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Check the request's `Content-Type` and its `x-amz-meta-*` headers (names without the
    /// prefix, lower-case) against the grant: the content type exactly, every granted entry
    /// exactly, and nothing beyond them.
    ///
    /// # Errors
    /// [`GrantError::ConditionFailed`] for a missing or different value,
    /// [`GrantError::Uncovered`] for metadata the grant does not name.
    pub fn check_headers(
        &self,
        content_type: Option<&str>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), GrantError> {
        if content_type != Some(self.upload.content_type.as_str()) {
            return Err(GrantError::ConditionFailed("content-type".into()));
        }
        for (k, v) in &self.upload.metadata {
            if metadata.get(k) != Some(v) {
                return Err(GrantError::ConditionFailed(format!("x-amz-meta-{k}")));
            }
        }
        if let Some(extra) = metadata
            .keys()
            .find(|k| !self.upload.metadata.contains_key(*k))
        {
            return Err(GrantError::Uncovered(format!("x-amz-meta-{extra}")));
        }
        Ok(())
    }

    /// Check a body length against the grant's exact size.
    ///
    /// # Errors
    /// [`GrantError::SizeOutOfRange`].
    pub fn check_size(&self, size: u64) -> Result<(), GrantError> {
        if size != self.size {
            return Err(GrantError::SizeOutOfRange {
                size,
                min: self.size,
                max: self.size,
            });
        }
        Ok(())
    }
}

/// Signs and verifies grants for one data dir.
#[derive(Clone)]
pub struct LocalSigner {
    base_url: Arc<str>,
    secret: Arc<[u8]>,
}

impl std::fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSigner")
            .field("base_url", &self.base_url)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl LocalSigner {
    /// A signer issuing URLs under `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base_url: &str, secret: &[u8]) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').into(),
            secret: secret.into(),
        }
    }

    /// Load the data dir's secret, creating a random one on first use (mode 0600).
    ///
    /// # Errors
    /// I/O failures reading or creating the file.
    pub fn load_or_create_secret(data_dir: &Path) -> std::io::Result<Vec<u8>> {
        load_or_create_key(data_dir, SECRET_FILE)
    }
}

/// Load the 32-byte secret in `data_dir/file`, creating a random one (mode 0600) on first use;
/// concurrent first uses by several processes agree on one secret.
///
/// # Errors
/// I/O failures reading or creating the file.
pub fn load_or_create_key(data_dir: &Path, file: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let path = data_dir.join(file);
    if let Ok(s) = std::fs::read(&path)
        && s.len() >= 32
    {
        return Ok(s);
    }
    std::fs::create_dir_all(data_dir)?;
    let secret: [u8; 32] = rand::random();
    let tmp = data_dir.join(format!(".{file}.{}", uuid::Uuid::new_v4()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(&secret)?;
    f.sync_all()?;
    // Two processes racing here: hard_link fails for the loser, which then reads the winner's
    // secret, so every process ends up with the same one.
    let won = std::fs::hard_link(&tmp, &path).is_ok();
    std::fs::remove_file(&tmp)?;
    if won {
        Ok(secret.to_vec())
    } else {
        std::fs::read(&path)
    }
}

impl LocalSigner {
    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn mac(&self, data: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any size");
        m.update(data);
        m
    }

    fn sign(&self, data: &[u8]) -> String {
        hex::encode(self.mac(data).finalize().into_bytes())
    }

    fn check(&self, data: &[u8], signature_hex: &str) -> Result<(), GrantError> {
        let sig = hex::decode(signature_hex).map_err(|_| GrantError::BadSignature)?;
        // verify_slice compares in constant time.
        self.mac(data)
            .verify_slice(&sig)
            .map_err(|_| GrantError::BadSignature)
    }

    /// A POST-form upload grant for `bucket` under `policy`.
    pub fn presign_post(
        &self,
        bucket: &str,
        policy: &UploadPolicy,
        now: OffsetDateTime,
    ) -> PresignedUpload {
        let expires_at = now + policy.expires_in;
        let mut conditions = vec![
            json!({"bucket": bucket}),
            json!({"key": policy.key}),
            json!({"content-type": policy.content_type}),
            json!(["content-length-range", 1, policy.max_bytes]),
        ];
        let mut fields = BTreeMap::new();
        fields.insert("key".to_owned(), policy.key.clone());
        fields.insert("Content-Type".to_owned(), policy.content_type.clone());
        for (k, v) in &policy.metadata {
            let name = format!("x-amz-meta-{k}");
            conditions.push(json!({ name.clone(): v }));
            fields.insert(name, v.clone());
        }
        let doc = json!({
            "expiration": expires_at.format(&Rfc3339).expect("RFC 3339 formats any time"),
            "conditions": conditions,
        });
        let encoded = B64.encode(doc.to_string());
        fields.insert(SIGNATURE_FIELD.to_owned(), self.sign(encoded.as_bytes()));
        fields.insert(POLICY_FIELD.to_owned(), encoded);
        PresignedUpload {
            method: UploadMethod::Post,
            url: format!("{}/local/upload/{bucket}", self.base_url),
            fields: Some(fields),
            headers: None,
            expires_at,
        }
    }

    /// The string a PUT grant's signature covers: method, bucket, key and the sorted terms,
    /// form-encoded (so no value can forge a separator).
    fn put_payload(bucket: &str, key: &str, terms: &BTreeMap<String, String>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in terms {
            q.append_pair(k, v);
        }
        format!("PUT\n{bucket}\n{key}\n{}", q.finish())
    }

    /// A PUT upload grant for `bucket` under `policy`: the body must be exactly
    /// `policy.max_bytes` long and carry the returned headers (content type and metadata).
    pub fn presign_put(
        &self,
        bucket: &str,
        policy: &UploadPolicy,
        now: OffsetDateTime,
    ) -> PresignedUpload {
        let expires_at = now + policy.expires_in;
        let mut terms = BTreeMap::new();
        let mut headers = BTreeMap::new();
        terms.insert("content-type".to_owned(), policy.content_type.clone());
        terms.insert("content-length".to_owned(), policy.max_bytes.to_string());
        terms.insert(
            "expires".to_owned(),
            expires_at.unix_timestamp().to_string(),
        );
        headers.insert("content-type".to_owned(), policy.content_type.clone());
        for (k, v) in &policy.metadata {
            let name = format!("x-amz-meta-{k}");
            terms.insert(name.clone(), v.clone());
            headers.insert(name, v.clone());
        }
        let sig = self.sign(Self::put_payload(bucket, &policy.key, &terms).as_bytes());
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &terms {
            q.append_pair(k, v);
        }
        q.append_pair(PUT_SIGNATURE_PARAM, &sig);
        PresignedUpload {
            method: UploadMethod::Put,
            url: format!(
                "{}/local/upload/{bucket}/{}?{}",
                self.base_url,
                encode_path(&policy.key),
                q.finish()
            ),
            fields: None,
            headers: Some(headers),
            expires_at,
        }
    }

    /// Verify a PUT upload's URL: `query` is its raw query string (at most
    /// [`MAX_PUT_QUERY_BYTES`]), `key` the decoded key of its path. Checks the signature and the
    /// expiry; the returned grant checks the headers and the length.
    ///
    /// # Errors
    /// The first rule the URL breaks.
    pub fn verify_put_query(
        &self,
        bucket: &str,
        key: &str,
        query: &str,
        now: OffsetDateTime,
    ) -> Result<PutGrant, GrantError> {
        if query.len() > MAX_PUT_QUERY_BYTES {
            return Err(GrantError::Malformed(format!(
                "the query is over {MAX_PUT_QUERY_BYTES} bytes"
            )));
        }
        let mut terms = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if terms.len() >= MAX_PUT_TERMS {
                return Err(GrantError::Malformed("too many query parameters".into()));
            }
            if terms.insert(k.into_owned(), v.into_owned()).is_some() {
                return Err(GrantError::Malformed(
                    "a query parameter appears twice".into(),
                ));
            }
        }
        let sig = terms
            .remove(PUT_SIGNATURE_PARAM)
            .ok_or_else(|| GrantError::Missing(PUT_SIGNATURE_PARAM.into()))?;
        self.check(Self::put_payload(bucket, key, &terms).as_bytes(), &sig)?;
        let num = |name: &str| {
            terms
                .get(name)
                .and_then(|v| v.parse::<i64>().ok())
                .ok_or_else(|| GrantError::Malformed(format!("no valid {name}")))
        };
        if now.unix_timestamp() >= num("expires")? {
            return Err(GrantError::Expired);
        }
        let size = u64::try_from(num("content-length")?)
            .map_err(|_| GrantError::Malformed("no valid content-length".into()))?;
        let content_type = terms
            .get("content-type")
            .cloned()
            .ok_or_else(|| GrantError::Malformed("no content-type".into()))?;
        let metadata = terms
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("x-amz-meta-")
                    .map(|m| (m.to_owned(), v.clone()))
            })
            .collect();
        Ok(PutGrant {
            upload: VerifiedUpload {
                key: key.to_owned(),
                content_type,
                metadata,
            },
            size,
        })
    }

    /// Verify a POST upload to `bucket`: `fields` are the form fields before the file (names
    /// compared case-insensitively, as S3 does), `size` the file's length.
    ///
    /// # Errors
    /// The first rule the upload breaks.
    pub fn verify_post(
        &self,
        bucket: &str,
        fields: &BTreeMap<String, String>,
        size: u64,
        now: OffsetDateTime,
    ) -> Result<VerifiedUpload, GrantError> {
        let grant = self.verify_post_fields(bucket, fields, now)?;
        grant.check_size(size)?;
        Ok(grant.upload)
    }

    /// Verify a POST upload's form fields (every one before the file) without its file: the
    /// signature, expiry and every condition but `content-length-range`, which the returned
    /// grant checks once the file's size is known ([`PostGrant::check_size`]); its
    /// [`PostGrant::max_bytes`] bounds what a caller needs to read of the file.
    ///
    /// # Errors
    /// The first rule the fields break.
    pub fn verify_post_fields(
        &self,
        bucket: &str,
        fields: &BTreeMap<String, String>,
        now: OffsetDateTime,
    ) -> Result<PostGrant, GrantError> {
        let mut lower: BTreeMap<String, &str> = BTreeMap::new();
        for (k, v) in fields {
            if lower.insert(k.to_ascii_lowercase(), v.as_str()).is_some() {
                return Err(GrantError::ConditionFailed(k.clone()));
            }
        }
        let get = |name: &str| {
            lower
                .get(name)
                .copied()
                .ok_or_else(|| GrantError::Missing(name.to_owned()))
        };
        let encoded = get(POLICY_FIELD)?;
        self.check(encoded.as_bytes(), get(SIGNATURE_FIELD)?)?;
        let doc: Value = B64
            .decode(encoded)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| GrantError::Malformed("not base64 JSON".into()))?;
        let expiration = doc["expiration"]
            .as_str()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
            .ok_or_else(|| GrantError::Malformed("no valid expiration".into()))?;
        if now >= expiration {
            return Err(GrantError::Expired);
        }
        let conditions = doc["conditions"]
            .as_array()
            .ok_or_else(|| GrantError::Malformed("no conditions".into()))?;
        let mut covered = vec![POLICY_FIELD.to_owned(), SIGNATURE_FIELD.to_owned()];
        let mut range = None;
        for c in conditions {
            match c {
                Value::Object(m) if m.len() == 1 => {
                    let (name, want) = m.iter().next().expect("one entry");
                    let want = want
                        .as_str()
                        .ok_or_else(|| GrantError::Malformed(name.clone()))?;
                    let name = name.to_ascii_lowercase();
                    let have = if name == "bucket" {
                        bucket
                    } else {
                        get(&name)?
                    };
                    if have != want {
                        return Err(GrantError::ConditionFailed(name));
                    }
                    covered.push(name);
                }
                Value::Array(a)
                    if a.first().and_then(Value::as_str) == Some("content-length-range") =>
                {
                    let (Some(min), Some(max)) = (
                        a.get(1).and_then(Value::as_u64),
                        a.get(2).and_then(Value::as_u64),
                    ) else {
                        return Err(GrantError::Malformed("content-length-range".into()));
                    };
                    if range.replace((min, max)).is_some() {
                        return Err(GrantError::Malformed("two content-length-ranges".into()));
                    }
                }
                _ => return Err(GrantError::Malformed(format!("condition {c}"))),
            }
        }
        let Some((min_bytes, max_bytes)) = range else {
            return Err(GrantError::Malformed("no content-length-range".into()));
        };
        if let Some(extra) = lower.keys().find(|k| !covered.contains(k)) {
            return Err(GrantError::Uncovered(extra.clone()));
        }
        let metadata = lower
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("x-amz-meta-")
                    .map(|m| (m.to_owned(), (*v).to_owned()))
            })
            .collect();
        Ok(PostGrant {
            upload: VerifiedUpload {
                key: get("key")?.to_owned(),
                content_type: get("content-type")?.to_owned(),
                metadata,
            },
            min_bytes,
            max_bytes,
        })
    }

    fn get_payload(bucket: &str, key: &str, expires: i64) -> String {
        format!("GET\n{bucket}\n{key}\n{expires}")
    }

    /// A URL that reads `bucket/key` until `expires_in` passes.
    pub fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
        now: OffsetDateTime,
    ) -> String {
        let expires = (now + expires_in).unix_timestamp();
        let sig = self.sign(Self::get_payload(bucket, key, expires).as_bytes());
        format!(
            "{}/local/object/{bucket}/{}?expires={expires}&signature={sig}",
            self.base_url,
            encode_path(key)
        )
    }

    /// Verify a download grant.
    ///
    /// # Errors
    /// [`GrantError::Expired`] or [`GrantError::BadSignature`].
    pub fn verify_get(
        &self,
        bucket: &str,
        key: &str,
        expires: i64,
        signature: &str,
        now: OffsetDateTime,
    ) -> Result<(), GrantError> {
        self.check(
            Self::get_payload(bucket, key, expires).as_bytes(),
            signature,
        )?;
        if now.unix_timestamp() >= expires {
            return Err(GrantError::Expired);
        }
        Ok(())
    }
}

/// Percent-encode a key for a URL path, keeping `/`.
pub fn encode_path(key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(key, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> UploadPolicy {
        UploadPolicy {
            key: "uploads/b/f".into(),
            content_type: "image/jpeg".into(),
            max_bytes: 100,
            metadata: BTreeMap::from([("prism-file-name".into(), "a%20b.jpg".into())]),
            expires_in: Duration::from_secs(60),
            method: UploadMethod::Post,
        }
    }

    fn grant() -> (LocalSigner, BTreeMap<String, String>, OffsetDateTime) {
        let s = LocalSigner::new("http://127.0.0.1:1/", b"secret-secret-secret-secret-0000");
        let now = OffsetDateTime::now_utc();
        let p = s.presign_post("uploads", &policy(), now);
        assert_eq!(p.url, "http://127.0.0.1:1/local/upload/uploads");
        (s, p.fields.unwrap(), now)
    }

    #[test]
    fn a_faithful_upload_verifies() {
        let (s, fields, now) = grant();
        let v = s.verify_post("uploads", &fields, 100, now).unwrap();
        assert_eq!(v.key, "uploads/b/f");
        assert_eq!(v.content_type, "image/jpeg");
        assert_eq!(v.metadata["prism-file-name"], "a%20b.jpg");
    }

    #[test]
    fn every_tampering_is_refused() {
        let (s, fields, now) = grant();
        let tamper = |k: &str, v: &str| {
            let mut f = fields.clone();
            f.insert(k.into(), v.into());
            s.verify_post("uploads", &f, 10, now).unwrap_err()
        };
        assert_eq!(
            tamper("key", "uploads/b/other"),
            GrantError::ConditionFailed("key".into())
        );
        assert_eq!(
            tamper("Content-Type", "text/html"),
            GrantError::ConditionFailed("content-type".into())
        );
        assert_eq!(
            tamper("x-amz-meta-prism-file-name", "x"),
            GrantError::ConditionFailed("x-amz-meta-prism-file-name".into())
        );
        assert_eq!(
            tamper("x-amz-meta-extra", "x"),
            GrantError::Uncovered("x-amz-meta-extra".into())
        );
        assert_eq!(tamper(SIGNATURE_FIELD, "00"), GrantError::BadSignature);
        assert_eq!(tamper(SIGNATURE_FIELD, "zz"), GrantError::BadSignature);
        // A policy re-encoded by the client (e.g. a longer expiry) no longer matches the signature.
        let forged = B64.encode(r#"{"expiration":"2999-01-01T00:00:00Z","conditions":[]}"#);
        assert_eq!(tamper(POLICY_FIELD, &forged), GrantError::BadSignature);
        // Another bucket.
        assert_eq!(
            s.verify_post("media", &fields, 10, now).unwrap_err(),
            GrantError::ConditionFailed("bucket".into())
        );
        // A field written twice with different case.
        let mut dup = fields.clone();
        dup.insert("KEY".into(), "uploads/b/f".into());
        assert!(s.verify_post("uploads", &dup, 10, now).is_err());
    }

    #[test]
    fn size_and_expiry_are_enforced() {
        let (s, fields, now) = grant();
        assert_eq!(
            s.verify_post("uploads", &fields, 101, now).unwrap_err(),
            GrantError::SizeOutOfRange {
                size: 101,
                min: 1,
                max: 100
            }
        );
        assert_eq!(
            s.verify_post("uploads", &fields, 0, now)
                .unwrap_err()
                .http_status(),
            400
        );
        let later = now + Duration::from_secs(61);
        assert_eq!(
            s.verify_post("uploads", &fields, 10, later).unwrap_err(),
            GrantError::Expired
        );
    }

    #[test]
    fn fields_verify_before_the_file_and_bound_it() {
        let (s, fields, now) = grant();
        let g = s.verify_post_fields("uploads", &fields, now).unwrap();
        assert_eq!(g.max_bytes(), 100);
        assert_eq!(
            g.upload,
            s.verify_post("uploads", &fields, 100, now).unwrap()
        );
        g.check_size(100).unwrap();
        assert_eq!(g.check_size(0).unwrap_err().http_status(), 400);
        let later = now + Duration::from_secs(61);
        assert_eq!(
            s.verify_post_fields("uploads", &fields, later).unwrap_err(),
            GrantError::Expired
        );
        let mut f = fields.clone();
        f.insert(SIGNATURE_FIELD.into(), "00".repeat(32));
        assert_eq!(
            s.verify_post_fields("uploads", &f, now).unwrap_err(),
            GrantError::BadSignature
        );
    }

    #[test]
    fn missing_fields_and_other_secrets_are_refused() {
        let (s, fields, now) = grant();
        let mut f = fields.clone();
        f.remove(POLICY_FIELD);
        assert_eq!(
            s.verify_post("uploads", &f, 10, now).unwrap_err(),
            GrantError::Missing("policy".into())
        );
        let other = LocalSigner::new("http://x", b"another-secret-another-secret-00");
        assert_eq!(
            other.verify_post("uploads", &fields, 10, now).unwrap_err(),
            GrantError::BadSignature
        );
    }

    #[test]
    fn download_grants_verify_and_expire() {
        let s = LocalSigner::new("http://h", b"k");
        let now = OffsetDateTime::now_utc();
        let url = s.presign_get("media", "media/b/f/320w.webp", Duration::from_secs(5), now);
        let q = url.split_once('?').unwrap().1;
        let params: BTreeMap<_, _> = form_urlencoded::parse(q.as_bytes()).into_owned().collect();
        let exp: i64 = params["expires"].parse().unwrap();
        s.verify_get(
            "media",
            "media/b/f/320w.webp",
            exp,
            &params["signature"],
            now,
        )
        .unwrap();
        assert_eq!(
            s.verify_get(
                "media",
                "media/b/f/640w.webp",
                exp,
                &params["signature"],
                now
            ),
            Err(GrantError::BadSignature)
        );
        assert_eq!(
            s.verify_get(
                "media",
                "media/b/f/320w.webp",
                exp + 1,
                &params["signature"],
                now
            ),
            Err(GrantError::BadSignature)
        );
        let later = now + Duration::from_secs(6);
        assert_eq!(
            s.verify_get(
                "media",
                "media/b/f/320w.webp",
                exp,
                &params["signature"],
                later
            ),
            Err(GrantError::Expired)
        );
    }

    fn put_grant() -> (
        LocalSigner,
        String,
        BTreeMap<String, String>,
        OffsetDateTime,
    ) {
        let s = LocalSigner::new("http://127.0.0.1:1/", b"secret-secret-secret-secret-0000");
        let now = OffsetDateTime::now_utc();
        let p = s.presign_put(
            "uploads",
            &UploadPolicy {
                method: UploadMethod::Put,
                ..policy()
            },
            now,
        );
        assert_eq!(p.method, UploadMethod::Put);
        assert!(p.fields.is_none());
        let (path, query) = p.url.split_once('?').unwrap();
        assert_eq!(path, "http://127.0.0.1:1/local/upload/uploads/uploads/b/f");
        (s, query.to_owned(), p.headers.unwrap(), now)
    }

    fn meta(headers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        headers
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("x-amz-meta-").map(|m| (m.into(), v.clone())))
            .collect()
    }

    #[test]
    fn a_faithful_put_verifies() {
        let (s, q, headers, now) = put_grant();
        assert_eq!(
            headers,
            BTreeMap::from([
                ("content-type".to_owned(), "image/jpeg".to_owned()),
                (
                    "x-amz-meta-prism-file-name".to_owned(),
                    "a%20b.jpg".to_owned()
                ),
            ])
        );
        let g = s
            .verify_put_query("uploads", "uploads/b/f", &q, now)
            .unwrap();
        assert_eq!(g.size(), 100);
        g.check_headers(Some("image/jpeg"), &meta(&headers))
            .unwrap();
        g.check_size(100).unwrap();
        assert_eq!(g.upload.metadata["prism-file-name"], "a%20b.jpg");
    }

    #[test]
    fn every_put_tampering_is_refused() {
        let (s, q, headers, now) = put_grant();
        // The URL: another key or bucket, an edited term, a forged or missing signature.
        assert_eq!(
            s.verify_put_query("uploads", "uploads/b/g", &q, now),
            Err(GrantError::BadSignature)
        );
        assert_eq!(
            s.verify_put_query("media", "uploads/b/f", &q, now),
            Err(GrantError::BadSignature)
        );
        let edited = q.replace("content-length=100", "content-length=1000");
        assert_ne!(edited, q);
        assert_eq!(
            s.verify_put_query("uploads", "uploads/b/f", &edited, now),
            Err(GrantError::BadSignature)
        );
        let unsigned = q.split("&signature=").next().unwrap();
        assert_eq!(
            s.verify_put_query("uploads", "uploads/b/f", unsigned, now),
            Err(GrantError::Missing("signature".into()))
        );
        assert!(
            s.verify_put_query("uploads", "uploads/b/f", &format!("{q}&expires=1"), now)
                .is_err()
        );
        assert_eq!(
            s.verify_put_query("uploads", "uploads/b/f", &q, now + Duration::from_secs(61)),
            Err(GrantError::Expired)
        );
        // The headers and the length.
        let g = s
            .verify_put_query("uploads", "uploads/b/f", &q, now)
            .unwrap();
        let m = meta(&headers);
        assert_eq!(
            g.check_headers(Some("text/html"), &m),
            Err(GrantError::ConditionFailed("content-type".into()))
        );
        assert_eq!(
            g.check_headers(None, &m),
            Err(GrantError::ConditionFailed("content-type".into()))
        );
        assert_eq!(
            g.check_headers(Some("image/jpeg"), &BTreeMap::new()),
            Err(GrantError::ConditionFailed(
                "x-amz-meta-prism-file-name".into()
            ))
        );
        let mut extra = m.clone();
        extra.insert("other".into(), "x".into());
        assert_eq!(
            g.check_headers(Some("image/jpeg"), &extra),
            Err(GrantError::Uncovered("x-amz-meta-other".into()))
        );
        assert_eq!(g.check_size(99).unwrap_err().http_status(), 400);
        assert_eq!(g.check_size(101).unwrap_err().http_status(), 400);
    }

    #[test]
    fn secret_is_shared_through_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalSigner::load_or_create_secret(dir.path()).unwrap();
        let b = LocalSigner::load_or_create_secret(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
    }
}
