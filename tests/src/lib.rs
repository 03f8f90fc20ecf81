//! # securerouter-tests
//!
//! End-to-end tests that cross crate and process boundaries: a device client feeding the
//! servers' side of core, and dealer, P0 and P1 as real processes on loopback. The tests live
//! in `tests/`; this library holds what they share.
#![forbid(unsafe_code)]

use securerouter_core::prg::{AesCtr, Domain, Seed};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A deterministic test RNG: fixed seed per `tag`, so failures reproduce.
pub fn test_rng(tag: u64) -> AesCtr {
    AesCtr::new(&Seed::from_bytes(*b"securerouter-tst"), Domain(tag))
}

/// The `securerouter` binary built for this test run (`cargo test --workspace` builds it).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> → target/<profile>/securerouter
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = dir.join(format!("securerouter{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p securerouter-host` (or `cargo test --workspace`)",
        bin.display()
    );
    bin
}

/// Whether the real model and data assets are cached. Skips (saying so) when they are
/// missing, except under CI, where that is a failure.
pub fn assets_present() -> bool {
    let cache = securerouter_ml::assets::cache_dir(None).expect("a cache directory");
    let ok = securerouter_ml::assets::MINILM_L6.path(&cache).is_ok()
        && securerouter_ml::data::rotten_tomatoes(&cache).is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "assets missing from {}: run `securerouter assets fetch`",
            cache.display()
        );
        println!("SKIPPED: assets missing from {}", cache.display());
    }
    ok
}

/// Runs the `securerouter` binary with `args`, asserting that it succeeds; its standard
/// output.
pub fn securerouter_ok(args: &[&str]) -> String {
    let out = std::process::Command::new(binary())
        .args(args)
        .output()
        .expect("running securerouter");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "securerouter {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The widest gap between the plaintext pool's top two router scores (or logits) that the
/// secure pool's fixed-point rounding may close: a secure route and label must equal the
/// plaintext pool's on every call clearer than this.
pub const CLOSE_CALL: f64 = 0.05;

/// Checks a `bench` JSON line's secure labels against the f64 reference's: every logit within
/// `max_err` of the reference's, and every label that differs a call closer than twice the
/// largest logit error (the only calls such an error can flip: random-weight models give
/// near-ties).
pub fn assert_labels_follow_the_reference(v: &serde_json::Value, max_err: f64) {
    let err = v["max_abs_logit_err"].as_f64().expect("max_abs_logit_err");
    assert!(err < max_err, "{v}");
    let flips = v["disagreements"].as_array().expect("disagreements");
    for d in flips {
        assert!(d["margin"].as_f64().unwrap() < 2.0 * err, "{v}");
    }
    let queries = v["queries"].as_f64().expect("queries");
    let agreement = v["label_agreement"].as_f64().expect("label_agreement");
    assert!(
        ((1.0 - agreement) * queries - flips.len() as f64).abs() < 1e-9,
        "{v}"
    );
}

/// A fresh, empty directory under the system's temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "securerouter-{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a temp dir");
    dir
}

/// A loopback address with a port that was free a moment ago, for a service to bind.
///
/// The port comes from below the kernel's ephemeral range, each handed out once per process:
/// a port the kernel picks for `:0` is ephemeral, and another test's outgoing connection may
/// take it before the service binds it.
pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > LOW + 1_000 && ephemeral_low <= 65_536 {
        let span = ephemeral_low - LOW;
        // Processes start at different places, so two test binaries rarely meet.
        let start = std::process::id().wrapping_mul(2_654_435_761) % span;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            if n >= span {
                break;
            }
            let port = (LOW + (start + n) % span) as u16;
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                return l.local_addr().expect("its address");
            }
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
    l.local_addr().expect("its address")
}

/// A service process, killed when dropped.
pub struct Service {
    /// What it is, for messages.
    pub name: String,
    child: Child,
}

impl Service {
    /// Starts `securerouter <args>` and waits until `addr` accepts connections.
    pub fn start(name: &str, args: &[&str], addr: SocketAddr) -> Service {
        Self::start_with_open_files(name, args, addr, None)
    }

    /// [`Service::start`], with at most `open_files` descriptors (soft and hard limit) when
    /// given: the process runs out of them as a busy host would.
    pub fn start_with_open_files(
        name: &str,
        args: &[&str],
        addr: SocketAddr,
        open_files: Option<u64>,
    ) -> Service {
        let mut command = match open_files {
            None => Command::new(binary()),
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(binary());
                c
            }
        };
        let child = command
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let mut s = Service {
            name: name.to_string(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("{name} exited before listening: {status}");
            }
            assert!(Instant::now() < deadline, "{name} did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Freezes the process (SIGSTOP): it stops answering without closing its sockets.
    pub fn freeze(&self) {
        signal(self.pid(), "-STOP");
    }

    /// Sends the process `sig` (e.g. `-TERM`, `-CONT`).
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// Waits up to `limit` for the process to exit; its status, or `None` if it still runs.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill {sig} {pid} failed");
}

/// Runs `securerouter <args>` to completion and returns its stdout, panicking with stderr on
/// failure.
pub fn run_cli(args: &[&str]) -> String {
    let out = Command::new(binary())
        .args(args)
        .output()
        .expect("running securerouter");
    assert!(
        out.status.success(),
        "securerouter {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `securerouter <args>` to completion, whatever its status.
pub fn securerouter(args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .output()
        .expect("running securerouter")
}

/// The last line of a command's stdout, parsed as JSON.
pub fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).expect("JSON")
}

/// A file or folder of the ml crate's test fixtures (`host/ml/tests/fixtures`).
pub fn ml_fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../host/ml/tests/fixtures")
        .join(path)
}

/// Checks a deployed pool's answer `a` (a `client` JSON line) to held-out example `e` (query
/// `i`) against the plaintext pool: the same route unless the router's call was closer than
/// [`CLOSE_CALL`], and on the same route the same label unless the expert's call was.
pub fn assert_answer_follows_the_plain_pool(
    plain: &securerouter_runtime::served_pool::ServedPool,
    i: usize,
    e: &serde_json::Value,
    a: &serde_json::Value,
) {
    let want = plain
        .answer(e["text"].as_str().unwrap(), e["text_pair"].as_str())
        .unwrap();
    let margin = securerouter_ml::head::top_two_margin(&want.scores);
    if a["route"] != want.route && margin >= CLOSE_CALL {
        panic!(
            "query {i}: routed to {} not {} (margin {margin}): {a}",
            a["route"], want.route
        );
    }
    if a["route"] == want.route {
        let label = securerouter_ml::head::argmax(&want.logits);
        let margin = securerouter_ml::head::top_two_margin(&want.logits);
        assert!(
            a["class"] == label || margin < CLOSE_CALL,
            "query {i}: {a} vs {want:?}"
        );
        assert_eq!(
            a["label"],
            plain.manifest.labels[a["class"].as_u64().unwrap() as usize],
            "query {i}: {a}"
        );
    }
    assert!(a["online_s"].as_f64().unwrap() > 0.0, "{a}");
    assert!(a["online_bytes_per_server"].as_u64().unwrap() > 0, "{a}");
}

/// Trains a quick pool in `pool` (MiniLM-L6 cut to 1 and 2 layers, one epoch, 32 tokens, no
/// cost measurement) on the data `data` names (`train pool`'s options; none: the Rotten
/// Tomatoes sentences), then its router on the costs 1 and 2; returns `train pool`'s and
/// `train router`'s stdout.
pub fn train_quick_pool(pool: &Path, data: &[&str]) -> (String, String) {
    let pool = pool.to_str().expect("a UTF-8 path");
    let mut args = vec!["train", "pool", "--pool-dir", pool];
    args.extend(data);
    args.extend([
        "--experts",
        "1,2",
        "--epochs",
        "1",
        "--seq",
        "32",
        "--cost-queries",
        "0",
    ]);
    let built = securerouter_ok(&args);
    let router = securerouter_ok(&[
        "train",
        "router",
        "--pool-dir",
        pool,
        "--epochs",
        "5",
        "--costs",
        "1,2",
    ]);
    (built, router)
}

/// Checks a `bench pool` JSON line against the plaintext pool it reports on: every route or
/// label that differs was a call closer than [`CLOSE_CALL`], and the route distribution sums
/// to 1.
pub fn assert_pool_bench_follows_the_plain_pool(v: &serde_json::Value) {
    for d in v["disagreements"].as_array().expect("disagreements") {
        assert!(d["margin"].as_f64().unwrap() < CLOSE_CALL, "{v}");
    }
    let dist: f64 = v["route_distribution"]
        .as_array()
        .expect("route_distribution")
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum();
    assert!((dist - 1.0).abs() < 1e-9, "{v}");
}
