//! Decode every supported GGML weight type against reference vectors made by
//! the independent `gguf` Python package (see tests/data/quant/gen_vectors.py).

use gemma_core::quant::{dequantize, dot, WeightType};
use std::path::PathBuf;

fn data(name: &str) -> Vec<u8> {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "data", "quant", name]
        .iter()
        .collect();
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    assert_eq!(bytes.len() % 4, 0);
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

struct Vectors {
    raw: Vec<u8>,
    want: Vec<f32>,
    x: Vec<f32>,
    dot: f64,
}

fn load(ty: WeightType) -> Vectors {
    let n = ty.name();
    let raw = data(&format!("{n}.bin"));
    let want = f32s(&data(&format!("{n}.f32")));
    let x = f32s(&data(&format!("{n}.x.f32")));
    let d = data(&format!("{n}.dot.f64"));
    let dot = f64::from_le_bytes(d.as_slice().try_into().unwrap());
    assert_eq!(want.len(), x.len(), "{n}");
    assert_eq!(ty.row_bytes(want.len()), Some(raw.len()), "{n}");
    Vectors { raw, want, x, dot }
}

#[test]
fn quant_dequantize_matches_reference_bit_exactly() {
    for ty in WeightType::ALL {
        let v = load(ty);
        let mut got = vec![f32::NAN; v.want.len()];
        dequantize(ty, &v.raw, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&v.want).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{}: element {i}: got {g:e}, reference {w:e}",
                ty.name()
            );
        }
        // Decoding a prefix of whole blocks gives the same prefix.
        let blocks = v.want.len() / ty.block_elems();
        if blocks > 1 {
            let n = (blocks / 2) * ty.block_elems();
            let nb = ty.row_bytes(n).unwrap();
            let mut part = vec![0f32; n];
            dequantize(ty, &v.raw[..nb], &mut part).unwrap();
            assert_eq!(&part[..], &got[..n], "{}", ty.name());
        }
    }
}

#[test]
fn quant_dot_matches_reference() {
    for ty in WeightType::ALL {
        let v = load(ty);
        let got = dot(ty, &v.raw, &v.x).unwrap() as f64;
        let rel = (got - v.dot).abs() / v.dot.abs();
        assert!(
            rel <= 1e-4,
            "{}: dot {got} vs reference {} (rel err {rel:e})",
            ty.name(),
            v.dot
        );
        // The fused dot must also agree with decode-then-dot in f64.
        let mut dec = vec![0f32; v.x.len()];
        dequantize(ty, &v.raw, &mut dec).unwrap();
        let d64: f64 = dec
            .iter()
            .zip(&v.x)
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum();
        assert!(
            (d64 - v.dot).abs() <= 1e-9 * v.dot.abs().max(1.0),
            "{}",
            ty.name()
        );
    }
}

#[test]
fn quant_every_block_count_up_to_the_vectors() {
    // Dot over every whole-block prefix, against an f64 dot of the reference
    // decode, so tails and block counts that are not a multiple of the
    // accumulator width are covered.
    for ty in WeightType::ALL {
        let v = load(ty);
        let be = ty.block_elems();
        for blocks in 0..=v.want.len() / be {
            let n = blocks * be;
            let nb = ty.row_bytes(n).unwrap();
            let got = dot(ty, &v.raw[..nb], &v.x[..n]).unwrap() as f64;
            let want: f64 = v.want[..n]
                .iter()
                .zip(&v.x[..n])
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            let scale: f64 = v.want[..n]
                .iter()
                .zip(&v.x[..n])
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            assert!(
                (got - want).abs() <= 1e-5 * scale,
                "{} with {n} elements: {got} vs {want}",
                ty.name()
            );
        }
    }
}
