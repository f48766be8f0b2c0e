//! Numeric kernels over f32 activations and encoded weights.
//!
//! The portable scalar code here is the reference; it is written with
//! independent accumulator lanes so that the compiler vectorizes it.

pub mod fixed16;
pub mod isa;
pub mod matmul;
pub mod ops;
mod panel;
#[cfg(target_arch = "x86_64")]
mod rows_x86;
#[cfg(target_arch = "x86_64")]
mod rows_x86_fixed16;
mod shared;
#[cfg(target_arch = "x86_64")]
mod simd_x86;

pub use isa::Isa;
pub use shared::{for_row_chunks, SharedOut};

/// Inputs for the kernels' tests.
#[cfg(test)]
pub(crate) mod test_data {
    use crate::quant::WeightType;

    /// Reports a test that cannot run on this machine (a CPU without the
    /// instruction set it checks): one line on stderr, and one in the file
    /// `GEMMA_NOT_RUN_LOG` names, if set, which CI lists in its summary.
    pub fn not_run(test: &str, why: &str) {
        use std::io::Write;
        std::eprintln!("NOT RUN: {test}: {why}");
        if let Some(path) = std::env::var_os("GEMMA_NOT_RUN_LOG") {
            let line = std::format!("core {test}: {why}\n");
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path);
            if let Ok(mut f) = file {
                let _ = f.write_all(line.as_bytes());
            }
        }
    }

    /// Pseudo-random bytes (xorshift32 from `seed`).
    pub fn noise(bytes: &mut [u8], seed: u32) {
        let mut s = seed | 1;
        for b in bytes.iter_mut() {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            *b = s as u8;
        }
    }

    /// Formats and column counts the decode kernels are tested on: odd and
    /// even numbers of blocks, and for the K-quants one super-block past a
    /// run of 16 (`rows_x86::q4_k` takes sums of `x` 16 super-blocks at a
    /// time).
    pub const DECODE_SHAPES: [(WeightType, usize); 8] = [
        (WeightType::Q8_0, 32),
        (WeightType::Q8_0, 544),
        (WeightType::Q5_0, 32),
        (WeightType::Q5_0, 544),
        (WeightType::Q4K, 768),
        (WeightType::Q4K, 17 * 256),
        (WeightType::Q6K, 768),
        (WeightType::Q6K, 17 * 256),
    ];

    /// `rows` rows of `cols` weights of `ty`: random codes, every block
    /// scale (and Q4_K's `dmin`) 0.0123.
    pub fn quant_rows(ty: WeightType, rows: usize, cols: usize, seed: u32) -> std::vec::Vec<u8> {
        let mut bytes = std::vec![0u8; rows * ty.row_bytes(cols).unwrap()];
        noise(&mut bytes, seed);
        let scale = half::f16::from_f32(0.0123).to_bits().to_le_bytes();
        for block in bytes.chunks_exact_mut(ty.block_bytes()) {
            match ty {
                WeightType::Q4K => {
                    block[..2].copy_from_slice(&scale);
                    block[2..4].copy_from_slice(&scale);
                }
                WeightType::Q6K => block[208..210].copy_from_slice(&scale),
                _ => block[..2].copy_from_slice(&scale),
            }
        }
        bytes
    }
}

/// How a CPU backend computes: the precision of its matrix products and
/// the instruction set of every kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Arith {
    pub precision: Precision,
    pub isa: Isa,
}

impl Arith {
    /// `precision` on the best instruction set this CPU has.
    pub fn detect(precision: Precision) -> Self {
        Arith {
            precision,
            isa: Isa::detect(),
        }
    }
}

/// How activations meet weights in matrix products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 activations: every weight code becomes an f32 before its
    /// multiply. The tolerances of the goldens tests hold in this mode.
    #[default]
    Exact,
    /// Single-token products on GGUF Q8_0/Q5_0/Q4_K/Q6_K weights take the
    /// activations as 16-bit fixed point per block of 32 ([`fixed16`]) and
    /// multiply integers. Everything else (prefill, attention, norms, other
    /// formats, CPUs without AVX2) is as in `Exact`.
    Fast,
}

impl Precision {
    /// The name the CLI and the C API use.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Exact => "exact",
            Precision::Fast => "fast",
        }
    }

    /// The precision called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "exact" => Some(Precision::Exact),
            "fast" => Some(Precision::Fast),
            _ => None,
        }
    }
}
