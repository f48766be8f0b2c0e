//! Borrowed, format-agnostic weight views.
//!
//! The forward pass sees only [`Matrix`] views (a weight type, a shape and
//! the encoded bytes); which file the bytes came from is decided here, once,
//! when the views are built.

pub mod roles;

use crate::codec::{self, Codec};
use crate::quant::{self, WeightType};
use core::fmt;
pub use roles::{Dims, Role, TensorId, ROLES};

/// The most layers any supported model has (Gemma 3 27B has 62).
pub const MAX_LAYERS: usize = 64;

/// How a [`Matrix`]'s bytes encode its elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// GGUF/ggml blocks; every row starts on a block, so rows are byte
    /// ranges.
    Ggml(WeightType),
    /// One gemma.cpp codec stream for the whole tensor: element `(r, c)` is
    /// stream element `r * cols + c` (NUQ and I8 groups straddle rows).
    Gemma(Codec),
}

/// A row-major matrix of encoded rows: `rows` rows of `cols` elements.
/// Vectors (norm gains) are matrices with one row.
///
/// A `Gemma` matrix may be a view of some rows of a larger stream
/// (`first`, the stream element of `(0, 0)`), and may be *head-major*
/// (`head_cols > 0`): logical `(r, c)` is stored at
/// `((c / head_cols) * rows + r) * head_cols + c % head_cols`, which is how
/// gemma.cpp's `att_ein` `[H M, D]` stores the output projection `[M, H D]`.
/// Decoded values are multiplied by `scale`.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    pub enc: Encoding,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    pub scale: f32,
    row_bytes: usize,
    first: usize,
    head_cols: usize,
    /// Row groups (gemma.cpp's K and V rows interleaved per KV head):
    /// logical row `r` is stored row `(r / group_rows) * group_stride +
    /// r % group_rows`; `group_rows == 0` means rows are contiguous.
    group_rows: usize,
    group_stride: usize,
}

/// Where a [`Matrix`]'s elements lie in its bytes: what a device that
/// decodes the bytes itself (the GPU kernels) needs besides the encoding
/// and shape. GGML rows are `row_bytes` apart; a gemma.cpp view follows
/// [`Matrix`]'s stream rules (`first`, head-major `head_cols`, K/V row
/// groups), each 0 when unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub row_bytes: usize,
    pub first: usize,
    pub head_cols: usize,
    pub group_rows: usize,
    pub group_stride: usize,
}

impl Default for Matrix<'_> {
    fn default() -> Self {
        Self::empty()
    }
}

impl Matrix<'_> {
    /// A matrix of no rows: an absent optional tensor.
    pub const fn empty() -> Self {
        Matrix {
            enc: Encoding::Ggml(WeightType::F32),
            rows: 0,
            cols: 0,
            data: &[],
            scale: 1.0,
            row_bytes: 0,
            first: 0,
            head_cols: 0,
            group_rows: 0,
            group_stride: 0,
        }
    }
}

impl<'a> Matrix<'a> {
    /// Wraps ggml-encoded bytes, checking that they hold exactly `rows x cols`.
    pub fn new(ty: WeightType, rows: usize, cols: usize, data: &'a [u8]) -> Option<Self> {
        let row_bytes = ty.row_bytes(cols)?;
        if row_bytes.checked_mul(rows)? != data.len() {
            return None;
        }
        Some(Self {
            enc: Encoding::Ggml(ty),
            rows,
            cols,
            data,
            scale: 1.0,
            row_bytes,
            first: 0,
            head_cols: 0,
            group_rows: 0,
            group_stride: 0,
        })
    }

    /// Wraps a gemma.cpp codec stream of (at least) `rows x cols` elements
    /// whose decoded values are multiplied by `scale`.
    pub fn gemma(
        codec: Codec,
        rows: usize,
        cols: usize,
        scale: f32,
        data: &'a [u8],
    ) -> Option<Self> {
        let n = rows.checked_mul(cols)?;
        if codec.bytes_for(n)? > data.len() || !scale.is_finite() {
            return None;
        }
        Some(Self {
            enc: Encoding::Gemma(codec),
            rows,
            cols,
            data,
            scale,
            row_bytes: 0,
            first: 0,
            head_cols: 0,
            group_rows: 0,
            group_stride: 0,
        })
    }

    /// Rows `start..start + count` of a plain matrix (the same storage).
    pub fn rows_view(&self, start: usize, count: usize) -> Option<Self> {
        if start.checked_add(count)? > self.rows || self.head_cols != 0 || self.group_rows != 0 {
            return None;
        }
        let mut m = *self;
        m.rows = count;
        match self.enc {
            Encoding::Ggml(_) => {
                let b0 = start * self.row_bytes;
                m.data = self.data.get(b0..b0 + count * self.row_bytes)?;
            }
            Encoding::Gemma(_) => m.first = self.first + start * self.cols,
        }
        Some(m)
    }

    /// Every `stride`-th run of `rows` rows, starting at row `start`, of a
    /// gemma.cpp stream, as one matrix of `groups * rows` rows: how K (or V)
    /// of all KV heads is read from `qkv_ein`, where each head's K rows are
    /// followed by its V rows.
    pub fn row_groups(
        &self,
        start: usize,
        rows: usize,
        stride: usize,
        groups: usize,
    ) -> Option<Self> {
        if !matches!(self.enc, Encoding::Gemma(_))
            || self.head_cols != 0
            || self.group_rows != 0
            || rows == 0
            || rows > stride
            || start
                .checked_add(stride.checked_mul(groups.checked_sub(1)?)?)?
                .checked_add(rows)?
                > self.rows
        {
            return None;
        }
        let mut m = *self;
        m.rows = rows * groups;
        m.first = self.first + start * self.cols;
        m.group_rows = rows;
        m.group_stride = stride;
        Some(m)
    }

    /// Reinterprets a gemma.cpp `[heads * rows_per_head, head_cols]` stream as
    /// the `[rows_per_head, heads * head_cols]` matrix it stores head-major.
    pub fn head_major(&self, heads: usize) -> Option<Self> {
        if !matches!(self.enc, Encoding::Gemma(_)) || heads == 0 || !self.rows.is_multiple_of(heads)
        {
            return None;
        }
        let mut m = *self;
        m.rows = self.rows / heads;
        m.head_cols = self.cols;
        m.cols = self.cols * heads;
        Some(m)
    }

    /// Encoded bytes of row `r` of a ggml matrix; empty when out of range
    /// or for gemma.cpp streams (whose rows need not be byte ranges).
    #[inline]
    pub fn row(&self, r: usize) -> &'a [u8] {
        if self.row_bytes == 0 {
            return &[];
        }
        let start = r.wrapping_mul(self.row_bytes);
        self.data
            .get(start..start.wrapping_add(self.row_bytes))
            .unwrap_or(&[])
    }

    /// Where the elements lie in [`Self::data`].
    pub fn layout(&self) -> Layout {
        Layout {
            row_bytes: self.row_bytes,
            first: self.first,
            head_cols: self.head_cols,
            group_rows: self.group_rows,
            group_stride: self.group_stride,
        }
    }

    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Decodes elements `(r, c0..c0 + out.len())`, scaled. For ggml
    /// weights `c0` and the span's end must fall on blocks (or the row's
    /// end). Returns false (and zeroes `out`) when the span is invalid.
    pub fn decode_span(&self, r: usize, c0: usize, out: &mut [f32]) -> bool {
        let ok = r < self.rows && c0 + out.len() <= self.cols && self.decode_inner(r, c0, out);
        if !ok {
            out.fill(0.0);
        }
        ok
    }

    fn decode_inner(&self, r: usize, c0: usize, out: &mut [f32]) -> bool {
        match self.enc {
            Encoding::Ggml(ty) => {
                let (block, bb) = (ty.block_elems(), ty.block_bytes());
                let end = c0 + out.len();
                if !c0.is_multiple_of(block) || (!end.is_multiple_of(block) && end != self.cols) {
                    return false;
                }
                let (b0, b1) = (c0 / block * bb, end.div_ceil(block) * bb);
                match self.row(r).get(b0..b1) {
                    Some(src) => quant::dequantize(ty, src, out).is_ok(),
                    None => false,
                }
            }
            Encoding::Gemma(codec) => {
                let ok = if self.head_cols == 0 {
                    let stored = match r.checked_div(self.group_rows) {
                        None => r,
                        Some(g) => g * self.group_stride + r % self.group_rows,
                    };
                    let off = self.first + stored * self.cols + c0;
                    codec::decode(codec, self.data, off, out).is_ok()
                } else {
                    let hc = self.head_cols;
                    let mut done = 0;
                    while done < out.len() {
                        let c = c0 + done;
                        let (h, d) = (c / hc, c % hc);
                        let n = (hc - d).min(out.len() - done);
                        let off = self.first + (h * self.rows + r) * hc + d;
                        if codec::decode(codec, self.data, off, &mut out[done..done + n]).is_err() {
                            return false;
                        }
                        done += n;
                    }
                    true
                };
                if ok && self.scale != 1.0 {
                    out.iter_mut().for_each(|v| *v *= self.scale);
                }
                ok
            }
        }
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

#[derive(Clone, Debug)]
pub struct Weights<'a> {
    pub embed: Matrix<'a>,
    /// The output projection; Gemma ties it to the embedding.
    pub output: Matrix<'a>,
    pub final_norm: Matrix<'a>,
    /// One per layer of the model.
    pub layers: heapless::Vec<LayerWeights<'a>, MAX_LAYERS>,
}

impl<'a> LayerWeights<'a> {
    /// The matrix playing `role` in this block (an empty matrix for a
    /// model-level role).
    pub fn get(&self, role: Role) -> &Matrix<'a> {
        match role {
            Role::AttnNorm => &self.attn_norm,
            Role::Q => &self.q,
            Role::K => &self.k,
            Role::V => &self.v,
            Role::O => &self.o,
            Role::QNorm => &self.q_norm,
            Role::KNorm => &self.k_norm,
            Role::PostAttnNorm => &self.post_attn_norm,
            Role::FfnNorm => &self.ffn_norm,
            Role::Gate => &self.gate,
            Role::Up => &self.up,
            Role::Down => &self.down,
            Role::PostFfwNorm => &self.post_ffw_norm,
            Role::Embedding | Role::FinalNorm | Role::Output => &EMPTY,
        }
    }

    /// The slot for `role` (`None` for a model-level role).
    pub fn slot(&mut self, role: Role) -> Option<&mut Matrix<'a>> {
        Some(match role {
            Role::AttnNorm => &mut self.attn_norm,
            Role::Q => &mut self.q,
            Role::K => &mut self.k,
            Role::V => &mut self.v,
            Role::O => &mut self.o,
            Role::QNorm => &mut self.q_norm,
            Role::KNorm => &mut self.k_norm,
            Role::PostAttnNorm => &mut self.post_attn_norm,
            Role::FfnNorm => &mut self.ffn_norm,
            Role::Gate => &mut self.gate,
            Role::Up => &mut self.up,
            Role::Down => &mut self.down,
            Role::PostFfwNorm => &mut self.post_ffw_norm,
            Role::Embedding | Role::FinalNorm | Role::Output => return None,
        })
    }
}

static EMPTY: Matrix<'static> = Matrix::empty();

impl<'a> Weights<'a> {
    /// The matrix `id` names (an empty matrix for a layer the model lacks).
    pub fn get(&self, id: TensorId) -> &Matrix<'a> {
        match id.role {
            Role::Embedding => &self.embed,
            Role::FinalNorm => &self.final_norm,
            Role::Output => &self.output,
            role => self.layers.get(id.layer).map_or(&EMPTY, |l| l.get(role)),
        }
    }
}

/// Which format's names an error message uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    Gguf,
    Sbs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsError {
    /// A tensor the model needs is absent.
    Missing(TensorId, Naming),
    /// A tensor's shape (or encoding) differs from what the configuration
    /// implies.
    Shape(TensorId, Naming),
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, id, naming) = match *self {
            WeightsError::Missing(id, n) => ("missing tensor", id, n),
            WeightsError::Shape(id, n) => ("wrong shape for tensor", id, n),
        };
        match naming {
            Naming::Gguf => write!(f, "{what} {}", id.gguf_name()),
            Naming::Sbs => write!(f, "{what} {}", id.sbs_name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `qkv_ein` with 2 heads and 2 KV heads of dim 2 (3 columns): Q rows,
    /// then K0, V0, K1, V1. The K and V views must see K0 K1 and V0 V1.
    #[test]
    fn kv_rows_of_several_heads_are_read_per_head() {
        let (h, k, hd, cols) = (2usize, 2usize, 2usize, 3usize);
        let rows = (h + 2 * k) * hd;
        // Element (r, c) holds 10 r + c.
        let mut bytes = [0u8; 12 * 3 * 4];
        for r in 0..rows {
            for c in 0..cols {
                let v = (10 * r + c) as f32;
                bytes[(r * cols + c) * 4..][..4].copy_from_slice(&v.to_le_bytes());
            }
        }
        let qkv = Matrix::gemma(Codec::F32, rows, cols, 1.0, &bytes).unwrap();
        let kv = |start: usize| qkv.row_groups(start, hd, 2 * hd, k).unwrap();
        let (km, vm) = (kv(h * hd), kv((h + 1) * hd));
        assert_eq!((km.rows, vm.rows), (k * hd, k * hd));
        // Stored rows of K: 4, 5 (head 0), 8, 9 (head 1); of V: 6, 7, 10, 11.
        for (m, stored) in [(km, [4, 5, 8, 9]), (vm, [6, 7, 10, 11])] {
            for (r, &s) in stored.iter().enumerate() {
                let mut out = [0f32; 2];
                assert!(m.decode_span(r, 1, &mut out));
                assert_eq!(out, [(10 * s + 1) as f32, (10 * s + 2) as f32], "row {r}");
            }
            let mut out = [0f32; 1];
            assert!(!m.decode_span(4, 0, &mut out), "past the last row");
        }
        // Groups that would run past the stream are refused.
        assert!(qkv.row_groups(h * hd, hd, 2 * hd, 3).is_none());
        assert!(qkv.row_groups(0, 3, 2, 2).is_none(), "rows > stride");
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
