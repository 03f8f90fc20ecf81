//! DReLU(x) = [x ≥ 0] for x in Z_2^n read as signed, by one DPF comparison on n − 1 bits
//! (SIGMA, Gupta et al., PoPETs 2024), one round and one bit per element each way.
//!
//! With x^ = x + r in Z_2^n, the low n − 1 bits subtract with borrow b = [x^_low < r_low], so
//!   msb(x) = msb(x^) ⊕ msb(r) ⊕ b   and   DReLU(x) = 1 ⊕ msb(x).
//! The dealer gives a one-bit DPF key pair for the point α = r_low; the prefix parity of its
//! evaluation at x^_low is shared [α ≤ x^_low] = 1 ⊕ b ([`crate::fss::BitDpf::eval_prefix_parity`]).
//! With a pseudorandom bit pair s and the output mask r_d = s ⊕ msb(r):
//!   [d^]_b = P0·msb(x^) ⊕ [α ≤ x^_low]_b ⊕ s_b.
//! The key has n − 8 tree levels (a leaf block covers 7 bits) and needs no value words: about
//! 16(n − 8) bytes (310 at n = 26, where the DCF it replaced took 435) and 2(n − 8) + 1 AES to
//! evaluate (37 instead of 50). Reduce a wire to the smallest width that holds its values first.

use super::channel::{Channel, KeySink, KeySource};
use super::kernels::Kernels;
use super::roles::{DealerSide, ServerSide};
use super::tensor::Tensor;
use crate::Error;
use crate::fss::{BitDpfCorrections, BitDpfKeys, Corrections};
use crate::ring::BitWidth;
use alloc::vec;
use alloc::vec::Vec;

const BIT: BitWidth = BitDpfCorrections::OUT_BITS;

/// The DPF input width for an n-bit comparison.
fn low_bits(x: &Tensor) -> Result<BitWidth, Error> {
    let n = x.width().bits();
    if n < 2 {
        return Err(Error::ShapeMismatch("DReLU needs at least 2 input bits"));
    }
    BitWidth::new(n - 1)
}

/// DPF key bytes per element for an n-bit DReLU (the shared corrections).
pub fn drelu_key_bytes(n: BitWidth) -> usize {
    match BitWidth::new(n.bits().saturating_sub(1)) {
        Ok(low) => BitDpfCorrections::encoded_len(low, BIT),
        Err(_) => 0,
    }
}

pub(super) fn deal<S: KeySink>(d: &mut DealerSide<S>, x: &Tensor) -> Result<Tensor, Error> {
    let low = low_bits(x)?;
    let alphas: Vec<u64> = x.data().iter().map(|&r| low.reduce(r)).collect();
    // P1's bit at α (the lookup gate's secret sign) plays no part in a comparison.
    d.bit_dpf_keys(low, &alphas)?;
    Ok(deal_output(d, x))
}

/// The output wire's mask r_d = s ⊕ msb(r), s a pseudorandom bit pair (after the DPF keys).
pub(super) fn deal_output<S: KeySink>(d: &mut DealerSide<S>, x: &Tensor) -> Tensor {
    let w = x.width();
    let s = d.pair(x.len(), BIT);
    let rd = s
        .iter()
        .zip(x.data())
        .map(|(&s, &r)| s ^ w.msb(r) as u64)
        .collect();
    Tensor::from_parts(x.shape(), BIT, rd)
}

/// This server's share of the masked bit, P0·msb(x^) ⊕ [α ≤ x^_low]_b ⊕ s_b, from its prefix
/// parities (consumes s, as [`deal_output`] deals it).
pub(super) fn masked_bit_shares<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    at_most: &[u64],
) -> Vec<u64> {
    let w = x.width();
    let s = srv.pair(x.len(), BIT);
    let p0 = srv.is_p0();
    (0..x.len())
        .map(|i| {
            let public = if p0 { w.msb(x.data()[i]) as u64 } else { 0 };
            public ^ at_most[i] ^ s[i]
        })
        .collect()
}

pub(super) async fn eval<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
) -> Result<Tensor, Error> {
    let low = low_bits(x)?;
    let xs: Vec<u64> = x.data().iter().map(|&v| low.reduce(v)).collect();
    let mut at_most = vec![0u64; x.len()];
    srv.with_fss_keys::<BitDpfKeys>(x.len(), low, BIT, |kernels, keys, range| {
        kernels.dpf_prefix_parity(keys, &xs[range.clone()], &mut at_most[range])
    })
    .await?;
    let mine = masked_bit_shares(srv, x, &at_most);
    let opened = srv.open(&mine, BIT).await?;
    Ok(Tensor::from_parts(x.shape(), BIT, opened))
}
