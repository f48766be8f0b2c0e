//! Any bytes as a safetensors file: the header walk, every tensor view, and
//! metadata lookups. Views must agree with their shapes.
#![no_main]

use gemma_core::format::safetensors::Safetensors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(st) = Safetensors::parse(data) {
        let mut n = 0;
        for t in st.tensors() {
            assert_eq!(t.data.len() as u64, t.n_elements() * t.dtype.size());
            assert!(st.tensor(t.name).is_some());
            n += 1;
        }
        assert_eq!(n, st.len());
        let _ = st.metadata("format");
    }
});
