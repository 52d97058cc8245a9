//! How few bytes can libwebp spend on the sharp baseline's variants at their SSIMULACRA 2
//! scores? For every WebP variant in DIR (`{stem}-{width}w.webp`), encode the reference
//! raster (the engine's decode of the corpus file, oriented, sRGB, Lanczos3 to the variant's
//! size: the same reference `score_variants` scores against) with several libwebp
//! configurations over a grid of qualities, and print `stem,width,config,q,bytes,score`.
//! `scripts/quality_oracle.py` then finds the cheapest choice per variant under the
//! `auto:good` bars.
//!
//! `cargo run --release --example webp_oracle -p prism-resize -- CORPUS DIR [CONFIG,...]`

use std::path::Path;

#[path = "support/variants.rs"]
mod variants;

use prism_resize::render::resize::Raster;
use prism_resize::render::webp::{self, Tuning, WebpOptions};
use prism_resize::render::{EncodeSettings, encode, perceptual};
use rayon::prelude::*;

/// A named libwebp configuration: `method` and what differs from sharp's.
#[derive(Clone, Copy)]
struct Cfg {
    name: &'static str,
    method: u8,
    tuning: Tuning,
}

fn configs() -> Vec<Cfg> {
    let m6 = |name, tuning| Cfg {
        name,
        method: 6,
        tuning,
    };
    let none = Tuning::default();
    vec![
        Cfg {
            name: "m4",
            method: 4,
            tuning: none,
        },
        m6("m6", none),
        m6(
            "m6-syuv",
            Tuning {
                sharp_yuv: true,
                ..none
            },
        ),
        m6(
            "m6-sns25",
            Tuning {
                sns_strength: Some(25),
                ..none
            },
        ),
        m6(
            "m6-sns80",
            Tuning {
                sns_strength: Some(80),
                ..none
            },
        ),
        m6(
            "m6-sns100",
            Tuning {
                sns_strength: Some(100),
                ..none
            },
        ),
        m6(
            "m6-f20",
            Tuning {
                filter_strength: Some(20),
                ..none
            },
        ),
        m6(
            "m6-f90",
            Tuning {
                filter_strength: Some(90),
                ..none
            },
        ),
        m6(
            "m6-seg2",
            Tuning {
                segments: Some(2),
                ..none
            },
        ),
    ]
}

fn encode(r: &Raster, q: u8, cfg: Cfg) -> anyhow::Result<Vec<u8>> {
    let options = WebpOptions {
        quality: q,
        method: cfg.method,
        thread_level: 0,
    };
    Ok(webp::encode_tuned(r, options, cfg.tuning)?)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        (2..=3).contains(&args.len()),
        "usage: webp_oracle CORPUS DIR [CONFIG,...]"
    );
    let wanted: Option<Vec<&str>> = args.get(2).map(|a| a.split(',').collect());
    let (corpus, dir) = (Path::new(&args[0]), Path::new(&args[1]));
    let settings = EncodeSettings::default();
    let mut corpus = variants::Corpus::open(corpus)?;
    let qualities: Vec<u8> = vec![60, 65, 70, 74, 77, 80, 83, 86, 90];
    println!("stem,width,config,q,bytes,score");
    for v in corpus.variants(dir, &["webp"])? {
        let (width, height) = variants::size(&std::fs::read(&v.path)?)?;
        let reference = encode::opaque(&corpus.reference(&v.stem, width, height)?).into_owned();
        let (stem, w) = (&v.stem, &v.width);
        let jobs: Vec<(Cfg, u8)> = configs()
            .into_iter()
            .filter(|c| wanted.as_ref().is_none_or(|w| w.contains(&c.name)))
            .flat_map(|c| qualities.iter().map(move |&q| (c, q)))
            .collect();
        let rows: Vec<String> = jobs
            .par_iter()
            .map(|&(c, q)| {
                let Ok(out) = encode(&reference, q, c) else {
                    return format!("{stem},{w},{},{q},0,nan", c.name);
                };
                let s = perceptual::score_encoded(&reference, &out, &settings).unwrap_or(f64::NAN);
                format!("{stem},{},{},{q},{},{s}", w, c.name, out.len())
            })
            .collect();
        for r in rows {
            println!("{r}");
        }
    }
    Ok(())
}
