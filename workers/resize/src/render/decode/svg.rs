//! SVG: a careful sniffer, bounded checks before and after parsing, and rasterisation with
//! resvg at the size the largest variant needs.
//!
//! Every SVG is hostile until bounded. The order of the checks:
//!
//! 1. The bytes: at most [`MAX_SVG_BYTES`] (besides `Limits::max_input_bytes`), UTF-8.
//! 2. The internal DTD subset's entities: each entity's replacement text is measured with the
//!    entities it names expanded (no cycles, at most [`MAX_ENTITY_NESTING`] deep), and the
//!    replacement text of every reference in the document together is at most
//!    [`MAX_ENTITY_EXPANSION`] bytes, so a "billion laughs" costs a scan, not gigabytes.
//! 3. The XML tree (roxmltree): at most [`MAX_XML_NODES`] nodes.
//! 4. The element graph with every `<use>` expanded (usvg copies the element a `use` names):
//!    at most [`MAX_ELEMENTS`] elements, [`MAX_DEPTH`] levels deep, [`MAX_IMAGE_ELEMENTS`]
//!    `<image>` instances; markers count once per vertex their path can have.
//! 5. The intrinsic size (the root's `width`/`height`, or its `viewBox` when they are missing
//!    or relative) against `max_pixels` and `max_dimension`.
//! 6. Embedded images: only `data:` URLs with a raster format prism reads, each probed and
//!    decoded by prism's own decoders under the same [`Limits`] (their pixels, times the number
//!    of `<image>` instances, at most `max_pixels`), handed to resvg as a PNG prism wrote.
//!    Everything else (files, `http:`, nested SVG documents) is never fetched: the image is
//!    left out, as a browser leaves out what it cannot load.
//! 7. After parsing (usvg), the render work is measured on the tree before any pixel is
//!    drawn: the isolated layers alive at once (opacity, clip paths, masks, filters) at most
//!    [`MAX_LIVE_LAYERS`] rasters, and the painted pixels (each path's box, each layer, each
//!    filter primitive weighted by its cost per pixel: a morphology radius or a convolution
//!    kernel multiplies it) at most [`MAX_WORK_PER_PIXEL`] per raster pixel.
//!
//! Text is shaped with the one bundled font (DejaVu Sans, Latin-1); no system font is ever
//! loaded, so every family falls back to it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use resvg::tiny_skia;
use resvg::usvg::{self, roxmltree};

use super::super::{Limits, RenderError, scaled_height};
use super::{Decoded, Layout, Probe, Samples, SourceFormat};

/// How far into the file the sniffer looks for the root element.
pub const SNIFF_BYTES: usize = 4096;
/// Largest SVG accepted, in bytes (whatever `max_input_bytes` allows).
pub const MAX_SVG_BYTES: u64 = 16 << 20;
/// Most bytes that entity references may expand to, over the whole document.
pub const MAX_ENTITY_EXPANSION: u64 = 1 << 20;
/// Deepest chain of entities naming entities.
pub const MAX_ENTITY_NESTING: u32 = 8;
/// Most XML nodes (elements, text, comments) in the document.
pub const MAX_XML_NODES: u32 = 200_000;
/// Most elements once every `<use>` is expanded.
pub const MAX_ELEMENTS: u64 = 250_000;
/// Deepest element nesting, `<use>` expansions included.
pub const MAX_DEPTH: u32 = 256;
/// Most `<image>` elements, `<use>` expansions included.
pub const MAX_IMAGE_ELEMENTS: u64 = 64;
/// Most isolated layers (in raster-sized units) alive at once while rendering.
pub const MAX_LIVE_LAYERS: u64 = 12;
/// Most pixel operations per raster pixel (each path's box, each layer, each filter pass).
pub const MAX_WORK_PER_PIXEL: u64 = 512;
/// A floor under both bounds above for tiny rasters, in pixels (a 16 px icon may still
/// blur a layer several times its size).
pub const MIN_WORK_PIXELS: u64 = 1 << 22;
/// Furthest a path may reach from the raster's origin, in raster pixels (tiny-skia's edges
/// are 26.6 fixed point: it fails from about 6 x 10^8 px).
pub const MAX_COORDINATE: f32 = (1 << 24) as f32;
/// The bundled font.
const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans-Latin1.ttf");
/// Its family name.
const FONT_FAMILY: &str = "DejaVu Sans";

const SVG_NS: &str = "http://www.w3.org/2000/svg";
const XLINK_NS: &str = "http://www.w3.org/1999/xlink";

/// Whether the leading bytes are an SVG document: an optional UTF-8 byte order mark, then
/// whitespace, the XML declaration, comments, processing instructions and a `<!DOCTYPE svg`,
/// then a root element named `svg` (any prefix), all within [`SNIFF_BYTES`].
pub(super) fn sniff(bytes: &[u8]) -> bool {
    let mut s = &bytes[..bytes.len().min(SNIFF_BYTES)];
    if let Some(rest) = s.strip_prefix(b"\xEF\xBB\xBF") {
        s = rest;
    }
    loop {
        let skip = s
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .unwrap_or(s.len());
        s = &s[skip..];
        if s.starts_with(b"<?") {
            let Some(end) = find(s, b"?>") else {
                return false;
            };
            s = &s[end + 2..];
        } else if s.starts_with(b"<!--") {
            let Some(end) = find(&s[4..], b"-->") else {
                return false;
            };
            s = &s[4 + end + 3..];
        } else if let Some(rest) = s.strip_prefix(b"<!DOCTYPE") {
            // The document type names the root element: it must be `svg`. Its internal subset
            // may run past the window; the name is enough.
            let rest = trim_start(rest);
            return name_is_svg(rest) && rest.len() < s.len() - b"<!DOCTYPE".len();
        } else if let Some(rest) = s.strip_prefix(b"<") {
            return name_is_svg(rest);
        } else {
            return false;
        }
    }
}

fn trim_start(s: &[u8]) -> &[u8] {
    let skip = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(s.len());
    &s[skip..]
}

/// Whether `s` starts with an XML name whose local part is `svg`, followed by a delimiter.
fn name_is_svg(s: &[u8]) -> bool {
    let end = s
        .iter()
        .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/' | b'['))
        .unwrap_or(s.len());
    if end == s.len() {
        return false;
    }
    let name = &s[..end];
    let local = name.rsplit(|&b| b == b':').next().unwrap_or(name);
    local == b"svg" && !name.is_empty() && name[0] != b':'
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What the checks before parsing found.
#[derive(Debug)]
struct Scanned {
    width: u32,
    height: u32,
    /// The embedded images' pixels times the `<image>` instances (usvg decodes an image once
    /// per instance).
    embedded_pixels: u64,
}

/// Read the intrinsic size and check every bound that does not need the parsed SVG.
pub(super) fn probe(bytes: &[u8], limits: &Limits, probe: &mut Probe) -> Result<(), RenderError> {
    let scanned = scan(bytes, limits)?;
    probe.width = scanned.width;
    probe.height = scanned.height;
    // The embedded images are decoded next to the raster (which is at most the intrinsic size).
    let pixels = u64::from(scanned.width) * u64::from(scanned.height);
    if pixels.saturating_add(scanned.embedded_pixels) > limits.max_pixels {
        return Err(too_large(format!(
            "the SVG's {pixels} pixels and its embedded images' {} exceed the limit of {}",
            scanned.embedded_pixels, limits.max_pixels
        )));
    }
    probe.extra_pixels = scanned.embedded_pixels;
    Ok(())
}

fn too_large(msg: impl Into<String>) -> RenderError {
    RenderError::TooLarge(msg.into())
}

fn scan(bytes: &[u8], limits: &Limits) -> Result<Scanned, RenderError> {
    if bytes.len() as u64 > MAX_SVG_BYTES {
        return Err(too_large(format!(
            "an SVG is at most {MAX_SVG_BYTES} bytes, this one is {}",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| RenderError::Undecodable(format!("the SVG is not UTF-8: {e}")))?;
    check_entities(text)?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        nodes_limit: MAX_XML_NODES,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::NodesLimitReached => {
            too_large(format!("the SVG has more than {MAX_XML_NODES} XML nodes"))
        }
        roxmltree::Error::EntityReferenceLoop(_) => {
            too_large(format!("the SVG's entities expand too far: {e}"))
        }
        e => RenderError::Undecodable(format!("the SVG is not well-formed XML: {e}")),
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "svg" || root.tag_name().namespace() != Some(SVG_NS) {
        return Err(RenderError::Undecodable(
            "the root element is not an SVG <svg> element".into(),
        ));
    }
    let image_elements = check_elements(&doc)?;
    let (w, h) = intrinsic_size(root)?;
    let width = to_pixels(w)?;
    let height = to_pixels(h)?;
    super::check_dimensions(width, height, limits)?;
    let embedded_pixels = embedded_pixels(&doc, limits, image_elements)?;
    Ok(Scanned {
        width,
        height,
        embedded_pixels: embedded_pixels.saturating_mul(image_elements.max(1)),
    })
}

fn to_pixels(v: f64) -> Result<u32, RenderError> {
    if !v.is_finite() || v <= 0.0 {
        return Err(RenderError::Undecodable(format!(
            "the SVG's size {v} is not positive"
        )));
    }
    let px = v.ceil();
    if px > f64::from(u32::MAX) {
        return Err(too_large(format!("the SVG is {px} px across")));
    }
    Ok(px as u32)
}

/// Measure what the internal subset's general entities expand to, and refuse a document whose
/// references together expand past [`MAX_ENTITY_EXPANSION`].
fn check_entities(text: &str) -> Result<(), RenderError> {
    let Some((entities, body_start)) = internal_subset(text)? else {
        return Ok(());
    };
    if entities.is_empty() {
        return Ok(());
    }
    let mut sizes: HashMap<&str, u64> = HashMap::new();
    let mut total = 0_u64;
    for name in references(&text[body_start..]) {
        if let Some(size) = entity_size(name, &entities, &mut sizes, 0)? {
            total = total.saturating_add(size);
            if total > MAX_ENTITY_EXPANSION {
                return Err(too_large(format!(
                    "the SVG's entity references expand past {MAX_ENTITY_EXPANSION} bytes"
                )));
            }
        }
    }
    Ok(())
}

/// The general entities the prolog's internal DTD subset declares (name to replacement text,
/// the first declaration of a name winning, as in XML) and where the subset ends; `None`
/// without a document type declaration or subset. Comments, processing instructions and quoted
/// strings are skipped as XML does, so a `]` or a declaration inside them fools nothing.
#[allow(clippy::type_complexity)]
fn internal_subset(text: &str) -> Result<Option<(HashMap<&str, &str>, usize)>, RenderError> {
    let unterminated =
        || RenderError::Undecodable("the SVG's document type declaration does not end".into());
    let b = text.as_bytes();
    let find_from = |i: usize, needle: &str| text[i..].find(needle).map(|j| i + j);
    // The prolog: a byte order mark, whitespace, comments and processing instructions.
    let mut i = usize::from(text.starts_with('\u{FEFF}')) * 3;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if text[i..].starts_with("<?") {
            i = find_from(i, "?>").ok_or_else(unterminated)? + 2;
        } else if text[i..].starts_with("<!--") {
            i = find_from(i + 4, "-->").ok_or_else(unterminated)? + 3;
        } else {
            break;
        }
    }
    if !text[i..].starts_with("<!DOCTYPE") {
        return Ok(None);
    }
    // Skip to the subset's `[` (or the declaration's end), over quoted identifiers.
    i += "<!DOCTYPE".len();
    loop {
        match b.get(i) {
            None => return Err(unterminated()),
            Some(b'>') => return Ok(None),
            Some(b'[') => break,
            Some(&q @ (b'"' | b'\'')) => {
                i = b[i + 1..]
                    .iter()
                    .position(|&c| c == q)
                    .ok_or_else(unterminated)?
                    + i
                    + 2;
            }
            Some(_) => i += 1,
        }
    }
    i += 1;
    let skip_decl = |mut i: usize| -> Result<usize, RenderError> {
        loop {
            match b.get(i) {
                None => return Err(unterminated()),
                Some(b'>') => return Ok(i + 1),
                Some(&q @ (b'"' | b'\'')) => {
                    i = b[i + 1..]
                        .iter()
                        .position(|&c| c == q)
                        .ok_or_else(unterminated)?
                        + i
                        + 2;
                }
                Some(_) => i += 1,
            }
        }
    };
    let mut entities = HashMap::new();
    loop {
        let rest = &text[i..];
        if rest.is_empty() {
            return Err(unterminated());
        } else if rest.starts_with(']') {
            return Ok(Some((entities, i + 1)));
        } else if rest.starts_with("<!--") {
            i = find_from(i + 4, "-->").ok_or_else(unterminated)? + 3;
        } else if rest.starts_with("<?") {
            i = find_from(i + 2, "?>").ok_or_else(unterminated)? + 2;
        } else if let Some(decl) = rest.strip_prefix("<!ENTITY") {
            let decl_start = i;
            let decl = decl.trim_start();
            if decl.starts_with('%') {
                return Err(RenderError::Undecodable(
                    "the SVG declares a parameter entity".into(),
                ));
            }
            let name_end = decl
                .find(|c: char| c.is_whitespace() || c == '>')
                .unwrap_or(decl.len());
            let name = &decl[..name_end];
            let after = decl[name_end..].trim_start();
            // An external (SYSTEM/PUBLIC) entity is never loaded; a reference to one fails
            // the parse.
            if let Some(q) = after.chars().next().filter(|c| *c == '"' || *c == '\'') {
                let value_end = after[1..].find(q).ok_or_else(unterminated)?;
                entities.entry(name).or_insert(&after[1..1 + value_end]);
            }
            i = skip_decl(decl_start + "<!ENTITY".len())?;
        } else if rest.starts_with("<!") {
            i = skip_decl(i + 2)?;
        } else if rest.starts_with('%') {
            return Err(RenderError::Undecodable(
                "the SVG's subset references a parameter entity".into(),
            ));
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
}

/// The names of the `&name;` references in `s` (character references excluded).
fn references(s: &str) -> impl Iterator<Item = &str> {
    s.split('&').skip(1).filter_map(|r| {
        let end = r.find(';')?;
        let name = &r[..end];
        (!name.is_empty()
            && !name.starts_with('#')
            && !name.contains(|c: char| c.is_whitespace() || c == '<' || c == '&'))
        .then_some(name)
    })
}

/// The expanded length of entity `name` (`None` when it is not declared in the subset).
fn entity_size<'a>(
    name: &'a str,
    entities: &HashMap<&'a str, &'a str>,
    sizes: &mut HashMap<&'a str, u64>,
    depth: u32,
) -> Result<Option<u64>, RenderError> {
    if let Some(&s) = sizes.get(name) {
        return Ok(Some(s));
    }
    let Some(&value) = entities.get(name) else {
        return Ok(None);
    };
    if depth >= MAX_ENTITY_NESTING {
        return Err(too_large(format!(
            "the SVG's entities nest more than {MAX_ENTITY_NESTING} deep"
        )));
    }
    let mut size = value.len() as u64;
    for inner in references(value) {
        if inner == name {
            return Err(RenderError::Undecodable(format!(
                "the entity {name} names itself"
            )));
        }
        if let Some(s) = entity_size(inner, entities, sizes, depth + 1)? {
            size = size.saturating_add(s);
        }
        if size > MAX_ENTITY_EXPANSION {
            return Err(too_large(format!(
                "the SVG's entity {name} expands past {MAX_ENTITY_EXPANSION} bytes"
            )));
        }
    }
    sizes.insert(name, size);
    Ok(Some(size))
}

fn href<'a>(node: roxmltree::Node<'a, '_>) -> Option<&'a str> {
    node.attribute((XLINK_NS, "href"))
        .or_else(|| node.attribute("href"))
}

/// Count the elements with every `<use>` expanded, their depth and the `<image>` instances;
/// returns the `<image>` instance count.
fn check_elements(doc: &roxmltree::Document) -> Result<u64, RenderError> {
    let ids: HashMap<&str, roxmltree::NodeId> = doc
        .descendants()
        .filter(|n| n.is_element())
        .filter_map(|n| {
            let id = n
                .attribute("id")
                .or_else(|| n.attribute(("http://www.w3.org/XML/1998/namespace", "id")))?;
            Some((id, n.id()))
        })
        .collect();
    // Markers set in a style sheet may apply to any shape.
    let sheet_markers = doc
        .descendants()
        .filter(|n| n.has_tag_name((SVG_NS, "style")))
        .any(|n| n.text().is_some_and(|t| t.contains("marker")));
    let largest_marker = doc
        .descendants()
        .filter(|n| n.has_tag_name((SVG_NS, "marker")))
        .map(|n| n.descendants().filter(|d| d.is_element()).count() as u64)
        .max()
        .unwrap_or(0);

    #[derive(Clone, Copy, Default)]
    struct Cost {
        elements: u64,
        depth: u32,
        images: u64,
    }
    let mut memo: HashMap<roxmltree::NodeId, Cost> = HashMap::new();
    // An explicit stack (no recursion: a chain of `use` may be long). `false` on first visit,
    // `true` once the children are done.
    let root = doc.root_element();
    let mut stack = vec![(root, false)];
    let mut on_stack: std::collections::HashSet<roxmltree::NodeId> = Default::default();
    let mut steps = 0_u64;
    let edges = |n: roxmltree::Node<'_, '_>| -> Vec<roxmltree::NodeId> {
        let link = n
            .has_tag_name((SVG_NS, "use"))
            .then(|| href(n))
            .flatten()
            .and_then(|h| h.strip_prefix('#'))
            .and_then(|id| ids.get(id))
            .copied();
        n.children()
            .filter(|c| c.is_element())
            .map(|c| c.id())
            .chain(link)
            .collect()
    };
    while let Some((node, done)) = stack.pop() {
        steps += 1;
        if steps > 4 * MAX_ELEMENTS + u64::from(MAX_XML_NODES) {
            return Err(too_large("the SVG's element graph is too large"));
        }
        if memo.contains_key(&node.id()) {
            continue;
        }
        if !done {
            on_stack.insert(node.id());
            stack.push((node, true));
            for next in edges(node) {
                // usvg skips a `use` naming its own ancestor but expands longer cycles until
                // its depth limit: refuse every cycle.
                if on_stack.contains(&next) {
                    return Err(RenderError::Undecodable(
                        "the SVG's <use> elements form a cycle".into(),
                    ));
                }
                if !memo.contains_key(&next)
                    && let Some(n) = doc.get_node(next)
                {
                    stack.push((n, false));
                }
            }
            continue;
        }
        on_stack.remove(&node.id());
        let mut cost = Cost {
            elements: 1,
            depth: 1,
            images: u64::from(node.has_tag_name((SVG_NS, "image"))),
        };
        for next in edges(node) {
            let c = memo.get(&next).copied().unwrap_or_default();
            cost.elements = cost.elements.saturating_add(c.elements);
            cost.depth = cost.depth.max(c.depth.saturating_add(1));
            cost.images = cost.images.saturating_add(c.images);
        }
        let markers = node.attributes().any(|a| a.name().starts_with("marker"))
            || node
                .attribute("style")
                .is_some_and(|s| s.contains("marker"))
            || sheet_markers;
        if markers && largest_marker > 0 {
            let data = ["d", "points", "x1", "x2"]
                .iter()
                .filter_map(|a| node.attribute(*a))
                .map(str::len)
                .sum::<usize>();
            let vertices = data as u64 / 2 + 2;
            cost.elements = cost
                .elements
                .saturating_add(vertices.saturating_mul(largest_marker));
        }
        if cost.elements > MAX_ELEMENTS {
            return Err(too_large(format!(
                "the SVG expands to more than {MAX_ELEMENTS} elements"
            )));
        }
        if cost.depth > MAX_DEPTH {
            return Err(too_large(format!(
                "the SVG's elements nest more than {MAX_DEPTH} deep"
            )));
        }
        if cost.images > MAX_IMAGE_ELEMENTS {
            return Err(too_large(format!(
                "the SVG has more than {MAX_IMAGE_ELEMENTS} <image> elements"
            )));
        }
        memo.insert(node.id(), cost);
    }
    Ok(memo.get(&root.id()).map_or(0, |c| c.images))
}

/// The intrinsic size in px: `width`/`height` when absolute, else the `viewBox` (scaled by a
/// percentage), else 100 × 100 (usvg's default).
fn intrinsic_size(root: roxmltree::Node) -> Result<(f64, f64), RenderError> {
    use svgtypes::LengthUnit as U;
    let length = |name: &str| -> Result<Option<svgtypes::Length>, RenderError> {
        root.attribute(name)
            .map(|v| {
                v.parse::<svgtypes::Length>().map_err(|e| {
                    RenderError::Undecodable(format!("the SVG's {name} {v:?} is not a length: {e}"))
                })
            })
            .transpose()
    };
    let view_box = root
        .attribute("viewBox")
        .map(|v| {
            v.parse::<svgtypes::ViewBox>().map_err(|e| {
                RenderError::Undecodable(format!("the SVG's viewBox {v:?} is invalid: {e}"))
            })
        })
        .transpose()?;
    let font_size = 12.0;
    let absolute = |l: svgtypes::Length, reference: f64| -> f64 {
        let n = l.number;
        match l.unit {
            U::None | U::Px => n,
            U::Em => n * font_size,
            U::Ex => n * font_size / 2.0,
            U::In => n * 96.0,
            U::Cm => n * 96.0 / 2.54,
            U::Mm => n * 96.0 / 25.4,
            U::Pt => n * 4.0 / 3.0,
            U::Pc => n * 16.0,
            U::Percent => reference * n / 100.0,
        }
    };
    let (vw, vh) = view_box.map_or((100.0, 100.0), |v| (v.w, v.h));
    let w = length("width")?.map_or(vw, |l| absolute(l, vw));
    let h = match length("height")? {
        Some(l) => absolute(l, vh),
        // Only a width: keep the viewBox's aspect ratio.
        None if view_box.is_some() && root.attribute("width").is_some() => w * vh / vw,
        None => vh,
    };
    let w = if root.attribute("width").is_none() && root.attribute("height").is_some() {
        h * vw / vh
    } else {
        w
    };
    Ok((w, h))
}

/// Probe every `data:` raster image the document embeds with prism's own probe; their pixels
/// times the `<image>` instances must stay within `max_pixels`.
fn embedded_pixels(
    doc: &roxmltree::Document,
    limits: &Limits,
    instances: u64,
) -> Result<u64, RenderError> {
    let mut total = 0_u64;
    for node in doc
        .descendants()
        .filter(|n| n.has_tag_name((SVG_NS, "image")))
    {
        let Some(data) = href(node).and_then(data_url) else {
            continue;
        };
        let Some(pixels) = embedded_probe(&data, limits)? else {
            continue;
        };
        total = total.saturating_add(pixels);
    }
    if total.saturating_mul(instances.max(1)) > limits.max_pixels {
        return Err(too_large(format!(
            "the SVG's embedded images come to {total} pixels × {instances} uses, the limit is {}",
            limits.max_pixels
        )));
    }
    Ok(total)
}

/// The bytes of a `data:` URL (base64 or percent-encoded), `None` for any other href.
fn data_url(href: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let rest = href.trim_start().strip_prefix("data:")?;
    let comma = rest.find(',')?;
    let (meta, payload) = (&rest[..comma], &rest[comma + 1..]);
    if meta.ends_with(";base64") {
        let clean: Vec<u8> = payload
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(clean)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(payload.trim()))
            .ok()
    } else {
        Some(percent_decode(payload))
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The pixels of an embedded raster image, `None` when it is no raster format prism reads (it
/// is then left out of the rendering).
fn embedded_probe(data: &[u8], limits: &Limits) -> Result<Option<u64>, RenderError> {
    match super::sniff(data) {
        None | Some(SourceFormat::Svg) => Ok(None),
        Some(_) => match super::probe(data, limits) {
            Ok(p) => Ok(Some(p.decode_pixels())),
            Err(e @ RenderError::TooLarge(_)) => Err(too_large(format!("embedded image: {e}"))),
            // A broken embedded image is left out, as browsers do.
            Err(_) => Ok(None),
        },
    }
}

/// The raster an SVG of intrinsic size `width` × `height` is drawn at when the largest
/// variant is `max_target_width` wide: that width (never more than the intrinsic width), the
/// height keeping the aspect ratio, so the largest variant needs no resampling.
pub fn raster_size(width: u32, height: u32, max_target_width: u32) -> (u32, u32) {
    let w = max_target_width.clamp(1, width.max(1));
    (w, scaled_height(width, height, w))
}

fn fontdb() -> Arc<usvg::fontdb::Database> {
    static DB: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    Arc::clone(DB.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_font_data(FONT.to_vec());
        db.set_serif_family(FONT_FAMILY);
        db.set_sans_serif_family(FONT_FAMILY);
        db.set_monospace_family(FONT_FAMILY);
        db.set_cursive_family(FONT_FAMILY);
        db.set_fantasy_family(FONT_FAMILY);
        Arc::new(db)
    }))
}

/// Decode an embedded raster image through prism's decoders and colour stage, and write it as
/// a PNG for resvg (which then decodes only bytes prism made).
fn embedded_png(data: &[u8], limits: &Limits, budget: &AtomicU64) -> Option<usvg::ImageKind> {
    if matches!(super::sniff(data), None | Some(SourceFormat::Svg)) {
        return None;
    }
    let probe = super::probe(data, limits).ok()?;
    let pixels = probe.decode_pixels();
    // Charged against what the probe of the whole SVG admitted.
    let left = budget.load(Ordering::Relaxed);
    if pixels > left {
        return None;
    }
    budget.store(left - pixels, Ordering::Relaxed);
    let decoded = super::decode(
        data,
        &probe,
        probe.oriented_dimensions().0,
        &crate::render::EncodeSettings::default(),
    )
    .ok()?;
    let raster = super::super::color::to_srgb8(decoded).ok()?.0;
    let raster = if probe.orientation_to_apply() == 1 {
        raster
    } else {
        super::super::orient::transform(&raster, probe.orientation_to_apply())
    };
    let color = if raster.channels == 4 {
        image::ExtendedColorType::Rgba8
    } else {
        image::ExtendedColorType::Rgb8
    };
    let mut png = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        &mut png,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::NoFilter,
    );
    image::ImageEncoder::write_image(encoder, &raster.data, raster.width, raster.height, color)
        .ok()?;
    Some(usvg::ImageKind::PNG(Arc::new(png)))
}

/// Parse with usvg (no file, no network, the bundled font only) and rasterise at the width of
/// the largest variant, `max_target_width` (never above the intrinsic width).
pub(super) fn decode(
    bytes: &[u8],
    probe: &Probe,
    max_target_width: u32,
) -> Result<Decoded, RenderError> {
    let limits = probe.limits;
    let scanned = scan(bytes, &limits)?;
    let budget = AtomicU64::new(scanned.embedded_pixels);
    let options = usvg::Options {
        resources_dir: None,
        font_family: FONT_FAMILY.into(),
        fontdb: fontdb(),
        image_href_resolver: usvg::ImageHrefResolver {
            resolve_data: Box::new(|_mime, data, _| embedded_png(&data, &limits, &budget)),
            // Files and URLs are never opened or fetched.
            resolve_string: Box::new(|_, _| None),
        },
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_data(bytes, &options).map_err(|e| match e {
        usvg::Error::ElementsLimitReached => too_large(format!("the SVG is too complex: {e}")),
        e => RenderError::Undecodable(format!("the SVG cannot be parsed: {e}")),
    })?;
    let (width, height) = raster_size(scanned.width, scanned.height, max_target_width);
    super::check_dimensions(width, height, &limits)?;
    let size = tree.size();
    let ts = tiny_skia::Transform::from_scale(
        width as f32 / size.width(),
        height as f32 / size.height(),
    );
    check_work(&tree, ts, width, height)?;
    let mut pixmap = tiny_skia::Pixmap::new(width, height)
        .ok_or_else(|| too_large(format!("a {width}x{height} raster cannot be allocated")))?;
    // The checks above keep tiny-skia inside its range; should a path still reach one of its
    // assertions, the file fails with a code instead of taking the worker down.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        resvg::render(&tree, ts, &mut pixmap.as_mut());
    }))
    .map_err(|_| RenderError::Undecodable("the SVG renderer failed on this document".into()))?;
    drop(tree);
    // tiny-skia's pixels are premultiplied; the engine takes unassociated alpha.
    let mut samples = pixmap.take();
    for p in samples.chunks_exact_mut(4) {
        let a = u32::from(p[3]);
        if a == 0 {
            p.copy_from_slice(&[0, 0, 0, 0]);
        } else if a < 255 {
            for c in &mut p[..3] {
                *c = ((u32::from(*c) * 255 + a / 2) / a).min(255) as u8;
            }
        }
    }
    Ok(Decoded {
        width,
        height,
        layout: Layout::Rgba,
        samples: Samples::U8(samples),
        icc: None,
        nclx: None,
    })
}

/// Measure the render work on the parsed tree before drawing: the pixels of every isolated
/// layer alive at once, and the pixel operations of every path, layer and filter primitive.
fn check_work(
    tree: &usvg::Tree,
    ts: tiny_skia::Transform,
    width: u32,
    height: u32,
) -> Result<(), RenderError> {
    let canvas = u64::from(width) * u64::from(height);
    let max_live = (canvas * MAX_LIVE_LAYERS).max(MIN_WORK_PIXELS);
    let max_work = (canvas * MAX_WORK_PER_PIXEL).max(MIN_WORK_PIXELS);
    let max_steps = 4 * MAX_ELEMENTS;
    // resvg clamps a layer to twice the canvas on every side.
    let (w, h) = (f64::from(width), f64::from(height));
    let clamp_px = |r: usvg::Rect| -> u64 {
        let (l, t) = (
            f64::from(r.left()).max(-2.0 * w),
            f64::from(r.top()).max(-2.0 * h),
        );
        let (rr, b) = (
            f64::from(r.right()).min(3.0 * w),
            f64::from(r.bottom()).min(3.0 * h),
        );
        if rr <= l || b <= t {
            return 0;
        }
        ((rr - l).ceil() * (b - t).ceil()) as u64
    };
    let mut work = 0_u64;
    let mut peak = 0_u64;
    let mut steps = 0_u64;
    let mut stack: Vec<(&usvg::Group, u64)> = vec![(tree.root(), 0)];
    while let Some((group, live)) = stack.pop() {
        steps += 1;
        if steps > max_steps {
            return Err(too_large("the SVG is too complex to render"));
        }
        let mut live = live;
        if group.should_isolate() {
            let layer = group
                .abs_layer_bounding_box()
                .to_rect()
                .transform(ts)
                .map_or(0, clamp_px)
                + 1;
            let mut factor = 1 + u64::from(group.clip_path().is_some()) * 2;
            factor += u64::from(group.mask().is_some()) * 3;
            let scale = {
                let t = ts.pre_concat(group.abs_transform());
                f64::from(t.sx.hypot(t.ky).max(t.kx.hypot(t.sy)))
            };
            let mut filter_work = 0_u64;
            for filter in group.filters() {
                factor += 1 + filter.primitives().len() as u64;
                for p in filter.primitives() {
                    filter_work = filter_work.saturating_add(primitive_cost(p.kind(), scale));
                }
            }
            live = live.saturating_add(layer.saturating_mul(factor));
            peak = peak.max(live);
            work = work.saturating_add(layer.saturating_mul(factor.saturating_add(filter_work)));
        }
        for node in group.children() {
            match node {
                usvg::Node::Group(g) => stack.push((g, live)),
                usvg::Node::Path(p) => {
                    for paint in [
                        p.fill().map(usvg::Fill::paint),
                        p.stroke().map(usvg::Stroke::paint),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        if let usvg::Paint::Pattern(pattern) = paint {
                            stack.push((pattern.root(), live));
                        }
                    }
                    let painted = u64::from(p.fill().is_some()) + u64::from(p.stroke().is_some());
                    let bounds = p.abs_stroke_bounding_box().transform(ts);
                    check_coordinates(bounds)?;
                    let px = bounds.map_or(0, clamp_px).min(canvas * 25);
                    work = work.saturating_add(px.saturating_mul(painted));
                }
                usvg::Node::Image(i) => {
                    let px = i.abs_bounding_box().transform(ts).map_or(0, clamp_px);
                    work = work.saturating_add(px);
                    if let usvg::ImageKind::SVG(t) = i.kind() {
                        stack.push((t.root(), live));
                    }
                }
                usvg::Node::Text(t) => stack.push((t.flattened(), live)),
            }
        }
        // Clip paths, masks and filter images are drawn too, once per use.
        if let Some(c) = group.clip_path() {
            stack.push((c.root(), live));
            if let Some(c) = c.clip_path() {
                stack.push((c.root(), live));
            }
        }
        if let Some(m) = group.mask() {
            stack.push((m.root(), live));
            if let Some(m) = m.mask() {
                stack.push((m.root(), live));
            }
        }
        for filter in group.filters() {
            for p in filter.primitives() {
                if let usvg::filter::Kind::Image(i) = p.kind() {
                    stack.push((i.root(), live));
                }
            }
        }
        if work > max_work {
            return Err(too_large(format!(
                "the SVG needs more than {max_work} pixel operations to render at {width}x{height}"
            )));
        }
        if peak > max_live {
            return Err(too_large(format!(
                "the SVG needs more than {max_live} pixels of layers at once at {width}x{height}"
            )));
        }
    }
    Ok(())
}

/// Refuse a path drawn further than [`MAX_COORDINATE`] pixels from the raster's origin:
/// tiny-skia's fixed-point edge builder overflows (and asserts) long before `f32` does.
fn check_coordinates(bounds: Option<usvg::Rect>) -> Result<(), RenderError> {
    let far = bounds.is_some_and(|r| {
        [r.left(), r.top(), r.right(), r.bottom()]
            .iter()
            .any(|c| !c.is_finite() || c.abs() > MAX_COORDINATE)
    });
    if far {
        return Err(RenderError::Undecodable(format!(
            "the SVG draws a path more than {MAX_COORDINATE} px from its canvas"
        )));
    }
    Ok(())
}

/// Operations per pixel of one filter primitive (a blur is a constant number of box passes
/// whatever its radius; a morphology or convolution visits its whole window).
fn primitive_cost(kind: &usvg::filter::Kind, scale: f64) -> u64 {
    use usvg::filter::Kind as K;
    match kind {
        K::GaussianBlur(_) | K::DropShadow(_) => 8,
        K::Morphology(m) => {
            let rx = (f64::from(m.radius_x().get()) * scale).min(1e6);
            let ry = (f64::from(m.radius_y().get()) * scale).min(1e6);
            ((2.0 * rx + 1.0) * (2.0 * ry + 1.0)) as u64
        }
        K::ConvolveMatrix(c) => {
            u64::from(c.matrix().columns()).saturating_mul(u64::from(c.matrix().rows()))
        }
        K::Turbulence(t) => 8 * u64::from(t.num_octaves().clamp(1, 1 << 20)),
        K::DiffuseLighting(_) | K::SpecularLighting(_) => 16,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_svg_roots_only() {
        assert!(sniff(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"));
        assert!(sniff(
            b"\xEF\xBB\xBF  <?xml version=\"1.0\"?>\n<!-- hi -->\n<svg>"
        ));
        assert!(sniff(
            b"<?xml version=\"1.0\"?><!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \"x\"><svg>"
        ));
        assert!(sniff(b"<svg:svg xmlns:svg=\"http://www.w3.org/2000/svg\">"));
        assert!(sniff(
            b"<?xml-stylesheet href=\"a.css\"?>\n<svg\n width=\"1\">"
        ));
        assert!(!sniff(b"<html><svg></svg></html>"));
        assert!(!sniff(b"<!DOCTYPE html><svg>"));
        assert!(!sniff(b"<?xml version=\"1.0\"?><rss><svg/></rss>"));
        assert!(!sniff(b"<svgfoo>"));
        assert!(!sniff(b"<svg"));
        assert!(!sniff(b"<!-- <svg> never closed"));
        assert!(!sniff(b"hello <svg>"));
        let mut late = vec![b' '; SNIFF_BYTES];
        late.extend_from_slice(b"<svg>");
        assert!(!sniff(&late));
    }

    fn size_of(svg: &str) -> (u32, u32) {
        let s = scan(svg.as_bytes(), &Limits::default()).unwrap();
        (s.width, s.height)
    }

    #[test]
    fn intrinsic_size_from_width_height_or_view_box() {
        let ns = "xmlns=\"http://www.w3.org/2000/svg\"";
        assert_eq!(
            size_of(&format!("<svg {ns} viewBox=\"0 0 100 50\"/>")),
            (100, 50)
        );
        assert_eq!(
            size_of(&format!(
                "<svg {ns} width=\"300\" height=\"20mm\" viewBox=\"0 0 1 1\"/>"
            )),
            (300, 76)
        );
        assert_eq!(
            size_of(&format!(
                "<svg {ns} width=\"100%\" height=\"100%\" viewBox=\"0 0 480 360\"/>"
            )),
            (480, 360)
        );
        assert_eq!(
            size_of(&format!("<svg {ns} width=\"200\" viewBox=\"0 0 100 50\"/>")),
            (200, 100)
        );
        assert_eq!(size_of(&format!("<svg {ns}/>")), (100, 100));
    }

    #[test]
    fn refuses_what_is_not_an_svg_document() {
        let l = Limits::default();
        let code = |s: &[u8]| scan(s, &l).unwrap_err().code();
        use shared::error::ErrorCode as C;
        assert_eq!(code(b"<svg><g></svg>"), C::UndecodableImage);
        assert_eq!(code(b"<svg xmlns=\"urn:other\"/>"), C::UndecodableImage);
        assert_eq!(
            code(b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"0\"/>"),
            C::UndecodableImage
        );
        assert_eq!(code(b"<svg \xFF/>"), C::UndecodableImage);
    }

    #[test]
    fn entity_expansion_is_measured_past_comments_and_quoted_brackets() {
        use shared::error::ErrorCode as C;
        let doc = |subset: &str, body: &str| {
            format!(
                "<?xml version=\"1.0\"?><!-- c --><!DOCTYPE svg [{subset}]>\
                 <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"8\" height=\"8\">{body}</svg>"
            )
        };
        let big = "x".repeat(4096);
        let refs = "&b;".repeat(300);
        // 300 references to 4 KiB is 1.2 MiB: refused, however the subset tries to hide it.
        for subset in [
            format!("<!ENTITY b \"{big}\">"),
            format!("<!-- <!ENTITY b \"small\"> --><!ENTITY b \"{big}\">"),
            format!("<!ENTITY a \"]\"><!ENTITY b \"{big}\">"),
            format!("<!ENTITY c \"{}\"><!ENTITY b \"&c;&c;\">", &big[..2048]),
        ] {
            let err = check_entities(&doc(&subset, &format!("<text>{refs}</text>"))).unwrap_err();
            assert_eq!(err.code(), C::ImageTooLarge, "{subset:.60}");
        }
        // A few short entities (Illustrator's namespaces) pass.
        assert!(check_entities(&doc("<!ENTITY ns \"http://x\">", "<g id=\"&ns;\"/>")).is_ok());
        // Cycles and parameter entities are not SVG.
        for subset in ["<!ENTITY a \"&a;\">", "<!ENTITY % p \"x\">"] {
            let err = check_entities(&doc(subset, "&a;")).unwrap_err();
            assert_eq!(err.code(), C::UndecodableImage, "{subset}");
        }
    }

    #[test]
    fn use_cycles_and_fan_out_are_counted_before_usvg_expands_them() {
        use shared::error::ErrorCode as C;
        let svg = |body: &str| {
            format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" width=\"8\" height=\"8\">{body}</svg>"
            )
        };
        let code = |body: &str| {
            scan(svg(body).as_bytes(), &Limits::default())
                .unwrap_err()
                .code()
        };
        let cycle = "<g id=\"a\"><use xlink:href=\"#b\"/></g><g id=\"b\"><use href=\"#c\"/></g>\
                     <g id=\"c\"><use xlink:href=\"#a\"/></g>";
        assert_eq!(code(cycle), C::UndecodableImage);
        let mut fan = String::from("<rect id=\"l0\" width=\"1\" height=\"1\"/>");
        for l in 1..=6 {
            fan.push_str(&format!("<g id=\"l{l}\">"));
            for _ in 0..10 {
                fan.push_str(&format!("<use href=\"#l{}\"/>", l - 1));
            }
            fan.push_str("</g>");
        }
        assert_eq!(code(&fan), C::ImageTooLarge);
    }

    #[test]
    fn reads_data_urls() {
        assert_eq!(data_url("data:image/png;base64,aGk=").unwrap(), b"hi");
        assert_eq!(data_url("data:,a%20b").unwrap(), b"a b");
        assert_eq!(data_url("file:///etc/passwd"), None);
    }
}
