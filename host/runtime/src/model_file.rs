//! Model files: a role's part of a deployed model, the dealer's weight masks or one server's
//! masked weights and shares, with the spec that names its circuits. No file holds the
//! plaintext weights (see `securerouter_core::gate::share_weights`). Loaded files are
//! untrusted input: every shape is checked against the spec.

use crate::error::{Error, Result, invalid};
use securerouter_circuits::ModelSpec;
use securerouter_circuits::bert::{RingLayer, share_layers};
use securerouter_core::gate::{DealerWeights, ServerWeights};
use securerouter_core::prg::Seed;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The first field of every model file of this layout ("SRM2"): files of other layouts are
/// refused by name, not misread.
const FORMAT: u32 = 0x5352_4d32;

/// One k×n layer as stored, matrices as little-endian words.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum StoredLayer {
    /// The dealer's part: the weight mask R_W.
    Dealer { k: usize, n: usize, mask: Vec<u8> },
    /// A server's part: its online matrix M_b, the masked weights W^ and its bias share (n).
    Server {
        k: usize,
        n: usize,
        online: Vec<u8>,
        masked: Vec<u8>,
        bias: Vec<u8>,
    },
}

impl StoredLayer {
    fn shape(&self) -> (usize, usize) {
        match self {
            StoredLayer::Dealer { k, n, .. } | StoredLayer::Server { k, n, .. } => (*k, *n),
        }
    }

    /// Whether every matrix has the length its shape says.
    fn lengths_match(&self) -> bool {
        let (k, n) = self.shape();
        let Some(matrix) = k.checked_mul(n).and_then(|c| c.checked_mul(8)) else {
            return false;
        };
        match self {
            StoredLayer::Dealer { mask, .. } => mask.len() == matrix,
            StoredLayer::Server {
                online,
                masked,
                bias,
                ..
            } => online.len() == matrix && masked.len() == matrix && bias.len() == n * 8,
        }
    }
}

/// Layer `i`'s index as the gate engine numbers layers.
fn layer_index(i: usize) -> Result<u32> {
    u32::try_from(i).map_err(|_| Error::Invalid(format!("too many layers ({i} and more)")))
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

/// A role's model file: the dealer's part or one server's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelFile {
    format: u32,
    /// Which circuit and shape.
    pub spec: ModelSpec,
    layers: Vec<StoredLayer>,
}

impl ModelFile {
    /// Deploys `layers` (their masks drawn from `seed`, which must be secret and fresh) into
    /// the dealer's file and the two servers' files.
    pub fn deploy(spec: ModelSpec, layers: &[RingLayer], seed: &Seed) -> Result<[Self; 3]> {
        let want = spec.layer_shapes();
        if layers.len() != want.len()
            || layers
                .iter()
                .zip(&want)
                .any(|(l, &(k, n))| l.k != k || l.n != n)
        {
            invalid!("the layers do not match the model's shape");
        }
        let shared = share_layers(layers, seed)?;
        let file = |layers| ModelFile {
            format: FORMAT,
            spec: spec.clone(),
            layers,
        };
        let dealer = file(
            shared
                .dealer
                .iter()
                .map(|l| StoredLayer::Dealer {
                    k: l.inputs(),
                    n: l.outputs(),
                    mask: to_bytes(l.mask()),
                })
                .collect(),
        );
        let server = |w: &[ServerWeights]| {
            file(
                w.iter()
                    .map(|l| StoredLayer::Server {
                        k: l.inputs(),
                        n: l.outputs(),
                        online: to_bytes(l.parts().0),
                        masked: to_bytes(l.masked()),
                        bias: to_bytes(l.parts().1),
                    })
                    .collect(),
            )
        };
        Ok([
            dealer,
            server(&shared.servers[0]),
            server(&shared.servers[1]),
        ])
    }

    /// Writes the file (postcard), readable by its owner only: it holds a role's secret part
    /// of the model.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = postcard::to_allocvec(self).map_err(|source| Error::Postcard {
            what: format!("encoding {}", path.display()),
            source,
        })?;
        crate::secret_file::write(path, &bytes).map_err(Error::io("writing", path))
    }

    /// Reads and checks a model file (refused when group or others may access it).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            crate::secret_file::read(path).map_err(Error::io("reading model file", path))?;
        let Some(m) = postcard::from_bytes(&bytes)
            .ok()
            .filter(|m: &ModelFile| m.format == FORMAT)
        else {
            invalid!(
                "{} is not a SecureRouter model file of this version (deploy the model again)",
                path.display()
            );
        };
        m.spec.validate().map_err(|source| Error::InModelFile {
            path: path.to_path_buf(),
            source,
        })?;
        let want = m.spec.layer_shapes();
        let dealer = |l: &StoredLayer| matches!(l, StoredLayer::Dealer { .. });
        let bad = m.layers.len() != want.len()
            || m.layers
                .iter()
                .zip(&want)
                .any(|(l, &shape)| l.shape() != shape || !l.lengths_match())
            || m.layers.iter().any(|l| dealer(l) != dealer(&m.layers[0]));
        if bad {
            invalid!(
                "{}: layer shapes do not match the model {:?}",
                path.display(),
                m.spec
            );
        }
        Ok(m)
    }

    /// The dealer's weight masks (fails on a server's file).
    pub fn dealer_weights(&self) -> Result<Vec<DealerWeights>> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| match l {
                StoredLayer::Dealer { k, n, mask } => Ok(DealerWeights::from_parts(
                    layer_index(i)?,
                    (*k, *n),
                    to_words(mask),
                )?),
                StoredLayer::Server { .. } => {
                    invalid!("this is a server's part of the model, not the dealer's")
                }
            })
            .collect()
    }

    /// A server's part of every layer (fails on the dealer's file).
    pub fn server_weights(&self) -> Result<Vec<ServerWeights>> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| match l {
                StoredLayer::Server {
                    k,
                    n,
                    online,
                    masked,
                    bias,
                } => Ok(ServerWeights::from_parts(
                    layer_index(i)?,
                    (*k, *n),
                    to_words(online),
                    to_words(masked),
                    to_words(bias),
                )?),
                StoredLayer::Dealer { .. } => {
                    invalid!("this is the dealer's part of the model, not a server's")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use securerouter_ml::router::{PlainRouterHead, RouterHeadShape};

    fn deploy(model_seed: u8, deployment_seed: u8) -> [ModelFile; 3] {
        let shape = RouterHeadShape::DEMO;
        let model = PlainRouterHead::random(shape, &Seed::from_bytes([model_seed; 16]));
        ModelFile::deploy(
            ModelSpec::RouterHead(shape),
            &securerouter_circuits::router_head::ring_layers(&model).unwrap(),
            &Seed::from_bytes([deployment_seed; 16]),
        )
        .unwrap()
    }

    /// The dealer's file is a function of the deployment's randomness alone: two different
    /// models deployed with the same seed give byte-identical dealer files (and different
    /// server files), and another seed gives another dealer file.
    #[test]
    fn the_dealers_file_does_not_depend_on_the_model() {
        let bytes = |f: &ModelFile| postcard::to_allocvec(f).unwrap();
        let [dealer_a, p0_a, _] = deploy(1, 9);
        let [dealer_b, p0_b, _] = deploy(2, 9);
        let [dealer_c, _, _] = deploy(1, 10);
        assert_eq!(bytes(&dealer_a), bytes(&dealer_b));
        assert_ne!(bytes(&p0_a), bytes(&p0_b));
        assert_ne!(bytes(&dealer_a), bytes(&dealer_c));
        assert!(dealer_a.dealer_weights().is_ok() && dealer_a.server_weights().is_err());
        assert!(p0_a.server_weights().is_ok() && p0_a.dealer_weights().is_err());
    }

    /// A file of another layout (e.g. from a release whose dealer held the weights) is refused
    /// by name, not misread.
    #[test]
    fn files_of_another_layout_are_refused() {
        let dir = std::env::temp_dir().join(format!(
            "securerouter-modelfile-{}",
            hex::encode(crate::deployment::random_seed().as_bytes())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dealer.model");
        let [mut dealer, _, _] = deploy(1, 9);
        dealer.format = 1;
        dealer.save(&path).unwrap();
        let err = ModelFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("deploy the model again"), "{err}");
        dealer.format = FORMAT;
        dealer.save(&path).unwrap();
        assert!(ModelFile::load(&path).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
