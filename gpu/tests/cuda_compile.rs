//! The CUDA compile check: NVRTC 12.x, loaded at run time, compiles every
//! program of [`kernels::all`] as CUDA C++ to an `sm_61` (GTX 1050) CUBIN,
//! with ptxas' statistics. It fails on any compile error, any spill, any
//! kernel whose shared memory exceeds [`limits::MAX_SHARED_BYTES`] and any
//! kernel missing from its program, and prints every kernel's registers,
//! shared memory and spills, also under a plain `cargo test`.
//!
//! The library: `$GEMMA_NVRTC` (a path to `libnvrtc.so.12`) when set, else
//! the `nvidia-cuda-nvrtc-cu12` wheel that scripts/test.sh installs into
//! its cache, else `libnvrtc.so.12` from the loader's search path. Where
//! none loads, the test prints NOT RUN (and logs it to
//! `$GEMMA_NOT_RUN_LOG`), except under CI (`CI` set), which installs it and
//! so fails instead of skipping.

use gemma_gpu::kernels::{self, MATMUL_KERNELS, OPS_KERNELS};
use gemma_gpu::limits::MAX_SHARED_BYTES;
use libloading::Library;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::ptr;

const TEST: &str = "cuda_compile";

/// What NVRTC is given besides the source: a real architecture (so the
/// result is ptxas' CUBIN, not PTX) and ptxas' per-kernel statistics,
/// which NVRTC returns in the program log.
const OPTIONS: [&str; 2] = ["--gpu-architecture=sm_61", "--ptxas-options=-v"];

type NvrtcResult = c_int;
type NvrtcProgram = *mut c_void;

/// The NVRTC entry points the check uses, with nvrtc.h's signatures.
struct Nvrtc {
    version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> NvrtcResult,
    error_string: unsafe extern "C" fn(NvrtcResult) -> *const c_char,
    create: unsafe extern "C" fn(
        *mut NvrtcProgram,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> NvrtcResult,
    destroy: unsafe extern "C" fn(*mut NvrtcProgram) -> NvrtcResult,
    compile: unsafe extern "C" fn(NvrtcProgram, c_int, *const *const c_char) -> NvrtcResult,
    log_size: unsafe extern "C" fn(NvrtcProgram, *mut usize) -> NvrtcResult,
    log: unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> NvrtcResult,
    cubin_size: unsafe extern "C" fn(NvrtcProgram, *mut usize) -> NvrtcResult,
    cubin: unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> NvrtcResult,
    /// Keeps the entry points above loaded.
    _lib: Library,
}

/// `$GEMMA_RS_CACHE`, else `$XDG_CACHE_HOME/gemma-rs`, else
/// `~/.cache/gemma-rs`: scripts/test.sh's cache.
fn cache_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("GEMMA_RS_CACHE") {
        return Some(dir.into());
    }
    let xdg = var("XDG_CACHE_HOME").map(PathBuf::from);
    let cache = xdg.or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("gemma-rs"))
}

/// Where libnvrtc is looked for, in order.
fn library_candidates() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os("GEMMA_NVRTC").filter(|v| !v.is_empty()) {
        return vec![path.into()];
    }
    let mut paths = Vec::new();
    if let Some(cache) = cache_dir() {
        let wheel = cache.join("python/nvidia/cuda_nvrtc/lib/libnvrtc.so.12");
        if wheel.exists() {
            paths.push(wheel);
        }
    }
    paths.push("libnvrtc.so.12".into());
    paths
}

impl Nvrtc {
    fn load() -> Result<Nvrtc, String> {
        let mut errors = Vec::new();
        for path in library_candidates() {
            // SAFETY: loading libnvrtc runs only its initialisers, which
            // have no preconditions. Its builtins library, which it dlopens
            // at the first compile, is found beside it through its
            // RUNPATH ($ORIGIN), so no environment is needed.
            match unsafe { Library::new(&path) } {
                Ok(lib) => return Nvrtc::from_library(lib).map_err(|e| format!("{path:?}: {e}")),
                Err(e) => errors.push(format!("{path:?}: {e}")),
            }
        }
        Err(format!(
            "cannot load libnvrtc.so.12 (set GEMMA_NVRTC, or run scripts/test.sh, \
             which installs it): {}",
            errors.join("; ")
        ))
    }

    fn from_library(lib: Library) -> Result<Nvrtc, libloading::Error> {
        // SAFETY: every type given below is the signature nvrtc.h declares
        // for that symbol, and the copied function pointers are only called
        // while `_lib` keeps the library loaded.
        unsafe {
            Ok(Nvrtc {
                version: *lib.get(b"nvrtcVersion\0")?,
                error_string: *lib.get(b"nvrtcGetErrorString\0")?,
                create: *lib.get(b"nvrtcCreateProgram\0")?,
                destroy: *lib.get(b"nvrtcDestroyProgram\0")?,
                compile: *lib.get(b"nvrtcCompileProgram\0")?,
                log_size: *lib.get(b"nvrtcGetProgramLogSize\0")?,
                log: *lib.get(b"nvrtcGetProgramLog\0")?,
                cubin_size: *lib.get(b"nvrtcGetCUBINSize\0")?,
                cubin: *lib.get(b"nvrtcGetCUBIN\0")?,
                _lib: lib,
            })
        }
    }

    fn check(&self, what: &str, result: NvrtcResult) -> Result<(), String> {
        if result == 0 {
            return Ok(());
        }
        // SAFETY: nvrtcGetErrorString takes any code and returns a static
        // NUL-terminated string.
        let text = unsafe { CStr::from_ptr((self.error_string)(result)) };
        Err(format!("{what}: {}", text.to_string_lossy()))
    }

    fn version(&self) -> Result<(i32, i32), String> {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: both pointers are to live ints that nvrtcVersion writes.
        let r = unsafe { (self.version)(&mut major, &mut minor) };
        self.check("nvrtcVersion", r)?;
        Ok((major, minor))
    }

    /// Compiles `source` with [`OPTIONS`]: the program log, and the CUBIN's
    /// size, or the error and the log.
    fn compile(&self, name: &str, source: &str) -> Result<(String, usize), String> {
        let src = CString::new(source).map_err(|e| e.to_string())?;
        let file = CString::new(format!("{name}.cu")).map_err(|e| e.to_string())?;
        let options: Vec<CString> = OPTIONS.iter().map(|o| CString::new(*o).unwrap()).collect();
        let option_ptrs: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
        let mut prog: NvrtcProgram = ptr::null_mut();
        // SAFETY: `src` and `file` are NUL-terminated and outlive the call;
        // with no headers the two header arrays may be null.
        let r = unsafe {
            (self.create)(
                &mut prog,
                src.as_ptr(),
                file.as_ptr(),
                0,
                ptr::null(),
                ptr::null(),
            )
        };
        self.check("nvrtcCreateProgram", r)?;
        let result = self.compile_program(prog, &option_ptrs);
        // SAFETY: `prog` was created above and is not used after this.
        let r = unsafe { (self.destroy)(&mut prog) };
        self.check("nvrtcDestroyProgram", r)?;
        result
    }

    fn compile_program(
        &self,
        prog: NvrtcProgram,
        options: &[*const c_char],
    ) -> Result<(String, usize), String> {
        // SAFETY: `prog` is a live program and `options` holds
        // `options.len()` NUL-terminated strings that outlive the call.
        let compiled = unsafe { (self.compile)(prog, options.len() as c_int, options.as_ptr()) };
        let mut size = 0usize;
        // SAFETY: `prog` is live; `size` is written.
        self.check("nvrtcGetProgramLogSize", unsafe {
            (self.log_size)(prog, &mut size)
        })?;
        let mut log = vec![0u8; size.max(1)];
        // SAFETY: `log` holds the `size` bytes (NUL included) NVRTC writes.
        self.check("nvrtcGetProgramLog", unsafe {
            (self.log)(prog, log.as_mut_ptr().cast())
        })?;
        let log = CStr::from_bytes_until_nul(&log)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Err(e) = self.check("nvrtcCompileProgram", compiled) {
            return Err(format!("{e}\n{log}"));
        }
        let mut cubin_size = 0usize;
        // SAFETY: `prog` is live and compiled; `cubin_size` is written.
        self.check("nvrtcGetCUBINSize", unsafe {
            (self.cubin_size)(prog, &mut cubin_size)
        })?;
        let mut cubin = vec![0u8; cubin_size];
        if cubin_size > 0 {
            // SAFETY: `cubin` holds the `cubin_size` bytes NVRTC writes.
            self.check("nvrtcGetCUBIN", unsafe {
                (self.cubin)(prog, cubin.as_mut_ptr().cast())
            })?;
        }
        if !cubin.starts_with(b"\x7fELF") {
            return Err(format!("no sm_61 CUBIN ({cubin_size} bytes)\n{log}"));
        }
        Ok((log, cubin_size))
    }
}

/// One kernel's ptxas statistics.
#[derive(Debug, Default)]
struct Stats {
    kernel: String,
    registers: u64,
    shared: u64,
    stack: u64,
    spill_stores: u64,
    spill_loads: u64,
}

/// The number just before `unit` in `line` (`"0 bytes spill stores"`).
fn number_before(line: &str, unit: &str) -> Option<u64> {
    let head = &line[..line.find(unit)?];
    head.split(|c: char| !c.is_ascii_digit())
        .rev()
        .find(|w| !w.is_empty())?
        .parse()
        .ok()
}

/// Per kernel, ptxas' verbose report in an NVRTC log:
///
/// ```text
/// ptxas info    : Compiling entry function 'rms_norm' for 'sm_61'
/// ptxas info    : Function properties for rms_norm
///     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
/// ptxas info    : Used 12 registers, 1024 bytes smem, 348 bytes cmem[0]
/// ```
fn parse_log(log: &str) -> Vec<Stats> {
    let mut out: Vec<Stats> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let kernel = rest.split('\'').next().unwrap_or_default();
            out.push(Stats {
                kernel: kernel.into(),
                ..Stats::default()
            });
        } else if let Some(s) = out.last_mut() {
            if line.contains("spill stores") {
                s.stack = number_before(line, "bytes stack frame").unwrap_or(0);
                s.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
                s.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
            } else if line.contains("Used ") && line.contains(" registers") {
                s.registers = number_before(line, " registers").unwrap_or(0);
                s.shared = number_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    out
}

fn not_run(why: &str) {
    gemma_gpu::not_run(TEST, &why);
}

#[test]
fn every_kernel_compiles_for_sm_61_without_spills_within_shared_memory() {
    let nvrtc = match Nvrtc::load() {
        Ok(n) => n,
        Err(why) => return not_run(&why),
    };
    let (major, minor) = nvrtc.version().unwrap();
    assert_eq!(
        major, 12,
        "NVRTC {major}.{minor}: the check needs 12.x (CUDA 13 dropped sm_61)"
    );
    let mut table = format!(
        "NVRTC {major}.{minor}, {}\n{:<16} {:<14} {:>9} {:>12} {:>11} {:>12} {:>11}\n",
        OPTIONS.join(" "),
        "program",
        "kernel",
        "registers",
        "shared bytes",
        "stack bytes",
        "spill stores",
        "spill loads"
    );
    let mut problems = Vec::new();
    // Printed, not failed on: NVRTC 12.9 warns on every sm_61 compile that
    // architectures before sm_75 are deprecated (and accepts no option to
    // silence it).
    let mut warnings: Vec<String> = Vec::new();
    for program in kernels::all() {
        let (log, _cubin) = match nvrtc.compile(&program.name, &program.source) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{}: {e}", program.name));
                continue;
            }
        };
        let stats = parse_log(&log);
        for line in log.lines().filter(|l| l.contains("warning")) {
            if !warnings.iter().any(|w| w == line) {
                warnings.push(line.to_string());
            }
        }
        let expected: &[&str] = if program.name == "ops" {
            &OPS_KERNELS
        } else {
            &MATMUL_KERNELS
        };
        for k in expected {
            if !stats.iter().any(|s| s.kernel == *k) {
                problems.push(format!(
                    "{}: no ptxas report for kernel {k}; log:\n{log}",
                    program.name
                ));
            }
        }
        for s in &stats {
            let _ = writeln!(
                table,
                "{:<16} {:<14} {:>9} {:>12} {:>11} {:>12} {:>11}",
                program.name,
                s.kernel,
                s.registers,
                s.shared,
                s.stack,
                s.spill_stores,
                s.spill_loads
            );
            if s.spill_stores > 0 || s.spill_loads > 0 {
                problems.push(format!(
                    "{}/{}: spills ({} bytes stored, {} loaded)",
                    program.name, s.kernel, s.spill_stores, s.spill_loads
                ));
            }
            if s.shared > MAX_SHARED_BYTES {
                problems.push(format!(
                    "{}/{}: {} bytes of shared memory, sm_61 has {MAX_SHARED_BYTES}",
                    program.name, s.kernel, s.shared
                ));
            }
        }
    }
    for w in &warnings {
        let _ = writeln!(table, "{w}");
    }
    // Straight to stderr, not through `eprint!`, which the test harness
    // captures: the report is printed by a plain `cargo test` too (CI's).
    let _ = std::io::stderr().write_all(table.as_bytes());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn ptxas_reports_are_parsed() {
    let log = "nvrtc: warning: Architectures prior to '<compute/sm>_75' are deprecated\n\
        ptxas info    : 0 bytes gmem\n\
        ptxas info    : Compiling entry function 'matvec' for 'sm_61'\n\
        ptxas info    : Function properties for matvec\n\
        ptxas         .     128 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n\
        ptxas info    : Used 32 registers, used 1 barriers, 128 bytes cumulative stack size, \
        512 bytes smem, 384 bytes cmem[0]\n\
        ptxas info    : Compiling entry function 'embed' for 'sm_61'\n\
        ptxas info    : Function properties for embed\n\
        ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
        ptxas info    : Used 68 registers, used 0 barriers, 388 bytes cmem[0]\n";
    let s = parse_log(log);
    assert_eq!(s.len(), 2);
    let m = &s[0];
    assert_eq!(m.kernel, "matvec");
    assert_eq!((m.registers, m.shared, m.stack), (32, 512, 128));
    assert_eq!((m.spill_stores, m.spill_loads), (8, 12));
    let e = &s[1];
    assert_eq!(e.kernel, "embed");
    assert_eq!(
        (e.registers, e.shared, e.stack, e.spill_stores),
        (68, 0, 0, 0)
    );
}
