//! Shared inputs for the benchmarks in `benches/benches/`.

use gemma_core::quant::WeightType;

/// Deterministic pseudo-random encoded rows of `ty`: finite block scales,
/// arbitrary quantized payloads. `rows x cols` elements.
pub fn random_matrix_bytes(ty: WeightType, rows: usize, cols: usize) -> Vec<u8> {
    let row_bytes = ty
        .row_bytes(cols)
        .expect("cols is a whole number of blocks");
    let mut bytes = vec![0u8; row_bytes * rows];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for b in bytes.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = (state >> 32) as u8;
    }
    match ty {
        // Float weights as real ones look: normal numbers in (-1, 1). Raw
        // random bits would be mostly subnormal, which some CPUs (Intel)
        // multiply tens of times slower, so the figures would mean nothing.
        WeightType::F32 => {
            let vals = bytes
                .chunks_exact(4)
                .map(|c| unit(c[0], c[1]))
                .collect::<Vec<_>>();
            vals.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        WeightType::BF16 | WeightType::F16 => {
            let vals = bytes
                .chunks_exact(2)
                .map(|c| unit(c[0], c[1]))
                .collect::<Vec<_>>();
            vals.iter()
                .flat_map(|&v| match ty {
                    WeightType::BF16 => half::bf16::from_f32(v).to_bits().to_le_bytes(),
                    _ => half::f16::from_f32(v).to_bits().to_le_bytes(),
                })
                .collect()
        }
        _ => {
            // Keep every f16 block scale finite and modest: clear the top
            // exponent bits of each 16-bit word. Payload bits keep their spread.
            for pair in bytes.chunks_exact_mut(2) {
                pair[1] &= 0x3b;
            }
            bytes
        }
    }
}

/// A value in (-1, 1) from two random bytes.
fn unit(a: u8, b: u8) -> f32 {
    (u16::from_le_bytes([a, b]) as f32 - 32767.5) / 32768.0
}
