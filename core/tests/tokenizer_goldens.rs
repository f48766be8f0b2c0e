//! The Gemma 3 tokenizer (from `tests/data/gemma3-tokenizer.spm`) against
//! the reference ids in `tests/data/gemma3_tokenize.txt`.
#![cfg(feature = "alloc")]

use gemma_core::format::gguf::{Array, ValueType};
use gemma_core::tokenizer::{
    GgufVocab, PieceEntry, PieceKind, SpecialIds, StreamDecoder, Tokenizer, TokenizerTables,
};

fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn spm_bytes() -> Vec<u8> {
    std::fs::read(data("gemma3-tokenizer.spm")).expect("tests/data/gemma3-tokenizer.spm")
}

struct Case {
    kind: String,
    text: String,
    ids: Vec<u32>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(data("gemma3_tokenize.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            let kind = f.next().unwrap().to_string();
            let text = String::from_utf8(unhex(f.next().unwrap())).unwrap();
            let ids = f
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            Case { kind, text, ids }
        })
        .collect()
}

fn encode(tok: &Tokenizer<'_>, text: &str, parse_special: bool) -> Vec<u32> {
    let mut scratch = vec![0u32; Tokenizer::encode_scratch_len(text.len())];
    let mut out = vec![0u32; Tokenizer::max_tokens(text)];
    let n = tok
        .encode(text, parse_special, &mut scratch, &mut out)
        .unwrap();
    out.truncate(n);
    out
}

#[test]
fn tokenizer_vocab_facts() {
    let spm = spm_bytes();
    let tables = TokenizerTables::from_spm(&spm).unwrap();
    let tok = tables.view(&spm).unwrap();
    assert_eq!(tok.vocab_size(), 262144);
    assert_eq!(tok.pad_id(), Some(0));
    assert_eq!(tok.eos_id(), 1);
    assert_eq!(tok.bos_id(), 2);
    assert_eq!(tok.unk_id(), Some(3));
    assert_eq!(tok.start_of_turn_id(), Some(105));
    assert_eq!(tok.end_of_turn_id(), Some(106));
    assert!(tok.is_end_of_generation(1) && tok.is_end_of_generation(106));
    assert!(!tok.is_end_of_generation(2));
    assert_eq!(tok.token_to_id("\u{2581}the"), Some(506));
    assert_eq!(tok.token_to_id("  "), Some(138));
    assert_eq!(tok.token_to_id("\t"), Some(255968));
    assert_eq!(tok.token_to_id("<0x00>"), Some(238));
    assert_eq!(tok.token_to_id("no such piece, surely"), None);
    assert_eq!(tok.piece(506), Some("\u{2581}the".as_bytes()));
    assert_eq!(tok.piece(262144), None);
    assert_eq!(tok.byte_id(0xC2), Some(432));
    assert_eq!(tok.kind(105), Some(PieceKind::Control));
    assert_eq!(tok.kind(7), Some(PieceKind::Control)); // <unused1>
    assert_eq!(tok.kind(1), Some(PieceKind::Control));
    assert_eq!(tok.kind(3), Some(PieceKind::Unknown));
    assert_eq!(tok.kind(168), Some(PieceKind::UserDefined)); // <table>
    assert_eq!(tok.kind(255999), Some(PieceKind::UserDefined)); // <start_of_image>
    assert_eq!(tok.kind(238), Some(PieceKind::Byte));
    assert_eq!(tok.kind(506), Some(PieceKind::Normal));
    let count = |k| tok.entries().iter().filter(|e| e.kind() == k).count();
    // The GGUF's token types: 6249 control (here 6248 + <unk> as unknown),
    // 165 user-defined, 256 byte.
    assert_eq!(count(PieceKind::Control), 6248);
    assert_eq!(count(PieceKind::Unknown), 1);
    assert_eq!(count(PieceKind::UserDefined), 165);
    assert_eq!(count(PieceKind::Byte), 256);
    assert_eq!(count(PieceKind::Normal), 255474);
}

#[test]
fn tokenizer_golden_encode_and_decode() {
    let spm = spm_bytes();
    // The no-alloc path: caller-provided tables.
    let n = Tokenizer::spm_vocab_size(&spm).unwrap();
    let mut entries = vec![PieceEntry::default(); Tokenizer::entries_len(n)];
    let mut index = vec![0u32; Tokenizer::index_len(n)];
    let tok = Tokenizer::build_from_spm(&spm, &mut entries, &mut index).unwrap();
    let mut checked = 0;
    for c in cases() {
        if c.kind == "encode" {
            assert_eq!(encode(&tok, &c.text, true), c.ids, "encode {:?}", c.text);
            assert_eq!(tok.encode_to_vec(&c.text, true).unwrap(), c.ids);
        }
        let back = tok.decode_to_string(&c.ids, false);
        assert_eq!(back, c.text, "decode {:?}", c.ids);
        // Token by token gives the same text.
        let mut dec = StreamDecoder::with_skip_special(tok, false);
        let mut s = String::new();
        for &id in &c.ids {
            dec.push_with(id, |chunk| s.push_str(chunk));
        }
        dec.finish_with(|chunk| s.push_str(chunk));
        assert_eq!(s, c.text);
        checked += 1;
    }
    assert_eq!(checked, 28);
}

/// The GGUF path, on the same vocabulary written the way the GGUF converter
/// writes it: `<unk>` as control, user-defined pieces with literal spaces.
#[test]
fn tokenizer_gguf_arrays_match_goldens() {
    let spm = spm_bytes();
    let tables = TokenizerTables::from_spm(&spm).unwrap();
    let st = tables.view(&spm).unwrap();
    let (mut tokens, mut scores, mut types) = (Vec::new(), Vec::new(), Vec::new());
    for id in 0..st.vocab_size() as u32 {
        let kind = st.kind(id).unwrap();
        let mut piece = st.piece(id).unwrap().to_vec();
        if kind == PieceKind::UserDefined {
            piece = String::from_utf8(piece)
                .unwrap()
                .replace('\u{2581}', " ")
                .into_bytes();
        }
        let ty: i32 = match kind {
            PieceKind::Normal => 1,
            PieceKind::Unknown | PieceKind::Control => 3,
            PieceKind::UserDefined => 4,
            PieceKind::Unused => 5,
            PieceKind::Byte => 6,
        };
        tokens.extend_from_slice(&(piece.len() as u64).to_le_bytes());
        tokens.extend_from_slice(&piece);
        scores.extend_from_slice(&st.score(id).unwrap().to_le_bytes());
        types.extend_from_slice(&ty.to_le_bytes());
    }
    let specials = SpecialIds {
        bos: Some(2),
        eos: Some(1),
        unk: Some(3),
        pad: Some(0),
    };
    let n = st.vocab_size();
    let mut entries = vec![PieceEntry::default(); Tokenizer::entries_len(n)];
    let mut index = vec![0u32; Tokenizer::index_len(n)];
    let array = |elem, data| Array { elem, len: n, data };
    let vocab = GgufVocab {
        tokens: array(ValueType::String, &tokens),
        scores: Some(array(ValueType::F32, &scores)),
        types: Some(array(ValueType::I32, &types)),
        specials,
        add_space_prefix: false,
    };
    let gt = vocab.build(&mut entries, &mut index).unwrap();
    assert_eq!(gt.token_to_id("  "), Some(138));
    assert_eq!(gt.kind(3), Some(PieceKind::Control));
    assert_eq!(
        (gt.end_of_turn_id(), gt.start_of_turn_id()),
        (Some(106), Some(105))
    );
    for c in cases() {
        if c.kind == "encode" {
            assert_eq!(encode(&gt, &c.text, true), c.ids, "encode {:?}", c.text);
            assert_eq!(encode(&gt, &c.text, false), encode(&st, &c.text, false));
        }
        assert_eq!(gt.decode_to_string(&c.ids, false), c.text);
    }
}

#[test]
fn tokenizer_special_parsing_and_skipping() {
    let spm = spm_bytes();
    let tables = TokenizerTables::from_spm(&spm).unwrap();
    let tok = tables.view(&spm).unwrap();
    let text = "<start_of_turn>user\nhi<end_of_turn>";
    assert_eq!(encode(&tok, text, true), [105, 2364, 107, 2202, 106]);
    let plain = encode(&tok, text, false);
    assert!(!plain.contains(&105) && !plain.contains(&106), "{plain:?}");
    assert!(plain.len() > 5);
    assert_eq!(tok.decode_to_string(&plain, false), text);
    assert_eq!(tok.decode_to_string(&plain, true), text);
    // User-defined pieces match regardless of parse_special.
    assert_eq!(encode(&tok, "\n\n", false), [108]);
    assert_eq!(encode(&tok, "<table>", false), [168]);
    // Other control tokens with parse_special.
    assert_eq!(encode(&tok, "<bos><eos><pad><unused0>", true), [2, 1, 0, 6]);
    // Skipping: BOS/EOS/PAD and control tokens vanish; user-defined stay.
    let ids = [2, 105, 2364, 107, 2202, 106, 168, 1, 0];
    assert_eq!(
        tok.decode_to_string(&ids, false),
        "<bos><start_of_turn>user\nhi<end_of_turn><table><eos><pad>"
    );
    assert_eq!(tok.decode_to_string(&ids, true), "user\nhi<table>");
}

/// Of the vocabulary's user-defined pieces (whitespace runs, HTML tags,
/// image markers), skipping drops exactly the protocol markers; the list
/// was read from the GGUF's token types, not from the decoder.
#[test]
fn tokenizer_skipping_drops_protocol_markers_and_keeps_text_pieces() {
    let spm = spm_bytes();
    let tables = TokenizerTables::from_spm(&spm).unwrap();
    let tok = tables.view(&spm).unwrap();
    let markers = [
        (5, "[multimodal]"),
        (255999, "<start_of_image>"),
        (256000, "<end_of_image>"),
    ];
    let mut hidden = Vec::new();
    for id in 0..tok.vocab_size() as u32 {
        if tok.kind(id) == Some(PieceKind::UserDefined)
            && tok.decode_to_string(&[id], true).is_empty()
        {
            hidden.push(id);
        }
    }
    assert_eq!(hidden, markers.map(|m| m.0));
    for (id, text) in markers {
        assert_eq!(tok.decode_to_string(&[id], false), text);
    }
    // " in the woods<start_of_image><start_of_image>A girl": what a base
    // model printed before markers were skipped.
    let mut ids = encode(&tok, " in the woods", false);
    ids.extend([255999, 255999]);
    ids.extend(encode(&tok, "A girl <b>named</b>\n\n", false));
    assert_eq!(
        tok.decode_to_string(&ids, true),
        " in the woodsA girl <b>named</b>\n\n"
    );
    let mut dec = StreamDecoder::new(tok);
    let streamed: String = ids.iter().map(|&id| dec.push(id)).collect();
    assert_eq!(streamed, " in the woodsA girl <b>named</b>\n\n");
}

#[test]
fn tokenizer_byte_fallback_and_invalid_utf8() {
    let spm = spm_bytes();
    let tables = TokenizerTables::from_spm(&spm).unwrap();
    let tok = tables.view(&spm).unwrap();
    // U+00A0 is not a piece: its two UTF-8 bytes fall back to <0xC2> <0xA0>.
    assert_eq!(encode(&tok, "\u{a0}", true), [432, 398]);
    // Lone bytes that are not UTF-8 decode to U+FFFD.
    let b = |x: u8| tok.byte_id(x).unwrap();
    assert_eq!(tok.decode_to_string(&[b(0xFF)], false), "\u{FFFD}");
    assert_eq!(
        tok.decode_to_string(&[b(0xE2), 236746, b(0x80)], false),
        "\u{FFFD}a\u{FFFD}"
    );
    // decode_into reports the exact length it needs.
    let ids = encode(&tok, "naïve café", true);
    let need = tok.decode_len(&ids, false);
    assert_eq!(need, "naïve café".len());
    let mut small = [0u8; 4];
    match tok.decode_into(&ids, false, &mut small) {
        Err(gemma_core::tokenizer::TokenizerError::BufferTooSmall { needed, .. }) => {
            assert_eq!(needed, need)
        }
        other => panic!("{other:?}"),
    }
    let mut buf = [0u8; 64];
    assert_eq!(
        tok.decode_into(&ids, false, &mut buf).unwrap(),
        "naïve café"
    );
    assert_eq!(tok.decode_to_string(&[262144], false), "\u{FFFD}");
}

#[test]
fn tokenizer_streaming_holds_back_split_characters() {
    let spm = spm_bytes();
    let tables = TokenizerTables::from_spm(&spm).unwrap();
    let tok = tables.view(&spm).unwrap();
    let b = |x: u8| tok.byte_id(x).unwrap();
    // "a" + U+1F642 as four byte pieces + "a".
    let ids = [236746, b(0xF0), b(0x9F), b(0x99), b(0x82), 236746];
    let mut dec = StreamDecoder::new(tok);
    let chunks: Vec<String> = ids.iter().map(|&id| dec.push(id)).collect();
    assert_eq!(chunks, ["a", "", "", "", "\u{1F642}", "a"]);
    assert!(!dec.has_pending());
    // An unfinished sequence becomes U+FFFD at the end of the stream.
    let mut s = String::new();
    dec.push_with(b(0xF0), |c| s.push_str(c));
    dec.push_with(b(0x9F), |c| s.push_str(c));
    assert!(dec.has_pending());
    assert_eq!(s, "");
    assert_eq!(dec.finish(), "\u{FFFD}");
    assert_eq!(dec.finish(), "");
    // ... or when a non-continuation arrives.
    let mut s = String::new();
    for id in [b(0xE2), b(0x82), 236746] {
        s += &dec.push(id);
    }
    assert_eq!(s, "\u{FFFD}a");
    // The default decoder skips special tokens; an unknown id is U+FFFD.
    assert_eq!(dec.push(2), "");
    assert_eq!(dec.push(106), "");
    assert_eq!(dec.push(262144), "\u{FFFD}");
    let mut dec = StreamDecoder::with_skip_special(tok, false);
    assert_eq!(dec.push(106), "<end_of_turn>");
}

/// xorshift64*, for reproducible pseudo-random texts.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn random_text(rng: &mut Rng, chars: usize) -> String {
    const POOL: &[&str] = &[
        " ",
        " ",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\t",
        "e",
        "t",
        "a",
        "o",
        "th",
        "the",
        "ing",
        "é",
        "ï",
        "日",
        "本",
        "語",
        "🙂",
        "👩\u{200d}👧",
        "\u{a0}",
        "\u{2003}",
        "<",
        ">",
        "<s>",
        "<table>",
        "<start_of_turn>",
        "<bos>",
        "0",
        "9",
        ".",
        ",",
        "Ω",
        "ж",
        "ह",
        "ि",
        "\u{0}",
        "\u{7f}",
        "\u{10FFFF}",
        "\u{FFFD}",
    ];
    let mut s = String::new();
    while s.chars().count() < chars {
        let r = rng.next();
        if r & 3 == 0 {
            // A random code point.
            if let Some(c) = char::from_u32((r >> 8) as u32 % 0x3_0000) {
                s.push(c);
                continue;
            }
        }
        s.push_str(POOL[(r >> 16) as usize % POOL.len()]);
    }
    s
}

#[test]
fn tokenizer_random_texts_round_trip() {
    let spm = spm_bytes();
    let tables = TokenizerTables::from_spm(&spm).unwrap();
    let tok = tables.view(&spm).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..300 {
        let text = random_text(&mut rng, 1 + i % 97);
        for parse_special in [false, true] {
            let ids = tok.encode_to_vec(&text, parse_special).unwrap();
            assert!(ids.len() <= Tokenizer::max_tokens(&text));
            let back = tok.decode_to_string(&ids, false);
            assert_eq!(back, text, "{ids:?}");
        }
    }
}

/// Long inputs (a text of 5000 characters, one word of 5000 letters, the
/// worst case for the merge loop) encode and round-trip. How fast they do
/// is for the benchmarks to say.
#[test]
fn tokenizer_long_texts_round_trip() {
    let spm = spm_bytes();
    let tables = TokenizerTables::from_spm(&spm).unwrap();
    let tok = tables.view(&spm).unwrap();
    let mut text = String::new();
    for c in cases() {
        text.push_str(&c.text);
        text.push(' ');
    }
    let mut rng = Rng(7);
    text.push_str(&random_text(&mut rng, 1000));
    while text.chars().count() < 5000 {
        text.push_str("The quick brown fox jumps over the lazy dog. ");
    }
    let text: String = text.chars().take(5000).collect();
    let mut scratch = vec![0u32; Tokenizer::encode_scratch_len(text.len())];
    let mut out = vec![0u32; Tokenizer::max_tokens(&text)];
    let n = tok.encode(&text, true, &mut scratch, &mut out).unwrap();
    assert_eq!(tok.decode_to_string(&out[..n], false), text);
    let long = "a".repeat(5000);
    let ids = tok.encode_to_vec(&long, true).unwrap();
    assert_eq!(tok.decode_to_string(&ids, false), long);
}
