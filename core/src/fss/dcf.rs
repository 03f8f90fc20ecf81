//! Distributed comparison functions f_{α,β}(x) = β if x < α else 0 (Boyle, Chandran, Gilboa,
//! Gupta, Ishai, Kumar, Rathee, EUROCRYPT 2021, Fig. 3), x and α compared as unsigned n-bit
//! integers. Behind the `dcf` feature: no gate uses them (comparisons use [`super::bit_dpf`]).
//!
//! The DPF tree walk is kept, and every level also hands each party a value word. The value
//! corrections are chosen so that, summed along x's path, the two parties' value shares add up
//! to β exactly when x leaves α's path to the left (x < α), and to 0 otherwise.

use super::encoding::{Reader, Writer, control_bytes, word_bytes};
use super::key::{Corrections, FssKey, KeyBatch, batch_chunks};
use super::tree::random_u128;
use super::{
    bit_msb_first, check_full_domain, check_in_ring, check_key_batch, cond_neg, convert, mask64,
    mask128, opaque_mask64, select_bit, select64, select128,
};
use crate::Error;
use crate::prg::{Expansion, Ggm};
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
        let mut c = DcfCorrections {
            in_bits: BitWidth::FULL,
            out_bits: BitWidth::FULL,
            seeds: Vec::new(),
            values: Vec::new(),
            controls: Vec::new(),
            last: 0,
        };
        let (in_bits, out_bits, last) =
            read_fields(r, &mut c.seeds, &mut c.values, &mut c.controls)?;
        c.in_bits = in_bits;
        c.out_bits = out_bits;
        c.last = last;
        Ok(c)
    }
}

/// Parses one encoding of corrections, appending its n levels to the three arrays; returns the
/// widths and the final correction.
fn read_fields(
    r: &mut Reader<'_>,
    seeds: &mut Vec<u128>,
    values: &mut Vec<u64>,
    controls: &mut Vec<[bool; 2]>,
) -> Result<(BitWidth, BitWidth, u64), Error> {
    let in_bits = r.width("input bit-width must be in 1..=64")?;
    let out_bits = r.width("output bit-width must be in 1..=64")?;
    let n = in_bits.bits() as usize;
    r.seed_words_into(n, seeds)?;
    r.words_into(
        n,
        out_bits,
        values,
        "truncated inside the value corrections",
    )?;
    r.control_bits_into(n, controls)?;
    let last = r.word(out_bits, "truncated before the final correction")?;
    Ok((in_bits, out_bits, last))
}

/// Many DCF keys of one party and one pair of widths, stored flat for batch evaluation
/// ([`Dcf::eval_batch`]): level i of key j sits at index j·n + i.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DcfKeys {
    party: Party,
    in_bits: BitWidth,
    out_bits: BitWidth,
    roots: Vec<u128>,
    seeds: Vec<u128>,
    values: Vec<u64>,
    controls: Vec<[bool; 2]>,
    last: Vec<u64>,
}

impl DcfKeys {
    fn empty(party: Party, in_bits: BitWidth, out_bits: BitWidth, count: usize) -> Self {
        let levels = count * in_bits.bits() as usize;
        DcfKeys {
            party,
            in_bits,
            out_bits,
            roots: Vec::with_capacity(count),
            seeds: Vec::with_capacity(levels),
            values: Vec::with_capacity(levels),
            controls: Vec::with_capacity(levels),
            last: Vec::with_capacity(count),
        }
    }

    /// Gathers single keys; all must belong to one party and have one pair of widths.
    pub fn from_keys(keys: &[DcfKey]) -> Result<Self, Error> {
        let first = keys.first().ok_or(Error::ShapeMismatch(
            "a batch of DCF keys needs at least one key",
        ))?;
        let c = &first.corrections;
        let mut batch = Self::empty(first.party, c.in_bits, c.out_bits, keys.len());
        for k in keys {
            let c = &k.corrections;
            if k.party != first.party || c.in_bits != batch.in_bits || c.out_bits != batch.out_bits
            {
                return Err(Error::ShapeMismatch(
                    "a batch of DCF keys needs one party and one pair of widths",
                ));
            }
            batch.roots.push(k.root);
            batch.seeds.extend_from_slice(&c.seeds);
            batch.values.extend_from_slice(&c.values);
            batch.controls.extend_from_slice(&c.controls);
            batch.last.push(c.last);
        }
        Ok(batch)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether the batch holds no key.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// Input bit-width n.
    pub fn in_bits(&self) -> BitWidth {
        self.in_bits
    }

    /// Output bit-width l.
    pub fn out_bits(&self) -> BitWidth {
        self.out_bits
    }

    /// The batch's flat arrays, for a backend that evaluates it elsewhere (a GPU).
    pub fn parts(&self) -> DcfKeyParts<'_> {
        DcfKeyParts {
            party: self.party,
            roots: &self.roots,
            seeds: &self.seeds,
            values: &self.values,
            controls: &self.controls,
            last: &self.last,
        }
    }
}

/// A [`DcfKeys`] batch as flat arrays: key i's correction words for level j (0 = the input's
/// most significant bit) sit at index i·n + j of `seeds`, `values` and `controls`.
#[derive(Clone, Copy, Debug)]
pub struct DcfKeyParts<'a> {
    /// The party whose keys these are.
    pub party: Party,
    /// Root seed per key.
    pub roots: &'a [u128],
    /// Seed correction word per key and level.
    pub seeds: &'a [u128],
    /// Value correction word per key and level.
    pub values: &'a [u64],
    /// Control-bit corrections (left, right) per key and level.
    pub controls: &'a [[bool; 2]],
    /// The final value correction per key.
    pub last: &'a [u64],
}

impl KeyBatch for DcfKeys {
    type Corrections = DcfCorrections;

    fn new(party: Party, in_bits: BitWidth, out_bits: BitWidth) -> Self {
        Self::empty(party, in_bits, out_bits, 0)
    }

    fn decode_into(&mut self, roots: &[u128], bytes: &[u8]) -> Result<(), Error> {
        let len = DcfCorrections::encoded_len(self.in_bits, self.out_bits);
        let chunks = batch_chunks(bytes, roots.len(), len)?;
        self.roots.clear();
        self.seeds.clear();
        self.values.clear();
        self.controls.clear();
        self.last.clear();
        for chunk in chunks {
            let mut r = Reader::new(chunk);
            let (n, l, last) = read_fields(
                &mut r,
                &mut self.seeds,
                &mut self.values,
                &mut self.controls,
            )?;
            r.finish()?;
            if n != self.in_bits || l != self.out_bits {
                return Err(Error::MalformedKey("DCF key widths differ from the gate's"));
            }
            self.last.push(last);
        }
        self.roots.extend_from_slice(roots);
        Ok(())
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
        let mut c = DcfCorrections {
            in_bits,
            out_bits,
            seeds: Vec::new(),
            values: Vec::new(),
            controls: Vec::new(),
            last: 0,
        };
        let mut last = [0u64];
        self.gen_into(
            in_bits,
            out_bits,
            &[alpha],
            beta,
            &[roots],
            (&mut c.seeds, &mut c.values, &mut c.controls),
            &mut last,
        )?;
        c.last = last[0];
        Ok(c)
    }

    /// [`Dcf::gen_corrections`] for many α with one β, appending the canonical encodings of the
    /// corrections (key i from `roots[i]`) to `out`. Keys are generated together, level by
    /// level, so AES runs in long batches.
    pub fn gen_encoded(
        &self,
        in_bits: BitWidth,
        out_bits: BitWidth,
        alphas: &[u64],
        beta: u64,
        roots: &[[u128; 2]],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        const GROUP: usize = 256;
        let n = in_bits.bits() as usize;
        let (mut seeds, mut values, mut controls) = (Vec::new(), Vec::new(), Vec::new());
        let mut last = [0u64; GROUP];
        out.reserve(alphas.len() * DcfCorrections::encoded_len(in_bits, out_bits));
        for (alphas, roots) in alphas.chunks(GROUP).zip(roots.chunks(GROUP)) {
            seeds.clear();
            values.clear();
            controls.clear();
            let last = &mut last[..alphas.len()];
            self.gen_into(
                in_bits,
                out_bits,
                alphas,
                beta,
                roots,
                (&mut seeds, &mut values, &mut controls),
                last,
            )?;
            for (j, &l) in last.iter().enumerate() {
                let levels = j * n..(j + 1) * n;
                let mut w = Writer(out);
                w.u8(in_bits.bits() as u8);
                w.u8(out_bits.bits() as u8);
                for &s in &seeds[levels.clone()] {
                    w.u128(s);
                }
                for &v in &values[levels.clone()] {
                    w.word(v, out_bits);
                }
                w.control_bits(&controls[levels]);
                w.word(l, out_bits);
            }
        }
        Ok(())
    }

    /// The key generation of Boyle et al. (Fig. 3) for every α at once: appends key j's n
    /// levels of corrections, in order, to the three arrays and writes its final correction to
    /// `last[j]`.
    #[allow(clippy::too_many_arguments)]
    fn gen_into(
        &self,
        in_bits: BitWidth,
        out_bits: BitWidth,
        alphas: &[u64],
        beta: u64,
        roots: &[[u128; 2]],
        (seeds, values, controls): (&mut Vec<u128>, &mut Vec<u64>, &mut Vec<[bool; 2]>),
        last: &mut [u64],
    ) -> Result<(), Error> {
        let m = alphas.len();
        if roots.len() != m || last.len() != m {
            return Err(Error::LengthMismatch {
                expected: m,
                got: if roots.len() != m {
                    roots.len()
                } else {
                    last.len()
                },
            });
        }
        check_in_ring(beta, out_bits)?;
        for &a in alphas {
            check_in_ring(a, in_bits)?;
        }
        let n = in_bits.bits();
        let base = seeds.len();
        let levels = n as usize;
        seeds.resize(base + m * levels, 0);
        values.resize(base + m * levels, 0);
        controls.resize(base + m * levels, [false; 2]);
        // Per key: both parties' seeds, control bits, and V_α (the sum of both parties' value
        // shares along α's path so far).
        let mut s: Vec<[u128; 2]> = roots.to_vec();
        let mut t = vec![[false, true]; m];
        let mut v_alpha = vec![0u64; m];
        let mut flat = vec![0u128; 2 * m];
        let mut expanded = vec![Expansion::default(); 2 * m];
        for i in 0..n {
            for (f, s) in flat.chunks_exact_mut(2).zip(&s) {
                f.copy_from_slice(s);
            }
            self.ggm.expand_batch(&flat, &mut expanded);
            for j in 0..m {
                let a = bit_msb_first(alphas[j], n, i);
                let (s_cw, v_cw, t_cw) = level_corrections(
                    a,
                    beta,
                    out_bits,
                    [expanded[2 * j], expanded[2 * j + 1]],
                    &mut s[j],
                    &mut t[j],
                    &mut v_alpha[j],
                );
                let at = base + j * levels + i as usize;
                seeds[at] = s_cw;
                values[at] = v_cw;
                controls[at] = t_cw;
            }
        }
        for j in 0..m {
            let l = cond_neg(
                convert(s[j][1], out_bits)
                    .wrapping_sub(convert(s[j][0], out_bits))
                    .wrapping_sub(v_alpha[j]),
                t[j][1],
            );
            last[j] = out_bits.reduce(l);
        }
        Ok(())
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

    /// Evaluates key i of the batch at `xs[i]` into `out[i]`, walking many keys level by level
    /// so that AES runs in pipelined batches. Equal to [`Dcf::eval`] on each key.
    pub fn eval_batch(&self, keys: &DcfKeys, xs: &[u64], out: &mut [u64]) -> Result<(), Error> {
        check_key_batch(keys.len(), xs.len(), out.len())?;
        for &x in xs {
            check_in_ring(x, keys.in_bits)?;
        }
        const CHUNK: usize = 128;
        let bits = keys.in_bits.bits();
        let n = bits as usize;
        let p1 = keys.party == Party::P1;
        let mut s = [0u128; CHUNK];
        let mut t = [false; CHUNK];
        let mut v = [0u64; CHUNK];
        let mut dirs = [false; CHUNK];
        let mut raw = [0u128; CHUNK];
        let mut masks = [0u128; CHUNK];
        for (chunk, (xs, out)) in xs.chunks(CHUNK).zip(out.chunks_mut(CHUNK)).enumerate() {
            let first = chunk * CHUNK;
            let m = xs.len();
            s[..m].copy_from_slice(&keys.roots[first..first + m]);
            t[..m].fill(p1);
            v[..m].fill(0);
            for i in 0..bits {
                let level = i as usize;
                for (d, &x) in dirs.iter_mut().zip(xs) {
                    *d = bit_msb_first(x, bits, i);
                }
                // The control bits are key material: select with all-ones/zero masks, hidden
                // from the optimiser (one opaque array per level, not one per key).
                for (mask, &t) in masks.iter_mut().zip(&t[..m]) {
                    *mask = mask128(t);
                }
                let masks = core::hint::black_box(&masks);
                self.ggm.values_batch(&s[..m], &mut raw[..m]);
                for j in 0..m {
                    let at = (first + j) * n + level;
                    // The direction is x's bit: public, so selecting on it may branch.
                    let word = if dirs[j] {
                        (raw[j] >> 64) as u64
                    } else {
                        raw[j] as u64
                    };
                    v[j] = v[j]
                        .wrapping_add(word)
                        .wrapping_add(keys.values[at] & masks[j] as u64);
                }
                self.ggm.child_batch(&s[..m], &dirs[..m], &mut raw[..m]);
                for j in 0..m {
                    let at = (first + j) * n + level;
                    let (child, tc) = Ggm::split_control_bit(raw[j]);
                    s[j] = child ^ (keys.seeds[at] & masks[j]);
                    t[j] = tc ^ (t[j] & keys.controls[at][dirs[j] as usize]);
                }
            }
            for j in 0..m {
                let total = v[j]
                    .wrapping_add(convert(s[j], keys.out_bits))
                    .wrapping_add(keys.last[first + j] & opaque_mask64(t[j]));
                out[j] = keys.out_bits.reduce(cond_neg(total, p1));
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

/// One level of DCF key generation (Boyle et al., Fig. 3) for α's bit `a` at this level, given
/// both parties' expansions of their current seeds: returns the level's seed, value and control
/// corrections and advances both parties' seeds, control bits and V_α. Branch-free in α and β.
fn level_corrections(
    a: bool,
    beta: u64,
    out_bits: BitWidth,
    [e0, e1]: [Expansion; 2],
    s: &mut [u128; 2],
    t: &mut [bool; 2],
    v_alpha: &mut u64,
) -> (u128, u64, [bool; 2]) {
    let conv = |v: u64| out_bits.reduce(v);
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
            .wrapping_sub(*v_alpha)
            .wrapping_add(beta_here),
        t[1],
    );
    *v_alpha = v_alpha
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
    (s_cw, out_bits.reduce(v_cw), t_cw)
}
