//! A pool under MPC: the encrypted router, the experts, and the routed query in each routing
//! privacy mode, written once for dealer and servers.
//!
//! Weights in circuit order: the summary encoder (expert 0) with its classifier head, the
//! router head's two layers, then every further expert's encoder and head.
//!
//! - [`CircuitKind::Router`]: pooled = summary(x); the router head reads pooled and the summary
//!   expert's confidence, the margin |logit₀ − logit₁| of its head ([`router_features`](securerouter_ml::router::router_features)); outputs
//!   `[logits₀, scores, one-hot]`.
//! - [`CircuitKind::Routed`] with [`RouteMode::Reveal`], the first stage: the router, then its
//!   one-hot choice (as K bits) revealed to both servers; outputs `[logits₀, one-hot]`. The
//!   servers read the route k and, unless k = 0 (whose logits the summary encoder already
//!   computed), run [`CircuitKind::Expert`] k as a second stage with keys the dealer deals
//!   for that expert: the servers and the dealer learn k.
//! - [`CircuitKind::Routed`] with [`RouteMode::Hide`]: the router, every further expert, then
//!   an oblivious select of the chosen logits with the one-hot bits; outputs
//!   `[chosen logits, one-hot]`. Nothing depends on the data, so the transcript is the same
//!   whichever expert wins, and it costs the sum of the experts.
//! - [`CircuitKind::Expert`] k: one expert alone, `[logits]` (e.g. always-largest).

use super::router_head::{COMPARE_BITS, router_head};
use super::{CircuitKind, Stage};
use crate::bert::{BertShape, bert_classifier, bert_pooled, classifier_head};
use crate::error::invalid;
use securerouter_core::Error;
use securerouter_core::gate::{self, Protocol, Tensor};
use securerouter_core::ring::BitWidth;
use securerouter_ml::router::{RouterHeadShape, router_feature_count};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// The most experts a pool may hold (an expert index travels as one byte).
pub const MAX_EXPERTS: usize = 16;

/// How a routed query treats the route (`--route`): the wire's names, shared with the device
/// client.
pub use securerouter_wire::RouteMode;

/// The shape of a pool: expert 0 (whose encoder is the router's summary encoder), the router
/// head, and the further experts, cheapest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolShape {
    /// Expert 0: the summary encoder and its classifier head.
    pub summary: BertShape,
    /// The router head on the summary encoder's pooled states and the summary expert's margin
    /// ([`router_features`](securerouter_ml::router::router_features)).
    pub router: RouterHeadShape,
    /// Experts 1, 2, … (all read the same embedded input and give the same classes).
    pub others: Vec<BertShape>,
}

impl PoolShape {
    /// Experts in the pool, expert 0 included.
    pub fn experts(&self) -> usize {
        1 + self.others.len()
    }

    /// Expert `k`'s shape.
    pub fn expert(&self, k: usize) -> Option<&BertShape> {
        if k == 0 {
            Some(&self.summary)
        } else {
            self.others.get(k - 1)
        }
    }

    /// Checks the pool is consistent (model files are untrusted input).
    pub fn validate(&self) -> crate::Result<()> {
        self.summary.validate()?;
        self.router.validate()?;
        if self.experts() > MAX_EXPERTS {
            invalid!(
                "a pool holds at most {MAX_EXPERTS} experts, not {}",
                self.experts()
            );
        }
        if self.summary.classes != 2 {
            invalid!(
                "the router reads the summary expert's margin between 2 classes; it has {}",
                self.summary.classes
            );
        }
        if self.router.features != router_feature_count(self.summary.hidden) {
            invalid!(
                "the router head reads {} features, not the summary encoder's {} pooled states \
                 and its margin",
                self.router.features,
                self.summary.hidden
            );
        }
        if self.router.experts != self.experts() {
            invalid!(
                "the router head scores {} experts, the pool holds {}",
                self.router.experts,
                self.experts()
            );
        }
        for (k, e) in self.others.iter().enumerate() {
            e.validate()?;
            if e.hidden != self.summary.hidden || e.classes != self.summary.classes {
                invalid!(
                    "expert {} has hidden size {} and {} classes; expert 0 has {} and {}",
                    k + 1,
                    e.hidden,
                    e.classes,
                    self.summary.hidden,
                    self.summary.classes
                );
            }
        }
        Ok(())
    }

    /// (inputs, outputs) of every weight layer in circuit order.
    pub fn layer_shapes(&self) -> Vec<(usize, usize)> {
        let mut v = self.summary.layer_shapes();
        v.extend(self.router.layer_shapes());
        for e in &self.others {
            v.extend(e.layer_shapes());
        }
        v
    }

    /// The weight layers of expert 0 (encoder and head), the router head, and each further
    /// expert, as ranges into the circuit-order list.
    fn parts(&self) -> (Range<usize>, Range<usize>, Vec<Range<usize>>) {
        let size = |s: &BertShape| s.encoder_weight_layers() + 1;
        let summary = 0..size(&self.summary);
        let router = summary.end..summary.end + 2;
        let mut at = router.end;
        let others = self
            .others
            .iter()
            .map(|e| {
                let r = at..at + size(e);
                at = r.end;
                r
            })
            .collect();
        (summary, router, others)
    }
}

/// Runs circuit `kind` of `pool` (see the module documentation).
pub(super) async fn run<P: Protocol>(
    p: &mut P,
    pool: &PoolShape,
    kind: CircuitKind,
    x: &Tensor,
    weights: &[P::Weights],
) -> Result<Stage, Error> {
    let (summary, router, others) = pool.parts();
    if weights.len() != others.last().unwrap_or(&router).end {
        return Err(Error::ShapeMismatch("the weights do not match the pool"));
    }
    let expert_weights = |k: usize| -> &[P::Weights] {
        if k == 0 {
            &weights[summary.clone()]
        } else {
            &weights[others[k - 1].clone()]
        }
    };
    match kind {
        CircuitKind::Expert(k) => {
            let k = usize::from(k);
            let shape = pool
                .expert(k)
                .ok_or(Error::ShapeMismatch("no such expert in the pool"))?;
            Ok(vec![bert_classifier(p, shape, x, expert_weights(k)).await?].into())
        }
        CircuitKind::Router => {
            let [logits, scores, onehot] = route(p, pool, x, weights).await?;
            Ok(vec![logits, scores, onehot].into())
        }
        CircuitKind::Routed(RouteMode::Reveal) => {
            let [logits, _, onehot] = route(p, pool, x, weights).await?;
            let revealed = p.reveal(&onehot.reduce(BitWidth::new(1)?)?).await?;
            Ok(Stage {
                outputs: vec![logits, onehot],
                revealed: Some(revealed),
            })
        }
        CircuitKind::Routed(RouteMode::Hide) => {
            let [mut stacked, _, onehot] = route(p, pool, x, weights).await?;
            for k in 1..pool.experts() {
                let shape = &pool.others[k - 1];
                let logits = bert_classifier(p, shape, x, expert_weights(k)).await?;
                stacked = stacked.concat_last(&logits)?;
            }
            let (rows, classes) = (onehot.len() / pool.experts(), pool.summary.classes);
            let stacked = stacked.reshape(&[rows, pool.experts(), classes])?;
            let bits = onehot.reduce(BitWidth::new(1)?)?;
            // Each expert's logits times its bit, summed over the experts.
            let chosen = p
                .mul_bit(&bits, &stacked)
                .await?
                .permute(&[0, 2, 1])?
                .sum_last_axis();
            Ok(vec![chosen, onehot].into())
        }
        CircuitKind::RouterHead | CircuitKind::Bert => Err(Error::ProtocolMisuse(
            "a pool runs its router, routed queries and experts",
        )),
    }
}

/// The encrypted router: the summary encoder's logits (expert 0's answer, reused when it
/// wins), the router head's scores and its secret one-hot choice.
async fn route<P: Protocol>(
    p: &mut P,
    pool: &PoolShape,
    x: &Tensor,
    weights: &[P::Weights],
) -> Result<[Tensor; 3], Error> {
    let (summary, router, _) = pool.parts();
    let encoder = &weights[summary.start..summary.end - 1];
    let pooled = bert_pooled(p, &pool.summary, x, encoder).await?;
    let logits = classifier_head(p, &pooled, &weights[summary.end - 1]).await?;
    let features = secure_router_features(p, &pooled, &logits).await?;
    let [scores, onehot]: [Tensor; 2] = router_head(p, &features, &weights[router])
        .await?
        .try_into()
        .map_err(|_| Error::ShapeMismatch("the router head gives scores and a one-hot"))?;
    Ok([logits, scores, onehot])
}

/// [`router_features`](securerouter_ml::router::router_features) under MPC: the margin is
/// 2·ReLU(d) − d for d = logit₀ − logit₁ (one comparison per query, two rounds).
async fn secure_router_features<P: Protocol>(
    p: &mut P,
    pooled: &Tensor,
    logits: &Tensor,
) -> Result<Tensor, Error> {
    if logits.last_dim() != 2 {
        return Err(Error::ShapeMismatch(
            "the router reads a two-class summary expert",
        ));
    }
    let rows = logits.len() / 2;
    let d = logits
        .mul_public(&[1, u64::MAX])?
        .sum_last_axis()
        .reshape(&[rows, 1])?;
    let positive = gate::relu(p, &d, BitWidth::new(COMPARE_BITS)?).await?;
    pooled.concat_last(&positive.scale(2).sub(&d)?)
}

/// The index of the single 1 in a reconstructed or revealed one-hot row.
pub fn route_of(onehot: &[u64]) -> crate::Result<usize> {
    let ones: Vec<usize> = (0..onehot.len()).filter(|&j| onehot[j] == 1).collect();
    match ones.as_slice() {
        [j] if onehot.iter().all(|&b| b <= 1) => Ok(*j),
        _ => Err(crate::Error::NotOneHot(onehot.to_vec())),
    }
}
