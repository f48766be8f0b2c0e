//! Comparing `.sbs` files (gemma.cpp's `blob_compare`) and measuring a
//! codec's distortion (its `DistortionStats`): which blobs differ, and for
//! tensors the decoded difference: max and mean absolute error and the
//! signal-to-noise ratio against a reference.

use gemma_core::codec::{self, Codec};
use gemma_core::format::sbs::{BlobStore, SbsFile, SbsTensor};

/// Elements decoded at a time.
const CHUNK: usize = 1 << 16;

/// Running error statistics of values against a reference.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Distortion {
    pub count: u64,
    pub max_abs: f64,
    sum_abs: f64,
    signal: f64,
    noise: f64,
}

impl Distortion {
    /// Adds `values` compared with `reference` (same length).
    pub fn add(&mut self, reference: &[f32], values: &[f32]) {
        for (&r, &v) in reference.iter().zip(values) {
            let e = (v as f64 - r as f64).abs();
            self.max_abs = self.max_abs.max(e);
            self.sum_abs += e;
            self.signal += r as f64 * r as f64;
            self.noise += e * e;
        }
        self.count += reference.len().min(values.len()) as u64;
    }

    /// Adds another tensor's statistics (for whole-file totals).
    pub fn merge(&mut self, o: &Distortion) {
        self.count += o.count;
        self.max_abs = self.max_abs.max(o.max_abs);
        self.sum_abs += o.sum_abs;
        self.signal += o.signal;
        self.noise += o.noise;
    }

    pub fn mean_abs(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_abs / self.count as f64
        }
    }

    /// `10 log10(sum r^2 / sum e^2)`; infinite when exact.
    pub fn snr_db(&self) -> f64 {
        if self.noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.signal / self.noise).log10()
        }
    }

    pub fn is_exact(&self) -> bool {
        self.noise == 0.0
    }
}

/// One tensor present in both files.
#[derive(Clone, Debug)]
pub struct TensorDiff {
    pub name: String,
    pub codecs: (Codec, Codec),
    pub same_bytes: bool,
    /// `None` when the shapes differ.
    pub distortion: Option<Distortion>,
}

/// What differs between two `.sbs` files.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
    /// Blobs in both whose bytes differ (tensors and others).
    pub differing: Vec<String>,
    /// Blobs in both with the same bytes.
    pub same: usize,
    /// Every tensor of `a` also in `b`, in `a`'s order.
    pub tensors: Vec<TensorDiff>,
}

impl Comparison {
    pub fn identical(&self) -> bool {
        self.only_in_a.is_empty() && self.only_in_b.is_empty() && self.differing.is_empty()
    }
}

/// Decodes `t` (times its scale) from element `start` into `out`.
fn decode(t: &SbsTensor, start: usize, out: &mut [f32]) -> Result<(), String> {
    codec::decode(t.codec, t.bytes, start, out).map_err(|e| format!("{}: {e}", t.name))?;
    if t.scale != 1.0 {
        out.iter_mut().for_each(|v| *v *= t.scale);
    }
    Ok(())
}

/// Decoded difference of `b` against the reference `a`.
pub fn tensor_distortion(a: &SbsTensor, b: &SbsTensor) -> Result<Distortion, String> {
    let n = a.rows * a.cols;
    let (mut ra, mut rb) = (vec![0f32; CHUNK.min(n)], vec![0f32; CHUNK.min(n)]);
    let mut d = Distortion::default();
    let mut start = 0;
    while start < n {
        let len = CHUNK.min(n - start);
        decode(a, start, &mut ra[..len])?;
        decode(b, start, &mut rb[..len])?;
        d.add(&ra[..len], &rb[..len]);
        start += len;
    }
    Ok(d)
}

/// Compares two `.sbs` files; `b` is measured against `a`.
pub fn compare(a: &[u8], b: &[u8]) -> Result<Comparison, String> {
    let sa = BlobStore::parse(a).map_err(|e| format!("first file: {e}"))?;
    let sb = BlobStore::parse(b).map_err(|e| format!("second file: {e}"))?;
    let mut c = Comparison::default();
    for blob in sa.blobs() {
        match sb.blob(blob.name) {
            None => c.only_in_a.push(blob.name.to_string()),
            Some(other) if other == blob.bytes => c.same += 1,
            Some(_) => c.differing.push(blob.name.to_string()),
        }
    }
    for blob in sb.blobs() {
        if sa.blob(blob.name).is_none() {
            c.only_in_b.push(blob.name.to_string());
        }
    }
    // Tensors, where both files have a tensor table.
    if let (Ok(fa), Ok(fb)) = (SbsFile::parse(a), SbsFile::parse(b)) {
        for ta in fa.tensors() {
            let Some(tb) = fb.tensor(ta.name) else {
                continue;
            };
            let same_shape = (ta.rows, ta.cols) == (tb.rows, tb.cols);
            c.tensors.push(TensorDiff {
                name: ta.name.to_string(),
                codecs: (ta.codec, tb.codec),
                same_bytes: ta.bytes == tb.bytes && ta.scale == tb.scale && ta.codec == tb.codec,
                distortion: if same_shape {
                    Some(tensor_distortion(&ta, &tb)?)
                } else {
                    None
                },
            });
        }
    }
    Ok(c)
}
