//! Any bytes as a gemma.cpp `.sbs` file: the blob store, its config and toc
//! (gemma.cpp's fields encoding), each tensor decoded through its codec.
#![no_main]

use gemma_core::codec;
use gemma_core::format::sbs::blob_store::BlobStore;
use gemma_core::format::sbs::config::ModelConfig;
use gemma_core::format::sbs::toc::Toc;
use gemma_core::format::sbs::SbsFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(store) = BlobStore::parse(data) {
        for blob in store.blobs() {
            let _ = ModelConfig::parse(blob.bytes);
            if let Ok(toc) = Toc::parse(blob.bytes) {
                for _ in toc.iter() {}
            }
        }
    }
    // The fields decoders also on raw bytes, as if they were a blob.
    let _ = ModelConfig::parse(data);
    if let Ok(toc) = Toc::parse(data) {
        for _ in toc.iter() {}
    }
    if let Ok(file) = SbsFile::parse(data) {
        let mut row = [0f32; 64];
        for t in file.tensors() {
            let n = t.cols.min(row.len());
            let _ = codec::decode(t.codec, t.bytes, 0, &mut row[..n]);
        }
        let _ = file.tokenizer();
    }
});
