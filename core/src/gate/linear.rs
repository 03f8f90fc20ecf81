//! Linear layers with secret weights, and the gates that end a wire: output (to the client)
//! and reveal (to both servers).
//!
//! Weights are shared once at deployment: P1's share is the expansion of a seed, P0's share is
//! W minus it (with W^ = W + R_W public and R_W = −(P1's share), this is the design's
//! "P0 precomputes W^ − [R_W]_0"). The dealer keeps W. Per query, y = xW + b costs one local
//! matmul per server and one opening:
//!
//!   [y^]_b = x^ · W_b + bias_b + s_b,   r_y = x-mask · W + (s_0 + s_1),
//!
//! where s_b comes from server b's seed stream, so the dealer sends nothing for it. All of it
//! runs in the input's ring Z_2^w: a layer whose output fits in fewer than 64 bits (before its
//! truncation) takes its input reduced to them, opens fewer bytes, and may use a cheaper
//! product ([`Kernels::matmul_reduced`]).

use super::channel::{Channel, KeySink, KeySource, pack, packed_len, unpack};
use super::kernels::Kernels;
use super::roles::{DealerSide, ServerSide};
use super::tensor::Tensor;
use crate::Error;
use crate::prg::{AesCtr, Domain, Seed};
use crate::ring::{BitWidth, matmul};
use crate::share::Party;
use alloc::vec;
use alloc::vec::Vec;

/// The dealer's copy of a linear layer: the plaintext weights (k×n), needed to move the
/// input mask through the layer.
#[derive(Clone, Debug)]
pub struct DealerWeights {
    k: usize,
    n: usize,
    w: Vec<u64>,
}

/// A server's share of a linear layer: weights (k×n) and bias (n), additively shared.
#[derive(Clone, Debug)]
pub struct ServerWeights {
    k: usize,
    n: usize,
    w: Vec<u64>,
    bias: Vec<u64>,
}

impl ServerWeights {
    /// A server's share from stored parts (k×n weights, n bias), checking the lengths.
    pub fn from_parts(k: usize, n: usize, w: Vec<u64>, bias: Vec<u64>) -> Result<Self, Error> {
        check_layer_lengths(k, n, w.len(), bias.len())?;
        Ok(ServerWeights { k, n, w, bias })
    }

    /// The weight share (k×n, row-major) and bias share (n).
    pub fn parts(&self) -> (&[u64], &[u64]) {
        (&self.w, &self.bias)
    }

    /// Input features k.
    pub fn inputs(&self) -> usize {
        self.k
    }
    /// Output features n.
    pub fn outputs(&self) -> usize {
        self.n
    }
}

impl DealerWeights {
    /// The dealer's copy from stored plaintext weights (k×n, row-major), checking the length.
    pub fn from_parts(k: usize, n: usize, w: Vec<u64>) -> Result<Self, Error> {
        check_layer_lengths(k, n, w.len(), n)?;
        Ok(DealerWeights { k, n, w })
    }

    /// The plaintext weights (k×n, row-major).
    pub fn weights(&self) -> &[u64] {
        &self.w
    }

    /// Input features k.
    pub fn inputs(&self) -> usize {
        self.k
    }
    /// Output features n.
    pub fn outputs(&self) -> usize {
        self.n
    }
}

fn check_layer_lengths(k: usize, n: usize, w: usize, bias: usize) -> Result<(), Error> {
    let expected = k
        .checked_mul(n)
        .ok_or(Error::ShapeMismatch("layer size overflows"))?;
    if w != expected {
        return Err(Error::LengthMismatch { expected, got: w });
    }
    if bias != n {
        return Err(Error::LengthMismatch {
            expected: n,
            got: bias,
        });
    }
    Ok(())
}

/// Shares a layer's weights `w` (k×n, row-major, ring elements) and `bias` (n) for deployment:
/// P1's share comes from `seed` (all P1 needs), P0's is the rest. Returns the dealer's copy and
/// the two servers' shares.
pub fn share_weights(
    w: &[u64],
    bias: &[u64],
    k: usize,
    n: usize,
    seed: &Seed,
) -> Result<(DealerWeights, ServerWeights, ServerWeights), Error> {
    check_layer_lengths(k, n, w.len(), bias.len())?;
    let p1 = server_weights_from_seed(seed, k, n);
    let p0 = ServerWeights {
        k,
        n,
        w: w.iter()
            .zip(&p1.w)
            .map(|(&a, &b)| a.wrapping_sub(b))
            .collect(),
        bias: bias
            .iter()
            .zip(&p1.bias)
            .map(|(&a, &b)| a.wrapping_sub(b))
            .collect(),
    };
    let dealer = DealerWeights {
        k,
        n,
        w: w.to_vec(),
    };
    Ok((dealer, p0, p1))
}

/// P1's share of a k×n layer, expanded from its deployment seed.
pub fn server_weights_from_seed(seed: &Seed, k: usize, n: usize) -> ServerWeights {
    let mut prg = AesCtr::new(seed, Domain::WEIGHTS);
    let mut w = vec![0u64; k * n];
    let mut bias = vec![0u64; n];
    prg.fill_u64(&mut w);
    prg.fill_u64(&mut bias);
    ServerWeights { k, n, w, bias }
}

/// Rows m of an input [.., m, k] for a layer with k inputs.
fn rows_for(x: &Tensor, k: usize) -> Result<usize, Error> {
    if x.last_dim() != k {
        return Err(Error::ShapeMismatch(
            "linear layer input's last axis must equal the layer's inputs",
        ));
    }
    Ok(x.len() / k.max(1))
}

fn out_shape(x: &Tensor, n: usize) -> Vec<usize> {
    let mut s = x.shape().to_vec();
    if let Some(l) = s.last_mut() {
        *l = n;
    }
    s
}

pub(super) fn deal_linear<S: KeySink>(
    d: &mut DealerSide<S>,
    x: &Tensor,
    w: &DealerWeights,
) -> Result<Tensor, Error> {
    let m = rows_for(x, w.k)?;
    let ring = x.width();
    let mut r = vec![0u64; m * w.n];
    matmul(x.data(), &w.w, m, w.k, w.n, &mut r);
    let s = d.pair(m * w.n, ring);
    r.iter_mut()
        .zip(&s)
        .for_each(|(a, &b)| *a = ring.add(*a, b));
    Ok(Tensor::from_parts(&out_shape(x, w.n), ring, r))
}

pub(super) async fn eval_linear<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    w: &ServerWeights,
) -> Result<Tensor, Error> {
    let m = rows_for(x, w.k)?;
    let ring = x.width();
    let mut y = vec![0u64; m * w.n];
    srv.kernels()
        .matmul_reduced(x.data(), &w.w, (1, m, w.k, w.n), ring, &mut y)?;
    let s = srv.pair(m * w.n, ring);
    for (i, v) in y.iter_mut().enumerate() {
        *v = ring.add(ring.add(*v, w.bias[i % w.n]), s[i]);
    }
    let opened = srv.open(&y, ring).await?;
    Ok(Tensor::from_parts(&out_shape(x, w.n), ring, opened))
}

// Element-wise affine map with secret per-feature weights: `w` is a layer with one input
// (k = 1) whose n weights γ and biases β act on the last axis, y = x ⊙ γ + β. Key-free like
// the linear layer: [y^]_b = x^ ⊙ γ_b + β_b + s_b and r_y = r_x ⊙ γ + (s_0 + s_1).
fn affine_rows(x: &Tensor, n: usize, k: usize) -> Result<(), Error> {
    if k != 1 || x.last_dim() != n || x.width() != BitWidth::FULL {
        return Err(Error::ShapeMismatch(
            "affine needs a 64-bit input whose last axis equals a one-input layer's outputs",
        ));
    }
    Ok(())
}

pub(super) fn deal_affine<S: KeySink>(
    d: &mut DealerSide<S>,
    x: &Tensor,
    w: &DealerWeights,
) -> Result<Tensor, Error> {
    affine_rows(x, w.n, w.k)?;
    let s = d.pair(x.len(), BitWidth::FULL);
    let r = x
        .data()
        .iter()
        .zip(&s)
        .enumerate()
        .map(|(i, (&r, &s))| r.wrapping_mul(w.w[i % w.n]).wrapping_add(s))
        .collect();
    Ok(Tensor::from_parts(x.shape(), BitWidth::FULL, r))
}

pub(super) async fn eval_affine<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    w: &ServerWeights,
) -> Result<Tensor, Error> {
    affine_rows(x, w.n, w.k)?;
    let s = srv.pair(x.len(), BitWidth::FULL);
    let y: Vec<u64> = x
        .data()
        .iter()
        .zip(&s)
        .enumerate()
        .map(|(i, (&v, &s))| {
            v.wrapping_mul(w.w[i % w.n])
                .wrapping_add(w.bias[i % w.n])
                .wrapping_add(s)
        })
        .collect();
    let opened = srv.open(&y, BitWidth::FULL).await?;
    Ok(Tensor::from_parts(x.shape(), BitWidth::FULL, opened))
}

/// Output: the dealer shares the wire's mask; each server sends the client
/// (x^ if P0) − [r]_b, which the client adds up. No P0–P1 round.
pub(super) fn deal_output<S: KeySink>(d: &mut DealerSide<S>, x: &Tensor) {
    d.share(x.data(), x.width());
}

pub(super) async fn eval_output<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
) -> Result<Vec<u64>, Error> {
    let w = x.width();
    let r = srv.share(x.len(), w).await?;
    Ok(match srv.party() {
        Party::P0 => x
            .data()
            .iter()
            .zip(&r)
            .map(|(&v, &m)| w.sub(v, m))
            .collect(),
        Party::P1 => r.iter().map(|&m| w.neg(m)).collect(),
    })
}

/// The dealer sends its mask to both servers: they learn the value, it learns nothing.
pub(super) fn deal_reveal<S: KeySink>(d: &mut DealerSide<S>, x: &Tensor) -> Tensor {
    d.send_to_both(&pack(x.data(), x.width()));
    Tensor::zeros(x.shape(), x.width())
}

pub(super) async fn eval_reveal<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
) -> Result<Tensor, Error> {
    let w = x.width();
    let mut bytes = vec![0u8; packed_len(x.len(), w)];
    srv.read_shared(&mut bytes).await?;
    let r = unpack(&bytes, x.len(), w)?;
    let values = x
        .data()
        .iter()
        .zip(&r)
        .map(|(&v, &m)| w.sub(v, m))
        .collect();
    Tensor::new(x.shape(), w, values)
}
