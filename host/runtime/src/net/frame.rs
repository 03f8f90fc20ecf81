//! The links' wire format without I/O or cryptography: `securerouter-wire`'s [`frame`
//! module](securerouter_wire::frame), shared with the device client (length prefixes, bounds
//! checks, chunking and reassembly of logical messages; see the [module docs](super) for the
//! format).

pub use securerouter_wire::frame::*;
