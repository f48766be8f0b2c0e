//! Property tests: every gemma.cpp codec decodes what it encoded within its
//! documented bound (`codec::bounds`), and the real tokenizer gives back
//! any UTF-8 text it encoded.

use gemma_core::codec::{self, bounds::roundtrip_violation, Codec, NUQ_ENCODE_SCRATCH_LEN};
use gemma_platform::LoadedModel;
use gemma_tests::real_model_path;
use proptest::prelude::*;
use std::sync::OnceLock;

fn roundtrip(codec: Codec, values: &[f32]) -> Result<(), TestCaseError> {
    let mut bytes = vec![0u8; codec.bytes_for(values.len()).unwrap()];
    let mut scratch = vec![0f32; NUQ_ENCODE_SCRATCH_LEN];
    codec::encode(codec, values, &mut bytes, &mut scratch).unwrap();
    let mut back = vec![0f32; values.len()];
    codec::decode(codec, &bytes, 0, &mut back).unwrap();
    if let Some((i, allowed)) = roundtrip_violation(codec, values, &back) {
        return Err(TestCaseError::fail(format!(
            "{}: element {i}: {} came back as {} (allowed error {allowed})",
            codec.name(),
            values[i],
            back[i]
        )));
    }
    // Decoding from any element offset gives the same values.
    let off = values.len() / 3;
    let mut tail = vec![0f32; values.len() - off];
    codec::decode(codec, &bytes, off, &mut tail).unwrap();
    prop_assert_eq!(&tail[..], &back[off..]);
    Ok(())
}

/// Values of mixed magnitudes inside SFP's range, zeros included.
fn sfp_range_values() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        prop_oneof![
            -1.875f32..=1.875,
            -0.01f32..0.01,
            -1e-5f32..1e-5,
            Just(0.0f32),
        ],
        1..700,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn f32_and_bf16_round_trip(values in prop::collection::vec(any::<f32>(), 1..600)) {
        roundtrip(Codec::F32, &values)?;
        let finite: Vec<f32> = values.into_iter().filter(|v| v.is_finite() && v.abs() < 3e38).collect();
        if !finite.is_empty() {
            roundtrip(Codec::BF16, &finite)?;
        }
    }

    #[test]
    fn sfp_round_trips(values in sfp_range_values()) {
        roundtrip(Codec::SFP, &values)?;
    }

    #[test]
    fn nuq_round_trips(values in sfp_range_values()) {
        roundtrip(Codec::NUQ, &values)?;
    }

    #[test]
    fn i8_round_trips(values in prop::collection::vec(-1e4f32..1e4, 1..700)) {
        roundtrip(Codec::I8, &values)?;
    }

    #[test]
    fn scaled_sfp_round_trips(values in prop::collection::vec(-50f32..50.0, 1..400)) {
        // Weights beyond 1.875 go through the tensor scale first.
        let mut scaled = values.clone();
        let scale = codec::scale_to_sfp_range(&mut scaled);
        let mut bytes = vec![0u8; Codec::SFP.bytes_for(values.len()).unwrap()];
        codec::encode(Codec::SFP, &scaled, &mut bytes, &mut []).unwrap();
        let mut back = vec![0f32; values.len()];
        codec::decode(Codec::SFP, &bytes, 0, &mut back).unwrap();
        for (x, y) in values.iter().zip(&back) {
            let y = y * scale;
            prop_assert!((y - x).abs() <= 0.141 * x.abs() + 1e-5 * scale, "{} -> {}", x, y);
        }
    }
}

/// Inputs the fuzzer found where the first bound was too tight: a constant
/// group of one subnormal (gemma.cpp spreads the grid over a range of 1),
/// and a group far from zero (its BF16 zero point moves every value).
#[test]
fn i8_fuzzer_regressions() {
    roundtrip(Codec::I8, &[3.57e-43]).unwrap();
    roundtrip(Codec::I8, &[1000.0, 1000.001, 1000.002, 999.999]).unwrap();
    let far: Vec<f32> = (0..200).map(|i| 1e4 + i as f32 * 1e-3).collect();
    roundtrip(Codec::I8, &far).unwrap();
    // A constant group of 3.4e10: its zero point, 255 * 3.4e10, overflows
    // i32, which gemma.cpp's encoder stores as i32::MIN. Refused instead.
    let mut bytes = vec![0u8; Codec::I8.bytes_for(1).unwrap()];
    assert!(codec::encode(Codec::I8, &[3.382_286_3e10], &mut bytes, &mut []).is_err());
}

fn model() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| LoadedModel::open(&real_model_path()).expect("the default model"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// SentencePiece writes spaces as U+2581, so a literal U+2581 comes
    /// back as a space; everything else comes back byte for byte.
    #[test]
    fn tokenizer_round_trips_any_text(text in any::<String>()) {
        let tok = model().tokenizer();
        let ids = tok.encode_to_vec(&text, false).unwrap();
        prop_assert_eq!(tok.decode_to_string(&ids, false), text.replace('\u{2581}', " "));
    }

    #[test]
    fn tokenizer_round_trips_words_and_markup(
        text in "[ a-zA-Z0-9<>_/\\n\\t.,!?'\"éü日本語🙂-]{0,200}"
    ) {
        let tok = model().tokenizer();
        let ids = tok.encode_to_vec(&text, true).unwrap();
        prop_assert_eq!(tok.decode_to_string(&ids, false), text);
    }
}
