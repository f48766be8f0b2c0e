//! Helpers shared by core's integration tests.

use std::path::PathBuf;

/// A file of gemma.cpp's test vectors (`core/tests/data/gemmacpp/`).
pub fn data(name: &str) -> Vec<u8> {
    let p: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "data",
        "gemmacpp",
        name,
    ]
    .iter()
    .collect();
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}
