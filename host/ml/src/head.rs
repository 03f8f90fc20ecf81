//! A linear classification head on pooled sentence features, fitted by softmax regression.
//!
//! Pretrained sentence encoders (MiniLM) ship without a task head; this fits one on pooled
//! features of labelled sentences, so secure and plaintext predictions can be compared on a
//! real task. Stored as JSON (a few thousand numbers). [`ExpertHead`] names either this head
//! or a checkpoint's own.

use super::matrix::Matrix;
use super::weights::BertWeights;
use super::weights::Linear;
use crate::error::{Error, Result, invalid};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// logits = W·x + b with W of shape classes × features.
#[derive(Clone, Debug)]
pub struct ClassifierHead {
    /// The layer (Hugging Face layout: out × in).
    pub linear: Linear,
}

#[derive(Serialize, Deserialize)]
struct StoredHead {
    classes: usize,
    features: usize,
    weight: Vec<f64>,
    bias: Vec<f64>,
}

impl ClassifierHead {
    /// Logits for one feature vector.
    pub fn logits(&self, x: &[f64]) -> Vec<f64> {
        self.linear.apply(&Matrix::new(1, x.len(), x.to_vec())).data
    }

    /// The predicted class of one feature vector (the first on ties).
    pub fn predict(&self, x: &[f64]) -> usize {
        argmax(&self.logits(x))
    }

    /// Fits softmax regression with L2 penalty `l2` by full-batch gradient descent with
    /// momentum, on features standardised internally (folded back into W and b).
    pub fn fit(
        features: &[Vec<f64>],
        labels: &[usize],
        classes: usize,
        epochs: usize,
        l2: f64,
    ) -> Result<Self> {
        let n = features.len();
        if n == 0 || n != labels.len() || classes < 2 {
            invalid!("need labelled examples of at least two classes to fit a head");
        }
        let dim = features[0].len();
        if features.iter().any(|f| f.len() != dim) || labels.iter().any(|&l| l >= classes) {
            invalid!("features of unequal length or labels outside 0..{classes}");
        }
        let mean: Vec<f64> = (0..dim)
            .map(|j| features.iter().map(|f| f[j]).sum::<f64>() / n as f64)
            .collect();
        let std: Vec<f64> = (0..dim)
            .map(|j| {
                let v = features
                    .iter()
                    .map(|f| (f[j] - mean[j]).powi(2))
                    .sum::<f64>()
                    / n as f64;
                v.sqrt().max(1e-6)
            })
            .collect();
        let z: Vec<Vec<f64>> = features
            .iter()
            .map(|f| (0..dim).map(|j| (f[j] - mean[j]) / std[j]).collect())
            .collect();
        let (mut w, mut b) = (vec![0.0; classes * dim], vec![0.0; classes]);
        let (mut vw, mut vb) = (vec![0.0; classes * dim], vec![0.0; classes]);
        let (lr, momentum) = (0.5, 0.9);
        for _ in 0..epochs {
            let (mut gw, mut gb) = (vec![0.0; classes * dim], vec![0.0; classes]);
            for (x, &y) in z.iter().zip(labels) {
                let logits: Vec<f64> = (0..classes)
                    .map(|c| b[c] + (0..dim).map(|j| w[c * dim + j] * x[j]).sum::<f64>())
                    .collect();
                let p = softmax(&logits);
                for c in 0..classes {
                    let g = p[c] - (c == y) as u8 as f64;
                    gb[c] += g;
                    for j in 0..dim {
                        gw[c * dim + j] += g * x[j];
                    }
                }
            }
            for i in 0..w.len() {
                let g = gw[i] / n as f64 + l2 * w[i];
                vw[i] = momentum * vw[i] - lr * g;
                w[i] += vw[i];
            }
            for c in 0..classes {
                vb[c] = momentum * vb[c] - lr * gb[c] / n as f64;
                b[c] += vb[c];
            }
        }
        // Undo the standardisation: W' = W / std, b' = b − W'·mean.
        let mut weight = vec![0.0; classes * dim];
        let mut bias = b;
        for c in 0..classes {
            for j in 0..dim {
                weight[c * dim + j] = w[c * dim + j] / std[j];
                bias[c] -= weight[c * dim + j] * mean[j];
            }
        }
        Ok(ClassifierHead {
            linear: Linear {
                weight: Matrix::new(classes, dim, weight),
                bias,
            },
        })
    }

    /// Writes the head as JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let s = StoredHead {
            classes: self.linear.weight.rows,
            features: self.linear.weight.cols,
            weight: self.linear.weight.data.clone(),
            bias: self.linear.bias.clone(),
        };
        let json = serde_json::to_vec(&s).map_err(|source| Error::Json {
            what: format!("encoding {}", path.display()),
            source,
        })?;
        std::fs::write(path, json).map_err(Error::io("writing", path))
    }

    /// Reads a head written by [`ClassifierHead::save`], checking its shape and values.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(Error::io("reading", path))?;
        let s: StoredHead = serde_json::from_slice(&text).map_err(|source| Error::Json {
            what: format!("{} is not a classifier head", path.display()),
            source,
        })?;
        if s.classes == 0
            || s.features == 0
            || s.classes.checked_mul(s.features) != Some(s.weight.len())
            || s.bias.len() != s.classes
        {
            invalid!(
                "{}: the head's arrays do not match its shape",
                path.display()
            );
        }
        if s.weight.iter().chain(&s.bias).any(|v| !v.is_finite()) {
            invalid!("{}: the head holds NaN or infinity", path.display());
        }
        Ok(ClassifierHead {
            linear: Linear {
                weight: Matrix::new(s.classes, s.features, s.weight),
                bias: s.bias,
            },
        })
    }
}

fn softmax(x: &[f64]) -> Vec<f64> {
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// The head a classifier ends in: a linear head fitted on mean-pooled states, or its
/// checkpoint's own (first token, pooler and tanh, classifier).
#[derive(Clone, Debug)]
pub enum ExpertHead {
    /// A linear head on the mean of the real tokens' last hidden states.
    Fitted(ClassifierHead),
    /// A `...ForSequenceClassification` checkpoint's own head.
    Checkpoint(crate::SequenceClassificationHead),
}

impl ExpertHead {
    /// Outputs of the head.
    pub fn classes(&self) -> usize {
        match self {
            ExpertHead::Fitted(h) => h.linear.weight.rows,
            ExpertHead::Checkpoint(h) => h.classifier.weight.rows,
        }
    }

    /// Features the head reads: the encoder's hidden size.
    pub fn features(&self) -> usize {
        match self {
            ExpertHead::Fitted(h) => h.linear.weight.cols,
            ExpertHead::Checkpoint(h) => h.pooler.weight.cols,
        }
    }

    /// The logits of a sequence's last hidden states (real tokens only).
    pub fn logits_of_hidden(&self, hidden: &Matrix) -> Result<Vec<f64>> {
        match self {
            ExpertHead::Fitted(h) => Ok(h.logits(&super::mean_pool(hidden))),
            ExpertHead::Checkpoint(h) => h.logits(hidden),
        }
    }

    /// The f64 reference logits of `model` ending in this head on one sequence.
    pub fn reference(
        &self,
        model: &BertWeights,
        ids: &[u32],
        type_ids: &[u32],
    ) -> Result<Vec<f64>> {
        self.logits_of_hidden(&model.forward(ids, type_ids)?)
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(x: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// How far the largest value lies above the second (0 for fewer than two): how close an argmax
/// was, so that a secure run's fixed-point rounding is judged against the call it had to make.
pub fn top_two_margin(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted
        .first()
        .zip(sorted.get(1))
        .map_or(0.0, |(a, b)| a - b)
}

/// The plaintext classifier the secure circuit computes: the head on the mean-pooled hidden
/// states of the f64 reference encoder (real tokens only).
pub fn reference_logits(
    model: &super::BertWeights,
    head: &ClassifierHead,
    ids: &[u32],
    type_ids: &[u32],
) -> Result<Vec<f64>> {
    let hidden = model.forward(ids, type_ids)?;
    Ok(head.logits(&super::mean_pool(&hidden)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_two_margin_is_the_gap_below_the_largest() {
        assert_eq!(top_two_margin(&[0.5, 2.0, -1.0, 1.25]), 0.75);
        assert_eq!(top_two_margin(&[3.0, 3.0]), 0.0);
        assert_eq!(top_two_margin(&[1.0]), 0.0);
        assert_eq!(top_two_margin(&[]), 0.0);
    }

    #[test]
    fn fits_a_separable_problem_and_round_trips() {
        let xs: Vec<Vec<f64>> = (0..40)
            .map(|i| vec![i as f64 * 0.1 - 2.0, (i % 3) as f64])
            .collect();
        let ys: Vec<usize> = xs.iter().map(|x| (x[0] > 0.0) as usize).collect();
        let head = ClassifierHead::fit(&xs, &ys, 2, 300, 1e-4).unwrap();
        let right = xs
            .iter()
            .zip(&ys)
            .filter(|(x, y)| head.predict(x) == **y)
            .count();
        assert!(right >= 38, "{right}/40");
        let dir = std::env::temp_dir().join(format!("head-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("h.json");
        head.save(&p).unwrap();
        let back = ClassifierHead::load(&p).unwrap();
        assert_eq!(back.linear.weight, head.linear.weight);
        std::fs::write(
            &p,
            b"{\"classes\":2,\"features\":2,\"weight\":[1],\"bias\":[0,0]}",
        )
        .unwrap();
        assert!(format!("{:#}", ClassifierHead::load(&p).unwrap_err()).contains("shape"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
