//! Disjoint concurrent writes into one output buffer.

use core::marker::PhantomData;

/// An output buffer that several tasks of one [`crate::exec::Executor::run`]
/// write at once, each to its own indices.
pub struct SharedOut<'a> {
    ptr: *mut f32,
    len: usize,
    _buf: PhantomData<&'a mut [f32]>,
}

// SAFETY: SharedOut only hands out access through `unsafe` methods whose
// contract is that concurrent callers use disjoint indices, so sharing the
// pointer between threads cannot create a data race by itself.
unsafe impl Sync for SharedOut<'_> {}
// SAFETY: see the Sync impl; the buffer is borrowed mutably for 'a.
unsafe impl Send for SharedOut<'_> {}

impl<'a> SharedOut<'a> {
    pub fn new(buf: &'a mut [f32]) -> Self {
        Self {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _buf: PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sub-slice `start..start + len`, or an empty slice when out of range.
    ///
    /// # Safety
    /// No other live reference obtained from this `SharedOut` may overlap
    /// the returned range while it is in use.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        match start.checked_add(len) {
            Some(end) if end <= self.len => {
                // SAFETY: the range is inside the buffer borrowed for 'a, and
                // the caller guarantees no overlapping access exists.
                unsafe { core::slice::from_raw_parts_mut(self.ptr.add(start), len) }
            }
            _ => &mut [],
        }
    }

    /// Sets element `i` to `v` (ignored when out of range).
    ///
    /// # Safety
    /// No other task may access element `i` concurrently.
    #[inline]
    pub unsafe fn set(&self, i: usize, v: f32) {
        if i < self.len {
            // SAFETY: in bounds (checked above); exclusive per the contract.
            unsafe { *self.ptr.add(i) = v };
        }
    }

    /// Adds `v` to element `i` (ignored when out of range).
    ///
    /// # Safety
    /// No other task may access element `i` concurrently.
    #[inline]
    pub unsafe fn add(&self, i: usize, v: f32) {
        if i < self.len {
            // SAFETY: in bounds (checked above); exclusive per the contract.
            unsafe { *self.ptr.add(i) += v };
        }
    }
}

/// Runs `f(first_row, rows)` over `buf`, cut into chunks of whole rows of
/// `row_len`, as tasks of `exec`: the per-token element-wise steps of a
/// batch (norms, the gated activation, residual adds) spread over the
/// threads like the matrix products. Runs inline for a few rows, where a
/// dispatch would cost more than it saves.
pub fn for_row_chunks(
    exec: &dyn crate::exec::Executor,
    buf: &mut [f32],
    row_len: usize,
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    /// Rows below which a batch stays on the calling thread.
    const INLINE_ROWS: usize = 8;
    if row_len == 0 {
        return;
    }
    let rows = buf.len() / row_len;
    if rows < INLINE_ROWS || exec.threads() < 2 {
        f(0, &mut buf[..rows * row_len]);
        return;
    }
    let (tasks, per_task) = crate::exec::split(rows, exec.threads(), 2, INLINE_ROWS / 2);
    let shared = SharedOut::new(buf);
    exec.run(tasks, &|t| {
        let first = t * per_task;
        let count = per_task.min(rows - first);
        // SAFETY: tasks cover disjoint row ranges [first, first + count).
        let chunk = unsafe { shared.slice(first * row_len, count * row_len) };
        f(first, chunk);
    });
}
