//! The dealer service and the servers' side of its stream.
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

use crate::deployment::fresh_seed;
use crate::messages::{DealerChunk, DealerRequest, SessionId, check_rows, decode, encode};
use crate::model_file::ModelFile;
use crate::net::{LinkConfig, LinkReader, PublicKey, SecureLink};
use crate::service::{ServiceLimits, accept_loop, within};
use anyhow::{Context, anyhow, bail};
use securerouter_circuits::run_ready;
use securerouter_circuits::{self as circuit, CircuitKind, QueryPlan, check_serves};
use securerouter_core::Error;
use securerouter_core::dealer::Dealer;
use securerouter_core::gate::{DealerSide, DealerWeights, KeySink, KeySource, Protocol};
use securerouter_core::prg::Seed;
use securerouter_core::ring::BitWidth;
use securerouter_core::share::Party;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The model file (its spec names the circuit the dealer serves).
    pub model: ModelFile,
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
    ticket: u64,
    reply: oneshot::Sender<anyhow::Result<(Seed, mpsc::Receiver<DealerChunk>)>>,
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
        oneshot::Receiver<anyhow::Result<(Seed, mpsc::Receiver<DealerChunk>)>>,
    ),
    Go(Seed, mpsc::Receiver<DealerChunk>),
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
    ) -> anyhow::Result<Self> {
        limits.check()?;
        let weights = Arc::new(model.dealer_weights()?);
        Ok(DealerService {
            identity,
            servers,
            model,
            pair_timeout: link.io_timeout,
            link,
            generating: Arc::new(Semaphore::new(limits.max_sessions)),
            limits,
            sessions: Mutex::new(Sessions::default()),
            generations: AtomicU64::new(0),
            weights,
        })
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
                    Err(e) => warn!(%addr, "dealer request failed: {e:#}"),
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
    ) -> anyhow::Result<()> {
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
            p => bail!("request names party {p}"),
        };
        let deal = if link.peer() != self.servers[party.index() as usize] {
            Err(anyhow!("the key of this link is not party {}'s", req.party))
        } else {
            Deal::of(&req).and_then(|deal| self.check(&deal).map(|()| deal))
        };
        let answer = match deal {
            Ok(deal) => self.pair(&deal, party).await,
            Err(e) => Err(e),
        };
        let (seed, mut rx) = match answer {
            Ok(v) => v,
            Err(e) => {
                link.send(&encode(&DealerChunk::Refused(format!("{e:#}")))?)
                    .await?;
                return Err(e);
            }
        };
        link.send(&encode(&DealerChunk::Seed(*seed.as_bytes()))?)
            .await?;
        let mut sent = 0u64;
        while let Some(chunk) = rx.recv().await {
            let bytes = encode(&chunk)?;
            sent += bytes.len() as u64;
            link.send(&bytes).await?;
        }
        info!(session = %req.session, party = req.party, key_bytes = sent, "keys streamed");
        Ok(())
    }

    /// `party`'s seed and key stream for the session, once both servers have asked for it.
    async fn pair(
        self: &Arc<Self>,
        req: &Deal,
        party: Party,
    ) -> anyhow::Result<(Seed, mpsc::Receiver<DealerChunk>)> {
        match self.request(req, party)? {
            Pairing::Go(seed, rx) => Ok((seed, rx)),
            Pairing::Wait(ticket, rx) => match tokio::time::timeout(self.pair_timeout, rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => bail!("session {} was dropped", req.session),
                Err(_) => {
                    let mut sessions = self.lock()?;
                    if sessions
                        .waiting
                        .get(&req.session)
                        .is_some_and(|w| w.ticket == ticket)
                    {
                        sessions.waiting.remove(&req.session);
                    }
                    bail!(
                        "the other server did not ask for session {} within {:?}",
                        req.session,
                        self.pair_timeout
                    )
                }
            },
        }
    }

    /// Registers `party`'s request: it waits for the other server's, or, if that one is
    /// waiting, draws the session's master seed, starts the generation for both and answers
    /// both.
    fn request(self: &Arc<Self>, req: &Deal, party: Party) -> anyhow::Result<Pairing> {
        let mut sessions = self.lock()?;
        let Some(first) = sessions.waiting.remove(&req.session) else {
            if sessions.served.contains(&req.session) {
                bail!(
                    "session {} was already served: the dealer never deals a session twice",
                    req.session
                );
            }
            if sessions.waiting.len() >= self.limits.max_sessions {
                bail!(
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
                    ticket,
                    reply,
                },
            );
            return Ok(Pairing::Wait(ticket, rx));
        };
        let refuse = |first: Waiting, why: String| {
            let _ = first.reply.send(Err(anyhow!("{why}")));
            Err(anyhow!("{why}"))
        };
        if first.party == party {
            let why = format!(
                "party {} asked twice for session {}",
                req.party, req.session
            );
            return refuse(first, why);
        }
        if (first.circuit, first.rows) != (req.circuit, req.rows) {
            let why = format!(
                "the servers asked for different circuits in session {}: {} on {} rows and {} on {} rows",
                req.session, first.circuit, first.rows, req.circuit, req.rows
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
            Err(e) => return refuse(first, format!("{e:#}")),
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
        let spec = self.model.spec.clone();
        let kind = req.circuit;
        let rows = req.rows as usize;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let sink = StreamingSink::new([tx0, tx1]);
            let mut dealer = DealerSide::new(&master, sink);
            let x = dealer.input(&[rows, spec.input_cols()], BitWidth::FULL);
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

    fn lock(&self) -> anyhow::Result<std::sync::MutexGuard<'_, Sessions>> {
        self.sessions.lock().map_err(|_| anyhow!("poisoned lock"))
    }

    /// Circuit runs started so far.
    pub fn generations(&self) -> u64 {
        self.generations.load(Ordering::Relaxed)
    }

    fn check(&self, req: &Deal) -> anyhow::Result<()> {
        check_serves(&self.model.spec, req.circuit)?;
        check_rows(req.rows)?;
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
    party: u8,
}

impl Deal {
    /// The stage `req` names, or why the query's plan has no such stage.
    fn of(req: &DealerRequest) -> anyhow::Result<Self> {
        let (session, circuit) = QueryPlan::new(req.query).stage(req.session, req.stage)?;
        Ok(Deal {
            session,
            circuit,
            rows: req.rows,
            party: req.party,
        })
    }
}

/// Batches the dealer's key bytes into chunks and hands them to the two servers' socket tasks
/// (P1-only bytes to P1's alone), blocking when a queue is full (back-pressure). A stream whose
/// receiver is gone (its server left, or never came) is no longer fed.
struct StreamingSink {
    /// P0's and P1's queues.
    txs: [Option<mpsc::Sender<DealerChunk>>; 2],
    p1: Vec<u8>,
    shared: Vec<u8>,
}

impl StreamingSink {
    fn new([tx0, tx1]: [mpsc::Sender<DealerChunk>; 2]) -> Self {
        StreamingSink {
            txs: [Some(tx0), Some(tx1)],
            p1: Vec::new(),
            shared: Vec::new(),
        }
    }

    fn push(&mut self, party: usize, chunk: DealerChunk) {
        if let Some(tx) = &self.txs[party]
            && tx.blocking_send(chunk).is_err()
        {
            self.txs[party] = None;
        }
    }

    fn push_both(&mut self, chunk: DealerChunk) {
        self.push(0, chunk.clone());
        self.push(1, chunk);
    }

    /// Sends every full chunk; the remainder stays buffered.
    fn flush_full(&mut self) {
        for chunk in split_full(&mut self.p1) {
            self.push(1, DealerChunk::P1(chunk));
        }
        for chunk in split_full(&mut self.shared) {
            self.push_both(DealerChunk::Shared(chunk));
        }
    }

    /// Sends everything buffered, full chunks or not.
    fn send_buffered(&mut self) {
        self.flush_full();
        if !self.p1.is_empty() {
            let c = std::mem::take(&mut self.p1);
            self.push(1, DealerChunk::P1(c));
        }
        if !self.shared.is_empty() {
            let c = std::mem::take(&mut self.shared);
            self.push_both(DealerChunk::Shared(c));
        }
    }

    fn finish(&mut self) {
        self.send_buffered();
        self.push_both(DealerChunk::End);
    }

    fn fail(&mut self, why: String) {
        self.push_both(DealerChunk::Refused(why));
    }
}

/// Bytes are held back only while the same stream goes on: switching streams first sends what
/// the other one holds. Otherwise P1 could wait for P1-only bytes held here while the generator
/// blocks on P0's full queue, and P0 waits for P1 online: a deadlock of servers that stream
/// their keys alongside the online phase.
impl KeySink for StreamingSink {
    fn to_p1(&mut self, bytes: &[u8]) {
        if !self.shared.is_empty() {
            let c = std::mem::take(&mut self.shared);
            for chunk in c.chunks(CHUNK_BYTES) {
                self.push_both(DealerChunk::Shared(chunk.to_vec()));
            }
        }
        self.p1.extend_from_slice(bytes);
        self.flush_full();
    }

    fn to_both(&mut self, bytes: &[u8]) {
        if !self.p1.is_empty() {
            let c = std::mem::take(&mut self.p1);
            for chunk in c.chunks(CHUNK_BYTES) {
                self.push(1, DealerChunk::P1(chunk.to_vec()));
            }
        }
        self.shared.extend_from_slice(bytes);
        self.flush_full();
    }

    /// Linear records go out at once, after whatever the other streams hold (one record per
    /// layer: a few chunks, never held back).
    fn to_linear(&mut self, both: &[u8], p1_only: &[u8]) {
        self.send_buffered();
        self.push(0, DealerChunk::Linear(both.to_vec()));
        let mut p1 = both.to_vec();
        p1.extend_from_slice(p1_only);
        for chunk in p1.chunks(CHUNK_BYTES) {
            self.push(1, DealerChunk::Linear(chunk.to_vec()));
        }
    }
}

/// Takes the full chunks off the front of `buffer`, leaving the remainder. Copies each byte
/// once however much a gate wrote at a time (a batch of comparisons writes ~100 MB at once).
fn split_full(buffer: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let full = buffer.len() / CHUNK_BYTES * CHUNK_BYTES;
    if full == 0 {
        return Vec::new();
    }
    let chunks = buffer[..full]
        .chunks_exact(CHUNK_BYTES)
        .map(<[u8]>::to_vec)
        .collect();
    buffer.drain(..full);
    chunks
}

/// The dealer's three streams as a server receives them, in the order of [`DealerStream`]'s
/// buffers.
#[derive(Clone, Copy)]
enum Stream {
    P1 = 0,
    Shared = 1,
    Linear = 2,
}

/// A server's view of the dealer's stream: reads chunks on demand into one buffer per stream,
/// or, after [`DealerStream::prefetch`], from spill files holding the whole streams.
pub struct DealerStream {
    party: Party,
    reader: LinkReader,
    buffers: [Buffer; 3],
    spilled: Option<[Spill; 3]>,
    ended: bool,
    received: u64,
    /// Seconds spent in the reads of the key stream (waiting for the dealer or the disk).
    read_s: f64,
}

/// One stream of a prefetched session, in an unlinked temporary file (so memory stays bounded
/// however large the keys are, and nothing is left on disk). Read unbuffered: gates read whole
/// key chunks (hundreds of KB), and a buffer would copy each of them twice.
struct Spill {
    file: std::fs::File,
    remaining: u64,
}

impl Spill {
    fn create() -> std::io::Result<std::fs::File> {
        let mut name = [0u8; 8];
        getrandom::fill(&mut name).map_err(std::io::Error::other)?;
        let path = std::env::temp_dir().join(format!("securerouter-keys-{}", hex::encode(name)));
        // 0600 from creation: the keys never sit readable by others, even before the unlink.
        let file = crate::secret_file::create_new(&path)?;
        std::fs::remove_file(&path)?;
        Ok(file)
    }

    fn take(&mut self, out: &mut [u8]) -> Result<(), Error> {
        use std::io::Read;
        if (out.len() as u64) > self.remaining {
            return Err(Error::ChannelClosed("the dealer's stream ended early"));
        }
        self.file
            .read_exact(out)
            .map_err(|_| Error::ChannelClosed("reading prefetched keys failed"))?;
        self.remaining -= out.len() as u64;
        Ok(())
    }
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    pos: usize,
}

impl Buffer {
    fn available(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn append(&mut self, more: &[u8]) {
        if self.pos > 0 && self.pos * 2 >= self.bytes.len() {
            self.bytes.drain(..self.pos);
            self.pos = 0;
        }
        self.bytes.extend_from_slice(more);
    }

    fn take(&mut self, out: &mut [u8]) {
        out.copy_from_slice(&self.bytes[self.pos..self.pos + out.len()]);
        self.pos += out.len();
    }
}

impl DealerStream {
    /// Connects to the dealer, asks for `request`'s keys and returns the server's seed and the
    /// stream of the rest.
    pub async fn open(
        addr: std::net::SocketAddr,
        dealer_key: &PublicKey,
        me: &crate::net::Identity,
        link: &LinkConfig,
        request: DealerRequest,
    ) -> anyhow::Result<(Seed, Self)> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to the dealer at {addr}"))?;
        crate::net::tune_tcp(&stream)?;
        let mut link = SecureLink::connect(stream, me, dealer_key, link).await?;
        link.send(&encode(&request)?).await?;
        let seed = match decode(&link.recv().await?, "dealer seed")? {
            DealerChunk::Seed(s) => Seed::from_bytes(s),
            DealerChunk::Refused(why) => bail!("the dealer refused: {why}"),
            _ => bail!("the dealer's stream did not start with a seed"),
        };
        let party = if request.party == 0 {
            Party::P0
        } else {
            Party::P1
        };
        let (_, reader) = link.into_split();
        Ok((
            seed,
            DealerStream {
                party,
                reader,
                buffers: Default::default(),
                spilled: None,
                ended: false,
                received: 0,
                read_s: 0.0,
            },
        ))
    }

    /// Key bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Seconds the server spent reading keys (from the dealer's link, or from the spill files
    /// of a prefetched stream).
    pub fn read_seconds(&self) -> f64 {
        self.read_s
    }

    /// Receives the whole stream before the online phase (benchmarks time the online phase
    /// alone this way), writing it to spill files instead of memory.
    pub async fn prefetch(&mut self) -> anyhow::Result<()> {
        use std::io::{Seek, Write};
        let mut files = [Spill::create()?, Spill::create()?, Spill::create()?]
            .map(|f| std::io::BufWriter::with_capacity(1 << 20, f));
        let mut written = [0u64; 3];
        loop {
            for (i, buf) in self.buffers.iter_mut().enumerate() {
                files[i].write_all(&buf.bytes[buf.pos..])?;
                written[i] += buf.available() as u64;
                *buf = Buffer::default();
            }
            if self.ended {
                break;
            }
            self.fetch().await?;
        }
        let mut spills = Vec::new();
        for (f, n) in files.into_iter().zip(written) {
            let mut f = f.into_inner().map_err(|e| e.into_error())?;
            f.seek(std::io::SeekFrom::Start(0))?;
            spills.push(Spill {
                file: f,
                remaining: n,
            });
        }
        let spills: [Spill; 3] = spills
            .try_into()
            .map_err(|_| anyhow::anyhow!("three spills"))?;
        self.spilled = Some(spills);
        Ok(())
    }

    /// Reads one more chunk into the buffers.
    async fn fetch(&mut self) -> Result<(), Error> {
        if self.ended {
            return Err(Error::ChannelClosed("the dealer's stream ended early"));
        }
        let bytes = self.reader.recv().await.map_err(|e| {
            warn!("dealer stream: {e}");
            Error::ChannelClosed("the dealer's stream failed")
        })?;
        self.received += bytes.len() as u64;
        let chunk: DealerChunk = postcard::from_bytes(&bytes)
            .map_err(|_| Error::MalformedMessage("malformed chunk on the dealer's stream"))?;
        match chunk {
            DealerChunk::P1(b) if self.party == Party::P1 => {
                self.buffers[Stream::P1 as usize].append(&b)
            }
            DealerChunk::P1(_) => {
                return Err(Error::MalformedMessage(
                    "the dealer sent P1-only keys to P0",
                ));
            }
            DealerChunk::Shared(b) => self.buffers[Stream::Shared as usize].append(&b),
            DealerChunk::Linear(b) => self.buffers[Stream::Linear as usize].append(&b),
            DealerChunk::End => self.ended = true,
            DealerChunk::Refused(why) => {
                warn!("dealer: {why}");
                return Err(Error::ChannelClosed("the dealer aborted the session"));
            }
            DealerChunk::Seed(_) => {
                return Err(Error::MalformedMessage(
                    "a second seed on the dealer's stream",
                ));
            }
        }
        Ok(())
    }
}

impl KeySource for DealerStream {
    async fn read_p1_stream(&mut self, out: &mut [u8]) -> Result<(), Error> {
        let start = std::time::Instant::now();
        let read = self.read_p1(out).await;
        self.read_s += start.elapsed().as_secs_f64();
        read
    }

    async fn read_shared_stream(&mut self, out: &mut [u8]) -> Result<(), Error> {
        let start = std::time::Instant::now();
        let read = self.read(Stream::Shared, out).await;
        self.read_s += start.elapsed().as_secs_f64();
        read
    }

    async fn read_linear_stream(&mut self, out: &mut [u8]) -> Result<(), Error> {
        let start = std::time::Instant::now();
        let read = self.read(Stream::Linear, out).await;
        self.read_s += start.elapsed().as_secs_f64();
        read
    }
}

impl DealerStream {
    async fn read_p1(&mut self, out: &mut [u8]) -> Result<(), Error> {
        if self.party != Party::P1 {
            return Err(Error::ProtocolMisuse(
                "P0 receives nothing from the dealer but its seed and shared keys",
            ));
        }
        self.read(Stream::P1, out).await
    }

    async fn read(&mut self, stream: Stream, out: &mut [u8]) -> Result<(), Error> {
        let i = stream as usize;
        if let Some(spills) = &mut self.spilled {
            return spills[i].take(out);
        }
        while self.buffers[i].available() < out.len() {
            self.fetch().await?;
        }
        self.buffers[i].take(out);
        Ok(())
    }
}

impl DealerStream {
    /// Reads the end marker; an error if keys are left over (dealer and server disagree).
    pub async fn expect_end(&mut self) -> Result<(), Error> {
        while !self.ended {
            self.fetch().await?;
        }
        let spilled: u64 = self
            .spilled
            .iter()
            .flatten()
            .map(|spill| spill.remaining)
            .sum();
        let buffered: usize = self.buffers.iter().map(Buffer::available).sum();
        if buffered > 0 || spilled > 0 {
            return Err(Error::ProtocolMisuse("dealer keys left unread at the end"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Nothing is held back once the other stream moves on: P1 gets its few P1-only bytes
    /// before the shared bytes generated after them, and P0 its shared remainder before P1 gets
    /// later P1-only bytes (otherwise servers that stream keys online can deadlock).
    #[test]
    fn the_streams_keep_generation_order() {
        let (tx0, mut rx0) = mpsc::channel(64);
        let (tx1, mut rx1) = mpsc::channel(64);
        let mut sink = StreamingSink::new([tx0, tx1]);
        sink.to_p1(&[1; 10]);
        sink.to_both(&vec![2; 2 * CHUNK_BYTES + 5]);
        sink.to_p1(&[3; 7]);
        let kinds = |rx: &mut mpsc::Receiver<DealerChunk>| {
            let mut v = Vec::new();
            while let Ok(c) = rx.try_recv() {
                v.push(match c {
                    DealerChunk::P1(b) => format!("p1:{}", b.len()),
                    DealerChunk::Shared(b) => format!("shared:{}", b.len()),
                    _ => "other".into(),
                });
            }
            v
        };
        let full = format!("shared:{CHUNK_BYTES}");
        assert_eq!(kinds(&mut rx1), ["p1:10", &full, &full, "shared:5"]);
        assert_eq!(kinds(&mut rx0), [&full, &full, "shared:5"]);
        // The last P1-only bytes wait for more (or the end).
        sink.finish();
        assert_eq!(kinds(&mut rx1), ["p1:7", "other"]);
    }

    /// A reader that stops reading makes the generator wait: it never gets more than the
    /// queue's worth of chunks ahead, however many keys the circuit has.
    #[test]
    fn the_generator_waits_for_a_slow_reader() {
        let (tx0, mut rx0) = mpsc::channel(QUEUE_CHUNKS);
        let (tx1, mut rx1) = mpsc::channel(QUEUE_CHUNKS);
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = produced.clone();
        let generator = std::thread::spawn(move || {
            let mut sink = StreamingSink::new([tx0, tx1]);
            for _ in 0..(QUEUE_CHUNKS * 10) {
                sink.to_both(&vec![7u8; CHUNK_BYTES]);
                counter.fetch_add(1, Ordering::SeqCst);
            }
            sink.finish();
        });
        // P0 reads everything; P1 reads nothing yet.
        let p0 = std::thread::spawn(move || {
            let mut chunks = 0;
            while let Some(c) = rx0.blocking_recv() {
                chunks += matches!(c, DealerChunk::Shared(_)) as usize;
            }
            chunks
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        // P1's queue holds QUEUE_CHUNKS chunks; the generator is blocked on the next one.
        let ahead = produced.load(Ordering::SeqCst);
        assert!(
            ahead <= QUEUE_CHUNKS + 1,
            "{ahead} chunks produced without a reader"
        );
        assert!(!generator.is_finished());
        // Reading drains it to the end marker.
        let mut chunks = 0;
        loop {
            match rx1.blocking_recv() {
                Some(DealerChunk::Shared(b)) => {
                    assert_eq!(b.len(), CHUNK_BYTES);
                    chunks += 1;
                }
                Some(DealerChunk::End) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(chunks, QUEUE_CHUNKS * 10);
        generator.join().unwrap();
        assert_eq!(p0.join().unwrap(), QUEUE_CHUNKS * 10);
    }

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
        Deal::of(&DealerRequest {
            session,
            query: CircuitKind::RouterHead,
            stage: 0,
            rows: 2,
            party,
        })
        .unwrap()
    }

    /// The dealer deals the stages the query's plan has, each under its own id: a later
    /// stage of a reveal-route query is its expert under the stage's id, and a stage that no
    /// plan has is refused before anything is dealt.
    #[test]
    fn the_dealer_deals_the_stages_of_the_query_plan_only() {
        use securerouter_circuits::RouteMode;
        let id = SessionId([5; 16]);
        let ask = |query, stage| {
            Deal::of(&DealerRequest {
                session: id,
                query,
                stage,
                rows: 1,
                party: 0,
            })
        };
        let reveal = CircuitKind::Routed(RouteMode::Reveal);
        let first = ask(reveal, 0).unwrap();
        assert_eq!((first.session, first.circuit), (id, reveal));
        let later = ask(reveal, 2).unwrap();
        assert_eq!(
            (later.session, later.circuit),
            (id.stage(2), CircuitKind::Expert(2))
        );
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

    /// A stream nobody reads (its receiver dropped) does not stop the other one.
    #[test]
    fn a_dropped_stream_does_not_block_the_other() {
        let (tx0, rx0) = mpsc::channel(1);
        let (tx1, mut rx1) = mpsc::channel(QUEUE_CHUNKS);
        drop(rx0);
        let generator = std::thread::spawn(move || {
            let mut sink = StreamingSink::new([tx0, tx1]);
            for _ in 0..4 {
                sink.to_both(&vec![1u8; CHUNK_BYTES]);
            }
            sink.finish();
        });
        let mut chunks = 0;
        while let Some(c) = rx1.blocking_recv() {
            chunks += matches!(c, DealerChunk::Shared(_)) as usize;
        }
        assert_eq!(chunks, 4);
        generator.join().unwrap();
    }

    #[test]
    fn full_chunks_leave_in_order_and_the_rest_stays() {
        let bytes: Vec<u8> = (0..5 * CHUNK_BYTES / 2).map(|i| (i % 251) as u8).collect();
        let mut buffer = bytes.clone();
        let chunks = split_full(&mut buffer);
        assert_eq!(chunks.len(), 2);
        assert!(chunks.iter().all(|c| c.len() == CHUNK_BYTES));
        assert_eq!(chunks.concat(), bytes[..2 * CHUNK_BYTES]);
        assert_eq!(buffer, bytes[2 * CHUNK_BYTES..]);
        assert!(split_full(&mut buffer).is_empty());
        assert_eq!(buffer.len(), CHUNK_BYTES / 2);
    }

    #[test]
    fn p0s_stream_carries_no_p1_bytes() {
        let (tx0, mut rx0) = mpsc::channel(4);
        let (tx1, mut rx1) = mpsc::channel(4);
        let mut sink = StreamingSink::new([tx0, tx1]);
        sink.to_p1(&[1, 2, 3]);
        sink.to_both(&[4, 5]);
        sink.finish();
        drop(sink);
        let drain = |rx: &mut mpsc::Receiver<DealerChunk>| {
            let mut got = Vec::new();
            while let Some(c) = rx.blocking_recv() {
                got.push(c);
            }
            got
        };
        assert!(matches!(
            drain(&mut rx0).as_slice(),
            [DealerChunk::Shared(b), DealerChunk::End] if b == &[4, 5]
        ));
        assert!(matches!(
            drain(&mut rx1).as_slice(),
            [DealerChunk::P1(a), DealerChunk::Shared(b), DealerChunk::End]
                if a == &[1, 2, 3] && b == &[4, 5]
        ));
    }

    #[cfg(unix)]
    #[test]
    fn key_spill_files_are_private_from_creation() {
        use std::os::unix::fs::PermissionsExt;
        let file = Spill::create().unwrap();
        let mode = file.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
