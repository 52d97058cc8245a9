//! The local presigned-POST verifier (`LocalSigner::verify_post`, used by the API's
//! `/local/upload`). The fuzzer builds a genuine grant, then tampers with its form fields, the
//! body size and the clock. Whatever it does, a grant that verifies must still say exactly what
//! was signed: the key, the content type and the metadata of the policy, a size in 1..=max and a
//! time before expiry. Forged or altered grants must be refused without a panic.
#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shared::adapter::local::LocalSigner;
use shared::port::blob_store::{UploadMethod, UploadPolicy};
use time::OffsetDateTime;

#[derive(Debug, Arbitrary)]
enum Edit {
    /// Set (or add) a field.
    Set(String, String),
    /// Remove the n-th field.
    Remove(u8),
    /// Change the case of the n-th field's name (field names are case-insensitive).
    Recase(u8),
}

#[derive(Debug, Arbitrary)]
struct Input {
    key: String,
    content_type: String,
    max_bytes: u64,
    metadata: BTreeMap<String, String>,
    expires_in_secs: u16,
    edits: Vec<Edit>,
    size: u64,
    clock_offset_secs: i32,
    /// Check against a different bucket than the one signed for.
    other_bucket: bool,
}

fuzz_target!(|input: Input| {
    let signer = LocalSigner::new("http://127.0.0.1:1", b"fuzz-secret-fuzz-secret-fuzz-secret");
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid time");
    let policy = UploadPolicy {
        key: input.key.clone(),
        content_type: input.content_type.clone(),
        max_bytes: input.max_bytes,
        metadata: input.metadata.clone(),
        expires_in: Duration::from_secs(u64::from(input.expires_in_secs)),
        method: UploadMethod::Post,
    };
    let grant = signer.presign_post("uploads", &policy, now);
    let mut fields = grant.fields.expect("a POST grant has fields");
    for edit in input.edits {
        match edit {
            Edit::Set(k, v) => {
                fields.insert(k, v);
            }
            Edit::Remove(n) => {
                if let Some(k) = fields
                    .keys()
                    .nth(usize::from(n) % fields.len().max(1))
                    .cloned()
                {
                    fields.remove(&k);
                }
            }
            Edit::Recase(n) => {
                if let Some(k) = fields
                    .keys()
                    .nth(usize::from(n) % fields.len().max(1))
                    .cloned()
                {
                    let v = fields.remove(&k).expect("present");
                    fields.insert(k.to_ascii_uppercase(), v);
                }
            }
        }
    }
    let at = now + time::Duration::seconds(i64::from(input.clock_offset_secs));
    let bucket = if input.other_bucket {
        "media"
    } else {
        "uploads"
    };
    if let Ok(v) = signer.verify_post(bucket, &fields, input.size, at) {
        assert_eq!(
            bucket, "uploads",
            "verified for a bucket it was not signed for"
        );
        assert_eq!(v.key, input.key);
        assert_eq!(v.content_type, input.content_type);
        assert!(at < grant.expires_at, "verified after expiry");
        assert!(
            (1..=input.max_bytes).contains(&input.size),
            "size {} outside 1..={}",
            input.size,
            input.max_bytes
        );
        // Metadata: exactly the signed entries (names are compared case-insensitively).
        let signed: BTreeMap<String, String> = input
            .metadata
            .iter()
            .map(|(k, v)| (format!("x-amz-meta-{k}").to_ascii_lowercase(), v.clone()))
            .collect();
        let got: BTreeMap<String, String> = v
            .metadata
            .iter()
            .map(|(k, v)| (format!("x-amz-meta-{k}").to_ascii_lowercase(), v.clone()))
            .collect();
        assert_eq!(got, signed, "metadata differs from what was signed");
    }
});
