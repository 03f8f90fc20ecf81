//! The crate's error type: one variant per kind of failure, each naming the problem (the shape,
//! the value, the stage refused). An underlying error is the variant's source, not repeated in
//! its message: print the chain (the binary does, with anyhow's `{:#}`) to see it.

use securerouter_wire::CircuitKind;

/// What went wrong in checking a model's shapes, preparing its weights for the ring, or
/// following a query's plan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A shape or value refused (shapes come from files and the CLI). The message names the
    /// value and why.
    #[error("{0}")]
    Invalid(String),
    /// An error of the gate engine (core's rings, fixed point and weight sharing).
    #[error(transparent)]
    Protocol(#[from] securerouter_core::Error),
    /// An error of the plaintext side (e.g. the router head's shape).
    #[error(transparent)]
    Model(#[from] securerouter_ml::Error),
    /// A value does not fit the fixed-point format of the circuits.
    #[error("{what} does not fit the fixed-point format")]
    FixedPoint {
        /// Which values, e.g. "layer 0 QKV".
        what: String,
        /// The fixed-point error.
        #[source]
        source: securerouter_core::Error,
    },
    /// More items than their index type can number.
    #[error("too many {what}")]
    TooMany {
        /// What there are too many of, e.g. "layers".
        what: &'static str,
        /// The conversion error.
        #[source]
        source: std::num::TryFromIntError,
    },
    /// A circuit asked of a model that does not run it.
    #[error("{kind} is not served here; this model is {model}")]
    NotServed {
        /// The circuit asked for.
        kind: CircuitKind,
        /// The circuits the model runs ([`ModelSpec::describe`](crate::ModelSpec::describe)).
        model: String,
    },
    /// A stage that the query's plan does not have.
    #[error("a {first} query has no stage {stage}")]
    NoStage {
        /// The query's circuit.
        first: CircuitKind,
        /// The stage asked for.
        stage: u8,
    },
    /// A choice that is not a one-hot row.
    #[error("the choice {0:?} is not one-hot")]
    NotOneHot(Vec<u64>),
    /// The route a reveal-route query revealed is refused.
    #[error("the revealed route")]
    RevealedRoute(#[source] Box<Error>),
    /// A route past the experts of the largest pool.
    #[error("a route past the largest pool")]
    RoutePastPool {
        /// The route.
        route: usize,
        /// Why it has no stage.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A reveal-route query's first stage revealed no route.
    #[error("a reveal-route query revealed no route")]
    NoRouteRevealed,
    /// A query whose circuit reveals nothing, with something revealed.
    #[error("{0} reveals nothing to the servers")]
    RevealsNothing(CircuitKind),
    /// The servers returned a number of outputs the query's circuit does not give.
    #[error("the servers returned {count} outputs for {kind}")]
    Outputs {
        /// The query's circuit.
        kind: CircuitKind,
        /// The outputs returned.
        count: usize,
    },
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns early with [`Error::Invalid`] of a formatted message.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}
pub(crate) use invalid;
