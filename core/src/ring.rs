//! The ring Z_2^64, its quotients Z_2^n, and fixed-point encoding into it.
//!
//! Ring elements are plain `u64` with wrapping arithmetic: that is exactly Z_2^64, and it keeps
//! matmul kernels and wire formats free of wrapper types. A value of Z_2^n (n < 64) is stored
//! in the low n bits of a `u64` with the high bits zero; [`BitWidth::reduce`] maps Z_2^64 onto it
//! and is a ring homomorphism.

use crate::error::Error;

/// A bit-width n in 1..=64, naming the ring Z_2^n.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BitWidth(u8);

impl BitWidth {
    /// The full ring Z_2^64.
    pub const FULL: BitWidth = BitWidth(64);

    /// Validates `bits` as a bit-width: 1 ≤ bits ≤ 64.
    pub const fn new(bits: u32) -> Result<Self, Error> {
        if bits >= 1 && bits <= 64 {
            Ok(BitWidth(bits as u8))
        } else {
            Err(Error::BitWidthOutOfRange { bits })
        }
    }

    /// The number of bits n.
    pub const fn bits(self) -> u32 {
        self.0 as u32
    }

    /// The mask 2^n - 1 (all ones for n = 64).
    pub const fn mask(self) -> u64 {
        if self.0 == 64 {
            u64::MAX
        } else {
            (1u64 << self.0) - 1
        }
    }

    /// Reduces an element of Z_2^64 to Z_2^n (keeps the low n bits).
    pub const fn reduce(self, x: u64) -> u64 {
        x & self.mask()
    }

    /// Whether `x` is a canonical element of Z_2^n (no bits above n).
    pub const fn contains(self, x: u64) -> bool {
        x & !self.mask() == 0
    }

    /// Interprets the low n bits of `x` as a two's-complement signed integer.
    pub const fn to_signed(self, x: u64) -> i64 {
        let shift = 64 - self.0 as u32;
        ((x << shift) as i64) >> shift
    }

    /// Adds in Z_2^n.
    pub const fn add(self, a: u64, b: u64) -> u64 {
        self.reduce(a.wrapping_add(b))
    }

    /// Subtracts in Z_2^n.
    pub const fn sub(self, a: u64, b: u64) -> u64 {
        self.reduce(a.wrapping_sub(b))
    }

    /// Multiplies in Z_2^n.
    pub const fn mul(self, a: u64, b: u64) -> u64 {
        self.reduce(a.wrapping_mul(b))
    }

    /// Negates in Z_2^n.
    pub const fn neg(self, a: u64) -> u64 {
        self.reduce(a.wrapping_neg())
    }

    /// The most significant bit (bit n-1) of `x`.
    pub const fn msb(self, x: u64) -> bool {
        (x >> (self.0 as u32 - 1)) & 1 == 1
    }
}

/// Wrapping matrix product in Z_2^64, row-major: out (m×n) = a (m×k) · b (k×n).
///
/// The portable reference every backend must match bit for bit. The i-p-j loop order streams
/// rows of `b` so the inner loop vectorises. Lengths must match the shape (checked by callers
/// that take untrusted shapes); a mismatch here is a programming error and panics.
pub fn matmul(a: &[u64], b: &[u64], m: usize, k: usize, n: usize, out: &mut [u64]) {
    assert!(a.len() == m * k && b.len() == k * n && out.len() == m * n);
    out.iter_mut().for_each(|x| *x = 0);
    for i in 0..m {
        let row = &mut out[i * n..(i + 1) * n];
        for p in 0..k {
            let aip = a[i * k + p];
            for (o, &bpj) in row.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                *o = o.wrapping_add(aip.wrapping_mul(bpj));
            }
        }
    }
}

/// Fixed-point encoding of reals as two's-complement integers with `frac_bits` fractional bits,
/// inside a ring of `width` bits.
///
/// Encoding refuses values that do not fit instead of wrapping: a silently wrapped input would
/// turn into a huge value of the opposite sign inside the secure computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FixedPoint {
    frac_bits: u8,
    width: BitWidth,
}

impl FixedPoint {
    /// A fixed-point format with `frac_bits` fractional bits in Z_2^width.
    /// Requires `frac_bits < width` so that at least the sign and one integer bit remain.
    pub const fn new(frac_bits: u32, width: BitWidth) -> Result<Self, Error> {
        if frac_bits + 1 < width.bits() {
            Ok(FixedPoint {
                frac_bits: frac_bits as u8,
                width,
            })
        } else {
            Err(Error::FracBitsTooLarge {
                frac_bits,
                width: width.bits(),
            })
        }
    }

    /// Number of fractional bits f.
    pub const fn frac_bits(self) -> u32 {
        self.frac_bits as u32
    }

    /// The ring the encoding lives in.
    pub const fn width(self) -> BitWidth {
        self.width
    }

    /// The scale 2^f as a real.
    pub fn scale(self) -> f64 {
        (1u64 << self.frac_bits) as f64
    }

    /// The largest magnitude that encodes: values must satisfy |x| < 2^(n-1-f).
    pub fn max_abs(self) -> f64 {
        (1u64 << (self.width.bits() - 1 - self.frac_bits as u32)) as f64
    }

    /// Encodes `x` as round(x * 2^f) in two's complement mod 2^n.
    /// Errors for NaN, infinities and |x| ≥ 2^(n-1-f); never wraps.
    pub fn encode(self, x: f64) -> Result<u64, Error> {
        if !x.is_finite() {
            return Err(Error::NotFinite);
        }
        let scaled = round_half_away(x * self.scale());
        let limit = (1u64 << (self.width.bits() - 1)) as f64;
        if scaled >= limit || scaled < -limit {
            return Err(Error::FixedPointOverflow {
                width: self.width.bits(),
                frac_bits: self.frac_bits as u32,
            });
        }
        Ok(self.width.reduce(scaled as i64 as u64))
    }

    /// Decodes a ring element (low n bits, two's complement) back to a real.
    pub fn decode(self, x: u64) -> f64 {
        self.width.to_signed(x) as f64 / self.scale()
    }

    /// Encodes a slice, stopping at the first value that does not fit.
    pub fn encode_slice(self, xs: &[f64], out: &mut [u64]) -> Result<(), Error> {
        if xs.len() != out.len() {
            return Err(Error::LengthMismatch {
                expected: xs.len(),
                got: out.len(),
            });
        }
        for (o, &x) in out.iter_mut().zip(xs) {
            *o = self.encode(x)?;
        }
        Ok(())
    }

    /// Decodes a slice.
    pub fn decode_slice(self, xs: &[u64], out: &mut [f64]) -> Result<(), Error> {
        if xs.len() != out.len() {
            return Err(Error::LengthMismatch {
                expected: xs.len(),
                got: out.len(),
            });
        }
        for (o, &x) in out.iter_mut().zip(xs) {
            *o = self.decode(x);
        }
        Ok(())
    }
}

/// Rounds half away from zero without `std` (`f64::round` needs libm).
fn round_half_away(x: f64) -> f64 {
    // Values this large are already integers and may not fit an i64 cast; the caller's range
    // check rejects them.
    if x >= 9.0e18 || x <= -9.0e18 {
        return x;
    }
    let t = x as i64 as f64; // truncates toward zero
    let frac = x - t;
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_width_bounds() {
        assert!(BitWidth::new(0).is_err());
        assert!(BitWidth::new(65).is_err());
        assert_eq!(BitWidth::new(64).unwrap().mask(), u64::MAX);
        assert_eq!(BitWidth::new(1).unwrap().mask(), 1);
        assert_eq!(BitWidth::new(12).unwrap().to_signed(0xfff), -1);
        assert_eq!(BitWidth::new(12).unwrap().to_signed(0x7ff), 2047);
    }

    #[test]
    fn fixed_point_rejects_out_of_range() {
        let fp = FixedPoint::new(12, BitWidth::new(20).unwrap()).unwrap();
        assert_eq!(fp.max_abs(), 128.0);
        assert!(fp.encode(127.99).is_ok());
        assert!(fp.encode(128.0).is_err());
        assert!(fp.encode(-128.0).is_ok());
        assert!(fp.encode(-128.001).is_err());
        assert_eq!(fp.encode(f64::NAN), Err(Error::NotFinite));
        assert!(fp.encode(f64::INFINITY).is_err());
        assert!(FixedPoint::new(63, BitWidth::FULL).is_err());
        assert!(FixedPoint::new(62, BitWidth::FULL).is_ok());
        assert_eq!(fp.decode(fp.encode(-1.5).unwrap()), -1.5);
    }

    #[test]
    fn rounding_is_to_nearest() {
        assert_eq!(round_half_away(2.5), 3.0);
        assert_eq!(round_half_away(-2.5), -3.0);
        assert_eq!(round_half_away(2.49), 2.0);
        assert_eq!(round_half_away(-0.2), 0.0);
    }
}
