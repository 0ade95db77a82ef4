"""PRMBench (Song et al. 2025, "PRMBench: A Fine-grained and Challenging Benchmark for Process-Level Reward
Models", arXiv:2501.03124): 6,216 solutions with 83,456 step labels; errors of 8 classes were injected
into PRM800K solutions, plus a class of correct alternative solutions (multi_solutions).

Metric, as the paper and its code (ssmisya/PRMBench, mr_eval/tasks/prmtest_classified) define it: a
step is predicted correct when its score is above the threshold (0.5 by default). Positive = a correct
step, negative = an erroneous one. PRM-Score = 0.5 * F1(positive) + 0.5 * F1(negative), clipped at 0, with
F1 counted -1 when undefined, as the code does. Per class it uses that class's steps; multi_solutions has
no erroneous steps, so its score is F1(positive) alone. The overall score uses the pooled counts of every
modified solution. The unmodified originals of the redundancy items form the extra class "correct"
(scored, reported, never pooled). Error steps are 1-based; indices beyond the solution are ignored.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from ...data.problem import Problem
from ...rewards.base import Scorer, StepScores
from .report import save_bars, write_report
from .scores_io import ScoreItem, resolve_scores

PAPER = "Song et al. 2025, PRMBench (arXiv:2501.03124)"
CORRECT_SOURCE = "redundency"  # the class whose unmodified originals become the "correct" samples
NO_NEGATIVES = ("multi_solutions", "correct")
# Paper's names and dimensions (Table 3): simplicity, soundness, sensitivity.
DIMENSIONS = {
    "simplicity": {"redundency": "NR", "circular": "NCL"},
    "soundness": {"counterfactual": "ES", "step_contradiction": "SC", "domain_inconsistency": "DC", "confidence": "CI"},
    "sensitivity": {"missing_condition": "PS", "deception": "DR", "multi_solutions": "MS"},
}


def step_confusion(error_steps: Iterable[int], predicted_correct: list[bool]) -> dict[str, int]:
    """Counts with positive = correct step: TP correct kept, FN correct flagged, TN error flagged, FP error kept."""
    wrong = {e - 1 for e in error_steps}
    c = {"TP": 0, "FN": 0, "TN": 0, "FP": 0}
    for i, ok in enumerate(predicted_correct):
        c[("FP" if ok else "TN") if i in wrong else ("TP" if ok else "FN")] += 1
    return c


def _f1(hit: int, miss_a: int, miss_b: int) -> float:
    precision = hit / (hit + miss_a) if hit + miss_a else -1.0
    recall = hit / (hit + miss_b) if hit + miss_b else -1.0
    return 2 * precision * recall / (precision + recall) if precision + recall != 0 else -1.0


def prm_score(c: dict[str, int], *, negatives: bool = True) -> dict:
    """F1 of correct steps, F1 of erroneous steps, and PRM-Score (their mean, or F1 alone without negatives)."""
    f1_pos, f1_neg = _f1(c["TP"], c["FP"], c["FN"]), _f1(c["TN"], c["FN"], c["FP"])
    score = 0.5 * f1_pos + 0.5 * f1_neg if negatives else f1_pos
    return {"prm_score": max(score, 0.0), "f1": f1_pos, "f1_negative": f1_neg, **c}


def load_prmbench(root: Path, *, files: str = "all") -> list[dict]:
    """Evaluation samples as the official loader builds them, keyed "<classification>_<idx>" and
    "correct_<idx>"; `files="test"` keeps only the prm800k_test_* and multi-solution files."""
    paths = sorted((root / "prmbench").glob("*.jsonl"))
    if files == "test":
        paths = [p for p in paths if "_train_" not in p.name]
    samples, seen = [], set()
    for path in paths:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                todo = [(row["classification"], row["modified_question"], row["modified_process"], row["error_steps"])]
                if row["classification"] == CORRECT_SOURCE:
                    todo.insert(0, ("correct", row["original_question"], row["original_process"], []))
                for cls, question, steps, errors in todo:
                    key = f"{cls}_{row['idx']}"
                    if key not in seen:  # the official loader keeps the first of repeated keys
                        seen.add(key)
                        samples.append({"id": key, "classification": cls, "question": question,
                                        "steps": steps, "error_steps": errors})
    return samples


def prmbench_items(samples: list[dict]) -> list[ScoreItem]:
    return [ScoreItem(s["id"], Problem(s["id"], s["question"], None, f"prmbench/{s['classification']}", {}),
                      tuple(s["steps"])) for s in samples]


def oracle_scores(samples: list[dict]) -> dict[str, StepScores]:
    """1.0 on correct steps, 0.0 on error steps: PRM-Score 1 everywhere."""
    out = {}
    for s in samples:
        wrong = {e - 1 for e in s["error_steps"]}
        steps = [0.0 if i in wrong else 1.0 for i in range(len(s["steps"]))]
        out[s["id"]] = StepScores(steps=steps, outcome=min(steps))
    return out


def evaluate_prmbench(samples: list[dict], scores: dict[str, StepScores], threshold: float = 0.5) -> dict:
    per_class: dict[str, dict[str, int]] = {}
    pooled = {"TP": 0, "FN": 0, "TN": 0, "FP": 0}
    for s in samples:
        steps = scores[s["id"]].steps
        if not steps:
            raise ValueError(f"PRMBench needs step scores; id {s['id']!r} has only an outcome score")
        c = step_confusion(s["error_steps"], [x > threshold for x in steps])
        acc = per_class.setdefault(s["classification"], {"TP": 0, "FN": 0, "TN": 0, "FP": 0})
        for k in c:
            acc[k] += c[k]
            if s["classification"] != "correct":
                pooled[k] += c[k]
    classes = {cls: prm_score(c, negatives=cls not in NO_NEGATIVES) for cls, c in sorted(per_class.items())}
    dims = {d: sum(classes[c]["prm_score"] for c in m) / len(m) for d, m in DIMENSIONS.items() if all(c in classes for c in m)}
    return {"threshold": threshold, "overall": prm_score(pooled), "classes": classes, "dimensions": dims,
            "n_samples": len(samples), "n_steps": sum(len(s["steps"]) for s in samples)}


def run_prmbench(out: Path, *, data_root: Path, scores: Path | None = None, scorer: Scorer | None = None,
                 threshold: float | None = None, critic=None, files: str = "all") -> dict:
    samples = load_prmbench(data_root, files=files)
    step_scores, source = resolve_scores(prmbench_items(samples), scores=scores, scorer=scorer)
    if step_scores is None:
        raise ValueError("PRMBench ships no scores: give a scores file (--scores) or a model (--model)")
    res = evaluate_prmbench(samples, step_scores, 0.5 if threshold is None else threshold)
    results = {"benchmark": "prmbench", "paper": PAPER, "source": source, "files": files, **res}
    short = {c: n for m in DIMENSIONS.values() for c, n in m.items()}
    pct = lambda x: "undefined" if x == -1.0 else 100 * x
    rows = [[c, short.get(c), pct(r["prm_score"]), pct(r["f1"]), pct(r["f1_negative"])]
            for c, r in [("overall", res["overall"]), *res["classes"].items()]]
    rows += [[f"avg {d}", None, 100 * v, None, None] for d, v in res["dimensions"].items()]
    notes = [f"Metric as defined by {PAPER} and its official evaluation code; threshold {res['threshold']} (step correct iff score > threshold).",
             f"Source of scores: {source}. {res['n_samples']} samples, {res['n_steps']} steps (files: {files}).",
             "F1 of -1 means undefined (no predicted or no true members of that class), as in the official code."]
    write_report(out, "PRMBench", results, [("PRM-Score (%)", ["class", "paper", "PRM-Score", "F1 correct", "F1 error"], rows)], notes)
    labels = list(res["classes"])
    save_bars(out / "prmbench_prm_score.png", labels, {"PRM-Score": [res["classes"][c]["prm_score"] for c in labels]},
              ylabel="PRM-Score", title="PRMBench PRM-Score per class")
    return results
