"""Sampler throughput: rewardflow's HFPolicy against transformers' `model.generate`, same model and batch,
measured side by side in one process (alternating, best of R repetitions). Writes JSON.

    python bench/sampler.py --out runs/bench_sampler.json
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

from rewardflow.policy.base import SamplingParams
from rewardflow.policy.hf import HFPolicy
from rewardflow.policy.tiny import TinyModelConfig, make_tiny_checkpoint


def _ours(policy, prompts, n, greedy, max_new):
    params = SamplingParams(n=n, temperature=0.0 if greedy else 1.0, max_new_tokens=max_new, seed=0)
    out = policy.generate(prompts, params)
    return sum(len(c.token_ids) for g in out for c in g)


def _hf(policy, prompts, n, greedy, max_new):
    enc = policy.tokenizer([policy.render(p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
    out = policy.model.generate(**enc, do_sample=not greedy, num_return_sequences=n, max_new_tokens=max_new,
                                pad_token_id=policy.pad_id, eos_token_id=policy.eos_id, top_k=None if greedy else 0)
    gen = out[:, enc["input_ids"].shape[1]:]  # [N, T]
    # tokens up to and including the first eos (what a user receives)
    is_eos = gen == policy.eos_id
    lengths = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full_like(is_eos[:, 0], gen.shape[1], dtype=torch.long))
    return int(lengths.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_sampler.json")
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        policy = HFPolicy.from_pretrained(make_tiny_checkpoint(tmp, TinyModelConfig()))
    policy.model.eval()
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        prompts = [f"What is {i} + {2 * i}?" + " please" * (i % 4) for i in range(batch)]  # different lengths
        for greedy in (True, False):
            best = {"ours": float("inf"), "hf_generate": float("inf")}
            tokens = {}
            for _ in range(args.reps):  # alternate so drift on a shared machine hits both alike
                for name, fn in (("ours", _ours), ("hf_generate", _hf)):
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        tokens[name] = fn(policy, prompts, 1, greedy, args.max_new_tokens)
                    best[name] = min(best[name], time.perf_counter() - t0)
            row = {"batch": batch, "mode": "greedy" if greedy else "sampled",
                   **{f"{k}_tok_per_s": tokens[k] / best[k] for k in best}, **{f"{k}_tokens": tokens[k] for k in best}}
            row["speedup"] = row["ours_tok_per_s"] / row["hf_generate_tok_per_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
              "model_params": policy.num_params, "max_new_tokens": args.max_new_tokens, "rows": rows}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
