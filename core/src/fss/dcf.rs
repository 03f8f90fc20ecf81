//! Distributed comparison functions f_{α,β}(x) = β if x < α else 0 (Boyle, Chandran, Gilboa,
//! Gupta, Ishai, Kumar, Rathee, EUROCRYPT 2021, Fig. 3), x and α compared as unsigned n-bit
//! integers.
//!
//! The DPF tree walk is kept, and every level also hands each party a value word. The value
//! corrections are chosen so that, summed along x's path, the two parties' value shares add up
//! to β exactly when x leaves α's path to the left (x < α), and to 0 otherwise.

use super::dpf::random_u128;
use super::encoding::{Reader, Writer, control_bytes, word_bytes};
use super::key::{Corrections, FssKey};
use super::{
    bit_msb_first, check_full_domain, check_in_ring, cond_neg, convert, mask64, mask128,
    select_bit, select64, select128,
};
use crate::Error;
use crate::prg::Ggm;
use crate::ring::BitWidth;
use crate::share::Party;

/// One party's DCF key: its root seed and the shared corrections.
pub type DcfKey = FssKey<DcfCorrections>;
use alloc::vec;
use alloc::vec::Vec;

/// The part of a DCF key pair that both keys share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DcfCorrections {
    in_bits: BitWidth,
    out_bits: BitWidth,
    seeds: Vec<u128>,
    values: Vec<u64>,
    controls: Vec<[bool; 2]>,
    last: u64,
}

impl DcfCorrections {
    /// Appends the canonical encoding (see `encoding`).
    fn write(&self, w: &mut Writer<'_>) {
        w.u8(self.in_bits.bits() as u8);
        w.u8(self.out_bits.bits() as u8);
        for &s in &self.seeds {
            w.u128(s);
        }
        for &v in &self.values {
            w.word(v, self.out_bits);
        }
        w.control_bits(&self.controls);
        w.word(self.last, self.out_bits);
    }

    /// Parses the canonical encoding, checking every field.
    fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        let in_bits = r.width("input bit-width must be in 1..=64")?;
        let out_bits = r.width("output bit-width must be in 1..=64")?;
        let n = in_bits.bits() as usize;
        let seeds = (0..n).map(|_| r.seed_word()).collect::<Result<_, _>>()?;
        let values = (0..n)
            .map(|_| r.word(out_bits, "truncated inside the value corrections"))
            .collect::<Result<_, _>>()?;
        let controls = r.control_bits(n)?;
        let last = r.word(out_bits, "truncated before the final correction")?;
        Ok(DcfCorrections {
            in_bits,
            out_bits,
            seeds,
            values,
            controls,
            last,
        })
    }
}

#[cfg(feature = "serde")]
super::encoding::serde_via_bytes!(
    DcfCorrections,
    "DCF corrections in their canonical encoding"
);

impl Corrections for DcfCorrections {
    fn in_bits(&self) -> BitWidth {
        self.in_bits
    }

    /// Output bit-width l.
    fn out_bits(&self) -> BitWidth {
        self.out_bits
    }

    /// Encoded size in bytes for widths n and l: 2 + n·(16 + ⌈l/8⌉) + ⌈2n/8⌉ + ⌈l/8⌉.
    fn encoded_len(in_bits: BitWidth, out_bits: BitWidth) -> usize {
        let n = in_bits.bits() as usize;
        2 + n * (16 + word_bytes(out_bits)) + control_bytes(n) + word_bytes(out_bits)
    }

    /// The canonical byte encoding.
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::encoded_len(self.in_bits, self.out_bits));
        self.write(&mut Writer(&mut v));
        v
    }

    /// Decodes and checks the canonical encoding.
    fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let c = Self::read(&mut r)?;
        r.finish()?;
        Ok(c)
    }
}

/// The DCF scheme: holds the GGM PRG's key schedules; create once, use for many keys.
#[derive(Debug, Default)]
pub struct Dcf {
    ggm: Ggm,
}

impl Dcf {
    /// A DCF scheme instance.
    pub fn new() -> Self {
        Dcf { ggm: Ggm::new() }
    }

    /// Key generation for f(x) = β if x < α else 0, from the two parties' root seeds.
    ///
    /// α must be in Z_2^n and β in Z_2^l. Roots must be independent uniform seeds. Runs without
    /// branching on α or β.
    pub fn gen_corrections(
        &self,
        in_bits: BitWidth,
        out_bits: BitWidth,
        alpha: u64,
        beta: u64,
        roots: [u128; 2],
    ) -> Result<DcfCorrections, Error> {
        check_in_ring(alpha, in_bits)?;
        check_in_ring(beta, out_bits)?;
        let n = in_bits.bits();
        let conv = |v: u64| out_bits.reduce(v);
        let mut s = roots;
        let mut t = [false, true];
        // The sum of both parties' value shares along α's path so far (V_α in the paper).
        let mut v_alpha = 0u64;
        let mut seeds = Vec::with_capacity(n as usize);
        let mut values = Vec::with_capacity(n as usize);
        let mut controls = Vec::with_capacity(n as usize);
        for i in 0..n {
            let a = bit_msb_first(alpha, n, i);
            let e0 = self.ggm.expand(s[0]);
            let e1 = self.ggm.expand(s[1]);
            // Keep = α's side (index a); Lose = the other.
            let lose_s = [
                select128(e0.seeds[1], e0.seeds[0], a),
                select128(e1.seeds[1], e1.seeds[0], a),
            ];
            let lose_v = [
                select64(e0.values[1], e0.values[0], a),
                select64(e1.values[1], e1.values[0], a),
            ];
            let keep_v = [
                select64(e0.values[0], e0.values[1], a),
                select64(e1.values[0], e1.values[1], a),
            ];
            let s_cw = lose_s[0] ^ lose_s[1];
            // When the lost side is the left one (α_i = 1), every x there is below α: add β.
            let beta_here = beta & mask64(a);
            let v_cw = cond_neg(
                conv(lose_v[1])
                    .wrapping_sub(conv(lose_v[0]))
                    .wrapping_sub(v_alpha)
                    .wrapping_add(beta_here),
                t[1],
            );
            v_alpha = v_alpha
                .wrapping_sub(conv(keep_v[1]))
                .wrapping_add(conv(keep_v[0]))
                .wrapping_add(cond_neg(v_cw, t[1]));
            let t_cw = [
                e0.bits[0] ^ e1.bits[0] ^ a ^ true,
                e0.bits[1] ^ e1.bits[1] ^ a,
            ];
            let t_cw_keep = select_bit(t_cw[0], t_cw[1], a);
            for (b, e) in [e0, e1].iter().enumerate() {
                let keep = select128(e.seeds[0], e.seeds[1], a);
                let t_keep = select_bit(e.bits[0], e.bits[1], a);
                s[b] = keep ^ (s_cw & mask128(t[b]));
                t[b] = t_keep ^ (t[b] & t_cw_keep);
            }
            seeds.push(s_cw);
            values.push(out_bits.reduce(v_cw));
            controls.push(t_cw);
        }
        let last = cond_neg(
            convert(s[1], out_bits)
                .wrapping_sub(convert(s[0], out_bits))
                .wrapping_sub(v_alpha),
            t[1],
        );
        Ok(DcfCorrections {
            in_bits,
            out_bits,
            seeds,
            values,
            controls,
            last: out_bits.reduce(last),
        })
    }

    /// Key generation with fresh root seeds from `rng`; returns (P0's key, P1's key).
    pub fn gen_keys<R: rand_core::CryptoRng + ?Sized>(
        &self,
        in_bits: BitWidth,
        out_bits: BitWidth,
        alpha: u64,
        beta: u64,
        rng: &mut R,
    ) -> Result<(DcfKey, DcfKey), Error> {
        let roots = [random_u128(rng), random_u128(rng)];
        let c = self.gen_corrections(in_bits, out_bits, alpha, beta, roots)?;
        Ok((
            DcfKey::new(Party::P0, roots[0], c.clone()),
            DcfKey::new(Party::P1, roots[1], c),
        ))
    }

    /// This party's share of f(x), for x in Z_2^n.
    pub fn eval(&self, key: &DcfKey, x: u64) -> Result<u64, Error> {
        let c = &key.corrections;
        check_in_ring(x, c.in_bits)?;
        let n = c.in_bits.bits();
        let mut s = key.root;
        let mut t = key.party == Party::P1;
        let mut v = 0u64;
        for i in 0..n {
            let i_ = i as usize;
            let right = bit_msb_first(x, n, i);
            let value = self.ggm.value(s, right);
            v = v.wrapping_add(value).wrapping_add(c.values[i_] & mask64(t));
            let (child, tc) = self.ggm.child(s, right);
            s = child ^ (c.seeds[i_] & mask128(t));
            t = tc ^ (t & c.controls[i_][right as usize]);
        }
        v = v
            .wrapping_add(convert(s, c.out_bits))
            .wrapping_add(c.last & mask64(t));
        Ok(c.out_bits.reduce(cond_neg(v, key.party == Party::P1)))
    }

    /// Evaluates `keys[i]` at `xs[i]` into `out[i]`, walking many keys level by level so that
    /// AES runs in pipelined batches. Equal to [`Dcf::eval`] on each pair.
    pub fn eval_batch(&self, keys: &[DcfKey], xs: &[u64], out: &mut [u64]) -> Result<(), Error> {
        if keys.len() != xs.len() || xs.len() != out.len() {
            return Err(Error::LengthMismatch {
                expected: keys.len(),
                got: if keys.len() != xs.len() {
                    xs.len()
                } else {
                    out.len()
                },
            });
        }
        const CHUNK: usize = 64;
        let mut s = [0u128; CHUNK];
        let mut t = [false; CHUNK];
        let mut v = [0u64; CHUNK];
        let mut dirs = [false; CHUNK];
        let mut raw = [0u128; CHUNK];
        for ((keys, xs), out) in keys
            .chunks(CHUNK)
            .zip(xs.chunks(CHUNK))
            .zip(out.chunks_mut(CHUNK))
        {
            let n = keys[0].corrections.in_bits;
            if keys.iter().any(|k| k.corrections.in_bits != n) {
                // Mixed widths walk trees of different depths: evaluate one by one.
                for ((k, &x), o) in keys.iter().zip(xs).zip(out.iter_mut()) {
                    *o = self.eval(k, x)?;
                }
                continue;
            }
            let m = keys.len();
            for (j, (k, &x)) in keys.iter().zip(xs).enumerate() {
                check_in_ring(x, n)?;
                s[j] = k.root;
                t[j] = k.party == Party::P1;
                v[j] = 0;
            }
            let bits = n.bits();
            for i in 0..bits {
                let level = i as usize;
                for (d, &x) in dirs.iter_mut().zip(xs) {
                    *d = bit_msb_first(x, bits, i);
                }
                self.ggm.values_batch(&s[..m], &mut raw[..m]);
                for j in 0..m {
                    let c = &keys[j].corrections;
                    let word = if dirs[j] {
                        (raw[j] >> 64) as u64
                    } else {
                        raw[j] as u64
                    };
                    v[j] = v[j]
                        .wrapping_add(word)
                        .wrapping_add(c.values[level] & mask64(t[j]));
                }
                self.ggm.child_batch(&s[..m], &dirs[..m], &mut raw[..m]);
                for j in 0..m {
                    let c = &keys[j].corrections;
                    let (child, tc) = Ggm::split_control_bit(raw[j]);
                    s[j] = child ^ (c.seeds[level] & mask128(t[j]));
                    t[j] = tc ^ (t[j] & c.controls[level][dirs[j] as usize]);
                }
            }
            for j in 0..m {
                let k = &keys[j];
                let c = &k.corrections;
                let total = v[j]
                    .wrapping_add(convert(s[j], c.out_bits))
                    .wrapping_add(c.last & mask64(t[j]));
                out[j] = c.out_bits.reduce(cond_neg(total, k.party == Party::P1));
            }
        }
        Ok(())
    }

    /// This party's shares of f(x) for every x in Z_2^n, in order of x (n ≤ 20).
    pub fn eval_full_domain(&self, key: &DcfKey) -> Result<Vec<u64>, Error> {
        let c = &key.corrections;
        let size = check_full_domain(c.in_bits)?;
        // Each node carries (seed, control bit, value sum so far).
        let mut level = vec![(key.root, key.party == Party::P1, 0u64)];
        level.reserve(size);
        let mut next = Vec::with_capacity(size);
        for i in 0..c.in_bits.bits() as usize {
            next.clear();
            for &(s, t, v) in &level {
                let e = self.ggm.expand(s);
                let scw = c.seeds[i] & mask128(t);
                let vcw = c.values[i] & mask64(t);
                for d in 0..2 {
                    next.push((
                        e.seeds[d] ^ scw,
                        e.bits[d] ^ (t & c.controls[i][d]),
                        v.wrapping_add(e.values[d]).wrapping_add(vcw),
                    ));
                }
            }
            core::mem::swap(&mut level, &mut next);
        }
        let negate = key.party == Party::P1;
        Ok(level
            .iter()
            .map(|&(s, t, v)| {
                let v = v
                    .wrapping_add(convert(s, c.out_bits))
                    .wrapping_add(c.last & mask64(t));
                c.out_bits.reduce(cond_neg(v, negate))
            })
            .collect())
    }
}
