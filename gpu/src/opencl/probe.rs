//! One kernel at a time, host memory in and out: what the kernel tests
//! compare with the CPU kernels on shapes no model has (ragged row groups
//! and tiles, odd block counts, views into gemma.cpp streams).

use super::buffers::{self, alloc, launch, upload, Arg};
use super::weights::DeviceMatrix;
use super::{Gpu, Unavailable};
use crate::kernels::{self, ENCODINGS};
use gemma_core::weights::Matrix;
use opencl3::kernel::Kernel;
use opencl3::memory::ClMem;

fn api(e: impl std::fmt::Display) -> Unavailable {
    Unavailable::Api(e.to_string())
}

/// `y[t] = W x[t]` for `n` rows of `x` on the device: `matvec` when `n`
/// is 1, `matmul_tiled` otherwise; `y` is `n x rows`.
pub fn product(gpu: &Gpu, m: &Matrix, x: &[f32], n: usize) -> Result<Vec<f32>, Unavailable> {
    let code = ENCODINGS
        .iter()
        .position(|e| *e == m.enc)
        .ok_or_else(|| api("no kernel for this encoding"))?;
    if x.len() != n * m.cols {
        return Err(api("x must hold n rows of the matrix's width"));
    }
    let program = gpu.matmul(ENCODINGS[code])?;
    let name = if n == 1 { "matvec" } else { "matmul_tiled" };
    let kernel = Kernel::create(&program, name).map_err(api)?;
    let queue = gpu.queue()?;
    let w = upload(&gpu.context, m.data).map_err(api)?;
    let xb = upload(&gpu.context, x).map_err(api)?;
    let y = alloc::<f32>(&gpu.context, n * m.rows).map_err(api)?;
    let mut args = DeviceMatrix::of(m, 0, code).args(w.get()).to_vec();
    args.extend([Arg::Mem(xb.get()), Arg::Mem(y.get())]);
    let tiles = if n == 1 {
        1
    } else {
        args.push(Arg::I32(n as i32));
        n.div_ceil(kernels::TILE)
    };
    let blocks = [m.rows.div_ceil(kernels::MM_ROWS), tiles];
    launch(&queue, &kernel, name, &args, blocks, kernels::MM_ROWS * 32).map_err(api)?;
    let mut out = vec![0f32; n * m.rows];
    buffers::read(&queue, &y, 0, &mut out).map_err(api)?;
    Ok(out)
}
