//! The std client: fixed-point encodes a batch of rows, splits it with the seeded
//! split (P0 gets a 16-byte seed, P1 gets x − PRG(seed)), sends both servers their share, and
//! adds up the output shares they return.

use crate::deployment::{Deployment, random_seed};
use crate::error::{Error, Result, invalid};
use crate::messages::{
    ClientHello, Hello, InputShare, OutputShares, ServerReply, SessionId, SessionStats, decode,
    encode,
};
use crate::net::{Identity, LinkConfig, SecureLink};
use securerouter_circuits::pool::route_of;
use securerouter_circuits::{CircuitKind, FRAC_BITS, PoolReply, PoolShape, QueryPlan};
use securerouter_core::ring::{BitWidth, FixedPoint};
use securerouter_core::share::SeededShareStream;
use securerouter_ml::head::argmax;
use serde::Serialize;
use std::time::Instant;
use tokio::net::TcpStream;

/// A client of a deployment.
pub struct Client {
    identity: Identity,
    deployment: Deployment,
    link: LinkConfig,
}

/// What the client learns for a batch.
#[derive(Clone, Debug, Serialize)]
pub struct Classification {
    /// The session.
    pub session: String,
    /// Scores per query and expert.
    pub scores: Vec<Vec<f64>>,
    /// The chosen expert per query (from the secret one-hot vector).
    pub choice: Vec<usize>,
    /// Each server's accounting.
    pub servers: [SessionStats; 2],
    /// End-to-end wall time in seconds.
    pub wall_s: f64,
}

/// What the client learns from a query to a pool.
#[derive(Clone, Debug, Serialize)]
pub struct PoolAnswer {
    /// The answering expert's logits.
    pub logits: Vec<f64>,
    /// Their argmax.
    pub label: usize,
    /// The expert that answered (the router's choice for a routed query).
    pub route: usize,
    /// The session's outputs and costs.
    pub outputs: SessionOutputs,
}

/// What the client learns from a batch of queries to a pool.
#[derive(Clone, Debug, Serialize)]
pub struct PoolBatchAnswer {
    /// Each input's answer, in the batch's order.
    pub answers: Vec<InputAnswer>,
    /// The sessions' costs: the first session's and, in reveal-route, those of the experts
    /// asked after it, which ran at the same time, so that their rounds and times count
    /// once, the longest's ([`SessionStats::alongside`]); `wall_s` is the whole batch's.
    pub outputs: SessionOutputs,
}

/// One input's answer within a batch.
#[derive(Clone, Debug, Serialize)]
pub struct InputAnswer {
    /// The answering expert's logits.
    pub logits: Vec<f64>,
    /// Their argmax.
    pub label: usize,
    /// The expert that answered.
    pub route: usize,
}

/// The reconstructed outputs of one session.
#[derive(Clone, Debug, Serialize)]
pub struct SessionOutputs {
    /// The session.
    pub session: String,
    /// Rows of the input (every input's tokens, or the router head's queries).
    pub rows: usize,
    /// Inputs in the batch.
    pub batch: usize,
    /// Each output wire's values (ring elements).
    pub outputs: Vec<Vec<u64>>,
    /// Each server's accounting.
    pub servers: [SessionStats; 2],
    /// End-to-end wall time in seconds.
    pub wall_s: f64,
}

impl SessionOutputs {
    /// Adds the costs of `later`, a further session of the same query (reveal-route's
    /// question to an expert with an input of its own), and its outputs before this one's.
    /// Sessions that ran at the same time are first merged with [`Self::alongside`].
    fn follow_with(&mut self, later: SessionOutputs) {
        for (mine, theirs) in self.servers.iter_mut().zip(later.servers) {
            mine.follow_with(theirs);
        }
        self.session = format!("{}+{}", self.session, later.session);
        let mut outputs = later.outputs;
        outputs.append(&mut self.outputs);
        self.outputs = outputs;
        self.wall_s += later.wall_s;
    }

    /// Merges `other`, a session that ran at the same time as this one
    /// ([`SessionStats::alongside`] at each server), its outputs after this one's.
    fn alongside(&mut self, other: SessionOutputs) {
        for (mine, theirs) in self.servers.iter_mut().zip(other.servers) {
            mine.alongside(theirs);
        }
        self.session = format!("{}|{}", self.session, other.session);
        self.outputs.extend(other.outputs);
        self.wall_s = self.wall_s.max(other.wall_s);
    }

    /// The session's cost as benchmarks report it: the larger of each server's figures, with
    /// the slower server's per-part and per-stage breakdown.
    pub fn worst_server(&self) -> SessionStats {
        let [a, b] = &self.servers;
        let slower = if a.online_s >= b.online_s { a } else { b };
        SessionStats {
            online_bytes_sent: a.online_bytes_sent.max(b.online_bytes_sent),
            rounds: a.rounds.max(b.rounds),
            key_bytes_received: a.key_bytes_received.max(b.key_bytes_received),
            wall_s: a.wall_s.max(b.wall_s),
            online_s: slower.online_s,
            kernel_s: slower.kernel_s,
            key_read_s: slower.key_read_s,
            exchange_s: slower.exchange_s,
            online_cpu_s: slower.online_cpu_s,
            offline_s: a.offline_s.max(b.offline_s),
            peak_rss_mb: a.peak_rss_mb.max(b.peak_rss_mb),
            phases: slower.phases.clone(),
            kernels: if a.kernels == b.kernels {
                a.kernels.clone()
            } else {
                format!("P0 {}, P1 {}", a.kernels, b.kernels)
            },
            stages: slower.stages.clone(),
        }
    }
}

impl Client {
    /// A client with its identity.
    pub fn new(identity: Identity, deployment: Deployment, link: LinkConfig) -> Self {
        Client {
            identity,
            deployment,
            link,
        }
    }

    /// Runs `circuit` on `x` (rows of `cols` reals): encodes, splits, asks both servers and
    /// adds up their output shares.
    pub async fn run(
        &self,
        circuit: CircuitKind,
        cols: usize,
        x: &[f64],
    ) -> Result<SessionOutputs> {
        self.run_batch(circuit, cols, 1, x).await
    }

    /// [`Client::run`] on a batch of `batch` inputs in one session, their rows stacked in `x`
    /// (each input the same number of rows): the rounds of one input, the bytes of all.
    pub async fn run_batch(
        &self,
        circuit: CircuitKind,
        cols: usize,
        batch: usize,
        x: &[f64],
    ) -> Result<SessionOutputs> {
        if cols == 0 || x.is_empty() || !x.len().is_multiple_of(cols) {
            invalid!("the input has {} values, not whole rows of {cols}", x.len());
        }
        let rows = x.len() / cols;
        if batch == 0 || !rows.is_multiple_of(batch) {
            invalid!("{rows} rows do not split into {batch} inputs of equal length");
        }
        let rows_u32 = u32::try_from(rows)
            .map_err(|_| Error::Invalid(format!("{rows} rows are too many for one session")))?;
        let fp = FixedPoint::new(FRAC_BITS, BitWidth::FULL)?;
        let mut words = x
            .iter()
            .map(|&v| {
                fp.encode(v).map_err(|source| Error::ProtocolIn {
                    what: format!("input value {v}"),
                    source,
                })
            })
            .collect::<Result<Vec<u64>>>()?;
        let seed = random_seed();
        SeededShareStream::new(&seed).split_row_in_place(&mut words);
        let session = SessionId::random();
        let hello = |input| {
            Hello::Client(ClientHello {
                session,
                circuit,
                rows: rows_u32,
                batch: batch as u32,
                input,
            })
        };
        let started = Instant::now();
        let ask0 = self.ask(0, hello(InputShare::Seed(*seed.as_bytes())));
        let ask1 = self.ask(1, hello(InputShare::words(&words)));
        tokio::pin!(ask0, ask1);
        // Both answers are needed: once one server fails, the session has failed, and waiting
        // for the other (which would wait out its pairing) only delays the error.
        let gave_up = |other: usize| format!("not awaited: P{other} failed first");
        let why = |e: Error| e.chain().to_string();
        let (r0, r1) = tokio::select! {
            r0 = &mut ask0 => match r0 {
                Ok(o0) => (Ok(o0), ask1.await.map_err(why)),
                Err(e) => (Err(why(e)), Err(gave_up(0))),
            },
            r1 = &mut ask1 => match r1 {
                Ok(o1) => (ask0.await.map_err(why), Ok(o1)),
                Err(e) => (Err(gave_up(1)), Err(why(e))),
            },
        };
        let (o0, o1) = match (r0, r1) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                return Err(Error::SessionFailed {
                    session,
                    p0: a.err().unwrap_or_else(|| "ok".into()),
                    p1: b.err().unwrap_or_else(|| "ok".into()),
                });
            }
        };
        if o0.widths != o1.widths || o0.shares.len() != o1.shares.len() {
            invalid!("the servers returned outputs of different shapes");
        }
        let outputs = (0..o0.shares.len())
            .map(|i| -> Result<Vec<u64>> {
                let w = BitWidth::new(o0.widths[i] as u32)?;
                if o0.shares[i].len() != o1.shares[i].len() {
                    invalid!("output {i} has different lengths at the two servers");
                }
                Ok(o0.shares[i]
                    .iter()
                    .zip(&o1.shares[i])
                    .map(|(&a, &b)| w.add(a, b))
                    .collect())
            })
            .collect::<Result<_>>()?;
        Ok(SessionOutputs {
            session: session.to_string(),
            rows,
            batch,
            outputs,
            servers: [o0.stats, o1.stats],
            wall_s: started.elapsed().as_secs_f64(),
        })
    }

    /// Runs the router head on `rows` feature vectors of `features` reals each.
    pub async fn route(&self, features: usize, x: &[f64]) -> Result<Classification> {
        let fp = FixedPoint::new(FRAC_BITS, BitWidth::FULL)?;
        let out = self.run(CircuitKind::RouterHead, features, x).await?;
        let rows = out.rows;
        let [scores, onehot] = out.outputs.as_slice() else {
            invalid!(
                "the servers returned {} outputs, the router head has 2",
                out.outputs.len()
            );
        };
        let experts = scores.len() / rows;
        if experts == 0 || scores.len() != rows * experts || onehot.len() != scores.len() {
            invalid!(
                "the servers returned {} scores for {rows} rows",
                scores.len()
            );
        }
        let choice = onehot
            .chunks(experts)
            .map(route_of)
            .collect::<securerouter_circuits::Result<Vec<usize>>>()?;
        Ok(Classification {
            session: out.session,
            scores: scores
                .chunks(experts)
                .map(|r| r.iter().map(|&v| fp.decode(v)).collect())
                .collect(),
            choice,
            servers: out.servers,
            wall_s: out.wall_s,
        })
    }

    /// Runs a BERT classifier on one padded sequence ([tokens, hidden + 2], from
    /// [`securerouter_circuits::bert::client_input`]); returns the logits.
    pub async fn classify(&self, cols: usize, x: &[f64]) -> Result<(Vec<f64>, SessionOutputs)> {
        let fp = FixedPoint::new(FRAC_BITS, BitWidth::FULL)?;
        let out = self.run(CircuitKind::Bert, cols, x).await?;
        let [logits] = out.outputs.as_slice() else {
            invalid!(
                "the servers returned {} outputs, a classifier has 1",
                out.outputs.len()
            );
        };
        let logits = logits.iter().map(|&v| fp.decode(v)).collect();
        Ok((logits, out))
    }

    /// Runs a query through a pool: a routed query ([`CircuitKind::Routed`]) or one expert
    /// alone ([`CircuitKind::Expert`]), on one sequence of `tokens` tokens. `input(k)` gives
    /// expert k's padded input ([tokens, hidden + 2] of that expert, from
    /// [`securerouter_circuits::bert::client_input`]; k = 0 the summary's, which experts cut
    /// from its checkpoint read too): it is asked for the experts the query uploads
    /// ([`PoolShape::uploads`]) and, in reveal-route, for the chosen expert when it reads an
    /// input of its own, which a second session then uploads (one more round trip to the
    /// servers; the answer's costs and wall time cover both sessions).
    pub async fn ask_pool(
        &self,
        pool: &PoolShape,
        circuit: CircuitKind,
        tokens: usize,
        mut input: impl FnMut(usize) -> Result<Vec<f64>, Box<Error>>,
    ) -> Result<PoolAnswer> {
        let started = Instant::now();
        let fp = FixedPoint::new(FRAC_BITS, BitWidth::FULL)?;
        let mut ask = async |kind: CircuitKind| -> Result<SessionOutputs> {
            let inputs = pool
                .uploads(kind)
                .into_iter()
                .map(|k| input(k).map_err(|e| *e))
                .collect::<Result<Vec<_>>>()?;
            let x = pool.circuit_input(kind, tokens, &inputs)?;
            self.run(kind, pool.input_cols(kind), &x).await
        };
        let mut out = ask(circuit).await?;
        let (logits, route) = match QueryPlan::for_pool(pool, circuit).read_pool(&out.outputs)? {
            PoolReply::Answer { logits, route } => (logits.to_vec(), route),
            PoolReply::AskExpert(k) => {
                let kind = CircuitKind::Expert(k);
                let later = ask(kind).await?;
                let PoolReply::Answer { logits, .. } =
                    QueryPlan::for_pool(pool, kind).read_pool(&later.outputs)?
                else {
                    invalid!("expert {k} answered with another route");
                };
                let logits = logits.to_vec();
                out.follow_with(later);
                (logits, usize::from(k))
            }
        };
        out.wall_s = started.elapsed().as_secs_f64();
        let logits: Vec<f64> = logits.iter().map(|&v| fp.decode(v)).collect();
        Ok(PoolAnswer {
            label: argmax(&logits),
            logits,
            route,
            outputs: out,
        })
    }

    /// Runs a batch of `batch` queries through a pool, each of `tokens` tokens, in one session
    /// ([`Client::ask_pool`] for one): `input(k, b)` gives input b's padded input for expert
    /// k. A routed batch runs the router once for all; in reveal-route the client then asks
    /// each chosen expert past the summary once, for all the inputs routed to it, these
    /// sessions at the same time (one more round trip, each expert's rounds once).
    pub async fn ask_pool_batch(
        &self,
        pool: &PoolShape,
        circuit: CircuitKind,
        tokens: usize,
        batch: usize,
        mut input: impl FnMut(usize, usize) -> Result<Vec<f64>, Box<Error>>,
    ) -> Result<PoolBatchAnswer> {
        let started = Instant::now();
        let fp = FixedPoint::new(FRAC_BITS, BitWidth::FULL)?;
        let decoded = |logits: &[u64], route: usize| {
            let logits: Vec<f64> = logits.iter().map(|&v| fp.decode(v)).collect();
            InputAnswer {
                label: argmax(&logits),
                logits,
                route,
            }
        };
        if batch == 1 {
            let one = self
                .ask_pool(pool, circuit, tokens, |k| input(k, 0))
                .await?;
            return Ok(PoolBatchAnswer {
                answers: vec![InputAnswer {
                    logits: one.logits,
                    label: one.label,
                    route: one.route,
                }],
                outputs: one.outputs,
            });
        }
        // The stacked inputs of `members` for a session of `kind`.
        let mut stacked = |kind: CircuitKind, members: &[usize]| -> Result<Vec<f64>> {
            let mut x = Vec::new();
            for &b in members {
                let inputs = pool
                    .uploads(kind)
                    .into_iter()
                    .map(|k| input(k, b).map_err(|e| *e))
                    .collect::<Result<Vec<_>>>()?;
                x.extend(pool.circuit_input(kind, tokens, &inputs)?);
            }
            Ok(x)
        };
        let all: Vec<usize> = (0..batch).collect();
        let x = stacked(circuit, &all)?;
        let mut out = self
            .run_batch(circuit, pool.input_cols(circuit), batch, &x)
            .await?;
        let mut answers: Vec<Option<InputAnswer>> = vec![None; batch];
        let mut groups: std::collections::BTreeMap<u8, Vec<usize>> = Default::default();
        let plan = QueryPlan::for_pool(pool, circuit);
        for (b, reply) in plan
            .read_pool_batch(&out.outputs, batch)?
            .into_iter()
            .enumerate()
        {
            match reply {
                PoolReply::Answer { logits, route } => answers[b] = Some(decoded(logits, route)),
                PoolReply::AskExpert(k) => groups.entry(k).or_default().push(b),
            }
        }
        let mut asks = Vec::new();
        for (&k, members) in &groups {
            let kind = CircuitKind::Expert(k);
            let x = stacked(kind, members)?;
            asks.push(Box::pin(async move {
                self.run_batch(kind, pool.input_cols(kind), members.len(), &x)
                    .await
            }));
        }
        let mut experts: Option<SessionOutputs> = None;
        for ((&k, members), later) in groups.iter().zip(join_all(asks).await) {
            let later = later?;
            let replies = QueryPlan::for_pool(pool, CircuitKind::Expert(k))
                .read_pool_batch(&later.outputs, members.len())?;
            for (&b, reply) in members.iter().zip(replies) {
                let PoolReply::Answer { logits, .. } = reply else {
                    invalid!("expert {k} answered with another route");
                };
                answers[b] = Some(decoded(logits, usize::from(k)));
            }
            match &mut experts {
                Some(all) => all.alongside(later),
                None => experts = Some(later),
            }
        }
        if let Some(experts) = experts {
            out.follow_with(experts);
        }
        out.wall_s = started.elapsed().as_secs_f64();
        let answers = answers
            .into_iter()
            .enumerate()
            .map(|(b, a)| a.ok_or_else(|| Error::Invalid(format!("input {b} got no answer"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(PoolBatchAnswer {
            answers,
            outputs: out,
        })
    }

    /// Sends `hello` to server `i` and waits for its reply.
    async fn ask(&self, i: usize, hello: Hello) -> Result<OutputShares> {
        let endpoint = if i == 0 {
            &self.deployment.p0
        } else {
            &self.deployment.p1
        };
        let stream = TcpStream::connect(endpoint.addr.to_string())
            .await
            .map_err(Error::connect(&format!("P{i}"), &endpoint.addr))?;
        crate::net::tune_tcp(&stream)?;
        let mut link = SecureLink::connect(stream, &self.identity, &endpoint.key()?, &self.link)
            .await
            .map_err(Error::link(format!("handshake with P{i}")))?;
        link.send(&encode(&hello)?).await?;
        let reply = link
            .recv()
            .await
            .map_err(Error::link(format!("waiting for P{i}'s reply")))?;
        match decode(&reply, "server reply")? {
            ServerReply::Ok(out) => Ok(out),
            ServerReply::Failed(why) => Err(Error::ServerFailed { party: i, why }),
        }
    }
}

/// Runs `futures` at the same time on this task; their results in order.
async fn join_all<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let mut done: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(&mut done) {
            if slot.is_none() {
                match std::pin::Pin::new(f).poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}
