//! The forward pass against a naive float64 reference written from the
//! architecture's definition, on tiny synthetic Gemma 2 and Gemma 3 models:
//! sliding windows over a ring buffer, global layers, GQA, QK-norm,
//! soft-caps, batching, and the bidirectional prefix (prefix-LM) mode.

use gemma_core::exec::Serial;
use gemma_core::format::gguf::Gguf;
use gemma_core::generate::Session;
use gemma_core::model::{Model, ModelConfig};
use gemma_core::quant;
use gemma_platform::synthetic::{tiny_model, TinySpec};
use gemma_platform::SessionBuffers;

struct Reference<'a> {
    g: Gguf<'a>,
    cfg: ModelConfig,
}

impl Reference<'_> {
    fn tensor(&self, name: &str) -> Vec<f64> {
        let t = self.g.tensor(name).unwrap_or_else(|| panic!("{name}"));
        let mut out = vec![0f32; t.n_elements() as usize];
        quant::dequantize(t.ty, t.data, &mut out).unwrap();
        out.into_iter().map(f64::from).collect()
    }

    fn layer(&self, l: usize, name: &str) -> Vec<f64> {
        self.tensor(&format!("blk.{l}.{name}"))
    }

    /// Logits at every position of `tokens`.
    fn logits(&self, tokens: &[u32], prefix_end: usize) -> Vec<Vec<f64>> {
        let c = &self.cfg;
        let (d, hd, nh, nkv) = (c.d_model, c.head_dim, c.n_heads, c.n_kv_heads);
        let eps = c.rms_eps as f64;
        let norm = |x: &[f64], g: &[f64]| -> Vec<f64> {
            let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
            let inv = 1.0 / (ms + eps).sqrt();
            x.iter().zip(g).map(|(v, g)| v * inv * g).collect()
        };
        let matvec = |w: &[f64], x: &[f64]| -> Vec<f64> {
            w.chunks_exact(x.len())
                .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
                .collect()
        };
        let rope = |v: &mut [f64], pos: usize, base: f64| {
            let half = v.len() / 2;
            for i in 0..half {
                let ang = pos as f64 * base.powf(-(2.0 * i as f64) / v.len() as f64);
                let (a, b) = (v[i], v[i + half]);
                v[i] = a * ang.cos() - b * ang.sin();
                v[i + half] = b * ang.cos() + a * ang.sin();
            }
        };
        let cap = |x: f64, cap: f32| {
            if cap > 0.0 {
                cap as f64 * (x / cap as f64).tanh()
            } else {
                x
            }
        };
        let gelu = |x: f64| {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        };

        let embed = self.tensor("token_embd.weight");
        let n = tokens.len();
        let mut x: Vec<Vec<f64>> = tokens
            .iter()
            .map(|&t| {
                embed[t as usize * d..(t as usize + 1) * d]
                    .iter()
                    .map(|v| v * (d as f64).sqrt())
                    .collect()
            })
            .collect();
        for l in 0..c.n_layers {
            let local = c.is_local(l);
            let base = if local {
                c.rope_base_local
            } else {
                c.rope_base_global
            } as f64;
            let (wq, wk, wv, wo) = (
                self.layer(l, "attn_q.weight"),
                self.layer(l, "attn_k.weight"),
                self.layer(l, "attn_v.weight"),
                self.layer(l, "attn_output.weight"),
            );
            let mut q = vec![];
            let mut k = vec![];
            let mut v = vec![];
            for (t, xt) in x.iter().enumerate() {
                let h = norm(xt, &self.layer(l, "attn_norm.weight"));
                let mut qt = matvec(&wq, &h);
                let mut kt = matvec(&wk, &h);
                for head in qt.chunks_exact_mut(hd) {
                    if c.qk_norm {
                        head.copy_from_slice(&norm(head, &self.layer(l, "attn_q_norm.weight")));
                    }
                    rope(head, t, base);
                    head.iter_mut().for_each(|e| *e *= c.query_scale as f64);
                }
                for head in kt.chunks_exact_mut(hd) {
                    if c.qk_norm {
                        head.copy_from_slice(&norm(head, &self.layer(l, "attn_k_norm.weight")));
                    }
                    rope(head, t, base);
                }
                q.push(qt);
                k.push(kt);
                v.push(matvec(&wv, &h));
            }
            for t in 0..n {
                let mut att = vec![0f64; nh * hd];
                for h in 0..nh {
                    let g = h / (nh / nkv);
                    let visible = |j: usize| {
                        (j <= t || j < prefix_end) && (!local || t.abs_diff(j) < c.sliding_window)
                    };
                    let keys: Vec<usize> = (0..n).filter(|&j| visible(j)).collect();
                    let scores: Vec<f64> = keys
                        .iter()
                        .map(|&j| {
                            cap(
                                (0..hd).map(|i| q[t][h * hd + i] * k[j][g * hd + i]).sum(),
                                c.attn_softcap,
                            )
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                    for (s, &j) in scores.iter().zip(&keys) {
                        let p = (s - m).exp() / z;
                        for i in 0..hd {
                            att[h * hd + i] += p * v[j][g * hd + i];
                        }
                    }
                }
                let post = |x: Vec<f64>, name: &str| {
                    if c.post_norms {
                        norm(&x, &self.layer(l, name))
                    } else {
                        x
                    }
                };
                let o = post(matvec(&wo, &att), "post_attention_norm.weight");
                x[t].iter_mut().zip(&o).for_each(|(a, b)| *a += b);
                let h = norm(&x[t], &self.layer(l, "ffn_norm.weight"));
                let gate = matvec(&self.layer(l, "ffn_gate.weight"), &h);
                let up = matvec(&self.layer(l, "ffn_up.weight"), &h);
                let act: Vec<f64> = gate.iter().zip(&up).map(|(g, u)| gelu(*g) * u).collect();
                let f = post(
                    matvec(&self.layer(l, "ffn_down.weight"), &act),
                    "post_ffw_norm.weight",
                );
                x[t].iter_mut().zip(&f).for_each(|(a, b)| *a += b);
            }
        }
        let fnorm = self.tensor("output_norm.weight");
        x.iter()
            .map(|xt| {
                matvec(&embed, &norm(xt, &fnorm))
                    .into_iter()
                    .map(|v| cap(v, c.final_softcap))
                    .collect()
            })
            .collect()
    }
}

/// Our logits at every position, feeding `tokens` in passes of `batch`.
fn ours(model: &Model, tokens: &[u32], batch: usize, prefix_end: usize) -> Vec<Vec<f32>> {
    let mut bufs = SessionBuffers::new(model, tokens.len(), batch).unwrap();
    let mut s = Session::new(
        model,
        tokens.len(),
        batch,
        &mut bufs.floats,
        &mut bufs.candidates,
    )
    .unwrap();
    let vocab = model.config.vocab_size;
    let mut out = vec![];
    let mut first = true;
    for chunk in tokens.chunks(batch) {
        let pe = if first { prefix_end } else { 0 };
        first = false;
        let hidden = s.forward_chunk(&Serial, chunk, pe).unwrap().to_vec();
        let mut logits = vec![0f32; chunk.len() * vocab];
        model.logits(&Serial, &hidden, chunk.len(), &mut logits);
        out.extend(logits.chunks_exact(vocab).map(|r| r.to_vec()));
    }
    out
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f64>]) -> f64 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (*p as f64 - q).abs()))
        .fold(0.0, f64::max)
}

const TOKENS: [u32; 13] = [2, 9, 17, 40, 7, 7, 100, 255, 31, 12, 6, 70, 3];

fn check(spec: TinySpec) {
    let bytes = tiny_model(&spec);
    let g = Gguf::parse(&bytes).unwrap();
    let model = Model::from_gguf(&g).unwrap();
    let reference = Reference {
        g,
        cfg: model.config,
    };
    let want = reference.logits(&TOKENS, 0);
    for batch in [1, 3, TOKENS.len()] {
        let got = ours(&model, &TOKENS, batch, 0);
        let diff = max_abs_diff(&got, &want);
        assert!(
            diff < 1e-4,
            "{} batch {batch}: max |diff| {diff}",
            spec.arch
        );
    }
}

#[test]
fn gemma3_forward_matches_reference_across_windows_and_batches() {
    check(TinySpec::default());
}

#[test]
fn gemma2_forward_with_softcaps_matches_reference() {
    check(TinySpec {
        arch: "gemma2",
        sliding_window: 3,
        seed: 11,
        ..TinySpec::default()
    });
}

#[test]
fn gemma1_forward_without_post_norms_or_windows_matches_reference() {
    check(TinySpec {
        arch: "gemma",
        seed: 5,
        ..TinySpec::default()
    });
}

#[test]
fn prefix_lm_attention_matches_reference() {
    let bytes = tiny_model(&TinySpec::default());
    let g = Gguf::parse(&bytes).unwrap();
    let model = Model::from_gguf(&g).unwrap();
    let reference = Reference {
        g,
        cfg: model.config,
    };
    let prefix_end = 6;
    let want = reference.logits(&TOKENS, prefix_end);
    let causal = reference.logits(&TOKENS, 0);
    // The prefix really changes what early positions see.
    assert!(max_abs_diff(&ours(&model, &TOKENS, TOKENS.len(), 0), &want) > 1e-3);
    for batch in [prefix_end, 8, TOKENS.len()] {
        let got = ours(&model, &TOKENS, batch, prefix_end);
        let diff = max_abs_diff(&got, &want);
        assert!(diff < 1e-4, "batch {batch}: max |diff| {diff}");
    }
    let diff = max_abs_diff(&ours(&model, &TOKENS, 4, 0), &causal);
    assert!(diff < 1e-4, "causal: {diff}");
}

#[test]
fn a_prefix_split_across_passes_is_refused() {
    let bytes = tiny_model(&TinySpec::default());
    let g = Gguf::parse(&bytes).unwrap();
    let model = Model::from_gguf(&g).unwrap();
    let mut bufs = SessionBuffers::new(&model, 16, 4).unwrap();
    let mut s = Session::new(&model, 16, 4, &mut bufs.floats, &mut bufs.candidates).unwrap();
    assert!(s.forward_chunk(&Serial, &TOKENS[..4], 6).is_err());
}

/// A conversation continued turn after turn (prefix reuse, rewinds within
/// the ring, resets beyond it) gives the logits of a fresh run every time.
#[test]
fn conversation_reuses_the_cache_and_matches_fresh_runs() {
    use gemma_core::generate::GenerateOptions;
    use gemma_core::sampling::Sampler;
    use gemma_platform::Conversation;
    let bytes = tiny_model(&TinySpec::default());
    let g = Gguf::parse(&bytes).unwrap();
    let model = Model::from_gguf(&g).unwrap();
    let mut conv = Conversation::new(&model, 48, 3).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 4,
        stop_tokens: &[],
        prefix_end: 0,
    };
    let fresh = |prompt: &[u32]| {
        let mut c = Conversation::new(&model, 48, 3).unwrap();
        let mut out = vec![];
        c.generate(
            &model,
            &Serial,
            prompt,
            &mut Sampler::greedy(),
            &opts,
            &mut |t| {
                out.push(t);
                true
            },
        )
        .unwrap();
        out
    };
    let mut history: Vec<u32> = TOKENS[..5].to_vec();
    let mut turns = vec![];
    for step in 0..4 {
        let mut out = vec![];
        let stats = conv
            .generate(
                &model,
                &Serial,
                &history,
                &mut Sampler::greedy(),
                &opts,
                &mut |t| {
                    out.push(t);
                    true
                },
            )
            .unwrap();
        assert_eq!(out, fresh(&history), "turn {step}");
        turns.push(stats);
        history.extend(&out);
        history.extend(&TOKENS[5 + step..7 + step]);
    }
    // Later turns prefill only what is new.
    assert_eq!(turns[0].reused, 0);
    for t in &turns[1..] {
        assert!(t.reused > 0 && t.prefilled <= 4, "{t:?}");
    }
    // A different history shares only BOS: rewinding that far is beyond the
    // ring, so the conversation starts over and still matches.
    let other = [2u32, 50, 60, 70, 80];
    let mut out = vec![];
    let stats = conv
        .generate(
            &model,
            &Serial,
            &other,
            &mut Sampler::greedy(),
            &opts,
            &mut |t| {
                out.push(t);
                true
            },
        )
        .unwrap();
    assert_eq!(out, fresh(&other));
    assert_eq!(stats.reused, 0);
}

fn tiny() -> Vec<u8> {
    tiny_model(&TinySpec::default())
}

#[test]
fn running_out_of_context_is_an_error_not_a_panic() {
    use gemma_core::generate::SessionError;
    use gemma_core::model::ForwardError;
    let bytes = tiny();
    let model = Model::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap();
    let mut bufs = SessionBuffers::new(&model, 8, 4).unwrap();
    let mut s = Session::new(&model, 8, 4, &mut bufs.floats, &mut bufs.candidates).unwrap();
    let err = s.prefill(&Serial, &TOKENS[..9], 0).unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Forward(ForwardError::ContextFull { needed: 9, max: 8 })
        ),
        "{err:?}"
    );
    s.prefill(&Serial, &TOKENS[..8], 0).unwrap();
    assert!(s.step(&Serial, 5).is_err());
    assert!(
        s.step(&Serial, 100_000).is_err(),
        "token outside the vocabulary"
    );
    // Generation that reaches the end of the context stops cleanly.
    s.reset();
    let opts = gemma_core::generate::GenerateOptions {
        max_new_tokens: 100,
        stop_tokens: &[],
        prefix_end: 0,
    };
    let out = s
        .generate(
            &Serial,
            &TOKENS[..4],
            &mut gemma_core::sampling::Sampler::greedy(),
            &opts,
            &mut |_| true,
        )
        .unwrap();
    assert_eq!(out.stop, gemma_core::generate::StopReason::ContextFull);
    assert_eq!(out.generated, 5);
}

#[test]
fn generation_stops_on_stop_tokens_callback_and_max_tokens() {
    use gemma_core::generate::{GenerateOptions, StopReason};
    use gemma_core::sampling::Sampler;
    let bytes = tiny();
    let model = Model::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap();
    let mut bufs = SessionBuffers::new(&model, 32, 4).unwrap();
    let mut s = Session::new(&model, 32, 4, &mut bufs.floats, &mut bufs.candidates).unwrap();
    let prompt = &TOKENS[..5];
    let mut run = |opts: &GenerateOptions, limit: usize| {
        s.reset();
        let mut seen = vec![];
        let o = s
            .generate(&Serial, prompt, &mut Sampler::greedy(), opts, &mut |t| {
                seen.push(t);
                seen.len() < limit
            })
            .unwrap();
        (o, seen)
    };
    let (o, free) = run(
        &GenerateOptions {
            max_new_tokens: 6,
            stop_tokens: &[],
            prefix_end: 0,
        },
        usize::MAX,
    );
    assert_eq!(
        (o.stop, o.generated, free.len()),
        (StopReason::MaxTokens, 6, 6)
    );
    let stop = [free[2]];
    let (o, seen) = run(
        &GenerateOptions {
            max_new_tokens: 6,
            stop_tokens: &stop,
            prefix_end: 0,
        },
        usize::MAX,
    );
    let first = free.iter().position(|&t| t == free[2]).unwrap();
    assert_eq!(o.stop, StopReason::StopToken(free[2]));
    assert_eq!(seen, free[..first], "the stop token is not emitted");
    let (o, seen) = run(
        &GenerateOptions {
            max_new_tokens: 6,
            stop_tokens: &[],
            prefix_end: 0,
        },
        2,
    );
    assert_eq!((o.stop, seen.len()), (StopReason::Callback, 2));
}
