//! CPU features, detected once at run time (no_std: straight from CPUID).
//!
//! A default build targets baseline x86-64 (SSE2); kernels compiled for
//! AVX2+FMA are chosen here when the processor and OS support them, so one
//! binary runs everywhere and fast where it can.

use core::sync::atomic::{AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const PORTABLE: u8 = 1;
const AVX2_FMA: u8 = 2;

static LEVEL: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Whether the AVX2+FMA (+F16C) kernels may run.
#[inline]
pub fn has_avx2_fma() -> bool {
    match LEVEL.load(Ordering::Relaxed) {
        UNKNOWN => {
            let level = detect();
            LEVEL.store(level, Ordering::Relaxed);
            level == AVX2_FMA
        }
        level => level == AVX2_FMA,
    }
}

/// Forces the portable kernels (`true`) or re-enables detection (`false`).
/// For tests that compare the two paths, and for hosts that want the
/// reference arithmetic.
pub fn force_portable(portable: bool) {
    LEVEL.store(if portable { PORTABLE } else { UNKNOWN }, Ordering::Relaxed);
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
        AVX2_FMA
    } else {
        PORTABLE
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> u8 {
    PORTABLE
}
