//! TIFF (the first page), through the tiff crate; bilevel CCITT data through [`ccitt`] and
//! CIELab / ICCLab samples converted to sRGB here (the tiff crate reads neither).

mod ccitt;

use std::io::{Read, Seek, SeekFrom};

use lcms2::{CIExyY, DisallowCache, Flags, GlobalContext, Intent, PixelFormat, Profile, Transform};
use rayon::prelude::*;
use tiff::tags::Tag;

use super::{Decoded, Layout, Limits, Probe, RenderError, Samples, check_dimensions, check_frames};

/// The largest value of one IFD entry the decoder reads (an ICC profile, an offsets table):
/// 4 MiB. A tag declaring more is an error for the decoder, so a profile that large is dropped
/// (the image renders untagged) and a strip table that large refuses the file.
pub const MAX_IFD_VALUE_BYTES: usize = 4 << 20;

/// Slack, in pixels, for the chunk (strip or tile) area over the image area: tiles are padded
/// to their grid, so a small image in large tiles is legitimate up to this much.
pub const CHUNK_PIXEL_SLACK: u64 = 16 << 20;

/// The tiff crate's limits for an image of `pixels` pixels: no buffer larger than the image at
/// 16 bits and 4 samples (plus 1 MiB), no IFD value over [`MAX_IFD_VALUE_BYTES`].
fn decoder_limits(pixels: u64) -> tiff::decoder::Limits {
    let buffer =
        usize::try_from(pixels.saturating_mul(8).saturating_add(1 << 20)).unwrap_or(usize::MAX);
    let mut l = tiff::decoder::Limits::default();
    l.decoding_buffer_size = buffer;
    l.intermediate_buffer_size = buffer;
    l.ifd_value_size = MAX_IFD_VALUE_BYTES;
    l
}

/// Limits for reading tags only: the tiff crate bounds a list value by the decoding buffer
/// (one 32-byte value per declared entry), not by `ifd_value_size`, so a decoder that reads
/// tags gets a buffer of 32 x [`MAX_IFD_VALUE_BYTES`] (128 MiB, transient): a 4 MiB profile
/// still reads, a 4,294,967,295-entry ICC tag is an error, not a 137 GB allocation.
fn tag_limits() -> tiff::decoder::Limits {
    let mut l = tiff::decoder::Limits::default();
    l.decoding_buffer_size = 32 * MAX_IFD_VALUE_BYTES;
    l.intermediate_buffer_size = MAX_IFD_VALUE_BYTES;
    l.ifd_value_size = MAX_IFD_VALUE_BYTES;
    l
}

/// Most strips or tiles of one page: 1 Mi. The tiff crate holds a chunk table as one 32-byte
/// value per entry while it reads it (then 8 bytes), so a table is at most 32 MiB; a 100 MP
/// image in single-row strips has 32,768 per plane, in 64x64 tiles 24,415.
pub const MAX_CHUNKS: u64 = 1 << 20;

/// Most values of the other lists `Decoder::new` reads from the first IFD (BitsPerSample,
/// SampleFormat, JPEGTables): 64 Ki (2 MiB as the crate holds them; real tables are a few
/// hundred bytes).
const MAX_HEADER_LIST: u64 = 1 << 16;

/// The tiff crate's decoder over a [`Source`].
type Dec<'a> = tiff::decoder::Decoder<Source<'a>>;

fn open_with(bytes: &[u8], limits: tiff::decoder::Limits) -> Result<Dec<'_>, RenderError> {
    open_as(bytes, limits, None)
}

/// Open the file for the tiff crate, reading the first IFD's PhotometricInterpretation as
/// `photometric` when given. Without it, ICCLab (9), which the crate does not know, reads as
/// CIELab so that its tags can be read.
fn open_as(
    bytes: &[u8],
    limits: tiff::decoder::Limits,
    photometric: Option<u16>,
) -> Result<Dec<'_>, RenderError> {
    // `new` reads the first IFD's offset tables and sample lists under the tiff crate's
    // default limits (a 256 MiB list, 8 Mi entries, at most): bound them first. The limits
    // given apply to every tag read after it.
    check_first_ifd(bytes)?;
    let field = photometric_field(bytes);
    let replace = match (photometric, field) {
        (Some(p), Some(_)) => Some(p),
        (None, Some(f)) if f.value == ICCLAB => Some(CIELAB),
        (Some(_), None) => {
            return Err(RenderError::Undecodable(
                "TIFF PhotometricInterpretation cannot be read".into(),
            ));
        }
        _ => None,
    };
    let patch = field.zip(replace).map(|(f, v)| f.encode(v));
    let source = Source {
        data: bytes,
        pos: 0,
        patch,
    };
    Ok(tiff::decoder::Decoder::new(source)
        .map_err(tiff_error)?
        .with_limits(limits))
}

/// The file as the tiff crate reads it: the bytes, with the value of one IFD entry replaced.
struct Source<'a> {
    data: &'a [u8],
    pos: u64,
    /// Where the replacement starts, its bytes and their count.
    patch: Option<(usize, [u8; 4], usize)>,
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = usize::try_from(self.pos)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        if let Some((at, bytes, len)) = self.patch {
            for (i, &b) in bytes[..len].iter().enumerate() {
                if let Some(k) = (at + i).checked_sub(start).filter(|&k| k < n) {
                    buf[k] = b;
                }
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Source<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let len = self.data.len() as i128;
        let next = match to {
            SeekFrom::Start(p) => i128::from(p),
            SeekFrom::End(d) => len + i128::from(d),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        self.pos = u64::try_from(next).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}

/// The first IFD's PhotometricInterpretation entry: where its inline value lies, its type
/// (SHORT or LONG), the byte order and the value.
#[derive(Debug, Clone, Copy)]
struct PhotometricField {
    at: usize,
    long: bool,
    little: bool,
    value: u16,
}

impl PhotometricField {
    fn encode(self, value: u16) -> (usize, [u8; 4], usize) {
        let mut b = [0; 4];
        let len = if self.long { 4 } else { 2 };
        match (self.long, self.little) {
            (false, true) => b[..2].copy_from_slice(&value.to_le_bytes()),
            (false, false) => b[..2].copy_from_slice(&value.to_be_bytes()),
            (true, true) => b.copy_from_slice(&u32::from(value).to_le_bytes()),
            (true, false) => b.copy_from_slice(&u32::from(value).to_be_bytes()),
        }
        (self.at, b, len)
    }
}

/// Find the first IFD's PhotometricInterpretation (tag 262), a single SHORT or LONG; `None`
/// when absent, of another shape or outside the file.
fn photometric_field(data: &[u8]) -> Option<PhotometricField> {
    let little = data.starts_with(b"II");
    let uint = |at: usize, n: usize| -> Option<u64> {
        let b = data.get(at..at.checked_add(n)?)?;
        Some(if little {
            b.iter().rev().fold(0, |a, &x| (a << 8) | u64::from(x))
        } else {
            b.iter().fold(0, |a, &x| (a << 8) | u64::from(x))
        })
    };
    let big = uint(2, 2) == Some(43);
    let (count_size, entry_size, field) = if big { (8, 20, 8) } else { (2, 12, 4) };
    let ifd = usize::try_from(if big { uint(8, 8) } else { uint(4, 4) }?).ok()?;
    let entries = usize::try_from(uint(ifd, count_size)?).ok()?;
    // Bounded by the file: an entry past its end ends the walk.
    for i in 0..entries {
        let at = ifd
            .checked_add(count_size)?
            .checked_add(i.checked_mul(entry_size)?)?;
        if uint(at, 2)? != 262 {
            continue;
        }
        let long = match uint(at + 2, 2)? {
            3 => false,
            4 => true,
            _ => return None,
        };
        if uint(at + 4, field)? != 1 {
            return None;
        }
        let value_at = at + 4 + field;
        let value = uint(value_at, if long { 4 } else { 2 })?;
        return Some(PhotometricField {
            at: value_at,
            long,
            little,
            value: u16::try_from(value).ok()?,
        });
    }
    None
}

/// Walk the first IFD before the tiff crate does: the IFD lies within the file; of the tags
/// `Decoder::new` reads, every value stored outside its entry lies within the file (a table
/// cannot hold more entries than the file has bytes for), the strip/tile tables have at most
/// [`MAX_CHUNKS`] entries and the other lists at most [`MAX_HEADER_LIST`]. Reads the header and
/// the entries only.
fn check_first_ifd(data: &[u8]) -> Result<(), RenderError> {
    let len = data.len() as u64;
    let little = data.starts_with(b"II");
    let uint = |at: u64, n: usize| -> Option<u64> {
        let at = usize::try_from(at).ok()?;
        let b = data.get(at..at.checked_add(n)?)?;
        Some(if little {
            b.iter().rev().fold(0, |a, &x| (a << 8) | u64::from(x))
        } else {
            b.iter().fold(0, |a, &x| (a << 8) | u64::from(x))
        })
    };
    let outside = || RenderError::Undecodable("TIFF first IFD lies outside the file".into());
    // Classic TIFF: 2-byte entry count, 12-byte entries with a 4-byte value field; BigTIFF: 8,
    // 20 and 8.
    let big = uint(2, 2) == Some(43);
    let (count_size, entry_size, field) = if big { (8, 20, 8) } else { (2, 12, 4) };
    let ifd = if big { uint(8, 8) } else { uint(4, 4) }.ok_or_else(outside)?;
    let entries = uint(ifd, count_size).ok_or_else(outside)?;
    let end = entries
        .checked_mul(entry_size)
        .and_then(|e| e.checked_add(ifd + count_size as u64))
        .filter(|&e| e <= len)
        .ok_or_else(outside)?;
    for i in 0..entries {
        let at = ifd + count_size as u64 + i * entry_size;
        let (Some(tag), Some(kind), Some(count)) = (
            uint(at, 2),
            uint(at + 2, 2),
            uint(at + 4, if big { 8 } else { 4 }),
        ) else {
            return Err(outside());
        };
        // Only the tags `Decoder::new` reads; the others are read later under tighter limits
        // (and a broken optional one, such as an ICC profile, is dropped, not fatal).
        let max = match tag {
            // StripOffsets, StripByteCounts, TileOffsets, TileByteCounts.
            273 | 279 | 324 | 325 => MAX_CHUNKS,
            // BitsPerSample, SampleFormat, JPEGTables.
            258 | 339 | 347 => MAX_HEADER_LIST,
            _ => continue,
        };
        let size: u64 = match kind {
            1 | 2 | 6 | 7 => 1,
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 | 16 | 17 | 18 => 8,
            _ => continue, // the crate refuses the type itself
        };
        let bytes = count.saturating_mul(size);
        if bytes > field as u64 {
            let value_at = uint(at + 4 + field as u64, field).ok_or_else(outside)?;
            if value_at.saturating_add(bytes) > len {
                return Err(RenderError::Undecodable(format!(
                    "TIFF tag {tag} declares {count} values past the end of the {len}-byte file"
                )));
            }
        }
        if count > max {
            return Err(RenderError::TooLarge(format!(
                "TIFF tag {tag} has {count} values, the limit is {max}"
            )));
        }
    }
    debug_assert!(end <= len);
    Ok(())
}

/// Size and orientation from the first IFD, pages along the IFD chain, and the strip/tile
/// layout checked (see [`check_chunks`]).
pub(super) fn probe(bytes: &[u8], limits: &Limits, probe: &mut Probe) -> Result<(), RenderError> {
    let mut dec = open_with(bytes, tag_limits())?;
    (probe.width, probe.height) = dec.dimensions().map_err(tiff_error)?;
    check_dimensions(probe.width, probe.height, limits)?;
    probe.frames = count_tiff_pages(bytes, limits.max_frames)?;
    check_frames(probe.frames, limits)?;
    probe.orientation = dec
        .find_tag_unsigned::<u16>(Tag::Orientation)
        .ok()
        .flatten()
        .and_then(|o| u8::try_from(o).ok())
        .filter(|o| (1..=8).contains(o))
        .unwrap_or(1);
    check_chunks(&mut dec, bytes)?;
    Ok(())
}

/// How the first page's samples are cut into chunks.
struct ChunkGrid {
    /// Chunk width and height (strips: the image width and the rows per strip, at most the
    /// height).
    width: u32,
    height: u32,
    /// Chunks across and down one plane.
    across: u32,
    down: u32,
    /// 1 for chunky data, the samples per pixel for planar data (one plane per sample).
    planes: u32,
}

fn grid(dec: &mut Dec<'_>) -> Result<ChunkGrid, RenderError> {
    let (width, height) = dec.dimensions().map_err(tiff_error)?;
    let planar = dec
        .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)
        .map_err(tiff_error)?
        == Some(2);
    let samples = u32::from(
        dec.find_tag_unsigned::<u16>(Tag::SamplesPerPixel)
            .map_err(tiff_error)?
            .unwrap_or(1),
    );
    let (cw, ch) = dec.chunk_dimensions();
    let tiled = matches!(dec.get_chunk_type(), tiff::decoder::ChunkType::Tile);
    let ch = if tiled { ch } else { ch.min(height) };
    if cw == 0 || ch == 0 {
        return Err(RenderError::Undecodable("TIFF chunk of zero size".into()));
    }
    Ok(ChunkGrid {
        width: cw,
        height: ch,
        across: width.div_ceil(cw),
        down: height.div_ceil(ch),
        planes: if planar { samples.max(1) } else { 1 },
    })
}

/// Bound the work the strips or tiles of the first page can cause, from the IFD alone:
///
/// - the declared chunk area (all chunks, all planes) may exceed the image area only by the
///   grid padding, at most twice the image plus [`CHUNK_PIXEL_SLACK`] per plane: a 16x16 image
///   in one 65520x65520 tile is refused before its tile buffer exists;
/// - the chunks' byte counts must add up to at most the file size: chunks may not share data,
///   so 100,000 strips pointing at one large embedded JPEG are refused instead of decoding it
///   100,000 times;
/// - the chunk count must match the grid;
/// - a JPEG chunk's frame header may not declare more than the chunk: a 16x16 image in one
///   strip holding a 16000x16000 JPEG is refused before that frame is decoded.
fn check_chunks(dec: &mut Dec<'_>, bytes: &[u8]) -> Result<(), RenderError> {
    let (width, height) = dec.dimensions().map_err(tiff_error)?;
    let g = grid(dec)?;
    let image = u64::from(width) * u64::from(height);
    let chunk_pixels = u64::from(g.width) * u64::from(g.height);
    let all = chunk_pixels
        .saturating_mul(u64::from(g.across) * u64::from(g.down))
        .saturating_mul(u64::from(g.planes));
    let allowed = (image * 2 + CHUNK_PIXEL_SLACK).saturating_mul(u64::from(g.planes));
    if all > allowed {
        return Err(RenderError::TooLarge(format!(
            "TIFF chunks of {}x{} declare {all} pixels for a {width}x{height} image",
            g.width, g.height
        )));
    }
    let tiled = matches!(dec.get_chunk_type(), tiff::decoder::ChunkType::Tile);
    let (count_tag, count) = if tiled {
        (Tag::TileByteCounts, dec.tile_count().map_err(tiff_error)?)
    } else {
        (Tag::StripByteCounts, dec.strip_count().map_err(tiff_error)?)
    };
    let expected = u64::from(g.across) * u64::from(g.down) * u64::from(g.planes);
    if u64::from(count) != expected {
        return Err(RenderError::Undecodable(format!(
            "TIFF has {count} chunks, its layout needs {expected}"
        )));
    }
    let sizes = dec.get_tag_u64_vec(count_tag).map_err(tiff_error)?;
    let total = sizes.iter().fold(0_u64, |a, &b| a.saturating_add(b));
    if total > bytes.len() as u64 {
        return Err(RenderError::Undecodable(format!(
            "TIFF chunks declare {total} bytes of data in a {}-byte file",
            bytes.len()
        )));
    }
    // JPEG chunks are decoded whole, at the size their own frame header declares, into a
    // buffer of that size (the tiff crate's limits do not reach the JPEG decoder): each frame
    // must fit its chunk.
    let jpeg = dec
        .find_tag_unsigned::<u16>(Tag::Compression)
        .map_err(tiff_error)?
        == Some(7);
    if jpeg {
        let offset_tag = if tiled {
            Tag::TileOffsets
        } else {
            Tag::StripOffsets
        };
        let offsets = dec.get_tag_u64_vec(offset_tag).map_err(tiff_error)?;
        for (i, (&at, &len)) in offsets.iter().zip(&sizes).enumerate() {
            let chunk = usize::try_from(at)
                .ok()
                .and_then(|at| bytes.get(at..at.checked_add(usize::try_from(len).ok()?)?));
            let Some((w, h)) = chunk.and_then(jpeg_frame_size) else {
                continue; // no frame header: the decoder refuses the chunk itself
            };
            if u32::from(w) > g.width || u32::from(h) > g.height {
                return Err(RenderError::TooLarge(format!(
                    "TIFF chunk {i} holds a {w}x{h} JPEG, the chunk is {}x{}",
                    g.width, g.height
                )));
            }
        }
    }
    Ok(())
}

/// PhotometricInterpretation values handled outside the tiff crate.
const WHITE_IS_ZERO: u16 = 0;
const BLACK_IS_ZERO: u16 = 1;
const RGB: u16 = 2;
const CIELAB: u16 = 8;
const ICCLAB: u16 = 9;

/// Decode the first page: bilevel and Lab pages here, the others through the tiff crate.
pub(super) fn decode(bytes: &[u8], probe: &Probe) -> Result<Decoded, RenderError> {
    let mut dec = open_with(bytes, tag_limits())?;
    // From the file itself: the decoder reads ICCLab as CIELab.
    let photometric = photometric_field(bytes).map(|f| f.value);
    let bits = dec
        .find_tag_unsigned_vec::<u16>(Tag::BitsPerSample)
        .map_err(tiff_error)?
        .unwrap_or_else(|| vec![1]);
    let samples = dec
        .find_tag_unsigned::<u16>(Tag::SamplesPerPixel)
        .map_err(tiff_error)?
        .unwrap_or(1);
    match photometric {
        Some(p @ (WHITE_IS_ZERO | BLACK_IS_ZERO)) if samples == 1 && bits == [1] => {
            decode_bilevel(bytes, probe, p == WHITE_IS_ZERO)
        }
        Some(p @ (CIELAB | ICCLAB)) => decode_lab(bytes, probe, samples, p == ICCLAB),
        _ => decode_samples(bytes, probe, None),
    }
}

/// A bilevel (1-bit) page as 8-bit gray, 0 black and 255 white. CCITT data (Compression 2, 3
/// and 4) goes through [`ccitt`]; uncompressed, PackBits, LZW and Deflate rows through the
/// tiff crate.
fn decode_bilevel(
    bytes: &[u8],
    probe: &Probe,
    white_is_zero: bool,
) -> Result<Decoded, RenderError> {
    let pixels = u64::from(probe.width) * u64::from(probe.height);
    let mut dec = open_with(bytes, decoder_limits(pixels))?;
    let (width, height) = dec.dimensions().map_err(tiff_error)?;
    check_chunks(&mut dec, bytes)?;
    let g = grid(&mut dec)?;
    let compression = dec
        .find_tag_unsigned::<u16>(Tag::Compression)
        .map_err(tiff_error)?
        .unwrap_or(1);
    let lsb_first = dec
        .find_tag_unsigned::<u16>(Tag::FillOrder)
        .map_err(tiff_error)?
        == Some(2);
    let coding = match compression {
        2 => Some(ccitt::Coding::Rle),
        3 => {
            let options = dec
                .find_tag_unsigned::<u32>(Tag::Unknown(292)) // T4Options
                .map_err(tiff_error)?
                .unwrap_or(0);
            Some(ccitt::Coding::Group3 {
                two_d: options & 1 != 0,
            })
        }
        4 => Some(ccitt::Coding::Group4),
        _ => None,
    };
    let tiled = matches!(dec.get_chunk_type(), tiff::decoder::ChunkType::Tile);
    let mut out = vec![0_u8; width as usize * height as usize];
    let mut chunk = vec![0_u8; g.width as usize * g.height as usize];
    let count = g.across * g.down;
    let (offsets, sizes) = if coding.is_some() {
        let (o, s) = if tiled {
            (Tag::TileOffsets, Tag::TileByteCounts)
        } else {
            (Tag::StripOffsets, Tag::StripByteCounts)
        };
        (
            dec.get_tag_u64_vec(o).map_err(tiff_error)?,
            dec.get_tag_u64_vec(s).map_err(tiff_error)?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    for i in 0..count {
        let y0 = (i / g.across) * g.height;
        let x0 = (i % g.across) * g.width;
        let len = if let Some(coding) = coding {
            // Strips hold their rows only; tiles are coded whole, padding included.
            let rows = if tiled {
                g.height
            } else {
                g.height.min(height - y0)
            };
            let at = (offsets.get(i as usize), sizes.get(i as usize));
            let data = match at {
                (Some(&at), Some(&len)) => usize::try_from(at)
                    .ok()
                    .and_then(|at| bytes.get(at..at.checked_add(usize::try_from(len).ok()?)?)),
                _ => None,
            }
            .ok_or_else(|| {
                RenderError::Undecodable(format!("TIFF chunk {i} lies outside the file"))
            })?;
            let (paper, ink) = if white_is_zero { (255, 0) } else { (0, 255) };
            let c = ccitt::Chunk {
                data,
                width: g.width,
                rows,
                coding,
                lsb_first,
            };
            ccitt::decode(&c, &mut chunk, paper, ink)?;
            g.width as usize * rows as usize
        } else {
            // The tiff crate returns the chunk's rows cropped to the image, packed 8 pixels a
            // byte, and inverts WhiteIsZero itself: a set bit is white either way.
            let dw = g.width.min(width - x0) as usize;
            let dh = g.height.min(height - y0) as usize;
            let tiff::decoder::DecodingResult::U8(packed) =
                dec.read_chunk(i).map_err(tiff_error)?
            else {
                return Err(RenderError::UnsupportedFormat(
                    "TIFF bilevel sample format is not supported".into(),
                ));
            };
            let row_bytes = dw.div_ceil(8);
            if packed.len() < row_bytes * dh {
                return Err(RenderError::Undecodable(format!(
                    "TIFF chunk {i} holds {} bytes, its {dw}x{dh} bilevel area needs {}",
                    packed.len(),
                    row_bytes * dh
                )));
            }
            for (row, src) in chunk
                .chunks_exact_mut(dw)
                .zip(packed.chunks_exact(row_bytes))
                .take(dh)
            {
                for (x, px) in row.iter_mut().enumerate() {
                    let byte = src[x / 8];
                    let byte = if lsb_first { byte.reverse_bits() } else { byte };
                    *px = if byte & (0x80 >> (x % 8)) != 0 {
                        255
                    } else {
                        0
                    };
                }
            }
            dw * dh
        };
        let at = Placement {
            grid: &g,
            index: i,
            plane: 0,
            image_width: width,
            image_height: height,
            spp: 1,
        };
        at.place(&mut out, &chunk[..len])?;
    }
    Ok(Decoded {
        width,
        height,
        layout: Layout::Gray,
        samples: Samples::U8(out),
        icc: None,
        nclx: None,
    })
}

/// The D50 white of the ICC connection space, which TIFF Lab is relative to when the file
/// gives no WhitePoint (libtiff's default too).
const D50: CIExyY = CIExyY {
    x: 0.345_702_914_918_791_5,
    y: 0.358_538_596_679_752_6,
    Y: 1.0,
};

/// Pixels per lcms call in the Lab conversion.
const LAB_CHUNK_PIXELS: usize = 16 * 1024;

/// A CIELab (8) or ICCLab (9) page: the tiff crate reads the samples as if the file's
/// PhotometricInterpretation said gray (L only) or RGB, then the L*a*b* values are
/// converted to sRGB (LittleCMS, D50 Lab, perceptual) in place. The frame carries no ICC
/// profile: it is sRGB.
fn decode_lab(
    bytes: &[u8],
    probe: &Probe,
    samples: u16,
    icc_lab: bool,
) -> Result<Decoded, RenderError> {
    let as_if = match samples {
        1 | 2 => BLACK_IS_ZERO,
        3 | 4 => RGB,
        n => {
            return Err(RenderError::UnsupportedFormat(format!(
                "TIFF Lab with {n} samples per pixel"
            )));
        }
    };
    let mut decoded = decode_samples(bytes, probe, Some(as_if))?;
    decoded.icc = None;
    lab_to_srgb(&mut decoded, icc_lab)?;
    Ok(decoded)
}

/// The L*a*b* value of one pixel's first three samples as TIFF stores them: L* over the full
/// range; a* and b* two's complement (CIELab) or offset by half the range (ICCLab), in units of
/// 1 (8-bit) or 1/256 (16-bit).
fn lab_value(l: u32, a: u32, b: u32, sixteen: bool, icc_lab: bool) -> [f64; 3] {
    let (full, half, unit) = if sixteen {
        (65535.0, 32768_i64, 256.0)
    } else {
        (255.0, 128_i64, 1.0)
    };
    let ab = |v: u32| {
        let v = i64::from(v);
        let signed = if icc_lab {
            v - half
        } else if v >= half {
            v - 2 * half
        } else {
            v
        };
        signed as f64 / unit
    };
    [f64::from(l) * 100.0 / full, ab(a), ab(b)]
}

fn lab_transform<Out: bytemuck::Pod + Send + Sync>(
    out: PixelFormat,
) -> Result<Transform<[f64; 3], Out, GlobalContext, DisallowCache>, RenderError> {
    let err = |e: lcms2::Error| RenderError::Undecodable(format!("Lab conversion: {e}"));
    let lab = Profile::new_lab4_context(GlobalContext::new(), &D50).map_err(err)?;
    Transform::new_flags_context(
        GlobalContext::new(),
        &lab,
        PixelFormat::Lab_DBL,
        &Profile::new_srgb(),
        out,
        Intent::Perceptual,
        Flags::NO_CACHE,
    )
    .map_err(err)
}

/// Convert a frame of Lab samples (L, or L a b, then any alpha) to sRGB in place.
fn lab_to_srgb(d: &mut Decoded, icc_lab: bool) -> Result<(), RenderError> {
    let channels = d.layout.channels();
    match &mut d.samples {
        Samples::U8(s) => convert_lab(s, channels, d.layout, false, icc_lab, PixelFormat::RGB_8),
        Samples::U16(s) => convert_lab(s, channels, d.layout, true, icc_lab, PixelFormat::RGB_16),
    }
}

fn convert_lab<T>(
    s: &mut [T],
    channels: usize,
    layout: Layout,
    sixteen: bool,
    icc_lab: bool,
    format: PixelFormat,
) -> Result<(), RenderError>
where
    T: bytemuck::Pod + Default + Send + Sync + Into<u32>,
{
    let t = lab_transform::<[T; 3]>(format)?;
    if matches!(layout, Layout::Gray | Layout::GrayAlpha) {
        // L* only: a gray ramp, one lcms call for every possible value.
        let levels = if sixteen { 65536 } else { 256 };
        let lab: Vec<[f64; 3]> = (0..levels)
            .map(|v| {
                let [l, _, _] = lab_value(v, 0, 0, sixteen, icc_lab);
                [l, 0.0, 0.0]
            })
            .collect();
        let mut rgb = vec![[T::default(); 3]; levels as usize];
        t.transform_pixels(&lab, &mut rgb);
        for px in s.chunks_exact_mut(channels) {
            let v: u32 = px[0].into();
            px[0] = rgb[v as usize][1];
        }
        return Ok(());
    }
    s.par_chunks_mut(LAB_CHUNK_PIXELS * channels)
        .for_each(|part| {
            let lab: Vec<[f64; 3]> = part
                .chunks_exact(channels)
                .map(|p| lab_value(p[0].into(), p[1].into(), p[2].into(), sixteen, icc_lab))
                .collect();
            let mut rgb = vec![[T::default(); 3]; lab.len()];
            t.transform_pixels(&lab, &mut rgb);
            for (px, c) in part.chunks_exact_mut(channels).zip(&rgb) {
                px[..3].copy_from_slice(c);
            }
        });
    Ok(())
}

/// Decode the first page through the tiff crate, chunk by chunk, interleaving the planes of
/// planar data.
fn decode_samples(
    bytes: &[u8],
    probe: &Probe,
    photometric: Option<u16>,
) -> Result<Decoded, RenderError> {
    use tiff::ColorType as C;
    use tiff::decoder::DecodingResult as R;
    // A profile over the IFD value limit is an error here: it is dropped, never allocated.
    let icc = open_as(bytes, tag_limits(), photometric)?
        .find_tag_unsigned_vec::<u8>(Tag::IccProfile)
        .ok()
        .flatten();
    let pixels = u64::from(probe.width) * u64::from(probe.height);
    let mut dec = open_as(bytes, decoder_limits(pixels), photometric)?;
    let (width, height) = dec.dimensions().map_err(tiff_error)?;
    let (layout, sixteen) = match dec.colortype().map_err(tiff_error)? {
        C::Gray(b @ (8 | 16)) => (Layout::Gray, b == 16),
        C::GrayA(b @ (8 | 16)) => (Layout::GrayAlpha, b == 16),
        C::RGB(b @ (8 | 16)) => (Layout::Rgb, b == 16),
        C::RGBA(b @ (8 | 16)) => (Layout::Rgba, b == 16),
        C::CMYK(8) => (Layout::Cmyk { inverted: false }, false),
        other => {
            return Err(RenderError::UnsupportedFormat(format!(
                "TIFF sample type {other:?} is not supported"
            )));
        }
    };
    check_chunks(&mut dec, bytes)?;
    let g = grid(&mut dec)?;
    let spp = layout.channels();
    if g.planes != 1 && g.planes as usize != spp {
        return Err(RenderError::UnsupportedFormat(format!(
            "planar TIFF with {} planes for {spp} samples",
            g.planes
        )));
    }
    let len = width as usize * height as usize * spp;
    let mut samples = if sixteen {
        Samples::U16(vec![0; len])
    } else {
        Samples::U8(vec![0; len])
    };
    let per_plane = g.across * g.down;
    for plane in 0..g.planes {
        for i in 0..per_plane {
            let chunk = dec.read_chunk(plane * per_plane + i).map_err(tiff_error)?;
            let at = Placement {
                grid: &g,
                index: i,
                plane: plane as usize,
                image_width: width,
                image_height: height,
                spp,
            };
            match (&mut samples, chunk) {
                (Samples::U8(out), R::U8(c)) => at.place(out, &c)?,
                (Samples::U16(out), R::U16(c)) => at.place(out, &c)?,
                _ => {
                    return Err(RenderError::UnsupportedFormat(
                        "TIFF sample format is not supported".into(),
                    ));
                }
            }
        }
    }
    Ok(Decoded {
        width,
        height,
        layout,
        samples,
        icc,
        nclx: None,
    })
}

/// Where one decoded chunk goes in the interleaved image.
struct Placement<'a> {
    grid: &'a ChunkGrid,
    /// Chunk index within its plane.
    index: u32,
    plane: usize,
    image_width: u32,
    image_height: u32,
    spp: usize,
}

impl Placement<'_> {
    fn place<T: Copy>(&self, out: &mut [T], chunk: &[T]) -> Result<(), RenderError> {
        let g = self.grid;
        let x0 = (self.index % g.across) * g.width;
        let y0 = (self.index / g.across) * g.height;
        let dw = g.width.min(self.image_width - x0) as usize;
        let dh = g.height.min(self.image_height - y0) as usize;
        // Samples per pixel inside the chunk: all of them (chunky) or one (planar).
        let inner = if g.planes == 1 { self.spp } else { 1 };
        // The decoder returns the chunk cropped to the image, or whole (padded) tiles.
        let stride = if chunk.len() >= g.width as usize * dh * inner && g.width as usize != dw {
            g.width as usize
        } else {
            dw
        };
        if chunk.len() < stride * (dh - 1) * inner + dw * inner {
            return Err(RenderError::Undecodable(format!(
                "TIFF chunk {} holds {} samples, its {dw}x{dh} area needs more",
                self.index,
                chunk.len()
            )));
        }
        let width = self.image_width as usize;
        for row in 0..dh {
            let src = &chunk[row * stride * inner..][..dw * inner];
            let dst_row = (y0 as usize + row) * width + x0 as usize;
            if inner == self.spp {
                out[dst_row * self.spp..][..dw * self.spp].copy_from_slice(src);
            } else {
                for (x, &v) in src.iter().enumerate() {
                    out[(dst_row + x) * self.spp + self.plane] = v;
                }
            }
        }
        Ok(())
    }
}

/// The (width, height) of a JPEG's first frame header, walking the marker segments before it;
/// `None` when there is none before the first scan or the data ends.
fn jpeg_frame_size(data: &[u8]) -> Option<(u16, u16)> {
    let mut pos = 2;
    if !data.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    loop {
        while *data.get(pos)? == 0xFF {
            pos += 1;
        }
        let marker = data[pos];
        let seg = data.get(pos + 1..pos + 3)?;
        let len = usize::from(u16::from_be_bytes([seg[0], seg[1]]));
        match marker {
            0xC0..=0xCF if marker != 0xC4 && marker != 0xC8 && marker != 0xCC => {
                let f = data.get(pos + 3..pos + 8)?;
                return Some((
                    u16::from_be_bytes([f[3], f[4]]),
                    u16::from_be_bytes([f[1], f[2]]),
                ));
            }
            0xDA | 0xD9 => return None,
            _ => pos += 1 + len.max(2),
        }
    }
}

fn tiff_error(err: tiff::TiffError) -> RenderError {
    match &err {
        tiff::TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            RenderError::Truncated(err.to_string())
        }
        tiff::TiffError::LimitsExceeded => RenderError::TooLarge(err.to_string()),
        tiff::TiffError::UnsupportedError(_) => RenderError::UnsupportedFormat(err.to_string()),
        _ => RenderError::Undecodable(err.to_string()),
    }
}

/// TIFF page count: the IFD chain (classic or BigTIFF), following only the next-IFD offsets
/// (no pixel data), and stopping once `max + 1` are seen or an offset repeats.
fn count_tiff_pages(data: &[u8], max: u32) -> Result<u32, RenderError> {
    let little = data.starts_with(b"II");
    let bad = || RenderError::Undecodable("TIFF IFD chain points outside the file".into());
    let uint = |at: u64, n: usize| -> Option<u64> {
        let at = usize::try_from(at).ok()?;
        let b = data.get(at..at.checked_add(n)?)?;
        Some(if little {
            b.iter().rev().fold(0, |a, &x| (a << 8) | u64::from(x))
        } else {
            b.iter().fold(0, |a, &x| (a << 8) | u64::from(x))
        })
    };
    let big = uint(2, 2) == Some(43);
    // Entry count, entry and offset sizes: 2, 12, 4 (classic) or 8, 20, 8 (BigTIFF).
    let (count_size, entry_size, offset_size) = if big { (8, 20, 8) } else { (2, 12, 4) };
    let mut seen = std::collections::HashSet::new();
    let mut offset = uint(if big { 8 } else { 4 }, offset_size).ok_or_else(bad)?;
    let mut pages = 0_u32;
    while offset != 0 && seen.insert(offset) {
        pages += 1;
        if pages > max {
            break;
        }
        let entries = uint(offset, count_size).ok_or_else(bad)?;
        let next = entries
            .checked_mul(entry_size)
            .and_then(|e| e.checked_add(offset + count_size as u64))
            .ok_or_else(bad)?;
        offset = uint(next, offset_size).ok_or_else(bad)?;
    }
    Ok(pages.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conformance_file(name: &str) -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/files/tiff/");
        std::fs::read(format!("{path}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn decode_file(name: &str) -> Decoded {
        let bytes = conformance_file(name);
        let probe = super::super::probe(&bytes, &Limits::default()).unwrap();
        decode(&bytes, &probe).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// L*a*b* (D50) and its sRGB value from colour-science (Lab -> XYZ -> sRGB with Bradford
    /// adaptation to D65), an implementation independent of LittleCMS.
    const LAB_SRGB: [([f64; 3], [u8; 3]); 6] = [
        ([50.0, 0.0, 0.0], [119, 119, 119]),
        ([100.0, 0.0, 0.0], [255, 255, 255]),
        ([0.0, 0.0, 0.0], [0, 0, 0]),
        ([60.0, 40.0, -30.0], [193, 117, 199]),
        ([70.0, -40.0, 50.0], [114, 189, 72]),
        ([30.0, 20.0, 10.0], [102, 58, 56]),
    ];

    fn close(got: &[u8], want: &[u8], tolerance: u8, what: &str) {
        for (g, w) in got.iter().zip(want) {
            assert!(
                g.abs_diff(*w) <= tolerance,
                "{what}: {got:?}, expected {want:?}"
            );
        }
    }

    #[test]
    fn lab_samples_of_every_encoding_convert_to_srgb() {
        // Encode each colour as TIFF stores it, then convert in place.
        for sixteen in [false, true] {
            for icc_lab in [false, true] {
                let mut u8s = Vec::new();
                let mut u16s = Vec::new();
                for ([l, a, b], _) in LAB_SRGB {
                    if sixteen {
                        let ab = |v: f64| {
                            let v = (v * 256.0).round() as i32;
                            if icc_lab {
                                (v + 32768) as u16
                            } else {
                                v as i16 as u16
                            }
                        };
                        u16s.extend([(l / 100.0 * 65535.0).round() as u16, ab(a), ab(b)]);
                    } else {
                        let ab = |v: f64| {
                            let v = v.round() as i32;
                            if icc_lab {
                                (v + 128) as u8
                            } else {
                                v as i8 as u8
                            }
                        };
                        u8s.extend([(l / 100.0 * 255.0).round() as u8, ab(a), ab(b)]);
                    }
                }
                let mut d = Decoded {
                    width: LAB_SRGB.len() as u32,
                    height: 1,
                    layout: Layout::Rgb,
                    samples: if sixteen {
                        Samples::U16(u16s)
                    } else {
                        Samples::U8(u8s)
                    },
                    icc: None,
                    nclx: None,
                };
                lab_to_srgb(&mut d, icc_lab).unwrap();
                let got: Vec<u8> = match &d.samples {
                    Samples::U8(s) => s.clone(),
                    Samples::U16(s) => s
                        .iter()
                        .map(|&v| ((u32::from(v) + 128) / 257) as u8)
                        .collect(),
                };
                for (i, (lab, want)) in LAB_SRGB.iter().enumerate() {
                    let what = format!("{lab:?} sixteen {sixteen} icc_lab {icc_lab}");
                    // 8-bit L* steps are 0.39, so 8-bit input may land one level off.
                    close(&got[i * 3..i * 3 + 3], want, 2, &what);
                }
            }
        }
    }

    #[test]
    fn lab_with_alpha_keeps_the_alpha_and_l_only_lab_is_gray() {
        let mut d = Decoded {
            width: 1,
            height: 1,
            layout: Layout::Rgba,
            samples: Samples::U8(vec![153, 40_i8 as u8, -30_i8 as u8, 77]), // L* 60
            icc: None,
            nclx: None,
        };
        lab_to_srgb(&mut d, false).unwrap();
        let Samples::U8(s) = &d.samples else { panic!() };
        close(&s[..3], &[193, 117, 199], 3, "rgba");
        assert_eq!(s[3], 77);
        // L* 50 alone (CIELab, two channels: L and alpha).
        let l50 = (50.0_f64 / 100.0 * 65535.0).round() as u16;
        let mut d = Decoded {
            width: 2,
            height: 1,
            layout: Layout::GrayAlpha,
            samples: Samples::U16(vec![l50, 1000, 65535, 2000]),
            icc: None,
            nclx: None,
        };
        lab_to_srgb(&mut d, false).unwrap();
        let Samples::U16(s) = &d.samples else {
            panic!()
        };
        assert!((s[0] / 257).abs_diff(119) <= 1, "{s:?}");
        assert!(s[2] >= 65535 - 257, "{s:?}");
        assert_eq!((s[1], s[3]), (1000, 2000));
    }

    #[test]
    fn every_bilevel_coding_of_one_page_decodes_to_the_same_pixels() {
        // One 1024x512 bilevel crop written by libtiff's tiffcp (and Pillow for Compression 2)
        // in every coding; PackBits goes through the tiff crate, the others through `ccitt`.
        let reference = decode_file("kofax.packbits.tif");
        assert_eq!((reference.width, reference.height), (1024, 512));
        assert_eq!(reference.layout, Layout::Gray);
        let Samples::U8(want) = &reference.samples else {
            panic!("8-bit gray expected");
        };
        assert!(want.iter().all(|&v| v == 0 || v == 255));
        let ink = want.iter().filter(|&&v| v == 0).count();
        assert!((10_000..400_000).contains(&ink), "{ink} black pixels");
        for name in [
            "kofax.g4.tif",
            "kofax.g3-1d-fill.tif",
            "kofax.g3-2d-fill.tif",
            "kofax.g3-2d-lsb.tif",
            "kofax.rle.tif",
        ] {
            let d = decode_file(name);
            assert_eq!(
                (d.width, d.height, d.layout),
                (1024, 512, Layout::Gray),
                "{name}"
            );
            let Samples::U8(got) = &d.samples else {
                panic!("{name}: 8-bit gray expected");
            };
            let differ = got.iter().zip(want).filter(|(a, b)| a != b).count();
            assert_eq!(differ, 0, "{name}: {differ} pixels differ");
        }
    }

    #[test]
    fn a_multi_page_fax_counts_its_pages_and_decodes_the_first() {
        // sharp's G31D_MULTI.TIF: a 2464x3248 Group 3 page (LSB first) and a 1232x1624 one.
        let bytes = conformance_file("G31D_MULTI.TIF");
        let probe = super::super::probe(&bytes, &Limits::default()).unwrap();
        assert_eq!((probe.width, probe.height, probe.frames), (2464, 3248, 2));
        let d = decode(&bytes, &probe).unwrap();
        assert_eq!((d.width, d.height, d.layout), (2464, 3248, Layout::Gray));
        let Samples::U8(px) = &d.samples else {
            panic!("8-bit gray expected");
        };
        // A white page with black print: mostly white, some ink.
        let ink = px.iter().filter(|&&v| v == 0).count() as f64 / px.len() as f64;
        assert!((0.02..0.2).contains(&ink), "ink covers {ink}");
        let tight = Limits {
            max_frames: 1,
            ..Limits::default()
        };
        let err = super::super::probe(&bytes, &tight).unwrap_err();
        assert!(matches!(err, RenderError::TooManyFrames(_)), "{err}");
    }

    #[test]
    fn reads_the_frame_size_of_a_jpeg() {
        // SOI, an APP0 of 4 bytes, SOF0 of a 300x200 frame (height first).
        let j = [
            0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2, 0xFF, 0xC0, 0, 11, 8, 0, 200, 1, 44, 3,
        ];
        assert_eq!(jpeg_frame_size(&j), Some((300, 200)));
        assert_eq!(jpeg_frame_size(&j[..12]), None, "ends in the frame header");
        assert_eq!(jpeg_frame_size(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]), None);
        assert_eq!(jpeg_frame_size(b"not a jpeg"), None);
    }

    #[test]
    fn first_ifd_values_must_lie_within_the_file() {
        fn tiff(tag: u16, kind: u16, count: u32, value: u32, pad: usize) -> Vec<u8> {
            let mut t = b"II*\0".to_vec();
            t.extend(8_u32.to_le_bytes());
            t.extend(1_u16.to_le_bytes());
            t.extend(tag.to_le_bytes());
            t.extend(kind.to_le_bytes());
            t.extend(count.to_le_bytes());
            t.extend(value.to_le_bytes());
            t.extend(0_u32.to_le_bytes());
            t.resize(t.len() + pad, 0);
            t
        }
        // 100 LONG strip offsets at offset 26: within a 426-byte file, not a 425-byte one.
        assert!(check_first_ifd(&tiff(273, 4, 100, 26, 400)).is_ok());
        let err = check_first_ifd(&tiff(273, 4, 100, 26, 399)).unwrap_err();
        assert!(matches!(err, RenderError::Undecodable(_)), "{err}");
        // Inline values need no room.
        assert!(check_first_ifd(&tiff(273, 4, 1, 8, 0)).is_ok());
        // Over the chunk limit even when the file holds the table.
        let n = u32::try_from(MAX_CHUNKS).unwrap() + 1;
        let err = check_first_ifd(&tiff(324, 3, n, 26, n as usize * 2)).unwrap_err();
        assert!(matches!(err, RenderError::TooLarge(_)), "{err}");
        // An IFD whose entries run past the end.
        let mut short = tiff(273, 4, 1, 8, 0);
        short[8] = 200;
        assert!(check_first_ifd(&short).is_err());
    }

    #[test]
    fn counts_tiff_pages_along_the_ifd_chain() {
        // Little-endian header, then three empty IFDs chained 8 -> 14 -> 20 -> end.
        let mut t = b"II*\0".to_vec();
        t.extend_from_slice(&8_u32.to_le_bytes());
        for next in [14_u32, 20, 0] {
            t.extend_from_slice(&0_u16.to_le_bytes());
            t.extend_from_slice(&next.to_le_bytes());
        }
        assert_eq!(count_tiff_pages(&t, 1000).unwrap(), 3);
        assert_eq!(count_tiff_pages(&t, 1).unwrap(), 2, "stops past the limit");
        // A loop back to the first IFD ends the walk.
        let mut looped = t.clone();
        looped[20 + 2..20 + 6].copy_from_slice(&8_u32.to_le_bytes());
        assert_eq!(count_tiff_pages(&looped, 1000).unwrap(), 3);
    }
}
