//! Shared helpers for the workspace tests: the real model, the goldens, npy.

use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Tolerances of the real-generation acceptance criteria.
pub mod tolerance {
    /// Each golden top-20 logit, teacher-forced.
    pub const TOP20_LOGIT: f32 = 0.005;
    /// Our top-1 must equal the golden one where its margin exceeds this.
    pub const TOP1_MARGIN: f32 = 0.01;
    /// The golden argmax logit versus our maximum at every prompt position.
    pub const PROMPT_ARGMAX: f32 = 0.01;
}

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// The real model: `$GEMMA_MODEL`, else the cached default, fetched if
/// missing. Tests that need it fail loudly rather than skip when it cannot
/// be had.
pub fn real_model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("GEMMA_MODEL") {
            return PathBuf::from(p);
        }
        gemma_platform::fetch::ensure_default_model(&mut std::io::stderr()).unwrap_or_else(|e| {
            panic!("the real model is needed for this test and could not be fetched: {e}")
        })
    })
    .clone()
}

pub fn goldens() -> &'static Value {
    static G: OnceLock<Value> = OnceLock::new();
    G.get_or_init(|| {
        let path = data_dir().join("gemma3-270m/goldens.json");
        let text = std::fs::read_to_string(&path).expect("goldens.json");
        serde_json::from_str(&text).expect("goldens.json parses")
    })
}

pub fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("int") as u32)
        .collect()
}

pub fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// A little-endian float32 or int32 `.npy` array: (shape, values as f32).
pub fn load_npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(data_dir().join("gemma3-270m/capital").join(name)).expect("npy file");
    assert_eq!(&bytes[..6], b"\x93NUMPY", "npy magic");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).expect("npy header");
    let shape_str = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape");
    let shape: Vec<usize> = shape_str
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let data = &bytes[10 + header_len..];
    let values = if header.contains("<i4") {
        data.chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect()
    } else {
        assert!(header.contains("<f4"), "only f4/i4 npy files are used");
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    (shape, values)
}

/// Indices of the `k` largest values, largest first, ties to the lower index.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}
