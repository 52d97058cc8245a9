//! `prism upload --size ... --focal-point ...` end to end on the local pipeline: the flags'
//! values parse into the batch's `sizes`, the API signs them, the resize worker renders each at
//! its exact size under its `{w}x{h}-{fit}` key, and the batch view records width, height and
//! fit.
#![allow(clippy::unwrap_used, missing_docs)] // test code: a panic is the failure report

use std::net::SocketAddr;

use shared::variant::{Background, Fit, Focus};
use tokio_util::sync::CancellationToken;

#[test]
fn size_flags_parse_and_refuse_what_is_not_a_size() {
    let s = prism::upload::parse_size("256x128:cover:auto").unwrap();
    assert_eq!(
        (s.width, s.height, s.fit, s.focus),
        (256, 128, Fit::Cover, Focus::Auto)
    );
    let s = prism::upload::parse_size("400x300:contain:#FFFFFF80").unwrap();
    assert_eq!(s.background, Some(Background([255, 255, 255, 128])));
    let s = prism::upload::parse_size("64x64").unwrap();
    assert_eq!(s.fit, Fit::Inside);
    for bad in [
        "256",
        "256x",
        "x256",
        "256x256:fill",
        "256x256:cover:faces",
        "1x1:contain:#ff",
        "256x256:cover:auto:x",
    ] {
        assert!(prism::upload::parse_size(bad).is_err(), "{bad}");
    }
    assert!(prism::upload::parse_focal_point("0.5,0.25").is_ok());
    assert!(prism::upload::parse_focal_point("0.5").is_err());
    assert!(prism::upload::parse_focal_point("2,0").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_with_size_flags_renders_exact_sizes() {
    let corpus = shared::testing::corpus();
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let dev = prism::dev::start(
        dir.path(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let args = prism::upload::UploadArgs {
        paths: vec![corpus.join("Landscape_6.jpg")],
        api: dev.url.clone(),
        token: dev.token.clone(),
        widths: vec![320],
        formats: vec!["webp".into()],
        keep_original: false,
        wait_secs: 240,
        progress: false,
        jpeg_quality: None,
        quality: None,
        lossless: shared::variant::Lossless::Off,
    };
    let sized = prism::upload::SizeArgs {
        sizes: [
            "256x256:cover:auto",
            "200x100:cover:focal_point",
            "300x300:contain:#ff0000",
        ]
        .iter()
        .map(|s| prism::upload::parse_size(s).unwrap())
        .collect(),
        focal_point: Some(prism::upload::parse_focal_point("0.2,0.8").unwrap()),
    };
    let batch = prism::upload::run_sized(&args, shared::api::UploadMethodSpec::Post, &sized)
        .await
        .unwrap();
    let f = &batch.files[0];
    assert_eq!(f.status, shared::port::FileStatus::Done, "{f:?}");
    let mut got: Vec<(u32, u32, Fit, String)> = f
        .variants
        .iter()
        .map(|v| {
            let name = v
                .url
                .split('?')
                .next()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned();
            let label = name.split('.').next().unwrap().to_owned();
            (v.width, v.height, v.fit, label)
        })
        .collect();
    got.sort_by_key(|g| g.3.clone());
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got.contains(&(256, 256, Fit::Cover, "256x256-cover".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&(200, 100, Fit::Cover, "200x100-cover".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&(300, 300, Fit::Contain, "300x300-contain".into())),
        "{got:?}"
    );
    assert!(
        got.iter().any(|g| g.2 == Fit::Inside && g.0 == 320),
        "{got:?}"
    );
    // Only the inside variant is a srcset candidate.
    let srcset = &f.srcset[&shared::api::OutputFormat::Webp];
    assert_eq!(srcset.matches(", ").count(), 0, "{srcset}");
    // Each variant's bytes have its recorded size.
    let http = reqwest::Client::new();
    for v in &f.variants {
        let bytes = http
            .get(&v.url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!(
            (img.width(), img.height()),
            (v.width, v.height),
            "{}",
            v.url
        );
    }
    dev.stop().await;
}
