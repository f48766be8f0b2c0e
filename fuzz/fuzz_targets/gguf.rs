//! Any bytes through the whole GGUF load path of core: parse, config,
//! weight views, vocabulary and tokenizer tables. Errors are fine; panics,
//! hangs and huge allocations are not.
#![no_main]

use gemma_core::format::gguf::Gguf;
use gemma_core::load;
use gemma_core::tokenizer::{GgufVocab, PieceEntry, Tokenizer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::parse(data) else { return };
    for (_, value) in g.metadata() {
        if let Some(a) = value.as_array() {
            for _ in a.strings() {}
        }
    }
    for t in g.tensors() {
        let _ = t.n_elements();
    }
    let _ = load::gguf::model(&g);
    if let Ok(vocab) = GgufVocab::from_gguf(&g) {
        // Bounded by the file: at most one entry per 8 bytes of token array.
        let mut entries = vec![PieceEntry::default(); Tokenizer::entries_len(vocab.count())];
        let mut index = vec![0u32; Tokenizer::index_len(vocab.count())];
        if let Ok(tok) = vocab.build(&mut entries, &mut index) {
            let _ = tok.encode_to_vec("Hello <start_of_turn> wörld\n\n  x", true);
        }
    }
});
