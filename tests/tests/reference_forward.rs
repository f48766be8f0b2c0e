//! The forward pass against a naive float64 reference written from the
//! architecture's definition, on tiny synthetic Gemma 1, 2 and 3 models:
//! sliding windows over a ring buffer, global layers, GQA, QK-norm,
//! soft-caps, batching, embedding rows among the tokens, bidirectional
//! spans (PaliGemma's prefix, Gemma 3's image blocks), and the layers split
//! over two backends.
//!
//! The reference reads the GGUF metadata itself and applies Gemma's rules
//! as the public model definitions (Hugging Face's `modeling_gemma*.py`)
//! state them; nothing of the engine's `ModelConfig` goes into it, so a
//! wrong rule in the engine's config derivation fails here.

use gemma_core::cpu::CpuBackend;
use gemma_core::exec::Serial;
use gemma_core::format::gguf::Gguf;
use gemma_core::generate::{Session, SessionSizes};
use gemma_core::kernels::Precision;
use gemma_core::load;
use gemma_core::model::{ForwardError, Input, Inputs, Model, Prompt, Span, Stage};
use gemma_core::quant;
use gemma_core::sampling::Candidate;
use gemma_platform::synthetic::{tiny_model, TinySpec};
use gemma_platform::SessionBuffers;

/// Gemma's rules for a GGUF file, restated here from the model definitions.
struct Rules {
    arch: String,
    n_layers: usize,
    d: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    eps: f64,
    window: usize,
    theta: f64,
    attn_cap: f64,
    final_cap: f64,
}

impl Rules {
    fn from_gguf(g: &Gguf) -> Self {
        let arch = g.architecture().unwrap().to_string();
        let uint = |k: &str| g.get_u64(&format!("{arch}.{k}")).unwrap() as usize;
        let float = |k: &str| g.get_f32(&format!("{arch}.{k}")).map(f64::from);
        let gemma2 = arch == "gemma2";
        Rules {
            n_layers: uint("block_count"),
            d: uint("embedding_length"),
            nh: uint("attention.head_count"),
            nkv: uint("attention.head_count_kv"),
            hd: uint("attention.key_length"),
            eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
            window: if arch == "gemma" {
                0
            } else {
                uint("attention.sliding_window")
            },
            theta: float("rope.freq_base").unwrap_or(10_000.0),
            // Soft-caps exist in Gemma 2 only.
            attn_cap: if gemma2 {
                float("attn_logit_softcapping").unwrap_or(50.0)
            } else {
                0.0
            },
            final_cap: if gemma2 {
                float("final_logit_softcapping").unwrap_or(30.0)
            } else {
                0.0
            },
            arch,
        }
    }

    /// Gemma 2: `is_sliding = not bool(layer_idx % 2)`; Gemma 3:
    /// `is_sliding = bool((layer_idx + 1) % sliding_window_pattern)`, 6.
    fn is_local(&self, l: usize) -> bool {
        match self.arch.as_str() {
            "gemma2" => l.is_multiple_of(2),
            "gemma3" => !(l + 1).is_multiple_of(6),
            _ => false,
        }
    }

    /// Gemma 3's sliding layers rotate with `rope_local_base_freq` (10000).
    fn rope_base(&self, l: usize) -> f64 {
        if self.arch == "gemma3" && self.is_local(l) {
            10_000.0
        } else {
            self.theta
        }
    }

    fn qk_norm(&self) -> bool {
        self.arch == "gemma3"
    }

    fn post_norms(&self) -> bool {
        self.arch != "gemma"
    }
}

/// One position of a reference prompt.
#[derive(Clone)]
enum RefInput {
    Token(u32),
    Row(Vec<f32>),
}

struct Reference<'a> {
    g: Gguf<'a>,
    r: Rules,
}

impl Reference<'_> {
    fn new(g: Gguf) -> Reference {
        let r = Rules::from_gguf(&g);
        Reference { g, r }
    }

    fn tensor(&self, name: &str) -> Vec<f64> {
        let t = self.g.tensor(name).unwrap_or_else(|| panic!("{name}"));
        let mut out = vec![0f32; t.n_elements() as usize];
        quant::dequantize(t.ty, t.data, &mut out).unwrap();
        out.into_iter().map(f64::from).collect()
    }

    fn layer(&self, l: usize, name: &str) -> Vec<f64> {
        self.tensor(&format!("blk.{l}.{name}"))
    }

    /// Logits at every position of `tokens`, causal.
    fn logits(&self, tokens: &[u32]) -> Vec<Vec<f64>> {
        let inputs: Vec<RefInput> = tokens.iter().map(|&t| RefInput::Token(t)).collect();
        self.logits_of(&inputs, &[])
    }

    /// Logits at every position; positions inside one of `spans` see each
    /// other both ways (Hugging Face ORs its token-type mask onto the
    /// causal, sliding-window one).
    fn logits_of(&self, inputs: &[RefInput], spans: &[(usize, usize)]) -> Vec<Vec<f64>> {
        let c = &self.r;
        let (d, hd, nh, nkv) = (c.d, c.hd, c.nh, c.nkv);
        let eps = c.eps;
        // GGUF gains already hold Gemma's `1 + w`.
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
        let cap = |x: f64, cap: f64| {
            if cap > 0.0 {
                cap * (x / cap).tanh()
            } else {
                x
            }
        };
        let gelu = |x: f64| {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        };
        let same_span = |a: usize, b: usize| {
            spans
                .iter()
                .any(|&(s, e)| (s..e).contains(&a) && (s..e).contains(&b))
        };

        let embed = self.tensor("token_embd.weight");
        let n = inputs.len();
        // Token rows are scaled by sqrt(d_model); given rows are not.
        let mut x: Vec<Vec<f64>> = inputs
            .iter()
            .map(|input| match input {
                RefInput::Token(t) => embed[*t as usize * d..(*t as usize + 1) * d]
                    .iter()
                    .map(|v| v * (d as f64).sqrt())
                    .collect(),
                RefInput::Row(r) => r.iter().map(|&v| v as f64).collect(),
            })
            .collect();
        // Queries are scaled by 1/sqrt(query_pre_attn_scalar) = 1/sqrt(head_dim)
        // for these models.
        let query_scale = 1.0 / (hd as f64).sqrt();
        for l in 0..c.n_layers {
            let local = c.is_local(l);
            let base = c.rope_base(l);
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
                    if c.qk_norm() {
                        head.copy_from_slice(&norm(head, &self.layer(l, "attn_q_norm.weight")));
                    }
                    rope(head, t, base);
                    head.iter_mut().for_each(|e| *e *= query_scale);
                }
                for head in kt.chunks_exact_mut(hd) {
                    if c.qk_norm() {
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
                        let causal = j <= t && (!local || t - j < c.window);
                        causal || same_span(t, j)
                    };
                    let keys: Vec<usize> = (0..n).filter(|&j| visible(j)).collect();
                    let scores: Vec<f64> = keys
                        .iter()
                        .map(|&j| {
                            cap(
                                (0..hd).map(|i| q[t][h * hd + i] * k[j][g * hd + i]).sum(),
                                c.attn_cap,
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
                    if c.post_norms() {
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
                    .map(|v| cap(v, c.final_cap))
                    .collect()
            })
            .collect()
    }
}

/// Where a pass of at most `batch` inputs from `from` ends without cutting
/// a span (as `Session::prefill` cuts its passes).
fn pass_end(from: usize, n: usize, batch: usize, spans: &[Span]) -> usize {
    let cut = (from + batch).min(n);
    spans
        .iter()
        .find(|s| s.start > from && s.start < cut && cut < s.end)
        .map_or(cut, |s| s.start)
}

/// Our logits at every position, feeding `inputs` in passes of at most
/// `batch` through `session`.
fn logits_of(session: &mut Session, inputs: Inputs, spans: &[Span], vocab: usize) -> Vec<Vec<f32>> {
    let mut out = vec![];
    let mut from = 0;
    while from < inputs.len() {
        let end = pass_end(from, inputs.len(), session.max_batch(), spans);
        session
            .forward_chunk(inputs.slice(from..end), spans)
            .unwrap();
        let mut logits = vec![0f32; (end - from) * vocab];
        session.logits_rows(0..end - from, &mut logits).unwrap();
        out.extend(logits.chunks_exact(vocab).map(|r| r.to_vec()));
        from = end;
    }
    out
}

/// Our logits at every position on one CPU backend.
fn ours_of(model: &Model, inputs: Inputs, batch: usize, spans: &[Span]) -> Vec<Vec<f32>> {
    let mut bufs = SessionBuffers::new(&model.config, inputs.len(), batch).unwrap();
    let parts = bufs.cpu(model, &Serial, Precision::Exact).unwrap();
    let mut backend = parts.backend;
    let mut s = Session::new(&model.config, &mut backend, parts.logits, parts.candidates).unwrap();
    logits_of(&mut s, inputs, spans, model.config.vocab_size)
}

fn ours(model: &Model, tokens: &[u32], batch: usize) -> Vec<Vec<f32>> {
    ours_of(model, Inputs::Tokens(tokens), batch, &[])
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
    let model = load::gguf::model(&g).unwrap();
    let want = Reference::new(g).logits(&TOKENS);
    for batch in [1, 3, TOKENS.len()] {
        let got = ours(&model, &TOKENS, batch);
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
    let model = load::gguf::model(&g).unwrap();
    let reference = Reference::new(g);
    let prefix = [Span::new(0, 6)];
    let inputs: Vec<RefInput> = TOKENS.iter().map(|&t| RefInput::Token(t)).collect();
    let want = reference.logits_of(&inputs, &[(0, 6)]);
    let causal = reference.logits(&TOKENS);
    // The prefix really changes what early positions see.
    assert!(max_abs_diff(&ours(&model, &TOKENS, TOKENS.len()), &want) > 1e-3);
    for batch in [6, 8, TOKENS.len()] {
        let got = ours_of(&model, Inputs::Tokens(&TOKENS), batch, &prefix);
        let diff = max_abs_diff(&got, &want);
        assert!(diff < 1e-4, "batch {batch}: max |diff| {diff}");
    }
    let diff = max_abs_diff(&ours(&model, &TOKENS, 4), &causal);
    assert!(diff < 1e-4, "causal: {diff}");
}

/// Rows of `d` values in about (-2, 2): an image encoder's output stand-in.
fn rows(n: usize, d: usize, seed: u32) -> Vec<Vec<f32>> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            (0..d)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    (s % 4001) as f32 / 1000.0 - 2.0
                })
                .collect()
        })
        .collect()
}

/// Four embedding rows in the middle of a prompt, attending to each other
/// both ways (as the 256 soft tokens of a Gemma 3 image do), between
/// tokens that stay causal: the logits equal the reference's with the same
/// mask, whatever the pass size (a pass ends before the block rather than
/// cut it), and differ from a causal run.
#[test]
fn embedding_rows_in_a_bidirectional_span_match_the_reference() {
    for spec in [
        TinySpec::default(),
        TinySpec {
            arch: "gemma2",
            sliding_window: 3,
            seed: 11,
            ..TinySpec::default()
        },
    ] {
        let bytes = tiny_model(&spec);
        let g = Gguf::parse(&bytes).unwrap();
        let model = load::gguf::model(&g).unwrap();
        let reference = Reference::new(g);
        let image = rows(4, spec.d_model as usize, 99);
        let mut refs: Vec<RefInput> = TOKENS[..5].iter().map(|&t| RefInput::Token(t)).collect();
        refs.extend(image.iter().map(|r| RefInput::Row(r.clone())));
        refs.extend(TOKENS[5..].iter().map(|&t| RefInput::Token(t)));
        let mut inputs: Vec<Input> = TOKENS[..5].iter().map(|&t| Input::Token(t)).collect();
        inputs.extend(image.iter().map(|r| Input::Embedding(r)));
        inputs.extend(TOKENS[5..].iter().map(|&t| Input::Token(t)));
        let (start, end) = (5, 9);
        let spans = [Span::new(start, end)];
        let want = reference.logits_of(&refs, &[(start, end)]);
        let causal = reference.logits_of(&refs, &[]);
        assert!(
            max_abs_diff(
                &ours_of(&model, Inputs::Mixed(&inputs), inputs.len(), &[]),
                &want
            ) > 1e-3,
            "{}: the span changes nothing",
            spec.arch
        );
        for batch in [4, 7, inputs.len()] {
            let got = ours_of(&model, Inputs::Mixed(&inputs), batch, &spans);
            let diff = max_abs_diff(&got, &want);
            assert!(
                diff < 1e-4,
                "{} batch {batch}: max |diff| {diff}",
                spec.arch
            );
        }
        let got = ours_of(&model, Inputs::Mixed(&inputs), 5, &[]);
        let diff = max_abs_diff(&got, &causal);
        assert!(diff < 1e-4, "{} causal: max |diff| {diff}", spec.arch);
    }
}

/// `Session::prefill` cuts its passes before a span, and refuses one that
/// cannot fit a pass; a pass that would cut a span is refused.
#[test]
fn spans_are_never_cut_across_passes() {
    let bytes = tiny_model(&TinySpec::default());
    let g = Gguf::parse(&bytes).unwrap();
    let model = load::gguf::model(&g).unwrap();
    let mut bufs = SessionBuffers::new(&model.config, 16, 4).unwrap();
    let parts = bufs.cpu(&model, &Serial, Precision::Exact).unwrap();
    let mut backend = parts.backend;
    let mut s = Session::new(&model.config, &mut backend, parts.logits, parts.candidates).unwrap();
    let err = s
        .forward_chunk(Inputs::Tokens(&TOKENS[..4]), &[Span::new(2, 6)])
        .unwrap_err();
    assert_eq!(err, ForwardError::SpanSplit.into());
    s.reset();
    let err = s
        .prefill(Prompt {
            inputs: Inputs::Tokens(&TOKENS[..8]),
            spans: &[Span::new(1, 6)],
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            gemma_core::generate::SessionError::SpanTooLong {
                len: 5,
                max_batch: 4
            }
        ),
        "{err:?}"
    );
    s.reset();
    let last = s
        .prefill(Prompt {
            inputs: Inputs::Tokens(&TOKENS[..8]),
            spans: &[Span::new(3, 7)],
        })
        .unwrap()
        .to_vec();
    let want = Reference::new(Gguf::parse(&bytes).unwrap()).logits_of(
        &TOKENS[..8]
            .iter()
            .map(|&t| RefInput::Token(t))
            .collect::<Vec<_>>(),
        &[(3, 7)],
    );
    assert!(max_abs_diff(&[last], &want[7..]) < 1e-4);
}

/// The layers split over two CPU backends, each with the KV cache of its
/// own layers, the residual stream handed over once per pass: the logits
/// of a single backend, across passes and decode steps.
#[test]
fn layers_split_over_two_backends_give_the_same_logits() {
    let bytes = tiny_model(&TinySpec::default());
    let g = Gguf::parse(&bytes).unwrap();
    let model = load::gguf::model(&g).unwrap();
    let cfg = &model.config;
    let (ctx, batch, split) = (16, 4, 2);
    let want = ours(&model, &TOKENS, batch);
    let len = |layers| CpuBackend::required_len(cfg, layers, ctx, batch).unwrap();
    let (mut a, mut b) = (
        vec![0f32; len(0..split)],
        vec![0f32; len(split..cfg.n_layers)],
    );
    let mut first = CpuBackend::new(&model, &Serial, 0..split, ctx, batch, &mut a).unwrap();
    let mut second =
        CpuBackend::new(&model, &Serial, split..cfg.n_layers, ctx, batch, &mut b).unwrap();
    let mut staging = vec![0f32; batch * cfg.d_model];
    let mut logits = vec![0f32; cfg.vocab_size];
    let mut candidates = vec![Candidate::default(); cfg.vocab_size];
    let stages = [
        Stage {
            layers: 0..split,
            backend: &mut first,
        },
        Stage {
            layers: split..cfg.n_layers,
            backend: &mut second,
        },
    ];
    let mut s = Session::staged(cfg, stages, &mut staging, &mut logits, &mut candidates).unwrap();
    let got = logits_of(&mut s, Inputs::Tokens(&TOKENS), &[], cfg.vocab_size);
    for (p, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "position {p}");
    }
    // Stages that leave a layer out, or hand one to a backend without its
    // cache, are refused.
    let mut c = vec![0f32; len(0..split)];
    let mut only_first = CpuBackend::new(&model, &Serial, 0..split, ctx, batch, &mut c).unwrap();
    let partial = [Stage {
        layers: 0..split,
        backend: &mut only_first,
    }];
    let mut staging = vec![0f32; batch * cfg.d_model];
    let mut logits = vec![0f32; cfg.vocab_size];
    let mut candidates = vec![Candidate::default(); cfg.vocab_size];
    assert!(Session::staged(cfg, partial, &mut staging, &mut logits, &mut candidates).is_err());
    let sizes = SessionSizes::new(cfg, ctx, batch).unwrap();
    assert!(sizes.floats > len(0..split));
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
    let model = load::gguf::model(&g).unwrap();
    let mut conv = Conversation::new(&model, 48, 3).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 4,
        stop_tokens: &[],
        prefill_progress: None,
        adjust_logits: None,
    };
    let fresh = |prompt: &[u32]| {
        let mut c = Conversation::new(&model, 48, 3).unwrap();
        let mut out = vec![];
        c.generate(
            &model,
            Precision::Exact,
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
                Precision::Exact,
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
            Precision::Exact,
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
    let model = load::gguf::model(&Gguf::parse(&bytes).unwrap()).unwrap();
    let mut bufs = SessionBuffers::new(&model.config, 8, 4).unwrap();
    let parts = bufs.cpu(&model, &Serial, Precision::Exact).unwrap();
    let mut backend = parts.backend;
    let mut s = Session::new(&model.config, &mut backend, parts.logits, parts.candidates).unwrap();
    let err = s.prefill(Prompt::tokens(&TOKENS[..9])).unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Forward(ForwardError::ContextFull { needed: 9, max: 8 })
        ),
        "{err:?}"
    );
    s.prefill(Prompt::tokens(&TOKENS[..8])).unwrap();
    assert!(s.step(5).is_err());
    s.reset();
    assert!(s.step(100_000).is_err(), "token outside the vocabulary");
    // Generation that reaches the end of the context stops cleanly.
    s.reset();
    let opts = gemma_core::generate::GenerateOptions {
        max_new_tokens: 100,
        stop_tokens: &[],
        prefill_progress: None,
        adjust_logits: None,
    };
    let out = s
        .generate(
            Prompt::tokens(&TOKENS[..4]),
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
    let model = load::gguf::model(&Gguf::parse(&bytes).unwrap()).unwrap();
    let mut bufs = SessionBuffers::new(&model.config, 32, 4).unwrap();
    let parts = bufs.cpu(&model, &Serial, Precision::Exact).unwrap();
    let mut backend = parts.backend;
    let mut s = Session::new(&model.config, &mut backend, parts.logits, parts.candidates).unwrap();
    let prompt = &TOKENS[..5];
    let mut run = |opts: &GenerateOptions, limit: usize| {
        s.reset();
        let mut seen = vec![];
        let o = s
            .generate(
                Prompt::tokens(prompt),
                &mut Sampler::greedy(),
                opts,
                &mut |t| {
                    seen.push(t);
                    seen.len() < limit
                },
            )
            .unwrap();
        (o, seen)
    };
    let (o, free) = run(
        &GenerateOptions {
            max_new_tokens: 6,
            stop_tokens: &[],
            prefill_progress: None,
            adjust_logits: None,
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
            prefill_progress: None,
            adjust_logits: None,
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
            prefill_progress: None,
            adjust_logits: None,
        },
        2,
    );
    assert_eq!((o.stop, seen.len()), (StopReason::Callback, 2));
}
