//! Which device sessions run on: `auto`, `cpu` or `opencl[:N]`, and what
//! `auto` picks.
//!
//! `auto` takes the first OpenCL device that is not a CPU (a CPU device,
//! such as PoCL, computes correctly but more slowly than the CPU backend).
//! Without one (no OpenCL library, no platform, no device, only CPU
//! devices, or a build without the `opencl` feature) it settles on the
//! CPU and says why in one line. An explicit `opencl:N` that cannot be had
//! is an error. Nothing here panics for want of a device.
//!
//! [`crate::Engine`] turns a choice into the model's weights on that
//! device.

use std::fmt;
use std::str::FromStr;

/// What the user asked for (`--device`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// An OpenCL device that is not a CPU, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// OpenCL device N, numbered across platforms as `gemma info --devices`
    /// lists them.
    OpenCl(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("unknown device {s:?} (auto, cpu, opencl or opencl:N)");
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "opencl" => Ok(DeviceChoice::OpenCl(0)),
            _ => {
                let n = s.strip_prefix("opencl:").ok_or_else(bad)?;
                // Digits only: `usize::from_str` would take a leading `+`.
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                n.parse().map(DeviceChoice::OpenCl).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::OpenCl(n) => write!(f, "opencl:{n}"),
        }
    }
}

/// Why sessions cannot run where they were asked to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// This build has no OpenCL backend (the `opencl` feature is off).
    NotBuilt,
    /// OpenCL device `index` cannot be used: no library, no platform, no
    /// such device, or a call that failed (out of device memory, say).
    OpenCl { index: usize, why: String },
    /// A session of that context does not fit in memory.
    TooLarge,
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::NotBuilt => f.write_str("this build has no OpenCL support"),
            DeviceError::OpenCl { index, why } => write!(f, "opencl:{index}: {why}"),
            DeviceError::TooLarge => f.write_str("context too large to allocate"),
        }
    }
}

impl std::error::Error for DeviceError {}

/// What `gemma info --devices` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceReport {
    /// Each OpenCL device, described in a few lines (`opencl:N name
    /// (vendor kind; platform)`, memory and limits, driver).
    pub devices: Vec<String>,
    /// Why OpenCL offers no device at all, when it does not.
    pub missing: Option<String>,
    /// What `auto` picks, and why: `opencl:N ...` or `cpu (...)`.
    pub auto: String,
    /// Each device's short name (`opencl:N name`) and memory in bytes,
    /// for plans.
    pub memory: Vec<(String, u64)>,
}

/// Lists the OpenCL devices and what `auto` would pick of them, without
/// opening any.
pub fn survey() -> DeviceReport {
    #[cfg(feature = "opencl")]
    {
        let listing = gemma_gpu::opencl::devices();
        let (devices, missing) = match &listing {
            Ok(d) if d.is_empty() => (Vec::new(), Some(NO_DEVICE.to_string())),
            Ok(d) => (d.iter().map(|i| i.to_string()).collect(), None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        let auto = match auto_pick(listing.as_deref()) {
            Ok(i) => opencl::picked_note(i),
            Err(why) => format!("cpu ({why})"),
        };
        let memory = listing
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|d| (opencl::name(d), d.global_mem))
            .collect();
        DeviceReport {
            devices,
            missing,
            auto,
            memory,
        }
    }
    #[cfg(not(feature = "opencl"))]
    {
        let why = DeviceError::NotBuilt.to_string();
        DeviceReport {
            devices: Vec::new(),
            missing: Some(why.clone()),
            auto: format!("cpu ({why})"),
            memory: Vec::new(),
        }
    }
}

#[cfg(feature = "opencl")]
const NO_DEVICE: &str = "OpenCL lists no device";

/// The device `auto` picks from OpenCL's listing: the first that is not a
/// CPU, else why the CPU backend is used.
#[cfg(feature = "opencl")]
pub(crate) fn auto_pick(
    listing: Result<&[gemma_gpu::opencl::DeviceInfo], &gemma_gpu::opencl::Unavailable>,
) -> Result<gemma_gpu::opencl::DeviceInfo, String> {
    let devices = listing.map_err(|e| e.to_string())?;
    if let Some(d) = devices.iter().find(|d| !d.is_cpu()) {
        return Ok(d.clone());
    }
    let name = |d: &gemma_gpu::opencl::DeviceInfo| format!("opencl:{} {}", d.index, d.name);
    Err(match devices {
        [] => NO_DEVICE.to_string(),
        [one] => format!(
            "the only OpenCL device, {}, is the CPU itself; the CPU backend is faster",
            name(one)
        ),
        all => format!(
            "every OpenCL device ({}) is the CPU itself; the CPU backend is faster",
            all.iter().map(name).collect::<Vec<_>>().join(", ")
        ),
    })
}

#[cfg(feature = "opencl")]
pub(crate) mod opencl {
    use gemma_gpu::opencl::DeviceInfo;

    /// How a device is named in notes and reports: `opencl:N name (kind)`.
    pub fn name(d: &DeviceInfo) -> String {
        format!("opencl:{} {} ({})", d.index, d.name, d.kind)
    }

    /// What `auto` says when it picks `d`.
    pub fn picked_note(d: DeviceInfo) -> String {
        format!("{} (the first OpenCL device that is not a CPU)", name(&d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_print_back() {
        for (text, want) in [
            ("auto", DeviceChoice::Auto),
            ("cpu", DeviceChoice::Cpu),
            ("opencl", DeviceChoice::OpenCl(0)),
            ("opencl:0", DeviceChoice::OpenCl(0)),
            ("opencl:12", DeviceChoice::OpenCl(12)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>(), Ok(want), "{text}");
        }
        assert_eq!(DeviceChoice::OpenCl(3).to_string(), "opencl:3");
        assert_eq!(DeviceChoice::default().to_string(), "auto");
        for bad in [
            "",
            "gpu",
            "opencl:",
            "opencl:x",
            "opencl:+1",
            "opencl:-1",
            "CPU",
            "cuda",
        ] {
            let e = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(e.contains("auto, cpu, opencl or opencl:N"), "{bad}: {e}");
        }
    }

    #[cfg(feature = "opencl")]
    fn info(index: usize, kind: &'static str) -> gemma_gpu::opencl::DeviceInfo {
        gemma_gpu::opencl::DeviceInfo {
            index,
            platform: "p".into(),
            name: format!("dev{index}"),
            vendor: "v".into(),
            kind,
            driver: "1".into(),
            version: "OpenCL 1.2".into(),
            global_mem: 1 << 30,
            max_alloc: 1 << 28,
            local_mem: 1 << 15,
            max_work_group: 256,
            compute_units: 4,
        }
    }

    /// `auto` passes over CPU devices, and says why it settles on the CPU.
    #[cfg(feature = "opencl")]
    #[test]
    fn auto_takes_the_first_device_that_is_not_a_cpu() {
        use gemma_gpu::opencl::Unavailable;
        let devs = [info(0, "CPU"), info(1, "GPU"), info(2, "GPU")];
        assert_eq!(auto_pick(Ok(&devs)).unwrap().index, 1);
        let why = auto_pick(Ok(&devs[..1])).unwrap_err();
        assert!(
            why.contains("the only OpenCL device, opencl:0 dev0, is the CPU"),
            "{why}"
        );
        let two = [info(0, "CPU"), info(1, "CPU")];
        let why = auto_pick(Ok(&two)).unwrap_err();
        assert!(why.contains("opencl:0 dev0, opencl:1 dev1"), "{why}");
        assert_eq!(auto_pick(Ok(&[])).unwrap_err(), NO_DEVICE);
        let why = auto_pick(Err(&Unavailable::NoLibrary)).unwrap_err();
        assert!(why.contains("no OpenCL library"), "{why}");
        let why = auto_pick(Err(&Unavailable::NoPlatform)).unwrap_err();
        assert!(why.contains("no platform"), "{why}");
    }
}
