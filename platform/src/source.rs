//! Where `gemma convert` reads a model's tensors from: any of the formats,
//! each tensor named by its role ([`TensorId`]) and handed over as f32.

use gemma_core::format::gguf::Gguf;
use gemma_core::quant;
use gemma_core::weights::TensorId;
use std::fmt;

#[derive(Debug)]
pub struct ConvertError(pub String);

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConvertError {}

pub(crate) fn err(s: impl Into<String>) -> ConvertError {
    ConvertError(s.into())
}

/// A model's tensors by role: a GGUF file, a Hugging Face checkpoint
/// (`hf.rs`) or a pre-2025 gemma.cpp file (`legacy_sbs.rs`).
pub(crate) trait Source {
    /// A matrix as f32, `rows` output features of `cols` inputs each
    /// (a norm is one row).
    fn matrix(&self, id: TensorId, rows: usize, cols: usize) -> Result<Vec<f32>, ConvertError>;
    /// A norm gain in gemma.cpp's form: the `w` of `x * (1 + w)`.
    fn norm(&self, id: TensorId, n: usize) -> Result<Vec<f32>, ConvertError>;
}

/// A GGUF file, its tensors dequantized.
pub(crate) struct GgufSource<'a>(pub Gguf<'a>);

impl Source for GgufSource<'_> {
    fn matrix(&self, id: TensorId, rows: usize, cols: usize) -> Result<Vec<f32>, ConvertError> {
        let name = id.gguf_name();
        let t = self
            .0
            .tensor(&name)
            .ok_or_else(|| err(format!("missing tensor {name}")))?;
        if t.n_dims > 2
            || t.dims[0] as usize != cols
            || t.dims[1..t.n_dims.max(1)].iter().product::<u64>() as usize != rows
        {
            return Err(err(format!("tensor {name} has an unexpected shape")));
        }
        let mut out = vec![0f32; rows * cols];
        quant::dequantize(t.ty, t.data, &mut out).map_err(|e| err(format!("{name}: {e:?}")))?;
        Ok(out)
    }

    /// GGUF gains already include Gemma's `+1`.
    fn norm(&self, id: TensorId, n: usize) -> Result<Vec<f32>, ConvertError> {
        let mut v = self.matrix(id, 1, n)?;
        v.iter_mut().for_each(|x| *x -= 1.0);
        Ok(v)
    }
}
