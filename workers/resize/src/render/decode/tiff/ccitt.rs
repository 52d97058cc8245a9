//! CCITT bilevel decoding for TIFF: Modified Huffman RLE (Compression 2), Group 3 (T.4,
//! Compression 3; 1-D and 2-D rows, with or without byte-aligned EOLs) and Group 4 (T.6,
//! Compression 4). The code tables are the `fax` crate's; the row logic, the bit reader and
//! every bound are here.
//!
//! Bounds: every step reads at least one bit, so a chunk costs at most its bit count in steps
//! plus one fill of its `width` x `rows` pixels; a row's changing elements are capped at
//! `width + 2`, a run may not carry a row past its width, and decoding stops after `rows` rows
//! (data beyond is ignored). A chunk whose data ends cleanly between rows leaves the rest
//! white (encoders drop trailing white rows); data that ends inside a row is truncated.

use fax::BitReader;
use fax::maps::{Mode, black, mode, white};

use super::RenderError;

/// How the rows of a chunk are coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    /// Compression 2: 1-D rows, no EOLs, each row starting on a byte boundary.
    Rle,
    /// Compression 3 (T.4): rows after optional EOLs; `two_d` (T4Options bit 0) adds a tag
    /// bit after each EOL that selects 1-D or 2-D coding for the row.
    Group3 { two_d: bool },
    /// Compression 4 (T.6): 2-D rows against the previous one, ended by EOFB or the data.
    Group4,
}

/// One chunk's coded data and shape.
pub(super) struct Chunk<'a> {
    pub data: &'a [u8],
    pub width: u32,
    pub rows: u32,
    pub coding: Coding,
    /// FillOrder 2: the first pixel is in the least significant bit of each byte.
    pub lsb_first: bool,
}

/// Decode `chunk` into `out` (`width` x `rows` bytes, row-major): `paper` where the code has
/// a white run, `ink` where it has a black one. TIFF stores the colour meaning in its
/// PhotometricInterpretation, so the caller picks the two values.
pub(super) fn decode(
    chunk: &Chunk<'_>,
    out: &mut [u8],
    paper: u8,
    ink: u8,
) -> Result<(), RenderError> {
    let width = chunk.width as usize;
    let needed = width
        .checked_mul(chunk.rows as usize)
        .filter(|&n| n <= out.len())
        .ok_or_else(|| RenderError::Undecodable("CCITT chunk larger than its buffer".into()))?;
    let out = &mut out[..needed];
    out.fill(paper);
    if width == 0 {
        return Ok(());
    }
    let mut bits = Bits {
        data: chunk.data,
        pos: 0,
        lsb_first: chunk.lsb_first,
    };
    // Changing elements (positions where the colour flips, starting white) of the reference
    // and the current row, all below the width.
    let mut reference: Vec<u32> = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    for (y, row) in out.chunks_exact_mut(width).enumerate() {
        let two_d = match chunk.coding {
            Coding::Rle => {
                if y > 0 {
                    bits.align();
                }
                if bits.at_end() {
                    break;
                }
                false
            }
            Coding::Group3 { two_d } => match group3_row_start(&mut bits, two_d)? {
                Some(two_d) => two_d,
                None => break,
            },
            Coding::Group4 => {
                if matches!(bits.eol_ahead(), Eol::Found(_) | Eol::End) {
                    break; // EOFB, or the data ends between rows
                }
                true
            }
        };
        if two_d {
            row_2d(
                &mut bits,
                chunk.width,
                &reference,
                &mut current,
                chunk.coding,
            )?;
        } else {
            row_1d(&mut bits, chunk.width, &mut current, chunk.coding)?;
        }
        fill(row, &current, ink);
        std::mem::swap(&mut reference, &mut current);
    }
    Ok(())
}

/// Paint the black runs of one row given its changing elements.
fn fill(row: &mut [u8], changes: &[u32], ink: u8) {
    let mut black = false;
    let mut x = 0;
    for &c in changes {
        let c = c as usize; // below the width, never below `x` (checked when decoded)
        if black {
            row[x..c].fill(ink);
        }
        x = c;
        black = !black;
    }
    if black {
        row[x..].fill(ink);
    }
}

/// The start of a Group 3 row: skip its EOL(s) and read the 2-D tag bit. `None` at the end of
/// the page: RTC (two EOLs in a row, no row between), or no data left.
fn group3_row_start(bits: &mut Bits<'_>, two_d: bool) -> Result<Option<bool>, RenderError> {
    let mut eols = 0;
    loop {
        match bits.eol_ahead() {
            Eol::Found(n) => {
                bits.skip(n);
                eols += 1;
            }
            Eol::End => return Ok(None),
            Eol::None => break,
        }
        // In 2-D mode RTC is (EOL + 1) six times: a tag bit directly followed by an EOL.
        if two_d {
            let mut after = bits.clone();
            after.skip(1);
            if matches!(after.eol_ahead(), Eol::Found(_)) {
                *bits = after;
            } else {
                break;
            }
        }
    }
    if eols >= 2 || bits.at_end() {
        return Ok(None);
    }
    if two_d {
        let tag = bits.peek(1).unwrap_or(0);
        bits.consume(1).map_err(|()| truncated())?;
        return Ok(Some(tag == 0));
    }
    Ok(Some(false))
}

/// A 1-D (Modified Huffman) row: alternating white and black runs filling the width.
fn row_1d(
    bits: &mut Bits<'_>,
    width: u32,
    current: &mut Vec<u32>,
    coding: Coding,
) -> Result<(), RenderError> {
    current.clear();
    let mut a0 = 0_u32;
    let mut black = false;
    while a0 < width {
        if coding != Coding::Rle && matches!(bits.eol_ahead(), Eol::Found(_)) {
            // A premature EOL (Group 3): the rest of the row is white, as libtiff renders it.
            if black {
                push(current, a0, width)?;
            }
            return Ok(());
        }
        let run = run_length(bits, black, width)?;
        a0 = a0
            .checked_add(run)
            .filter(|&a| a <= width)
            .ok_or_else(|| too_long(width))?;
        if a0 < width {
            push(current, a0, width)?;
        }
        black = !black;
    }
    Ok(())
}

/// A 2-D (READ) row coded against `reference`.
fn row_2d(
    bits: &mut Bits<'_>,
    width: u32,
    reference: &[u32],
    current: &mut Vec<u32>,
    coding: Coding,
) -> Result<(), RenderError> {
    current.clear();
    let changing = |k: usize| reference.get(k).copied().unwrap_or(width);
    // a0 starts on an imaginary white pixel before the row; `None` stands for that position.
    let mut a0: Option<u32> = None;
    let mut black = false;
    // The first reference element right of a0 (a0 only moves right, so this does too).
    let mut i = 0;
    loop {
        let start = a0.unwrap_or(0);
        while i < reference.len() && a0.is_some_and(|a| reference[i] <= a) {
            i += 1;
        }
        // b1: the first changing element right of a0 of the colour opposite a0's: a change
        // to black (even index) when a0 is white, to white (odd index) when it is black.
        let k = if (i % 2 == 1) == black { i } else { i + 1 };
        let (b1, b2) = (changing(k), changing(k + 1));
        if coding != Coding::Group4 && a0.is_some() && matches!(bits.eol_ahead(), Eol::Found(_)) {
            if black {
                push(current, start, width)?;
            }
            return Ok(()); // premature EOL, as in a 1-D row
        }
        let Some(m) = mode::decode(bits) else {
            return Err(bits.error("CCITT mode code"));
        };
        match m {
            Mode::Pass => a0 = Some(b2.max(start)),
            Mode::Horizontal => {
                let r1 = run_length(bits, black, width)?;
                let r2 = run_length(bits, !black, width)?;
                let a1 = start.checked_add(r1).filter(|&a| a <= width);
                let a2 = a1.and_then(|a| a.checked_add(r2)).filter(|&a| a <= width);
                let (Some(a1), Some(a2)) = (a1, a2) else {
                    return Err(too_long(width));
                };
                for a in [a1, a2] {
                    if a < width {
                        push(current, a, width)?;
                    }
                }
                a0 = Some(a2);
            }
            Mode::Vertical(d) => {
                let a1 = i64::from(b1) + i64::from(d);
                if a1 < i64::from(start) || a1 > i64::from(width) {
                    return Err(RenderError::Undecodable(format!(
                        "CCITT vertical code puts a change at {a1}, outside {start}..={width}"
                    )));
                }
                let a1 = a1 as u32; // within 0..=width, checked above
                if a1 < width {
                    push(current, a1, width)?;
                }
                a0 = Some(a1);
                black = !black;
            }
            Mode::Extension => {
                return Err(RenderError::UnsupportedFormat(
                    "CCITT uncompressed mode is not supported".into(),
                ));
            }
            Mode::EOF => {
                return Err(RenderError::Undecodable(
                    "CCITT end of data inside a row".into(),
                ));
            }
        }
        if a0.is_some_and(|a| a >= width) {
            return Ok(());
        }
    }
}

/// Record a changing element: never left of the previous one, at most `width + 2` per row.
fn push(current: &mut Vec<u32>, at: u32, width: u32) -> Result<(), RenderError> {
    if current.last().is_some_and(|&last| at < last) {
        return Err(RenderError::Undecodable(
            "CCITT row goes back over itself".into(),
        ));
    }
    if current.len() > width as usize + 1 {
        return Err(RenderError::Undecodable(format!(
            "CCITT row of width {width} has more changes than pixels"
        )));
    }
    current.push(at);
    Ok(())
}

/// One run: make-up codes (64 and more) then a terminating code (below 64).
fn run_length(bits: &mut Bits<'_>, black: bool, width: u32) -> Result<u32, RenderError> {
    let mut total = 0_u32;
    loop {
        let code = if black {
            black::decode(bits)
        } else {
            white::decode(bits)
        };
        let Some(n) = code else {
            return Err(bits.error("CCITT run code"));
        };
        total = total.saturating_add(u32::from(n));
        if total > width {
            return Err(too_long(width));
        }
        if n < 64 {
            return Ok(total);
        }
    }
}

fn too_long(width: u32) -> RenderError {
    RenderError::Undecodable(format!("CCITT runs carry a row past its width of {width}"))
}

fn truncated() -> RenderError {
    RenderError::Truncated("CCITT data ends inside a row".into())
}

/// What follows the read position: an EOL (`Found(bits)` zero fill bits, eleven zeros and a
/// one), zeros to the end of the data, or anything else.
enum Eol {
    Found(usize),
    End,
    None,
}

/// A bit reader over one chunk. Peeking past the end reads zeros; consuming past it fails.
#[derive(Clone)]
struct Bits<'a> {
    data: &'a [u8],
    /// Bits consumed.
    pos: usize,
    lsb_first: bool,
}

impl Bits<'_> {
    fn byte(&self, i: usize) -> u32 {
        let b = self.data.get(i).copied().unwrap_or(0);
        u32::from(if self.lsb_first { b.reverse_bits() } else { b })
    }

    fn total(&self) -> usize {
        self.data.len() * 8
    }

    fn at_end(&self) -> bool {
        self.pos >= self.total()
    }

    fn skip(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.total());
    }

    fn align(&mut self) {
        self.skip((8 - self.pos % 8) % 8);
    }

    /// Scans zeros up to the first one bit: at most 11 bits unless they are all zero (then the
    /// caller consumes them, or the data ends), so the scans of a chunk cost O(its bits).
    fn eol_ahead(&self) -> Eol {
        let mut at = self.pos;
        let total = self.total();
        while at < total {
            let bit = (self.byte(at / 8) >> (7 - at % 8)) & 1;
            if bit == 1 {
                let zeros = at - self.pos;
                return if zeros >= 11 {
                    Eol::Found(zeros + 1)
                } else {
                    Eol::None
                };
            }
            at += 1;
        }
        Eol::End
    }

    /// The error for a code that does not decode: truncated when the data ran out.
    fn error(&self, what: &str) -> RenderError {
        if self.pos + 16 >= self.total() {
            truncated()
        } else {
            RenderError::Undecodable(format!("invalid {what} at bit {}", self.pos))
        }
    }
}

impl BitReader for Bits<'_> {
    type Error = ();

    fn peek(&self, bits: u8) -> Option<u16> {
        if bits > 16 {
            return None;
        }
        let i = self.pos / 8;
        let window = (self.byte(i) << 16) | (self.byte(i + 1) << 8) | self.byte(i + 2);
        let shift = 24 - (self.pos % 8) as u32 - u32::from(bits);
        Some(((window >> shift) & ((1_u32 << bits) - 1)) as u16)
    }

    fn consume(&mut self, bits: u8) -> Result<(), ()> {
        let next = self.pos + usize::from(bits);
        if next > self.total() {
            return Err(());
        }
        self.pos = next;
        Ok(())
    }

    fn bits_to_byte_boundary(&self) -> u8 {
        ((8 - self.pos % 8) % 8) as u8
    }
}
