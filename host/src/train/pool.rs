//! `securerouter train pool` and `securerouter train router`: building a pool of experts from a
//! pretrained checkpoint, measuring each expert's MPC cost, and training the router on the
//! experts' outputs.
//!
//! Data: the Rotten Tomatoes sentences, split once with [`data::SPLIT_SEED`] into 80 % train and
//! 20 % held out (the same held-out sentences `bench` uses). Experts are fine-tuned on the
//! first three quarters of the train part; the router learns from the last quarter, sentences
//! no expert has seen, so the expert outputs it learns from look like those at serving time.
//! The experts' outputs on the router and held-out sentences are stored beside the manifest
//! (`signals.safetensors`), so retraining the router takes seconds.

use super::expert::{Expert, FineTuneOptions, Inference, accuracy, embed_texts, fine_tune};
use super::router::{RouteReport, RouterData, RouterOptions, evaluate, train_router};
use crate::assets;
use crate::bench::{self, BenchModel, BenchOptions};
use crate::circuit::PlainRouterHead;
use crate::circuit::pool::router_features;
use crate::data::{self, LabelledSentence};
use crate::model::pool::{ExpertEntry, MeasuredCost, PoolManifest};
use crate::model::{BertWeights, WordPiece};
use anyhow::{Context, bail};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The experts' outputs the router learns from and is judged on.
pub const SIGNALS: &str = "signals.safetensors";
/// The trained router (JSON).
pub const ROUTER: &str = "router.json";
/// The task the pool is fine-tuned on.
pub const TASK: &str = "rotten-tomatoes-sentiment";

/// What `train pool` builds.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Asset cache (default: the usual cache directory).
    pub cache: Option<PathBuf>,
    /// The pool directory (default: `<cache>/pool`).
    pub dir: Option<PathBuf>,
    /// Layers of MiniLM-L6 each expert keeps, cheapest first.
    pub expert_layers: Vec<usize>,
    /// Tokens per sequence under MPC.
    pub seq_len: usize,
    /// Fine-tuning hyper-parameters.
    pub fine_tune: FineTuneOptions,
    /// Use at most this many sentences of each split (for quick runs); all when `None`.
    pub limit: Option<usize>,
    /// Queries `bench` averages per expert to measure its cost (0: do not measure).
    pub cost_queries: usize,
    /// Rebuild even if a pool is there.
    pub force: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            cache: None,
            dir: None,
            expert_layers: vec![1, 3, 6],
            seq_len: 64,
            fine_tune: FineTuneOptions::default(),
            limit: None,
            cost_queries: 2,
            force: false,
        }
    }
}

/// The pool directory for an optional override and cache.
pub fn pool_dir(dir: Option<&Path>, cache: Option<&Path>) -> anyhow::Result<PathBuf> {
    match dir {
        Some(d) => Ok(d.to_path_buf()),
        None => Ok(assets::cache_dir(cache)?.join("pool")),
    }
}

/// The three parts of the sentences: experts' training, router's training, held out.
struct Splits {
    experts: Vec<LabelledSentence>,
    router: Vec<LabelledSentence>,
    test: Vec<LabelledSentence>,
}

fn splits(cache: &Path, limit: Option<usize>) -> anyhow::Result<Splits> {
    let (train, mut test) = data::split(data::rotten_tomatoes(cache)?, 0.2, &data::SPLIT_SEED)?;
    let cut = train.len() * 3 / 4;
    let (mut experts, mut router) = (train[..cut].to_vec(), train[cut..].to_vec());
    if let Some(n) = limit {
        for part in [&mut experts, &mut router, &mut test] {
            part.truncate(n);
        }
    }
    Ok(Splits {
        experts,
        router,
        test,
    })
}

/// Layers fine-tuned in an expert of `k` layers: the top third, at least one (deeper experts
/// get more capacity to adapt; the frozen rest is computed once).
pub fn tuned_layers(k: usize) -> usize {
    k.div_ceil(3).max(1)
}

fn labels(s: &[LabelledSentence]) -> Vec<usize> {
    s.iter().map(|x| x.label as usize).collect()
}

/// Fine-tunes every expert, stores them with their outputs on the router and held-out
/// sentences, measures their MPC cost with `bench`, and writes the manifest. Reuses a
/// complete pool unless `force`.
///
/// # Errors
/// If assets are missing, an option is out of range, training fails or a file cannot be
/// written.
pub fn build_pool(opts: &PoolOptions, out: &mut dyn Write) -> anyhow::Result<PoolManifest> {
    let cache = assets::cache_dir(opts.cache.as_deref())?;
    let dir = pool_dir(opts.dir.as_deref(), Some(&cache))?;
    if !opts.force
        && let Ok(m) = PoolManifest::load(&dir)
        && dir.join(SIGNALS).exists()
    {
        writeln!(
            out,
            "pool at {} is built (--force rebuilds it)",
            dir.display()
        )?;
        return Ok(m);
    }
    let mut layers = opts.expert_layers.clone();
    layers.sort_unstable();
    layers.dedup();
    if layers.len() < 2 {
        bail!(
            "a pool needs at least two experts of different depth, got {:?}",
            opts.expert_layers
        );
    }
    let base_dir = assets::MINILM_L6.path(&cache)?;
    let base = BertWeights::load(&base_dir, None)?;
    if let Some(&k) = layers.iter().find(|&&k| k == 0 || k > base.layers.len()) {
        bail!(
            "an expert cannot keep {k} layers of MiniLM-L6's {}",
            base.layers.len()
        );
    }
    let tokenizer = WordPiece::from_vocab_file(&base_dir.join("vocab.txt"))?;
    let parts = splits(&cache, opts.limit)?;
    let embed = |s: &[LabelledSentence]| {
        let texts: Vec<&str> = s.iter().map(|x| x.text.as_str()).collect();
        embed_texts(&base, &tokenizer, &texts, opts.seq_len)
    };
    let (x_experts, x_router, x_test) = (
        embed(&parts.experts)?,
        embed(&parts.router)?,
        embed(&parts.test)?,
    );
    let (y_experts, y_router, y_test) = (
        labels(&parts.experts),
        labels(&parts.router),
        labels(&parts.test),
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut manifest = PoolManifest {
        base: assets::MINILM_L6.package.into(),
        task: TASK.into(),
        classes: 2,
        seq_len: opts.seq_len,
        experts: Vec::new(),
    };
    let mut signals = Signals::default();
    for (i, &k) in layers.iter().enumerate() {
        let name = if k == base.layers.len() {
            "minilm-l6".to_string()
        } else {
            format!("minilm-l6-first-{k}")
        };
        let tuned = tuned_layers(k);
        writeln!(
            out,
            "expert {name}: fine-tuning its top {tuned} of {k} layers and a head on {} sentences",
            x_experts.len()
        )?;
        let mut cut = base.clone();
        cut.layers.truncate(k);
        cut.config.num_hidden_layers = k;
        let expert = fine_tune(&cut, tuned, &x_experts, &y_experts, 2, &opts.fine_tune)?;
        let on_router =
            expert.infer(&x_router, 64, &format!("{name} on the router's sentences"))?;
        let on_test = expert.infer(&x_test, 64, &format!("{name} on held-out sentences"))?;
        let acc = accuracy(&on_test.logits, &y_test);
        writeln!(
            out,
            "expert {name}: held-out accuracy {:.2}% ({} sentences)",
            100.0 * acc,
            y_test.len()
        )?;
        let entry = save_expert(&dir, &name, &expert, acc)?;
        manifest.experts.push(entry);
        if i == 0 {
            signals.router_features = on_router.pooled.clone();
            signals.test_features = on_test.pooled.clone();
        }
        signals.push(on_router, on_test);
    }
    signals.router_labels = y_router;
    signals.test_labels = y_test;
    signals.save(&dir.join(SIGNALS))?;
    manifest.save(&dir)?;
    if opts.cost_queries > 0 {
        measure_costs(&mut manifest, &dir, opts, out)?;
        manifest.save(&dir)?;
    }
    writeln!(out, "pool written to {}", dir.display())?;
    Ok(manifest)
}

fn save_expert(dir: &Path, name: &str, expert: &Expert, acc: f64) -> anyhow::Result<ExpertEntry> {
    let tuned_file = format!("{name}.tuned-layers.safetensors");
    let head = format!("{name}.head.json");
    expert
        .weights
        .save_top_layers(expert.tuned_layers, &dir.join(&tuned_file))?;
    expert.head.save(&dir.join(&head))?;
    Ok(ExpertEntry {
        name: name.into(),
        layers: expert.weights.layers.len(),
        tuned_layers: expert.tuned_layers,
        tuned_file,
        head,
        held_out_accuracy: acc,
        cost: None,
    })
}

/// Runs `bench` on every expert (dealer, P0, P1 as processes) and stores the figures.
fn measure_costs(
    manifest: &mut PoolManifest,
    dir: &Path,
    opts: &PoolOptions,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    for i in 0..manifest.experts.len() {
        let name = manifest.experts[i].name.clone();
        writeln!(
            out,
            "expert {name}: measuring its MPC cost ({} queries at {} tokens)",
            opts.cost_queries, manifest.seq_len
        )?;
        let line = bench::run(
            &BenchOptions {
                model: BenchModel::PoolExpert {
                    pool: dir.to_path_buf(),
                    name: name.clone(),
                },
                seq_len: manifest.seq_len,
                queries: opts.cost_queries,
                breakdown: false,
                cache: opts.cache.clone(),
                timeout_s: 600,
                gpu: false,
                kernel_threads: 0,
            },
            false,
            out,
        )?;
        manifest.experts[i].cost = Some(MeasuredCost {
            online_s: line.online_s,
            offline_s: line.offline_s,
            online_bytes_per_server: line.online_bytes_per_server,
            key_bytes_per_server: line.key_bytes_per_server,
            rounds: line.rounds,
            queries: line.queries,
        });
    }
    Ok(())
}

/// The experts' outputs on the router's and the held-out sentences.
#[derive(Default)]
pub struct Signals {
    /// Summary features (expert 0's pooled states) of the router's sentences.
    pub router_features: Vec<Vec<f32>>,
    /// Per expert, logits on the router's sentences.
    pub router_logits: Vec<Vec<Vec<f32>>>,
    /// Labels of the router's sentences.
    pub router_labels: Vec<usize>,
    /// Summary features of the held-out sentences.
    pub test_features: Vec<Vec<f32>>,
    /// Per expert, logits on the held-out sentences.
    pub test_logits: Vec<Vec<Vec<f32>>>,
    /// Labels of the held-out sentences.
    pub test_labels: Vec<usize>,
}

impl Signals {
    fn push(&mut self, router: Inference, test: Inference) {
        self.router_logits.push(router.logits);
        self.test_logits.push(test.logits);
    }

    /// The router's training data.
    pub fn router_data(&self) -> anyhow::Result<RouterData<'_>> {
        Ok(RouterData {
            features: router_inputs(&self.router_features, &self.router_logits)?,
            expert_logits: &self.router_logits,
            labels: &self.router_labels,
        })
    }

    /// The held-out data.
    pub fn test_data(&self) -> anyhow::Result<RouterData<'_>> {
        Ok(RouterData {
            features: router_inputs(&self.test_features, &self.test_logits)?,
            expert_logits: &self.test_logits,
            labels: &self.test_labels,
        })
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut matrix = |name: String, rows: &[Vec<f32>]| {
            let cols = rows.first().map_or(0, Vec::len);
            let bytes = rows
                .iter()
                .flatten()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            tensors.push((name, vec![rows.len(), cols], bytes));
        };
        matrix("router.features".into(), &self.router_features);
        matrix("test.features".into(), &self.test_features);
        for (k, (r, t)) in self.router_logits.iter().zip(&self.test_logits).enumerate() {
            matrix(format!("router.logits.{k}"), r);
            matrix(format!("test.logits.{k}"), t);
        }
        for (name, l) in [
            ("router.labels", &self.router_labels),
            ("test.labels", &self.test_labels),
        ] {
            tensors.push((
                name.into(),
                vec![l.len()],
                l.iter().map(|&v| v as u8).collect(),
            ));
        }
        let views = tensors
            .iter()
            .map(|(n, shape, b)| {
                let dtype = if n.ends_with("labels") {
                    Dtype::U8
                } else {
                    Dtype::F32
                };
                Ok((
                    n.clone(),
                    safetensors::tensor::TensorView::new(dtype, shape.clone(), b)?,
                ))
            })
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
        std::fs::write(path, safetensors::serialize(views, None)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Reads the signals of a pool of `experts` experts, checking every shape.
    pub fn load(path: &Path, experts: usize) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{} is not a safetensors file", path.display()))?;
        let get = |name: &str| {
            st.tensor(name).with_context(|| {
                format!("{}: {name} is missing (rebuild the pool)", path.display())
            })
        };
        let matrix = |name: &str, rows: usize| -> anyhow::Result<Vec<Vec<f32>>> {
            let t = get(name)?;
            let [r, c] = t.shape() else {
                bail!("{}: {name} is not a matrix", path.display());
            };
            if t.dtype() != Dtype::F32 || (*r != rows && rows != usize::MAX) || *c == 0 {
                bail!(
                    "{}: {name} has the wrong type or shape {:?}",
                    path.display(),
                    t.shape()
                );
            }
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if v.iter().any(|x| !x.is_finite()) {
                bail!("{}: {name} holds NaN or infinity", path.display());
            }
            Ok(v.chunks(*c).map(<[f32]>::to_vec).collect())
        };
        let labels = |name: &str| -> anyhow::Result<Vec<usize>> {
            let t = get(name)?;
            if t.dtype() != Dtype::U8 || t.shape().len() != 1 {
                bail!("{}: {name} is not a list of labels", path.display());
            }
            Ok(t.data().iter().map(|&b| b as usize).collect())
        };
        let router_labels = labels("router.labels")?;
        let test_labels = labels("test.labels")?;
        let (nr, nt) = (router_labels.len(), test_labels.len());
        Ok(Signals {
            router_features: matrix("router.features", nr)?,
            router_logits: (0..experts)
                .map(|k| matrix(&format!("router.logits.{k}"), nr))
                .collect::<anyhow::Result<_>>()?,
            router_labels,
            test_features: matrix("test.features", nt)?,
            test_logits: (0..experts)
                .map(|k| matrix(&format!("test.logits.{k}"), nt))
                .collect::<anyhow::Result<_>>()?,
            test_labels,
        })
    }
}

/// The router's features per sentence from the summary encoder's pooled states and the summary
/// expert's logits (expert 0's, `logits[0]`), as the secure router computes them.
fn router_inputs(pooled: &[Vec<f32>], logits: &[Vec<Vec<f32>>]) -> anyhow::Result<Vec<Vec<f32>>> {
    let to_f64 = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
    let summary = logits.first().map_or(&[][..], Vec::as_slice);
    pooled
        .iter()
        .zip(summary)
        .map(|(p, l)| {
            let features = router_features(&to_f64(p), &to_f64(l))?;
            Ok(features.into_iter().map(|x| x as f32).collect())
        })
        .collect()
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
    pub fn load(dir: &Path, experts: usize) -> anyhow::Result<Self> {
        let path = dir.join(ROUTER);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "reading {} (train it with `securerouter train router`)",
                path.display()
            )
        })?;
        let r: StoredRouter = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a stored router", path.display()))?;
        r.head
            .validate()
            .with_context(|| format!("in {}", path.display()))?;
        if r.head.shape.experts != experts || r.costs.len() != experts {
            bail!(
                "{} routes over {} experts; the pool holds {experts}",
                path.display(),
                r.head.shape.experts
            );
        }
        Ok(r)
    }
}

/// Whether the pool in `dir` has a stored router that reads the features this version's router
/// computes ([`router_features`]); a router trained by an older version (without the margin)
/// does not, and must be retrained.
pub fn router_is_current(dir: &Path) -> anyhow::Result<bool> {
    if !dir.join(ROUTER).exists() {
        return Ok(false);
    }
    let manifest = PoolManifest::load(dir)?;
    let summary = manifest
        .experts
        .first()
        .context("the pool has no experts")?;
    let hidden = crate::model::ClassifierHead::load(&dir.join(&summary.head))?
        .linear
        .weight
        .cols;
    let router = StoredRouter::load(dir, manifest.experts.len())?;
    Ok(router.head.shape.features == crate::circuit::pool::router_feature_count(hidden))
}

/// Trains the router of the pool in `dir` on its signals with `opts`, costs from the manifest
/// (or `costs` when given), stores it unless `store` is false, and reports how it routes the
/// held-out sentences.
///
/// # Errors
/// If the pool is not built, has no measured costs, or training fails.
pub fn train_pool_router(
    dir: &Path,
    opts: &RouterOptions,
    costs: Option<&[f64]>,
    store: bool,
) -> anyhow::Result<(StoredRouter, RouteReport)> {
    let manifest = PoolManifest::load(dir)?;
    let signals = Signals::load(&dir.join(SIGNALS), manifest.experts.len())?;
    let costs = match costs {
        Some(c) if c.len() == manifest.experts.len() => c.to_vec(),
        Some(c) => bail!(
            "{} costs given for a pool of {} experts",
            c.len(),
            manifest.experts.len()
        ),
        None => manifest.online_costs()?,
    };
    let head = train_router(&signals.router_data()?, &costs, opts)?;
    let report = evaluate(&head, &signals.test_data()?, &costs)?;
    let stored = StoredRouter {
        head,
        loss_weights: [opts.task_weight, opts.balance_weight, opts.cost_weight],
        costs,
    };
    if store {
        let path = dir.join(ROUTER);
        std::fs::write(&path, serde_json::to_vec(&stored)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok((stored, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::RouterHeadShape;
    use crate::model::pool::ExpertEntry;
    use crate::model::{ClassifierHead, Linear, Matrix};
    use securerouter_core::prg::Seed;

    #[test]
    fn a_router_of_another_feature_layout_is_not_current() {
        let dir = std::env::temp_dir().join(format!("router-current-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!router_is_current(&dir).unwrap(), "no router at all");
        let entry = |name: &str| ExpertEntry {
            name: name.into(),
            layers: 1,
            tuned_layers: 1,
            tuned_file: format!("{name}.safetensors"),
            head: format!("{name}.head.json"),
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
            std::fs::write(dir.join(ROUTER), serde_json::to_vec(&router).unwrap()).unwrap();
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
