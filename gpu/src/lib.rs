//! GPU support for the SecureRouter MPC servers.
//!
//! - [`CudaKernels`]: core's [`Kernels`](securerouter_core::gate::Kernels) (wrapping u64
//!   matrix products, DPF comparisons, DPF table lookups) as CUDA kernels compiled at run time
//!   with NVRTC, equal to the CPU kernels bit for bit, with weights resident on the device.
//! - **Runtime GPU detection** ([`detect`]), which tells the host whether a usable CUDA device
//!   is present or, if not, exactly why not, so the host can log one clear line and run the
//!   kernels on the CPU.
//!
//! The crate builds on machines with no CUDA installed at all: [`cudarc`] is used with
//! `dynamic-loading`, so `libcuda` and `libnvrtc` are opened with `dlopen` only when asked for.
//! Because cudarc *panics* when a library it needs is missing, [`detect`] first checks that both
//! libraries can be loaded and only then touches the driver; driver failures come back as
//! values ([`GpuUnavailable`]), never as panics.
//!
//! ```
//! match securerouter_gpu::detect() {
//!     securerouter_gpu::GpuAvailability::Available(info) => println!("GPU: {info}"),
//!     securerouter_gpu::GpuAvailability::Unavailable(why) => println!("GPU: none ({why})"),
//! }
//! ```
//!
//! # Unsafe code
//!
//! Seven `unsafe` blocks, each with its safety argument:
//! 1. [`driver_library_present`]: cudarc's `is_culib_present` is `unsafe` because loading a
//!    shared library runs its initialisers; it loads `libcuda` and drops the handle at once,
//!    touching no state of ours.
//! 2. [`nvrtc_library_present`]: the same for `libnvrtc`.
//! 3. The start-up AES check (`check_aes`, in `kernels.rs`): launches `aes_left`, which reads
//!    `count` blocks of its input and writes as many of its output, both `count` blocks long.
//! 4. `control_bytes`: views the keys' `&[[bool; 2]]` as `2 · len` bytes: `[bool; 2]` is two
//!    bytes of alignment 1, each 0 or 1 (a valid `u8`), borrowed as long as the input.
//! 5. `matmul_batch`: launches `matmul_u64`, whose threads read `a` (batch·m·k words) and `b`
//!    (batch·k·n) and write `c` (batch·m·n) only at rows below m and columns below n; the
//!    lengths are checked by `check_matmul` and the dimensions converted to `u32` with checks.
//! 6. `dpf_prefix_parity`: launches `dpf_prefix_parity`, whose thread i < count reads key i's
//!    root, `levels` correction words and last block and `xs[i]`, and writes `out[i]`; every
//!    buffer is copied from a key batch of `count` keys (or allocated for it).
//! 7. `dpf_lookup`: launches `dpf_lookup`, whose thread (key, leaf) with key < count reads
//!    that key's words and `xs[key]`, table entries at indexes masked to the table's 2^n
//!    (its length, checked), and adds into `dot[key]` and `ones[key]`.
//!
//! A launch is `unsafe` because the compiler checks neither the argument list against the
//! CUDA function nor the device code's memory accesses; the arguments above are pushed in the
//! kernels' order and types (tested against the CPU kernels on a GPU, and the CUDA source
//! compiled as C++ on the CPU without one).

#![warn(missing_docs)]

mod kernels;

pub use kernels::{CudaKernels, Thresholds, kernel_source};

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

/// The [`cudarc`] crate this crate is built on, re-exported so that users name the same version.
pub use cudarc;

use cudarc::driver::{CudaContext, DriverError, sys::CUresult};

/// File name of the CUDA driver library that must be loadable for a GPU to be used.
pub const DRIVER_LIBRARY: &str = if cfg!(windows) {
    "nvcuda.dll"
} else {
    "libcuda.so"
};

/// File name of the NVRTC runtime-compilation library that must be loadable to build kernels.
pub const NVRTC_LIBRARY: &str = if cfg!(windows) {
    "nvrtc64_*.dll"
} else {
    "libnvrtc.so"
};

/// Whether the CUDA driver library (`libcuda`) can be loaded on this machine.
///
/// This only opens and closes the shared library; it does not initialise the driver.
#[must_use]
pub fn driver_library_present() -> bool {
    // SAFETY: `is_culib_present` is `unsafe` only because loading a shared library runs its
    // initialisation routines (libloading's `Library::new`). It tries the usual names of the
    // CUDA driver library (`libcuda.so`, `libcuda.so.1`, ..., `nvcuda.dll`) and drops each handle
    // at once; the vendor's driver library has no initialisers with preconditions we could break,
    // and no other state of ours is touched.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether the NVRTC library (`libnvrtc`), which compiles the kernels at run time, can be loaded.
///
/// This only opens and closes the shared library.
#[must_use]
pub fn nvrtc_library_present() -> bool {
    // SAFETY: as for `driver_library_present`: loading NVRTC runs only its own initialisers, and
    // the handle is dropped straight away.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compute capability (SM version) of a CUDA device, e.g. 9.0 for an H100.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComputeCapability {
    /// Major version (the architecture generation).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl fmt::Display for ComputeCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Facts about the CUDA device the servers would use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    /// Device ordinal (always 0 for now: the first device).
    pub ordinal: usize,
    /// Device name as reported by the driver, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Total device memory in bytes.
    pub total_memory_bytes: u64,
    /// Compute capability of the device.
    pub compute_capability: ComputeCapability,
    /// Number of CUDA devices visible to this process (at least 1).
    pub device_count: usize,
}

impl fmt::Display for GpuInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Lossy on purpose: a human-readable size.
        #[allow(clippy::cast_precision_loss)]
        let gib = self.total_memory_bytes as f64 / f64::from(1u32 << 30);
        write!(
            f,
            "{} (device {} of {} visible), {gib:.1} GiB, compute capability {}",
            self.name, self.ordinal, self.device_count, self.compute_capability
        )
    }
}

/// Why no GPU can be used; the servers then run their kernels on the CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuUnavailable {
    /// The CUDA driver library ([`DRIVER_LIBRARY`]) could not be loaded.
    NoDriverLibrary,
    /// The NVRTC library ([`NVRTC_LIBRARY`]) could not be loaded, so kernels cannot be compiled.
    NoNvrtcLibrary,
    /// The driver loaded and reports no CUDA device.
    NoDevices,
    /// A driver call failed.
    Driver {
        /// What was being done, e.g. "initialising the driver".
        during: &'static str,
        /// The driver's error: its name and description, e.g.
        /// "CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected".
        message: String,
    },
    /// cudarc panicked inside the driver bindings (e.g. a driver too old to export a symbol);
    /// the panic was caught.
    DriverPanicked {
        /// The panic message.
        message: String,
    },
}

impl GpuUnavailable {
    /// The library whose absence is the reason, if that is the reason.
    #[must_use]
    pub fn missing_library(&self) -> Option<&'static str> {
        match self {
            Self::NoDriverLibrary => Some(DRIVER_LIBRARY),
            Self::NoNvrtcLibrary => Some(NVRTC_LIBRARY),
            Self::NoDevices | Self::Driver { .. } | Self::DriverPanicked { .. } => None,
        }
    }

    fn driver(during: &'static str, err: DriverError) -> Self {
        // "CUDA_ERROR_X: description" when the driver can name its error, else the raw code.
        let message = match (err.error_name(), err.error_string()) {
            (Ok(name), Ok(text)) => {
                format!("{}: {}", name.to_string_lossy(), text.to_string_lossy())
            }
            _ => format!("{:?}", err.0),
        };
        Self::Driver { during, message }
    }
}

impl fmt::Display for GpuUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDriverLibrary => write!(
                f,
                "no CUDA driver library ({DRIVER_LIBRARY}) found; server kernels run on the CPU"
            ),
            Self::NoNvrtcLibrary => write!(
                f,
                "CUDA driver found but no NVRTC library ({NVRTC_LIBRARY}) to compile kernels; \
                 server kernels run on the CPU"
            ),
            Self::NoDevices => write!(
                f,
                "CUDA driver found but it reports no CUDA device; server kernels run on the CPU"
            ),
            Self::Driver { during, message } => write!(
                f,
                "CUDA driver error while {during}: {message}; server kernels run on the CPU"
            ),
            Self::DriverPanicked { message } => write!(
                f,
                "CUDA bindings failed ({message}); server kernels run on the CPU"
            ),
        }
    }
}

impl std::error::Error for GpuUnavailable {}

/// Outcome of [`detect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuAvailability {
    /// A usable CUDA device and NVRTC were found.
    Available(GpuInfo),
    /// No GPU will be used, for the given reason.
    Unavailable(GpuUnavailable),
}

impl GpuAvailability {
    /// Whether a GPU is available.
    #[must_use]
    pub fn is_available(&self) -> bool {
        matches!(self, Self::Available(_))
    }

    /// The device facts, when available.
    #[must_use]
    pub fn info(&self) -> Option<&GpuInfo> {
        match self {
            Self::Available(info) => Some(info),
            Self::Unavailable(_) => None,
        }
    }

    /// Converts into a `Result`, for use with `?`.
    ///
    /// # Errors
    /// The reason no GPU is available.
    pub fn into_result(self) -> Result<GpuInfo, GpuUnavailable> {
        match self {
            Self::Available(info) => Ok(info),
            Self::Unavailable(why) => Err(why),
        }
    }
}

impl From<Result<GpuInfo, GpuUnavailable>> for GpuAvailability {
    fn from(r: Result<GpuInfo, GpuUnavailable>) -> Self {
        match r {
            Ok(info) => Self::Available(info),
            Err(why) => Self::Unavailable(why),
        }
    }
}

/// The one line the host logs when it falls back to the CPU.
#[must_use]
pub fn cpu_fallback_message(reason: &GpuUnavailable) -> String {
    format!("GPU unavailable: {reason}")
}

/// Detects whether a usable CUDA GPU (device 0) and NVRTC are present.
///
/// Checks, in order: the driver library loads, the NVRTC library loads, the driver initialises,
/// at least one device exists, and device 0's name, memory and compute capability can be read.
/// Never panics: library absence and driver errors are returned as [`GpuUnavailable`], and a
/// panic from inside cudarc is caught and reported as [`GpuUnavailable::DriverPanicked`] (the
/// process's panic hook still prints that panic's message to stderr; the global hook is left
/// alone on purpose). A build with `panic = "abort"` would lose that last safety net.
#[must_use]
pub fn detect() -> GpuAvailability {
    if !driver_library_present() {
        return GpuAvailability::Unavailable(GpuUnavailable::NoDriverLibrary);
    }
    if !nvrtc_library_present() {
        return GpuAvailability::Unavailable(GpuUnavailable::NoNvrtcLibrary);
    }
    guarded(|| {
        let ctx = open_checked(0)?;
        query(&ctx)
    })
    .into()
}

/// Opens a context on device `ordinal`, after the same library checks as [`detect`].
///
/// This is the entry point for code that goes on to compile and launch kernels.
///
/// # Errors
/// Why the device cannot be used (missing library, no such device, driver error).
pub fn open_context(ordinal: usize) -> Result<Arc<CudaContext>, GpuUnavailable> {
    if !driver_library_present() {
        return Err(GpuUnavailable::NoDriverLibrary);
    }
    if !nvrtc_library_present() {
        return Err(GpuUnavailable::NoNvrtcLibrary);
    }
    guarded(|| open_checked(ordinal))
}

/// Runs `f`, turning a panic inside cudarc into [`GpuUnavailable::DriverPanicked`].
fn guarded<T>(f: impl FnOnce() -> Result<T, GpuUnavailable>) -> Result<T, GpuUnavailable> {
    // Everything `f` touches is created inside it, so no broken state can be observed afterwards.
    panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(GpuUnavailable::DriverPanicked { message })
    })
}

/// Counts devices, then opens `ordinal`. The libraries must already be known to be present.
fn open_checked(ordinal: usize) -> Result<Arc<CudaContext>, GpuUnavailable> {
    let count = match CudaContext::device_count() {
        Ok(n) => n,
        // cuInit itself reports "no device" on machines with a driver but no GPU.
        Err(e) if e.0 == CUresult::CUDA_ERROR_NO_DEVICE => 0,
        Err(e) => return Err(GpuUnavailable::driver("initialising the driver", e)),
    };
    let count = usize::try_from(count).unwrap_or(0);
    if count == 0 {
        return Err(GpuUnavailable::NoDevices);
    }
    if ordinal >= count {
        return Err(GpuUnavailable::Driver {
            during: "opening a context",
            message: format!("device ordinal {ordinal} requested but only {count} present"),
        });
    }
    CudaContext::new(ordinal).map_err(|e| GpuUnavailable::driver("opening a context", e))
}

fn query(ctx: &Arc<CudaContext>) -> Result<GpuInfo, GpuUnavailable> {
    let name = ctx
        .name()
        .map_err(|e| GpuUnavailable::driver("reading the device name", e))?;
    let total = ctx
        .total_mem()
        .map_err(|e| GpuUnavailable::driver("reading the device memory size", e))?;
    let (major, minor) = ctx
        .compute_capability()
        .map_err(|e| GpuUnavailable::driver("reading the compute capability", e))?;
    let device_count =
        CudaContext::device_count().map_err(|e| GpuUnavailable::driver("counting devices", e))?;
    Ok(GpuInfo {
        ordinal: ctx.ordinal(),
        name,
        total_memory_bytes: u64::try_from(total).unwrap_or(u64::MAX),
        compute_capability: ComputeCapability {
            major: u32::try_from(major).unwrap_or(0),
            minor: u32::try_from(minor).unwrap_or(0),
        },
        device_count: usize::try_from(device_count).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_missing_library() {
        let no_cuda = GpuUnavailable::NoDriverLibrary;
        assert!(no_cuda.to_string().contains(DRIVER_LIBRARY));
        assert_eq!(no_cuda.missing_library(), Some(DRIVER_LIBRARY));
        let no_nvrtc = GpuUnavailable::NoNvrtcLibrary;
        assert!(no_nvrtc.to_string().contains(NVRTC_LIBRARY));
        assert_eq!(no_nvrtc.missing_library(), Some(NVRTC_LIBRARY));
        assert_eq!(GpuUnavailable::NoDevices.missing_library(), None);
    }

    #[test]
    fn every_reason_says_cpu_fallback() {
        let reasons = [
            GpuUnavailable::NoDriverLibrary,
            GpuUnavailable::NoNvrtcLibrary,
            GpuUnavailable::NoDevices,
            GpuUnavailable::Driver {
                during: "initialising the driver",
                message: "CUDA_ERROR_UNKNOWN".into(),
            },
            GpuUnavailable::DriverPanicked {
                message: "Missing symbol cuFoo".into(),
            },
        ];
        for r in &reasons {
            let msg = cpu_fallback_message(r);
            assert!(msg.starts_with("GPU unavailable: "), "{msg}");
            assert!(msg.ends_with("server kernels run on the CPU"), "{msg}");
        }
    }

    #[test]
    fn guarded_turns_panics_into_values() {
        let r: Result<(), _> = guarded(|| panic!("Missing symbol cuFoo"));
        assert_eq!(
            r,
            Err(GpuUnavailable::DriverPanicked {
                message: "Missing symbol cuFoo".into()
            })
        );
        let r: Result<(), _> = guarded(|| panic!("{}", String::from("owned")));
        assert_eq!(
            r,
            Err(GpuUnavailable::DriverPanicked {
                message: "owned".into()
            })
        );
    }

    #[test]
    fn info_display_is_readable() {
        let info = GpuInfo {
            ordinal: 0,
            name: "NVIDIA H100".into(),
            total_memory_bytes: 80 << 30,
            compute_capability: ComputeCapability { major: 9, minor: 0 },
            device_count: 1,
        };
        assert_eq!(
            info.to_string(),
            "NVIDIA H100 (device 0 of 1 visible), 80.0 GiB, compute capability 9.0"
        );
        let a = GpuAvailability::Available(info.clone());
        assert!(a.is_available());
        assert_eq!(a.info(), Some(&info));
        assert_eq!(a.into_result(), Ok(info));
    }
}
