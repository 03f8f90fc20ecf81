//! The metrics the SecureRouter paper reports for GLUE tasks, computed as scikit-learn and
//! SciPy compute them (so numbers compare with published ones): accuracy, binary F1, Matthews
//! correlation, Pearson and Spearman correlation.
//!
//! The functions return fractions (accuracy 0.852); [`Scores`]' `Display` shows them in
//! percent, as papers print them.

use crate::data::Label;
use crate::error::{Result, invalid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Which numbers a task is scored by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// The fraction of correct classes (SST-2, QNLI, RTE, MNLI).
    Accuracy,
    /// Accuracy and F1 of class 1 (MRPC's paraphrases, QQP's duplicates: the classes are
    /// unbalanced, so accuracy alone flatters a majority-class model).
    AccuracyAndF1,
    /// Matthews correlation (CoLA: unbalanced binary, and 0 for any constant guess).
    Matthews,
    /// Pearson and Spearman correlation of scores, and their mean (STS-B).
    PearsonSpearman,
}

/// A task's scores on a set of examples: the numbers its [`Metric`] reports, as fractions
/// (correlations in [-1, 1]); the others are `None` and left out of JSON. An undefined
/// correlation (a constant side) is NaN, written as JSON `null`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// The metric these scores are of.
    pub metric: Metric,
    /// The number of examples scored.
    pub examples: usize,
    /// The fraction of correct classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// F1 of class 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    /// Matthews correlation coefficient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matthews: Option<f64>,
    /// Pearson correlation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pearson: Option<f64>,
    /// Spearman rank correlation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spearman: Option<f64>,
    /// The mean of Pearson and Spearman, STS-B's single number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<f64>,
}

impl Scores {
    /// The single number GLUE averages over tasks: accuracy; the mean of accuracy and F1
    /// (MRPC, QQP); Matthews correlation (CoLA); the mean of Pearson and Spearman (STS-B).
    pub fn headline(&self) -> f64 {
        let get = |x: Option<f64>| x.unwrap_or(f64::NAN);
        match self.metric {
            Metric::Accuracy => get(self.accuracy),
            Metric::AccuracyAndF1 => (get(self.accuracy) + get(self.f1)) / 2.0,
            Metric::Matthews => get(self.matthews),
            Metric::PearsonSpearman => get(self.correlation),
        }
    }
}

impl fmt::Display for Scores {
    /// E.g. `accuracy 85.2 %, F1 88.1 %`, `MCC 52.3`, `Pearson 88.1, Spearman 87.9, mean 88.0`
    /// (correlations times 100, as GLUE prints them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |x: Option<f64>| 100.0 * x.unwrap_or(f64::NAN);
        match self.metric {
            Metric::Accuracy => write!(f, "accuracy {:.1} %", pct(self.accuracy)),
            Metric::AccuracyAndF1 => write!(
                f,
                "accuracy {:.1} %, F1 {:.1} %",
                pct(self.accuracy),
                pct(self.f1)
            ),
            Metric::Matthews => write!(f, "MCC {:.1}", pct(self.matthews)),
            Metric::PearsonSpearman => write!(
                f,
                "Pearson {:.1}, Spearman {:.1}, mean {:.1}",
                pct(self.pearson),
                pct(self.spearman),
                pct(self.correlation)
            ),
        }
    }
}

impl Metric {
    /// The metric of a user's own labels: accuracy for classes, Pearson and Spearman for a
    /// score.
    pub fn for_labels(labels: &crate::data::LabelSet) -> Self {
        if labels.is_regression() {
            Metric::PearsonSpearman
        } else {
            Metric::Accuracy
        }
    }

    /// Scores `predictions` against `gold` (same order): classes for the classification
    /// metrics, scores for [`Metric::PearsonSpearman`].
    ///
    /// # Errors
    /// If the lengths differ, there are no examples, or a label is of the wrong kind (the
    /// message names its position, from 0).
    pub fn score(self, predictions: &[Label], gold: &[Label]) -> Result<Scores> {
        check_lengths(predictions.len(), gold.len())?;
        let mut scores = Scores {
            metric: self,
            examples: gold.len(),
            accuracy: None,
            f1: None,
            matthews: None,
            pearson: None,
            spearman: None,
            correlation: None,
        };
        if self == Metric::PearsonSpearman {
            let (p, g) = (
                scores_of(predictions, "prediction")?,
                scores_of(gold, "gold")?,
            );
            let (r, rho) = (pearson(&p, &g)?, spearman(&p, &g)?);
            scores.pearson = Some(r);
            scores.spearman = Some(rho);
            scores.correlation = Some((r + rho) / 2.0);
        } else {
            let (p, g) = (
                classes_of(predictions, "prediction")?,
                classes_of(gold, "gold")?,
            );
            match self {
                Metric::Matthews => scores.matthews = Some(matthews(&p, &g)?),
                Metric::AccuracyAndF1 => {
                    scores.accuracy = Some(accuracy(&p, &g)?);
                    scores.f1 = Some(f1_binary(&p, &g)?);
                }
                _ => scores.accuracy = Some(accuracy(&p, &g)?),
            }
        }
        Ok(scores)
    }
}

fn classes_of(labels: &[Label], what: &str) -> Result<Vec<u32>> {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| match l {
            Label::Class(c) => Ok(*c),
            Label::Score(s) => invalid!("{what} {i} is the score {s}, expected a class"),
        })
        .collect()
}

fn scores_of(labels: &[Label], what: &str) -> Result<Vec<f64>> {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| match l {
            Label::Score(s) if s.is_finite() => Ok(*s),
            Label::Score(s) => invalid!("{what} {i} is the score {s}, not a finite number"),
            Label::Class(c) => invalid!("{what} {i} is class {c}, expected a score"),
        })
        .collect()
}

fn check_lengths(predictions: usize, gold: usize) -> Result<()> {
    if predictions != gold {
        invalid!("{predictions} predictions for {gold} gold labels");
    }
    if gold == 0 {
        invalid!("no examples to score");
    }
    Ok(())
}

/// The fraction of `predictions` equal to `gold`.
///
/// # Errors
/// If the lengths differ or are zero.
pub fn accuracy(predictions: &[u32], gold: &[u32]) -> Result<f64> {
    check_lengths(predictions.len(), gold.len())?;
    let correct = predictions.iter().zip(gold).filter(|(p, g)| p == g).count();
    Ok(correct as f64 / gold.len() as f64)
}

/// F1 of class 1 (the positive class), `2 tp / (2 tp + fp + fn)`; 0 when there is no
/// positive in either (as scikit-learn's `f1_score` with its default `zero_division`).
///
/// # Errors
/// If the lengths differ or are zero.
pub fn f1_binary(predictions: &[u32], gold: &[u32]) -> Result<f64> {
    check_lengths(predictions.len(), gold.len())?;
    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
    for (&p, &g) in predictions.iter().zip(gold) {
        match (p == 1, g == 1) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    let denominator = 2 * tp + fp + fn_;
    Ok(if denominator == 0 {
        0.0
    } else {
        (2 * tp) as f64 / denominator as f64
    })
}

/// The Matthews correlation coefficient, as scikit-learn's `matthews_corrcoef` (its
/// multiclass form, which for two classes is `(tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)
/// (tn+fn))`); 0 when undefined (all predictions, or all gold labels, one class).
///
/// # Errors
/// If the lengths differ or are zero.
pub fn matthews(predictions: &[u32], gold: &[u32]) -> Result<f64> {
    check_lengths(predictions.len(), gold.len())?;
    // Per class: (gold count, predicted count).
    let mut counts: BTreeMap<u32, (f64, f64)> = BTreeMap::new();
    let mut correct = 0.0;
    for (&p, &g) in predictions.iter().zip(gold) {
        counts.entry(g).or_default().0 += 1.0;
        counts.entry(p).or_default().1 += 1.0;
        if p == g {
            correct += 1.0;
        }
    }
    let s = gold.len() as f64;
    let tp: f64 = counts.values().map(|(t, p)| t * p).sum();
    let pp: f64 = counts.values().map(|(_, p)| p * p).sum();
    let tt: f64 = counts.values().map(|(t, _)| t * t).sum();
    let cov_tp = correct * s - tp;
    let cov_pp = s * s - pp;
    let cov_tt = s * s - tt;
    if cov_pp * cov_tt == 0.0 {
        return Ok(0.0);
    }
    Ok(cov_tp / (cov_tt * cov_pp).sqrt())
}

/// The Pearson correlation of `x` and `y`, as SciPy's `pearsonr`; NaN when either is constant
/// (including a single pair).
///
/// # Errors
/// If the lengths differ or are zero, or a value is not finite.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64> {
    check_lengths(x.len(), y.len())?;
    if let Some(v) = x.iter().chain(y).find(|v| !v.is_finite()) {
        invalid!("cannot correlate the value {v}");
    }
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return Ok(f64::NAN);
    }
    Ok((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// The Spearman rank correlation of `x` and `y`, as SciPy's `spearmanr`: the Pearson
/// correlation of their [`ranks`] (tied values share their average rank); NaN when either is
/// constant.
///
/// # Errors
/// As [`pearson`].
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    check_lengths(x.len(), y.len())?;
    if let Some(v) = x.iter().chain(y).find(|v| !v.is_finite()) {
        invalid!("cannot rank the value {v}");
    }
    pearson(&ranks(x), &ranks(y))
}

/// The ranks of `values` from 1, tied values sharing the average of their ranks (SciPy's
/// `rankdata(method="average")`): `[10, 20, 20, 5]` ranks `[2, 3.5, 3.5, 1]`.
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let value = values[order[start]];
        // At least one: a NaN equals nothing, not even itself.
        let tied = order[start..]
            .iter()
            .take_while(|&&k| values[k] == value)
            .count();
        let end = start + tied.max(1);
        // Ranks start+1 ..= end share their mean.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &k in &order[start..end] {
            out[k] = rank;
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_terminate_on_nan() {
        // NaN equals nothing; each NaN gets a rank of its own (they sort last).
        let r = ranks(&[f64::NAN, 1.0, f64::NAN]);
        assert_eq!(r[1], 1.0);
        assert_eq!((r[0] + r[2]), 5.0);
    }

    #[test]
    fn headline_of_accuracy_and_f1_is_their_mean() {
        let s = Metric::AccuracyAndF1
            .score(
                &[Label::Class(1), Label::Class(1)],
                &[Label::Class(1), Label::Class(0)],
            )
            .unwrap();
        // Accuracy 1/2, F1 2/3.
        assert!((s.headline() - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(s.to_string(), "accuracy 50.0 %, F1 66.7 %");
    }
}
