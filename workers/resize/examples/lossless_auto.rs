//! Measures `"lossless": "auto"`: for each image given, every default-width variant's
//! [`looks_synthetic`] statistics, its lossy (quality 80) and lossless WebP sizes, and what
//! `auto` picks.
//!
//! ```sh
//! cargo run --release -p prism-resize --example lossless_auto -- IMAGE...
//! ```

use prism_resize::render::{
    self, EncodeSettings, Limits,
    encode::{looks_synthetic, synthetic_stats},
};
use shared::variant::{Lossless, OutputFormat, VariantRequest};

fn main() {
    let (limits, settings) = (Limits::default(), EncodeSettings::default());
    println!("file\twidth\trepeats‰\tcolours\tlossy\tlossless\tauto");
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).expect("read");
        let request = |lossless| VariantRequest {
            formats: vec![OutputFormat::Png, OutputFormat::Webp],
            lossless,
            ..VariantRequest::default()
        };
        let lossy =
            render::render(&bytes, &request(Lossless::Off), &limits, &settings).expect("render");
        let exact =
            render::render(&bytes, &request(Lossless::On), &limits, &settings).expect("render");
        let webp = |r: &render::Rendered| {
            r.variants
                .iter()
                .filter(|v| v.format == OutputFormat::Webp)
                .map(|v| v.bytes.len())
                .collect::<Vec<_>>()
        };
        // The PNG variant decodes to the engine's resized raster, exactly.
        for ((png, lossy), exact) in exact
            .variants
            .iter()
            .filter(|v| v.format == OutputFormat::Png)
            .zip(webp(&lossy))
            .zip(webp(&exact))
        {
            let img = image::load_from_memory(&png.bytes).expect("png");
            let raster = render::resize::Raster {
                width: img.width(),
                height: img.height(),
                channels: usize::from(img.color().channel_count()),
                data: img.into_bytes(),
            };
            let (repeats, colours) = synthetic_stats(&raster);
            let colours = if colours == usize::MAX {
                "-".to_owned()
            } else {
                colours.to_string()
            };
            println!(
                "{}\t{}\t{repeats}\t{colours}\t{lossy}\t{exact}\t{}",
                std::path::Path::new(&path)
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy(),
                png.width,
                if looks_synthetic(&raster) {
                    "lossless"
                } else {
                    "lossy"
                }
            );
        }
    }
}
