//! A pool on the user's own task, end to end through the binary: MNLI in GLUE's layout (the
//! repository's fixture: sentence pairs, three classes) builds a pool of two MiniLM-L6 cuts and
//! the tiny MPNet fixture fine-tuned on the same data by `train expert` (its own vocabulary,
//! pairs laid out as MPNet lays them), costs measured under MPC; the router is trained, and
//! `bench pool` runs the pool's own held-out pairs routed and always-largest under MPC against
//! the plaintext pool, scored by the task's metric. Refusals: a regression task, a checkpoint of
//! other labels, a pool of another task without `--force`.

use securerouter_tests::{
    assert_pool_bench_follows_the_plain_pool, assets_present, last_json, ml_fixture, securerouter,
    securerouter_ok as run, temp_dir, train_quick_pool,
};

fn refused(args: &[&str], want: &str) {
    let out = securerouter(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr.contains(want), "{args:?}: {stderr} lacks {want:?}");
}

#[test]
fn a_pool_on_a_pair_task_of_three_classes_serves_under_mpc() {
    if !assets_present() {
        return;
    }
    let work = temp_dir("pool-task");
    let (mnli, tiny) = (ml_fixture("glue/MNLI"), ml_fixture("mpnet/tiny"));
    let (mnli_s, tiny_s) = (mnli.to_str().unwrap(), tiny.to_str().unwrap());
    let expert = work.join("tiny-mpnet-mnli");
    let pool = work.join("pool");
    let (expert_s, pool_s) = (expert.to_str().unwrap(), pool.to_str().unwrap());

    // The tiny MPNet fine-tuned on MNLI's pairs: the task's three labels, in its order.
    run(&[
        "train",
        "expert",
        "--model-dir",
        tiny_s,
        "--out",
        expert_s,
        "--task",
        "mnli",
        "--data",
        mnli_s,
        "--epochs",
        "1",
        "--seq",
        "32",
    ]);
    // The fixture as it ships gives other labels: refused, naming them.
    refused(
        &[
            "train",
            "pool",
            "--pool-dir",
            pool_s,
            "--task",
            "mnli",
            "--data",
            mnli_s,
            "--experts",
            "1",
            "--expert",
            tiny_s,
        ],
        "gives the labels",
    );
    // A regression task cannot be routed.
    refused(
        &[
            "train",
            "pool",
            "--pool-dir",
            pool_s,
            "--task",
            "stsb",
            "--data",
            ml_fixture("glue/STS-B").to_str().unwrap(),
        ],
        "a pool routes classifiers",
    );

    let manifest = last_json(&run(&[
        "train",
        "pool",
        "--pool-dir",
        pool_s,
        "--task",
        "mnli",
        "--data",
        mnli_s,
        "--experts",
        "1,2",
        "--expert",
        expert_s,
        "--epochs",
        "1",
        "--seq",
        "32",
        "--cost-queries",
        "1",
    ]));
    assert_eq!(manifest["task"], "MNLI", "{manifest}");
    assert_eq!(manifest["classes"], 3, "{manifest}");
    assert_eq!(
        manifest["labels"],
        serde_json::json!(["contradiction", "entailment", "neutral"]),
        "{manifest}"
    );
    let experts = manifest["experts"].as_array().expect("experts");
    assert_eq!(experts.len(), 3);
    for e in experts {
        assert!(e["cost"]["online_s"].as_f64().unwrap() > 0.0, "{e}");
        assert_eq!(e["held_out_scores"]["metric"], "accuracy", "{e}");
        assert_eq!(e["held_out_scores"]["examples"], 5, "{e}");
    }
    // The pool carries its held-out pairs.
    let held_out = std::fs::read_to_string(pool.join("held-out.jsonl")).unwrap();
    assert_eq!(held_out.lines().count(), 5);
    assert!(held_out.contains("\"text_pair\":\""), "{held_out}");

    // Built on MNLI: another task needs --force.
    refused(
        &[
            "train",
            "pool",
            "--pool-dir",
            pool_s,
            "--task",
            "mrpc",
            "--data",
            ml_fixture("glue/MRPC").to_str().unwrap(),
        ],
        "was trained on MNLI",
    );

    let report = last_json(&run(&[
        "train",
        "router",
        "--pool-dir",
        pool_s,
        "--epochs",
        "5",
    ]));
    assert_eq!(report["scores"]["metric"], "accuracy", "{report}");

    // One expert of the pool alone on the pool's held-out pairs, scored by the task's metric.
    let v = last_json(&run(&[
        "bench",
        "expert",
        "tiny-mpnet-mnli",
        "--pool-dir",
        pool_s,
        "--seq",
        "32",
        "--queries",
        "3",
        "--json",
    ]));
    assert!(v["max_abs_logit_err"].as_f64().unwrap() < 0.05, "{v}");
    assert_eq!(v["task"], "MNLI", "{v}");

    for mode in ["reveal-route", "hide-route"] {
        let v = last_json(&run(&[
            "bench",
            "pool",
            "--pool-dir",
            pool_s,
            "--route",
            mode,
            "--queries",
            "5",
            "--json",
        ]));
        assert_eq!(v["task"], "MNLI", "{v}");
        assert_eq!(v["queries"], 5, "{v}");
        assert_eq!(v["scores"]["metric"], "accuracy", "{v}");
        assert_eq!(v["scores"]["accuracy"], v["accuracy"], "{v}");
        assert_pool_bench_follows_the_plain_pool(&v);
        println!("{mode}: {v}");
    }
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn a_pool_on_a_paraphrase_task_is_scored_by_accuracy_and_f1() {
    if !assets_present() {
        return;
    }
    let work = temp_dir("pool-mrpc");
    let pool = work.join("pool");
    let pool_s = pool.to_str().unwrap();
    let mrpc = ml_fixture("glue/MRPC");
    let (out, router) =
        train_quick_pool(&pool, &["--task", "mrpc", "--data", mrpc.to_str().unwrap()]);
    // train's own report names the split and each expert's metric.
    assert!(
        out.contains("MRPC: 2 classes") && out.contains("held out"),
        "{out}"
    );
    assert!(out.contains("F1"), "{out}");
    let manifest = last_json(&out);
    assert_eq!(manifest["metric"], "accuracy_and_f1", "{manifest}");
    // No measured costs: the router was trained on given ones.
    let report = last_json(&router);
    assert!(report["scores"]["f1"].is_number(), "{report}");
    let v = last_json(&run(&[
        "bench",
        "pool",
        "--pool-dir",
        pool_s,
        "--queries",
        "3",
        "--json",
    ]));
    assert_eq!(v["scores"]["metric"], "accuracy_and_f1", "{v}");
    assert!(v["scores"]["f1"].is_number(), "{v}");
    assert!(v["largest_scores"]["f1"].is_number(), "{v}");
    assert_pool_bench_follows_the_plain_pool(&v);
    let _ = std::fs::remove_dir_all(&work);
}
