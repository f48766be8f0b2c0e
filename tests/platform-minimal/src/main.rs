//! `gemma-platform-minimal MODEL PROMPT`: greedy generation of 8 tokens
//! through the platform's generation turn, printing the worker count and
//! the prompt and generated ids.

use gemma_core::exec::Executor;
use gemma_core::sampling::Sampler;
use gemma_platform::{Conversation, Generator, LoadedModel, WorkerPool};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let loaded = LoadedModel::open(std::path::Path::new(&args[1])).expect("model");
    let pool = WorkerPool::new(4).expect("pool");
    let generator = Generator::new(&loaded, &pool);
    let tok = generator.tokenizer;
    let mut prompt = vec![tok.bos_id()];
    prompt.extend(tok.encode_to_vec(&args[2], true).expect("prompt"));
    let mut conv = Conversation::new(&generator.model, 32, 8).expect("conversation");
    let out = generator
        .turn(&mut conv, &prompt, &mut Sampler::greedy(), 8, &mut |_| true)
        .expect("turn");
    let ids = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
    println!("threads: {}", pool.threads());
    println!("prompt: {}", ids(&prompt));
    println!("generated: {}", ids(&out.ids));
}
