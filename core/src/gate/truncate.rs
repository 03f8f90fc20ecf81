//! Truncation by f bits (fixed-point rescaling) with the known-MSB trick: exact up to one unit
//! in the last place, and never the catastrophic wrap of local share truncation. The same gate
//! can widen the ring, so that a value computed in a narrow ring continues in a wide one.
//!
//! For a signed x in Z_2^l with |x| < 2^(l−2), z = x + 2^(l−2) lies in [0, 2^(l−1)). With
//! z^ = z + r, the wrap w = [z + r ≥ 2^l] equals msb(r) ∧ ¬msb(z^). Hence, over the integers,
//!   z >> f ∈ { (z^ >> f) − (r >> f) + w·2^(l−f) − c : c ∈ {0, 1} }
//! and x >> f = (z >> f) − 2^(l−2−f). The result lives in Z_2^L for an output width
//! L > l − f (L = l keeps the ring, L > l widens it). The dealer shares msb(r) in Z_2^(L−l+f)
//! (which suffices after the multiplication by 2^(l−f)) and a pseudorandom pair
//! s = r_y − (r >> f) in Z_2^L, so
//!   [y^]_b = P0·((z^ >> f) − 2^(l−2−f)) + (1 − msb(z^))·[msb r]_b·2^(l−f) + s_b  (mod 2^L).
//! The result is ⌊x / 2^f⌋ or one more. For L ≤ l − f the wrap term vanishes and no gate is
//! needed: that is the local [`Tensor::shift_down`].

use super::channel::{Channel, KeySink, KeySource};
use super::kernels::Kernels;
use super::later::Later;
use super::roles::{DealerSide, ServerSide};
use super::tensor::Tensor;
use crate::Error;
use crate::ring::BitWidth;
use alloc::vec::Vec;

/// The width of the shared msb(r), after checking the gate's bounds.
fn check(x: &Tensor, f: u32, out: BitWidth) -> Result<BitWidth, Error> {
    let l = x.width().bits();
    if f + 2 >= l {
        return Err(Error::ShapeMismatch(
            "truncation needs f < width − 2 (inputs must satisfy |x| < 2^(width−2))",
        ));
    }
    if out.bits() + f <= l {
        return Err(Error::ShapeMismatch(
            "truncation needs an output wider than width − f (narrower is the local shift_down)",
        ));
    }
    BitWidth::new(out.bits() + f - l)
}

pub(super) fn deal<S: KeySink>(
    d: &mut DealerSide<S>,
    x: &Tensor,
    f: u32,
    out: BitWidth,
) -> Result<Tensor, Error> {
    let msb_width = check(x, f, out)?;
    let w = x.width();
    let msbs: Vec<u64> = x.data().iter().map(|&r| w.msb(r) as u64).collect();
    d.share(&msbs, msb_width);
    let s = d.pair(x.len(), out);
    let ry = s
        .iter()
        .zip(x.data())
        .map(|(&s, &r)| out.add(s, r >> f))
        .collect();
    Ok(Tensor::from_parts(x.shape(), out, ry))
}

pub(super) async fn eval<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    f: u32,
    out: BitWidth,
) -> Result<Tensor, Error> {
    let mine = shares(srv, x, f, out).await?;
    let opened = srv.open(&mine, out).await?;
    Ok(Tensor::from_parts(x.shape(), out, opened))
}

pub(super) fn deal_later<S: KeySink>(
    d: &mut DealerSide<S>,
    x: &Tensor,
    f: u32,
    out: BitWidth,
) -> Result<Later, Error> {
    Ok(Later::dealt(deal(d, x, f, out)?))
}

pub(super) async fn eval_later<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    f: u32,
    out: BitWidth,
) -> Result<Later, Error> {
    let mine = shares(srv, x, f, out).await?;
    Ok(Later::deferred(srv, mine, x.shape(), out))
}

/// This server's share of the masked result, from its keys (read here, in the dealer's order).
async fn shares<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    f: u32,
    out: BitWidth,
) -> Result<Vec<u64>, Error> {
    let msb_width = check(x, f, out)?;
    let w = x.width();
    let l = w.bits();
    let msb_r = srv.share(x.len(), msb_width).await?;
    let s = srv.pair(x.len(), out);
    let p0 = srv.is_p0();
    let shift = 1u64 << (l - 2);
    let mine: Vec<u64> = (0..x.len())
        .map(|i| {
            let z = w.add(x.data()[i], shift);
            let public = if p0 {
                (z >> f).wrapping_sub(shift >> f)
            } else {
                0
            };
            let wrap = if w.msb(z) { 0 } else { msb_r[i] << (l - f) };
            out.reduce(public.wrapping_add(wrap).wrapping_add(s[i]))
        })
        .collect();
    Ok(mine)
}
