//! Router training: a 2-layer MLP with ReLU on the summary encoder's pooled features scores
//! every expert; a straight-through Gumbel-Softmax makes the choice hard in the forward pass and
//! differentiable in the backward pass. Three losses, weighted by options:
//!
//! - **task**: cross-entropy of the router-weighted mix of the experts' class probabilities;
//! - **balance**: squared coefficient of variation of the per-expert load over a batch;
//! - **cost**: expected MPC cost per input, each expert's cost its measured online time
//!   (normalised so the dearest is 1).
//!
//! The result is a [`PlainRouterHead`] (features are standardised during training and the
//! standardisation is folded into the first layer), so the secure router head runs it as is.

use super::expert::predicted;
use crate::error::{Result, invalid};
use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_ml::data::shuffle;
use securerouter_ml::router::{PlainRouterHead, RouterHeadShape};
use serde::Serialize;

const ROUTER_DOMAIN: Domain = Domain(0x524f_5554_4552_5452); // "ROUTERTR"

/// Hyper-parameters of [`train_router`].
#[derive(Clone, Debug)]
pub struct RouterOptions {
    /// Hidden units of the MLP.
    pub hidden: usize,
    /// Passes over the training set.
    pub epochs: usize,
    /// Inputs per step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// Gumbel-Softmax temperature.
    pub tau: f64,
    /// Weight of the task loss.
    pub task_weight: f64,
    /// Weight of the load-balancing loss.
    pub balance_weight: f64,
    /// Weight of the cost loss.
    pub cost_weight: f64,
    /// Seed of initial weights, batch order and Gumbel noise.
    pub seed: Seed,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            hidden: 32,
            epochs: 60,
            batch_size: 64,
            lr: 2e-3,
            tau: 1.0,
            task_weight: 1.0,
            balance_weight: 0.02,
            cost_weight: 0.3,
            seed: Seed::from_bytes(*b"SecureRouterMLP!"),
        }
    }
}

impl RouterOptions {
    /// Refuses options no training can use: empty shapes, a learning rate or temperature that
    /// is not positive, a loss weight that is negative or not finite, or no loss at all.
    ///
    /// # Errors
    /// [`crate::Error::Invalid`], naming the option and its value.
    pub fn check(&self) -> Result<()> {
        for (what, v) in [
            ("hidden units", self.hidden),
            ("epochs", self.epochs),
            ("batch size", self.batch_size),
        ] {
            if v == 0 {
                invalid!("the router's {what} must be at least 1");
            }
        }
        for (what, v) in [("learning rate", self.lr), ("temperature", self.tau)] {
            if !(v.is_finite() && v > 0.0) {
                invalid!("the router's {what} must be a positive number, not {v}");
            }
        }
        let weights = [
            ("task", self.task_weight),
            ("balance", self.balance_weight),
            ("cost", self.cost_weight),
        ];
        for (what, v) in weights {
            if !(v.is_finite() && v >= 0.0) {
                invalid!("the router's {what} weight must be a finite number ≥ 0, not {v}");
            }
        }
        if weights.iter().all(|&(_, v)| v == 0.0) {
            invalid!("the router's task, balance and cost weights are all 0: nothing to learn");
        }
        Ok(())
    }
}

/// What the router learns from: per input, the router's features (see
/// [`securerouter_ml::router::router_features`]), every expert's logits, the label.
pub struct RouterData<'a> {
    /// The router's features per input.
    pub features: Vec<Vec<f32>>,
    /// Logits per expert, per input: `expert_logits[k][i]`.
    pub expert_logits: &'a [Vec<Vec<f32>>],
    /// Label per input.
    pub labels: &'a [usize],
}

impl RouterData<'_> {
    fn check(&self, experts: usize) -> Result<usize> {
        let n = self.features.len();
        let dim = self.features.first().map_or(0, Vec::len);
        if n == 0 || dim == 0 || self.features.iter().any(|f| f.len() != dim) {
            invalid!("router data needs inputs with features of one width");
        }
        if self.expert_logits.len() != experts
            || experts < 2
            || self.expert_logits.iter().any(|l| l.len() != n)
            || self.labels.len() != n
        {
            invalid!(
                "router data needs logits of each of the {experts} experts (at least 2) and a label for each of the {n} inputs"
            );
        }
        Ok(dim)
    }

    /// Probability each expert gives the true label, [inputs × experts] row-major.
    fn label_probs(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.labels.len() * self.expert_logits.len());
        for (i, &y) in self.labels.iter().enumerate() {
            for logits in self.expert_logits {
                let l = &logits[i];
                let m = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let s: f32 = l.iter().map(|v| (v - m).exp()).sum();
                out.push(l.get(y).map_or(0.0, |v| (v - m).exp() / s));
            }
        }
        out
    }
}

/// Trains the router on `data` with expert `costs` (any positive unit, e.g. online seconds).
///
/// # Errors
/// On options [`RouterOptions::check`] refuses, inconsistent data, non-positive costs, or a
/// candle failure.
pub fn train_router(
    data: &RouterData<'_>,
    costs: &[f64],
    opts: &RouterOptions,
) -> Result<PlainRouterHead> {
    opts.check()?;
    let experts = costs.len();
    let dim = data.check(experts)?;
    if costs.iter().any(|&c| !(c.is_finite() && c > 0.0)) {
        invalid!("expert costs must be positive, got {costs:?}");
    }
    let n = data.features.len();
    let dev = Device::Cpu;
    // Standardised features (folded back into the first layer at the end).
    let mean: Vec<f32> = (0..dim)
        .map(|j| data.features.iter().map(|f| f[j]).sum::<f32>() / n as f32)
        .collect();
    let std: Vec<f32> = (0..dim)
        .map(|j| {
            let v = data
                .features
                .iter()
                .map(|f| (f[j] - mean[j]).powi(2))
                .sum::<f32>()
                / n as f32;
            v.sqrt().max(1e-3)
        })
        .collect();
    let z: Vec<f32> = data
        .features
        .iter()
        .flat_map(|f| {
            (0..dim)
                .map(|j| (f[j] - mean[j]) / std[j])
                .collect::<Vec<_>>()
        })
        .collect();
    let z = Tensor::from_vec(z, (n, dim), &dev)?;
    let probs = Tensor::from_vec(data.label_probs(), (n, experts), &dev)?;
    let top = costs.iter().cloned().fold(0.0, f64::max);
    let cost: Vec<f32> = costs.iter().map(|&c| (c / top) as f32).collect();
    let cost = Tensor::from_vec(cost, (1, experts), &dev)?;

    let rng = &mut AesCtr::new(&opts.seed, ROUTER_DOMAIN);
    let mut uniform = |len: usize, scale: f64| -> Vec<f32> {
        (0..len)
            .map(|_| {
                ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
                    * scale as f32
            })
            .collect()
    };
    let h = opts.hidden.max(1);
    let init =
        |v: Vec<f32>, shape: (usize, usize)| Var::from_tensor(&Tensor::from_vec(v, shape, &dev)?);
    let w1 = init(uniform(dim * h, (1.0 / dim as f64).sqrt()), (dim, h))?;
    let b1 = Var::zeros((1, h), DType::F32, &dev)?;
    let w2 = init(uniform(h * experts, (1.0 / h as f64).sqrt()), (h, experts))?;
    let b2 = Var::zeros((1, experts), DType::F32, &dev)?;
    let mut opt = AdamW::new(
        vec![w1.clone(), b1.clone(), w2.clone(), b2.clone()],
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: 1e-3,
            ..ParamsAdamW::default()
        },
    )?;
    let rng = &mut AesCtr::new(&opts.seed, Domain(ROUTER_DOMAIN.0 + 1));
    let mut order: Vec<u32> = (0..n as u32).collect();
    for _ in 0..opts.epochs {
        shuffle(&mut order, rng);
        for idx in order.chunks(opts.batch_size.max(2)) {
            let b = idx.len();
            let ids = Tensor::from_slice(idx, b, &dev)?;
            let x = z.index_select(&ids, 0)?;
            let scores = x
                .matmul(w1.as_tensor())?
                .broadcast_add(b1.as_tensor())?
                .relu()?
                .matmul(w2.as_tensor())?
                .broadcast_add(b2.as_tensor())?;
            let gumbel: Vec<f32> = (0..b * experts)
                .map(|_| {
                    let u = ((rng.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32;
                    -(-u.ln()).ln()
                })
                .collect();
            let noisy = ((scores + Tensor::from_vec(gumbel, (b, experts), &dev)?)? / opts.tau)?;
            let soft = candle_nn::ops::softmax(&noisy, D::Minus1)?;
            let hard = soft
                .broadcast_eq(&soft.max_keepdim(D::Minus1)?)?
                .to_dtype(DType::F32)?;
            // Straight-through: hard in the forward pass, the soft gradient backwards.
            let w = ((hard - soft.detach())? + &soft)?;
            let mix = (w * probs.index_select(&ids, 0)?)?.sum(D::Minus1)?;
            let task = (mix + 1e-6)?.log()?.mean_all()?.neg()?;
            let load = soft.sum(0)?;
            let load_mean = load.mean_all()?;
            let balance =
                (load.broadcast_sub(&load_mean)?.sqr()?.mean_all()? / load_mean.sqr()?)?;
            let expected_cost = soft.broadcast_mul(&cost)?.sum(D::Minus1)?.mean_all()?;
            let loss = (((task * opts.task_weight)? + (balance * opts.balance_weight)?)?
                + (expected_cost * opts.cost_weight)?)?;
            opt.backward_step(&loss)?;
        }
    }
    // Fold the standardisation into the first layer: w1' = w1 / std, b1' = b1 − mean·w1'.
    let w1 = w1.as_tensor().to_vec2::<f32>()?;
    let mut b1 = b1.as_tensor().flatten_all()?.to_vec1::<f32>()?;
    let mut folded = vec![0.0f64; dim * h];
    for p in 0..dim {
        for j in 0..h {
            let w = f64::from(w1[p][j]) / f64::from(std[p]);
            folded[p * h + j] = w;
            b1[j] -= (w * f64::from(mean[p])) as f32;
        }
    }
    let to64 = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    Ok(PlainRouterHead {
        shape: RouterHeadShape {
            features: dim,
            hidden: h,
            experts,
        },
        w1: folded,
        b1: to64(b1),
        w2: to64(w2.as_tensor().flatten_all()?.to_vec1::<f32>()?),
        b2: to64(b2.as_tensor().flatten_all()?.to_vec1::<f32>()?),
    })
}

/// How a router does on labelled inputs (plaintext).
#[derive(Clone, Debug, Serialize)]
pub struct RouteReport {
    /// Inputs evaluated.
    pub inputs: usize,
    /// Share of inputs routed to each expert.
    pub route_distribution: Vec<f64>,
    /// Accuracy of the routed predictions.
    pub accuracy: f64,
    /// The task's metric of the routed predictions, where the caller knows the task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<securerouter_ml::Scores>,
    /// Accuracy of each expert alone.
    pub expert_accuracy: Vec<f64>,
    /// Mean projected cost per input: the summary encoder (expert 0), plus the chosen expert
    /// unless it is expert 0 (whose work is reused). In the costs' unit.
    pub mean_cost: f64,
    /// The largest expert's cost.
    pub largest_cost: f64,
}

/// The expert the router picks for each input (argmax of its scores, first on ties).
pub fn routes(head: &PlainRouterHead, features: &[Vec<f32>]) -> Vec<usize> {
    features
        .iter()
        .map(|f| {
            let x: Vec<f64> = f.iter().map(|&v| f64::from(v)).collect();
            securerouter_ml::head::argmax(&head.scores(&x))
        })
        .collect()
}

/// Evaluates `head` on `data` with expert `costs`.
///
/// # Errors
/// On inconsistent data.
pub fn evaluate(
    head: &PlainRouterHead,
    data: &RouterData<'_>,
    costs: &[f64],
) -> Result<RouteReport> {
    let experts = costs.len();
    data.check(experts)?;
    let n = data.labels.len();
    let right = |k: usize, i: usize| predicted(&data.expert_logits[k][i]) == data.labels[i];
    let chosen = routes(head, &data.features);
    let mut dist = vec![0.0; experts];
    let (mut correct, mut cost) = (0usize, 0.0);
    for (i, &k) in chosen.iter().enumerate() {
        dist[k] += 1.0 / n as f64;
        correct += right(k, i) as usize;
        cost += costs[0] + if k == 0 { 0.0 } else { costs[k] };
    }
    Ok(RouteReport {
        inputs: n,
        route_distribution: dist,
        accuracy: correct as f64 / n as f64,
        scores: None,
        expert_accuracy: (0..experts)
            .map(|k| (0..n).filter(|&i| right(k, i)).count() as f64 / n as f64)
            .collect(),
        mean_cost: cost / n as f64,
        largest_cost: costs.iter().cloned().fold(0.0, f64::max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Features, logits per expert, labels.
    type Synthetic = (Vec<Vec<f32>>, Vec<Vec<Vec<f32>>>, Vec<usize>);

    /// Three experts on a 4-feature input. With `all_right` each is always right, so only
    /// cost and balance separate them; otherwise expert k is right only on inputs whose
    /// feature 0 lies in its third of [-1, 1], so routing by feature 0 is learnable.
    fn synthetic(n: usize, all_right: bool) -> Synthetic {
        let rng = &mut AesCtr::new(&Seed::from_bytes([4; 16]), Domain(2));
        let mut u = || (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        let features: Vec<Vec<f32>> = (0..n)
            .map(|_| (0..4).map(|_| u() * 2.0 - 1.0).collect())
            .collect();
        let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
        let logits = (0..3)
            .map(|k| {
                features
                    .iter()
                    .zip(&labels)
                    .map(|(f, &y)| {
                        let band = ((f[0] + 1.0) * 1.5).floor().min(2.0) as usize;
                        let ok = all_right || band == k;
                        let good = if ok { y } else { 1 - y };
                        let mut l = vec![0.0; 2];
                        l[good] = 3.0;
                        l
                    })
                    .collect()
            })
            .collect();
        (features, logits, labels)
    }

    #[test]
    fn the_route_follows_the_cost_vector() {
        let (f, l, y) = synthetic(600, true);
        let data = RouterData {
            features: f.clone(),
            expert_logits: &l,
            labels: &y,
        };
        let opts = RouterOptions {
            epochs: 30,
            balance_weight: 0.0,
            cost_weight: 1.0,
            ..RouterOptions::default()
        };
        let cheap_first = train_router(&data, &[1.0, 2.0, 4.0], &opts).unwrap();
        let r = evaluate(&cheap_first, &data, &[1.0, 2.0, 4.0]).unwrap();
        assert!(r.route_distribution[0] > 0.9, "{r:?}");
        let reversed = train_router(&data, &[4.0, 2.0, 1.0], &opts).unwrap();
        let r = evaluate(&reversed, &data, &[4.0, 2.0, 1.0]).unwrap();
        assert!(r.route_distribution[2] > 0.9, "{r:?}");
        assert!((r.accuracy - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_task_loss_learns_which_expert_is_right() {
        let (f, l, y) = synthetic(900, false);
        let data = RouterData {
            features: f.clone(),
            expert_logits: &l,
            labels: &y,
        };
        let opts = RouterOptions {
            epochs: 80,
            cost_weight: 0.0,
            balance_weight: 0.0,
            ..RouterOptions::default()
        };
        let head = train_router(&data, &[1.0, 1.0, 1.0], &opts).unwrap();
        let r = evaluate(&head, &data, &[1.0, 1.0, 1.0]).unwrap();
        // Each expert alone is right on about a third (plus chance on the rest): the router
        // must do far better by picking per input.
        assert!(r.expert_accuracy.iter().all(|&a| a < 0.5), "{r:?}");
        assert!(r.accuracy > 0.9, "{r:?}");
        assert!(r.route_distribution.iter().all(|&d| d > 0.2), "{r:?}");
    }

    #[test]
    fn bad_data_and_costs_are_errors() {
        let (f, l, y) = synthetic(10, true);
        let data = RouterData {
            features: f.clone(),
            expert_logits: &l,
            labels: &y,
        };
        let opts = RouterOptions::default();
        assert!(train_router(&data, &[1.0, 0.0, 1.0], &opts).is_err());
        assert!(train_router(&data, &[1.0, 1.0], &opts).is_err());
        let short = RouterData {
            features: f.clone(),
            expert_logits: &l,
            labels: &y[..5],
        };
        assert!(train_router(&short, &[1.0, 1.0, 1.0], &opts).is_err());
    }

    #[test]
    fn unusable_options_are_errors_that_name_the_option() {
        let (f, l, y) = synthetic(10, true);
        let data = RouterData {
            features: f.clone(),
            expert_logits: &l,
            labels: &y,
        };
        let d = RouterOptions::default;
        let cases = [
            (RouterOptions { hidden: 0, ..d() }, "hidden units"),
            (RouterOptions { epochs: 0, ..d() }, "epochs"),
            (
                RouterOptions {
                    batch_size: 0,
                    ..d()
                },
                "batch size",
            ),
            (RouterOptions { lr: -1e-3, ..d() }, "learning rate"),
            (RouterOptions { tau: 0.0, ..d() }, "temperature"),
            (
                RouterOptions {
                    tau: f64::NAN,
                    ..d()
                },
                "temperature",
            ),
            (
                RouterOptions {
                    task_weight: -1.0,
                    ..d()
                },
                "task weight",
            ),
            (
                RouterOptions {
                    balance_weight: f64::INFINITY,
                    ..d()
                },
                "balance weight",
            ),
            (
                RouterOptions {
                    cost_weight: f64::NAN,
                    ..d()
                },
                "cost weight",
            ),
            (
                RouterOptions {
                    task_weight: 0.0,
                    balance_weight: 0.0,
                    cost_weight: 0.0,
                    ..d()
                },
                "all 0",
            ),
        ];
        for (opts, named) in cases {
            let e = train_router(&data, &[1.0, 2.0, 3.0], &opts)
                .err()
                .unwrap_or_else(|| panic!("{opts:?} was accepted"))
                .to_string();
            assert!(e.contains(named), "{e:?} does not name {named:?}");
        }
        // Zero cost or balance weights alone are fine (the tests above train with them).
        let one_loss = RouterOptions {
            balance_weight: 0.0,
            cost_weight: 0.0,
            ..d()
        };
        assert!(one_loss.check().is_ok());
    }
}
