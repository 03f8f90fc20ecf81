//! Per-part accounting of a server's online phase: a [`Protocol`] adapter that forwards every
//! gate to a [`ServerSide`] and charges time, bytes and rounds to the part the circuit named
//! last with [`Protocol::phase`] (e.g. "softmax"). `bench ... --breakdown` prints the totals.
//!
//! [`PhaseStats`] is defined here, with the accounting that fills it; the session messages
//! carry it to the client (`session` re-exports it), and nothing here depends on them.

use securerouter_core::Error;
use securerouter_core::gate::{
    Channel, Kernels, KeySource, Later, LookupTable, Protocol, ServerSide, ServerWeights, Tensor,
    Traffic, WindowTable,
};
use securerouter_core::ring::BitWidth;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Online cost of one named part of a circuit (e.g. "softmax") at one server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseStats {
    /// The part.
    pub name: String,
    /// Seconds spent in it.
    pub online_s: f64,
    /// Bytes sent to the other server in it.
    pub bytes_sent: u64,
    /// Rounds in it.
    pub rounds: u64,
}

/// Adds `more` to `total`, part by part (parts keep their order of first appearance).
pub fn add_phases(total: &mut Vec<PhaseStats>, more: &[PhaseStats]) {
    for p in more {
        match total.iter_mut().find(|q| q.name == p.name) {
            Some(q) => {
                q.online_s += p.online_s;
                q.bytes_sent += p.bytes_sent;
                q.rounds += p.rounds;
            }
            None => total.push(p.clone()),
        }
    }
}

/// A server that accounts per circuit part.
pub struct Profiled<'a, C, K, X> {
    inner: &'a mut ServerSide<C, K, X>,
    current: &'static str,
    since: Instant,
    at: Traffic,
    totals: Vec<PhaseStats>,
}

impl<'a, C: Channel, K: KeySource, X: Kernels> Profiled<'a, C, K, X> {
    /// Starts accounting on `inner`, charging what happened since `started` (e.g. the input
    /// opening) and everything until the circuit names a part to "other".
    pub fn new(inner: &'a mut ServerSide<C, K, X>, started: Instant) -> Self {
        Profiled {
            inner,
            current: "other",
            since: started,
            at: Traffic::default(),
            totals: Vec::new(),
        }
    }

    fn close(&mut self) {
        let now = Instant::now();
        let t = self.inner.traffic();
        let entry = match self.totals.iter().position(|p| p.name == self.current) {
            Some(i) => &mut self.totals[i],
            None => {
                self.totals.push(PhaseStats {
                    name: self.current.to_string(),
                    ..PhaseStats::default()
                });
                self.totals.last_mut().expect("just pushed")
            }
        };
        entry.online_s += (now - self.since).as_secs_f64();
        entry.bytes_sent += t.bytes_sent - self.at.bytes_sent;
        entry.rounds += t.rounds - self.at.rounds;
        self.since = now;
        self.at = t;
    }

    /// The totals per part, in order of first appearance.
    pub fn finish(mut self) -> Vec<PhaseStats> {
        self.close();
        self.totals
    }
}

impl<C: Channel, K: KeySource, X: Kernels> Protocol for Profiled<'_, C, K, X> {
    type Weights = ServerWeights;

    fn phase(&mut self, name: &'static str) {
        if name != self.current {
            self.close();
            self.current = name;
        }
    }

    fn public(&self, shape: &[usize], width: BitWidth, values: &[u64]) -> Result<Tensor, Error> {
        self.inner.public(shape, width, values)
    }

    fn add_public(&self, x: &Tensor, c: &[u64]) -> Result<Tensor, Error> {
        self.inner.add_public(x, c)
    }

    async fn linear(&mut self, x: &Tensor, w: &ServerWeights) -> Result<Tensor, Error> {
        self.inner.linear(x, w).await
    }

    async fn affine(&mut self, x: &Tensor, w: &ServerWeights) -> Result<Tensor, Error> {
        self.inner.affine(x, w).await
    }

    async fn matmul(&mut self, x: &Tensor, y: &Tensor) -> Result<Tensor, Error> {
        self.inner.matmul(x, y).await
    }

    async fn matmul_offset(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        offset: &ServerWeights,
        index: &[u32],
    ) -> Result<Tensor, Error> {
        self.inner.matmul_offset(x, y, offset, index).await
    }

    async fn mul(&mut self, x: &Tensor, y: &Tensor) -> Result<Tensor, Error> {
        self.inner.mul(x, y).await
    }

    async fn truncate_to(&mut self, x: &Tensor, f: u32, out: BitWidth) -> Result<Tensor, Error> {
        self.inner.truncate_to(x, f, out).await
    }

    async fn truncate_later(&mut self, x: &Tensor, f: u32, out: BitWidth) -> Result<Later, Error> {
        self.inner.truncate_later(x, f, out).await
    }

    async fn scale_later(&mut self, x: &Tensor, w: &ServerWeights) -> Result<Later, Error> {
        self.inner.scale_later(x, w).await
    }

    async fn mul_add_shift(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        w: &ServerWeights,
    ) -> Result<Tensor, Error> {
        self.inner.mul_add_shift(x, y, w).await
    }

    async fn resolve(&mut self, later: Later) -> Result<Tensor, Error> {
        self.inner.resolve(later).await
    }

    async fn drelu(&mut self, x: &Tensor) -> Result<Tensor, Error> {
        self.inner.drelu(x).await
    }

    async fn mul_bit(&mut self, d: &Tensor, z: &Tensor) -> Result<Tensor, Error> {
        self.inner.mul_bit(d, z).await
    }

    async fn lookup(&mut self, x: &Tensor, table: &LookupTable) -> Result<Tensor, Error> {
        self.inner.lookup(x, table).await
    }

    async fn lookup_mul(
        &mut self,
        x: &Tensor,
        table: &LookupTable,
        z: &Tensor,
    ) -> Result<(Tensor, Tensor), Error> {
        self.inner.lookup_mul(x, table, z).await
    }

    async fn drelu_lookup(
        &mut self,
        x: &Tensor,
        table: &WindowTable,
    ) -> Result<(Tensor, Tensor), Error> {
        self.inner.drelu_lookup(x, table).await
    }

    async fn drelu_select_window(
        &mut self,
        x: &Tensor,
        table: &WindowTable,
        z: Later,
    ) -> Result<Tensor, Error> {
        self.inner.drelu_select_window(x, table, z).await
    }

    async fn window_times_lookup(
        &mut self,
        x: (&Tensor, &WindowTable),
        y: (&Tensor, &LookupTable),
    ) -> Result<Tensor, Error> {
        self.inner.window_times_lookup(x, y).await
    }

    async fn output(&mut self, x: &Tensor) -> Result<Vec<u64>, Error> {
        self.inner.output(x).await
    }

    async fn reveal(&mut self, x: &Tensor) -> Result<Tensor, Error> {
        self.inner.reveal(x).await
    }
}
