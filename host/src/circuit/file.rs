//! Model files: a role's copy of a deployed model, the dealer's plaintext weights or one
//! server's shares, with the spec that names its circuits. Loaded files are untrusted input:
//! every shape is checked against the spec.

use super::ModelSpec;
use crate::nn::bert::{RingLayer, share_layers};
use anyhow::{Context, bail};
use securerouter_core::gate::{DealerWeights, ServerWeights};
use securerouter_core::prg::Seed;
use serde::{Deserialize, Serialize};
use std::path::Path;

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
            spec: spec.clone(),
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
            spec: spec.clone(),
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

    /// Writes the file (postcard), readable by its owner only: it holds plaintext weights or
    /// a server's share of them.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = postcard::to_allocvec(self)?;
        crate::secret_file::write(path, &bytes)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Reads and checks a model file (refused when group or others may access it).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = crate::secret_file::read(path)
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
