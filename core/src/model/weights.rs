//! Borrowed, format-agnostic weight views.
//!
//! The forward pass sees only [`Matrix`] views (a weight type, a shape and
//! the encoded bytes); which file the bytes came from is decided here, once,
//! when the views are built.

use super::config::{ModelConfig, MAX_LAYERS};
use crate::format::gguf::{Gguf, TensorInfo};
use crate::quant::WeightType;
use core::fmt;

/// A row-major matrix of encoded rows: `rows` rows of `cols` elements.
/// Vectors (norm gains) are matrices with one row.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    pub ty: WeightType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    row_bytes: usize,
}

impl Default for Matrix<'_> {
    fn default() -> Self {
        Self {
            ty: WeightType::F32,
            rows: 0,
            cols: 0,
            data: &[],
            row_bytes: 0,
        }
    }
}

impl<'a> Matrix<'a> {
    /// Wraps encoded bytes, checking that they hold exactly `rows x cols`.
    pub fn new(ty: WeightType, rows: usize, cols: usize, data: &'a [u8]) -> Option<Self> {
        let row_bytes = ty.row_bytes(cols)?;
        if row_bytes.checked_mul(rows)? != data.len() {
            return None;
        }
        Some(Self {
            ty,
            rows,
            cols,
            data,
            row_bytes,
        })
    }

    /// Encoded bytes of row `r`; empty when out of range.
    #[inline]
    pub fn row(&self, r: usize) -> &'a [u8] {
        let start = r.wrapping_mul(self.row_bytes);
        self.data
            .get(start..start.wrapping_add(self.row_bytes))
            .unwrap_or(&[])
    }

    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
}

/// One transformer block's weights. Optional ones are empty matrices.
#[derive(Clone, Copy, Debug, Default)]
pub struct LayerWeights<'a> {
    pub attn_norm: Matrix<'a>,
    pub q: Matrix<'a>,
    pub k: Matrix<'a>,
    pub v: Matrix<'a>,
    pub o: Matrix<'a>,
    pub q_norm: Matrix<'a>,
    pub k_norm: Matrix<'a>,
    pub post_attn_norm: Matrix<'a>,
    pub ffn_norm: Matrix<'a>,
    pub gate: Matrix<'a>,
    pub up: Matrix<'a>,
    pub down: Matrix<'a>,
    pub post_ffw_norm: Matrix<'a>,
}

#[derive(Clone, Copy, Debug)]
pub struct Weights<'a> {
    pub embed: Matrix<'a>,
    /// The output projection; Gemma ties it to the embedding.
    pub output: Matrix<'a>,
    pub final_norm: Matrix<'a>,
    pub layers: [LayerWeights<'a>; MAX_LAYERS],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsError {
    /// A tensor the model needs is absent.
    Missing {
        layer: Option<usize>,
        name: &'static str,
    },
    /// A tensor's shape differs from what the configuration implies.
    Shape {
        layer: Option<usize>,
        name: &'static str,
    },
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, layer, name) = match *self {
            WeightsError::Missing { layer, name } => ("missing tensor", layer, name),
            WeightsError::Shape { layer, name } => ("wrong shape for tensor", layer, name),
        };
        match layer {
            Some(l) => write!(f, "{what} blk.{l}.{name}"),
            None => write!(f, "{what} {name}"),
        }
    }
}

/// Builds `blk.<layer>.<name>` without allocating.
fn layer_key<'b>(buf: &'b mut [u8; 64], layer: usize, name: &str) -> &'b str {
    let mut n = 0;
    let mut push = |bytes: &[u8], n: &mut usize| {
        let take = bytes.len().min(buf.len() - *n);
        buf[*n..*n + take].copy_from_slice(&bytes[..take]);
        *n += take;
    };
    push(b"blk.", &mut n);
    let mut digits = [0u8; 20];
    let mut d = digits.len();
    let mut v = layer;
    loop {
        d -= 1;
        digits[d] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    push(&digits[d..], &mut n);
    push(b".", &mut n);
    push(name.as_bytes(), &mut n);
    core::str::from_utf8(&buf[..n]).unwrap_or("")
}

fn matrix_of<'a>(t: &TensorInfo<'a>) -> Option<Matrix<'a>> {
    if t.n_dims > 2 {
        return None;
    }
    Matrix::new(t.ty, t.dims[1] as usize, t.dims[0] as usize, t.data)
}

impl<'a> Weights<'a> {
    /// Finds every tensor a GGUF Gemma model needs and checks its shape.
    pub fn from_gguf(g: &Gguf<'a>, cfg: &ModelConfig) -> Result<Self, WeightsError> {
        let top =
            |name: &'static str, rows: usize, cols: usize| -> Result<Matrix<'a>, WeightsError> {
                let t = g
                    .tensor(name)
                    .ok_or(WeightsError::Missing { layer: None, name })?;
                matrix_of(&t)
                    .filter(|m| m.rows == rows && m.cols == cols)
                    .ok_or(WeightsError::Shape { layer: None, name })
            };
        let embed = top("token_embd.weight", cfg.vocab_size, cfg.d_model)?;
        let final_norm = top("output_norm.weight", 1, cfg.d_model)?;
        let output = match g.tensor("output.weight") {
            Some(_) => top("output.weight", cfg.vocab_size, cfg.d_model)?,
            None => embed,
        };
        let mut layers = [LayerWeights::default(); MAX_LAYERS];
        for (l, lw) in layers.iter_mut().enumerate().take(cfg.n_layers) {
            let get = |name: &'static str, rows: usize, cols: usize, required: bool| {
                let mut buf = [0u8; 64];
                match g.tensor(layer_key(&mut buf, l, name)) {
                    None if required => Err(WeightsError::Missing {
                        layer: Some(l),
                        name,
                    }),
                    None => Ok(Matrix::default()),
                    Some(t) => matrix_of(&t)
                        .filter(|m| m.rows == rows && m.cols == cols)
                        .ok_or(WeightsError::Shape {
                            layer: Some(l),
                            name,
                        }),
                }
            };
            let (d, q, kv, hd, ff) = (
                cfg.d_model,
                cfg.q_dim(),
                cfg.kv_dim(),
                cfg.head_dim,
                cfg.d_ff,
            );
            *lw = LayerWeights {
                attn_norm: get("attn_norm.weight", 1, d, true)?,
                q: get("attn_q.weight", q, d, true)?,
                k: get("attn_k.weight", kv, d, true)?,
                v: get("attn_v.weight", kv, d, true)?,
                o: get("attn_output.weight", d, q, true)?,
                q_norm: get("attn_q_norm.weight", 1, hd, cfg.qk_norm)?,
                k_norm: get("attn_k_norm.weight", 1, hd, cfg.qk_norm)?,
                post_attn_norm: get("post_attention_norm.weight", 1, d, cfg.post_norms)?,
                ffn_norm: get("ffn_norm.weight", 1, d, true)?,
                gate: get("ffn_gate.weight", ff, d, true)?,
                up: get("ffn_up.weight", ff, d, true)?,
                down: get("ffn_down.weight", d, ff, true)?,
                post_ffw_norm: get("post_ffw_norm.weight", 1, d, cfg.post_norms)?,
            };
        }
        Ok(Self {
            embed,
            output,
            final_norm,
            layers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_keys_are_spelled_like_gguf() {
        let mut buf = [0u8; 64];
        assert_eq!(
            layer_key(&mut buf, 0, "attn_q.weight"),
            "blk.0.attn_q.weight"
        );
        assert_eq!(
            layer_key(&mut buf, 61, "ffn_up.weight"),
            "blk.61.ffn_up.weight"
        );
    }

    #[test]
    fn matrix_rejects_wrong_byte_counts() {
        let bytes = [0u8; 16];
        assert!(Matrix::new(WeightType::F32, 2, 2, &bytes).is_some());
        assert!(Matrix::new(WeightType::F32, 2, 3, &bytes).is_none());
        assert!(Matrix::new(WeightType::F32, usize::MAX, 2, &bytes).is_none());
        let m = Matrix::new(WeightType::F32, 2, 2, &bytes).unwrap();
        assert_eq!(m.row(5), &[] as &[u8]);
    }
}
