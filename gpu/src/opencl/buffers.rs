//! Device buffers and kernel launches: the only place the OpenCL backend
//! calls into the library with raw pointers.

use crate::limits;
use opencl3::command_queue::CommandQueue;
use opencl3::context::Context;
use opencl3::kernel::Kernel;
use opencl3::memory::{Buffer, CL_MEM_COPY_HOST_PTR, CL_MEM_READ_ONLY, CL_MEM_READ_WRITE};
use opencl3::types::{cl_mem, CL_BLOCKING};
use std::ptr;

/// A kernel argument.
#[derive(Clone, Copy)]
pub enum Arg {
    Mem(cl_mem),
    I32(i32),
    I64(i64),
    F32(f32),
}

/// A buffer of `len` elements (at least one: OpenCL refuses empty ones).
pub fn alloc<T>(context: &Context, len: usize) -> Result<Buffer<T>, String> {
    // SAFETY: FFI; no host pointer is given, the size is the element count.
    unsafe { Buffer::<T>::create(context, CL_MEM_READ_WRITE, len.max(1), ptr::null_mut()) }
        .map_err(|e| format!("allocating {} bytes: {e}", len * size_of::<T>()))
}

/// A read-only buffer holding a copy of `data`.
pub fn upload<T>(context: &Context, data: &[T]) -> Result<Buffer<T>, String> {
    if data.is_empty() {
        return alloc(context, 1);
    }
    // SAFETY: FFI; CL_MEM_COPY_HOST_PTR copies `data.len()` elements from
    // the pointer during the call, which only reads them.
    unsafe {
        Buffer::<T>::create(
            context,
            CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
            data.len(),
            data.as_ptr() as *mut _,
        )
    }
    .map_err(|e| format!("uploading {} bytes: {e}", size_of_val(data)))
}

/// Copies `out.len()` elements from element `at` of `buf`; waits for them.
pub fn read<T>(
    queue: &CommandQueue,
    buf: &Buffer<T>,
    at: usize,
    out: &mut [T],
) -> Result<(), String> {
    if out.is_empty() {
        return Ok(());
    }
    // SAFETY: FFI; a blocking read into a live slice of exactly its size.
    unsafe { queue.enqueue_read_buffer(buf, CL_BLOCKING, at * size_of::<T>(), out, &[]) }
        .map(drop)
        .map_err(|e| format!("reading from the device: {e}"))
}

/// Copies `data` to element `at` of `buf` (blocking, so `data` may go).
pub fn write<T>(
    queue: &CommandQueue,
    buf: &mut Buffer<T>,
    at: usize,
    data: &[T],
) -> Result<(), String> {
    if data.is_empty() {
        return Ok(());
    }
    // SAFETY: FFI; a blocking write from a live slice of exactly its size.
    unsafe { queue.enqueue_write_buffer(buf, CL_BLOCKING, at * size_of::<T>(), data, &[]) }
        .map(drop)
        .map_err(|e| format!("writing to the device: {e}"))
}

/// Copies `len` elements between two device buffers (queued in order).
pub fn copy<T>(
    queue: &CommandQueue,
    src: &Buffer<T>,
    src_at: usize,
    dst: &mut Buffer<T>,
    dst_at: usize,
    len: usize,
) -> Result<(), String> {
    if len == 0 {
        return Ok(());
    }
    let s = size_of::<T>();
    // SAFETY: FFI; both buffers are live, the host range checks were the
    // caller's (OpenCL also refuses ranges past a buffer's end).
    unsafe { queue.enqueue_copy_buffer(src, dst, src_at * s, dst_at * s, len * s, &[]) }
        .map(drop)
        .map_err(|e| format!("copying on the device: {e}"))
}

/// Launches `kernel` as `groups` blocks of `threads` threads, after
/// checking the block against the target's limits.
pub fn launch(
    queue: &CommandQueue,
    kernel: &Kernel,
    name: &'static str,
    args: &[Arg],
    groups: [usize; 2],
    threads: usize,
) -> Result<(), String> {
    limits::check_block(name, threads).map_err(|e| e.to_string())?;
    if groups[0] == 0 || groups[1] == 0 {
        return Ok(());
    }
    for (i, a) in args.iter().enumerate() {
        let i = i as u32;
        // Each value's type and meaning must match the kernel's parameter
        // `i` (OpenCL only refuses a size mismatch), and buffers must be as
        // large as the launch reads: each call site lists its arguments in
        // the order of the kernel's signature in gpu/kernels/, and the
        // kernels bound their reads by the sizes they are given.
        // SAFETY: FFI; the value (a handle, i32, i64 or f32) is copied by
        // OpenCL during the call; the rest is the call sites' duty above.
        let r = unsafe {
            match a {
                Arg::Mem(m) => kernel.set_arg(i, m),
                Arg::I32(v) => kernel.set_arg(i, v),
                Arg::I64(v) => kernel.set_arg(i, v),
                Arg::F32(v) => kernel.set_arg(i, v),
            }
        };
        r.map_err(|e| format!("{name}: argument {i}: {e}"))?;
    }
    let global = [groups[0] * threads, groups[1]];
    let local = [threads, 1];
    // SAFETY: FFI; every argument is set above, the size arrays hold two
    // dimensions as declared.
    unsafe {
        queue.enqueue_nd_range_kernel(
            kernel.get(),
            2,
            ptr::null(),
            global.as_ptr(),
            local.as_ptr(),
            &[],
        )
    }
    .map(drop)
    .map_err(|e| format!("{name}: launch: {e}"))
}
