"""RewardBench `math-prm` (Lambert et al. 2024, "RewardBench: Evaluating Reward Models for Language Modeling",
arXiv:2403.13787): 447 pairs of a human-written chosen solution and a model-written rejected one. The
metric is pairwise accuracy: a pair counts 1 when the chosen side scores strictly higher, 0 otherwise
(ties count 0, as in RewardBench's `scores_chosen > scores_rejected`). Step scores are reduced to one
number per solution with each aggregation (min, prod, last, mean).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ...data.problem import Problem
from ...rewards.base import Scorer, StepScores
from .report import save_bars, write_report
from ...rewards.base import aggregate
from .scores_io import ScoreItem, resolve_scores

PAPER = "Lambert et al. 2024, RewardBench (arXiv:2403.13787), subset math-prm"
PAIRS_FILE = Path("rewardbench_math_prm") / "math_prm_pairs.jsonl"
RM_AGGREGATIONS = ("min", "prod", "last", "mean")


def pairwise_accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    """Fraction of pairs where chosen > rejected strictly; a tie counts as a miss."""
    if len(chosen) != len(rejected) or not chosen:
        raise ValueError(f"need equally many chosen and rejected scores, got {len(chosen)} and {len(rejected)}")
    return sum(c > r for c, r in zip(chosen, rejected)) / len(chosen)


def load_pairs(root: Path) -> list[dict]:
    with (root / PAIRS_FILE).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def rewardbench_items(pairs: list[dict]) -> list[ScoreItem]:
    """Two items per pair: ids "<problem_id>-chosen" and "<problem_id>-rejected"."""
    items = []
    for p in pairs:
        problem = Problem(str(p["problem_id"]), p["problem"], None, "rewardbench/math-prm",
                          {"subject": p.get("subject"), "level": p.get("level")})
        for side in ("chosen", "rejected"):
            items.append(ScoreItem(f"{p['problem_id']}-{side}", problem, tuple(p[f"{side}_steps"])))
    return items


def stored_math_shepherd(pairs: list[dict]) -> dict[str, StepScores]:
    """The Math-Shepherd step scores the data file ships for both sides of every pair."""
    out = {}
    for p in pairs:
        for side in ("chosen", "rejected"):
            steps = p[f"math_shepherd_{side}_step_scores"]
            out[f"{p['problem_id']}-{side}"] = StepScores(steps=list(steps), outcome=steps[-1])
    return out


def evaluate_rewardbench(pairs: list[dict], scores: dict[str, StepScores],
                         aggregations: Sequence[str] = RM_AGGREGATIONS) -> dict:
    """Pairwise accuracy per aggregation (outcome scores are used as they are when a row has no steps)."""
    out = {}
    for how in aggregations:
        chosen = [aggregate(scores[f"{p['problem_id']}-chosen"], how) for p in pairs]
        rejected = [aggregate(scores[f"{p['problem_id']}-rejected"], how) for p in pairs]
        out[how] = {"accuracy": pairwise_accuracy(chosen, rejected),
                    "ties": sum(c == r for c, r in zip(chosen, rejected)), "n_pairs": len(pairs)}
    return out


def run_rewardbench(out: Path, *, data_root: Path, scores: Path | None = None, scorer: Scorer | None = None,
                    threshold: float | None = None, critic=None) -> dict:
    """Pairwise accuracy from a scores file, a Scorer, or (neither given) the shipped Math-Shepherd scores."""
    pairs = load_pairs(data_root)
    step_scores, source = resolve_scores(rewardbench_items(pairs), scores=scores, scorer=scorer)
    if step_scores is None:
        step_scores, source = stored_math_shepherd(pairs), "Math-Shepherd step scores shipped in math_prm_pairs.jsonl"
    res = evaluate_rewardbench(pairs, step_scores)
    results = {"benchmark": "rewardbench", "paper": PAPER, "source": source, "aggregations": res}
    rows = [[how, 100 * r["accuracy"], r["ties"], r["n_pairs"]] for how, r in res.items()]
    notes = [f"Metric as defined by {PAPER}: chosen must score strictly higher; ties count 0.",
             f"Source of scores: {source}."]
    write_report(out, "RewardBench math-prm", results, [("Pairwise accuracy (%)", ["aggregation", "accuracy", "ties", "pairs"], rows)], notes)
    save_bars(out / "rewardbench_accuracy.png", list(res), {"accuracy": [r["accuracy"] for r in res.values()]},
              ylabel="pairwise accuracy", title="RewardBench math-prm")
    return results
