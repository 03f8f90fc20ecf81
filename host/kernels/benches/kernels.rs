//! The servers' local kernels on each path this CPU has, on one thread:
//! - matrix products (core's portable path, AVX2, AVX-512; and the best path split between all
//!   cores) at the shapes BERT-base and MiniLM-L6 give them at 128 tokens: every linear layer
//!   of a block (Q‖K‖V, output, FFN in and out), in Z_2^64 and reduced to the 52 bits the
//!   linear layers keep (AVX-512 IFMA where the CPU has it); throughput counts multiply-adds;
//! - the DPF walks (portable and the best path, VAES where the CPU has it): the comparison's
//!   prefix parity and GeLU's sign-and-window lookup; throughput counts keys.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use securerouter_core::fss::{BitDpf, BitDpfKeys};
use securerouter_core::gate::Kernels;
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;
use securerouter_kernels::{HostKernels, Simd};
use std::hint::black_box;

fn random(r: &mut AesCtr, n: usize) -> Vec<u64> {
    (0..n).map(|_| r.next_u64()).collect()
}

fn matmul(c: &mut Criterion) {
    let best = HostKernels::new().simd();
    let paths: Vec<Simd> = [Simd::None, Simd::Avx2, Simd::Avx512]
        .into_iter()
        .filter(|&s| HostKernels::with_simd(s).simd() == s)
        .collect();
    eprintln!("kernels: {} (the best of {paths:?})", best.name());
    let mut r = AesCtr::new(&Seed::from_bytes([4; 16]), Domain(1));
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10);
    let tokens = 128;
    for (model, k, n) in [
        ("bert-base qkv", 768, 2304),
        ("bert-base out", 768, 768),
        ("bert-base ffn-in", 768, 3072),
        ("bert-base ffn-out", 3072, 768),
        ("minilm qkv", 384, 1152),
        ("minilm ffn-out", 1536, 384),
    ] {
        let (a, b) = (random(&mut r, tokens * k), random(&mut r, k * n));
        let mut out = vec![0u64; tokens * n];
        group.throughput(Throughput::Elements((tokens * k * n) as u64));
        // Every path on one thread, and the best on every core as a server runs it.
        let cores = HostKernels::new().threads();
        let runs = paths
            .iter()
            .map(|&s| (s, 1))
            .chain((cores > 1).then_some((best, cores)));
        for (simd, threads) in runs {
            let kernels = HostKernels::with_simd(simd).with_threads(threads);
            let name = format!("{model} {tokens}x{k}x{n} {} x{threads}", simd.name());
            group.bench_function(name, |bench| {
                bench.iter(|| {
                    kernels
                        .matmul(black_box(&a), black_box(&b), tokens, k, n, &mut out)
                        .unwrap()
                })
            });
        }
        // The linear layers' ring, on the best path and one thread.
        let kernels = HostKernels::new().with_threads(1);
        let ring = BitWidth::new(52).unwrap();
        let ifma = if kernels.ifma() { " ifma" } else { "" };
        let name = format!("{model} {tokens}x{k}x{n} mod 2^52 {}{ifma} x1", best.name());
        group.bench_function(name, |bench| {
            bench.iter(|| {
                kernels
                    .matmul_reduced(
                        black_box(&a),
                        black_box(&b),
                        (1, tokens, k, n),
                        ring,
                        &mut out,
                    )
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// GeLU's kernel as a server runs it: 4096 one-bit DPF keys of 21 bits (a key chunk), each
/// giving its comparison and a 2^10-entry window table's masked dot product (entries of
/// GeLU's size, so 32-bit sums), on one thread.
fn sign_window(c: &mut Criterion) {
    let (n, count) = (BitWidth::new(21).unwrap(), 4096);
    let dpf = BitDpf::new();
    let mut r = AesCtr::new(&Seed::from_bytes([5; 16]), Domain(1));
    let keys: Vec<_> = (0..count)
        .map(|_| dpf.gen_keys(n, n.reduce(r.next_u64()), &mut r).unwrap().0)
        .collect();
    let keys = BitDpfKeys::from_keys(&keys).unwrap();
    let xs: Vec<u64> = (0..count).map(|_| n.reduce(r.next_u64())).collect();
    // Entries of GeLU's correction's size (below 2^10 at scale 2^12).
    let table: Vec<u64> = random(&mut r, 1 << 10).iter().map(|v| v % 1024).collect();
    let (mut parity, mut dot) = (vec![0u64; count], vec![0u64; count]);
    let mut group = c.benchmark_group("sign_window");
    group.sample_size(20);
    group.throughput(Throughput::Elements(count as u64));
    for simd in [Simd::None, HostKernels::new().simd()] {
        let kernels = HostKernels::with_simd(simd).with_threads(1);
        let name = format!("n21 window10 x{count} {}", kernels.simd().name());
        group.bench_function(name, |bench| {
            bench.iter(|| {
                kernels
                    .dpf_sign_window(
                        &keys,
                        &xs,
                        &table,
                        BitWidth::FULL,
                        &mut parity,
                        black_box(&mut dot),
                    )
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// The comparison's DPF walk: 4096 keys of 37 bits (a 64-bit value's comparison after
/// reduction), one AES pair a level.
fn prefix_parity(c: &mut Criterion) {
    let (n, count) = (BitWidth::new(37).unwrap(), 4096);
    let dpf = BitDpf::new();
    let mut r = AesCtr::new(&Seed::from_bytes([6; 16]), Domain(1));
    let keys: Vec<_> = (0..count)
        .map(|_| dpf.gen_keys(n, n.reduce(r.next_u64()), &mut r).unwrap().0)
        .collect();
    let keys = BitDpfKeys::from_keys(&keys).unwrap();
    let xs: Vec<u64> = (0..count).map(|_| n.reduce(r.next_u64())).collect();
    let mut out = vec![0u64; count];
    let mut group = c.benchmark_group("prefix_parity");
    group.sample_size(20);
    group.throughput(Throughput::Elements(count as u64));
    for simd in [Simd::None, HostKernels::new().simd()] {
        let kernels = HostKernels::with_simd(simd).with_threads(1);
        let name = format!("n37 x{count} {}", kernels.simd().name());
        group.bench_function(name, |bench| {
            bench.iter(|| {
                kernels
                    .dpf_prefix_parity(&keys, &xs, black_box(&mut out))
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, matmul, sign_window, prefix_parity);
criterion_main!(benches);
