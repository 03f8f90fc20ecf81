//! The server kernels on the CPU (core's portable ones) and on the GPU, on the sizes BERT-base
//! gives them at 128 tokens: a 768×768 and a 768×3072 layer (weights resident on the GPU), the
//! 12 heads' score products, a batch of comparison (one-bit DPF, 25-bit) keys and a batch of table lookups.
//! Each GPU figure includes copying the operands to the device and the result back. Without a
//! GPU only the CPU figures are measured, after a line saying why.

use criterion::{Criterion, criterion_group, criterion_main};
use securerouter_core::fss::{BitDpf, BitDpfKey, BitDpfKeys};
use securerouter_core::gate::{CpuKernels, Kernels, ServerWeights};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;
use securerouter_gpu::{CudaKernels, Thresholds};
use std::hint::black_box;
use std::sync::Arc;

/// Keys per FSS batch: one attention softmax's worth at 128 tokens is 12·128·128 ≈ 2^17.
const KEYS: usize = 1 << 17;

fn random(r: &mut AesCtr, n: usize) -> Vec<u64> {
    (0..n).map(|_| r.next_u64()).collect()
}

/// The CPU kernels, and the GPU's with `layers` resident on it where there is one.
fn backends(layers: &Arc<Vec<ServerWeights>>) -> Vec<(&'static str, Box<dyn Kernels>)> {
    let mut v: Vec<(&'static str, Box<dyn Kernels>)> = vec![("cpu", Box::new(CpuKernels::new()))];
    match CudaKernels::open(0) {
        Ok(k) => {
            eprintln!("GPU: {}", k.info());
            k.keep_resident(layers.clone()).unwrap();
            v.push(("gpu", Box::new(k.with_cpu_below(Thresholds::NEVER))));
        }
        Err(why) => eprintln!("GPU benchmarks skipped: {why}"),
    }
    v
}

fn kernels(c: &mut Criterion) {
    let mut r = AesCtr::new(&Seed::from_bytes([1; 16]), Domain(3));
    let layers: Arc<Vec<ServerWeights>> = Arc::new(
        [(768, 768), (768, 3072)]
            .iter()
            .enumerate()
            .map(|(i, &(k, n))| {
                let (online, masked) = (random(&mut r, k * n), random(&mut r, k * n));
                ServerWeights::from_parts(i as u32, (k, n), online, masked, random(&mut r, n))
                    .unwrap()
            })
            .collect(),
    );
    let x768 = random(&mut r, 128 * 768);
    let (q, kt) = (random(&mut r, 12 * 128 * 64), random(&mut r, 12 * 64 * 128));
    let dpf = BitDpf::new();
    let w = |b| BitWidth::new(b).unwrap();
    let compare_keys: Vec<BitDpfKey> = (0..KEYS)
        .map(|_| dpf.gen_keys(w(25), r.next_u64() >> 39, &mut r).unwrap().1)
        .collect();
    let compare_keys = BitDpfKeys::from_keys(&compare_keys).unwrap();
    let compare_xs: Vec<u64> = (0..KEYS).map(|_| r.next_u64() >> 39).collect();
    let lookup_keys: Vec<BitDpfKey> = (0..KEYS)
        .map(|_| dpf.gen_keys(w(8), r.next_u64() >> 56, &mut r).unwrap().1)
        .collect();
    let lookup_keys = BitDpfKeys::from_keys(&lookup_keys).unwrap();
    let lookup_xs: Vec<u64> = (0..KEYS).map(|_| r.next_u64() >> 56).collect();
    let table = random(&mut r, 256);

    let mut g = c.benchmark_group("kernels");
    g.sample_size(10);
    for (name, k) in backends(&layers) {
        for layer in layers.iter() {
            let (wm, _) = layer.parts();
            let (kk, n) = (layer.inputs(), layer.outputs());
            let mut out = vec![0u64; 128 * n];
            g.bench_function(format!("{name}/linear 128x{kk}x{n}"), |b| {
                b.iter(|| {
                    k.matmul(black_box(&x768[..128 * kk]), wm, 128, kk, n, &mut out)
                        .unwrap()
                })
            });
        }
        let mut scores = vec![0u64; 12 * 128 * 128];
        g.bench_function(format!("{name}/attention scores 12x128x64x128"), |b| {
            b.iter(|| {
                k.matmul_batch(black_box(&q), &kt, (12, 128, 64, 128), &mut scores)
                    .unwrap()
            })
        });
        let mut out = vec![0u64; KEYS];
        g.bench_function(format!("{name}/comparison 2^17 keys 25-bit"), |b| {
            b.iter(|| {
                k.dpf_prefix_parity(&compare_keys, black_box(&compare_xs), &mut out)
                    .unwrap()
            })
        });
        let (mut dot, mut ones) = (vec![0u64; KEYS], vec![0u64; KEYS]);
        g.bench_function(format!("{name}/lookup 2^17 keys 8-bit table"), |b| {
            b.iter(|| {
                k.dpf_lookup(
                    &lookup_keys,
                    black_box(&lookup_xs),
                    &table,
                    w(40),
                    &mut dot,
                    &mut ones,
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
