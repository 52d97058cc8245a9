//! Score a folder of variants written by `prism-resize bench` or the sharp baseline script
//! (`{stem}-{width}w.{webp|avif}`) with SSIMULACRA 2, every program against the same
//! reference: the engine's decode of the corpus file (oriented, sRGB) resized with Lanczos3
//! straight to the variant's size. Prints one CSV line per variant:
//! `label,file,format,width,bytes,score`.
//!
//! `cargo run --example score_variants -p prism-resize -- CORPUS DIR LABEL`

use std::path::Path;

#[path = "support/variants.rs"]
mod variants;

use prism_resize::render::{EncodeSettings, Limits, color, decode, perceptual};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() == 3, "usage: score_variants CORPUS DIR LABEL");
    let (corpus, dir, label) = (Path::new(&args[0]), Path::new(&args[1]), &args[2]);
    let settings = EncodeSettings::default();
    let limits = Limits::default();
    let mut corpus = variants::Corpus::open(corpus)?;
    println!("label,file,format,width,bytes,score");
    for v in corpus.variants(dir, &["webp", "avif"])? {
        let encoded = std::fs::read(&v.path)?;
        let probe = decode::probe(&encoded, &limits)?;
        let (dist, _) = color::to_srgb8(decode::decode(&encoded, &probe, probe.width, &settings)?)?;
        let reference = corpus.reference(&v.stem, dist.width, dist.height)?;
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
            "{label},{},{},{},{},{score}",
            v.stem,
            v.format,
            v.width,
            encoded.len()
        );
    }
    Ok(())
}
