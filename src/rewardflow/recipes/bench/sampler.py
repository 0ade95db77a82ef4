"""Sampler throughput: rewardflow's HFPolicy against transformers' `model.generate`, same model and batch,
measured side by side in one process (alternating, best of R repetitions). Writes JSON.

    python -m rewardflow.recipes.bench.sampler --out runs/bench_sampler.json        # or: rewardflow bench sampler

Three contestants per (batch, greedy|sampled): `ours` (HFPolicy with its own Llama decode step and
preallocated K/V), `ours_hf_forward` (the same sampler stepping through the transformers forward and its
DynamicCache) and `hf_generate`. Ours returns per-token logprobs and drops finished rows; `generate`
returns neither. Every tokens/s figure has its MFU (2·P FLOPs per generated token) against the fp32
matmul peak measured here at the same thread count; a torch-profiler summary of our sampler at the
largest batch says what the time goes to.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from ...policy.base import SamplingParams
from ...policy.hf import HFPolicy
from ...policy.tiny import TinyModelConfig, make_tiny_checkpoint

from . import common


def _ours(policy, prompts, n, greedy, max_new, fast=True):
    policy.fast_decode = fast
    params = SamplingParams(n=n, temperature=0.0 if greedy else 1.0, max_new_tokens=max_new, seed=0)
    out = policy.generate(prompts, params)
    policy.fast_decode = True
    return sum(len(c.token_ids) for g in out for c in g)


def _ours_hf_forward(policy, prompts, n, greedy, max_new):
    return _ours(policy, prompts, n, greedy, max_new, fast=False)


def _hf(policy, prompts, n, greedy, max_new):
    enc = policy.tokenizer([policy.render(p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
    out = policy.model.generate(**enc, do_sample=not greedy, num_return_sequences=n, max_new_tokens=max_new,
                                pad_token_id=policy.pad_id, eos_token_id=policy.eos_id, top_k=None if greedy else 0)
    gen = out[:, enc["input_ids"].shape[1]:]  # [N, T]
    # tokens up to and including the first eos (what a user receives)
    is_eos = gen == policy.eos_id
    lengths = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full_like(is_eos[:, 0], gen.shape[1], dtype=torch.long))
    return int(lengths.sum())


CONTESTANTS = {"ours": _ours, "ours_hf_forward": _ours_hf_forward, "hf_generate": _hf}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_sampler.json")
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peak-sizes", default="256,512,1024,2048", help="square matmul sizes of the fp32 peak sweep")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        policy = HFPolicy.from_pretrained(make_tiny_checkpoint(tmp, TinyModelConfig()))
    policy.model.eval()
    peak = common.measure_peak(sizes=tuple(int(x) for x in args.peak_sizes.split(",")))
    P = policy.num_params
    rows = []
    batches = [int(b) for b in args.batches.split(",")]
    for batch in batches:
        prompts = [f"What is {i} + {2 * i}?" + " please" * (i % 4) for i in range(batch)]  # different lengths
        for greedy in (True, False):
            best = {k: 0.0 for k in CONTESTANTS}  # best tokens/s over the repetitions
            tokens = {}
            for _ in range(args.reps):  # alternate so drift on a shared machine hits all alike
                for name, fn in CONTESTANTS.items():
                    torch.manual_seed(0)  # `generate` samples from the global RNG: the same draws every repetition
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        tokens[name] = fn(policy, prompts, 1, greedy, args.max_new_tokens)
                    best[name] = max(best[name], tokens[name] / (time.perf_counter() - t0))
            row = {"batch": batch, "mode": "greedy" if greedy else "sampled"}
            for k in CONTESTANTS:
                row[f"{k}_tok_per_s"] = best[k]
                row[f"{k}_tokens"] = tokens[k]
                row[f"{k}_mfu"] = common.throughput_mfu(P, peak["peak_gflops"], gen_tok_per_s=row[f"{k}_tok_per_s"])["mfu_gen"]
            row["speedup"] = row["ours_tok_per_s"] / row["hf_generate_tok_per_s"]
            row["speedup_own_decode_vs_hf_forward"] = row["ours_tok_per_s"] / row["ours_hf_forward_tok_per_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    from torch.profiler import ProfilerActivity, profile

    prompts = [f"What is {i} + {2 * i}?" for i in range(batches[-1])]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _ours(policy, prompts, 1, False, args.max_new_tokens)
    result = {"machine": common.machine_note(), "peak": peak, "model_params": P, "max_new_tokens": args.max_new_tokens,
              "rows": rows, "profile_ours_sampled": {"batch": batches[-1], "top_ops": common.profile_summary(prof)}}
    common.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
