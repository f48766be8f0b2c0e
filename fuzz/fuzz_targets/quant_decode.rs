//! Every weight format's decoder and dot product on arbitrary bytes.
#![no_main]

use gemma_core::quant::{self, WeightType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let ty = WeightType::ALL[selector as usize % WeightType::ALL.len()];
    let blocks = bytes.len() / ty.block_bytes();
    let n = blocks * ty.block_elems();
    let src = &bytes[..blocks * ty.block_bytes()];
    let mut out = vec![0f32; n];
    quant::dequantize(ty, src, &mut out).expect("lengths match");
    let x = vec![1.0f32; n];
    let d = quant::dot(ty, src, &x).expect("lengths match");
    let sum: f32 = out.iter().sum();
    // Same arithmetic up to rounding, unless the values are not finite.
    if d.is_finite() && sum.is_finite() && sum.abs() < 1e30 {
        let scale = out.iter().map(|v| v.abs()).sum::<f32>().max(1.0);
        assert!((d - sum).abs() <= 1e-3 * scale, "dot {d} vs sum {sum}");
    }
    // A wrong length is an error, never a panic.
    let _ = quant::dequantize(ty, data, &mut out);
});
