//! Truncated, bit-flipped and hand-crafted hostile GGUF files: each must
//! give an error from the full load path (parser, config, weights,
//! tokenizer), never a panic.

use gemma_platform::gguf_writer::{GgufWriter, MetaValue};
use gemma_platform::synthetic::{tiny_model, TinySpec};
use gemma_platform::LoadedModel;

fn load(bytes: Vec<u8>) -> Result<(), String> {
    std::panic::catch_unwind(|| {
        LoadedModel::from_vec("hostile.gguf", bytes)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .unwrap_or_else(|_| panic!("loading panicked"))
}

fn must_fail(name: &str, bytes: Vec<u8>) -> String {
    match load(bytes) {
        Ok(()) => panic!("{name}: hostile file loaded without error"),
        Err(e) => {
            assert!(
                !e.is_empty() && !e.contains('\n'),
                "{name}: error should be one line: {e:?}"
            );
            e
        }
    }
}

/// A small valid file to start from.
fn base() -> GgufWriter {
    let mut w = GgufWriter::default();
    w.meta("general.architecture", MetaValue::Str("gemma3".into()));
    w.tensor_f32("a", &[4, 2], &[1.0; 8]);
    w.tensor_f32("b", &[8], &[2.0; 8]);
    w
}

fn offset_of_tensor_info(bytes: &[u8], name: &str) -> usize {
    // name length (u64) then the name bytes.
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("tensor info present")
}

#[test]
fn the_unmodified_tiny_model_loads_as_gguf_v3_and_v2() {
    let mut bytes = tiny_model(&TinySpec::default());
    load(bytes.clone()).expect("valid model must load");
    // Version 2 has the same layout (64-bit counts); only the number differs.
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    load(bytes).expect("GGUF v2 must load");
}

#[test]
fn every_truncation_of_a_model_is_an_error() {
    let bytes = tiny_model(&TinySpec::default());
    // Every prefix through the header and tokenizer, then a stride through the tensor data.
    let header_end = 24 * 1024;
    let cuts = (0..header_end.min(bytes.len()))
        .step_by(7)
        .chain((header_end..bytes.len()).step_by(997));
    let mut n = 0;
    for cut in cuts {
        must_fail(&format!("truncated at {cut}"), bytes[..cut].to_vec());
        n += 1;
    }
    assert!(n > 1000);
}

#[test]
fn bit_flips_never_panic() {
    let bytes = tiny_model(&TinySpec::default());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut errors = 0;
    for _ in 0..3000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut b = bytes.clone();
        // Mostly in the header, where the structure is.
        let pos = (state as usize >> 8)
            % if state & 3 == 0 {
                b.len()
            } else {
                20_000.min(b.len())
            };
        b[pos] ^= 1 << (state % 8);
        if load(b).is_err() {
            errors += 1;
        }
    }
    // Flips in weight values or scores load fine; flips in structure do not.
    assert!(errors > 100, "only {errors} flips were detected");
}

#[test]
fn hostile_headers_are_refused() {
    let good = base().to_bytes();
    load(good.clone()).expect_err("base lacks a model, so it is refused for that reason only");
    let mut cases: Vec<(&str, Vec<u8>)> = vec![];

    let mut b = good.clone();
    b[0] = b'X';
    cases.push(("bad magic", b));
    for v in [0u32, 1, 4, u32::MAX] {
        let mut b = good.clone();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        cases.push(("unsupported version", b));
    }
    let mut b = good.clone();
    b[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push(("2^40 tensors", b));
    let mut b = good.clone();
    b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    cases.push(("2^64-1 metadata entries", b));
    let mut b = good.clone();
    b[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
    cases.push(("2^62-byte key", b));

    let mut w = base();
    w.meta("general.alignment", MetaValue::Str("32".into()));
    cases.push(("alignment of the wrong type", w.to_bytes()));
    for a in [0u32, 3, 1 << 30] {
        let mut w = base();
        w.meta("general.alignment", MetaValue::U32(a));
        cases.push(("bad alignment", w.to_bytes()));
    }

    // A metadata value of unknown type 99.
    let mut w = base();
    w.meta("x", MetaValue::U32(0));
    let mut b = w.to_bytes();
    let at = offset_of_tensor_info(&b, "x") + 9;
    b[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    cases.push(("unknown value type", b));

    // A bool that is neither 0 nor 1.
    let mut w = base();
    w.meta("flag", MetaValue::Bool(true));
    let mut b = w.to_bytes();
    let at = offset_of_tensor_info(&b, "flag") + 8 + 4 + 4;
    b[at] = 7;
    cases.push(("bool 7", b));

    // An array claiming 2^61 elements.
    let mut w = base();
    w.meta("arr", MetaValue::I32Array(vec![1, 2, 3]));
    let mut b = w.to_bytes();
    let at = offset_of_tensor_info(&b, "arr") + 8 + 3 + 4 + 4;
    b[at..at + 8].copy_from_slice(&(1u64 << 61).to_le_bytes());
    cases.push(("2^61-element array", b));

    // A string array whose first string runs past the end.
    let mut w = base();
    w.meta("strs", MetaValue::StrArray(vec!["a".into(), "b".into()]));
    let mut b = w.to_bytes();
    let at = offset_of_tensor_info(&b, "strs") + 8 + 4 + 4 + 4 + 8;
    b[at..at + 8].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    cases.push(("string length past the end", b));

    let mut w = base();
    w.tensors[0].dims = vec![1, 1, 1, 1, 1];
    cases.push(("five dimensions", w.to_bytes()));
    let mut w = base();
    w.tensors[0].dims = vec![1 << 31, 1 << 31];
    cases.push(("2^31 x 2^31 tensor", w.to_bytes()));
    let mut w = base();
    w.tensors[0].dims = vec![u64::MAX, 2];
    cases.push(("overflowing dims", w.to_bytes()));
    let mut w = base();
    w.tensors[0].dims = vec![0, 2];
    cases.push(("zero dim", w.to_bytes()));
    let mut w = base();
    w.tensors[0].ggml_type = 77;
    cases.push(("unknown tensor type", w.to_bytes()));
    let mut w = base();
    w.tensors[0].ggml_type = 8; // Q8_0 needs rows of 32
    cases.push(("row not a block multiple", w.to_bytes()));

    let set_offset = |bytes: &mut Vec<u8>, name: &str, off: u64| {
        let at = offset_of_tensor_info(bytes, name) + 8 + name.len();
        let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let o = at + 4 + 8 * n_dims + 4;
        bytes[o..o + 8].copy_from_slice(&off.to_le_bytes());
    };
    let mut b = good.clone();
    set_offset(&mut b, "b", 5);
    cases.push(("misaligned offset", b));
    let mut b = good.clone();
    set_offset(&mut b, "b", 0);
    cases.push(("overlapping tensors", b));
    let mut b = good.clone();
    set_offset(&mut b, "b", 1 << 20);
    cases.push(("offset past the end", b));
    let mut b = good.clone();
    set_offset(&mut b, "b", u64::MAX - 31);
    cases.push(("offset overflowing", b));

    // Model-level lies in an otherwise valid file.
    let model = tiny_model(&TinySpec::default());
    let lie = |key: &str, value: u32| {
        let mut b = model.clone();
        let at = offset_of_tensor_info(&b, key) + 8 + key.len() + 4;
        b[at..at + 4].copy_from_slice(&value.to_le_bytes());
        b
    };
    cases.push(("1000 layers", lie("gemma3.block_count", 1000)));
    cases.push(("7 layers, tensors for 6", lie("gemma3.block_count", 7)));
    cases.push(("zero width", lie("gemma3.embedding_length", 0)));
    cases.push(("wrong width", lie("gemma3.embedding_length", 32)));
    cases.push((
        "3 KV heads for 2 heads",
        lie("gemma3.attention.head_count_kv", 3),
    ));
    cases.push(("odd head dim", lie("gemma3.attention.key_length", 7)));
    cases.push((
        "BOS outside the vocabulary",
        lie("tokenizer.ggml.bos_token_id", 1 << 30),
    ));
    cases.push(("unsupported architecture", {
        let mut w = GgufWriter::default();
        w.meta("general.architecture", MetaValue::Str("llama".into()));
        w.to_bytes()
    }));
    cases.push(("empty file", vec![]));

    assert!(cases.len() >= 20, "{} cases", cases.len());
    for (name, bytes) in cases {
        let e = must_fail(name, bytes);
        eprintln!("{name}: {e}");
    }
}
