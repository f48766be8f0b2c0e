//! `gemma`: run, inspect and tokenize with Gemma models from the command line.

mod bench;
mod chat;
mod check;
mod client;
mod commands;
mod compare;
mod device;
mod inspect;
mod perplexity;
mod progress;
mod serve;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gemma",
    version,
    about = "Gemma inference in Rust",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a continuation of a prompt, streaming it to stdout.
    #[command(allow_negative_numbers = true)]
    Run(RunArgs),
    /// Talk with the model turn by turn; the conversation stays in its cache.
    #[command(allow_negative_numbers = true)]
    Chat(chat::ChatArgs),
    /// Print the token ids of a text (no BOS).
    Tokenize(TokenizeArgs),
    /// Teacher-forced logits: one JSON line per input position.
    Logits(LogitsArgs),
    /// Print a model's metadata and tensor table, or (--devices) the OpenCL devices.
    Info(InfoArgs),
    /// Convert a GGUF file, a Hugging Face checkpoint directory or a pre-2025 .sbs file into a gemma.cpp `.sbs` file.
    Convert(ConvertArgs),
    /// Serve the model over HTTP: OpenAI-compatible and Google API routes.
    Serve(serve::ServeArgs),
    /// Chat with an OpenAI-compatible server, streaming the replies.
    Client(client::ClientArgs),
    /// Measure prefill and decode speed, time to first token and memory.
    Bench(bench::BenchArgs),
    /// Which blobs of two .sbs files differ, and by how much their tensors do.
    Compare(compare::CompareArgs),
    /// Cross-entropy and perplexity of the model over a text file.
    Perplexity(perplexity::PerplexityArgs),
}

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// GGUF or gemma.cpp .sbs model file [default: $GEMMA_MODEL, else Gemma 3 270M, fetched and cached]
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
}

impl ModelArgs {
    /// `--model`, else `$GEMMA_MODEL`, else the default model (fetched once).
    pub fn load(&self) -> Result<gemma_platform::LoadedModel, String> {
        let path = self.path()?;
        // Every error of `open` names the file.
        gemma_platform::LoadedModel::open(&path).map_err(|e| e.to_string())
    }

    /// Whether the user named no model (neither `--model` nor
    /// `$GEMMA_MODEL`), so [`Self::path`] falls back to the default one.
    pub fn is_default(&self) -> bool {
        self.model.is_none() && std::env::var_os("GEMMA_MODEL").is_none()
    }

    /// The model's path: `--model`, else `$GEMMA_MODEL`, else the default
    /// model (fetched once).
    pub fn path(&self) -> Result<PathBuf, String> {
        Ok(match (&self.model, std::env::var_os("GEMMA_MODEL")) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => PathBuf::from(p),
            (None, None) => gemma_platform::fetch::ensure_default_model(&mut std::io::stderr())
                .map_err(|e| e.to_string())?,
        })
    }
}

/// Sampling flags shared by `run` and `chat`.
#[derive(Args, Clone)]
pub struct SamplingArgs {
    /// 0 = greedy
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off)
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling threshold in (0, 1]
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than min-p times the most likely one
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Random seed [default: from the clock]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Subtracted once from the logit of every token generated so far, in
    /// [-2, 2] (as OpenAI's presence_penalty)
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per time it was generated, in
    /// [-2, 2] (as OpenAI's frequency_penalty)
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub frequency_penalty: f32,
    /// ID=BIAS: add BIAS (in [-100, 100]) to token ID's logit; repeatable
    #[arg(long, value_parser = parse_bias, allow_negative_numbers = true)]
    pub logit_bias: Vec<(u32, f32)>,
}

fn parse_bias(s: &str) -> Result<(u32, f32), String> {
    let bad = || format!("--logit-bias takes ID=BIAS (e.g. 30077=-5), not {s:?}");
    let (id, bias) = s.split_once('=').ok_or_else(bad)?;
    Ok((
        id.trim().parse().map_err(|_| bad())?,
        bias.trim().parse().map_err(|_| bad())?,
    ))
}

impl SamplingArgs {
    /// The logit biases and penalties, checked against a vocabulary of
    /// `vocab`.
    pub fn penalties(&self, vocab: usize) -> Result<gemma_platform::Penalties, String> {
        let p = gemma_platform::Penalties {
            presence: self.presence_penalty,
            frequency: self.frequency_penalty,
            bias: self.logit_bias.clone(),
        };
        // The message names the API field; the flags spell it with dashes.
        p.validate(vocab).map_err(|e| {
            format!(
                "--{}",
                e.trim_start_matches('`')
                    .replacen('`', "", 1)
                    .replace('_', "-")
            )
        })?;
        Ok(p)
    }

    /// The parameters, validated, with the seed resolved.
    pub fn params(&self) -> Result<gemma_core::sampling::SamplingParams, String> {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let params = gemma_core::sampling::SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            seed,
        };
        params.validate().map_err(|e| e.to_string())?;
        Ok(params)
    }
}

#[derive(Args, Clone)]
pub struct ComputeArgs {
    /// Worker threads (0 = one per core)
    #[arg(long, short = 't', default_value_t = 0)]
    pub threads: usize,
    /// Tokens per prefill pass
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub batch: u32,
    /// Arithmetic: `exact` (f32 activations) or `fast` (16-bit fixed-point
    /// activations in single-token products; see docs/PERFORMANCE.md for its
    /// speed and accuracy)
    #[arg(long, default_value = "exact", value_parser = ["exact", "fast"])]
    pub precision: String,
    /// Where to compute: `auto` (the first OpenCL device that is not a CPU,
    /// else the CPU, saying why on stderr), `cpu`, or `opencl[:N]` (device
    /// N of `gemma info --devices`, 0 by default; f32 only, so with
    /// --precision exact)
    #[arg(long, default_value = "auto")]
    pub device: gemma_platform::DeviceChoice,
    /// Layers on the device, the rest on the CPU: a number (the first N),
    /// `all`, or `auto` (as many as fit its memory)
    #[arg(long, default_value = "all")]
    pub gpu_layers: gemma_platform::GpuLayers,
}

impl ComputeArgs {
    pub fn precision(&self) -> gemma_core::kernels::Precision {
        // The value parser admits only names `from_name` knows.
        gemma_core::kernels::Precision::from_name(&self.precision).unwrap_or_default()
    }
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// The prompt [default: read from stdin]
    #[arg(long, short = 'p')]
    pub prompt: Option<String>,
    /// Most tokens to generate
    #[arg(short = 'n', long = "max-tokens", default_value_t = 128)]
    pub max_tokens: usize,
    /// Refuse prompts longer than this many tokens (BOS included)
    #[arg(long)]
    pub max_prompt_tokens: Option<usize>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Wrap the prompt in Gemma's chat turn template
    #[arg(long)]
    pub chat: bool,
    /// Print one JSON object {"prompt_ids", "ids", "text", "seed"} instead of streaming
    #[arg(long)]
    pub json: bool,
    /// Also print control tokens and markers such as `<start_of_image>` (hidden by default; --json's ids hold them either way)
    #[arg(long)]
    pub special: bool,
    /// Context length to allocate [default: prompt + max-tokens]
    #[arg(long)]
    pub context: Option<usize>,
    /// Print timings to stderr when done (prefill and decode tokens per second)
    #[arg(long)]
    pub stats: bool,
}

#[derive(Args)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text [default: read from stdin]
    #[arg(long)]
    pub text: Option<String>,
    /// Treat `<start_of_turn>` and other control tokens as plain text
    #[arg(long)]
    pub no_special: bool,
    /// Print a JSON array of ids
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct LogitsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Comma-separated token ids, BOS included if wanted (e.g. 2,818,5279)
    #[arg(long, required = true)]
    pub ids: String,
    /// How many of the largest logits to print per position
    #[arg(long, default_value_t = 20)]
    pub top: usize,
}

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// List the OpenCL devices (memory, limits, driver) and the one
    /// `--device auto` picks, instead of a model's metadata; needs no model.
    /// With --model, --known, --context or --memory, also how much of the
    /// model each device (and a device of --memory MiB) holds
    #[arg(long, conflicts_with_all = ["tensors", "check", "distortion"])]
    pub devices: bool,
    /// With --devices: plan for a model gemma.cpp knows by name (e.g.
    /// Gemma3_1B, Gemma2_2B, Gemma3_4B) instead of a file, its weights
    /// stored as --weights
    #[arg(long, requires = "devices", conflicts_with = "model")]
    pub known: Option<String>,
    /// With --known: the weights' encoding (q4_k_m, q8_0, sfp, nuq, ...)
    #[arg(long, requires = "known", default_value = "q4_k_m")]
    pub weights: String,
    /// With --devices: the context to plan for [default: the model's, at most 4096]
    #[arg(long, requires = "devices")]
    pub context: Option<usize>,
    /// With --devices: also plan for a device of this many MiB (e.g. 2048
    /// for a 2 GB card)
    #[arg(long, requires = "devices")]
    pub memory: Option<u64>,
    /// Also print every tensor
    #[arg(long)]
    pub tensors: bool,
    /// Decode every weight and report tensors holding NaN or infinity
    /// (exits non-zero if any does)
    #[arg(long)]
    pub check: bool,
    /// Each tensor's compression error (SNR, max and mean absolute error)
    /// against the same tensor of --reference (an .sbs, e.g. the F32 one)
    #[arg(long, requires = "reference")]
    pub distortion: bool,
    /// The reference file for --distortion
    #[arg(long)]
    pub reference: Option<PathBuf>,
}

#[derive(Args)]
pub struct ConvertArgs {
    /// The model to read: a GGUF file, a Hugging Face checkpoint directory
    /// (config.json, model.safetensors or shards with their index), or a
    /// pre-2025 gemma.cpp .sbs weights file (no embedded config, toc or
    /// tokenizer; give its tokenizer with --tokenizer)
    #[arg(long)]
    pub from: PathBuf,
    /// The `.sbs` file to write (replaced atomically)
    #[arg(long)]
    pub to: PathBuf,
    /// Codec for the weight matrices: f32, bf16, sfp, nuq or i8
    #[arg(long, default_value = "sfp")]
    pub weights: String,
    /// The SentencePiece model proto to embed, e.g. gemma.cpp's or Hugging
    /// Face's `tokenizer.model` [default: the checkpoint directory's
    /// tokenizer.model; required for GGUF and pre-2025 .sbs files, which
    /// carry no proto]
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Print each tensor's compression error (SNR, max and mean absolute
    /// error of the decoded weights against the source's)
    #[arg(long)]
    pub distortion: bool,
}

/// Help and version go out as clap renders them; a usage mistake becomes the
/// same single `gemma: error:` line as every other failure.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.use_stderr() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    eprintln!(
        "gemma: error: {} (see gemma --help)",
        first.trim_start_matches("error: ")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Run(a) => commands::run(a),
        Command::Chat(a) => chat::chat(a),
        Command::Tokenize(a) => commands::tokenize(a),
        Command::Logits(a) => commands::logits(a),
        Command::Info(a) => commands::info(a),
        Command::Convert(a) => commands::convert(a),
        Command::Serve(a) => serve::serve(a),
        Command::Client(a) => client::client(a),
        Command::Bench(a) => bench::bench(a),
        Command::Compare(a) => compare::compare(a),
        Command::Perplexity(a) => perplexity::perplexity(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gemma: error: {e}");
            ExitCode::FAILURE
        }
    }
}
