//! Dealer, P0 and P1 as separate `securerouter` processes on loopback, over encrypted links,
//! with a client running the router head: correctness against plaintext, failures mid-session,
//! concurrent load, and connections that must be turned away.

use securerouter_circuits::CircuitKind;
use securerouter_runtime::client::{Classification, Client};
use securerouter_runtime::deployment::{DeploymentDir, Role};
use securerouter_runtime::messages::{DealerRequest, SessionId};
use securerouter_runtime::net::{Identity, LinkConfig};
use securerouter_tests::{Service, free_addr, run_cli, temp_dir, test_rng};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Cluster {
    dir: PathBuf,
    addrs: [SocketAddr; 3],
    timeout: u64,
    /// Options every service gets besides the deployment and time-out.
    extra: Vec<String>,
    /// A cap on P0's open files, if any.
    open_files: Option<u64>,
    dealer: Option<Service>,
    p0: Option<Service>,
    p1: Option<Service>,
}

impl Cluster {
    fn start(name: &str, timeout: u64) -> Cluster {
        Self::start_with(name, timeout, &[], |_| None)
    }

    /// A cluster whose services get `extra` options, after `prepare` has changed the fresh
    /// deployment directory; P0 may open as many files as `prepare` says, if it says.
    fn start_with(
        name: &str,
        timeout: u64,
        extra: &[&str],
        prepare: impl FnOnce(&std::path::Path) -> Option<u64>,
    ) -> Cluster {
        let dir = temp_dir(name);
        let addrs = [free_addr(), free_addr(), free_addr()];
        let (d, a, b) = (
            addrs[0].to_string(),
            addrs[1].to_string(),
            addrs[2].to_string(),
        );
        let dir_s = dir.to_str().unwrap().to_string();
        run_cli(&[
            "keys", "--out", &dir_s, "--dealer", &d, "--p0", &a, "--p1", &b,
        ]);
        let open_files = prepare(&dir);
        let mut c = Cluster {
            dir,
            addrs,
            timeout,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            open_files,
            dealer: None,
            p0: None,
            p1: None,
        };
        c.dealer = Some(c.service("dealer"));
        c.p0 = Some(c.service("p0"));
        c.p1 = Some(c.service("p1"));
        c
    }

    fn service(&self, which: &str) -> Service {
        let dir = self.dir.to_str().unwrap().to_string();
        let t = self.timeout.to_string();
        let (mut args, addr) = match which {
            "dealer" => (vec!["dealer"], self.addrs[0]),
            "p0" => (vec!["serve", "--party", "0"], self.addrs[1]),
            "p1" => (vec!["serve", "--party", "1"], self.addrs[2]),
            other => panic!("no service {other}"),
        };
        args.extend(["--deployment", &dir, "--timeout", &t]);
        args.extend(self.extra.iter().map(String::as_str));
        let open_files = self.open_files.filter(|_| which == "p0");
        Service::start_with_open_files(which, &args, addr, open_files)
    }

    fn client(&self) -> Client {
        self.client_waiting(self.timeout)
    }

    /// A client that waits `timeout` seconds for a server (longer than the servers' own
    /// time-outs lets a server's failure report reach it).
    fn client_waiting(&self, timeout: u64) -> Client {
        let d = DeploymentDir::open(&self.dir).unwrap();
        Client::new(
            d.identity(Role::Client).unwrap(),
            d.deployment.clone(),
            link(timeout),
        )
    }

    fn features(&self) -> usize {
        DeploymentDir::open(&self.dir)
            .unwrap()
            .plain_model()
            .unwrap()
            .shape
            .features
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn link(timeout: u64) -> LinkConfig {
    LinkConfig {
        io_timeout: Duration::from_secs(timeout),
        ..LinkConfig::default()
    }
}

fn random_queries(tag: u64, rows: usize, features: usize) -> Vec<f64> {
    let mut r = test_rng(tag);
    (0..rows * features)
        .map(|_| r.next_u64() as f64 / u64::MAX as f64 * 4.0 - 2.0)
        .collect()
}

/// Checks a result against the plaintext router head: scores close, same choice unless the
/// top two scores are within fixed-point error of each other.
fn check_against_plaintext(c: &Cluster, x: &[f64], got: &Classification) {
    let model = DeploymentDir::open(&c.dir).unwrap().plain_model().unwrap();
    let f = model.shape.features;
    for (row, q) in x.chunks(f).enumerate() {
        let s = model.scores(q);
        for (a, b) in s.iter().zip(&got.scores[row]) {
            assert!((a - b).abs() < 0.02, "row {row}: plaintext {a}, secure {b}");
        }
        let best = (0..s.len()).fold(0, |b, j| if s[j] > s[b] { j } else { b });
        if got.choice[row] != best {
            let mut sorted = s.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            assert!(
                sorted[0] - sorted[1] < 0.02,
                "row {row}: chose {} not {best}",
                got.choice[row]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_head_across_processes_matches_plaintext() {
    let c = Cluster::start("e2e", 20);
    let x = random_queries(1, 20, c.features());
    let got = c.client().route(c.features(), &x).await.unwrap();
    check_against_plaintext(&c, &x, &got);
    for s in got.servers {
        // input, linear, truncate, ReLU (2), linear, truncate, argmax over 3 (2 levels × 2).
        assert_eq!(s.rounds, 11);
        assert!(s.online_bytes_sent > 0 && s.key_bytes_received > 0);
    }
    // Latency of one single-query session at a time (all five links set up per session).
    let mut lat = Vec::new();
    for i in 0..10 {
        let x = random_queries(50 + i, 1, c.features());
        let t = Instant::now();
        let got = c.client().route(c.features(), &x).await.unwrap();
        lat.push(t.elapsed().as_secs_f64());
        check_against_plaintext(&c, &x, &got);
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "one router-head session at a time: p50 {:.1} ms, max {:.1} ms",
        lat[5] * 1e3,
        lat[9] * 1e3
    );
    // The same through the command-line client.
    let dir = c.dir.to_str().unwrap();
    let out = run_cli(&["client", "--deployment", dir, "--random", "3"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["choice"].as_array().unwrap().len(), 3);
}

/// The no_std device client (`securerouter-device`) against the same processes, over TCP
/// through `embedded-io-adapters`: the servers accept its links and hellos, and its answer
/// matches the plaintext router head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_client_queries_the_processes() {
    use embedded_io_adapters::tokio_1::FromTokio;
    use securerouter_core::ring::{BitWidth, FixedPoint};
    use securerouter_device::session::{Circuit, ServerKeys};
    use securerouter_device::{FixedPointRows, StaticKey, query};
    use tokio::net::TcpStream;

    let c = Cluster::start("device", 20);
    let d = DeploymentDir::open(&c.dir).unwrap();
    let me = StaticKey::from_secret(*d.identity(Role::Client).unwrap().secret());
    let keys = ServerKeys {
        p0: d.deployment.p0.key().unwrap().0,
        p1: d.deployment.p1.key().unwrap().0,
    };
    let f = c.features();
    let fp = FixedPoint::new(12, BitWidth::FULL).unwrap();
    for tag in 0..3 {
        // Rows of f32, as a device holds them (the plaintext check reads the same values).
        let x: Vec<f32> = random_queries(70 + tag, 4, f)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let to_p0 = TcpStream::connect(d.deployment.p0.addr.to_string())
            .await
            .unwrap();
        let to_p1 = TcpStream::connect(d.deployment.p1.addr.to_string())
            .await
            .unwrap();
        let out = query::<_, _, _, _, 1024>(
            FromTokio::new(to_p0),
            FromTokio::new(to_p1),
            &me,
            &keys,
            Circuit::RouterHead,
            FixedPointRows::new(&x, f, fp).unwrap(),
            &mut test_rng(90 + tag),
        )
        .await
        .unwrap();
        let [scores, onehot] = &out.values[..] else {
            panic!("{} outputs", out.values.len())
        };
        let experts = scores.len() / 4;
        let got = Classification {
            session: String::new(),
            scores: scores
                .chunks(experts)
                .map(|r| r.iter().map(|&v| fp.decode(v)).collect())
                .collect(),
            choice: onehot
                .chunks(experts)
                .map(|r| securerouter_circuits::pool::route_of(r).unwrap())
                .collect(),
            servers: Default::default(),
            wall_s: 0.0,
        };
        check_against_plaintext(&c, &x64, &got);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_p1_fails_the_session_in_time_and_p0_keeps_serving() {
    let mut c = Cluster::start("kill-p1", 3);
    let f = c.features();
    // P1 stops answering while the session starts, then dies.
    c.p1.as_ref().unwrap().freeze();
    let client = c.client_waiting(8);
    let x = random_queries(2, 4, f);
    let started = Instant::now();
    let session = tokio::spawn(async move { client.route(f, &x).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.p1.take().unwrap().kill();
    let result = tokio::time::timeout(Duration::from_secs(20), session)
        .await
        .expect("the client must give up within its time-out")
        .unwrap();
    let err = format!(
        "{:#}",
        result.expect_err("the session cannot succeed without P1")
    );
    assert!(
        err.contains("P1"),
        "the error names the failed server: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    // P1 comes back; the next session succeeds, so P0 kept serving.
    c.p1 = Some(c.service("p1"));
    let x = random_queries(3, 4, f);
    let got = c.client().route(f, &x).await.unwrap();
    check_against_plaintext(&c, &x, &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_dealer_fails_the_session_in_time_and_servers_recover() {
    let mut c = Cluster::start("kill-dealer", 3);
    let f = c.features();
    c.dealer.as_ref().unwrap().freeze();
    let x = random_queries(4, 4, f);
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), c.client().route(f, &x))
        .await
        .expect("the client must give up within its time-out");
    let err = format!("{:#}", result.expect_err("no session without the dealer"));
    assert!(err.contains("P0") && err.contains("P1"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
    c.dealer.take().unwrap().kill();
    c.dealer = Some(c.service("dealer"));
    let got = c.client().route(f, &x).await.unwrap();
    check_against_plaintext(&c, &x, &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_sessions_all_complete_correctly() {
    let c = Cluster::start("load", 30);
    let f = c.features();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let client = c.client();
        let x = random_queries(100 + i, 1, f);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = client.route(f, &x).await;
            (x, r, t.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        let (x, r, lat) = t.await.unwrap();
        check_against_plaintext(&c, &x, &r.unwrap());
        latencies.push(lat.as_secs_f64());
    }
    let total = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    println!(
        "32 concurrent router-head sessions: {:.1} sessions/s, p50 {:.0} ms, p99 {:.0} ms",
        32.0 / total,
        latencies[15] * 1e3,
        latencies[31] * 1e3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_and_garbage_are_turned_away() {
    let c = Cluster::start("reject", 5);
    let f = c.features();
    // Raw garbage instead of a handshake, then a closed connection.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(c.addrs[1]).await.unwrap();
        s.write_all(&[0xff; 4096]).await.unwrap();
        let mut s = tokio::net::TcpStream::connect(c.addrs[2]).await.unwrap();
        s.write_all(&[0, 0, 0, 3, 1, 2]).await.unwrap();
    }
    // A client whose key is not in the deployment.
    let d = DeploymentDir::open(&c.dir).unwrap();
    let stranger = Client::new(Identity::generate(), d.deployment.clone(), link(5));
    let err = stranger
        .route(f, &random_queries(5, 1, f))
        .await
        .expect_err("unknown clients are refused");
    assert!(format!("{err:#}").contains("P0"), "{err:#}");
    // P1's key with a session id no client ever sent: P0 closes that link once its pairing
    // time-out has passed.
    {
        use securerouter_runtime::messages::{Hello, PeerHello, encode};
        use securerouter_runtime::net::{NetError, SecureLink};
        let p1 = d.identity(Role::P1).unwrap();
        let p0_key = d.deployment.p0.key().unwrap();
        let cfg = link(15);
        let stream = tokio::net::TcpStream::connect(c.addrs[1]).await.unwrap();
        let mut l = SecureLink::connect(stream, &p1, &p0_key, &cfg)
            .await
            .unwrap();
        let hello = Hello::Peer(PeerHello {
            session: SessionId::random(),
            circuit: CircuitKind::RouterHead,
            rows: 1,
            batch: 1,
        });
        l.send(&encode(&hello).unwrap()).await.unwrap();
        let t = Instant::now();
        let r = l.recv().await;
        assert!(matches!(r, Err(NetError::Closed)), "{r:?}");
        assert!(
            t.elapsed() >= Duration::from_secs(4) && t.elapsed() < Duration::from_secs(12),
            "{:?}",
            t.elapsed()
        );
    }
    // The services still serve the real client.
    let x = random_queries(6, 2, f);
    check_against_plaintext(&c, &x, &c.client().route(f, &x).await.unwrap());
}

/// Asks the dealer process for `session`'s keys as both servers at once; each server's seed,
/// or the dealer's refusal.
async fn dealer_seeds(c: &Cluster, session: SessionId) -> [anyhow::Result<[u8; 16]>; 2] {
    use securerouter_runtime::dealer::DealerStream;
    let d = DeploymentDir::open(&c.dir).unwrap();
    let dealer_key = d.deployment.dealer.key().unwrap();
    let ask = |party: u8| {
        let me = d.identity([Role::P0, Role::P1][party as usize]).unwrap();
        let addr = c.addrs[0];
        async move {
            let request = DealerRequest {
                session,
                query: CircuitKind::RouterHead,
                stage: 0,
                rows: 1,
                batch: 1,
                party,
            };
            let (seed, _keys) =
                DealerStream::open(&addr.into(), &dealer_key, &me, &link(5), request).await?;
            Ok(*seed.as_bytes())
        }
    };
    let (a, b) = tokio::join!(ask(0), ask(1));
    [a, b]
}

/// Masks never repeat (issue: a client that replays a session id after a dealer restart got
/// the same masks and keys): the dealer refuses a replayed id while it runs, and after a
/// restart the same id gets other seeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_session_id_never_gets_the_same_masks() {
    let mut c = Cluster::start("replay", 10);
    let id = SessionId::random();
    let [a0, a1] = dealer_seeds(&c, id).await.map(Result::unwrap);
    assert_ne!(a0, a1);
    for refused in dealer_seeds(&c, id).await {
        let err = format!("{:#}", refused.expect_err("a replayed id is refused"));
        assert!(err.contains("already served"), "{err}");
    }
    c.dealer.take().unwrap().kill();
    c.dealer = Some(c.service("dealer"));
    let [b0, b1] = dealer_seeds(&c, id).await.map(Result::unwrap);
    assert_ne!(a0, b0, "P0's seed repeated after a restart");
    assert_ne!(a1, b1, "P1's seed repeated after a restart");
    // Sessions after the restart still run end to end.
    let x = random_queries(7, 2, c.features());
    check_against_plaintext(&c, &x, &c.client().route(c.features(), &x).await.unwrap());
}

/// The 8-byte little-endian words of a model's weights and biases whose magnitude is at least
/// 2^8 (smaller ones, such as 0 or 1, occur in any file).
fn weight_words(layers: &[securerouter_circuits::bert::RingLayer]) -> Vec<[u8; 8]> {
    layers
        .iter()
        .flat_map(|l| l.w.iter().chain(&l.bias))
        .filter(|&&v| (v as i64).unsigned_abs() >= 1 << 8)
        .map(|v| v.to_le_bytes())
        .collect()
}

/// The words of `words` that occur anywhere in `bytes`, at any offset.
fn found_in(bytes: &[u8], words: &[[u8; 8]]) -> usize {
    let set: std::collections::HashSet<&[u8]> = words.iter().map(|w| &w[..]).collect();
    bytes.windows(8).filter(|w| set.contains(w)).count()
}

/// The dealer never holds the model (issue: the dealer's file held every plaintext weight):
/// its exported folder holds no weight of the model, what it receives from the servers in a
/// session holds none, and it serves correct sessions from that folder alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dealer_holds_and_receives_no_weight_of_the_model() {
    use securerouter_runtime::messages::{DealerChunk, decode, encode};
    use securerouter_runtime::net::SecureLink;
    let mut c = Cluster::start("blind-dealer", 10);
    let dealer_dir = temp_dir("blind-dealer-folder");
    let _ = std::fs::remove_dir_all(&dealer_dir);
    run_cli(&[
        "keys",
        "export",
        "--role",
        "dealer",
        "--deployment",
        c.dir.to_str().unwrap(),
        "--out",
        dealer_dir.to_str().unwrap(),
    ]);
    let d = DeploymentDir::open(&c.dir).unwrap();
    let words = weight_words(
        &securerouter_circuits::router_head::ring_layers(&d.plain_model().unwrap()).unwrap(),
    );
    assert!(words.len() > 100, "the model has weights to look for");
    // The search finds the weights where they are: in the model provider's plaintext (as
    // ring words) and in no server's file either.
    let plain: Vec<u8> = words.concat();
    assert_eq!(found_in(&plain, &words), words.len());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dealer_dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            found_in(&bytes, &words),
            0,
            "{} holds weights",
            path.display()
        );
        names.push(path.file_name().unwrap().to_str().unwrap().to_string());
    }
    names.sort();
    assert_eq!(names, ["dealer.key", "dealer.model", "deployment.json"]);
    for server in ["p0.model", "p1.model"] {
        let bytes = std::fs::read(c.dir.join(server)).unwrap();
        assert_eq!(found_in(&bytes, &words), 0, "{server} holds weights");
    }

    // In the dealer's place, a recorder with the dealer's key takes every message the two
    // servers send it for a session, then refuses the session.
    c.dealer.take().unwrap().kill();
    let listener = tokio::net::TcpListener::bind(c.addrs[0]).await.unwrap();
    let dealer_id = DeploymentDir::open(&dealer_dir)
        .unwrap()
        .identity(Role::Dealer)
        .unwrap();
    let servers = [
        d.deployment.p0.key().unwrap(),
        d.deployment.p1.key().unwrap(),
    ];
    let recorder = tokio::spawn(async move {
        let mut received = Vec::new();
        for _ in 0..2 {
            let (stream, _) = listener.accept().await.unwrap();
            let mut link = SecureLink::accept(stream, &dealer_id, &servers, &link(5))
                .await
                .unwrap();
            let mut frames = vec![link.recv().await.unwrap()];
            let refused: DealerChunk = DealerChunk::Refused("recorded".into());
            link.send(&encode(&refused).unwrap()).await.unwrap();
            // Anything more the server sends, until it closes the link.
            while let Ok(Ok(frame)) =
                tokio::time::timeout(Duration::from_secs(5), link.recv()).await
            {
                frames.push(frame);
            }
            received.push(frames);
        }
        received
    });
    let f = c.features();
    let x = random_queries(8, 2, f);
    assert!(c.client().route(f, &x).await.is_err());
    let received = recorder.await.unwrap();
    let mut parties = Vec::new();
    for frames in &received {
        assert_eq!(frames.len(), 1, "a server sends the dealer one request");
        assert_eq!(found_in(&frames[0], &words), 0);
        let request: DealerRequest = decode(&frames[0], "request").unwrap();
        assert_eq!((request.query, request.stage), (CircuitKind::RouterHead, 0));
        parties.push(request.party);
    }
    parties.sort();
    assert_eq!(parties, [0, 1]);

    // The real dealer, from its folder alone, serves sessions that match the plaintext.
    let t = c.timeout.to_string();
    let args = [
        "dealer",
        "--deployment",
        dealer_dir.to_str().unwrap(),
        "--timeout",
        &t,
    ];
    c.dealer = Some(Service::start("dealer", &args, c.addrs[0]));
    let x = random_queries(9, 3, f);
    check_against_plaintext(&c, &x, &c.client().route(f, &x).await.unwrap());
    let _ = std::fs::remove_dir_all(&dealer_dir);
}

/// Resident memory of a process in MiB (Linux `VmRSS`).
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// No client or stranger can stop a service: 2,000 idle unauthenticated connections to each
/// server and 1,000 to the dealer, plus a client flooding half-open sessions (hellos to one
/// server only, beyond its per-client cap), are held open while a legitimate client's query
/// succeeds; the idle connections are closed at the handshake deadline; memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_connections_and_half_open_sessions_do_not_stop_a_service() {
    use securerouter_runtime::messages::{
        ClientHello, Hello, InputShare, ServerReply, decode, encode,
    };
    use securerouter_runtime::net::SecureLink;
    use tokio::io::AsyncReadExt;
    securerouter_runtime::service::raise_open_file_limit();
    // Long enough for 5,000 connects on a loaded machine (an accept backlog that overflows
    // makes some wait for SYN retransmits, seconds each).
    let handshake_s = 30;
    let hs = handshake_s.to_string();
    let c = Cluster::start_with(
        "flood",
        // Above the handshake deadline, which then closes the idle connections.
        40,
        &["--handshake-timeout", &hs, "--max-sessions-per-client", "4"],
        |dir| {
            let dir = dir.to_str().unwrap();
            run_cli(&["keys", "add-client", "flood", "--deployment", dir]);
            None
        },
    );
    let pids = [&c.dealer, &c.p0, &c.p1].map(|s| s.as_ref().unwrap().pid());
    let before = pids.map(rss_mb);
    let f = c.features();

    // Idle connections: TCP open, not a byte sent.
    let opened = Instant::now();
    let mut idle = Vec::new();
    for (addr, n) in [(c.addrs[1], 2000), (c.addrs[2], 2000), (c.addrs[0], 1000)] {
        for _ in 0..n {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
    }

    let all_open = Instant::now();
    println!(
        "{} idle connections opened in {:.1} s",
        idle.len(),
        opened.elapsed().as_secs_f64()
    );
    // Half-open sessions: the flooding client says hello to one server only and waits.
    let d = DeploymentDir::open(&c.dir).unwrap();
    let flood = d.client_identity("flood").unwrap();
    let mut half_open = Vec::new();
    for (i, (addr, key)) in [
        (c.addrs[1], d.deployment.p0.key().unwrap()),
        (c.addrs[2], d.deployment.p1.key().unwrap()),
    ]
    .into_iter()
    .enumerate()
    {
        for _ in 0..12 {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut l = SecureLink::connect(stream, &flood, &key, &link(30))
                .await
                .unwrap();
            let input = if i == 0 {
                InputShare::Seed([1; 16])
            } else {
                InputShare::words(&vec![0u64; f])
            };
            let hello = Hello::Client(ClientHello {
                session: SessionId::random(),
                circuit: CircuitKind::RouterHead,
                rows: 1,
                batch: 1,
                input,
            });
            l.send(&encode(&hello).unwrap()).await.unwrap();
            half_open.push(l);
        }
    }

    // The legitimate client is served meanwhile.
    let x = random_queries(8, 2, f);
    let t = Instant::now();
    let got = c.client().route(f, &x).await.unwrap();
    check_against_plaintext(&c, &x, &got);
    println!(
        "a query while 5,000 idle connections and 24 half-open sessions were held: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let still_open = idle
        .iter()
        .filter(|s| {
            let mut b = [0u8; 1];
            matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert_eq!(
        still_open,
        idle.len(),
        "the query must run while the idle connections are held open"
    );
    let during = pids.map(rss_mb);

    // Past its cap of 4 sessions in flight, the flooding client is refused at once.
    let mut busy = 0;
    for l in &mut half_open {
        if let Ok(Ok(bytes)) = tokio::time::timeout(Duration::from_millis(200), l.recv()).await {
            match decode::<ServerReply>(&bytes, "reply").unwrap() {
                ServerReply::Failed(why) => {
                    assert!(why.contains("sessions in flight"), "{why}");
                    busy += 1;
                }
                ServerReply::Ok(_) => panic!("a half-open session cannot succeed"),
            }
        }
    }
    assert_eq!(
        busy,
        2 * (12 - 4),
        "each server admits 4 of the 12 and refuses 8"
    );

    // Idle connections are closed at the handshake deadline, counted from their accept: a
    // connection the client saw open may wait in a full accept queue a while before that.
    let mut closed = 0;
    let deadline = all_open + Duration::from_secs(2 * handshake_s);
    for s in &mut idle {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut b = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(left, s.read(&mut b)).await {
            closed += 1;
        }
    }
    assert_eq!(
        closed,
        idle.len(),
        "every idle connection is closed by its service"
    );
    let after = pids.map(rss_mb);
    for (i, name) in ["dealer", "P0", "P1"].iter().enumerate() {
        println!(
            "{name}: resident {:.1} MiB before, {:.1} MiB under the flood, {:.1} MiB after",
            before[i], during[i], after[i]
        );
        assert!(
            during[i] < before[i] + 256.0,
            "{name} grew by more than 256 MiB"
        );
    }
    drop(idle);
    drop(half_open);
    let x = random_queries(9, 1, f);
    check_against_plaintext(&c, &x, &c.client().route(f, &x).await.unwrap());
}

/// A server out of file descriptors keeps serving (issue: one failed `accept` ended the
/// service): P0 may open 64 files and gets 300 connections at once; it logs the failed accepts,
/// stays up, and serves the next client once they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_out_of_descriptors_keeps_serving() {
    securerouter_runtime::service::raise_open_file_limit();
    let mut c = Cluster::start_with("emfile", 10, &["--handshake-timeout", "2"], |_| Some(64));
    let f = c.features();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(c.addrs[1]).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        c.p0.as_mut().unwrap().is_running(),
        "P0 died out of descriptors"
    );
    drop(idle);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        c.p0.as_mut().unwrap().is_running(),
        "P0 died out of descriptors"
    );
    let x = random_queries(10, 2, f);
    check_against_plaintext(&c, &x, &c.client().route(f, &x).await.unwrap());
}
