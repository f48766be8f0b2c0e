//! `--device`: `auto` without OpenCL runs on the CPU and says why in one
//! line, an explicit `opencl` without it fails in one line, an OpenCL
//! device (PoCL in CI) reproduces the goldens from the command line, and
//! `gemma info --devices` lists the devices and what `auto` picks.
//!
//! "Without OpenCL" is an empty `OCL_ICD_VENDORS` folder: the ICD loader
//! then finds no platform.

use gemma_tests::{assert_logits_lines_match_golden, goldens, real_model_path, tolerance, u32s};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// `gemma args` on the real model; `no_opencl` hides every OpenCL platform.
fn gemma(args: &[&str], no_opencl: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gemma"));
    cmd.args(args)
        .env("GEMMA_MODEL", real_model_path())
        .stdin(Stdio::null());
    if no_opencl {
        cmd.env("OCL_ICD_VENDORS", empty_vendors());
    }
    cmd.output().expect("gemma runs")
}

fn stdout_ok(args: &[&str], no_opencl: bool) -> (String, String) {
    let out = gemma(args, no_opencl);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "gemma {args:?} failed: {stderr}");
    (String::from_utf8(out.stdout).expect("utf-8 stdout"), stderr)
}

/// An ICD vendors folder with no vendor in it.
fn empty_vendors() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-icd-vendors");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether an OpenCL device is there to test on. Where there is none, the
/// test prints NOT RUN (and logs it to `$GEMMA_NOT_RUN_LOG`), except under
/// CI (`CI` set), which installs PoCL and so fails instead of skipping.
fn opencl(test: &str) -> bool {
    let survey = gemma_platform::device::survey();
    if !survey.devices.is_empty() {
        return true;
    }
    gemma_gpu::not_run(test, &survey.missing.unwrap_or_default());
    false
}

/// Greedy steps of golden prompt `p` before its first near tie, at most `n`.
fn sure_steps(p: &Value, n: usize) -> usize {
    p["steps"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| (s["top1_margin"].as_f64().unwrap() as f32) < tolerance::TOP1_MARGIN)
        .unwrap_or(n)
        .min(n)
}

/// Greedy `gemma run --json` of golden prompt 0, `n` tokens, with `extra`.
fn run_golden(extra: &[&str], n: usize, no_opencl: bool) -> (Vec<u32>, String) {
    let p = &goldens()["prompts"][0];
    let n = n.to_string();
    let mut args = vec![
        "run",
        "--prompt",
        p["text"].as_str().unwrap(),
        "-n",
        &n,
        "--temperature",
        "0",
        "--json",
    ];
    args.extend(extra);
    let (out, err) = stdout_ok(&args, no_opencl);
    let v: Value = serde_json::from_str(out.trim()).expect("one JSON object on stdout");
    assert_eq!(u32s(&v["prompt_ids"]), u32s(&p["input_ids"]));
    (u32s(&v["ids"]), err)
}

fn assert_golden_ids(ids: &[u32], n: usize) {
    let p = &goldens()["prompts"][0];
    let sure = sure_steps(p, n);
    assert_eq!(ids.len(), n);
    assert_eq!(ids[..sure], u32s(&p["greedy_ids"])[..sure]);
}

/// Whether `text` gives a reason OpenCL is missing: no platform (the empty
/// vendors folder) or, on a machine without an ICD loader, no library.
fn says_opencl_is_missing(text: &str) -> bool {
    text.contains("OpenCL has no platform (no driver installed)")
        || text.contains("no OpenCL library (libOpenCL.so) could be loaded")
}

/// Non-empty lines of `text`.
fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn auto_without_opencl_runs_on_the_cpu_and_says_why_in_one_line() {
    let (ids, err) = run_golden(&["--device", "auto"], 4, true);
    assert_golden_ids(&ids, 4);
    let err = lines(&err);
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(
        err[0].starts_with("gemma: device: cpu (auto: ") && says_opencl_is_missing(err[0]),
        "{err:?}"
    );
    // `auto` is the default.
    let (_, err) = run_golden(&[], 1, true);
    assert_eq!(lines(&err).len(), 1, "{err}");
    assert!(err.starts_with("gemma: device: cpu (auto: "), "{err}");
    // Named outright, the CPU needs no word.
    let (_, err) = run_golden(&["--device", "cpu"], 1, true);
    assert!(lines(&err).is_empty(), "{err}");
}

#[test]
fn opencl_without_opencl_fails_in_one_line_on_every_command() {
    let text = std::env::temp_dir().join(format!("gemma-device-{}.txt", std::process::id()));
    std::fs::write(&text, "The capital of France is").unwrap();
    let file = text.to_str().unwrap();
    let commands: [&[&str]; 6] = [
        &["run", "--prompt", "x", "-n", "1"],
        &["chat"],
        &["serve", "--port", "0"],
        &["logits", "--ids", "2,818"],
        &["perplexity", "--file", file],
        &["bench", "--prompt-tokens", "8", "--decode-tokens", "1"],
    ];
    for device in ["opencl", "opencl:1"] {
        for args in commands {
            let args = [args, &["--device", device]].concat();
            let out = gemma(&args, true);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} should fail: {err}");
            assert!(!err.contains("panicked"), "{args:?}: {err}");
            let err = lines(&err);
            assert_eq!(err.len(), 1, "{args:?}: {err:?}");
            assert!(
                err[0].starts_with("gemma: error: --device opencl:")
                    && says_opencl_is_missing(err[0]),
                "{args:?}: {err:?}"
            );
            assert!(out.stdout.is_empty(), "{args:?}");
        }
    }
    let _ = std::fs::remove_file(&text);
}

#[test]
fn a_device_takes_only_exact_precision_and_auto_with_fast_stays_on_the_cpu() {
    let out = gemma(
        &[
            "logits",
            "--ids",
            "2,818",
            "--device",
            "opencl",
            "--precision",
            "fast",
        ],
        false,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(lines(&err).len(), 1, "{err}");
    assert!(err.contains("--precision exact"), "{err}");
    let (out, err) = stdout_ok(&["logits", "--ids", "2,818", "--precision", "fast"], false);
    assert_eq!(out.lines().count(), 2);
    assert_eq!(
        lines(&err),
        ["gemma: device: cpu (auto: --precision fast runs on the CPU only)"]
    );
    let out = gemma(&["logits", "--ids", "2", "--device", "gpu"], false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("auto, cpu, opencl or opencl:N"), "{err}");
}

#[test]
fn info_devices_without_opencl_says_why_and_that_auto_is_the_cpu() {
    let (out, _) = stdout_ok(&["info", "--devices"], true);
    let out = lines(&out);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out[0].starts_with("no OpenCL devices: "), "{out:?}");
    assert!(out[1].starts_with("auto: cpu ("), "{out:?}");
    assert!(out.iter().all(|l| says_opencl_is_missing(l)), "{out:?}");
}

/// Needs no model (`$GEMMA_MODEL` is set here, and not read).
#[test]
fn info_devices_lists_every_device_and_what_auto_picks() {
    let test = "info_devices_lists_every_device_and_what_auto_picks";
    if !opencl(test) {
        return;
    }
    let (out, _) = stdout_ok(&["info", "--devices"], false);
    assert!(!out.contains("plan for"), "{out}");
    let survey = gemma_platform::device::survey();
    for d in &survey.devices {
        assert!(out.contains(d.as_str()), "{d} in {out}");
    }
    assert!(out.starts_with("opencl:0 "), "{out}");
    assert!(out.contains("memory ") && out.contains("driver "), "{out}");
    let auto = out.lines().last().unwrap();
    // Each device's first line says `(vendor KIND; platform)`.
    let all_cpu = out
        .lines()
        .filter(|l| l.starts_with("opencl:"))
        .all(|l| l.contains(" CPU; "));
    if all_cpu {
        // PoCL: the CPU backend beats the CPU's OpenCL device.
        assert!(
            auto.starts_with("auto: cpu (") && auto.contains("is the CPU itself"),
            "{out}"
        );
    } else {
        assert!(auto.starts_with("auto: opencl:"), "{out}");
    }
}

#[test]
fn opencl_run_reproduces_the_golden_greedy_ids() {
    let test = "opencl_run_reproduces_the_golden_greedy_ids";
    if !opencl(test) {
        return;
    }
    let n = 6;
    let (ids, err) = run_golden(&["--device", "opencl", "--stats"], n, false);
    assert_golden_ids(&ids, n);
    assert!(!err.contains("gemma: device:"), "named outright: {err}");
    assert!(
        err.contains("on opencl:0 "),
        "--stats names the device: {err}"
    );
    let (cpu, _) = run_golden(&["--device", "cpu"], n, false);
    assert_eq!(ids, cpu);
}

/// Partial offload: the first 9 of the 18 layers on the device, the rest
/// (and the output projection) on the CPU.
#[test]
fn opencl_with_half_the_layers_reproduces_the_golden_greedy_ids() {
    let test = "opencl_with_half_the_layers_reproduces_the_golden_greedy_ids";
    if !opencl(test) {
        return;
    }
    let n = 6;
    let args = ["--device", "opencl", "--gpu-layers", "9", "--stats"];
    let (ids, err) = run_golden(&args, n, false);
    assert_golden_ids(&ids, n);
    assert!(
        err.contains("layers 0..9 of 18"),
        "--stats names the split: {err}"
    );
    let bad = gemma(
        &["run", "-p", "x", "--device", "opencl", "--gpu-layers", "x"],
        false,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--gpu-layers"));
}

#[test]
fn opencl_logits_reproduce_the_golden_steps() {
    let test = "opencl_logits_reproduce_the_golden_steps";
    if !opencl(test) {
        return;
    }
    let p = &goldens()["prompts"][0];
    let ids: Vec<String> = u32s(&p["input_ids"])
        .iter()
        .map(|i| i.to_string())
        .collect();
    let args = ["logits", "--ids", &ids.join(","), "--top", "20"];
    let (out, _) = stdout_ok(&[&args[..], &["--device", "opencl"]].concat(), false);
    assert_logits_lines_match_golden(&out, 0);
}

/// Perplexity reads logits rows of a prefill pass: on the device too.
#[test]
fn opencl_perplexity_matches_the_golden_nll() {
    let test = "opencl_perplexity_matches_the_golden_nll";
    if !opencl(test) {
        return;
    }
    let p = &goldens()["prompts"][0];
    let path = std::env::temp_dir().join(format!("gemma-device-ppl-{}.txt", std::process::id()));
    std::fs::write(&path, p["text"].as_str().unwrap()).unwrap();
    let args = [
        "perplexity",
        "--json",
        "--device",
        "opencl",
        "--file",
        path.to_str().unwrap(),
    ];
    let (out, _) = stdout_ok(&args, false);
    let _ = std::fs::remove_file(&path);
    let v: Value = serde_json::from_str(&out).unwrap();
    let want = p["prompt_mean_nll"].as_f64().unwrap();
    let got = v["mean_nll"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-4, "{got} vs {want}");
}

/// `gemma bench` says which device it measured.
#[test]
fn bench_reports_the_device_it_measured() {
    let path = std::env::temp_dir().join(format!("gemma-device-bench-{}.gguf", std::process::id()));
    std::fs::write(
        &path,
        gemma_platform::synthetic::tiny_model(&gemma_platform::synthetic::TinySpec::default()),
    )
    .unwrap();
    let model = path.to_str().unwrap();
    let bench = |device: &str| -> Value {
        let args = [
            "bench",
            "--json",
            "--model",
            model,
            "--prompt-tokens",
            "16",
            "--decode-tokens",
            "2",
            "--runs",
            "1",
            "--device",
            device,
        ];
        serde_json::from_str(&stdout_ok(&args, false).0).unwrap()
    };
    assert_eq!(bench("cpu")["device"], "cpu");
    if opencl("bench_reports_the_device_it_measured") {
        let v = bench("opencl");
        let device = v["device"].as_str().unwrap();
        assert!(device.starts_with("opencl:0 "), "{v}");
        assert!(v["decode_tok_s"].as_f64().is_some_and(|x| x > 0.0), "{v}");
    }
    let _ = std::fs::remove_file(&path);
}

/// `gemma serve --device opencl`: `/v1/models` names the device, a
/// completion gives the golden greedy text, the same prompt again is served
/// from the cache the conversation keeps on the device, and SIGTERM still
/// shuts the server down gracefully (the OpenCL runtime's own signal
/// handlers must not stay in place).
#[test]
fn serve_on_a_device_answers_from_its_cache_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read};
    use std::time::{Duration, Instant};
    let test = "serve_on_a_device_answers_from_its_cache_and_stops_on_sigterm";
    if !opencl(test) {
        return;
    }
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("device-serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gemma"))
        .args([
            "serve",
            "--port",
            "0",
            "--context",
            "64",
            "--device",
            "opencl",
        ])
        .env("GEMMA_MODEL", real_model_path())
        .env_remove("GEMMA_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("gemma serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let Some(addr) = line.trim().strip_prefix("gemma: listening on ") else {
        let _ = child.kill();
        panic!("no address: {line:?}: {}", log_text());
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let json = |resp: ureq::http::Response<ureq::Body>| -> Value {
        let mut text = String::new();
        resp.into_body()
            .into_reader()
            .read_to_string(&mut text)
            .unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let models = json(agent.get(format!("{addr}/v1/models")).call().unwrap());
    let device = models["data"][0]["device"].as_str().unwrap_or_default();
    assert!(device.starts_with("opencl:0 "), "{models}");

    let p = &goldens()["prompts"][0];
    let request = serde_json::json!({
        "prompt": p["text"],
        "max_tokens": 4,
        "temperature": 0,
    })
    .to_string();
    let complete = || {
        let resp = agent
            .post(format!("{addr}/v1/completions"))
            .header("Content-Type", "application/json")
            .send(request.as_str())
            .unwrap();
        json(resp)
    };
    let first = complete();
    let text = first["choices"][0]["text"].as_str().unwrap();
    let golden = p["greedy_text"].as_str().unwrap();
    assert!(
        !text.is_empty() && golden.starts_with(text),
        "{text:?} vs {golden:?}"
    );
    let again = complete();
    assert_eq!(again["choices"][0]["text"], first["choices"][0]["text"]);
    let prompt = u32s(&p["input_ids"]).len() as u64;
    let cached = &again["usage"]["prompt_tokens_details"]["cached_tokens"];
    assert_eq!(cached.as_u64(), Some(prompt - 1), "{again}");

    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if sent.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("still running 10 s after SIGTERM: {}", log_text());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}: {}", log_text());
    assert!(log_text().contains("shutting down"), "{}", log_text());
}

/// With a model (a file, or one gemma.cpp knows by name and an encoding),
/// `info --devices` says how much of it a device holds: the planner's
/// arithmetic, which needs no device when given --memory.
#[test]
fn info_devices_plans_a_model_for_a_device_of_given_memory() {
    let model = real_model_path();
    let model = model.to_str().unwrap();
    let args = [
        "info",
        "--devices",
        "--model",
        model,
        "--context",
        "2048",
        "--memory",
        "2048",
    ];
    let (out, _) = stdout_ok(&args, true);
    assert!(
        out.contains("plan for ") && out.contains("18 layers"),
        "{out}"
    );
    let line = out
        .lines()
        .position(|l| l.contains("--memory 2048 (2048 MiB)"))
        .expect(&out);
    assert!(
        out.lines()
            .nth(line)
            .unwrap()
            .contains("all 18 layers and the output"),
        "{out}"
    );
    assert!(out.contains("(context 2048)"), "{out}");
    // Gemma 3 1B at Q8_0 fits 2 GB whole; Gemma 2 2B at Q4_K_M, with its
    // f32 cache of 4096 positions, only in part.
    let known = |name: &str, weights: &str| {
        let args = [
            "info",
            "--devices",
            "--known",
            name,
            "--weights",
            weights,
            "--memory",
            "2048",
        ];
        stdout_ok(&args, true).0
    };
    let one = known("Gemma3_1B", "q8_0");
    assert!(
        one.contains("26 layers") && one.contains("all 26 layers and the output"),
        "{one}"
    );
    let two = known("gemma2-2b", "q4_k_m");
    assert!(
        two.contains("layers 0..") && two.contains("the rest on the CPU"),
        "{two}"
    );
    // Planning needs a model named outright; the listing does not.
    let unnamed = gemma(&["info", "--devices", "--memory", "2048"], true);
    assert!(!unnamed.status.success());
    assert!(String::from_utf8_lossy(&unnamed.stderr).contains("--known"));
    // Unknown names and encodings are refused with the list.
    let bad = gemma(
        &["info", "--devices", "--known", "Gemma9", "--memory", "1"],
        true,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Gemma3_1B"));
}
