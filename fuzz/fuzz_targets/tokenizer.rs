//! Arbitrary text through the real Gemma 3 vocabulary: encode never fails
//! on valid UTF-8, and decoding the ids gives the text back (with a literal
//! U+2581 read as the space it stands for, as SentencePiece does).
#![no_main]

use gemma_core::tokenizer::{Tokenizer, TokenizerTables};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static SPM: &[u8] = include_bytes!("../../core/tests/data/gemma3-tokenizer.spm");

fn tables() -> &'static TokenizerTables {
    static T: OnceLock<TokenizerTables> = OnceLock::new();
    T.get_or_init(|| TokenizerTables::from_spm(SPM).expect("the committed .spm builds"))
}

fn tokenizer() -> Tokenizer<'static> {
    tables().view(SPM).expect("view")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let tok = tokenizer();
    for special in [false, true] {
        let ids = tok.encode_to_vec(text, special).expect("valid UTF-8 always encodes");
        if !special {
            assert_eq!(tok.decode_to_string(&ids, false), text.replace('\u{2581}', " "), "round trip");
        }
    }
});
