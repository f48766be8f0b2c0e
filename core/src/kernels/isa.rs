//! The instruction sets the kernels may use: detected once at run time,
//! straight from CPUID (no std needed), and handed to every kernel that
//! has a SIMD path as a plain [`Isa`] value. Nothing global can be
//! switched: a test compares two paths by passing two values, and a host
//! that wants the reference arithmetic passes [`Isa::Portable`].
//!
//! A default build targets baseline x86-64 (SSE2); kernels compiled for
//! AVX2+FMA are chosen here when the processor and OS support them, so one
//! binary runs everywhere and fast where it can. (The `cpufeatures` crate
//! would do the CPUID part, but its feature list has no F16C, which every
//! AVX2 kernel here needs for f16 scales.)

use core::sync::atomic::{AtomicU8, Ordering};

/// Which kernels run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Isa {
    /// The portable scalar code: the reference every SIMD path is tested
    /// against.
    #[default]
    Portable,
    /// x86-64 with AVX2, FMA and F16C, and an OS that saves AVX state.
    Avx2,
}

const UNKNOWN: u8 = 0;
const PORTABLE: u8 = 1;
const AVX2: u8 = 2;

/// The detection result, cached: detection is idempotent, so this is a
/// memo, not a switch.
static DETECTED: AtomicU8 = AtomicU8::new(UNKNOWN);

impl Isa {
    /// The best this CPU runs.
    #[inline]
    pub fn detect() -> Isa {
        let level = match DETECTED.load(Ordering::Relaxed) {
            UNKNOWN => {
                let level = detect();
                DETECTED.store(level, Ordering::Relaxed);
                level
            }
            level => level,
        };
        if level == AVX2 {
            Isa::Avx2
        } else {
            Isa::Portable
        }
    }

    /// Every instruction set this CPU runs, the portable one first: what a
    /// test of a SIMD path iterates over.
    pub fn available() -> impl Iterator<Item = Isa> {
        [Isa::Portable, Isa::Avx2]
            .into_iter()
            .filter(|&i| i == Isa::Portable || i == Isa::detect())
    }

    /// Whether the AVX2+FMA(+F16C) kernels run: asked for, and present
    /// (an `Isa::Avx2` made up on a CPU without AVX2 runs the portable
    /// code, so no safe call can reach an unsupported instruction).
    #[inline]
    pub fn avx2(self) -> bool {
        self == Isa::Avx2 && Isa::detect() == Isa::Avx2
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> u8 {
    use core::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};
    let leaf1 = __cpuid(1);
    let fma = leaf1.ecx & (1 << 12) != 0;
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    let avx = leaf1.ecx & (1 << 28) != 0;
    let f16c = leaf1.ecx & (1 << 29) != 0;
    if !(fma && osxsave && avx && f16c) || __cpuid(0).eax < 7 {
        return PORTABLE;
    }
    let avx2 = __cpuid_count(7, 0).ebx & (1 << 5) != 0;
    // SAFETY: XGETBV exists because CPUID reported OSXSAVE above.
    let xcr0 = unsafe { _xgetbv(0) };
    // The OS must save both SSE and AVX register state.
    let os_avx = xcr0 & 0b110 == 0b110;
    if avx2 && os_avx {
        AVX2
    } else {
        PORTABLE
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> u8 {
    PORTABLE
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Detection must find what the standard library finds, or the SIMD
    /// tests would be skipped on a CPU that has the instructions.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn detection_agrees_with_std() {
        let std_says = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        assert_eq!(Isa::detect() == Isa::Avx2, std_says);
        assert_eq!(Isa::available().count(), 1 + usize::from(std_says));
        // A made-up AVX2 value on a CPU without it runs the portable code.
        assert_eq!(Isa::Avx2.avx2(), std_says);
        assert!(!Isa::Portable.avx2());
    }
}
