//! Secure neural-network layers and models over core's gates, written once for the dealer
//! and both servers, next to the plaintext graph they are measured against
//! ([`crate::model::reference`]).

pub mod bert;
pub mod layers;
pub mod memory;
pub mod profile;

pub use bert::{BertShape, bert_classifier};
