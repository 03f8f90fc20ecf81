//! Pool manifests: which experts a pool holds, the files of each, and what each costs under
//! MPC as measured by `securerouter bench`.
//!
//! Every expert is a pretrained checkpoint (an asset) cut to its first k layers, with its top
//! layers fine-tuned (stored alone, as safetensors under the checkpoint's names) and a
//! classifier head on mean-pooled states. Experts are listed from cheapest to dearest; the first one's
//! encoder is the router's summary encoder. The manifest is untrusted input when loaded: file
//! names must stay inside the pool directory, and every figure and shape is checked.

use super::{BertWeights, ClassifierHead};
use crate::assets::{self, Asset};
use crate::error::{Error, Result, invalid};
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
    /// Layers kept from the base checkpoint.
    pub layers: usize,
    /// How many of the top layers were fine-tuned.
    pub tuned_layers: usize,
    /// The fine-tuned layers (safetensors), relative to the pool directory.
    pub tuned_file: String,
    /// The classifier head (JSON), relative to the pool directory.
    pub head: String,
    /// Accuracy on the pool's held-out sentences (plaintext).
    pub held_out_accuracy: f64,
    /// The measured MPC cost, once benchmarked.
    pub cost: Option<MeasuredCost>,
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
    /// Tokens per sequence under MPC (sentences are padded or cut to it).
    pub seq_len: usize,
    /// The experts, cheapest first; the first one's encoder is the summary encoder.
    pub experts: Vec<ExpertEntry>,
}

/// A loaded expert: the encoder and its head.
pub type LoadedExpert = (BertWeights, ClassifierHead);

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
        if self.seq_len == 0 || self.seq_len > 512 {
            invalid!("seq_len {} is outside 1..=512", self.seq_len);
        }
        for (i, e) in self.experts.iter().enumerate() {
            if e.name.is_empty() || self.experts[..i].iter().any(|o| o.name == e.name) {
                invalid!("expert {i} has an empty or repeated name {:?}", e.name);
            }
            if e.layers == 0 || e.layers > 256 {
                invalid!(
                    "expert {:?} keeps {} layers; 1..=256 are possible",
                    e.name,
                    e.layers
                );
            }
            if e.tuned_layers > e.layers {
                invalid!(
                    "expert {:?} has {} fine-tuned layers of {}",
                    e.name,
                    e.tuned_layers,
                    e.layers
                );
            }
            for f in [&e.tuned_file, &e.head] {
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

    /// Loads expert `i`: the base checkpoint from `cache` cut to its layers, its fine-tuned
    /// top layers and its head from `dir`.
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
        let base = self.base_asset()?.path(cache)?;
        let mut weights = BertWeights::load(&base, Some(e.layers)).map_err(part("base"))?;
        weights
            .load_top_layers(e.tuned_layers, &dir.join(&e.tuned_file))
            .map_err(part("fine-tuned layers"))?;
        let head = ClassifierHead::load(&dir.join(&e.head))?;
        if head.linear.weight.cols != weights.config.hidden_size
            || head.linear.weight.rows != self.classes
        {
            invalid!(
                "expert {:?}'s head maps {} features to {} classes; the pool needs {} to {}",
                e.name,
                head.linear.weight.cols,
                head.linear.weight.rows,
                weights.config.hidden_size,
                self.classes
            );
        }
        Ok((weights, head))
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
            seq_len: 64,
            experts: vec![ExpertEntry {
                name: "small".into(),
                layers: 1,
                tuned_layers: 1,
                tuned_file: "small.safetensors".into(),
                head: "small.head.json".into(),
                held_out_accuracy: 0.7,
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
        bad(
            &|m| m.experts[0].head = "../../etc/passwd".into(),
            "inside the pool",
        );
        bad(
            &|m| m.experts[0].tuned_file = "/abs".into(),
            "inside the pool",
        );
        bad(&|m| m.experts.push(m.experts[0].clone()), "repeated");
        bad(&|m| m.experts.clear(), "no experts");
        bad(&|m| m.experts[0].layers = 0, "layers");
        bad(&|m| m.experts[0].tuned_layers = 2, "fine-tuned layers");
        bad(&|m| m.seq_len = 0, "seq_len");
        bad(&|m| m.experts[0].held_out_accuracy = f64::NAN, "accuracy");
        std::fs::write(dir.join(MANIFEST), b"{\"base\": 3}").unwrap();
        assert!(
            format!("{:#}", PoolManifest::load(&dir).unwrap_err()).contains("not a pool manifest")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
