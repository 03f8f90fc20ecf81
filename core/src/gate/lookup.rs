//! Lookup tables on an n-bit masked input x^ = x + r through a one-bit DPF (SIGMA's method,
//! Gupta et al., PoPETs 2024): two rounds, out/8 bytes each way per element per round, and one
//! one-bit DPF key per element to both servers (1 + 16(n−7) + ⌈(n−7)/4⌉ + 16 bytes for n ≥ 7,
//! 34 at n = 8); nothing to P1 alone.
//!
//! **Keys.** The dealer makes a one-bit DPF key pair for the point r ([`crate::fss::bit_dpf`]):
//! full-domain evaluation gives server b bits t_b^j, j ∈ Z_2^n, with t_0^j ⊕ t_1^j = [j = r].
//! It also learns e = t_1^r (pseudorandom, kept secret) and sets s = 1 − 2e = (−1)^e. Two
//! pseudorandom pairs cost nothing to send: m (the mask of the first opening) and c; the output
//! mask is ρ = c + s·m.
//!
//! **Online**, in Z_2^out, with x^ reduced to n bits:
//!   u_b = (−1)^b Σ_j t_b^j · T[(x^ − j) mod 2^n],   σ_b = (−1)^b Σ_j t_b^j;
//!   round 1 opens v^ = Σ_b (u_b + m_b);   round 2 opens y^ = Σ_b (v^·σ_b + c_b).
//! The output wire is y^ with mask ρ.
//!
//! **Correctness.** For j ≠ r the bits are equal, t_0^j − t_1^j = 0; at r they differ, so
//! t_0^r − t_1^r = 1 − 2t_1^r = s. Hence Σ_b u_b = s·T[x^ − r] = s·T(x) and Σ_b σ_b = s, so
//! v^ = s·T(x) + m and y^ = v^·s + c = s²·T(x) + s·m + c = T(x) + ρ, since s² = 1. Every step is
//! a ring operation, so reducing to Z_2^out anywhere is harmless.
//!
//! **Privacy.** Server b's view is its DPF key (pseudorandom, hides r), its stream shares m_b,
//! c_b, the public x^, and the two openings. m_{1−b} and c_{1−b} come from the other server's
//! stream and are independent of all of that: v^ = s·T(x) + m_b + m_{1−b} is uniform given the
//! rest of the view, and y^ = T(x) + c_b + c_{1−b} + s·m is uniform given the rest including v^.
//! So the transcript is uniform whatever x. The output mask ρ contains c_{1−b} too, so it is
//! uniform given the view, as a wire mask must be. s itself is never revealed: it would tell
//! server b its own bit at r, i.e. that r lies among the j where t_b^j has that value (about
//! half the domain).
//!
//! **Why two rounds.** Lifted to integers the XOR bits give s·T(x), not T(x), and s is secret;
//! removing it multiplies two shared values (s and s·T(x)), which takes one opening before the
//! output can be opened. In one round the servers' local values would have to add up to
//! T(x) + ρ directly: an FSS scheme with *additive* outputs in Z_2^out for the shifted table,
//! i.e. a DPF over Z_2^out, whose leaves need out bits of PRG output per table entry. That is
//! the arithmetic DPF (about 2^(n+1) AES per element, 2^(n−1) at best with wide leaves) this
//! gate replaced; with one-bit outputs, 128 per leaf, full-domain evaluation takes about
//! 3·2^(n−7) AES.
//!
//! Table positions depend only on the public x^ and the loop counter; key bits select table
//! entries through masks (see [`Kernels::dpf_lookup`]), and the dealer multiplies by s without
//! branching on it.

use super::channel::{Channel, KeySink, KeySource};
use super::kernels::Kernels;
use super::roles::{DealerSide, ServerSide};
use super::tensor::Tensor;
use crate::Error;
use crate::fss::{BitDpfCorrections, BitDpfKeys, MAX_FULL_DOMAIN_BITS, cond_neg};
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
    let signed = deal_keys(d, x, t)?;
    Ok(Tensor::from_parts(
        x.shape(),
        t.out_width,
        signed.rho(t.out_width),
    ))
}

/// What the dealer keeps of a one-bit-DPF table gate: the signs s = (−1)^e its servers'
/// sums carry (e is P1's bit at the key's point; s in Z_2^out) and its pseudorandom pairs m
/// (the first opening's mask) and c (the second's).
pub(super) struct Signed {
    pub(super) s: Vec<u64>,
    pub(super) m: Vec<u64>,
    pub(super) c: Vec<u64>,
}

impl Signed {
    /// The table value's output mask ρ = c + s·m in Z_2^out.
    pub(super) fn rho(&self, out: BitWidth) -> Vec<u64> {
        let sm = products(out, &self.s, &self.m);
        self.c
            .iter()
            .zip(&sm)
            .map(|(&c, &a)| out.add(c, a))
            .collect()
    }
}

/// Element-wise products in Z_2^out.
pub(super) fn products(out: BitWidth, a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(&a, &b)| out.mul(a, b)).collect()
}

/// The lookup's keys and its two pseudorandom pairs.
pub(super) fn deal_keys<S: KeySink>(
    d: &mut DealerSide<S>,
    x: &Tensor,
    t: &LookupTable,
) -> Result<Signed, Error> {
    t.check(x)?;
    let out = t.out_width;
    let signs = d.bit_dpf_keys(t.in_bits, x.data())?;
    let m = d.pair(x.len(), out);
    let c = d.pair(x.len(), out);
    Ok(Signed {
        s: signs_in(&signs, out),
        m,
        c,
    })
}

/// s = 1 − 2e in Z_2^out for each of P1's bits e at the keys' points, computed without a
/// branch on e.
pub(super) fn signs_in(e: &[bool], out: BitWidth) -> Vec<u64> {
    e.iter()
        .map(|&e| out.reduce(core::hint::black_box(1u64.wrapping_sub(2 * e as u64))))
        .collect()
}

pub(super) async fn eval<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    t: &LookupTable,
) -> Result<Tensor, Error> {
    let (first, gate) = eval_first(srv, x, t).await?;
    let v = srv.open(&first, gate.out).await?;
    let y = srv.open(&gate.second(&v), gate.out).await?;
    Ok(gate.finish(y))
}

/// Checks a lookup's second factor: z of x's shape, in the table's ring.
fn check_factor(x: &Tensor, t: &LookupTable, z: &Tensor) -> Result<(), Error> {
    if z.shape() != x.shape() || z.width() != t.out_width {
        return Err(Error::ShapeMismatch(
            "a lookup's factor needs the input's shape and the table's ring",
        ));
    }
    Ok(())
}

/// [`deal`] and the keys of T(x)·z: a pseudorandom pair c' (the product's output mask) and
/// shares of s·r_z, s·m and s·m·r_z in Z_2^out.
pub(super) fn deal_mul<S: KeySink>(
    d: &mut DealerSide<S>,
    x: &Tensor,
    t: &LookupTable,
    z: &Tensor,
) -> Result<(Tensor, Tensor), Error> {
    check_factor(x, t, z)?;
    let out = t.out_width;
    let signed = deal_keys(d, x, t)?;
    let c2 = d.pair(x.len(), out);
    let sm = products(out, &signed.s, &signed.m);
    d.share(&products(out, &signed.s, z.data()), out);
    d.share(&sm, out);
    d.share(&products(out, &sm, z.data()), out);
    let rho = signed.rho(out);
    Ok((
        Tensor::from_parts(x.shape(), out, rho),
        Tensor::from_parts(x.shape(), out, c2),
    ))
}

/// T(x) and T(x)·z in the lookup's two rounds: the product needs no opening of its own, since
/// after the first opening v^ = s·T(x) + m, T(x)·z = s·(v^ − m)·(z^ − r_z) is linear in the
/// servers' shares of s (σ_b, free from the full-domain sums), s·r_z, s·m and s·m·r_z. Round 2
/// opens T(x) + ρ and this sum plus c', each masked by the other server's pseudorandom share.
pub(super) async fn eval_mul<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    t: &LookupTable,
    z: &Tensor,
) -> Result<(Tensor, Tensor), Error> {
    check_factor(x, t, z)?;
    let (first, gate) = eval_first(srv, x, t).await?;
    let out = gate.out;
    let c2 = srv.pair(x.len(), out);
    let srz = srv.share(x.len(), out).await?;
    let sm = srv.share(x.len(), out).await?;
    let smrz = srv.share(x.len(), out).await?;
    let v = srv.open(&first, out).await?;
    let product: Vec<u64> = (0..x.len())
        .map(|i| {
            let (v, zh) = (v[i], z.data()[i]);
            let sigma = cond_neg(gate.ones[i], gate.p1);
            let vz = v.wrapping_mul(zh);
            out.reduce(
                vz.wrapping_mul(sigma)
                    .wrapping_sub(v.wrapping_mul(srz[i]))
                    .wrapping_sub(zh.wrapping_mul(sm[i]))
                    .wrapping_add(smrz[i])
                    .wrapping_add(c2[i]),
            )
        })
        .collect();
    let (y, yz) = srv
        .open_two((&gate.second(&v), out), (&product, out))
        .await?;
    let shape = gate.shape.clone();
    Ok((gate.finish(y), Tensor::from_parts(&shape, out, yz)))
}

/// A server's lookup between its two openings.
pub(super) struct Opened {
    shape: Vec<usize>,
    /// The output ring.
    pub(super) out: BitWidth,
    ones: Vec<u64>,
    c: Vec<u64>,
    p1: bool,
}

/// The lookup up to its first opening: reads its keys and streams, and returns this server's
/// share to open, (−1)^b·u_b + m_b, with what the second opening needs.
pub(super) async fn eval_first<C: Channel, K: KeySource, X: Kernels>(
    srv: &mut ServerSide<C, K, X>,
    x: &Tensor,
    t: &LookupTable,
) -> Result<(Vec<u64>, Opened), Error> {
    t.check(x)?;
    let out = t.out_width;
    let (mut dot, mut ones) = (vec![0u64; x.len()], vec![0u64; x.len()]);
    let one = BitDpfCorrections::OUT_BITS;
    srv.with_fss_keys::<BitDpfKeys>(x.len(), t.in_bits, one, |kernels, keys, r| {
        let (xs, entries) = (&x.data()[r.clone()], &t.entries);
        kernels.dpf_lookup(keys, xs, entries, out, &mut dot[r.clone()], &mut ones[r])
    })
    .await?;
    let m = srv.pair(x.len(), out);
    let c = srv.pair(x.len(), out);
    // P1 negates its sums: u_b = (−1)^b·dot, σ_b = (−1)^b·ones.
    let p1 = !srv.is_p0();
    let first = dot
        .iter()
        .zip(&m)
        .map(|(&u, &m)| out.add(cond_neg(u, p1), m))
        .collect();
    let gate = Opened {
        shape: x.shape().to_vec(),
        out,
        ones,
        c,
        p1,
    };
    Ok((first, gate))
}

impl Opened {
    /// This server's share to open second, v^·σ_b + c_b, from the first opening v^.
    pub(super) fn second(&self, v: &[u64]) -> Vec<u64> {
        let out = self.out;
        v.iter()
            .zip(self.ones.iter().zip(&self.c))
            .map(|(&v, (&o, &c))| out.add(out.mul(v, cond_neg(o, self.p1)), c))
            .collect()
    }

    /// The output wire from the second opening.
    pub(super) fn finish(self, y: Vec<u64>) -> Tensor {
        Tensor::from_parts(&self.shape, self.out, y)
    }
}
