//! The subcommands. Each error is returned as one line for `main` to print.

use crate::{ComputeArgs, InfoArgs, LogitsArgs, ModelArgs, RunArgs, TokenizeArgs};
use gemma_core::format::gguf::Value;
use gemma_core::generate::PrefillProgress;
use gemma_core::generate::StopReason;
use gemma_core::sampling::Sampler;
use gemma_platform::{
    ChatTemplate, Conversation, Generator, LoadedModel, Speaker, Streamed, WorkerPool,
};
use serde_json::json;
use std::io::{IsTerminal, Read, Write};

type Result<T> = std::result::Result<T, String>;

fn load(args: &ModelArgs) -> Result<LoadedModel> {
    args.load()
}

fn executor(c: &ComputeArgs) -> Result<WorkerPool> {
    WorkerPool::new(c.threads).map_err(|e| format!("cannot start worker threads: {e}"))
}

fn read_stdin(what: &str) -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| format!("reading the {what} from stdin: {e}"))?;
    Ok(s)
}

pub fn run(a: RunArgs) -> Result<()> {
    let params = a.sampling.params()?;
    let seed = params.seed;
    let mut sampler = Sampler::new(params).map_err(|e| e.to_string())?;
    let text = match &a.prompt {
        Some(p) => p.clone(),
        None => read_stdin("prompt")?,
    };

    let mut loaded = load(&a.model)?;
    loaded.set_precision(a.compute.precision());
    let tokenizer = loaded.tokenizer();
    let prompt = if a.chat {
        ChatTemplate::new(tokenizer)
            .ok_or("this model's vocabulary has no <start_of_turn>/<end_of_turn>; --chat needs Gemma's turn tokens")?
            .prompt(&[(Speaker::User, &text)])
    } else {
        tokenizer.encode_to_vec(&text, true).map(|ids| {
            let mut prompt = vec![tokenizer.bos_id()];
            prompt.extend(ids);
            prompt
        })
    }
    .map_err(|e| format!("tokenizing the prompt: {e}"))?;

    if let Some(limit) = a.max_prompt_tokens {
        if prompt.len() > limit {
            return Err(format!(
                "the prompt has {} tokens, more than --max-prompt-tokens {limit}",
                prompt.len()
            ));
        }
    }
    let exec = executor(&a.compute)?;
    let generator = Generator {
        show_special: a.special,
        penalties: a.sampling.penalties(loaded.model().config.vocab_size)?,
        ..Generator::new(&loaded, &exec)
    };
    let max_ctx = generator.model.config.context_length;
    let wanted = prompt.len().saturating_add(a.max_tokens);
    let context = a.context.unwrap_or(wanted.min(max_ctx)).max(1);
    if context > max_ctx {
        return Err(format!(
            "--context {context} exceeds the model's context length {max_ctx}"
        ));
    }
    if prompt.len() > context {
        return Err(format!(
            "the prompt has {} tokens, more than the context of {context}",
            prompt.len()
        ));
    }
    let batch = (a.compute.batch as usize).min(context);
    let engine = crate::device::engine(&a.compute, &generator.model)?;
    let mut conv =
        Conversation::on(&engine, &generator.model, context, batch).map_err(|e| e.to_string())?;
    // A prefill that runs a second shows a bar on stderr, when that is a
    // terminal; it is cleared before the reply is printed.
    let prefill_bar = crate::progress::Progress::new("prefill", "tokens");
    let report = |done: usize, total: usize| prefill_bar.report(done, total);
    let generator = Generator {
        prefill_progress: std::io::stderr()
            .is_terminal()
            .then_some(&report as PrefillProgress),
        ..generator
    };

    let mut write_failed = None;
    let json_out = a.json;
    let started = std::time::Instant::now();
    let mut first_token_at = None;
    let out = generator
        .turn(&mut conv, &prompt, &mut sampler, a.max_tokens, &mut |s| {
            let text = match s {
                Streamed::Token { text, .. } => {
                    first_token_at.get_or_insert_with(std::time::Instant::now);
                    text
                }
                Streamed::End { text } => text,
            };
            if json_out {
                return true;
            }
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(text.as_bytes())
                .and_then(|_| stdout.flush())
            {
                Ok(()) => true,
                Err(e) => {
                    write_failed = Some(e);
                    false
                }
            }
        })
        .map_err(|e| conv.explain(&e))?;
    let outcome = out.stats.outcome;
    let mut stdout = std::io::stdout().lock();
    if let Some(e) = write_failed {
        return Err(format!("writing to stdout: {e}"));
    }
    if a.json {
        let text = tokenizer.decode_to_string(&out.ids, !a.special);
        let obj = json!({ "prompt_ids": prompt, "ids": out.ids, "text": text, "seed": seed });
        writeln!(stdout, "{obj}").map_err(|e| e.to_string())?;
    } else {
        writeln!(stdout).map_err(|e| e.to_string())?;
    }
    if a.stats {
        let done = std::time::Instant::now();
        let first = first_token_at.unwrap_or(done);
        let prefill_s = (first - started).as_secs_f64();
        let decode_s = (done - first).as_secs_f64();
        // The first token comes out of the prefill; the rest each cost one decode step.
        let decoded = outcome.generated.saturating_sub(1);
        eprintln!(
            "gemma: prefill {} tokens in {:.0} ms ({:.1} tok/s); decode {} tokens in {:.0} ms ({:.1} tok/s); {}",
            prompt.len(),
            prefill_s * 1e3,
            prompt.len() as f64 / prefill_s.max(1e-9),
            decoded,
            decode_s * 1e3,
            decoded as f64 / decode_s.max(1e-9),
            if engine.is_cpu() {
                format!("{} threads", gemma_core::exec::Executor::threads(&exec))
            } else {
                format!("on {engine}")
            },
        );
    }
    if outcome.stop == StopReason::ContextFull {
        eprintln!("gemma: stopped: the context of {context} tokens is full (raise --context)");
    }
    Ok(())
}

pub fn tokenize(a: TokenizeArgs) -> Result<()> {
    let text = match &a.text {
        Some(t) => t.clone(),
        None => read_stdin("text")?,
    };
    let loaded = load(&a.model)?;
    let tokenizer = loaded.tokenizer();
    let ids = tokenizer
        .encode_to_vec(&text, !a.no_special)
        .map_err(|e| e.to_string())?;
    if a.json {
        println!("{}", json!(ids));
    } else {
        for id in ids {
            let piece = tokenizer
                .piece(id)
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            println!("{id}\t{piece:?}");
        }
    }
    Ok(())
}

fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .map_err(|_| format!("--ids: '{t}' is not a token id"))
        })
        .collect()
}

pub fn logits(a: LogitsArgs) -> Result<()> {
    let ids = parse_ids(&a.ids)?;
    if ids.is_empty() {
        return Err("--ids: no token ids given".into());
    }
    let mut loaded = load(&a.model)?;
    loaded.set_precision(a.compute.precision());
    let model = loaded.model();
    let vocab = model.config.vocab_size;
    if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
        return Err(format!(
            "--ids: token id {bad} is outside the vocabulary of {vocab}"
        ));
    }
    if ids.len() > model.config.context_length {
        return Err(format!(
            "--ids: {} tokens exceed the model's context length",
            ids.len()
        ));
    }
    let batch = (a.compute.batch as usize).min(ids.len());
    let exec = executor(&a.compute)?;
    let engine = crate::device::engine(&a.compute, &model)?;
    let mut memory = engine
        .memory(&model.config, ids.len(), batch)
        .map_err(|e| e.to_string())?;
    let top = a.top.min(vocab);
    let mut logits = vec![0f32; batch * vocab];
    let mut stdout = std::io::stdout().lock();
    let mut pos = 0;
    let precision = loaded.precision();
    crate::device::in_session(&mut memory, &model, &exec, precision, |session| {
        for chunk in ids.chunks(batch) {
            session.forward_logits(chunk, &mut logits)?;
            for row in logits.chunks_exact(vocab).take(chunk.len()) {
                let best = top_indices(row, top);
                let line = json!({
                    "pos": pos,
                    "top_ids": best,
                    "top_logits": best.iter().map(|&i| row[i as usize]).collect::<Vec<_>>(),
                });
                writeln!(stdout, "{line}").map_err(|e| e.to_string())?;
                pos += 1;
            }
        }
        Ok(())
    })
}

/// The `k` largest entries, largest first, ties to the lower id; without a full sort.
fn top_indices(row: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    let cmp = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, cmp);
    }
    idx.truncate(k);
    idx.sort_by(cmp);
    idx
}

fn show_value(v: &Value) -> String {
    match v {
        Value::String(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Value::Array(a) => {
            let first: Vec<String> = a
                .strings()
                .take(3)
                .map(|s| format!("{:?}", String::from_utf8_lossy(s)))
                .collect();
            if first.is_empty() {
                format!("[{:?}; {}]", a.elem, a.len)
            } else {
                format!("[{}, ...; {} strings]", first.join(", "), a.len)
            }
        }
        Value::Bool(b) => b.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        other => other
            .as_u64()
            .map_or_else(|| format!("{other:?}"), |u| u.to_string()),
    }
}

pub fn info(a: InfoArgs) -> Result<()> {
    use crate::inspect::{self, Kind};
    if a.devices {
        crate::device::list()?;
        // A plan needs a model named outright (--model or --known); the
        // listing alone needs none.
        let model_named = a.known.is_some() || a.model.model.is_some();
        if !model_named && (a.context.is_some() || a.memory.is_some()) {
            return Err(
                "--context and --memory plan for a model: name one with --model or --known".into(),
            );
        }
        return if model_named {
            crate::device::plans(&a)
        } else {
            Ok(())
        };
    }
    let path = a.model.path()?;
    match inspect::kind(&path)? {
        Kind::Model => {}
        Kind::Safetensors => return inspect::safetensors(&path, a.tensors),
        Kind::SafetensorsDir => return inspect::safetensors_dir(&path, a.tensors),
        Kind::Other => return inspect::spm(&path),
    }
    if let (true, Some(reference)) = (a.distortion, &a.reference) {
        return crate::compare::distortion(&path, reference);
    }
    let loaded = load(&a.model)?;
    if a.check {
        return check_weights(&loaded);
    }
    let model = loaded.model();
    let mut out = std::io::stdout().lock();
    let w =
        |out: &mut std::io::StdoutLock, s: String| writeln!(out, "{s}").map_err(|e| e.to_string());
    let Some(g) = loaded.gguf() else {
        let f = loaded.sbs().ok_or("unknown model format")?;
        w(
            &mut out,
            format!(
                "file: {} ({} bytes, gemma.cpp .sbs, {})",
                loaded.path().display(),
                loaded.file_len(),
                f.config.specifier()
            ),
        )?;
        w(&mut out, format!("config: {:?}", model.config))?;
        let tensors: Vec<_> = f.tensors().collect();
        w(&mut out, format!("tensors: {}", tensors.len()))?;
        if a.tensors {
            for t in &tensors {
                w(
                    &mut out,
                    format!(
                        "  {:<32} {:<5} [{}, {}] scale {} {} bytes",
                        t.name,
                        t.codec.name(),
                        t.rows,
                        t.cols,
                        t.scale,
                        t.bytes.len()
                    ),
                )?;
            }
        }
        return Ok(());
    };
    w(
        &mut out,
        format!(
            "file: {} ({} bytes, GGUF v{})",
            loaded.path().display(),
            loaded.file_len(),
            g.version
        ),
    )?;
    w(&mut out, format!("config: {:?}", model.config))?;
    w(
        &mut out,
        format!("metadata ({} entries):", g.metadata_count()),
    )?;
    for (k, v) in g.metadata() {
        w(&mut out, format!("  {k} = {}", show_value(&v)))?;
    }
    let mut by_type = std::collections::BTreeMap::new();
    for t in g.tensors() {
        *by_type.entry(t.ty.name()).or_insert(0usize) += 1;
    }
    w(
        &mut out,
        format!("tensors: {} {:?}", g.tensor_count(), by_type),
    )?;
    if a.tensors {
        for t in g.tensors() {
            let dims: Vec<String> = t.dims[..t.n_dims].iter().map(|d| d.to_string()).collect();
            w(
                &mut out,
                format!(
                    "  {:<32} {:<5} [{}] {} bytes",
                    t.name,
                    t.ty.name(),
                    dims.join(", "),
                    t.data.len()
                ),
            )?;
        }
    }
    Ok(())
}

pub fn convert(a: crate::ConvertArgs) -> Result<()> {
    use gemma_core::codec::Codec;
    let codec = Codec::ALL
        .into_iter()
        .find(|c| c.name().eq_ignore_ascii_case(&a.weights))
        .ok_or_else(|| {
            format!(
                "unknown --weights {:?} (f32, bf16, sfp, nuq, i8)",
                a.weights
            )
        })?;
    use gemma_platform::convert as conv;
    // Cheap checks first, each naming the file it is about: the output's
    // folder, the tokenizer, what --from is.
    conv::check_output(&a.to).map_err(|e| e.to_string())?;
    let proto = match &a.tokenizer {
        Some(p) => Some(conv::read_tokenizer(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let input = conv::input_kind(&a.from).map_err(|e| e.to_string())?;
    // Tensors written, on a bar once the conversion has run a second.
    let bar = crate::progress::Progress::new("convert", "tensors");
    let progress = |done: usize, total: usize| bar.report(done, total);
    let list = conv::to_sbs(
        input,
        &a.from,
        &a.to,
        codec,
        proto.as_deref(),
        a.distortion,
        &progress,
    )
    .map_err(|e| e.to_string())?
    .unwrap_or_default();
    bar.finish();
    if !a.distortion {
        return Ok(());
    }
    let mut total = gemma_platform::compare::Distortion::default();
    let mut out = std::io::stdout().lock();
    for t in &list {
        writeln!(
            out,
            "{}",
            crate::compare::distortion_line(&t.name, t.codec.name(), &t.distortion)
        )
        .map_err(|e| e.to_string())?;
        total.merge(&t.distortion);
    }
    writeln!(
        out,
        "{}",
        crate::compare::distortion_line("all tensors", "", &total)
    )
    .map_err(|e| e.to_string())
}

/// `gemma info --check`: one line per tensor with NaN or infinity.
fn check_weights(loaded: &gemma_platform::LoadedModel) -> Result<()> {
    let (found, checked) = crate::check::non_finite_tensors(loaded)?;
    let mut out = std::io::stdout().lock();
    for f in &found {
        writeln!(
            out,
            "{}: {} NaN, {} infinite, first at element {}",
            f.name, f.nan, f.inf, f.first
        )
        .map_err(|e| e.to_string())?;
    }
    if found.is_empty() {
        writeln!(out, "checked {checked} tensors: every weight is finite")
            .map_err(|e| e.to_string())?;
        Ok(())
    } else {
        Err(format!(
            "{} of {checked} tensors hold NaN or infinite weights",
            found.len()
        ))
    }
}
