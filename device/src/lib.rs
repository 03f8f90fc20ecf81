//! # securerouter-device
//!
//! The constrained client of SecureRouter: a microcontroller with kilobytes of RAM turns its
//! input embedding into secret shares for the two servers, streams them over the same
//! encrypted links the host client uses, and adds up the output shares the servers return.
//!
//! - [`shares`]: core's seeded split, row by row. P0 receives only a 16-byte seed and expands
//!   its share itself; P1 receives x − PRG(seed), streamed from a fixed [`heapless::Vec`] of
//!   `W` words. Rows come from an [`EmbeddingSource`] the application supplies (a sensor
//!   pipeline, a flash-resident table); [`FixedPointRows`] adapts a real matrix.
//! - [`embedding`]: for devices that can hold it, an int8 embedding table in flash and the
//!   WordPiece-ids path: [`TokenEmbedder`] computes the rows the host client would send
//!   (LayerNorm of the summed embeddings, attention bias, pooling weight) from token ids.
//! - [`noise`]: the initiator's side of the links' Noise IK handshake and a streamed
//!   ChaCha20-Poly1305, without an allocator.
//! - [`link`]: the links' framing over any `embedded_io_async` stream (embassy-net's
//!   `TcpSocket`, or a tokio stream in host tests); messages are sealed and opened as they
//!   stream.
//! - [`session`]: one query to P0 and P1 in the session messages of `securerouter-wire` (the
//!   wire format the host speaks too, re-exported as [`wire`]), postcard-encoded.
//! - [`replay`]: a recorded peer, for measuring the protocol without a network.
//!
//! No allocator is needed anywhere; peak RAM is one row, a few hundred bytes of link buffers
//! and a 1 KiB reply buffer, whatever the number of rows. Every failure, including tampered or
//! truncated frames from a server, is an error value.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod log;

pub use securerouter_wire as wire;

pub mod embedding;
pub mod link;
pub mod noise;
pub mod replay;
pub mod session;
pub mod shares;

pub use embedding::{EmbeddingError, EmbeddingTable, TokenEmbedder};
pub use link::{DeviceLink, LinkError};
pub use noise::StaticKey;
pub use session::{Circuit, Outputs, RouteMode, ServerKeys, SessionError, query};
pub use shares::{DeviceError, EmbeddingSource, FixedPointRows, ShareStreamer};
