//! The circuits the services can run, written once for dealer and servers over core's
//! [`Protocol`], with the model files each role loads.
//!
//! Today there is one: the router head (a 2-layer MLP with ReLU and a secure argmax over the
//! expert scores). BERT experts join it with the model work.

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
}

impl CircuitKind {
    /// Name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            CircuitKind::RouterHead => "router-head",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> anyhow::Result<Self> {
        match name {
            "router-head" => Ok(CircuitKind::RouterHead),
            other => bail!("unknown circuit {other:?}; known: router-head"),
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

    /// Shares the model for deployment: the dealer's copy and the two servers' shares.
    pub fn deploy(&self, seeds: [&Seed; 2]) -> anyhow::Result<[ModelFile; 3]> {
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
        let (d1, a1, b1) = gate::share_weights(
            &enc(fp, &self.w1)?,
            &enc(fp2, &self.b1)?,
            s.features,
            s.hidden,
            seeds[0],
        )?;
        let (d2, a2, b2) = gate::share_weights(
            &enc(fp, &self.w2)?,
            &enc(fp2, &self.b2)?,
            s.hidden,
            s.experts,
            seeds[1],
        )?;
        let dealer = ModelFile::from_dealer(s, &[d1, d2]);
        Ok([
            dealer,
            ModelFile::from_server(s, &[a1, a2]),
            ModelFile::from_server(s, &[b1, b2]),
        ])
    }
}

/// One layer as stored: weights k×n and (for servers) bias n.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredLayer {
    k: usize,
    n: usize,
    w: Vec<u64>,
    bias: Option<Vec<u64>>,
}

/// A role's model file: the dealer's plaintext copy or one server's share.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelFile {
    /// Which circuit it is for.
    pub circuit: CircuitKind,
    /// The router head's shape.
    pub shape: RouterHeadShape,
    layers: Vec<StoredLayer>,
}

impl ModelFile {
    fn from_dealer(shape: RouterHeadShape, layers: &[DealerWeights]) -> Self {
        ModelFile {
            circuit: CircuitKind::RouterHead,
            shape,
            layers: layers
                .iter()
                .map(|l| StoredLayer {
                    k: l.inputs(),
                    n: l.outputs(),
                    w: l.weights().to_vec(),
                    bias: None,
                })
                .collect(),
        }
    }

    fn from_server(shape: RouterHeadShape, layers: &[ServerWeights]) -> Self {
        ModelFile {
            circuit: CircuitKind::RouterHead,
            shape,
            layers: layers
                .iter()
                .map(|l| StoredLayer {
                    k: l.inputs(),
                    n: l.outputs(),
                    w: l.parts().0.to_vec(),
                    bias: Some(l.parts().1.to_vec()),
                })
                .collect(),
        }
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
        m.shape
            .validate()
            .with_context(|| format!("in {}", path.display()))?;
        let s = m.shape;
        let want = [(s.features, s.hidden), (s.hidden, s.experts)];
        if m.layers.len() != 2
            || m.layers
                .iter()
                .zip(want)
                .any(|(l, (k, n))| l.k != k || l.n != n)
        {
            bail!(
                "{}: layer shapes do not match the router head {:?}",
                path.display(),
                s
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
                Ok(DealerWeights::from_parts(l.k, l.n, l.w.clone())?)
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
                    l.w.clone(),
                    bias.clone(),
                )?)
            })
            .collect()
    }
}
