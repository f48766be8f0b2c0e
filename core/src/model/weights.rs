//! Borrowed, format-agnostic weight views.
//!
//! The forward pass sees only [`Matrix`] views (a weight type, a shape and
//! the encoded bytes); which file the bytes came from is decided here, once,
//! when the views are built.

use super::config::{ModelConfig, MAX_LAYERS};
use crate::codec::{self, Codec};
use crate::format::gguf::{Gguf, TensorInfo};
use crate::format::sbs::SbsFile;
use crate::quant::{self, WeightType};
use core::fmt;

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

impl Default for Matrix<'_> {
    fn default() -> Self {
        Self {
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

/// The decimal digits of `v`, written into the end of `buf`.
fn decimal(v: usize, buf: &mut [u8; 20]) -> &[u8] {
    let (mut d, mut v) = (buf.len(), v);
    loop {
        d -= 1;
        buf[d] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[d..];
        }
    }
}

/// Concatenates `parts` into `buf` (truncating at its end), without allocating.
fn concat<'b>(buf: &'b mut [u8; 64], parts: &[&[u8]]) -> &'b str {
    let mut n = 0;
    for part in parts {
        let take = part.len().min(buf.len() - n);
        buf[n..n + take].copy_from_slice(&part[..take]);
        n += take;
    }
    core::str::from_utf8(&buf[..n]).unwrap_or("")
}

/// Builds `blk.<layer>.<name>` (GGUF's per-layer tensor names).
fn layer_key<'b>(buf: &'b mut [u8; 64], layer: usize, name: &str) -> &'b str {
    let mut digits = [0u8; 20];
    concat(
        buf,
        &[b"blk.", decimal(layer, &mut digits), b".", name.as_bytes()],
    )
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

/// Builds `<name>_<layer>` (gemma.cpp's per-layer tensor names).
fn sbs_key<'b>(buf: &'b mut [u8; 64], name: &str, layer: usize) -> &'b str {
    let mut digits = [0u8; 20];
    concat(buf, &[name.as_bytes(), b"_", decimal(layer, &mut digits)])
}

impl<'a> Weights<'a> {
    /// Views into a gemma.cpp `.sbs` file's tensors (layouts in
    /// [`crate::format::sbs`]): `qkv_ein` is cut into Q, K and V row
    /// ranges, `gating_ein` into gate and up, and `att_ein` is read
    /// head-major as the `[M, H D]` output projection. After the Q rows,
    /// each KV head's K rows are followed by its V rows.
    pub fn from_sbs(f: &SbsFile<'a>, cfg: &ModelConfig) -> Result<Self, WeightsError> {
        let get = |name: &'static str,
                   layer: Option<usize>,
                   rows: usize,
                   cols: usize,
                   required: bool|
         -> Result<Matrix<'a>, WeightsError> {
            let mut buf = [0u8; 64];
            let key = match layer {
                Some(l) => sbs_key(&mut buf, name, l),
                None => name,
            };
            match f.tensor(key) {
                None if required => Err(WeightsError::Missing { layer, name }),
                None => Ok(Matrix::default()),
                Some(t) if t.rows == rows && t.cols == cols => {
                    Matrix::gemma(t.codec, rows, cols, t.scale, t.bytes)
                        .ok_or(WeightsError::Shape { layer, name })
                }
                Some(_) => Err(WeightsError::Shape { layer, name }),
            }
        };
        let shape = |layer, name| WeightsError::Shape { layer, name };
        let (d, hd, ff, h, k) = (
            cfg.d_model,
            cfg.head_dim,
            cfg.d_ff,
            cfg.n_heads,
            cfg.n_kv_heads,
        );
        let embed = get("c_embedding", None, cfg.vocab_size, d, true)?;
        let final_norm = get("c_final_norm", None, 1, d, true)?;
        let mut layers = [LayerWeights::default(); MAX_LAYERS];
        for (l, lw) in layers.iter_mut().enumerate().take(cfg.n_layers) {
            let at = Some(l);
            let qkv = get("qkv_ein", at, (h + 2 * k) * hd, d, true)?;
            let gating = get("gating_ein", at, 2 * ff, d, true)?;
            let att = get("att_ein", at, h * d, hd, true)?;
            let view = |m: Matrix<'a>, start, count, name| {
                m.rows_view(start, count).ok_or(shape(at, name))
            };
            *lw = LayerWeights {
                attn_norm: get("pre_att_ns", at, 1, d, true)?,
                q: view(qkv, 0, h * hd, "qkv_ein")?,
                k: qkv
                    .row_groups(h * hd, hd, 2 * hd, k)
                    .ok_or(shape(at, "qkv_ein"))?,
                v: qkv
                    .row_groups((h + 1) * hd, hd, 2 * hd, k)
                    .ok_or(shape(at, "qkv_ein"))?,
                o: att.head_major(h).ok_or(shape(at, "att_ein"))?,
                q_norm: get("query_norm", at, 1, hd, cfg.qk_norm)?,
                k_norm: get("key_norm", at, 1, hd, cfg.qk_norm)?,
                post_attn_norm: get("post_att_ns", at, 1, d, cfg.post_norms)?,
                ffn_norm: get("pre_ff_ns", at, 1, d, true)?,
                gate: view(gating, 0, ff, "gating_ein")?,
                up: view(gating, ff, ff, "gating_ein")?,
                down: get("linear_w", at, d, ff, true)?,
                post_ffw_norm: get("post_ff_ns", at, 1, d, cfg.post_norms)?,
            };
        }
        Ok(Self {
            embed,
            output: embed,
            final_norm,
            layers,
        })
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
        assert_eq!(sbs_key(&mut buf, "qkv_ein", 17), "qkv_ein_17");
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
