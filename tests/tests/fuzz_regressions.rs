//! Every input a fuzzer ever crashed on, replayed through the same check the
//! fuzz target makes. Inputs live in `tests/data/fuzz-regressions/<target>/`
//! (copied from `fuzz/artifacts/<target>/`); a target directory this file
//! has no replay for fails the test, so a new finding cannot be dropped in
//! without a replay.

use gemma_core::codec::{self, bounds::roundtrip_violation, Codec, NUQ_ENCODE_SCRATCH_LEN};
use gemma_tests::data_dir;
use std::path::Path;

/// `fuzz/fuzz_targets/codec_roundtrip.rs`: floats from the bytes after the
/// first (which picks the codec), encoded, decoded, within the bound.
fn codec_roundtrip(data: &[u8]) -> Result<(), String> {
    let Some((&which, rest)) = data.split_first() else {
        return Ok(());
    };
    let codec = Codec::ALL[which as usize % Codec::ALL.len()];
    let mut values: Vec<f32> = rest
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .filter(|v| v.is_finite() && v.abs() < 1e30)
        .take(1024)
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    if matches!(codec, Codec::SFP | Codec::NUQ) {
        codec::scale_to_sfp_range(&mut values);
    }
    let mut bytes = vec![0u8; codec.bytes_for(values.len()).unwrap()];
    let mut scratch = vec![0f32; NUQ_ENCODE_SCRATCH_LEN];
    if let Err(e) = codec::encode(codec, &values, &mut bytes, &mut scratch) {
        return if codec == Codec::I8 {
            Ok(())
        } else {
            Err(format!("{} refused finite input: {e}", codec.name()))
        };
    }
    let mut back = vec![0f32; values.len()];
    codec::decode(codec, &bytes, 0, &mut back).map_err(|e| e.to_string())?;
    match roundtrip_violation(codec, &values, &back) {
        Some((i, allowed)) => Err(format!(
            "{}: {} -> {} (allowed {allowed})",
            codec.name(),
            values[i],
            back[i]
        )),
        None => Ok(()),
    }
}

fn replay(target: &str, dir: &Path) -> Vec<String> {
    let check: fn(&[u8]) -> Result<(), String> = match target {
        "codec_roundtrip" => codec_roundtrip,
        other => return vec![format!("{other}: no replay for this fuzz target")],
    };
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{}: {e}", path.display())),
            Err(_) => failures.push(format!("{}: panicked", path.display())),
        }
    }
    failures
}

#[test]
fn every_past_fuzz_crash_now_passes_its_target() {
    let root = data_dir().join("fuzz-regressions");
    let mut replayed = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let target = dir.file_name().unwrap().to_string_lossy().into_owned();
        replayed += std::fs::read_dir(&dir).unwrap().count();
        failures.extend(replay(&target, &dir));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(replayed >= 2, "only {replayed} regression inputs found");
}

/// The two I8 findings: a lone subnormal, and a lone 3.4e10, whose group's
/// zero point gemma.cpp's encoder would truncate to `i32::MIN`. Either is
/// refused or round-trips; neither panics.
#[test]
fn i8_findings_are_refused_or_within_bound() {
    for v in [f32::from_bits(0xff), f32::from_bits(0x50fb_fffe)] {
        let mut data = vec![4u8];
        data.extend_from_slice(&v.to_le_bytes());
        assert_eq!(codec_roundtrip(&data), Ok(()), "{v:e}");
    }
}
