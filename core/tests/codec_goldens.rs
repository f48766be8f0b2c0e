//! gemma.cpp's weight codecs against vectors produced by gemma.cpp itself
//! (commit 3ed403e2, AVX3_SPR build), copied from the shared goldens into
//! tests/data/gemmacpp/; see the README there for every file's layout.
//! Then round-trip bounds and hostile inputs with a hand-rolled RNG.

use gemma_core::codec::float::{bf16_from_f32, bf16_from_f32_ftz};
use gemma_core::codec::sfp;
use gemma_core::codec::{
    decode, dot, encode, scale_to_sfp_range, Codec, CodecError, NUQ_ENCODE_SCRATCH_LEN,
};

mod common;
use common::data;

fn words<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    assert_eq!(bytes.len() % N, 0);
    bytes.chunks_exact(N).map(|c| c.try_into().unwrap())
}

fn f32s(name: &str) -> Vec<f32> {
    words::<4>(&data(name)).map(f32::from_le_bytes).collect()
}

fn u32s(name: &str) -> Vec<u32> {
    words::<4>(&data(name)).map(u32::from_le_bytes).collect()
}

fn u16s(name: &str) -> Vec<u16> {
    words::<2>(&data(name)).map(u16::from_le_bytes).collect()
}

fn f64s(name: &str) -> Vec<f64> {
    words::<8>(&data(name)).map(f64::from_le_bytes).collect()
}

fn scratch() -> Vec<f32> {
    vec![0.0; NUQ_ENCODE_SCRATCH_LEN]
}

fn encode_vec(codec: Codec, x: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; codec.bytes_for(x.len()).unwrap()];
    encode(codec, x, &mut out, &mut scratch()).unwrap();
    out
}

fn decode_vec(codec: Codec, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; n];
    decode(codec, bytes, 0, &mut out).unwrap();
    out
}

fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| got[i].to_bits() != want[i].to_bits())
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} differ, first at {}: got {:e}, want {:e}",
        bad.len(),
        got.len(),
        bad[0],
        got[bad[0]],
        want[bad[0]]
    );
}

fn assert_bytes_eq(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} bytes differ, first at {}: got {:#04x}, want {:#04x}",
        bad.len(),
        got.len(),
        bad[0],
        got[bad[0]],
        want[bad[0]]
    );
}

// ---------------------------------------------------------------------------
// SFP

#[test]
fn codec_sfp_decodes_all_256_codes_like_gemma_cpp() {
    let table = u32s("sfp_decode_table.u32");
    let table_bf16 = u16s("sfp_decode_table_bf16.u16");
    assert_eq!(table.len(), 256);
    for b in 0..=255u8 {
        let got = sfp::decode_byte(b).to_bits();
        assert_eq!(got, table[b as usize], "code {b:#04x}");
        assert_eq!(got >> 16, table_bf16[b as usize] as u32, "code {b:#04x}");
        assert_eq!(got & 0xFFFF, 0, "every SFP value is a bf16 value");
    }
    // Through the stream API, from every offset.
    let all: Vec<u8> = (0..=255).collect();
    let want: Vec<f32> = table.iter().map(|&b| f32::from_bits(b)).collect();
    assert_bits_eq("sfp stream", &decode_vec(Codec::SFP, &all, 256), &want);
    let mut one = [0f32; 1];
    for (off, &want) in table.iter().enumerate() {
        decode(Codec::SFP, &all, off, &mut one).unwrap();
        assert_eq!(one[0].to_bits(), want);
    }
}

#[test]
fn codec_sfp_encodes_8192_inputs_byte_exactly() {
    let x = f32s("sfp_encode_in.f32");
    let want = data("sfp_encode_out.u8");
    let want_dec = f32s("sfp_encode_decoded.f32");
    assert_eq!(x.len(), 8192);
    let got = encode_vec(Codec::SFP, &x);
    assert_bytes_eq("sfp encode", &got, &want);
    assert!(!got.contains(&0x80), "0x80 (-0.0) is never written");
    assert_bits_eq(
        "sfp decode",
        &decode_vec(Codec::SFP, &got, x.len()),
        &want_dec,
    );
}

// ---------------------------------------------------------------------------
// BF16

#[test]
fn codec_bf16_encode_matches_scalar_and_vector_paths() {
    let x: Vec<f32> = u32s("bf16_in.u32")
        .into_iter()
        .map(f32::from_bits)
        .collect();
    let scalar = u16s("bf16_out_scalar.u16");
    let vector = u16s("bf16_out_vector.u16");
    assert_eq!(x.len(), 9778);
    // The codec's encode is the scalar rule.
    let got = encode_vec(Codec::BF16, &x);
    let got16: Vec<u16> = words::<2>(&got).map(u16::from_le_bytes).collect();
    let mut differ = 0;
    for i in 0..x.len() {
        assert_eq!(
            got16[i],
            scalar[i],
            "scalar, input {i}: {:#010x}",
            x[i].to_bits()
        );
        assert_eq!(bf16_from_f32(x[i]), scalar[i]);
        assert_eq!(
            bf16_from_f32_ftz(x[i]),
            vector[i],
            "vector, input {i}: {:#010x}",
            x[i].to_bits()
        );
        differ += (scalar[i] != vector[i]) as usize;
    }
    assert_eq!(differ, 14, "the README's count of subnormal differences");
    // Decoding is exact widening.
    let dec = decode_vec(Codec::BF16, &got, x.len());
    for (d, &h) in dec.iter().zip(&scalar) {
        assert_eq!(d.to_bits(), (h as u32) << 16);
    }
}

// ---------------------------------------------------------------------------
// I8

fn check_i8(prefix: &str) {
    let x = f32s(&format!("{prefix}_in.f32"));
    let stream = data(&format!("{prefix}_stream.u8"));
    let want = f32s(&format!("{prefix}_decoded.f32"));
    assert_eq!(Codec::I8.bytes_for(x.len()), Some(stream.len()));
    let got = encode_vec(Codec::I8, &x);
    assert_bytes_eq(&format!("{prefix} encode"), &got, &stream);
    assert_bits_eq(
        &format!("{prefix} decode"),
        &decode_vec(Codec::I8, &stream, x.len()),
        &want,
    );
    // Every offset and span agrees with the whole decode.
    for off in (0..x.len()).step_by(7) {
        for len in [0, 1, 2, 127, 128, 129, x.len() - off] {
            let len = len.min(x.len() - off);
            let mut part = vec![f32::NAN; len];
            decode(Codec::I8, &stream, off, &mut part).unwrap();
            assert_bits_eq("i8 span", &part, &want[off..off + len]);
        }
    }
}

#[test]
fn codec_i8_encodes_and_decodes_like_gemma_cpp() {
    check_i8("i8");
    check_i8("i8_extra");
}

// ---------------------------------------------------------------------------
// NUQ

fn sse(x: &[f32], y: &[f32]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum()
}

/// Encode `x` and compare with gemma.cpp's stream group by group: identical
/// bytes, or else our squared error on that group no larger than theirs.
/// Returns (groups, identical groups).
fn check_nuq(prefix: &str) -> (usize, usize) {
    let x = f32s(&format!("{prefix}_in.f32"));
    let stream = data(&format!("{prefix}_stream.u8"));
    let want = f32s(&format!("{prefix}_decoded.f32"));
    assert_eq!(Codec::NUQ.bytes_for(x.len()), Some(stream.len()));

    let dec = decode_vec(Codec::NUQ, &stream, x.len());
    assert_bits_eq(&format!("{prefix} decode"), &dec, &want);
    for off in (0..x.len()).step_by(5) {
        for len in [1, 2, 3, 63, 64, 255, 256, 257, x.len() - off] {
            let len = len.min(x.len() - off);
            let mut part = vec![f32::NAN; len];
            decode(Codec::NUQ, &stream, off, &mut part).unwrap();
            assert_bits_eq("nuq span", &part, &want[off..off + len]);
        }
    }

    let ours = encode_vec(Codec::NUQ, &x);
    let ours_dec = decode_vec(Codec::NUQ, &ours, x.len());
    let (mut groups, mut same) = (0, 0);
    for (g, xg) in x.chunks(256).enumerate() {
        let bytes = 144 * g..(144 * g + 16 + xg.len().div_ceil(2));
        let elems = 256 * g..256 * g + xg.len();
        groups += 1;
        if ours[bytes.clone()] == stream[bytes] {
            same += 1;
            continue;
        }
        let (e_ours, e_theirs) = (sse(xg, &ours_dec[elems.clone()]), sse(xg, &dec[elems]));
        println!("{prefix} group {g}: bytes differ, squared error ours {e_ours:e}, gemma.cpp {e_theirs:e}");
        assert!(
            e_ours <= e_theirs,
            "{prefix} group {g}: {e_ours} > {e_theirs}"
        );
    }
    println!("{prefix}: {same} of {groups} groups byte-identical");
    (groups, same)
}

#[test]
fn codec_nuq_decodes_and_encodes_like_gemma_cpp() {
    let (g1, s1) = check_nuq("nuq");
    let (g2, s2) = check_nuq("nuq_extra");
    assert_eq!((g1, g2), (5, 2));
    // Exact 1-D k-means with gemma.cpp's fused arithmetic reproduces every
    // group; a mismatch here means the arithmetic drifted.
    assert_eq!((s1, s2), (5, 2));
    // The extra stream's odd last group ends in the padding's nibble.
    let extra = data("nuq_extra_stream.u8");
    assert_eq!(extra.last().unwrap() >> 4, 15);
}

#[test]
fn codec_nuq_tables_are_the_sfp_encoded_centers() {
    for prefix in ["nuq", "nuq_extra"] {
        let centers = f32s(&format!("{prefix}_centers_f32.f32"));
        let stream = data(&format!("{prefix}_stream.u8"));
        for (g, c) in centers.chunks(16).enumerate() {
            let table: Vec<u8> = c.iter().map(|&v| sfp::encode_byte(v)).collect();
            assert_eq!(
                &stream[144 * g..144 * g + 16],
                &table[..],
                "{prefix} group {g}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Dot products

/// The README's suggested tolerance against the exact f64 reference; the
/// summation order (and with it gemma.cpp's own result) depends on the
/// vector width.
const DOT_REL_TOL: f64 = 1e-6;

#[test]
fn codec_dot_matches_f64_reference_for_every_codec() {
    let w = f32s("dot_w.f32");
    let v = f32s("dot_v.f32");
    let gemma = f32s("dot_out.f32");
    let reference = f64s("dot_ref_f64.f64");
    let files = [
        (Codec::F32, "dot_w_f32.bin"),
        (Codec::BF16, "dot_w_bf16.bin"),
        (Codec::SFP, "dot_w_sfp.bin"),
        (Codec::NUQ, "dot_w_nuq.bin"),
        (Codec::I8, "dot_w_i8.bin"),
    ];
    let (rows, cols) = (4, 512);
    assert_eq!(w.len(), rows * cols);
    for (t, (codec, file)) in files.into_iter().enumerate() {
        let bytes = data(file);
        // Our encoder writes the same bytes gemma.cpp did.
        assert_bytes_eq(file, &encode_vec(codec, &w), &bytes);
        let dec = decode_vec(codec, &bytes, rows * cols);
        for r in 0..rows {
            let want = reference[t * rows + r];
            let got = dot(codec, &bytes, r * cols, &v).unwrap() as f64;
            let rel = (got - want).abs() / want.abs();
            assert!(
                rel <= DOT_REL_TOL,
                "{} row {r}: {got} vs reference {want} ({rel:e})",
                codec.name()
            );
            // gemma.cpp itself meets the same bound.
            let g = gemma[t * rows + r] as f64;
            assert!((g - want).abs() / want.abs() <= DOT_REL_TOL);
            // And the reference is the dot of our decode.
            let ours: f64 = dec[r * cols..(r + 1) * cols]
                .iter()
                .zip(&v)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            assert!(
                (ours - want).abs() <= 1e-12 * want.abs(),
                "{} row {r}",
                codec.name()
            );
        }
    }
}

#[test]
fn codec_dot_with_bf16_activations_matches_reference() {
    // gemma.cpp's other `Dot`: weights decoded to bf16 (f32 weights stay
    // f32), activations bf16. The reference is that product summed exactly,
    // which ties it to our decode. Our API takes f32 activations; widened
    // bf16 ones give the same products wherever the decoded weights are
    // not rounded (all but I8).
    let v: Vec<f32> = u16s("dot_v_bf16.u16")
        .into_iter()
        .map(|h| f32::from_bits((h as u32) << 16))
        .collect();
    let gemma = f32s("dot_out_vbf16.f32");
    let reference = f64s("dot_ref_vbf16_f64.f64");
    let files = [
        (Codec::F32, "dot_w_f32.bin"),
        (Codec::BF16, "dot_w_bf16.bin"),
        (Codec::SFP, "dot_w_sfp.bin"),
        (Codec::NUQ, "dot_w_nuq.bin"),
        (Codec::I8, "dot_w_i8.bin"),
    ];
    let (rows, cols) = (4, 512);
    for (t, (codec, file)) in files.into_iter().enumerate() {
        let bytes = data(file);
        let dec = decode_vec(codec, &bytes, rows * cols);
        for r in 0..rows {
            let want = reference[t * rows + r];
            let exact: f64 = dec[r * cols..(r + 1) * cols]
                .iter()
                .zip(&v)
                .map(|(&w, &x)| {
                    let w = match codec {
                        Codec::F32 => w,
                        _ => f32::from_bits((bf16_from_f32(w) as u32) << 16),
                    };
                    w as f64 * x as f64
                })
                .sum();
            assert!(
                (exact - want).abs() <= 1e-12 * want.abs(),
                "{} row {r}",
                codec.name()
            );
            let g = gemma[t * rows + r] as f64;
            assert!((g - want).abs() / want.abs() <= DOT_REL_TOL);
            if codec != Codec::I8 {
                let got = dot(codec, &bytes, r * cols, &v).unwrap() as f64;
                assert!(
                    (got - want).abs() / want.abs() <= DOT_REL_TOL,
                    "{} row {r}: {got} vs {want}",
                    codec.name()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Properties on random inputs

/// splitmix64, as the goldens' generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }
    /// Weight-like values of one of several shapes, all within SFP range.
    fn values(&mut self, n: usize) -> Vec<f32> {
        let shape = self.below(5);
        let sigma = [0.5, 0.02, 1e-4][self.below(3)];
        (0..n)
            .map(|_| {
                let v = match shape {
                    0 => self.normal() * sigma,
                    1 => (self.unit() * 2.0 - 1.0) * 1.875,
                    2 => (self.below(9) as f64 - 4.0) * 0.1,
                    3 => {
                        let m = 2f64.powf(-30.0 * self.unit());
                        if self.next() & 1 == 0 {
                            m
                        } else {
                            -m
                        }
                    }
                    _ => self.normal() * sigma + 0.3 * sigma,
                };
                (v as f32).clamp(-1.875, 1.875)
            })
            .collect()
    }
}

#[test]
fn codec_round_trip_within_stated_bounds() {
    let mut rng = Rng(0x5EED_C0DE);
    let mut s = scratch();
    for _ in 0..60 {
        let n = match rng.below(4) {
            0 => rng.below(8),
            1 => 256 * (1 + rng.below(3)),
            _ => rng.below(900),
        };
        let x = rng.values(n);
        for codec in Codec::ALL {
            let mut enc = vec![0u8; codec.bytes_for(n).unwrap()];
            encode(codec, &x, &mut enc, &mut s).unwrap();
            let y = decode_vec(codec, &enc, n);
            match codec {
                Codec::F32 => assert_bits_eq("f32", &y, &x),
                Codec::BF16 => {
                    for (&a, &b) in x.iter().zip(&y) {
                        // Half a unit in the 8th significant bit (subnormals:
                        // half of bf16's absolute spacing, 2^-133).
                        let bound = (a.abs() as f64 * 2f64.powi(-8)).max(2f64.powi(-134));
                        assert!((a as f64 - b as f64).abs() <= bound, "bf16 {a:e} -> {b:e}");
                    }
                }
                Codec::SFP => {
                    for (&a, &b) in x.iter().zip(&y) {
                        let (a, b) = (a as f64, b as f64);
                        // Truncating to 6 mantissa bits then rounding to 3
                        // (large values) or 2 (small): at most 2^-4 + 2^-6
                        // or 2^-3 + 2^-6 relative; below 2^-23 the smallest
                        // code's absolute 1.25·2^-23.
                        let bound = if a.abs() >= 2f64.powi(-7) {
                            0.079 * a.abs()
                        } else {
                            0.141 * a.abs() + 1.25 * 2f64.powi(-23)
                        };
                        assert!((a - b).abs() <= bound, "sfp {a:e} -> {b:e}");
                        assert!(b == 0.0 || (a < 0.0) == (b < 0.0), "sign of {a:e}");
                    }
                }
                Codec::NUQ => {
                    for (xg, yg) in x.chunks(256).zip(y.chunks(256)) {
                        // Optimal clustering beats 16 uniform levels over
                        // [min, max] (error <= range/32 each); rounding each
                        // mean c to SFP adds n·(c - sfp(c))^2 <= n·(0.079
                        // max|x|)^2 plus SFP's floor. 1% slack for the f32
                        // cost arithmetic.
                        let mn = xg.iter().fold(f64::MAX, |m, &v| m.min(v as f64));
                        let mx = xg.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
                        let amax = mn.abs().max(mx.abs());
                        let k = xg.len() as f64;
                        let bound = k * ((mx - mn) / 32.0).powi(2)
                            + k * (0.079 * amax + 1.25 * 2f64.powi(-23)).powi(2);
                        let e = sse(xg, yg);
                        assert!(e <= 1.01 * bound, "nuq group of {k}: {e:e} > {bound:e}");
                    }
                }
                Codec::I8 => {
                    for (xg, yg) in x.chunks(128).zip(y.chunks(128)) {
                        let mn = xg.iter().fold(f32::MAX, |m, &v| m.min(v)) as f64;
                        let mx = xg.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
                        if mn > 0.0 || mx < 0.0 {
                            continue; // the bound below needs 0 in range
                        }
                        let range = if mx > mn { mx - mn } else { 1.0 };
                        for (&a, &b) in xg.iter().zip(yg) {
                            let bound = 1.6 * range / 255.0 + (a.abs() as f64) / 128.0;
                            let err = (a as f64 - b as f64).abs();
                            assert!(err <= bound, "i8 {a:e} -> {b:e} (range {range:e})");
                        }
                    }
                }
            }
            // Encoding in pieces split at group boundaries gives the same
            // stream.
            let g = codec.group_elems() * (1 + rng.below(3));
            if n > g {
                let mut parts = vec![0u8; enc.len()];
                let cut = codec.bytes_for(g).unwrap();
                let (a, b) = parts.split_at_mut(cut);
                encode(codec, &x[..g], a, &mut s).unwrap();
                encode(codec, &x[g..], b, &mut s).unwrap();
                assert_eq!(parts, enc, "{} split at {g}", codec.name());
            }
            // Decoding any span from any offset agrees with the whole.
            for _ in 0..10 {
                let off = rng.below(n + 1);
                let len = rng.below(n - off + 1);
                let mut part = vec![f32::NAN; len];
                decode(codec, &enc, off, &mut part).unwrap();
                assert_bits_eq("span", &part, &y[off..off + len]);
                let v: Vec<f32> = (0..len).map(|_| rng.normal() as f32).collect();
                let want: f64 = part
                    .iter()
                    .zip(&v)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                let scale: f64 = part
                    .iter()
                    .zip(&v)
                    .map(|(&a, &b)| (a as f64 * b as f64).abs())
                    .sum();
                let got = dot(codec, &enc, off, &v).unwrap() as f64;
                // Rounding the f64 sum to f32, plus f64 summation error.
                assert!(
                    (got - want).abs() <= 2f64.powi(-24) * want.abs() + 1e-14 * scale + 1e-300,
                    "{} dot at {off}+{len}: {got} vs {want}",
                    codec.name()
                );
            }
        }
    }
}

#[test]
fn codec_scaled_tensors_encode_and_restore() {
    // A tensor beyond SFP's range: scale it, encode to SFP and NUQ, decode
    // and multiply back.
    let mut rng = Rng(7);
    let x: Vec<f32> = (0..700).map(|_| (rng.normal() * 3.0) as f32).collect();
    let mut scaled = x.clone();
    let scale = scale_to_sfp_range(&mut scaled);
    let max_abs = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert_eq!(scale, max_abs / 1.875);
    assert!(scaled.iter().all(|v| v.abs() <= 1.875));
    assert!(matches!(
        encode(Codec::SFP, &x, &mut vec![0; 700], &mut []),
        Err(CodecError::OutOfRange { .. })
    ));
    for codec in [Codec::SFP, Codec::NUQ] {
        let y = decode_vec(codec, &encode_vec(codec, &scaled), x.len());
        let err: f64 = sse(&x, &y.iter().map(|v| v * scale).collect::<Vec<_>>());
        let energy: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
        assert!(
            err / energy < 0.01,
            "{}: relative error {}",
            codec.name(),
            err / energy
        );
    }
}

#[test]
fn codec_arbitrary_bytes_and_lengths_never_panic() {
    let mut rng = Rng(0xBAD_F00D);
    let mut bytes = vec![0u8; 1500];
    let mut out = vec![0f32; 1200];
    let mut x = vec![0f32; 1200];
    for round in 0..300 {
        for b in bytes.iter_mut() {
            *b = rng.next() as u8;
        }
        for v in x.iter_mut() {
            *v = rng.normal() as f32;
        }
        let blen = rng.below(bytes.len() + 1);
        let src = &bytes[..blen];
        for codec in Codec::ALL {
            let off = match rng.below(3) {
                0 => rng.below(2000),
                1 => usize::MAX - rng.below(1000),
                _ => 0,
            };
            let len = rng.below(out.len() + 1);
            let fits = off
                .checked_add(len)
                .and_then(|e| codec.bytes_for(e))
                .is_some_and(|need| need <= blen);
            let r = decode(codec, src, off, &mut out[..len]);
            assert_eq!(
                r.is_ok(),
                fits,
                "{} off {off} len {len} bytes {blen}",
                codec.name()
            );
            let d = dot(codec, src, off, &x[..len]);
            assert_eq!(d.is_ok(), fits);
            if let (Ok(()), Ok(d)) = (r, d) {
                let want: f64 = out[..len]
                    .iter()
                    .zip(&x[..len])
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                if want.is_finite() && want.abs() < 1e30 {
                    let scale: f64 = out[..len]
                        .iter()
                        .zip(&x[..len])
                        .map(|(&a, &b)| (a as f64 * b as f64).abs())
                        .sum();
                    assert!(
                        (d as f64 - want).abs() <= 2f64.powi(-24) * want.abs() + 1e-14 * scale,
                        "{}: {d} vs {want}",
                        codec.name()
                    );
                }
                if matches!(codec, Codec::SFP | Codec::NUQ) {
                    assert!(out[..len].iter().all(|v| v.abs() <= 1.875));
                }
            }
            // Encoding arbitrary floats (NaN, Inf, huge) returns an error or
            // succeeds; it never panics.
            let n = rng.below(600);
            let vals: Vec<f32> = (0..n)
                .map(|_| match round % 3 {
                    0 => f32::from_bits(rng.next() as u32),
                    1 => rng.normal() as f32 * 1e30,
                    _ => rng.normal() as f32,
                })
                .collect();
            let need = codec.bytes_for(n).unwrap();
            let dlen = if rng.below(4) == 0 {
                rng.below(need + 2)
            } else {
                need
            };
            let mut dst = vec![0u8; dlen];
            let mut s = vec![
                0f32;
                if rng.below(8) == 0 {
                    100
                } else {
                    NUQ_ENCODE_SCRATCH_LEN
                }
            ];
            let r = encode(codec, &vals, &mut dst, &mut s);
            if r.is_err() {
                assert!(dst.iter().all(|&b| b == 0), "nothing written on error");
            }
            if dlen != need {
                assert!(matches!(r, Err(CodecError::LengthMismatch { .. })));
            }
        }
    }
}
