//! A trained pool's files as training writes them and serving reads them: where the pool
//! lives, and the trained router (`router.json`) beside the manifest ([`PoolManifest`], with
//! the experts' files). Both `securerouter train` and the services (`served_pool`, `bench
//! --pool`, `demo`) go through this module, so serving needs nothing of training to read a
//! pool.

use crate::assets;
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
            cost: None,
        };
        PoolManifest {
            base: "base".into(),
            task: "task".into(),
            classes: 2,
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
