//! Arbitrary floats through each gemma.cpp codec: encode, decode, and the
//! decoded values within the codec's documented bound
//! (`codec::bounds::roundtrip_violation`).
#![no_main]

use gemma_core::codec::{self, bounds::roundtrip_violation, Codec, NUQ_ENCODE_SCRATCH_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let codec = Codec::ALL[which as usize % Codec::ALL.len()];
    let mut values: Vec<f32> = rest
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .filter(|v| v.is_finite() && v.abs() < 1e30)
        .take(1024)
        .collect();
    if values.is_empty() {
        return;
    }
    if matches!(codec, Codec::SFP | Codec::NUQ) {
        codec::scale_to_sfp_range(&mut values);
    }
    let mut bytes = vec![0u8; codec.bytes_for(values.len()).unwrap()];
    let mut scratch = vec![0f32; NUQ_ENCODE_SCRATCH_LEN];
    if let Err(e) = codec::encode(codec, &values, &mut bytes, &mut scratch) {
        // Only I8 refuses finite values: groups far from zero.
        assert!(codec == Codec::I8, "{e}");
        return;
    }
    let mut back = vec![0f32; values.len()];
    codec::decode(codec, &bytes, 0, &mut back).expect("encoded bytes decode");
    if let Some((i, allowed)) = roundtrip_violation(codec, &values, &back) {
        panic!(
            "{}: {} -> {} (allowed {allowed})",
            codec.name(),
            values[i],
            back[i]
        );
    }
});
