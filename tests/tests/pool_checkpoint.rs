//! A pool with an expert of another checkpoint, end to end through the binary: the tiny MPNet
//! fixture fine-tuned by `train expert --rotten-tomatoes` (its own vocabulary, embeddings,
//! hidden size and pooler head) joins a MiniLM-L6 cut in `train pool --expert DIR`; its MPC
//! cost is measured, the router trained, and `bench pool` runs routed queries and the
//! always-largest expert (which reads an input of its own, embedded from the client bundle)
//! under MPC against the plaintext pool.

use securerouter_tests::{
    assert_pool_bench_follows_the_plain_pool, assets_present, last_json, securerouter,
    securerouter_ok as run, temp_dir,
};
use std::path::Path;

#[test]
fn an_expert_of_another_checkpoint_joins_a_pool_and_serves_under_mpc() {
    if !assets_present() {
        return;
    }
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/ml/tests/fixtures/mpnet/tiny");
    let work = temp_dir("pool-checkpoint");
    let expert = work.join("tiny-mpnet");
    let pool = work.join("pool");
    let (expert_s, pool_s) = (expert.to_str().unwrap(), pool.to_str().unwrap());
    run(&[
        "train",
        "expert",
        "--model-dir",
        tiny.to_str().unwrap(),
        "--out",
        expert_s,
        "--rotten-tomatoes",
        "--limit",
        "48",
        "--epochs",
        "1",
        "--seq",
        "16",
        "--tune-top",
        "1",
    ]);

    // `train pool` on this pool with `args`, refused: its error.
    let refused = |args: &[&str]| {
        let mut all = vec!["train", "pool", "--pool-dir", pool_s];
        all.extend_from_slice(args);
        let out = securerouter(&all);
        assert!(!out.status.success(), "{args:?} ran");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let quick = ["--limit", "8", "--cost-queries", "0"];
    // The fixture itself gives three labels: refused, naming them.
    let tiny_s = tiny.to_str().unwrap();
    let stderr = refused(&[&["--experts", "1", "--expert", tiny_s][..], &quick].concat());
    assert!(
        stderr.contains("gives the labels") && stderr.contains("neutral"),
        "{stderr}"
    );
    let stderr = refused(&["--measure-costs"]);
    assert!(stderr.contains("no built pool"), "{stderr}");
    let stderr = refused(&["--expert", "/no/such"]);
    assert!(stderr.contains("no such folder"), "{stderr}");
    // Distillation needs a checkpoint expert to teach.
    let stderr = refused(&[&["--experts", "1,3", "--distill"][..], &quick].concat());
    assert!(stderr.contains("add one with --expert"), "{stderr}");

    // The cut fine-tuned whole and taught by the checkpoint expert.
    let built = run(&[
        "train",
        "pool",
        "--pool-dir",
        pool_s,
        "--experts",
        "1",
        "--expert",
        expert_s,
        "--distill",
        "--tune-top",
        "4",
        "--limit",
        "48",
        "--epochs",
        "1",
        "--seq",
        "16",
        "--cost-queries",
        "1",
        "--force",
    ]);
    assert!(
        built.contains("expert tiny-mpnet: its outputs on the experts' examples teach the cuts"),
        "{built}"
    );
    assert!(
        built.contains("expert minilm-l6-first-1: fine-tuning its top 1 of 1 layers"),
        "{built}"
    );
    let manifest = last_json(&built);
    let experts = manifest["experts"].as_array().expect("experts");
    let names: Vec<&str> = experts
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["minilm-l6-first-1", "tiny-mpnet"]);
    assert_eq!(experts[1]["checkpoint"], "experts/tiny-mpnet");
    assert!(pool.join("experts/tiny-mpnet/config.json").is_file());
    assert!(pool.join("experts/tiny-mpnet/tokenizer.json").is_file());
    for e in experts {
        assert!(e["cost"]["online_s"].as_f64().unwrap() > 0.0, "{e}");
    }

    // The checkpoint expert alone under MPC, on its own tokens, against its reference.
    let line = run(&[
        "bench",
        "expert",
        "tiny-mpnet",
        "--pool-dir",
        pool_s,
        "--seq",
        "16",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert!(v["max_abs_logit_err"].as_f64().unwrap() < 0.05, "{line}");

    // Measured again, the pool keeps its experts and their held-out figures.
    let stderr = refused(&["--measure-costs", "--cost-queries", "0"]);
    assert!(stderr.contains("at least one query"), "{stderr}");
    let again = last_json(&run(&[
        "train",
        "pool",
        "--pool-dir",
        pool_s,
        "--measure-costs",
        "--cost-queries",
        "1",
    ]));
    for (before, after) in experts.iter().zip(again["experts"].as_array().unwrap()) {
        assert_eq!(before["name"], after["name"]);
        assert_eq!(before["held_out_accuracy"], after["held_out_accuracy"]);
        assert_eq!(before["cost"]["rounds"], after["cost"]["rounds"]);
        assert!(after["cost"]["online_s"].as_f64().unwrap() > 0.0, "{after}");
    }

    run(&["train", "router", "--pool-dir", pool_s, "--epochs", "5"]);
    for mode in ["reveal-route", "hide-route"] {
        let v = last_json(&run(&[
            "bench",
            "pool",
            "--pool-dir",
            pool_s,
            "--route",
            mode,
            "--queries",
            "4",
            "--json",
        ]));
        assert_pool_bench_follows_the_plain_pool(&v);
        // Always-largest: the MPNet expert on every query, from its own embedded input.
        assert!(v["largest"]["online_s"].as_f64().unwrap() > 0.0, "{v}");
        println!("{mode}: {v}");
    }
    let _ = std::fs::remove_dir_all(&work);
}
