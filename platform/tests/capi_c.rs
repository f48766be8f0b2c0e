//! Compiles `tests/c/capi_demo.c` with gcc against `include/gemma.h`, links
//! it to the static library cargo built for this package, and runs it on the
//! real model: once as is, then under valgrind (memcheck, leak check), or,
//! where valgrind is missing, built with AddressSanitizer. Any memory error
//! or definite leak fails the test; so does having neither tool.
//!
//! Under valgrind a forward pass of the real model takes about 30 s (the
//! AVX2 kernels run emulated), so there the program runs in its `quick`
//! mode: the same calls, 3 tokens for the golden check and 1 per later turn.
//!
//! `GEMMA_CAPI_CHECKER=valgrind|asan` picks the tool.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// The libraries a Rust staticlib needs on Linux
/// (`rustc --print native-static-libs`).
const NATIVE_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

/// The package's static library. This test runs as
/// `target/<profile>/deps/capi_c-<hash>`; cargo writes the libraries of the
/// package under test (all its crate types) into that same `deps` folder
/// (`cargo build` also copies them up to `target/<profile>`).
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let lib = exe
        .parent()
        .expect("the test runs from target/<profile>/deps")
        .join("libgemma_platform.a");
    assert!(
        lib.is_file(),
        "{} is missing: cargo builds it with this package's tests \
         (crate-type staticlib in platform/Cargo.toml)",
        lib.display()
    );
    lib
}

fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn build(exe: &Path, extra: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    run(Command::new("gcc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-g"])
        .args(extra)
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/c/capi_demo.c"))
        .arg(static_lib())
        .args(NATIVE_LIBS)
        .arg("-o")
        .arg(exe))
}

fn has_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn c_program_generates_with_two_conversations_free_of_memory_errors() {
    let model = gemma_tests::real_model_path();
    let work = std::env::temp_dir().join(format!("gemma-capi-c-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();

    let exe = work.join("capi_demo");
    let out = build(&exe, &[]);
    assert!(out.status.success(), "gcc failed: {}", show(&out));
    let started = Instant::now();
    let out = run(Command::new(&exe).env("GEMMA_MODEL", &model));
    eprintln!("capi_demo: {:.1?}", started.elapsed());
    assert!(out.status.success(), "capi_demo failed: {}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("capi_demo: ok"), "{}", show(&out));
    // `gemma_default_model` names the file the CLI's default is (fetched
    // above when GEMMA_MODEL is unset, and here otherwise).
    let default_model = gemma_platform::fetch::ensure_default_model(&mut std::io::stderr())
        .expect("the default model is fetched");
    assert!(
        stdout.contains(&format!("default model: {}\n", default_model.display())),
        "{}",
        show(&out)
    );

    let checker = std::env::var("GEMMA_CAPI_CHECKER")
        .unwrap_or_else(|_| if has_valgrind() { "valgrind" } else { "asan" }.to_string());
    let started = Instant::now();
    let out = match checker.as_str() {
        "valgrind" => {
            assert!(
                has_valgrind(),
                "valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)"
            );
            run(Command::new("valgrind")
                .args([
                    "--error-exitcode=1",
                    "--leak-check=full",
                    "--errors-for-leak-kinds=definite",
                    "--show-leak-kinds=definite",
                ])
                .arg(&exe)
                .arg("quick")
                .env("GEMMA_MODEL", &model))
        }
        "asan" => {
            let asan = work.join("capi_demo_asan");
            let out = build(&asan, &["-fsanitize=address", "-fno-omit-frame-pointer"]);
            assert!(
                out.status.success(),
                "neither valgrind nor AddressSanitizer is available to check the C API \
                 for memory errors (install valgrind: apt-get install valgrind): {}",
                show(&out)
            );
            run(Command::new(&asan)
                .env("GEMMA_MODEL", &model)
                .env("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1"))
        }
        other => panic!("GEMMA_CAPI_CHECKER={other}: expected valgrind or asan"),
    };
    eprintln!("capi_demo under {checker}: {:.1?}", started.elapsed());
    assert!(
        out.status.success(),
        "capi_demo under {checker} found errors: {}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("capi_demo: ok"),
        "{}",
        show(&out)
    );
    let _ = std::fs::remove_dir_all(&work);
}
