//! NUQ, gemma.cpp's non-uniform quantization: each group of 256 values is
//! clustered into at most 16 centers (an exact 1-D k-means, minimizing the
//! squared error), stored as SFP bytes, plus one 4-bit center index per
//! value: 4.5 bits per value.
//!
//! Stream layout, one stream per tensor: group `g` starts at byte `144·g`
//! with its 16-byte table (ascending centers; unused entries come first and
//! are 0x00), then `ceil(g_num/2)` bytes of indices, value `2k` in the low
//! nibble of byte `k` and value `2k+1` in the high one. Only the last group
//! may be short. (gemma.cpp's header comment describes all tables first;
//! its code, and its files, interleave them as here.) For an odd `g_num` the
//! last high nibble is the index the encoder gave the first padding value.
//!
//! The encoder reproduces gemma.cpp's bytes, which takes following its
//! arithmetic to the bit: the sort keys, the f64 prefix sums rounded to f32,
//! and the f32 cluster cost with two fused multiply-adds. Without the fusing,
//! 2 of the 5 groups of gemma.cpp's `nuq_in.f32` vectors cluster differently. One consequence of the f32
//! round-off kept on purpose: a run of equal values can be split over two
//! clusters (a constant group uses 2).
//!
//! gemma.cpp's own decoder is wrong on 512-bit AVX-512 targets (values
//! 32..63 of every 64 repeat values 0..31); this one decodes what the
//! encoder meant, which is also gemma.cpp's result everywhere else.

use super::sfp;

/// Values per group.
pub const GROUP: usize = 256;
/// Clusters per group, hence 4-bit indices.
pub const CLUSTERS: usize = 16;
/// Bytes of a group's table: one SFP byte per cluster.
pub const TABLE_BYTES: usize = CLUSTERS;
/// Bytes of a full group: table and 128 bytes of indices.
pub const GROUP_BYTES: usize = TABLE_BYTES + GROUP / 2;
/// Scratch floats for encoding: the cost of every cluster `[f, l]`, as a
/// 256×256 matrix with row `f` contiguous in `l` (+Inf where `f > l`).
pub const SCRATCH_LEN: usize = GROUP * GROUP;

/// Positions `l` the dynamic program handles at once: 16 independent lanes
/// (two AVX or four SSE/NEON vectors), each doing exactly the scalar scan.
const DP_LANES: usize = 16;

/// Encode a whole stream; the caller checked the lengths, the range of every
/// value (|x| <= 1.875, no NaN) and that `scratch` holds `SCRATCH_LEN`.
pub(crate) fn encode_unchecked(src: &[f32], dst: &mut [u8], scratch: &mut [f32]) {
    let Some(cost) = scratch.get_mut(..SCRATCH_LEN) else {
        return;
    };
    // Clusters that would end before they start cost +Inf, so the dynamic
    // program never picks them and needs no masks. Groups only overwrite
    // the upper triangle.
    for (f, row) in cost.chunks_exact_mut(GROUP).enumerate() {
        row[..f].fill(f32::INFINITY);
    }
    for (x, out) in src.chunks(GROUP).zip(dst.chunks_mut(GROUP_BYTES)) {
        encode_group(x, out, cost);
    }
}

/// Encode 1..=256 values into `out` (16 + ceil(len/2) bytes). `cost` is the
/// scratch matrix with its lower triangle already +Inf.
fn encode_group(x: &[f32], out: &mut [u8], cost: &mut [f32]) {
    let n = x.len();
    // Sort keys: each value with its position in the low 8 mantissa bits,
    // so that sorting carries the positions along and all keys are
    // distinct. A short group is padded with its maximum (so no cluster is
    // spent on a sentinel); gemma.cpp's running max starts at -1e38.
    let mut keys = [0.0f32; GROUP];
    let mut max = -1e38f32;
    for &v in x {
        if max < v {
            max = v;
        }
    }
    for (i, k) in keys.iter_mut().enumerate() {
        let v = x.get(i).copied().unwrap_or(max);
        *k = f32::from_bits((v.to_bits() & !0xFF) | i as u32);
    }
    keys.sort_unstable_by(f32::total_cmp);

    // Prefix sums of the sorted values (payload cleared) and their squares,
    // accumulated in f64; the costs use them rounded to f32.
    let mut sum64 = [0.0f64; GROUP + 1];
    let mut sum32 = [0.0f32; GROUP + 1];
    let mut sq32 = [0.0f32; GROUP + 1];
    let (mut s, mut q) = (0.0f64, 0.0f64);
    for (j, &k) in keys.iter().enumerate() {
        let v = f32::from_bits(k.to_bits() & !0xFF) as f64;
        s += v;
        q += v * v;
        sum64[j + 1] = s;
        sum32[j + 1] = s as f32;
        sq32[j + 1] = q as f32;
    }

    // cost[f][l] = squared error of one cluster holding sorted values f..=l,
    // computed as sum2 + mu·(mu·len - 2·sum) in f32 with both steps fused
    // (gemma.cpp's arithmetic; `1/len` is an f32 division), clamped at zero.
    for (f, row) in cost.chunks_exact_mut(GROUP).enumerate() {
        for (l, c) in row.iter_mut().enumerate().skip(f) {
            let len = (l - f + 1) as f32;
            let sum = sum32[l + 1] - sum32[f];
            let sum2 = sq32[l + 1] - sq32[f];
            let mu = sum * (1.0 / len);
            let t = libm::fmaf(mu, len, -(sum + sum));
            let v = libm::fmaf(mu, t, sum2);
            *c = if v < 0.0 { 0.0 } else { v };
        }
    }

    // Row k of the dynamic program: best[l] = least cost of clustering
    // sorted values 0..=l into k+1 clusters, start[k][l] = where the last of
    // them starts. Row k starts as row k-1 (a cluster may stay unused) and
    // takes a start f in 1..=l only when strictly cheaper, scanning f
    // upwards: the first of equal costs wins, as in gemma.cpp.
    let mut start = [[0u8; GROUP]; CLUSTERS];
    let mut prev = [0.0f32; GROUP];
    prev.copy_from_slice(&cost[..GROUP]);
    let mut cur = [0.0f32; GROUP];
    for k in 1..CLUSTERS {
        let (done, rows) = start.split_at_mut(k);
        let (Some(prev_start), Some(row)) = (done.last(), rows.first_mut()) else {
            return;
        };
        for l0 in (0..GROUP).step_by(DP_LANES) {
            let mut best = [0.0f32; DP_LANES];
            let mut arg = [0u32; DP_LANES];
            best.copy_from_slice(&prev[l0..l0 + DP_LANES]);
            for (a, &p) in arg.iter_mut().zip(&prev_start[l0..l0 + DP_LANES]) {
                *a = p as u32;
            }
            // Lanes with f > l see +Inf and keep their value.
            for f in 1..l0 + DP_LANES {
                let p = prev[f - 1];
                let Ok(c) = <&[f32; DP_LANES]>::try_from(&cost[f * GROUP + l0..][..DP_LANES])
                else {
                    return;
                };
                for i in 0..DP_LANES {
                    let total = p + c[i];
                    let less = total < best[i];
                    best[i] = if less { total } else { best[i] };
                    arg[i] = if less { f as u32 } else { arg[i] };
                }
            }
            cur[l0..l0 + DP_LANES].copy_from_slice(&best);
            for (r, &a) in row[l0..l0 + DP_LANES].iter_mut().zip(&arg) {
                *r = a as u8;
            }
        }
        core::mem::swap(&mut prev, &mut cur);
    }

    // Backtrack from the last sorted value: cluster k is [start, l]; its
    // center is the f64 mean, rounded to f32. Clusters below the one that
    // starts at 0 stay unused, with center 0. Indices follow the partition,
    // not the nearest rounded center.
    let mut centers = [0.0f32; CLUSTERS];
    let mut index = [0u8; GROUP];
    let mut l = GROUP - 1;
    for k in (0..CLUSTERS).rev() {
        let s = start[k][l] as usize;
        centers[k] = ((sum64[l + 1] - sum64[s]) / (l - s + 1) as f64) as f32;
        for key in &keys[s..=l] {
            index[(key.to_bits() & 0xFF) as usize] = k as u8;
        }
        if s == 0 {
            break;
        }
        l = s - 1;
    }

    let (table, idx) = out.split_at_mut(TABLE_BYTES);
    for (t, &c) in table.iter_mut().zip(&centers) {
        *t = sfp::encode_byte(c);
    }
    for (b, pair) in idx
        .iter_mut()
        .zip(index.chunks_exact(2))
        .take(n.div_ceil(2))
    {
        *b = pair[0] | (pair[1] << 4);
    }
}

/// Elements `offset..offset + out.len()`; the caller checked that `bytes`
/// holds at least `bytes_for(offset + out.len())` bytes.
pub(crate) fn decode_unchecked(bytes: &[u8], offset: usize, out: &mut [f32]) {
    let mut pos = offset;
    let mut rest = out;
    while !rest.is_empty() {
        let (g, within) = (pos / GROUP, pos % GROUP);
        let take = (GROUP - within).min(rest.len());
        let (o, tail) = rest.split_at_mut(take);
        let base = g * GROUP_BYTES;
        let end = base + TABLE_BYTES + (within + take).div_ceil(2);
        let Some(group) = bytes.get(base..end) else {
            return;
        };
        let (table_bytes, idx) = group.split_at(TABLE_BYTES);
        let mut table = [0.0f32; CLUSTERS];
        for (t, &b) in table.iter_mut().zip(table_bytes) {
            *t = sfp::decode_byte(b);
        }
        decode_indices(&table, &idx[within / 2..], within % 2 == 1, o);
        pos += take;
        rest = tail;
    }
}

/// Look up nibbles in order, starting at the high nibble of `idx[0]` if
/// `odd_start`.
#[inline(always)]
fn decode_indices(table: &[f32; CLUSTERS], idx: &[u8], odd_start: bool, out: &mut [f32]) {
    let (out, idx) = match (odd_start, out.split_first_mut(), idx.split_first()) {
        (true, Some((first, out)), Some((&b, idx))) => {
            *first = table[(b >> 4) as usize];
            (out, idx)
        }
        _ => (out, idx),
    };
    let half = out.len() / 2;
    let mut chunks = out.chunks_exact_mut(2);
    for (o, &b) in (&mut chunks).zip(idx) {
        o[0] = table[(b & 15) as usize];
        o[1] = table[(b >> 4) as usize];
    }
    let tail = chunks.into_remainder();
    if let (Some(t), Some(&b)) = (tail.first_mut(), idx.get(half)) {
        *t = table[(b & 15) as usize];
    }
}
