//! Logging that compiles away: `trace!`, `debug!`, `info!` and `warn!`
//! go to `defmt` on embedded hosts (feature `defmt`), to the `log` facade
//! on std hosts (feature `log`), and nowhere otherwise, where their
//! arguments are only borrowed so that no warning differs between builds.
//! Format strings use `{}` placeholders, which both loggers take.

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("gemma-core's features `defmt` and `log` exclude each other: pick one logger");

macro_rules! log_to {
    ($level:ident, $s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::$level!($s $(, $x)*);
        #[cfg(feature = "log")]
        ::log::$level!($s $(, $x)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        let _ = ($(&$x,)*);
    }};
}

#[allow(unused_macros)]
macro_rules! trace {
    ($($t:tt)*) => { log_to!(trace, $($t)*) };
}

#[allow(unused_macros)]
macro_rules! debug {
    ($($t:tt)*) => { log_to!(debug, $($t)*) };
}

#[allow(unused_macros)]
macro_rules! info {
    ($($t:tt)*) => { log_to!(info, $($t)*) };
}

#[allow(unused_macros)]
macro_rules! warn {
    ($($t:tt)*) => { log_to!(warn, $($t)*) };
}
