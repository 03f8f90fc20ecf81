//! [`CudaKernels`]: core's [`Kernels`] on a CUDA device, bit for bit equal to [`CpuKernels`].
//!
//! The kernels (`kernels.cu`) are compiled by NVRTC when the backend is opened. Every call copies
//! its operands to the device, launches, and copies the result back, all on one stream under a
//! lock, so sessions that share a server's backend take turns on the GPU. A server's weight
//! matrices can be kept on the device for its whole life ([`CudaKernels::keep_resident`]): a
//! product whose right operand is such a matrix then moves only the activations.
//!
//! A CUDA error inside a call is logged in full (tracing) and returned as
//! [`Error::KernelFailed`], so the session fails and the server goes on. A panic inside cudarc is
//! caught and treated the same way.

use crate::{GpuInfo, GpuUnavailable, guarded, open_context, query};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};
use securerouter_core::Error;
use securerouter_core::fss::BitDpfKeys;
use securerouter_core::gate::{
    CpuKernels, Kernels, ServerWeights, check_key_batch, check_lookup_table, check_matmul,
};
use securerouter_core::prg::{GGM_KEYS, Ggm};
use securerouter_core::ring::BitWidth;
use securerouter_core::share::Party;
use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

/// The CUDA C source of the kernels (without the GGM key definition the host prepends).
const SOURCE: &str = include_str!("kernels.cu");

/// Threads per block of the FSS kernels.
const FSS_THREADS: u32 = 256;

/// Work below which a call runs on the CPU instead (launch and copies would cost more): about
/// 2^18 multiply-adds for a product, 512 keys for an FSS batch.
const DEFAULT_CPU_BELOW: Thresholds = Thresholds {
    matmul_macs: 1 << 18,
    fss_keys: 512,
};

/// Sizes under which [`CudaKernels`] hands a call to the CPU kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Multiply-adds (batch·m·k·n) of a product.
    pub matmul_macs: usize,
    /// Keys of a DCF or lookup batch.
    pub fss_keys: usize,
}

impl Thresholds {
    /// Everything on the GPU (tests use it to compare the GPU with the CPU on small inputs).
    pub const NEVER: Thresholds = Thresholds {
        matmul_macs: 0,
        fss_keys: 0,
    };
}

/// Core's kernels on a CUDA device. Cheap to clone: clones share the device, its compiled
/// kernels and its resident weights.
#[derive(Clone)]
pub struct CudaKernels {
    inner: Arc<Inner>,
    cpu_below: Thresholds,
}

struct Inner {
    info: GpuInfo,
    cpu: CpuKernels,
    device: Mutex<Device>,
}

struct Device {
    stream: Arc<CudaStream>,
    matmul: CudaFunction,
    compare: CudaFunction,
    lookup: CudaFunction,
    /// Device copies of resident matrices, by the address of their host buffer.
    resident: HashMap<usize, CudaSlice<u64>>,
    /// The owners of those host buffers, held so that no buffer is freed (and its address
    /// reused by another) while its copy is looked up by address.
    owners: Vec<Arc<Vec<ServerWeights>>>,
}

impl fmt::Debug for CudaKernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CudaKernels({})", self.inner.info)
    }
}

impl CudaKernels {
    /// Opens device `ordinal`, compiles the kernels for it and checks its AES tables against
    /// the CPU's.
    ///
    /// # Errors
    /// Why the GPU cannot be used: missing library, no device, driver or compile error.
    pub fn open(ordinal: usize) -> Result<Self, GpuUnavailable> {
        let ctx = open_context(ordinal)?;
        guarded(|| {
            let info = query(&ctx)?;
            let device = Device::new(&ctx, &info)?;
            let kernels = CudaKernels {
                inner: Arc::new(Inner {
                    info,
                    cpu: CpuKernels::new(),
                    device: Mutex::new(device),
                }),
                cpu_below: DEFAULT_CPU_BELOW,
            };
            Ok(kernels)
        })
    }

    /// The device in use.
    pub fn info(&self) -> &GpuInfo {
        &self.inner.info
    }

    /// The same backend with other CPU hand-off sizes.
    #[must_use]
    pub fn with_cpu_below(mut self, thresholds: Thresholds) -> Self {
        self.cpu_below = thresholds;
        self
    }

    /// Copies every weight matrix of `weights` (the online matrix and the masked weights of the
    /// offline products) to the device and keeps it there (and `weights` alive) as long as
    /// this backend lives; returns the bytes copied. Products whose right operand is one of
    /// these matrices then copy only their left operand.
    ///
    /// # Errors
    /// [`Error::KernelFailed`] if a copy fails (the CUDA error is logged).
    pub fn keep_resident(&self, weights: Arc<Vec<ServerWeights>>) -> Result<usize, Error> {
        self.on_device("keeping weights resident", |d| {
            let mut bytes = 0;
            for w in weights.iter().flat_map(|l| [l.parts().0, l.masked()]) {
                let key = w.as_ptr() as usize;
                if w.is_empty() || d.resident.contains_key(&key) {
                    continue;
                }
                let copy = d.stream.clone_htod(w)?;
                bytes += 8 * w.len();
                d.resident.insert(key, copy);
            }
            d.stream.synchronize()?;
            d.owners.push(weights.clone());
            Ok(bytes)
        })
    }

    /// Runs `f` on the device under the lock, turning CUDA errors and cudarc panics into
    /// [`Error::KernelFailed`] after logging them.
    fn on_device<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Device) -> Result<T, DriverError>,
    ) -> Result<T, Error> {
        let mut device = self
            .inner
            .device
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut device)));
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::error!(device = %self.inner.info, "CUDA error while {what}: {}", describe(&e));
                Err(Error::KernelFailed(
                    "a CUDA call failed (the server log has the error)",
                ))
            }
            Err(_) => {
                tracing::error!(device = %self.inner.info, "the CUDA bindings panicked while {what}");
                Err(Error::KernelFailed(
                    "the CUDA bindings panicked (see the server log)",
                ))
            }
        }
    }
}

/// "CUDA_ERROR_X: description", or the raw code.
fn describe(e: &DriverError) -> String {
    match (e.error_name(), e.error_string()) {
        (Ok(name), Ok(text)) => format!("{}: {}", name.to_string_lossy(), text.to_string_lossy()),
        _ => format!("{:?}", e.0),
    }
}

/// The CUDA C text NVRTC compiles: `kernels.cu` after the GGM keys, defined as little-endian
/// 32-bit words (public so that a test can run the same text on the CPU).
pub fn kernel_source() -> String {
    let words: Vec<String> = GGM_KEYS
        .iter()
        .flat_map(|k| k.chunks_exact(4))
        .map(|c| format!("0x{:08x}u", u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    format!("#define GGM_KEY_WORDS {{{}}}\n{SOURCE}", words.join(", "))
}

impl Device {
    fn new(ctx: &Arc<CudaContext>, info: &GpuInfo) -> Result<Self, GpuUnavailable> {
        let cc = info.compute_capability;
        let opts = CompileOptions {
            options: vec![format!(
                "--gpu-architecture=compute_{}{}",
                cc.major, cc.minor
            )],
            name: Some("securerouter_kernels.cu".into()),
            ..Default::default()
        };
        let ptx =
            compile_ptx_with_opts(kernel_source(), opts).map_err(|e| GpuUnavailable::Driver {
                during: "compiling the kernels with NVRTC",
                message: e.to_string(),
            })?;
        let driver = |during| move |e: DriverError| GpuUnavailable::driver(during, e);
        let module = ctx
            .load_module(ptx)
            .map_err(driver("loading the compiled kernels"))?;
        let function = |name| {
            module
                .load_function(name)
                .map_err(driver("finding a kernel"))
        };
        let device = Device {
            stream: ctx.default_stream(),
            matmul: function("matmul_u64")?,
            compare: function("dpf_prefix_parity")?,
            lookup: function("dpf_lookup")?,
            resident: HashMap::new(),
            owners: Vec::new(),
        };
        device
            .check_aes(&function("aes_left")?)
            .map_err(driver("checking the AES tables"))?
            .then_some(device)
            .ok_or(GpuUnavailable::Driver {
                during: "checking the AES tables",
                message: "the device's AES differs from the CPU's".into(),
            })
    }

    /// AES-128 under the left GGM key on a few blocks equals the CPU's: core's GGM PRG gives
    /// MMO(s) = AES(s) ⊕ s (its control bit split off), so AES(s) = MMO(s) ⊕ s.
    fn check_aes(&self, aes_left: &CudaFunction) -> Result<bool, DriverError> {
        let blocks: Vec<u128> = (1..=4u128)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
            .collect();
        let input = self.stream.clone_htod(&blocks)?;
        let mut output = self.stream.alloc_zeros::<u128>(blocks.len())?;
        let count = blocks.len() as u32;
        let mut launch = self.stream.launch_builder(aes_left);
        launch.arg(&input).arg(&mut output).arg(&count);
        // SAFETY: the kernel reads `count` blocks of `input` and writes as many of `output`.
        unsafe { launch.launch(LaunchConfig::for_num_elems(count)) }?;
        let got = self.stream.clone_dtoh(&output)?;
        let ggm = Ggm::new();
        Ok(blocks.iter().zip(&got).all(|(&s, &g)| {
            let (child, bit) = ggm.child(s, false);
            (child | u128::from(bit)) ^ s == g
        }))
    }
}

/// Blocks of `threads` threads that cover `n` threads (at least one block).
fn blocks(n: usize, threads: u32) -> Result<LaunchConfig, Error> {
    let grid = u32::try_from(n.div_ceil(threads as usize).max(1))
        .map_err(|_| Error::ShapeMismatch("batch too large for one kernel launch"))?;
    Ok(LaunchConfig {
        grid_dim: (grid, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    })
}

fn to_u32(n: usize, what: &'static str) -> Result<u32, Error> {
    u32::try_from(n).map_err(|_| Error::ShapeMismatch(what))
}

/// The control-bit pairs as the bytes the kernels read.
fn control_bytes(controls: &[[bool; 2]]) -> &[u8] {
    // SAFETY: `[bool; 2]` is two bytes with alignment 1, each 0 or 1 (a valid `u8`), so the
    // slice's memory is exactly `2 · len` initialised bytes that live as long as `controls`.
    unsafe { std::slice::from_raw_parts(controls.as_ptr().cast::<u8>(), 2 * controls.len()) }
}

fn check_inputs(xs: &[u64], width: BitWidth) -> Result<(), Error> {
    if xs.iter().any(|&x| !width.contains(x)) {
        return Err(Error::ValueOutOfRange { bits: width.bits() });
    }
    Ok(())
}

impl Kernels for CudaKernels {
    fn matmul(
        &self,
        a: &[u64],
        b: &[u64],
        m: usize,
        k: usize,
        n: usize,
        out: &mut [u64],
    ) -> Result<(), Error> {
        self.matmul_batch(a, b, (1, m, k, n), out)
    }

    fn matmul_batch(
        &self,
        a: &[u64],
        b: &[u64],
        (batch, m, k, n): (usize, usize, usize, usize),
        out: &mut [u64],
    ) -> Result<(), Error> {
        check_matmul(a, b, (batch, m, k, n), out)?;
        if batch * m * k * n < self.cpu_below.matmul_macs.max(1) {
            return self.inner.cpu.matmul_batch(a, b, (batch, m, k, n), out);
        }
        let tile = 64;
        let cfg = LaunchConfig {
            grid_dim: (
                to_u32(n.div_ceil(tile), "product too wide")?,
                to_u32(m.div_ceil(tile), "product too tall")?,
                to_u32(batch, "too many products in one batch")?,
            ),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let dims = [
            to_u32(m, "product too tall")?,
            to_u32(k, "product too deep")?,
            to_u32(n, "product too wide")?,
        ];
        self.on_device("multiplying matrices", |d| {
            let a_dev = d.stream.clone_htod(a)?;
            let b_temp;
            let b_dev = match d.resident.get(&(b.as_ptr() as usize)) {
                // The address is that of a live resident buffer (its owner is held), so a slice
                // of the same length starting there is that buffer.
                Some(resident) if resident.len() == b.len() => resident,
                _ => {
                    b_temp = d.stream.clone_htod(b)?;
                    &b_temp
                }
            };
            let mut c_dev = d.stream.alloc_zeros::<u64>(out.len())?;
            let mut launch = d.stream.launch_builder(&d.matmul);
            launch
                .arg(&a_dev)
                .arg(b_dev)
                .arg(&mut c_dev)
                .arg(&dims[0])
                .arg(&dims[1])
                .arg(&dims[2]);
            // SAFETY: the kernel reads batch·m·k words of a and batch·k·n of b and writes
            // batch·m·n of c (bounds checked per element), the lengths checked above.
            unsafe { launch.launch(cfg) }?;
            d.stream.memcpy_dtoh(&c_dev, out)?;
            d.stream.synchronize()
        })
    }

    fn dpf_prefix_parity(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        out: &mut [u64],
    ) -> Result<(), Error> {
        check_key_batch(keys.len(), xs.len(), out.len())?;
        if keys.len() < self.cpu_below.fss_keys.max(1) {
            return self.inner.cpu.dpf_prefix_parity(keys, xs, out);
        }
        check_inputs(xs, keys.in_bits())?;
        let p = keys.parts();
        let count = to_u32(keys.len(), "comparison batch too large")?;
        let p1 = u32::from(p.party == Party::P1);
        let cfg = blocks(keys.len(), FSS_THREADS)?;
        self.on_device("evaluating comparison keys", |d| {
            let roots = d.stream.clone_htod(p.roots)?;
            let seeds = d.stream.clone_htod(p.seeds)?;
            let controls = d.stream.clone_htod(control_bytes(p.controls))?;
            let last = d.stream.clone_htod(p.last)?;
            let xs_dev = d.stream.clone_htod(xs)?;
            let mut out_dev = d.stream.alloc_zeros::<u64>(out.len())?;
            let mut launch = d.stream.launch_builder(&d.compare);
            launch
                .arg(&roots)
                .arg(&seeds)
                .arg(&controls)
                .arg(&last)
                .arg(&xs_dev)
                .arg(&mut out_dev)
                .arg(&count)
                .arg(&p.levels)
                .arg(&p.leaf_bits)
                .arg(&p1);
            // SAFETY: thread i < count reads key i's root, its `levels` corrections, last block
            // and xs[i], and writes out[i]; every array holds count (× levels) entries (checked
            // by the batch's construction and above).
            unsafe { launch.launch(cfg) }?;
            d.stream.memcpy_dtoh(&out_dev, out)?;
            d.stream.synchronize()
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
        check_key_batch(keys.len(), xs.len(), dot.len())?;
        check_key_batch(keys.len(), xs.len(), ones.len())?;
        if keys.len() < self.cpu_below.fss_keys.max(1) {
            return self
                .inner
                .cpu
                .dpf_lookup(keys, xs, table, out_width, dot, ones);
        }
        let in_bits = keys.in_bits();
        check_lookup_table(in_bits, table.len())?;
        check_inputs(xs, in_bits)?;
        let p = keys.parts();
        let count = to_u32(keys.len(), "lookup batch too large")?;
        let p1 = u32::from(p.party == Party::P1);
        let cfg = blocks(keys.len() << p.levels, FSS_THREADS)?;
        self.on_device("evaluating lookup keys", |d| {
            let roots = d.stream.clone_htod(p.roots)?;
            let seeds = d.stream.clone_htod(p.seeds)?;
            let controls = d.stream.clone_htod(control_bytes(p.controls))?;
            let last = d.stream.clone_htod(p.last)?;
            let xs_dev = d.stream.clone_htod(xs)?;
            let table_dev = d.stream.clone_htod(table)?;
            let mut dot_dev = d.stream.alloc_zeros::<u64>(dot.len())?;
            let mut ones_dev = d.stream.alloc_zeros::<u64>(ones.len())?;
            let mut launch = d.stream.launch_builder(&d.lookup);
            launch
                .arg(&roots)
                .arg(&seeds)
                .arg(&controls)
                .arg(&last)
                .arg(&xs_dev)
                .arg(&table_dev)
                .arg(&mut dot_dev)
                .arg(&mut ones_dev)
                .arg(&count)
                .arg(&p.levels)
                .arg(&p.leaf_bits)
                .arg(&p1);
            // SAFETY: thread (key, leaf) with key < count reads that key's root, its `levels`
            // corrections, last block and xs[key], table entries masked to the table's 2^n,
            // and adds into dot[key] and ones[key]; all arrays have those lengths.
            unsafe { launch.launch(cfg) }?;
            d.stream.memcpy_dtoh(&dot_dev, dot)?;
            d.stream.memcpy_dtoh(&ones_dev, ones)?;
            d.stream.synchronize()
        })?;
        for v in dot.iter_mut().chain(ones.iter_mut()) {
            *v = out_width.reduce(*v);
        }
        Ok(())
    }

    /// On the CPU: no CUDA kernel evaluates windows yet.
    fn dpf_sign_window(
        &self,
        keys: &BitDpfKeys,
        xs: &[u64],
        table: &[u64],
        out_width: BitWidth,
        parity: &mut [u64],
        dot: &mut [u64],
    ) -> Result<(), Error> {
        self.inner
            .cpu
            .dpf_sign_window(keys, xs, table, out_width, parity, dot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cudarc::driver::sys::CUresult;

    /// A CUDA error inside a call comes back as `KernelFailed` (the session fails), and the
    /// backend keeps working for the next call (the server goes on serving).
    #[test]
    fn a_cuda_error_fails_the_call_not_the_backend() {
        let gpu = match CudaKernels::open(0) {
            Ok(k) => k.with_cpu_below(Thresholds::NEVER),
            Err(why) => {
                eprintln!("SKIPPED a_cuda_error_fails_the_call_not_the_backend: {why}");
                return;
            }
        };
        let failed: Result<(), Error> = gpu.on_device("testing", |_| {
            Err(DriverError(CUresult::CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES))
        });
        assert!(matches!(failed, Err(Error::KernelFailed(_))));
        let panicked: Result<(), Error> = gpu.on_device("testing", |_| panic!("inside cudarc"));
        assert!(matches!(panicked, Err(Error::KernelFailed(_))));
        let mut out = [0u64; 4];
        gpu.matmul(&[1, 2, 3, 4], &[5, 6, 7, 8], 2, 2, 2, &mut out)
            .unwrap();
        assert_eq!(out, [19, 22, 43, 50]);
    }
}
