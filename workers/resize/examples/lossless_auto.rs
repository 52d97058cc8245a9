//! Measures `"lossless": "auto"`: for each image given, every default-width variant's
//! [`looks_synthetic`] statistics, its lossy (quality 80) and lossless WebP sizes, and what
//! `auto` keeps (lossless where the raster passes [`looks_synthetic`] and its lossless file is
//! no larger than the lossy one).
//!
//! ```sh
//! cargo run --release -p prism-resize --example lossless_auto -- IMAGE...
//! ```
//!
//! With `--time off|on|auto` first, it only renders every image (WebP at the default widths,
//! that `lossless`) `ROUNDS` times (default 3), to be timed from outside
//! (`/usr/bin/time -f '%e s wall, %U s user'`), and prints the variant count and their bytes.

use prism_resize::render::{
    self, EncodeSettings, Limits,
    encode::{looks_synthetic, synthetic_stats},
};
use shared::variant::{Lossless, OutputFormat, VariantRequest};

fn main() {
    let (limits, settings) = (Limits::default(), EncodeSettings::default());
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, mode, files @ ..] = args.as_slice()
        && flag == "--time"
    {
        let lossless = match mode.as_str() {
            "off" => Lossless::Off,
            "on" => Lossless::On,
            "auto" => Lossless::Auto,
            _ => panic!("--time off|on|auto"),
        };
        let rounds: usize = std::env::var("ROUNDS").map_or(3, |r| r.parse().expect("ROUNDS"));
        let request = VariantRequest {
            formats: vec![OutputFormat::Webp],
            lossless,
            ..VariantRequest::default()
        };
        let inputs: Vec<Vec<u8>> = files
            .iter()
            .map(|p| std::fs::read(p).expect("read"))
            .collect();
        let (mut variants, mut bytes, mut kept) = (0, 0, 0);
        for _ in 0..rounds {
            (variants, bytes, kept) = (0, 0, 0);
            for input in &inputs {
                let r = render::render(input, &request, &limits, &settings).expect("render");
                variants += r.variants.len();
                bytes += r.variants.iter().map(|v| v.bytes.len()).sum::<usize>();
                kept += r.variants.iter().filter(|v| v.lossless).count();
            }
        }
        println!("{mode}: {variants} variants, {kept} lossless, {bytes} bytes");
        return;
    }
    println!("file\twidth\trepeats‰\tcolours\tlossy\tlossless\tauto");
    for path in args {
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
                if looks_synthetic(&raster) && exact <= lossy {
                    "lossless"
                } else {
                    "lossy"
                }
            );
        }
    }
}
