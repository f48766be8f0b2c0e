//! OpenCL: the devices, one context per device with its compiled programs
//! (built once per process), and the backend ([`OpenClBackend`]).
//!
//! The OpenCL library is loaded at run time (opencl3's `dynamic` feature),
//! so a build runs on machines without one; every way of not having a
//! device is an [`Unavailable`], never a panic.

mod backend;
mod buffers;
pub mod probe;
mod signals;
mod weights;

pub use backend::OpenClBackend;
pub use weights::DeviceWeights;

use crate::kernels::{self, Program as Source};
use crate::limits;
use gemma_core::weights::Encoding;
use opencl3::command_queue::CommandQueue;
use opencl3::context::Context;
use opencl3::device::{Device, CL_DEVICE_TYPE_ALL};
use opencl3::kernel::Kernel;
use opencl3::platform::get_platforms;
use opencl3::program::Program;
use opencl3::types::cl_int;
pub(crate) use signals::keeping_signals;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

/// Why no OpenCL device can be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// No OpenCL library (ICD loader) could be loaded.
    NoLibrary,
    /// The library found no platform (no driver installed).
    NoPlatform,
    /// Platforms but no devices, or not the one asked for.
    NoDevice { asked: usize, found: usize },
    /// An OpenCL call failed.
    Api(String),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NoLibrary => {
                write!(f, "no OpenCL library (libOpenCL.so) could be loaded")
            }
            Unavailable::NoPlatform => write!(f, "OpenCL has no platform (no driver installed)"),
            Unavailable::NoDevice { asked, found: 0 } => {
                write!(f, "OpenCL found no device (asked for device {asked})")
            }
            Unavailable::NoDevice { asked, found } => write!(
                f,
                "no OpenCL device {asked}: there are {found} (numbered from 0)"
            ),
            Unavailable::Api(e) => write!(f, "OpenCL error: {e}"),
        }
    }
}

impl std::error::Error for Unavailable {}

/// cl3's code for a library that could not be loaded.
const RUNTIME_LOAD_FAILED: cl_int = -2000;
/// The ICD loader's code for "no platform".
const PLATFORM_NOT_FOUND: cl_int = -1001;

fn api(what: &str, e: impl fmt::Display) -> Unavailable {
    Unavailable::Api(format!("{what}: {e}"))
}

/// One device, as `gemma info --devices` lists it.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// Its number across all platforms (`--device opencl:N`).
    pub index: usize,
    pub platform: String,
    pub name: String,
    pub vendor: String,
    /// CL_DEVICE_TYPE: `GPU`, `CPU` (e.g. PoCL), `accelerator` or `other`.
    pub kind: &'static str,
    pub driver: String,
    pub version: String,
    pub global_mem: u64,
    pub max_alloc: u64,
    pub local_mem: u64,
    pub max_work_group: usize,
    pub compute_units: u32,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: u64| b / (1024 * 1024);
        write!(
            f,
            "opencl:{} {} ({} {}; {})\n    memory {} MiB, largest buffer {} MiB, shared {} KiB, \
             {} compute units, blocks up to {} threads\n    driver {}, {}",
            self.index,
            self.name,
            self.vendor,
            self.kind,
            self.platform,
            mib(self.global_mem),
            mib(self.max_alloc),
            self.local_mem / 1024,
            self.compute_units,
            self.max_work_group,
            self.driver,
            self.version
        )
    }
}

/// Every device of every platform, in order.
fn device_ids() -> Result<Vec<(String, Device)>, Unavailable> {
    let platforms = match get_platforms() {
        Ok(p) => p,
        Err(e) if e.0 == RUNTIME_LOAD_FAILED => return Err(Unavailable::NoLibrary),
        Err(e) if e.0 == PLATFORM_NOT_FOUND => return Err(Unavailable::NoPlatform),
        Err(e) => return Err(api("listing platforms", e)),
    };
    if platforms.is_empty() {
        return Err(Unavailable::NoPlatform);
    }
    let mut out = Vec::new();
    for p in platforms {
        let name = p.name().unwrap_or_default();
        // A platform without devices answers CL_DEVICE_NOT_FOUND: none here.
        for id in p.get_devices(CL_DEVICE_TYPE_ALL).unwrap_or_default() {
            out.push((name.clone(), Device::new(id)));
        }
    }
    Ok(out)
}

fn kind_name(t: opencl3::types::cl_device_type) -> &'static str {
    use opencl3::device::{CL_DEVICE_TYPE_ACCELERATOR, CL_DEVICE_TYPE_CPU, CL_DEVICE_TYPE_GPU};
    if t & CL_DEVICE_TYPE_GPU != 0 {
        "GPU"
    } else if t & CL_DEVICE_TYPE_CPU != 0 {
        "CPU"
    } else if t & CL_DEVICE_TYPE_ACCELERATOR != 0 {
        "accelerator"
    } else {
        "other"
    }
}

impl DeviceInfo {
    /// Whether the device is the host's CPU (PoCL): correct, but slower
    /// than the CPU backend, so `--device auto` does not pick it.
    pub fn is_cpu(&self) -> bool {
        self.kind == "CPU"
    }
}

/// The devices OpenCL offers.
pub fn devices() -> Result<Vec<DeviceInfo>, Unavailable> {
    keeping_signals(list_devices)
}

fn list_devices() -> Result<Vec<DeviceInfo>, Unavailable> {
    let ids = device_ids()?;
    ids.into_iter()
        .enumerate()
        .map(|(index, (platform, d))| {
            let q = |e| api("querying a device", e);
            Ok(DeviceInfo {
                index,
                platform,
                name: d.name().map_err(q)?,
                vendor: d.vendor().map_err(q)?,
                kind: kind_name(d.dev_type().map_err(q)?),
                driver: d.driver_version().map_err(q)?,
                version: d.version().map_err(q)?,
                global_mem: d.global_mem_size().map_err(q)?,
                max_alloc: d.max_mem_alloc_size().map_err(q)?,
                local_mem: d.local_mem_size().map_err(q)?,
                max_work_group: d.max_work_group_size().map_err(q)?,
                compute_units: d.max_compute_units().map_err(q)?,
            })
        })
        .collect()
}

/// An opened device: its context and the programs built for it so far.
/// Shared by every backend on the device, for the life of the process.
pub struct Gpu {
    pub info: DeviceInfo,
    device: Device,
    context: Context,
    programs: Mutex<HashMap<String, Arc<Program>>>,
}

/// Opened devices, by index: a device is opened (and each program built)
/// once per process.
fn opened() -> &'static Mutex<HashMap<usize, Arc<Gpu>>> {
    static OPENED: OnceLock<Mutex<HashMap<usize, Arc<Gpu>>>> = OnceLock::new();
    OPENED.get_or_init(Default::default)
}

/// Opens device `index` (see [`devices`]), or returns it already opened.
pub fn open(index: usize) -> Result<Arc<Gpu>, Unavailable> {
    keeping_signals(|| open_device(index))
}

fn open_device(index: usize) -> Result<Arc<Gpu>, Unavailable> {
    let mut map = opened().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(g) = map.get(&index) {
        return Ok(g.clone());
    }
    let all = list_devices()?;
    let info = all.get(index).cloned().ok_or(Unavailable::NoDevice {
        asked: index,
        found: all.len(),
    })?;
    let (_, device) = device_ids()?.swap_remove(index);
    let context = Context::from_device(&device).map_err(|e| api("creating a context", e))?;
    let gpu = Arc::new(Gpu {
        info,
        device,
        context,
        programs: Mutex::new(HashMap::new()),
    });
    map.insert(index, gpu.clone());
    Ok(gpu)
}

// The device, its weights and backends move between threads (a server's
// workers share one upload): opencl3's handles are Send and Sync.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Gpu>();
    send_sync::<DeviceWeights>();
    send::<OpenClBackend>();
};

impl Gpu {
    /// A new in-order command queue (one per backend).
    fn queue(&self) -> Result<CommandQueue, Unavailable> {
        // SAFETY: FFI; the device belongs to the context, no properties.
        #[allow(deprecated)]
        unsafe { CommandQueue::create(&self.context, self.device.id(), 0) }
            .map_err(|e| api("creating a command queue", e))
    }

    /// The program `src`, built on first use; each of its kernels is
    /// checked against the target's shared memory.
    fn program(&self, src: Source, kernels: &[&'static str]) -> Result<Arc<Program>, Unavailable> {
        let mut map = self.programs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(&src.name) {
            return Ok(p.clone());
        }
        let program = keeping_signals(|| {
            Program::create_and_build_from_source(&self.context, &src.source, "")
        })
        .map_err(|log| api(&format!("building program {}", src.name), log))?;
        for &k in kernels {
            let kernel = Kernel::create(&program, k).map_err(|e| api(k, e))?;
            let bytes = kernel
                .get_local_mem_size(self.device.id())
                .map_err(|e| api(k, e))?;
            limits::check_shared(k, bytes).map_err(|e| Unavailable::Api(e.to_string()))?;
        }
        let program = Arc::new(program);
        map.insert(src.name, program.clone());
        Ok(program)
    }

    fn ops(&self) -> Result<Arc<Program>, Unavailable> {
        self.program(kernels::ops(), &kernels::OPS_KERNELS)
    }

    fn matmul(&self, enc: Encoding) -> Result<Arc<Program>, Unavailable> {
        self.program(kernels::matmul(enc), &kernels::MATMUL_KERNELS)
    }

    /// Builds every program (what a kernel test or a warm-up needs).
    pub fn build_all(&self) -> Result<(), Unavailable> {
        self.ops()?;
        for enc in kernels::ENCODINGS {
            self.matmul(enc)?;
        }
        Ok(())
    }
}

/// Device 0 for a test suite, or `None` after [`crate::not_run`] (which
/// panics under CI instead of skipping).
pub fn test_device(test: &str) -> Option<Arc<Gpu>> {
    match open(0) {
        Ok(gpu) => Some(gpu),
        Err(why) => {
            crate::not_run(test, &why);
            None
        }
    }
}
