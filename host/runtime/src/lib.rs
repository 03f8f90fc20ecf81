//! SecureRouter's services: the encrypted links between roles, the dealer, the two servers and
//! the client, the deployment folder each role reads, and local clusters (all roles in one
//! machine's processes) for demos and benchmarks. The circuits they run come from
//! `securerouter-circuits`; this crate moves their shares and keys.
//!
//! The crate denies `unsafe_code`; [`sys`] (two C library calls) alone allows it, each call
//! listed with its safety argument in the module's documentation.

#![deny(unsafe_code)]

pub mod client;
pub mod dealer;
pub mod deployment;
pub mod error;
pub mod local_cluster;
pub mod messages;
pub mod metrics;
pub mod model_file;
pub mod net;
pub mod pool_client;
pub mod probes;
pub mod relay;
mod secret_file;
pub mod served_pool;
pub mod server;
pub mod service;
pub mod sys;

pub use error::{Error, Result};
