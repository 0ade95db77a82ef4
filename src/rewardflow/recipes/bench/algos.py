"""`rewardflow bench algos`: every online algorithm on the quickstart task, from one SFT checkpoint, with the
same prompts per step, group size, step count and seeds; held-out pass@1 / pass@k / maj@k (mean and spread
over seeds), distinct final answers per problem, tokens generated, seconds, and reward curves.
DAPO (dynamic sampling) and ReMax (greedy baseline rollout) generate more than the others by design: their
extra tokens are counted in `tokens_generated`."""
from __future__ import annotations

import hashlib
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch


# The bench's policy: the quickstart model with 2 of its 4 layers (see BENCH_HELP in train/cli.py for why).
BENCH_MODEL = ["model.layers=2"]

# The methods the bench compares, by the names ALGORITHMS and PRESETS give them (a name implies its paper's settings,
# train/algorithms.py): one source of truth for the CLI, the configs and the bench.
BENCH_NAMES = ("grpo", "dr_grpo", "rloo", "remax", "reinforce_pp", "reinforce_pp_baseline", "seed_grpo", "grpo_unlikely", "gspo",
               "dual_clip", "dapo", "d3s", "ppo", "raft", "raft_pp", "reinforce_rej", "rover")
BENCH_ALGOS = {name: [f"algo.name={name}"] for name in BENCH_NAMES}


def _spread(xs: list[float]) -> dict:
    return {"mean": sum(xs) / len(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "values": xs}


def problem_set_id(problems) -> str:
    """A short fingerprint of which problems (ids and prompts, in order): runs compared with each other and with
    the SFT start must show the same one."""
    return hashlib.sha1("\n".join(f"{p.id}\t{p.prompt}" for p in problems).encode()).hexdigest()[:16]


def run_one(cfg, sft_dir: Path, run_dir: Path, source, eval_problems, *, n_eval: int, progress=None) -> dict:
    from ...eval.runner import evaluate_policy
    from ...policy.hf import HFPolicy
    from ...rewards.verifier import VerifierScorer
    from ...train.metrics import MetricsLog
    from ...train.rl import train_rl

    torch.manual_seed(cfg.trainer.seed)
    policy = HFPolicy.from_pretrained(sft_dir)
    ref = HFPolicy.from_pretrained(sft_dir) if cfg.algo.kl_coef > 0 else None
    scorer, log = VerifierScorer(), MetricsLog(run_dir / "metrics.jsonl")
    t0 = time.perf_counter()
    train_rl(cfg, policy, ref, source, scorer, run_dir, log=log, progress=progress)
    train_seconds = time.perf_counter() - t0
    rows = [r for r in log.read() if "reward/mean" in r]
    ks = sorted({1, n_eval})
    res = evaluate_policy(policy, scorer.verifier, eval_problems, n_samples=n_eval, ks=ks, temperature=cfg.eval.temperature,
                          max_new_tokens=cfg.eval.max_new_tokens, greedy=False, seed=cfg.trainer.seed)
    scorer.verifier.close()
    return {"eval": res, "eval_set": problem_set_id(eval_problems), "train_seconds": train_seconds, "seconds_per_step": train_seconds / max(1, len(rows)),
            "tokens_generated": sum(r.get("rollout/tokens", 0.0) for r in rows),
            "reward_curve": [r.get("reward/correct", r["reward/mean"]) for r in rows]}


def paired_delta(evals: list[dict], base: dict) -> dict | None:
    """pass@1 change from `base` problem by problem (the same held-out problems): d_j = mean over runs of
    pass@1_j minus base pass@1_j, with its 95% interval over problems. Far tighter than comparing two unpaired
    intervals, because problem difficulty cancels."""
    from ...eval.metrics import paired_delta as paired

    if "pass@1_per_problem" not in base or any("pass@1_per_problem" not in e for e in evals):
        return None
    return paired([e["pass@1_per_problem"] for e in evals], [base["pass@1_per_problem"]])


def _job(overrides: list[str], data_seed: int, sft_dir: str, run_dir: str, n_eval: int, progress=None) -> dict:
    """One (algorithm, seed) run; its summary is saved as run_dir/result.json with the overrides that made it, so
    an interrupted bench skips finished runs on restart and never reuses one made with other settings.
    The data source is the bench's (`data_seed`), not the run's: seeds vary sampling, never which problems a run
    trains on or is evaluated on (the SFT start is evaluated on the same problems)."""
    from ...atomic import write_json
    from ..config_loader import load_config
    from ..warmstart import make_source

    run_dir_p = Path(run_dir)
    done = run_dir_p / "result.json"
    if done.exists():
        saved = json.loads(done.read_text())
        if saved.get("stamp") == [overrides, data_seed, n_eval]:
            return {**saved, "reused": True}
    cfg = load_config(None, overrides)
    source = make_source(load_config(None, overrides + [f"trainer.seed={data_seed}"]))
    res = run_one(cfg, Path(sft_dir), run_dir_p, source, source.eval_problems, n_eval=n_eval,
                  progress=progress(cfg.trainer.steps) if progress is not None else None)
    res["stamp"] = [overrides, data_seed, n_eval]
    write_json(done, res)
    return res


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def run_bench(out: Path, *, algos: list[str], seeds: list[int], overrides: list[str], n_eval: int = 16, eval_size: int = 200,
              workers: int = 1, show_progress: bool = True) -> dict:
    """workers > 1 runs that many (algorithm, seed) jobs at once in spawned processes, splitting this process's
    torch threads between them: the tiny model's small matrices leave threads idle, so on 2 cores two 1-thread
    runs finish more work per minute than one 2-thread run (measured: README). Results do not depend on it:
    every run is seeded from its own seed alone."""
    from ...atomic import write_json
    from ...eval.runner import evaluate_policy
    from ...policy.hf import HFPolicy
    from ...progress import progress_bars
    from ...verify import Verifier
    from ..config_loader import load_config
    from ..warmstart import make_source, warm_start

    unknown = [a for a in algos if a not in BENCH_ALGOS]
    if unknown:
        raise ValueError(f"unknown algorithm(s) {', '.join(unknown)}; valid: {', '.join(BENCH_ALGOS)}")
    if workers < 1:
        raise ValueError(f"workers={workers}: need at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    base = load_config(None, overrides + [f"data.eval_size={eval_size}"])
    # one data source for every run: seeds vary sampling, not which problems are train or eval
    source = make_source(base)
    eval_problems = source.eval_problems
    ks = sorted({1, n_eval})
    threads = max(1, torch.get_num_threads() // workers)
    result: dict = {"machine": f"{platform.processor() or platform.machine()}, {workers} worker(s) x {threads if workers > 1 else torch.get_num_threads()} torch threads",
                    "workers": workers, "overrides": overrides, "seeds": seeds, "algos": {},
                    "eval": {"problems": len(eval_problems), "samples": n_eval, "set": problem_set_id(eval_problems)}}
    jobs = {(name, seed): (overrides + BENCH_ALGOS[name] + [f"data.eval_size={eval_size}", f"trainer.seed={seed}", "trainer.eval_every=0", "trainer.save_every=0"],
                           str(out / "runs" / f"{name}_s{seed}")) for name in algos for seed in seeds}
    runs: dict = {}

    def finish(name: str) -> None:  # an algorithm's row as soon as all its seeds are in; algos.json after each
        if name not in result["algos"] and all((name, s) in runs for s in seeds):
            result["algos"][name] = _row(name, [runs[name, s] for s in seeds], seeds, result, ks)
            write_json(out / "algos.json", result)

    with progress_bars(show_progress) as bar:
        sft_dir = warm_start(base, out, bar=bar)
        with Verifier() as verifier:
            result["sft"] = evaluate_policy(HFPolicy.from_pretrained(sft_dir), verifier, eval_problems, n_samples=n_eval, ks=ks,
                                            temperature=base.eval.temperature, max_new_tokens=base.eval.max_new_tokens, greedy=False, seed=0)
        _run_jobs(jobs, base.trainer.seed, str(sft_dir), n_eval, workers, threads, bar, runs, finish)
    # rows in the order asked for, whatever order the workers finished in
    result["algos"] = {name: result["algos"][name] for name in algos}
    # a restarted bench measures only what it ran itself: runs_reused says how many runs it took from disk
    result["wall_seconds"] = time.perf_counter() - t_start
    result["runs_reused"] = sum(bool(r.get("reused")) for r in runs.values())
    plot_curves(result, out / "algos.png")
    write_json(out / "algos.json", result)
    return result


def _row(name: str, rs: list[dict], seeds: list[int], result: dict, ks: list[int]) -> dict:
    """One algorithm's table row from its seeds' runs: mean and spread of every metric, the paired change from
    the SFT start, reward curves."""
    n_eval = result["eval"]["samples"]
    wrong = [s for s, r in zip(seeds, rs) if r.get("eval_set") != result["eval"]["set"]]
    if wrong:  # a comparison with the SFT start is only meaningful on the same problems
        raise RuntimeError(f"{name} seeds {wrong} were evaluated on other problems than the SFT start")
    row = {m: _spread([r["eval"][m] for r in rs]) for m in [f"pass@{k}" for k in ks] + [f"maj@{n_eval}", "distinct_answers"]}
    row["pass@1_ci"] = [r["eval"]["pass@1_ci"] for r in rs]
    row["delta_pass@1"] = paired_delta([r["eval"] for r in rs], result["sft"])
    row["final_reward"] = _spread([sum(r["reward_curve"][-5:]) / len(r["reward_curve"][-5:]) for r in rs])
    row.update({k: _spread([r[k] for r in rs]) for k in ("tokens_generated", "train_seconds", "seconds_per_step")})
    row["reward_curves"] = [r["reward_curve"] for r in rs]
    row["overrides"] = BENCH_ALGOS[name]
    return row


def _run_jobs(jobs: dict, data_seed: int, sft_dir: str, n_eval: int, workers: int, threads: int, bar, runs: dict, finish) -> None:
    """Every (algorithm, seed) job, in this process or `workers` spawned ones; `finish(name)` after each."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    if workers == 1:
        for (name, seed), (ov, run_dir) in jobs.items():
            runs[name, seed] = _job(ov, data_seed, sft_dir, run_dir, n_eval, progress=lambda n, d=f"{name} seed {seed}": bar(d, n))
            finish(name)
        return
    tick = bar(f"{len(jobs)} runs, {workers} at a time", len(jobs))
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_init, initargs=(threads,)) as pool:
        futures = {pool.submit(_job, ov, data_seed, sft_dir, run_dir, n_eval): key for key, (ov, run_dir) in jobs.items()}
        for fut in as_completed(futures):
            name, seed = futures[fut]
            runs[name, seed] = fut.result()
            tick(1, last=f"{name} s{seed} pass@1 {runs[name, seed]['eval']['pass@1']:.3f}")
            finish(name)


def plot_curves(result: dict, path: Path, window: int = 10) -> Path:
    """Left: training reward (fraction correct) per RL step, mean over seeds and a `window`-step moving average
    (every algorithm sees the same prompts at a step, so the raw curves share their step-to-step noise). Right:
    held-out pass@1 per algorithm, each seed a dot, against the SFT start."""
    from ...eval.report import _plt

    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    names = list(result["algos"])
    for name, row in result["algos"].items():
        curves = row["reward_curves"]
        steps = min(len(c) for c in curves)
        if steps:
            mean = [sum(c[i] for c in curves) / len(curves) for i in range(steps)]
            smooth = [sum(mean[max(0, i - window + 1) : i + 1]) / len(mean[max(0, i - window + 1) : i + 1]) for i in range(steps)]
            ax.plot(range(1, steps + 1), smooth, label=name, linestyle="-" if len(ax.lines) < 10 else "--")
    sft = result.get("sft", {}).get("pass@1")
    if sft is not None:
        ax.axhline(sft, color="black", linewidth=1, linestyle=":", label=f"SFT pass@1 ({sft:.3f})")
        bx.axvline(sft, color="black", linewidth=1, linestyle=":", label="SFT start")
    ax.set(xlabel="RL step", ylabel=f"training reward, {window}-step moving average", title="Training reward (mean over seeds)")
    ax.legend(fontsize=7, ncol=2)
    for y, name in enumerate(names):
        vals = result["algos"][name]["pass@1"]["values"]
        bx.scatter(vals, [y] * len(vals), s=14, color="tab:blue")
        bx.plot([sum(vals) / len(vals)] * 2, [y - 0.3, y + 0.3], color="tab:red")
    bx.set_yticks(range(len(names)), names, fontsize=8)
    bx.invert_yaxis()
    bx.set(xlabel="held-out pass@1 (dots: seeds, bar: mean)", title="After RL")
    bx.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(result: dict) -> str:
    """A Markdown table of the result (for the README): per algorithm the mean ± std over seeds, and pass@1's change
    from the SFT start with how many seeds improved on it."""
    n = result["eval"]["samples"]
    lines = [f"| algorithm | pass@1 | Δ pass@1 [paired 95% CI] (seeds up) | pass@{n} | maj@{n} | distinct answers | final train reward | s/step | tokens generated |",
             "|---|---|---|---|---|---|---|---|---|"]
    s = result["sft"]
    lines.append(f"| SFT start | {s['pass@1']:.3f} | | {s.get(f'pass@{n}', math.nan):.3f} | {s[f'maj@{n}']:.3f} | {s['distinct_answers']:.2f} | | | |")
    for name, r in result["algos"].items():
        f = lambda m, d=3: f"{r[m]['mean']:.{d}f} ± {r[m]['std']:.{d}f}"
        up = sum(v > s["pass@1"] for v in r["pass@1"]["values"])
        d = r.get("delta_pass@1")
        ci = f" [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d else ""
        lines.append(f"| {name} | {f('pass@1')} | {r['pass@1']['mean'] - s['pass@1']:+.3f}{ci} ({up}/{len(r['pass@1']['values'])}) | {f(f'pass@{n}')} | "
                     f"{f(f'maj@{n}')} | {f('distinct_answers', 2)} | {f('final_reward')} | {r['seconds_per_step']['mean']:.2f} | {r['tokens_generated']['mean']:,.0f} |")
    return "\n".join(lines)
