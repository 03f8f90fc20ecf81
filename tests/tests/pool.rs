//! `securerouter train pool`, `train router` and `bench expert` end to end on the real assets:
//! a small pool (MiniLM-L6 cut to 1 and 2 layers) fine-tuned on a few Rotten Tomatoes sentences,
//! each expert's cost measured under MPC with dealer, P0 and P1 as processes, then the router;
//! then the no_std device client asks the routed pool over embassy-net on a TAP interface.

use securerouter_tests::{CLOSE_CALL, assets_present, binary, securerouter_ok as run, temp_dir};
use std::process::Command;

/// The report's route distribution covers the 2 experts and sums to 1.
fn assert_two_way_distribution(report: &serde_json::Value) {
    let dist: Vec<f64> = report["route_distribution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(dist.len(), 2);
    assert!((dist.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{report}");
}

/// Runs `device_over_tap` (the no_std device client on embassy-net over a TAP interface, see
/// `tests/src/bin/device_over_tap.rs`) in a private network namespace against the pool in
/// `pool_dir`, and checks that the device, embedding each sentence itself from the
/// deployment's int8 table, gets the plaintext pool's route and label on the same rows.
fn device_over_tap(pool_dir: &str) {
    // As root, a plain network namespace; otherwise one inside a user namespace.
    let flags = ["-n", "-rn"].into_iter().find(|f| {
        Command::new("unshare")
            .args([f, "true"])
            .status()
            .is_ok_and(|s| s.success())
    });
    let Some(flags) = flags else {
        assert!(
            std::env::var_os("CI").is_none(),
            "`unshare -n` is not available: the TAP test needs a private network namespace"
        );
        println!("SKIPPED: device over TAP (no `unshare -n` here)");
        return;
    };
    let bin = binary();
    let out = Command::new("unshare")
        .args([flags, env!("CARGO_BIN_EXE_device_over_tap")])
        .args(["--securerouter", bin.to_str().unwrap()])
        .args(["--pool-dir", pool_dir, "--queries", "3"])
        .output()
        .expect("running device_over_tap");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "device_over_tap failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for v in &lines {
        // The secure router chooses the plaintext router's expert, unless the call was close.
        let route = v["route"].as_u64().unwrap() as usize;
        assert!(
            v["route"] == v["plain_route"]
                || v["plain_route_margin"].as_f64().unwrap() < CLOSE_CALL,
            "{v}"
        );
        // The chosen expert's secure logits follow its plaintext logits on the same rows.
        let floats = |x: &serde_json::Value| -> Vec<f64> {
            x.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let got = floats(&v["logits"]);
        let plain = floats(&v["plain_logits_by_expert"][route]);
        for (a, b) in got.iter().zip(&plain) {
            assert!((a - b).abs() < 0.1, "{v}");
        }
        if v["route"] == v["plain_route"] {
            let margin = (plain[0] - plain[1]).abs();
            assert!(v["label"] == v["plain_label"] || margin < 0.1, "{v}");
        }
        assert!(v["upload_bytes_p1"].as_u64().unwrap() > 0);
    }
    println!("device over TAP: {stdout}");
}

#[test]
fn a_small_pool_is_built_measured_and_routed() {
    if !assets_present() {
        return;
    }
    let dir = temp_dir("pool");
    let d = dir.to_string_lossy().to_string();
    let stdout = run(&[
        "train",
        "pool",
        "--pool-dir",
        &d,
        "--experts",
        "2,1",
        "--limit",
        "48",
        "--epochs",
        "1",
        "--seq",
        "16",
        "--cost-queries",
        "1",
    ]);
    let manifest: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("the manifest line")).expect("JSON");
    let experts = manifest["experts"].as_array().expect("experts");
    let names: Vec<&str> = experts
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["minilm-l6-first-1", "minilm-l6-first-2"],
        "cheapest first"
    );
    let cost = |i: usize, k: &str| {
        experts[i]["cost"][k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} of expert {i}"))
    };
    // A second layer costs more of everything that does not depend on timing.
    for k in ["online_bytes_per_server", "key_bytes_per_server", "rounds"] {
        assert!(
            cost(1, k) > cost(0, k),
            "{k}: {} vs {}",
            cost(1, k),
            cost(0, k)
        );
    }
    for e in experts {
        let acc = e["held_out_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert!(dir.join(e["tuned_file"].as_str().unwrap()).exists());
    }
    // The bench runs a stored expert on its own, and its secure logits match the reference.
    let line = run(&[
        "bench",
        "expert",
        "minilm-l6-first-2",
        "--pool-dir",
        &d,
        "--seq",
        "16",
        "--json",
        "--timeout",
        "120",
    ]);
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(v["model"], "minilm-l6-first-2");
    assert_eq!(v["layers"], 2);
    assert!(v["max_abs_logit_err"].as_f64().unwrap() < 0.05, "{line}");
    // A built pool is reused, not rebuilt.
    assert!(run(&["train", "pool", "--pool-dir", &d, "--experts", "1,2"]).contains("is built"));
    // The router trains on the stored signals and reports on the held-out sentences.
    let report: serde_json::Value =
        serde_json::from_str(run(&["train", "router", "--pool-dir", &d, "--epochs", "5"]).trim())
            .expect("a JSON report");
    assert_two_way_distribution(&report);
    assert_eq!(report["inputs"], 48);
    assert!(dir.join("router.json").exists());
    // The sweep measures each expert, the router stage and each retrained router under MPC,
    // and projects each router's cost as the paper does.
    let plot = dir.join("sweep.svg");
    let sweep = run(&[
        "bench",
        "sweep",
        "--pool-dir",
        &d,
        "--queries",
        "1",
        "--cost-weights",
        "0,1",
        "--balance-weight",
        "0",
        "--router-epochs",
        "20",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let refused = Command::new(binary())
        .args(["bench", "sweep", "--pool-dir", &d, "--balance-weight=-1"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("balance weight must be a finite number ≥ 0, not -1"),
        "{refused:?}"
    );
    let points: Vec<serde_json::Value> = sweep
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON point"))
        .collect();
    assert_eq!(points.len(), 4, "{sweep}");
    for p in &points {
        assert!(p["measured_online_s"].as_f64().unwrap() > 0.0, "{p}");
        let projected = p.get("projected_online_s").and_then(|v| v.as_f64());
        assert_eq!(projected.is_some(), p["cost_weight"].is_number(), "{p}");
        assert!(projected.is_none_or(|s| s > 0.0), "{p}");
    }
    assert!(
        std::fs::read_to_string(&plot)
            .unwrap()
            .contains("projected")
    );
    // The trained pool serves routed queries under MPC in both routing privacy modes.
    let bench = |mode: &str, batch: &str| -> serde_json::Value {
        let line = run(&[
            "bench",
            "pool",
            "--pool-dir",
            &d,
            "--route",
            mode,
            "--queries",
            "3",
            "--batch",
            batch,
            "--json",
            "--timeout",
            "120",
        ]);
        serde_json::from_str(line.trim()).expect("a JSON line")
    };
    let reveal = bench("reveal-route", "1");
    let hide = bench("hide-route", "1");
    // The three sentences as one batch: the router once, each chosen expert once.
    let batched = bench("reveal-route", "3");
    for v in [&reveal, &hide, &batched] {
        assert_two_way_distribution(v);
        // The secure router and the secure experts answer as the plaintext pool does, but for
        // calls within fixed-point rounding.
        for d in v["disagreements"].as_array().unwrap() {
            assert!(d["margin"].as_f64().unwrap() < CLOSE_CALL, "{v}");
        }
        let flips = v["disagreements"].as_array().unwrap().len() as f64;
        let agreeing = v["router_agreement"]
            .as_f64()
            .unwrap()
            .min(v["label_agreement"].as_f64().unwrap());
        assert!((1.0 - agreeing) * 3.0 <= flips + 1e-9, "{v}");
        assert!(v["measured_speedup"].as_f64().unwrap() > 0.0);
    }
    // reveal-route runs the router and at most one more expert; hide-route runs every expert
    // on every query, so it always costs more rounds than the largest expert alone.
    let rounds = |v: &serde_json::Value, k: &str| v[k]["rounds"].as_f64().unwrap();
    assert!(rounds(&hide, "routed") > rounds(&hide, "largest"), "{hide}");
    assert!(
        reveal["router_overhead"].as_f64().unwrap() > 0.0,
        "{reveal}"
    );
    assert!(hide.get("router_overhead").is_none(), "{hide}");
    assert_eq!(batched["batch"], 3, "{batched}");
    // Per query, a batch costs fewer rounds: the router's and each chosen expert's once.
    assert!(
        rounds(&batched, "routed") < rounds(&reveal, "routed"),
        "{batched}\n{reveal}"
    );
    assert!(
        rounds(&batched, "largest") * 3.0 <= rounds(&reveal, "largest") + 1e-9,
        "{batched}"
    );
    assert!(batched["routed"]["queries_per_s"].as_f64().unwrap() > 0.0);
    device_over_tap(&d);
    // Bad options are clear errors.
    let out = Command::new(binary())
        .args(["train", "router", "--pool-dir", &d, "--costs", "1,2,3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 costs given for a pool of 2 experts"));
    std::fs::remove_dir_all(dir).unwrap();
}
