//! A trained pool deployed as one folder per role and served from those folders alone:
//! `deploy` (host names and addresses), the dealer and both servers started each from its own
//! folder, then `client --jsonl` on the pool's held-out sentence pairs gives the plaintext
//! pool's labels. P1 killed: the next query fails with an error naming P1; P1 restarted from
//! its folder: the next one succeeds. The library client (`PoolClient`) answers as the
//! command does.

use securerouter_runtime::pool_client::PoolClient;
use securerouter_runtime::served_pool::ServedPool;
use securerouter_tests::{
    Service, assert_answer_follows_the_plain_pool, assets_present, binary, free_addr, ml_fixture,
    securerouter_ok as run, temp_dir, train_quick_pool,
};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

fn files_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Starts `role` from its own folder under `out`, listening on `listen`.
fn start(out: &Path, role: &str, listen: SocketAddr) -> Service {
    let folder = out.join(role);
    let folder = folder.to_str().unwrap();
    let listen_s = listen.to_string();
    let mut args = match role {
        "dealer" => vec!["dealer"],
        "p0" => vec!["serve", "--party", "0"],
        _ => vec!["serve", "--party", "1"],
    };
    args.extend([
        "--deployment",
        folder,
        "--timeout",
        "5",
        "--listen",
        &listen_s,
    ]);
    Service::start(role, &args, listen)
}

#[test]
fn a_pool_deployed_per_role_serves_text_from_its_folders() {
    if !assets_present() {
        return;
    }
    let work = temp_dir("deploy");
    let pool = work.join("pool");
    let out = work.join("deployment");
    let (pool_s, out_s) = (pool.to_str().unwrap(), out.to_str().unwrap());
    let mnli = ml_fixture("glue/MNLI");
    train_quick_pool(&pool, &["--task", "mnli", "--data", mnli.to_str().unwrap()]);

    // The dealer and P0 by name, P1 by address; each listens where the test says.
    let addrs = [free_addr(), free_addr(), free_addr()];
    let dealer = format!("localhost:{}", addrs[0].port());
    let p0 = format!("localhost:{}", addrs[1].port());
    let p1 = addrs[2].to_string();
    let report = run(&[
        "deploy", "--pool", pool_s, "--out", out_s, "--dealer", &dealer, "--p0", &p0, "--p1", &p1,
    ]);
    assert!(report.contains("client/"), "{report}");
    for (role, want) in [
        (
            "dealer",
            vec!["deployment.json", "dealer.key", "dealer.model"],
        ),
        ("p0", vec!["deployment.json", "p0.key", "p0.model"]),
        ("p1", vec!["deployment.json", "p1.key", "p1.model"]),
        (
            "client",
            vec![
                "deployment.json",
                "client.key",
                "client.bundle",
                "client.json",
            ],
        ),
    ] {
        let want: BTreeSet<String> = want.into_iter().map(String::from).collect();
        assert_eq!(files_in(&out.join(role)), want, "{role}/");
    }
    assert_eq!(
        files_in(&out),
        ["client", "dealer", "p0", "p1"].map(String::from).into()
    );
    {
        use std::os::unix::fs::PermissionsExt;
        for secret in [
            "dealer/dealer.key",
            "dealer/dealer.model",
            "p1/p1.model",
            "client/client.key",
        ] {
            let mode = std::fs::metadata(out.join(secret))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{secret}");
        }
    }
    let advertised = std::fs::read_to_string(out.join("client/deployment.json")).unwrap();
    assert!(
        advertised.contains(&format!("\"{dealer}\"")),
        "{advertised}"
    );
    // A second deploy into the same folders needs --force.
    let again = Command::new(binary())
        .args([
            "deploy", "--pool", pool_s, "--out", out_s, "--dealer", &dealer, "--p0", &p0, "--p1",
            &p1,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && stderr.contains("--force"),
        "{stderr}"
    );

    let _dealer = start(&out, "dealer", addrs[0]);
    let _p0 = start(&out, "p0", addrs[1]);
    let mut p1_service = Some(start(&out, "p1", addrs[2]));

    // The pool's own held-out pairs, through the client's folder alone.
    let held_out = std::fs::read_to_string(pool.join("held-out.jsonl")).unwrap();
    let queries = work.join("queries.jsonl");
    std::fs::write(&queries, &held_out).unwrap();
    let client_dir = out.join("client");
    let client_s = client_dir.to_str().unwrap();
    let cache = securerouter_ml::assets::cache_dir(None).unwrap();
    let plain = ServedPool::load(&pool, &cache).unwrap();
    let examples: Vec<serde_json::Value> = held_out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // One query a session, three sessions at a time; then four inputs to a session. Either
    // way the answers follow the plaintext pool, in the inputs' order, each carrying the size
    // of the batch it came in.
    for (flag, value, batch) in [("--concurrency", "3", 1), ("--batch", "4", 4)] {
        let lines = run(&[
            "client",
            "--deployment",
            client_s,
            "--jsonl",
            queries.to_str().unwrap(),
            flag,
            value,
        ]);
        let answers: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(answers.len(), examples.len(), "{lines}");
        for (i, (e, a)) in examples.iter().zip(&answers).enumerate() {
            assert_eq!(a["line"], i + 1, "{a}");
            assert_answer_follows_the_plain_pool(&plain, i, e, a);
            let size = batch.min(examples.len() - i / batch * batch);
            assert_eq!(a["batch"], size, "{a}");
        }
    }

    // The library client, in hide-route.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let first = &examples[0];
    let answer = rt
        .block_on(async {
            PoolClient::connect(&client_dir)
                .await?
                .with_route(securerouter_circuits::RouteMode::Hide)
                .classify_pair(
                    first["text"].as_str().unwrap(),
                    first["text_pair"].as_str().unwrap(),
                )
                .await
        })
        .unwrap();
    assert_eq!(answer.scores.len(), 3);
    assert!(plain.manifest.labels.contains(&answer.label), "{answer:?}");

    // P1 dies: the query fails naming P1, and the command fails.
    p1_service.take().unwrap().kill();
    let text = "The clerk said the office closes at five.";
    let failed = Command::new(binary())
        .args([
            "client",
            "--deployment",
            client_s,
            "--timeout",
            "5",
            "--text",
            text,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(!failed.status.success(), "{stdout}");
    let error: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(error["error"].as_str().unwrap().contains("P1"), "{error}");
    // P1 back from its folder: the next query succeeds.
    p1_service = Some(start(&out, "p1", addrs[2]));
    let ok = run(&["client", "--deployment", client_s, "--text", text]);
    let v: serde_json::Value = serde_json::from_str(ok.trim()).unwrap();
    assert!(v["label"].is_string(), "{v}");
    drop(p1_service);
    let _ = std::fs::remove_dir_all(&work);
}
