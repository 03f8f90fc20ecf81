//! The servers' and the dealer's local math: core's portable kernels, with matrix products and
//! the lookups' masked dot products in AVX-512 or AVX2 where the CPU has it (they are most of a
//! server's local work; products in rings of up to 52 bits with AVX-512 IFMA's 52-bit
//! multiply-adds), the sign-and-window DPF walk four AES blocks to a register with VAES, and
//! large calls split between the CPU's cores, or the gpu crate's CUDA kernels when a server is
//! started with `--gpu` and a GPU is usable.
//!
//! Results are identical to [`CpuKernels`] bit for bit (tested); only speed differs.
//!
//! The SIMD kernels, their feature detection and the calls into them live in the private
//! module `simd`, the only code of this crate allowed `unsafe`; its documentation lists every
//! `unsafe` with its safety argument, and what each kernel branches on and indexes by (never
//! secret data). The rest of the crate splits calls between threads and reaches the SIMD paths
//! only through `simd`'s safe methods.

#![deny(unsafe_code)]

use securerouter_core::Error;
use securerouter_core::fss::BitDpfKeys;
use securerouter_core::gate::{
    CpuKernels, Kernels, ServerWeights, WindowBits, check_key_batch, check_matmul, each_product,
    table_rotations,
};
use securerouter_core::ring::BitWidth;
use securerouter_gpu::CudaKernels;
use simd::SimdKernels;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub use simd::Simd;

/// The kernels a server runs its sessions on: this CPU's, or a CUDA device's.
#[derive(Clone, Debug)]
pub enum ServerKernels {
    /// [`HostKernels`] on this CPU.
    Cpu(Arc<HostKernels>),
    /// [`CudaKernels`] on a GPU.
    Gpu(CudaKernels),
}

impl ServerKernels {
    /// The CPU kernels on `threads` threads (0: one per core), or with `gpu` the first CUDA
    /// device's; when that is unusable, the CPU kernels after one log line that says why.
    pub fn select(gpu: bool, threads: usize) -> Self {
        let cpu = || {
            let kernels = HostKernels::new();
            let kernels = match threads {
                0 => kernels,
                n => kernels.with_threads(n),
            };
            ServerKernels::Cpu(Arc::new(kernels))
        };
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
            ServerKernels::Cpu(k) => {
                let simd = (k.simd() != Simd::None).then(|| k.simd().name().to_string());
                let ifma = k.ifma().then(|| "ifma".to_string());
                let threads = (k.threads() > 1).then(|| format!("{} threads", k.threads()));
                let notes: Vec<String> = simd.into_iter().chain(ifma).chain(threads).collect();
                match notes.is_empty() {
                    true => f.write_str("cpu"),
                    false => write!(f, "cpu ({})", notes.join(", ")),
                }
            }
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

    fn matmul_reduced(
        &self,
        a: &[u64],
        b: &[u64],
        dims: (usize, usize, usize, usize),
        width: BitWidth,
        out: &mut [u64],
    ) -> Result<(), Error> {
        self.backend().matmul_reduced(a, b, dims, width, out)
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

    fn dpf_sign_window(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        table: &[u64],
        out_width: BitWidth,
        parity: &mut [u64],
        dot: &mut [u64],
    ) -> Result<(), Error> {
        self.backend()
            .dpf_sign_window(keys, xs, table, out_width, parity, dot)
    }
}

/// [`CpuKernels`] with SIMD where this CPU supports it, detected once at construction, and
/// large calls split between threads (one per core by default): a server's gates are
/// sequential, so its kernels are where more cores help.
#[derive(Debug)]
pub struct HostKernels {
    cpu: CpuKernels,
    simd: SimdKernels,
    threads: usize,
}

impl Default for HostKernels {
    fn default() -> Self {
        Self::new()
    }
}

/// Multiply-adds a matrix product needs per thread before it is split.
const MIN_PRODUCTS_PER_THREAD: usize = 1 << 20;
/// DPF keys a comparison or lookup needs per thread before it is split.
const MIN_KEYS_PER_THREAD: usize = 4096;

impl HostKernels {
    /// Kernels for this CPU, on as many threads as it has cores.
    pub fn new() -> Self {
        Self::with_simd(Simd::detect())
    }

    /// Kernels with `simd`, or the best this CPU has below it (tests compare the paths), on as
    /// many threads as the CPU has cores.
    pub fn with_simd(simd: Simd) -> Self {
        HostKernels {
            cpu: CpuKernels::new(),
            simd: SimdKernels::new(simd),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// The same kernels on at most `threads` threads (at least one).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The SIMD extension in use.
    pub fn simd(&self) -> Simd {
        self.simd.simd()
    }

    /// Whether products in rings of up to 52 bits use AVX-512 IFMA.
    pub fn ifma(&self) -> bool {
        self.simd.ifma()
    }

    /// Whether comparisons and sign-and-window lookups walk their DPF trees with VAES.
    pub fn vaes(&self) -> bool {
        self.simd.vaes()
    }

    /// The most threads one call uses.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// How many pieces `work` units split into, each at least `min` units.
    fn pieces(&self, work: usize, min: usize) -> usize {
        (work / min.max(1)).clamp(1, self.threads)
    }

    /// Keys each thread takes of a comparison or lookup batch of `keys`.
    fn keys_per_thread(&self, keys: usize) -> usize {
        keys.div_ceil(self.pieces(keys, MIN_KEYS_PER_THREAD)).max(1)
    }

    /// Splits a key batch with two outputs per key between threads: `work(range, xs, outs)`
    /// for each thread's keys.
    fn split_keys(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        [a, b]: [&mut [u64]; 2],
        work: impl Fn(std::ops::Range<usize>, &[u64], [&mut [u64]; 2]) -> Result<(), Error> + Sync,
    ) -> Result<(), Error> {
        check_key_batch(keys.len(), xs.len(), a.len())?;
        check_key_batch(keys.len(), xs.len(), b.len())?;
        let per = self.keys_per_thread(xs.len());
        let blocks: Vec<_> = xs
            .chunks(per)
            .zip(a.chunks_mut(per).zip(b.chunks_mut(per)))
            .enumerate()
            .collect();
        on_threads(blocks, |(i, (xs, (a, b)))| {
            work(i * per..i * per + xs.len(), xs, [a, b])
        })
    }

    /// A matrix product (reduced to `ring` if given), its rows split between threads when it
    /// is large.
    fn product(
        &self,
        a: &[u64],
        b: &[u64],
        (m, k, n): (usize, usize, usize),
        ring: Option<BitWidth>,
        out: &mut [u64],
    ) -> Result<(), Error> {
        check_matmul(a, b, (1, m, k, n), out)?;
        let pieces = self.pieces(
            m.saturating_mul(k).saturating_mul(n),
            MIN_PRODUCTS_PER_THREAD,
        );
        if pieces == 1 || n == 0 || k == 0 {
            return self.simd.product(&self.cpu, a, b, (m, k, n), ring, out);
        }
        // Row blocks of a and out; every thread reads all of b.
        let rows = m.div_ceil(pieces);
        let blocks: Vec<_> = a.chunks(rows * k).zip(out.chunks_mut(rows * n)).collect();
        on_threads(blocks, |(a, out)| {
            self.simd
                .product(&self.cpu, a, b, (a.len() / k, k, n), ring, out)
        })
    }
}

/// Runs `work` on every piece, all but the last on threads of their own, and returns the first
/// error (a panicking thread is an error too).
fn on_threads<P: Send>(
    mut pieces: Vec<P>,
    work: impl Fn(P) -> Result<(), Error> + Sync,
) -> Result<(), Error> {
    let Some(last) = pieces.pop() else {
        return Ok(());
    };
    let work = &work;
    std::thread::scope(|scope| {
        let spawned: Vec<_> = pieces
            .into_iter()
            .map(|piece| scope.spawn(move || work(piece)))
            .collect();
        let mut result = work(last);
        for handle in spawned {
            let joined = handle
                .join()
                .unwrap_or(Err(Error::KernelFailed("a kernel thread panicked")));
            result = result.and(joined);
        }
        result
    })
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

    fn matmul_reduced(
        &self,
        a: &[u64],
        b: &[u64],
        dims: (usize, usize, usize, usize),
        width: BitWidth,
        out: &mut [u64],
    ) -> Result<(), Error> {
        self.timed(|x| x.matmul_reduced(a, b, dims, width, out))
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

    fn dpf_sign_window(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        table: &[u64],
        out_width: BitWidth,
        parity: &mut [u64],
        dot: &mut [u64],
    ) -> Result<(), Error> {
        self.timed(|x| x.dpf_sign_window(keys, xs, table, out_width, parity, dot))
    }
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
        self.product(a, b, (m, k, n), None, out)
    }

    fn matmul_reduced(
        &self,
        a: &[u64],
        b: &[u64],
        (batch, m, k, n): (usize, usize, usize, usize),
        width: BitWidth,
        out: &mut [u64],
    ) -> Result<(), Error> {
        each_product(a, b, (batch, m, k, n), out, |a, b, out| {
            self.product(a, b, (m, k, n), Some(width), out)
        })
    }

    fn dpf_prefix_parity(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        out: &mut [u64],
    ) -> Result<(), Error> {
        check_key_batch(keys.len(), xs.len(), out.len())?;
        let per = self.keys_per_thread(xs.len());
        let blocks: Vec<_> = xs
            .chunks(per)
            .zip(out.chunks_mut(per))
            .enumerate()
            .collect();
        on_threads(blocks, |(i, (xs, out))| {
            let range = i * per..i * per + xs.len();
            self.simd
                .prefix_parity_range(&self.cpu, keys, range, xs, out)
        })
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
        let simd = self.simd.masked_dot();
        self.split_keys(keys, xs, [dot, ones], |range, xs, [dot, ones]| {
            let cpu = &self.cpu;
            cpu.dpf_lookup_with(keys, range, xs, table, out_width, dot, ones, simd)
        })
    }

    fn dpf_sign_window(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        table: &[u64],
        out_width: BitWidth,
        parity: &mut [u64],
        dot: &mut [u64],
    ) -> Result<(), Error> {
        let (rev, size) = (table_rotations(table), table.len());
        let vaes = self.simd.window(keys, size.trailing_zeros());
        let window: Option<WindowBits<'_>> = vaes.as_ref().map(|f| f as WindowBits<'_>);
        // Window bits select at most `size` entries: entries below 2^32 / size sum within 32
        // bits, so AVX-512 adds them 16 to a register.
        let dot32 = self.simd.masked_dot32().filter(|_| {
            size.is_multiple_of(64)
                && table
                    .iter()
                    .all(|&v| (v as u128) * (size as u128) < 1 << 32)
        });
        if let Some(dot32) = dot32 {
            let rev: Vec<u32> = rev.iter().map(|&v| v as u32).collect();
            let dot_at = |e: &[u64], s: usize| dot32(e, &rev[s..s + size]);
            return self.split_keys(keys, xs, [parity, dot], |range, xs, [parity, dot]| {
                let cpu = &self.cpu;
                cpu.dpf_sign_window_with(
                    keys, range, xs, table, out_width, parity, dot, dot_at, window,
                )
            });
        }
        let simd = self.simd.masked_dot();
        let dot_at = |e: &[u64], s: usize| simd(e, &rev[s..s + size]);
        self.split_keys(keys, xs, [parity, dot], |range, xs, [parity, dot]| {
            let cpu = &self.cpu;
            cpu.dpf_sign_window_with(
                keys, range, xs, table, out_width, parity, dot, dot_at, window,
            )
        })
    }
}

mod simd;

#[cfg(test)]
mod tests {
    use super::*;
    use securerouter_core::fss::{BitDpf, BitDpfKey};
    use securerouter_core::prg::{AesCtr, Domain, Seed};

    /// Calls large enough to be split between threads give what one thread gives: matrix
    /// products with row blocks of unequal size, comparisons and lookups with a key batch
    /// that does not divide evenly.
    #[test]
    fn threads_split_calls_without_changing_results() {
        let one = HostKernels::new().with_threads(1);
        let three = HostKernels::new().with_threads(3);
        let mut r = AesCtr::new(&Seed::from_bytes([11; 16]), Domain(3));
        let (m, k, n) = (130, 160, 151); // 3.1 M products: three row blocks, 44, 44, 42
        let a: Vec<u64> = (0..m * k).map(|_| r.next_u64()).collect();
        let b: Vec<u64> = (0..k * n).map(|_| r.next_u64()).collect();
        let (mut want, mut got) = (vec![0u64; m * n], vec![0u64; m * n]);
        one.matmul(&a, &b, m, k, n, &mut want).unwrap();
        three.matmul(&a, &b, m, k, n, &mut got).unwrap();
        assert_eq!(got, want);

        let dpf = BitDpf::new();
        let count = 3 * MIN_KEYS_PER_THREAD + 17;
        for bits in [8u32, 20] {
            let inw = BitWidth::new(bits).unwrap();
            let keys: Vec<BitDpfKey> = (0..count)
                .map(|_| {
                    dpf.gen_keys(inw, inw.reduce(r.next_u64()), &mut r)
                        .unwrap()
                        .0
                })
                .collect();
            let keys = BitDpfKeys::from_keys(&keys).unwrap();
            let xs: Vec<u64> = (0..count).map(|_| inw.reduce(r.next_u64())).collect();
            let parity = |kern: &HostKernels| {
                let mut out = vec![9u64; count];
                kern.dpf_prefix_parity(&keys, &xs, &mut out).unwrap();
                out
            };
            assert_eq!(parity(&three), parity(&one), "{bits}-bit comparison");
            if bits == 8 {
                let out = BitWidth::new(40).unwrap();
                let table: Vec<u64> = (0..256).map(|_| out.reduce(r.next_u64())).collect();
                let lookup = |kern: &HostKernels| {
                    let (mut dot, mut ones) = (vec![0u64; count], vec![0u64; count]);
                    kern.dpf_lookup(&keys, &xs, &table, out, &mut dot, &mut ones)
                        .unwrap();
                    (dot, ones)
                };
                assert_eq!(lookup(&three), lookup(&one));
            }
        }
    }
}
