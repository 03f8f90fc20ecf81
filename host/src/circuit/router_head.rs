//! The router head: a 2-layer MLP with ReLU over the summary encoder's pooled features, then a
//! secure argmax whose one-hot choice stays secret; and its plaintext twin, as the model
//! provider holds it.

use super::FRAC_BITS;
use crate::nn::bert::RingLayer;
use anyhow::{Context, bail};
use securerouter_core::Error;
use securerouter_core::gate::{self, Protocol, Tensor};
use securerouter_core::prg::Seed;
use securerouter_core::ring::{BitWidth, FixedPoint};
use serde::{Deserialize, Serialize};

/// Width at which signs are compared in the router (scores and the summary expert's logits stay
/// far below 2^39 in fixed point).
pub(crate) const COMPARE_BITS: u32 = 40;

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

    /// (inputs, outputs) of its two weight layers.
    pub fn layer_shapes(&self) -> Vec<(usize, usize)> {
        vec![(self.features, self.hidden), (self.hidden, self.experts)]
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
    /// Checks the shape, the weights' lengths and that every weight is finite (stored routers
    /// are untrusted input).
    pub fn validate(&self) -> anyhow::Result<()> {
        let s = self.shape;
        s.validate()?;
        for (what, v, n) in [
            ("w1", &self.w1, s.features * s.hidden),
            ("b1", &self.b1, s.hidden),
            ("w2", &self.w2, s.hidden * s.experts),
            ("b2", &self.b2, s.experts),
        ] {
            if v.len() != n {
                bail!("router {what} has {} values; its shape needs {n}", v.len());
            }
            if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
                bail!("router {what} holds {bad}");
            }
        }
        Ok(())
    }

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
