//! The kernel source: one text that OpenCL and CUDA both compile.
//!
//! A program is the dialect header, its constants and kernel files, joined
//! into one self-contained source (no include paths, no `-D` options), so
//! the text OpenCL builds here is byte for byte the text NVRTC compiles for
//! `sm_61`. The weight products are built once per encoding (`WTYPE`), so
//! each decodes its own format with no branch on the others.

use gemma_core::codec::Codec;
use gemma_core::quant::WeightType;
use gemma_core::weights::Encoding;
use std::fmt::Write;

const DIALECT: &str = include_str!("../kernels/dialect.h");
const DECODE: &str = include_str!("../kernels/decode.h");
const MATMUL: &str = include_str!("../kernels/matmul.cl");
const OPS: &str = include_str!("../kernels/ops.cl");
const ATTENTION: &str = include_str!("../kernels/attention.cl");

/// Rows of a weight product per block (32 threads each).
pub const MM_ROWS: usize = 4;
/// Tokens a prefill product block applies each decoded chunk to.
pub const TILE: usize = 8;
/// Threads of a norm block and of an argmax block.
pub const NORM_THREADS: usize = 256;
pub const ARGMAX_THREADS: usize = 256;
/// Threads of an attention block (one key each per step).
pub const ATT_THREADS: usize = 32;
/// The largest head the attention kernel holds in shared memory.
pub const MAX_HEAD_DIM: usize = 256;
/// Threads of an element-wise block.
pub const ELEMENT_THREADS: usize = 256;

/// Every encoding a weight product is built for, in `W_*` code order:
/// GGML types first, then gemma.cpp's codecs.
pub const ENCODINGS: [Encoding; 16] = [
    Encoding::Ggml(WeightType::F32),
    Encoding::Ggml(WeightType::F16),
    Encoding::Ggml(WeightType::BF16),
    Encoding::Ggml(WeightType::Q4_0),
    Encoding::Ggml(WeightType::Q4_1),
    Encoding::Ggml(WeightType::Q5_0),
    Encoding::Ggml(WeightType::Q5_1),
    Encoding::Ggml(WeightType::Q8_0),
    Encoding::Ggml(WeightType::Q4K),
    Encoding::Ggml(WeightType::Q5K),
    Encoding::Ggml(WeightType::Q6K),
    Encoding::Gemma(Codec::F32),
    Encoding::Gemma(Codec::BF16),
    Encoding::Gemma(Codec::SFP),
    Encoding::Gemma(Codec::NUQ),
    Encoding::Gemma(Codec::I8),
];

/// The `W_*` names of [`ENCODINGS`], in order.
const CODE_NAMES: [&str; 16] = [
    "W_F32",
    "W_F16",
    "W_BF16",
    "W_Q4_0",
    "W_Q4_1",
    "W_Q5_0",
    "W_Q5_1",
    "W_Q8_0",
    "W_Q4_K",
    "W_Q5_K",
    "W_Q6_K",
    "W_GEMMA_F32",
    "W_GEMMA_BF16",
    "W_SFP",
    "W_NUQ",
    "W_I8",
];

/// The first gemma.cpp codec's code.
const GEMMA_FIRST: usize = 11;

/// One compilable program.
#[derive(Clone, Debug)]
pub struct Program {
    /// `ops` or `matmul_<encoding>`.
    pub name: String,
    pub source: String,
}

/// The short name of an encoding, as program names use it (`q4_k`, `sfp`).
pub fn encoding_name(enc: Encoding) -> &'static str {
    let code = code_of(enc);
    const NAMES: [&str; 16] = [
        "f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q5_k", "q6_k",
        "sbs_f32", "sbs_bf16", "sfp", "nuq", "i8",
    ];
    NAMES[code]
}

fn code_of(enc: Encoding) -> usize {
    ENCODINGS
        .iter()
        .position(|e| *e == enc)
        .expect("ENCODINGS lists every encoding")
}

fn constants(src: &mut String) {
    let consts = [
        ("MM_ROWS", MM_ROWS),
        ("TILE", TILE),
        ("NORM_THREADS", NORM_THREADS),
        ("ARGMAX_THREADS", ARGMAX_THREADS),
        ("ATT_THREADS", ATT_THREADS),
        ("MAX_HEAD_DIM", MAX_HEAD_DIM),
    ];
    for (name, v) in consts {
        let _ = writeln!(src, "#define {name} {v}");
    }
    for (code, name) in CODE_NAMES.iter().enumerate() {
        let _ = writeln!(src, "#define {name} {code}");
    }
    let _ = writeln!(src, "#define W_GEMMA_FIRST {GEMMA_FIRST}");
}

fn assemble(name: String, defines: &str, files: &[&str]) -> Program {
    let mut source = String::new();
    constants(&mut source);
    source.push_str(defines);
    source.push_str(DIALECT);
    for f in files {
        source.push_str(f);
    }
    Program { name, source }
}

/// The norms, RoPE, element-wise steps, KV stores, attention and argmax.
pub fn ops() -> Program {
    assemble("ops".into(), "", &[OPS, ATTENTION])
}

/// The products (`matvec`, `matmul_tiled`) and the embedding lookup for
/// weights encoded as `enc`.
pub fn matmul(enc: Encoding) -> Program {
    let code = code_of(enc);
    assemble(
        format!("matmul_{}", encoding_name(enc)),
        &format!("#define WTYPE {code}\n"),
        &[DECODE, MATMUL],
    )
}

/// Every program: what the CUDA compile check builds.
pub fn all() -> Vec<Program> {
    let mut all = vec![ops()];
    all.extend(ENCODINGS.iter().map(|&e| matmul(e)));
    all
}

/// The kernels each program defines.
pub const OPS_KERNELS: [&str; 9] = [
    "rms_norm",
    "rope",
    "scale",
    "add",
    "gelu_gate",
    "softcap",
    "store_kv",
    "argmax",
    "attend",
];
pub const MATMUL_KERNELS: [&str; 3] = ["matvec", "matmul_tiled", "embed"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_encoding_has_its_own_program() {
        let all = all();
        assert_eq!(all.len(), 1 + ENCODINGS.len());
        let mut names: Vec<_> = all.iter().map(|p| p.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "program names are unique");
        let q4k = matmul(Encoding::Ggml(WeightType::Q4K));
        assert!(q4k.source.contains("#define WTYPE 8\n"));
        assert!(q4k.source.contains("#define W_Q4_K 8\n"));
    }
}
