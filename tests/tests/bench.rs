//! `securerouter bench` end to end: dealer, P0 and P1 as processes on loopback, a random BERT
//! shape and the real MiniLM-L6, the JSON line's figures checked against each other and the
//! reference.

use securerouter_tests::{assets_present, binary};
use std::process::Command;

/// A one-layer random BERT shape on 8 tokens: a whole bench run in seconds.
const TINY: [&str; 11] = [
    "shape", "--layers", "1", "--hidden", "16", "--heads", "2", "--ffn", "32", "--seq", "8",
];

/// Runs `securerouter bench ARGS` (with `--json`) to success and returns its JSON line, as
/// text and parsed.
fn bench_json(args: &[&str]) -> (String, serde_json::Value) {
    let out = Command::new(binary())
        .arg("bench")
        .args(args)
        .output()
        .expect("running securerouter bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().next().expect("a JSON line").to_string();
    let v = serde_json::from_str(&line).expect("valid JSON");
    (line, v)
}

#[test]
fn bench_runs_a_random_bert_across_processes_and_reports_consistent_figures() {
    let args = [
        "--queries",
        "2",
        "--json",
        "--breakdown",
        "--timeout",
        "120",
    ];
    let (line, v) = bench_json(&[&TINY[..], &args[..]].concat());
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
    securerouter_tests::assert_labels_follow_the_reference(&v, 0.05);
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

/// Through a modelled link (a relay in front of each server), every round waits at least half
/// the round trip, the report names the link and its prediction, and the labels still follow
/// the reference.
#[test]
fn bench_through_a_link_model_pays_its_round_trips() {
    let args = [
        "--queries",
        "1",
        "--json",
        "--link",
        "rtt=20ms,rate=500mbit",
    ];
    let (line, v) = bench_json(&[&TINY[..], &args[..]].concat());
    assert_eq!(v["link"]["rtt_ms"], 20.0, "{line}");
    assert_eq!(v["link"]["rate_mbit_s"], 500.0, "{line}");
    let (online, rounds) = (
        v["online_s"].as_f64().unwrap(),
        v["rounds"].as_f64().unwrap(),
    );
    assert!(rounds > 10.0, "{line}");
    // In a round both servers send and each waits for the other's message, one way: 10 ms.
    assert!(
        online >= rounds * 0.010,
        "{online} s for {rounds} rounds: {line}"
    );
    let predicted = v["link_s_predicted"].as_f64().unwrap();
    let bytes = v["online_bytes_per_server"].as_f64().unwrap();
    let want = rounds * 0.010 + bytes * 8.0 / 500e6;
    assert!(
        (predicted - want).abs() < 1e-9,
        "{predicted} vs {want}: {line}"
    );
    securerouter_tests::assert_labels_follow_the_reference(&v, 0.05);
    // Without --link, loopback and nothing predicted.
    let (line, v) = bench_json(&[&TINY[..], &["--json"][..]].concat());
    assert_eq!(v["link"]["link"], "loopback", "{line}");
    assert_eq!(v["link_s_predicted"], 0.0, "{line}");
}

/// The processes whose parent is `pid` (from /proc; Linux only).
/// The label agreement of the README's 200 sentences, on a smaller sample: the real MiniLM-L6
/// (all six layers) with its sentiment head, on the first 8 held-out Rotten Tomatoes sentences
/// at 64 tokens, every secure label equal to the f64 reference's.
#[test]
fn bench_real_minilm_labels_held_out_sentences_like_the_reference() {
    if !assets_present() {
        return;
    }
    let (line, v) = bench_json(&[
        "minilm",
        "--seq",
        "64",
        "--queries",
        "8",
        "--json",
        "--timeout",
        "300",
    ]);
    assert_eq!(v["model"], "minilm-l6", "{line}");
    assert_eq!(v["layers"], 6, "{line}");
    assert_eq!(v["queries"], 8, "{line}");
    assert_eq!(v["label_agreement"], 1.0, "{line}");
    let err = v["max_abs_logit_err"].as_f64().expect("max_abs_logit_err");
    assert!(err < 0.15, "{line}");
}

fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                // pid (comm) state ppid …: the comm may hold spaces, so split after ')'.
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// Whether `pid` still runs (gone, or a zombie waiting to be reaped, counts as ended).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Killing `bench` (SIGTERM) takes its dealer, P0 and P1 with it: they watch their standard
/// input, a pipe the bench holds, and exit when it closes. The bench removes its throw-away
/// deployment, secret keys included, on its way out.
#[test]
fn services_end_when_the_bench_is_killed() {
    if !std::path::Path::new("/proc/self/stat").exists() {
        eprintln!("SKIPPED services_end_when_the_bench_is_killed: no /proc on this system");
        return;
    }
    let mut bench = Command::new(binary())
        .arg("bench")
        .args(TINY)
        .args(["--queries", "100000", "--json", "--timeout", "120"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting securerouter bench");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let services = loop {
        let c = children_of(bench.id());
        if c.len() >= 3 {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the bench started {c:?} only"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // The throw-away deployment, with its secret keys: the services name it.
    let deployment = deployment_of(services[0]).expect("the services name their deployment");
    assert!(
        deployment.join("deployment.json").exists(),
        "{deployment:?}"
    );
    // Let a session start, so the services are busy when their supervisor goes.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let killed = Command::new("kill")
        .args(["-TERM", &bench.id().to_string()])
        .status()
        .expect("running kill");
    assert!(killed.success());
    bench.wait().expect("reaping the bench");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while services.iter().any(|&p| running(p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "services still running 20 s after the bench was killed: {:?}",
            services.iter().filter(|&&p| running(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        !deployment.exists(),
        "the killed bench left its deployment (and its keys) in {deployment:?}"
    );
}

/// The `--deployment` folder in a process's command line.
fn deployment_of(pid: u32) -> Option<std::path::PathBuf> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = cmdline.split(|&b| b == 0);
    args.by_ref().find(|a| *a == b"--deployment")?;
    Some(String::from_utf8_lossy(args.next()?).into_owned().into())
}
