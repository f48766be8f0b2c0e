//! A model's weights on an OpenCL device, uploaded once from the mapped
//! file as they are stored (never a decoded copy; the kernels decode), and
//! shared by every backend on that device (each conversation of a server
//! has its own KV cache but not its own weights).

use super::buffers::{upload, Arg};
use super::{Gpu, Unavailable};
use crate::kernels::ENCODINGS;
use gemma_core::model::Model;
use gemma_core::weights::{Layout, Matrix, Role, TensorId};
use opencl3::memory::{Buffer, ClMem};
use opencl3::types::cl_mem;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// A weight matrix on the device: which uploaded bytes hold it (views of
/// one stream, and a tied output projection, share them), its encoding
/// (an index into [`ENCODINGS`]), and its shape and layout as the kernels
/// take them.
#[derive(Clone, Copy, Debug)]
pub(super) struct DeviceMatrix {
    bytes: usize,
    pub code: usize,
    pub rows: usize,
    pub cols: usize,
    layout: Layout,
    scale: f32,
}

impl DeviceMatrix {
    /// `m`, whose bytes are upload `bytes`, encoded as `ENCODINGS[code]`.
    pub(super) fn of(m: &Matrix, bytes: usize, code: usize) -> Self {
        DeviceMatrix {
            bytes,
            code,
            rows: m.rows,
            cols: m.cols,
            layout: m.layout(),
            scale: m.scale,
        }
    }

    /// The kernels' `MATRIX_PARAMS`, the bytes being `mem`.
    pub(super) fn args(&self, mem: cl_mem) -> [Arg; 9] {
        let l = self.layout;
        [
            Arg::Mem(mem),
            Arg::I32(self.rows as i32),
            Arg::I32(self.cols as i32),
            Arg::I64(l.row_bytes as i64),
            Arg::I64(l.first as i64),
            Arg::I32(l.head_cols as i32),
            Arg::I32(l.group_rows as i32),
            Arg::I32(l.group_stride as i32),
            Arg::F32(self.scale),
        ]
    }
}

/// The roles the matrix products read, and the norm gains, of a layer.
const PRODUCTS: [Role; 7] = [
    Role::Q,
    Role::K,
    Role::V,
    Role::O,
    Role::Gate,
    Role::Up,
    Role::Down,
];
const NORMS: [Role; 6] = [
    Role::AttnNorm,
    Role::QNorm,
    Role::KNorm,
    Role::PostAttnNorm,
    Role::FfnNorm,
    Role::PostFfwNorm,
];

/// The weights of some layers of a model on one device, with the
/// embedding table when they start at layer 0 (the first stage embeds) and
/// the final norm and output projection when they end at the last.
pub struct DeviceWeights {
    pub(super) gpu: Arc<Gpu>,
    layers: Range<usize>,
    bytes: Vec<Buffer<u8>>,
    matrices: HashMap<TensorId, DeviceMatrix>,
    /// Norm gains, decoded to f32 (vectors of a few KiB): buffer, length.
    gains: HashMap<TensorId, (Buffer<f32>, usize)>,
    uploaded: u64,
}

impl DeviceWeights {
    /// Uploads the weights of `layers` of `model` to `gpu` (see
    /// [`DeviceWeights`]), after checking that they fit.
    pub fn upload(
        gpu: Arc<Gpu>,
        model: &Model,
        layers: Range<usize>,
    ) -> Result<Arc<Self>, Unavailable> {
        super::keeping_signals(|| Self::upload_all(gpu, model, layers))
    }

    fn upload_all(
        gpu: Arc<Gpu>,
        model: &Model,
        layers: Range<usize>,
    ) -> Result<Arc<Self>, Unavailable> {
        if layers.end > model.config.n_layers || layers.start > layers.end {
            return Err(Unavailable::Api(format!(
                "layers {}..{} are not within the model's {}",
                layers.start, layers.end, model.config.n_layers
            )));
        }
        let mut me = Self {
            gpu,
            layers: layers.clone(),
            bytes: Vec::new(),
            matrices: HashMap::new(),
            gains: HashMap::new(),
            uploaded: 0,
        };
        let mut by_host = HashMap::new();
        let w = &model.weights;
        let n = model.config.n_layers;
        // The first stage embeds, the last norms and projects to logits.
        let mut globals = Vec::new();
        if layers.start == 0 {
            globals.push(TensorId::global(Role::Embedding));
        }
        if layers.end == n {
            globals.push(TensorId::global(Role::Output));
        }
        let per_layer = layers
            .clone()
            .flat_map(|l| PRODUCTS.map(|r| TensorId::layer(r, l)));
        let ids: Vec<TensorId> = globals.into_iter().chain(per_layer).collect();
        me.check_fits(ids.iter().map(|&id| (id, w.get(id))))?;
        for id in ids {
            me.matrix_upload(&mut by_host, id, w.get(id))?;
        }
        let mut norms: Vec<TensorId> = layers
            .flat_map(|l| NORMS.map(|r| TensorId::layer(r, l)))
            .collect();
        if me.layers.end == n {
            norms.push(TensorId::global(Role::FinalNorm));
        }
        for id in norms {
            me.gain_upload(id, w.get(id))?;
        }
        Ok(Arc::new(me))
    }

    /// The layers whose weights are here.
    pub fn layers(&self) -> Range<usize> {
        self.layers.clone()
    }

    /// Bytes uploaded to the device.
    pub fn device_bytes(&self) -> u64 {
        self.uploaded
    }

    /// The encodings (indices into [`ENCODINGS`]) the matrices use.
    pub(super) fn codes(&self) -> impl Iterator<Item = usize> + '_ {
        let mut used = [false; ENCODINGS.len()];
        self.matrices.values().for_each(|m| used[m.code] = true);
        (0..ENCODINGS.len()).filter(move |&c| used[c])
    }

    pub(super) fn matrix(&self, id: TensorId) -> Option<DeviceMatrix> {
        self.matrices.get(&id).copied()
    }

    /// A norm gain of `len` values.
    pub(super) fn gain(&self, id: TensorId, len: usize) -> Option<Arg> {
        match self.gains.get(&id) {
            Some((g, l)) if *l == len => Some(Arg::Mem(g.get())),
            _ => None,
        }
    }

    /// A matrix as the kernels' `MATRIX_PARAMS` take it.
    pub(super) fn args(&self, m: &DeviceMatrix) -> [Arg; 9] {
        m.args(self.bytes[m.bytes].get())
    }

    /// Refuses, before anything is uploaded, a tensor larger than the
    /// device's largest allocation or weights beyond its memory, naming
    /// what does not fit (drivers would otherwise fail with a bare
    /// CL_INVALID_BUFFER_SIZE, or later, on first use).
    fn check_fits<'m>(
        &self,
        tensors: impl Iterator<Item = (TensorId, &'m Matrix<'m>)>,
    ) -> Result<(), Unavailable> {
        let info = &self.gpu.info;
        let mut seen = std::collections::HashSet::new();
        let mut total = 0u64;
        for (id, m) in tensors {
            let bytes = m.data.len() as u64;
            if bytes > info.max_alloc {
                return Err(Unavailable::Api(format!(
                    "tensor {} holds {} MiB, more than the {} MiB one allocation on {} may hold",
                    id.gguf_name(),
                    bytes >> 20,
                    info.max_alloc >> 20,
                    info.name
                )));
            }
            if seen.insert((m.data.as_ptr() as usize, m.data.len())) {
                total += bytes;
            }
        }
        if total > info.global_mem {
            return Err(Unavailable::Api(format!(
                "the weights need {} MiB, {} has {} MiB",
                total >> 20,
                info.name,
                info.global_mem >> 20
            )));
        }
        Ok(())
    }

    fn matrix_upload(
        &mut self,
        by_host: &mut HashMap<(usize, usize), usize>,
        id: TensorId,
        m: &Matrix,
    ) -> Result<(), Unavailable> {
        if m.is_empty() {
            return Ok(());
        }
        let code = ENCODINGS
            .iter()
            .position(|e| *e == m.enc)
            .ok_or_else(|| Unavailable::Api(format!("no kernel for encoding {:?}", m.enc)))?;
        let fits = |v: usize| i32::try_from(v).is_ok();
        if !fits(m.rows) || !fits(m.cols) {
            return Err(Unavailable::Api(format!(
                "tensor {} is too large for the kernels ({} x {})",
                id.gguf_name(),
                m.rows,
                m.cols
            )));
        }
        let key = (m.data.as_ptr() as usize, m.data.len());
        let bytes = match by_host.get(&key) {
            Some(&i) => i,
            None => {
                let buf = upload(&self.gpu.context, m.data).map_err(Unavailable::Api)?;
                self.uploaded += m.data.len() as u64;
                self.bytes.push(buf);
                by_host.insert(key, self.bytes.len() - 1);
                self.bytes.len() - 1
            }
        };
        let dm = DeviceMatrix::of(m, bytes, code);
        self.matrices.insert(id, dm);
        Ok(())
    }

    fn gain_upload(&mut self, id: TensorId, m: &Matrix) -> Result<(), Unavailable> {
        if m.is_empty() {
            return Ok(());
        }
        let mut g = vec![0f32; m.rows * m.cols];
        for (r, row) in g.chunks_exact_mut(m.cols).enumerate() {
            if !m.decode_span(r, 0, row) {
                return Err(Unavailable::Api(format!(
                    "norm gain {} could not be decoded",
                    id.gguf_name()
                )));
            }
        }
        let buf = upload(&self.gpu.context, &g).map_err(Unavailable::Api)?;
        self.uploaded += 4 * g.len() as u64;
        self.gains.insert(id, (buf, g.len()));
        Ok(())
    }
}
