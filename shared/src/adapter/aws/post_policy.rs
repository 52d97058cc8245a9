//! Presigned S3 **POST** uploads with a SigV4 policy, built on `aws-sigv4`'s signing
//! primitives: aws-sdk-rust has no presigned POST (awslabs/aws-sdk-rust#863), and a presigned PUT
//! cannot bound the body size.
//!
//! The policy pins everything the upload may carry: the bucket, the exact key,
//! `content-length-range` 1..=max, the exact `Content-Type`, every `x-amz-meta-*` value, and the
//! signing fields themselves; it expires with the grant. S3 rejects a form that breaks any
//! condition or carries a field no condition covers. (moto ignores POST policies, which is why
//! the unit tests below check the policy and the signature against a published test vector.)

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::port::blob_store::{PresignedUpload, UploadMethod, UploadPolicy};

/// The credentials a grant is signed with.
#[derive(Debug, Clone)]
pub struct SigningCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials (ECS task role); becomes a policy condition.
    pub session_token: Option<String>,
}

/// Algorithm name of SigV4.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` of `t` (UTC).
fn sigv4_dates(t: OffsetDateTime) -> (String, String) {
    let t = t.to_offset(time::UtcOffset::UTC);
    let day = t
        .format(format_description!("[year][month][day]"))
        .unwrap_or_default();
    let stamp = t
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default();
    (day, stamp)
}

/// The policy's `expiration`: ISO 8601 with milliseconds and `Z`.
fn expiration(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default()
}

/// Sign a base64 policy: `hex(HMAC(signing_key(secret, day, region, "s3"), policy_b64))`.
pub fn sign_policy(secret: &str, at: OffsetDateTime, region: &str, policy_b64: &str) -> String {
    let key = aws_sigv4::sign::v4::generate_signing_key(secret, SystemTime::from(at), region, "s3");
    aws_sigv4::sign::v4::calculate_signature(key, policy_b64.as_bytes())
}

/// The URL a POST for `bucket` goes to: path-style on a custom endpoint (emulators) or for
/// dotted bucket names (TLS wildcard certificates do not cover them), virtual-hosted otherwise.
pub fn post_url(bucket: &str, region: &str, endpoint_url: Option<&str>) -> String {
    match endpoint_url {
        Some(e) => format!("{}/{bucket}", e.trim_end_matches('/')),
        None if bucket.contains('.') => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        None => format!("https://{bucket}.s3.{region}.amazonaws.com/"),
    }
}

/// Build the POST form for `policy` in `bucket`, signed at `now`.
pub fn presign_post(
    creds: &SigningCredentials,
    region: &str,
    bucket: &str,
    url: String,
    policy: &UploadPolicy,
    now: OffsetDateTime,
) -> PresignedUpload {
    let (day, stamp) = sigv4_dates(now);
    let credential = format!("{}/{day}/{region}/s3/aws4_request", creds.access_key_id);
    let expires_at = now + policy.expires_in;

    let mut fields = BTreeMap::new();
    let mut conditions: Vec<Value> = vec![
        json!({ "bucket": bucket }),
        json!(["eq", "$key", policy.key]),
        json!(["content-length-range", 1, policy.max_bytes]),
        json!(["eq", "$Content-Type", policy.content_type]),
    ];
    fields.insert("key".to_owned(), policy.key.clone());
    fields.insert("Content-Type".to_owned(), policy.content_type.clone());
    for (k, v) in &policy.metadata {
        let name = format!("x-amz-meta-{k}");
        conditions.push(json!(["eq", format!("${name}"), v]));
        fields.insert(name, v.clone());
    }
    let mut signing = vec![
        ("x-amz-algorithm", ALGORITHM.to_owned()),
        ("x-amz-credential", credential),
        ("x-amz-date", stamp),
    ];
    if let Some(token) = &creds.session_token {
        signing.push(("x-amz-security-token", token.clone()));
    }
    for (k, v) in signing {
        conditions.push(json!({ k: v }));
        fields.insert(k.to_owned(), v);
    }
    let doc = json!({ "expiration": expiration(expires_at), "conditions": conditions });
    let policy_b64 = B64.encode(doc.to_string());
    let signature = sign_policy(&creds.secret_access_key, now, region, &policy_b64);
    fields.insert("policy".to_owned(), policy_b64);
    fields.insert("x-amz-signature".to_owned(), signature);
    PresignedUpload {
        method: UploadMethod::Post,
        url,
        fields: Some(fields),
        headers: None,
        expires_at,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn signature_matches_the_published_vector() {
        // The s3-post-policy (npm) README vector: credentials are AWS's documented example
        // ones, date 2013-08-06, us-east-1.
        let policy = "eyJleHBpcmF0aW9uIjoiMjAxMy0wOC0wNlQxMjowMDowMC4wMDBaIiwiY29uZGl0aW9ucyI6W3siYWNsIjoicHVibGljLXJlYWQifSxbInN0YXJ0cy13aXRoIiwiJENvbnRlbnQtVHlwZSIsImltYWdlLyJdLFsic3RhcnRzLXdpdGgiLCIka2V5IiwidXNlci91c2VyMS8iXSxbInN0YXJ0cy13aXRoIiwiJHgtYW16LW1ldGEtdGFnIiwiIl0seyJ4LWFtei1tZXRhLXV1aWQiOiIxNDM2NTEyMzY1MTI3NCJ9LHsiYnVja2V0IjoiZXhhbXBsZWJ1Y2tldCJ9LHsieC1hbXotYWxnb3JpdGhtIjoiQVdTNC1ITUFDLVNIQTI1NiJ9LHsieC1hbXotY3JlZGVudGlhbCI6IkFLSUFJT1NGT0ROTjdFWEFNUExFLzIwMTMwODA2L3VzLWVhc3QtMS9zMy9hd3M0X3JlcXVlc3QifSx7IngtYW16LWRhdGUiOiIyMDEzMDgwNlQxMjAwMDBaIn1dfQ==";
        let at = time::macros::datetime!(2013-08-06 12:00:00 UTC);
        assert_eq!(
            sign_policy(SECRET, at, "us-east-1", policy),
            "5bc8a7be4a6fc6445b94d0f4096f8cf3dfa00303529f8a68ea7dc0c23bb83cd9"
        );
    }

    fn grant(token: Option<&str>) -> (PresignedUpload, Value) {
        let policy = UploadPolicy {
            key: "uploads/b1/f1".into(),
            content_type: "image/jpeg".into(),
            max_bytes: 5_000_000,
            metadata: BTreeMap::from([("prism-file-id".to_owned(), "f1".to_owned())]),
            expires_in: Duration::from_secs(900),
            method: UploadMethod::Post,
        };
        let creds = SigningCredentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET.into(),
            session_token: token.map(str::to_owned),
        };
        let now = time::macros::datetime!(2026-11-23 20:00:00 UTC);
        let up = presign_post(
            &creds,
            "eu-west-1",
            "uploads-bucket",
            post_url("uploads-bucket", "eu-west-1", None),
            &policy,
            now,
        );
        let fields = up.fields.clone().unwrap_or_default();
        let doc: Value = serde_json::from_slice(
            &B64.decode(fields.get("policy").map_or("", String::as_str))
                .unwrap_or_default(),
        )
        .unwrap_or(Value::Null);
        (up, doc)
    }

    #[test]
    fn the_policy_pins_key_size_type_metadata_and_expiry() {
        let (up, doc) = grant(None);
        assert_eq!(up.method, UploadMethod::Post);
        assert_eq!(up.url, "https://uploads-bucket.s3.eu-west-1.amazonaws.com/");
        assert_eq!(doc["expiration"], "2026-11-23T20:15:00.000Z");
        let conditions = doc["conditions"].as_array().cloned().unwrap_or_default();
        for want in [
            json!({"bucket": "uploads-bucket"}),
            json!(["eq", "$key", "uploads/b1/f1"]),
            json!(["content-length-range", 1, 5_000_000]),
            json!(["eq", "$Content-Type", "image/jpeg"]),
            json!(["eq", "$x-amz-meta-prism-file-id", "f1"]),
            json!({"x-amz-algorithm": "AWS4-HMAC-SHA256"}),
            json!({"x-amz-credential": "AKIAIOSFODNN7EXAMPLE/20261123/eu-west-1/s3/aws4_request"}),
            json!({"x-amz-date": "20261123T200000Z"}),
        ] {
            assert!(
                conditions.contains(&want),
                "missing {want} in {conditions:?}"
            );
        }
        // Every form field but the policy and signature is covered by a condition, so S3
        // accepts the form; and nothing else is (no starts-with wildcards).
        let fields = up.fields.unwrap_or_default();
        let covered = |name: &str| {
            conditions.iter().any(|c| match c {
                Value::Object(m) => m.contains_key(name),
                Value::Array(a) => a.get(1).and_then(Value::as_str) == Some(&format!("${name}")),
                _ => false,
            })
        };
        for name in fields.keys() {
            if name != "policy" && name != "x-amz-signature" {
                assert!(covered(name), "field {name} not covered by the policy");
            }
        }
        assert!(
            !conditions
                .iter()
                .any(|c| c.get(0).and_then(Value::as_str) == Some("starts-with"))
        );
        let sig = fields.get("x-amz-signature").cloned().unwrap_or_default();
        let expect = sign_policy(
            SECRET,
            time::macros::datetime!(2026-11-23 20:00:00 UTC),
            "eu-west-1",
            fields.get("policy").map_or("", String::as_str),
        );
        assert_eq!(sig, expect);
        assert_eq!(sig.len(), 64);
    }

    #[test]
    fn temporary_credentials_put_the_session_token_under_the_policy() {
        let (up, doc) = grant(Some("FwoGZXIvYXdzEJr"));
        let fields = up.fields.unwrap_or_default();
        assert_eq!(
            fields.get("x-amz-security-token").map(String::as_str),
            Some("FwoGZXIvYXdzEJr")
        );
        assert!(
            doc["conditions"]
                .as_array()
                .is_some_and(|c| c.contains(&json!({"x-amz-security-token": "FwoGZXIvYXdzEJr"})))
        );
    }

    #[test]
    fn urls_are_path_style_on_custom_endpoints_and_for_dotted_buckets() {
        assert_eq!(
            post_url("up", "us-east-1", Some("http://127.0.0.1:5000/")),
            "http://127.0.0.1:5000/up"
        );
        assert_eq!(
            post_url("my.bucket", "us-east-1", None),
            "https://s3.us-east-1.amazonaws.com/my.bucket"
        );
    }
}
