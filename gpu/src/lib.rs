//! gemma-gpu: the CUDA backend of gemma-rs.
//!
//! Not implemented yet. Until it is, this crate is the stand-in every
//! caller can compile against: it reports that no device is available, so
//! frontends fall back to the CPU path and say why.

use std::fmt;

/// Why no GPU backend is available.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoDevice;

impl fmt::Display for NoDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no CUDA device: the CUDA backend is not implemented in this build"
        )
    }
}

impl std::error::Error for NoDevice {}

/// Number of usable CUDA devices (always 0 in this build).
pub fn device_count() -> usize {
    0
}

/// Opens device `ordinal`; always fails in this build.
pub fn open(ordinal: usize) -> Result<(), NoDevice> {
    let _ = ordinal;
    Err(NoDevice)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reports_no_device_with_a_reason() {
        assert_eq!(super::device_count(), 0);
        let e = super::open(0).unwrap_err();
        assert!(e.to_string().contains("not implemented"));
    }
}
