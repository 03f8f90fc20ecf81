//! Function secret sharing: a dealer splits a function f into two keys; each key alone looks
//! random, and the two parties' evaluations at any public x are shares of f(x).
//!
//! - [`bit_dpf`]: DPFs with one-bit (XOR-shared) outputs and early termination, 128 outputs per
//!   tree leaf. Every comparison (the prefix parity along x's path, SIGMA) and every lookup table
//!   of the gate engine is built on them; the default build holds only this scheme.
//! - `dpf` (feature `dpf`): distributed point functions f_{α,β}(x) = β if x = α else 0 with
//!   outputs in Z_2^l (Boyle–Gilboa–Ishai, CCS 2016), single-point and full-domain evaluation.
//! - `dcf` (feature `dcf`): distributed comparison functions f_{α,β}(x) = β if x < α else 0
//!   (Boyle et al., "FSS for mixed-mode and fixed-point secure computation", EUROCRYPT 2021).
//!
//! No gate uses the arithmetic DPF or the DCF. All three walk the same GGM tree.
//!
//! Inputs are n-bit (1 ≤ n ≤ 64, read most significant bit first), outputs live in Z_2^l
//! (1 ≤ l ≤ 64; l = 1 and XOR shares for the one-bit DPF). A key pair is split into the root
//! seeds (one per party, the only part that differs) and the *corrections*, which both keys
//! share. The dealer can therefore give P0 its root as a seed and send the corrections once
//! (see [`crate::dealer`]).
//!
//! Keys have a compact, canonical byte encoding (`to_bytes`/`from_bytes`, and serde through it):
//! decoding checks every field and rejects anything non-canonical with [`Error::MalformedKey`].

pub mod bit_dpf;
#[cfg(feature = "dcf")]
pub mod dcf;
#[cfg(feature = "dpf")]
pub mod dpf;
mod encoding;
mod key;
mod tree;

pub use bit_dpf::{BitDpf, BitDpfCorrections, BitDpfKey, BitDpfKeyParts, BitDpfKeys, LEAF_BITS};
#[cfg(feature = "dcf")]
pub use dcf::{Dcf, DcfCorrections, DcfKey, DcfKeyParts, DcfKeys};
#[cfg(feature = "dpf")]
pub use dpf::{Dpf, DpfCorrections, DpfKey};
pub use key::{Corrections, FssKey, KEY_HEADER_LEN, KeyBatch};

use crate::Error;
use crate::ring::BitWidth;

/// The largest input width for full-domain evaluation: 2^20 outputs (8 MiB of u64).
pub const MAX_FULL_DOMAIN_BITS: u32 = 20;

/// All-ones if `bit`, else zero: lets key generation select on secret bits without branching.
#[inline]
pub(crate) const fn mask64(bit: bool) -> u64 {
    0u64.wrapping_sub(bit as u64)
}

#[inline]
pub(crate) const fn mask128(bit: bool) -> u128 {
    0u128.wrapping_sub(bit as u128)
}

/// [`mask128`] hidden from the optimiser, for key-derived bits in evaluation loops: given a
/// visible 0/−1 mask, LLVM may compile `x & mask` into a branch on the bit (it did for the
/// leaf control bits of full-domain evaluation); an opaque mask stays an AND.
///
/// The opaque value is one 64-bit word, widened after: a black-boxed u128 goes through memory
/// as two 8-byte stores and one 16-byte load, which stalls store forwarding (it was half the
/// time of a DPF comparison).
#[inline(always)]
pub(crate) fn opaque_mask128(bit: bool) -> u128 {
    let m = core::hint::black_box(mask64(bit));
    ((m as u128) << 64) | m as u128
}

/// [`mask64`] hidden from the optimiser, like [`opaque_mask128`].
#[cfg(feature = "dcf")]
#[inline(always)]
pub(crate) fn opaque_mask64(bit: bool) -> u64 {
    core::hint::black_box(mask64(bit))
}

/// `if bit { b } else { a }` without a branch.
#[inline]
pub(crate) const fn select128(a: u128, b: u128, bit: bool) -> u128 {
    a ^ ((a ^ b) & mask128(bit))
}

/// `if bit { b } else { a }` without a branch.
#[inline]
pub(crate) const fn select64(a: u64, b: u64, bit: bool) -> u64 {
    a ^ ((a ^ b) & mask64(bit))
}

/// `if bit { b } else { a }` without a branch.
#[inline]
pub(crate) const fn select_bit(a: bool, b: bool, bit: bool) -> bool {
    (a & !bit) | (b & bit)
}

/// (-1)^bit · x in Z_2^64 without a branch.
#[inline]
pub(crate) const fn cond_neg(x: u64, bit: bool) -> u64 {
    let m = mask64(bit);
    (x ^ m).wrapping_sub(m)
}

/// Maps a leaf seed to the output group: its high 64 bits (the low bit of a seed is the cleared
/// control bit, so the high half is the uniform part), reduced to Z_2^l.
#[cfg(any(feature = "dcf", feature = "dpf"))]
#[inline]
pub(crate) const fn convert(seed: u128, out: BitWidth) -> u64 {
    out.reduce((seed >> 64) as u64)
}

/// Bit i (0 = most significant) of the n-bit value x.
#[inline]
pub(crate) const fn bit_msb_first(x: u64, n: u32, i: u32) -> bool {
    (x >> (n - 1 - i)) & 1 == 1
}

/// Checks that a batch of `keys` FSS keys comes with as many inputs and outputs.
pub fn check_key_batch(keys: usize, xs: usize, out: usize) -> Result<(), Error> {
    if keys != xs || xs != out {
        return Err(Error::LengthMismatch {
            expected: keys,
            got: if keys != xs { xs } else { out },
        });
    }
    Ok(())
}

/// Checks that `range` lies inside a batch of `keys` keys and comes with as many inputs and
/// outputs (for evaluating part of a batch).
pub fn check_key_range(
    keys: usize,
    range: &core::ops::Range<usize>,
    xs: usize,
    out: usize,
) -> Result<(), Error> {
    if range.end > keys || range.start > range.end {
        return Err(Error::LengthMismatch {
            expected: keys,
            got: range.end,
        });
    }
    check_key_batch(range.len(), xs, out)
}

pub(crate) fn check_in_ring(x: u64, width: BitWidth) -> Result<(), Error> {
    if width.contains(x) {
        Ok(())
    } else {
        Err(Error::ValueOutOfRange { bits: width.bits() })
    }
}

pub(crate) fn check_full_domain(in_bits: BitWidth) -> Result<usize, Error> {
    if in_bits.bits() > MAX_FULL_DOMAIN_BITS {
        return Err(Error::DomainTooLarge {
            bits: in_bits.bits(),
            max: MAX_FULL_DOMAIN_BITS,
        });
    }
    Ok(1usize << in_bits.bits())
}
