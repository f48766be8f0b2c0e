//! `--device`: the engine a command's sessions run on, running a session on
//! it with errors in words, and `gemma info --devices`.

use crate::ComputeArgs;
use gemma_core::exec::Executor;
use gemma_core::generate::{Session, SessionError};
use gemma_core::kernels::Precision;
use gemma_core::model::Model;
use gemma_platform::device::survey;
use gemma_platform::{DeviceChoice, DeviceError, Engine, SessionMemory};
use std::io::Write;

/// The engine `--device` names for `model`, its weights on the device.
/// `auto`'s one line saying which device and why goes to stderr; a device
/// named outright that cannot be had is an error. The OpenCL kernels
/// compute in f32, so a device takes only `--precision exact`.
pub fn engine(compute: &ComputeArgs, model: &Model) -> Result<Engine, String> {
    let choice = compute.device;
    let precision = compute.precision();
    if precision != Precision::Exact {
        return match choice {
            DeviceChoice::Cpu => Ok(Engine::cpu()),
            DeviceChoice::Auto => {
                eprintln!(
                    "gemma: device: cpu (auto: --precision {} runs on the CPU only)",
                    precision.name()
                );
                Ok(Engine::cpu())
            }
            DeviceChoice::OpenCl(_) => Err(format!(
                "--device {choice} computes in f32 only: use --precision exact with it \
                 (--precision {} runs on the CPU only)",
                precision.name()
            )),
        };
    }
    let chosen = Engine::choose_layers(choice, model, compute.gpu_layers).map_err(|e| match e {
        // It names the device itself.
        DeviceError::OpenCl { .. } => format!("--device {e}"),
        e => format!("--device {choice}: {e}"),
    })?;
    if let Some(note) = chosen.note {
        eprintln!("gemma: {note}");
    }
    Ok(chosen.engine)
}

/// How a step inside [`in_session`] fails.
pub enum Failed {
    Session(SessionError),
    Other(String),
}

impl From<SessionError> for Failed {
    fn from(e: SessionError) -> Self {
        Failed::Session(e)
    }
}

impl From<String> for Failed {
    fn from(e: String) -> Self {
        Failed::Other(e)
    }
}

/// Runs `f` in a session over `memory`; a session error comes back in
/// words, with the device's detail where a device call failed.
pub fn in_session<R>(
    memory: &mut SessionMemory,
    model: &Model,
    exec: &dyn Executor,
    precision: Precision,
    f: impl FnOnce(&mut Session) -> Result<R, Failed>,
) -> Result<R, String> {
    match memory.with_session(model, exec, precision, f) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(Failed::Other(e))) => Err(e),
        Ok(Err(Failed::Session(e))) | Err(e) => Err(memory.explain(&e)),
    }
}

/// `gemma info --devices`: every OpenCL device, or why there is none, and
/// what `--device auto` picks.
pub fn list() -> Result<(), String> {
    let report = survey();
    let mut out = std::io::stdout().lock();
    let mut w = |s: String| writeln!(out, "{s}").map_err(|e| e.to_string());
    for d in &report.devices {
        w(d.clone())?;
    }
    if let Some(why) = &report.missing {
        w(format!("no OpenCL devices: {why}"))?;
    }
    w(format!("auto: {}", report.auto))
}

/// `gemma info --devices` with a model: how much of it each device (and a
/// device of `--memory` MiB) holds, for `--context`.
pub fn plans(a: &crate::InfoArgs) -> Result<(), String> {
    use gemma_core::model::plan::Footprint;
    use gemma_platform::plan::{self, PLAN_BATCH};
    let loaded;
    let (cfg, fp, what) = match &a.known {
        Some(name) => {
            let cfg = plan::known_config(name)?;
            let bits = plan::bits_per_weight(&a.weights)?;
            let what = format!("{name} ({}, {bits} bits a weight, estimated)", a.weights);
            (cfg, Footprint::estimate(&cfg, bits), what)
        }
        None => {
            loaded = a.model.load()?;
            let model = loaded.model();
            let what = a.model.path()?.display().to_string();
            (model.config, Footprint::of(&model), what)
        }
    };
    let context = a
        .context
        .unwrap_or_else(|| plan::default_context(&cfg))
        .max(1);
    let mib = |b: u64| b.div_ceil(1 << 20);
    let mut out = std::io::stdout().lock();
    let mut w = |s: String| writeln!(out, "{s}").map_err(|e| e.to_string());
    w(format!(
        "\nplan for {what}: {} layers, weights {} MiB, context {context}, passes of {PLAN_BATCH}",
        cfg.n_layers,
        mib(fp.total())
    ))?;
    let mut devices = survey().memory;
    if let Some(m) = a.memory {
        let bytes = m
            .checked_mul(1 << 20)
            .ok_or_else(|| format!("--memory {m} MiB is more than any device holds"))?;
        devices.push((format!("--memory {m}"), bytes));
    }
    if devices.is_empty() {
        w("  no device to plan for: give --memory MiB".into())?;
    }
    for (name, bytes) in devices {
        let p = plan::describe(&cfg, &fp, &name, bytes, context, PLAN_BATCH);
        w(format!("  {p}"))?;
    }
    Ok(())
}
