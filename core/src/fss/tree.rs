//! The GGM tree walk shared by the FSS schemes (BGI, CCS 2016, Fig. 1): key generation's
//! per-level corrections along α's path, one party's walk along x's path, and full-domain
//! expansion a level at a time.

use super::key::FssKey;
use super::{bit_msb_first, mask128, opaque_mask128, select_bit, select128};
use crate::prg::Ggm;
use crate::share::Party;
use alloc::vec::Vec;

/// The GGM path of a key pair: the correction words of `levels` tree levels for the top bits
/// of α (`alpha` holds them in its low `levels` bits, most significant first), and both parties'
/// seeds and control bits where α's path leaves the tree.
pub(super) struct Path {
    pub seeds: Vec<u128>,
    pub controls: Vec<[bool; 2]>,
    pub s: [u128; 2],
    pub t: [bool; 2],
}

/// The tree part of DPF key generation (BGI Fig. 1 up to the final correction), without
/// branching on α.
pub(super) fn gen_path(ggm: &Ggm, levels: u32, alpha: u64, roots: [u128; 2]) -> Path {
    let mut s = roots;
    let mut t = [false, true];
    let mut seeds = Vec::with_capacity(levels as usize);
    let mut controls = Vec::with_capacity(levels as usize);
    for i in 0..levels {
        let a = bit_msb_first(alpha, levels, i);
        let children = [ggm.children(s[0]), ggm.children(s[1])];
        let (s_cw, t_cw) = path_step(a, children, &mut s, &mut t);
        seeds.push(s_cw);
        controls.push(t_cw);
    }
    Path {
        seeds,
        controls,
        s,
        t,
    }
}

/// One level of [`gen_path`] for α's bit `a`: from both parties' children (seeds with control
/// bits) returns the level's seed and control corrections and moves both parties to α's side.
/// Branch-free in `a`.
pub(super) fn path_step(
    a: bool,
    [(c0, t0), (c1, t1)]: [([u128; 2], [bool; 2]); 2],
    s: &mut [u128; 2],
    t: &mut [bool; 2],
) -> (u128, [bool; 2]) {
    // Keep = the side of α (index a), Lose = the other side.
    let lose0 = select128(c0[1], c0[0], a);
    let lose1 = select128(c1[1], c1[0], a);
    let s_cw = lose0 ^ lose1;
    let t_cw = [t0[0] ^ t1[0] ^ a ^ true, t0[1] ^ t1[1] ^ a];
    let t_cw_keep = select_bit(t_cw[0], t_cw[1], a);
    for (b, (c, tc)) in [(c0, t0), (c1, t1)].into_iter().enumerate() {
        let keep = select128(c[0], c[1], a);
        let t_keep = select_bit(tc[0], tc[1], a);
        s[b] = keep ^ (s_cw & mask128(t[b]));
        t[b] = t_keep ^ (t[b] & t_cw_keep);
    }
    (s_cw, t_cw)
}

/// One party's walk down `levels` tree levels along the top bits of x (held in the low
/// `levels` bits of `x`): the seed and control bit where it ends.
pub(super) fn walk<C>(
    ggm: &Ggm,
    key: &FssKey<C>,
    seeds: &[u128],
    controls: &[[bool; 2]],
    x: u64,
    levels: u32,
) -> (u128, bool) {
    let mut s = key.root;
    let mut t = key.party == Party::P1;
    for i in 0..levels {
        let right = bit_msb_first(x, levels, i);
        let (child, tc) = ggm.child(s, right);
        let t_cw = controls[i as usize][right as usize];
        s = child ^ (seeds[i as usize] & opaque_mask128(t));
        t = tc ^ (t & t_cw);
    }
    (s, t)
}

/// One level of full-domain expansion for many nodes through one batched AES pass per
/// direction: node j's children become nodes 2j and 2j + 1 of the next level, corrected with
/// `cw(j)` (seed word, control words). `children` is scratch of at least `seeds.len()` blocks.
pub(super) fn expand_level(
    ggm: &Ggm,
    seeds: &[u128],
    bits: &[bool],
    cw: impl Fn(usize) -> (u128, [bool; 2]),
    children: (&mut [u128], &mut [u128]),
    next: (&mut Vec<u128>, &mut Vec<bool>),
) {
    let width = seeds.len();
    let (left, right) = (&mut children.0[..width], &mut children.1[..width]);
    ggm.children_batch(seeds, left, right);
    next.0.resize(2 * width, 0);
    next.1.resize(2 * width, false);
    let pairs = next.0.chunks_exact_mut(2).zip(next.1.chunks_exact_mut(2));
    let parents = bits.iter().zip(left.iter().zip(right.iter()));
    for (j, ((s, b), (&t, (&l, &r)))) in pairs.zip(parents).enumerate() {
        let (seed_cw, control_cw) = cw(j);
        let scw = seed_cw & opaque_mask128(t);
        let (l, tl) = Ggm::split_control_bit(l);
        let (r, tr) = Ggm::split_control_bit(r);
        s[0] = l ^ scw;
        s[1] = r ^ scw;
        b[0] = tl ^ (t & control_cw[0]);
        b[1] = tr ^ (t & control_cw[1]);
    }
}

/// A uniform root seed from `rng`.
pub(super) fn random_u128<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> u128 {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    u128::from_le_bytes(b)
}
