//! `S3BlobStore`: one bucket on aws-sdk-s3.
//!
//! Puts are atomic in S3 already. Uploads are granted as presigned **POST** forms (a SigV4
//! policy pinning key, size range, content type and metadata; see [`super::post_policy`]) or,
//! when the policy asks for [`UploadMethod::Put`], as presigned **PutObject** URLs whose
//! signature covers `content-type`, `content-length` (the exact size) and every `x-amz-meta-*`
//! header, so S3 refuses a PUT that changes any of them. The headers handed to the producer
//! are the ones a browser may set (content type and metadata): `host` and `content-length` are
//! signed too, but every HTTP client sends them itself (the length of the body it sends).
//! Downloads are presigned GETs. Presigning uses a client that computes checksums only when
//! required, so no `x-amz-checksum-*` parameter ends up in a URL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_credential_types::provider::ProvideCredentials as _;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use super::Clients;
use super::classify::{Fault, classify, describe};
use super::post_policy::{SigningCredentials, post_url, presign_post};
use crate::port::blob_store::{
    BlobStore, BlobStoreError, ObjectInfo, ObjectMeta, PresignedUpload, PutOptions, UploadMethod,
    UploadPolicy,
};
use crate::telemetry::metrics::{Port, RequestTimer};

/// Longest grant S3 honours (SigV4 presigning limit).
pub const MAX_GRANT: Duration = Duration::from_secs(7 * 24 * 3600);

fn fault_err(f: Fault, what: String) -> BlobStoreError {
    match f {
        Fault::Throttled => BlobStoreError::Throttled(what),
        Fault::Unavailable => BlobStoreError::Unavailable(what),
        Fault::Timeout => BlobStoreError::Timeout(what),
        Fault::Permanent => BlobStoreError::Other(what),
    }
}

fn sdk_err<E>(
    op: &str,
    key: &str,
    e: &aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> BlobStoreError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    fault_err(classify(e), format!("S3 {op} {key:?}: {}", describe(e)))
}

/// Cached signing credentials (the default chain is not cached by itself, and on ECS each
/// lookup is an HTTP call to the agent).
#[derive(Default)]
struct CredCache {
    creds: Option<(SigningCredentials, Option<std::time::SystemTime>)>,
}

/// A bucket in S3.
#[derive(Clone)]
pub struct S3BlobStore {
    clients: Clients,
    bucket: String,
    creds: Arc<Mutex<CredCache>>,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl S3BlobStore {
    /// Address `bucket` with `clients`.
    pub fn new(clients: &Clients, bucket: &str) -> Self {
        Self {
            clients: clients.clone(),
            bucket: bucket.to_owned(),
            creds: Arc::new(Mutex::new(CredCache::default())),
        }
    }

    /// Credentials valid for at least `valid_for` (a grant signed with temporary credentials
    /// dies when they expire), refreshed from the provider when the cached ones are too old.
    async fn signing_credentials(
        &self,
        valid_for: Duration,
    ) -> Result<SigningCredentials, BlobStoreError> {
        let mut cache = self.creds.lock().await;
        let fresh_until = std::time::SystemTime::now() + valid_for.max(Duration::from_secs(300));
        if let Some((c, expiry)) = &cache.creds
            && expiry.is_none_or(|e| e > fresh_until)
        {
            return Ok(c.clone());
        }
        let provider = self.clients.sdk.credentials_provider().ok_or_else(|| {
            BlobStoreError::Other("no AWS credentials provider to sign uploads with".into())
        })?;
        let c = provider.provide_credentials().await.map_err(|e| {
            BlobStoreError::Unavailable(format!("cannot load AWS credentials to sign uploads: {e}"))
        })?;
        let signing = SigningCredentials {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: c.secret_access_key().to_owned(),
            session_token: c.session_token().map(str::to_owned),
        };
        cache.creds = Some((signing.clone(), c.expiry()));
        Ok(signing)
    }

    fn check_key(key: &str) -> Result<(), BlobStoreError> {
        let reason = if key.is_empty() {
            Some("empty")
        } else if key.len() > 1024 {
            Some("longer than 1024 bytes")
        } else if key.contains('\0') {
            Some("contains NUL")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(BlobStoreError::InvalidKey {
                key: key.to_owned(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn get(&self, key: &str) -> Result<Bytes, BlobStoreError> {
        Self::check_key(key)?;
        let timer = RequestTimer::start(Port::BlobStore, "s3", "get");
        let out = self
            .clients
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                timer.finish(false);
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    return Err(BlobStoreError::NotFound(key.to_owned()));
                }
                return Err(sdk_err("GetObject", key, &e));
            }
        };
        // Read the body promptly: a held stream trips stalled-stream protection.
        let body = out.body.collect().await.map_err(|e| {
            BlobStoreError::Unavailable(format!("S3 GetObject {key:?}: reading the body: {e}"))
        });
        timer.finish(body.is_ok());
        Ok(body?.into_bytes())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, BlobStoreError> {
        Self::check_key(key)?;
        let timer = RequestTimer::start(Port::BlobStore, "s3", "head");
        let out = self
            .clients
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        timer.finish(out.is_ok());
        match out {
            Ok(o) => Ok(ObjectMeta {
                size: o.content_length().unwrap_or(0).max(0) as u64,
                content_type: o.content_type().map(str::to_owned),
                metadata: o.metadata().map(lower_metadata).unwrap_or_default(),
                e_tag: o.e_tag().map(str::to_owned),
                cache_control: o.cache_control().map(str::to_owned),
            }),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
                Err(BlobStoreError::NotFound(key.to_owned()))
            }
            Err(e) => Err(sdk_err("HeadObject", key, &e)),
        }
    }

    async fn put(&self, key: &str, body: Bytes, options: PutOptions) -> Result<(), BlobStoreError> {
        Self::check_key(key)?;
        let timer = RequestTimer::start(Port::BlobStore, "s3", "put");
        let mut req = self
            .clients
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body));
        if let Some(ct) = options.content_type {
            req = req.content_type(ct);
        }
        if let Some(cc) = options.cache_control {
            req = req.cache_control(cc);
        }
        for (k, v) in options.metadata {
            req = req.metadata(k, v);
        }
        let out = req.send().await;
        timer.finish(out.is_ok());
        out.map(|_| ()).map_err(|e| sdk_err("PutObject", key, &e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BlobStoreError> {
        let timer = RequestTimer::start(Port::BlobStore, "s3", "list");
        let mut pages = self
            .clients
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    timer.finish(false);
                    return Err(sdk_err("ListObjectsV2", prefix, &e));
                }
            };
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.push(ObjectInfo {
                        key: k.to_owned(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
        }
        timer.finish(true);
        // S3 lists in UTF-8 binary order already; sort anyway so the contract holds on
        // emulators.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), BlobStoreError> {
        Self::check_key(key)?;
        let timer = RequestTimer::start(Port::BlobStore, "s3", "delete");
        let out = self
            .clients
            .s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        timer.finish(out.is_ok());
        out.map(|_| ())
            .map_err(|e| sdk_err("DeleteObject", key, &e))
    }

    async fn presign_upload(
        &self,
        policy: &UploadPolicy,
    ) -> Result<PresignedUpload, BlobStoreError> {
        Self::check_key(&policy.key)?;
        if policy.expires_in > MAX_GRANT || policy.expires_in.is_zero() {
            return Err(BlobStoreError::Other(format!(
                "upload grant of {:?} is outside 1 s..=7 days",
                policy.expires_in
            )));
        }
        if policy.method == UploadMethod::Put {
            return self.presign_put(policy).await;
        }
        let creds = self.signing_credentials(policy.expires_in).await?;
        let url = post_url(
            &self.bucket,
            &self.clients.region,
            self.clients.endpoint_url.as_deref(),
        );
        Ok(presign_post(
            &creds,
            &self.clients.region,
            &self.bucket,
            url,
            policy,
            OffsetDateTime::now_utc(),
        ))
    }

    async fn presign_download(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, BlobStoreError> {
        Self::check_key(key)?;
        let cfg = PresigningConfig::expires_in(expires_in.min(MAX_GRANT))
            .map_err(|e| BlobStoreError::Other(format!("presigning config: {e}")))?;
        let req = self
            .clients
            .s3_presign
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(cfg)
            .await
            .map_err(|e| sdk_err("presign GetObject", key, &e))?;
        Ok(req.uri().to_owned())
    }
}

impl S3BlobStore {
    /// A presigned PutObject for `policy` (see the module docs).
    async fn presign_put(&self, policy: &UploadPolicy) -> Result<PresignedUpload, BlobStoreError> {
        let size = i64::try_from(policy.max_bytes).map_err(|_| {
            BlobStoreError::Other(format!("upload size {} is too large", policy.max_bytes))
        })?;
        let start = std::time::SystemTime::now();
        let cfg = PresigningConfig::builder()
            .start_time(start)
            .expires_in(policy.expires_in)
            .build()
            .map_err(|e| BlobStoreError::Other(format!("presigning config: {e}")))?;
        let mut req = self
            .clients
            .s3_presign
            .put_object()
            .bucket(&self.bucket)
            .key(&policy.key)
            .content_type(&policy.content_type)
            .content_length(size);
        for (k, v) in &policy.metadata {
            req = req.metadata(k, v);
        }
        let signed = req
            .presigned(cfg)
            .await
            .map_err(|e| sdk_err("presign PutObject", &policy.key, &e))?;
        let headers = signed
            .headers()
            .filter(|(k, _)| {
                !k.eq_ignore_ascii_case("host") && !k.eq_ignore_ascii_case("content-length")
            })
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect();
        Ok(PresignedUpload {
            method: UploadMethod::Put,
            url: signed.uri().to_owned(),
            fields: None,
            headers: Some(headers),
            expires_at: OffsetDateTime::from(start) + policy.expires_in,
        })
    }
}

/// User metadata as S3 returns it, lower-cased (S3 lower-cases `x-amz-meta-*` names).
pub fn lower_metadata(m: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> S3BlobStore {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new(
                        "AKIDEXAMPLE",
                        "secret",
                        None,
                        None,
                        "t",
                    ),
                ),
            )
            .build();
        S3BlobStore::new(&Clients::from_sdk_config(sdk), "uploads-bucket")
    }

    fn query_param(url: &str, name: &str) -> Option<String> {
        let q = url.split_once('?')?.1;
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    #[tokio::test]
    async fn a_presigned_put_signs_type_length_and_metadata() {
        let policy = UploadPolicy {
            key: "uploads/b1/f1".into(),
            content_type: "image/jpeg".into(),
            max_bytes: 12_345,
            metadata: BTreeMap::from([
                ("prism-file-id".to_owned(), "f1".to_owned()),
                ("prism-request".to_owned(), r#"{"w":[320]}"#.to_owned()),
            ]),
            expires_in: Duration::from_secs(900),
            method: UploadMethod::Put,
        };
        let up = store().await.presign_upload(&policy).await.unwrap();
        assert_eq!(up.method, UploadMethod::Put);
        assert!(up.fields.is_none());
        assert!(
            up.url
                .starts_with("https://uploads-bucket.s3.eu-west-1.amazonaws.com/uploads/b1/f1?"),
            "{}",
            up.url
        );
        let signed = query_param(&up.url, "X-Amz-SignedHeaders").unwrap();
        let signed: Vec<&str> = signed.split(';').collect();
        for h in [
            "content-length",
            "content-type",
            "host",
            "x-amz-meta-prism-file-id",
            "x-amz-meta-prism-request",
        ] {
            assert!(signed.contains(&h), "{h} not signed: {signed:?}");
        }
        assert_eq!(
            query_param(&up.url, "X-Amz-Expires").as_deref(),
            Some("900")
        );
        assert!(!up.url.to_ascii_lowercase().contains("x-amz-checksum"));
        // What the producer sends: exactly the browser-settable signed headers.
        assert_eq!(
            up.headers.unwrap(),
            BTreeMap::from([
                ("content-type".to_owned(), "image/jpeg".to_owned()),
                ("x-amz-meta-prism-file-id".to_owned(), "f1".to_owned()),
                (
                    "x-amz-meta-prism-request".to_owned(),
                    r#"{"w":[320]}"#.to_owned()
                ),
            ])
        );
        let left = up.expires_at - OffsetDateTime::now_utc();
        assert!(left > time::Duration::seconds(890) && left <= time::Duration::seconds(900));
    }
}
