//! Any bytes as a SentencePiece model proto, then as a tokenizer.
#![no_main]

use gemma_core::format::spm::SpmModel;
use gemma_core::tokenizer::TokenizerTables;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = SpmModel::parse(data) {
        for _ in m.pieces() {}
    }
    if let Ok(tables) = TokenizerTables::from_spm(data) {
        if let Ok(tok) = tables.view(data) {
            let ids = tok.encode_to_vec("a b  c\t<start_of_turn>é", true).unwrap_or_default();
            let _ = tok.decode_to_string(&ids, false);
        }
    }
});
