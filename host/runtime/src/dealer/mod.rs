//! The dealer: the service (this module), its key sink that feeds both servers' sockets
//! (`sink`), and the servers' side of its stream ([`DealerStream`], spilled to disk by `spill`).
//!
//! A session's correlations come from a master seed drawn fresh from the operating system when
//! both servers have asked for the session: the first request waits (within the pairing
//! deadline) for the other server's, then one circuit run on a blocking thread feeds both
//! streams. Session ids are only names: a replayed id is refused while the dealer remembers it,
//! and even after a restart it gets new masks, so no mask is ever dealt twice. Key generations
//! in flight are capped; past the cap a session is refused at once. Each stream passes through
//! a channel of [`QUEUE_CHUNKS`] chunks of at most [`CHUNK_BYTES`] to its socket, so memory
//! stays bounded whatever the circuit's size: the generator waits whenever a server reads more
//! slowly.

mod sink;
mod spill;
mod stream;

use sink::StreamingSink;
pub use stream::DealerStream;

use crate::deployment::fresh_seed;
use crate::error::{Result, refuse};
use crate::messages::{DealerChunk, DealerRequest, SessionId, check_rows, decode, encode};
use crate::metrics::DealerMetrics;
use crate::model_file::ModelFile;
use crate::net::{LinkConfig, PublicKey, SecureLink};
use crate::probes::Probed;
use crate::service::{ServiceLimits, accept_loop, within};
use bytes::Bytes;
use securerouter_circuits::run_ready;
use securerouter_circuits::{self as circuit, CircuitKind, ModelSpec, QueryPlan, check_serves};
use securerouter_core::Error;
use securerouter_core::dealer::Dealer;
use securerouter_core::gate::{DealerSide, DealerWeights, Protocol};
use securerouter_core::prg::Seed;
use securerouter_core::ring::BitWidth;
use securerouter_core::share::Party;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::{debug, info, warn};

/// Largest key chunk on the wire.
pub const CHUNK_BYTES: usize = 1 << 16;
/// Chunks buffered between the generator and each socket.
pub const QUEUE_CHUNKS: usize = 16;
/// How long the dealer refuses a session id it has served (a replay within that time is an
/// error; after it, the id gets fresh masks like any other).
pub const SERVED_MEMORY: Duration = Duration::from_secs(3600);
/// Most session ids remembered as served (the oldest are forgotten first).
pub const SERVED_IDS: usize = 1 << 20;

/// The dealer's configuration.
pub struct DealerService {
    /// Static identity.
    pub identity: crate::net::Identity,
    /// P0's and P1's public keys (the only peers it serves).
    pub servers: [PublicKey; 2],
    /// The circuit and shape the dealer serves.
    pub spec: ModelSpec,
    /// Link settings.
    pub link: LinkConfig,
    /// Caps and deadlines; `max_sessions` caps the key generations in flight.
    limits: ServiceLimits,
    /// How long a server's request waits for the other server's.
    pair_timeout: Duration,
    sessions: Mutex<Sessions>,
    /// Key generations in flight.
    generating: Arc<Semaphore>,
    /// Circuit runs started (one per session when both servers ask).
    generations: AtomicU64,
    /// The plaintext weights, shared by the sessions being generated.
    weights: Arc<Vec<DealerWeights>>,
    /// Set once the service drains: requests for a query's first stage are refused.
    draining: AtomicBool,
    metrics: DealerMetrics,
}

/// The dealer's memory of sessions: requests waiting for the other server, and ids served.
#[derive(Default)]
struct Sessions {
    waiting: HashMap<SessionId, Waiting>,
    served: HashSet<SessionId>,
    /// `served` in the order it was filled, to forget the oldest.
    served_order: VecDeque<(Instant, SessionId)>,
    next_ticket: u64,
}

/// A server's request waiting for the other server's: what it asked for (the other must ask
/// the same) and where its seed and stream go once the generation starts.
struct Waiting {
    party: Party,
    circuit: CircuitKind,
    rows: u32,
    batch: u32,
    ticket: u64,
    reply: oneshot::Sender<Result<(Seed, mpsc::Receiver<DealerChunk>)>>,
}

impl Sessions {
    /// Remembers `session` as served, forgetting ids older than [`SERVED_MEMORY`] or beyond
    /// [`SERVED_IDS`]. False if it is remembered already.
    fn mark_served(&mut self, session: SessionId, now: Instant) -> bool {
        while let Some(&(t, id)) = self.served_order.front() {
            if now.duration_since(t) < SERVED_MEMORY && self.served_order.len() < SERVED_IDS {
                break;
            }
            self.served_order.pop_front();
            self.served.remove(&id);
        }
        if !self.served.insert(session) {
            return false;
        }
        self.served_order.push_back((now, session));
        true
    }
}

/// What the first of a session's two requests got: wait for the other server, or go.
enum Pairing {
    Wait(
        u64,
        oneshot::Receiver<Result<(Seed, mpsc::Receiver<DealerChunk>)>>,
    ),
    Go(Seed, mpsc::Receiver<DealerChunk>),
}

impl crate::service::Drain for DealerService {
    fn start_draining(&self) {
        DealerService::start_draining(self);
    }

    fn is_idle(&self) -> bool {
        DealerService::is_idle(self)
    }

    fn quiet(&self) -> Duration {
        DRAIN_QUIET
    }
}

/// How long a draining dealer stays idle before it exits: the later stages of queries under
/// way (reveal-route's expert) are asked for within moments of their first.
pub const DRAIN_QUIET: Duration = Duration::from_secs(2);

impl Probed for DealerService {
    fn metrics_text(&self) -> String {
        let waiting = self.lock().map_or(0, |s| s.waiting.len());
        self.metrics.render(
            self.generations(),
            self.pending() as u64,
            waiting as u64,
            self.draining.load(Ordering::SeqCst),
        )
    }

    fn ready(&self) -> bool {
        !self.draining.load(Ordering::SeqCst)
    }
}

impl DealerService {
    /// A dealer serving `servers` with `model`, under `limits`; a server's request waits up to
    /// `link.io_timeout` for the other server's.
    pub fn new(
        identity: crate::net::Identity,
        servers: [PublicKey; 2],
        model: ModelFile,
        link: LinkConfig,
        limits: ServiceLimits,
    ) -> Result<Self> {
        limits.check()?;
        let spec = model.spec.clone();
        let weights = Arc::new(model.into_dealer_weights()?);
        Ok(DealerService {
            identity,
            servers,
            spec,
            pair_timeout: link.io_timeout,
            link,
            generating: Arc::new(Semaphore::new(limits.max_sessions)),
            limits,
            sessions: Mutex::new(Sessions::default()),
            generations: AtomicU64::new(0),
            weights,
            draining: AtomicBool::new(false),
            metrics: DealerMetrics::default(),
        })
    }

    /// Starts draining: key generations in flight go on, and so do requests for the later
    /// stages of queries under way (reveal-route's expert), but a query's first stage is
    /// refused. Irreversible.
    pub fn start_draining(&self) {
        if !self.draining.swap(true, Ordering::SeqCst) {
            info!(pending = self.pending(), "draining: refusing new sessions");
        }
    }

    /// Key generations in flight.
    pub fn pending(&self) -> usize {
        self.limits
            .max_sessions
            .saturating_sub(self.generating.available_permits())
    }

    /// Whether nothing is in flight: no key generation, no request waiting for the other
    /// server's.
    pub fn is_idle(&self) -> bool {
        self.pending() == 0 && self.lock().is_ok_and(|s| s.waiting.is_empty())
    }

    /// Accepts servers' requests forever (accept errors are logged, not fatal).
    pub async fn run(self: Arc<Self>, listener: TcpListener) {
        crate::service::raise_open_file_limit();
        let max = self.limits.max_connections;
        accept_loop("dealer", listener, max, move |stream, addr, slot| {
            let me = self.clone();
            async move {
                match me.handle(stream, slot).await {
                    Err(e) if crate::service::is_unauthenticated_noise(&e) => {
                        debug!(%addr, "connection probe: {e}")
                    }
                    Err(e) => warn!(%addr, "dealer request failed: {}", e.chain()),
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
        crate::net::tune_tcp(&stream)?;
        let (mut link, req) = within(self.limits.handshake_timeout, "a server's request", async {
            let mut link =
                SecureLink::accept(stream, &self.identity, &self.servers, &self.link).await?;
            let req: DealerRequest = decode(&link.recv().await?, "dealer request")?;
            Ok((link, req))
        })
        .await?;
        let party = match req.party {
            0 => Party::P0,
            1 => Party::P1,
            p => refuse!("request names party {p}"),
        };
        let deal = if link.peer() != self.servers[party.index() as usize] {
            Err(crate::Error::Refused(format!(
                "the key of this link is not party {}'s",
                req.party
            )))
        } else {
            Deal::of(&self.spec, &req).and_then(|deal| self.check(&deal).map(|()| deal))
        };
        let answer = match deal {
            Ok(_) if req.stage == 0 && self.draining.load(Ordering::SeqCst) => {
                Err(crate::Error::Refused(
                    "the dealer is shutting down and takes no new session".into(),
                ))
            }
            Ok(deal) => self.pair(&deal, party).await,
            Err(e) => Err(e),
        };
        let (seed, mut rx) = match answer {
            Ok(v) => v,
            Err(e) => {
                self.metrics.failed(&e);
                link.send(&encode(&DealerChunk::<Bytes>::Refused(
                    e.chain().to_string(),
                ))?)
                .await?;
                return Err(e);
            }
        };
        let streamed = async {
            link.send(&encode(&DealerChunk::<Bytes>::Seed(*seed.as_bytes()))?)
                .await?;
            let mut sent = 0u64;
            while let Some(chunk) = rx.recv().await {
                let bytes = encode(&chunk)?;
                sent += bytes.len() as u64;
                link.send(&bytes).await?;
            }
            Ok::<_, crate::Error>(sent)
        }
        .await;
        let sent = streamed.inspect_err(|e| self.metrics.failed(e))?;
        self.metrics.streamed(sent);
        info!(session = %req.session, party = req.party, key_bytes = sent, "keys streamed");
        Ok(())
    }

    /// `party`'s seed and key stream for the session, once both servers have asked for it.
    async fn pair(
        self: &Arc<Self>,
        req: &Deal,
        party: Party,
    ) -> Result<(Seed, mpsc::Receiver<DealerChunk>)> {
        match self.request(req, party)? {
            Pairing::Go(seed, rx) => Ok((seed, rx)),
            Pairing::Wait(ticket, rx) => match tokio::time::timeout(self.pair_timeout, rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => refuse!("session {} was dropped", req.session),
                Err(_) => {
                    let mut sessions = self.lock()?;
                    if sessions
                        .waiting
                        .get(&req.session)
                        .is_some_and(|w| w.ticket == ticket)
                    {
                        sessions.waiting.remove(&req.session);
                    }
                    Err(crate::Error::Timeout {
                        what: format!("the other server did not ask for session {}", req.session),
                        after: self.pair_timeout,
                    })
                }
            },
        }
    }

    /// Registers `party`'s request: it waits for the other server's, or, if that one is
    /// waiting, draws the session's master seed, starts the generation for both and answers
    /// both.
    fn request(self: &Arc<Self>, req: &Deal, party: Party) -> Result<Pairing> {
        let mut sessions = self.lock()?;
        let Some(first) = sessions.waiting.remove(&req.session) else {
            if sessions.served.contains(&req.session) {
                refuse!(
                    "session {} was already served: the dealer never deals a session twice",
                    req.session
                );
            }
            if sessions.waiting.len() >= self.limits.max_sessions {
                refuse!(
                    "the dealer is busy: {} sessions wait for their other server",
                    sessions.waiting.len()
                );
            }
            let (reply, rx) = oneshot::channel();
            let ticket = sessions.next_ticket;
            sessions.next_ticket += 1;
            sessions.waiting.insert(
                req.session,
                Waiting {
                    party,
                    circuit: req.circuit,
                    rows: req.rows,
                    batch: req.batch,
                    ticket,
                    reply,
                },
            );
            return Ok(Pairing::Wait(ticket, rx));
        };
        let refuse = |first: Waiting, why: String| {
            let _ = first.reply.send(Err(crate::Error::Refused(why.clone())));
            Err(crate::Error::Refused(why))
        };
        if first.party == party {
            let why = format!(
                "party {} asked twice for session {}",
                req.party, req.session
            );
            return refuse(first, why);
        }
        if (first.circuit, first.rows, first.batch) != (req.circuit, req.rows, req.batch) {
            let why = format!(
                "the servers asked for different circuits in session {}: {} on {} rows in {} inputs and {} on {} rows in {} inputs",
                req.session,
                first.circuit,
                first.rows,
                first.batch,
                req.circuit,
                req.rows,
                req.batch
            );
            return refuse(first, why);
        }
        sessions.mark_served(req.session, Instant::now());
        drop(sessions);
        let Ok(permit) = self.generating.clone().try_acquire_owned() else {
            let why = format!(
                "the dealer is busy: {} key generations in flight",
                self.limits.max_sessions
            );
            return refuse(first, why);
        };
        let master = match fresh_seed() {
            Ok(s) => s,
            Err(e) => return refuse(first, e.chain().to_string()),
        };
        let [rx0, rx1] = self.generate(req, master.clone(), permit);
        let (mine, other) = match party {
            Party::P0 => (rx0, rx1),
            Party::P1 => (rx1, rx0),
        };
        let other_seed = Dealer::party_seed(&master, first.party);
        // The other request may have timed out meanwhile: its stream then goes unread and the
        // generator stops feeding it.
        let _ = first.reply.send(Ok((other_seed, other)));
        Ok(Pairing::Go(Dealer::party_seed(&master, party), mine))
    }

    /// Starts the circuit's run under `master` on a blocking thread; P0's and P1's streams.
    fn generate(
        &self,
        req: &Deal,
        master: Seed,
        permit: OwnedSemaphorePermit,
    ) -> [mpsc::Receiver<DealerChunk>; 2] {
        let (tx0, rx0) = mpsc::channel(QUEUE_CHUNKS);
        let (tx1, rx1) = mpsc::channel(QUEUE_CHUNKS);
        self.generations.fetch_add(1, Ordering::Relaxed);
        let weights = self.weights.clone();
        let spec = self.spec.clone();
        let kind = req.circuit;
        // Checked with the request ([`Dealer::check`]).
        let shape = spec.input_shape(kind, req.rows as usize, req.batch as usize);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let sink = StreamingSink::new([tx0, tx1]);
            let kernels = Box::new(securerouter_kernels::HostKernels::new());
            let mut dealer = DealerSide::with_kernels(&master, sink, kernels);
            let shape = match shape {
                Ok(shape) => shape,
                Err(e) => return dealer.finish().fail(format!("key generation refused: {e}")),
            };
            let x = dealer.input(&shape, BitWidth::FULL);
            let result = run_ready(async {
                let stage = circuit::run(&mut dealer, &spec, kind, &x, &weights).await?;
                for o in &stage.outputs {
                    dealer.output(o).await?;
                }
                Ok::<_, Error>(())
            });
            let mut sink = dealer.finish();
            match result {
                Ok(()) => sink.finish(),
                Err(e) => sink.fail(format!("key generation failed: {e}")),
            }
        });
        [rx0, rx1]
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Sessions>> {
        self.sessions.lock().map_err(|_| crate::Error::Poisoned)
    }

    /// Circuit runs started so far.
    pub fn generations(&self) -> u64 {
        self.generations.load(Ordering::Relaxed)
    }

    fn check(&self, req: &Deal) -> Result<()> {
        check_serves(&self.spec, req.circuit)?;
        check_rows(req.rows)?;
        self.spec
            .input_shape(req.circuit, req.rows as usize, req.batch as usize)?;
        Ok(())
    }
}

/// What a server's request asks the dealer to deal: one stage of a query, as the query's
/// plan names it. The plan says which stages a query has, which circuit each runs and under
/// which session id its keys are dealt, for the dealer as for the servers.
#[derive(Clone, Copy, Debug)]
struct Deal {
    /// The id this stage's keys are dealt under (and never dealt again).
    session: SessionId,
    /// The stage's circuit.
    circuit: CircuitKind,
    rows: u32,
    batch: u32,
    party: u8,
}

impl Deal {
    /// The stage `req` names, or why the query's plan for a model of `spec` has no such
    /// stage.
    fn of(spec: &ModelSpec, req: &DealerRequest) -> Result<Self> {
        let (session, circuit) = QueryPlan::new(spec, req.query).stage(req.session, req.stage)?;
        Ok(Deal {
            session,
            circuit,
            rows: req.rows,
            batch: req.batch,
            party: req.party,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router_head_dealer() -> Arc<DealerService> {
        router_head_dealer_pairing_within(LinkConfig::default().io_timeout)
    }

    fn router_head_dealer_pairing_within(pair_timeout: Duration) -> Arc<DealerService> {
        use securerouter_circuits::ModelSpec;
        use securerouter_ml::router::{PlainRouterHead, RouterHeadShape};
        let shape = RouterHeadShape::DEMO;
        let layers = securerouter_circuits::router_head::ring_layers(&PlainRouterHead::random(
            shape,
            &Seed::from_bytes([1; 16]),
        ))
        .unwrap();
        let [model, _, _] = ModelFile::deploy(
            ModelSpec::RouterHead(shape),
            &layers,
            &Seed::from_bytes([2; 16]),
        )
        .unwrap();
        let peers = [
            crate::net::Identity::generate().public(),
            crate::net::Identity::generate().public(),
        ];
        Arc::new(
            DealerService::new(
                crate::net::Identity::generate(),
                peers,
                model,
                LinkConfig {
                    io_timeout: pair_timeout,
                    ..LinkConfig::default()
                },
                ServiceLimits::default(),
            )
            .unwrap(),
        )
    }

    fn request(session: SessionId, party: u8) -> Deal {
        Deal::of(
            &securerouter_circuits::ModelSpec::RouterHead(
                securerouter_ml::router::RouterHeadShape::DEMO,
            ),
            &DealerRequest {
                session,
                query: CircuitKind::RouterHead,
                stage: 0,
                rows: 2,
                batch: 1,
                party,
            },
        )
        .unwrap()
    }

    /// The dealer deals the stages the query's plan has, each under its own id: a later
    /// stage of a reveal-route query is its expert under the stage's id, and a stage that no
    /// plan has is refused before anything is dealt.
    #[test]
    fn the_dealer_deals_the_stages_of_the_query_plan_only() {
        use securerouter_circuits::bert::BertHead;
        use securerouter_circuits::{
            Activation, BertShape, ExpertInput, PoolExpert, PoolShape, RouteMode,
        };
        let shape = |hidden| BertShape {
            layers: 1,
            hidden,
            heads: 2,
            ffn: 8,
            classes: 2,
            activation: Activation::Gelu,
            relative_buckets: 0,
        };
        // Expert 1 is cut from the summary's checkpoint, expert 2 reads an input of its own.
        let spec = ModelSpec::Pool(PoolShape {
            summary: shape(4),
            router: securerouter_ml::router::RouterHeadShape {
                features: 5,
                hidden: 2,
                experts: 3,
            },
            others: vec![
                PoolExpert::cut(shape(4)),
                PoolExpert {
                    shape: shape(8),
                    head: BertHead::Checkpoint,
                    input: ExpertInput::Own,
                },
            ],
        });
        let id = SessionId([5; 16]);
        let ask = |query, stage| {
            Deal::of(
                &spec,
                &DealerRequest {
                    session: id,
                    query,
                    stage,
                    rows: 1,
                    batch: 1,
                    party: 0,
                },
            )
        };
        let reveal = CircuitKind::Routed(RouteMode::Reveal);
        let first = ask(reveal, 0).unwrap();
        assert_eq!((first.session, first.circuit), (id, reveal));
        let later = ask(reveal, 1).unwrap();
        assert_eq!(
            (later.session, later.circuit),
            (id.stage(1), CircuitKind::Expert(1))
        );
        // Expert 2 is asked by the client, as a query of its own.
        let e = ask(reveal, 2).unwrap_err().to_string();
        assert!(e.contains("has no stage 2"), "{e}");
        for query in [
            CircuitKind::Routed(RouteMode::Hide),
            CircuitKind::Expert(2),
            CircuitKind::RouterHead,
        ] {
            let e = ask(query, 1).unwrap_err().to_string();
            assert!(e.contains("has no stage 1"), "{e}");
        }
    }

    /// Both servers' seeds and streams for a session, P1 asking first.
    async fn pair_both(
        service: &Arc<DealerService>,
        session: SessionId,
    ) -> [(Seed, mpsc::Receiver<DealerChunk>); 2] {
        let Pairing::Wait(_, waiting) = service.request(&request(session, 1), Party::P1).unwrap()
        else {
            panic!("the first request must wait for the other server");
        };
        let Pairing::Go(seed0, rx0) = service.request(&request(session, 0), Party::P0).unwrap()
        else {
            panic!("the second request starts the generation");
        };
        let (seed1, rx1) = waiting.await.unwrap().unwrap();
        [(seed0, rx0), (seed1, rx1)]
    }

    /// A server's whole stream: its P1-only, shared and linear bytes.
    async fn drain(mut rx: mpsc::Receiver<DealerChunk>) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let (mut p1, mut shared, mut linear) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(c) = rx.recv().await {
            match c {
                DealerChunk::P1(b) => p1.extend(b),
                DealerChunk::Shared(b) => shared.extend(b),
                DealerChunk::Linear(b) => linear.extend(b),
                DealerChunk::End => return (p1, shared, linear),
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("stream ended without End");
    }

    /// Both servers' requests for a session share one circuit run, started only once both
    /// have asked: P0's stream is P1's without the P1-only bytes, and a second session starts
    /// a second run.
    #[tokio::test]
    async fn one_generation_serves_both_servers_of_a_session() {
        let service = router_head_dealer();
        for (n, session) in [SessionId([7; 16]), SessionId([8; 16])]
            .into_iter()
            .enumerate()
        {
            let [(seed0, rx0), (seed1, rx1)] = pair_both(&service, session).await;
            assert_ne!(seed0, seed1);
            assert_eq!(service.generations(), n as u64 + 1);
            let ((p0_only, p0_shared, p0_linear), (p1_only, p1_shared, p1_linear)) =
                tokio::join!(drain(rx0), drain(rx1));
            assert!(p0_only.is_empty());
            assert!(!p1_only.is_empty());
            assert_eq!(p0_shared, p1_shared);
            // P0's linear stream is the layers' headers; P1's has its shares between them.
            assert!(!p0_linear.is_empty() && p1_linear.len() > p0_linear.len());
        }
        assert!(service.sessions.lock().unwrap().waiting.is_empty());
    }

    /// Masks never repeat: a replayed session id is refused while the dealer remembers it, the
    /// same id dealt by a restarted dealer gets other seeds (and other keys), and two sessions
    /// never share a seed.
    #[tokio::test]
    async fn session_seeds_are_fresh_and_ids_are_only_names() {
        let id = SessionId([9; 16]);
        let dealer = router_head_dealer();
        let [(a0, rx0), (a1, rx1)] = pair_both(&dealer, id).await;
        let (_, keys_a, _) = drain(rx0).await;
        drop(rx1);
        for party in [0, 1] {
            let err = dealer
                .request(&request(id, party), Party::from_index(party).unwrap())
                .err()
                .expect("a replayed id is refused");
            assert!(format!("{err}").contains("already served"), "{err}");
        }
        let restarted = router_head_dealer();
        let [(b0, rx0), (b1, _)] = pair_both(&restarted, id).await;
        let (_, keys_b, _) = drain(rx0).await;
        assert_ne!(a0, b0);
        assert_ne!(a1, b1);
        assert_ne!(
            keys_a, keys_b,
            "the same id after a restart must get new keys"
        );
        let mut seen = HashSet::new();
        for seed in [&a0, &a1, &b0, &b1] {
            assert!(seen.insert(*seed.as_bytes()));
        }
        for n in 0..20u8 {
            let [(s0, _), (s1, _)] = pair_both(&dealer, SessionId([n + 20; 16])).await;
            assert!(seen.insert(*s0.as_bytes()) && seen.insert(*s1.as_bytes()));
        }
    }

    /// A request whose other server never asks fails after the pairing deadline without
    /// starting a generation, and leaves nothing behind.
    #[tokio::test]
    async fn a_lone_request_starts_nothing_and_expires() {
        let dealer = router_head_dealer_pairing_within(Duration::from_millis(200));
        let err = dealer
            .pair(&request(SessionId([3; 16]), 0), Party::P0)
            .await
            .expect_err("no other server");
        assert!(format!("{err}").contains("did not ask"), "{err}");
        assert_eq!(dealer.generations(), 0);
        assert!(dealer.sessions.lock().unwrap().waiting.is_empty());
    }

    /// The served ids are forgotten after [`SERVED_MEMORY`] (then an id would get fresh seeds
    /// anyway), so the dealer's memory stays bounded.
    #[test]
    fn served_ids_expire() {
        let mut s = Sessions::default();
        let t0 = Instant::now();
        assert!(s.mark_served(SessionId([1; 16]), t0));
        assert!(!s.mark_served(SessionId([1; 16]), t0));
        assert!(s.mark_served(SessionId([2; 16]), t0 + SERVED_MEMORY));
        assert!(!s.served.contains(&SessionId([1; 16])));
        assert_eq!(s.served.len(), 1);
    }
}
