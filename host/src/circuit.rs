//! The circuits the services can run, written once for dealer and servers over core's
//! [`Protocol`], with the model files each role loads.
//!
//! The router head (a 2-layer MLP with ReLU and a secure argmax over the expert scores) and
//! BERT classifiers ([`crate::nn::bert`]).

use crate::nn::bert::{
    BertShape, PARTS_PER_LAYER, RingLayer, bert_classifier, bert_pooled, classifier_head,
    share_layers,
};
use anyhow::{Context, bail};
use securerouter_core::Error;
use securerouter_core::gate::{self, DealerWeights, Protocol, ServerWeights, Tensor};
use securerouter_core::prg::Seed;
use securerouter_core::ring::{BitWidth, FixedPoint};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Fractional bits of the fixed-point encoding used by the circuits.
pub const FRAC_BITS: u32 = 12;

/// Width at which signs are compared inside the router head (scores stay far below 2^39).
const COMPARE_BITS: u32 = 40;

/// A circuit known to the services, named on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CircuitKind {
    /// Router head: features → hidden (ReLU) → expert scores → secure argmax.
    RouterHead,
    /// A BERT classifier: embedded tokens → encoder layers → pooled → logits.
    Bert,
    /// The encrypted router: embedded tokens → the summary encoder (the pool's cheapest
    /// expert) → pooled → that expert's logits, and the router head's scores and secret
    /// one-hot choice.
    Router,
}

impl CircuitKind {
    /// Name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            CircuitKind::RouterHead => "router-head",
            CircuitKind::Bert => "bert",
            CircuitKind::Router => "router",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> anyhow::Result<Self> {
        match name {
            "router-head" => Ok(CircuitKind::RouterHead),
            "bert" => Ok(CircuitKind::Bert),
            "router" => Ok(CircuitKind::Router),
            other => bail!("unknown circuit {other:?}; known: router-head, bert, router"),
        }
    }
}

/// The router head's shape: features in, hidden units, experts out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterHeadShape {
    /// Input features per query.
    pub features: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Experts scored.
    pub experts: usize,
}

impl RouterHeadShape {
    /// The default demo shape: 16 features, 32 hidden units, 3 experts.
    pub const DEMO: RouterHeadShape = RouterHeadShape {
        features: 16,
        hidden: 32,
        experts: 3,
    };

    /// Checks the shape is usable and bounded (model files are untrusted input).
    pub fn validate(&self) -> anyhow::Result<()> {
        for (what, v) in [
            ("features", self.features),
            ("hidden", self.hidden),
            ("experts", self.experts),
        ] {
            if v == 0 || v > 1 << 16 {
                bail!("router head {what} = {v} is outside 1..=65536");
            }
        }
        Ok(())
    }
}

/// Runs the router head on `rows` queries of `features` values; returns the scores
/// [rows, experts] and the secret one-hot choice [rows, experts].
pub async fn router_head<P: Protocol>(
    p: &mut P,
    x: &Tensor,
    layers: &[P::Weights],
) -> Result<Vec<Tensor>, Error> {
    let [l1, l2] = layers else {
        return Err(Error::ShapeMismatch(
            "the router head has exactly two layers",
        ));
    };
    let cmp = BitWidth::new(COMPARE_BITS)?;
    let h = p.linear(x, l1).await?;
    let h = p.truncate(&h, FRAC_BITS).await?;
    let h = gate::relu(p, &h, cmp).await?;
    let s = p.linear(&h, l2).await?;
    let s = p.truncate(&s, FRAC_BITS).await?;
    let (_, onehot) = gate::argmax(p, &s, cmp).await?;
    Ok(vec![s, onehot])
}

/// The plaintext model as the model provider holds it (reals).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlainRouterHead {
    /// Shape.
    pub shape: RouterHeadShape,
    /// First layer weights, features × hidden, row-major.
    pub w1: Vec<f64>,
    /// First layer bias.
    pub b1: Vec<f64>,
    /// Second layer weights, hidden × experts, row-major.
    pub w2: Vec<f64>,
    /// Second layer bias.
    pub b2: Vec<f64>,
}

impl PlainRouterHead {
    /// Random weights from a seed (a stand-in until a trained router exists).
    pub fn random(shape: RouterHeadShape, seed: &Seed) -> Self {
        let mut rng = securerouter_core::prg::AesCtr::new(seed, securerouter_core::prg::Domain(7));
        let mut draw = |n: usize, scale: f64| -> Vec<f64> {
            (0..n)
                .map(|_| (rng.next_u64() as f64 / u64::MAX as f64 * 2.0 - 1.0) * scale)
                .collect()
        };
        PlainRouterHead {
            shape,
            w1: draw(shape.features * shape.hidden, 0.5),
            b1: draw(shape.hidden, 0.2),
            w2: draw(shape.hidden * shape.experts, 0.5),
            b2: draw(shape.experts, 0.2),
        }
    }

    /// The plaintext forward pass: scores per expert.
    pub fn scores(&self, x: &[f64]) -> Vec<f64> {
        let s = self.shape;
        let h: Vec<f64> = (0..s.hidden)
            .map(|j| {
                let v = self.b1[j]
                    + (0..s.features)
                        .map(|p| x[p] * self.w1[p * s.hidden + j])
                        .sum::<f64>();
                v.max(0.0)
            })
            .collect();
        (0..s.experts)
            .map(|j| {
                self.b2[j]
                    + (0..s.hidden)
                        .map(|p| h[p] * self.w2[p * s.experts + j])
                        .sum::<f64>()
            })
            .collect()
    }

    /// The layers in the ring (weights at FRAC_BITS, biases at 2·FRAC_BITS).
    pub fn ring_layers(&self) -> anyhow::Result<Vec<RingLayer>> {
        let fp = FixedPoint::new(FRAC_BITS, BitWidth::FULL)?;
        let fp2 = FixedPoint::new(2 * FRAC_BITS, BitWidth::FULL)?;
        let enc = |f: FixedPoint, v: &[f64]| -> anyhow::Result<Vec<u64>> {
            v.iter()
                .map(|&a| {
                    f.encode(a)
                        .context("weight does not fit the fixed-point format")
                })
                .collect()
        };
        let s = self.shape;
        Ok(vec![
            RingLayer {
                k: s.features,
                n: s.hidden,
                w: enc(fp, &self.w1)?,
                bias: enc(fp2, &self.b1)?,
            },
            RingLayer {
                k: s.hidden,
                n: s.experts,
                w: enc(fp, &self.w2)?,
                bias: enc(fp2, &self.b2)?,
            },
        ])
    }
}

/// What a model file holds: which circuit and its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelSpec {
    /// The router head.
    RouterHead(RouterHeadShape),
    /// A BERT classifier.
    Bert(BertShape),
    /// The encrypted router: a summary encoder with its classifier head, and a router head
    /// on the encoder's pooled states (`head.features` = `encoder.hidden`).
    Router {
        /// The summary encoder and its classifier head.
        encoder: BertShape,
        /// The router head.
        head: RouterHeadShape,
    },
}

impl ModelSpec {
    /// The circuit it runs.
    pub fn circuit(&self) -> CircuitKind {
        match self {
            ModelSpec::RouterHead(_) => CircuitKind::RouterHead,
            ModelSpec::Bert(_) => CircuitKind::Bert,
            ModelSpec::Router { .. } => CircuitKind::Router,
        }
    }

    /// Input values per row (per query for the router head, per token for BERT).
    pub fn input_cols(&self) -> usize {
        match self {
            ModelSpec::RouterHead(s) => s.features,
            ModelSpec::Bert(s) => s.input_cols(),
            ModelSpec::Router { encoder, .. } => encoder.input_cols(),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        match self {
            ModelSpec::RouterHead(s) => s.validate(),
            ModelSpec::Bert(s) => s.validate(),
            ModelSpec::Router { encoder, head } => {
                encoder.validate()?;
                head.validate()?;
                if head.features != encoder.hidden {
                    bail!(
                        "the router head reads {} features, the summary encoder pools {}",
                        head.features,
                        encoder.hidden
                    );
                }
                Ok(())
            }
        }
    }

    fn layer_shapes(&self) -> Vec<(usize, usize)> {
        match self {
            ModelSpec::RouterHead(s) => vec![(s.features, s.hidden), (s.hidden, s.experts)],
            ModelSpec::Bert(s) => s.layer_shapes(),
            ModelSpec::Router { encoder, head } => {
                let mut v = encoder.layer_shapes();
                v.extend([(head.features, head.hidden), (head.hidden, head.experts)]);
                v
            }
        }
    }
}

/// Runs a model's circuit on one batch: the router head's `[scores, one-hot]`, BERT's
/// `[logits]`, or the router's `[summary expert's logits, scores, one-hot]`. Written once for
/// every role.
pub async fn run_model<P: Protocol>(
    p: &mut P,
    spec: &ModelSpec,
    x: &Tensor,
    weights: &[P::Weights],
) -> Result<Vec<Tensor>, Error> {
    match spec {
        ModelSpec::RouterHead(_) => router_head(p, x, weights).await,
        ModelSpec::Bert(shape) => Ok(vec![bert_classifier(p, shape, x, weights).await?]),
        ModelSpec::Router { encoder, .. } => {
            let l = encoder.layers * PARTS_PER_LAYER;
            if weights.len() != l + 3 {
                return Err(Error::ShapeMismatch(
                    "the weights do not match the router's shape",
                ));
            }
            let pooled = bert_pooled(p, encoder, x, &weights[..l]).await?;
            let logits = classifier_head(p, &pooled, &weights[l]).await?;
            let mut out = vec![logits];
            out.extend(router_head(p, &pooled, &weights[l + 1..]).await?);
            Ok(out)
        }
    }
}

/// One layer as stored: k×n weights and (for servers) n biases, as little-endian words.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredLayer {
    k: usize,
    n: usize,
    w: Vec<u8>,
    bias: Option<Vec<u8>>,
}

fn to_bytes(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn to_words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        .collect()
}

/// A role's model file: the dealer's plaintext copy or one server's share.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelFile {
    /// Which circuit and shape.
    pub spec: ModelSpec,
    layers: Vec<StoredLayer>,
}

impl ModelFile {
    /// Shares `layers` (P1's shares derived from `seed`) into the dealer's file and the two
    /// servers' files.
    pub fn deploy(spec: ModelSpec, layers: &[RingLayer], seed: &Seed) -> anyhow::Result<[Self; 3]> {
        let want = spec.layer_shapes();
        if layers.len() != want.len()
            || layers
                .iter()
                .zip(&want)
                .any(|(l, &(k, n))| l.k != k || l.n != n)
        {
            bail!("the layers do not match the model's shape");
        }
        let shared = share_layers(layers, seed)?;
        let dealer = ModelFile {
            spec,
            layers: shared
                .dealer
                .iter()
                .map(|l| StoredLayer {
                    k: l.inputs(),
                    n: l.outputs(),
                    w: to_bytes(l.weights()),
                    bias: None,
                })
                .collect(),
        };
        let server = |w: &[ServerWeights]| ModelFile {
            spec,
            layers: w
                .iter()
                .map(|l| StoredLayer {
                    k: l.inputs(),
                    n: l.outputs(),
                    w: to_bytes(l.parts().0),
                    bias: Some(to_bytes(l.parts().1)),
                })
                .collect(),
        };
        Ok([
            dealer,
            server(&shared.servers[0]),
            server(&shared.servers[1]),
        ])
    }

    /// The circuit this model runs.
    pub fn circuit(&self) -> CircuitKind {
        self.spec.circuit()
    }

    /// Writes the file (postcard).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = postcard::to_allocvec(self)?;
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
    }

    /// Reads and checks a model file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading model file {}", path.display()))?;
        let m: ModelFile = postcard::from_bytes(&bytes)
            .with_context(|| format!("{} is not a SecureRouter model file", path.display()))?;
        m.spec
            .validate()
            .with_context(|| format!("in {}", path.display()))?;
        let want = m.spec.layer_shapes();
        let bad = m.layers.len() != want.len()
            || m.layers.iter().zip(&want).any(|(l, &(k, n))| {
                l.k != k
                    || l.n != n
                    || Some(l.w.len()) != k.checked_mul(n).and_then(|c| c.checked_mul(8))
                    || l.bias.as_ref().is_some_and(|b| b.len() != n * 8)
            });
        if bad {
            bail!(
                "{}: layer shapes do not match the model {:?}",
                path.display(),
                m.spec
            );
        }
        Ok(m)
    }

    /// The dealer's weights (fails on a server's file).
    pub fn dealer_weights(&self) -> anyhow::Result<Vec<DealerWeights>> {
        self.layers
            .iter()
            .map(|l| {
                if l.bias.is_some() {
                    bail!("this is a server's model share, not the dealer's copy");
                }
                Ok(DealerWeights::from_parts(l.k, l.n, to_words(&l.w))?)
            })
            .collect()
    }

    /// A server's weight shares (fails on the dealer's file).
    pub fn server_weights(&self) -> anyhow::Result<Vec<ServerWeights>> {
        self.layers
            .iter()
            .map(|l| {
                let Some(bias) = &l.bias else {
                    bail!("this is the dealer's model copy, not a server's share");
                };
                Ok(ServerWeights::from_parts(
                    l.k,
                    l.n,
                    to_words(&l.w),
                    to_words(bias),
                )?)
            })
            .collect()
    }
}
