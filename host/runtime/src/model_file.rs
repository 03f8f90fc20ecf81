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

/// The first field of every model file of this layout ("SRM5": a pool names each expert's
/// head and input, so that experts of other checkpoints join it; a BERT's shape carries its
/// feed-forward activation and its relative-attention buckets, and an MPNet's relative bias
/// table is its first layer, with no inputs: each server's file holds an additive share of the
/// table as that layer's biases, the dealer's file an empty mask): files of other layouts,
/// "SRM4", "SRM3" and "SRM2" before it included, are refused by name, not misread.
const FORMAT: u32 = 0x5352_4d35;

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
    use securerouter_circuits::{Activation, BertShape};
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

    /// A fresh scratch directory.
    fn scratch() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "securerouter-modelfile-{}",
            hex::encode(crate::deployment::random_seed().as_bytes())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A small BERT with `activation`.
    fn bert(activation: Activation) -> BertShape {
        BertShape {
            layers: 1,
            hidden: 4,
            heads: 2,
            ffn: 8,
            classes: 2,
            activation,
            relative_buckets: 0,
        }
    }

    /// The ring layers of `spec` with weights of the right shapes (biases `bias`).
    fn layers_of(spec: &ModelSpec, bias: u64) -> Vec<RingLayer> {
        spec.layer_shapes()
            .into_iter()
            .enumerate()
            .map(|(i, (k, n))| RingLayer {
                k,
                n,
                w: (0..k * n).map(|j| (i * 100 + j) as u64).collect(),
                bias: (0..n).map(|j| bias + j as u64).collect(),
            })
            .collect()
    }

    /// The files of `spec` with weights of the right shapes, deployed with a fixed seed.
    fn deploy_spec(spec: ModelSpec) -> [ModelFile; 3] {
        let layers = layers_of(&spec, 3);
        ModelFile::deploy(spec, &layers, &Seed::from_bytes([4; 16])).unwrap()
    }

    /// An MPNet (a BERT shape with a relative-attention bias) round-trips through every role's
    /// file: its first layer, with no inputs, holds each server's additive share of the bias
    /// table, shares that differ from the table and between deployments, and nothing in the
    /// dealer's file, which is the same whatever the table.
    #[test]
    fn an_mpnets_bias_table_is_in_the_servers_shares_only() {
        let dir = scratch();
        let shape = BertShape {
            relative_buckets: securerouter_circuits::bert::RELATIVE_BUCKETS,
            ..bert(Activation::Gelu)
        };
        let spec = ModelSpec::BertCheckpoint(shape);
        let n = securerouter_circuits::bert::RELATIVE_BUCKETS * shape.heads;
        let deploy = |bias: u64, seed: u8| {
            ModelFile::deploy(
                spec.clone(),
                &layers_of(&spec, bias),
                &Seed::from_bytes([seed; 16]),
            )
            .unwrap()
        };
        let table: Vec<u64> = (0..n as u64).map(|j| 1000 + j).collect();
        let shares = |files: &[ModelFile; 3]| -> [Vec<u64>; 2] {
            [1, 2].map(|role| {
                let path = dir.join(format!("{role}.model"));
                files[role].save(&path).unwrap();
                let back = ModelFile::load(&path).unwrap();
                assert_eq!(back.spec, spec);
                let w = back.server_weights().unwrap();
                assert_eq!((w[0].inputs(), w[0].outputs()), (0, n));
                w[0].parts().1.to_vec()
            })
        };
        let files = deploy(1000, 9);
        let [s0, s1] = shares(&files);
        let sum: Vec<u64> = s0
            .iter()
            .zip(&s1)
            .map(|(a, b)| a.wrapping_add(*b))
            .collect();
        assert_eq!(sum, table);
        for s in [&s0, &s1] {
            assert!(
                s.iter().zip(&table).all(|(a, b)| a != b),
                "a share is the table"
            );
        }
        let [t0, t1] = shares(&deploy(1000, 10));
        assert!(t0 != s0 && t1 != s1, "shares are fresh per deployment");

        let path = dir.join("dealer.model");
        files[0].save(&path).unwrap();
        let dealer = ModelFile::load(&path).unwrap().dealer_weights().unwrap();
        assert_eq!((dealer[0].inputs(), dealer[0].outputs()), (0, n));
        assert!(dealer[0].mask().is_empty());
        let bytes = |f: &ModelFile| postcard::to_allocvec(f).unwrap();
        let [other_table, ..] = deploy(7, 9);
        assert_eq!(bytes(&files[0]), bytes(&other_table), "the dealer's file");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file of another layout (e.g. from a release whose dealer held the weights) is refused
    /// by name, not misread.
    #[test]
    fn files_of_another_layout_are_refused() {
        let dir = scratch();
        let path = dir.join("dealer.model");
        let [mut dealer, _, _] = deploy(1, 9);
        for old in [1, 0x5352_4d32, 0x5352_4d33, 0x5352_4d34] {
            dealer.format = old;
            dealer.save(&path).unwrap();
            let err = ModelFile::load(&path).unwrap_err().to_string();
            assert!(err.contains("deploy the model again"), "{err}");
        }
        dealer.format = FORMAT;
        dealer.save(&path).unwrap();
        assert!(ModelFile::load(&path).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every role's file of a BERT keeps its activation: the dealer and both servers load the
    /// same one, so they build the same GeLU table.
    #[test]
    fn the_activation_round_trips_through_every_roles_file() {
        let dir = scratch();
        for activation in [Activation::Gelu, Activation::GeluTanh] {
            for spec in [
                ModelSpec::Bert(bert(activation)),
                ModelSpec::BertCheckpoint(bert(activation)),
            ] {
                for (role, file) in deploy_spec(spec.clone()).iter().enumerate() {
                    let path = dir.join(format!("{role}.model"));
                    file.save(&path).unwrap();
                    assert_eq!(ModelFile::load(&path).unwrap().spec, spec);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A BERT file of the previous layout ("SRM2", whose shape had no activation) is refused
    /// with the advice to deploy again, and so is a file naming an activation this version does
    /// not know.
    #[test]
    fn old_bert_files_and_unknown_activations_are_refused() {
        /// The "SRM2" layout of a BERT file.
        #[derive(Serialize)]
        struct OldShape {
            layers: usize,
            hidden: usize,
            heads: usize,
            ffn: usize,
            classes: usize,
        }
        #[derive(Serialize)]
        enum OldSpec {
            #[allow(dead_code)]
            RouterHead(RouterHeadShape),
            Bert(OldShape),
        }
        #[derive(Serialize)]
        struct OldFile<'a> {
            format: u32,
            spec: OldSpec,
            layers: &'a [StoredLayer],
        }
        let dir = scratch();
        let path = dir.join("p0.model");
        let [dealer, p0, _] = deploy_spec(ModelSpec::Bert(bert(Activation::Gelu)));
        let old = OldFile {
            format: 0x5352_4d32,
            spec: OldSpec::Bert(OldShape {
                layers: 1,
                hidden: 4,
                heads: 2,
                ffn: 8,
                classes: 2,
            }),
            layers: &p0.layers,
        };
        crate::secret_file::write(&path, &postcard::to_allocvec(&old).unwrap()).unwrap();
        let err = ModelFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("deploy the model again"), "{err}");

        // The dealer's file depends on the seed alone, so the two activations' files differ
        // in the activation's byte only.
        let [tanh, _, _] = deploy_spec(ModelSpec::Bert(bert(Activation::GeluTanh)));
        let (a, b) = (
            postcard::to_allocvec(&dealer).unwrap(),
            postcard::to_allocvec(&tanh).unwrap(),
        );
        assert_eq!(a.len(), b.len());
        let at: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        assert_eq!(at.len(), 1, "{at:?}");
        let mut unknown = a;
        unknown[at[0]] = 7;
        crate::secret_file::write(&path, &unknown).unwrap();
        let err = ModelFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("deploy the model again"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
