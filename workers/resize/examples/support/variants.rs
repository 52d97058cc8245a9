//! A folder of variants written by `prism-resize bench` or the sharp baseline script
//! (`{stem}-{width}w.{webp|avif}`) and the corpus they were made from: the shared part of the
//! examples that score variants against the engine's reference.
// Each example uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prism_resize::render::resize::Raster;
use prism_resize::render::{EncodeSettings, Limits, color, decode, orient, resize};

/// One variant file.
pub struct Variant {
    /// The file.
    pub path: PathBuf,
    /// The corpus file's stem.
    pub stem: String,
    /// The width in the file name.
    pub width: String,
    /// `webp` or `avif`.
    pub format: String,
}

/// The corpus, with the decoded frame of the last source asked for.
pub struct Corpus {
    sources: BTreeMap<String, PathBuf>,
    frame: Option<(String, Raster)>,
}

impl Corpus {
    /// Every file directly in `dir`, by stem.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let mut sources = BTreeMap::new();
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if let Some(stem) = p.file_stem().map(|s| s.to_string_lossy().into_owned()) {
                sources.insert(stem, p);
            }
        }
        Ok(Self {
            sources,
            frame: None,
        })
    }

    /// The variants in `dir` with one of `formats` as extension and a source in the corpus,
    /// sorted by path (so the variants of one source come together).
    pub fn variants(&self, dir: &Path, formats: &[&str]) -> anyhow::Result<Vec<Variant>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| formats.contains(&e))
            })
            .collect();
        paths.sort();
        Ok(paths
            .into_iter()
            .filter_map(|path| {
                let name = path.file_stem()?.to_string_lossy().into_owned();
                let (stem, w) = name.rsplit_once('-')?;
                let format = path.extension()?.to_string_lossy().into_owned();
                self.sources.contains_key(stem).then(|| Variant {
                    stem: stem.to_owned(),
                    width: w.trim_end_matches('w').to_owned(),
                    format,
                    path: path.clone(),
                })
            })
            .collect())
    }

    /// The reference for a `width` × `height` variant of `stem`: the engine's decode of the
    /// corpus file (oriented, sRGB) resized with Lanczos3 straight to that size.
    pub fn reference(&mut self, stem: &str, width: u32, height: u32) -> anyhow::Result<Raster> {
        if self.frame.as_ref().is_none_or(|(s, _)| s != stem) {
            self.frame = None;
            let src = self
                .sources
                .get(stem)
                .ok_or_else(|| anyhow::anyhow!("no corpus file for {stem}"))?;
            let settings = EncodeSettings::default();
            let bytes = std::fs::read(src)?;
            let probe = decode::probe(&bytes, &Limits::default())?;
            let (ow, _) = probe.oriented_dimensions();
            let (frame, _) = color::to_srgb8(decode::decode(&bytes, &probe, ow, &settings)?)?;
            let frame = orient::apply(frame, probe.orientation_to_apply());
            self.frame = Some((stem.to_owned(), frame));
        }
        let (_, frame) = self.frame.as_ref().expect("decoded above");
        Ok(resize::resize(frame, width, height)?)
    }
}

/// The decoded size of an encoded variant, from its header.
pub fn size(encoded: &[u8]) -> anyhow::Result<(u32, u32)> {
    let probe = decode::probe(encoded, &Limits::default())?;
    Ok((probe.width, probe.height))
}
