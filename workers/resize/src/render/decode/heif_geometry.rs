//! The geometry of a HEIF/AVIF primary image: its transformative item properties (`clap`,
//! `irot`, `imir`) read from the `meta` box and folded into one crop of the decoded frame plus
//! one EXIF-style orientation.
//!
//! HEIF (ISO/IEC 23008-12, 6.3 and 6.5.1) applies an item's transformative properties in the
//! order of its property associations (`ipma`); MIAF requires that order to be clean aperture,
//! rotation, mirror, and libheif applies them in `ipma` order too. Any sequence of crops,
//! rotations and mirrors equals one crop of the coded image followed by one of the eight EXIF
//! orientations: the engine decodes the untransformed frame (libheif's
//! `ignore_transformations`), keeps only the crop while copying it out of libheif, and orients
//! the resized variants like any EXIF-oriented image. The alpha plane is part of the same
//! interleaved frame, so it is transformed exactly like the colour; transformative properties
//! of the alpha item itself are not applied (libavif writes them on the colour item only).
//!
//! Derivations: an `iden` item adds its properties after those of its input. The inputs of
//! every other derived item (`grid` tiles, overlay layers) are used as coded: the AVIF
//! specification forbids transformative properties on grid inputs, yet libavif 0.11 (Debian
//! 12's `avifenc`) copies the grid's `clap`/`irot`/`imir` onto every tile and libheif's
//! `heif-enc` has put `irot` on tiles; libavif ignores them, and so does the engine (libheif
//! would transform each tile on its own and scramble the picture).
//!
//! Every count and offset comes from the input and is bounded by the bytes that hold it; the
//! arithmetic of a clean aperture is exact (i128) and a crop outside the image is refused.

use super::RenderError;

/// Most properties in an `ipco` box and most `dimg` references read (libheif refuses more
/// than 1000 items).
const MAX_ENTRIES: usize = 4096;
/// Deepest `iden` chain followed.
const MAX_DEPTH: usize = 16;

/// A crop rectangle in pixels: `x`, `y`, `width`, `height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// The displayed primary image, relative to the frame libheif decodes without transforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Size of the frame libheif decodes (the primary item's `ispe`).
    pub coded: (u32, u32),
    /// The part of that frame that is displayed.
    pub crop: Rect,
    /// EXIF orientation (1..=8) that turns the cropped frame into the displayed image.
    pub orientation: u8,
    /// Whether the item has transformative properties at all.
    pub transformed: bool,
    /// Offsets of the type field of every `clap`, `irot` and `imir` box of the file, so the
    /// bytes handed to libheif can call them `free` (see `heif::TransformsHidden`).
    pub hidden: Vec<usize>,
    /// The primary item's ID.
    pub primary: u32,
}

/// One transformative property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transform {
    /// `irot`: quarter turns anticlockwise (0..=3).
    Rotate(u8),
    /// `imir`: 0 mirrors top to bottom, 1 left to right (libheif's and MIAF's reading).
    Mirror(u8),
    /// `clap`: width, height, horizontal and vertical offset as (numerator, denominator).
    Clap(CleanAperture),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CleanAperture {
    width: (u32, u32),
    height: (u32, u32),
    horiz_off: (i32, u32),
    vert_off: (i32, u32),
}

fn bad(msg: impl Into<String>) -> RenderError {
    RenderError::Undecodable(msg.into())
}

/// The boxes directly inside `data`: (type, offset of the box in `data`, payload). A box
/// running past its parent ends the walk.
fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], usize, &[u8])> {
    let mut at = 0_usize;
    std::iter::from_fn(move || {
        let rest = data.get(at..)?;
        if rest.len() < 8 {
            return None;
        }
        let size = u64::from(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        let (header, size) = match size {
            0 => (8, rest.len() as u64),
            1 => {
                let b = rest.get(8..16)?;
                (16, u64::from_be_bytes(b.try_into().ok()?))
            }
            s => (8, s),
        };
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s >= header && s <= rest.len())?;
        let start = at;
        at += size;
        Some((kind, start, &rest[header..size]))
    })
}

/// A big-endian reader over a box payload; every read past the end is an error.
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, at: 0 }
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], RenderError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| bad("a HEIF box ends early"))?;
        let b = &self.data[self.at..end];
        self.at = end;
        Ok(b)
    }
    fn u8(&mut self) -> Result<u8, RenderError> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, RenderError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, RenderError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// An item ID: 16 bits in version-0 boxes, 32 bits otherwise.
    fn id(&mut self, wide: bool) -> Result<u32, RenderError> {
        if wide {
            self.u32()
        } else {
            self.u16().map(u32::from)
        }
    }
    fn rest(&self) -> &'a [u8] {
        &self.data[self.at..]
    }
}

/// The boxes of the first top-level `meta` box that matter here.
#[derive(Default)]
struct Meta<'a> {
    pitm: Option<&'a [u8]>,
    iinf: Option<&'a [u8]>,
    iref: Option<&'a [u8]>,
    ipco: Option<(usize, &'a [u8])>,
    ipma: Vec<&'a [u8]>,
}

/// Offset of `inner` inside `outer` (both slices of the same buffer).
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

fn find_meta(file: &[u8]) -> Option<Meta<'_>> {
    let (_, _, meta) = boxes(file).find(|(k, _, _)| k == b"meta")?;
    let body = meta.get(4..)?; // full box: version and flags
    let mut m = Meta::default();
    for (kind, _, payload) in boxes(body) {
        match &kind {
            b"pitm" => m.pitm = m.pitm.or(Some(payload)),
            b"iinf" => m.iinf = m.iinf.or(Some(payload)),
            b"iref" => m.iref = m.iref.or(Some(payload)),
            b"iprp" => {
                for (k, _, p) in boxes(payload) {
                    if &k == b"ipco" && m.ipco.is_none() {
                        m.ipco = Some((offset_in(file, p), p));
                    } else if &k == b"ipma" && m.ipma.len() < MAX_ENTRIES {
                        m.ipma.push(p);
                    }
                }
            }
            _ => {}
        }
    }
    Some(m)
}

/// Read the primary image's geometry from `file`. `None` when the file has no `meta` box with a
/// primary item and property boxes (libheif then reports what is wrong).
///
/// # Errors
/// [`RenderError::Undecodable`] for malformed boxes, a property index out of range, an
/// invalid or out-of-image clean aperture, or a primary without `ispe` that has
/// transformations; [`RenderError::UnsupportedFormat`] for
/// the `iscl` scaling property.
pub fn read(file: &[u8]) -> Result<Option<Geometry>, RenderError> {
    let Some(meta) = find_meta(file) else {
        return Ok(None);
    };
    let (Some(pitm), Some((ipco_at, ipco))) = (meta.pitm, meta.ipco) else {
        return Ok(None);
    };
    let mut c = Cursor::new(pitm);
    let version = c.u8()?;
    c.bytes(3)?;
    let primary = c.id(version > 0)?;

    // The property boxes, 1-based in `ipma`.
    let mut properties: Vec<([u8; 4], &[u8])> = Vec::new();
    let mut hidden = Vec::new();
    for (kind, at, payload) in boxes(ipco) {
        if properties.len() == MAX_ENTRIES {
            return Err(bad("too many HEIF item properties"));
        }
        if matches!(&kind, b"clap" | b"irot" | b"imir") {
            hidden.push(ipco_at + at + 4);
        }
        properties.push((kind, payload));
    }

    let refs = Refs::read(meta.iref)?;
    let transforms = |item: u32| -> Result<Vec<Transform>, RenderError> {
        let mut out = Vec::new();
        for index in associations(&meta.ipma, item)? {
            let Some((kind, payload)) = index
                .checked_sub(1)
                .and_then(|i| properties.get(usize::from(i)))
            else {
                return Err(bad(format!("HEIF property index {index} does not exist")));
            };
            if let Some(t) = transform(kind, payload)? {
                out.push(t);
            }
        }
        Ok(out)
    };
    let kind_of = |item: u32| item_type(meta.iinf, item);

    // The chain: an `iden` item's input first, then its own properties.
    let mut chain = Vec::new();
    let mut item = primary;
    let mut depth = 0;
    loop {
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(bad("HEIF identity derivations nest too deep"));
        }
        let own = transforms(item)?;
        chain.splice(0..0, own);
        let inputs = refs.dimg(item);
        if kind_of(item)? == Some(*b"iden") && inputs.len() == 1 {
            item = inputs[0];
            continue;
        }
        // The inputs of a grid or an overlay are decoded as coded: their own properties are
        // not applied (see the module documentation).
        break;
    }
    let coded = ispe(
        &meta.ipma,
        &properties,
        item_with_ispe(primary, &refs, &kind_of)?,
    )?;
    fold(coded, &chain, primary, hidden)
}

/// The item whose `ispe` is the decoded frame's size: the primary, or for an `iden` chain the
/// item at its end.
fn item_with_ispe(
    primary: u32,
    refs: &Refs,
    kind_of: &impl Fn(u32) -> Result<Option<[u8; 4]>, RenderError>,
) -> Result<u32, RenderError> {
    let mut item = primary;
    for _ in 0..MAX_DEPTH {
        let inputs = refs.dimg(item);
        if kind_of(item)? == Some(*b"iden") && inputs.len() == 1 {
            item = inputs[0];
        } else {
            return Ok(item);
        }
    }
    Err(bad("HEIF identity derivations nest too deep"))
}

/// The `ispe` of `item`, if it has one.
fn ispe(
    ipma: &[&[u8]],
    properties: &[([u8; 4], &[u8])],
    item: u32,
) -> Result<Option<(u32, u32)>, RenderError> {
    for index in associations(ipma, item)? {
        if let Some((kind, payload)) = index
            .checked_sub(1)
            .and_then(|i| properties.get(usize::from(i)))
            && kind == b"ispe"
        {
            let mut c = Cursor::new(payload);
            c.bytes(4)?;
            return Ok(Some((c.u32()?, c.u32()?)));
        }
    }
    Ok(None)
}

/// Fold `chain` over the `coded` frame.
fn fold(
    coded: Option<(u32, u32)>,
    chain: &[Transform],
    primary: u32,
    hidden: Vec<usize>,
) -> Result<Option<Geometry>, RenderError> {
    let Some(coded) = coded else {
        if chain.is_empty() {
            return Ok(None);
        }
        return Err(bad("a transformed HEIF image has no ispe"));
    };
    if coded.0 == 0 || coded.1 == 0 {
        return Err(bad(format!(
            "the HEIF ispe declares a {}x{} image",
            coded.0, coded.1
        )));
    }
    let mut crop = Rect {
        x: 0,
        y: 0,
        width: coded.0,
        height: coded.1,
    };
    let mut o = 1_u8;
    for t in chain {
        match *t {
            Transform::Rotate(k) => o = compose(o, rotation(k)),
            Transform::Mirror(axis) => o = compose(o, if axis == 0 { 4 } else { 2 }),
            Transform::Clap(c) => {
                // The clean aperture is defined on the image as transformed so far.
                let (w, h) = oriented((crop.width, crop.height), o);
                let shown = clean_aperture(&c, w, h)?;
                let inner = unorient(shown, o, (crop.width, crop.height));
                crop = Rect {
                    x: crop.x + inner.x,
                    y: crop.y + inner.y,
                    width: inner.width,
                    height: inner.height,
                };
            }
        }
    }
    Ok(Some(Geometry {
        coded,
        crop,
        orientation: o,
        transformed: !chain.is_empty(),
        hidden,
        primary,
    }))
}

/// The property indices associated with `item`, in `ipma` order, over every `ipma` box.
fn associations(ipma: &[&[u8]], item: u32) -> Result<Vec<u16>, RenderError> {
    let mut out = Vec::new();
    for payload in ipma {
        let mut c = Cursor::new(payload);
        let version = c.u8()?;
        let flags = c.bytes(3)?[2];
        let entries = c.u32()?;
        for _ in 0..entries {
            let id = c.id(version >= 1)?;
            let n = c.u8()?;
            for _ in 0..n {
                let index = if flags & 1 == 1 {
                    c.u16()? & 0x7fff
                } else {
                    u16::from(c.u8()? & 0x7f)
                };
                if id == item && index != 0 {
                    out.push(index);
                }
            }
        }
    }
    Ok(out)
}

/// The transformative meaning of one property box, if it has one.
fn transform(kind: &[u8; 4], payload: &[u8]) -> Result<Option<Transform>, RenderError> {
    let mut c = Cursor::new(payload);
    Ok(match kind {
        b"irot" => Some(Transform::Rotate(c.u8()? & 3)),
        b"imir" => Some(Transform::Mirror(c.u8()? & 1)),
        b"clap" => {
            let width = (c.u32()?, c.u32()?);
            let height = (c.u32()?, c.u32()?);
            let horiz_off = (c.u32()? as i32, c.u32()?);
            let vert_off = (c.u32()? as i32, c.u32()?);
            Some(Transform::Clap(CleanAperture {
                width,
                height,
                horiz_off,
                vert_off,
            }))
        }
        b"iscl" => {
            return Err(RenderError::UnsupportedFormat(
                "the HEIF image scaling property (iscl) is not supported".into(),
            ));
        }
        _ => None,
    })
}

/// The type of `item` from its `infe` box (version 2 or 3), if found.
fn item_type(iinf: Option<&[u8]>, item: u32) -> Result<Option<[u8; 4]>, RenderError> {
    let Some(iinf) = iinf else {
        return Ok(None);
    };
    let mut c = Cursor::new(iinf);
    let version = c.u8()?;
    c.bytes(3)?;
    if version == 0 {
        c.u16()?;
    } else {
        c.u32()?;
    }
    for (kind, _, infe) in boxes(c.rest()) {
        if &kind != b"infe" {
            continue;
        }
        let mut e = Cursor::new(infe);
        let v = e.u8()?;
        e.bytes(3)?;
        if v < 2 {
            continue;
        }
        let id = e.id(v >= 3)?;
        e.u16()?; // protection index
        let t = e.bytes(4)?;
        if id == item {
            return Ok(Some([t[0], t[1], t[2], t[3]]));
        }
    }
    Ok(None)
}

/// The `dimg` references of the file: (from, to...).
struct Refs {
    dimg: Vec<(u32, Vec<u32>)>,
}

impl Refs {
    fn read(iref: Option<&[u8]>) -> Result<Self, RenderError> {
        let mut dimg = Vec::new();
        let Some(iref) = iref else {
            return Ok(Self { dimg });
        };
        let mut c = Cursor::new(iref);
        let version = c.u8()?;
        c.bytes(3)?;
        let mut total = 0_usize;
        for (kind, _, payload) in boxes(c.rest()) {
            if &kind != b"dimg" {
                continue;
            }
            let mut r = Cursor::new(payload);
            let from = r.id(version > 0)?;
            let n = usize::from(r.u16()?);
            total += n;
            if total > MAX_ENTRIES {
                return Err(bad("too many HEIF item references"));
            }
            let to = (0..n)
                .map(|_| r.id(version > 0))
                .collect::<Result<Vec<_>, _>>()?;
            dimg.push((from, to));
        }
        Ok(Self { dimg })
    }

    fn dimg(&self, from: u32) -> &[u32] {
        self.dimg
            .iter()
            .find(|(f, _)| *f == from)
            .map_or(&[], |(_, to)| to.as_slice())
    }
}

/// The rows and columns of a `w` x `h` image's clean aperture `c`, as a rectangle of whole
/// pixels: those whose centres lie in the aperture (ISO/IEC 14496-12 12.1.4: the aperture is
/// centred at `offset + (size - 1) / 2` in pixel-centre coordinates), a centre exactly on the
/// left or top edge included, on the right or bottom edge excluded. For the usual whole-pixel
/// apertures this is exactly the declared width and height; a fractional one is rounded.
fn clean_aperture(c: &CleanAperture, w: u32, h: u32) -> Result<Rect, RenderError> {
    let (x, width) = aperture_span(c.width, c.horiz_off, w)?;
    let (y, height) = aperture_span(c.height, c.vert_off, h)?;
    Ok(Rect {
        x,
        y,
        width,
        height,
    })
}

/// First pixel and count along one axis of `size` pixels for an aperture of `extent` centred
/// at `offset + (size - 1) / 2`.
fn aperture_span(
    (en, ed): (u32, u32),
    (on, od): (i32, u32),
    size: u32,
) -> Result<(u32, u32), RenderError> {
    if ed == 0 || od == 0 || en == 0 {
        return Err(bad(
            "the HEIF clean aperture has a zero size or denominator",
        ));
    }
    // Edges at offset + (size - 1)/2 -+ extent/2, over the common denominator 2·ed·od.
    let (en, ed, on, od, size) = (
        i128::from(en),
        i128::from(ed),
        i128::from(on),
        i128::from(od),
        i128::from(size),
    );
    let den = 2 * ed * od;
    let centre = 2 * on * ed + (size - 1) * ed * od;
    let half = en * od;
    let first = ceil_div(centre - half, den);
    let end = ceil_div(centre + half, den);
    if first < 0 || end > size || first >= end {
        return Err(bad(format!(
            "the HEIF clean aperture covers pixels {first}..{end} of {size}"
        )));
    }
    // Both lie in 0..=size, a u32.
    let first = u32::try_from(first).map_err(|_| bad("clean aperture out of range"))?;
    let count = u32::try_from(end - i128::from(first)).map_err(|_| bad("clean aperture"))?;
    Ok((first, count))
}

fn ceil_div(n: i128, d: i128) -> i128 {
    let q = n.div_euclid(d);
    if n.rem_euclid(d) == 0 { q } else { q + 1 }
}

/// The EXIF orientation of `irot` with `k` quarter turns anticlockwise.
fn rotation(k: u8) -> u8 {
    match k & 3 {
        0 => 1,
        1 => 8, // 90° anticlockwise
        2 => 3,
        _ => 6, // 270° anticlockwise, 90° clockwise
    }
}

/// The stored pixel that displayed pixel (`dx`, `dy`) of orientation `o` shows, for a stored
/// image of `w` x `h` (the definition in `orient.rs`).
fn source(o: u8, dx: i64, dy: i64, w: i64, h: i64) -> (i64, i64) {
    match o {
        2 => (w - 1 - dx, dy),
        3 => (w - 1 - dx, h - 1 - dy),
        4 => (dx, h - 1 - dy),
        5 => (dy, dx),
        6 => (dy, h - 1 - dx),
        7 => (w - 1 - dy, h - 1 - dx),
        8 => (w - 1 - dy, dx),
        _ => (dx, dy),
    }
}

/// Size of a `w` x `h` stored image displayed with orientation `o`.
fn oriented((w, h): (u32, u32), o: u8) -> (u32, u32) {
    if o >= 5 { (h, w) } else { (w, h) }
}

/// The orientation that shows `o`'s displayed image transformed by `t`: the one whose
/// displayed-to-stored map is `o`'s after `t`'s. Found by trying all eight on an image with
/// distinct sides, where each of them maps differently.
fn compose(o: u8, t: u8) -> u8 {
    let (w, h) = (3_i64, 2_i64);
    let (ow, oh) = if o >= 5 { (h, w) } else { (w, h) }; // o's displayed size
    let (tw, th) = if t >= 5 { (oh, ow) } else { (ow, oh) }; // after t
    (1..=8)
        .find(|&c| {
            (0..th).all(|dy| {
                (0..tw).all(|dx| {
                    let (mx, my) = source(t, dx, dy, ow, oh);
                    source(o, mx, my, w, h) == source(c, dx, dy, w, h)
                })
            })
        })
        .expect("the eight orientations are closed under composition")
}

/// The stored rectangle (of a `stored` size image) that rectangle `r` of its display with
/// orientation `o` shows.
fn unorient(r: Rect, o: u8, (w, h): (u32, u32)) -> Rect {
    let (w, h) = (i64::from(w), i64::from(h));
    let (x0, y0) = source(o, i64::from(r.x), i64::from(r.y), w, h);
    let (x1, y1) = source(
        o,
        i64::from(r.x) + i64::from(r.width) - 1,
        i64::from(r.y) + i64::from(r.height) - 1,
        w,
        h,
    );
    let (left, top) = (x0.min(x1), y0.min(y1));
    let (width, height) = ((x0 - x1).abs() + 1, (y0 - y1).abs() + 1);
    // Inside the stored image: `r` lies in the displayed image, and `source` maps it inside.
    let to = |v: i64| u32::try_from(v).expect("the rectangle lies inside the image");
    Rect {
        x: to(left),
        y: to(top),
        width: to(width),
        height: to(height),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clap(w: (u32, u32), h: (u32, u32), ho: (i32, u32), vo: (i32, u32)) -> Transform {
        Transform::Clap(CleanAperture {
            width: w,
            height: h,
            horiz_off: ho,
            vert_off: vo,
        })
    }

    fn geometry(coded: (u32, u32), chain: &[Transform]) -> Result<Geometry, RenderError> {
        fold(Some(coded), chain, 1, vec![]).map(|g| g.expect("coded size given"))
    }

    #[test]
    fn irot_and_imir_are_the_exif_orientations_libheif_applies() {
        // irot turns anticlockwise; imir 0 mirrors top to bottom, 1 left to right.
        assert_eq!(rotation(1), 8);
        assert_eq!(rotation(2), 3);
        assert_eq!(rotation(3), 6);
        let g = geometry((4, 3), &[Transform::Mirror(0)]).unwrap();
        assert_eq!(g.orientation, 4);
        let g = geometry((4, 3), &[Transform::Mirror(1)]).unwrap();
        assert_eq!(g.orientation, 2);
        // Rotate 90° anticlockwise, then mirror top to bottom: the transpose (EXIF 5).
        let g = geometry((4, 3), &[Transform::Rotate(1), Transform::Mirror(0)]).unwrap();
        assert_eq!(g.orientation, 5);
        // Mirror first, then rotate: the transverse (EXIF 7). Order matters.
        let g = geometry((4, 3), &[Transform::Mirror(0), Transform::Rotate(1)]).unwrap();
        assert_eq!(g.orientation, 7);
    }

    #[test]
    fn composition_matches_applying_each_step_to_pixels() {
        use super::super::super::orient;
        use super::super::super::resize::Raster;
        let (w, h) = (5_u32, 3_u32);
        let src = Raster {
            width: w,
            height: h,
            channels: 3,
            data: (0..w * h).flat_map(|i| [i as u8, 0, 0]).collect(),
        };
        for a in 1..=8 {
            for b in 1..=8 {
                let stepwise = orient::transform(&orient::transform(&src, a), b);
                let once = orient::transform(&src, compose(a, b));
                assert_eq!(stepwise.data, once.data, "{a} then {b}");
            }
        }
    }

    #[test]
    fn link_u_kimono_crops_land_on_the_same_pixels() {
        // kimono.crop.avif: 722x1024, clap 385x330, offsets 207/2 and -616/2.
        let g = geometry(
            (722, 1024),
            &[clap((385, 1), (330, 1), (207, 2), (-616, 2))],
        )
        .unwrap();
        assert_eq!(
            g.crop,
            Rect {
                x: 272,
                y: 39,
                width: 385,
                height: 330
            }
        );
        assert_eq!(g.orientation, 1);
        // kimono.mirror-vertical.rotate270.crop.avif: the stored image is the original
        // mirrored then turned (1024x722); crop, turn 90° anticlockwise, mirror top to bottom
        // show the same 385x330 region, upright.
        let g = geometry(
            (1024, 722),
            &[
                clap((330, 1), (385, 1), (-616, 2), (207, 2)),
                Transform::Rotate(1),
                Transform::Mirror(0),
            ],
        )
        .unwrap();
        assert_eq!((g.crop.width, g.crop.height), (330, 385));
        assert_eq!(g.orientation, 5);
    }

    #[test]
    fn a_clap_after_a_rotation_crops_the_rotated_image() {
        // 40x20 coded, turned to 20x40, then the top 20x10 of that: in the coded frame (turned
        // 90° anticlockwise, so the displayed top row is the coded right column) the rightmost
        // 10 columns.
        let g = geometry(
            (40, 20),
            &[
                Transform::Rotate(1),
                clap((20, 1), (10, 1), (0, 1), (-15, 1)),
            ],
        )
        .unwrap();
        assert_eq!(
            g.crop,
            Rect {
                x: 30,
                y: 0,
                width: 10,
                height: 20
            }
        );
        assert_eq!(g.orientation, 8);
    }

    #[test]
    fn odd_fractional_negative_and_oversized_apertures_are_bounded() {
        // Odd size, centred: 3 of 5 columns from 1.
        assert_eq!(aperture_span((3, 1), (0, 1), 5).unwrap(), (1, 3));
        // Half-pixel offset: the centre moves to 5, both edges land on pixel centres (3 and
        // 7); the left one is included, the right one not.
        assert_eq!(aperture_span((4, 1), (1, 2), 10).unwrap(), (3, 4));
        // Fractional width: the pixels whose centres are inside.
        assert_eq!(aperture_span((7, 2), (0, 1), 10).unwrap(), (3, 4));
        // Negative offset to the far left.
        assert_eq!(aperture_span((2, 1), (-4, 1), 10).unwrap(), (0, 2));
        // Larger than the image, past an edge, zero, zero denominators, extreme values.
        for (e, o) in [
            ((11, 1), (0, 1)),
            ((2, 1), (-5, 1)),
            ((2, 1), (5, 1)),
            ((0, 1), (0, 1)),
            ((2, 0), (0, 1)),
            ((2, 1), (0, 0)),
            ((u32::MAX, 1), (i32::MIN, 1)),
            ((1, u32::MAX), (i32::MAX, 1)),
        ] {
            assert!(
                matches!(aperture_span(e, o, 10), Err(RenderError::Undecodable(_))),
                "{e:?} {o:?}"
            );
        }
        // The whole image exactly.
        assert_eq!(aperture_span((10, 1), (0, 1), 10).unwrap(), (0, 10));
        // A tiny fraction of a pixel rounds to nothing: refused, not a 0-pixel image.
        assert!(aperture_span((1, 1000), (1, 4), 10).is_err());
    }

    #[test]
    fn hostile_boxes_never_panic() {
        // Truncations and garbage of a real property layout.
        let mut file = Vec::new();
        let bx = |k: &[u8; 4], p: &[u8]| {
            let mut b = u32::try_from(p.len() + 8).unwrap().to_be_bytes().to_vec();
            b.extend_from_slice(k);
            b.extend_from_slice(p);
            b
        };
        let mut clapb = Vec::new();
        for v in [10_u32, 1, 10, 1, 0, 1, 0, 1] {
            clapb.extend(v.to_be_bytes());
        }
        let ipco = [
            bx(b"ispe", &[0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 10]),
            bx(b"clap", &clapb),
            bx(b"irot", &[1]),
        ]
        .concat();
        let ipma = [0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 3, 0x81, 0x82, 0x83];
        let iprp = bx(b"iprp", &[bx(b"ipco", &ipco), bx(b"ipma", &ipma)].concat());
        let meta = bx(
            b"meta",
            &[&[0, 0, 0, 0][..], &bx(b"pitm", &[0, 0, 0, 0, 0, 1]), &iprp].concat(),
        );
        file.extend(meta);
        let g = read(&file).unwrap().unwrap();
        assert_eq!(g.coded, (20, 10));
        assert_eq!(g.crop.width, 10);
        assert_eq!(g.orientation, 8);
        assert_eq!(g.hidden.len(), 2);
        assert_eq!(&file[g.hidden[0]..g.hidden[0] + 4], b"clap");
        assert_eq!(&file[g.hidden[1]..g.hidden[1] + 4], b"irot");
        for cut in 0..file.len() {
            let _ = read(&file[..cut]);
            let mut flipped = file.clone();
            flipped[cut] ^= 0xff;
            let _ = read(&flipped);
        }
        // A property index past the list.
        let mut bad_index = file.clone();
        let pos = bad_index.iter().rposition(|&b| b == 0x83).unwrap();
        bad_index[pos] = 0x90;
        assert!(matches!(read(&bad_index), Err(RenderError::Undecodable(_))));
    }
}
