//! `gemma compare A.sbs B.sbs`, `gemma info --distortion --reference R`
//! and `gemma convert --distortion`: which blobs of two `.sbs` files differ,
//! and how far each tensor's decoded values lie from a reference's.

use clap::Args;
use gemma_platform::compare::{compare as compare_files, Distortion};
use gemma_platform::loaded::map_file;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct CompareArgs {
    /// The reference file
    pub a: PathBuf,
    /// The file measured against it
    pub b: PathBuf,
}

fn out(s: String) -> Result<(), String> {
    writeln!(std::io::stdout().lock(), "{s}").map_err(|e| e.to_string())
}

/// One line of tensor statistics.
pub fn distortion_line(name: &str, codecs: &str, d: &Distortion) -> String {
    let snr = if d.is_exact() {
        "exact".to_string()
    } else {
        format!("{:.1} dB", d.snr_db())
    };
    format!(
        "  {name:<20} {codecs:<11} SNR {snr:>9}  max |err| {:.3e}  mean |err| {:.3e}",
        d.max_abs,
        d.mean_abs()
    )
}

fn read(path: &Path) -> Result<impl std::ops::Deref<Target = [u8]>, String> {
    map_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn compare(a: CompareArgs) -> Result<(), String> {
    let (fa, fb) = (read(&a.a)?, read(&a.b)?);
    let c = compare_files(&fa, &fb)?;
    for name in &c.only_in_a {
        out(format!("only in {}: {name}", a.a.display()))?;
    }
    for name in &c.only_in_b {
        out(format!("only in {}: {name}", a.b.display()))?;
    }
    for name in &c.differing {
        if !c.tensors.iter().any(|t| &t.name == name) {
            out(format!("differs: {name}"))?;
        }
    }
    for t in c.tensors.iter().filter(|t| !t.same_bytes) {
        let codecs = format!("{}->{}", t.codecs.0.name(), t.codecs.1.name());
        match &t.distortion {
            Some(d) => out(distortion_line(&t.name, &codecs, d))?,
            None => out(format!("  {:<20} shapes differ", t.name))?,
        }
    }
    if c.identical() {
        out(format!("identical: {} blobs", c.same))
    } else {
        out(format!(
            "{} blobs differ, {} only in the first, {} only in the second, {} identical",
            c.differing.len(),
            c.only_in_a.len(),
            c.only_in_b.len(),
            c.same
        ))
    }
}

/// `gemma info --distortion --reference R --model M`: every tensor of `M`
/// against the same tensor of `R` (e.g. the F32 conversion).
pub fn distortion(model: &Path, reference: &Path) -> Result<(), String> {
    let (fr, fm) = (read(reference)?, read(model)?);
    let c = compare_files(&fr, &fm)?;
    if c.tensors.is_empty() {
        return Err("no tensors in common (are both gemma.cpp .sbs models?)".into());
    }
    let mut total = Distortion::default();
    out(format!(
        "{} against {}:",
        model.display(),
        reference.display()
    ))?;
    for t in &c.tensors {
        let codecs = format!("{}->{}", t.codecs.0.name(), t.codecs.1.name());
        match &t.distortion {
            Some(d) => {
                out(distortion_line(&t.name, &codecs, d))?;
                total.merge(d);
            }
            None => out(format!("  {:<20} shapes differ", t.name))?,
        }
    }
    out(distortion_line("all tensors", "", &total))
}
