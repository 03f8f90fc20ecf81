//! The local heavy math of a server, behind one trait so the host (threads, SIMD) and the gpu
//! crate (CUDA) can replace it. Gate code calls only this trait; [`CpuKernels`] is the
//! portable reference every backend must match bit for bit.

use crate::Error;
use crate::fss::{Corrections, Dcf, DcfKey, Dpf, DpfKey};
use crate::ring::BitWidth;

/// Local computation a server performs between communication rounds.
pub trait Kernels {
    /// Wrapping matrix product in Z_2^64, row-major: out (m×n) = a (m×k) · b (k×n).
    fn matmul(&self, a: &[u64], b: &[u64], m: usize, k: usize, n: usize, out: &mut [u64]);

    /// Evaluates `keys[i]` at `xs[i]` into `out[i]`.
    fn dcf_eval(&self, keys: &[DcfKey], xs: &[u64], out: &mut [u64]) -> Result<(), Error>;

    /// Table lookup on DPF keys: `out[i] = Σ_j e_i(j) · table[(xs[i] − j) mod 2^n]` in
    /// Z_2^out, where e_i is the full-domain evaluation of `keys[i]` (n input bits).
    fn dpf_lookup(
        &self,
        keys: &[DpfKey],
        xs: &[u64],
        table: &[u64],
        out_width: BitWidth,
        out: &mut [u64],
    ) -> Result<(), Error>;
}

/// The portable single-threaded reference implementation.
#[derive(Debug, Default)]
pub struct CpuKernels {
    dcf: Dcf,
    dpf: Dpf,
}

impl CpuKernels {
    /// A kernel set (schedules the fixed AES keys once).
    pub fn new() -> Self {
        Self::default()
    }
}

fn check_batch(keys: usize, xs: usize, out: usize) -> Result<(), Error> {
    if keys != xs || xs != out {
        return Err(Error::LengthMismatch {
            expected: keys,
            got: if keys != xs { xs } else { out },
        });
    }
    Ok(())
}

impl Kernels for CpuKernels {
    fn matmul(&self, a: &[u64], b: &[u64], m: usize, k: usize, n: usize, out: &mut [u64]) {
        crate::ring::matmul(a, b, m, k, n, out);
    }

    fn dcf_eval(&self, keys: &[DcfKey], xs: &[u64], out: &mut [u64]) -> Result<(), Error> {
        check_batch(keys.len(), xs.len(), out.len())?;
        self.dcf.eval_batch(keys, xs, out)
    }

    fn dpf_lookup(
        &self,
        keys: &[DpfKey],
        xs: &[u64],
        table: &[u64],
        out_width: BitWidth,
        out: &mut [u64],
    ) -> Result<(), Error> {
        check_batch(keys.len(), xs.len(), out.len())?;
        for ((k, &x), o) in keys.iter().zip(xs).zip(out.iter_mut()) {
            let n = k.corrections().in_bits();
            if table.len() != 1usize << n.bits() {
                return Err(Error::LengthMismatch {
                    expected: 1usize << n.bits(),
                    got: table.len(),
                });
            }
            let e = self.dpf.eval_full_domain(k)?;
            let mut acc = 0u64;
            for (j, &ej) in e.iter().enumerate() {
                let idx = n.sub(x, j as u64) as usize;
                acc = acc.wrapping_add(ej.wrapping_mul(table[idx]));
            }
            *o = out_width.reduce(acc);
        }
        Ok(())
    }
}
