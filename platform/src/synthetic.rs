//! Tiny synthetic Gemma models with seeded random weights.
//!
//! Small enough to embed in a firmware image and to check against a naive
//! reference implementation, yet shaped like the real thing: GQA, QK-norm,
//! post-norms, local layers with a short sliding window and a global one,
//! and a SentencePiece vocabulary with byte fallback.

use crate::gguf_writer::{GgufWriter, MetaValue};
use gemma_core::quant::WeightType;
use gemma_core::weights::{Role, TensorId};

#[derive(Clone, Copy, Debug)]
pub struct TinySpec {
    /// "gemma" (Gemma 1), "gemma2" or "gemma3".
    pub arch: &'static str,
    pub n_layers: u32,
    pub d_model: u32,
    pub d_ff: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub sliding_window: u32,
    pub context_length: u32,
    pub seed: u64,
    /// How the embedding and the matrices are stored (norm gains stay
    /// F32). Quantized types hold random blocks whose scales give values
    /// of the size an F32 model's would have.
    pub weight_type: WeightType,
}

impl Default for TinySpec {
    fn default() -> Self {
        Self {
            arch: "gemma3",
            n_layers: 6,
            d_model: 16,
            d_ff: 32,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 8,
            sliding_window: 4,
            context_length: 64,
            seed: 7,
            weight_type: WeightType::F32,
        }
    }
}

/// The vocabulary: specials, a few word pieces, then the 256 byte pieces.
pub fn tiny_vocab() -> (Vec<String>, Vec<f32>, Vec<i32>) {
    let mut tokens: Vec<String> = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "<start_of_turn>",
        "<end_of_turn>",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut types = vec![3; tokens.len()];
    let mut scores = vec![-1000.0; tokens.len()];
    tokens.push("\n".into());
    types.push(4);
    scores.push(-1000.0);
    let words = [
        "▁", "a", "b", "c", "h", "e", "l", "o", "t", "▁t", "he", "▁the", "ll", "llo", "he", "▁h",
        "▁he", "▁hello",
    ];
    for (i, w) in words.iter().enumerate() {
        if tokens.iter().any(|t| t == w) {
            continue;
        }
        tokens.push(w.to_string());
        types.push(1);
        scores.push(-(i as f32));
    }
    for b in 0..=255u32 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    (tokens, scores, types)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        // xorshift64*, mapped to [-1, 1).
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        v as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn fill(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// f16 scale fields of a quantized block: (byte offset, value as a
/// fraction of the wanted amplitude), chosen so that decoded values span
/// about `[-amplitude, amplitude]` whatever the random payload.
fn scale_fields(ty: WeightType) -> &'static [(usize, f32)] {
    match ty {
        WeightType::Q4_0 => &[(0, 1.0 / 8.0)],
        WeightType::Q4_1 => &[(0, 1.0 / 8.0), (2, -1.0)],
        WeightType::Q5_0 => &[(0, 1.0 / 16.0)],
        WeightType::Q5_1 => &[(0, 1.0 / 16.0), (2, -1.0)],
        WeightType::Q8_0 => &[(0, 1.0 / 128.0)],
        WeightType::Q4K => &[(0, 1.0 / (32.0 * 15.0)), (2, 1.0 / 64.0)],
        WeightType::Q5K => &[(0, 1.0 / (32.0 * 31.0)), (2, 1.0 / 64.0)],
        WeightType::Q6K => &[(208, 1.0 / (64.0 * 32.0))],
        WeightType::F32 | WeightType::F16 | WeightType::BF16 => &[],
    }
}

/// `values` (`rows x cols`, used as they are for float types) stored as
/// `ty`: float types convert them; quantized types get random payloads
/// with scales for values of about `amplitude`.
fn encode_matrix(
    ty: WeightType,
    values: &[f32],
    cols: usize,
    amplitude: f32,
    rng: &mut Rng,
) -> Vec<u8> {
    match ty {
        WeightType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        WeightType::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        WeightType::BF16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        _ => {
            let rows = values.len() / cols;
            let len = ty.row_bytes(cols).expect("whole blocks") * rows;
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| (rng.next() * 128.0 + 128.0) as u8)
                .collect();
            for block in bytes.chunks_exact_mut(ty.block_bytes()) {
                for &(at, f) in scale_fields(ty) {
                    let h = half::f16::from_f32(amplitude * f).to_bits().to_le_bytes();
                    block[at..at + 2].copy_from_slice(&h);
                }
            }
            bytes
        }
    }
}

/// Builds the GGUF bytes of a tiny model.
pub fn tiny_model(spec: &TinySpec) -> Vec<u8> {
    let (tokens, scores, types) = tiny_vocab();
    let vocab = tokens.len() as u64;
    let a = spec.arch;
    let mut w = GgufWriter::default();
    w.meta("general.architecture", MetaValue::Str(a.into()))
        .meta(
            "general.name",
            MetaValue::Str("tiny synthetic gemma".into()),
        )
        .meta(
            &format!("{a}.context_length"),
            MetaValue::U32(spec.context_length),
        )
        .meta(
            &format!("{a}.embedding_length"),
            MetaValue::U32(spec.d_model),
        )
        .meta(&format!("{a}.block_count"), MetaValue::U32(spec.n_layers))
        .meta(
            &format!("{a}.feed_forward_length"),
            MetaValue::U32(spec.d_ff),
        )
        .meta(
            &format!("{a}.attention.head_count"),
            MetaValue::U32(spec.n_heads),
        )
        .meta(
            &format!("{a}.attention.head_count_kv"),
            MetaValue::U32(spec.n_kv_heads),
        )
        .meta(
            &format!("{a}.attention.key_length"),
            MetaValue::U32(spec.head_dim),
        )
        .meta(
            &format!("{a}.attention.value_length"),
            MetaValue::U32(spec.head_dim),
        )
        .meta(
            &format!("{a}.attention.layer_norm_rms_epsilon"),
            MetaValue::F32(1e-6),
        )
        .meta(
            &format!("{a}.attention.sliding_window"),
            MetaValue::U32(spec.sliding_window),
        )
        .meta(&format!("{a}.rope.freq_base"), MetaValue::F32(1_000_000.0));
    if a == "gemma2" {
        w.meta("gemma2.attn_logit_softcapping", MetaValue::F32(50.0))
            .meta("gemma2.final_logit_softcapping", MetaValue::F32(30.0));
    }
    w.meta("tokenizer.ggml.model", MetaValue::Str("llama".into()))
        .meta("tokenizer.ggml.tokens", MetaValue::StrArray(tokens))
        .meta("tokenizer.ggml.scores", MetaValue::F32Array(scores))
        .meta("tokenizer.ggml.token_type", MetaValue::I32Array(types))
        .meta("tokenizer.ggml.bos_token_id", MetaValue::U32(2))
        .meta("tokenizer.ggml.eos_token_id", MetaValue::U32(1))
        .meta("tokenizer.ggml.unknown_token_id", MetaValue::U32(3))
        .meta("tokenizer.ggml.padding_token_id", MetaValue::U32(0));

    let mut rng = Rng(spec.seed.max(1));
    let (d, ff, hd) = (spec.d_model as u64, spec.d_ff as u64, spec.head_dim as u64);
    let (q, kv) = (spec.n_heads as u64 * hd, spec.n_kv_heads as u64 * hd);
    let gain =
        |rng: &mut Rng, n: u64| -> Vec<f32> { (0..n).map(|_| 1.0 + 0.2 * rng.next()).collect() };
    let g = gain(&mut rng, d);
    w.tensor_f32(&TensorId::global(Role::FinalNorm).gguf_name(), &[d], &g);
    let ty = spec.weight_type;
    // A matrix of `cols` inputs, stored as the spec says.
    let matrix = |w: &mut GgufWriter, rng: &mut Rng, name: &str, cols: u64, rows: u64, amp: f32| {
        let v = rng.fill((rows * cols) as usize, amp);
        let bytes = encode_matrix(ty, &v, cols as usize, amp, rng);
        w.tensor_raw(name, &[cols, rows], ty.ggml_id(), bytes);
    };
    let embedding = TensorId::global(Role::Embedding).gguf_name();
    matrix(&mut w, &mut rng, &embedding, d, vocab, 0.5);
    for l in 0..spec.n_layers {
        let name = |role| TensorId::layer(role, l as usize).gguf_name().to_string();
        let inv = |n: u64| 1.0 / (n as f32).sqrt();
        let t = gain(&mut rng, d);
        w.tensor_f32(&name(Role::AttnNorm), &[d], &t);
        matrix(&mut w, &mut rng, &name(Role::Q), d, q, inv(d));
        matrix(&mut w, &mut rng, &name(Role::K), d, kv, inv(d));
        matrix(&mut w, &mut rng, &name(Role::V), d, kv, inv(d));
        matrix(&mut w, &mut rng, &name(Role::O), q, d, inv(q));
        if a == "gemma3" {
            let t = gain(&mut rng, hd);
            w.tensor_f32(&name(Role::QNorm), &[hd], &t);
            let t = gain(&mut rng, hd);
            w.tensor_f32(&name(Role::KNorm), &[hd], &t);
        }
        let t = gain(&mut rng, d);
        if a != "gemma" {
            w.tensor_f32(&name(Role::PostAttnNorm), &[d], &t);
        }
        let t = gain(&mut rng, d);
        w.tensor_f32(&name(Role::FfnNorm), &[d], &t);
        matrix(&mut w, &mut rng, &name(Role::Gate), d, ff, inv(d));
        matrix(&mut w, &mut rng, &name(Role::Up), d, ff, inv(d));
        matrix(&mut w, &mut rng, &name(Role::Down), ff, d, inv(ff));
        let t = gain(&mut rng, d);
        if a != "gemma" {
            w.tensor_f32(&name(Role::PostFfwNorm), &[d], &t);
        }
    }
    w.to_bytes()
}

/// Deterministic pseudo-random encoded rows of `ty`: finite block scales,
/// arbitrary quantized payloads. `rows x cols` elements.
pub fn random_matrix_bytes(ty: WeightType, rows: usize, cols: usize) -> Vec<u8> {
    let row_bytes = ty
        .row_bytes(cols)
        .expect("cols is a whole number of blocks");
    let mut bytes = vec![0u8; row_bytes * rows];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for b in bytes.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = (state >> 32) as u8;
    }
    match ty {
        // Float weights as real ones look: normal numbers in (-1, 1). Raw
        // random bits would be mostly subnormal, which some CPUs (Intel)
        // multiply tens of times slower, so the figures would mean nothing.
        WeightType::F32 => {
            let vals = bytes
                .chunks_exact(4)
                .map(|c| unit(c[0], c[1]))
                .collect::<Vec<_>>();
            vals.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        WeightType::BF16 | WeightType::F16 => {
            let vals = bytes
                .chunks_exact(2)
                .map(|c| unit(c[0], c[1]))
                .collect::<Vec<_>>();
            vals.iter()
                .flat_map(|&v| match ty {
                    WeightType::BF16 => half::bf16::from_f32(v).to_bits().to_le_bytes(),
                    _ => half::f16::from_f32(v).to_bits().to_le_bytes(),
                })
                .collect()
        }
        _ => {
            // Keep the f16 block scales finite and modest: clear the top
            // exponent bits of each scale field. Payload bits stay random.
            let bb = ty.block_bytes();
            for block in bytes.chunks_exact_mut(bb) {
                for &(at, _) in scale_fields(ty) {
                    block[at + 1] &= 0x3b;
                }
            }
            bytes
        }
    }
}

/// A value in (-1, 1) from two random bytes.
fn unit(a: u8, b: u8) -> f32 {
    (u16::from_le_bytes([a, b]) as f32 - 32767.5) / 32768.0
}
