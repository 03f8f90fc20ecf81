//! The dealer's keys are a function of the session's seed and the weights' masks alone: a
//! dealer computing its products on the host's SIMD, threaded kernels deals byte for byte what
//! one on the portable reference deals, so servers cannot tell (and need not care) which ran.

use securerouter_circuits::bert::{BertShape, RingLayer, share_layers};
use securerouter_circuits::memory::{Served, deal};
use securerouter_circuits::{Activation, CircuitKind, ModelSpec};
use securerouter_core::gate::CpuKernels;
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_kernels::{HostKernels, Simd};

#[test]
fn the_dealers_keys_do_not_depend_on_its_kernels() {
    let shape = BertShape {
        layers: 1,
        hidden: 64,
        heads: 2,
        ffn: 128,
        classes: 2,
        activation: Activation::Gelu,
        relative_buckets: 0,
    };
    let spec = ModelSpec::Bert(shape);
    let mut r = AesCtr::new(&Seed::from_bytes([3; 16]), Domain(1));
    let layers: Vec<RingLayer> = spec
        .layer_shapes()
        .into_iter()
        .map(|(k, n)| RingLayer {
            k,
            n,
            w: (0..k * n).map(|_| r.next_u64()).collect(),
            bias: (0..n).map(|_| r.next_u64()).collect(),
        })
        .collect();
    let model = share_layers(&layers, &Seed::from_bytes([4; 16])).unwrap();
    let kind = CircuitKind::Bert;
    let in_shape = [16, spec.input_cols(kind)];
    let master = Seed::from_bytes([5; 16]);
    let served = Served { spec: &spec, kind };
    let reference = deal(
        &served,
        &in_shape,
        &model,
        &master,
        Box::new(CpuKernels::default()),
    )
    .unwrap();
    assert!(!reference.linear[1].is_empty() && !reference.shared.is_empty());
    for simd in [Simd::None, Simd::Avx2, Simd::Avx512] {
        for threads in [1, 3] {
            let kernels = HostKernels::with_simd(simd).with_threads(threads);
            let name = format!(
                "{:?} (IFMA {}) on {threads} threads",
                kernels.simd(),
                kernels.ifma()
            );
            let keys = deal(&served, &in_shape, &model, &master, Box::new(kernels)).unwrap();
            assert!(keys == reference, "{name}: other keys");
        }
    }
    // And the keys do depend on the seed: the comparison above can fail.
    let other = deal(
        &served,
        &in_shape,
        &model,
        &Seed::from_bytes([6; 16]),
        Box::new(HostKernels::new()),
    )
    .unwrap();
    assert!(other.linear[1] != reference.linear[1]);
}
