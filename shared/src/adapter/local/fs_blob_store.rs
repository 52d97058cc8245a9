//! `FsBlobStore`: one bucket as files under a data dir.
//!
//! - **Keys map safely.** A key must be 1-1024 bytes of UTF-8 with no NUL, no leading `/`, no
//!   empty, `.` or `..` segment. Each segment is percent-encoded; directories get a `.d` suffix
//!   and object files an `.o` suffix, so `a` and `a/b` can both exist (as on S3) and nothing a
//!   key says can name a path outside the bucket root.
//! - **Atomic visibility.** An object is written to a temp file in the bucket (same file
//!   system), fsynced, then renamed into place: readers see the old object or the new one.
//!   Content type, `Cache-Control` and user metadata live in the same file, in a header before
//!   the body, so they change atomically with it. The entity tag is the body's hex MD5, as
//!   S3's for a single-part object.
//! - **Presigned uploads** ([`LocalSigner`]): a POST form or, for [`UploadMethod::Put`], a PUT
//!   URL; [`FsBlobStore::verify_put_url`] and [`FsBlobStore::store_put_upload`] serve the
//!   latter (the HTTP side is prism-api's upload endpoint).
//! - **Notifications.** A bucket configured with rules publishes an S3-shaped `ObjectCreated`
//!   event to a `Topic` after the object is visible. The event is journalled before the rename
//!   and removed after the publish; journal entries left by a crash are re-published when the
//!   store is opened again, so a visible object never loses its event (a duplicate is harmless).
//! - **Several processes, any of them killed at any moment.** Opening a store only removes what
//!   a dead writer left behind: a journal entry whose object is not visible, or a temp file,
//!   once it is older than 15 minutes (younger ones may belong to a put in progress in another
//!   process on the same data dir).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::signing::{GrantError, LocalSigner, PostGrant, PutGrant};
use crate::event::object_created_event;
use crate::port::blob_store::{
    BlobStore, BlobStoreError, ObjectInfo, ObjectMeta, PresignedUpload, PutOptions, UploadMethod,
    UploadPolicy,
};
use crate::port::topic::Topic;

const MAGIC: &[u8; 8] = b"PRISMOB1";
const TMP_DIR: &str = ".tmp";
const PENDING_DIR: &str = ".pending";
const MAX_KEY_BYTES: usize = 1024;
/// Age after which a temp file, or the journal entry of an object that never became visible,
/// can only belong to a writer that died: a put takes milliseconds (seconds on a slow disk).
const STALE_AFTER: Duration = Duration::from_secs(15 * 60);
const MAX_SEGMENT_BYTES: usize = 240;

/// Which created objects publish an event: the key must start with `prefix` and end with
/// `suffix` (either may be empty), as S3 notification filter rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRule {
    /// Key prefix.
    pub prefix: String,
    /// Key suffix.
    pub suffix: String,
}

impl NotificationRule {
    /// Every object.
    pub fn all() -> Self {
        Self {
            prefix: String::new(),
            suffix: String::new(),
        }
    }

    fn matches(&self, key: &str) -> bool {
        key.starts_with(&self.prefix) && key.ends_with(&self.suffix)
    }
}

#[derive(Clone)]
struct Notifier {
    topic: Arc<dyn Topic>,
    rules: Vec<NotificationRule>,
}

/// A bucket stored as files.
#[derive(Clone)]
pub struct FsBlobStore {
    root: Arc<PathBuf>,
    bucket: Arc<str>,
    signer: Option<LocalSigner>,
    notifier: Option<Notifier>,
}

/// An upload the store accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpload {
    /// Its key.
    pub key: String,
    /// Its entity tag: the hex MD5 of the body, as S3 gives a single-part upload (unquoted).
    pub e_tag: String,
}

/// The entity tag of a body: its hex MD5, as S3's for a single-part object.
pub fn e_tag_of(body: &[u8]) -> String {
    hex::encode(<md5::Md5 as md5::Digest>::digest(body))
}

#[derive(Serialize, Deserialize)]
struct Header {
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
    e_tag: String,
    /// Absent in objects written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache_control: Option<String>,
}

impl Header {
    fn meta(self, size: u64) -> ObjectMeta {
        ObjectMeta {
            size,
            content_type: self.content_type,
            metadata: self.metadata,
            e_tag: Some(self.e_tag),
            cache_control: self.cache_control,
        }
    }
}

fn io(e: std::io::Error) -> BlobStoreError {
    BlobStoreError::Unavailable(e.to_string())
}

fn encode_segment(seg: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(seg, SET).to_string()
}

fn decode_segment(seg: &str) -> Option<String> {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Check a key and map it to a path under `root`.
fn key_path(root: &Path, key: &str) -> Result<PathBuf, BlobStoreError> {
    let invalid = |reason| BlobStoreError::InvalidKey {
        key: key.to_owned(),
        reason,
    };
    if key.is_empty() {
        return Err(invalid("empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid("longer than 1024 bytes"));
    }
    if key.contains('\0') {
        return Err(invalid("contains NUL"));
    }
    if key.starts_with('/') {
        return Err(invalid("absolute"));
    }
    let segments: Vec<&str> = key.split('/').collect();
    let mut path = root.to_path_buf();
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() {
            return Err(invalid("empty segment"));
        }
        if *seg == "." || *seg == ".." {
            return Err(invalid("dot segment"));
        }
        let enc = encode_segment(seg);
        if enc.len() > MAX_SEGMENT_BYTES {
            return Err(invalid("segment too long"));
        }
        let suffix = if i + 1 == segments.len() { ".o" } else { ".d" };
        path.push(format!("{enc}{suffix}"));
    }
    Ok(path)
}

fn read_object(path: &Path) -> Result<(Header, Bytes), BlobStoreError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BlobStoreError::NotFound(path.display().to_string()));
        }
        Err(e) => return Err(io(e)),
    };
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).map_err(io)?;
    let corrupt = || BlobStoreError::Other(format!("corrupt object file {}", path.display()));
    if buf.len() < 12 || &buf[..8] != MAGIC {
        return Err(corrupt());
    }
    let len = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes")) as usize;
    let header: Header = buf
        .get(12..12 + len)
        .and_then(|h| serde_json::from_slice(h).ok())
        .ok_or_else(corrupt)?;
    let body = Bytes::from(buf).slice(12 + len..);
    Ok((header, body))
}

/// Body size of an object file from its length and header length, reading 12 bytes rather
/// than the whole object (listings of a large archive stay cheap).
fn body_size(path: &Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let total = file.metadata()?.len();
    let mut head = [0u8; 12];
    file.read_exact(&mut head)?;
    if &head[..8] != MAGIC {
        return Err(std::io::Error::other(format!(
            "corrupt object file {}",
            path.display()
        )));
    }
    let header = u64::from(u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")));
    Ok(total.saturating_sub(12 + header))
}

/// Whether a file was last modified more than [`STALE_AFTER`] ago.
fn is_stale(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > STALE_AFTER)
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn write_durably(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    for p in parts {
        f.write_all(p)?;
    }
    f.sync_all()
}

impl FsBlobStore {
    /// Open (creating) bucket `bucket` under `blobs_dir`.
    ///
    /// # Errors
    /// I/O failures creating the directories.
    pub fn open(blobs_dir: &Path, bucket: &str) -> Result<Self, BlobStoreError> {
        if bucket.is_empty()
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            || bucket.starts_with('.')
        {
            return Err(BlobStoreError::Other(format!(
                "invalid bucket name {bucket:?}"
            )));
        }
        let root = blobs_dir.join(bucket);
        std::fs::create_dir_all(root.join(TMP_DIR)).map_err(io)?;
        std::fs::create_dir_all(root.join(PENDING_DIR)).map_err(io)?;
        // Temp files of writers killed before their rename are invisible but take space.
        if let Ok(entries) = std::fs::read_dir(root.join(TMP_DIR)) {
            for e in entries.flatten() {
                if is_stale(&e.path()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(Self {
            root: Arc::new(root),
            bucket: bucket.into(),
            signer: None,
            notifier: None,
        })
    }

    /// Sign presigned grants with `signer`.
    #[must_use]
    pub fn with_signer(mut self, signer: LocalSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Publish `ObjectCreated` events for keys matching any rule to `topic`, after first
    /// re-publishing events a crash left in the journal.
    ///
    /// # Errors
    /// A classified failure re-publishing the journal.
    pub async fn with_notifications(
        mut self,
        topic: Arc<dyn Topic>,
        rules: Vec<NotificationRule>,
    ) -> Result<Self, BlobStoreError> {
        self.notifier = Some(Notifier { topic, rules });
        self.replay_journal().await?;
        Ok(self)
    }

    /// The bucket's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    async fn replay_journal(&self) -> Result<(), BlobStoreError> {
        let Some(n) = &self.notifier else {
            return Ok(());
        };
        let dir = self.root.join(PENDING_DIR);
        let entries =
            tokio::task::spawn_blocking(move || -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
                let mut out = Vec::new();
                for e in std::fs::read_dir(&dir)? {
                    let p = e?.path();
                    out.push((p.clone(), std::fs::read(&p)?));
                }
                Ok(out)
            })
            .await
            .map_err(|e| BlobStoreError::Unavailable(e.to_string()))?
            .map_err(io)?;
        for (path, body) in entries {
            let journal: Journal = match serde_json::from_slice(&body) {
                Ok(j) => j,
                // A torn journal write: its put died before the rename (or, while the entry is
                // young, another process is still writing it).
                Err(_) => {
                    if is_stale(&path) {
                        let _ = std::fs::remove_file(&path);
                    }
                    continue;
                }
            };
            let visible = key_path(&self.root, &journal.key)
                .map(|p| p.exists())
                .unwrap_or(false);
            if visible {
                n.topic
                    .publish(&journal.event)
                    .await
                    .map_err(|e| BlobStoreError::Unavailable(e.to_string()))?;
            } else if !is_stale(&path) {
                // Not visible yet: another live process may be between its journal write and
                // its rename. Removing the entry now would lose the event if that process then
                // died between the rename and the publish.
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                // Its writer (or another process replaying) got there first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        Ok(())
    }

    /// Write an object as [`BlobStore::put`] does, naming the event `event_name`
    /// (`ObjectCreated:Post` for form uploads, as S3); returns its entity tag.
    ///
    /// # Errors
    /// A classified failure; the object is not visible after an error before the rename, and
    /// its event is journalled after it.
    pub async fn put_as(
        &self,
        key: &str,
        body: Bytes,
        options: PutOptions,
        event_name: &str,
    ) -> Result<String, BlobStoreError> {
        let path = key_path(&self.root, key)?;
        let e_tag = e_tag_of(&body);
        let header = serde_json::to_vec(&Header {
            content_type: options.content_type,
            metadata: options.metadata,
            e_tag: e_tag.clone(),
            cache_control: options.cache_control,
        })
        .map_err(|e| BlobStoreError::Other(e.to_string()))?;
        let event = self
            .notifier
            .as_ref()
            .filter(|n| n.rules.iter().any(|r| r.matches(key)))
            .map(|_| {
                let now = OffsetDateTime::now_utc();
                let sequencer = format!("{:020X}", now.unix_timestamp_nanos());
                let ev = object_created_event(
                    "local",
                    &self.bucket,
                    key,
                    body.len() as u64,
                    &e_tag,
                    event_name,
                    &sequencer,
                    now,
                );
                serde_json::to_string(&ev).expect("an S3 event always serialises")
            });
        let root = self.root.clone();
        let journal = event.as_ref().map(|ev| Journal {
            key: key.to_owned(),
            event: ev.clone(),
        });
        let journal_path =
            tokio::task::spawn_blocking(move || -> std::io::Result<Option<PathBuf>> {
                let id = uuid::Uuid::new_v4().to_string();
                let tmp = root.join(TMP_DIR).join(&id);
                let len = u32::try_from(header.len())
                    .expect("a header is far below 4 GiB")
                    .to_le_bytes();
                if let Err(e) = write_durably(&tmp, &[MAGIC, &len, &header, &body]) {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
                let jpath = match &journal {
                    Some(j) => {
                        let p = root.join(PENDING_DIR).join(format!("{id}.json"));
                        write_durably(&p, &[&serde_json::to_vec(j).expect("journal serialises")])?;
                        Some(p)
                    }
                    None => None,
                };
                let parent = path.parent().expect("a key path has a parent");
                std::fs::create_dir_all(parent)?;
                if let Err(e) = std::fs::rename(&tmp, &path) {
                    let _ = std::fs::remove_file(&tmp);
                    if let Some(j) = &jpath {
                        let _ = std::fs::remove_file(j);
                    }
                    return Err(e);
                }
                fsync_dir(parent)?;
                Ok(jpath)
            })
            .await
            .map_err(|e| BlobStoreError::Unavailable(e.to_string()))?
            .map_err(io)?;
        if let (Some(n), Some(ev), Some(jpath)) = (&self.notifier, event, journal_path) {
            n.topic.publish(&ev).await.map_err(|e| {
                BlobStoreError::Unavailable(format!(
                    "object stored but event not yet published (journalled): {e}"
                ))
            })?;
            let _ = tokio::fs::remove_file(&jpath).await;
        }
        Ok(e_tag)
    }

    fn list_blocking(root: &Path, prefix: &str) -> Result<Vec<ObjectInfo>, BlobStoreError> {
        fn walk(
            dir: &Path,
            key_prefix: &str,
            want: &str,
            out: &mut Vec<ObjectInfo>,
        ) -> std::io::Result<()> {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if let Some(seg) = name.strip_suffix(".d") {
                    let Some(seg) = decode_segment(seg) else {
                        continue;
                    };
                    let sub = format!("{key_prefix}{seg}/");
                    // Descend only where keys under `sub` can start with `want`.
                    if sub.starts_with(want) || want.starts_with(&sub) {
                        walk(&entry.path(), &sub, want, out)?;
                    }
                } else if let Some(seg) = name.strip_suffix(".o") {
                    let Some(seg) = decode_segment(seg) else {
                        continue;
                    };
                    let key = format!("{key_prefix}{seg}");
                    if key.starts_with(want) {
                        let size = body_size(&entry.path())?;
                        out.push(ObjectInfo { key, size });
                    }
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(root, "", prefix, &mut out).map_err(io)?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn signer(&self) -> Result<&LocalSigner, BlobStoreError> {
        self.signer
            .as_ref()
            .ok_or_else(|| BlobStoreError::Other("this store has no signer configured".into()))
    }

    /// Verify a presigned POST and store the file as `ObjectCreated:Post`.
    ///
    /// # Errors
    /// The grant error (to answer 400/403 with), or a store failure.
    pub async fn accept_post_upload(
        &self,
        fields: &BTreeMap<String, String>,
        body: Bytes,
    ) -> Result<Result<StoredUpload, GrantError>, BlobStoreError> {
        let grant = match self.verify_post_form(fields)? {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        self.store_post_upload(grant, body).await
    }

    /// Verify a presigned POST's form fields before its file is read (see
    /// [`LocalSigner::verify_post_fields`](super::signing::LocalSigner::verify_post_fields)).
    ///
    /// # Errors
    /// The grant error (to answer 400/403 with), or a store failure.
    pub fn verify_post_form(
        &self,
        fields: &BTreeMap<String, String>,
    ) -> Result<Result<PostGrant, GrantError>, BlobStoreError> {
        Ok(self
            .signer()?
            .verify_post_fields(&self.bucket, fields, OffsetDateTime::now_utc()))
    }

    /// Store the file of a POST whose fields verified, once its size is within the grant.
    ///
    /// # Errors
    /// The grant error (a size out of range), or a store failure.
    pub async fn store_post_upload(
        &self,
        grant: PostGrant,
        body: Bytes,
    ) -> Result<Result<StoredUpload, GrantError>, BlobStoreError> {
        if let Err(e) = grant.check_size(body.len() as u64) {
            return Ok(Err(e));
        }
        self.store_verified(grant.upload, body, "ObjectCreated:Post")
            .await
            .map(Ok)
    }

    async fn store_verified(
        &self,
        upload: super::signing::VerifiedUpload,
        body: Bytes,
        event_name: &str,
    ) -> Result<StoredUpload, BlobStoreError> {
        key_path(&self.root, &upload.key)?;
        let opts = PutOptions {
            content_type: Some(upload.content_type),
            metadata: upload.metadata,
            cache_control: None,
        };
        let e_tag = self.put_as(&upload.key, body, opts, event_name).await?;
        Ok(StoredUpload {
            key: upload.key,
            e_tag,
        })
    }

    /// Verify a presigned PUT's URL (`key` from its path, `query` its raw query string) before
    /// its body is read (see
    /// [`LocalSigner::verify_put_query`](super::signing::LocalSigner::verify_put_query)); the
    /// grant then checks the headers and bounds the body.
    ///
    /// # Errors
    /// The grant error (to answer 400/403 with), or a store failure.
    pub fn verify_put_url(
        &self,
        key: &str,
        query: &str,
    ) -> Result<Result<PutGrant, GrantError>, BlobStoreError> {
        key_path(&self.root, key)?;
        Ok(self
            .signer()?
            .verify_put_query(&self.bucket, key, query, OffsetDateTime::now_utc()))
    }

    /// Store the body of a PUT whose URL and headers verified, once its length is the grant's,
    /// as `ObjectCreated:Put`.
    ///
    /// # Errors
    /// The grant error (a wrong length), or a store failure.
    pub async fn store_put_upload(
        &self,
        grant: PutGrant,
        body: Bytes,
    ) -> Result<Result<StoredUpload, GrantError>, BlobStoreError> {
        if let Err(e) = grant.check_size(body.len() as u64) {
            return Ok(Err(e));
        }
        self.store_verified(grant.upload, body, "ObjectCreated:Put")
            .await
            .map(Ok)
    }

    /// The object's address as S3 names it in a POST answer's `Location` (its presigned-GET
    /// path, without a grant); `None` without a signer.
    pub fn object_url(&self, key: &str) -> Option<String> {
        self.signer.as_ref().map(|s| {
            format!(
                "{}/local/object/{}/{}",
                s.base_url(),
                self.bucket,
                super::signing::encode_path(key)
            )
        })
    }

    /// Verify a presigned GET and read the object.
    ///
    /// # Errors
    /// The grant error, or a store failure.
    pub async fn serve_presigned_get(
        &self,
        key: &str,
        expires: i64,
        signature: &str,
    ) -> Result<Result<(ObjectMeta, Bytes), GrantError>, BlobStoreError> {
        if let Err(e) = self.signer()?.verify_get(
            &self.bucket,
            key,
            expires,
            signature,
            OffsetDateTime::now_utc(),
        ) {
            return Ok(Err(e));
        }
        self.read(key).await.map(Ok)
    }

    /// Read an object with its metadata (content type, `Cache-Control`, ETag) in one read.
    ///
    /// # Errors
    /// [`BlobStoreError::NotFound`] when absent, else a classified failure.
    pub async fn read(&self, key: &str) -> Result<(ObjectMeta, Bytes), BlobStoreError> {
        let path = key_path(&self.root, key)?;
        let key = key.to_owned();
        let (h, body) = tokio::task::spawn_blocking(move || read_object(&path))
            .await
            .map_err(|e| BlobStoreError::Unavailable(e.to_string()))?
            .map_err(|e| match e {
                BlobStoreError::NotFound(_) => BlobStoreError::NotFound(key),
                other => other,
            })?;
        Ok((h.meta(body.len() as u64), body))
    }
}

#[derive(Serialize, Deserialize)]
struct Journal {
    key: String,
    event: String,
}

#[async_trait]
impl BlobStore for FsBlobStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn get(&self, key: &str) -> Result<Bytes, BlobStoreError> {
        let path = key_path(&self.root, key)?;
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || read_object(&path))
            .await
            .map_err(|e| BlobStoreError::Unavailable(e.to_string()))?
            .map(|(_, b)| b)
            .map_err(|e| match e {
                BlobStoreError::NotFound(_) => BlobStoreError::NotFound(key),
                other => other,
            })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, BlobStoreError> {
        self.read(key).await.map(|(meta, _)| meta)
    }

    async fn put(&self, key: &str, body: Bytes, options: PutOptions) -> Result<(), BlobStoreError> {
        self.put_as(key, body, options, "ObjectCreated:Put")
            .await
            .map(|_| ())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BlobStoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || Self::list_blocking(&root, &prefix))
            .await
            .map_err(|e| BlobStoreError::Unavailable(e.to_string()))?
    }

    async fn delete(&self, key: &str) -> Result<(), BlobStoreError> {
        let path = key_path(&self.root, key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    async fn presign_upload(
        &self,
        policy: &UploadPolicy,
    ) -> Result<PresignedUpload, BlobStoreError> {
        key_path(&self.root, &policy.key)?;
        let (signer, now) = (self.signer()?, OffsetDateTime::now_utc());
        Ok(match policy.method {
            UploadMethod::Post => signer.presign_post(&self.bucket, policy, now),
            UploadMethod::Put => signer.presign_put(&self.bucket, policy, now),
        })
    }

    async fn presign_download(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, BlobStoreError> {
        key_path(&self.root, key)?;
        Ok(self
            .signer()?
            .presign_get(&self.bucket, key, expires_in, OffsetDateTime::now_utc()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_keys_are_rejected() {
        let root = Path::new("/data/b");
        for key in [
            "",
            "/etc/passwd",
            "..",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "nul\0byte",
            &"x".repeat(1025),
        ] {
            assert!(
                matches!(key_path(root, key), Err(BlobStoreError::InvalidKey { .. })),
                "{key:?}"
            );
        }
    }

    #[test]
    fn keys_stay_under_the_root_and_do_not_collide() {
        let root = Path::new("/data/b");
        for key in [
            "a",
            "a/b",
            "..a",
            "a b/c%2F..",
            "ü/\\..\\x",
            ".tmp",
            ".pending/x",
        ] {
            let p = key_path(root, key).unwrap();
            assert!(p.starts_with(root), "{key:?} -> {}", p.display());
            assert!(p.components().all(|c| matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::RootDir
            )));
        }
        assert_ne!(
            key_path(root, "a").unwrap(),
            key_path(root, "a/b").unwrap().parent().unwrap()
        );
        assert_ne!(
            key_path(root, "a%2Fb").unwrap(),
            key_path(root, "a/b").unwrap()
        );
        assert_ne!(key_path(root, ".tmp").unwrap(), root.join(TMP_DIR));
    }
}
