//! `gemma info --check`: decodes every weight tensor and reports the ones
//! holding NaN or infinity, which would otherwise turn into garbage text
//! with no hint of why.

use gemma_core::codec;
use gemma_core::quant;
use gemma_platform::LoadedModel;

/// Elements decoded at a time: a multiple of every block size (32, 256 and
/// gemma.cpp's groups), small enough to stay in cache.
const CHUNK: usize = 1 << 16;

/// A tensor with non-finite values.
#[derive(Debug, PartialEq)]
pub struct Finding {
    pub name: String,
    pub nan: u64,
    pub inf: u64,
    /// Index of the first non-finite element.
    pub first: u64,
}

#[derive(Default)]
struct Tally {
    nan: u64,
    inf: u64,
    first: Option<u64>,
}

impl Tally {
    fn add(&mut self, base: u64, values: &[f32]) {
        for (i, v) in values.iter().enumerate() {
            if !v.is_finite() {
                if v.is_nan() {
                    self.nan += 1;
                } else {
                    self.inf += 1;
                }
                self.first.get_or_insert(base + i as u64);
            }
        }
    }

    fn finding(self, name: &str) -> Option<Finding> {
        self.first.map(|first| Finding {
            name: name.to_string(),
            nan: self.nan,
            inf: self.inf,
            first,
        })
    }
}

/// Every tensor of `loaded` with NaN or infinite values, in file order,
/// and the number of tensors checked.
pub fn non_finite_tensors(loaded: &LoadedModel) -> Result<(Vec<Finding>, usize), String> {
    let mut buf = vec![0f32; CHUNK];
    let mut found = Vec::new();
    let mut checked = 0;
    if let Some(g) = loaded.gguf() {
        for t in g.tensors() {
            let n = t.n_elements();
            let (block, block_bytes) = (t.ty.block_elems() as u64, t.ty.block_bytes() as u64);
            let mut tally = Tally::default();
            let mut start = 0u64;
            while start < n {
                let len = (CHUNK as u64).min(n - start);
                let (b0, b1) = (
                    start / block * block_bytes,
                    (start + len).div_ceil(block) * block_bytes,
                );
                let src = t
                    .data
                    .get(b0 as usize..b1 as usize)
                    .ok_or_else(|| format!("{}: data shorter than its shape", t.name))?;
                let dst = &mut buf[..len as usize];
                quant::dequantize(t.ty, src, dst).map_err(|e| format!("{}: {e:?}", t.name))?;
                tally.add(start, dst);
                start += len;
            }
            found.extend(tally.finding(t.name));
            checked += 1;
        }
    } else if let Some(f) = loaded.sbs() {
        for t in f.tensors() {
            let n = (t.rows * t.cols) as u64;
            let mut tally = Tally::default();
            if !t.scale.is_finite() {
                tally.add(0, &[t.scale]);
            }
            let mut start = 0u64;
            while start < n {
                let len = (CHUNK as u64).min(n - start);
                let dst = &mut buf[..len as usize];
                codec::decode(t.codec, t.bytes, start as usize, dst)
                    .map_err(|e| format!("{}: {e}", t.name))?;
                tally.add(start, dst);
                start += len;
            }
            found.extend(tally.finding(t.name));
            checked += 1;
        }
    }
    Ok((found, checked))
}
