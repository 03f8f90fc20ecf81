//! A comparison and a lookup in a table of bounded support, read off one one-bit DPF key:
//! [x ≥ 0] and T(x), where T is zero outside a window [−2^(w−1), 2^(w−1)) around 0. Two
//! rounds. GeLU needs exactly this (ReLU(x) − d(x), d vanishing beyond |x| ≥ 4), and it
//! replaces a sign comparison, a clip (comparison and product) and a lookup: one key instead of
//! three, two rounds instead of five.
//!
//! **Keys.** x^ = x + r in Z_2^n. As for DReLU ([`super::Protocol::drelu`]), the dealer makes a
//! one-bit DPF key pair on n − 1 bits for α = r mod 2^(n−1). For the table it also keeps
//! e = t_1^α (P1's bit at α) and sets s = 1 − 2e; it deals additive shares of s in Z_2^out
//! (P0's from its seed, out/8 bytes per element to P1) and two pseudorandom pairs m, c; the
//! output masks are r_d = s_d ⊕ msb(r) for the bit (s_d a pseudorandom bit pair) and
//! ρ = c + s·m for the table's value.
//!
//! **Online**, with x^_low = x^ mod 2^(n−1) and the window of positions x^_low − v,
//! v ∈ [−2^(w−1), 2^(w−1)):
//!   bit:   [d^]_b = P0·msb(x^) ⊕ [α ≤ x^_low]_b ⊕ s_{d,b}        (the comparison's parity);
//!   value: u_b = (−1)^b Σ_v t_b(x^_low − v) · T(v);
//!   round 1 opens d^ and v^ = Σ_b (u_b + m_b); round 2 opens y^ = Σ_b (v^·[s]_b + c_b).
//!
//! **Correctness.** The bit is DReLU's. For the value, the two parties' bits differ only at
//! position α, which lies in the window exactly when v = x^_low − α = x mod 2^(n−1) is in it;
//! then Σ_b u_b = s·T(x) (for |x| < 2^(n−2), where x mod 2^(n−1) read as signed is x), and
//! otherwise 0 = T(x). So v^ = s·T(x) + m and y^ = s²·T(x) + s·m + c = T(x) + ρ.
//!
//! **Privacy.** As the lookup gate's: the bit is masked by s_{d,1−b}, v^ by m_{1−b} and y^ by
//! c_{1−b}, all drawn from the other server's stream, so each opening is uniform given the rest
//! of a server's view. P1's share of s is s − [s]_0 with [s]_0 from P0's seed: uniform to P1.
//! Unlike the full-domain lookup, the servers cannot sum their bits over the whole domain to
//! obtain shares of s for free, hence the dealt shares.

use super::channel::{KeySink, KeySource};
use super::kernels::Kernels;
use super::later::Later;
use super::lookup::{self, LookupTable, Signed};
use super::roles::{DealerSide, ServerSide};
use super::tensor::Tensor;
use super::{Channel, compare, multiply};
use crate::Error;
use crate::fss::{BitDpfCorrections, BitDpfKeys, cond_neg};
use crate::ring::BitWidth;
use alloc::vec;
use alloc::vec::Vec;

const BIT: BitWidth = BitDpfCorrections::OUT_BITS;

/// A public table T over signed inputs that is zero outside [−2^(w−1), 2^(w−1)): 2^w entries,
/// entry k standing for v = k − 2^(w−1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowTable {
    window_bits: u32,
    out_width: BitWidth,
    entries: Vec<u64>,
}

impl WindowTable {
    /// The table of `f(v)` for v in [−2^(w−1), 2^(w−1)) (7 ≤ w ≤ 16), values reduced to
    /// Z_2^out.
    pub fn from_fn(
        window_bits: u32,
        out_width: BitWidth,
        f: impl Fn(i64) -> u64,
    ) -> Result<Self, Error> {
        if !(crate::fss::LEAF_BITS..=super::MAX_TABLE_BITS).contains(&window_bits) {
            return Err(Error::ShapeMismatch(
                "a window table needs between 7 and 16 window bits",
            ));
        }
        let half = 1i64 << (window_bits - 1);
        Ok(WindowTable {
            window_bits,
            out_width,
            entries: (-half..half).map(|v| out_width.reduce(f(v))).collect(),
        })
    }

    /// Window bits w.
    pub fn window_bits(&self) -> u32 {
        self.window_bits
    }

    /// Output width.
    pub fn out_width(&self) -> BitWidth {
        self.out_width
    }

    /// T(v): the entry inside the window, 0 outside.
    pub fn get(&self, v: i64) -> u64 {
        let half = 1i64 << (self.window_bits - 1);
        if (-half..half).contains(&v) {
            self.entries[(v + half) as usize]
        } else {
            0
        }
    }

    /// The DPF input width for an n-bit input, which must exceed the window by a bit.
    fn dpf_bits(&self, x: &Tensor) -> Result<BitWidth, Error> {
        let n = x.width().bits();
        if n < self.window_bits + 2 {
            return Err(Error::ShapeMismatch(
                "a window lookup's input needs at least two bits more than its window",
            ));
        }
        BitWidth::new(n - 1)
    }
}

pub(super) fn deal<S: KeySink>(
    d: &mut DealerSide<S>,
    x: &Tensor,
    t: &WindowTable,
) -> Result<(Tensor, Tensor), Error> {
    let out = t.out_width;
    let (signed, bit) = deal_keys(d, x, t)?;
    d.share(&signed.s, out);
    Ok((bit, Tensor::from_parts(x.shape(), out, signed.rho(out))))
}

pub(super) async fn eval<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    t: &WindowTable,
) -> Result<(Tensor, Tensor), Error> {
    let (bits, values, gate) = eval_first(srv, x, t).await?;
    let (bit, v) = srv.open_two((&bits, BIT), (&values, gate.out)).await?;
    let y = srv.open(&gate.second(&v), gate.out).await?;
    Ok(gate.finish(bit, y))
}

/// The window gate's DPF keys, its table's signs and pairs m, c, and the sign bit's output mask
/// (not yet the shares of s, which [`deal`] sends and [`deal_times_lookup`] replaces).
fn deal_keys<S: KeySink>(
    d: &mut DealerSide<S>,
    x: &Tensor,
    t: &WindowTable,
) -> Result<(Signed, Tensor), Error> {
    let low = t.dpf_bits(x)?;
    let out = t.out_width;
    let alphas: Vec<u64> = x.data().iter().map(|&r| low.reduce(r)).collect();
    let e = d.bit_dpf_keys(low, &alphas)?;
    let bit = compare::deal_output(d, x);
    let m = d.pair(x.len(), out);
    let c = d.pair(x.len(), out);
    let signed = Signed {
        s: lookup::signs_in(&e, out),
        m,
        c,
    };
    Ok((signed, bit))
}

/// Checks [`deal_times_lookup`]'s and [`eval_times_lookup`]'s operands: inputs of one shape,
/// tables of one output ring.
fn check_times_lookup(
    x: &Tensor,
    t: &WindowTable,
    y: &Tensor,
    u: &LookupTable,
) -> Result<(), Error> {
    if x.shape() != y.shape() || t.out_width != u.out_width() {
        return Err(Error::ShapeMismatch(
            "a window table times a lookup needs inputs of one shape and tables of one ring",
        ));
    }
    Ok(())
}

/// T(x)·U(y) for a window table T and a lookup table U: both gates' keys and pairs as they
/// deal them alone (the window's shares of its sign excepted), then shares of σ = s_T·s_U,
/// σ·m_T, σ·m_U and σ·m_T·m_U; the output mask is the window's pair c.
pub(super) fn deal_times_lookup<S: KeySink>(
    d: &mut DealerSide<S>,
    (x, t): (&Tensor, &WindowTable),
    (y, u): (&Tensor, &LookupTable),
) -> Result<Tensor, Error> {
    check_times_lookup(x, t, y, u)?;
    let out = t.out_width;
    let (window, _) = deal_keys(d, x, t)?;
    let lookup = lookup::deal_keys(d, y, u)?;
    let sigma = lookup::products(out, &window.s, &lookup.s);
    let sigma_mt = lookup::products(out, &sigma, &window.m);
    let sigma_mu = lookup::products(out, &sigma, &lookup.m);
    let sigma_mm = lookup::products(out, &sigma_mt, &lookup.m);
    for v in [&sigma, &sigma_mt, &sigma_mu, &sigma_mm] {
        d.share(v, out);
    }
    Ok(Tensor::from_parts(x.shape(), out, window.c))
}

/// T(x)·U(y) in two rounds, the product of the two tables' values without an opening of its
/// own: round 1 opens v^ = s_T·T(x) + m_T and w^ = s_U·U(y) + m_U (the sign bit is not
/// opened), and since s² = 1,
///   T(x)·U(y) = σ·(v^ − m_T)·(w^ − m_U) = σ·v^·w^ − w^·σm_T − v^·σm_U + σm_T·m_U,
/// linear in the dealt shares; round 2 opens it plus c, masked by the other server's share
/// of c as the window's second opening is. Each server's view is two uniform openings, then
/// a third.
pub(super) async fn eval_times_lookup<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    (x, t): (&Tensor, &WindowTable),
    (y, u): (&Tensor, &LookupTable),
) -> Result<Tensor, Error> {
    check_times_lookup(x, t, y, u)?;
    let out = t.out_width;
    let (_, values, c) = eval_unsigned(srv, x, t).await?;
    let (first, _) = lookup::eval_first(srv, y, u).await?;
    let sigma = srv.share(x.len(), out).await?;
    let sigma_mt = srv.share(x.len(), out).await?;
    let sigma_mu = srv.share(x.len(), out).await?;
    let sigma_mm = srv.share(x.len(), out).await?;
    let [v, w] = srv.open_many([(&values, out), (&first, out)]).await?;
    let mine: Vec<u64> = (0..x.len())
        .map(|i| {
            out.reduce(
                v[i].wrapping_mul(w[i])
                    .wrapping_mul(sigma[i])
                    .wrapping_sub(w[i].wrapping_mul(sigma_mt[i]))
                    .wrapping_sub(v[i].wrapping_mul(sigma_mu[i]))
                    .wrapping_add(sigma_mm[i])
                    .wrapping_add(c[i]),
            )
        })
        .collect();
    let z = srv.open(&mine, out).await?;
    Ok(Tensor::from_parts(x.shape(), out, z))
}

/// Checks [`deal_select`]'s and [`eval_select`]'s operands: z of x's shape, in T's ring.
fn check_select(x: &Tensor, t: &WindowTable, z: &Later) -> Result<(), Error> {
    let (shape, width) = z.shape_width();
    if shape != x.shape() || width != t.out_width {
        return Err(Error::ShapeMismatch(
            "the selected value needs the compared wire's shape and the table's ring",
        ));
    }
    Ok(())
}

/// [`deal`] and the shares of the sign × z product ([`multiply::deal_bit_times_value`]); the
/// output mask is the table's negated, −ρ.
pub(super) fn deal_select<S: KeySink>(
    d: &mut DealerSide<S>,
    x: &Tensor,
    t: &WindowTable,
    z: Later,
) -> Result<Tensor, Error> {
    check_select(x, t, &z)?;
    let z = z.dealer_wire()?;
    let (bit, rho) = deal(d, x, t)?;
    multiply::deal_bit_times_value(d, &bit, &z);
    Ok(rho.neg())
}

/// [x ≥ 0]·z − T(x) in two rounds: round 1 opens the sign bit d^ and s·T(x) + m (and, with
/// them, z's deferred opening); round 2 opens this server's share of d·z (from d^, z^ and
/// the dealt [r_z], [r_d], [r_d·r_z]) less its v^·[s]_b + c_b. The sum is d·z − T(x) − ρ,
/// masked by c_{1−b} as the table value alone is, so the view is the window gate's. (The
/// table is subtracted, not added, so that a correction table such as ReLU − GeLU keeps
/// small non-negative entries, which the kernels sum on 32 bits.)
pub(super) async fn eval_select<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    t: &WindowTable,
    z: Later,
) -> Result<Tensor, Error> {
    check_select(x, t, &z)?;
    let (bits, values, gate) = eval_first(srv, x, t).await?;
    let out = gate.out;
    let rz = srv.share(x.len(), out).await?;
    let rd = srv.share(x.len(), out).await?;
    let rdrz = srv.share(x.len(), out).await?;
    let (bit, v) = srv.open_two((&bits, BIT), (&values, out)).await?;
    let z = z.server_wire(srv).await?;
    let bit = Tensor::from_parts(x.shape(), BIT, bit);
    let product = multiply::bit_times_value_shares(srv.is_p0(), &bit, &z, [&rz, &rd, &rdrz]);
    let mine: Vec<u64> = gate
        .second(&v)
        .iter()
        .zip(&product)
        .map(|(&a, &b)| out.sub(b, a))
        .collect();
    let y = srv.open(&mine, out).await?;
    Ok(Tensor::from_parts(x.shape(), out, y))
}

/// A server's sign-and-window gate between its two openings.
pub(super) struct Opened {
    shape: Vec<usize>,
    /// The table's output ring.
    pub(super) out: BitWidth,
    s: Vec<u64>,
    c: Vec<u64>,
}

/// The gate up to its first opening: reads its keys and streams, and returns this server's
/// shares of the masked sign bits (1 bit each) and of the masked signed table values, with
/// what the second opening needs.
pub(super) async fn eval_first<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    t: &WindowTable,
) -> Result<(Vec<u64>, Vec<u64>, Opened), Error> {
    let out = t.out_width;
    let (bits, values, c) = eval_unsigned(srv, x, t).await?;
    let s = srv.share(x.len(), out).await?;
    let gate = Opened {
        shape: x.shape().to_vec(),
        out,
        s,
        c,
    };
    Ok((bits, values, gate))
}

/// The gate's keys and pairs up to its shares of s: this server's shares of the masked sign
/// bits and of the masked signed table values, and its share of c.
async fn eval_unsigned<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    t: &WindowTable,
) -> Result<(Vec<u64>, Vec<u64>, Vec<u64>), Error> {
    let low = t.dpf_bits(x)?;
    let out = t.out_width;
    let xs: Vec<u64> = x.data().iter().map(|&v| low.reduce(v)).collect();
    let (mut at_most, mut dot) = (vec![0u64; x.len()], vec![0u64; x.len()]);
    srv.with_fss_keys::<BitDpfKeys>(x.len(), low, BIT, |kernels, keys, r| {
        let (parity, dot) = (&mut at_most[r.clone()], &mut dot[r.clone()]);
        kernels.dpf_sign_window(keys, &xs[r], &t.entries, out, parity, dot)
    })
    .await?;
    let bits = compare::masked_bit_shares(srv, x, &at_most);
    let m = srv.pair(x.len(), out);
    let c = srv.pair(x.len(), out);
    let p0 = srv.is_p0();
    let values = dot
        .iter()
        .zip(&m)
        .map(|(&u, &m)| out.add(cond_neg(u, !p0), m))
        .collect();
    Ok((bits, values, c))
}

impl Opened {
    /// This server's share to open second, v^·[s]_b + c_b, from the opened values v^.
    pub(super) fn second(&self, v: &[u64]) -> Vec<u64> {
        let out = self.out;
        v.iter()
            .zip(self.s.iter().zip(&self.c))
            .map(|(&v, (&s, &c))| out.add(out.mul(v, s), c))
            .collect()
    }

    /// The sign bit and table value wires from the opened bits and second opening.
    pub(super) fn finish(self, bit: Vec<u64>, y: Vec<u64>) -> (Tensor, Tensor) {
        (
            Tensor::from_parts(&self.shape, BIT, bit),
            Tensor::from_parts(&self.shape, self.out, y),
        )
    }
}
