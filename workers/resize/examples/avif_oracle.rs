//! The AVIF counterpart of `webp_oracle`: every AVIF variant of DIR's sharp baseline encoded
//! from the same reference raster by the engine's libaom encoder (`avif_encoder` aom, through
//! libheif) at several speeds (6 is its default), over a grid of qualities on the request's
//! scale.
//! Prints `stem,width,config,q,bytes,score` for `scripts/quality_oracle.py`.
//!
//! `cargo run --release --example avif_oracle -p prism-resize -- CORPUS DIR [SPEED,...]`

use std::collections::BTreeMap;
use std::path::Path;

use prism_resize::render::resize::Raster;
use prism_resize::render::{
    AomSettings, EncodeSettings, Limits, color, decode, encode, orient, perceptual, resize,
};
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
    let limits = Limits::default();
    let mut sources = BTreeMap::new();
    for e in std::fs::read_dir(corpus)? {
        let p = e?.path();
        if let Some(stem) = p.file_stem().map(|s| s.to_string_lossy().into_owned()) {
            sources.insert(stem, p);
        }
    }
    let mut variants: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("avif"))
        .collect();
    variants.sort();
    let qualities: Vec<u8> = vec![30, 38, 45, 52, 60, 70];
    println!("stem,width,config,q,bytes,score");
    let mut frames: BTreeMap<String, Raster> = BTreeMap::new();
    for v in variants {
        let name = v
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Some((stem, w)) = name.rsplit_once('-') else {
            continue;
        };
        let Some(src) = sources.get(stem) else {
            continue;
        };
        if !frames.contains_key(stem) {
            frames.clear();
            let bytes = std::fs::read(src)?;
            let probe = decode::probe(&bytes, &limits)?;
            let (ow, _) = probe.oriented_dimensions();
            let (frame, _) = color::to_srgb8(decode::decode(&bytes, &probe, ow, &settings)?)?;
            frames.insert(
                stem.to_owned(),
                orient::apply(frame, probe.orientation_to_apply()),
            );
        }
        let encoded = std::fs::read(&v)?;
        let probe = decode::probe(&encoded, &limits)?;
        let reference = resize::resize(&frames[stem], probe.width, probe.height)?;
        let reference = if reference.channels == 4 && reference.data.chunks(4).all(|p| p[3] == 255)
        {
            reference.without_alpha()
        } else {
            reference
        };
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
                    w.trim_end_matches('w'),
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
