"""Test-time search on the quickstart task: every strategy at N = 1, 2, 4, ... on held-out chain_sum
problems, accuracy against FLOPs, with two tiny SFT-warm-started policies: a smaller draft and a larger target.

1. draft and target: tiny models + SFT on worked solutions (as pipeline.py builds the quickstart policy); cached;
2. every strategy with the target as policy (speculative decoding: draft proposes, target repairs) at each N;
3. OUT/search.json (OUT/search_<scorer>.json for a scorer other than the verifier): per strategy and N, accuracy with its 95% interval, tokens and FLOPs per model, seconds;
   the speculative target-FLOPs ratio against target-only sampling; beam against best-of-N at equal FLOPs;
4. OUT/search.png: accuracy against FLOPs per problem.

The verifier is the default scorer: an ORACLE (it knows the gold answer), labelled so in the JSON and the plot.

    rewardflow bench search --out runs/bench_search
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

import torch

from ...atomic import write_json

TASK, TASK_KWARGS = "chain_sum", {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1}
# (hidden, layers, heads, intermediate): the target is the quickstart model (1.07M params), the draft bench/rm.py's
# "small" model (about 1/6 of it; a 63k-parameter draft stayed at 4% accuracy after 500 SFT steps)
SIZES = {"draft": (64, 2, 2, 256), "target": (128, 4, 4, 512)}


def train_policy(name: str, out: Path, *, sft_steps: int, seed: int, bar):
    """Tiny model of SIZES[name] warm-started on worked solutions by the one warm-start recipe (recipes/warmstart.py,
    the quickstart's SFT settings with a warm-up of at most a fifth of the steps); cached in OUT/name."""
    from ...policy.hf import HFPolicy
    from ..config_loader import load_config
    from ..warmstart import warm_start

    hidden, layers, heads, inter = SIZES[name]
    cfg = load_config(None, [f"model.hidden_size={hidden}", f"model.layers={layers}", f"model.heads={heads}", f"model.intermediate_size={inter}",
                             f"sft.steps={sft_steps}", f"sft.warmup_steps={min(20, sft_steps // 5)}", f"trainer.seed={seed}"])
    return HFPolicy.from_pretrained(warm_start(cfg, out / name, bar=bar))


class ChainStepOracle:
    """Ground-truth process labels for arithmetic chains (an ORACLE PRM, `--scorer step-oracle`): step k scores
    1.0 when steps 1..k are exactly the first k lines of the problem's worked solution (whitespace aside), else
    0.0; the outcome is 1.0 when the whole solution is the worked solution. No model: 0 FLOPs."""

    def score(self, problems, solutions):
        from ...data import worked_solution
        from ...rewards import StepScores

        out = []
        for problem, steps in zip(problems, solutions):
            gold = [" ".join(line.split()) for line in worked_solution(problem).split("\n")]
            ok, values = True, []
            for k, step in enumerate(steps):
                ok = ok and k < len(gold) and " ".join(step.split()) == gold[k]
                values.append(float(ok))
            out.append(StepScores(values, float(ok and len(steps) == len(gold))))
        return out


def load_bench_scorer(spec: str):
    """`step-oracle` (ChainStepOracle), else rewards.load_scorer (verifier or a saved reward-model directory)."""
    from ...rewards import load_scorer

    return ChainStepOracle() if spec == "step-oracle" else load_scorer(spec)


def bench_scorer_label(spec: str) -> str:
    from ...search.summary import scorer_label

    return "step-oracle (ORACLE PRM: each step checked against the worked solution)" if spec == "step-oracle" else scorer_label(spec)


def base_config(seed: int, delta: float = 0.7):
    from ...search import SearchConfig

    # 3-term chains: two "a op b = c" lines and "Answer: c" -> 3 steps; 5 leaves room for a rambling model
    return SearchConfig(beam_width=4, max_steps=5, max_step_tokens=16, max_new_tokens=48, temperature=1.0, delta=delta,
                        aggregation="last", select="best", seed=seed)


def interpolate_log(points: list[dict], flops: float, key: str = "flops_per_problem") -> float | None:
    """Accuracy of a curve at `flops` (measured by `key`), linear in log FLOPs between its two neighbouring points
    (None outside the curve)."""
    pts = sorted(points, key=lambda p: p[key])
    for a, b in zip(pts, pts[1:]):
        if a[key] <= flops <= b[key]:
            la, lb = math.log(a[key]), math.log(b[key])
            w = 0.0 if lb == la else (math.log(flops) - la) / (lb - la)
            return a["accuracy"] + w * (b["accuracy"] - a["accuracy"])
    return None


def beam_vs_best_of_n(curves: dict) -> list[dict]:
    """At each beam point: best-of-N's accuracy at the same FLOPs (interpolated) and the difference; also at the
    same decode FLOPs, i.e. as if a prefix cache spared beam search from re-reading prompt + prefix every step."""
    rows = []
    bon = curves.get("best_of_n", [])
    for p in curves.get("beam", []):
        other = interpolate_log(bon, p["flops_per_problem"])
        other_decode = interpolate_log(bon, p["decode_flops_per_problem"], "decode_flops_per_problem") if p.get("decode_flops_per_problem") else None
        rows.append({"n": p["n"], "flops_per_problem": p["flops_per_problem"], "beam": p["accuracy"], "beam_ci95": p["accuracy_ci95"],
                     "best_of_n_at_equal_flops": other, "difference": None if other is None else p["accuracy"] - other,
                     "best_of_n_at_equal_decode_flops": other_decode,
                     "difference_decode": None if other_decode is None else p["accuracy"] - other_decode})
    return rows


def speculative_vs_target(curves: dict) -> list[dict]:
    """Speculative decoding against target-only sampling (best-of-N with the target, same N and scorer): accuracy,
    and the ratio of target-model FLOPs spent."""
    bon = {p["n"]: p for p in curves.get("best_of_n", [])}
    rows = []
    for p in curves.get("speculative", []):
        if p["n"] not in bon:
            continue
        q = bon[p["n"]]
        rows.append({"n": p["n"], "speculative": p["accuracy"], "speculative_ci95": p["accuracy_ci95"],
                     "target_only": q["accuracy"], "target_only_ci95": q["accuracy_ci95"],
                     "speculative_target_flops": p["compute"]["target"]["flops"], "target_only_target_flops": q["compute"]["policy"]["flops"],
                     "target_flops_ratio": p["compute"]["target"]["flops"] / q["compute"]["policy"]["flops"],
                     # decode only: the part no cache can save (the prefix cache already removed re-reading the prefix)
                     "target_decode_flops_ratio": p["compute"]["target"]["flops_decode"] / q["compute"]["policy"]["flops_decode"],
                     "draft_step_share": p.get("draft_step_share")})
    return rows


def _point(name: str, n: int, summary: dict, seconds: float) -> dict:
    point = {k: v for k, v in summary.items() if k != "problems"}
    point.update(n=n, wall_seconds=seconds, decode_flops_per_problem=sum(c["flops_decode"] for c in summary["compute"].values()) / summary["n_problems"])
    shares = [r["info"]["draft_step_share"] for r in summary["problems"] if "draft_step_share" in r.get("info", {})]
    if shares:
        point["draft_step_share"] = sum(shares) / len(shares)
    return point


def run_bench(out: Path, *, problems: int = 50, max_n: int = 64, sft_steps: int = 500, scorer_spec: str = "verifier",
              strategies: list[str] | None = None, seed: int = 0, delta: float = 0.7, show_progress: bool = True) -> dict:
    from ...data import GymSource
    from ...progress import progress_bars
    from ...search import STRATEGIES, USES_SCORER, plot_accuracy_vs_flops, summarize
    from ...verify import Verifier

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = strategies or list(STRATEGIES)
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"--strategies: unknown {', '.join(unknown)}; valid: {', '.join(STRATEGIES)}")
    ns = [2**k for k in range(int(math.log2(max_n)) + 1)]
    source = GymSource(TASK, seed=seed, eval_size=problems, **TASK_KWARGS)
    eval_set = source.eval_problems
    cfg0 = base_config(seed, delta)
    t_start = time.perf_counter()
    scorer = load_bench_scorer(scorer_spec)
    curves: dict[str, list[dict]] = {}
    with Verifier() as verifier, progress_bars(show_progress) as bar:
        t0 = time.perf_counter()
        draft = train_policy("draft", out, sft_steps=sft_steps, seed=seed, bar=bar)
        target = train_policy("target", out, sft_steps=sft_steps, seed=seed, bar=bar)
        train_seconds = time.perf_counter() - t0
        # single samples of each model alone: the accuracy speculative decoding should reach
        reference = {}
        for label, model in (("draft", draft), ("target", target)):
            res = STRATEGIES["majority"](eval_set, model, None, dataclasses.replace(cfg0, n=1))
            s = summarize(res, eval_set, verifier)
            reference[f"{label}_single_sample"] = {"accuracy": s["accuracy"], "accuracy_ci95": s["accuracy_ci95"], "flops_per_problem": s["flops_per_problem"]}
        tick = bar("search (strategy x N)", len(names) * len(ns))
        for name in names:
            curves[name] = []
            for n in ns:
                t1 = time.perf_counter()
                results = STRATEGIES[name](eval_set, target, scorer if name in USES_SCORER else None, dataclasses.replace(cfg0, n=n),
                                           draft=draft if name == "speculative" else None)
                curves[name].append(_point(name, n, summarize(results, eval_set, verifier), time.perf_counter() - t1))
                tick(1, strategy=name, N=n, acc=curves[name][-1]["accuracy"])
    if hasattr(getattr(scorer, "verifier", None), "close"):
        scorer.verifier.close()
    label = bench_scorer_label(scorer_spec)
    result = {
        "task": TASK, "task_kwargs": TASK_KWARGS, "n_problems": len(eval_set), "ns": ns,
        "scorer": {"spec": scorer_spec, "label": label, "oracle": scorer_spec in ("verifier", "step-oracle")},
        "models": {"draft": {"params": draft.num_params, "size": SIZES["draft"]}, "target": {"params": target.num_params, "size": SIZES["target"]},
                   "sft_steps": sft_steps},
        "config": dataclasses.asdict(cfg0), "reference": reference, "curves": curves,
        "speculative_vs_target_only": speculative_vs_target(curves), "beam_vs_best_of_n": beam_vs_best_of_n(curves),
        "seconds": {"training": train_seconds, "total": time.perf_counter() - t_start},
        "machine": f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} at the end "
                   "(shared machine: wall seconds are noisy, FLOPs and tokens are exact)",
    }
    stem = "search" if scorer_spec == "verifier" else f"search_{Path(scorer_spec).name}"
    result["files"] = [str(out / f"{stem}.json"), str(out / f"{stem}.png")]
    write_json(out / f"{stem}.json", result)
    plot_accuracy_vs_flops(curves, out / f"{stem}.png", title=f"{TASK} (3 one-digit terms), {len(eval_set)} held-out problems, "
                           f"target {target.num_params:,} / draft {draft.num_params:,} params", scorer_label=label)
    return result


def run_from_args(args) -> int:
    from ...progress import console

    res = run_bench(Path(args.out), problems=args.problems, max_n=args.max_n, sft_steps=args.sft_steps, scorer_spec=args.scorer,
                    strategies=args.strategies.split(",") if args.strategies else None, seed=args.seed, delta=args.delta,
                    show_progress=not args.quiet)
    console.print(f"scorer: {res['scorer']['label']}")
    for name, pts in res["curves"].items():
        console.print(f"{name:22s} " + "  ".join(f"N={p['n']}: {p['accuracy']:.2f} ({p['flops_per_problem']:.2g})" for p in pts))
    for row in res["speculative_vs_target_only"]:
        console.print(f"speculative N={row['n']}: acc {row['speculative']:.3f} vs target-only {row['target_only']:.3f}, "
                      f"target FLOPs ratio {row['target_flops_ratio']:.3f} (decode only {row['target_decode_flops_ratio']:.3f}), "
                      f"draft wrote {row['draft_step_share']:.2f} of steps")
    console.print(f"wrote {res['files']}")
    return 0

