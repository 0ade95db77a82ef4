"""Search results -> accuracy with a 95% interval and compute totals; the accuracy-vs-FLOPs plot."""
from __future__ import annotations

from pathlib import Path

from ..data.problem import Problem
from ..eval.metrics import wilson_ci
from .base import Compute, SearchResult


def summarize(results: list[SearchResult], problems: list[Problem], verifier) -> dict:
    """Accuracy of the chosen solutions (judged by `verifier` against the gold answers, Wilson 95% interval)
    and compute: totals per model and overall, and the mean per problem. Also the per-problem rows."""
    verdicts = verifier.verify(problems, [r.text for r in results])
    acc, lo, hi = wilson_ci(sum(v.correct for v in verdicts), len(verdicts))
    per_model: dict[str, Compute] = {}
    for r in results:
        for name, c in r.compute.items():
            per_model.setdefault(name, Compute()).add(c)
    total = Compute()
    for c in per_model.values():
        total.add(c)
    n = max(1, len(results))
    rows = [{"id": r.problem_id, "answer": r.answer, "correct": bool(v.correct), "n_candidates": len(r.candidates),
             "flops": r.total().flops, **({"info": _small(r.info)} if r.info else {})} for r, v in zip(results, verdicts)]
    return {
        "n_problems": len(results),
        "accuracy": acc,
        "accuracy_ci95": [lo, hi],
        "compute": {name: c.to_dict() for name, c in per_model.items()},
        "total": total.to_dict(),
        "flops_per_problem": total.flops / n,
        "tokens_generated_per_problem": total.tokens_generated / n,
        "seconds": total.seconds,
        "problems": rows,
    }


def _small(info: dict) -> dict:
    return {k: v for k, v in info.items() if k != "trace"}


def plot_accuracy_vs_flops(curves: dict[str, list[dict]], path: Path, *, title: str, scorer_label: str) -> Path:
    """One line per strategy: accuracy (with its 95% interval as error bars) against total FLOPs per problem,
    both at log-scale x. curves[name] = [{"n", "accuracy", "accuracy_ci95", "flops_per_problem"}, ...]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    colors, markers = plt.cm.tab20.colors, "osD^v<>Px*h"  # 11 strategies: more than tab10's colours
    for k, (name, pts) in enumerate(curves.items()):
        pts = sorted(pts, key=lambda p: p["flops_per_problem"])
        xs = [p["flops_per_problem"] for p in pts]
        ys = [p["accuracy"] for p in pts]
        # clamped at 0: at 0 or n successes the Wilson bound can sit a rounding error inside the point
        err = [[max(0.0, y - p["accuracy_ci95"][0]) for y, p in zip(ys, pts)], [max(0.0, p["accuracy_ci95"][1] - y) for y, p in zip(ys, pts)]]
        line = ax.errorbar(xs, ys, yerr=err, marker=markers[k % len(markers)], markersize=4, capsize=2, alpha=0.85, label=name,
                           color=colors[(2 * k) % 20 + (k // 10) % 2])
        for x, y, p in zip(xs, ys, pts):
            ax.annotate(str(p["n"]), (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points", color=line[0].get_color())
    ax.set_xscale("log")
    ax.set(xlabel="FLOPs per problem (all models, prefill + decode + scoring)", ylabel="accuracy", ylim=(0, 1),
           title=f"{title}\nscorer: {scorer_label}  (numbers: N)")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_compute(res: dict, path: Path) -> Path:
    """One search run: FLOPs per problem of each model, split into prefill, decode and scoring."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, res["n_problems"])
    names = list(res["compute"])
    fig, ax = plt.subplots(figsize=(6, 4))
    bottom = [0.0] * len(names)
    for part in ("flops_prefill", "flops_decode", "flops_scored"):
        vals = [res["compute"][m][part] / n for m in names]
        ax.bar(names, vals, bottom=bottom, label=part.split("_")[1])
        bottom = [b + v for b, v in zip(bottom, vals)]
    lo, hi = res["accuracy_ci95"]
    scorer = f"; scorer {res['scorer']}" if res.get("scorer") else ""
    ax.set(ylabel="FLOPs per problem", title=f"{res['strategy']} N={res['config']['n']}: accuracy {res['accuracy']:.3f} "
                                             f"[{lo:.3f}, {hi:.3f}]{scorer}")
    ax.title.set_fontsize(8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def scorer_label(spec: str) -> str:
    """How a result names its scorer: the verifier is marked as an oracle (it knows the gold answer)."""
    return "verifier (ORACLE: knows the gold answer)" if spec == "verifier" else spec
