"""Choosing one answer from n stored samples per problem: mean accuracy, pass@k, maj@k, rm@k (best-of-k by
reward) and reward-weighted majority, for k = 1, 2, 4, 8.

Averaging for k < n ("subsets", the default): each metric is its exact expectation over all C(n, k)
subsets of the n samples, and a tie between winners gives the mean correctness of the tied winners
(the expectation under a uniformly random tie-break). pass@k is the unbiased estimator of Chen et al.
2021 ("Evaluating Large Language Models Trained on Code", eq. 1), 1 - C(n-c, k) / C(n, k), which is
the same subset expectation in closed form. "first" mode instead takes the first k samples and breaks
ties towards the earliest sample, as Qwen2.5-Math's evaluation/rm_maj_eval.py does.

Answers are grouped by their extracted `pred` string exactly (as rm_maj_eval.py does with strip=False);
a group's correctness is that of its first sample; a sample without an answer (None) does not vote. Weighted majority sums a weight per sample over each
distinct answer (Li et al. 2023, "Making Language Models Better Reasoners with Step-Aware Verifier",
weighted voting). Reward scores can be negative, so they are mapped to positive weights first:
"sigmoid" (default, 1 / (1 + e^-s)), "exp" (e^s), or "raw", which refuses negative scores.
"""
from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path
from typing import Callable, Sequence

from ...data.problem import Problem
from ...data.steps import split_steps
from ...rewards.base import Scorer, aggregate
from .report import save_lines, write_report
from .scores_io import ScoreItem, resolve_scores
from ..metrics import pass_at_k, top_scored, vote

WEIGHTS: dict[str, Callable[[float], float]] = {
    "sigmoid": lambda s: 1.0 / (1.0 + math.exp(-s)),
    "exp": math.exp,
    "raw": lambda s: s,
}


def _credit(winners: Sequence[int], correct: Sequence[bool], tie_break: str) -> float:
    """Correctness of the chosen sample: the earliest winner, or the mean over tied winners (0 when nobody won)."""
    if not winners:
        return 0.0
    if tie_break == "first":
        return float(correct[min(winners)])
    return sum(correct[i] for i in winners) / len(winners)


# The choices themselves are eval.metrics.top_scored / vote, the ones search and the benchmarks use; here they run
# over every subset of k samples and tied winners may share the credit.


def maj_credit(idx: Sequence[int], preds, correct, tie_break: str = "mean") -> float:
    return _credit(vote(preds, [1.0] * len(preds), idx), correct, tie_break)


def rm_credit(idx: Sequence[int], scores, correct, tie_break: str = "mean") -> float:
    return _credit(top_scored(scores, idx), correct, tie_break)


def weighted_maj_credit(idx: Sequence[int], preds, scores, correct, weights: str = "sigmoid", tie_break: str = "mean") -> float:
    if weights == "raw" and any(scores[i] < 0 for i in idx):
        raise ValueError("weights='raw' cannot vote with negative scores; use 'sigmoid' or 'exp'")
    w = [WEIGHTS[weights](s) for s in scores]
    return _credit(vote(preds, w, idx), correct, tie_break)


def selection_metrics(preds: Sequence[str], correct: Sequence[bool], scores: Sequence[float], k: int, *,
                      mode: str = "subsets", weights: str = "sigmoid") -> dict[str, float]:
    """All metrics at one k for one problem's n samples."""
    n = len(preds)
    if not (len(correct) == len(scores) == n and 1 <= k <= n):
        raise ValueError(f"need n aligned preds/correct/scores and 1 <= k <= n, got n={n}, k={k}")
    if mode == "subsets":
        subsets, tie = list(combinations(range(n), k)), "mean"
    elif mode == "first":
        subsets, tie = [tuple(range(k))], "first"
    else:
        raise ValueError(f"unknown mode {mode!r}; valid: subsets, first")
    mean = lambda f: sum(f(s) for s in subsets) / len(subsets)
    return {
        "mean_acc": sum(correct) / n,
        "pass@k": pass_at_k(n, sum(correct), k) if mode == "subsets" else float(any(correct[:k])),
        "maj@k": mean(lambda s: maj_credit(s, preds, correct, tie)),
        "rm@k": mean(lambda s: rm_credit(s, scores, correct, tie)),
        "weighted_maj@k": mean(lambda s: weighted_maj_credit(s, preds, scores, correct, weights, tie)),
    }


def selection_curve(problems: Sequence[tuple[Sequence[str], Sequence[bool], Sequence[float]]],
                    ks: Sequence[int] = (1, 2, 4, 8), *, mode: str = "subsets", weights: str = "sigmoid") -> dict[int, dict]:
    """Each metric averaged over problems, for every k: {k: {metric: value}}."""
    out = {}
    for k in ks:
        per = [selection_metrics(p, c, s, k, mode=mode, weights=weights) for p, c, s in problems]
        out[k] = {m: sum(r[m] for r in per) / len(per) for m in per[0]}
    return out


# ---- the benchmark on stored samples (qwen25_math_eval/eval_rm_maj_example/math_cot_100.jsonl) ----

SAMPLES_FILE = Path("qwen25_math_eval") / "eval_rm_maj_example" / "math_cot_100.jsonl"


def load_samples(root: Path) -> list[dict]:
    with (root / SAMPLES_FILE).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def selection_items(rows: list[dict]) -> list[ScoreItem]:
    """One item per response, id "<idx>-<j>", the response split into steps."""
    return [ScoreItem(f"{r['idx']}-{j}", Problem(str(r["idx"]), r["question"], str(r["gt"]), "math", {"level": r.get("level")}),
                      tuple(split_steps(text) or [text])) for r in rows for j, text in enumerate(r["response"])]


def stored_orm_scores(rows: list[dict]) -> list[list[float]]:
    # pred_score holds one single-element list per response: the outcome reward model's score.
    return [[s[-1] for s in r["pred_score"]] for r in rows]


def run_selection(out: Path, *, data_root: Path, scores: Path | None = None, scorer: Scorer | None = None,
                  threshold: float | None = None, critic=None,
                  ks: Sequence[int] = (1, 2, 4, 8), weights: str = "sigmoid", how: str = "min") -> dict:
    """Selection metrics with the stored ORM scores, or with a scores file / Scorer (reduced by `how`)."""
    rows = load_samples(data_root)
    step_scores, source = resolve_scores(selection_items(rows), scores=scores, scorer=scorer, check_steps=False)
    if step_scores is None:
        rm_scores, source = stored_orm_scores(rows), "stored ORM pred_score in math_cot_100.jsonl"
    else:
        rm_scores = [[aggregate(step_scores[f"{r['idx']}-{j}"], how) for j in range(len(r["pred"]))] for r in rows]
    problems = [(r["pred"], [bool(x) for x in r["score"]], s) for r, s in zip(rows, rm_scores)]
    curves = {mode: selection_curve(problems, ks, mode=mode, weights=weights) for mode in ("subsets", "first")}
    results = {"benchmark": "selection", "source": source, "weights": weights, "n_problems": len(rows),
               "n_samples": len(rows[0]["pred"]), "curves": {m: {str(k): v for k, v in c.items()} for m, c in curves.items()}}
    metrics = list(curves["subsets"][ks[0]])
    tables = [(f"Accuracy (%), {mode}", ["k"] + metrics, [[k] + [100 * c[k][m] for m in metrics] for k in ks])
              for mode, c in curves.items()]
    notes = ["subsets: exact average over all C(n,k) subsets, tied winners share credit; first: the first k samples, "
             "ties to the earliest (Qwen2.5-Math rm_maj_eval.py).",
             f"pass@k: unbiased estimator 1 - C(n-c,k)/C(n,k) (Chen et al. 2021). Weighted majority weights: {weights}.",
             f"Source of scores: {source}; answers grouped by exact `pred` string."]
    write_report(out, "Selection from stored samples", results, tables, notes)
    save_lines(out / "selection_accuracy_vs_k.png", list(ks), {m: [curves["subsets"][k][m] for k in ks] for m in metrics},
               xlabel="k (samples)", ylabel="accuracy", title="math_cot_100: accuracy vs k (subset average)", logx=True)
    return results
