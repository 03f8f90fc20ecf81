//! The one error type of the core: every input that crosses a trust boundary is checked and a
//! failure comes back as a value naming what was wrong.

use core::fmt;

/// What went wrong in a core operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// A bit-width outside 1..=64.
    BitWidthOutOfRange {
        /// The rejected width.
        bits: u32,
    },
    /// A fixed-point format whose fractional bits leave no room for sign and integer part.
    FracBitsTooLarge {
        /// Requested fractional bits.
        frac_bits: u32,
        /// Ring width.
        width: u32,
    },
    /// A real value that is NaN or infinite.
    NotFinite,
    /// A real value too large for the fixed-point format.
    FixedPointOverflow {
        /// Ring width.
        width: u32,
        /// Fractional bits.
        frac_bits: u32,
    },
    /// Two slices that must have equal lengths do not.
    LengthMismatch {
        /// The length required.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A value that is not an element of the ring Z_2^n it must belong to.
    ValueOutOfRange {
        /// The ring width.
        bits: u32,
    },
    /// An FSS key or correction-word encoding that is malformed.
    MalformedKey(&'static str),
    /// Full-domain evaluation asked for a domain larger than supported.
    DomainTooLarge {
        /// Input bits requested.
        bits: u32,
        /// Largest supported.
        max: u32,
    },
    /// A message of an interactive protocol (e.g. OT) that is malformed.
    MalformedMessage(&'static str),
    /// A protocol step called with the wrong number of items or out of order.
    ProtocolMisuse(&'static str),
    /// Tensor shapes or bit-widths that an operation cannot combine.
    ShapeMismatch(&'static str),
    /// The peer or the dealer's stream ended or failed (the adapter's error is logged there).
    ChannelClosed(&'static str),
    /// A kernel backend (e.g. a GPU) failed; the backend logs its own error in detail.
    KernelFailed(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::BitWidthOutOfRange { bits } => {
                write!(f, "bit-width {bits} is outside 1..=64")
            }
            Error::FracBitsTooLarge { frac_bits, width } => write!(
                f,
                "{frac_bits} fractional bits leave no integer bits in a {width}-bit ring"
            ),
            Error::NotFinite => write!(f, "value is NaN or infinite"),
            Error::FixedPointOverflow { width, frac_bits } => write!(
                f,
                "value does not fit a {width}-bit fixed-point number with {frac_bits} fractional bits"
            ),
            Error::LengthMismatch { expected, got } => {
                write!(f, "length mismatch: expected {expected}, got {got}")
            }
            Error::ValueOutOfRange { bits } => {
                write!(f, "value is not an element of Z_2^{bits}")
            }
            Error::MalformedKey(what) => write!(f, "malformed FSS key: {what}"),
            Error::DomainTooLarge { bits, max } => write!(
                f,
                "full-domain evaluation over {bits} input bits exceeds the supported {max}"
            ),
            Error::MalformedMessage(what) => write!(f, "malformed protocol message: {what}"),
            Error::ProtocolMisuse(what) => write!(f, "protocol misuse: {what}"),
            Error::ShapeMismatch(what) => write!(f, "shape mismatch: {what}"),
            Error::ChannelClosed(what) => write!(f, "channel closed: {what}"),
            Error::KernelFailed(what) => write!(f, "kernel backend failed: {what}"),
        }
    }
}

impl core::error::Error for Error {}
