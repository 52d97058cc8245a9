//! Score a folder of variants written by `prism-resize bench` or the sharp baseline script
//! (`{stem}-{width}w.{webp|avif}`) with SSIMULACRA 2, every program against the same
//! reference: the engine's decode of the corpus file (oriented, sRGB) resized with Lanczos3
//! straight to the variant's size. Prints one CSV line per variant:
//! `label,file,format,width,bytes,score`.
//!
//! `cargo run --example score_variants -p prism-resize -- CORPUS DIR LABEL`

use std::collections::BTreeMap;
use std::path::Path;

use prism_resize::render::{EncodeSettings, Limits, color, decode, orient, perceptual, resize};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() == 3, "usage: score_variants CORPUS DIR LABEL");
    let (corpus, dir, label) = (Path::new(&args[0]), Path::new(&args[1]), &args[2]);
    let settings = EncodeSettings::default();
    let limits = Limits::default();
    // stem -> corpus file
    let mut sources = BTreeMap::new();
    for e in std::fs::read_dir(corpus)? {
        let p = e?.path();
        if let Some(stem) = p.file_stem().map(|s| s.to_string_lossy().into_owned()) {
            sources.insert(stem, p);
        }
    }
    let mut variants: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("webp" | "avif")
            )
        })
        .collect();
    variants.sort();
    println!("label,file,format,width,bytes,score");
    let mut frames: BTreeMap<String, resize::Raster> = BTreeMap::new();
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
        let format = v
            .extension()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let encoded = std::fs::read(&v)?;
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
        let frame = &frames[stem];
        let probe = decode::probe(&encoded, &limits)?;
        let (dist, _) = color::to_srgb8(decode::decode(&encoded, &probe, probe.width, &settings)?)?;
        let reference = resize::resize(frame, dist.width, dist.height)?;
        let reference = if reference.channels != dist.channels {
            if reference.channels == 4 {
                reference.without_alpha()
            } else {
                reference
            }
        } else {
            reference
        };
        let score = if reference.channels == dist.channels {
            perceptual::score(&reference, &dist)?
        } else {
            // An opaque variant of an RGBA reference whose alpha was all 255 (handled above),
            // or the reverse: compare the colour planes.
            perceptual::score(&reference, &dist.without_alpha())?
        };
        println!(
            "{label},{stem},{format},{},{},{score}",
            w.trim_end_matches('w'),
            encoded.len()
        );
    }
    Ok(())
}
