//! Lookup tables on an n-bit masked input through DPF full-domain evaluation (SIGMA's
//! method): with a DPF key for the point r (the input mask) and β = 1,
//!   Σ_j [δ_{j=r}]_b · T[(x^ − j) mod 2^n] = [T(x)]_b,
//! plus a pseudorandom pair for the output mask; one round, one output element each way.
//! Table indices depend only on the public x^ and the loop counter, never on a secret.

use super::channel::{Channel, KeySink, KeySource};
use super::kernels::Kernels;
use super::roles::{DealerSide, ServerSide};
use super::tensor::Tensor;
use crate::Error;
use crate::fss::MAX_FULL_DOMAIN_BITS;
use crate::ring::BitWidth;
use alloc::vec;
use alloc::vec::Vec;

/// A public table T: Z_2^n → Z_2^out with 2^n entries (n ≤ 16 in gates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupTable {
    in_bits: BitWidth,
    out_width: BitWidth,
    entries: Vec<u64>,
}

/// The largest table input the gate accepts (2^16 entries).
pub const MAX_TABLE_BITS: u32 = 16;

impl LookupTable {
    /// A table over n-bit inputs (entry i is T(i)); entries must be elements of Z_2^out.
    pub fn new(in_bits: BitWidth, out_width: BitWidth, entries: Vec<u64>) -> Result<Self, Error> {
        if in_bits.bits() > MAX_TABLE_BITS.min(MAX_FULL_DOMAIN_BITS) {
            return Err(Error::DomainTooLarge {
                bits: in_bits.bits(),
                max: MAX_TABLE_BITS,
            });
        }
        if entries.len() != 1usize << in_bits.bits() {
            return Err(Error::LengthMismatch {
                expected: 1usize << in_bits.bits(),
                got: entries.len(),
            });
        }
        if entries.iter().any(|&e| !out_width.contains(e)) {
            return Err(Error::ValueOutOfRange {
                bits: out_width.bits(),
            });
        }
        Ok(LookupTable {
            in_bits,
            out_width,
            entries,
        })
    }

    /// A table from a function of the input index.
    pub fn from_fn(
        in_bits: BitWidth,
        out_width: BitWidth,
        f: impl Fn(u64) -> u64,
    ) -> Result<Self, Error> {
        let size = 1u64 << in_bits.bits().min(MAX_TABLE_BITS + 1);
        Self::new(
            in_bits,
            out_width,
            (0..size).map(|i| out_width.reduce(f(i))).collect(),
        )
    }

    /// Input bits n.
    pub fn in_bits(&self) -> BitWidth {
        self.in_bits
    }

    /// Output width.
    pub fn out_width(&self) -> BitWidth {
        self.out_width
    }

    /// T(i).
    pub fn get(&self, i: u64) -> u64 {
        self.entries[self.in_bits.reduce(i) as usize]
    }

    fn check(&self, x: &Tensor) -> Result<(), Error> {
        if x.width() != self.in_bits {
            return Err(Error::ShapeMismatch(
                "lookup input width must equal the table's input bits (reduce it first)",
            ));
        }
        Ok(())
    }
}

pub(super) fn deal<S: KeySink>(
    d: &mut DealerSide<S>,
    x: &Tensor,
    t: &LookupTable,
) -> Result<Tensor, Error> {
    t.check(x)?;
    d.fss(x.data(), |dealer, a| {
        dealer.dpf(t.in_bits, t.out_width, a, 1)
    })?;
    let r = d.pair(x.len(), t.out_width);
    Ok(Tensor::from_parts(x.shape(), t.out_width, r))
}

pub(super) async fn eval<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    t: &LookupTable,
) -> Result<Tensor, Error> {
    t.check(x)?;
    let keys = srv
        .fss_keys::<crate::fss::DpfCorrections>(x.len(), t.in_bits, t.out_width)
        .await?;
    let s = srv.pair(x.len(), t.out_width);
    let mut y = vec![0u64; x.len()];
    srv.kernels()
        .dpf_lookup(&keys, x.data(), &t.entries, t.out_width, &mut y)?;
    let mine: Vec<u64> = y
        .iter()
        .zip(&s)
        .map(|(&a, &b)| t.out_width.add(a, b))
        .collect();
    let opened = srv.open(&mine, t.out_width).await?;
    Ok(Tensor::from_parts(x.shape(), t.out_width, opened))
}
