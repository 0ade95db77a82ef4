"""Sampler throughput: rewardflow's HFPolicy against transformers' `model.generate`, same model, batch and dtype,
measured side by side in one process (alternating, best of R repetitions). Writes JSON.

    python -m rewardflow.recipes.bench.sampler --out runs/bench_sampler.json        # or: rewardflow bench sampler
    rewardflow bench sampler --model smollm2-135m-instruct --dtype float32,bfloat16 --batches 1,8,32 --modes greedy

Contestants per (dtype, batch, greedy|sampled): `ours` (HFPolicy with its own Llama decode step and preallocated
K/V), `ours_compiled` (that step through torch.compile; its first call per batch, which compiles, is timed apart as
`ours_compiled_first_call_s`), `ours_hf_forward` (the same sampler stepping through the transformers forward and its DynamicCache) and
`hf_generate`. Ours returns per-token logprobs and drops finished rows; `generate` returns neither.

Two limits go next to every tokens/s figure: MFU (2·P FLOPs per generated token over the fp32 matmul peak measured
here) and the memory-bandwidth bound (eval/flops.decode_bound_tok_per_s): a step reads every weight once plus each
row's keys and values, so tok/s <= batch · bandwidth / (weight bytes + batch · context · KV bytes per token), with
the read bandwidth measured here at the same thread count and context = mean prompt length + half the budget.
A torch-profiler summary of our sampler at the largest batch says what the time goes to, and `prefill` times the
prompt forward alone at each batch: one forward over the left-padded batch against the length groups the sampler
runs (policy/prefill.py), alternating, best of R; `decode_step` times one decode step alone, eager against compiled.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from ...eval.flops import decode_bound_tok_per_s, memory_bandwidth_gbs
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


def _ours_compiled(policy, prompts, n, greedy, max_new):
    # compiled at every batch size here (HFPolicy compiles only calls of <= compile_max_rows rows): the bench shows where it pays
    policy.compile_decode, limit, policy.compile_max_rows = True, policy.compile_max_rows, 1 << 30
    try:
        return _ours(policy, prompts, n, greedy, max_new)
    finally:
        policy.compile_decode, policy.compile_max_rows = False, limit


def _hf(policy, prompts, n, greedy, max_new):
    policy.tokenizer.padding_side = "left"  # decoder-only generation continues every prompt from its last token
    enc = policy.tokenizer([policy.render(p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
    out = policy.model.generate(**enc, do_sample=not greedy, num_return_sequences=n, max_new_tokens=max_new,
                                pad_token_id=policy.pad_id, eos_token_id=policy.eos_id, top_k=None if greedy else 0)
    gen = out[:, enc["input_ids"].shape[1]:]  # [N, T]
    # tokens up to and including the first eos (what a user receives)
    is_eos = gen == policy.eos_id
    lengths = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full_like(is_eos[:, 0], gen.shape[1], dtype=torch.long))
    return int(lengths.sum())


CONTESTANTS = {"ours": _ours, "ours_compiled": _ours_compiled, "ours_hf_forward": _ours_hf_forward, "hf_generate": _hf}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def load_policy(model: str) -> HFPolicy:
    """"tiny": the 1.07M-parameter random tiny model (no download); else a name, transformers directory or .gguf."""
    if model == "tiny":
        with tempfile.TemporaryDirectory() as tmp:
            policy = HFPolicy.from_pretrained(make_tiny_checkpoint(tmp, TinyModelConfig()))
    else:
        policy = HFPolicy.from_pretrained(model)
    policy.model.eval()
    return policy


def kv_heads_and_dim(config) -> tuple[int, int]:
    """(key/value heads H_kv, head dimension Dh) of a transformers decoder config."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return getattr(config, "num_key_value_heads", None) or config.num_attention_heads, head_dim


def model_bytes(model) -> tuple[int, int]:
    """(weight bytes, read once per step: tied matrices count once; KV-cache bytes per token: 2·L·H_kv·Dh·element)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    kv_heads, head_dim = kv_heads_and_dim(model.config)
    return weights, 2 * model.config.num_hidden_layers * kv_heads * head_dim * next(model.parameters()).element_size()


def prompts_for(batch: int, pool: list[str] | None = None) -> list[str]:
    """`batch` prompts: the first of `pool` (a --prompts file; cycled when shorter), else synthetic ones of four lengths."""
    if pool:
        return [pool[i % len(pool)] for i in range(batch)]
    return [f"What is {i} + {2 * i}?" + " Explain briefly, please." * (i % 4) for i in range(batch)]  # different lengths


def _time_row(policy, names, batch, greedy, args) -> tuple[dict, dict, dict]:
    """Best tokens/s and token counts of each contestant, alternating so drift on a shared machine hits all alike."""
    prompts = prompts_for(batch, args.pool)
    best, tokens = {k: 0.0 for k in names}, {}
    warmup = {}  # the compiled step compiles on its first call at a new shape: that call is timed apart, not raced
    for name in [k for k in names if k == "ours_compiled"]:
        t0 = time.perf_counter()
        CONTESTANTS[name](policy, prompts, 1, greedy, args.max_new_tokens)
        warmup[name] = time.perf_counter() - t0
    for _ in range(args.reps):
        for name in names:
            torch.manual_seed(0)  # `generate` samples from the global RNG: the same draws every repetition
            t0 = time.perf_counter()
            with torch.no_grad():
                tokens[name] = CONTESTANTS[name](policy, prompts, 1, greedy, args.max_new_tokens)
            best[name] = max(best[name], tokens[name] / (time.perf_counter() - t0))
    return best, tokens, warmup


@torch.no_grad()
def time_prefill(policy, batch: int, reps: int, pool: list[str] | None = None) -> dict:
    """Seconds of the prefill of prompts_for(batch, pool) as one padded forward and in length groups (best of `reps`)."""
    from ...policy.prefill import grouped_prefill, left_padded, length_groups

    ids = policy.encode_prompts(prompts_for(batch, pool))
    input_ids, attn, pos = left_padded(ids, policy.pad_id)  # [batch, P]
    best = {"one_forward": float("inf"), "grouped": float("inf")}
    for _ in range(reps):
        for name, call_cost in (("one_forward", 1 << 60), ("grouped", None)):
            t0 = time.perf_counter()
            grouped_prefill(policy.model, input_ids, attn, pos, policy._cache_kw, call_cost)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {"batch": batch, "prompt_tokens": sum(map(len, ids)), "padded_tokens": input_ids.numel(), "groups": len(length_groups([len(x) for x in ids])),
            "one_forward_s": best["one_forward"], "grouped_s": best["grouped"], "speedup": best["one_forward"] / best["grouped"]}


@torch.no_grad()
def time_decode_step(policy, batch: int, reps: int, columns: int = 128) -> dict | None:
    """Milliseconds of one decode step (decode._decode_layers) at `batch` rows over `columns` cache columns, eager
    (buffers cut at the column, as the sampler's eager step) and compiled (whole buffers), fixed shapes, best of
    `reps` x 20 calls; the compiled step's first calls (compilation) are run before timing. None when the model is
    not Llama-shaped (the sampler then steps through the transformers forward)."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    from ...policy.decode import _LlamaDecoder, _compiled_layers, _decode_layers

    model = policy.model
    if getattr(model.config, "model_type", None) not in _LlamaDecoder.MODEL_TYPES:
        return None
    c, p = model.config, next(model.parameters())
    gen = torch.Generator().manual_seed(0)
    # as in the sampler: buffers sized for more tokens to come; the eager step reads views cut at the current column
    kv_heads, head_dim = kv_heads_and_dim(c)
    shape = (batch, kv_heads, columns + 32, head_dim)
    K = [torch.randn(shape, generator=gen).to(p.dtype) for _ in range(c.num_hidden_layers)]
    V = [torch.randn(shape, generator=gen).to(p.dtype) for _ in range(c.num_hidden_layers)]
    attn = torch.ones(batch, columns + 32, dtype=torch.long)
    attn[: batch // 2, :10] = 0  # half the rows left-padded
    col = torch.tensor([columns - 1])
    args = (model.model, list(model.model.layers), model.lm_head, apply_rotary_pos_emb, torch.randint(0, c.vocab_size, (batch,), generator=gen),
            torch.full((batch,), columns - 1))
    cut = [x[:, :, :columns] for x in K], [x[:, :, :columns] for x in V]
    steps = {"eager": lambda: _decode_layers(*args, attn[:, :columns], col, *cut),
             "compiled": lambda: _compiled_layers()(*args, attn, col, K, V, True)}
    try:
        for _ in range(3):
            steps["compiled"]()
    except Exception as e:  # e.g. no C++ compiler for inductor: the eager step alone
        print(f"decode_step: torch.compile failed ({type(e).__name__}); timing the eager step only", flush=True)
        del steps["compiled"]
    best = {k: float("inf") for k in steps}
    for _ in range(reps):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(20):
                step()
            best[name] = min(best[name], (time.perf_counter() - t0) / 20 * 1e3)
    compiled = best.get("compiled")
    return {"batch": batch, "columns": columns, "eager_ms": best["eager"], "compiled_ms": compiled, "speedup": compiled and best["eager"] / compiled}


def run_dtype(policy, dtype_name: str, args, peak: dict, bandwidth: dict) -> list[dict]:
    names = args.contestants.split(",")
    P = policy.num_params
    weight_bytes, kv_bytes = model_bytes(policy.model)
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        context = sum(map(len, policy.encode_prompts(prompts_for(batch, args.pool)))) / batch + args.max_new_tokens / 2
        bound = decode_bound_tok_per_s(bandwidth["read_gbs"], weight_bytes, batch, kv_bytes_per_token=kv_bytes, context=context)
        for mode in args.modes.split(","):
            best, tokens, warmup = _time_row(policy, names, batch, mode == "greedy", args)
            row = {"dtype": dtype_name, "batch": batch, "mode": mode, "bandwidth_bound_tok_per_s": bound, "context": context}
            row.update({f"{k}_first_call_s": v for k, v in warmup.items()})
            for k in names:
                row[f"{k}_tok_per_s"], row[f"{k}_tokens"] = best[k], tokens[k]
                row[f"{k}_mfu"] = common.throughput_mfu(P, peak["peak_gflops"], gen_tok_per_s=best[k])["mfu_gen"]
                row[f"{k}_of_bound"] = best[k] / bound
            if "hf_generate" in names and "ours" in names:
                row["speedup"] = row["ours_tok_per_s"] / row["hf_generate_tok_per_s"]
            if "hf_generate" in names and "ours_compiled" in names:
                row["speedup_compiled"] = row["ours_compiled_tok_per_s"] / row["hf_generate_tok_per_s"]
            if "ours_hf_forward" in names and "ours" in names:
                row["speedup_own_decode_vs_hf_forward"] = row["ours_tok_per_s"] / row["ours_hf_forward_tok_per_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_sampler.json")
    ap.add_argument("--model", default="tiny", help='"tiny" (1.07M random model) or a model name, directory or .gguf')
    ap.add_argument("--dtype", default="float32", help="comma-separated: float32, bfloat16")
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--modes", default="greedy,sampled", help="comma-separated: greedy, sampled (temperature 1)")
    ap.add_argument("--contestants", default=",".join(CONTESTANTS), help=f"comma-separated subset of {','.join(CONTESTANTS)}")
    ap.add_argument("--prompts", help="a problem file (.jsonl/.json/.csv/.parquet, as `train --data`): its first prompts, "
                    "in file order, instead of the synthetic ones of four lengths")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peak-sizes", default="256,512,1024,2048", help="square matmul sizes of the fp32 peak sweep")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True, help="profile ours at the largest batch")
    ap.add_argument("--decode-step", action=argparse.BooleanOptionalAction, default=True,
                    help="time one decode step alone, eager and compiled, at each batch (`decode_step` in the JSON)")
    args = ap.parse_args(argv)
    bad = [x for x in args.dtype.split(",") if x not in DTYPES] + [x for x in args.contestants.split(",") if x not in CONTESTANTS]
    bad += [x for x in args.modes.split(",") if x not in ("greedy", "sampled")]
    if bad:
        ap.error(f"unknown --dtype/--contestants/--modes value(s): {bad}")
    args.pool = None
    if args.prompts:
        from ...data.jsonl import load_problems

        args.pool = [p.prompt for p in load_problems(args.prompts, limit=max(int(b) for b in args.batches.split(",")))]
    policy = load_policy(args.model)
    peak = common.measure_peak(sizes=tuple(int(x) for x in args.peak_sizes.split(",")))
    bandwidth = memory_bandwidth_gbs()
    rows, prefill, decode_step = [], [], []
    for name in args.dtype.split(","):
        policy.model.to(DTYPES[name])
        rows += run_dtype(policy, name, args, peak, bandwidth)
        prefill += [{"dtype": name, **time_prefill(policy, int(b), args.reps, args.pool)} for b in args.batches.split(",")]
        if args.decode_step:
            decode_step += [{"dtype": name, **t} for b in args.batches.split(",") if (t := time_decode_step(policy, int(b), args.reps))]
    result = {"prompts": args.prompts or "synthetic", "prefill": prefill, "decode_step": decode_step, "machine": common.machine_note(), "model": args.model, "peak": peak, "bandwidth": bandwidth, "model_params": policy.num_params,
              "max_new_tokens": args.max_new_tokens, "reps": args.reps, "rows": rows,
              "bound_formula": "batch * read_gbs * 1e9 / (weight_bytes + batch * context * kv_bytes_per_token)"}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        batch = max(int(b) for b in args.batches.split(","))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            _ours(policy, prompts_for(batch, args.pool), 1, False, args.max_new_tokens)
        result["profile_ours_sampled"] = {"batch": batch, "dtype": args.dtype.split(",")[-1], "top_ops": common.profile_summary(prof)}
    common.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
