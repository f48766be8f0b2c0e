//! Packed micro-panels for the batch matrix product: sixteen weight rows
//! stored column by column, and their portable kernels (the reference the
//! SIMD versions in `simd_x86.rs` are tested against; `ops.rs` picks
//! between them).

/// Rows in a packed micro-panel ([`super::ops::panel_dot`]).
pub const PANEL_ROWS: usize = 16;

/// The portable reference for [`super::ops::pack_panel`].
pub fn pack_panel_portable(rows: &[f32], stride: usize, k_len: usize, dst: &mut [f32]) {
    for (j, row) in rows.chunks(stride).take(PANEL_ROWS).enumerate() {
        for (d, &v) in dst
            .iter_mut()
            .skip(j)
            .step_by(PANEL_ROWS)
            .zip(&row[..k_len.min(row.len())])
        {
            *d = v;
        }
    }
}

/// The portable reference for [`super::ops::panel_dot`].
pub fn panel_dot_portable<const T: usize>(
    x: [&[f32]; T],
    packed: &[f32],
) -> [[f32; PANEL_ROWS]; T] {
    let mut acc = [[0f32; PANEL_ROWS]; T];
    for (k, w) in packed.chunks_exact(PANEL_ROWS).enumerate() {
        if x.iter().any(|r| k >= r.len()) {
            break;
        }
        for (a, xt) in acc.iter_mut().zip(&x) {
            let v = xt[k];
            for (a, &w) in a.iter_mut().zip(w) {
                *a += v * w;
            }
        }
    }
    acc
}
