//! DReLU(x) = [x ≥ 0] for x in Z_2^n read as signed, by one DCF on n − 1 bits, one round and
//! one bit per element each way.
//!
//! With x^ = x + r in Z_2^n, the low n − 1 bits subtract with borrow b = [x^_low < r_low], so
//!   msb(x) = msb(x^) ⊕ msb(r) ⊕ b   and   DReLU(x) = 1 ⊕ msb(x).
//! The dealer gives a DCF key for b (α = r_low, β = 1, output in Z_2) and a pseudorandom bit
//! pair s; the output mask is r_d = s ⊕ msb(r), so
//!   [d^]_b = P0·(1 ⊕ msb(x^)) ⊕ [b]_b ⊕ s_b.
//! Reduce a wire to the smallest width that holds its values first: the key has n − 1 levels.

use super::channel::{Channel, KeySink, KeySource};
use super::kernels::Kernels;
use super::roles::{DealerSide, ServerSide};
use super::tensor::Tensor;
use crate::Error;
use crate::fss::{Corrections, DcfKeys};
use crate::ring::BitWidth;
use alloc::vec;
use alloc::vec::Vec;

const BIT: BitWidth = match BitWidth::new(1) {
    Ok(b) => b,
    Err(_) => BitWidth::FULL,
};

/// The DCF input width for an n-bit comparison.
fn low_bits(x: &Tensor) -> Result<BitWidth, Error> {
    let n = x.width().bits();
    if n < 2 {
        return Err(Error::ShapeMismatch("DReLU needs at least 2 input bits"));
    }
    BitWidth::new(n - 1)
}

/// DCF key bytes per element for an n-bit DReLU (the shared corrections).
pub fn drelu_key_bytes(n: BitWidth) -> usize {
    match BitWidth::new(n.bits().saturating_sub(1)) {
        Ok(low) => crate::fss::DcfCorrections::encoded_len(low, BIT),
        Err(_) => 0,
    }
}

pub(super) fn deal<S: KeySink>(d: &mut DealerSide<S>, x: &Tensor) -> Result<Tensor, Error> {
    let low = low_bits(x)?;
    let w = x.width();
    let alphas: Vec<u64> = x.data().iter().map(|&r| low.reduce(r)).collect();
    d.dcf_keys(low, BIT, &alphas, 1)?;
    let s = d.pair(x.len(), BIT);
    let rd = s
        .iter()
        .zip(x.data())
        .map(|(&s, &r)| s ^ w.msb(r) as u64)
        .collect();
    Ok(Tensor::from_parts(x.shape(), BIT, rd))
}

pub(super) async fn eval<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
) -> Result<Tensor, Error> {
    let low = low_bits(x)?;
    let w = x.width();
    let xs: Vec<u64> = x.data().iter().map(|&v| low.reduce(v)).collect();
    let mut borrow = vec![0u64; x.len()];
    srv.with_fss_keys::<DcfKeys>(x.len(), low, BIT, |kernels, keys, range| {
        kernels.dcf_eval(keys, &xs[range.clone()], &mut borrow[range])
    })
    .await?;
    let s = srv.pair(x.len(), BIT);
    let p0 = srv.is_p0();
    let mine: Vec<u64> = (0..x.len())
        .map(|i| {
            let public = if p0 { 1 ^ w.msb(x.data()[i]) as u64 } else { 0 };
            public ^ borrow[i] ^ s[i]
        })
        .collect();
    let opened = srv.open(&mine, BIT).await?;
    Ok(Tensor::from_parts(x.shape(), BIT, opened))
}
