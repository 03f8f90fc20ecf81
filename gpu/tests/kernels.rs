//! The CUDA kernels equal core's CPU kernels bit for bit on random inputs: products (single,
//! batched, odd shapes, resident weights), comparisons on one-bit DPF keys of every width class, and table lookups
//! from a partial leaf block to many blocks, for both parties. Without a GPU every test says
//! that it skipped and why.

use securerouter_core::Error;
use securerouter_core::fss::{BitDpf, BitDpfKey, BitDpfKeys};
use securerouter_core::gate::{CpuKernels, Kernels, ServerWeights};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_core::ring::BitWidth;
use securerouter_core::share::Party;
use securerouter_gpu::{CudaKernels, Thresholds};
use std::sync::Arc;

/// The GPU backend with every call on the device, or `None` after printing why not.
fn gpu(test: &str) -> Option<CudaKernels> {
    match CudaKernels::open(0) {
        Ok(k) => {
            eprintln!("{test}: running on {}", k.info());
            Some(k.with_cpu_below(Thresholds::NEVER))
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

fn rng(tag: u8) -> AesCtr {
    AesCtr::new(&Seed::from_bytes([tag; 16]), Domain(7))
}

fn random(r: &mut AesCtr, n: usize) -> Vec<u64> {
    (0..n).map(|_| r.next_u64()).collect()
}

#[test]
fn products_equal_the_cpu() {
    let Some(gpu) = gpu("products_equal_the_cpu") else {
        return;
    };
    let cpu = CpuKernels::new();
    let mut r = rng(1);
    for (batch, m, k, n) in [
        (1, 1, 1, 1),
        (1, 3, 5, 7),
        (1, 64, 64, 64),
        (1, 65, 17, 129),
        (1, 128, 768, 768),
        (1, 128, 384, 1536),
        (12, 128, 64, 128),
        (3, 1, 300, 2),
    ] {
        let a = random(&mut r, batch * m * k);
        let b = random(&mut r, batch * k * n);
        let (mut want, mut got) = (vec![0; batch * m * n], vec![1; batch * m * n]);
        cpu.matmul_batch(&a, &b, (batch, m, k, n), &mut want)
            .unwrap();
        gpu.matmul_batch(&a, &b, (batch, m, k, n), &mut got)
            .unwrap();
        assert_eq!(got, want, "{batch}×({m}×{k} · {k}×{n})");
    }
}

#[test]
fn resident_weights_give_the_same_products() {
    let Some(gpu) = gpu("resident_weights_give_the_same_products") else {
        return;
    };
    let cpu = CpuKernels::new();
    let mut r = rng(2);
    let layers: Vec<ServerWeights> = [(384, 384), (384, 1536), (1536, 384)]
        .iter()
        .enumerate()
        .map(|(i, &(k, n))| {
            let (online, masked) = (random(&mut r, k * n), random(&mut r, k * n));
            ServerWeights::from_parts(i as u32, (k, n), online, masked, random(&mut r, n)).unwrap()
        })
        .collect();
    let layers = Arc::new(layers);
    let bytes = gpu.keep_resident(layers.clone()).unwrap();
    assert_eq!(bytes, 2 * 8 * (384 * 384 + 2 * 384 * 1536));
    // Keeping them again copies nothing.
    assert_eq!(gpu.keep_resident(layers.clone()).unwrap(), 0);
    for layer in layers.iter() {
        let (w, _) = layer.parts();
        let (k, n) = (layer.inputs(), layer.outputs());
        let a = random(&mut r, 128 * k);
        let (mut want, mut got) = (vec![0; 128 * n], vec![0; 128 * n]);
        cpu.matmul(&a, w, 128, k, n, &mut want).unwrap();
        gpu.matmul(&a, w, 128, k, n, &mut got).unwrap();
        assert_eq!(got, want, "resident {k}×{n}");
        // A prefix of a resident matrix is not that matrix: it must be copied, not looked up.
        let rows = k / 2;
        let (mut want, mut got) = (vec![0; 128 * n], vec![0; 128 * n]);
        let a = random(&mut r, 128 * rows);
        cpu.matmul(&a, &w[..rows * n], 128, rows, n, &mut want)
            .unwrap();
        gpu.matmul(&a, &w[..rows * n], 128, rows, n, &mut got)
            .unwrap();
        assert_eq!(got, want, "prefix of resident {k}×{n}");
    }
}

#[test]
fn comparisons_equal_the_cpu() {
    let Some(gpu) = gpu("comparisons_equal_the_cpu") else {
        return;
    };
    let cpu = CpuKernels::new();
    let mut r = rng(3);
    // Narrow leaves (n < 7), one leaf (7), and the widths DReLU uses (25, 31), up to 64.
    for (bits, count) in [
        (1u32, 300usize),
        (5, 600),
        (7, 1000),
        (16, 777),
        (25, 2000),
        (31, 513),
        (64, 600),
    ] {
        for party in [Party::P0, Party::P1] {
            let inw = BitWidth::new(bits).unwrap();
            let keys = lookup_batch(&mut r, count, inw, party);
            let xs: Vec<u64> = (0..count).map(|_| inw.reduce(r.next_u64())).collect();
            let (mut want, mut got) = (vec![0; count], vec![0; count]);
            cpu.dpf_prefix_parity(&keys, &xs, &mut want).unwrap();
            gpu.dpf_prefix_parity(&keys, &xs, &mut got).unwrap();
            assert_eq!(got, want, "{bits}-bit comparison, {party:?}");
        }
    }
}

fn lookup_batch(r: &mut AesCtr, count: usize, inw: BitWidth, party: Party) -> BitDpfKeys {
    let dpf = BitDpf::new();
    let keys: Vec<BitDpfKey> = (0..count)
        .map(|_| {
            let (k0, k1) = dpf.gen_keys(inw, inw.reduce(r.next_u64()), r).unwrap();
            if party == Party::P0 { k0 } else { k1 }
        })
        .collect();
    BitDpfKeys::from_keys(&keys).unwrap()
}

#[test]
fn table_lookups_equal_the_cpu() {
    let Some(gpu) = gpu("table_lookups_equal_the_cpu") else {
        return;
    };
    let cpu = CpuKernels::new();
    let mut r = rng(4);
    for bits in [1u32, 3, 6, 7, 8, 10, 12, 14] {
        for party in [Party::P0, Party::P1] {
            let inw = BitWidth::new(bits).unwrap();
            let out = BitWidth::new(13 + bits).unwrap();
            let count = 600;
            let table: Vec<u64> = (0..1usize << bits)
                .map(|_| out.reduce(r.next_u64()))
                .collect();
            let keys = lookup_batch(&mut r, count, inw, party);
            let xs: Vec<u64> = (0..count).map(|_| inw.reduce(r.next_u64())).collect();
            let run = |k: &dyn Kernels| {
                let (mut dot, mut ones) = (vec![0u64; count], vec![0u64; count]);
                k.dpf_lookup(&keys, &xs, &table, out, &mut dot, &mut ones)
                    .unwrap();
                (dot, ones)
            };
            assert_eq!(run(&gpu), run(&cpu), "{bits}-bit table, {party:?}");
        }
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let Some(gpu) = gpu("bad_inputs_are_errors_not_panics") else {
        return;
    };
    let mut out = vec![0u64; 4];
    assert!(matches!(
        gpu.matmul(&[1; 6], &[1; 6], 2, 3, 2, &mut out[..3]),
        Err(Error::LengthMismatch { .. })
    ));
    let mut r = rng(5);
    let w8 = BitWidth::new(8).unwrap();
    let keys = lookup_batch(&mut r, 4, w8, Party::P1);
    assert!(matches!(
        gpu.dpf_prefix_parity(&keys, &[1, 2, 300, 4], &mut out),
        Err(Error::ValueOutOfRange { bits: 8 })
    ));
    let (mut dot, mut ones) = (vec![0u64; 4], vec![0u64; 4]);
    assert!(matches!(
        gpu.dpf_lookup(&keys, &[1, 2, 3, 4], &[0; 255], w8, &mut dot, &mut ones),
        Err(Error::LengthMismatch {
            expected: 256,
            got: 255
        })
    ));
}
