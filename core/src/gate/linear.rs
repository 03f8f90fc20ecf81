//! Linear layers with secret weights, and the gates that end a wire: output (to the client)
//! and reveal (to both servers).
//!
//! The dealer never holds the model (a model-blind dealer, as in SIGMA). At deployment the
//! model provider draws a uniform mask R_W per weight matrix and gives
//! - both servers the masked weights W^ = W + R_W, and each server b a share [R_W]_b of the
//!   mask (P1's from a seed) and an additive share bias_b of the bias;
//! - the dealer R_W alone, which is independent of W.
//!
//! Per query, with r_x the input's mask and s_b a value from server b's seed stream (so the
//! output mask r_y = s_0 + s_1 costs no key bytes), server b opens
//!
//!   [y^]_b = x^ · M_b + bias_b + s_b + T_b,   M_b = δ_b0·W^ − [R_W]_b (so M_0 + M_1 = W),
//!   T_b = [r_x · R_W]_b − [r_x]_b · W^,
//!
//! and the sum is x·W + b + r_y. T_b needs the dealer's shares of r_x and r_x·R_W, which
//! travel on the linear stream ([`KeySink::to_linear`]): a server holding the session's keys
//! computes every T_b before the online phase ([`ServerSide::precompute_linear`]), so online
//! a layer costs one local matmul per server and one opening; a server that streams its keys
//! computes T_b when the layer runs. All of it runs in the input's ring Z_2^w: a layer whose
//! output fits in fewer than 64 bits (before its truncation) takes its input reduced to them,
//! opens fewer bytes, and may use a cheaper product ([`Kernels::matmul_reduced`]).

use super::channel::{Channel, KeySink, KeySource, pack, packed_len, unpack};
use super::kernels::Kernels;
use super::later::Later;
use super::roles::{DealerSide, ServerSide};
use super::tensor::Tensor;
use crate::Error;
use crate::prg::{AesCtr, Domain, Seed};
use crate::ring::BitWidth;
use crate::share::Party;
use alloc::vec;
use alloc::vec::Vec;

/// The dealer's part of a layer: the mask R_W (k×n) of its weights, uniformly random and so
/// independent of them. `id` is the layer's place in its model.
#[derive(Clone, Debug)]
pub struct DealerWeights {
    id: u32,
    k: usize,
    n: usize,
    mask: Vec<u64>,
}

/// A server's part of a layer (k×n weights, n biases): the masked weights W^ both servers
/// hold, the matrix M_b it multiplies online, and its bias share.
#[derive(Clone, Debug)]
pub struct ServerWeights {
    id: u32,
    k: usize,
    n: usize,
    online: Vec<u64>,
    masked: Vec<u64>,
    bias: Vec<u64>,
}

impl ServerWeights {
    /// A server's part of layer `id` from stored parts, checking the lengths: `online` is M_b
    /// and `masked` is W^ (k×n each, row-major), `bias` its bias share (n).
    pub fn from_parts(
        id: u32,
        (k, n): (usize, usize),
        online: Vec<u64>,
        masked: Vec<u64>,
        bias: Vec<u64>,
    ) -> Result<Self, Error> {
        check_layer_lengths(k, n, online.len(), bias.len())?;
        check_layer_lengths(k, n, masked.len(), n)?;
        Ok(ServerWeights {
            id,
            k,
            n,
            online,
            masked,
            bias,
        })
    }

    /// The matrix multiplied online, M_b (k×n, row-major), and the bias share (n).
    pub fn parts(&self) -> (&[u64], &[u64]) {
        (&self.online, &self.bias)
    }

    /// The masked weights W^ = W + R_W (k×n, row-major), the same at both servers.
    pub fn masked(&self) -> &[u64] {
        &self.masked
    }

    /// The layer's place in its model.
    pub fn id(&self) -> u32 {
        self.id
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
    /// The dealer's part of layer `id` from a stored weight mask (k×n, row-major).
    pub fn from_parts(id: u32, (k, n): (usize, usize), mask: Vec<u64>) -> Result<Self, Error> {
        check_layer_lengths(k, n, mask.len(), n)?;
        Ok(DealerWeights { id, k, n, mask })
    }

    /// The weight mask R_W (k×n, row-major).
    pub fn mask(&self) -> &[u64] {
        &self.mask
    }

    /// The layer's place in its model.
    pub fn id(&self) -> u32 {
        self.id
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

/// Deploys layer `id` (weights `w`, k×n row-major, and `bias`, n, as ring elements): draws
/// the weight mask R_W, P1's share of it and P1's bias share from `seed` (which must be
/// secret and fresh per deployment), and returns the dealer's part (R_W only) and the two
/// servers' parts. W itself is in none of them.
pub fn share_weights(
    id: u32,
    w: &[u64],
    bias: &[u64],
    (k, n): (usize, usize),
    seed: &Seed,
) -> Result<(DealerWeights, ServerWeights, ServerWeights), Error> {
    check_layer_lengths(k, n, w.len(), bias.len())?;
    let mut prg = AesCtr::new(seed, Domain::WEIGHTS);
    let mut mask = vec![0u64; k * n];
    let mut mask_p1 = vec![0u64; k * n];
    let mut bias_p1 = vec![0u64; n];
    prg.fill_u64(&mut mask);
    prg.fill_u64(&mut mask_p1);
    prg.fill_u64(&mut bias_p1);
    let masked: Vec<u64> = w
        .iter()
        .zip(&mask)
        .map(|(&a, &r)| a.wrapping_add(r))
        .collect();
    // M_0 = W^ − [R_W]_0 = W^ − (R_W − [R_W]_1), M_1 = −[R_W]_1.
    let online_p0 = masked
        .iter()
        .zip(&mask)
        .zip(&mask_p1)
        .map(|((&wh, &r), &r1)| wh.wrapping_sub(r).wrapping_add(r1))
        .collect();
    let online_p1 = mask_p1.iter().map(|&r1| r1.wrapping_neg()).collect();
    let bias_p0 = bias
        .iter()
        .zip(&bias_p1)
        .map(|(&b, &b1)| b.wrapping_sub(b1))
        .collect();
    let server = |online, bias| ServerWeights {
        id,
        k,
        n,
        online,
        masked: masked.clone(),
        bias,
    };
    let p0 = server(online_p0, bias_p0);
    let p1 = server(online_p1, bias_p1);
    Ok((DealerWeights { id, k, n, mask }, p0, p1))
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
    let mut masked_mask = vec![0u64; m * w.n];
    d.kernels()
        .matmul_reduced(x.data(), &w.mask, (1, m, w.k, w.n), ring, &mut masked_mask)?;
    let header = LinearHeader {
        layer: w.id,
        rows: m,
        width: ring,
    };
    d.linear_correlation(&header.encode()?, x.data(), &masked_mask, ring);
    let r_y = d.pair(m * w.n, ring);
    Ok(Tensor::from_parts(&out_shape(x, w.n), ring, r_y))
}

pub(super) async fn eval_linear<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    w: &ServerWeights,
) -> Result<Tensor, Error> {
    let m = rows_for(x, w.k)?;
    let ring = x.width();
    let expected = LinearHeader {
        layer: w.id,
        rows: m,
        width: ring,
    };
    let mut y = srv.linear_term(&expected, w).await?;
    let mut product = vec![0u64; m * w.n];
    srv.kernels()
        .matmul_reduced(x.data(), &w.online, (1, m, w.k, w.n), ring, &mut product)?;
    let s = srv.pair(m * w.n, ring);
    for (i, v) in y.iter_mut().enumerate() {
        *v = ring.add(ring.add(ring.add(*v, product[i]), w.bias[i % w.n]), s[i]);
    }
    let opened = srv.open(&y, ring).await?;
    Ok(Tensor::from_parts(&out_shape(x, w.n), ring, opened))
}

/// What the dealer writes ahead of one linear layer's correlations on the linear stream, so
/// that a server can compute the layer's offline term before it runs: which layer, how many
/// input rows and in which ring. A record with width 0 ends the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinearHeader {
    pub(crate) layer: u32,
    pub(crate) rows: usize,
    pub(crate) width: BitWidth,
}

/// Bytes of an encoded [`LinearHeader`]: layer (u32), rows (u32), width in bits (u8).
pub(crate) const LINEAR_HEADER_LEN: usize = 9;

/// Most input rows of one linear layer (bounds what a header can make a server allocate).
pub const MAX_LINEAR_ROWS: usize = 1 << 16;

/// The record that ends the linear stream.
pub(crate) const LINEAR_END: [u8; LINEAR_HEADER_LEN] = [0; LINEAR_HEADER_LEN];

impl LinearHeader {
    pub(crate) fn encode(&self) -> Result<[u8; LINEAR_HEADER_LEN], Error> {
        if self.rows > MAX_LINEAR_ROWS {
            return Err(Error::ShapeMismatch(
                "a linear layer has too many input rows",
            ));
        }
        let mut b = [0u8; LINEAR_HEADER_LEN];
        b[..4].copy_from_slice(&self.layer.to_le_bytes());
        b[4..8].copy_from_slice(&(self.rows as u32).to_le_bytes());
        b[8] = self.width.bits() as u8;
        Ok(b)
    }

    /// The header, or `None` for the end record.
    pub(crate) fn decode(b: &[u8; LINEAR_HEADER_LEN]) -> Result<Option<Self>, Error> {
        if b[8] == 0 {
            return if *b == LINEAR_END {
                Ok(None)
            } else {
                Err(Error::MalformedMessage(
                    "a malformed end of the linear stream",
                ))
            };
        }
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let rows = word(4) as usize;
        if rows > MAX_LINEAR_ROWS {
            return Err(Error::MalformedMessage(
                "a linear layer header with too many rows",
            ));
        }
        let width = BitWidth::new(u32::from(b[8]))
            .map_err(|_| Error::MalformedMessage("a linear layer header with a bad width"))?;
        Ok(Some(LinearHeader {
            layer: word(0),
            rows,
            width,
        }))
    }
}

/// This server's offline term of a linear layer, T_b = [r_x·R_W]_b − [r_x]_b·W^, from its
/// shares of the input mask (m×k) and of the masked product (m×n).
pub(crate) fn offline_term<X: Kernels>(
    kernels: &X,
    w: &ServerWeights,
    header: &LinearHeader,
    mask_share: &[u64],
    product_share: &[u64],
) -> Result<Vec<u64>, Error> {
    let (m, ring) = (header.rows, header.width);
    let mut t = vec![0u64; m * w.n];
    kernels.matmul_reduced(mask_share, &w.masked, (1, m, w.k, w.n), ring, &mut t)?;
    for (v, &p) in t.iter_mut().zip(product_share) {
        *v = ring.sub(p, *v);
    }
    Ok(t)
}

// Element-wise affine map with secret per-feature weights: `w` is a layer with one input
// (k = 1) whose n weights γ and biases β act on the last axis, y = x ⊙ γ + β. Model-blind as
// the linear layer, with the offline term computed inline (it is element-wise, so cheap):
// [y^]_b = x^ ⊙ M_b + β_b + s_b + [r_x ⊙ R_γ]_b − [r_x]_b ⊙ γ^, the two shares from the
// dealer's P1 stream.
// Any ring serves: every term reduces modulo 2^width.
fn affine_rows(x: &Tensor, n: usize, k: usize) -> Result<(), Error> {
    if k != 1 || x.last_dim() != n {
        return Err(Error::ShapeMismatch(
            "affine needs an input whose last axis equals a one-input layer's outputs",
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
    let ring = x.width();
    let masked_mask: Vec<u64> = x
        .data()
        .iter()
        .enumerate()
        .map(|(i, &r)| ring.mul(r, w.mask[i % w.n]))
        .collect();
    d.share(x.data(), ring);
    d.share(&masked_mask, ring);
    let r_y = d.pair(x.len(), ring);
    Ok(Tensor::from_parts(x.shape(), ring, r_y))
}

pub(super) async fn eval_affine<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    w: &ServerWeights,
) -> Result<Tensor, Error> {
    let y = affine_shares(srv, x, w, true).await?;
    let opened = srv.open(&y, x.width()).await?;
    Ok(Tensor::from_parts(x.shape(), x.width(), opened))
}

/// x ⊙ γ without the shift, its opening deferred ([`super::Protocol::scale_later`]); the
/// dealer deals it as [`deal_affine`].
pub(super) async fn eval_scale_later<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    w: &ServerWeights,
) -> Result<Later, Error> {
    let y = affine_shares(srv, x, w, false).await?;
    Ok(Later::deferred(srv, y, x.shape(), x.width()))
}

/// This server's shares of the masked x ⊙ γ, plus its share of β when `shift`.
async fn affine_shares<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    w: &ServerWeights,
    shift: bool,
) -> Result<Vec<u64>, Error> {
    affine_rows(x, w.n, w.k)?;
    let ring = x.width();
    let mask_share = srv.share(x.len(), ring).await?;
    let product_share = srv.share(x.len(), ring).await?;
    let s = srv.pair(x.len(), ring);
    let y: Vec<u64> = x
        .data()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let j = i % w.n;
            let bias = if shift { w.bias[j] } else { 0 };
            ring.reduce(
                v.wrapping_mul(w.online[j])
                    .wrapping_add(bias)
                    .wrapping_add(s[i])
                    .wrapping_add(product_share[i])
                    .wrapping_sub(mask_share[i].wrapping_mul(w.masked[j])),
            )
        })
        .collect();
    Ok(y)
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
