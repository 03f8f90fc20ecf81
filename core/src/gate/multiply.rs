//! Products of two secret wires: element-wise, matrix (QK^T, PV), and a secret bit times a
//! secret value (the select behind ReLU and argmax). One opening each.
//!
//! With x^ = x + r_x and y^ = y + r_y public,
//!   x·y = x^·y^ − x^·r_y − r_x·y^ + r_x·r_y,
//! so the dealer shares r_x and r_y (P1 gets corrections) and a pseudorandom pair
//! s = r_x·r_y + r_z, which fixes the output mask r_z = s − r_x·r_y at no cost.
//!
//! For a bit d with 1-bit mask (d^ = d ⊕ r_d) and a value z: d = d^ + (1 − 2d^)·r_d, so
//!   d·z = d^·z^ − d^·r_z + (1 − 2d^)·(r_d·z^ − r_d·r_z),
//! and the dealer shares r_z, r_d and r_d·r_z in Z_2^l; the output mask is a free pair.
//!
//! A matrix product may carry a secret offset the servers hold in additive shares (the biases
//! of a layer with no inputs, e.g. MPNet's relative-attention bias): each server adds its share
//! to its share of the product before the opening, which then reveals x·y + offset + r_z. The
//! dealer deals exactly what the plain product needs.

use super::channel::{Channel, KeySink, KeySource};
use super::kernels::Kernels;
use super::linear::{DealerWeights, ServerWeights};
use super::roles::{DealerSide, ServerSide};
use super::tensor::Tensor;
use crate::Error;
use alloc::vec;
use alloc::vec::Vec;

fn check_elementwise(x: &Tensor, y: &Tensor) -> Result<(), Error> {
    if x.shape() != y.shape() || x.width() != y.width() {
        return Err(Error::ShapeMismatch(
            "element-wise product needs equal shapes and widths",
        ));
    }
    Ok(())
}

pub(super) fn deal_mul<S: KeySink>(
    d: &mut DealerSide<S>,
    x: &Tensor,
    y: &Tensor,
) -> Result<Tensor, Error> {
    check_elementwise(x, y)?;
    let w = x.width();
    d.share(x.data(), w);
    d.share(y.data(), w);
    let s = d.pair(x.len(), w);
    let rz = s
        .iter()
        .zip(x.data().iter().zip(y.data()))
        .map(|(&s, (&a, &b))| w.sub(s, a.wrapping_mul(b)))
        .collect();
    Ok(Tensor::from_parts(x.shape(), w, rz))
}

/// x ⊙ y + β, β the shift of the one-input layer `w`: the product's keys, nothing for β
/// (the servers hold it in shares).
pub(super) fn deal_mul_add_shift<S: KeySink>(
    d: &mut DealerSide<S>,
    x: &Tensor,
    y: &Tensor,
    w: &DealerWeights,
) -> Result<Tensor, Error> {
    check_shift(x, w.inputs(), w.outputs())?;
    deal_mul(d, x, y)
}

pub(super) async fn eval_mul_add_shift<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    y: &Tensor,
    w: &ServerWeights,
) -> Result<Tensor, Error> {
    check_shift(x, w.inputs(), w.outputs())?;
    let n = w.outputs();
    let mut mine = mul_shares(srv, x, y).await?;
    let width = x.width();
    for (i, v) in mine.iter_mut().enumerate() {
        *v = width.add(*v, w.parts().1[i % n]);
    }
    let opened = srv.open(&mine, width).await?;
    Ok(Tensor::from_parts(x.shape(), width, opened))
}

/// A shift β of a one-input layer added along x's last axis, in x's ring (the servers'
/// shares of β reduce to any).
fn check_shift(x: &Tensor, k: usize, n: usize) -> Result<(), Error> {
    if k != 1 || x.last_dim() != n {
        return Err(Error::ShapeMismatch(
            "a shift needs a product whose last axis equals a one-input layer's outputs",
        ));
    }
    Ok(())
}

pub(super) async fn eval_mul<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    y: &Tensor,
) -> Result<Tensor, Error> {
    let mine = mul_shares(srv, x, y).await?;
    let w = x.width();
    let opened = srv.open(&mine, w).await?;
    Ok(Tensor::from_parts(x.shape(), w, opened))
}

/// This server's shares of the masked product, from its keys.
async fn mul_shares<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    y: &Tensor,
) -> Result<Vec<u64>, Error> {
    check_elementwise(x, y)?;
    let w = x.width();
    let rx = srv.share(x.len(), w).await?;
    let ry = srv.share(y.len(), w).await?;
    let s = srv.pair(x.len(), w);
    let p0 = srv.is_p0() as u64;
    let mine: Vec<u64> = (0..x.len())
        .map(|i| {
            let (a, b) = (x.data()[i], y.data()[i]);
            (p0.wrapping_mul(a.wrapping_mul(b)))
                .wrapping_sub(a.wrapping_mul(ry[i]))
                .wrapping_sub(rx[i].wrapping_mul(b))
                .wrapping_add(s[i])
        })
        .map(|v| w.reduce(v))
        .collect();
    Ok(mine)
}

/// Batch, m, k, n of a batched product [.., m, k] · [.., k, n].
fn matmul_dims(x: &Tensor, y: &Tensor) -> Result<(usize, usize, usize, usize, Vec<usize>), Error> {
    let (xs, ys) = (x.shape(), y.shape());
    if xs.len() < 2 || xs.len() != ys.len() || xs[..xs.len() - 2] != ys[..ys.len() - 2] {
        return Err(Error::ShapeMismatch(
            "matmul needs [.., m, k] and [.., k, n] with equal batch axes",
        ));
    }
    let d = xs.len();
    let (m, k, n) = (xs[d - 2], xs[d - 1], ys[d - 1]);
    if ys[d - 2] != k || x.width() != y.width() {
        return Err(Error::ShapeMismatch(
            "matmul inner dimensions or widths differ",
        ));
    }
    let batch = xs[..d - 2].iter().product();
    let mut shape = xs.to_vec();
    shape[d - 1] = n;
    Ok((batch, m, k, n, shape))
}

pub(super) fn deal_matmul<S: KeySink>(
    d: &mut DealerSide<S>,
    x: &Tensor,
    y: &Tensor,
) -> Result<Tensor, Error> {
    let (batch, m, k, n, shape) = matmul_dims(x, y)?;
    let w = x.width();
    d.share(x.data(), w);
    d.share(y.data(), w);
    let mut rr = vec![0u64; batch * m * n];
    d.kernels()
        .matmul_reduced(x.data(), y.data(), (batch, m, k, n), w, &mut rr)?;
    let s = d.pair(batch * m * n, w);
    let rz = s.iter().zip(&rr).map(|(&s, &p)| w.sub(s, p)).collect();
    Ok(Tensor::from_parts(&shape, w, rz))
}

/// Checks an offset layer (k, n) and its index for a product of `len` elements: no inputs,
/// one index per element, every index below n.
pub(super) fn check_offset((k, n): (usize, usize), index: &[u32], len: usize) -> Result<(), Error> {
    if k != 0 {
        return Err(Error::ShapeMismatch(
            "a product's offset must be a layer with no inputs",
        ));
    }
    if index.len() != len {
        return Err(Error::LengthMismatch {
            expected: len,
            got: index.len(),
        });
    }
    if index.iter().any(|&i| i as usize >= n) {
        return Err(Error::ShapeMismatch(
            "a product's offset index is past the offset's values",
        ));
    }
    Ok(())
}

/// The product x·y opened; with `offset`, each server adds its share of the offset's bias
/// number `index[e]` to element e before the opening (no extra round or byte).
pub(super) async fn eval_matmul<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    y: &Tensor,
    offset: Option<(&ServerWeights, &[u32])>,
) -> Result<Tensor, Error> {
    let (batch, m, k, n, shape) = matmul_dims(x, y)?;
    if let Some((o, index)) = offset {
        check_offset((o.inputs(), o.outputs()), index, batch * m * n)?;
    }
    let w = x.width();
    let rx = srv.share(x.len(), w).await?;
    let ry = srv.share(y.len(), w).await?;
    let s = srv.pair(batch * m * n, w);
    let dims = (batch, m, k, n);
    let kern = srv.kernels();
    let product = |a: &[u64], b: &[u64]| -> Result<Vec<u64>, Error> {
        let mut out = vec![0u64; batch * m * n];
        kern.matmul_reduced(a, b, dims, w, &mut out)?;
        Ok(out)
    };
    let x_ry = product(x.data(), &ry)?;
    let rx_y = product(&rx, y.data())?;
    let xy = if srv.is_p0() {
        product(x.data(), y.data())?
    } else {
        vec![0u64; batch * m * n]
    };
    let share = |i: usize| match offset {
        Some((o, index)) => o.parts().1[index[i] as usize],
        None => 0,
    };
    let mine: Vec<u64> = (0..batch * m * n)
        .map(|i| {
            w.reduce(
                xy[i]
                    .wrapping_sub(x_ry[i])
                    .wrapping_sub(rx_y[i])
                    .wrapping_add(s[i])
                    .wrapping_add(share(i)),
            )
        })
        .collect();
    let opened = srv.open(&mine, w).await?;
    Ok(Tensor::from_parts(&shape, w, opened))
}

/// How many values each bit multiplies: z's shape is d's, or d's with one more axis.
fn bit_fanout(d: &Tensor, z: &Tensor) -> Result<usize, Error> {
    if d.width().bits() != 1 {
        return Err(Error::ShapeMismatch("the selector must be a 1-bit wire"));
    }
    let (ds, zs) = (d.shape(), z.shape());
    if zs == ds {
        Ok(1)
    } else if zs.len() == ds.len() + 1 && zs[..ds.len()] == *ds {
        Ok(zs[ds.len()])
    } else {
        Err(Error::ShapeMismatch(
            "the value must have the selector's shape, optionally with one more axis",
        ))
    }
}

pub(super) fn deal_mul_bit<S: KeySink>(
    dl: &mut DealerSide<S>,
    d: &Tensor,
    z: &Tensor,
) -> Result<Tensor, Error> {
    bit_fanout(d, z)?;
    let w = z.width();
    deal_bit_times_value(dl, d, z);
    let out = dl.pair(z.len(), w);
    Ok(Tensor::from_parts(z.shape(), w, out))
}

pub(super) async fn eval_mul_bit<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    d: &Tensor,
    z: &Tensor,
) -> Result<Tensor, Error> {
    bit_fanout(d, z)?;
    let w = z.width();
    let rz = srv.share(z.len(), w).await?;
    let rd = srv.share(d.len(), w).await?;
    let rdrz = srv.share(z.len(), w).await?;
    let s = srv.pair(z.len(), w);
    let mut mine = bit_times_value_shares(srv.is_p0(), d, z, [&rz, &rd, &rdrz]);
    for (v, &s) in mine.iter_mut().zip(&s) {
        *v = w.add(*v, s);
    }
    let opened = srv.open(&mine, w).await?;
    Ok(Tensor::from_parts(z.shape(), w, opened))
}

/// The dealer's shares of a bit × value product ([`deal_mul_bit`] without its output mask):
/// z's mask r_z, d's mask r_d in z's ring, and r_d·r_z. `d`, `z` are masks; z has d's shape
/// or one more axis (checked by the caller).
pub(super) fn deal_bit_times_value<S: KeySink>(dl: &mut DealerSide<S>, d: &Tensor, z: &Tensor) {
    let k = z.len() / d.len().max(1);
    let w = z.width();
    let rd = d.data();
    dl.share(z.data(), w);
    dl.share(rd, w);
    let rdrz: Vec<u64> = z
        .data()
        .iter()
        .enumerate()
        .map(|(i, &rz)| w.mul(rd[i / k], rz))
        .collect();
    dl.share(&rdrz, w);
}

/// This server's additive shares of d·z (no output mask) from the opened bit d^ and value
/// z^ and its shares `[r_z, r_d, r_d·r_z]` of [`deal_bit_times_value`]'s:
///   d·z = d^·z^ − d^·r_z + (1 − 2d^)·(r_d·z^ − r_d·r_z).
pub(super) fn bit_times_value_shares(
    p0: bool,
    d: &Tensor,
    z: &Tensor,
    [rz, rd, rdrz]: [&[u64]; 3],
) -> Vec<u64> {
    let k = z.len() / d.len().max(1);
    let w = z.width();
    let p0 = p0 as u64;
    (0..z.len())
        .map(|i| {
            let dh = d.data()[i / k];
            let zh = z.data()[i];
            // 1 − 2d^ as a ring element: 1 or −1.
            let sign = 1u64.wrapping_sub(dh << 1);
            let v = (p0.wrapping_mul(dh).wrapping_mul(zh))
                .wrapping_sub(dh.wrapping_mul(rz[i]))
                .wrapping_add(sign.wrapping_mul(zh.wrapping_mul(rd[i / k]).wrapping_sub(rdrz[i])));
            w.reduce(v)
        })
        .collect()
}
