//! Tokenizer behaviour on small handmade vocabularies, the GGUF-array and
//! `.spm` builders, and robustness against malformed input.
#![cfg(feature = "alloc")]

use gemma_core::format::gguf::{Array, ValueType};
use gemma_core::format::spm::{SpmError, SpmModel, SpmPieceType};
use gemma_core::tokenizer::{
    GgufVocab, PieceEntry, PieceKind, SpecialIds, StreamDecoder, Tokenizer, TokenizerError,
    TokenizerTables,
};

// ---------------------------------------------------------------------------
// A GGUF-style vocabulary: (piece, score, token_type).

const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER: i32 = 4;
const BYTE: i32 = 6;

struct Arrays {
    tokens: Vec<u8>,
    scores: Vec<u8>,
    types: Vec<u8>,
    count: usize,
}

fn arrays(pieces: &[(&str, f32, i32)], with_bytes: bool) -> Arrays {
    let mut a = Arrays {
        tokens: Vec::new(),
        scores: Vec::new(),
        types: Vec::new(),
        count: 0,
    };
    let mut add = |p: &[u8], s: f32, t: i32| {
        a.tokens.extend_from_slice(&(p.len() as u64).to_le_bytes());
        a.tokens.extend_from_slice(p);
        a.scores.extend_from_slice(&s.to_le_bytes());
        a.types.extend_from_slice(&t.to_le_bytes());
        a.count += 1;
    };
    for &(p, s, t) in pieces {
        add(p.as_bytes(), s, t);
    }
    if with_bytes {
        for b in 0..=255u8 {
            add(format!("<0x{b:02X}>").as_bytes(), 0.0, BYTE);
        }
    }
    a
}

/// A vocabulary over GGUF-encoded arrays, as a parsed file would give
/// (`len` elements; an empty `scores`/`types` is a missing array).
fn gguf_vocab<'a>(
    tokens: &'a [u8],
    count: usize,
    scores: &'a [u8],
    types: &'a [u8],
    specials: SpecialIds,
) -> GgufVocab<'a> {
    let packed = |elem, data: &'a [u8]| {
        (!data.is_empty()).then_some(Array {
            elem,
            len: data.len() / 4,
            data,
        })
    };
    GgufVocab {
        tokens: Array {
            elem: ValueType::String,
            len: count,
            data: tokens,
        },
        scores: packed(ValueType::F32, scores),
        types: packed(ValueType::I32, types),
        specials,
        add_space_prefix: false,
    }
}

impl Arrays {
    fn vocab(&self, specials: SpecialIds) -> GgufVocab<'_> {
        gguf_vocab(
            &self.tokens,
            self.count,
            &self.scores,
            &self.types,
            specials,
        )
    }
}

/// Ids: 0 <pad>, 1 <eos>, 2 <bos>, 3 <unk>, then the list below, then bytes.
fn small_vocab() -> Vec<(&'static str, f32, i32)> {
    vec![
        ("<pad>", 0.0, CONTROL),           // 0
        ("<eos>", 0.0, CONTROL),           // 1
        ("<bos>", 0.0, CONTROL),           // 2
        ("<unk>", 0.0, CONTROL),           // 3
        ("<start_of_turn>", 0.0, CONTROL), // 4
        ("<end_of_turn>", 0.0, CONTROL),   // 5
        ("\n", 0.0, USER),                 // 6
        ("\n\n", 0.0, USER),               // 7
        ("  ", 0.0, USER),                 // 8
        ("<x>", 0.0, USER),                // 9
        ("<xy>", 0.0, USER),               // 10
        ("a", -1.0, NORMAL),               // 11
        ("b", -1.0, NORMAL),               // 12
        ("c", -1.0, NORMAL),               // 13
        ("ab", 1.0, NORMAL),               // 14
        ("bc", 2.0, NORMAL),               // 15
        ("ba", 1.0, NORMAL),               // 16
        ("\u{2581}", -1.0, NORMAL),        // 17
        ("\u{2581}a", 0.5, NORMAL),        // 18
        ("<", -1.0, NORMAL),               // 19
        (">", -1.0, NORMAL),               // 20
        ("x", -1.0, NORMAL),               // 21
        ("abc", 3.0, NORMAL),              // 22
        ("é", -1.0, UNUSED),               // 23: unused pieces are never produced
    ]
}
const UNUSED: i32 = 5;
const BYTES_START: u32 = 24;

fn tables(pieces: &[(&str, f32, i32)], with_bytes: bool) -> (Arrays, TokenizerTables) {
    let a = arrays(pieces, with_bytes);
    let t = TokenizerTables::from_gguf(&a.vocab(SpecialIds::default())).unwrap();
    (a, t)
}

fn enc(tok: &Tokenizer<'_>, text: &str, parse_special: bool) -> Vec<u32> {
    tok.encode_to_vec(text, parse_special).unwrap()
}

fn byte(b: u8) -> u32 {
    BYTES_START + b as u32
}

#[test]
fn tokenizer_merges_follow_scores_with_ties_to_the_left() {
    let (a, t) = tables(&small_vocab(), true);
    let tok = t.view(&a.tokens).unwrap();
    // "bc" (2) merges before "ab" (1), then "a" + "bc" makes "abc".
    assert_eq!(enc(&tok, "abc", true), [22]);
    // "ab" and "ba" tie at 1: the leftmost pair merges first.
    assert_eq!(enc(&tok, "aba", true), [14, 11]);
    assert_eq!(enc(&tok, "abab", true), [14, 14]);
    assert_eq!(enc(&tok, "bab", true), [16, 12]);
    // Spaces become '▁' (no dummy prefix).
    assert_eq!(enc(&tok, " a", true), [18]);
    assert_eq!(enc(&tok, "a a", true), [11, 18]);
    assert_eq!(enc(&tok, " ", true), [17]);
    assert_eq!(enc(&tok, "", true), Vec::<u32>::new());
    assert_eq!(tok.decode_to_string(&[11, 18, 17], false), "a a ");
}

#[test]
fn tokenizer_byte_fallback_for_unknown_characters() {
    let (a, t) = tables(&small_vocab(), true);
    let tok = t.view(&a.tokens).unwrap();
    // 'é' exists only as an unused piece: bytes.
    assert_eq!(enc(&tok, "aé", true), [11, byte(0xC3), byte(0xA9)]);
    assert_eq!(
        enc(&tok, "🙂", true),
        [byte(0xF0), byte(0x9F), byte(0x99), byte(0x82)]
    );
    assert_eq!(tok.decode_to_string(&enc(&tok, "aé🙂", true), true), "aé🙂");
    // Without byte pieces, <unk>.
    let (a, t) = tables(&small_vocab(), false);
    let tok = t.view(&a.tokens).unwrap();
    assert_eq!(tok.unk_id(), Some(3));
    assert_eq!(enc(&tok, "aéb", true), [11, 3, 12]);
    // Without either, an error.
    let mut v = small_vocab();
    v[3].0 = "<not_unk>";
    let (a, t) = tables(&v, false);
    let tok = t.view(&a.tokens).unwrap();
    assert_eq!(tok.unk_id(), None);
    assert_eq!(
        tok.encode_to_vec("é", true),
        Err(TokenizerError::Unencodable)
    );
}

#[test]
fn tokenizer_user_defined_longest_match() {
    let (a, t) = tables(&small_vocab(), true);
    let tok = t.view(&a.tokens).unwrap();
    for ps in [false, true] {
        assert_eq!(enc(&tok, "\n\n\n", ps), [7, 6]);
        assert_eq!(enc(&tok, "a\nb", ps), [11, 6, 12]);
        assert_eq!(enc(&tok, "<xy><x>", ps), [10, 9]);
        assert_eq!(enc(&tok, "<xa", ps), [19, 21, 11]);
        // Literal spaces in user-defined pieces: two spaces are one piece,
        // one space is '▁'.
        assert_eq!(enc(&tok, "   a", ps), [8, 18]);
    }
    assert_eq!(tok.decode_to_string(&[8, 18, 7], false), "   a\n\n");
}

#[test]
fn tokenizer_control_tokens_only_with_parse_special() {
    let (a, t) = tables(&small_vocab(), true);
    let tok = t.view(&a.tokens).unwrap();
    assert_eq!(tok.start_of_turn_id(), Some(4));
    assert_eq!(tok.end_of_turn_id(), Some(5));
    assert_eq!((tok.pad_id(), tok.eos_id(), tok.bos_id()), (Some(0), 1, 2));
    assert_eq!(enc(&tok, "a<start_of_turn>b<bos>", true), [11, 4, 12, 2]);
    let plain = enc(&tok, "a<start_of_turn>b", false);
    assert!(!plain.contains(&4));
    assert_eq!(tok.decode_to_string(&plain, false), "a<start_of_turn>b");
    assert_eq!(
        tok.decode_to_string(&[2, 11, 4, 12, 5, 1], false),
        "<bos>a<start_of_turn>b<end_of_turn><eos>"
    );
    assert_eq!(tok.decode_to_string(&[2, 11, 4, 12, 5, 1], true), "ab");
}

#[test]
fn tokenizer_special_ids_from_the_file_win() {
    let a = arrays(&small_vocab(), true);
    let specials = SpecialIds {
        bos: Some(11),
        eos: Some(12),
        unk: None,
        pad: None,
    };
    let t = TokenizerTables::from_gguf(&a.vocab(specials)).unwrap();
    let tok = t.view(&a.tokens).unwrap();
    assert_eq!(
        (tok.bos_id(), tok.eos_id(), tok.unk_id()),
        (11, 12, Some(3))
    );
    let bad = SpecialIds {
        bos: Some(a.count as u32),
        ..SpecialIds::default()
    };
    assert_eq!(
        TokenizerTables::from_gguf(&a.vocab(bad)).err(),
        Some(TokenizerError::BadSpecialId(a.count as u32))
    );
}

#[test]
fn tokenizer_streaming_decode_of_split_characters() {
    let (a, t) = tables(&small_vocab(), true);
    let tok = t.view(&a.tokens).unwrap();
    let ids = enc(&tok, "a日b", true);
    assert_eq!(ids, [11, byte(0xE6), byte(0x97), byte(0xA5), 12]);
    let mut dec = StreamDecoder::with_skip_special(tok, false);
    let mut chunks = Vec::new();
    for &id in &ids {
        let mut s = String::new();
        dec.push_with(id, |c| s.push_str(c));
        chunks.push(s);
    }
    assert_eq!(chunks, ["a", "", "", "日", "b"]);
    // Invalid sequences become U+FFFD, never broken output.
    let mut s = String::new();
    for id in [
        byte(0xE6),
        byte(0x97),
        11,
        byte(0xFF),
        byte(0xC0),
        byte(0x80),
    ] {
        dec.push_with(id, |c| s.push_str(c));
    }
    dec.finish_with(|c| s.push_str(c));
    assert_eq!(s, "\u{FFFD}a\u{FFFD}\u{FFFD}\u{FFFD}");
    // An id outside the vocabulary also decodes as U+FFFD (after flushing
    // what was pending).
    let mut s = String::new();
    dec.push_with(byte(0xE6), |c| s.push_str(c));
    dec.push_with(a.count as u32, |c| s.push_str(c));
    assert_eq!(s, "\u{FFFD}\u{FFFD}");
    assert!(!dec.has_pending());
}

#[test]
fn tokenizer_buffers_too_small_are_errors() {
    let a = arrays(&small_vocab(), true);
    let n = a.count;
    let mut entries = vec![PieceEntry::default(); n - 1];
    let mut index = vec![0u32; Tokenizer::index_len(n)];
    let vocab = a.vocab(SpecialIds::default());
    let r = vocab.build(&mut entries, &mut index);
    assert!(matches!(
        r,
        Err(TokenizerError::BufferTooSmall {
            what: "entries",
            ..
        })
    ));
    let mut entries = vec![PieceEntry::default(); n];
    let mut short_index = vec![0u32; Tokenizer::index_len(n) - 1];
    let r = vocab.build(&mut entries, &mut short_index);
    assert!(matches!(
        r,
        Err(TokenizerError::BufferTooSmall { what: "index", .. })
    ));
    let tok = vocab.build(&mut entries, &mut index).unwrap();
    let text = "abc abc";
    let mut scratch = vec![0u32; Tokenizer::encode_scratch_len(text.len())];
    let mut out = [0u32; 1];
    assert!(matches!(
        tok.encode(text, true, &mut scratch, &mut out),
        Err(TokenizerError::BufferTooSmall { what: "output", .. })
    ));
    let mut out = [0u32; 16];
    assert!(matches!(
        tok.encode(text, true, &mut scratch[..10], &mut out),
        Err(TokenizerError::BufferTooSmall {
            what: "scratch",
            ..
        })
    ));
    let n_ids = tok.encode(text, true, &mut scratch, &mut out).unwrap();
    assert_eq!(&out[..n_ids], [22, 17, 22]);
}

#[test]
fn tokenizer_malformed_gguf_arrays_are_errors() {
    let a = arrays(&small_vocab(), true);
    let build = |tokens: &[u8], count: usize, scores: &[u8], types: &[u8]| {
        TokenizerTables::from_gguf(&gguf_vocab(
            tokens,
            count,
            scores,
            types,
            SpecialIds::default(),
        ))
        .err()
    };
    assert!(build(&a.tokens, 0, &a.scores, &a.types).is_some());
    assert!(build(&a.tokens, a.count + 1, &a.scores, &a.types).is_some());
    assert!(build(&a.tokens, usize::MAX, &a.scores, &a.types).is_some());
    assert!(build(
        &a.tokens[..a.tokens.len() - 1],
        a.count,
        &a.scores,
        &a.types
    )
    .is_some());
    assert!(build(&a.tokens, a.count, &a.scores[..4], &a.types).is_some());
    assert!(build(&a.tokens, a.count, &a.scores, &a.types[..8]).is_some());
    let mut types = a.types.clone();
    types[0..4].copy_from_slice(&9i32.to_le_bytes());
    assert!(build(&a.tokens, a.count, &a.scores, &types).is_some());
    let mut tokens = a.tokens.clone();
    tokens[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(build(&tokens, a.count, &a.scores, &a.types).is_some());
    let mut vocab = a.vocab(SpecialIds::default());
    vocab.add_space_prefix = true;
    assert_eq!(
        TokenizerTables::from_gguf(&vocab).err(),
        Some(TokenizerError::Unsupported("add_space_prefix"))
    );
    // Arrays of the wrong element type, and lengths that claim more than
    // the bytes hold: errors, never panics.
    let good = a.vocab(SpecialIds::default());
    let mut v = good;
    v.tokens.elem = ValueType::U8;
    assert!(TokenizerTables::from_gguf(&v).is_err());
    let mut v = good;
    v.scores = good.types;
    assert!(TokenizerTables::from_gguf(&v).is_err());
    let mut v = good;
    v.types = good.scores;
    assert!(TokenizerTables::from_gguf(&v).is_err());
    let mut v = good;
    v.scores = Some(Array {
        data: &a.scores[..8],
        ..good.scores.unwrap()
    });
    assert!(TokenizerTables::from_gguf(&v).is_err());
    let mut v = good;
    v.types = Some(Array {
        data: &a.types[..a.types.len() - 1],
        ..good.types.unwrap()
    });
    assert!(TokenizerTables::from_gguf(&v).is_err());
    let mut entries = vec![PieceEntry::default(); a.count];
    let mut index = vec![0u32; Tokenizer::index_len(a.count)];
    assert!(v.build(&mut entries, &mut index).is_err());
    // Missing scores/types are allowed (scores 0, all normal).
    assert!(build(&a.tokens, a.count, &[], &[]).is_none());
    // Every truncation of the token array: no panic.
    for cut in 0..a.tokens.len() {
        let _ = build(&a.tokens[..cut], a.count.min(cut / 8), &a.scores, &a.types);
    }
}

#[test]
fn tokenizer_from_parts_checks_lengths_and_never_panics_on_a_mismatch() {
    let (a, t) = tables(&small_vocab(), true);
    let meta = t.meta;
    assert_eq!(meta.vocab_size(), a.count);
    assert_eq!(t.view(&a.tokens).unwrap().meta(), meta);
    assert!(matches!(
        Tokenizer::from_parts(&a.tokens, &t.entries, &t.index[..100], meta),
        Err(TokenizerError::BadIndex(_))
    ));
    assert!(matches!(
        Tokenizer::from_parts(&a.tokens, &t.entries[..3], &t.index, meta),
        Err(TokenizerError::BadIndex(_))
    ));
    let mut index = t.index.clone();
    let last = index.len() - 1;
    assert!(Tokenizer::from_parts(&a.tokens, &t.entries, &index[..last], meta).is_err());
    // Longer buffers are fine: the view takes what the meta says.
    let mut longer = t.index.clone();
    longer.push(7);
    let tok = Tokenizer::from_parts(&a.tokens, &t.entries, &longer, meta).unwrap();
    assert_eq!(tok.encode_to_vec("abc", true).unwrap(), [22]);
    // The index is not self-describing: all zeros is a view that finds
    // nothing (and maps every byte to id 0), not an error and not a panic.
    let zeros = vec![0u32; t.index.len()];
    let tok = Tokenizer::from_parts(&a.tokens, &t.entries, &zeros, meta).unwrap();
    assert_eq!(tok.token_to_id("ab"), None);
    let _ = tok.encode_to_vec("abc <x>\n\n é🙂 <bos>", true);
    // The meta of a larger vocabulary: these tables are too short for it.
    let mut more = small_vocab();
    more.extend(std::iter::repeat_n(("x", 0.0, NORMAL), 2000));
    let (_, big) = tables(&more, true);
    assert!(Tokenizer::from_parts(&a.tokens, &t.entries, &t.index, big.meta).is_err());
    // Corrupt table words and a wrong source: wrong answers at worst.
    for (i, w) in index.iter_mut().enumerate().skip(2000) {
        *w = (i as u32).wrapping_mul(2_654_435_761);
    }
    let wrong_source = b"nothing like the real thing";
    for source in [&a.tokens[..], &wrong_source[..]] {
        if let Ok(tok) = Tokenizer::from_parts(source, &t.entries, &index, meta) {
            let _ = tok.encode_to_vec("abc <x>\n\n é🙂 <bos>", true);
            let _ = tok.decode_to_string(&[0, 1, 2, 11, 30, 100], false);
            let _ = tok.token_to_id("ab");
        }
    }
}

// ---------------------------------------------------------------------------
// Handmade `.spm` protos.

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    varint(out, u64::from(field) << 3);
    varint(out, v);
}

fn field_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    varint(out, (u64::from(field) << 3) | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A proto like Gemma's: pieces, a BPE trainer spec with ids and byte
/// fallback, an identity normalizer without dummy prefix.
fn spm_proto(pieces: &[(&str, f32, u64)], trainer: bool, dummy_prefix: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for &(p, score, kind) in pieces {
        let mut m = Vec::new();
        field_bytes(&mut m, 1, p.as_bytes());
        varint(&mut m, (2 << 3) | 5);
        m.extend_from_slice(&score.to_le_bytes());
        if kind != 1 {
            field_varint(&mut m, 3, kind);
        }
        field_bytes(&mut out, 1, &m);
    }
    if trainer {
        let mut t = Vec::new();
        field_varint(&mut t, 3, 2); // BPE
        field_varint(&mut t, 4, pieces.len() as u64);
        field_varint(&mut t, 35, 1); // byte_fallback
        field_varint(&mut t, 40, 3);
        field_varint(&mut t, 41, 2);
        field_varint(&mut t, 42, 1);
        field_varint(&mut t, 43, 0);
        field_bytes(&mut t, 45, b"<unk>");
        field_bytes(&mut out, 2, &t);
    }
    let mut n = Vec::new();
    field_bytes(&mut n, 1, b"identity");
    field_varint(&mut n, 3, dummy_prefix as u64);
    field_varint(&mut n, 4, 0);
    field_varint(&mut n, 5, 1);
    field_bytes(&mut out, 3, &n);
    out
}

fn small_spm_pieces() -> Vec<(String, f32, u64)> {
    let mut v: Vec<(String, f32, u64)> = vec![
        ("<pad>".into(), 0.0, 3),
        ("<eos>".into(), 0.0, 3),
        ("<bos>".into(), 0.0, 3),
        ("<unk>".into(), 0.0, 2),
        ("<start_of_turn>".into(), 0.0, 4), // user-defined in the proto, like Gemma's
        ("<unused0>".into(), 0.0, 4),
        ("\u{2581}\u{2581}".into(), 0.0, 4), // two spaces
        ("\n".into(), 0.0, 4),
        ("a".into(), -1.0, 1),
        ("b".into(), -1.0, 1),
        ("ab".into(), 1.0, 1),
        ("\u{2581}".into(), -1.0, 1),
        ("\u{2581}ab".into(), 2.0, 1),
        ("\u{2581}a".into(), 0.5, 1),
    ];
    for b in 0..=255u8 {
        v.push((format!("<0x{b:02X}>"), 0.0, 6));
    }
    v
}

fn small_spm() -> Vec<u8> {
    let p = small_spm_pieces();
    let refs: Vec<(&str, f32, u64)> = p.iter().map(|(s, f, k)| (s.as_str(), *f, *k)).collect();
    spm_proto(&refs, true, false)
}

#[test]
fn tokenizer_spm_model_fields() {
    let proto = small_spm();
    let m = SpmModel::parse(&proto).unwrap();
    assert_eq!(m.piece_count(), 14 + 256);
    assert_eq!(m.trainer.bos_id, Some(2));
    assert_eq!(m.trainer.pad_id, Some(0));
    assert!(m.trainer.byte_fallback);
    assert!(!m.normalizer.add_dummy_prefix);
    assert_eq!(m.normalizer.name, "identity");
    let p: Vec<_> = m.pieces().collect();
    assert_eq!(p.len(), 270);
    assert_eq!(p[4].piece, "<start_of_turn>");
    assert_eq!(p[4].kind, SpmPieceType::UserDefined);
    assert_eq!(p[3].kind, SpmPieceType::Unknown);
    assert_eq!(p[10].score, 1.0);
    assert_eq!(&proto[p[10].offset..p[10].offset + 2], b"ab");
}

#[test]
fn tokenizer_spm_tokenizer() {
    let proto = small_spm();
    let n = Tokenizer::spm_vocab_size(&proto).unwrap();
    let mut entries = vec![PieceEntry::default(); n];
    let mut index = vec![0u32; Tokenizer::index_len(n)];
    let tok = Tokenizer::build_from_spm(&proto, &mut entries, &mut index).unwrap();
    assert_eq!(tok.vocab_size(), 270);
    assert_eq!(
        (tok.pad_id(), tok.eos_id(), tok.bos_id(), tok.unk_id()),
        (Some(0), 1, 2, Some(3))
    );
    // Gemma's control names stored as user-defined become control pieces.
    assert_eq!(tok.kind(4), Some(PieceKind::Control));
    assert_eq!(tok.kind(5), Some(PieceKind::Control));
    assert_eq!(tok.kind(6), Some(PieceKind::UserDefined));
    let e = |t: &str, ps: bool| tok.encode_to_vec(t, ps).unwrap();
    assert_eq!(e("ab ab  ab\n", true), [10, 12, 6, 10, 7]);
    assert_eq!(e("<start_of_turn>ab", true), [4, 10]);
    assert!(!e("<start_of_turn>ab", false).contains(&4));
    assert_eq!(
        tok.decode_to_string(&[10, 12, 6, 10, 7], false),
        "ab ab  ab\n"
    );
    // The literal spaces of the key match the '▁▁' piece both ways.
    assert_eq!(tok.token_to_id("  "), Some(6));
    assert_eq!(tok.token_to_id("\u{2581}\u{2581}"), Some(6));
}

#[test]
fn tokenizer_spm_unsupported_models() {
    let p = small_spm_pieces();
    let refs: Vec<(&str, f32, u64)> = p.iter().map(|(s, f, k)| (s.as_str(), *f, *k)).collect();
    // No trainer spec: the model type defaults to unigram.
    let proto = spm_proto(&refs, false, false);
    assert!(SpmModel::parse(&proto).is_ok());
    assert_eq!(
        TokenizerTables::from_spm(&proto).err(),
        Some(TokenizerError::Unsupported("model type is not BPE"))
    );
    let proto = spm_proto(&refs, true, true);
    assert_eq!(
        TokenizerTables::from_spm(&proto).err(),
        Some(TokenizerError::Unsupported("add_dummy_prefix"))
    );
}

#[test]
fn tokenizer_spm_malformed_inputs_are_errors() {
    assert_eq!(SpmModel::parse(&[]).err(), Some(SpmError::NoPieces));
    // A field key with wire type 3 (group).
    assert!(matches!(
        SpmModel::parse(&[0x0b]),
        Err(SpmError::BadWireType { .. })
    ));
    // Field number 0.
    assert!(matches!(
        SpmModel::parse(&[0x02, 0x00]),
        Err(SpmError::BadWireType { .. })
    ));
    // A length past the end.
    assert!(matches!(
        SpmModel::parse(&[0x0a, 0x05, 0x0a]),
        Err(SpmError::Truncated { .. })
    ));
    // A huge length.
    let mut huge = vec![0x0a];
    varint(&mut huge, u64::MAX);
    assert!(SpmModel::parse(&huge).is_err());
    // An 11-byte varint.
    let mut long = vec![0x08];
    long.extend_from_slice(&[0x80; 10]);
    long.push(0);
    assert!(matches!(
        SpmModel::parse(&long),
        Err(SpmError::BadVarint { .. })
    ));
    // Invalid piece type and non-UTF-8 piece.
    let mut m = Vec::new();
    field_bytes(&mut m, 1, b"a");
    field_varint(&mut m, 3, 9);
    let mut bad = Vec::new();
    field_bytes(&mut bad, 1, &m);
    assert!(matches!(
        SpmModel::parse(&bad),
        Err(SpmError::InvalidPieceType { .. })
    ));
    let mut m = Vec::new();
    field_bytes(&mut m, 1, b"\xff");
    let mut bad = Vec::new();
    field_bytes(&mut bad, 1, &m);
    assert_eq!(
        SpmModel::parse(&bad).err(),
        Some(SpmError::InvalidUtf8 { piece: 0 })
    );
    // Score with the wrong wire type.
    let mut m = Vec::new();
    field_varint(&mut m, 2, 1);
    let mut bad = Vec::new();
    field_bytes(&mut bad, 1, &m);
    assert!(matches!(
        SpmModel::parse(&bad),
        Err(SpmError::WrongWireType { field: 2, .. })
    ));
    for e in [SpmError::NoPieces, SpmError::Truncated { offset: 3 }] {
        assert!(!e.to_string().is_empty());
        assert!(!TokenizerError::Spm(e).to_string().is_empty());
    }
}

/// Builds, then exercises, whatever `bytes` parses to; must never panic.
fn exercise(bytes: &[u8]) -> bool {
    let parsed = SpmModel::parse(bytes);
    if let Ok(m) = parsed {
        assert_eq!(m.pieces().count(), m.piece_count());
    }
    match TokenizerTables::from_spm(bytes) {
        Ok(t) => {
            let tok = t.view(bytes).unwrap();
            // Encoding may fail (say, no byte pieces and no <unk>); decoding
            // what it produced may not.
            if let Ok(ids) = tok.encode_to_vec("ab  ab\n<start_of_turn>é🙂", true) {
                tok.decode_to_string(&ids, false);
            }
            true
        }
        Err(_) => false,
    }
}

#[test]
fn tokenizer_spm_truncations_and_bit_flips_never_panic() {
    let proto = small_spm();
    assert!(exercise(&proto));
    let mut errors = 0;
    for cut in 0..proto.len() {
        if !exercise(&proto[..cut]) {
            errors += 1;
        }
    }
    // Cutting inside any field is an error (the normalizer spec comes last,
    // so no truncation at all still describes Gemma's normalizer).
    assert_eq!(errors, proto.len());
    let mut flipped = proto.clone();
    for i in 0..proto.len() {
        for bit in 0..8 {
            flipped[i] ^= 1 << bit;
            exercise(&flipped);
            flipped[i] ^= 1 << bit;
        }
    }
    // Pseudo-random garbage.
    let mut x = 0x1234_5678_9abc_def0u64;
    for len in 0..2000 {
        let g: Vec<u8> = (0..len % 300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        exercise(&g);
    }
}
