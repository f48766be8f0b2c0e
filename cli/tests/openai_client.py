"""Talks to `gemma serve` with the official `openai` package.

Run by cli/tests/serve.rs as
    python3 openai_client.py BASE_URL PROMPT EXPECTED
where EXPECTED is what `gemma run --chat --temperature 0 -n 16 --prompt PROMPT`
printed. Exits non-zero (with the reason on stderr) on any mismatch, and when
the package is missing: that is a failure, never a skip.
"""

import sys

try:
    import openai
except ImportError:
    sys.exit(
        "the openai package is missing: scripts/test.sh installs it "
        "(or: python3 -m pip install openai)"
    )

MAX_TOKENS = 16


def check(cond, what):
    if not cond:
        sys.exit(f"openai_client.py: {what}")


def main():
    base_url, prompt, expected = sys.argv[1:4]
    # No retries: a failed request must fail the test, not be hidden.
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0)

    models = client.models.list().data
    check(len(models) == 1, f"one model listed, got {models}")
    model = models[0].id
    messages = [{"role": "user", "content": prompt}]

    r = client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=MAX_TOKENS
    )
    text = r.choices[0].message.content
    check(text == expected, f"non-streamed text {text!r} != gemma run's {expected!r}")
    check(r.choices[0].finish_reason in ("stop", "length"), f"finish_reason {r.choices[0].finish_reason!r}")
    check(r.object == "chat.completion", f"object {r.object!r}")
    u = r.usage
    check(0 < u.completion_tokens <= MAX_TOKENS, f"completion_tokens {u.completion_tokens}")
    check(u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage {u}")

    pieces = []
    usage = None
    finish = None
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        temperature=0,
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        check(chunk.object == "chat.completion.chunk", f"chunk object {chunk.object!r}")
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
            if c.finish_reason is not None:
                finish = c.finish_reason
    streamed = "".join(pieces)
    check(streamed == text, f"streamed text {streamed!r} != non-streamed {text!r}")
    check(len(pieces) > 1, f"the reply came in {len(pieces)} piece(s), not streamed")
    check(finish == r.choices[0].finish_reason, f"streamed finish_reason {finish!r}")
    check(usage is not None and usage.completion_tokens == u.completion_tokens, f"streamed usage {usage}")

    # The plain completions route, with the same rendered prompt, agrees.
    templated = f"<start_of_turn>user\n{prompt}<end_of_turn>\n<start_of_turn>model\n"
    c = client.completions.create(model=model, prompt=templated, temperature=0, max_tokens=MAX_TOKENS)
    check(c.choices[0].text == expected, f"completions text {c.choices[0].text!r}")

    # Errors come back as the exceptions the package raises for OpenAI's own.
    try:
        client.chat.completions.create(model=model, messages=messages, temperature=-1)
        check(False, "temperature -1 was accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400, f"status {e.status_code}")
    # A parameter the server does not implement is refused, not ignored.
    try:
        client.chat.completions.create(model=model, messages=messages, max_tokens=2, logprobs=True)
        check(False, "logprobs=True was accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and "logprobs" in str(e), f"logprobs refused with: {e}")
    # Penalties and biases are taken (their effect is checked elsewhere).
    r = client.chat.completions.create(
        model=model, messages=messages, max_tokens=2, temperature=0,
        presence_penalty=0.5, frequency_penalty=0.5, logit_bias={"30077": 5},
    )
    check(r.choices[0].finish_reason in ("stop", "length"), f"penalised request: {r}")

    # Embeddings: one unit vector per input, in order; equal inputs, equal
    # vectors; different texts, different ones.
    e = client.embeddings.create(model=model, input=["The cat sat.", "The cat sat.", "Stocks fell."])
    vecs = [d.embedding for d in sorted(e.data, key=lambda d: d.index)]
    check(len(vecs) == 3 and len(vecs[0]) > 0, f"embeddings shape {len(vecs)}")
    for v in vecs:
        norm = sum(x * x for x in v) ** 0.5
        check(abs(norm - 1) < 1e-4, f"embedding norm {norm}")
    check(vecs[0] == vecs[1], "equal inputs gave different embeddings")
    cos = sum(a * b for a, b in zip(vecs[0], vecs[2]))
    check(cos < 0.9999, f"different texts gave the same embedding (cosine {cos})")
    check(e.usage.prompt_tokens > 6, f"embedding usage {e.usage}")
    print("ok")


if __name__ == "__main__":
    main()
