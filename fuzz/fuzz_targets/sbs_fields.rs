//! Any bytes as gemma.cpp's fields serialization: the `config` and `toc`
//! blobs. Whatever parses must serialize again without error.
#![no_main]

use gemma_core::format::sbs::config::ModelConfig;
use gemma_core::format::sbs::toc::Toc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = ModelConfig::parse(data) {
        let _ = cfg.specifier();
        for l in 0..cfg.layer_configs.len() + 1 {
            let _ = cfg.is_global_layer(l);
        }
        let mut buf = [0u8; 4096];
        if let Ok(n) = cfg.serialized_len() {
            if n <= buf.len() {
                cfg.write(&mut buf).expect("a parsed config serializes");
            }
        }
    }
    if let Ok(toc) = Toc::parse(data) {
        for e in toc.iter() {
            let _ = e.check();
            let _ = e.packed_bytes();
        }
    }
});
