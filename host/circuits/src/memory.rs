//! One secure BERT session in one process: the dealer runs the circuit on masks into memory,
//! the client splits its input, and P0 and P1 run as two tasks over an in-memory link. Tests
//! and quick checks use it; deployments use the services over encrypted links.

use super::bert::{BertShape, SharedModel, bert_classifier};
use super::layers::FRAC;
use crate::run_ready;
use crate::{CircuitKind, ModelSpec, Stage};
use securerouter_core::Error;
use securerouter_core::dealer::Dealer;
use securerouter_core::gate::memory::{MemoryKeys, MemoryLink};
use securerouter_core::gate::{DealerSide, Kernels, Protocol, ServerSide, Tensor, Traffic};
use securerouter_core::prg::Seed;
use securerouter_core::ring::{BitWidth, FixedPoint};
use securerouter_core::share::{Party, SeededShareStream};
use securerouter_kernels::HostKernels;

/// What a session produced and cost.
#[derive(Clone, Debug)]
pub struct MemoryRun {
    /// The outputs the client reconstructed (decoded at FRAC bits), every output tensor's
    /// values in circuit order.
    pub outputs: Vec<f64>,
    /// Traffic each server sent the other.
    pub traffic: [Traffic; 2],
    /// Key bytes each server read from the dealer.
    pub key_bytes: [usize; 2],
    /// The values of the wire the circuit revealed to both servers (empty if none).
    pub revealed: Vec<u64>,
}

/// A computation on one fixed-point input tensor, written once for every role.
#[allow(async_fn_in_trait)]
pub trait Circuit {
    /// Runs on `p` (dealer or server): one input wire, weights; the output wires and the
    /// wire revealed to the servers, if any.
    async fn run<P: Protocol>(
        &self,
        p: &mut P,
        x: &Tensor,
        w: &[P::Weights],
    ) -> Result<Stage, Error>;
}

impl Circuit for BertShape {
    async fn run<P: Protocol>(
        &self,
        p: &mut P,
        x: &Tensor,
        w: &[P::Weights],
    ) -> Result<Stage, Error> {
        Ok(vec![bert_classifier(p, self, x, w).await?].into())
    }
}

/// Circuit `kind` of a deployed model, as the services run it.
pub struct Served<'a> {
    /// The model.
    pub spec: &'a ModelSpec,
    /// The circuit.
    pub kind: CircuitKind,
}

impl Circuit for Served<'_> {
    async fn run<P: Protocol>(
        &self,
        p: &mut P,
        x: &Tensor,
        w: &[P::Weights],
    ) -> Result<Stage, Error> {
        crate::run(p, self.spec, self.kind, x, w).await
    }
}

/// The dealer's side of a session of `circuit` on an input of `in_shape`: its keys for both
/// servers, its products computed on `kernels` (a deployed dealer uses the host's).
pub fn deal<C: Circuit>(
    circuit: &C,
    in_shape: &[usize],
    model: &SharedModel,
    master: &Seed,
    kernels: Box<dyn Kernels + Send>,
) -> Result<MemoryKeys, Error> {
    let mut dealer = DealerSide::with_kernels(master, MemoryKeys::default(), kernels);
    let x = dealer.input(in_shape, BitWidth::FULL);
    run_ready(async {
        for y in circuit.run(&mut dealer, &x, &model.dealer).await?.outputs {
            dealer.output(&y).await?;
        }
        Ok(())
    })?;
    Ok(dealer.finish())
}

/// Runs `circuit` on `input` (reals of shape `in_shape`, encoded at FRAC bits) with session
/// seed `master`; for BERT the input comes from [`super::bert::client_input`].
pub fn run_circuit<C: Circuit>(
    circuit: &C,
    in_shape: &[usize],
    input: &[f64],
    model: &SharedModel,
    master: &Seed,
) -> Result<MemoryRun, Error> {
    if in_shape.iter().product::<usize>() != input.len() {
        return Err(Error::ShapeMismatch("input does not match its shape"));
    }
    let keys = deal(
        circuit,
        in_shape,
        model,
        master,
        Box::new(HostKernels::new()),
    )?;

    let fp = FixedPoint::new(FRAC, BitWidth::FULL)?;
    let mut words = input
        .iter()
        .map(|&v| fp.encode(v))
        .collect::<Result<Vec<u64>, Error>>()?;
    let client_seed = master.derive(securerouter_core::prg::Domain::INPUT_SHARE, 1);
    SeededShareStream::new(&client_seed).split_row_in_place(&mut words);
    let mut p0_share = vec![0u64; words.len()];
    SeededShareStream::new(&client_seed).expand_row(&mut p0_share);

    let link = MemoryLink::new();
    let (c0, c1) = link.endpoints();
    let server = |party: Party, chan, share: Vec<u64>| {
        let keys = &keys;
        let w = &model.servers[party.index() as usize];
        async move {
            let seed = Dealer::party_seed(master, party);
            let mut s = ServerSide::new(party, &seed, chan, keys.reader(party), HostKernels::new());
            // The keys are all here: take the linear layers' offline terms first, as a server
            // that prefetches its keys does.
            s.precompute_linear(w).await?;
            let x = s.input(in_shape, BitWidth::FULL, &share).await?;
            let mut out = Vec::new();
            let stage = circuit.run(&mut s, &x, w).await?;
            for y in &stage.outputs {
                out.extend(s.output(y).await?);
            }
            let traffic = s.traffic();
            if !s.finish().await?.is_exhausted() {
                return Err(Error::ProtocolMisuse("server left dealer keys unread"));
            }
            let revealed = stage.revealed.map(|t| t.into_data()).unwrap_or_default();
            Ok::<_, Error>((out, traffic, revealed))
        }
    };
    let (r0, r1) = link.run(
        server(Party::P0, c0, p0_share),
        server(Party::P1, c1, words),
    )?;
    let ((o0, t0, v0), (o1, t1, v1)) = (r0?, r1?);
    if v0 != v1 {
        return Err(Error::ProtocolMisuse(
            "the servers revealed different values",
        ));
    }
    Ok(MemoryRun {
        outputs: o0
            .iter()
            .zip(&o1)
            .map(|(&a, &b)| fp.decode(a.wrapping_add(b)))
            .collect(),
        traffic: [t0, t1],
        key_bytes: [
            keys.shared.len() + keys.linear[0].len(),
            keys.shared.len() + keys.p1.len() + keys.linear[1].len(),
        ],
        revealed: v0,
    })
}
