//! Pool manifests: which experts a pool holds, the files of each, and what each costs under
//! MPC as measured by `securerouter bench`.
//!
//! An expert is either the pool's base checkpoint (an asset) cut to its first k layers, with
//! its top layers fine-tuned (stored alone, as safetensors under the checkpoint's names) and a
//! classifier head on mean-pooled states, or a classifier checkpoint folder of its own (as
//! `securerouter train expert` writes it, copied into the pool directory: its own vocabulary,
//! embeddings and head), which reads an input of its own under MPC. Experts are listed from
//! cheapest to dearest; the first one is a cut, whose encoder is the router's summary encoder.
//! The manifest is untrusted input when loaded: file names must stay inside the pool
//! directory, and every figure and shape is checked.

use super::head::ExpertHead;
use super::{BertWeights, ClassifierHead, Tokenizer};
use crate::assets::{self, Asset};
use crate::error::{Error, Result, invalid};
use crate::metrics::{Metric, Scores};
use serde::{Deserialize, Serialize};
use std::path::{Component, Path};

/// The manifest's file name inside a pool directory.
pub const MANIFEST: &str = "pool.json";

/// What one expert costs per query under MPC, measured by `securerouter bench` (dealer, P0 and
/// P1 as processes on this machine, over the encrypted links).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasuredCost {
    /// Online seconds per query (the slower server).
    pub online_s: f64,
    /// Offline seconds per query (the dealer's keys).
    pub offline_s: f64,
    /// Bytes each server sends online per query.
    pub online_bytes_per_server: u64,
    /// Key bytes per server per query.
    pub key_bytes_per_server: u64,
    /// Rounds per query.
    pub rounds: u64,
    /// Queries averaged.
    pub queries: usize,
}

/// An expert of a built pool whose MPC cost is to be measured ([`MeasuredCost`]).
#[derive(Clone, Copy, Debug)]
pub struct CostRequest<'a> {
    /// The pool directory.
    pub pool: &'a Path,
    /// The expert's name in the manifest.
    pub expert: &'a str,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Queries to average.
    pub queries: usize,
}

/// One expert of a pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpertEntry {
    /// A unique name, e.g. `minilm-l6-first-2`.
    pub name: String,
    /// Where its weights come from.
    #[serde(flatten)]
    pub source: ExpertSource,
    /// Accuracy on the pool's held-out examples (plaintext).
    pub held_out_accuracy: f64,
    /// The task's metric on the pool's held-out examples (plaintext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_scores: Option<Scores>,
    /// The measured MPC cost, once benchmarked.
    pub cost: Option<MeasuredCost>,
}

/// Where an expert's weights come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExpertSource {
    /// The base checkpoint cut to its first `layers`, its top layers fine-tuned, with a head
    /// on mean-pooled states.
    Cut {
        /// Layers kept from the base checkpoint.
        layers: usize,
        /// How many of the top layers were fine-tuned.
        tuned_layers: usize,
        /// The fine-tuned layers (safetensors), relative to the pool directory.
        tuned_file: String,
        /// The classifier head (JSON), relative to the pool directory.
        head: String,
    },
    /// A classifier checkpoint folder (`config.json`, `model.safetensors`, its tokenizer),
    /// relative to the pool directory, with its own head.
    Checkpoint {
        /// The folder.
        checkpoint: String,
    },
}

/// A pool of experts (`pool.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolManifest {
    /// The asset package every expert is cut from.
    pub base: String,
    /// The task the experts were fine-tuned on.
    pub task: String,
    /// Classes of the task.
    pub classes: usize,
    /// The classes' names in the experts' output order (pools written before labels were
    /// stored are the sentiment pool's).
    #[serde(default = "sentiment_labels")]
    pub labels: Vec<String>,
    /// The task's metric.
    #[serde(default = "accuracy")]
    pub metric: Metric,
    /// Tokens per sequence under MPC (sentences are padded or cut to it).
    pub seq_len: usize,
    /// The experts, cheapest first; the first one's encoder is the summary encoder.
    pub experts: Vec<ExpertEntry>,
}

fn sentiment_labels() -> Vec<String> {
    vec!["negative".into(), "positive".into()]
}

fn accuracy() -> Metric {
    Metric::Accuracy
}

/// A loaded expert: the encoder, its head and, for an expert of its own checkpoint, that
/// checkpoint's tokenizer.
#[derive(Clone, Debug)]
pub struct LoadedExpert {
    /// The encoder (and embeddings).
    pub weights: BertWeights,
    /// The head.
    pub head: ExpertHead,
    /// The tokenizer of an expert of its own checkpoint, which reads an input of its own;
    /// `None` for a cut of the base checkpoint, which reads the summary's.
    pub own_tokenizer: Option<Tokenizer>,
}

impl LoadedExpert {
    /// Its plaintext logits on `text` (and its `pair`, for a pair task) at `seq_len` tokens,
    /// tokenized with its own tokenizer or else `base` (the pool's).
    pub fn logits(
        &self,
        base: &Tokenizer,
        text: &str,
        pair: Option<&str>,
        seq_len: usize,
    ) -> Result<Vec<f64>> {
        let e = self
            .own_tokenizer
            .as_ref()
            .unwrap_or(base)
            .encode_input(text, pair, seq_len)?;
        self.head.reference(&self.weights, &e.ids, &e.type_ids)
    }
}

impl PoolManifest {
    /// Reads and checks `dir/pool.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read(&path).map_err(Error::io("reading the pool manifest", &path))?;
        let m: PoolManifest = serde_json::from_slice(&text).map_err(|source| Error::Json {
            what: format!("{} is not a pool manifest", path.display()),
            source,
        })?;
        m.validate().map_err(Error::in_file(&path))?;
        Ok(m)
    }

    /// Writes `dir/pool.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.validate()?;
        let path = dir.join(MANIFEST);
        let json = serde_json::to_vec_pretty(self).map_err(|source| Error::Json {
            what: "encoding the pool manifest".into(),
            source,
        })?;
        std::fs::write(&path, json).map_err(Error::io("writing", &path))
    }

    /// Checks names, shapes, figures and that file names stay inside the pool directory.
    pub fn validate(&self) -> Result<()> {
        if self.experts.is_empty() {
            invalid!("the pool has no experts");
        }
        if self.classes < 2 || self.classes > 1 << 16 {
            invalid!(
                "a pool of classifiers needs 2..=65536 classes, not {}",
                self.classes
            );
        }
        if self.labels.len() != self.classes
            || self.labels.iter().any(String::is_empty)
            || (1..self.labels.len()).any(|i| self.labels[..i].contains(&self.labels[i]))
        {
            invalid!(
                "the pool's labels {:?} are not {} distinct names, one per class",
                self.labels,
                self.classes
            );
        }
        if self.metric == Metric::PearsonSpearman {
            invalid!("a pool routes classifiers; it cannot be scored by correlation");
        }
        if self.seq_len == 0 || self.seq_len > 512 {
            invalid!("seq_len {} is outside 1..=512", self.seq_len);
        }
        for (i, e) in self.experts.iter().enumerate() {
            if e.name.is_empty() || self.experts[..i].iter().any(|o| o.name == e.name) {
                invalid!("expert {i} has an empty or repeated name {:?}", e.name);
            }
            let files = match &e.source {
                ExpertSource::Cut {
                    layers,
                    tuned_layers,
                    tuned_file,
                    head,
                } => {
                    if *layers == 0 || *layers > 256 {
                        invalid!(
                            "expert {:?} keeps {layers} layers; 1..=256 are possible",
                            e.name
                        );
                    }
                    if tuned_layers > layers {
                        invalid!(
                            "expert {:?} has {tuned_layers} fine-tuned layers of {layers}",
                            e.name
                        );
                    }
                    vec![tuned_file, head]
                }
                ExpertSource::Checkpoint { checkpoint } if i == 0 => invalid!(
                    "expert {:?} (checkpoint {checkpoint:?}) cannot come first: expert 0 is \
                     the router's summary encoder, a cut of the base checkpoint",
                    e.name
                ),
                ExpertSource::Checkpoint { checkpoint } => vec![checkpoint],
            };
            for f in files {
                if !inside(f) {
                    invalid!(
                        "expert {:?}: file name {f:?} must be a plain relative path inside \
                         the pool directory",
                        e.name
                    );
                }
            }
            if !(0.0..=1.0).contains(&e.held_out_accuracy) {
                invalid!(
                    "expert {:?} has accuracy {} outside [0, 1]",
                    e.name,
                    e.held_out_accuracy
                );
            }
            if let Some(c) = &e.cost
                && !(c.online_s.is_finite() && c.online_s > 0.0 && c.offline_s.is_finite())
            {
                invalid!("expert {:?} has a cost that is not a positive time", e.name);
            }
        }
        Ok(())
    }

    /// Whether the pool was trained on the task named `name` (sentiment pools written before
    /// pools were named by their data read as the Rotten Tomatoes task).
    pub fn trained_on(&self, name: &str) -> bool {
        fn alias(t: &str) -> &str {
            const LEGACY_SENTIMENT_TASK: &str = "rotten-tomatoes-sentiment";
            if t == LEGACY_SENTIMENT_TASK {
                crate::data::ROTTEN_TOMATOES
            } else {
                t
            }
        }
        alias(&self.task) == alias(name)
    }

    /// The base checkpoint's asset.
    pub fn base_asset(&self) -> Result<&'static Asset> {
        assets::ALL
            .iter()
            .find(|a| a.package == self.base)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "the pool's base {:?} is not a known asset",
                    self.base
                ))
            })
    }

    /// Position of the expert named `name`.
    pub fn index_of(&self, name: &str) -> Result<usize> {
        self.experts
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.experts.iter().map(|e| e.name.as_str()).collect();
                Error::Invalid(format!(
                    "no expert {name:?} in the pool; it has {}",
                    names.join(", ")
                ))
            })
    }

    /// Measured online seconds of every expert, cheapest first.
    pub fn online_costs(&self) -> Result<Vec<f64>> {
        self.experts
            .iter()
            .map(|e| {
                e.cost.as_ref().map(|c| c.online_s).ok_or_else(|| {
                    Error::Invalid(format!(
                        "expert {:?} has no measured cost (run `securerouter train pool`)",
                        e.name
                    ))
                })
            })
            .collect()
    }

    /// Loads expert `i`: a cut, from the base checkpoint in `cache` with its fine-tuned top
    /// layers and its head from `dir`; or its own checkpoint folder in `dir`.
    pub fn load_expert(&self, dir: &Path, cache: &Path, i: usize) -> Result<LoadedExpert> {
        let e = self.experts.get(i).ok_or_else(|| {
            Error::Invalid(format!(
                "the pool has {} experts, not {}",
                self.experts.len(),
                i + 1
            ))
        })?;
        let part = |part| {
            move |source| Error::Expert {
                name: e.name.clone(),
                part,
                source: Box::new(source),
            }
        };
        let loaded = match &e.source {
            ExpertSource::Cut {
                layers,
                tuned_layers,
                tuned_file,
                head,
            } => {
                let base = self.base_asset()?.path(cache)?;
                let mut weights = BertWeights::load(&base, Some(*layers)).map_err(part("base"))?;
                weights
                    .load_top_layers(*tuned_layers, &dir.join(tuned_file))
                    .map_err(part("fine-tuned layers"))?;
                let head = ClassifierHead::load(&dir.join(head)).map_err(part("head"))?;
                LoadedExpert {
                    weights,
                    head: ExpertHead::Fitted(head),
                    own_tokenizer: None,
                }
            }
            ExpertSource::Checkpoint { checkpoint } => {
                let folder = dir.join(checkpoint);
                let (weights, head) =
                    BertWeights::load_with_head(&folder, None).map_err(part("checkpoint"))?;
                let Some(head) = head else {
                    invalid!(
                        "expert {:?}: {} has no classification head (a pool's checkpoint \
                         expert is a classifier, as `securerouter train expert` writes it)",
                        e.name,
                        folder.display()
                    );
                };
                let tokenizer = Tokenizer::from_dir(&folder).map_err(part("tokenizer"))?;
                LoadedExpert {
                    weights,
                    head: ExpertHead::Checkpoint(head),
                    own_tokenizer: Some(tokenizer),
                }
            }
        };
        let (features, classes) = (loaded.head.features(), loaded.head.classes());
        if features != loaded.weights.config.hidden_size || classes != self.classes {
            invalid!(
                "expert {:?}'s head maps {features} features to {classes} classes; the pool \
                 needs {} to {}",
                e.name,
                loaded.weights.config.hidden_size,
                self.classes
            );
        }
        Ok(loaded)
    }
}

/// Whether `name` is a path inside the pool directory: relative, no `..`.
fn inside(name: &str) -> bool {
    !name.is_empty()
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> PoolManifest {
        PoolManifest {
            base: assets::MINILM_L6.package.into(),
            task: "sentiment".into(),
            classes: 2,
            labels: sentiment_labels(),
            metric: Metric::Accuracy,
            seq_len: 64,
            experts: vec![ExpertEntry {
                name: "small".into(),
                source: ExpertSource::Cut {
                    layers: 1,
                    tuned_layers: 1,
                    tuned_file: "small.safetensors".into(),
                    head: "small.head.json".into(),
                },
                held_out_accuracy: 0.7,
                held_out_scores: None,
                cost: None,
            }],
        }
    }

    #[test]
    fn manifests_round_trip_and_reject_bad_entries() {
        let dir = std::env::temp_dir().join(format!("pool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let m = manifest();
        m.save(&dir).unwrap();
        assert_eq!(PoolManifest::load(&dir).unwrap(), m);
        assert!(m.base_asset().is_ok());
        assert!(format!("{:#}", m.online_costs().unwrap_err()).contains("no measured cost"));
        assert!(format!("{:#}", m.index_of("big").unwrap_err()).contains("small"));
        let bad = |f: &dyn Fn(&mut PoolManifest), want: &str| {
            let mut m = manifest();
            f(&mut m);
            let e = format!("{:#}", m.validate().unwrap_err());
            assert!(e.contains(want), "{e} lacks {want}");
        };
        fn cut(m: &mut PoolManifest) -> (&mut usize, &mut usize, &mut String, &mut String) {
            match &mut m.experts[0].source {
                ExpertSource::Cut {
                    layers,
                    tuned_layers,
                    tuned_file,
                    head,
                } => (layers, tuned_layers, tuned_file, head),
                ExpertSource::Checkpoint { .. } => unreachable!("expert 0 is a cut"),
            }
        }
        bad(
            &|m| *cut(m).3 = "../../etc/passwd".into(),
            "inside the pool",
        );
        bad(&|m| *cut(m).2 = "/abs".into(), "inside the pool");
        bad(&|m| m.experts.push(m.experts[0].clone()), "repeated");
        bad(&|m| m.experts.clear(), "no experts");
        bad(&|m| *cut(m).0 = 0, "layers");
        bad(&|m| *cut(m).1 = 2, "fine-tuned layers");
        let checkpoint = |path: &str| ExpertEntry {
            name: "big".into(),
            source: ExpertSource::Checkpoint {
                checkpoint: path.into(),
            },
            held_out_accuracy: 0.9,
            held_out_scores: None,
            cost: None,
        };
        bad(
            &|m| m.experts.insert(0, checkpoint("big")),
            "cannot come first",
        );
        bad(&|m| m.experts.push(checkpoint("../big")), "inside the pool");
        // A checkpoint expert after the summary round-trips as one.
        let mut two = manifest();
        two.experts.push(checkpoint("experts/big"));
        two.save(&dir).unwrap();
        let text = std::fs::read_to_string(dir.join(MANIFEST)).unwrap();
        assert!(text.contains("\"checkpoint\": \"experts/big\""), "{text}");
        assert_eq!(PoolManifest::load(&dir).unwrap(), two);
        bad(&|m| m.seq_len = 0, "seq_len");
        bad(&|m| m.labels.truncate(1), "one per class");
        bad(&|m| m.labels[1] = "negative".into(), "distinct");
        bad(&|m| m.metric = Metric::PearsonSpearman, "correlation");
        // A manifest written before labels and metric were stored reads as the sentiment pool.
        let mut old = serde_json::to_value(manifest()).unwrap();
        let fields = old.as_object_mut().unwrap();
        fields.remove("labels");
        fields.remove("metric");
        let old: PoolManifest = serde_json::from_value(old).unwrap();
        assert_eq!(old, manifest());
        let mut legacy = manifest();
        legacy.task = "rotten-tomatoes-sentiment".into();
        assert!(legacy.trained_on(crate::data::ROTTEN_TOMATOES));
        assert!(!legacy.trained_on("MRPC") && manifest().trained_on("sentiment"));
        bad(&|m| m.experts[0].held_out_accuracy = f64::NAN, "accuracy");
        std::fs::write(dir.join(MANIFEST), b"{\"base\": 3}").unwrap();
        assert!(
            format!("{:#}", PoolManifest::load(&dir).unwrap_err()).contains("not a pool manifest")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
