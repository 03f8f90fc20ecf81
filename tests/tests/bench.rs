//! `securerouter bench` end to end: dealer, P0 and P1 as processes on loopback, a random BERT
//! shape, the JSON line's figures checked against each other and the reference.

use securerouter_tests::binary;
use std::process::Command;

#[test]
fn bench_runs_a_random_bert_across_processes_and_reports_consistent_figures() {
    let out = Command::new(binary())
        .args([
            "bench",
            "--layers",
            "1",
            "--hidden",
            "16",
            "--heads",
            "2",
            "--ffn",
            "32",
            "--seq",
            "8",
            "--queries",
            "2",
            "--json",
            "--breakdown",
            "--timeout",
            "120",
        ])
        .output()
        .expect("running securerouter bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().next().expect("a JSON line");
    let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
    let num = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("{k} missing in {line}"))
    };
    assert_eq!(num("layers"), 1.0);
    assert_eq!(num("hidden"), 16.0);
    assert_eq!(num("seq_len"), 8.0);
    assert_eq!(num("queries"), 2.0);
    assert!(num("online_s") > 0.0 && num("offline_s") > 0.0);
    assert!(num("key_bytes_per_server") > num("online_bytes_per_server"));
    assert!(num("peak_rss_mb") > 1.0);
    assert!(num("max_abs_logit_err") < 0.05, "{line}");
    assert_eq!(num("label_agreement"), 1.0);
    // The parts add up to the whole: every online byte and round is charged to one part.
    let parts = v["breakdown"].as_array().expect("breakdown");
    let names: Vec<&str> = parts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    for want in ["linear", "attention", "softmax", "gelu", "layernorm"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let bytes: f64 = parts
        .iter()
        .map(|p| p["bytes_sent"].as_f64().unwrap())
        .sum();
    let rounds: f64 = parts.iter().map(|p| p["rounds"].as_f64().unwrap()).sum();
    assert_eq!(bytes, num("online_bytes_per_server"));
    assert_eq!(rounds, num("rounds"));
}
