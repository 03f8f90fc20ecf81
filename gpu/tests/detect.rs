//! Runtime GPU detection: never panics; on a machine without CUDA it explains why, and on a GPU
//! machine the detected device really runs an NVRTC-compiled kernel.

use securerouter_gpu::cudarc::driver::{LaunchConfig, PushKernelArg};
use securerouter_gpu::cudarc::nvrtc::compile_ptx;
use securerouter_gpu::{
    DRIVER_LIBRARY, GpuAvailability, GpuInfo, GpuUnavailable, NVRTC_LIBRARY, cpu_fallback_message,
    detect, driver_library_present, nvrtc_library_present, open_context,
};

#[test]
fn detect_never_panics_and_explains_itself() {
    match detect() {
        GpuAvailability::Available(info) => check_gpu(&info),
        GpuAvailability::Unavailable(reason) => {
            eprintln!("SKIPPED: {reason}");
            check_reason(&reason);
        }
    }
}

#[test]
fn detect_is_repeatable() {
    // A second call (libraries already probed, driver possibly initialised) gives the same answer.
    assert_eq!(detect(), detect());
}

#[test]
fn open_context_agrees_with_detect() {
    match (detect(), open_context(0)) {
        (GpuAvailability::Available(info), Ok(ctx)) => assert_eq!(ctx.ordinal(), info.ordinal),
        (GpuAvailability::Unavailable(a), Err(b)) => assert_eq!(a, b),
        (d, o) => panic!("detect() = {d:?} but open_context(0) = {:?}", o.map(|_| ())),
    }
}

fn check_reason(reason: &GpuUnavailable) {
    let msg = reason.to_string();
    assert!(!msg.is_empty());
    assert!(
        msg.contains("CPU"),
        "reason should say the CPU is used: {msg}"
    );
    assert!(cpu_fallback_message(reason).contains(&msg));
    match reason {
        GpuUnavailable::NoDriverLibrary => {
            assert!(!driver_library_present());
            assert!(msg.contains(DRIVER_LIBRARY), "{msg}");
            assert_eq!(reason.missing_library(), Some(DRIVER_LIBRARY));
        }
        GpuUnavailable::NoNvrtcLibrary => {
            assert!(driver_library_present());
            assert!(!nvrtc_library_present());
            assert!(msg.contains(NVRTC_LIBRARY), "{msg}");
            assert_eq!(reason.missing_library(), Some(NVRTC_LIBRARY));
        }
        GpuUnavailable::NoDevices
        | GpuUnavailable::Driver { .. }
        | GpuUnavailable::DriverPanicked { .. } => {
            assert!(driver_library_present() && nvrtc_library_present());
            assert_eq!(reason.missing_library(), None);
        }
    }
}

const ADD_U64: &str = r#"
extern "C" __global__ void add_u64(const unsigned long long *a, const unsigned long long *b,
                                   unsigned long long *out, unsigned long long n) {
    unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = a[i] + b[i];
    }
}
"#;

/// On a GPU machine: the facts are sane, and a tiny kernel computes what the CPU computes.
fn check_gpu(info: &GpuInfo) {
    eprintln!("GPU: {info}");
    assert!(!info.name.trim().is_empty());
    assert!(info.total_memory_bytes > 0);
    assert!(info.compute_capability.major > 0);
    assert!(info.device_count >= 1);

    let ctx = open_context(info.ordinal).expect("detect() succeeded, so the context opens");
    let stream = ctx.default_stream();
    let ptx = compile_ptx(ADD_U64).expect("NVRTC compiles the kernel");
    let module = ctx.load_module(ptx).expect("load PTX module");
    let add = module.load_function("add_u64").expect("find add_u64");

    // More than one block, with values that wrap around 2^64.
    let n: usize = 3000;
    let a: Vec<u64> = (0..n as u64)
        .map(|i| u64::MAX - i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let b: Vec<u64> = (0..n as u64)
        .map(|i| i.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ (i << 40))
        .collect();
    let expected: Vec<u64> = a.iter().zip(&b).map(|(x, y)| x.wrapping_add(*y)).collect();

    let a_dev = stream.clone_htod(&a).expect("copy a");
    let b_dev = stream.clone_htod(&b).expect("copy b");
    let mut out_dev = stream.alloc_zeros::<u64>(n).expect("alloc out");
    let n_arg = n as u64;
    let mut launch = stream.launch_builder(&add);
    launch.arg(&a_dev).arg(&b_dev).arg(&mut out_dev).arg(&n_arg);
    let cfg = LaunchConfig::for_num_elems(u32::try_from(n).expect("small n"));
    // SAFETY: the arguments match `add_u64`'s parameters in order and type (three device arrays
    // of `n` u64 values and `n` as an unsigned 64-bit integer), and the kernel only touches
    // indices below `n`.
    unsafe { launch.launch(cfg) }.expect("launch add_u64");
    let got = stream.clone_dtoh(&out_dev).expect("copy out");
    assert_eq!(got, expected);
}
