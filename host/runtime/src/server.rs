//! The server service, P0 or P1: accepts clients, pairs each session with the other server by
//! its id, fetches the session's keys from the dealer, runs the circuit and returns output
//! shares. Every connection is its own task, so a failing session (a dead peer, a bad frame, a
//! time-out) ends with an error reply and a log line while the others go on.
//!
//! Clients are untrusted: a session is admitted only under the caps of [`ServiceLimits`] (in
//! flight in all and per client key), runs within its deadline, and takes no input memory and
//! no dealer work until both servers have joined it.

use crate::dealer::DealerStream;
use crate::deployment::Deployment;
use crate::error::{Error, Result, invalid, refuse};
use crate::messages::{
    ClientHello, DealerRequest, Hello, InputShare, OutputShares, PeerHello, PeerReady, ServerReply,
    SessionId, SessionStats, check_rows, decode, encode,
};
use crate::metrics::ServerMetrics;
use crate::model_file::ModelFile;
use crate::net::{Identity, LinkConfig, PeerChannel, PublicKey, SecureLink};
use crate::probes::Probed;
use crate::service::{ServiceLimits, accept_loop, within};
use crate::sys::process_cpu_seconds;
use securerouter_circuits::profile::{PhaseStats, Profiled, add_phases};
use securerouter_circuits::{
    self as circuit, AfterFirst, CircuitKind, ModelSpec, QueryPlan, check_serves,
};
use securerouter_core::gate::{Channel, Protocol, ServerSide, ServerWeights};
use securerouter_core::prg::Seed;
use securerouter_core::ring::BitWidth;
use securerouter_core::share::{Party, SeededShareStream};
use securerouter_kernels::{ServerKernels, TimedKernels};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tracing::{debug, info, warn};

/// A server's configuration.
pub struct ServerService {
    party: Party,
    identity: Identity,
    deployment: Deployment,
    clients: Vec<PublicKey>,
    peer_key: PublicKey,
    dealer_key: PublicKey,
    /// The circuit and shape this server runs.
    spec: ModelSpec,
    /// The model's weight shares, shared with the kernels when they keep them on a GPU.
    weights: Arc<Vec<ServerWeights>>,
    kernels: ServerKernels,
    link: LinkConfig,
    /// How long P0 waits for P1's link of a session.
    pair_timeout: Duration,
    /// Receive each session's whole key stream before its online phase.
    prefetch_keys: bool,
    pending: Mutex<HashMap<SessionId, Pending>>,
    limits: ServiceLimits,
    /// Sessions in flight (permits of `limits.max_sessions`).
    sessions: Arc<Semaphore>,
    /// Sessions in flight per client key.
    per_client: Arc<Mutex<HashMap<PublicKey, usize>>>,
    /// Set once the service drains: new client sessions are refused.
    draining: AtomicBool,
    metrics: ServerMetrics,
}

/// P0's side of pairing: whichever of the client's hello and P1's link comes first waits here.
enum Pending {
    PeerArrived(SecureLink, PeerHello, Instant),
    ClientWaiting(oneshot::Sender<(SecureLink, PeerHello)>),
}

/// A session's admission: its slot among the sessions in flight and its client's count, both
/// given back on drop.
struct Admission {
    _slot: OwnedSemaphorePermit,
    client: PublicKey,
    per_client: Arc<Mutex<HashMap<PublicKey, usize>>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.per_client.lock()
            && let Some(n) = counts.get_mut(&self.client)
        {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

impl crate::service::Drain for ServerService {
    fn start_draining(&self) {
        ServerService::start_draining(self);
    }

    fn is_idle(&self) -> bool {
        self.sessions_in_flight() == 0
    }
}

impl Probed for ServerService {
    fn metrics_text(&self) -> String {
        let role = match self.party {
            Party::P0 => "p0",
            Party::P1 => "p1",
        };
        self.metrics.render(
            role,
            self.sessions_in_flight() as u64,
            self.draining.load(Ordering::SeqCst),
        )
    }

    fn ready(&self) -> bool {
        !self.draining.load(Ordering::SeqCst)
    }
}

impl ServerService {
    /// Server `party` of `deployment`.
    pub fn new(
        party: Party,
        identity: Identity,
        deployment: Deployment,
        clients: Vec<PublicKey>,
        model: ModelFile,
        link: LinkConfig,
    ) -> Result<Self> {
        let peer = match party {
            Party::P0 => &deployment.p1,
            Party::P1 => &deployment.p0,
        };
        let peer_key = peer.key()?;
        let dealer_key = deployment.dealer.key()?;
        let spec = model.spec.clone();
        let weights = Arc::new(model.into_server_weights()?);
        let pair_timeout = link.io_timeout;
        let limits = ServiceLimits::default();
        Ok(ServerService {
            party,
            identity,
            deployment,
            clients,
            peer_key,
            dealer_key,
            spec,
            weights,
            kernels: ServerKernels::select(false, 0),
            link,
            pair_timeout,
            prefetch_keys: false,
            pending: Mutex::new(HashMap::new()),
            sessions: Arc::new(Semaphore::new(limits.max_sessions)),
            limits,
            per_client: Arc::default(),
            draining: AtomicBool::new(false),
            metrics: ServerMetrics::default(),
        })
    }

    /// Starts draining: sessions in flight go on (and P0 still pairs with P1 for them), new
    /// client sessions are refused. Irreversible.
    pub fn start_draining(&self) {
        if !self.draining.swap(true, Ordering::SeqCst) {
            info!(party = ?self.party, in_flight = self.sessions_in_flight(), "draining: refusing new sessions");
        }
    }

    /// Client sessions admitted and not yet answered.
    pub fn sessions_in_flight(&self) -> usize {
        self.limits
            .max_sessions
            .saturating_sub(self.sessions.available_permits())
    }

    /// Serves under `limits` instead of the defaults.
    ///
    /// # Errors
    /// When a cap or deadline is zero.
    pub fn with_limits(mut self, limits: ServiceLimits) -> Result<Self> {
        limits.check()?;
        self.sessions = Arc::new(Semaphore::new(limits.max_sessions));
        self.limits = limits;
        Ok(self)
    }

    /// Runs sessions on `kernels`, with this server's weights kept on its GPU if it has one.
    ///
    /// # Errors
    /// When the weights cannot be copied to the GPU.
    pub fn with_kernels(mut self, kernels: ServerKernels) -> Result<Self> {
        let bytes = kernels
            .keep_resident(&self.weights)
            .map_err(|source| Error::ProtocolIn {
                what: "copying the weights to the GPU".to_string(),
                source,
            })?;
        if bytes > 0 {
            info!(party = ?self.party, mb = bytes as f64 / 1e6, "weights resident on the GPU");
        }
        self.kernels = kernels;
        Ok(self)
    }

    /// Receives each session's whole key stream (into spill files) before its online phase,
    /// so the online phase is timed alone, as benchmarks report it.
    pub fn with_prefetch_keys(mut self, on: bool) -> Self {
        self.prefetch_keys = on;
        self
    }

    /// Serves forever (accept errors are logged, not fatal).
    pub async fn run(self: Arc<Self>, listener: TcpListener) {
        crate::service::raise_open_file_limit();
        let name = match self.party {
            Party::P0 => "P0",
            Party::P1 => "P1",
        };
        let max = self.limits.max_connections;
        accept_loop(name, listener, max, move |stream, addr, slot| {
            let me = self.clone();
            async move {
                match me.handle(stream, slot).await {
                    Err(e) if crate::service::is_unauthenticated_noise(&e) => {
                        debug!(party = ?me.party, %addr, "connection probe: {e}");
                    }
                    Err(e) => warn!(party = ?me.party, %addr, "connection failed: {}", e.chain()),
                    Ok(()) => {}
                }
            }
        })
        .await;
    }

    async fn handle(
        self: &Arc<Self>,
        stream: TcpStream,
        _slot: OwnedSemaphorePermit,
    ) -> Result<()> {
        let mut allowed = self.clients.clone();
        if self.party == Party::P0 {
            allowed.push(self.peer_key);
        }
        crate::net::tune_tcp(&stream)?;
        let (mut link, hello) = within(self.limits.handshake_timeout, "a hello", async {
            let mut link = SecureLink::accept(stream, &self.identity, &allowed, &self.link).await?;
            let hello: Hello = decode(&link.recv().await?, "hello")?;
            Ok((link, hello))
        })
        .await?;
        match hello {
            Hello::Peer(peer) => {
                if self.party != Party::P0 || link.peer() != self.peer_key {
                    refuse!("a peer hello from a key that is not P1's");
                }
                self.peer_arrived(peer, link)
            }
            Hello::Client(hello) => {
                let client = link.peer();
                if !self.clients.contains(&client) {
                    refuse!("a client hello from a key that is not a client's");
                }
                let session = hello.session;
                let started = Instant::now();
                let outcome = match self.admit(client) {
                    Ok(admission) => {
                        self.metrics.started();
                        let run = tokio::time::timeout(
                            self.limits.session_timeout,
                            self.run_session(hello, started),
                        )
                        .await;
                        drop(admission);
                        run.unwrap_or_else(|_| {
                            Err(Error::Deadline {
                                session,
                                after: self.limits.session_timeout,
                            })
                        })
                    }
                    Err(e) => Err(e),
                };
                let reply = match outcome {
                    Ok(out) => {
                        self.metrics.finished(&out.stats);
                        info!(party = ?self.party, %session, wall_s = out.stats.wall_s,
                              online_bytes = out.stats.online_bytes_sent, rounds = out.stats.rounds,
                              key_bytes = out.stats.key_bytes_received, "session done");
                        ServerReply::Ok(out)
                    }
                    Err(e) => {
                        self.metrics.failed(&e);
                        let why = e.chain().to_string();
                        warn!(party = ?self.party, %session, "session failed: {why}");
                        ServerReply::Failed(why)
                    }
                };
                link.send(&encode(&reply)?).await?;
                Ok(())
            }
        }
    }

    /// Admits a session of `client` under the caps, or says which cap it hit.
    fn admit(&self, client: PublicKey) -> Result<Admission> {
        if self.draining.load(Ordering::SeqCst) {
            refuse!(
                "P{} is shutting down and takes no new session",
                self.party.index()
            );
        }
        let slot = self.sessions.clone().try_acquire_owned().map_err(|_| {
            Error::Refused(format!(
                "the server is busy: {} sessions in flight",
                self.limits.max_sessions
            ))
        })?;
        let mut counts = self.per_client.lock().map_err(|_| Error::Poisoned)?;
        let n = counts.entry(client).or_insert(0);
        if *n >= self.limits.max_sessions_per_client {
            refuse!(
                "this client has {} sessions in flight, the most it may",
                self.limits.max_sessions_per_client
            );
        }
        *n += 1;
        Ok(Admission {
            _slot: slot,
            client,
            per_client: self.per_client.clone(),
        })
    }

    /// P0: P1's link for a session arrived. If no client asks for the session within the
    /// pairing time-out, the link is dropped (closing it) with a warning.
    fn peer_arrived(self: &Arc<Self>, peer: PeerHello, link: SecureLink) -> Result<()> {
        let session = peer.session;
        let mut pending = self.pending.lock().map_err(|_| Error::Poisoned)?;
        match pending.remove(&session) {
            Some(Pending::ClientWaiting(tx)) => {
                tx.send((link, peer)).map_err(|_| {
                    Error::Refused(format!("session {session} gave up before P1 arrived"))
                })?;
            }
            Some(Pending::PeerArrived(..)) => refuse!("P1 opened two links for session {session}"),
            None => {
                if pending.len() >= 2 * self.limits.max_sessions {
                    refuse!(
                        "{} sessions wait for their pairing; refusing P1's link",
                        pending.len()
                    );
                }
                let arrived = Instant::now();
                pending.insert(session, Pending::PeerArrived(link, peer, arrived));
                let me = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(me.pair_timeout).await;
                    let Ok(mut pending) = me.pending.lock() else {
                        return;
                    };
                    if matches!(pending.get(&session), Some(Pending::PeerArrived(_, _, t)) if *t == arrived)
                    {
                        pending.remove(&session);
                        warn!(%session, "P1 opened session {session} but no client asked for it; link closed");
                    }
                });
            }
        }
        Ok(())
    }

    /// P0: waits for P1's link of `session` and what P1 says the session runs.
    async fn wait_for_peer(&self, session: SessionId) -> Result<(SecureLink, PeerHello)> {
        let rx = {
            let mut pending = self.pending.lock().map_err(|_| Error::Poisoned)?;
            match pending.remove(&session) {
                Some(Pending::PeerArrived(link, peer, _)) => return Ok((link, peer)),
                Some(Pending::ClientWaiting(tx)) => {
                    pending.insert(session, Pending::ClientWaiting(tx));
                    refuse!("two clients sent session {session}")
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    pending.insert(session, Pending::ClientWaiting(tx));
                    rx
                }
            }
        };
        match tokio::time::timeout(self.pair_timeout, rx).await {
            Ok(Ok(joined)) => Ok(joined),
            _ => {
                // Ours (its receiver is gone), not a later client's for the same id.
                if let Ok(mut p) = self.pending.lock()
                    && matches!(p.get(&session), Some(Pending::ClientWaiting(tx)) if tx.is_closed())
                {
                    p.remove(&session);
                }
                Err(Error::Timeout {
                    what: format!("P1 did not join session {session}"),
                    after: self.pair_timeout,
                })
            }
        }
    }

    /// P1: opens the link to P0 for a session, saying what it runs.
    async fn connect_peer(&self, hello: PeerHello) -> Result<SecureLink> {
        let addr = &self.deployment.p0.addr;
        let stream = TcpStream::connect(addr.to_string())
            .await
            .map_err(Error::connect("P0", addr))?;
        crate::net::tune_tcp(&stream)?;
        let mut link =
            SecureLink::connect(stream, &self.identity, &self.peer_key, &self.link).await?;
        link.send(&encode(&Hello::Peer(hello))?).await?;
        Ok(link)
    }

    /// Pairs with the other server for `hello`'s session: P0 waits for P1's link, P1 opens it
    /// and waits for P0's confirmation, so neither goes on until both hold the client's hello.
    /// Both must run the same circuit on the same batch.
    async fn join_peer(&self, hello: &ClientHello) -> Result<SecureLink> {
        let mine = PeerHello {
            session: hello.session,
            circuit: hello.circuit,
            rows: hello.rows,
            batch: hello.batch,
        };
        let ready = PeerReady {
            session: hello.session,
        };
        match self.party {
            Party::P1 => {
                let mut link = self.connect_peer(mine).await?;
                let answer = tokio::time::timeout(self.pair_timeout, link.recv())
                    .await
                    .map_err(|_| Error::Timeout {
                        what: format!("P0 did not confirm session {}", hello.session),
                        after: self.pair_timeout,
                    })?
                    .map_err(Error::link(format!("P0 refused session {}", hello.session)))?;
                if decode::<PeerReady>(&answer, "P0's confirmation")? != ready {
                    refuse!("P0 confirmed another session than {}", hello.session);
                }
                Ok(link)
            }
            Party::P0 => {
                let (mut link, theirs) = self.wait_for_peer(hello.session).await?;
                if (theirs.circuit, theirs.rows, theirs.batch)
                    != (mine.circuit, mine.rows, mine.batch)
                {
                    refuse!(
                        "the client asked P0 for {} on {} rows in {} inputs and P1 for {} on {} rows in {} inputs",
                        mine.circuit,
                        mine.rows,
                        mine.batch,
                        theirs.circuit,
                        theirs.rows,
                        theirs.batch
                    );
                }
                link.send(&encode(&ready)?).await?;
                Ok(link)
            }
        }
    }

    async fn run_session(&self, hello: ClientHello, started: Instant) -> Result<OutputShares> {
        check_serves(&self.spec, hello.circuit)?;
        let rows = check_rows(hello.rows)?;
        let batch = hello.batch as usize;
        let shape = self.spec.input_shape(hello.circuit, rows, batch)?;
        let features = self.spec.input_cols(hello.circuit);
        let words = rows
            .checked_mul(features)
            .filter(|w| w.saturating_mul(8) <= self.link.max_message)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{rows} rows of {features} inputs exceed the largest message of {} bytes",
                    self.link.max_message
                ))
            })?;
        match (self.party, &hello.input) {
            (Party::P0, InputShare::Seed(_)) | (Party::P1, InputShare::Words(_)) => {}
            (Party::P0, _) => invalid!("P0 expects its input share as a seed"),
            (Party::P1, _) => invalid!("P1 expects its input share as words"),
        }
        // Nothing is allocated and the dealer is not asked until the other server has joined:
        // a client that speaks to one server alone costs it a waiting task, no more.
        let peer = self.join_peer(&hello).await?;
        let share = match hello.input {
            InputShare::Seed(seed) => {
                let mut x = vec![0u64; words];
                SeededShareStream::new(&Seed::from_bytes(seed)).expand_row(&mut x);
                x
            }
            input @ InputShare::Words(_) => input.into_words(words)?,
        };
        let input = StageInput {
            shape,
            share: &share,
        };
        let plan = QueryPlan::new(&self.spec, hello.circuit);
        let dealer = self
            .open_dealer(hello.session, plan, 0, hello.rows, hello.batch)
            .await;
        let mut peer = PeerChannel::new(peer);
        let mut stats = SessionStats::default();
        let first = self
            .stage(dealer?, &mut peer, plan.first_stage(), &input, &mut stats)
            .await?;
        let mut out = first.outputs;
        match plan.after_first(first.revealed.as_deref(), batch)? {
            AfterFirst::Done => {}
            AfterFirst::Stage(next) => {
                let dealer = self
                    .open_dealer(hello.session, plan, next.stage, hello.rows, hello.batch)
                    .await?;
                let second = self
                    .stage(dealer, &mut peer, next.kind, &input, &mut stats)
                    .await?;
                let replaced = out.get_mut(next.replaces).ok_or_else(|| {
                    Error::Invalid("the output a later stage replaces".to_string())
                })?;
                *replaced = second
                    .outputs
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::Invalid("a later stage's output".to_string()))?;
            }
            // The route alone: the client asks the chosen expert with its own input.
            AfterFirst::ClientAsks(_) => {
                let [_, route] = <[_; 2]>::try_from(out)
                    .map_err(|_| Error::Invalid("a routed query's logits and route".to_string()))?;
                out = vec![route];
            }
            // The client asks the other experts: the summary's logits answer only the inputs
            // routed to it. Both servers know the routes and zero the same rows.
            AfterFirst::ClientGroups(routes) => {
                let (_, logits) = out.first_mut().ok_or_else(|| {
                    Error::Invalid("a routed batch's logits and routes".to_string())
                })?;
                let classes = logits.len() / batch;
                for (row, &route) in logits.chunks_mut(classes.max(1)).zip(&routes) {
                    if route != 0 {
                        row.fill(0);
                    }
                }
            }
        }
        let traffic = peer.traffic();
        stats.online_bytes_sent = traffic.bytes_sent;
        stats.rounds = traffic.rounds;
        stats.wall_s = started.elapsed().as_secs_f64();
        stats.peak_rss_mb = peak_rss_mb();
        stats.kernels = self.kernels.to_string();
        let (widths, shares) = out.into_iter().unzip();
        Ok(OutputShares {
            widths,
            shares,
            stats,
        })
    }

    /// Asks the dealer for the keys of stage `stage` of the query `session`.
    async fn open_dealer(
        &self,
        session: SessionId,
        plan: QueryPlan,
        stage: u8,
        rows: u32,
        batch: u32,
    ) -> Result<(Seed, DealerStream)> {
        let request = DealerRequest {
            session,
            query: plan.first_stage(),
            stage,
            rows,
            batch,
            party: self.party.index(),
        };
        DealerStream::open(
            &self.deployment.dealer.addr,
            &self.dealer_key,
            &self.identity,
            &self.link,
            request,
        )
        .await
    }

    /// Runs one circuit of a session on the client's input over the P0–P1 link, adding its cost
    /// to `stats`; returns this server's output shares (width, words) and the values of the
    /// wire revealed to the servers, if any.
    async fn stage(
        &self,
        (seed, mut keys): (Seed, DealerStream),
        peer: &mut PeerChannel,
        kind: CircuitKind,
        input: &StageInput<'_>,
        stats: &mut SessionStats,
    ) -> Result<StageShares> {
        let offline = Instant::now();
        if self.prefetch_keys {
            keys.prefetch().await?;
        }
        let kernels = TimedKernels::new(self.kernels.clone());
        let kernel_clock = kernels.clock();
        let mut server = ServerSide::new(self.party, &seed, &mut *peer, keys, kernels);
        if self.prefetch_keys {
            // With the keys at hand, the linear layers' offline products leave the online
            // phase (otherwise each is computed as its layer runs).
            let precompute = Instant::now();
            let layers = server
                .precompute_linear(&self.weights)
                .await
                .map_err(|source| Error::ProtocolIn {
                    what: "computing the linear layers' offline terms".to_string(),
                    source,
                })?;
            debug!(
                party = ?self.party,
                layers,
                seconds = precompute.elapsed().as_secs_f64(),
                "linear layers' offline terms computed"
            );
            // Start the online clocks together.
            server
                .channel_mut()
                .barrier()
                .await
                .map_err(Error::link("waiting for the other server's keys"))?;
            stats.offline_s += offline.elapsed().as_secs_f64();
        }
        let kernel_offline_s = kernel_clock.seconds();
        let read_offline_s = server.keys().read_seconds();
        let online = Instant::now();
        let cpu_before = process_cpu_seconds();
        let before = server.traffic();
        let exchange_before = server.channel_mut().exchange_seconds();
        let x = server
            .input(&input.shape, BitWidth::FULL, input.share)
            .await?;
        let mut profiled = Profiled::new(&mut server, online);
        let stage = circuit::run(&mut profiled, &self.spec, kind, &x, &self.weights).await?;
        add_phases(&mut stats.phases, &profiled.finish());
        let mut outputs = Vec::new();
        for o in &stage.outputs {
            outputs.push((o.width().bits() as u8, server.output(o).await?));
        }
        let mut keys = server.finish().await?;
        keys.expect_end().await?;
        let online_s = online.elapsed().as_secs_f64();
        let after = peer.traffic();
        stats.online_s += online_s;
        stats.online_cpu_s += process_cpu_seconds() - cpu_before;
        stats.key_bytes_received += keys.received();
        stats.kernel_s += kernel_clock.seconds() - kernel_offline_s;
        stats.exchange_s += peer.exchange_seconds() - exchange_before;
        stats.key_read_s += keys.read_seconds() - read_offline_s;
        stats.stages.push(PhaseStats {
            name: kind.to_string(),
            online_s,
            bytes_sent: after.bytes_sent - before.bytes_sent,
            rounds: after.rounds - before.rounds,
        });
        Ok(StageShares {
            outputs,
            revealed: stage.revealed.map(|t| t.into_data()),
        })
    }
}

/// The client's input share as every stage of a session reads it.
struct StageInput<'a> {
    /// [rows, features], or [inputs, rows per input, features] for a batch.
    shape: Vec<usize>,
    share: &'a [u64],
}

/// One stage's result at a server.
struct StageShares {
    /// (bit-width, this server's shares) per output wire.
    outputs: Vec<(u8, Vec<u64>)>,
    /// The values revealed to the servers, if the stage revealed a wire.
    revealed: Option<Vec<u64>>,
}

/// This process's peak resident memory in MiB (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    crate::sys::peak_rss_of(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::{DeploymentDir, Role};

    /// P0 of a fresh deployment, whose pairing waits `pair` at most.
    fn p0(pair: Duration) -> (ServerService, DeploymentDir) {
        let dir = std::env::temp_dir().join(format!(
            "securerouter-party-{}",
            hex::encode(crate::deployment::random_seed().as_bytes())
        ));
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let d = DeploymentDir::create(
            &dir,
            [addr; 3].map(Into::into),
            securerouter_ml::router::RouterHeadShape::DEMO,
            false,
        )
        .unwrap();
        let link = LinkConfig {
            io_timeout: pair,
            ..LinkConfig::default()
        };
        let service = ServerService::new(
            Party::P0,
            d.identity(Role::P0).unwrap(),
            d.deployment.clone(),
            d.client_keys().unwrap(),
            d.model(Role::P0).unwrap(),
            link,
        )
        .unwrap();
        (service, d)
    }

    /// A client's hello that P1 never joins leaves nothing behind at P0 once it gives up (a
    /// flood of them would otherwise grow P0's memory without bound).
    #[tokio::test]
    async fn a_session_p1_never_joins_leaves_no_state() {
        let (service, d) = p0(Duration::from_millis(100));
        for n in 0..3u8 {
            let err = service
                .wait_for_peer(SessionId([n; 16]))
                .await
                .expect_err("P1 never comes");
            assert!(format!("{err}").contains("did not join"), "{err}");
        }
        assert!(service.pending.lock().unwrap().is_empty());
        std::fs::remove_dir_all(d.path()).unwrap();
    }

    /// Sessions past the caps are refused at once, naming the cap; a finished session gives
    /// its slot back.
    #[test]
    fn admission_follows_the_caps() {
        let (service, d) = p0(Duration::from_secs(1));
        let service = service
            .with_limits(ServiceLimits {
                max_sessions: 3,
                max_sessions_per_client: 2,
                ..ServiceLimits::default()
            })
            .unwrap();
        let [a, b] = [Identity::generate().public(), Identity::generate().public()];
        let first = service.admit(a).unwrap();
        let _second = service.admit(a).unwrap();
        let err = service.admit(a).err().expect("a third for the same client");
        assert!(format!("{err}").contains("this client has 2"), "{err}");
        let _third = service.admit(b).unwrap();
        let err = service.admit(b).err().expect("a fourth in all");
        assert!(format!("{err}").contains("3 sessions in flight"), "{err}");
        drop(first);
        service.admit(a).unwrap();
        std::fs::remove_dir_all(d.path()).unwrap();
    }
}
