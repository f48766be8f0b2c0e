//! The safetensors reader on well-formed files and on hostile headers.

use gemma_core::format::safetensors::{Dtype, Safetensors, SafetensorsError};

fn file(header: &str, data_len: usize) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend((0..data_len).map(|i| i as u8));
    v
}

const GOOD: &str = r#"{"__metadata__":{"format":"pt","note":"a \"quoted\" \u00e9"},"a.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"shape":[4],"data_offsets":[24,32],"dtype":"BF16"},"scalar":{"dtype":"I64","shape":[],"data_offsets":[32,40]}}   "#;

#[test]
fn reads_tensors_and_metadata() {
    let bytes = file(GOOD, 40);
    let st = Safetensors::parse(&bytes).unwrap();
    assert_eq!(st.len(), 3);
    let names: Vec<_> = st.tensors().map(|t| t.name).collect();
    assert_eq!(names, ["a.weight", "b", "scalar"]);
    let a = st.tensor("a.weight").unwrap();
    assert_eq!((a.dtype, a.shape()), (Dtype::F32, &[2u64, 3][..]));
    assert_eq!(a.data, &bytes[bytes.len() - 40..][..24]);
    let b = st.tensor("b").unwrap();
    assert_eq!((b.dtype, b.n_elements(), b.data.len()), (Dtype::BF16, 4, 8));
    assert_eq!(st.tensor("scalar").unwrap().n_elements(), 1);
    assert_eq!(st.metadata("format"), Some("pt"));
    assert_eq!(st.metadata("missing"), None);
    assert!(st.tensor("nope").is_none());
}

#[test]
fn empty_header_is_an_empty_file() {
    let bytes = file("{}", 0);
    let st = Safetensors::parse(&bytes).unwrap();
    assert!(st.is_empty());
    assert_eq!(st.tensors().count(), 0);
}

/// Each hostile header gets its own error; none panics.
#[test]
fn hostile_headers_are_refused() {
    let t = |body: &str| format!(r#"{{"t":{body}}}"#);
    let cases: Vec<(String, usize, &str)> = vec![
        (String::new(), 0, "empty header"),
        ("[]".into(), 0, "array at top level"),
        ("{".into(), 0, "unclosed object"),
        (r#"{"t":}"#.into(), 0, "missing value"),
        (
            t(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#),
            8,
            "trailing comma",
        ),
        (
            t(r#"{"dtype":"F33","shape":[2],"data_offsets":[0,8]}"#),
            8,
            "unknown dtype",
        ),
        (
            t(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,9]}"#),
            9,
            "size mismatch",
        ),
        (
            t(r#"{"dtype":"F32","shape":[2],"data_offsets":[8,0]}"#),
            8,
            "reversed offsets",
        ),
        (
            t(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#),
            4,
            "offsets past the data",
        ),
        (
            t(r#"{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}"#),
            8,
            "shape product overflows",
        ),
        (
            t(r#"{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}"#),
            8,
            "dimension beyond u64",
        ),
        (
            t(r#"{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}"#),
            8,
            "negative dimension",
        ),
        (
            t(r#"{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}"#),
            8,
            "float dimension",
        ),
        (
            t(r#"{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}"#),
            4,
            "nine dims",
        ),
        (t(r#"{"dtype":"F32","shape":[2]}"#), 8, "no offsets"),
        (
            t(r#"{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}"#),
            8,
            "duplicate key",
        ),
        (
            t(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}"#),
            8,
            "unknown key",
        ),
        (
            t(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,8,16]}"#),
            16,
            "three offsets",
        ),
        (
            r#"{"t\u0041":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#.into(),
            1,
            "escaped name",
        ),
        (
            r#"{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}} x"#.into(),
            1,
            "trailing junk",
        ),
        (
            r#"{"__metadata__":{"k":5}}"#.into(),
            0,
            "non-string metadata",
        ),
        (r#"{"__metadata__":{"k":"\q"}}"#.into(), 0, "bad escape"),
        ("{\"t\n\":1}".into(), 0, "control character in a string"),
        (
            t(r#"{"dtype":"F32","shape":[02],"data_offsets":[0,8]}"#),
            8,
            "leading zero",
        ),
    ];
    for (header, data_len, what) in cases {
        let bytes = file(&header, data_len);
        assert!(Safetensors::parse(&bytes).is_err(), "{what}: accepted");
    }
}

#[test]
fn lengths_are_checked_before_reading() {
    assert!(matches!(
        Safetensors::parse(&[1, 2, 3]),
        Err(SafetensorsError::Truncated { .. })
    ));
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    assert!(matches!(
        Safetensors::parse(&huge),
        Err(SafetensorsError::HeaderTooLarge(_))
    ));
    let mut long = 1000u64.to_le_bytes().to_vec();
    long.extend_from_slice(b"{}");
    assert!(matches!(
        Safetensors::parse(&long),
        Err(SafetensorsError::Truncated { .. })
    ));
    let mut bad_utf8 = 2u64.to_le_bytes().to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    assert_eq!(
        Safetensors::parse(&bad_utf8).unwrap_err(),
        SafetensorsError::NotUtf8
    );
}

/// Every truncation of a good file either parses (cut inside trailing
/// padding or data that no tensor uses) or fails cleanly.
#[test]
fn truncations_and_bit_flips_never_panic() {
    let bytes = file(GOOD, 40);
    for n in 0..bytes.len() {
        let _ = Safetensors::parse(&bytes[..n]);
    }
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            if let Ok(st) = Safetensors::parse(&b) {
                for t in st.tensors() {
                    assert_eq!(t.data.len() as u64, t.n_elements() * t.dtype.size());
                }
            }
        }
    }
}
