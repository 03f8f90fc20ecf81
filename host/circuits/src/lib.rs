//! SecureRouter's secure circuits: the layers and models the services run under MPC, written
//! once for the dealer and both servers over core's [`Protocol`], next to the plaintext graph
//! they are measured against (`securerouter_ml::reference`). No I/O: the services in
//! `securerouter-runtime` drive these circuits over their links, and [`memory`] runs them in
//! one process for tests and cost measurements.
//!
//! - the router head alone ([`router_head()`]: a 2-layer MLP with ReLU and a secure argmax);
//! - a BERT classifier ([`crate::bert`]);
//! - a pool ([`pool`]): the encrypted router (summary encoder, its head, the router head), the
//!   experts, and the routed query in each routing privacy mode.

#![deny(unsafe_code)]

pub mod bert;
pub mod error;
pub mod layers;
pub mod memory;
mod plan;
pub mod pool;
pub mod profile;
pub mod router_head;

pub use bert::BertShape;
pub use error::{Error, Result};
pub use layers::Activation;
pub use plan::{AfterFirst, LaterStage, PoolReply, QueryPlan};
pub use pool::{ExpertInput, PoolExpert, PoolShape, RouteMode};
pub use router_head::router_head;
/// The circuits as named on the wire (`securerouter-wire`, shared with the device client).
pub use securerouter_wire::CircuitKind;

use crate::bert::bert_classifier;
use securerouter_core::gate::{Protocol, Tensor};
use securerouter_ml::router::RouterHeadShape;
use serde::{Deserialize, Serialize};

/// Fractional bits of the fixed-point encoding used by the circuits.
pub const FRAC_BITS: u32 = 12;

/// What a model file holds: which circuits and their shapes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelSpec {
    /// The router head.
    RouterHead(RouterHeadShape),
    /// A BERT classifier with a linear head fitted on mean-pooled features.
    Bert(BertShape),
    /// A pool: the encrypted router and the experts.
    Pool(PoolShape),
    /// A BERT classifier with its `BertForSequenceClassification` checkpoint's own head
    /// (first token, pooler and tanh, classifier; [`bert::BertHead::Checkpoint`]), served as
    /// [`CircuitKind::Bert`] with the same input.
    BertCheckpoint(BertShape),
}

impl ModelSpec {
    /// Whether a model of this spec runs `kind`.
    pub fn serves(&self, kind: CircuitKind) -> bool {
        match (self, kind) {
            (ModelSpec::RouterHead(_), CircuitKind::RouterHead)
            | (ModelSpec::Bert(_), CircuitKind::Bert)
            | (ModelSpec::BertCheckpoint(_), CircuitKind::Bert)
            | (ModelSpec::Pool(_), CircuitKind::Router) => true,
            (ModelSpec::Pool(p), CircuitKind::Routed(_)) => p.experts() > 1,
            (ModelSpec::Pool(p), CircuitKind::Expert(k)) => usize::from(k) < p.experts(),
            _ => false,
        }
    }

    /// The circuits a model of this spec runs, for error messages.
    pub fn describe(&self) -> String {
        match self {
            ModelSpec::RouterHead(_) => "the router head".into(),
            ModelSpec::Bert(s) => format!("{} classifier", family(s)),
            ModelSpec::BertCheckpoint(s) => {
                format!("{} classifier with its checkpoint's head", family(s))
            }
            ModelSpec::Pool(p) => format!(
                "a pool of {} experts (router, routed queries, experts 0..{})",
                p.experts(),
                p.experts() - 1
            ),
        }
    }

    /// Input values per row of circuit `kind` (per query for the router head, per token for
    /// BERT and pools, whose circuits may read more than one expert's input,
    /// [`PoolShape::uploads`]).
    pub fn input_cols(&self, kind: CircuitKind) -> usize {
        match self {
            ModelSpec::RouterHead(s) => s.features,
            ModelSpec::Bert(s) | ModelSpec::BertCheckpoint(s) => s.input_cols(),
            ModelSpec::Pool(p) => p.input_cols(kind),
        }
    }

    /// The input tensor's shape for a session of circuit `kind` on `rows` rows holding
    /// `batch` inputs: [rows, cols] for one input, [batch, rows / batch, cols] for a batch of
    /// BERT or pool inputs (each input its tokens, all padded to the same length). The router
    /// head's queries are its rows, so its sessions hold one batch (`batch` = 1).
    pub fn input_shape(&self, kind: CircuitKind, rows: usize, batch: usize) -> Result<Vec<usize>> {
        let cols = self.input_cols(kind);
        if batch == 0 || !rows.is_multiple_of(batch) {
            error::invalid!("{rows} rows do not split into {batch} inputs of equal length");
        }
        match (self, batch) {
            (_, 1) => Ok(vec![rows, cols]),
            (ModelSpec::RouterHead(_), _) => error::invalid!(
                "the router head reads one query per row: send its {rows} queries as one input, not {batch}"
            ),
            _ => Ok(vec![batch, rows / batch, cols]),
        }
    }

    /// Checks the shapes are consistent and bounded (model files are untrusted input).
    pub fn validate(&self) -> Result<()> {
        match self {
            ModelSpec::RouterHead(s) => Ok(s.validate()?),
            ModelSpec::Bert(s) | ModelSpec::BertCheckpoint(s) => s.validate(),
            ModelSpec::Pool(p) => p.validate(),
        }
    }

    /// (inputs, outputs) of every weight layer, in the order of the model files.
    pub fn layer_shapes(&self) -> Vec<(usize, usize)> {
        match self {
            ModelSpec::RouterHead(s) => s.layer_shapes(),
            ModelSpec::Bert(s) => s.layer_shapes(),
            ModelSpec::BertCheckpoint(s) => s.layer_shapes_for(bert::BertHead::Checkpoint),
            ModelSpec::Pool(p) => p.layer_shapes(),
        }
    }
}

/// "an MPNet" for a shape with a relative-attention bias, else "a BERT".
fn family(s: &BertShape) -> &'static str {
    if s.relative_buckets > 0 {
        "an MPNet"
    } else {
        "a BERT"
    }
}

/// What one run of a circuit yields for its role.
pub struct Stage {
    /// Wires that end at the client (the caller passes each through [`Protocol::output`]).
    pub outputs: Vec<Tensor>,
    /// A wire revealed to both servers, if the circuit opens one (the servers hold its values;
    /// the dealer a zero mask).
    pub revealed: Option<Tensor>,
}

impl From<Vec<Tensor>> for Stage {
    fn from(outputs: Vec<Tensor>) -> Self {
        Stage {
            outputs,
            revealed: None,
        }
    }
}

/// Runs circuit `kind` of a model on one input: the router head's `[scores, one-hot]`, BERT's
/// `[logits]` (either head), or a pool's circuits ([`pool`]). Written once for every role.
pub async fn run<P: Protocol>(
    p: &mut P,
    spec: &ModelSpec,
    kind: CircuitKind,
    x: &Tensor,
    weights: &[P::Weights],
) -> Result<Stage, securerouter_core::Error> {
    if !spec.serves(kind) {
        return Err(securerouter_core::Error::ProtocolMisuse(
            "the model does not run this circuit",
        ));
    }
    match (spec, kind) {
        (ModelSpec::RouterHead(_), _) => Ok(router_head(p, x, weights).await?.into()),
        (ModelSpec::Bert(shape), _) => {
            Ok(vec![bert_classifier(p, shape, x, weights).await?].into())
        }
        (ModelSpec::BertCheckpoint(shape), _) => {
            Ok(vec![bert::bert_checkpoint_classifier(p, shape, x, weights).await?].into())
        }
        (ModelSpec::Pool(pool), kind) => pool::run(p, pool, kind, x, weights).await,
    }
}

/// Checks a circuit request against a model, naming both when they do not match.
pub fn check_serves(spec: &ModelSpec, kind: CircuitKind) -> Result<()> {
    if !spec.serves(kind) {
        return Err(Error::NotServed {
            kind,
            model: spec.describe(),
        });
    }
    Ok(())
}

/// Runs a dealer's circuit to its end: the dealer never waits on a peer, so its circuit is
/// ready at the first poll, and one that waits is a misuse.
pub fn run_ready<F>(f: F) -> Result<(), securerouter_core::Error>
where
    F: std::future::Future<Output = Result<(), securerouter_core::Error>>,
{
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => Err(securerouter_core::Error::ProtocolMisuse(
            "the dealer's circuit waited",
        )),
    }
}
