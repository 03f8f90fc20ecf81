//! The operators' side of the services, as processes: each service's `--metrics` endpoint is
//! scraped and its counters checked against the sessions run; SIGTERM during a session drains
//! P0 (readiness turns 503, new sessions are refused, the session in flight completes) and
//! the process exits 0; SIGINT stops an idle dealer after its quiet time. `doctor
//! --deployment` finds every role reachable and flags a secret file others may read.

use securerouter_core::prg::{AesCtr, Domain, Seed};
use securerouter_runtime::client::Client;
use securerouter_runtime::deployment::{DeploymentDir, Role};
use securerouter_runtime::net::LinkConfig;
use securerouter_tests::{Service, free_addr, run_cli, temp_dir};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// `GET path` on a probe endpoint: (status code, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connecting to the probes");
    write!(s, "GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {reply}"));
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// The value of the sample whose name and labels are `series`.
fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
        .parse()
        .unwrap()
}

struct Roles {
    dir: std::path::PathBuf,
    services: [Option<Service>; 3],
    probes: [SocketAddr; 3],
}

/// A `keys` deployment with the dealer, P0 and P1 started, each with its probes.
fn start(name: &str) -> Roles {
    let dir = temp_dir(name);
    let addrs = [free_addr(), free_addr(), free_addr()];
    let probes = [free_addr(), free_addr(), free_addr()];
    let dir_s = dir.to_str().unwrap();
    let [d, a, b] = addrs.map(|x| x.to_string());
    run_cli(&[
        "keys", "--out", dir_s, "--dealer", &d, "--p0", &a, "--p1", &b,
    ]);
    let service = |i: usize| {
        let probe = probes[i].to_string();
        let mut args = match i {
            0 => vec!["dealer"],
            1 => vec!["serve", "--party", "0"],
            _ => vec!["serve", "--party", "1"],
        };
        args.extend([
            "--deployment",
            dir_s,
            "--timeout",
            "20",
            "--metrics",
            &probe,
        ]);
        args.extend(["--drain-timeout", "60"]);
        Some(Service::start(["dealer", "p0", "p1"][i], &args, addrs[i]))
    };
    let services = [service(0), service(1), service(2)];
    Roles {
        dir,
        services,
        probes,
    }
}

/// The deployment's client, waiting up to `timeout` for a server, and the router's width.
fn client(dir: &Path, timeout: Duration) -> (Client, usize) {
    let d = DeploymentDir::open(dir).unwrap();
    let features = d.plain_model().unwrap().shape.features;
    let link = LinkConfig {
        io_timeout: timeout,
        ..LinkConfig::default()
    };
    let c = Client::new(
        d.identity(Role::Client).unwrap(),
        d.deployment.clone(),
        link,
    );
    (c, features)
}

fn rows(tag: u64, n: usize, features: usize) -> Vec<f64> {
    let mut r = AesCtr::new(&Seed::from_bytes([5; 16]), Domain(tag));
    (0..n * features)
        .map(|_| (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect()
}

#[test]
fn metrics_count_the_sessions_run() {
    let roles = start("ops-metrics");
    let [dealer, p0, p1] = roles.probes;
    for p in roles.probes {
        assert_eq!(get(p, "/healthz"), (200, "ok\n".into()));
        assert_eq!(get(p, "/readyz"), (200, "ready\n".into()));
    }
    let (client, features) = client(&roles.dir, Duration::from_secs(30));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sessions = 5;
    let (mut bytes, mut rounds, mut key_bytes) = (0.0, 0.0, 0.0);
    for i in 0..sessions {
        let c = rt
            .block_on(client.route(features, &rows(i, 2, features)))
            .unwrap();
        bytes += c.servers[0].online_bytes_sent as f64;
        rounds += c.servers[0].rounds as f64;
        key_bytes += c.servers[0].key_bytes_received as f64;
    }
    for (probe, role) in [(p0, "p0"), (p1, "p1")] {
        let m = |name: &str| metric(probe, &format!("{name}{{role=\"{role}\"}}"));
        assert_eq!(m("securerouter_sessions_started_total"), sessions as f64);
        assert_eq!(m("securerouter_sessions_finished_total"), sessions as f64);
        assert_eq!(m("securerouter_online_seconds_count"), sessions as f64);
        assert_eq!(m("securerouter_offline_seconds_count"), sessions as f64);
        assert_eq!(m("securerouter_sessions_in_flight"), 0.0);
        assert!(m("securerouter_rounds_total") > 0.0);
        let failed =
            format!("securerouter_sessions_failed_total{{role=\"{role}\",reason=\"refused\"}}");
        assert_eq!(metric(probe, &failed), 0.0);
    }
    // P0's own accounting, as the client received it.
    let m0 = |name: &str| metric(p0, &format!("{name}{{role=\"p0\"}}"));
    assert_eq!(m0("securerouter_online_bytes_sent_total"), bytes);
    assert_eq!(m0("securerouter_rounds_total"), rounds);
    assert_eq!(m0("securerouter_key_bytes_received_total"), key_bytes);
    let d = |name: &str| metric(dealer, &format!("{name}{{role=\"dealer\"}}"));
    assert_eq!(d("securerouter_key_generations_total"), sessions as f64);
    assert_eq!(
        d("securerouter_key_streams_finished_total"),
        2.0 * sessions as f64
    );
    assert_eq!(d("securerouter_key_generations_pending"), 0.0);
    assert!(d("securerouter_key_bytes_sent_total") > 0.0);

    // doctor on the deployment: every role reachable, every secret private.
    let dir_s = roles.dir.to_str().unwrap();
    let report = run_cli(&["doctor", "--deployment", dir_s]);
    assert_eq!(report.matches("reachable (").count(), 3, "{report}");
    assert!(
        report.contains("p0.key") && report.contains("private (600)"),
        "{report}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let key = roles.dir.join("p1.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = std::process::Command::new(securerouter_tests::binary())
        .args(["doctor", "--deployment", dir_s])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("p1.key") && stdout.contains("READABLE BY OTHERS (644)"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&roles.dir);
}

#[test]
fn sigterm_drains_p0_the_session_in_flight_completes_and_it_exits_0() {
    let mut roles = start("ops-drain");
    let [_, p0_probe, _] = roles.probes;
    let (client, features) = client(&roles.dir, Duration::from_secs(30));
    let client = std::sync::Arc::new(client);
    // A client that gives up on a silent server within 2 s (P1 takes the refused session and
    // waits for its pairing).
    let (impatient, _) = self::client(&roles.dir, Duration::from_secs(2));
    let rt = tokio::runtime::Runtime::new().unwrap();

    // The dealer frozen: a session starts and waits for its keys, in flight at both servers.
    roles.services[0].as_ref().unwrap().freeze();
    let c = client.clone();
    let x = rows(1, 2, features);
    let in_flight = rt.spawn(async move { c.route(features, &x).await });
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(p0_probe, "securerouter_sessions_in_flight{role=\"p0\"}") < 1.0 {
        assert!(Instant::now() < deadline, "the session never reached P0");
        std::thread::sleep(Duration::from_millis(20));
    }

    // SIGTERM: P0 drains. Not ready any more, and a new session is refused by name.
    roles.services[1].as_ref().unwrap().signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(p0_probe, "/readyz").0 != 503 {
        assert!(Instant::now() < deadline, "P0 did not start draining");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(p0_probe, "/healthz").0, 200);
    let refused = rt
        .block_on(impatient.route(features, &rows(2, 1, features)))
        .expect_err("a draining P0 takes no new session");
    let why = format!("{refused:#}");
    assert!(why.contains("shutting down"), "{why}");
    assert!(
        roles.services[1].as_mut().unwrap().is_running(),
        "P0 waits for its session in flight"
    );

    // The dealer thaws: the session in flight completes, and P0 exits 0 once drained.
    roles.services[0].as_ref().unwrap().signal("-CONT");
    let done = rt.block_on(in_flight).unwrap();
    let done = done.expect("the session in flight completes while P0 drains");
    assert_eq!(done.choice.len(), 2);
    let status = roles.services[1]
        .as_mut()
        .unwrap()
        .wait_for_exit(Duration::from_secs(60))
        .expect("P0 exits once drained");
    assert!(status.success(), "P0 exited with {status}");

    // An idle dealer stops at SIGINT (after its quiet time) with status 0.
    let dealer = roles.services[0].as_mut().unwrap();
    dealer.signal("-INT");
    let status = dealer
        .wait_for_exit(Duration::from_secs(30))
        .expect("the idle dealer exits");
    assert!(status.success(), "the dealer exited with {status}");
    let _ = std::fs::remove_dir_all(&roles.dir);
}
