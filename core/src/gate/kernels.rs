//! The local heavy math of a server (and the dealer's products of masks), behind one trait so
//! the host (threads, SIMD) and the gpu crate (CUDA) can replace it. Gate code calls only this
//! trait; [`CpuKernels`] is the portable reference every backend must match bit for bit.

use crate::Error;
use crate::fss::{BitDpf, BitDpfKeys, MAX_FULL_DOMAIN_BITS};
pub use crate::fss::{check_key_batch, check_key_range};
use crate::ring::BitWidth;
use alloc::vec;
use alloc::vec::Vec;

/// Local computation a server performs between communication rounds.
pub trait Kernels {
    /// Wrapping matrix product in Z_2^64, row-major: out (m×n) = a (m×k) · b (k×n).
    ///
    /// Fails only where the backend does (e.g. a GPU error), or on slice lengths that do not
    /// match the dimensions.
    fn matmul(
        &self,
        a: &[u64],
        b: &[u64],
        m: usize,
        k: usize,
        n: usize,
        out: &mut [u64],
    ) -> Result<(), Error>;

    /// `batch` independent products, operands and results stacked: `out[t] = a[t] · b[t]` with
    /// `a[t]` m×k and `b[t]` k×n (attention's per-head products). Backends with a launch cost override
    /// this to do all of them at once.
    fn matmul_batch(
        &self,
        a: &[u64],
        b: &[u64],
        (batch, m, k, n): (usize, usize, usize, usize),
        out: &mut [u64],
    ) -> Result<(), Error> {
        each_product(a, b, (batch, m, k, n), out, |a, b, out| {
            self.matmul(a, b, m, k, n, out)
        })
    }

    /// [`Kernels::matmul_batch`] reduced modulo 2^`width`, all a gate keeps of a product in
    /// Z_2^width. Backends with a cheaper product for narrow rings (52-bit multiply-adds)
    /// override it; the result is the same.
    fn matmul_reduced(
        &self,
        a: &[u64],
        b: &[u64],
        dims: (usize, usize, usize, usize),
        width: BitWidth,
        out: &mut [u64],
    ) -> Result<(), Error> {
        self.matmul_batch(a, b, dims, out)?;
        out.iter_mut().for_each(|v| *v = width.reduce(*v));
        Ok(())
    }

    /// Comparison on one-bit DPF keys: writes to `out[i]` this party's bit of the prefix
    /// parity of key i at `xs[i]`, i.e. its XOR share of `[α_i ≤ xs[i]]`
    /// ([`BitDpf::eval_prefix_parity`]).
    fn dpf_prefix_parity(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        out: &mut [u64],
    ) -> Result<(), Error>;

    /// Table lookup on one-bit DPF keys of n input bits, for a table of 2^n entries: with
    /// e_i ∈ {0,1}^(2^n) the full-domain evaluation of key i (read as integers 0 and 1),
    /// writes in Z_2^out
    ///   `dot[i]  = Σ_j e_i(j) · table[(xs[i] − j) mod 2^n]` and `ones[i] = Σ_j e_i(j)`.
    ///
    /// The bits e_i(j) are key material: implementations must neither branch on them nor use
    /// them as memory indices (select entries by masking); table positions may depend only on
    /// the public `xs[i]` and on j.
    fn dpf_lookup(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        table: &[u64],
        out_width: BitWidth,
        dot: &mut [u64],
        ones: &mut [u64],
    ) -> Result<(), Error>;

    /// DReLU's comparison bits and a lookup in a table of bounded support from the same
    /// one-bit DPF keys of n input bits, for a table of 2^w entries (7 ≤ w < n) standing for
    /// inputs v in [−2^(w−1), 2^(w−1)): with e_i the full-domain bits of key i (integers 0 and
    /// 1, positions mod 2^n) and x = `xs[i]`, writes
    ///   `parity[i]` = its prefix parity at x ([`Kernels::dpf_prefix_parity`]) and
    ///   `dot[i] = Σ_v e_i(x − v) · table[v + 2^(w−1)]` in Z_2^out.
    /// The same rules on key bits as [`Kernels::dpf_lookup`].
    #[allow(clippy::too_many_arguments)]
    fn dpf_sign_window(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        table: &[u64],
        out_width: BitWidth,
        parity: &mut [u64],
        dot: &mut [u64],
    ) -> Result<(), Error>;
}

/// The portable single-threaded reference implementation.
#[derive(Debug, Default)]
pub struct CpuKernels {
    bit_dpf: BitDpf,
}

impl CpuKernels {
    /// A kernel set (schedules the fixed AES keys once).
    pub fn new() -> Self {
        Self::default()
    }
}

/// Checks the lengths of `batch` stacked m×k by k×n products, then runs
/// `product(a[t], b[t], out[t])` on each one's operands and result in turn.
pub fn each_product(
    a: &[u64],
    b: &[u64],
    (batch, m, k, n): (usize, usize, usize, usize),
    out: &mut [u64],
    mut product: impl FnMut(&[u64], &[u64], &mut [u64]) -> Result<(), Error>,
) -> Result<(), Error> {
    check_matmul(a, b, (batch, m, k, n), out)?;
    for t in 0..batch {
        product(
            &a[t * m * k..(t + 1) * m * k],
            &b[t * k * n..(t + 1) * k * n],
            &mut out[t * m * n..(t + 1) * m * n],
        )?;
    }
    Ok(())
}

/// Checks the operand lengths of `batch` stacked m×k by k×n products.
pub fn check_matmul(
    a: &[u64],
    b: &[u64],
    (batch, m, k, n): (usize, usize, usize, usize),
    out: &[u64],
) -> Result<(), Error> {
    for (len, want) in [
        (a.len(), batch * m * k),
        (b.len(), batch * k * n),
        (out.len(), batch * m * n),
    ] {
        if len != want {
            return Err(Error::LengthMismatch {
                expected: want,
                got: len,
            });
        }
    }
    Ok(())
}

/// Checks that a lookup on `in_bits`-bit keys can evaluate its full domain and that the table
/// has one entry per input; returns the table size 2^in_bits.
pub fn check_lookup_table(in_bits: BitWidth, table: usize) -> Result<usize, Error> {
    if in_bits.bits() > MAX_FULL_DOMAIN_BITS {
        return Err(Error::DomainTooLarge {
            bits: in_bits.bits(),
            max: MAX_FULL_DOMAIN_BITS,
        });
    }
    let size = 1usize << in_bits.bits();
    if table != size {
        return Err(Error::LengthMismatch {
            expected: size,
            got: table,
        });
    }
    Ok(size)
}

impl CpuKernels {
    /// [`Kernels::dpf_lookup`] with the masked dot product `Σ_j bit_j(e)·entries[j]` in Z_2^64
    /// supplied by the caller (e holds ⌈len/64⌉ words, bits beyond `entries.len()` zero): a
    /// backend that speeds up only that product, e.g. with SIMD, reuses the rest. `masked_dot`
    /// must not branch on the bits of e nor use them as indices.
    ///
    /// Only the keys in `range` are evaluated, key `range.start + i` at `xs[i]` into `dot[i]`
    /// and `ones[i]` (so that a backend can split a batch between threads).
    #[allow(clippy::too_many_arguments)]
    pub fn dpf_lookup_with(
        &self,
        keys: &BitDpfKeys,
        range: core::ops::Range<usize>,
        xs: &[u64],
        table: &[u64],
        out_width: BitWidth,
        dot: &mut [u64],
        ones: &mut [u64],
        masked_dot: impl Fn(&[u64], &[u64]) -> u64,
    ) -> Result<(), Error> {
        check_key_range(keys.len(), &range, xs.len(), dot.len())?;
        check_key_range(keys.len(), &range, xs.len(), ones.len())?;
        if range.is_empty() {
            return Ok(());
        }
        let n = keys.in_bits();
        let size = check_lookup_table(n, table.len())?;
        let rev = table_rotations(table);
        let words = BitDpf::full_domain_words(n);
        // Enough keys per full-domain batch for long AES passes, in bounded scratch.
        let chunk = (LOOKUP_SCRATCH_WORDS / words).max(1);
        let mut bits = vec![0u64; chunk.min(range.len()) * words];
        for (c, ((xs, dot), ones)) in xs
            .chunks(chunk)
            .zip(dot.chunks_mut(chunk))
            .zip(ones.chunks_mut(chunk))
            .enumerate()
        {
            let bits = &mut bits[..xs.len() * words];
            let first = range.start + c * chunk;
            self.bit_dpf
                .eval_full_domain_range(keys, first..first + xs.len(), bits)?;
            for (((&x, e), d), o) in xs
                .iter()
                .zip(bits.chunks(words))
                .zip(dot.iter_mut())
                .zip(ones.iter_mut())
            {
                crate::fss::check_in_ring(x, n)?;
                let start = size - x as usize;
                *d = out_width.reduce(masked_dot(e, &rev[start..start + size]));
                *o = out_width.reduce(e.iter().map(|w| w.count_ones() as u64).sum());
            }
        }
        Ok(())
    }
}

/// The table reversed and repeated over two periods, `rev[m] = table[(−m) mod 2^n]`, so that
/// `table[(x − j) mod 2^n] = rev[2^n − x + j]`: one contiguous slice per input, indexed by j
/// alone.
pub fn table_rotations(table: &[u64]) -> Vec<u64> {
    let size = table.len();
    (0..2 * size)
        .map(|m| table[(size - m % size) % size])
        .collect()
}

/// The window bits w of a window table of 2^w entries (the DPF evaluation checks 7 ≤ w < n).
pub fn check_window_table(table: usize) -> Result<u32, Error> {
    if !table.is_power_of_two() {
        return Err(Error::ShapeMismatch(
            "a window table needs a power-of-two number of entries",
        ));
    }
    Ok(table.trailing_zeros())
}

/// A window evaluator with [`BitDpf::eval_sign_window_range`]'s output for one key batch:
/// `(keys, window_bits, xs, parity, window)`.
pub type WindowBits<'a> = &'a (
        dyn Fn(core::ops::Range<usize>, u32, &[u64], &mut [u64], &mut [u64]) -> Result<(), Error>
            + Sync
    );

impl CpuKernels {
    /// [`Kernels::dpf_sign_window`] of the keys in `range` only, with the masked dot product
    /// supplied by the caller: `masked_dot(e, start)` is Σ_j bit_j(e) · rev[start + j] for
    /// rev = [`table_rotations`]`(table)`, which the caller keeps in whatever form its dot
    /// product reads fastest. `window` replaces [`BitDpf::eval_sign_window_range`] where the
    /// caller has a faster one with the same output (None: core's).
    #[allow(clippy::too_many_arguments)]
    pub fn dpf_sign_window_with(
        &self,
        keys: &BitDpfKeys,
        range: core::ops::Range<usize>,
        xs: &[u64],
        table: &[u64],
        out_width: BitWidth,
        parity: &mut [u64],
        dot: &mut [u64],
        masked_dot: impl Fn(&[u64], usize) -> u64,
        window: Option<WindowBits<'_>>,
    ) -> Result<(), Error> {
        check_key_range(keys.len(), &range, xs.len(), parity.len())?;
        check_key_range(keys.len(), &range, xs.len(), dot.len())?;
        if range.is_empty() {
            return Ok(());
        }
        let w = check_window_table(table.len())?;
        let size = table.len();
        let half = size as u64 / 2;
        let words = size.div_ceil(64);
        let chunk = (LOOKUP_SCRATCH_WORDS / words).max(1);
        let mut bits = vec![0u64; chunk.min(range.len()) * words];
        for (c, ((xs, parity), dot)) in xs
            .chunks(chunk)
            .zip(parity.chunks_mut(chunk))
            .zip(dot.chunks_mut(chunk))
            .enumerate()
        {
            let bits = &mut bits[..xs.len() * words];
            let first = range.start + c * chunk;
            let keys_here = first..first + xs.len();
            match window {
                Some(eval) => eval(keys_here, w, xs, parity, bits)?,
                None => self
                    .bit_dpf
                    .eval_sign_window_range(keys, keys_here, w, xs, parity, bits)?,
            }
            // Window bit o is position p ≡ o, and table[v + H] = table[(zo − o) mod 2^w] for
            // v = x − p and zo = (x + H) mod 2^w.
            for ((&x, e), d) in xs.iter().zip(bits.chunks(words)).zip(dot.iter_mut()) {
                let zo = (x.wrapping_add(half) as usize) & (size - 1);
                *d = out_width.reduce(masked_dot(e, size - zo));
            }
        }
        Ok(())
    }
}

impl CpuKernels {
    /// [`Kernels::dpf_prefix_parity`] of the keys in `range` only, key `range.start + i` at
    /// `xs[i]` into `out[i]`.
    pub fn dpf_prefix_parity_range(
        &self,
        keys: &BitDpfKeys,
        range: core::ops::Range<usize>,
        xs: &[u64],
        out: &mut [u64],
    ) -> Result<(), Error> {
        self.bit_dpf.eval_prefix_parity_range(keys, range, xs, out)
    }
}

impl Kernels for CpuKernels {
    fn matmul(
        &self,
        a: &[u64],
        b: &[u64],
        m: usize,
        k: usize,
        n: usize,
        out: &mut [u64],
    ) -> Result<(), Error> {
        check_matmul(a, b, (1, m, k, n), out)?;
        crate::ring::matmul(a, b, m, k, n, out);
        Ok(())
    }

    fn dpf_prefix_parity(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        out: &mut [u64],
    ) -> Result<(), Error> {
        self.bit_dpf.eval_prefix_parity_batch(keys, xs, out)
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
        let all = 0..keys.len();
        self.dpf_lookup_with(keys, all, xs, table, out_width, dot, ones, masked_dot)
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
        let (all, rev, size) = (0..keys.len(), table_rotations(table), table.len());
        let dot_at = |e: &[u64], start: usize| masked_dot(e, &rev[start..start + size]);
        self.dpf_sign_window_with(keys, all, xs, table, out_width, parity, dot, dot_at, None)
    }
}

/// Words of full-domain bits [`CpuKernels::dpf_lookup`] holds at once (256 KiB).
const LOOKUP_SCRATCH_WORDS: usize = 1 << 15;

/// `Σ_j bit_j(e) · entries[j]` in Z_2^64, bit j being bit j mod 64 of word j / 64 (`entries` has
/// at most 64 entries per word of `e`).
///
/// The bits select entries through all-ones/all-zero masks. The masks of each word pass through
/// [`core::hint::black_box`]: without it the optimiser may recognise `entry & −bit` as a select
/// and compile it into a branch on the key bit (it did, for one lane in four).
pub fn masked_dot(e: &[u64], entries: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut masks = [0u64; 64];
    let mut full = entries.chunks_exact(64);
    for (&w, chunk) in e.iter().zip(&mut full) {
        word_masks(w, &mut masks);
        let masks = core::hint::black_box(&masks);
        for (values, masks) in chunk.chunks_exact(8).zip(masks.chunks_exact(8)) {
            for ((a, &v), &m) in acc.iter_mut().zip(values).zip(masks) {
                *a = a.wrapping_add(v & m);
            }
        }
    }
    // Domains of fewer than 64 entries: one partial word.
    let rest = full.remainder();
    if let Some(&w) = e.get(entries.len() / 64).filter(|_| !rest.is_empty()) {
        word_masks(w, &mut masks);
        let masks = core::hint::black_box(&masks);
        for (&v, &m) in rest.iter().zip(masks) {
            acc[0] = acc[0].wrapping_add(v & m);
        }
    }
    acc.iter().fold(0, |a, &b| a.wrapping_add(b))
}

/// `masks[i]` = all ones if bit i of `w` is set, else zero, without branches. Four lanes
/// (w, w >> 1, w >> 2, w >> 3) shifted alike by 4k: about twice as fast here as one shift count
/// per mask.
#[inline(always)]
fn word_masks(w: u64, masks: &mut [u64; 64]) {
    let lanes = [w, w >> 1, w >> 2, w >> 3];
    for (k, quad) in masks.chunks_exact_mut(4).enumerate() {
        for (m, &l) in quad.iter_mut().zip(&lanes) {
            *m = ((l >> (4 * k)) & 1).wrapping_neg();
        }
    }
}
