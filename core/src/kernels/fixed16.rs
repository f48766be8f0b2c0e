//! Activations as 16-bit fixed point, for the `fast` precision.
//!
//! Each block of 32 activations is stored as `scale * q` with `q` a signed
//! 16-bit integer and `scale = max|x| / 32767`, so every activation keeps
//! at least 15 bits relative to its block's largest (f32 keeps 24, bf16 8,
//! llama.cpp's 8-bit activations 7). Weight codes are small integers, so a
//! block's dot product is then an exact integer sum (`vpmaddwd`), scaled
//! once per block: half the instructions per weight of converting every
//! code to f32.
//!
//! The exact f32 sum of each block rides along, for formats whose blocks
//! carry an offset (Q4_K's `-dmin * min`), so that term stays exact.

/// Elements per activation block: the block size of Q8_0/Q5_0 and of a
/// K-quant sub-block, so a block's scale applies to whole weight blocks.
pub const BLOCK: usize = 32;

/// Largest magnitude of a code.
const QMAX: f32 = 32767.0;

/// Borrowed fixed-point activations: `q.len() == BLOCK * scale.len()`.
#[derive(Clone, Copy, Debug)]
pub struct Fixed16<'a> {
    pub q: &'a [i16],
    pub scale: &'a [f32],
    pub sum: &'a [f32],
}

impl Fixed16<'_> {
    /// Whole blocks held.
    pub fn blocks(&self) -> usize {
        (self.q.len() / BLOCK)
            .min(self.scale.len())
            .min(self.sum.len())
    }
}

/// Quantizes `x` (its length a multiple of [`BLOCK`]) into `q`, `scale`
/// and `sum`, which must hold `x.len()`, `x.len() / BLOCK` and
/// `x.len() / BLOCK` entries; returns false (writing nothing) otherwise.
///
/// A block holding a NaN or an infinity gets a NaN scale, so the products
/// that use it are NaN, as they would be in f32.
pub fn quantize(x: &[f32], q: &mut [i16], scale: &mut [f32], sum: &mut [f32]) -> bool {
    let blocks = x.len() / BLOCK;
    if !x.len().is_multiple_of(BLOCK)
        || q.len() < x.len()
        || scale.len() < blocks
        || sum.len() < blocks
    {
        return false;
    }
    for (((xb, qb), s), t) in x
        .chunks_exact(BLOCK)
        .zip(q.chunks_exact_mut(BLOCK))
        .zip(scale.iter_mut())
        .zip(sum.iter_mut())
    {
        let mut max = 0f32;
        let mut finite = true;
        let mut total = 0f32;
        for &v in xb {
            finite &= v.is_finite();
            max = max.max(v.abs());
            total += v;
        }
        *t = total;
        if !finite {
            *s = f32::NAN;
            qb.fill(0);
            continue;
        }
        if max == 0.0 {
            *s = 0.0;
            qb.fill(0);
            continue;
        }
        *s = max / QMAX;
        let inv = QMAX / max;
        for (c, &v) in qb.iter_mut().zip(xb) {
            // |v * inv| <= 32767 up to rounding; `as` saturates the rest.
            *c = libm::roundf(v * inv) as i16;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_fifteen_bits_of_the_block_maximum() {
        let x: [f32; 64] = core::array::from_fn(|i| ((i * 37 % 29) as f32 - 14.0) * 0.173);
        let (mut q, mut s, mut t) = ([0i16; 64], [0f32; 2], [0f32; 2]);
        assert!(quantize(&x, &mut q, &mut s, &mut t));
        for b in 0..2 {
            let max = x[32 * b..32 * b + 32]
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()));
            let sum: f32 = x[32 * b..32 * b + 32].iter().sum();
            assert!((t[b] - sum).abs() <= 1e-5 * max * 32.0);
            for i in 32 * b..32 * b + 32 {
                let back = q[i] as f32 * s[b];
                assert!(
                    (back - x[i]).abs() <= max / 65534.0 * 1.01,
                    "{i}: {back} vs {}",
                    x[i]
                );
            }
        }
    }

    #[test]
    fn zero_and_non_finite_blocks() {
        let mut x = [0f32; 64];
        x[40] = f32::INFINITY;
        let (mut q, mut s, mut t) = ([1i16; 64], [1f32; 2], [0f32; 2]);
        assert!(quantize(&x, &mut q, &mut s, &mut t));
        assert_eq!(s[0], 0.0);
        assert!(s[1].is_nan());
        assert!(q.iter().all(|&c| c == 0));
    }

    #[test]
    fn refuses_ragged_or_short_buffers() {
        let x = [1f32; 40];
        let (mut q, mut s, mut t) = ([0i16; 64], [0f32; 2], [0f32; 2]);
        assert!(!quantize(&x, &mut q, &mut s, &mut t));
        let x = [1f32; 64];
        assert!(!quantize(&x, &mut q[..63], &mut s, &mut t));
        assert!(!quantize(&x, &mut q, &mut s[..1], &mut t));
    }
}
