"""ProcessBench (Zheng et al. 2024, "ProcessBench: Identifying Process Errors in Mathematical Reasoning",
arXiv:2412.06559): find the earliest wrong step of a solution, or -1 when every step is right.

Metric (paper, Sec. 3): per subset, accuracy on the erroneous samples (label != -1, the predicted
index must equal the label exactly), accuracy on the correct samples (label == -1, the prediction
must be -1), and their harmonic mean F1. The headline is the unweighted mean of the four subset F1s.
A PRM's step scores become a prediction through a threshold: the first step scoring below it.
Following the paper, the threshold is the one with the best F1 on the GSM8K subset unless given.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ...data.problem import Problem
from ...rewards.base import Scorer, StepScores
from .critic import critic_predictions
from .report import save_lines, write_report
from .scores_io import ScoreItem, resolve_scores

PAPER = "Zheng et al. 2024, ProcessBench (arXiv:2412.06559)"
SUBSETS = ("gsm8k", "math", "olympiadbench", "omnimath")
TUNE_SUBSET = "gsm8k"  # the paper picks PRM thresholds on GSM8K


def first_error_step(step_scores: Sequence[float], threshold: float) -> int:
    """Index of the first step scoring strictly below `threshold`; -1 when none does."""
    return next((i for i, s in enumerate(step_scores) if s < threshold), -1)


def processbench_f1(preds: Sequence[int], labels: Sequence[int]) -> dict:
    """Accuracy on erroneous samples, on correct samples, and their harmonic mean (fractions in [0, 1])."""
    on_err = [p == y for p, y in zip(preds, labels) if y != -1]
    on_cor = [p == -1 for p, y in zip(preds, labels) if y == -1]
    acc_err = sum(on_err) / len(on_err) if on_err else math.nan
    acc_cor = sum(on_cor) / len(on_cor) if on_cor else math.nan
    total = acc_err + acc_cor
    f1 = 2 * acc_err * acc_cor / total if total > 0 else (0.0 if total == 0 else math.nan)
    return {"acc_erroneous": acc_err, "acc_correct": acc_cor, "f1": f1, "n_erroneous": len(on_err), "n_correct": len(on_cor)}


def predictions_at(step_lists: Sequence[Sequence[float]], thresholds: np.ndarray) -> np.ndarray:
    """First-error predictions for many thresholds at once: [T, B]."""
    n_steps = np.array([len(s) for s in step_lists])  # [B]
    width = max(1, int(n_steps.max(initial=1)))
    prefix_min = np.full((len(step_lists), width), -np.inf)  # [B, S], -inf on padding
    for b, steps in enumerate(step_lists):
        prefix_min[b, : len(steps)] = np.minimum.accumulate(np.asarray(steps, dtype=float))
    out = np.empty((len(thresholds), len(step_lists)), dtype=np.int64)  # [T, B]
    for lo in range(0, len(thresholds), 256):
        t = thresholds[lo : lo + 256]
        # steps before the first one below t are exactly those whose prefix minimum is still >= t
        count = (prefix_min[None] >= t[:, None, None]).sum(-1)  # [t, B]
        out[lo : lo + 256] = np.where(count == n_steps[None], -1, count)
    return out


def f1_at(step_lists: Sequence[Sequence[float]], labels: Sequence[int], thresholds: np.ndarray) -> np.ndarray:
    """F1 for every threshold: [T]."""
    preds = predictions_at(step_lists, thresholds)  # [T, B]
    y = np.asarray(labels)
    err = y != -1
    acc_err = (preds[:, err] == y[err]).mean(1) if err.any() else np.zeros(len(thresholds))
    acc_cor = (preds[:, ~err] == -1).mean(1) if (~err).any() else np.zeros(len(thresholds))
    total = acc_err + acc_cor
    return np.where(total > 0, 2 * acc_err * acc_cor / np.where(total > 0, total, 1), 0.0)


def best_threshold(step_lists: Sequence[Sequence[float]], labels: Sequence[int]) -> tuple[float, float, int]:
    """(threshold, F1, candidates tried): every distinct step score, plus one above the maximum, is a
    candidate, so every split of the scores is tried; ties go to the smallest threshold."""
    values = np.unique(np.concatenate([np.asarray(s, dtype=float) for s in step_lists]))
    candidates = np.append(values, np.nextafter(values[-1], np.inf))
    f1 = f1_at(step_lists, labels, candidates)
    best = int(np.argmax(f1))
    return float(candidates[best]), float(f1[best]), len(candidates)


def load_processbench(root: Path) -> dict[str, list[dict]]:
    return {s: json.loads((root / "processbench" / f"{s}.json").read_text()) for s in SUBSETS}


def processbench_items(data: dict[str, list[dict]]) -> list[ScoreItem]:
    """One item per sample, keyed by the dataset's own `id` ("gsm8k-0", ...)."""
    return [
        # the label stays out of meta: a scorer must not be able to read the answer key
        ScoreItem(row["id"], Problem(row["id"], row["problem"], None, f"processbench/{subset}",
                                     {"generator": row["generator"]}), tuple(row["steps"]))
        for subset, rows in data.items() for row in rows
    ]


def processbench_oracle_scores(data: dict[str, list[dict]]) -> dict[str, StepScores]:
    """Scores from the labels: 1.0 before the earliest error, 0.0 from it on (F1 = 1 at any threshold in (0, 1])."""
    out = {}
    for rows in data.values():
        for row in rows:
            cut = len(row["steps"]) if row["label"] == -1 else row["label"]
            steps = [1.0 if i < cut else 0.0 for i in range(len(row["steps"]))]
            out[row["id"]] = StepScores(steps=steps, outcome=min(steps))
    return out


def evaluate_processbench(data: dict[str, list[dict]], scores: dict[str, StepScores], threshold: float | None = None) -> dict:
    """Per-subset accuracies and F1, and the average F1, from step scores keyed by sample id."""
    steps, labels = {}, {}
    for subset, rows in data.items():
        for row in rows:
            if not scores[row["id"]].steps:
                raise ValueError(f"ProcessBench needs step scores; id {row['id']!r} has only an outcome score")
        steps[subset] = [scores[row["id"]].steps for row in rows]
        labels[subset] = [row["label"] for row in rows]
    if threshold is None:
        threshold, tune_f1, tried = best_threshold(steps[TUNE_SUBSET], labels[TUNE_SUBSET])
        how = f"best F1 on the {TUNE_SUBSET} subset (F1 {tune_f1:.4f}; {tried} candidate thresholds swept)"
    else:
        how = "given"
    subsets = {
        s: processbench_f1([first_error_step(x, threshold) for x in steps[s]], labels[s]) for s in data
    }
    return {"threshold": threshold, "threshold_source": how, "subsets": subsets,
            "average_f1": sum(r["f1"] for r in subsets.values()) / len(subsets)}


def _plot(out: Path, data, scores, threshold: float) -> Path:
    all_scores = np.concatenate([np.asarray(s.steps, dtype=float) for s in scores.values() if s.steps])
    grid = np.unique(np.append(np.quantile(all_scores, np.linspace(0, 1, 101)), threshold))
    series = {s: f1_at([scores[r["id"]].steps for r in rows], [r["label"] for r in rows], grid)
              for s, rows in data.items()}
    return save_lines(out / "processbench_f1_vs_threshold.png", grid, series, xlabel="threshold (first step below = error)",
                      ylabel="F1", title=f"ProcessBench F1 vs threshold (chosen {threshold:.4g})")


def _tables(res: dict) -> list:
    rows = [[s, 100 * r["acc_erroneous"], 100 * r["acc_correct"], 100 * r["f1"], r["n_erroneous"], r["n_correct"]]
            for s, r in res["subsets"].items()]
    rows.append(["average F1", None, None, 100 * res["average_f1"], None, None])
    return [("ProcessBench (%)", ["subset", "error acc", "correct acc", "F1", "n error", "n correct"], rows)]


def evaluate_critic(preds: dict[str, list[int | None]], data: dict[str, list[dict]]) -> dict:
    """Per-subset accuracies and F1 of a generative critic's named steps, plus how many answers could not be parsed."""
    subsets = {}
    for subset, rows in data.items():
        res = processbench_f1(preds[subset], [r["label"] for r in rows])
        subsets[subset] = {**res, "unparsed": sum(p is None for p in preds[subset])}
    return {"threshold": None, "threshold_source": "none (generative critic names the step)", "subsets": subsets,
            "average_f1": sum(r["f1"] for r in subsets.values()) / len(subsets)}


def run_processbench(out: Path, *, data_root: Path, scores: Path | None = None, scorer: Scorer | None = None,
                     threshold: float | None = None, critic=None, limit: int | None = None) -> dict:
    """Score ProcessBench from a scores file, a Scorer, or a generative critic; write DIR/results.*.
    `limit` keeps `limit` items of each subset (a model or critic run; a scores file covers everything), evenly
    spaced over its erroneous solutions and then its correct ones, so both kinds keep their share (the files list
    erroneous ones first: the first items alone would have no F1)."""
    start = time.perf_counter()
    data = load_processbench(data_root)
    if limit is not None:
        if scores is not None:
            raise ValueError("--limit applies to --model and --critic runs; a scores file is evaluated whole")
        by_kind = {subset: sorted(rows, key=lambda r: r["label"] == -1) for subset, rows in data.items()}  # stable
        data = {subset: rows[:: max(1, len(rows) // limit)][:limit] for subset, rows in by_kind.items()}
    if critic is not None:
        res = evaluate_critic(critic_predictions(critic, data), data)
        source = f"generative critic {type(critic).__name__}"
    else:
        step_scores, source = resolve_scores(processbench_items(data), scores=scores, scorer=scorer)
        if step_scores is None:
            raise ValueError("ProcessBench ships no scores: give a scores file (--scores) or a model (--model)")
        res = evaluate_processbench(data, step_scores, threshold)
    seconds = time.perf_counter() - start
    results = {"benchmark": "processbench", "paper": PAPER, "source": source, **res,
               "n_items": sum(len(v) for v in data.values()), "perf/seconds": seconds}
    notes = [f"Metric as defined by {PAPER}; F1 = harmonic mean of the two accuracies; average = unweighted mean of subset F1s.",
             f"Source of scores: {source}. Threshold: {res.get('threshold')} ({res.get('threshold_source')}).",
             f"{results['n_items']} items evaluated in {seconds:.2f} s."]
    write_report(out, "ProcessBench", results, _tables(res), notes)
    if critic is None:
        _plot(out, data, step_scores, res["threshold"])
    return results
