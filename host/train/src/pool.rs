//! `securerouter train pool` and `securerouter train router`: building a pool of experts from a
//! pretrained checkpoint, having each expert's MPC cost measured (by the [`CostMeter`] the
//! caller supplies), and training the router on the experts' outputs.
//!
//! Data: the Rotten Tomatoes sentences, split once with [`data::SPLIT_SEED`] into 80 % train and
//! 20 % held out (the same held-out sentences `bench` uses). Experts are fine-tuned on the
//! first three quarters of the train part; the router learns from the last quarter, sentences
//! no expert has seen, so the expert outputs it learns from look like those at serving time.
//! The experts' outputs on the router and held-out sentences are stored beside the manifest
//! (`signals.safetensors`), so retraining the router takes seconds.

use super::expert::{Expert, FineTuneOptions, Inference, accuracy, embed_texts, fine_tune};
use super::router::{RouteReport, RouterData, RouterOptions, evaluate, train_router};
use crate::error::{Error, MeasureError, Result, invalid};
use safetensors::{Dtype, SafeTensors};
use securerouter_ml::assets;
use securerouter_ml::data::{self, LabelledSentence};
use securerouter_ml::pool::{CostRequest, ExpertEntry, MeasuredCost, PoolManifest};
use securerouter_ml::pool_format::{StoredRouter, pool_dir};
use securerouter_ml::router::router_features;
use securerouter_ml::{BertWeights, WordPiece};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The experts' outputs the router learns from and is judged on.
pub const SIGNALS: &str = "signals.safetensors";
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
    /// Queries averaged per expert to measure its cost (0: do not measure).
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

/// The three parts of the sentences: experts' training, router's training, held out.
struct Splits {
    experts: Vec<LabelledSentence>,
    router: Vec<LabelledSentence>,
    test: Vec<LabelledSentence>,
}

fn splits(cache: &Path, limit: Option<usize>) -> Result<Splits> {
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

/// Measures one expert's MPC cost for [`build_pool`], writing any progress to the writer it
/// is given. Training does not run MPC itself: the caller supplies the measurement (the
/// `securerouter` binary passes `bench`'s, with dealer, P0 and P1 as processes).
pub type CostMeter<'a> =
    dyn Fn(&CostRequest<'_>, &mut dyn Write) -> Result<MeasuredCost, MeasureError> + 'a;

/// Fine-tunes every expert, stores them with their outputs on the router and held-out
/// sentences, measures their MPC cost with `measure` (unless `opts.cost_queries` is 0), and
/// writes the manifest. Reuses a complete pool unless `force`.
///
/// # Errors
/// If assets are missing, an option is out of range, training or a measurement fails, or a
/// file cannot be written.
pub fn build_pool(
    opts: &PoolOptions,
    measure: &CostMeter<'_>,
    out: &mut dyn Write,
) -> Result<PoolManifest> {
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
        )
        .map_err(Error::Output)?;
        return Ok(m);
    }
    let mut layers = opts.expert_layers.clone();
    layers.sort_unstable();
    layers.dedup();
    if layers.len() < 2 {
        invalid!(
            "a pool needs at least two experts of different depth, got {:?}",
            opts.expert_layers
        );
    }
    let base_dir = assets::MINILM_L6.path(&cache)?;
    let base = BertWeights::load(&base_dir, None)?;
    if let Some(&k) = layers.iter().find(|&&k| k == 0 || k > base.layers.len()) {
        invalid!(
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
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        action: "creating",
        path: dir.clone(),
        source,
    })?;
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
        )
        .map_err(Error::Output)?;
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
        )
        .map_err(Error::Output)?;
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
        measure_costs(&mut manifest, &dir, opts, measure, out)?;
        manifest.save(&dir)?;
    }
    writeln!(out, "pool written to {}", dir.display()).map_err(Error::Output)?;
    Ok(manifest)
}

fn save_expert(dir: &Path, name: &str, expert: &Expert, acc: f64) -> Result<ExpertEntry> {
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

/// Measures every expert with `measure` and stores the figures.
fn measure_costs(
    manifest: &mut PoolManifest,
    dir: &Path,
    opts: &PoolOptions,
    measure: &CostMeter<'_>,
    out: &mut dyn Write,
) -> Result<()> {
    for i in 0..manifest.experts.len() {
        let name = manifest.experts[i].name.clone();
        writeln!(
            out,
            "expert {name}: measuring its MPC cost ({} queries at {} tokens)",
            opts.cost_queries, manifest.seq_len
        )
        .map_err(Error::Output)?;
        let cost = measure(
            &CostRequest {
                pool: dir,
                expert: &name,
                seq_len: manifest.seq_len,
                queries: opts.cost_queries,
            },
            out,
        )
        .map_err(Error::Measure)?;
        manifest.experts[i].cost = Some(cost);
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
    pub fn router_data(&self) -> Result<RouterData<'_>> {
        Ok(RouterData {
            features: router_inputs(&self.router_features, &self.router_logits)?,
            expert_logits: &self.router_logits,
            labels: &self.router_labels,
        })
    }

    /// The held-out data.
    pub fn test_data(&self) -> Result<RouterData<'_>> {
        Ok(RouterData {
            features: router_inputs(&self.test_features, &self.test_logits)?,
            expert_logits: &self.test_logits,
            labels: &self.test_labels,
        })
    }

    fn save(&self, path: &Path) -> Result<()> {
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
        let bytes = tensors
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
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .and_then(|views| safetensors::serialize(views, None))
            .map_err(|source| Error::Safetensors {
                what: format!("encoding {}", path.display()),
                source,
            })?;
        std::fs::write(path, bytes).map_err(|source| Error::Io {
            action: "writing",
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads the signals of a pool of `experts` experts, checking every shape.
    pub fn load(path: &Path, experts: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            action: "reading",
            path: path.to_path_buf(),
            source,
        })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|source| Error::Safetensors {
            what: format!("{} is not a safetensors file", path.display()),
            source,
        })?;
        let get = |name: &str| {
            st.tensor(name).map_err(|source| Error::Safetensors {
                what: format!("{}: {name} is missing (rebuild the pool)", path.display()),
                source,
            })
        };
        let matrix = |name: &str, rows: usize| -> Result<Vec<Vec<f32>>> {
            let t = get(name)?;
            let [r, c] = t.shape() else {
                invalid!("{}: {name} is not a matrix", path.display());
            };
            if t.dtype() != Dtype::F32 || (*r != rows && rows != usize::MAX) || *c == 0 {
                invalid!(
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
                invalid!("{}: {name} holds NaN or infinity", path.display());
            }
            Ok(v.chunks(*c).map(<[f32]>::to_vec).collect())
        };
        let labels = |name: &str| -> Result<Vec<usize>> {
            let t = get(name)?;
            if t.dtype() != Dtype::U8 || t.shape().len() != 1 {
                invalid!("{}: {name} is not a list of labels", path.display());
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
                .collect::<Result<_>>()?,
            router_labels,
            test_features: matrix("test.features", nt)?,
            test_logits: (0..experts)
                .map(|k| matrix(&format!("test.logits.{k}"), nt))
                .collect::<Result<_>>()?,
            test_labels,
        })
    }
}

/// The router's features per sentence from the summary encoder's pooled states and the summary
/// expert's logits (expert 0's, `logits[0]`), as the secure router computes them.
fn router_inputs(pooled: &[Vec<f32>], logits: &[Vec<Vec<f32>>]) -> Result<Vec<Vec<f32>>> {
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
) -> Result<(StoredRouter, RouteReport)> {
    let manifest = PoolManifest::load(dir)?;
    let signals = Signals::load(&dir.join(SIGNALS), manifest.experts.len())?;
    let costs = match costs {
        Some(c) if c.len() == manifest.experts.len() => c.to_vec(),
        Some(c) => invalid!(
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
        stored.save(dir)?;
    }
    Ok((stored, report))
}
