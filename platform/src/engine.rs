//! Where a model's sessions run, and the memory each session holds there.
//!
//! An [`Engine`] is the CPU, or an OpenCL device holding the model's
//! weights: they are uploaded once, when the engine is made, and every
//! session's backend shares them (a server's conversations each have their
//! own KV cache, not their own weights). Cloning an engine is cheap.
//!
//! [`SessionMemory`] is one session's memory on its engine: the CPU's
//! [`SessionBuffers`], or a device backend (its KV cache and activations on
//! the device) with the logits row and sampling candidates a
//! [`Session`] keeps on the host. Either persists between sessions, so a
//! conversation's cache serves its next turn wherever it lives.

use crate::device::{DeviceChoice, DeviceError};
use crate::SessionBuffers;
use gemma_core::exec::Executor;
use gemma_core::generate::{Session, SessionError};
use gemma_core::kernels::Precision;
use gemma_core::model::{Model, ModelConfig};
use std::fmt;

#[cfg(feature = "opencl")]
use gemma_gpu::opencl::{DeviceInfo, DeviceWeights, OpenClBackend};
#[cfg(feature = "opencl")]
use std::sync::Arc;

/// Where sessions of one model run.
#[derive(Clone)]
pub struct Engine(Kind);

#[derive(Clone)]
enum Kind {
    Cpu,
    #[cfg(feature = "opencl")]
    OpenCl {
        info: DeviceInfo,
        weights: Arc<DeviceWeights>,
    },
}

/// What [`Engine::choose`] settled on.
#[derive(Clone)]
pub struct Chosen {
    pub engine: Engine,
    /// For `auto`, one line naming the device and why it was chosen (e.g.
    /// `device: cpu (auto: no OpenCL library (libOpenCL.so) could be
    /// loaded)`); `None` for a device named outright.
    pub note: Option<String>,
}

impl Engine {
    /// The CPU backend.
    pub fn cpu() -> Self {
        Engine(Kind::Cpu)
    }

    /// The engine `choice` names, for `model`. `auto` falls back to the CPU
    /// (saying why) when there is no device to pick or the picked one
    /// cannot hold the model; `opencl:N` fails instead.
    pub fn choose(choice: DeviceChoice, model: &Model) -> Result<Chosen, DeviceError> {
        let engine = match choice {
            DeviceChoice::Cpu => Engine::cpu(),
            DeviceChoice::OpenCl(index) => Engine::opencl(index, model)?,
            DeviceChoice::Auto => return Ok(Engine::auto(model)),
        };
        Ok(Chosen { engine, note: None })
    }

    fn auto(model: &Model) -> Chosen {
        #[cfg(feature = "opencl")]
        let why = {
            use crate::device::{auto_pick, opencl};
            let listing = gemma_gpu::opencl::devices();
            match auto_pick(listing.as_deref()) {
                Ok(info) => match Engine::opencl(info.index, model) {
                    Ok(engine) => {
                        return Chosen {
                            engine,
                            note: Some(format!("device: {}", opencl::picked_note(info))),
                        }
                    }
                    Err(e) => e.to_string(),
                },
                Err(why) => why,
            }
        };
        #[cfg(not(feature = "opencl"))]
        let why = {
            let _ = model;
            DeviceError::NotBuilt.to_string()
        };
        Chosen {
            engine: Engine::cpu(),
            note: Some(format!("device: cpu (auto: {why})")),
        }
    }

    /// OpenCL device `index` with every layer of `model` uploaded.
    #[cfg(feature = "opencl")]
    pub fn opencl(index: usize, model: &Model) -> Result<Self, DeviceError> {
        Self::open_and_upload(index, model)
    }

    #[cfg(feature = "opencl")]
    fn open_and_upload(index: usize, model: &Model) -> Result<Self, DeviceError> {
        use gemma_gpu::opencl::{open, Unavailable};
        let err = |e: Unavailable| DeviceError::OpenCl {
            index,
            why: e.to_string(),
        };
        let gpu = open(index).map_err(err)?;
        let info = gpu.info.clone();
        let weights = DeviceWeights::upload(gpu, model, 0..model.config.n_layers).map_err(err)?;
        // A backend of one position builds the kernels the weights need, so
        // a device that cannot run them fails here (where `auto` can still
        // fall back), not in the first conversation.
        OpenClBackend::with_weights(weights.clone(), &model.config, 1, 1).map_err(err)?;
        Ok(Engine(Kind::OpenCl { info, weights }))
    }

    /// Without the `opencl` feature there is no device to open.
    #[cfg(not(feature = "opencl"))]
    pub fn opencl(index: usize, model: &Model) -> Result<Self, DeviceError> {
        let _ = (index, model);
        Err(DeviceError::NotBuilt)
    }

    pub fn is_cpu(&self) -> bool {
        matches!(self.0, Kind::Cpu)
    }

    /// Memory for one session of up to `max_context` positions and passes
    /// of `max_batch` tokens.
    pub fn memory(
        &self,
        cfg: &ModelConfig,
        max_context: usize,
        max_batch: usize,
    ) -> Result<SessionMemory, DeviceError> {
        match &self.0 {
            Kind::Cpu => SessionBuffers::new(cfg, max_context, max_batch)
                .map(|b| SessionMemory(Memory::Cpu(b)))
                .ok_or(DeviceError::TooLarge),
            #[cfg(feature = "opencl")]
            Kind::OpenCl { info, weights } => {
                use gemma_core::generate::SessionSizes;
                use gemma_core::sampling::Candidate;
                // The same sizes as on the CPU (all f32), which also rules
                // out sizes that overflow before the device is asked.
                let sizes =
                    SessionSizes::new(cfg, max_context, max_batch).ok_or(DeviceError::TooLarge)?;
                let backend =
                    OpenClBackend::with_weights(weights.clone(), cfg, max_context, max_batch)
                        .map_err(|e| DeviceError::OpenCl {
                            index: info.index,
                            why: e.to_string(),
                        })?;
                Ok(SessionMemory(Memory::OpenCl(Box::new(OnDevice {
                    backend,
                    logits: vec![0.0; cfg.vocab_size],
                    candidates: vec![Candidate::default(); cfg.vocab_size],
                    max_context,
                    max_batch,
                    bytes: sizes.bytes(),
                }))))
            }
        }
    }
}

/// `cpu`, or `opencl:N name (kind)`.
impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Cpu => f.write_str("cpu"),
            #[cfg(feature = "opencl")]
            Kind::OpenCl { info, .. } => f.write_str(&crate::device::opencl::name(info)),
        }
    }
}

/// One session's memory on an [`Engine`].
pub struct SessionMemory(Memory);

enum Memory {
    Cpu(SessionBuffers),
    #[cfg(feature = "opencl")]
    OpenCl(Box<OnDevice>),
}

/// A device backend and the host memory a session needs next to it.
#[cfg(feature = "opencl")]
struct OnDevice {
    backend: OpenClBackend,
    logits: Vec<f32>,
    candidates: Vec<gemma_core::sampling::Candidate>,
    max_context: usize,
    max_batch: usize,
    bytes: usize,
}

impl SessionMemory {
    pub fn max_context(&self) -> usize {
        match &self.0 {
            Memory::Cpu(b) => b.max_context(),
            #[cfg(feature = "opencl")]
            Memory::OpenCl(d) => d.max_context,
        }
    }

    pub fn max_batch(&self) -> usize {
        match &self.0 {
            Memory::Cpu(b) => b.max_batch(),
            #[cfg(feature = "opencl")]
            Memory::OpenCl(d) => d.max_batch,
        }
    }

    /// Memory held, in bytes, host and device together (a device holds
    /// the cache and activations in f32, as the CPU does).
    pub fn bytes(&self) -> usize {
        match &self.0 {
            Memory::Cpu(b) => b.bytes(),
            #[cfg(feature = "opencl")]
            Memory::OpenCl(d) => d.bytes,
        }
    }

    /// Runs `f` with a [`Session`] over this memory (what the cache holds
    /// stays for the next session). On the CPU the kernels run on `exec`
    /// at `precision`; a device computes in f32, as
    /// [`Precision::Exact`] does, and launches from the calling thread.
    pub fn with_session<R>(
        &mut self,
        model: &Model,
        exec: &dyn Executor,
        precision: Precision,
        f: impl FnOnce(&mut Session) -> R,
    ) -> Result<R, SessionError> {
        match &mut self.0 {
            Memory::Cpu(b) => b.with_session(model, exec, precision, f),
            #[cfg(feature = "opencl")]
            Memory::OpenCl(d) => {
                let mut session = Session::new(
                    &model.config,
                    &mut d.backend,
                    &mut d.logits,
                    &mut d.candidates,
                )?;
                Ok(f(&mut session))
            }
        }
    }

    /// `e` in words, with the device's detail where a device call failed
    /// (a [`SessionError`] only names the operation).
    pub fn explain(&self, e: &SessionError) -> String {
        #[cfg(feature = "opencl")]
        if let (
            Memory::OpenCl(d),
            SessionError::Forward(gemma_core::model::ForwardError::Device(_)),
        ) = (&self.0, e)
        {
            if let Some(detail) = d.backend.last_error() {
                return format!("device error: {detail}");
            }
        }
        e.to_string()
    }
}

/// OpenCL device 0 with `model` on it, for tests (PoCL in CI). Where there
/// is none, the test prints NOT RUN (and logs it to `$GEMMA_NOT_RUN_LOG`),
/// except under CI (`CI` set), which installs PoCL and so fails instead.
#[cfg(all(test, feature = "opencl"))]
pub(crate) fn test_device(test: &str, model: &Model) -> Option<Engine> {
    match Engine::opencl(0, model) {
        Ok(e) => Some(e),
        Err(why) => {
            gemma_gpu::not_run(test, &why);
            None
        }
    }
}

#[cfg(all(test, feature = "opencl"))]
mod tests {
    use super::*;
    use crate::synthetic::{tiny_model, TinySpec};
    use crate::LoadedModel;

    /// Every session's memory on a device shares the weights uploaded
    /// when the engine was made.
    #[test]
    fn sessions_on_a_device_share_one_upload_of_the_weights() {
        let test = "sessions_on_a_device_share_one_upload_of_the_weights";
        let loaded = LoadedModel::from_vec("tiny", tiny_model(&TinySpec::default())).unwrap();
        let model = loaded.model();
        let Some(engine) = test_device(test, &model) else {
            return;
        };
        let Kind::OpenCl { weights, .. } = &engine.0 else {
            unreachable!("an OpenCL engine")
        };
        let before = Arc::strong_count(weights);
        let a = engine.memory(&model.config, 16, 4).unwrap();
        let b = engine.memory(&model.config, 32, 8).unwrap();
        assert_eq!(Arc::strong_count(weights), before + 2);
        assert_eq!((b.max_context(), b.max_batch()), (32, 8));
        drop((a, b));
        assert_eq!(Arc::strong_count(weights), before);
    }
}
