//! The router in plaintext, as the model provider trains and holds it: its shape, its weights,
//! and the features it reads. The secure circuit that runs it is `securerouter-circuits`'
//! `router_head`, which reads these types.

use crate::Result;
use crate::error::invalid;
use securerouter_core::prg::{AesCtr, Domain, Seed};
use serde::{Deserialize, Serialize};

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
    pub fn validate(&self) -> Result<()> {
        for (what, v) in [
            ("features", self.features),
            ("hidden", self.hidden),
            ("experts", self.experts),
        ] {
            if v == 0 || v > 1 << 16 {
                invalid!("router head {what} = {v} is outside 1..=65536");
            }
        }
        Ok(())
    }

    /// (inputs, outputs) of its two weight layers.
    pub fn layer_shapes(&self) -> Vec<(usize, usize)> {
        vec![(self.features, self.hidden), (self.hidden, self.experts)]
    }
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
    pub fn validate(&self) -> Result<()> {
        let s = self.shape;
        s.validate()?;
        for (what, v, n) in [
            ("w1", &self.w1, s.features * s.hidden),
            ("b1", &self.b1, s.hidden),
            ("w2", &self.w2, s.hidden * s.experts),
            ("b2", &self.b2, s.experts),
        ] {
            if v.len() != n {
                invalid!("router {what} has {} values; its shape needs {n}", v.len());
            }
            if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
                invalid!("router {what} holds {bad}");
            }
        }
        Ok(())
    }

    /// Random weights from a seed (a stand-in until a trained router exists).
    pub fn random(shape: RouterHeadShape, seed: &Seed) -> Self {
        let mut rng = AesCtr::new(seed, Domain(7));
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
}

/// The router's input width for a summary encoder of `hidden` units: the pooled states and the
/// summary expert's lead.
pub fn router_feature_count(hidden: usize) -> usize {
    hidden + 1
}

/// What the router head reads (plaintext): the summary encoder's pooled states, then the
/// summary expert's confidence, the lead of its top logit over the others, Σⱼ (max − logitⱼ)
/// (for two classes the margin |logit₀ − logit₁|). Inputs the small expert is sure of stand
/// out in the lead, which the pooled states show only through the head; with it the router
/// keeps more of them on the small expert at the same accuracy. Under MPC the lead is one
/// maximum and a sum, with no truncation.
pub fn router_features(pooled: &[f64], summary_logits: &[f64]) -> Result<Vec<f64>> {
    if summary_logits.len() < 2 {
        invalid!(
            "the router reads the lead of a summary expert of at least two classes; it gave {} \
             logits",
            summary_logits.len()
        );
    }
    let max = summary_logits
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let lead = summary_logits.iter().map(|l| max - l).sum::<f64>();
    Ok(pooled.iter().copied().chain([lead]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_router_reads_the_pooled_states_and_the_summary_lead() {
        let f = router_features(&[0.25, -1.0], &[0.5, 2.0]).unwrap();
        assert_eq!(f, [0.25, -1.0, 1.5]);
        assert_eq!(f.len(), router_feature_count(2));
        // Three classes: the top logit's lead over each of the others, summed.
        let f = router_features(&[0.25], &[0.5, 2.0, -1.0]).unwrap();
        assert_eq!(f, [0.25, 1.5 + 3.0]);
        let e = router_features(&[0.25], &[0.1]).unwrap_err();
        assert!(e.to_string().contains("at least two classes"), "{e}");
    }
}
