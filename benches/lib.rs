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
    // Keep every f16/bf16/f32 value finite: clear the top exponent bit of each
    // 16-bit word. Payload bits keep their spread; the numbers stay sane.
    for pair in bytes.chunks_exact_mut(2) {
        pair[1] &= 0x3b;
    }
    bytes
}
