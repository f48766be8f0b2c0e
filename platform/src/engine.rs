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

#[cfg(feature = "opencl")]
use gemma_core::cpu::CpuBackend;
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
        /// Layers `[0, weights.layers().end)` run on the device, the rest
        /// on the CPU (partial offload).
        weights: Arc<DeviceWeights>,
        /// The model's depth.
        n_layers: usize,
    },
}

/// How many of a model's layers go to the device (`--gpu-layers`); the
/// rest run on the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GpuLayers {
    /// Every layer.
    #[default]
    All,
    /// The first `n` (all when `n` is the model's depth or more).
    First(usize),
    /// As many as fit the device's memory at the model's context (at most
    /// 4096 positions) by `model::plan`.
    Fit,
}

impl std::str::FromStr for GpuLayers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(GpuLayers::All),
            "auto" => Ok(GpuLayers::Fit),
            n => n.parse().map(GpuLayers::First).map_err(|_| {
                format!("--gpu-layers takes a number of layers, `all` or `auto`, not {n:?}")
            }),
        }
    }
}

impl GpuLayers {
    /// The layers on a device of `memory` bytes.
    pub fn count(self, model: &Model, memory: u64) -> usize {
        let n = model.config.n_layers;
        match self {
            GpuLayers::All => n,
            GpuLayers::First(k) => k.min(n),
            GpuLayers::Fit => {
                use crate::plan::{default_context, overheads, PLAN_BATCH};
                use gemma_core::model::plan::{plan, Footprint};
                let cfg = &model.config;
                let over = overheads(cfg, PLAN_BATCH);
                let fp = Footprint::of(model);
                plan(cfg, &fp, default_context(cfg), PLAN_BATCH, memory, over).gpu_layers
            }
        }
    }
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
        Self::choose_layers(choice, model, GpuLayers::All)
    }

    /// [`Self::choose`], with `layers` of the model on the device (the
    /// rest on the CPU).
    pub fn choose_layers(
        choice: DeviceChoice,
        model: &Model,
        layers: GpuLayers,
    ) -> Result<Chosen, DeviceError> {
        let engine = match choice {
            DeviceChoice::Cpu => Engine::cpu(),
            DeviceChoice::OpenCl(index) => Engine::opencl_layers(index, model, layers)?,
            DeviceChoice::Auto => return Ok(Engine::auto(model, layers)),
        };
        Ok(Chosen { engine, note: None })
    }

    fn auto(model: &Model, layers: GpuLayers) -> Chosen {
        #[cfg(feature = "opencl")]
        let why = {
            use crate::device::{auto_pick, opencl};
            let listing = gemma_gpu::opencl::devices();
            match auto_pick(listing.as_deref()) {
                Ok(info) => match Engine::opencl_layers(info.index, model, layers) {
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
            let _ = (model, layers);
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
        Self::opencl_layers(index, model, GpuLayers::All)
    }

    /// OpenCL device `index` with `layers` of `model` uploaded: all, the
    /// first `n`, or as many as the planner says fit its memory.
    #[cfg(feature = "opencl")]
    pub fn opencl_layers(
        index: usize,
        model: &Model,
        layers: GpuLayers,
    ) -> Result<Self, DeviceError> {
        use gemma_gpu::opencl::{open, Unavailable};
        let err = |e: Unavailable| DeviceError::OpenCl {
            index,
            why: e.to_string(),
        };
        let gpu = open(index).map_err(err)?;
        let info = gpu.info.clone();
        let n = layers.count(model, info.global_mem);
        if n == 0 {
            let why = match layers {
                GpuLayers::First(_) => {
                    "--gpu-layers 0 puts no layer on it (use --device cpu)".to_string()
                }
                _ => format!(
                    "no layer of the model fits its {} MiB",
                    info.global_mem >> 20
                ),
            };
            return Err(DeviceError::OpenCl { index, why });
        }
        let weights = DeviceWeights::upload(gpu, model, 0..n).map_err(err)?;
        // A backend of one position builds the kernels the weights need, so
        // a device that cannot run them fails here (where `auto` can still
        // fall back), not in the first conversation.
        OpenClBackend::with_weights(weights.clone(), &model.config, 1, 1).map_err(err)?;
        Ok(Engine(Kind::OpenCl {
            info,
            weights,
            n_layers: model.config.n_layers,
        }))
    }

    /// Without the `opencl` feature there is no device to open.
    #[cfg(not(feature = "opencl"))]
    pub fn opencl(index: usize, model: &Model) -> Result<Self, DeviceError> {
        let _ = (index, model);
        Err(DeviceError::NotBuilt)
    }

    #[cfg(not(feature = "opencl"))]
    pub fn opencl_layers(
        index: usize,
        model: &Model,
        layers: GpuLayers,
    ) -> Result<Self, DeviceError> {
        let _ = (index, model, layers);
        Err(DeviceError::NotBuilt)
    }

    /// Layers on the device (0 on the CPU).
    pub fn device_layers(&self) -> usize {
        match &self.0 {
            Kind::Cpu => 0,
            #[cfg(feature = "opencl")]
            Kind::OpenCl { weights, .. } => weights.layers().end,
        }
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
            Kind::OpenCl { info, weights, .. } => {
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
                // Layers past the device's run on the CPU, their cache in
                // host memory, the residual stream staged between the two.
                let split = weights.layers().end;
                let (host, staging) = if split < cfg.n_layers {
                    let len =
                        CpuBackend::required_len(cfg, split..cfg.n_layers, max_context, max_batch)
                            .ok_or(DeviceError::TooLarge)?;
                    (vec![0f32; len], vec![0f32; max_batch * cfg.d_model])
                } else {
                    (Vec::new(), Vec::new())
                };
                Ok(SessionMemory(Memory::OpenCl(Box::new(OnDevice {
                    backend,
                    split,
                    host,
                    staging,
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
            Kind::OpenCl {
                info,
                weights,
                n_layers,
            } => {
                f.write_str(&crate::device::opencl::name(info))?;
                let on = weights.layers().end;
                if on < *n_layers {
                    write!(f, ", layers 0..{on} of {n_layers} (the rest on the CPU)")?;
                }
                Ok(())
            }
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

/// A device backend and the host memory a session needs next to it: for
/// layers `split..` the CPU backend's memory and the staging row.
#[cfg(feature = "opencl")]
struct OnDevice {
    backend: OpenClBackend,
    split: usize,
    host: Vec<f32>,
    staging: Vec<f32>,
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
            Memory::OpenCl(d) if d.split == model.config.n_layers => {
                let mut session = Session::new(
                    &model.config,
                    &mut d.backend,
                    &mut d.logits,
                    &mut d.candidates,
                )?;
                Ok(f(&mut session))
            }
            #[cfg(feature = "opencl")]
            Memory::OpenCl(d) => {
                use gemma_core::model::Stage;
                let cfg = &model.config;
                let (device, host) = (0..d.split, d.split..cfg.n_layers);
                let (ctx, batch) = (d.max_context, d.max_batch);
                let mut cpu = CpuBackend::new(model, exec, host.clone(), ctx, batch, &mut d.host)
                    .map_err(|_| SessionError::BuffersTooSmall)?
                    .with_precision(precision);
                let stages = [
                    Stage {
                        layers: device,
                        backend: &mut d.backend,
                    },
                    Stage {
                        layers: host,
                        backend: &mut cpu,
                    },
                ];
                let mut session = Session::staged(
                    cfg,
                    stages,
                    &mut d.staging,
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

    /// Layers 0..3 on the device and 3..6 on the CPU, the residual stream
    /// handed over each pass: the logits of a CPU session, prefill and
    /// decode, and the cache kept across sessions on both sides.
    #[test]
    fn layers_split_between_device_and_cpu_match_the_cpu() {
        let test = "layers_split_between_device_and_cpu_match_the_cpu";
        let loaded = LoadedModel::from_vec("tiny", tiny_model(&TinySpec::default())).unwrap();
        let model = loaded.model();
        let cfg = &model.config;
        if test_device(test, &model).is_none() {
            return;
        }
        let split = Engine::opencl_layers(0, &model, GpuLayers::First(3)).unwrap();
        assert_eq!(split.device_layers(), 3);
        assert!(split.to_string().contains("layers 0..3 of 6"), "{split}");
        let exec = gemma_core::exec::Serial;
        let run = |engine: &Engine| {
            let mut memory = engine.memory(cfg, 32, 4).unwrap();
            let mut rows = Vec::new();
            // Two sessions over one memory: the second continues the first.
            for tokens in [&[2u32, 9, 17, 40, 7][..], &[100, 31]] {
                memory
                    .with_session(&model, &exec, Precision::Exact, |s| {
                        if !tokens.contains(&100) {
                            rows.push(
                                s.prefill(gemma_core::model::Prompt::tokens(tokens))
                                    .unwrap()
                                    .to_vec(),
                            );
                        } else {
                            s.set_pos(5).unwrap();
                            for &t in tokens {
                                rows.push(s.step(t).unwrap().to_vec());
                            }
                        }
                    })
                    .unwrap();
            }
            rows
        };
        let want = run(&Engine::cpu());
        let got = run(&split);
        for (w, g) in want.iter().zip(&got) {
            let d = w
                .iter()
                .zip(g)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, |m, d| if d.is_nan() || d > m { d } else { m });
            assert!(d <= 5e-3, "{test}: logits differ by {d}");
        }
        // The planner's choice: everything on a large device, nothing on
        // a device smaller than the reserve.
        assert_eq!(GpuLayers::Fit.count(&model, 8 << 30), 6);
        assert_eq!(GpuLayers::Fit.count(&model, 1 << 20), 0);
        assert_eq!(GpuLayers::First(9).count(&model, 0), 6);
        assert_eq!("auto".parse::<GpuLayers>().unwrap(), GpuLayers::Fit);
        assert_eq!("4".parse::<GpuLayers>().unwrap(), GpuLayers::First(4));
        assert!("x"
            .parse::<GpuLayers>()
            .unwrap_err()
            .contains("--gpu-layers"));
    }
}
