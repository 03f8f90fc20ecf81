//! The servers' local math: core's portable kernels, with matrix products and the lookup gate's
//! masked dot product in AVX-512 where the CPU has it (they are most of a server's local work), or
//! the gpu crate's CUDA kernels when a server is started with `--gpu` and a GPU is usable.
//!
//! Results are identical to [`CpuKernels`] bit for bit (tested); only speed differs.

use securerouter_core::Error;
use securerouter_core::fss::BitDpfKeys;
use securerouter_core::gate::{CpuKernels, Kernels, ServerWeights, check_matmul};
use securerouter_core::ring::BitWidth;
use securerouter_gpu::CudaKernels;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The kernels a server runs its sessions on: this CPU's, or a CUDA device's.
#[derive(Clone, Debug)]
pub enum ServerKernels {
    /// [`HostKernels`] on this CPU.
    Cpu(Arc<HostKernels>),
    /// [`CudaKernels`] on a GPU.
    Gpu(CudaKernels),
}

impl ServerKernels {
    /// The CPU kernels, or with `gpu` the first CUDA device's; when that is unusable, the CPU
    /// kernels after one log line that says why.
    pub fn select(gpu: bool) -> Self {
        let cpu = || ServerKernels::Cpu(Arc::new(HostKernels::new()));
        if !gpu {
            return cpu();
        }
        match CudaKernels::open(0) {
            Ok(k) => {
                tracing::info!("server kernels run on the GPU: {}", k.info());
                ServerKernels::Gpu(k)
            }
            Err(why) => {
                tracing::warn!("{}", securerouter_gpu::cpu_fallback_message(&why));
                cpu()
            }
        }
    }

    /// Keeps a server's weights on the GPU for the server's life (nothing to do on the CPU);
    /// returns the bytes copied.
    ///
    /// # Errors
    /// When the copy to the GPU fails.
    pub fn keep_resident(&self, weights: &Arc<Vec<ServerWeights>>) -> Result<usize, Error> {
        match self {
            ServerKernels::Cpu(_) => Ok(0),
            ServerKernels::Gpu(k) => k.keep_resident(weights.clone()),
        }
    }
}

impl fmt::Display for ServerKernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerKernels::Cpu(k) if k.uses_avx512() => f.write_str("cpu (avx512)"),
            ServerKernels::Cpu(_) => f.write_str("cpu"),
            ServerKernels::Gpu(k) => write!(f, "cuda: {}", k.info().name),
        }
    }
}

impl ServerKernels {
    fn backend(&self) -> &dyn Kernels {
        match self {
            ServerKernels::Cpu(k) => &**k,
            ServerKernels::Gpu(k) => k,
        }
    }
}

impl Kernels for ServerKernels {
    fn matmul(
        &self,
        a: &[u64],
        b: &[u64],
        m: usize,
        k: usize,
        n: usize,
        out: &mut [u64],
    ) -> Result<(), Error> {
        self.backend().matmul(a, b, m, k, n, out)
    }

    fn matmul_batch(
        &self,
        a: &[u64],
        b: &[u64],
        dims: (usize, usize, usize, usize),
        out: &mut [u64],
    ) -> Result<(), Error> {
        self.backend().matmul_batch(a, b, dims, out)
    }

    fn dpf_prefix_parity(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        out: &mut [u64],
    ) -> Result<(), Error> {
        self.backend().dpf_prefix_parity(keys, xs, out)
    }

    fn dpf_lookup(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        table: &[u64],
        out_width: BitWidth,
        dot: &mut [u64],
        ones: &mut [u64],
    ) -> Result<(), Error> {
        self.backend()
            .dpf_lookup(keys, xs, table, out_width, dot, ones)
    }
}

/// [`CpuKernels`] with SIMD where this CPU supports it, detected once at construction.
#[derive(Debug, Default)]
pub struct HostKernels {
    cpu: CpuKernels,
    avx512: bool,
}

impl HostKernels {
    /// Kernels for this CPU.
    pub fn new() -> Self {
        HostKernels {
            cpu: CpuKernels::new(),
            avx512: avx512_available(),
        }
    }

    /// Whether the AVX-512 products (matmul, lookup) are in use.
    pub fn uses_avx512(&self) -> bool {
        self.avx512
    }
}

/// Kernels that add the time spent in them to a clock: a session reports it as `kernel_s`,
/// the part of its online time the kernels (CPU or GPU, copies included) took.
#[derive(Debug)]
pub struct TimedKernels<K> {
    inner: K,
    nanos: Arc<AtomicU64>,
}

impl<K: Kernels> TimedKernels<K> {
    /// `inner`, timed from zero.
    pub fn new(inner: K) -> Self {
        TimedKernels {
            inner,
            nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A reading of the clock that stays valid after the kernels are handed on.
    pub fn clock(&self) -> KernelClock {
        KernelClock(self.nanos.clone())
    }

    fn timed<T>(&self, f: impl FnOnce(&K) -> T) -> T {
        let start = Instant::now();
        let out = f(&self.inner);
        let spent = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(spent, Ordering::Relaxed);
        out
    }
}

/// The time [`TimedKernels`] have spent so far.
#[derive(Clone, Debug)]
pub struct KernelClock(Arc<AtomicU64>);

impl KernelClock {
    /// Seconds spent in the kernels.
    pub fn seconds(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 1e9
    }
}

impl<K: Kernels> Kernels for TimedKernels<K> {
    fn matmul(
        &self,
        a: &[u64],
        b: &[u64],
        m: usize,
        k: usize,
        n: usize,
        out: &mut [u64],
    ) -> Result<(), Error> {
        self.timed(|x| x.matmul(a, b, m, k, n, out))
    }

    fn matmul_batch(
        &self,
        a: &[u64],
        b: &[u64],
        dims: (usize, usize, usize, usize),
        out: &mut [u64],
    ) -> Result<(), Error> {
        self.timed(|x| x.matmul_batch(a, b, dims, out))
    }

    fn dpf_prefix_parity(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        out: &mut [u64],
    ) -> Result<(), Error> {
        self.timed(|x| x.dpf_prefix_parity(keys, xs, out))
    }

    fn dpf_lookup(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        table: &[u64],
        out_width: BitWidth,
        dot: &mut [u64],
        ones: &mut [u64],
    ) -> Result<(), Error> {
        self.timed(|x| x.dpf_lookup(keys, xs, table, out_width, dot, ones))
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512_available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_available() -> bool {
    false
}

impl Kernels for HostKernels {
    fn matmul(
        &self,
        a: &[u64],
        b: &[u64],
        m: usize,
        k: usize,
        n: usize,
        out: &mut [u64],
    ) -> Result<(), Error> {
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            check_matmul(a, b, (1, m, k, n), out)?;
            // SAFETY: AVX-512F and DQ were detected on this CPU at construction; the lengths
            // match the dimensions (checked above).
            unsafe { avx512::matmul(a, b, m, k, n, out) };
            return Ok(());
        }
        self.cpu.matmul(a, b, m, k, n, out)
    }

    fn dpf_prefix_parity(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        out: &mut [u64],
    ) -> Result<(), Error> {
        self.cpu.dpf_prefix_parity(keys, xs, out)
    }

    fn dpf_lookup(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        table: &[u64],
        out_width: BitWidth,
        dot: &mut [u64],
        ones: &mut [u64],
    ) -> Result<(), Error> {
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            // SAFETY: AVX-512F was detected on this CPU at construction.
            let dot_avx512 = |e: &[u64], entries: &[u64]| unsafe { avx512::masked_dot(e, entries) };
            return self
                .cpu
                .dpf_lookup_with(keys, xs, table, out_width, dot, ones, dot_avx512);
        }
        self.cpu.dpf_lookup(keys, xs, table, out_width, dot, ones)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Σ_j bit_j(e)·entries[j] in Z_2^64 (bit j = bit j mod 64 of word j / 64; bits of e beyond
    /// `entries.len()` are zero). Each byte of e is the lane mask of one masked add of eight
    /// entries: key bits only ever select lanes, never a branch or an address.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn masked_dot(e: &[u64], entries: &[u64]) -> u64 {
        let mut acc = [_mm512_setzero_si512(); 4];
        let full = entries.len() / 64;
        // Whole words: 64 entries, eight masked adds into four independent sums.
        for (k, &word) in e[..full].iter().enumerate() {
            let base = entries[64 * k..64 * (k + 1)].as_ptr();
            for group in 0..8 {
                let keep = (word >> (8 * group)) as u8;
                // SAFETY: entries 64k + 8·group .. +8 lie inside the slice (k < full).
                let v = unsafe { _mm512_loadu_epi64(base.add(8 * group).cast()) };
                let a = &mut acc[group % 4];
                *a = _mm512_mask_add_epi64(*a, keep, *a, v);
            }
        }
        // Tables of fewer than 64 entries: one partial word, lanes past the end masked off.
        if let Some(&word) = e.get(full).filter(|_| !entries.len().is_multiple_of(64)) {
            for group in 0..8 {
                let start = 64 * full + 8 * group;
                if start >= entries.len() {
                    break; // a public length
                }
                let valid = (entries.len() - start).min(8);
                let lanes: __mmask8 = if valid == 8 { 0xff } else { (1u8 << valid) - 1 };
                let keep = (word >> (8 * group)) as u8 & lanes;
                // SAFETY: lanes outside `valid` are masked off, so nothing beyond the slice
                // is read (masked loads do not touch masked-off lanes).
                let v =
                    unsafe { _mm512_maskz_loadu_epi64(lanes, entries.as_ptr().add(start).cast()) };
                acc[0] = _mm512_mask_add_epi64(acc[0], keep, acc[0], v);
            }
        }
        let sum = _mm512_add_epi64(
            _mm512_add_epi64(acc[0], acc[1]),
            _mm512_add_epi64(acc[2], acc[3]),
        );
        _mm512_reduce_add_epi64(sum) as u64
    }

    /// Rows of `out` a matmul block holds in registers.
    const ROWS: usize = 4;

    /// Wrapping out (m×n) = a (m×k) · b (k×n), row-major, with 64-bit lane products
    /// (`vpmullq`): blocks of 4 rows × 16 columns of `out` in eight registers. Column blocks
    /// are outermost, and each block's 16 columns of b are first copied into one contiguous
    /// panel (k × 16): read in place, every step of the inner loop would touch another row of
    /// b, n·8 bytes on, and a wide b (n = 3072) misses the TLB on nearly every step (the panel
    /// made such products 2.7 to 3.3 times faster here).
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512DQ; the slices must hold m·k, k·n and m·n
    /// elements.
    #[target_feature(enable = "avx512f,avx512dq")]
    pub(super) unsafe fn matmul(
        a: &[u64],
        b: &[u64],
        m: usize,
        k: usize,
        n: usize,
        out: &mut [u64],
    ) {
        let lanes =
            |count: usize| -> __mmask8 { if count >= 8 { 0xff } else { (1u8 << count) - 1 } };
        let mut panel = vec![0u64; k * 16];
        for j in (0..n).step_by(16) {
            let cols = (n - j).min(16);
            let (m0, m1) = (lanes(cols), lanes(cols.saturating_sub(8)));
            // Columns beyond `cols` keep stale values; their lanes are never stored.
            for (p, row) in panel.chunks_exact_mut(16).enumerate() {
                row[..cols].copy_from_slice(&b[p * n + j..p * n + j + cols]);
            }
            for i in (0..m).step_by(ROWS) {
                let rows = (m - i).min(ROWS);
                let mut acc = [[_mm512_setzero_si512(); 2]; ROWS];
                for (p, row) in panel.chunks_exact(16).enumerate() {
                    // SAFETY: a panel row holds 16 elements, two full registers.
                    let b0 = unsafe { _mm512_loadu_si512(row.as_ptr().cast()) };
                    let b1 = unsafe { _mm512_loadu_si512(row.as_ptr().add(8).cast()) };
                    for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                        let x = _mm512_set1_epi64(a[(i + r) * k + p] as i64);
                        acc[0] = _mm512_add_epi64(acc[0], _mm512_mullo_epi64(x, b0));
                        acc[1] = _mm512_add_epi64(acc[1], _mm512_mullo_epi64(x, b1));
                    }
                }
                for (r, acc) in acc.iter().enumerate().take(rows) {
                    let op = out.as_mut_ptr().wrapping_add((i + r) * n + j);
                    // SAFETY: lanes m0 (m1) of out's row i + r, columns j.. (j + 8..), lie
                    // inside out; masked-off lanes are not written.
                    unsafe {
                        _mm512_mask_storeu_epi64(op.cast(), m0, acc[0]);
                        _mm512_mask_storeu_epi64(op.wrapping_add(8).cast(), m1, acc[1]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use securerouter_core::fss::{BitDpf, BitDpfKey};
    use securerouter_core::prg::{AesCtr, Domain, Seed};

    /// Same dot and ones as the portable kernel for every domain size from a partial word to
    /// several words, on random tables, points and inputs.
    #[test]
    fn matches_the_portable_kernel_exactly() {
        let fast = HostKernels::new();
        if !fast.uses_avx512() {
            eprintln!("no AVX-512 on this CPU: the host kernels are the portable ones");
        }
        let cpu = CpuKernels::new();
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
            assert_eq!(run(&fast), run(&cpu), "{bits}-bit table");
        }
    }

    /// The AVX-512 product equals core's on random operands of shapes with and without
    /// remainders (rows not a multiple of 4, columns not of 16, narrow and single columns).
    #[test]
    fn matmul_matches_the_portable_kernel_exactly() {
        let fast = HostKernels::new();
        let cpu = CpuKernels::new();
        let mut r = AesCtr::new(&Seed::from_bytes([10; 16]), Domain(2));
        for (m, k, n) in [
            (1, 1, 1),
            (3, 5, 7),
            (4, 16, 16),
            (9, 33, 17),
            (128, 64, 40),
            (5, 2, 130),
        ] {
            let mut rand = |len: usize| -> Vec<u64> { (0..len).map(|_| r.next_u64()).collect() };
            let (a, b) = (rand(m * k), rand(k * n));
            let (mut want, mut got) = (vec![0u64; m * n], vec![7u64; m * n]);
            cpu.matmul(&a, &b, m, k, n, &mut want).unwrap();
            fast.matmul(&a, &b, m, k, n, &mut got).unwrap();
            assert_eq!(got, want, "{m}x{k}x{n}");
        }
        let mut out = [0u64; 4];
        assert!(
            fast.matmul(&[1; 6], &[1; 6], 2, 3, 2, &mut out[..3])
                .is_err()
        );
    }
}
