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
    let low = t.dpf_bits(x)?;
    let out = t.out_width;
    let alphas: Vec<u64> = x.data().iter().map(|&r| low.reduce(r)).collect();
    let e = d.bit_dpf_keys(low, &alphas)?;
    let bit = compare::deal_output(d, x);
    let m = d.pair(x.len(), out);
    let c = d.pair(x.len(), out);
    // s = 1 − 2e, multiplied without a branch on e (as in the lookup gate).
    let s: Vec<u64> = e
        .iter()
        .map(|&e| out.reduce(core::hint::black_box(1u64.wrapping_sub(2 * e as u64))))
        .collect();
    d.share(&s, out);
    let rho = s
        .iter()
        .zip(m.iter().zip(&c))
        .map(|(&s, (&m, &c))| out.add(c, out.mul(s, m)))
        .collect();
    Ok((bit, Tensor::from_parts(x.shape(), out, rho)))
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
/// output mask is the table's, ρ.
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
    Ok(rho)
}

/// [x ≥ 0]·z + T(x) in two rounds: round 1 opens the sign bit d^ and s·T(x) + m (and, with
/// them, z's deferred opening); round 2 opens this server's v^·[s]_b + c_b plus its share of
/// d·z from d^, z^ and the dealt [r_z], [r_d], [r_d·r_z]. The sum is T(x) + ρ + d·z, masked
/// by c_{1−b} as the table value alone is, so the view is the window gate's.
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
        .map(|(&a, &b)| out.add(a, b))
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
    let s = srv.share(x.len(), out).await?;
    let p0 = srv.is_p0();
    let values = dot
        .iter()
        .zip(&m)
        .map(|(&u, &m)| out.add(cond_neg(u, !p0), m))
        .collect();
    let gate = Opened {
        shape: x.shape().to_vec(),
        out,
        s,
        c,
    };
    Ok((bits, values, gate))
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

/// [`eval`] on `x` and a lookup of `y` in `u` side by side: each gate reads its keys and
/// streams in the order it does alone (the dealer deals them one after the other), and their
/// openings travel together, so the pair takes two rounds instead of four.
pub(super) async fn eval_with_lookup<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    (x, t): (&Tensor, &WindowTable),
    (y, u): (&Tensor, &super::lookup::LookupTable),
) -> Result<((Tensor, Tensor), Tensor), Error> {
    let (bits, values, window) = eval_first(srv, x, t).await?;
    let (first, lookup) = super::lookup::eval_first(srv, y, u).await?;
    let [bit, v, w] = srv
        .open_many([(&bits, BIT), (&values, window.out), (&first, lookup.out)])
        .await?;
    let [a, b] = srv
        .open_many([
            (&window.second(&v), window.out),
            (&lookup.second(&w), lookup.out),
        ])
        .await?;
    Ok((window.finish(bit, a), lookup.finish(b)))
}
