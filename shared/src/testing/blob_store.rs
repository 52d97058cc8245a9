//! The `BlobStore` contract.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::port::blob_store::{
    BlobStore, BlobStoreError, CACHE_IMMUTABLE, CACHE_REVALIDATE, PutOptions, UploadMethod,
    UploadPolicy,
};

/// Run every rule of the contract against an empty bucket.
///
/// # Panics
/// On the first broken rule.
pub async fn blob_store_contract(store: Arc<dyn BlobStore>) {
    round_trips_body_type_and_metadata(&*store).await;
    stores_and_returns_cache_control(&*store).await;
    missing_objects_are_not_found(&*store).await;
    overwrite_replaces_whole_object(&*store).await;
    awkward_keys_round_trip(&*store).await;
    list_filters_by_prefix_in_order(&*store).await;
    delete_is_idempotent(&*store).await;
    concurrent_writers_never_expose_partial_objects(store.clone()).await;
    presigns_uploads_and_downloads(&*store).await;
}

async fn round_trips_body_type_and_metadata(store: &dyn BlobStore) {
    let meta = BTreeMap::from([("prism-batch-id".to_owned(), "b1".to_owned())]);
    let opts = PutOptions {
        content_type: Some("image/webp".into()),
        metadata: meta.clone(),
        cache_control: None,
    };
    let body = Bytes::from_static(b"RIFF\x00\x00\x00\x00WEBPVP8 ");
    store
        .put("a/b/c.webp", body.clone(), opts)
        .await
        .expect("put");
    assert_eq!(store.get("a/b/c.webp").await.expect("get"), body);
    let head = store.head("a/b/c.webp").await.expect("head");
    assert_eq!(head.size, body.len() as u64);
    assert_eq!(head.content_type.as_deref(), Some("image/webp"));
    assert_eq!(head.metadata, meta);
    store
        .put("empty", Bytes::new(), PutOptions::default())
        .await
        .expect("put empty");
    assert_eq!(store.get("empty").await.expect("get empty").len(), 0);
}

async fn stores_and_returns_cache_control(store: &dyn BlobStore) {
    let put = |cc: Option<&str>| PutOptions {
        content_type: Some("image/avif".into()),
        cache_control: cc.map(str::to_owned),
        ..Default::default()
    };
    store
        .put(
            "cc/variant.avif",
            Bytes::from_static(b"v"),
            put(Some(CACHE_IMMUTABLE)),
        )
        .await
        .expect("put immutable");
    let head = store.head("cc/variant.avif").await.expect("head");
    assert_eq!(head.cache_control.as_deref(), Some(CACHE_IMMUTABLE));
    assert_eq!(head.content_type.as_deref(), Some("image/avif"));
    // An overwrite replaces the Cache-Control with the object: set, changed, then removed.
    store
        .put(
            "cc/variant.avif",
            Bytes::from_static(b"w"),
            put(Some(CACHE_REVALIDATE)),
        )
        .await
        .expect("put revalidate");
    let head = store.head("cc/variant.avif").await.expect("head");
    assert_eq!(head.cache_control.as_deref(), Some(CACHE_REVALIDATE));
    store
        .put("cc/variant.avif", Bytes::from_static(b"x"), put(None))
        .await
        .expect("put none");
    let head = store.head("cc/variant.avif").await.expect("head");
    assert_eq!(head.cache_control, None);
}

async fn missing_objects_are_not_found(store: &dyn BlobStore) {
    let e = store.get("nope/missing").await.expect_err("missing get");
    assert!(matches!(e, BlobStoreError::NotFound(_)), "{e:?}");
    assert!(!e.is_transient());
    let e = store.head("nope/missing").await.expect_err("missing head");
    assert!(matches!(e, BlobStoreError::NotFound(_)), "{e:?}");
}

async fn overwrite_replaces_whole_object(store: &dyn BlobStore) {
    let opts = |ct: &str| PutOptions {
        content_type: Some(ct.into()),
        ..Default::default()
    };
    store
        .put("over", Bytes::from(vec![1u8; 1000]), opts("a/one"))
        .await
        .expect("put 1");
    store
        .put("over", Bytes::from(vec![2u8; 10]), opts("a/two"))
        .await
        .expect("put 2");
    assert_eq!(
        store.get("over").await.expect("get"),
        Bytes::from(vec![2u8; 10])
    );
    assert_eq!(
        store
            .head("over")
            .await
            .expect("head")
            .content_type
            .as_deref(),
        Some("a/two")
    );
}

async fn awkward_keys_round_trip(store: &dyn BlobStore) {
    for key in [
        "sp ace/p+lus",
        "pct%25/x",
        "ünï/cødé.jpg",
        "a",
        "a/b",
        "x.d/y.o",
    ] {
        store
            .put(key, Bytes::from(key.to_owned()), PutOptions::default())
            .await
            .expect(key);
    }
    for key in [
        "sp ace/p+lus",
        "pct%25/x",
        "ünï/cødé.jpg",
        "a",
        "a/b",
        "x.d/y.o",
    ] {
        assert_eq!(
            store.get(key).await.expect(key),
            Bytes::from(key.to_owned()),
            "{key}"
        );
    }
}

async fn list_filters_by_prefix_in_order(store: &dyn BlobStore) {
    for k in ["list/2", "list/1", "list/sub/3", "listing", "other/1"] {
        store
            .put(k, Bytes::from_static(b"xyz"), PutOptions::default())
            .await
            .expect(k);
    }
    let keys: Vec<String> = store
        .list("list/")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["list/1", "list/2", "list/sub/3"]);
    let all = store.list("list").await.expect("list");
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|o| o.size == 3));
    assert!(store.list("nothing-here/").await.expect("list").is_empty());
}

async fn delete_is_idempotent(store: &dyn BlobStore) {
    store
        .put("del/me", Bytes::from_static(b"x"), PutOptions::default())
        .await
        .expect("put");
    store.delete("del/me").await.expect("delete");
    store.delete("del/me").await.expect("delete again");
    assert!(matches!(
        store.get("del/me").await,
        Err(BlobStoreError::NotFound(_))
    ));
}

async fn concurrent_writers_never_expose_partial_objects(store: Arc<dyn BlobStore>) {
    // Two writers alternate large bodies of distinct bytes while a reader checks that every
    // read is one whole body.
    let bodies = [
        Bytes::from(vec![b'a'; 256 * 1024]),
        Bytes::from(vec![b'b'; 128 * 1024]),
    ];
    store
        .put("race", bodies[0].clone(), PutOptions::default())
        .await
        .expect("seed");
    let mut writers = Vec::new();
    for body in bodies.clone() {
        let s = store.clone();
        writers.push(tokio::spawn(async move {
            for _ in 0..10 {
                s.put("race", body.clone(), PutOptions::default())
                    .await
                    .expect("put");
            }
        }));
    }
    for _ in 0..20 {
        let got = store.get("race").await.expect("get");
        assert!(
            got == bodies[0] || got == bodies[1],
            "partial object of {} bytes",
            got.len()
        );
    }
    for w in writers {
        w.await.expect("writer");
    }
}

async fn presigns_uploads_and_downloads(store: &dyn BlobStore) {
    let policy = UploadPolicy {
        key: "uploads/b1/f1".into(),
        content_type: "image/jpeg".into(),
        max_bytes: 1024,
        metadata: BTreeMap::from([("prism-file-id".to_owned(), "f1".to_owned())]),
        expires_in: Duration::from_secs(300),
        method: UploadMethod::Post,
    };
    let up = store.presign_upload(&policy).await.expect("presign upload");
    match up.method {
        UploadMethod::Post => {
            let fields = up.fields.expect("POST carries fields");
            assert_eq!(fields.get("key").map(String::as_str), Some("uploads/b1/f1"));
            assert!(up.headers.is_none());
        }
        UploadMethod::Put => assert!(up.headers.is_some() && up.fields.is_none()),
    }
    assert!(up.url.starts_with("http"), "{}", up.url);
    assert!(up.expires_at > time::OffsetDateTime::now_utc());
    let put = store
        .presign_upload(&UploadPolicy {
            method: UploadMethod::Put,
            ..policy.clone()
        })
        .await
        .expect("presign PUT");
    assert_eq!(put.method, UploadMethod::Put);
    assert!(put.fields.is_none());
    assert_eq!(
        put.headers.expect("PUT carries headers"),
        BTreeMap::from([
            ("content-type".to_owned(), "image/jpeg".to_owned()),
            ("x-amz-meta-prism-file-id".to_owned(), "f1".to_owned()),
        ]),
        "exactly the content type and the metadata: what a browser may set"
    );
    assert!(put.url.starts_with("http"), "{}", put.url);
    let url = store
        .presign_download("a/b/c.webp", Duration::from_secs(60))
        .await
        .expect("presign get");
    assert!(url.starts_with("http"), "{url}");
    assert!(
        !url.contains("x-amz-checksum"),
        "presigned URLs must not carry checksums: {url}"
    );
}

/// A URL with its signature parameter (`X-Amz-Signature`, `signature`, …) changed.
fn forge_signature(url: &str) -> String {
    let mut u = url::Url::parse(url).expect("a presigned URL parses");
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k.to_ascii_lowercase().ends_with("signature") {
                let flipped = if v.starts_with('0') { "1" } else { "0" };
                format!("{flipped}{}", &v[1..])
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

/// A departure from a PUT grant: what it is, the URL, the headers and the body sent.
type PutCase = (&'static str, String, BTreeMap<String, String>, Vec<u8>);

/// Send `body` to a presigned PUT with `headers`.
async fn send_put(
    http: &reqwest::Client,
    url: &str,
    headers: &BTreeMap<String, String>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = http.put(url).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send().await.expect("the upload endpoint answers")
}

/// Presigned PUT uploads over HTTP: the producer sends the body with exactly the headers the
/// instructions name and the object is stored with its content type and metadata (answered
/// with the body's MD5 as `ETag`). Where the store `verifies_grants` (everything but an
/// emulator that ignores signatures), every departure from the grant is refused and stores
/// nothing: another content type, a shorter or longer body, missing or extra metadata, a forged
/// signature, an expired grant.
///
/// # Panics
/// On the first broken rule.
pub async fn presigned_put_contract(store: &dyn BlobStore, verifies_grants: bool) {
    let http = reqwest::Client::new();
    let body = b"\xff\xd8\xff\xe0 a put body".to_vec();
    let key = format!("uploads/put/{}", uuid::Uuid::new_v4());
    let policy = UploadPolicy {
        key: key.clone(),
        content_type: "image/jpeg".into(),
        max_bytes: body.len() as u64,
        metadata: BTreeMap::from([
            ("prism-file-id".to_owned(), "f1".to_owned()),
            (
                "prism-request".to_owned(),
                r#"{"w":[320,640],"f":["webp"]}"#.to_owned(),
            ),
        ]),
        expires_in: Duration::from_secs(300),
        method: UploadMethod::Put,
    };
    let up = store.presign_upload(&policy).await.expect("presign PUT");
    assert_eq!(up.method, UploadMethod::Put);
    let headers = up.headers.clone().expect("PUT carries headers");
    let absent = || async {
        assert!(
            matches!(store.head(&key).await, Err(BlobStoreError::NotFound(_))),
            "a refused PUT stored an object"
        );
    };
    if verifies_grants {
        let with = |k: &str, v: &str| {
            let mut h = headers.clone();
            h.insert(k.to_owned(), v.to_owned());
            h
        };
        let without = |k: &str| {
            let mut h = headers.clone();
            h.remove(k);
            h
        };
        let mut longer = body.clone();
        longer.push(b'!');
        let cases: Vec<PutCase> = vec![
            (
                "another content type",
                up.url.clone(),
                with("content-type", "text/html"),
                body.clone(),
            ),
            (
                "a shorter body",
                up.url.clone(),
                headers.clone(),
                body[1..].to_vec(),
            ),
            ("a longer body", up.url.clone(), headers.clone(), longer),
            (
                "missing metadata",
                up.url.clone(),
                without("x-amz-meta-prism-file-id"),
                body.clone(),
            ),
            (
                "another metadata value",
                up.url.clone(),
                with("x-amz-meta-prism-file-id", "f2"),
                body.clone(),
            ),
            (
                "extra metadata",
                up.url.clone(),
                with("x-amz-meta-extra", "x"),
                body.clone(),
            ),
            (
                "a forged signature",
                forge_signature(&up.url),
                headers.clone(),
                body.clone(),
            ),
        ];
        for (what, url, h, b) in cases {
            let r = send_put(&http, &url, &h, b).await;
            assert!(
                r.status().is_client_error(),
                "{what}: answered {}",
                r.status()
            );
            absent().await;
        }
        let short = store
            .presign_upload(&UploadPolicy {
                expires_in: Duration::from_secs(1),
                ..policy.clone()
            })
            .await
            .expect("presign a short grant");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let r = send_put(&http, &short.url, &headers, body.clone()).await;
        assert!(
            r.status().is_client_error(),
            "an expired grant: answered {}",
            r.status()
        );
        absent().await;
    }
    let r = send_put(&http, &up.url, &headers, body.clone()).await;
    assert!(r.status().is_success(), "PUT answered {}", r.status());
    let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(&body));
    assert_eq!(
        r.headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        Some(format!("\"{md5}\"")),
        "ETag: the quoted hex MD5 of the body"
    );
    let head = store.head(&key).await.expect("the PUT stored the object");
    assert_eq!(head.size, body.len() as u64);
    assert_eq!(head.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(head.metadata, policy.metadata);
    assert_eq!(store.get(&key).await.expect("get"), Bytes::from(body));
}
