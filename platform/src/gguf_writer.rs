//! Writes GGUF files (version 3): metadata and tensors, aligned.
//!
//! Used to build synthetic models for tests and demos, and the hostile
//! variants the parser tests mutate.

/// A metadata value to write.
#[derive(Clone, Debug)]
pub enum MetaValue {
    U32(u32),
    I32(i32),
    U64(u64),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    F32Array(Vec<f32>),
    I32Array(Vec<i32>),
}

impl MetaValue {
    fn type_id(&self) -> u32 {
        match self {
            MetaValue::U32(_) => 4,
            MetaValue::I32(_) => 5,
            MetaValue::F32(_) => 6,
            MetaValue::Bool(_) => 7,
            MetaValue::Str(_) => 8,
            MetaValue::StrArray(_) | MetaValue::F32Array(_) | MetaValue::I32Array(_) => 9,
            MetaValue::U64(_) => 10,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TensorEntry {
    pub name: String,
    /// Innermost first, as GGUF stores them.
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct GgufWriter {
    pub version: u32,
    pub alignment: usize,
    pub metadata: Vec<(String, MetaValue)>,
    pub tensors: Vec<TensorEntry>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self {
            version: 3,
            alignment: 32,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl GgufWriter {
    pub fn meta(&mut self, key: &str, value: MetaValue) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Adds an F32 tensor; `dims` innermost first.
    pub fn tensor_f32(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor_raw(name, dims, 0, data)
    }

    pub fn tensor_raw(
        &mut self,
        name: &str,
        dims: &[u64],
        ggml_type: u32,
        data: Vec<u8>,
    ) -> &mut Self {
        self.tensors.push(TensorEntry {
            name: name.to_string(),
            dims: dims.to_vec(),
            ggml_type,
            data,
        });
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let align = self.alignment.max(1);
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut out, key);
            out.extend_from_slice(&value.type_id().to_le_bytes());
            match value {
                MetaValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
                MetaValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
                MetaValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
                MetaValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
                MetaValue::Bool(v) => out.push(*v as u8),
                MetaValue::Str(s) => put_str(&mut out, s),
                MetaValue::StrArray(items) => {
                    out.extend_from_slice(&8u32.to_le_bytes());
                    out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                    items.iter().for_each(|s| put_str(&mut out, s));
                }
                MetaValue::F32Array(items) => {
                    out.extend_from_slice(&6u32.to_le_bytes());
                    out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                    items
                        .iter()
                        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
                }
                MetaValue::I32Array(items) => {
                    out.extend_from_slice(&5u32.to_le_bytes());
                    out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                    items
                        .iter()
                        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
                }
            }
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            t.dims
                .iter()
                .for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
            out.extend_from_slice(&t.ggml_type.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset += (t.data.len() as u64).div_ceil(align as u64) * align as u64;
        }
        out.resize(out.len().div_ceil(align) * align, 0);
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            out.resize(out.len().div_ceil(align) * align, 0);
        }
        out
    }
}
