//! Logging through defmt behind the `defmt` feature. Without the feature nothing is logged
//! (host builds, where a defmt call cannot link); the arguments are only borrowed, so values
//! kept for the log raise no unused warnings.

/// A defmt `debug!` line when the `defmt` feature is on.
macro_rules! debug {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        defmt::debug!($fmt $(, $arg)*);
        #[cfg(not(feature = "defmt"))]
        { $( let _ = &$arg; )* }
    }};
}

/// A defmt `warn!` line when the `defmt` feature is on.
macro_rules! warning {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        defmt::warn!($fmt $(, $arg)*);
        #[cfg(not(feature = "defmt"))]
        { $( let _ = &$arg; )* }
    }};
}

pub(crate) use {debug, warning};
