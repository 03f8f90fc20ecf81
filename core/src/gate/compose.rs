//! Gates composed from the primitive ones, written once for every role: ReLU, select,
//! comparison, max and argmax (a tournament tree that carries a secret one-hot vector).

use super::{Protocol, Tensor};
use crate::Error;
use crate::ring::BitWidth;
use alloc::vec::Vec;

/// ReLU(x) = x·[x ≥ 0]; the sign is taken on x reduced to `cmp_bits` (which must hold x as a
/// signed value). Two rounds: DReLU (1 bit) and a bit × value product.
pub async fn relu<P: Protocol>(p: &mut P, x: &Tensor, cmp_bits: BitWidth) -> Result<Tensor, Error> {
    let d = p.drelu(&x.reduce(cmp_bits)?).await?;
    p.mul_bit(&d, x).await
}

/// d ? a : b for a secret bit d = b + d·(a − b); `a` and `b` have d's shape or one more axis.
pub async fn select<P: Protocol>(
    p: &mut P,
    d: &Tensor,
    a: &Tensor,
    b: &Tensor,
) -> Result<Tensor, Error> {
    let prod = p.mul_bit(d, &a.sub(b)?).await?;
    prod.add(b)
}

/// `[x < y]` as a 1-bit wire: 1 ⊕ DReLU(x − y), with x − y reduced to `cmp_bits`.
pub async fn less_than<P: Protocol>(
    p: &mut P,
    x: &Tensor,
    y: &Tensor,
    cmp_bits: BitWidth,
) -> Result<Tensor, Error> {
    let ge = p.drelu(&x.sub(y)?.reduce(cmp_bits)?).await?;
    p.add_public(&ge, &[1])
}

/// The maximum along the last axis: 2·⌈log2 K⌉ rounds.
pub async fn max<P: Protocol>(p: &mut P, x: &Tensor, cmp_bits: BitWidth) -> Result<Tensor, Error> {
    Ok(tournament(p, x, cmp_bits, 0, false).await?.0)
}

/// An element of each row within ⌈log2 K⌉·2^drop of the row's maximum (never above it), in
/// 2·⌈log2 K⌉ rounds: each comparison reads the difference shifted down by `drop` bits
/// ([`Tensor::shift_down`]) and reduced to `cmp_bits` ≤ width − drop, so its one-bit DPF is
/// `drop` levels shorter and may prefer a value at most 2^drop below the other. Enough where
/// any value near the maximum serves, as for the shift that keeps a softmax's exponentials
/// small.
pub async fn max_within<P: Protocol>(
    p: &mut P,
    x: &Tensor,
    cmp_bits: BitWidth,
    drop: u32,
) -> Result<Tensor, Error> {
    Ok(tournament(p, x, cmp_bits, drop, false).await?.0)
}

/// The maximum along the last axis and the position of the first maximum as a secret one-hot
/// vector (same shape as `x`): 2·⌈log2 K⌉ rounds. Ties go to the lower index.
pub async fn argmax<P: Protocol>(
    p: &mut P,
    x: &Tensor,
    cmp_bits: BitWidth,
) -> Result<(Tensor, Tensor), Error> {
    let (m, onehot) = tournament(p, x, cmp_bits, 0, true).await?;
    Ok((m, onehot.reshape(x.shape())?))
}

/// Runs the tournament over candidates laid out as [rows, c, e]: entry 0 of each candidate is
/// its value, entries 1.. its one-hot vector (when carried). Differences are shifted down by
/// `drop` bits before they are compared (0: exact).
async fn tournament<P: Protocol>(
    p: &mut P,
    x: &Tensor,
    cmp_bits: BitWidth,
    drop: u32,
    carry_onehot: bool,
) -> Result<(Tensor, Tensor), Error> {
    let k = x.last_dim();
    if k == 0 || x.shape().is_empty() {
        return Err(Error::ShapeMismatch("max over an empty last axis"));
    }
    let rows = x.len() / k;
    let lead = x.shape()[..x.shape().len() - 1].to_vec();
    let e = if carry_onehot { 1 + k } else { 1 };
    // Candidates [rows, k, e]: value followed by its public one-hot e_i.
    let mut cand = x.reshape(&[rows, k, 1])?;
    if carry_onehot {
        let eye: Vec<u64> = (0..rows * k * k)
            .map(|i| ((i / k) % k == i % k) as u64)
            .collect();
        let onehots = p.public(&[rows, k, k], x.width(), &eye)?;
        cand = cand.concat_last(&onehots)?;
    }
    let mut c = k;
    while c > 1 {
        let pairs = c / 2;
        let flat = cand.reshape(&[rows, c * e])?;
        let block = |start: usize| -> Vec<usize> {
            (0..pairs)
                .flat_map(|j| (start + 2 * j) * e..(start + 2 * j + 1) * e)
                .collect()
        };
        let left = flat.gather_last(&block(0))?.reshape(&[rows, pairs, e])?;
        let right = flat.gather_last(&block(1))?.reshape(&[rows, pairs, e])?;
        let values = |t: &Tensor| -> Result<Tensor, Error> {
            let idx: Vec<usize> = (0..pairs).map(|j| j * e).collect();
            t.reshape(&[rows, pairs * e])?.gather_last(&idx)
        };
        let diff = values(&left)?.sub(&values(&right)?)?;
        let diff = if drop > 0 {
            diff.shift_down(drop)?
        } else {
            diff
        };
        let d = p.drelu(&diff.reduce(cmp_bits)?).await?;
        let winners = select(p, &d, &left, &right).await?;
        cand = if c % 2 == 1 {
            let last: Vec<usize> = ((c - 1) * e..c * e).collect();
            let odd = flat.gather_last(&last)?;
            winners
                .reshape(&[rows, pairs * e])?
                .concat_last(&odd)?
                .reshape(&[rows, pairs + 1, e])?
        } else {
            winners
        };
        c = pairs + c % 2;
    }
    let flat = cand.reshape(&[rows, e])?;
    let max = flat.gather_last(&[0])?.reshape(&lead)?;
    let onehot = if carry_onehot {
        flat.gather_last(&(1..e).collect::<Vec<_>>())?
    } else {
        flat
    };
    Ok((max, onehot))
}
