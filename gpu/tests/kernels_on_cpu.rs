//! The CUDA kernels' source run on the CPU: `kernels.cu` is compiled as C++ with a few lines
//! that stand in for CUDA's built-ins (block and thread indices, `__popcll`, `atomicAdd`), and a
//! driver runs every thread of a grid one after another. The comparison and lookup kernels must
//! equal core's CPU kernels bit for bit on random keys of every width class, for both parties.
//!
//! This checks the kernels' arithmetic on machines without a GPU (CI); what it cannot check is
//! NVRTC, the device or concurrency between threads (`gpu/tests/kernels.rs` does, on a GPU).
//! Without a C++ compiler the test says that it skipped and why.

use securerouter_core::fss::{BitDpf, BitDpfKey, BitDpfKeys};
use securerouter_core::gate::{CpuKernels, Kernels};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;
use securerouter_core::share::Party;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// CUDA's built-ins as plain C++: one thread at a time, `blockDim.x = 1`.
const SHIM: &str = r#"
#include <cstdint>
#include <cstdio>
#include <vector>
#define __global__
#define __device__
#define __shared__ static
#define __constant__ static
#define __forceinline__ inline
struct Dim3 { unsigned x, y, z; };
static Dim3 blockIdx, blockDim = {1, 1, 1}, threadIdx;
static inline void __syncthreads() {}
static inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
static inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    unsigned long long old = *p; *p += v; return old;
}
"#;

/// Reads batches from stdin, runs both kernels' grids, writes their outputs to stdout.
const DRIVER: &str = r#"
static std::vector<u64> words(size_t n) {
    std::vector<u64> v(n);
    for (auto& x : v) if (scanf("%llu", &x) != 1) return {};
    return v;
}
int main() {
    unsigned count, levels, leaf_bits, p1, table_len;
    while (scanf("%u %u %u %u %u", &count, &levels, &leaf_bits, &p1, &table_len) == 5) {
        auto roots = words(2 * count), seeds = words(2 * (size_t)count * levels);
        auto controls64 = words(2 * (size_t)count * levels), last = words(2 * count);
        auto xs = words(count), table = words(table_len);
        std::vector<u8> controls(controls64.begin(), controls64.end());
        std::vector<u64> out(count, 7);
        for (unsigned i = 0; i < count; i++) {
            blockIdx.x = i;
            dpf_prefix_parity(roots.data(), seeds.data(), controls.data(), last.data(), xs.data(),
                              out.data(), count, levels, leaf_bits, p1);
        }
        for (auto v : out) printf("%llu ", v);
        printf("\n");
        std::vector<u64> dot(count, 0), ones(count, 0);
        if (table_len > 0) {
            for (u64 g = 0; g < ((u64)count << levels); g++) {
                blockIdx.x = (unsigned)g;
                dpf_lookup(roots.data(), seeds.data(), controls.data(), last.data(), xs.data(),
                           table.data(), dot.data(), ones.data(), count, levels, leaf_bits, p1);
            }
        }
        for (auto v : dot) printf("%llu ", v);
        printf("\n");
        for (auto v : ones) printf("%llu ", v);
        printf("\n");
    }
    return 0;
}
"#;

struct Case {
    bits: u32,
    keys: BitDpfKeys,
    xs: Vec<u64>,
    table: Vec<u64>,
}

fn cases() -> Vec<Case> {
    let dpf = BitDpf::new();
    let mut r = AesCtr::new(&Seed::from_bytes([12; 16]), Domain(3));
    let mut cases = Vec::new();
    // Narrow leaves (n < 7), one leaf (7), lookup widths, DReLU's 25 and 31, and 64.
    for bits in [1u32, 3, 5, 6, 7, 8, 10, 16, 25, 31, 64] {
        for party in [Party::P0, Party::P1] {
            let inw = BitWidth::new(bits).unwrap();
            let count = 150;
            let keys: Vec<BitDpfKey> = (0..count)
                .map(|_| {
                    let (k0, k1) = dpf.gen_keys(inw, inw.reduce(r.next_u64()), &mut r).unwrap();
                    if party == Party::P0 { k0 } else { k1 }
                })
                .collect();
            let table = if bits <= 10 {
                (0..1usize << bits).map(|_| r.next_u64()).collect()
            } else {
                Vec::new()
            };
            cases.push(Case {
                bits,
                keys: BitDpfKeys::from_keys(&keys).unwrap(),
                xs: (0..count).map(|_| inw.reduce(r.next_u64())).collect(),
                table,
            });
        }
    }
    cases
}

fn input(cases: &[Case]) -> String {
    let mut s = String::new();
    let words = |s: &mut String, v: &mut dyn Iterator<Item = u64>| {
        for w in v {
            write!(s, "{w} ").unwrap();
        }
        s.push('\n');
    };
    for c in cases {
        let p = c.keys.parts();
        let p1 = u32::from(p.party == Party::P1);
        writeln!(
            s,
            "{} {} {} {p1} {}",
            c.keys.len(),
            p.levels,
            p.leaf_bits,
            c.table.len()
        )
        .unwrap();
        let halves = |v: &[u128]| -> Vec<u64> {
            v.iter()
                .flat_map(|&x| [x as u64, (x >> 64) as u64])
                .collect()
        };
        words(&mut s, &mut halves(p.roots).into_iter());
        words(&mut s, &mut halves(p.seeds).into_iter());
        words(
            &mut s,
            &mut p.controls.iter().flat_map(|c| [c[0] as u64, c[1] as u64]),
        );
        words(&mut s, &mut halves(p.last).into_iter());
        words(&mut s, &mut c.xs.iter().copied());
        words(&mut s, &mut c.table.iter().copied());
    }
    s
}

/// Compiles the kernels with the shim and driver; `None` (after saying why) without a compiler.
fn build(dir: &Path) -> Option<std::path::PathBuf> {
    let source = format!("{SHIM}\n{}\n{DRIVER}", securerouter_gpu::kernel_source());
    let src = dir.join("kernels_on_cpu.cpp");
    let exe = dir.join("kernels_on_cpu");
    std::fs::write(&src, source).unwrap();
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let built = Command::new(&compiler)
        .args(["-O2", "-w", "-o"])
        .arg(&exe)
        .arg(&src)
        .output();
    match built {
        Ok(o) if o.status.success() => Some(exe),
        Ok(o) => panic!(
            "kernels.cu does not compile as C++:\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(why) => {
            eprintln!(
                "SKIPPED cuda_source_equals_the_cpu_kernels: no C++ compiler ({compiler}: {why})"
            );
            None
        }
    }
}

#[test]
fn cuda_source_equals_the_cpu_kernels() {
    let dir = std::env::temp_dir().join(format!("securerouter-kernels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(exe) = build(&dir) else {
        return;
    };
    let cases = cases();
    std::fs::write(dir.join("input.txt"), input(&cases)).unwrap();
    let run = Command::new(&exe)
        .stdin(std::fs::File::open(dir.join("input.txt")).unwrap())
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(run.status.success(), "the emulated grid failed");
    let text = String::from_utf8(run.stdout).unwrap();
    let mut lines = text.lines().map(|l| {
        l.split_whitespace()
            .map(|w| w.parse::<u64>().unwrap())
            .collect::<Vec<u64>>()
    });
    let cpu = CpuKernels::new();
    for c in &cases {
        let n = c.keys.len();
        let mut want = vec![0u64; n];
        cpu.dpf_prefix_parity(&c.keys, &c.xs, &mut want).unwrap();
        assert_eq!(lines.next().unwrap(), want, "comparison, {} bits", c.bits);
        let (dot, ones) = (lines.next().unwrap(), lines.next().unwrap());
        if !c.table.is_empty() {
            let (mut wd, mut wo) = (vec![0u64; n], vec![0u64; n]);
            cpu.dpf_lookup(&c.keys, &c.xs, &c.table, BitWidth::FULL, &mut wd, &mut wo)
                .unwrap();
            assert_eq!((dot, ones), (wd, wo), "lookup, {} bits", c.bits);
        }
    }
    assert!(lines.next().is_none());
}
