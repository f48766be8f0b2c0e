#!/usr/bin/env python3
"""Scores an engine's teacher-forced logits against the goldens.

  golden_kl.py cases GOLDENS.json > cases.txt     # input for the engine
  golden_kl.py score GOLDENS.json < logits.txt     # mean top-20 KL, worst diff

The score is the one tests/support/lib.rs computes for gemma-rs: at every
golden step, KL(golden || engine) of the softmaxes over the step's 20 golden
ids, averaged over all steps of all prompts, and the largest difference from
a golden top-20 logit.
"""
import json
import math
import sys


def log_softmax(v):
    m = max(v)
    lse = m + math.log(sum(math.exp(x - m) for x in v))
    return [x - lse for x in v]


def main():
    mode, path = sys.argv[1], sys.argv[2]
    prompts = json.load(open(path))["prompts"]
    if mode == "cases":
        for p in prompts:
            ids = [i for s in p["steps"] for i in s["top_ids"]]
            parts = [len(p["input_ids"]), *p["input_ids"], len(p["greedy_ids"]), *p["greedy_ids"], len(ids), *ids]
            print(" ".join(map(str, parts)))
        return
    rows = [list(map(float, line.split())) for line in sys.stdin if line.strip()]
    steps = [s for p in prompts for s in p["steps"]]
    if len(rows) != len(steps):
        sys.exit(f"expected {len(steps)} rows of logits, got {len(rows)}")
    kl, worst = 0.0, 0.0
    for row, s in zip(rows, steps):
        want = s["top_logits"]
        lp, lq = log_softmax(want), log_softmax(row)
        kl += sum(math.exp(a) * (a - b) for a, b in zip(lp, lq))
        worst = max(worst, max(abs(a - b) for a, b in zip(row, want)))
    print(f"steps {len(steps)}  mean top-20 KL {kl / len(steps):.3e}  worst top-20 logit {worst:.3f}")


if __name__ == "__main__":
    main()
