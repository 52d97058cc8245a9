//! The AVIF counterpart of `webp_oracle`: every AVIF variant of DIR's sharp baseline encoded
//! from the same reference raster by the engine's libaom encoder (`avif_encoder` aom, through
//! libheif) at several speeds (6 is its default), over a grid of qualities on the request's
//! scale.
//! Prints `stem,width,config,q,bytes,score` for `scripts/quality_oracle.py`.
//!
//! `cargo run --release --example avif_oracle -p prism-resize -- CORPUS DIR [SPEED,...]`

use std::path::Path;

#[path = "support/variants.rs"]
mod variants;

use prism_resize::render::{AomSettings, EncodeSettings, encode, perceptual};
use rayon::prelude::*;
use shared::variant::OutputFormat;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        (2..=3).contains(&args.len()),
        "usage: avif_oracle CORPUS DIR [SPEED,...]"
    );
    let speeds: Vec<u8> = match args.get(2) {
        Some(a) => a.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![4, 5, 6],
    };
    let (corpus, dir) = (Path::new(&args[0]), Path::new(&args[1]));
    let settings = EncodeSettings::default();
    let mut corpus = variants::Corpus::open(corpus)?;
    let qualities: Vec<u8> = vec![30, 38, 45, 52, 60, 70];
    println!("stem,width,config,q,bytes,score");
    for v in corpus.variants(dir, &["avif"])? {
        let (width, height) = variants::size(&std::fs::read(&v.path)?)?;
        let reference = encode::opaque(&corpus.reference(&v.stem, width, height)?).into_owned();
        let (stem, w) = (&v.stem, &v.width);
        let jobs: Vec<(u8, u8)> = speeds
            .iter()
            .flat_map(|&c| qualities.iter().map(move |&q| (c, q)))
            .collect();
        let rows: Vec<String> = jobs
            .par_iter()
            .filter_map(|&(speed, q)| {
                let s = EncodeSettings {
                    aom: Some(AomSettings {
                        speed,
                        ..AomSettings::default()
                    }),
                    ..settings
                };
                let out = encode::encode_lossy(&reference, OutputFormat::Avif, q, &s).ok()?;
                let score =
                    perceptual::score_encoded(&reference, &out, &settings).unwrap_or(f64::NAN);
                Some(format!(
                    "{stem},{},aom-s{speed},{q},{},{score}",
                    w,
                    out.len()
                ))
            })
            .collect();
        for r in rows {
            println!("{r}");
        }
    }
    Ok(())
}
