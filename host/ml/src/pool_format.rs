//! A trained pool's files as training writes them and serving reads them: where the pool
//! lives, and the trained router (`router.json`) beside the manifest ([`PoolManifest`], with
//! the experts' files). Both `securerouter train` and the services (`served_pool`, `bench
//! --pool`, `demo`) go through this module, so serving needs nothing of training to read a
//! pool.

use crate::assets;
use crate::data::{Example, Label, ROTTEN_TOMATOES, TaskData};
use crate::error::{Error, Result, invalid};
use crate::pool::ExpertSource;
use crate::router::PlainRouterHead;
use crate::router::router_feature_count;
use crate::{ClassifierHead, PoolManifest};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The trained router's file name inside a pool directory (JSON).
pub const ROUTER: &str = "router.json";

/// The pool directory for an optional override and cache.
pub fn pool_dir(dir: Option<&Path>, cache: Option<&Path>) -> Result<PathBuf> {
    match dir {
        Some(d) => Ok(d.to_path_buf()),
        None => Ok(assets::cache_dir(cache)?.join("pool")),
    }
}

/// A trained router as stored in the pool (`router.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredRouter {
    /// The MLP.
    pub head: PlainRouterHead,
    /// Loss weights it was trained with: task, balance, cost.
    pub loss_weights: [f64; 3],
    /// The expert costs it was trained with (online seconds).
    pub costs: Vec<f64>,
}

impl StoredRouter {
    /// Reads and checks the router stored in the pool directory `dir` for a pool of `experts`.
    pub fn load(dir: &Path, experts: usize) -> Result<Self> {
        let path = dir.join(ROUTER);
        let bytes = std::fs::read(&path).map_err(|source| Error::RouterUnreadable {
            path: path.clone(),
            source,
        })?;
        let r: StoredRouter = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: format!("{} is not a stored router", path.display()),
            source,
        })?;
        r.head.validate().map_err(Error::in_file(&path))?;
        if r.head.shape.experts != experts || r.costs.len() != experts {
            invalid!(
                "{} routes over {} experts; the pool holds {experts}",
                path.display(),
                r.head.shape.experts
            );
        }
        Ok(r)
    }

    /// Writes the router into the pool directory `dir` (`router.json`).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(ROUTER);
        let json = serde_json::to_vec(self).map_err(|source| Error::Json {
            what: "encoding the router".into(),
            source,
        })?;
        std::fs::write(&path, json).map_err(Error::io("writing", &path))
    }
}

/// The held-out examples' file name inside a pool directory (JSON Lines of [`Example`]s): the
/// examples training scored the experts and the router on, which benchmarks score the pool
/// on, so a pool carries its own test set wherever it is copied.
pub const HELD_OUT: &str = "held-out.jsonl";

/// Writes the pool's held-out `examples` into `dir` ([`HELD_OUT`]).
///
/// # Errors
/// If the file cannot be written.
pub fn save_held_out(dir: &Path, examples: &[Example]) -> Result<()> {
    let path = dir.join(HELD_OUT);
    let mut text = String::new();
    for e in examples {
        let line = serde_json::to_string(e).map_err(|source| Error::Json {
            what: "encoding a held-out example".into(),
            source,
        })?;
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(&path, text).map_err(Error::io("writing", &path))
}

/// The held-out examples of the pool in `dir`, each label checked against the manifest's: its
/// [`HELD_OUT`] file, or for a sentiment pool written before pools carried one, the Rotten
/// Tomatoes sentences the asset `cache` holds out.
///
/// # Errors
/// If the file is missing (and the pool is not the sentiment pool), a line is not an example
/// (named by its number), or a label is not one of the pool's classes.
pub fn load_held_out(dir: &Path, manifest: &PoolManifest, cache: &Path) -> Result<Vec<Example>> {
    let path = dir.join(HELD_OUT);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound && manifest.trained_on(ROTTEN_TOMATOES) =>
        {
            return Ok(TaskData::rotten_tomatoes(cache)?.held_out);
        }
        Err(source) => {
            return Err(Error::io("reading the pool's held-out examples", &path)(
                source,
            ));
        }
    };
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let e: Example = serde_json::from_str(line).map_err(|source| Error::Json {
            what: format!(
                "{} line {} is not a held-out example",
                path.display(),
                i + 1
            ),
            source,
        })?;
        match e.label {
            Label::Class(c) if (c as usize) < manifest.classes => out.push(e),
            other => invalid!(
                "{} line {}: label {other:?} is not one of the pool's {} classes",
                path.display(),
                i + 1,
                manifest.classes
            ),
        }
    }
    if out.is_empty() {
        invalid!("{} holds no examples", path.display());
    }
    Ok(out)
}

/// Whether the pool in `dir` has a stored router that reads the features this version's router
/// computes ([`crate::router::router_features`]); a router trained by an older version (without the margin)
/// does not, and must be retrained.
pub fn router_is_current(dir: &Path) -> Result<bool> {
    if !dir.join(ROUTER).exists() {
        return Ok(false);
    }
    let manifest = PoolManifest::load(dir)?;
    let summary = manifest
        .experts
        .first()
        .ok_or_else(|| Error::Invalid("the pool has no experts".into()))?;
    let ExpertSource::Cut { head, .. } = &summary.source else {
        invalid!("expert 0 of the pool is not a cut of the base checkpoint");
    };
    let hidden = ClassifierHead::load(&dir.join(head))?.linear.weight.cols;
    let router = StoredRouter::load(dir, manifest.experts.len())?;
    Ok(router.head.shape.features == router_feature_count(hidden))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::ExpertEntry;
    use crate::router::RouterHeadShape;
    use crate::{Linear, Matrix};
    use securerouter_core::prg::Seed;

    #[test]
    fn held_out_examples_round_trip_and_bad_lines_are_named() {
        let dir = std::env::temp_dir().join(format!("held-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = PoolManifest {
            base: "base".into(),
            task: "MRPC".into(),
            classes: 2,
            labels: vec!["no".into(), "yes".into()],
            metric: crate::Metric::AccuracyAndF1,
            seq_len: 8,
            experts: Vec::new(),
        };
        let examples = vec![
            Example {
                text: "A man \"said\" so.".into(),
                text_pair: Some("He did.".into()),
                label: Label::Class(1),
            },
            Example {
                text: "Alone.".into(),
                text_pair: None,
                label: Label::Class(0),
            },
        ];
        save_held_out(&dir, &examples).unwrap();
        let cache = Path::new("/nonexistent");
        assert_eq!(load_held_out(&dir, &manifest, cache).unwrap(), examples);
        let bad = |text: &str, want: &str| {
            std::fs::write(dir.join(HELD_OUT), text).unwrap();
            let e = format!("{:#}", load_held_out(&dir, &manifest, cache).unwrap_err());
            assert!(e.contains(want), "{e} lacks {want}");
        };
        bad(
            "{\"text\": \"a\", \"text_pair\": null, \"label\": {\"class\": 2}}\n",
            "line 1",
        );
        bad("\n{\"text\": 3}\n", "line 2 is not a held-out example");
        bad("", "holds no examples");
        std::fs::remove_file(dir.join(HELD_OUT)).unwrap();
        let e = format!("{:#}", load_held_out(&dir, &manifest, cache).unwrap_err());
        assert!(e.contains("held-out examples"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_router_of_another_feature_layout_is_not_current() {
        let dir = std::env::temp_dir().join(format!("router-current-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!router_is_current(&dir).unwrap(), "no router at all");
        let entry = |name: &str| ExpertEntry {
            name: name.into(),
            source: ExpertSource::Cut {
                layers: 1,
                tuned_layers: 1,
                tuned_file: format!("{name}.safetensors"),
                head: format!("{name}.head.json"),
            },
            held_out_accuracy: 0.5,
            held_out_scores: None,
            cost: None,
        };
        PoolManifest {
            base: "base".into(),
            task: "task".into(),
            classes: 2,
            labels: vec!["no".into(), "yes".into()],
            metric: crate::Metric::Accuracy,
            seq_len: 8,
            experts: vec![entry("small"), entry("large")],
        }
        .save(&dir)
        .unwrap();
        // The summary expert pools 4 states.
        ClassifierHead {
            linear: Linear {
                weight: Matrix::new(2, 4, vec![0.5; 8]),
                bias: vec![0.0; 2],
            },
        }
        .save(&dir.join("small.head.json"))
        .unwrap();
        let store = |features| {
            let shape = RouterHeadShape {
                features,
                hidden: 3,
                experts: 2,
            };
            let router = StoredRouter {
                head: PlainRouterHead::random(shape, &Seed::from_bytes([4; 16])),
                loss_weights: [1.0, 0.0, 0.3],
                costs: vec![1.0, 2.0],
            };
            router.save(&dir).unwrap();
        };
        store(4);
        assert!(!router_is_current(&dir).unwrap(), "pooled states only");
        store(5);
        assert!(
            router_is_current(&dir).unwrap(),
            "pooled states and the margin"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
