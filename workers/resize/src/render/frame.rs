//! The decoded frame as the decoders hand it to colour management: shared by
//! [`super::decode`] (which produces it) and [`super::color`] (which consumes it), so neither
//! imports the other.

/// How the decoded samples are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One gray channel.
    Gray,
    /// Gray + alpha.
    GrayAlpha,
    /// R, G, B.
    Rgb,
    /// R, G, B, unassociated alpha.
    Rgba,
    /// C, M, Y, K; `inverted` when 0 means full ink (Adobe JPEGs).
    Cmyk {
        /// Adobe-style inverted CMYK.
        inverted: bool,
    },
}

impl Layout {
    /// Samples per pixel.
    pub fn channels(self) -> usize {
        match self {
            Layout::Gray => 1,
            Layout::GrayAlpha => 2,
            Layout::Rgb => 3,
            Layout::Rgba | Layout::Cmyk { .. } => 4,
        }
    }

    /// Whether the layout carries alpha.
    pub fn has_alpha(self) -> bool {
        matches!(self, Layout::GrayAlpha | Layout::Rgba)
    }
}

/// Decoded samples at their stored depth.
#[derive(Debug, Clone)]
pub enum Samples {
    /// 8 bits per sample.
    U8(Vec<u8>),
    /// 16 bits per sample, native endian, full range.
    U16(Vec<u16>),
}

/// One decoded frame, not yet colour managed or oriented.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Pixel width (after any DCT-domain scaling).
    pub width: u32,
    /// Pixel height (after any DCT-domain scaling).
    pub height: u32,
    /// Channel layout.
    pub layout: Layout,
    /// The samples, row-major, no padding.
    pub samples: Samples,
    /// Embedded ICC profile, if any.
    pub icc: Option<Vec<u8>>,
    /// Colour signalled by code points (HEIF/AVIF `nclx`); used only when there is no ICC.
    pub nclx: Option<Nclx>,
}

/// Colour signalled by ITU-T H.273 code points instead of an ICC profile (the HEIF/AVIF
/// `nclx` colour box). `u16::MAX` stands for a code point the decoder did not recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nclx {
    /// ColourPrimaries (1 = BT.709/sRGB, 9 = BT.2020, 12 = Display P3, ...).
    pub primaries: u16,
    /// TransferCharacteristics (13 = sRGB, 1 = BT.709, 16 = PQ, 18 = HLG, ...).
    pub transfer: u16,
    /// MatrixCoefficients (applied by the decoder; reported only).
    pub matrix: u16,
    /// Full-range (rather than video-range) samples.
    pub full_range: bool,
    /// Static HDR metadata stored beside the code points (meaningful with PQ).
    pub light: ContentLight,
}

/// Static HDR metadata of a frame (HEIF `clli` and `mdcv` properties), as stored: not yet
/// checked for sense (see `hdr::content_peak`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentLight {
    /// MaxCLL, the brightest pixel of the content, in cd/m².
    pub max_cll: Option<u16>,
    /// The mastering display's peak luminance, in cd/m².
    pub mastering_peak: Option<u32>,
}
