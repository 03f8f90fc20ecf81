//! The servers' matrix products on each kernel path this CPU has (core's portable one, AVX2,
//! AVX-512) on one thread, and on the best path split between all cores, at the shapes BERT-base and MiniLM-L6 give them at 128 tokens: every linear layer
//! of a block (Q‖K‖V, output, FFN in and out), in Z_2^64 and reduced to the 52 bits the
//! linear layers keep (AVX-512 IFMA where the CPU has it). Throughput counts multiply-adds
//! (criterion's "elem/s").

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use securerouter_core::gate::Kernels;
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;
use securerouter_host::kernels::{HostKernels, Simd};
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

criterion_group!(benches, matmul);
criterion_main!(benches);
