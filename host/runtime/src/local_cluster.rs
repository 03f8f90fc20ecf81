//! A deployment on this machine for `bench` and `demo`: the dealer, P0 and P1 as child
//! processes of this binary on loopback, over the encrypted links. The processes are killed and
//! the throw-away deployment directory (secret keys included) removed on drop, and on SIGINT or
//! SIGTERM, which end the process without running `Drop`.

use crate::client::Client;
use crate::deployment::{DeploymentDir, Role, random_seed};
use crate::error::{Error, Result};
use crate::net::{LinkConfig, ServiceAddr};
use crate::relay::{LinkModel, Relay};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a service may take to start listening (loading a big model takes a while).
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// How the two servers of a [`LocalCluster`] run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerFlags {
    /// Receive a session's whole key stream before its online phase (`--prefetch-keys`):
    /// benchmarks time the online phase alone so.
    pub prefetch_keys: bool,
    /// Run the servers' kernels on the GPU where one is usable (`--gpu`).
    pub gpu: bool,
    /// Threads each server's CPU kernels use (`--kernel-threads`; 0: one per core).
    pub kernel_threads: usize,
    /// The network between the roles: unless loopback, every link to P0 and to P1 (the
    /// client's, and P1's to P0) goes through a [`Relay`] that runs this model. The dealer's
    /// links stay on loopback: its keys are offline traffic, reported as key bytes.
    pub link: LinkModel,
}

/// The deployment directories of this process's live clusters, for the signal watcher.
static LIVE_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Makes SIGINT and SIGTERM remove the live clusters' directories before the process exits
/// with the signal's status (130 or 143). Installed once, with the first cluster, and in
/// place when this returns.
#[cfg(unix)]
fn remove_dirs_on_signal() {
    static WATCHER: std::sync::Once = std::sync::Once::new();
    WATCHER.call_once(|| {
        let (ready, installed) = std::sync::mpsc::sync_channel(1);
        let watcher = std::thread::Builder::new()
            .name("cluster-signals".into())
            .spawn(move || {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    let (Ok(mut int), Ok(mut term)) = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                    ) else {
                        return;
                    };
                    let _ = ready.send(());
                    let code = tokio::select! {
                        _ = int.recv() => 130,
                        _ = term.recv() => 143,
                    };
                    let dirs = LIVE_DIRS.lock().map(|d| d.clone()).unwrap_or_default();
                    for dir in dirs {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                    std::process::exit(code);
                });
            });
        if watcher.is_ok() {
            let _ = installed.recv_timeout(Duration::from_secs(5));
        }
    });
}

#[cfg(not(unix))]
fn remove_dirs_on_signal() {}

/// Dealer, P0 and P1 running a deployment in a directory of their own.
pub struct LocalCluster {
    deployment: DeploymentDir,
    /// Dealer, P0, P1.
    children: Vec<Child>,
    timeout_s: u64,
    /// The relays in front of P0 and P1 and the runtime that drives them, for a modelled link.
    relays: Option<(tokio::runtime::Runtime, Vec<Relay>)>,
}

impl LocalCluster {
    /// A fresh, unique deployment directory under the system's temporary directory.
    pub fn fresh_dir(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "securerouter-{tag}-{}",
            hex::encode(random_seed().as_bytes())
        ))
    }

    /// Three free loopback addresses: dealer, P0, P1.
    pub fn free_addrs() -> Result<[ServiceAddr; 3]> {
        let free = || -> Result<SocketAddr> {
            let free_port = |source| Error::Tcp {
                what: "finding a free port".to_string(),
                source,
            };
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(free_port)?;
            l.local_addr().map_err(free_port)
        };
        Ok([free()?.into(), free()?.into(), free()?.into()])
    }

    /// Starts the dealer and both servers of `deployment` (its addresses must be free) and waits
    /// until each listens. `timeout_s` bounds every silent link; `servers` says how the two
    /// servers run. Each service logs warnings to `NAME.log` in the directory.
    pub fn start(deployment: DeploymentDir, timeout_s: u64, servers: ServerFlags) -> Result<Self> {
        let exe = std::env::current_exe().map_err(|source| Error::Process {
            what: "locating the securerouter binary".to_string(),
            source,
        })?;
        Self::start_with(&exe, deployment, timeout_s, servers)
    }

    /// [`start`](Self::start), with the services run by the `securerouter` binary at `exe`
    /// (for programs other than `securerouter` itself, such as test harnesses).
    pub fn start_with(
        exe: &Path,
        deployment: DeploymentDir,
        timeout_s: u64,
        servers: ServerFlags,
    ) -> Result<Self> {
        let d = deployment.path().to_string_lossy().to_string();
        let t = timeout_s.to_string();
        let threads = servers.kernel_threads.to_string();
        // Each service exits when its standard input, a pipe this process holds, closes: so
        // the services end with this process even when it is killed without running `Drop`.
        let common = ["--deployment", &d, "--timeout", &t, "--exit-with-stdin"];
        let mut roles: [(&str, Vec<&str>); 3] = [
            ("dealer", vec!["dealer"]),
            ("p0", vec!["serve", "--party", "0"]),
            ("p1", vec!["serve", "--party", "1"]),
        ];
        // Where each service listens: its advertised address, or behind a relay a port of its
        // own that the relay at the advertised address forwards to.
        let d = &deployment.deployment;
        let advertised = [&d.dealer.addr, &d.p0.addr, &d.p1.addr].map(ToString::to_string);
        let mut listen = advertised.clone();
        let mut relays = None;
        if !servers.link.is_loopback() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("link-relay")
                .enable_all()
                .build()
                .map_err(|source| Error::Process {
                    what: "starting the relays' runtime".to_string(),
                    source,
                })?;
            let mut started = Vec::new();
            for i in [1, 2] {
                let front = [&d.p0.addr, &d.p1.addr][i - 1].ip().ok_or_else(|| {
                    Error::Invalid("a relayed cluster's servers need IP addresses".into())
                })?;
                let back: ServiceAddr = Self::free_addrs()?[0].clone();
                listen[i] = back.to_string();
                started.push(rt.block_on(Relay::start(front, back, servers.link))?);
            }
            relays = Some((rt, started));
        }
        for (i, (_, args)) in roles.iter_mut().enumerate() {
            args.extend(common);
            if listen[i] != advertised[i] {
                args.extend(["--listen", listen[i].as_str()]);
            }
            if i > 0 && servers.prefetch_keys {
                args.push("--prefetch-keys");
            }
            if i > 0 && servers.gpu {
                args.push("--gpu");
            }
            if i > 0 && servers.kernel_threads > 0 {
                args.extend(["--kernel-threads", &threads]);
            }
        }
        remove_dirs_on_signal();
        if let Ok(mut live) = LIVE_DIRS.lock() {
            live.push(deployment.path().to_path_buf());
        }
        let mut cluster = LocalCluster {
            deployment,
            children: Vec::new(),
            timeout_s,
            relays,
        };
        for (name, args) in roles {
            let log_path = cluster.dir().join(format!("{name}.log"));
            let log = std::fs::File::create(&log_path).map_err(Error::io("creating", &log_path))?;
            let child = Command::new(exe)
                .args(args)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|source| Error::Process {
                    what: format!("starting the {name} process"),
                    source,
                })?;
            cluster.children.push(child);
        }
        let deadline = Instant::now() + START_TIMEOUT;
        for (i, addr) in listen.iter().enumerate() {
            loop {
                let name = ["dealer", "p0", "p1"][i];
                let exited = cluster.children[i]
                    .try_wait()
                    .map_err(|source| Error::Process {
                        what: format!("watching the {name} process"),
                        source,
                    })?;
                if let Some(status) = exited {
                    let log = cluster.dir().join(format!("{name}.log"));
                    let why = std::fs::read_to_string(&log).unwrap_or_default();
                    return Err(Error::NotStarted(format!(
                        "service {i} exited ({status}) before listening: {}",
                        why.trim()
                    )));
                }
                if std::net::TcpStream::connect(addr.as_str()).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::NotStarted(format!(
                        "the service at {addr} did not start listening within {} s",
                        START_TIMEOUT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(cluster)
    }

    /// The deployment directory.
    pub fn dir(&self) -> &Path {
        self.deployment.path()
    }

    /// A client of the deployment with its identity.
    pub fn client(&self) -> Result<Client> {
        let link = LinkConfig {
            io_timeout: Duration::from_secs(self.timeout_s),
            ..LinkConfig::default()
        };
        Ok(Client::new(
            self.deployment.identity(Role::Client)?,
            self.deployment.deployment.clone(),
            link,
        ))
    }

    /// Peak resident memory of the dealer, P0 and P1 so far, in MiB (0 where unknown).
    pub fn peak_rss_mb(&self) -> [f64; 3] {
        [0, 1, 2].map(|i| crate::sys::peak_rss_of(self.children[i].id()))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(self.dir());
        if let Ok(mut live) = LIVE_DIRS.lock() {
            live.retain(|d| d != self.dir());
        }
        if let Some((rt, relays)) = self.relays.take() {
            drop(relays);
            // Never blocks, so a cluster may be dropped inside another runtime.
            rt.shutdown_background();
        }
    }
}
