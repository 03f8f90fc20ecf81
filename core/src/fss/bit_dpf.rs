//! Distributed point functions with one-bit outputs and early termination (Boyle–Gilboa–Ishai,
//! CCS 2016, Fig. 1 over G = Z_2 with their early-termination optimisation), the DPF that
//! SIGMA's lookup tables use.
//!
//! f_α(x) = 1 if x = α else 0, shared as XOR bits: e_0(x) ⊕ e_1(x) = f_α(x).
//!
//! With k = min(n, 7) and ν = n − k, the DPF's GGM tree is walked along the top ν
//! bits of x only; each of its 2^ν leaves is converted into a block of 2^k output bits, one per
//! value of x's low k bits: Convert(s) = G_v(s) (one fixed-key AES, the value key of
//! [`crate::prg::Ggm`]) cut to 2^k bits. Party b's block at leaf s_b with control bit t_b is
//! Convert(s_b) ⊕ t_b·CW, with the final correction
//!   CW = Convert(s_0^α) ⊕ Convert(s_1^α) ⊕ u(α mod 2^k),
//! u(i) the block with only bit i set, s_b^α the seeds where α's path ends.
//!
//! *Correctness.* Off α's path the tree corrections make the two parties' seeds and control bits
//! equal (as in any BGI DPF), so their blocks are equal and every XOR is 0. On α's path
//! t_0 ⊕ t_1 = 1, so the XOR of the blocks is Convert(s_0^α) ⊕ Convert(s_1^α) ⊕ CW = u(α mod 2^k):
//! exactly output α is set. *Security* is BGI's: one key is a root seed, ν seed/control
//! corrections and CW, each masked by a PRG output the key's holder cannot compute.
//!
//! Full-domain evaluation costs 2^(ν+1) − 2 AES for the tree plus 2^ν for the conversions, about
//! 3·2^(n−7) AES for 2^n outputs (n ≥ 7; 4 at n = 8) instead of 2^(n+1) with one output per leaf
//! (the arithmetic DPF, `dpf` feature).

use super::encoding::{Reader, Writer, control_bytes};
use super::key::{Corrections, FssKey, KeyBatch, batch_chunks};
use super::tree::{Path, expand_level, gen_path, path_step, random_u128, walk};
use super::{
    MAX_FULL_DOMAIN_BITS, bit_msb_first, check_full_domain, check_in_ring, check_key_batch,
    check_key_range, mask64, mask128, opaque_mask128, select_bit, select64, select128,
};
use crate::Error;
use crate::prg::Ggm;
use crate::ring::BitWidth;
use crate::share::Party;
use alloc::vec;
use alloc::vec::Vec;

/// One party's one-bit DPF key: its root seed and the shared corrections.
pub type BitDpfKey = FssKey<BitDpfCorrections>;

/// log2 of the outputs one leaf of the tree holds (a 128-bit block), at most.
pub const LEAF_BITS: u32 = 7;

/// Leaf bits k = min(n, 7) and tree levels ν = n − k for n input bits.
const fn split(in_bits: BitWidth) -> (u32, u32) {
    let n = in_bits.bits();
    let k = if n < LEAF_BITS { n } else { LEAF_BITS };
    (k, n - k)
}

/// The low 2^k bits of a block.
const fn block_mask(k: u32) -> u128 {
    if k >= LEAF_BITS {
        u128::MAX
    } else {
        (1u128 << (1u32 << k)) - 1
    }
}

/// The block with only bit `pos` (< 128) set, without branching on `pos`.
fn unit(pos: u64) -> u128 {
    let high = (pos >> 6) & 1 == 1;
    let w = 1u64 << (pos & 63);
    ((w & !mask64(high)) as u128) | (((w & mask64(high)) as u128) << 64)
}

/// Bit `pos` (< 128) of a block, without branching on `pos`.
fn bit_of(v: u128, pos: u64) -> bool {
    let word = select64(v as u64, (v >> 64) as u64, (pos >> 6) & 1 == 1);
    (word >> (pos & 63)) & 1 == 1
}

/// The part of a one-bit DPF key pair that both keys share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitDpfCorrections {
    in_bits: BitWidth,
    seeds: Vec<u128>,
    controls: Vec<[bool; 2]>,
    last: u128,
}

impl BitDpfCorrections {
    /// The output width: one bit.
    pub const OUT_BITS: BitWidth = match BitWidth::new(1) {
        Ok(w) => w,
        Err(_) => panic!("1 is a valid bit-width"),
    };

    fn write(&self, w: &mut Writer<'_>) {
        let (k, _) = split(self.in_bits);
        w.u8(self.in_bits.bits() as u8);
        for &s in &self.seeds {
            w.u128(s);
        }
        w.control_bits(&self.controls);
        w.block(self.last, 1 << k);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        let (mut seeds, mut controls) = (Vec::new(), Vec::new());
        let (in_bits, last) = read_fields(r, &mut seeds, &mut controls)?;
        Ok(BitDpfCorrections {
            in_bits,
            seeds,
            controls,
            last,
        })
    }
}

/// Parses one encoding of corrections, appending its ν levels to the two arrays; returns the
/// input width and the final correction.
fn read_fields(
    r: &mut Reader<'_>,
    seeds: &mut Vec<u128>,
    controls: &mut Vec<[bool; 2]>,
) -> Result<(BitWidth, u128), Error> {
    let in_bits = r.width("input bit-width must be in 1..=64")?;
    let (k, levels) = split(in_bits);
    r.seed_words_into(levels as usize, seeds)?;
    r.control_bits_into(levels as usize, controls)?;
    let last = r.block(1 << k, "truncated before the final correction")?;
    Ok((in_bits, last))
}

/// Many one-bit DPF keys of one party and one input width, stored flat for batched full-domain
/// evaluation: level i of key j sits at index j·ν + i.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitDpfKeys {
    party: Party,
    in_bits: BitWidth,
    /// The width a gate asked for; decoding rejects anything but 1.
    out_bits: BitWidth,
    roots: Vec<u128>,
    seeds: Vec<u128>,
    controls: Vec<[bool; 2]>,
    last: Vec<u128>,
}

impl BitDpfKeys {
    fn empty(party: Party, in_bits: BitWidth, count: usize) -> Self {
        let levels = count * split(in_bits).1 as usize;
        BitDpfKeys {
            party,
            in_bits,
            out_bits: BitDpfCorrections::OUT_BITS,
            roots: Vec::with_capacity(count),
            seeds: Vec::with_capacity(levels),
            controls: Vec::with_capacity(levels),
            last: Vec::with_capacity(count),
        }
    }

    /// Gathers single keys; all must belong to one party and have one input width.
    pub fn from_keys(keys: &[BitDpfKey]) -> Result<Self, Error> {
        let first = keys.first().ok_or(Error::ShapeMismatch(
            "a batch of DPF keys needs at least one key",
        ))?;
        let mut batch = Self::empty(first.party, first.corrections.in_bits, keys.len());
        for k in keys {
            let c = &k.corrections;
            if k.party != first.party || c.in_bits != batch.in_bits {
                return Err(Error::ShapeMismatch(
                    "a batch of DPF keys needs one party and one input width",
                ));
            }
            batch.roots.push(k.root);
            batch.seeds.extend_from_slice(&c.seeds);
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

    /// The batch's flat arrays, for a backend that evaluates it elsewhere (a GPU).
    pub fn parts(&self) -> BitDpfKeyParts<'_> {
        let (leaf_bits, levels) = split(self.in_bits);
        BitDpfKeyParts {
            party: self.party,
            leaf_bits,
            levels,
            roots: &self.roots,
            seeds: &self.seeds,
            controls: &self.controls,
            last: &self.last,
        }
    }
}

/// A [`BitDpfKeys`] batch as flat arrays. The tree has `levels` levels and 2^`leaf_bits`
/// outputs per leaf block (the low bits of the block's 128); key i's correction words for
/// level j sit at index i·levels + j of `seeds` and `controls`.
#[derive(Clone, Copy, Debug)]
pub struct BitDpfKeyParts<'a> {
    /// The party whose keys these are.
    pub party: Party,
    /// Output bits per leaf block: 2^leaf_bits of them (leaf_bits ≤ 7).
    pub leaf_bits: u32,
    /// Tree levels above the leaf blocks.
    pub levels: u32,
    /// Root seed per key.
    pub roots: &'a [u128],
    /// Seed correction word per key and level.
    pub seeds: &'a [u128],
    /// Control-bit corrections (left, right) per key and level.
    pub controls: &'a [[bool; 2]],
    /// The leaf block correction per key.
    pub last: &'a [u128],
}

impl KeyBatch for BitDpfKeys {
    type Corrections = BitDpfCorrections;

    /// `out_bits` is always 1 for one-bit DPF keys; [`KeyBatch::decode_into`] checks it.
    fn new(party: Party, in_bits: BitWidth, out_bits: BitWidth) -> Self {
        let mut batch = Self::empty(party, in_bits, 0);
        batch.out_bits = out_bits;
        batch
    }

    fn decode_into(&mut self, roots: &[u128], bytes: &[u8]) -> Result<(), Error> {
        if self.out_bits != BitDpfCorrections::OUT_BITS {
            return Err(Error::MalformedKey("one-bit DPF keys have one output bit"));
        }
        let len = BitDpfCorrections::encoded_len(self.in_bits, self.out_bits);
        let chunks = batch_chunks(bytes, roots.len(), len)?;
        self.roots.clear();
        self.seeds.clear();
        self.controls.clear();
        self.last.clear();
        for chunk in chunks {
            let mut r = Reader::new(chunk);
            let (n, last) = read_fields(&mut r, &mut self.seeds, &mut self.controls)?;
            r.finish()?;
            if n != self.in_bits {
                return Err(Error::MalformedKey(
                    "DPF key input width differs from the gate's",
                ));
            }
            self.last.push(last);
        }
        self.roots.extend_from_slice(roots);
        Ok(())
    }
}

#[cfg(feature = "serde")]
super::encoding::serde_via_bytes!(
    BitDpfCorrections,
    "one-bit DPF corrections in their canonical encoding"
);

impl Corrections for BitDpfCorrections {
    fn in_bits(&self) -> BitWidth {
        self.in_bits
    }

    /// Always 1.
    fn out_bits(&self) -> BitWidth {
        Self::OUT_BITS
    }

    /// Encoded size in bytes for n input bits (the output width is 1 whatever `out_bits` says):
    /// 1 + 16ν + ⌈2ν/8⌉ + ⌈2^k/8⌉ with k = min(n, 7), ν = n − k; 34 bytes at n = 8.
    fn encoded_len(in_bits: BitWidth, _out_bits: BitWidth) -> usize {
        let (k, levels) = split(in_bits);
        let levels = levels as usize;
        1 + 16 * levels + control_bytes(levels) + (1usize << k).div_ceil(8)
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::encoded_len(self.in_bits, Self::OUT_BITS));
        self.write(&mut Writer(&mut v));
        v
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let c = Self::read(&mut r)?;
        r.finish()?;
        Ok(c)
    }
}

/// One level of a prefix-parity walk: corrects both children of the current node (control bit
/// `t`) with the level's words and returns the child on x's side (`right`, public), its control
/// bit, and the left child's control bit. Key-derived bits only mask; `right` may select.
#[inline(always)]
fn prefix_step(
    (l, tl): (u128, bool),
    (r, tr): (u128, bool),
    (seed_cw, control_cw): (u128, [bool; 2]),
    t: bool,
    right: bool,
) -> (u128, bool, bool) {
    let scw = seed_cw & opaque_mask128(t);
    let tl = tl ^ (t & control_cw[0]);
    let tr = tr ^ (t & control_cw[1]);
    (select128(l, r, right) ^ scw, select_bit(tl, tr, right), tl)
}

/// Both children of a node (raw AES outputs, control bit in the low bit) corrected with the
/// level's words under the node's control bit `t`: [(left seed, bit), (right seed, bit)].
#[inline(always)]
fn corrected_children(
    left: u128,
    right: u128,
    (seed_cw, control_cw): (u128, [bool; 2]),
    t: bool,
) -> [(u128, bool); 2] {
    let scw = seed_cw & opaque_mask128(t);
    let (l, tl) = Ggm::split_control_bit(left);
    let (r, tr) = Ggm::split_control_bit(right);
    [
        (l ^ scw, tl ^ (t & control_cw[0])),
        (r ^ scw, tr ^ (t & control_cw[1])),
    ]
}

/// The parity of bits 0..=low of a leaf block (`low` < 128, public).
#[inline(always)]
fn leaf_prefix_parity(block: u128, low: u64) -> bool {
    (block & (u128::MAX >> (127 - low))).count_ones() & 1 == 1
}

/// Leaves converted per batched AES pass in full-domain evaluation (keys are grouped to reach it).
const GROUP_LEAVES: usize = 256;

/// The one-bit DPF scheme: holds the GGM PRG's key schedules; create once, use for many keys.
#[derive(Debug, Default)]
pub struct BitDpf {
    ggm: Ggm,
}

impl BitDpf {
    /// A one-bit DPF scheme instance.
    pub fn new() -> Self {
        BitDpf { ggm: Ggm::new() }
    }

    fn convert(&self, seed: u128, k: u32) -> u128 {
        let mut out = [0u128];
        self.ggm.values_batch(&[seed], &mut out);
        out[0] & block_mask(k)
    }

    /// Key generation for f(x) = [x = α], from the two parties' root seeds; α in Z_2^n.
    ///
    /// Also returns e_1(α), the bit P1's key outputs at α (P0's is its complement): it is
    /// pseudorandom and must stay with the dealer (see the lookup gate). Roots must be
    /// independent uniform seeds. Runs without branching on α.
    pub fn gen_corrections(
        &self,
        in_bits: BitWidth,
        alpha: u64,
        roots: [u128; 2],
    ) -> Result<(BitDpfCorrections, bool), Error> {
        check_in_ring(alpha, in_bits)?;
        let (k, levels) = split(in_bits);
        let Path {
            seeds,
            controls,
            s,
            t,
        } = gen_path(&self.ggm, levels, alpha >> k, roots);
        let low = alpha & ((1u64 << k) - 1);
        let conv = [self.convert(s[0], k), self.convert(s[1], k)];
        let last = conv[0] ^ conv[1] ^ unit(low);
        let p1_at_alpha = bit_of(conv[1] ^ (last & mask128(t[1])), low);
        Ok((
            BitDpfCorrections {
                in_bits,
                seeds,
                controls,
                last,
            },
            p1_at_alpha,
        ))
    }

    /// [`BitDpf::gen_corrections`] for many α at once, level by level so that AES runs in long
    /// batches: appends the canonical encodings of the corrections (key i from `roots[i]`) to
    /// `out` and P1's bit at each α to `p1_at_alpha`.
    pub fn gen_encoded(
        &self,
        in_bits: BitWidth,
        alphas: &[u64],
        roots: &[[u128; 2]],
        out: &mut Vec<u8>,
        p1_at_alpha: &mut Vec<bool>,
    ) -> Result<(), Error> {
        if roots.len() != alphas.len() {
            return Err(Error::LengthMismatch {
                expected: alphas.len(),
                got: roots.len(),
            });
        }
        for &a in alphas {
            check_in_ring(a, in_bits)?;
        }
        let (k, levels) = split(in_bits);
        let m = alphas.len();
        let nu = levels as usize;
        let mut s: Vec<[u128; 2]> = roots.to_vec();
        let mut t = vec![[false, true]; m];
        let mut seeds = vec![0u128; m * nu];
        let mut controls = vec![[false; 2]; m * nu];
        let mut flat = vec![0u128; 2 * m];
        let (mut left, mut right) = (vec![0u128; 2 * m], vec![0u128; 2 * m]);
        for i in 0..levels {
            for (f, s) in flat.chunks_exact_mut(2).zip(&s) {
                f.copy_from_slice(s);
            }
            self.ggm.children_batch(&flat, &mut left, &mut right);
            for j in 0..m {
                let child = |b: usize| {
                    let (l, tl) = Ggm::split_control_bit(left[2 * j + b]);
                    let (r, tr) = Ggm::split_control_bit(right[2 * j + b]);
                    ([l, r], [tl, tr])
                };
                let a = bit_msb_first(alphas[j] >> k, levels, i);
                let (s_cw, t_cw) = path_step(a, [child(0), child(1)], &mut s[j], &mut t[j]);
                seeds[j * nu + i as usize] = s_cw;
                controls[j * nu + i as usize] = t_cw;
            }
        }
        for (f, s) in flat.chunks_exact_mut(2).zip(&s) {
            f.copy_from_slice(s);
        }
        self.ggm.values_batch(&flat, &mut left);
        let one = BitDpfCorrections::OUT_BITS;
        out.reserve(m * BitDpfCorrections::encoded_len(in_bits, one));
        for j in 0..m {
            let conv = [left[2 * j] & block_mask(k), left[2 * j + 1] & block_mask(k)];
            let low = alphas[j] & ((1u64 << k) - 1);
            let last = conv[0] ^ conv[1] ^ unit(low);
            p1_at_alpha.push(bit_of(conv[1] ^ (last & mask128(t[j][1])), low));
            // The layout of `BitDpfCorrections::write`.
            let mut w = Writer(out);
            w.u8(in_bits.bits() as u8);
            for &s in &seeds[j * nu..(j + 1) * nu] {
                w.u128(s);
            }
            w.control_bits(&controls[j * nu..(j + 1) * nu]);
            w.block(last, 1 << k);
        }
        Ok(())
    }

    /// Key generation with fresh root seeds from `rng`; returns (P0's key, P1's key).
    pub fn gen_keys<R: rand_core::CryptoRng + ?Sized>(
        &self,
        in_bits: BitWidth,
        alpha: u64,
        rng: &mut R,
    ) -> Result<(BitDpfKey, BitDpfKey), Error> {
        let roots = [random_u128(rng), random_u128(rng)];
        let (c, _) = self.gen_corrections(in_bits, alpha, roots)?;
        Ok((
            BitDpfKey::new(Party::P0, roots[0], c.clone()),
            BitDpfKey::new(Party::P1, roots[1], c),
        ))
    }

    /// This party's bit e_b(x), for x in Z_2^n.
    pub fn eval(&self, key: &BitDpfKey, x: u64) -> Result<bool, Error> {
        let c = &key.corrections;
        check_in_ring(x, c.in_bits)?;
        let (k, levels) = split(c.in_bits);
        let (s, t) = walk(&self.ggm, key, &c.seeds, &c.controls, x >> k, levels);
        let block = self.convert(s, k) ^ (c.last & opaque_mask128(t));
        Ok((block >> (x & ((1 << k) - 1))) & 1 == 1)
    }

    /// This party's share of the prefix parity ⊕_{j ≤ x} f_α(j) = [α ≤ x] (SIGMA's DPF-based
    /// comparison), for x in Z_2^n: the XOR of both parties' bits is 1 exactly when α ≤ x.
    ///
    /// Walking x's path, every level where x turns right adds the left sibling's control bit
    /// (the two parties' bits differ exactly when α lies in that subtree, which holds only
    /// smaller inputs), and the leaf adds the parity of its block's bits 0..=x mod 2^k. Both
    /// children are expanded at every level (two AES), so nothing depends on x but the public
    /// choice of child; key-derived bits only ever mask.
    pub fn eval_prefix_parity(&self, key: &BitDpfKey, x: u64) -> Result<bool, Error> {
        let c = &key.corrections;
        check_in_ring(x, c.in_bits)?;
        let (k, levels) = split(c.in_bits);
        let mut s = key.root;
        let mut t = key.party == Party::P1;
        let mut parity = false;
        for i in 0..levels {
            let level = i as usize;
            let right = bit_msb_first(x >> k, levels, i);
            let ([l, r], [tl, tr]) = self.ggm.children(s);
            let (s_next, t_next, left_t) = prefix_step(
                (l, tl),
                (r, tr),
                (c.seeds[level], c.controls[level]),
                t,
                right,
            );
            parity ^= left_t & right;
            s = s_next;
            t = t_next;
        }
        let block = self.convert(s, k) ^ (c.last & opaque_mask128(t));
        Ok(parity ^ leaf_prefix_parity(block, x & ((1 << k) - 1)))
    }

    /// [`BitDpf::eval_prefix_parity`] of key i of the batch at `xs[i]` into `out[i]` (0 or 1),
    /// walking many keys level by level so that AES runs in long batches.
    pub fn eval_prefix_parity_batch(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        out: &mut [u64],
    ) -> Result<(), Error> {
        check_key_batch(keys.len(), xs.len(), out.len())?;
        self.eval_prefix_parity_range(keys, 0..keys.len(), xs, out)
    }

    /// [`BitDpf::eval_prefix_parity_batch`] of the keys in `range` only (so that callers can
    /// split a batch, e.g. between threads): key `range.start + i` at `xs[i]` into `out[i]`.
    pub fn eval_prefix_parity_range(
        &self,
        keys: &BitDpfKeys,
        range: core::ops::Range<usize>,
        xs: &[u64],
        out: &mut [u64],
    ) -> Result<(), Error> {
        check_key_range(keys.len(), &range, xs.len(), out.len())?;
        for &x in xs {
            check_in_ring(x, keys.in_bits)?;
        }
        const CHUNK: usize = 256;
        let (k, levels) = split(keys.in_bits);
        let nu = levels as usize;
        let p1 = keys.party == Party::P1;
        let mut s = [0u128; CHUNK];
        let mut t = [false; CHUNK];
        let mut parity = [false; CHUNK];
        let (mut left, mut right) = ([0u128; CHUNK], [0u128; CHUNK]);
        for (chunk, (xs, out)) in xs.chunks(CHUNK).zip(out.chunks_mut(CHUNK)).enumerate() {
            let first = range.start + chunk * CHUNK;
            let m = xs.len();
            s[..m].copy_from_slice(&keys.roots[first..first + m]);
            t[..m].fill(p1);
            parity[..m].fill(false);
            for i in 0..levels {
                let level = i as usize;
                self.ggm
                    .children_batch(&s[..m], &mut left[..m], &mut right[..m]);
                for j in 0..m {
                    let at = (first + j) * nu + level;
                    let (l, tl) = Ggm::split_control_bit(left[j]);
                    let (r, tr) = Ggm::split_control_bit(right[j]);
                    let go_right = bit_msb_first(xs[j] >> k, levels, i);
                    let (s_next, t_next, left_t) = prefix_step(
                        (l, tl),
                        (r, tr),
                        (keys.seeds[at], keys.controls[at]),
                        t[j],
                        go_right,
                    );
                    parity[j] ^= left_t & go_right;
                    s[j] = s_next;
                    t[j] = t_next;
                }
            }
            self.ggm.values_batch(&s[..m], &mut left[..m]);
            let mask = block_mask(k);
            for j in 0..m {
                let block = (left[j] & mask) ^ (keys.last[first + j] & opaque_mask128(t[j]));
                let low = xs[j] & ((1 << k) - 1);
                out[j] = (parity[j] ^ leaf_prefix_parity(block, low)) as u64;
            }
        }
        Ok(())
    }

    /// Window bits and prefix parity from one key each, for the gate that reads a comparison
    /// and a table of bounded support off the same DPF (`gate::Protocol::drelu_lookup`).
    ///
    /// For key `range.start + i`, x = `xs[i]` and H = 2^(w−1): writes its prefix parity at x
    /// ([`BitDpf::eval_prefix_parity`]) to `parity[i]`, and to `window[i·2^(w−6)..]` its bits
    /// at the 2^w positions p in (x − H, x + H] (mod 2^n), bit o holding the one p ≡ o
    /// (mod 2^w). Needs 7 ≤ w < n.
    ///
    /// The walk runs down x's path, both children per level as in the comparison, to the
    /// subtree X of 2^w positions that holds x; the neighbouring subtree on the window's
    /// other side branches off that path at its last turn the other way (its sibling there,
    /// then straight down). Below, each level keeps only the nodes above the window's
    /// 2^(w−7) + 1 leaf blocks, which give the window bits and the parity's last levels.
    /// About 2(n − w) + 3·2^(w−7) + few AES per key. Paths depend on the public x only;
    /// key-derived bits only mask.
    pub fn eval_sign_window_range(
        &self,
        keys: &BitDpfKeys,
        range: core::ops::Range<usize>,
        window_bits: u32,
        xs: &[u64],
        parity: &mut [u64],
        window: &mut [u64],
    ) -> Result<(), Error> {
        check_key_range(keys.len(), &range, xs.len(), parity.len())?;
        let n = keys.in_bits.bits();
        let w = window_bits;
        if w < LEAF_BITS || w >= n || w > MAX_FULL_DOMAIN_BITS {
            return Err(Error::ShapeMismatch(
                "a window needs 7 to 20 bits, fewer than the keys' input bits",
            ));
        }
        let words = 1usize << (w - 6);
        if window.len() != xs.len() * words {
            return Err(Error::LengthMismatch {
                expected: xs.len() * words,
                got: window.len(),
            });
        }
        for &x in xs {
            check_in_ring(x, keys.in_bits)?;
        }
        let (k, levels) = split(keys.in_bits); // k = 7 since n > w ≥ 7
        let nu = levels as usize;
        let below = w - k; // levels inside a window-sized subtree
        let top = levels - below; // levels above it (≥ 1)
        let half = 1u64 << (w - 1);
        let p1 = keys.party == Party::P1;
        // Keys per pass: as many as the comparison walks at once (their correction words stay
        // in cache), fewer for wide windows (2^below + 1 leaves each, 2048 in all at most).
        let chunk = (2048usize >> below).clamp(1, 256);
        let mut s = vec![0u128; chunk];
        let mut t = vec![false; chunk];
        let mut par = vec![false; chunk];
        let (mut left, mut right) = (vec![0u128; chunk], vec![0u128; chunk]);
        let (mut ys, mut yt, mut ydepth) =
            (vec![0u128; chunk], vec![false; chunk], vec![0u32; chunk]);
        let (mut gather, mut ydir) = (vec![0u128; chunk], vec![false; chunk]);
        // Whether x lies in the upper half of its window-sized subtree X (then the window
        // reaches into X + 1, else into X − 1).
        let upper = |x: u64| x & ((1 << w) - 1) >= half;
        let cap = chunk * ((1usize << below) + 1);
        let (mut seeds, mut bits) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
        let (mut next_seeds, mut next_bits) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
        let (mut cl, mut cr) = (vec![0u128; cap], vec![0u128; cap]);
        let (mut bl, mut br) = (vec![false; cap], vec![false; cap]);
        let mut conv = vec![0u128; cap];
        // Both subtrees' words (the window's leaves end at or before their end).
        let mut span = vec![0u64; 2 * words];
        let (mut first_leaf, mut local_x) = (vec![0usize; chunk], vec![0usize; chunk]);
        for (c, ((xs, parity), window)) in xs
            .chunks(chunk)
            .zip(parity.chunks_mut(chunk))
            .zip(window.chunks_mut(chunk * words))
            .enumerate()
        {
            let first = range.start + c * chunk;
            let m = xs.len();
            let cw = |key: usize, level: u32| {
                let at = key * nu + level as usize;
                (keys.seeds[at], keys.controls[at])
            };
            // x's path down to its window-sized subtree X, with the comparison's parity.
            s[..m].copy_from_slice(&keys.roots[first..first + m]);
            t[..m].fill(p1);
            par[..m].fill(false);
            ys[..m].copy_from_slice(&keys.roots[first..first + m]);
            yt[..m].fill(p1);
            // The neighbour Y on the window's other side (X + 1 if x is in X's upper half, else
            // X − 1) leaves X's path where X's lowest 0 bit (X + 1) or lowest 1 bit (X − 1) is:
            // the sibling there (at depth `ydepth`), then straight down the opposite side; where
            // X is all ones (all zeros) Y wraps to 0 (all ones), straight down from the root.
            for (d, &x) in ydepth[..m].iter_mut().zip(xs) {
                let block = x >> w;
                let run = if upper(x) {
                    block.trailing_ones()
                } else {
                    block.trailing_zeros()
                };
                *d = top.saturating_sub(run);
            }
            {
                // Slices of length m, so that the loop below indexes without bounds checks.
                let (s, t, par) = (&mut s[..m], &mut t[..m], &mut par[..m]);
                let (ys, yt, yd) = (&mut ys[..m], &mut yt[..m], &ydepth[..m]);
                let (left, right) = (&mut left[..m], &mut right[..m]);
                for i in 0..top {
                    self.ggm.children_batch(s, left, right);
                    for j in 0..m {
                        // Both children corrected once: x's side goes on; at Y's branch
                        // level the other one is Y's (a public, once-per-key condition).
                        let [(l, tl), (r, tr)] =
                            corrected_children(left[j], right[j], cw(first + j, i), t[j]);
                        let go_right = bit_msb_first(xs[j] >> w, top, i);
                        if i + 1 == yd[j] {
                            ys[j] = select128(r, l, go_right);
                            yt[j] = select_bit(tr, tl, go_right);
                        }
                        par[j] ^= tl & go_right;
                        s[j] = select128(l, r, go_right);
                        t[j] = select_bit(tl, tr, go_right);
                    }
                }
            }
            // Down from the branch: all left towards X + 1, all right towards X − 1. Depths
            // differ per key (public: they follow x), so the keys still going walk together.
            let mut going: Vec<usize> = (0..m).filter(|&j| ydepth[j] < top).collect();
            while !going.is_empty() {
                for (g, &j) in going.iter().enumerate() {
                    gather[g] = ys[j];
                    ydir[g] = !upper(xs[j]);
                }
                let n_going = going.len();
                self.ggm
                    .child_batch(&gather[..n_going], &ydir[..n_going], &mut left[..n_going]);
                for (g, &j) in going.iter().enumerate() {
                    let (child, tc) = Ggm::split_control_bit(left[g]);
                    let (seed_cw, control_cw) = cw(first + j, ydepth[j]);
                    ys[j] = child ^ (seed_cw & opaque_mask128(yt[j]));
                    yt[j] = tc ^ (yt[j] & control_cw[ydir[g] as usize]);
                    ydepth[j] += 1;
                }
                going.retain(|&j| ydepth[j] < top);
            }
            // The two subtrees B0 = the lower one, B1, as local nodes 0 and 1 at height
            // `below`; the window's 2^below + 1 leaves from local leaf l0 on, each height keeping
            // only the nodes above them (a fixed number, so keys expand together).
            let per = |h: u32| (1usize << (below - h)) + 1;
            seeds.clear();
            bits.clear();
            for j in 0..m {
                let (x_node, y_node) = ((s[j], t[j]), (ys[j], yt[j]));
                let (b0, b1) = if upper(xs[j]) {
                    (x_node, y_node)
                } else {
                    (y_node, x_node)
                };
                seeds.extend_from_slice(&[b0.0, b1.0]);
                bits.extend_from_slice(&[b0.1, b1.1]);
                let zo = (xs[j].wrapping_add(half) & ((1 << w) - 1)) as usize;
                first_leaf[j] = ((zo + 1) >> k).min((1 << below) - 1);
                // x's position among B0's and B1's.
                local_x[j] =
                    (xs[j] & ((1 << w) - 1)) as usize + if upper(xs[j]) { 0 } else { 1 << w };
            }
            for h in (1..=below).rev() {
                let (parents, children) = (per(h), per(h - 1));
                let width = m * parents;
                self.ggm
                    .children_batch(&seeds[..width], &mut cl[..width], &mut cr[..width]);
                let depth = top + below - h;
                next_seeds.resize(m * children, 0);
                next_bits.resize(m * children, false);
                for j in 0..m {
                    let key_cw = cw(first + j, depth);
                    let lo = first_leaf[j] >> h;
                    let off = (first_leaf[j] >> (h - 1)) - 2 * lo;
                    // Children of this key's parents, corrected: child c is at 2·(c >> 1) + c&1.
                    for p in j * parents..(j + 1) * parents {
                        let [(l, tl), (r, tr)] = corrected_children(cl[p], cr[p], key_cw, bits[p]);
                        (cl[p], cr[p], bl[p], br[p]) = (l, r, tl, tr);
                    }
                    for (i, c) in (off..off + children).enumerate() {
                        let (p, right) = (j * parents + (c >> 1), c & 1 == 1);
                        next_seeds[j * children + i] = select128(cl[p], cr[p], right);
                        next_bits[j * children + i] = select_bit(bl[p], br[p], right);
                    }
                    // The comparison's parity along x's path inside the subtrees.
                    let px = j * parents + (local_x[j] >> (k + h)) - lo;
                    let go_right = (local_x[j] >> (k + h - 1)) & 1 == 1;
                    par[j] ^= bl[px] & go_right;
                }
                core::mem::swap(&mut seeds, &mut next_seeds);
                core::mem::swap(&mut bits, &mut next_bits);
            }
            let leaves = per(0);
            let conv = &mut conv[..m * leaves];
            self.ggm.values_batch(&seeds[..m * leaves], conv);
            for j in 0..m {
                let last = keys.last[first + j];
                let (x, l0) = (xs[j], first_leaf[j]);
                // The leaves' words at their local positions: span word i holds local
                // positions 64i.. (words outside the leaves are stale and always masked off).
                let leaf_words = &mut span[2 * l0..2 * (l0 + leaves)];
                for ((pair, &raw), &tb) in leaf_words
                    .chunks_exact_mut(2)
                    .zip(&conv[j * leaves..(j + 1) * leaves])
                    .zip(&bits[j * leaves..(j + 1) * leaves])
                {
                    let block = raw ^ (last & opaque_mask128(tb));
                    pair[0] = block as u64;
                    pair[1] = (block >> 64) as u64;
                }
                // The parity's last part: x's leaf up to x.
                let at = 2 * (local_x[j] >> k);
                let block = span[at] as u128 | (span[at + 1] as u128) << 64;
                parity[j] = (par[j] ^ leaf_prefix_parity(block, x & ((1 << k) - 1))) as u64;
                // Window bit o is local position o + 2^w where o ≤ zo (in B1), else o (in B0):
                // whole words below bit zo + 1 from B1, whole words above it from B0.
                let cut = (x.wrapping_add(half) & ((1 << w) - 1)) as usize + 1;
                let (full, part) = (cut / 64, cut % 64);
                let out = &mut window[j * words..(j + 1) * words];
                let (b0, b1) = span.split_at(words);
                out[..full].copy_from_slice(&b1[..full]);
                if full < words {
                    let from_b1 = (1u64 << part) - 1;
                    out[full] = (b1[full] & from_b1) | (b0[full] & !from_b1);
                    out[full + 1..].copy_from_slice(&b0[full + 1..words]);
                }
            }
        }
        Ok(())
    }

    /// Words a full-domain evaluation of an n-bit key takes: ⌈2^n / 64⌉ (`usize::MAX` where
    /// 2^n does not fit a `usize`; full-domain evaluation stops at n = 20 anyway).
    pub const fn full_domain_words(in_bits: BitWidth) -> usize {
        match 1usize.checked_shl(in_bits.bits()) {
            Some(size) => size.div_ceil(64),
            None => usize::MAX,
        }
    }

    /// This party's bits e_b(x) for every x in Z_2^n (n ≤ 20), packed: bit x is bit x mod 64
    /// of word x / 64.
    pub fn eval_full_domain(&self, key: &BitDpfKey) -> Result<Vec<u64>, Error> {
        check_full_domain(key.corrections.in_bits)?;
        let mut out = vec![0u64; Self::full_domain_words(key.corrections.in_bits)];
        let batch = BitDpfKeys::from_keys(core::slice::from_ref(key))?;
        self.eval_full_domain_batch(&batch, &mut out)?;
        Ok(out)
    }

    /// [`BitDpf::eval_full_domain`] of every key of a batch (input width n ≤ 20), key i's words
    /// at `out[i·w..(i+1)·w]` with w = [`BitDpf::full_domain_words`]. Keys are expanded
    /// together, level by level, so that AES runs in long pipelined batches.
    pub fn eval_full_domain_batch(&self, keys: &BitDpfKeys, out: &mut [u64]) -> Result<(), Error> {
        self.eval_full_domain_range(keys, 0..keys.len(), out)
    }

    /// [`BitDpf::eval_full_domain_batch`] of the keys in `range` only (so callers can work
    /// through a large batch in bounded scratch), key `range.start + i` at `out[i·w..]`.
    pub fn eval_full_domain_range(
        &self,
        keys: &BitDpfKeys,
        range: core::ops::Range<usize>,
        out: &mut [u64],
    ) -> Result<(), Error> {
        let in_bits = keys.in_bits;
        check_full_domain(in_bits)?;
        let words = Self::full_domain_words(in_bits);
        let Some(roots) = keys.roots.get(range.clone()) else {
            return Err(Error::LengthMismatch {
                expected: keys.len(),
                got: range.end,
            });
        };
        if out.len() != roots.len() * words {
            return Err(Error::LengthMismatch {
                expected: roots.len() * words,
                got: out.len(),
            });
        }
        if roots.is_empty() {
            return Ok(());
        }
        let (k, levels) = split(in_bits);
        let leaves = 1usize << levels;
        let group = (GROUP_LEAVES >> levels).max(1);
        let cap = group * leaves;
        let (mut seeds, mut bits) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
        let (mut next_seeds, mut next_bits) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
        let (mut left, mut right) = (vec![0u128; cap.div_ceil(2)], vec![0u128; cap.div_ceil(2)]);
        let mut conv = vec![0u128; cap];
        let mask = block_mask(k);
        let nu = levels as usize;
        let p1 = keys.party == Party::P1;
        for (g, (roots, out)) in roots
            .chunks(group)
            .zip(out.chunks_mut(group * words))
            .enumerate()
        {
            let first = range.start + g * group;
            seeds.clear();
            bits.clear();
            seeds.extend_from_slice(roots);
            bits.resize(roots.len(), p1);
            for i in 0..nu {
                // Node j of this level belongs to key first + (j >> i).
                expand_level(
                    &self.ggm,
                    &seeds,
                    &bits,
                    |j| {
                        let at = (first + (j >> i)) * nu + i;
                        (keys.seeds[at], keys.controls[at])
                    },
                    (&mut left, &mut right),
                    (&mut next_seeds, &mut next_bits),
                );
                core::mem::swap(&mut seeds, &mut next_seeds);
                core::mem::swap(&mut bits, &mut next_bits);
            }
            let conv = &mut conv[..seeds.len()];
            self.ggm.values_batch(&seeds, conv);
            for (j, (&raw, &t)) in conv.iter().zip(&bits).enumerate() {
                let last = keys.last[first + (j >> levels)];
                let block = (raw & mask) ^ (last & opaque_mask128(t));
                if k == LEAF_BITS {
                    // Key g's words start at g·2^(ν+1); its leaf B fills words 2B and 2B + 1.
                    out[2 * j] = block as u64;
                    out[2 * j + 1] = (block >> 64) as u64;
                } else {
                    out[j] = block as u64;
                }
            }
        }
        Ok(())
    }
}
