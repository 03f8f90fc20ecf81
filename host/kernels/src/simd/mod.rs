//! The host's SIMD kernels, their run-time feature detection, and the safe interface through
//! which [`HostKernels`](super::HostKernels) calls them ([`SimdKernels`]): AVX2 and AVX-512
//! (F and DQ; IFMA where present) matrix products and the lookups' masked dot products
//! (`avx2`, `avx512`), and the comparison's and the sign-and-window lookup's DPF walks with
//! VAES (`vaes_window`).
//!
//! # Unsafe code
//!
//! The host crate denies `unsafe_code`; this module and [`securerouter_runtime::sys`] (two C library calls)
//! are the only ones that allow it, and nothing else in the crate uses `unsafe`. Outside this
//! module the SIMD paths are reached only through [`SimdKernels`]' safe methods.
//!
//! The obligations are of two kinds.
//! - **CPU features.** Every kernel is a `#[target_feature]` function (but for
//!   `avx512::panel_product`, an `unsafe fn` inlined into two of them: 17). The compiler lets
//!   code that enables the same features call one freely (the kernels' helpers call each
//!   other so); anywhere else the call is `unsafe` and sound only on a CPU with those
//!   features.
//!   Such calls happen only after `is_x86_feature_detected!`: [`Simd::detect`] finds AVX2 or
//!   AVX-512F with DQ, [`SimdKernels::new`] IFMA on top of AVX-512, and `VaesWindow::detect`,
//!   the only way to make a `VaesWindow`, AVX-512F, VAES and AES-NI. A [`SimdKernels`] records
//!   what was found in private fields that nothing else sets (tests only clear them).
//! - **Raw memory.** Loads and stores of vector registers take pointers; each one below
//!   touches only memory that its argument shows is inside a live slice or array. All other
//!   reads and writes go through checked indexes: a slice shorter than its shape panics, and
//!   callers check shapes first and return errors.
//!
//! Every `unsafe` of this module, 27 in all:
//!
//! `mod.rs` (feature checks, all in [`SimdKernels`]):
//! 1. `product`: `avx512::matmul52` (AVX-512F, IFMA) where `ifma`, set only when
//!    `avx512ifma` was detected on top of [`Simd::Avx512`].
//! 2. `wrapping_product`: `avx512::matmul` (AVX-512F, DQ) where the extension is
//!    [`Simd::Avx512`], which [`Simd::detect`] gives only with `avx512f` and `avx512dq`.
//! 3. `wrapping_product`: `avx2::matmul` where it is [`Simd::Avx2`] (`avx2` detected).
//! 4. `masked_dot`: `avx512::masked_dot` (AVX-512F), returned only for [`Simd::Avx512`].
//! 5. `masked_dot`: `avx2::masked_dot` (AVX2), returned only for [`Simd::Avx2`].
//! 6. `masked_dot32`: `avx512::masked_dot32` (AVX-512F), returned only for [`Simd::Avx512`].
//!
//! `avx2.rs`:
//! 7. `masked_dot`: a 4-word load at 4g (g < 16) of the 64-entry slice `entries[64k..64k + 64]`.
//! 8. `masked_dot`: a masked load at `start` < `entries.len()`; lanes at or past the end are
//!    masked off, and a masked load does not touch (or fault on) masked-off lanes.
//! 9. `masked_dot`: a 4-word store into a `[u64; 4]`.
//! 10. `matmul`: two 4-word loads of one panel row, an 8-word `chunks_exact` chunk.
//! 11. `matmul`: a 4-word store at 4h (h < 2) of a `[u64; 8]`.
//!
//! `avx512.rs`:
//! 12. `masked_dot`: an 8-word load at 8g (g < 8) of the 64-entry slice `entries[64k..64k + 64]`.
//! 13. `masked_dot`: a masked load at `start` < `entries.len()`, lanes past the end masked
//!     off as in 8.
//! 14. `masked_dot32`: a 16-entry load at 16g (g < 4) of a 64-entry `chunks_exact` chunk.
//! 15. `matmul`: calls `panel_product`, whose `mac` (`vpmullq`) needs the AVX-512F and DQ
//!     that `matmul` enables.
//! 16. `matmul52`: calls `panel_product`, whose `mac` (`vpmadd52luq`) needs the AVX-512F and
//!     IFMA that `matmul52` enables.
//! 17. `panel_product` is an `unsafe fn`: `#[inline(always)]` without features of its own
//!     (so that each caller's `mac` inlines), it needs its caller's (15, 16).
//! 18. `panel_product`'s body: the intrinsics (its caller's features); 16-word loads of
//!     panel rows (`chunks_exact(16)`); masked stores of row i < m, columns j.. j + cols ≤ n
//!     at i·n + j of `out`, after asserting `out.len()` = m·n (computed without overflow).
//!
//! `vaes_window.rs`:
//! 19. `VaesWindow::detect`: calls `new` (AES-NI, AVX-512F) after detecting `avx512f`, `vaes`
//!     and `aes`.
//! 20. `VaesWindow::sign_window_range`: calls `eval_sign_window_range` (AVX-512F, VAES,
//!     AES-NI) on a `VaesWindow`, which only `detect` makes.
//! 21. `VaesWindow::prefix_parity_range`: calls `eval_prefix_parity_range` (the same).
//! 22. `expand_key`: a 16-byte load from a `&[u8; 16]`.
//! 23. `corrections`: a 16-byte load from a `&u128`.
//! 24. `broadcast`: a 16-byte load from a `&u128`.
//! 25. `pair`: two 16-byte loads, each from a `&u128`.
//! 26. `unlanes`: a 64-byte store into a `[u128; 4]`.
//! 27. `eval_sign_window_range`: a 64-byte store into `span[j][8r..8r + 8]`, an 8-word slice
//!     (bounds-checked).
//!
//! `prefetch_corrections` passes a pointer to `_mm_prefetch`, which is safe: a prefetch
//! never faults, and the address is computed with `wrapping_add`.
//!
//! # Secret data: no branch, no index
//!
//! Public to both servers: shapes (matrix dimensions, batch, table and window sizes, input
//! widths), the masked inputs x̂ (`xs`), the lookup tables (plaintext functions), the party,
//! key indexes, tree levels and the ring widths. Secret: matrix operands (shares, masked
//! weights), DPF key material (roots, correction seeds and control bits, last blocks) and all
//! that is derived from it (node seeds and control bits, the full-domain bits e). Per kernel:
//! - `avx2::masked_dot`: loops and loads by the table's length; e's bits only select lanes
//!   (`vblendvpd` on the sign bits of the word shifted per lane). None secret-dependent.
//! - `avx512::masked_dot`: loops, loads and the partial word's `break` by the table's length;
//!   each byte of e is the lane mask of a masked add. None.
//! - `avx512::masked_dot32`: the same with 16-bit lane masks over 32-bit entries; chosen by
//!   the public table's entries and size. None.
//! - `avx2::matmul`, `avx512::matmul`, `avx512::matmul52`: loops, indexes and store masks
//!   follow m, k and n (the result mask the ring's width); operands only enter shifts, ANDs,
//!   adds and multiplies (`vpmuludq`, `vpmulld`, `vpmullq`, `vpmadd52luq`, whose timing does
//!   not depend on the values). None.
//! - `VaesWindow::eval_sign_window_range`: branches, loop bounds, lane permutations (`pick`,
//!   `swap`) and memory indexes follow x̂ (its path bits, Y's depth, its half, the window's
//!   cut), key indexes, levels and the party; seeds go through hardware AES (no tables) and
//!   XORs; control bits only become the lane masks of masked XORs, or are ANDed with public
//!   path bits into the parity; a leaf block's prefix parity is the `count_ones` (popcnt or
//!   its branch-free software form) of a secret block under a mask of x̂'s width. None.
//! - `VaesWindow::eval_prefix_parity_range` (with `walk_pairs`): the same walk, no window.
//!   None.
//! - `VaesWindow::new`: core's public GGM keys only.
//! - The choice between kernels here and in [`HostKernels`](super::HostKernels): by CPU
//!   features, shapes, ring widths and the public table. None.

#![allow(unsafe_code)]

use securerouter_core::Error;
use securerouter_core::fss::BitDpfKeys;
use securerouter_core::gate::{CpuKernels, Kernels, check_matmul};
use securerouter_core::ring::BitWidth;
use std::ops::Range;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod vaes_window;

/// The SIMD extension the host kernels use for matrix products and lookups' masked dot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Simd {
    /// Core's portable kernels.
    #[default]
    None,
    /// AVX2: 64-bit products from 32-bit halves.
    Avx2,
    /// AVX-512 F and DQ: 64-bit lane products.
    Avx512,
}

impl Simd {
    /// The best this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq")
            {
                return Simd::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Simd::Avx2;
            }
        }
        Simd::None
    }

    /// "avx512", "avx2" or "portable".
    pub fn name(self) -> &'static str {
        match self {
            Simd::None => "portable",
            Simd::Avx2 => "avx2",
            Simd::Avx512 => "avx512",
        }
    }
}

/// The SIMD paths this CPU has, detected once: the proof each `unsafe` call below relies on.
#[derive(Debug)]
pub(super) struct SimdKernels {
    /// The extension for matrix products and masked dots.
    simd: Simd,
    /// AVX-512 IFMA's 52-bit multiply-adds, for products in rings of up to 52 bits.
    ifma: bool,
    /// The GGM's round keys for the VAES walks, where the CPU has VAES and AVX-512.
    #[cfg(target_arch = "x86_64")]
    vaes: Option<vaes_window::VaesWindow>,
}

impl SimdKernels {
    /// `simd`, or the best this CPU has below it, with IFMA and VAES where it has them too.
    pub(super) fn new(simd: Simd) -> Self {
        let simd = match (simd, Simd::detect()) {
            (Simd::Avx512, Simd::Avx512) => Simd::Avx512,
            (Simd::Avx512 | Simd::Avx2, Simd::Avx512 | Simd::Avx2) => Simd::Avx2,
            _ => Simd::None,
        };
        #[cfg(target_arch = "x86_64")]
        let ifma = simd == Simd::Avx512 && std::arch::is_x86_feature_detected!("avx512ifma");
        #[cfg(not(target_arch = "x86_64"))]
        let ifma = false;
        SimdKernels {
            simd,
            ifma,
            #[cfg(target_arch = "x86_64")]
            vaes: (simd == Simd::Avx512)
                .then(vaes_window::VaesWindow::detect)
                .flatten(),
        }
    }

    /// The extension for matrix products and masked dots.
    pub(super) fn simd(&self) -> Simd {
        self.simd
    }

    /// Whether products in rings of up to 52 bits use AVX-512 IFMA.
    pub(super) fn ifma(&self) -> bool {
        self.ifma
    }

    /// Whether the DPF walks use VAES.
    pub(super) fn vaes(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return self.vaes.is_some();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// One thread's matrix product, reduced to `ring` if given: with IFMA for rings of up to
    /// 52 bits where the CPU has it, else the wrapping product (`cpu`'s without SIMD), reduced.
    pub(super) fn product(
        &self,
        cpu: &CpuKernels,
        a: &[u64],
        b: &[u64],
        (m, k, n): (usize, usize, usize),
        ring: Option<BitWidth>,
        out: &mut [u64],
    ) -> Result<(), Error> {
        #[cfg(target_arch = "x86_64")]
        if let Some(ring) = ring.filter(|r| self.ifma && r.bits() <= 52) {
            check_matmul(a, b, (1, m, k, n), out)?;
            // SAFETY: `ifma` is set only where AVX-512F and IFMA were detected.
            unsafe { avx512::matmul52(a, b, (m, k, n), ring.mask(), out) };
            return Ok(());
        }
        self.wrapping_product(cpu, a, b, (m, k, n), out)?;
        if let Some(ring) = ring {
            out.iter_mut().for_each(|v| *v = ring.reduce(*v));
        }
        Ok(())
    }

    /// One thread's wrapping matrix product in Z_2^64.
    fn wrapping_product(
        &self,
        cpu: &CpuKernels,
        a: &[u64],
        b: &[u64],
        (m, k, n): (usize, usize, usize),
        out: &mut [u64],
    ) -> Result<(), Error> {
        #[cfg(target_arch = "x86_64")]
        if self.simd != Simd::None {
            check_matmul(a, b, (1, m, k, n), out)?;
            match self.simd {
                // SAFETY: Simd::Avx512 only where AVX-512F and DQ were detected.
                Simd::Avx512 => unsafe { avx512::matmul(a, b, m, k, n, out) },
                // SAFETY: Simd::Avx2 only where AVX2 was detected.
                _ => unsafe { avx2::matmul(a, b, m, k, n, out) },
            }
            return Ok(());
        }
        cpu.matmul(a, b, m, k, n, out)
    }

    /// The lookups' masked dot product on this CPU's best extension (core's without one).
    pub(super) fn masked_dot(&self) -> fn(&[u64], &[u64]) -> u64 {
        #[cfg(target_arch = "x86_64")]
        match self.simd {
            // SAFETY: Simd::Avx512 only where AVX-512F was detected.
            Simd::Avx512 => return |e, t| unsafe { avx512::masked_dot(e, t) },
            // SAFETY: Simd::Avx2 only where AVX2 was detected.
            Simd::Avx2 => return |e, t| unsafe { avx2::masked_dot(e, t) },
            Simd::None => {}
        }
        securerouter_core::gate::masked_dot
    }

    /// The masked dot product over 32-bit entries, 16 to a register, where the CPU has
    /// AVX-512: the exact sum when the selected entries cannot sum past 2^32, which the
    /// caller checks. Entries come in whole words of 64.
    pub(super) fn masked_dot32(&self) -> Option<impl Fn(&[u64], &[u32]) -> u64 + Copy> {
        #[cfg(target_arch = "x86_64")]
        return (self.simd == Simd::Avx512).then_some(|e: &[u64], t: &[u32]| {
            // SAFETY: Simd::Avx512 only where AVX-512F was detected.
            unsafe { avx512::masked_dot32(e, t) }
        });
        #[cfg(not(target_arch = "x86_64"))]
        None::<fn(&[u64], &[u32]) -> u64>
    }

    /// One thread's comparison, the prefix parity of the keys in `range`: with VAES where the
    /// CPU has it and the keys have more than 7 input bits, else `cpu`'s.
    pub(super) fn prefix_parity_range(
        &self,
        cpu: &CpuKernels,
        keys: &BitDpfKeys,
        range: Range<usize>,
        xs: &[u64],
        out: &mut [u64],
    ) -> Result<(), Error> {
        #[cfg(target_arch = "x86_64")]
        if let Some(vaes) = self
            .vaes
            .as_ref()
            .filter(|_| keys.in_bits().bits() > securerouter_core::fss::LEAF_BITS)
        {
            return vaes.prefix_parity_range(keys, range, xs, out);
        }
        cpu.dpf_prefix_parity_range(keys, range, xs, out)
    }

    /// The sign-and-window walk for windows of `w` bits with VAES, where the CPU has it and
    /// the kernel takes such windows of `keys`: core's `eval_sign_window_range`, bit for bit,
    /// as the closure that core's `dpf_sign_window_with` takes.
    #[allow(clippy::type_complexity)]
    pub(super) fn window<'a>(
        &'a self,
        keys: &'a BitDpfKeys,
        w: u32,
    ) -> Option<
        impl Fn(Range<usize>, u32, &[u64], &mut [u64], &mut [u64]) -> Result<(), Error> + Sync + 'a,
    > {
        #[cfg(target_arch = "x86_64")]
        return self
            .vaes
            .as_ref()
            .filter(|_| w <= vaes_window::MAX_WINDOW_BITS && w < keys.in_bits().bits())
            .map(|vaes| {
                move |range, w, xs: &[u64], parity: &mut [u64], window: &mut [u64]| {
                    vaes.sign_window_range(keys, range, w, xs, parity, window)
                }
            });
        #[cfg(not(target_arch = "x86_64"))]
        None::<securerouter_core::gate::WindowBits<'a>>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HostKernels, MIN_KEYS_PER_THREAD};
    use securerouter_core::fss::{BitDpf, BitDpfKey, BitDpfKeys};
    use securerouter_core::prg::{AesCtr, Domain, Seed};

    /// Whether this CPU has all of `features`, saying on which `kernel` `test` runs, or that
    /// it skips it and why (the lines CI counts).
    pub(super) fn cpu_runs(test: &str, kernel: &str, features: &[&str]) -> bool {
        let missing: Vec<&str> = features.iter().copied().filter(|f| !cpu_has(f)).collect();
        match missing.is_empty() {
            true => eprintln!("{test}: running on {kernel}: {}", features.join(", ")),
            false => eprintln!(
                "SKIPPED {test}: {kernel} needs {}, this CPU lacks it",
                missing.join(", ")
            ),
        }
        missing.is_empty()
    }

    /// Whether this CPU has `feature`, one of those the kernels use.
    fn cpu_has(feature: &str) -> bool {
        #[cfg(target_arch = "x86_64")]
        return match feature {
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            "avx512dq" => std::arch::is_x86_feature_detected!("avx512dq"),
            "avx512ifma" => std::arch::is_x86_feature_detected!("avx512ifma"),
            "vaes" => std::arch::is_x86_feature_detected!("vaes"),
            "aes" => std::arch::is_x86_feature_detected!("aes"),
            _ => panic!("no detection for {feature}"),
        };
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// A SIMD path through the host kernels: the CPU features it needs, kernels on it, and
    /// whether kernels took it.
    struct Path {
        name: &'static str,
        features: &'static [&'static str],
        kernels: fn() -> HostKernels,
        took: fn(&HostKernels) -> bool,
    }

    /// AVX2 products and masked dots.
    const AVX2: Path = Path {
        name: "avx2",
        features: &["avx2"],
        kernels: || HostKernels::with_simd(Simd::Avx2),
        took: |k| k.simd() == Simd::Avx2,
    };

    /// AVX-512 products and masked dots alone, as on a CPU without IFMA and VAES.
    const AVX512: Path = Path {
        name: "avx512",
        features: &["avx512f", "avx512dq"],
        kernels: || {
            let mut kernels = HostKernels::with_simd(Simd::Avx512);
            kernels.simd.ifma = false;
            #[cfg(target_arch = "x86_64")]
            {
                kernels.simd.vaes = None;
            }
            kernels
        },
        took: |k| k.simd() == Simd::Avx512,
    };

    /// AVX-512 with IFMA's products in rings of up to 52 bits.
    const IFMA: Path = Path {
        name: "avx512 ifma",
        features: &["avx512f", "avx512dq", "avx512ifma"],
        kernels: || HostKernels::with_simd(Simd::Avx512),
        took: |k| k.ifma(),
    };

    /// AVX-512 with the VAES DPF walks.
    const VAES: Path = Path {
        name: "avx512 vaes",
        features: &["avx512f", "avx512dq", "vaes", "aes"],
        kernels: || HostKernels::with_simd(Simd::Avx512),
        took: |k| k.vaes(),
    };

    /// Kernels on each of `paths` this CPU has the features for, named (the others skipped,
    /// each said); kernels that fall back from a path the CPU has fail the test.
    fn kernels_on(test: &str, paths: &[Path]) -> Vec<(&'static str, HostKernels)> {
        paths
            .iter()
            .filter(|path| cpu_runs(test, path.name, path.features))
            .map(|path| {
                let kernels = (path.kernels)();
                assert!(
                    (path.took)(&kernels),
                    "{test}: this CPU has {} but the kernels did not take {}",
                    path.features.join(", "),
                    path.name
                );
                (path.name, kernels)
            })
            .collect()
    }

    /// Same dot and ones as the portable kernel for every domain size from a partial word to
    /// several words, on random tables, points and inputs.
    #[test]
    fn lookup_matches_the_portable_kernel_exactly() {
        let cpu = CpuKernels::new();
        let test = "lookup_matches_the_portable_kernel_exactly";
        for (path, fast) in kernels_on(test, &[AVX2, AVX512]) {
            let dpf = BitDpf::new();
            let mut r = AesCtr::new(&Seed::from_bytes([9; 16]), Domain(1));
            for bits in [1u32, 2, 3, 5, 6, 7, 8, 10, 12] {
                let inw = BitWidth::new(bits).unwrap();
                let out = BitWidth::new(13 + bits).unwrap();
                let table: Vec<u64> = (0..1usize << bits)
                    .map(|_| out.reduce(r.next_u64()))
                    .collect();
                let keys: Vec<BitDpfKey> = (0..40)
                    .map(|_| {
                        dpf.gen_keys(inw, inw.reduce(r.next_u64()), &mut r)
                            .unwrap()
                            .1
                    })
                    .collect();
                let keys = BitDpfKeys::from_keys(&keys).unwrap();
                let xs: Vec<u64> = (0..40).map(|_| inw.reduce(r.next_u64())).collect();
                let run = |k: &dyn Kernels| {
                    let (mut dot, mut ones) = (vec![0u64; 40], vec![0u64; 40]);
                    k.dpf_lookup(&keys, &xs, &table, out, &mut dot, &mut ones)
                        .unwrap();
                    (dot, ones)
                };
                assert_eq!(run(&fast), run(&cpu), "{path}, {bits}-bit table");
            }
        }
    }

    /// The sign-and-window kernel equals the portable one, with tables whose entries sum within
    /// 32 bits (AVX-512 adds them 16 to a register; entries at the bound's edge included) and
    /// wider ones, at several window sizes, split between threads or not.
    #[test]
    fn sign_window_matches_the_portable_kernel_exactly() {
        let cpu = CpuKernels::new();
        let dpf = BitDpf::new();
        let mut r = AesCtr::new(&Seed::from_bytes([13; 16]), Domain(5));
        let n = BitWidth::new(21).unwrap();
        let count = 2 * MIN_KEYS_PER_THREAD + 9;
        let keys: Vec<BitDpfKey> = (0..count)
            .map(|_| dpf.gen_keys(n, n.reduce(r.next_u64()), &mut r).unwrap().1)
            .collect();
        let keys = BitDpfKeys::from_keys(&keys).unwrap();
        let xs: Vec<u64> = (0..count).map(|_| n.reduce(r.next_u64())).collect();
        let test = "sign_window_matches_the_portable_kernel_exactly";
        let mut kernels = kernels_on(test, &[AVX2, AVX512, VAES]);
        kernels.push((
            "the best path, 2 threads",
            HostKernels::new().with_threads(2),
        ));
        for (path, fast) in kernels {
            for w in [7u32, 10] {
                let size = 1u64 << w;
                let bound = (1u64 << 32) / size; // entries below it take the 32-bit sums
                for (name, top) in [("narrow", bound), ("wide", u64::MAX)] {
                    let mut table: Vec<u64> = (0..size).map(|_| r.next_u64() % top).collect();
                    table[3] = top - 1;
                    let run = |k: &dyn Kernels| {
                        let (mut parity, mut dot) = (vec![0u64; count], vec![0u64; count]);
                        k.dpf_sign_window(
                            &keys,
                            &xs,
                            &table,
                            BitWidth::FULL,
                            &mut parity,
                            &mut dot,
                        )
                        .unwrap();
                        (parity, dot)
                    };
                    assert_eq!(run(&fast), run(&cpu), "{path}, w = {w}, {name}");
                }
            }
        }
    }

    /// The SIMD products equal core's on random operands of shapes with and without
    /// remainders (rows not a multiple of the block's, columns not of 8 or 16, narrow and
    /// single columns).
    #[test]
    fn matmul_matches_the_portable_kernel_exactly() {
        let cpu = CpuKernels::new();
        let test = "matmul_matches_the_portable_kernel_exactly";
        for (path, fast) in kernels_on(test, &[AVX2, AVX512]) {
            let mut r = AesCtr::new(&Seed::from_bytes([10; 16]), Domain(2));
            for (m, k, n) in [
                (1, 1, 1),
                (3, 5, 7),
                (4, 16, 16),
                (9, 33, 17),
                (128, 64, 40),
                (5, 2, 130),
                (3, 7, 8),
                (2, 3, 9),
            ] {
                let mut rand =
                    |len: usize| -> Vec<u64> { (0..len).map(|_| r.next_u64()).collect() };
                let (a, b) = (rand(m * k), rand(k * n));
                let (mut want, mut got) = (vec![0u64; m * n], vec![7u64; m * n]);
                cpu.matmul(&a, &b, m, k, n, &mut want).unwrap();
                fast.matmul(&a, &b, m, k, n, &mut got).unwrap();
                assert_eq!(got, want, "{path}, {m}x{k}x{n}");
            }
            let mut out = [0u64; 4];
            assert!(
                fast.matmul(&[1; 6], &[1; 6], 2, 3, 2, &mut out[..3])
                    .is_err()
            );
        }
    }

    /// Products reduced to a ring of at most 52 bits (AVX-512 IFMA where the CPU has it) and
    /// of more equal core's reduced product, on shapes with and without remainders, in batches,
    /// on one thread and split between threads.
    #[test]
    fn reduced_matmul_matches_the_portable_kernel_exactly() {
        let cpu = CpuKernels::new();
        let mut r = AesCtr::new(&Seed::from_bytes([12; 16]), Domain(4));
        let test = "reduced_matmul_matches_the_portable_kernel_exactly";
        let mut kernels = kernels_on(test, &[AVX2, AVX512, IFMA]);
        kernels.push((
            "the best path, 3 threads",
            HostKernels::new().with_threads(3),
        ));
        for (path, fast) in kernels {
            for bits in [1u32, 26, 38, 52, 53, 64] {
                let ring = BitWidth::new(bits).unwrap();
                for (batch, m, k, n) in [(1, 3, 5, 7), (2, 9, 33, 17), (1, 130, 160, 151)] {
                    let mut rand =
                        |len: usize| -> Vec<u64> { (0..len).map(|_| r.next_u64()).collect() };
                    let (a, b) = (rand(batch * m * k), rand(batch * k * n));
                    let (mut want, mut got) =
                        (vec![0u64; batch * m * n], vec![7u64; batch * m * n]);
                    let dims = (batch, m, k, n);
                    cpu.matmul_reduced(&a, &b, dims, ring, &mut want).unwrap();
                    fast.matmul_reduced(&a, &b, dims, ring, &mut got).unwrap();
                    assert!(want.iter().all(|&v| ring.contains(v)));
                    assert_eq!(got, want, "{path}, {bits} bits, {dims:?}");
                }
            }
            let mut out = [0u64; 4];
            let ring = BitWidth::new(52).unwrap();
            assert!(
                fast.matmul_reduced(&[1; 6], &[1; 6], (1, 2, 3, 2), ring, &mut out[..3])
                    .is_err()
            );
        }
    }

    /// The comparison equals the portable one where the keys walk with VAES (more than 7
    /// input bits) and where they do not, for a batch that is not a whole number of lockstep
    /// groups.
    #[test]
    fn comparison_matches_the_portable_kernel_exactly() {
        let cpu = CpuKernels::new();
        let dpf = BitDpf::new();
        let mut r = AesCtr::new(&Seed::from_bytes([14; 16]), Domain(6));
        let test = "comparison_matches_the_portable_kernel_exactly";
        for (path, fast) in kernels_on(test, &[VAES]) {
            for bits in [7u32, 8, 21, 64] {
                let n = BitWidth::new(bits).unwrap();
                let keys: Vec<BitDpfKey> = (0..101)
                    .map(|_| dpf.gen_keys(n, n.reduce(r.next_u64()), &mut r).unwrap().1)
                    .collect();
                let keys = BitDpfKeys::from_keys(&keys).unwrap();
                let xs: Vec<u64> = (0..101).map(|_| n.reduce(r.next_u64())).collect();
                let run = |k: &dyn Kernels| {
                    let mut out = vec![9u64; xs.len()];
                    k.dpf_prefix_parity(&keys, &xs, &mut out).unwrap();
                    out
                };
                assert_eq!(run(&fast), run(&cpu), "{path}, {bits}-bit inputs");
            }
        }
    }
}
