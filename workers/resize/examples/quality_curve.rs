//! Print the SSIMULACRA 2 score and bytes of a file's resized variant against the encoder
//! quality, for WebP and AVIF: the curves the quality search (`render::perceptual`) walks.
//!
//! `cargo run --example quality_curve -p prism-resize -- FILE WIDTH [Q...]`

use prism_resize::render::{
    EncodeSettings, Limits, color, decode, encode, orient, perceptual, resize, scaled_height,
};
use shared::variant::OutputFormat;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 2, "usage: quality_curve FILE WIDTH [Q...]");
    let bytes = std::fs::read(&args[0])?;
    let width: u32 = args[1].parse()?;
    let qualities: Vec<u8> = if args.len() > 2 {
        args[2..]
            .iter()
            .map(|q| q.parse())
            .collect::<Result<_, _>>()?
    } else {
        vec![20, 30, 40, 50, 60, 70, 80, 90]
    };
    let settings = EncodeSettings::default();
    let probe = decode::probe(&bytes, &Limits::default())?;
    let (frame, _) = color::to_srgb8(decode::decode(&bytes, &probe, width, &settings)?)?;
    let (ow, oh) = probe.oriented_dimensions();
    let h = scaled_height(ow, oh, width);
    let (tw, th) = if probe.orientation_to_apply() >= 5 {
        (h, width)
    } else {
        (width, h)
    };
    let raster = orient::apply(
        resize::resize(&frame, tw, th)?,
        probe.orientation_to_apply(),
    );
    for format in [OutputFormat::Webp, OutputFormat::Avif] {
        for &q in &qualities {
            let out = encode::encode_lossy(&raster, format, q, &settings)?;
            let s = perceptual::score_encoded(&raster, &out, &settings)?;
            println!("{format} {width} q{q}: {} bytes, score {s}", out.len());
        }
    }
    Ok(())
}
