//! A trained pool served from three hosts: the dealer, P0, P1 and the client each in its own
//! network namespace, joined to a hub namespace by a veth pair with its own addresses
//! (10.77.k.2 on the role's side, 10.77.k.1 on the hub's, the hub forwarding between them), so
//! the roles reach each other only over those links, never over a shared loopback. `deploy`
//! names the services by those addresses; each service starts from its own folder alone and
//! listens where the deployment advertises it. `client --jsonl` on the pool's held-out Rotten
//! Tomatoes sentences gives the plaintext pool's routes and labels, and the traffic between
//! the servers crossed the hub. P1 killed in the middle of a batch: the rest of the batch
//! fails with errors naming P1 and the command fails; P1 restarted from its folder: the next
//! query succeeds.
//!
//! Needs root (`unshare -n`, `nsenter`, `ip`): skips elsewhere, except under CI. The host's own
//! network is never touched: every link is created inside the hub's namespace and moved from
//! there, and every namespace dies with the holder processes the test kills at the end.

use securerouter_runtime::served_pool::ServedPool;
use securerouter_tests::{
    CLOSE_CALL, assert_answer_follows_the_plain_pool, assets_present, binary,
    securerouter_ok as run, temp_dir, train_quick_pool,
};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Each role's namespace, its link number k (10.77.k.0/24) and the port its service listens
/// on (the client serves nothing).
const ROLES: [(&str, u8, u16); 4] = [
    ("dealer", 1, 7100),
    ("p0", 2, 7101),
    ("p1", 3, 7102),
    ("client", 4, 0),
];

/// The veth ends of `role`'s link: in the hub's namespace, and in the role's.
fn link_ends(role: &str) -> (String, String) {
    (format!("h-{role}"), format!("v-{role}"))
}

/// Where `role`'s service is reached (and listens).
fn service_addr(role: &str) -> String {
    let (_, k, port) = ROLES.iter().find(|r| r.0 == role).expect("a role");
    format!("10.77.{k}.2:{port}")
}

/// Whether private network namespaces can be made here; skips (saying so) when not, except
/// under CI, where that is a failure.
fn namespaces_available() -> bool {
    let ok = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "`unshare -n` is not available: this test needs root to make network namespaces"
        );
        println!("SKIPPED: a pool over network namespaces (`unshare -n` fails here; needs root)");
    }
    ok
}

/// The network namespaces, each held open by a `sleep` started with `unshare -n`; every holder
/// is killed when this is dropped (on panic too), and each namespace, with its links, goes
/// once the last process in it has ended.
struct Namespaces {
    holders: Vec<(&'static str, Child)>,
}

impl Namespaces {
    /// A fresh namespace for each of `names`.
    fn new(names: &[&'static str]) -> Namespaces {
        let mut ns = Namespaces {
            holders: Vec::new(),
        };
        let own = std::fs::read_link("/proc/self/ns/net").expect("this process's namespace");
        for &name in names {
            let child = Command::new("unshare")
                .args(["-n", "sleep", "600"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting the holder of {name}'s namespace: {e}"));
            let pid = child.id();
            ns.holders.push((name, child));
            // `unshare` execs `sleep` in the new namespace: wait until it is there, so that no
            // command meant for the namespace runs in the host's.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let current = std::fs::read_link(format!("/proc/{pid}/ns/net"));
                if current.as_ref().is_ok_and(|c| *c != own) {
                    break;
                }
                let (_, holder) = ns.holders.last_mut().unwrap();
                if let Ok(Some(status)) = holder.try_wait() {
                    panic!("the holder of {name}'s namespace exited: {status}");
                }
                assert!(
                    Instant::now() < deadline,
                    "the holder of {name}'s namespace ({pid}) never left the host's namespace"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        ns
    }

    /// The process that holds `name`'s namespace.
    fn pid(&self, name: &str) -> u32 {
        self.holders
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no namespace {name}"))
            .1
            .id()
    }

    /// `program`, to run in `name`'s namespace (`nsenter` execs it: the child's id is its id).
    fn command(&self, name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pid(name).to_string(), "-n"])
            .arg(program)
            .stdin(Stdio::null());
        c
    }

    /// Runs `program args` in `name`'s namespace, asserting that it succeeds; its stdout.
    fn run(&self, name: &str, program: &str, args: &[&str]) -> String {
        let out = self
            .command(name, program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program} in {name}'s namespace: {e}"));
        assert!(
            out.status.success(),
            "`{program} {}` in {name}'s namespace failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether a TCP connection from `name`'s namespace to `addr` (IP:PORT) is accepted.
    fn connects(&self, name: &str, addr: &str) -> bool {
        let (ip, port) = addr.split_once(':').expect("IP:PORT");
        self.command(name, "timeout")
            .args(["5", "bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/{port}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Bytes received and sent by the interface `dev` of `name`'s namespace (its
    /// `/proc/net/dev`, which `cat` reads in that namespace).
    fn bytes_through(&self, name: &str, dev: &str) -> u64 {
        let table = self.run(name, "cat", &["/proc/net/dev"]);
        let row = table
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{dev}:")))
            .unwrap_or_else(|| panic!("no {dev} in {name}'s /proc/net/dev:\n{table}"));
        let fields: Vec<u64> = row
            .split_whitespace()
            .map(|f| f.parse().expect("a counter"))
            .collect();
        fields[0] + fields[8]
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for (_, holder) in &mut self.holders {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

/// The star: for each role a veth pair made in the hub's namespace, one end moved into the
/// role's; 10.77.k.1/24 on the hub's end, 10.77.k.2/24 on the role's, with a default route
/// through the hub, which forwards.
fn join_to_hub(ns: &Namespaces) {
    ns.run("hub", "ip", &["link", "set", "lo", "up"]);
    for (role, k, _) in ROLES {
        let (hub_end, role_end) = link_ends(role);
        let pid = ns.pid(role).to_string();
        let hub_addr = format!("10.77.{k}.1");
        ns.run(
            "hub",
            "ip",
            &[
                "link", "add", &hub_end, "type", "veth", "peer", "name", &role_end,
            ],
        );
        ns.run("hub", "ip", &["link", "set", &role_end, "netns", &pid]);
        ns.run(
            "hub",
            "ip",
            &["addr", "add", &format!("{hub_addr}/24"), "dev", &hub_end],
        );
        ns.run("hub", "ip", &["link", "set", &hub_end, "up"]);
        ns.run(
            role,
            "ip",
            &["addr", "add", &format!("10.77.{k}.2/24"), "dev", &role_end],
        );
        ns.run(role, "ip", &["link", "set", &role_end, "up"]);
        ns.run(role, "ip", &["link", "set", "lo", "up"]);
        ns.run(role, "ip", &["route", "add", "default", "via", &hub_addr]);
    }
    ns.run("hub", "sysctl", &["-w", "net.ipv4.ip_forward=1"]);
}

/// A service in its namespace, killed when dropped; it also exits when the test ends another
/// way, as its standard input (a pipe the test holds) closes.
struct NsService {
    name: &'static str,
    child: Child,
}

impl NsService {
    /// Starts `role`'s service in its namespace from its own folder under `out`, listening
    /// where the deployment advertises it, and waits until the client's namespace reaches it.
    fn start(ns: &Namespaces, out: &Path, role: &'static str) -> NsService {
        let folder = out.join(role);
        let mut args = match role {
            "dealer" => vec!["dealer"],
            "p0" => vec!["serve", "--party", "0"],
            _ => vec!["serve", "--party", "1"],
        };
        args.extend([
            "--deployment",
            folder.to_str().unwrap(),
            "--timeout",
            "5",
            "--exit-with-stdin",
        ]);
        let child = ns
            .command(role, binary())
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {role}: {e}"));
        let mut s = NsService { name: role, child };
        let addr = service_addr(role);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ns.connects("client", &addr) {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("{role} exited before listening on {addr}: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{role} is not reachable at {addr} from the client's namespace"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// Kills the service and reaps it.
    fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NsService {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            println!("stopping {}", self.name);
        }
        self.stop();
    }
}

/// Runs `securerouter client --deployment <client folder> <args>` in the client's namespace.
fn client(ns: &Namespaces, out: &Path, args: &[&str]) -> Output {
    ns.command("client", binary())
        .args([
            "client",
            "--deployment",
            out.join("client").to_str().unwrap(),
        ])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running the client in its namespace")
}

fn write_queries(path: &Path, examples: &[serde_json::Value], n: usize) {
    let lines: Vec<String> = examples[..n].iter().map(|e| e.to_string()).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn a_pool_serves_from_three_namespaces_over_veth_links() {
    if !namespaces_available() || !assets_present() {
        return;
    }
    let work = temp_dir("deploy-netns");
    let pool = work.join("pool");
    let out = work.join("deployment");
    let (pool_s, out_s) = (pool.to_str().unwrap(), out.to_str().unwrap());
    train_quick_pool(&pool, &["--limit", "48"]);

    let ns = Namespaces::new(&["hub", "dealer", "p0", "p1", "client"]);
    join_to_hub(&ns);

    let report = run(&[
        "deploy",
        "--pool",
        pool_s,
        "--out",
        out_s,
        "--dealer",
        &service_addr("dealer"),
        "--p0",
        &service_addr("p0"),
        "--p1",
        &service_addr("p1"),
    ]);
    assert!(report.contains("client/"), "{report}");
    let advertised = std::fs::read_to_string(out.join("client/deployment.json")).unwrap();
    for role in ["dealer", "p0", "p1"] {
        let addr = service_addr(role);
        assert!(advertised.contains(&format!("\"{addr}\"")), "{advertised}");
    }

    // Each service from its own folder, in its own namespace, on its advertised address.
    let dealer = NsService::start(&ns, &out, "dealer");
    let p0 = NsService::start(&ns, &out, "p0");
    let mut p1 = Some(NsService::start(&ns, &out, "p1"));

    // The pool's own held-out sentences, through the client's folder alone.
    let cache = securerouter_ml::assets::cache_dir(None).unwrap();
    let plain = ServedPool::load(&pool, &cache).unwrap();
    let examples: Vec<serde_json::Value> = std::fs::read_to_string(pool.join("held-out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        examples.len() >= 30,
        "{} held-out sentences",
        examples.len()
    );
    let queries = work.join("queries.jsonl");
    write_queries(&queries, &examples, 6);
    let (p0_link, p1_link) = (link_ends("p0").0, link_ends("p1").0);
    let before = [
        ns.bytes_through("hub", &p0_link),
        ns.bytes_through("hub", &p1_link),
    ];
    let answered = client(
        &ns,
        &out,
        &["--jsonl", queries.to_str().unwrap(), "--concurrency", "2"],
    );
    let stdout = String::from_utf8_lossy(&answered.stdout);
    assert!(
        answered.status.success(),
        "the client failed: {}\n{stdout}",
        String::from_utf8_lossy(&answered.stderr)
    );
    let answers: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(answers.len(), 6, "{stdout}");
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a["line"], i + 1, "{a}");
        assert_answer_follows_the_plain_pool(&plain, i, &examples[i], a);
    }
    // What each server sent the other online crossed the hub, on both servers' links.
    let online: u64 = answers
        .iter()
        .map(|a| a["online_bytes_per_server"].as_u64().unwrap())
        .sum();
    for (link, before) in [(&p0_link, before[0]), (&p1_link, before[1])] {
        let through = ns.bytes_through("hub", link) - before;
        assert!(
            through >= online,
            "{through} bytes through the hub's {link}, fewer than the {online} the servers \
             sent each other online"
        );
    }
    println!(
        "{} queries over the veth links: {online} online bytes per server",
        answers.len()
    );

    // P1 killed once the batch's first answer is out: the rest fail naming P1. (Each failed
    // pair of queries waits out the 5 s timeouts, P0's for P1 and the client's for P0, though
    // the client's connection to P1 is refused at once: the client waits for both servers.)
    let batch = work.join("batch.jsonl");
    write_queries(&batch, &examples, 30);
    let mut running = ns
        .command("client", binary())
        .args([
            "client",
            "--deployment",
            out.join("client").to_str().unwrap(),
        ])
        .args(["--jsonl", batch.to_str().unwrap(), "--concurrency", "2"])
        .args(["--timeout", "5"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the client in its namespace");
    let mut lines = Vec::new();
    for line in BufReader::new(running.stdout.take().unwrap()).lines() {
        let line = line.expect("the client's output");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if lines.is_empty() {
            p1.take().unwrap().kill();
        }
        lines.push(v);
    }
    let status = running.wait().unwrap();
    let all = || {
        lines
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(lines.len(), 30, "{}", all());
    assert!(
        !status.success(),
        "the client succeeded without P1:\n{}",
        all()
    );
    assert!(lines[0]["error"].is_null(), "P1 was up: {}", lines[0]);
    let mut failed = 0;
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["line"], i + 1, "{v}");
        match v["error"].as_str() {
            Some(e) => {
                failed += 1;
                assert!(!e.is_empty(), "{v}");
            }
            None => assert_answer_follows_the_plain_pool(&plain, i, &examples[i], v),
        }
    }
    let naming_p1 = lines
        .iter()
        .filter(|v| v["error"].as_str().is_some_and(|e| e.contains("P1")))
        .count();
    assert!(naming_p1 > 0, "no error names P1:\n{}", all());
    println!("P1 killed after the first answer: {failed} of 30 failed, {naming_p1} naming P1");
    if let Some(e) = lines.iter().rev().find_map(|v| v["error"].as_str()) {
        println!("the last error: {e}");
    }

    // P1 back from its folder, in its namespace: the next query succeeds.
    p1 = Some(NsService::start(&ns, &out, "p1"));
    let text = "The clerk said the office closes at five.";
    let again = client(&ns, &out, &["--text", text]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "the client failed with P1 restarted: {}\n{stdout}",
        String::from_utf8_lossy(&again.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(v["label"].is_string(), "{v}");
    let want = plain.answer(text, None).unwrap();
    assert!(
        v["route"] == want.route
            || securerouter_ml::head::top_two_margin(&want.scores) < CLOSE_CALL,
        "{v} vs {want:?}"
    );

    // Everything stopped; the namespaces, and the links with them, gone; none ever in the
    // host's namespace.
    drop(p1);
    drop(p0);
    drop(dealer);
    drop(ns);
    let host_links = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip link");
    let host_links = String::from_utf8_lossy(&host_links.stdout);
    for (role, _, _) in ROLES {
        let (hub_end, role_end) = link_ends(role);
        for end in [hub_end, role_end] {
            assert!(
                !host_links.contains(&format!(" {end}@"))
                    && !host_links.contains(&format!(" {end}:")),
                "{end} is in the host's namespace:\n{host_links}"
            );
        }
    }
    std::fs::remove_dir_all(&work).unwrap();
}
