//! A pool under MPC: the encrypted router, the experts, and the routed query in each routing
//! privacy mode, written once for dealer and servers.
//!
//! Weights in circuit order: the summary encoder (expert 0) with its classifier head, the
//! router head's two layers, then every further expert's encoder and head.
//!
//! - [`CircuitKind::Router`]: pooled = summary(x); the router head reads pooled and the summary
//!   expert's confidence, the lead of its top logit over the others
//!   ([`router_features`](securerouter_ml::router::router_features)); outputs
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
//!
//! Experts cut from the summary's checkpoint read the summary's embedded tokens
//! ([`ExpertInput::Summary`]); an expert from another checkpoint (its own vocabulary, hidden
//! size and head) reads its own ([`ExpertInput::Own`]), which the client embeds and uploads:
//! in hide-route with the summary's input, every such input beside it on each row
//! ([`PoolShape::circuit_input`]); in reveal-route only once the route names that expert
//! ([`QueryPlan::after_first`](crate::QueryPlan::after_first)).

use super::router_head::{COMPARE_BITS, router_head};
use super::{CircuitKind, Stage};
use crate::bert::{BertHead, BertShape, bert_pooled, classifier_head, classifier_with_head};
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
    /// The router head on the summary encoder's pooled states and the summary expert's lead
    /// ([`router_features`](securerouter_ml::router::router_features)).
    pub router: RouterHeadShape,
    /// Experts 1, 2, … (all give the summary's classes).
    pub others: Vec<PoolExpert>,
}

/// An expert after the summary: its encoder, its head and the input it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolExpert {
    /// The encoder's shape and classes.
    pub shape: BertShape,
    /// The head: one fitted on mean-pooled states, or its checkpoint's own.
    pub head: BertHead,
    /// Which embedded tokens it reads.
    pub input: ExpertInput,
}

impl PoolExpert {
    /// An expert cut from the summary's checkpoint with a fitted head: it reads the summary's
    /// input.
    pub fn cut(shape: BertShape) -> Self {
        PoolExpert {
            shape,
            head: BertHead::MeanPooled,
            input: ExpertInput::Summary,
        }
    }
}

/// The embedded tokens an expert reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpertInput {
    /// The summary encoder's (same vocabulary, embeddings and hidden size).
    Summary,
    /// Its own checkpoint's, embedded and uploaded by the client for this expert.
    Own,
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
            self.others.get(k - 1).map(|e| &e.shape)
        }
    }

    /// Expert `k`'s shape, head and input (the summary: mean-pooled head, its own input).
    fn expert_parts(&self, k: usize) -> Option<(BertShape, BertHead, ExpertInput)> {
        if k == 0 {
            Some((self.summary, BertHead::MeanPooled, ExpertInput::Summary))
        } else {
            self.others.get(k - 1).map(|e| (e.shape, e.head, e.input))
        }
    }

    /// Whether expert `k` reads an input of its own, which the client uploads for it.
    pub fn own_input(&self, k: usize) -> bool {
        matches!(self.expert_parts(k), Some((_, _, ExpertInput::Own)))
    }

    /// Columns per token of expert `k`'s input.
    fn expert_cols(&self, k: usize) -> Option<usize> {
        self.expert_parts(k).map(|(shape, _, input)| match input {
            ExpertInput::Summary => self.summary.input_cols(),
            ExpertInput::Own => shape.input_cols(),
        })
    }

    /// The experts whose inputs a query of `kind` uploads, in the order their columns lie
    /// on each row: the summary's first, then (hide-route) every own input.
    pub fn uploads(&self, kind: CircuitKind) -> Vec<usize> {
        match kind {
            CircuitKind::Expert(k) if self.own_input(usize::from(k)) => vec![usize::from(k)],
            CircuitKind::Routed(RouteMode::Hide) => std::iter::once(0)
                .chain((1..self.experts()).filter(|&k| self.own_input(k)))
                .collect(),
            _ => vec![0],
        }
    }

    /// Input values per token of a query of `kind`: its uploads' columns side by side.
    pub fn input_cols(&self, kind: CircuitKind) -> usize {
        self.uploads(kind)
            .iter()
            .filter_map(|&k| self.expert_cols(k))
            .sum()
    }

    /// The input of a query of `kind` over `tokens` rows from the inputs of its
    /// [`uploads`](Self::uploads), in that order (each [tokens, cols] row-major): the rows laid
    /// side by side.
    pub fn circuit_input(
        &self,
        kind: CircuitKind,
        tokens: usize,
        inputs: &[Vec<f64>],
    ) -> crate::Result<Vec<f64>> {
        let uploads = self.uploads(kind);
        if inputs.len() != uploads.len() {
            invalid!(
                "{kind} reads the inputs of experts {uploads:?}; {} were given",
                inputs.len()
            );
        }
        let mut parts = Vec::with_capacity(uploads.len());
        for (&k, x) in uploads.iter().zip(inputs) {
            let cols = self.expert_cols(k).unwrap_or(0);
            if x.len() != tokens * cols {
                invalid!(
                    "expert {k}'s input holds {} values, not {tokens} tokens of {cols}",
                    x.len()
                );
            }
            parts.push((cols, x));
        }
        let mut out = Vec::with_capacity(tokens * self.input_cols(kind));
        for row in 0..tokens {
            for (cols, x) in &parts {
                out.extend_from_slice(&x[row * cols..(row + 1) * cols]);
            }
        }
        Ok(out)
    }

    /// Expert `k`'s columns within the input of a hide-route query.
    fn hide_columns(&self, k: usize) -> Range<usize> {
        let uploads = self.uploads(CircuitKind::Routed(RouteMode::Hide));
        let mut at = 0;
        for &j in &uploads {
            let cols = self.expert_cols(j).unwrap_or(0);
            if j == k {
                return at..at + cols;
            }
            at += cols;
        }
        0..self.summary.input_cols()
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
        if self.summary.classes < 2 {
            invalid!(
                "the router reads the summary expert's lead among at least 2 classes; it has {}",
                self.summary.classes
            );
        }
        if self.router.features != router_feature_count(self.summary.hidden) {
            invalid!(
                "the router head reads {} features, not the summary encoder's {} pooled states \
                 and its lead",
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
            let k = k + 1;
            e.shape.validate()?;
            if e.shape.classes != self.summary.classes {
                invalid!(
                    "expert {k} gives {} classes; expert 0 gives {}",
                    e.shape.classes,
                    self.summary.classes
                );
            }
            if e.input == ExpertInput::Summary && e.shape.hidden != self.summary.hidden {
                invalid!(
                    "expert {k} reads the summary's input but has hidden size {}, not the \
                     summary's {} (an expert of another checkpoint reads its own input)",
                    e.shape.hidden,
                    self.summary.hidden
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
            v.extend(e.shape.layer_shapes_for(e.head));
        }
        v
    }

    /// The weight layers of expert 0 (encoder and head), the router head, and each further
    /// expert, as ranges into the circuit-order list.
    fn parts(&self) -> (Range<usize>, Range<usize>, Vec<Range<usize>>) {
        let summary = 0..self.summary.layer_shapes().len();
        let router = summary.end..summary.end + 2;
        let mut at = router.end;
        let others = self
            .others
            .iter()
            .map(|e| {
                let r = at..at + e.shape.layer_shapes_for(e.head).len();
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
    if x.last_dim() != pool.input_cols(kind) {
        return Err(Error::ShapeMismatch(
            "the input does not match the pool's circuit",
        ));
    }
    match kind {
        CircuitKind::Expert(k) => {
            let k = usize::from(k);
            let (shape, head, _) = pool
                .expert_parts(k)
                .ok_or(Error::ShapeMismatch("no such expert in the pool"))?;
            Ok(vec![classifier_with_head(p, &shape, head, x, expert_weights(k)).await?].into())
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
            // Each expert's columns of the input: local, no key and no round.
            let columns = |k: usize| -> Result<Tensor, Error> {
                let cols: Vec<usize> = pool.hide_columns(k).collect();
                if cols.len() == x.last_dim() {
                    Ok(x.clone())
                } else {
                    x.gather_last(&cols)
                }
            };
            let [mut stacked, _, onehot] = route(p, pool, &columns(0)?, weights).await?;
            for (k, e) in pool.others.iter().enumerate() {
                let k = k + 1;
                let logits =
                    classifier_with_head(p, &e.shape, e.head, &columns(k)?, expert_weights(k))
                        .await?;
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

/// [`router_features`](securerouter_ml::router::router_features) under MPC: the lead
/// Σⱼ (max − logitⱼ) = K·max − Σⱼ logitⱼ, one maximum (2·⌈log2 K⌉ rounds, two for two
/// classes) and local sums.
async fn secure_router_features<P: Protocol>(
    p: &mut P,
    pooled: &Tensor,
    logits: &Tensor,
) -> Result<Tensor, Error> {
    let k = logits.last_dim();
    if k < 2 {
        return Err(Error::ShapeMismatch(
            "the router reads a summary expert of at least two classes",
        ));
    }
    let rows = logits.len() / k;
    let max = gate::max(p, logits, BitWidth::new(COMPARE_BITS)?)
        .await?
        .reshape(&[rows, 1])?;
    let sum = logits.sum_last_axis().reshape(&[rows, 1])?;
    pooled.concat_last(&max.scale(k as u64).sub(&sum)?)
}

/// The index of the single 1 in a reconstructed or revealed one-hot row.
pub fn route_of(onehot: &[u64]) -> crate::Result<usize> {
    let ones: Vec<usize> = (0..onehot.len()).filter(|&j| onehot[j] == 1).collect();
    match ones.as_slice() {
        [j] if onehot.iter().all(|&b| b <= 1) => Ok(*j),
        _ => Err(crate::Error::NotOneHot(onehot.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bert::share_layers;
    use crate::memory::{Circuit, run_circuit};
    use securerouter_core::prg::Seed;
    use securerouter_ml::router::router_features;

    /// The router's features of rows laid out as pooled states, then logits.
    struct Features {
        hidden: usize,
        classes: usize,
    }

    impl Circuit for Features {
        async fn run<P: Protocol>(
            &self,
            p: &mut P,
            x: &Tensor,
            _: &[P::Weights],
        ) -> Result<crate::Stage, Error> {
            let (h, k) = (self.hidden, self.classes);
            let pooled = x.gather_last(&(0..h).collect::<Vec<_>>())?;
            let logits = x.gather_last(&(h..h + k).collect::<Vec<_>>())?;
            Ok(vec![secure_router_features(p, &pooled, &logits).await?].into())
        }
    }

    #[test]
    fn the_secure_lead_is_the_plaintext_lead_for_two_three_and_five_classes() {
        let model = share_layers(&[], &Seed::from_bytes([1; 16])).unwrap();
        let hidden = 3;
        for classes in [2, 3, 5] {
            // Rows with the top logit in every position, ties and negative logits.
            let rows: Vec<Vec<f64>> = (0..classes + 2)
                .map(|r| {
                    (0..hidden + classes)
                        .map(|j| match (r, j) {
                            (_, j) if j < hidden => 0.25 * j as f64 - 0.5,
                            (r, j) if r == classes => {
                                if j == hidden {
                                    1.5
                                } else {
                                    1.5 - 0.5 * (j % 2) as f64
                                }
                            }
                            (r, j) if r == classes + 1 => -2.0 + 0.375 * j as f64,
                            (r, j) => {
                                if j - hidden == r {
                                    3.25
                                } else {
                                    -1.0 + 0.5 * j as f64
                                }
                            }
                        })
                        .collect()
                })
                .collect();
            let input: Vec<f64> = rows.iter().flatten().copied().collect();
            let run = run_circuit(
                &Features { hidden, classes },
                &[rows.len(), hidden + classes],
                &input,
                &model,
                &Seed::from_bytes([9; 16]),
            )
            .unwrap();
            let want: Vec<f64> = rows
                .iter()
                .flat_map(|r| router_features(&r[..hidden], &r[hidden..]).unwrap())
                .collect();
            assert_eq!(run.outputs.len(), want.len());
            for (got, want) in run.outputs.iter().zip(&want) {
                assert!(
                    (got - want).abs() < 1e-3,
                    "{classes} classes: {got} vs {want}"
                );
            }
        }
    }
}
