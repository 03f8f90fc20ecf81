//! Model files: a role's part of a deployed model, the dealer's weight masks or one server's
//! masked weights and shares, with the spec that names its circuits. No file holds the
//! plaintext weights (see `securerouter_core::gate::share_weights`). Loaded files are
//! untrusted input: the header is checked first and the file's length against the shapes its
//! spec gives, before any weight is read.
//!
//! A file is written and read one layer at a time, so deploying or loading a model needs
//! memory for the role's weights and one layer more, not for every role's copy at once (the
//! BERT-large shape's servers hold 5 GB of weights each).

use crate::error::{Error, Result, invalid};
use crate::secret_file::Replacement;
use securerouter_circuits::ModelSpec;
use securerouter_circuits::bert::{RingLayer, share_layer, share_layers};
use securerouter_core::gate::{DealerWeights, ServerWeights};
use securerouter_core::prg::Seed;
use serde::{Deserialize, Serialize};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// The first field of every model file of this layout ("SRM6": a postcard header of the
/// format, the spec and the role, then each layer's matrices as little-endian words in the
/// order of the spec's layer shapes: the dealer's mask R_W, or a server's online matrix M_b,
/// masked weights W^ and bias share). Files of other layouts ("SRM5", a postcard structure
/// read whole, and those before it) are refused by name, not misread.
const FORMAT: u32 = 0x5352_4d36;

/// The most bytes a header (format, spec, role) may take: a pool's spec is a few hundred.
const HEADER_LIMIT: usize = 1 << 16;

/// Whose part of the model a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Holder {
    Dealer,
    Server,
}

/// A role's part of every layer.
#[derive(Clone, Debug)]
enum Part {
    Dealer(Vec<DealerWeights>),
    Server(Vec<ServerWeights>),
}

/// A role's model file: the dealer's part or one server's.
#[derive(Clone, Debug)]
pub struct ModelFile {
    /// Which circuit and shape.
    pub spec: ModelSpec,
    part: Part,
}

/// Layer `i`'s index as the gate engine numbers layers.
fn layer_index(i: usize) -> Result<u32> {
    u32::try_from(i).map_err(|_| Error::Invalid(format!("too many layers ({i} and more)")))
}

/// Whether `layers` have the shapes `spec` gives.
fn check_shapes(spec: &ModelSpec, layers: &[RingLayer]) -> Result<()> {
    let want = spec.layer_shapes();
    if layers.len() != want.len()
        || layers
            .iter()
            .zip(&want)
            .any(|(l, &(k, n))| l.k != k || l.n != n)
    {
        invalid!("the layers do not match the model's shape");
    }
    Ok(())
}

/// Writes words as little-endian bytes, a block at a time.
fn write_words(w: &mut impl Write, words: &[u64]) -> std::io::Result<()> {
    let mut block = Vec::with_capacity(8 << 12);
    for chunk in words.chunks(1 << 12) {
        block.clear();
        block.extend(chunk.iter().flat_map(|x| x.to_le_bytes()));
        w.write_all(&block)?;
    }
    Ok(())
}

/// Reads `count` little-endian words (the caller has checked the file holds them).
fn read_words(r: &mut impl Read, count: usize) -> std::io::Result<Vec<u64>> {
    let mut words = Vec::with_capacity(count);
    let mut block = vec![0u8; 8 << 12];
    while words.len() < count {
        let take = (count - words.len()).min(1 << 12);
        let bytes = &mut block[..take * 8];
        r.read_exact(bytes)?;
        words.extend(
            bytes
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))),
        );
    }
    Ok(words)
}

/// The header: format, spec and holder.
fn write_header(w: &mut impl Write, spec: &ModelSpec, holder: Holder) -> Result<()> {
    let bytes =
        postcard::to_allocvec(&(FORMAT, spec, holder)).map_err(|source| Error::Postcard {
            what: "encoding a model file's header".to_string(),
            source,
        })?;
    w.write_all(&bytes)
        .map_err(|e| Error::Invalid(format!("writing a model file: {e}")))
}

/// One layer's part for its holder.
fn write_dealer(w: &mut impl Write, d: &DealerWeights) -> std::io::Result<()> {
    write_words(w, d.mask())
}

fn write_server(w: &mut impl Write, s: &ServerWeights) -> std::io::Result<()> {
    write_words(w, s.parts().0)?;
    write_words(w, s.masked())?;
    write_words(w, s.parts().1)
}

/// Bytes of a holder's part of a layer of shape (k, n), or `None` on overflow.
fn part_bytes(holder: Holder, (k, n): (usize, usize)) -> Option<u64> {
    let matrix = (k as u64).checked_mul(n as u64)?.checked_mul(8)?;
    match holder {
        Holder::Dealer => Some(matrix),
        Holder::Server => matrix.checked_mul(2)?.checked_add(n as u64 * 8),
    }
}

/// A reader that counts the bytes it has handed out.
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl ModelFile {
    /// Deploys `layers` (their masks drawn from `seed`, which must be secret and fresh) into
    /// the dealer's file and the two servers' files, in memory.
    pub fn deploy(spec: ModelSpec, layers: &[RingLayer], seed: &Seed) -> Result<[Self; 3]> {
        check_shapes(&spec, layers)?;
        let shared = share_layers(layers, seed)?;
        let [s0, s1] = shared.servers;
        Ok([
            ModelFile {
                spec: spec.clone(),
                part: Part::Dealer(shared.dealer),
            },
            ModelFile {
                spec: spec.clone(),
                part: Part::Server(s0),
            },
            ModelFile {
                spec,
                part: Part::Server(s1),
            },
        ])
    }

    /// [`ModelFile::deploy`] straight into the dealer's, P0's and P1's files at `paths`, one
    /// layer at a time: the same bytes as deploying in memory and saving, with one layer's
    /// parts in memory at a time.
    pub fn deploy_to(
        spec: &ModelSpec,
        layers: &[RingLayer],
        seed: &Seed,
        paths: &[PathBuf; 3],
    ) -> Result<()> {
        check_shapes(spec, layers)?;
        let open = |p: &PathBuf| Replacement::create(p).map_err(Error::io("writing", p));
        let mut files = [open(&paths[0])?, open(&paths[1])?, open(&paths[2])?];
        let failed = |i: usize| Error::io("writing", &paths[i]);
        for (file, holder) in files
            .iter_mut()
            .zip([Holder::Dealer, Holder::Server, Holder::Server])
        {
            write_header(file, spec, holder)?;
        }
        for (i, l) in layers.iter().enumerate() {
            let (d, s0, s1) = share_layer(i, l, seed)?;
            write_dealer(&mut files[0], &d).map_err(failed(0))?;
            write_server(&mut files[1], &s0).map_err(failed(1))?;
            write_server(&mut files[2], &s1).map_err(failed(2))?;
        }
        let [d, p0, p1] = files;
        d.finish().map_err(failed(0))?;
        p0.finish().map_err(failed(1))?;
        p1.finish().map_err(failed(2))
    }

    /// Writes the file, readable by its owner only: it holds a role's secret part of the model.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut file = Replacement::create(path).map_err(Error::io("writing", path))?;
        self.write_to(&mut file)?;
        file.finish().map_err(Error::io("writing", path))
    }

    fn write_to(&self, w: &mut impl Write) -> Result<()> {
        let failed = |e: std::io::Error| Error::Invalid(format!("writing a model file: {e}"));
        match &self.part {
            Part::Dealer(layers) => {
                write_header(w, &self.spec, Holder::Dealer)?;
                for d in layers {
                    write_dealer(w, d).map_err(failed)?;
                }
            }
            Part::Server(layers) => {
                write_header(w, &self.spec, Holder::Server)?;
                for s in layers {
                    write_server(w, s).map_err(failed)?;
                }
            }
        }
        Ok(())
    }

    /// Reads and checks a model file (refused when group or others may access it).
    pub fn load(path: &Path) -> Result<Self> {
        let file = crate::secret_file::open(path).map_err(Error::io("reading model file", path))?;
        let size = file
            .metadata()
            .map_err(Error::io("reading model file", path))?
            .len();
        let mut r = Counted {
            inner: BufReader::with_capacity(1 << 20, file),
            read: 0,
        };
        let again = || {
            Error::Invalid(format!(
                "{} is not a SecureRouter model file of this version (deploy the model again)",
                path.display()
            ))
        };
        let mut scratch = vec![0u8; HEADER_LIMIT];
        let (format, _) =
            postcard::from_io::<u32, _>((&mut r, &mut scratch[..])).map_err(|_| again())?;
        if format != FORMAT {
            return Err(again());
        }
        let ((spec, holder), _) =
            postcard::from_io::<(ModelSpec, Holder), _>((&mut r, &mut scratch[..]))
                .map_err(|_| again())?;
        spec.validate().map_err(|source| Error::InModelFile {
            path: path.to_path_buf(),
            source,
        })?;
        let shapes = spec.layer_shapes();
        let body = shapes.iter().try_fold(0u64, |sum, &shape| {
            sum.checked_add(part_bytes(holder, shape)?)
        });
        if body.and_then(|b| b.checked_add(r.read)) != Some(size) {
            invalid!(
                "{} is {size} bytes, but {} model {:?} needs {} (a truncated or altered file: \
                 deploy the model again)",
                path.display(),
                match holder {
                    Holder::Dealer => "the dealer's part of the",
                    Holder::Server => "a server's part of the",
                },
                spec,
                body.map_or("more than fits".to_string(), |b| (b + r.read).to_string()),
            );
        }
        let failed = |e| Error::io("reading model file", path)(e);
        let part = match holder {
            Holder::Dealer => Part::Dealer(
                shapes
                    .iter()
                    .enumerate()
                    .map(|(i, &(k, n))| {
                        let mask = read_words(&mut r, k * n).map_err(failed)?;
                        Ok(DealerWeights::from_parts(layer_index(i)?, (k, n), mask)?)
                    })
                    .collect::<Result<_>>()?,
            ),
            Holder::Server => Part::Server(
                shapes
                    .iter()
                    .enumerate()
                    .map(|(i, &(k, n))| {
                        let online = read_words(&mut r, k * n).map_err(failed)?;
                        let masked = read_words(&mut r, k * n).map_err(failed)?;
                        let bias = read_words(&mut r, n).map_err(failed)?;
                        Ok(ServerWeights::from_parts(
                            layer_index(i)?,
                            (k, n),
                            online,
                            masked,
                            bias,
                        )?)
                    })
                    .collect::<Result<_>>()?,
            ),
        };
        Ok(ModelFile { spec, part })
    }

    /// The dealer's weight masks (fails on a server's file).
    pub fn into_dealer_weights(self) -> Result<Vec<DealerWeights>> {
        match self.part {
            Part::Dealer(w) => Ok(w),
            Part::Server(_) => invalid!("this is a server's part of the model, not the dealer's"),
        }
    }

    /// A server's part of every layer (fails on the dealer's file).
    pub fn into_server_weights(self) -> Result<Vec<ServerWeights>> {
        match self.part {
            Part::Server(w) => Ok(w),
            Part::Dealer(_) => invalid!("this is the dealer's part of the model, not a server's"),
        }
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

    /// A file's bytes as `save` writes them.
    fn bytes(f: &ModelFile) -> Vec<u8> {
        let mut out = Vec::new();
        f.write_to(&mut out).unwrap();
        out
    }

    /// The dealer's file is a function of the deployment's randomness alone: two different
    /// models deployed with the same seed give byte-identical dealer files (and different
    /// server files), and another seed gives another dealer file.
    #[test]
    fn the_dealers_file_does_not_depend_on_the_model() {
        let [dealer_a, p0_a, _] = deploy(1, 9);
        let [dealer_b, p0_b, _] = deploy(2, 9);
        let [dealer_c, _, _] = deploy(1, 10);
        assert_eq!(bytes(&dealer_a), bytes(&dealer_b));
        assert_ne!(bytes(&p0_a), bytes(&p0_b));
        assert_ne!(bytes(&dealer_a), bytes(&dealer_c));
        assert!(dealer_a.clone().into_dealer_weights().is_ok());
        assert!(dealer_a.into_server_weights().is_err());
        assert!(p0_a.clone().into_server_weights().is_ok());
        assert!(p0_a.into_dealer_weights().is_err());
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
                let w = back.into_server_weights().unwrap();
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
        let dealer = ModelFile::load(&path)
            .unwrap()
            .into_dealer_weights()
            .unwrap();
        assert_eq!((dealer[0].inputs(), dealer[0].outputs()), (0, n));
        assert!(dealer[0].mask().is_empty());
        let [other_table, ..] = deploy(7, 9);
        assert_eq!(bytes(&files[0]), bytes(&other_table), "the dealer's file");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file of another layout (e.g. from a release whose dealer held the weights, or the
    /// "SRM5" structure read whole) is refused by name, not misread.
    #[test]
    fn files_of_another_layout_are_refused() {
        let dir = scratch();
        let path = dir.join("dealer.model");
        let [dealer, _, _] = deploy(1, 9);
        let saved = bytes(&dealer);
        for old in [1u32, 0x5352_4d32, 0x5352_4d33, 0x5352_4d34, 0x5352_4d35] {
            let mut file = postcard::to_allocvec(&old).unwrap();
            file.extend_from_slice(&saved[postcard::to_allocvec(&FORMAT).unwrap().len()..]);
            crate::secret_file::write(&path, &file).unwrap();
            let err = ModelFile::load(&path).unwrap_err().to_string();
            assert!(err.contains("deploy the model again"), "{err}");
        }
        dealer.save(&path).unwrap();
        assert!(ModelFile::load(&path).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file cut short or grown by a byte is refused before any weight is read, naming its
    /// size and the size its spec needs; so is a header that names neither role.
    #[test]
    fn a_file_of_the_wrong_length_is_refused_with_both_sizes() {
        let dir = scratch();
        let path = dir.join("p0.model");
        let [_, p0, _] = deploy_spec(ModelSpec::Bert(bert(Activation::Gelu)));
        let saved = bytes(&p0);
        for bad in [
            &saved[..saved.len() - 1],
            &[saved.as_slice(), &[0]].concat()[..],
        ] {
            crate::secret_file::write(&path, bad).unwrap();
            let err = ModelFile::load(&path).unwrap_err().to_string();
            assert!(
                err.contains(&format!("is {} bytes", bad.len()))
                    && err.contains(&format!("needs {}", saved.len())),
                "{err}"
            );
        }
        let header = postcard::to_allocvec(&(FORMAT, &p0.spec, Holder::Server)).unwrap();
        let mut other = saved.clone();
        other[header.len() - 1] = 9;
        crate::secret_file::write(&path, &other).unwrap();
        let err = ModelFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("deploy the model again"), "{err}");
        crate::secret_file::write(&path, &saved).unwrap();
        assert_eq!(bytes(&ModelFile::load(&path).unwrap()), saved);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Deploying straight into files writes the same bytes as deploying in memory and saving,
    /// for every role, and a failed deploy (a folder that does not exist) leaves nothing.
    #[test]
    fn deploying_into_files_writes_what_saving_writes() {
        let dir = scratch();
        let spec = ModelSpec::BertCheckpoint(BertShape {
            relative_buckets: securerouter_circuits::bert::RELATIVE_BUCKETS,
            ..bert(Activation::Gelu)
        });
        let layers = layers_of(&spec, 3);
        let seed = Seed::from_bytes([4; 16]);
        let paths = ["dealer", "p0", "p1"].map(|s| dir.join(format!("{s}.model")));
        ModelFile::deploy_to(&spec, &layers, &seed, &paths).unwrap();
        let files = ModelFile::deploy(spec.clone(), &layers, &seed).unwrap();
        for (file, path) in files.iter().zip(&paths) {
            assert_eq!(
                std::fs::read(path).unwrap(),
                bytes(file),
                "{}",
                path.display()
            );
        }
        let missing = ["a", "b", "c"].map(|s| dir.join("missing").join(s));
        assert!(ModelFile::deploy_to(&spec, &layers, &seed, &missing).is_err());
        let wrong = &layers[..layers.len() - 1];
        let err = ModelFile::deploy_to(&spec, wrong, &seed, &paths).unwrap_err();
        assert!(err.to_string().contains("do not match"), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3, "stray files");
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
        struct OldFile {
            format: u32,
            spec: OldSpec,
            layers: Vec<u8>,
        }
        let dir = scratch();
        let path = dir.join("p0.model");
        let [dealer, _, _] = deploy_spec(ModelSpec::Bert(bert(Activation::Gelu)));
        let old = OldFile {
            format: 0x5352_4d32,
            spec: OldSpec::Bert(OldShape {
                layers: 1,
                hidden: 4,
                heads: 2,
                ffn: 8,
                classes: 2,
            }),
            layers: Vec::new(),
        };
        crate::secret_file::write(&path, &postcard::to_allocvec(&old).unwrap()).unwrap();
        let err = ModelFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("deploy the model again"), "{err}");

        // The dealer's file depends on the seed alone, so the two activations' files differ
        // in the activation's byte only.
        let [tanh, _, _] = deploy_spec(ModelSpec::Bert(bert(Activation::GeluTanh)));
        let (a, b) = (bytes(&dealer), bytes(&tanh));
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
