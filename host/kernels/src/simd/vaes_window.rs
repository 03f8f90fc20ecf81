//! The sign-and-window DPF evaluation ([`BitDpf::eval_sign_window_range`]) and the
//! comparison's prefix parity with AVX-512 and VAES, four AES blocks to a register: GeLU's and
//! the exponential's lookups and the softmax's max tree spend most of a server's key work here.
//!
//! Same walk, same output bit for bit (tested against core); the differences are in layout:
//! - a node is one 128-bit lane holding its seed with its control bit in bit 0 (correction
//!   seeds have bit 0 clear, so the corrected child's bit 0 is its corrected control bit, and
//!   one masked XOR corrects seed and bit together);
//! - a register [p, p, q, q] gives [p's left, p's right, q's left, q's right] children in one
//!   pass: VAES takes a round key per lane, so the left and right fixed keys run together;
//! - x's path and the neighbouring subtree's path Y walk together, X in lanes 0–1 and Y in
//!   lanes 2–3 (Y's lanes are ignored until Y branches off), the next level's nodes picked by
//!   one lane permutation whose index follows the public x;
//! - the two window-sized subtrees are expanded whole (2^(w−6) leaf blocks instead of core's
//!   2^(w−7) + 1), so every level is whole registers;
//! - eight keys walk in lockstep, eight independent registers for the AES pipeline; while
//!   every key's Y still lies on X's path, two keys share a register ([a, a, b, b]), as in
//!   the comparison's walk, which never needs Y.
//!
//! Key-derived bits only ever feed masks and XORs; branches, lane indexes and memory indexes
//! follow x alone.
//!
//! [`BitDpf::eval_sign_window_range`]: securerouter_core::fss::BitDpf::eval_sign_window_range

use securerouter_core::Error;
use securerouter_core::fss::{BitDpfKeyParts, BitDpfKeys, LEAF_BITS, check_key_range};
use securerouter_core::prg::GGM_KEYS;
use securerouter_core::share::Party;
use std::arch::x86_64::*;

/// The widest window this kernel expands (2 × 16 leaf blocks); wider ones go to core's.
pub(super) const MAX_WINDOW_BITS: u32 = 11;
/// Keys that walk in lockstep.
const GROUP: usize = 8;
/// Most registers of one subtree level: 2 × 2^(11 − 7) leaves, four to a register.
const MAX_LEVEL_REGS: usize = 8;

/// The GGM's fixed AES keys expanded for four blocks to a register, and the lane patterns.
/// [`VaesWindow::detect`] makes one only where the CPU has AVX-512F, AES-NI and VAES, which
/// its safe methods rely on.
pub(super) struct VaesWindow {
    /// Lanes [left, right, left, right]: both children of [p, p, q, q].
    children: [__m512i; 11],
    /// The value key in every lane.
    values: [__m512i; 11],
    /// [X, X, Y, Y] from corrected children [XL, XR, YL, YR]: X from lane gx, Y from lane ys,
    /// at index gx·4 + ys.
    pick: [__m512i; 8],
}

impl std::fmt::Debug for VaesWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaesWindow")
    }
}

/// The 64-bit lane indexes of 128-bit lanes [a, b, c, d] for a permutation.
const fn lane_index(a: i64, b: i64, c: i64, d: i64) -> [i64; 8] {
    [
        2 * a,
        2 * a + 1,
        2 * b,
        2 * b + 1,
        2 * c,
        2 * c + 1,
        2 * d,
        2 * d + 1,
    ]
}

/// A register of 64-bit lanes, lane 0 first.
#[inline]
#[target_feature(enable = "avx512f")]
fn qwords(q: [i64; 8]) -> __m512i {
    _mm512_set_epi64(q[7], q[6], q[5], q[4], q[3], q[2], q[1], q[0])
}

impl VaesWindow {
    /// The kernel, where this CPU has AVX-512F, AES-NI and VAES.
    pub(super) fn detect() -> Option<Self> {
        let supported = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("vaes")
            && std::arch::is_x86_feature_detected!("aes");
        // SAFETY: `new` enables AES-NI and AVX-512F, both just detected.
        supported.then(|| unsafe { Self::new() })
    }

    /// [`Self::eval_sign_window_range`], safe: a `VaesWindow` exists only where its features do.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sign_window_range(
        &self,
        keys: &BitDpfKeys,
        range: core::ops::Range<usize>,
        window_bits: u32,
        xs: &[u64],
        parity: &mut [u64],
        window: &mut [u64],
    ) -> Result<(), Error> {
        // SAFETY: `self` exists, so `detect` found AVX-512F, VAES and AES-NI.
        unsafe { self.eval_sign_window_range(keys, range, window_bits, xs, parity, window) }
    }

    /// [`Self::eval_prefix_parity_range`], safe: a `VaesWindow` exists only where its features
    /// do.
    pub(super) fn prefix_parity_range(
        &self,
        keys: &BitDpfKeys,
        range: core::ops::Range<usize>,
        xs: &[u64],
        out: &mut [u64],
    ) -> Result<(), Error> {
        // SAFETY: `self` exists, so `detect` found AVX-512F, VAES and AES-NI.
        unsafe { self.eval_prefix_parity_range(keys, range, xs, out) }
    }

    /// The round keys of core's [`GGM_KEYS`] and the permutation table.
    #[target_feature(enable = "aes,avx512f")]
    fn new() -> Self {
        let [l, r, v] = GGM_KEYS.map(|k| expand_key(&k));
        VaesWindow {
            children: core::array::from_fn(|i| {
                _mm512_broadcast_i64x4(_mm256_set_m128i(r[i], l[i]))
            }),
            values: core::array::from_fn(|i| _mm512_broadcast_i32x4(v[i])),
            pick: core::array::from_fn(|i| {
                let (gx, ys) = ((i / 4) as i64, (i % 4) as i64);
                qwords(lane_index(gx, gx, ys, ys))
            }),
        }
    }
}

/// One AES-128 key-expansion step: round key i from round key i − 1 and its keygen assist.
#[target_feature(enable = "aes")]
fn key_step(prev: __m128i, assist: __m128i) -> __m128i {
    let assist = _mm_shuffle_epi32::<0xff>(assist);
    let mut k = prev;
    k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
    k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
    k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
    _mm_xor_si128(k, assist)
}

/// The eleven round keys of AES-128 under `key` (FIPS 197 key expansion).
#[target_feature(enable = "aes")]
fn expand_key(key: &[u8; 16]) -> [__m128i; 11] {
    // SAFETY: an unaligned 16-byte load from a 16-byte array.
    let k0 = unsafe { _mm_loadu_si128(key.as_ptr().cast()) };
    let mut k = [k0; 11];
    macro_rules! round {
        ($i:literal, $rcon:literal) => {
            k[$i] = key_step(k[$i - 1], _mm_aeskeygenassist_si128::<$rcon>(k[$i - 1]));
        };
    }
    round!(1, 0x01);
    round!(2, 0x02);
    round!(3, 0x04);
    round!(4, 0x08);
    round!(5, 0x10);
    round!(6, 0x20);
    round!(7, 0x40);
    round!(8, 0x80);
    round!(9, 0x1b);
    round!(10, 0x36);
    k
}

/// MMO under per-lane round keys of the nodes' seeds (bit 0 cleared), N registers
/// interleaved: AES_k(s) ⊕ s in every lane.
#[inline]
#[target_feature(enable = "avx512f,vaes")]
fn mmo<const N: usize>(rounds: &[__m512i; 11], x: &[__m512i; N]) -> [__m512i; N] {
    let mut s: [__m512i; N] = core::array::from_fn(|i| _mm512_xor_si512(x[i], rounds[0]));
    for rk in &rounds[1..10] {
        for v in &mut s {
            *v = _mm512_aesenc_epi128(*v, *rk);
        }
    }
    core::array::from_fn(|i| _mm512_xor_si512(_mm512_aesenclast_epi128(s[i], rounds[10]), x[i]))
}

/// Bit 0 of each 128-bit lane, in its low 64-bit half.
#[inline]
#[target_feature(enable = "avx512f")]
fn low_bits() -> __m512i {
    _mm512_set_epi64(0, 1, 0, 1, 0, 1, 0, 1)
}

/// Each node's control bit (bit 0 of its lane) as a mask of both its 64-bit halves.
#[inline]
#[target_feature(enable = "avx512f")]
fn control_mask(nodes: __m512i) -> __mmask8 {
    let low = _mm512_test_epi64_mask(nodes, low_bits());
    low | (low << 1)
}

/// The nodes' seeds: bit 0 (the control bit) cleared.
#[inline]
#[target_feature(enable = "avx512f")]
fn seeds(nodes: __m512i) -> __m512i {
    _mm512_andnot_si512(low_bits(), nodes)
}

/// Key-level `at`'s corrections for [left, right, left, right] children: the seed correction
/// with the left or right control correction in bit 0 (set through a mask, not a table).
#[inline]
#[target_feature(enable = "avx512f")]
fn corrections(keys: &BitDpfKeyParts<'_>, at: usize) -> __m512i {
    let seed = &keys.seeds[at];
    // SAFETY: a 16-byte unaligned load of one u128.
    let seed = _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128((seed as *const u128).cast()) });
    let [l, r] = keys.controls[at];
    let bits = (l as u8 | (r as u8) << 2) * 0x11; // lanes 0 and 2 left, 1 and 3 right
    _mm512_or_si512(seed, _mm512_maskz_mov_epi64(bits, low_bits()))
}

/// A u128 in all four lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn broadcast(v: &u128) -> __m512i {
    // SAFETY: a 16-byte unaligned load of one u128.
    _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128((v as *const u128).cast()) })
}

/// Two u128s as lanes [a, a, b, b].
#[inline]
#[target_feature(enable = "avx512f")]
fn pair(a: &u128, b: &u128) -> __m512i {
    // SAFETY: 16-byte unaligned loads of one u128 each.
    let (a, b) = unsafe {
        (
            _mm_loadu_si128((a as *const u128).cast()),
            _mm_loadu_si128((b as *const u128).cast()),
        )
    };
    let a = _mm512_castsi256_si512(_mm256_broadcastsi128_si256(a));
    _mm512_inserti64x4::<1>(a, _mm256_broadcastsi128_si256(b))
}

/// The four 128-bit lanes of a register.
#[inline]
#[target_feature(enable = "avx512f")]
fn unlanes(v: __m512i) -> [u128; 4] {
    let mut out = [0u128; 4];
    // SAFETY: a 64-byte unaligned store into a 64-byte array.
    unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), v) };
    out
}

/// [`corrections`] of two keys' levels `at`: [a's left, a's right, b's left, b's right].
#[inline]
#[target_feature(enable = "avx512f")]
fn pair_corrections(keys: &BitDpfKeyParts<'_>, at: [usize; 2]) -> __m512i {
    let seeds = pair(&keys.seeds[at[0]], &keys.seeds[at[1]]);
    let ([la, ra], [lb, rb]) = (keys.controls[at[0]], keys.controls[at[1]]);
    let bits = la as u8 | (ra as u8) << 2 | (lb as u8) << 4 | (rb as u8) << 6;
    _mm512_or_si512(seeds, _mm512_maskz_mov_epi64(bits, low_bits()))
}

/// Starts loading the correction words a few levels past `at` into the cache: the keys in
/// lockstep read as many separate streams, too many for the hardware prefetcher.
#[inline]
#[target_feature(enable = "sse")]
fn prefetch_corrections(keys: &BitDpfKeyParts<'_>, at: usize) {
    // Four words a cache line: the line after the current one. A prefetch never faults, and
    // `wrapping_add` only computes the address.
    let ahead = keys.seeds.as_ptr().wrapping_add(at + 4);
    _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
}

/// Per-key scratch of one lockstep group.
type Regs = [[__m512i; MAX_LEVEL_REGS]; GROUP];

impl VaesWindow {
    /// `eval_sign_window_range` of core's [`BitDpf`](securerouter_core::fss::BitDpf) for
    /// windows of 7 to [`MAX_WINDOW_BITS`] bits: the same parity and window bits, bit for bit.
    #[target_feature(enable = "avx512f,vaes,aes")]
    fn eval_sign_window_range(
        &self,
        keys: &BitDpfKeys,
        range: core::ops::Range<usize>,
        window_bits: u32,
        xs: &[u64],
        parity: &mut [u64],
        window: &mut [u64],
    ) -> Result<(), Error> {
        check_key_range(keys.len(), &range, xs.len(), parity.len())?;
        let n = keys.in_bits();
        let w = window_bits;
        if w < LEAF_BITS || w >= n.bits() || w > MAX_WINDOW_BITS {
            return Err(Error::ShapeMismatch(
                "the VAES window kernel takes 7 to 11 bits, fewer than the keys' input bits",
            ));
        }
        let words = 1usize << (w - 6);
        if window.len() != xs.len() * words {
            return Err(Error::LengthMismatch {
                expected: xs.len() * words,
                got: window.len(),
            });
        }
        if xs.iter().any(|&x| !n.contains(x)) {
            return Err(Error::ValueOutOfRange { bits: n.bits() });
        }
        let parts = keys.parts();
        let nu = parts.levels as usize;
        let below = w - LEAF_BITS;
        let top = parts.levels - below;
        let half = 1u64 << (w - 1);
        let upper = |x: u64| x & ((1 << w) - 1) >= half;
        let root_mask: __mmask8 = if parts.party == Party::P1 { 0xff } else { 0 };
        let dup = [
            qwords(lane_index(0, 0, 1, 1)),
            qwords(lane_index(2, 2, 3, 3)),
        ];
        let swap = qwords(lane_index(2, 2, 0, 0));
        let ends = qwords(lane_index(0, 2, 2, 2));
        // A pair register's key a (lane 0) or b (lane 2) in all four lanes.
        let spread = [
            qwords(lane_index(0, 0, 0, 0)),
            qwords(lane_index(2, 2, 2, 2)),
        ];
        let zero = _mm512_setzero_si512();
        let mut span = [[0u64; 4 * 2 * MAX_LEVEL_REGS]; GROUP];
        let mut nodes: [Regs; 2] = [[[zero; MAX_LEVEL_REGS]; GROUP]; 2];
        let mut kids: Regs = [[zero; MAX_LEVEL_REGS]; GROUP];
        for (g, ((xs, parity), window)) in xs
            .chunks(GROUP)
            .zip(parity.chunks_mut(GROUP))
            .zip(window.chunks_mut(GROUP * words))
            .enumerate()
        {
            let first = range.start + g * GROUP;
            let m = xs.len();
            // A short last group repeats its first key in the empty slots (results dropped).
            let slot = |i: usize| if i < m { i } else { 0 };
            let base: [usize; GROUP] = core::array::from_fn(|i| (first + slot(i)) * nu);
            let x: [u64; GROUP] = core::array::from_fn(|i| xs[slot(i)]);
            let ydir: [u64; GROUP] = core::array::from_fn(|i| !upper(x[i]) as u64);
            // Y's branch depth: where X's path last turns the other way (see core's walk).
            let ydepth: [u32; GROUP] = core::array::from_fn(|i| {
                let block = x[i] >> w;
                let run = match upper(x[i]) {
                    true => block.trailing_ones(),
                    false => block.trailing_zeros(),
                };
                top.saturating_sub(run)
            });
            // x's position among the two subtrees' 2^(w+1) (B0, the lower one, first).
            let local_x: [usize; GROUP] = core::array::from_fn(|i| {
                (x[i] & ((1 << w) - 1)) as usize + if upper(x[i]) { 0 } else { 1 << w }
            });
            // Down to the window-sized subtrees. Until the first level where some key's Y
            // leaves X's path, X alone, two keys to a register; then state [X, X, Y, Y].
            let split = ydepth.iter().min().map_or(0, |d| d.saturating_sub(1));
            let mut pairs: [__m512i; GROUP / 2] = core::array::from_fn(|p| {
                pair(
                    &parts.roots[first + slot(2 * p)],
                    &parts.roots[first + slot(2 * p + 1)],
                )
            });
            let mut pair_par = [[0u64; 2]; GROUP / 2];
            let walk = PairWalk {
                base: core::array::from_fn(|p| [base[2 * p], base[2 * p + 1]]),
                path: core::array::from_fn(|p| [x[2 * p], x[2 * p + 1]].map(|x| x >> w)),
                path_bits: top,
                root_mask,
            };
            self.walk_pairs(&parts, &walk, 0..split, &mut pairs, &mut pair_par);
            let mut par: [u64; GROUP] = core::array::from_fn(|j| pair_par[j / 2][j % 2]);
            let mut state: [__m512i; GROUP] =
                core::array::from_fn(|j| _mm512_permutexvar_epi64(spread[j % 2], pairs[j / 2]));
            for i in split..top {
                let input = match i {
                    0 => state, // a root's bit 0 is part of its seed; its control bit is the party
                    _ => state.map(|v| seeds(v)),
                };
                let raw = mmo(&self.children, &input);
                for j in 0..GROUP {
                    let t = match i {
                        0 => root_mask,
                        _ => control_mask(state[j]),
                    };
                    prefetch_corrections(&parts, base[j] + i as usize);
                    let cw = corrections(&parts, base[j] + i as usize);
                    let c = _mm512_mask_xor_epi64(raw[j], t, raw[j], cw);
                    let gx = (x[j] >> (w + top - 1 - i)) & 1;
                    let left_t = _mm512_test_epi64_mask(c, low_bits()) as u64 & 1;
                    par[j] ^= left_t & gx;
                    let ys = match i + 1 == ydepth[j] {
                        true => 1 - gx,
                        false => 2 + ydir[j],
                    };
                    state[j] = _mm512_permutexvar_epi64(self.pick[(gx * 4 + ys) as usize], c);
                }
            }
            // The subtrees B0 (lower) and B1 as [B0, B0, B1, B1], expanded whole: each level's
            // corrected children go straight into the next level's inputs (two registers each).
            let mut flip = 0;
            for j in 0..GROUP {
                nodes[0][j][0] = match upper(x[j]) {
                    true => state[j],
                    false => _mm512_permutexvar_epi64(swap, state[j]),
                };
                kids[j][0] = _mm512_permutexvar_epi64(ends, nodes[0][j][0]); // [B0, B1, ..] if below = 0
            }
            let mut regs = 1;
            for h in (1..=below).rev() {
                let depth = top + below - h;
                let cw: [__m512i; GROUP] =
                    core::array::from_fn(|j| corrections(&parts, base[j] + depth as usize));
                // The comparison's parity along x's path: its node's left child at this level.
                let left: [usize; GROUP] =
                    core::array::from_fn(|j| 2 * (local_x[j] >> (LEAF_BITS + h)));
                let (a, b) = nodes.split_at_mut(1);
                let (cur, next) = match flip {
                    0 => (&a[0], &mut b[0]),
                    _ => (&b[0], &mut a[0]),
                };
                for r in 0..regs {
                    let input: [__m512i; GROUP] = core::array::from_fn(|j| seeds(cur[j][r]));
                    let raw = mmo(&self.children, &input);
                    for j in 0..GROUP {
                        let t = control_mask(cur[j][r]);
                        let c = _mm512_mask_xor_epi64(raw[j], t, raw[j], cw[j]);
                        if r == left[j] / 4 {
                            let go_right = (local_x[j] >> (LEAF_BITS + h - 1)) as u64 & 1;
                            let bits = _mm512_test_epi64_mask(c, low_bits()) as u64;
                            par[j] ^= (bits >> (2 * (left[j] % 4))) & 1 & go_right;
                        }
                        if h > 1 {
                            next[j][2 * r] = _mm512_permutexvar_epi64(dup[0], c);
                            next[j][2 * r + 1] = _mm512_permutexvar_epi64(dup[1], c);
                        } else {
                            kids[j][r] = c;
                        }
                    }
                }
                if h > 1 {
                    regs *= 2;
                    flip ^= 1;
                }
            }
            // Leaf blocks: the value key's output, corrected with `last` under the control bit.
            for r in 0..regs {
                let input: [__m512i; GROUP] = core::array::from_fn(|j| seeds(kids[j][r]));
                let raw = mmo(&self.values, &input);
                for j in 0..GROUP {
                    let last = broadcast(&parts.last[first + slot(j)]);
                    let t = control_mask(kids[j][r]);
                    let block = _mm512_mask_xor_epi64(raw[j], t, raw[j], last);
                    let to = &mut span[j][8 * r..8 * r + 8];
                    // SAFETY: a 64-byte unaligned store into 8 words.
                    unsafe { _mm512_storeu_si512(to.as_mut_ptr().cast(), block) };
                }
            }
            for j in 0..m {
                let (x, span) = (x[j], &span[j]);
                // The parity's last part: x's leaf up to x.
                let at = 2 * (local_x[j] >> LEAF_BITS);
                let block = span[at] as u128 | (span[at + 1] as u128) << 64;
                let low = x & ((1 << LEAF_BITS) - 1);
                let prefix = (block & (u128::MAX >> (127 - low))).count_ones() as u64 & 1;
                parity[j] = par[j] ^ prefix;
                // Window bit o is local position o + 2^w where o ≤ zo (in B1), else o (in B0):
                // whole words below bit zo + 1 from B1, whole words above it from B0.
                let cut = (x.wrapping_add(half) & ((1 << w) - 1)) as usize + 1;
                let (full, part) = (cut / 64, cut % 64);
                // Per word a mask of the bits from B1 (all, the low `part`, none): a loop without
                // branches, which the compiler vectorises (a window is a few words).
                let out = &mut window[j * words..(j + 1) * words];
                let (b0, b1) = span[..2 * words].split_at(words);
                let from_b1 = (1u64 << part) - 1;
                for (i, ((o, &w0), &w1)) in out.iter_mut().zip(b0).zip(b1).enumerate() {
                    let m = ((i < full) as u64).wrapping_neg()
                        | (from_b1 & ((i == full) as u64).wrapping_neg());
                    *o = (w1 & m) | (w0 & !m);
                }
            }
        }
        Ok(())
    }
}

/// What a walk of two keys to a register needs per pair: the keys' first correction index,
/// the public bits that steer them (most significant first), and the roots' control mask.
struct PairWalk<const P: usize> {
    base: [[usize; 2]; P],
    path: [[u64; 2]; P],
    path_bits: u32,
    root_mask: __mmask8,
}

impl VaesWindow {
    /// Walks P registers of two keys each ([a, a, b, b]) down tree levels `levels` along
    /// their paths, each level's both children corrected and the comparison's parity
    /// collected: where the path turns right, the left child's control bit.
    #[inline]
    #[target_feature(enable = "avx512f,vaes")]
    fn walk_pairs<const P: usize>(
        &self,
        parts: &BitDpfKeyParts<'_>,
        walk: &PairWalk<P>,
        levels: core::ops::Range<u32>,
        state: &mut [__m512i; P],
        par: &mut [[u64; 2]; P],
    ) {
        for i in levels {
            let input = match i {
                0 => *state, // a root's bit 0 is part of its seed; its control bit is the party
                _ => state.map(|v| seeds(v)),
            };
            let raw = mmo(&self.children, &input);
            for p in 0..P {
                let t = match i {
                    0 => walk.root_mask,
                    _ => control_mask(state[p]),
                };
                let at = walk.base[p].map(|b| b + i as usize);
                for at in at {
                    prefetch_corrections(parts, at);
                }
                let cw = pair_corrections(parts, at);
                let c = _mm512_mask_xor_epi64(raw[p], t, raw[p], cw);
                let [ga, gb] = walk.path[p].map(|x| (x >> (walk.path_bits - 1 - i)) & 1);
                let bits = _mm512_test_epi64_mask(c, low_bits()) as u64;
                par[p][0] ^= bits & 1 & ga;
                par[p][1] ^= (bits >> 4) & 1 & gb;
                state[p] = _mm512_permutexvar_epi64(self.pick[(ga * 4 + 2 + gb) as usize], c);
            }
        }
    }

    /// `eval_prefix_parity_range` of core's [`BitDpf`](securerouter_core::fss::BitDpf) (the
    /// comparison) for inputs of more than 7 bits: the same bits. Two keys to a register
    /// ([a, a, b, b] gives both children of each), eight registers in lockstep.
    #[target_feature(enable = "avx512f,vaes,aes")]
    fn eval_prefix_parity_range(
        &self,
        keys: &BitDpfKeys,
        range: core::ops::Range<usize>,
        xs: &[u64],
        out: &mut [u64],
    ) -> Result<(), Error> {
        check_key_range(keys.len(), &range, xs.len(), out.len())?;
        let n = keys.in_bits();
        if n.bits() <= LEAF_BITS {
            return Err(Error::ShapeMismatch(
                "the VAES comparison kernel takes inputs of more than 7 bits",
            ));
        }
        if xs.iter().any(|&x| !n.contains(x)) {
            return Err(Error::ValueOutOfRange { bits: n.bits() });
        }
        const PAIRS: usize = GROUP;
        let parts = keys.parts();
        let levels = parts.levels;
        let nu = levels as usize;
        let root_mask: __mmask8 = if parts.party == Party::P1 { 0xff } else { 0 };
        for (g, (xs, out)) in xs
            .chunks(2 * PAIRS)
            .zip(out.chunks_mut(2 * PAIRS))
            .enumerate()
        {
            let first = range.start + g * 2 * PAIRS;
            let m = xs.len();
            // A short last group repeats its first key in the empty slots (results dropped).
            let key = |i: usize| first + if i < m { i } else { 0 };
            let x: [u64; 2 * PAIRS] = core::array::from_fn(|i| xs[key(i) - first]);
            let mut par = [[0u64; 2]; PAIRS];
            let mut state: [__m512i; PAIRS] = core::array::from_fn(|p| {
                pair(&parts.roots[key(2 * p)], &parts.roots[key(2 * p + 1)])
            });
            let walk = PairWalk {
                base: core::array::from_fn(|p| [key(2 * p) * nu, key(2 * p + 1) * nu]),
                path: core::array::from_fn(|p| [x[2 * p], x[2 * p + 1]].map(|x| x >> LEAF_BITS)),
                path_bits: levels,
                root_mask,
            };
            self.walk_pairs(&parts, &walk, 0..levels, &mut state, &mut par);
            let raw = mmo(&self.values, &state.map(|v| seeds(v)));
            for p in 0..PAIRS {
                let last = pair(&parts.last[key(2 * p)], &parts.last[key(2 * p + 1)]);
                let block = _mm512_mask_xor_epi64(raw[p], control_mask(state[p]), raw[p], last);
                let [a, _, b, _] = unlanes(block);
                for (h, block) in [a, b].into_iter().enumerate() {
                    let j = 2 * p + h;
                    if j < m {
                        let low = x[j] & ((1 << LEAF_BITS) - 1);
                        let prefix = (block & (u128::MAX >> (127 - low))).count_ones() as u64;
                        out[j] = par[p][h] ^ (prefix & 1);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::tests::cpu_runs;
    use securerouter_core::fss::{BitDpf, BitDpfKey};
    use securerouter_core::prg::{AesCtr, Domain, Seed};
    use securerouter_core::ring::BitWidth;

    /// The kernel for `test`, or `None` on a CPU without its features (each said); a CPU with
    /// them must give it.
    fn kernel(test: &str) -> Option<VaesWindow> {
        cpu_runs(test, "vaes window", &["avx512f", "vaes", "aes"])
            .then(|| VaesWindow::detect().expect("the CPU has the features: detect must give it"))
    }

    /// Equal to core's evaluation for both parties, every window width it takes, input widths
    /// from one tree level above the window to 30 bits, and inputs at the edges: the first and
    /// last window-sized subtrees (where the neighbour wraps around), both halves' boundaries,
    /// and a batch that is not a whole number of lockstep groups.
    #[test]
    fn equals_core_bit_for_bit() {
        let Some(vaes) = kernel("equals_core_bit_for_bit") else {
            return;
        };
        let dpf = BitDpf::new();
        let mut r = AesCtr::new(&Seed::from_bytes([21; 16]), Domain(7));
        for w in LEAF_BITS..=MAX_WINDOW_BITS {
            for n in [w + 1, w + 2, 21, 30] {
                let n = BitWidth::new(n).unwrap();
                let mut xs: Vec<u64> = (0..37).map(|_| n.reduce(r.next_u64())).collect();
                let (size, top) = (1u64 << w, n.reduce(u64::MAX));
                for x in [
                    0,
                    1,
                    size / 2 - 1,
                    size / 2,
                    size - 1,
                    size,
                    top,
                    top - size / 2,
                ] {
                    xs.push(x);
                    xs.push(top - x);
                }
                let pairs: Vec<(BitDpfKey, BitDpfKey)> = xs
                    .iter()
                    .map(|_| dpf.gen_keys(n, n.reduce(r.next_u64()), &mut r).unwrap())
                    .collect();
                for party in 0..2 {
                    let keys: Vec<BitDpfKey> = pairs
                        .iter()
                        .map(|p| if party == 0 { p.0.clone() } else { p.1.clone() })
                        .collect();
                    let keys = BitDpfKeys::from_keys(&keys).unwrap();
                    let words = xs.len() << (w - 6);
                    let run = |fast: bool| {
                        let (mut parity, mut window) = (vec![0; xs.len()], vec![0; words]);
                        let all = 0..xs.len();
                        match fast {
                            true => {
                                vaes.sign_window_range(&keys, all, w, &xs, &mut parity, &mut window)
                            }
                            false => dpf.eval_sign_window_range(
                                &keys,
                                all,
                                w,
                                &xs,
                                &mut parity,
                                &mut window,
                            ),
                        }
                        .unwrap();
                        (parity, window)
                    };
                    assert_eq!(run(true), run(false), "w = {w}, n = {n:?}, party {party}");
                }
            }
        }
    }

    /// The comparison equals core's for both parties, input widths from 8 to 64 bits, and
    /// inputs at the ends and around the leaf blocks' edges.
    #[test]
    fn prefix_parity_equals_core_bit_for_bit() {
        let Some(vaes) = kernel("prefix_parity_equals_core_bit_for_bit") else {
            return;
        };
        let dpf = BitDpf::new();
        let mut r = AesCtr::new(&Seed::from_bytes([23; 16]), Domain(9));
        for n in [8u32, 9, 13, 21, 37, 64] {
            let n = BitWidth::new(n).unwrap();
            let mut xs: Vec<u64> = (0..29).map(|_| n.reduce(r.next_u64())).collect();
            let top = n.reduce(u64::MAX);
            xs.extend([0, 1, 127, 128, top, top - 127, top - 128]);
            let pairs: Vec<(BitDpfKey, BitDpfKey)> = xs
                .iter()
                .map(|&x| {
                    // Some keys at or next to their input, so both outcomes occur.
                    let alpha = match r.next_u64() % 3 {
                        0 => x,
                        1 => n.reduce(x.wrapping_add(1)),
                        _ => n.reduce(r.next_u64()),
                    };
                    dpf.gen_keys(n, alpha, &mut r).unwrap()
                })
                .collect();
            for party in 0..2 {
                let keys: Vec<BitDpfKey> = pairs
                    .iter()
                    .map(|p| if party == 0 { p.0.clone() } else { p.1.clone() })
                    .collect();
                let keys = BitDpfKeys::from_keys(&keys).unwrap();
                let (mut fast, mut want) = (vec![7; xs.len()], vec![0; xs.len()]);
                let all = 0..xs.len();
                vaes.prefix_parity_range(&keys, all.clone(), &xs, &mut fast)
                    .unwrap();
                dpf.eval_prefix_parity_range(&keys, all, &xs, &mut want)
                    .unwrap();
                assert_eq!(fast, want, "n = {n:?}, party {party}");
            }
        }
    }

    /// Bad shapes and inputs are errors, as in core.
    #[test]
    fn rejects_what_core_rejects() {
        let Some(vaes) = kernel("rejects_what_core_rejects") else {
            return;
        };
        let dpf = BitDpf::new();
        let mut r = AesCtr::new(&Seed::from_bytes([22; 16]), Domain(8));
        let n = BitWidth::new(12).unwrap();
        let keys = BitDpfKeys::from_keys(&[dpf.gen_keys(n, 5, &mut r).unwrap().0]).unwrap();
        let (mut parity, mut window) = ([0u64; 1], [0u64; 2]);
        let eval = |w: u32, x: u64, parity: &mut [u64], window: &mut [u64]| {
            vaes.sign_window_range(&keys, 0..1, w, &[x], parity, window)
        };
        assert!(eval(7, 1 << 12, &mut parity, &mut window).is_err());
        assert!(eval(6, 0, &mut parity, &mut [0; 1]).is_err());
        assert!(eval(12, 0, &mut parity, &mut [0; 64]).is_err());
        assert!(eval(7, 0, &mut parity, &mut [0; 3]).is_err());
        assert!(eval(7, 0, &mut parity, &mut window).is_ok());
    }
}
