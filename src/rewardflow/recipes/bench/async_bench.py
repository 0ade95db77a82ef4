"""`rewardflow bench async`: asynchronous (one-step off-policy) against synchronous RL on the same work.

From one SFT warm-start of the quickstart model, each mode runs `steps` GRPO steps on the same prompts with the same
seeds, and the bench records samples/s (samples generated and trained on, per second of train_rl) and the held-out
pass@1 of the trained policy (per problem, so async and sync are compared problem by problem).

Modes, run interleaved in one process (the order alternates between repetitions, so a load change on the shared
machine hits both alike):
- `sync`: the synchronous loop, 1 torch thread (one core busy);
- `async`: trainer.async=true, max_staleness 1, algo.tis_cap 2; 1 torch thread per Python thread: the producer thread
  generates (and scores) step t+1 on a policy replica while the main thread trains step t, so two cores are busy;
- `sync_2threads`: the synchronous loop with 2 torch threads, the other way to give it the second core;
- `async_process`: as `async`, but the producer's generation and verification run in a child process
  (dist.rollout_workers=1, dist.rollout_backend=process), so they never wait for the trainer's GIL.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch

# name -> (config overrides, torch threads)
MODES = {
    "sync": ([], 1),
    "async": (["trainer.async=true", "trainer.max_staleness=1", "algo.tis_cap=2"], 1),
    "sync_2threads": ([], 2),
    # the producer's work (generation, verification) in a child process: the trainer's interpreter only trains
    "async_process": (["trainer.async=true", "trainer.max_staleness=1", "algo.tis_cap=2", "dist.rollout_workers=1", "dist.rollout_backend=process"], 1),
}


def _run_mode(name: str, base_overrides: list[str], sft_dir: Path, source, eval_problems, run_dir: Path, *, n_eval: int, progress) -> dict:
    from ...eval.runner import evaluate_policy
    from ...policy.hf import HFPolicy
    from ...rewards.verifier import VerifierScorer
    from ...train.metrics import MetricsLog
    from ...train.rl import train_rl
    from ..config_loader import load_config

    overrides, threads = MODES[name]
    cfg = load_config(None, base_overrides + overrides)
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.trainer.seed)
    policy = HFPolicy.from_pretrained(sft_dir)
    scorer, log = VerifierScorer(), MetricsLog(run_dir / "metrics.jsonl")
    load0, t0, cpu0, main0 = os.getloadavg()[0], time.perf_counter(), time.process_time(), time.thread_time()
    train_rl(cfg, policy, None, source, scorer, run_dir, log=log, progress=progress)
    seconds, cpu_seconds, main_cpu = time.perf_counter() - t0, time.process_time() - cpu0, time.thread_time() - main0
    rows = [r for r in log.read() if "reward/mean" in r]
    torch.set_num_threads(1)  # every evaluation alike, whatever the mode's threads
    res = evaluate_policy(policy, scorer.verifier, eval_problems, n_samples=n_eval, ks=[1], temperature=cfg.eval.temperature,
                          max_new_tokens=cfg.eval.max_new_tokens, greedy=False, seed=0)
    scorer.verifier.close()
    samples = len(rows) * cfg.rollout.prompts_per_step * cfg.rollout.group_size
    # cpu_seconds (all threads of this process): on a machine shared with other jobs a process with two busy threads
    # also gets two scheduler shares, so wall-clock gains must be read next to the CPU time spent per sample
    return {"mode": name, "threads": threads, "seconds": seconds, "samples": samples, "samples_per_s": samples / seconds,
            "cpu_seconds": cpu_seconds, "samples_per_cpu_s": samples / max(cpu_seconds, 1e-9), "cpu_busy": cpu_seconds / seconds,
            # CPU time of the training (main) thread and of the producer thread: with two idle cores and no GIL waits, an
            # async run would take max(main, producer), a sync run main (its one thread does everything)
            "main_thread_cpu_s": main_cpu, "producer_cpu_s": sum(r.get("perf/producer_cpu_s", 0.0) for r in rows),
            "load_avg_1m": [load0, os.getloadavg()[0]], "pass@1": res["pass@1"], "pass@1_ci": res["pass@1_ci"],
            "pass@1_per_problem": res["pass@1_per_problem"], "reward_curve": [r["reward/correct"] for r in rows],
            "gen_seconds": sum(r["rollout/tokens"] / r["perf/gen_tok_per_s"] for r in rows),
            "staleness_mean": statistics.mean(r.get("async/staleness", 0) for r in rows),
            "tis_weight_mean": statistics.mean(r["tis/weight_mean"] for r in rows) if "tis/weight_mean" in rows[0] else None}


def _paired(a: list[dict], b: list[dict]) -> dict:
    """pass@1 of mode a minus mode b, problem by problem (each averaged over repetitions), with its 95% interval."""
    from ...eval.metrics import paired_delta

    d = paired_delta([r["pass@1_per_problem"] for r in a], [r["pass@1_per_problem"] for r in b])
    return {**d, "zero_inside": d["ci95"][0] <= 0 <= d["ci95"][1]}


def summarise(runs: list[dict]) -> dict:
    """Per mode: samples/s (median, min, max over repetitions), pass@1 (mean over repetitions and per repetition);
    ratios of async to each synchronous mode, repetition by repetition (paired in time), and paired pass@1 changes."""
    by = {m: [r for r in runs if r["mode"] == m] for m in MODES}
    out = {m: {"samples_per_s": {"median": statistics.median(r["samples_per_s"] for r in rs), "min": min(r["samples_per_s"] for r in rs),
                                 "max": max(r["samples_per_s"] for r in rs)},
               "samples_per_cpu_s": statistics.median(r["samples_per_cpu_s"] for r in rs), "cpu_busy": statistics.median(r["cpu_busy"] for r in rs),
               "pass@1": statistics.mean(r["pass@1"] for r in rs), "pass@1_runs": [r["pass@1"] for r in rs]}
           for m, rs in by.items() if rs}
    for fast in ("async", "async_process"):
        for other in ("sync", "sync_2threads"):
            if by[fast] and by[other]:
                ratios = [a["samples_per_s"] / s["samples_per_s"] for a, s in zip(by[fast], by[other])]
                out[f"speedup_{fast}_vs_{other}"] = {"median": statistics.median(ratios), "per_rep": ratios}
                out[f"delta_pass@1_{fast}_minus_{other}"] = _paired(by[fast], by[other])
    if by["async"] and by["sync"] and all("main_thread_cpu_s" in r for r in by["async"] + by["sync"]):
        # an upper bound from CPU time alone, independent of the machine's load: sync CPU / max(async thread CPU)
        bound = [s["main_thread_cpu_s"] / max(a["main_thread_cpu_s"], a["producer_cpu_s"]) for a, s in zip(by["async"], by["sync"])]
        out["two_idle_cores_bound_async_vs_sync"] = {"median": statistics.median(bound), "per_rep": bound}
    return out


def run_bench(out: Path, *, steps: int, reps: int, n_eval: int, eval_size: int, sft_steps: int, overrides: list[str],
              modes: tuple[str, ...] = tuple(MODES), show_progress: bool = True) -> dict:
    from ...atomic import write_json
    from ...progress import progress_bars
    from ..config_loader import load_config
    from ..warmstart import make_source, warm_start
    from .common import machine_note

    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {', '.join(unknown)}; valid: {', '.join(MODES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base_overrides = [f"sft.steps={sft_steps}", f"data.eval_size={eval_size}", f"trainer.steps={steps}", "trainer.eval_every=0",
                      "trainer.save_every=0", *overrides]
    base = load_config(None, base_overrides)
    source = make_source(base)  # one source: every mode trains on the same prompts and is evaluated on the same problems
    torch.set_num_threads(1)
    result: dict = {"machine": machine_note(), "overrides": base_overrides, "modes": {m: {"overrides": MODES[m][0], "torch_threads": MODES[m][1]} for m in modes},
                    "steps": steps, "reps": reps, "eval": {"problems": len(source.eval_problems), "samples": n_eval}, "runs": []}
    t_start = time.perf_counter()
    with progress_bars(show_progress) as bar:
        sft_dir = warm_start(base, out, source=source, bar=bar)
        for rep in range(reps):
            order = list(modes) if rep % 2 == 0 else list(reversed(modes))
            for name in order:
                run = _run_mode(name, base_overrides, sft_dir, source, source.eval_problems, out / "runs" / f"{name}_r{rep}", n_eval=n_eval,
                                progress=bar(f"rep {rep + 1}/{reps} {name}", steps))
                result["runs"].append({"rep": rep, **{k: v for k, v in run.items() if k != "pass@1_per_problem"}})
                result.setdefault("_per_problem", []).append(run)
                result["summary"] = summarise(result["_per_problem"])
                write_json(out / "async.json", {k: v for k, v in result.items() if k != "_per_problem"})
    result.pop("_per_problem")
    result["wall_seconds"] = time.perf_counter() - t_start
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    write_json(out / "async.json", result)
    return result


def run_from_args(args) -> int:
    import json

    from ...progress import console

    res = run_bench(Path(args.out), steps=args.steps, reps=args.reps, n_eval=args.n, eval_size=args.eval_size, sft_steps=args.sft_steps,
                    overrides=list(args.overrides), modes=tuple(m.strip() for m in args.modes.split(",")), show_progress=not args.quiet)
    console.print(json.dumps({k: v for k, v in res["summary"].items()}, indent=2, default=str))
    console.print(f"wrote {Path(args.out) / 'async.json'}")
    return 0
