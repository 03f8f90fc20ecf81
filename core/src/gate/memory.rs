//! In-memory adapters for tests and single-process use: a P0–P1 link, the dealer's streams
//! held in memory, and a deterministic executor that runs P0 and P1 as two concurrent tasks
//! on one thread.
//!
//! The link records what each party receives, so tests can inspect a server's view.

use super::channel::{Channel, KeySink, KeySource, Traffic};
use crate::Error;
use crate::share::Party;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

#[derive(Default)]
struct LinkState {
    /// Messages in flight to party 0 and party 1.
    inbox: [VecDeque<Vec<u8>>; 2],
    /// Every message each party received, in order.
    received: [Vec<Vec<u8>>; 2],
    /// Count of sends and receives, to tell progress from deadlock.
    events: u64,
}

/// A P0–P1 link in memory. Create the two endpoints, then [`MemoryLink::run`] both parties.
#[derive(Clone, Default)]
pub struct MemoryLink {
    state: Rc<RefCell<LinkState>>,
}

/// One party's endpoint of a [`MemoryLink`].
pub struct MemoryChannel {
    me: usize,
    state: Rc<RefCell<LinkState>>,
    traffic: Traffic,
}

impl MemoryLink {
    /// A fresh link.
    pub fn new() -> Self {
        Self::default()
    }

    /// The endpoints for P0 and P1.
    pub fn endpoints(&self) -> (MemoryChannel, MemoryChannel) {
        let ep = |me| MemoryChannel {
            me,
            state: self.state.clone(),
            traffic: Traffic::default(),
        };
        (ep(0), ep(1))
    }

    /// Every message `party` received so far (its online view of the other server).
    pub fn received(&self, party: Party) -> Vec<Vec<u8>> {
        self.state.borrow().received[party.index() as usize].clone()
    }

    /// Runs P0's and P1's futures concurrently on this thread until both finish. A state in
    /// which neither can make progress (e.g. the parties disagree on the gate sequence) is
    /// reported as an error instead of hanging.
    pub fn run<A: Future, B: Future>(&self, p0: A, p1: B) -> Result<(A::Output, B::Output), Error> {
        let mut a = pin!(p0);
        let mut b = pin!(p1);
        let mut cx = Context::from_waker(Waker::noop());
        let (mut ra, mut rb) = (None, None);
        loop {
            let before = self.state.borrow().events;
            let mut finished_now = false;
            if ra.is_none()
                && let Poll::Ready(x) = a.as_mut().poll(&mut cx)
            {
                ra = Some(x);
                finished_now = true;
            }
            if rb.is_none()
                && let Poll::Ready(x) = b.as_mut().poll(&mut cx)
            {
                rb = Some(x);
                finished_now = true;
            }
            match (ra.take(), rb.take()) {
                (Some(x), Some(y)) => return Ok((x, y)),
                (x, y) => (ra, rb) = (x, y),
            }
            if !finished_now && self.state.borrow().events == before {
                return Err(Error::ProtocolMisuse(
                    "deadlock: a party waits for a message that never comes",
                ));
            }
        }
    }
}

impl Channel for MemoryChannel {
    async fn exchange(&mut self, send: &[u8], recv: &mut [u8]) -> Result<(), Error> {
        {
            let mut s = self.state.borrow_mut();
            s.inbox[1 - self.me].push_back(send.to_vec());
            s.events += 1;
        }
        self.traffic.bytes_sent += send.len() as u64;
        self.traffic.rounds += 1;
        let msg = core::future::poll_fn(|_| {
            let mut s = self.state.borrow_mut();
            match s.inbox[self.me].pop_front() {
                Some(m) => {
                    s.events += 1;
                    Poll::Ready(m)
                }
                None => Poll::Pending,
            }
        })
        .await;
        if msg.len() != recv.len() {
            return Err(Error::LengthMismatch {
                expected: recv.len(),
                got: msg.len(),
            });
        }
        recv.copy_from_slice(&msg);
        self.state.borrow_mut().received[self.me].push(msg);
        Ok(())
    }

    fn traffic(&self) -> Traffic {
        self.traffic
    }
}

/// The dealer's streams for one session, kept in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryKeys {
    /// Bytes for P1 only.
    pub p1: Vec<u8>,
    /// Bytes for both servers.
    pub shared: Vec<u8>,
    /// P0's and P1's linear streams.
    pub linear: [Vec<u8>; 2],
}

impl KeySink for MemoryKeys {
    fn to_p1(&mut self, bytes: &[u8]) {
        self.p1.extend_from_slice(bytes);
    }
    fn to_both(&mut self, bytes: &[u8]) {
        self.shared.extend_from_slice(bytes);
    }
    fn to_linear(&mut self, both: &[u8], p1_only: &[u8]) {
        self.linear[0].extend_from_slice(both);
        self.linear[1].extend_from_slice(both);
        self.linear[1].extend_from_slice(p1_only);
    }
}

impl MemoryKeys {
    /// `party`'s reader: P0 sees only the shared stream.
    pub fn reader(&self, party: Party) -> MemoryKeyReader<'_> {
        MemoryKeyReader {
            p1: match party {
                Party::P0 => None,
                Party::P1 => Some(&self.p1),
            },
            shared: &self.shared,
            linear: &self.linear[party.index() as usize],
            p1_pos: 0,
            shared_pos: 0,
            linear_pos: 0,
        }
    }
}

/// A server's cursor over [`MemoryKeys`].
pub struct MemoryKeyReader<'a> {
    p1: Option<&'a [u8]>,
    shared: &'a [u8],
    linear: &'a [u8],
    p1_pos: usize,
    shared_pos: usize,
    linear_pos: usize,
}

impl MemoryKeyReader<'_> {
    /// Whether every byte meant for this party was consumed (a check that dealer and server
    /// ran the same circuit).
    pub fn is_exhausted(&self) -> bool {
        self.p1.is_none_or(|p| self.p1_pos == p.len())
            && self.shared_pos == self.shared.len()
            && self.linear_pos == self.linear.len()
    }
}

fn take(stream: &[u8], pos: &mut usize, out: &mut [u8]) -> Result<(), Error> {
    let end = *pos + out.len();
    let src = stream
        .get(*pos..end)
        .ok_or(Error::ChannelClosed("the dealer's stream ended early"))?;
    out.copy_from_slice(src);
    *pos = end;
    Ok(())
}

impl KeySource for MemoryKeyReader<'_> {
    async fn read_p1_stream(&mut self, out: &mut [u8]) -> Result<(), Error> {
        match self.p1 {
            Some(p) => take(p, &mut self.p1_pos, out),
            None => Err(Error::ProtocolMisuse(
                "P0 receives nothing from the dealer but its seed",
            )),
        }
    }

    async fn read_shared_stream(&mut self, out: &mut [u8]) -> Result<(), Error> {
        take(self.shared, &mut self.shared_pos, out)
    }

    async fn read_linear_stream(&mut self, out: &mut [u8]) -> Result<(), Error> {
        take(self.linear, &mut self.linear_pos, out)
    }
}
