//! Gates whose opening waits for the next exchange of any gate, so that they cost no round of
//! their own where their result is not needed at once ([`super::Protocol::truncate_later`],
//! [`super::Protocol::scale_later`]): the server computes its share of the masked result from
//! its keys at once (so keys are read in the dealer's order) and queues it
//! ([`ServerSide::defer_open`]); [`super::Protocol::resolve`] gives the wire.

use super::channel::{Channel, KeySource};
use super::kernels::Kernels;
use super::roles::ServerSide;
use super::tensor::Tensor;
use crate::Error;
use crate::ring::BitWidth;
use alloc::vec::Vec;

/// A deferred gate's wire: the dealer's output mask, or a server's queued opening.
#[derive(Debug)]
pub struct Later(Wire);

#[derive(Debug)]
enum Wire {
    Dealt(Tensor),
    Deferred {
        ticket: usize,
        shape: Vec<usize>,
        width: BitWidth,
    },
}

impl Later {
    /// The dealer's side: the output mask, known at once.
    pub(super) fn dealt(mask: Tensor) -> Self {
        Later(Wire::Dealt(mask))
    }

    /// A server's side: its share `mine` of the masked result, queued for the next exchange.
    pub(super) fn deferred<C: Channel, K: KeySource, X: Kernels>(
        srv: &mut ServerSide<C, K, X>,
        mine: Vec<u64>,
        shape: &[usize],
        width: BitWidth,
    ) -> Self {
        Later(Wire::Deferred {
            ticket: srv.defer_open(mine, width),
            shape: shape.to_vec(),
            width,
        })
    }

    /// The wire's shape and ring, known to each role before it is opened.
    pub(super) fn shape_width(&self) -> (&[usize], BitWidth) {
        match &self.0 {
            Wire::Dealt(t) => (t.shape(), t.width()),
            Wire::Deferred { shape, width, .. } => (shape, *width),
        }
    }

    /// The dealer's wire.
    pub(super) fn dealer_wire(self) -> Result<Tensor, Error> {
        match self.0 {
            Wire::Dealt(t) => Ok(t),
            Wire::Deferred { .. } => Err(Error::ProtocolMisuse(
                "a server's deferred gate resolved by the dealer",
            )),
        }
    }

    /// A server's wire: opened by a later exchange, or now (one round).
    pub(super) async fn server_wire<C: Channel, K: KeySource, X: Kernels>(
        self,
        srv: &mut ServerSide<C, K, X>,
    ) -> Result<Tensor, Error> {
        match self.0 {
            Wire::Deferred {
                ticket,
                shape,
                width,
            } => Ok(Tensor::from_parts(
                &shape,
                width,
                srv.take_opened(ticket).await?,
            )),
            Wire::Dealt(_) => Err(Error::ProtocolMisuse(
                "the dealer's deferred gate resolved by a server",
            )),
        }
    }
}
