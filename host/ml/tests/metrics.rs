//! The metrics, checked against values computed by hand (and the scikit-learn / SciPy values
//! they equal, quoted in the comments).

use securerouter_ml::data::{Label, Task};
use securerouter_ml::metrics::{
    Metric, Scores, accuracy, f1_binary, matthews, pearson, ranks, spearman,
};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn accuracy_and_f1() {
    let gold = [1, 0, 1, 1, 0, 0];
    let pred = [1, 1, 0, 1, 0, 0];
    // 4 of 6 right.
    assert!(close(accuracy(&pred, &gold).unwrap(), 4.0 / 6.0));
    // tp 2, fp 1, fn 1: F1 = 2*2 / (2*2 + 1 + 1) = 0.6667 (sklearn f1_score: 0.6666666666666666).
    assert!(close(f1_binary(&pred, &gold).unwrap(), 4.0 / 6.0));
    // No positive anywhere: sklearn returns 0.0 (zero_division).
    assert_eq!(f1_binary(&[0, 0], &[0, 0]).unwrap(), 0.0);
    // Predicting no positive: tp 0, fn 2 -> 0.
    assert_eq!(f1_binary(&[0, 0, 0], &[1, 1, 0]).unwrap(), 0.0);
    assert!(accuracy(&[1], &[1, 0]).is_err());
    assert!(accuracy(&[], &[]).is_err());
}

#[test]
fn matthews_correlation() {
    // tp 2, tn 2, fp 1, fn 1: (2*2 - 1*1) / sqrt(3*3*3*3) = 1/3.
    assert!(close(
        matthews(&[1, 1, 0, 1, 0, 0], &[1, 0, 1, 1, 0, 0]).unwrap(),
        1.0 / 3.0
    ));
    // tp 2, fn 1, fp 1, tn 4: (8 - 1) / sqrt(3*3*5*5) = 7/15.
    assert!(close(
        matthews(&[1, 1, 0, 1, 0, 0, 0, 0], &[1, 1, 1, 0, 0, 0, 0, 0]).unwrap(),
        7.0 / 15.0
    ));
    // sklearn's docstring example: y_true [+1, +1, +1, -1], y_pred [+1, -1, +1, +1] -> -0.33.
    assert!(close(
        matthews(&[1, 0, 1, 1], &[1, 1, 1, 0]).unwrap(),
        -1.0 / 3.0
    ));
    assert!(close(matthews(&[0, 1, 1], &[0, 1, 1]).unwrap(), 1.0));
    assert!(close(matthews(&[1, 0, 0], &[0, 1, 1]).unwrap(), -1.0));
    // Undefined (a constant prediction, or constant gold): 0, as sklearn.
    assert_eq!(matthews(&[0, 0, 0, 0], &[1, 0, 1, 0]).unwrap(), 0.0);
    assert_eq!(matthews(&[1, 0, 1, 0], &[1, 1, 1, 1]).unwrap(), 0.0);
    // Three classes, sklearn's general form: c 4, s 6, t (2,2,2), p (2,2,2):
    // (4*6 - 12) / sqrt((36 - 12) * (36 - 12)) = 0.5.
    assert!(close(
        matthews(&[0, 1, 1, 0, 2, 2], &[0, 1, 2, 0, 1, 2]).unwrap(),
        0.5
    ));
}

#[test]
fn pearson_and_spearman_with_ties() {
    let x = [1.0, 2.0, 3.0, 4.0, 5.0];
    let y = [2.0, 4.0, 5.0, 4.0, 5.0];
    // Deviations (-2,-1,0,1,2) and (-2,0,1,0,1): 6 / sqrt(10 * 6) (scipy pearsonr:
    // 0.7745966692414834).
    assert!(close(pearson(&x, &y).unwrap(), 6.0 / 60f64.sqrt()));
    assert!(close(pearson(&x, &y).unwrap(), 0.7745966692414834));
    // y's ranks with ties averaged: (1, 2.5, 4.5, 2.5, 4.5); deviations (-2,-0.5,1.5,-0.5,1.5):
    // 7 / sqrt(10 * 9) (scipy spearmanr: 0.7378647873726218).
    assert_eq!(ranks(&y), [1.0, 2.5, 4.5, 2.5, 4.5]);
    assert!(close(spearman(&x, &y).unwrap(), 7.0 / 90f64.sqrt()));
    assert!(close(spearman(&x, &y).unwrap(), 0.7378647873726218));
    // Monotone but not linear: Spearman 1, Pearson below.
    let cubes = [1.0, 8.0, 27.0, 64.0, 125.0];
    assert!(close(spearman(&x, &cubes).unwrap(), 1.0));
    assert!(pearson(&x, &cubes).unwrap() < 1.0);
    assert!(close(
        pearson(&x, &[5.0, 4.0, 3.0, 2.0, 1.0]).unwrap(),
        -1.0
    ));
    // A constant side: undefined, NaN as scipy.
    assert!(pearson(&x, &[3.0; 5]).unwrap().is_nan());
    assert!(spearman(&[3.0; 5], &x).unwrap().is_nan());
    assert!(pearson(&[1.0], &[2.0]).unwrap().is_nan());
    assert!(pearson(&[1.0, f64::NAN], &[1.0, 2.0]).is_err());
    assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), [2.0, 3.5, 3.5, 1.0]);
    assert_eq!(ranks(&[7.0, 7.0, 7.0]), [2.0, 2.0, 2.0]);
    assert!(ranks(&[]).is_empty());
}

fn c(k: &[u32]) -> Vec<Label> {
    k.iter().map(|&k| Label::Class(k)).collect()
}

fn s(x: &[f64]) -> Vec<Label> {
    x.iter().map(|&x| Label::Score(x)).collect()
}

#[test]
fn tasks_report_the_papers_metrics() {
    let gold = c(&[1, 0, 1, 1, 0, 0]);
    let pred = c(&[1, 1, 0, 1, 0, 0]);

    let mrpc = Task::Mrpc.score(&pred, &gold).unwrap();
    assert_eq!(mrpc.metric, Metric::AccuracyAndF1);
    assert_eq!((mrpc.examples, mrpc.matthews), (6, None));
    assert!(close(mrpc.accuracy.unwrap(), 4.0 / 6.0) && close(mrpc.f1.unwrap(), 4.0 / 6.0));
    assert_eq!(mrpc.to_string(), "accuracy 66.7 %, F1 66.7 %");
    assert!(close(mrpc.headline(), 4.0 / 6.0));

    let cola = Task::Cola.score(&pred, &gold).unwrap();
    assert_eq!((cola.accuracy, cola.f1), (None, None));
    assert!(close(cola.matthews.unwrap(), 1.0 / 3.0));
    assert_eq!(cola.to_string(), "MCC 33.3");

    let rte = Task::Rte.score(&pred, &gold).unwrap();
    assert_eq!(rte.to_string(), "accuracy 66.7 %");
    assert_eq!(
        serde_json::to_string(&rte).unwrap(),
        format!(
            "{{\"metric\":\"accuracy\",\"examples\":6,\"accuracy\":{}}}",
            4.0 / 6.0
        )
    );

    let stsb = Task::Stsb
        .score(
            &s(&[1.0, 2.0, 3.0, 4.0, 5.0]),
            &s(&[2.0, 4.0, 5.0, 4.0, 5.0]),
        )
        .unwrap();
    let (r, rho) = (0.7745966692414834, 0.7378647873726218);
    assert!(close(stsb.pearson.unwrap(), r) && close(stsb.spearman.unwrap(), rho));
    assert!(close(stsb.correlation.unwrap(), (r + rho) / 2.0));
    assert!(close(stsb.headline(), (r + rho) / 2.0));
    assert_eq!(stsb.to_string(), "Pearson 77.5, Spearman 73.8, mean 75.6");
    let json = serde_json::to_string(&stsb).unwrap();
    let back: Scores = serde_json::from_str(&json).unwrap();
    assert_eq!(back, stsb);

    let mrpc_json: Scores = serde_json::from_str(&serde_json::to_string(&mrpc).unwrap()).unwrap();
    assert_eq!(mrpc_json, mrpc);
}

#[test]
fn scoring_refuses_mismatched_inputs() {
    let e = Task::Sst2.score(&c(&[1, 0]), &c(&[1])).unwrap_err();
    assert_eq!(e.to_string(), "2 predictions for 1 gold labels");
    let e = Task::Sst2.score(&[], &[]).unwrap_err();
    assert_eq!(e.to_string(), "no examples to score");
    let e = Task::Sst2
        .score(&[Label::Class(1), Label::Score(0.5)], &c(&[1, 0]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "prediction 1 is the score 0.5, expected a class"
    );
    let e = Task::Stsb.score(&s(&[1.0, 2.0]), &c(&[1, 0])).unwrap_err();
    assert_eq!(e.to_string(), "gold 0 is class 1, expected a score");
}
