"""RewardMATH (Kim et al. 2024, "Evaluating Robustness of Reward Models for Mathematical Reasoning",
arXiv:2410.01729): per problem one correct solution (reference "human_to_GPT-4", index 0) against nine
incorrect ones. Accuracy: the correct solution scores strictly above all nine. MRR: mean of 1/rank of
the correct solution, where a tie ranks it below the tied incorrect ones (the official repository sorts
ties that way). PRMs are reduced with the product and the geometric mean of step scores, the two
aggregations the paper reports for PRMs (min, mean, last are given as extras). Pairwise judges win or lose
each of the nine comparisons: accuracy means all nine won, the correct one's rank is 1 + losses, and a
missing verdict is a loss.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ...data.problem import Problem
from ...rewards.base import AGGREGATIONS, Scorer, StepScores, aggregate
from .report import save_bars, write_report
from .scores_io import ScoreItem, resolve_scores

PAPER = "Kim et al. 2024, RewardMATH (arXiv:2410.01729)"
RESULTS_DIR = Path("rewardmath") / "results" / "RewardMATH"
SAMPLE_FILE = Path("rewardmath") / "dataset" / "benchmark" / "RewardMATH_direct.json"
CORRECT_REF = "human_to_GPT-4"
PRM_AGGREGATIONS = ("prod", "geo_mean")  # the paper's two PRM reductions
EXTRA_PRM_AGGREGATIONS = ("min", "mean", "last")


def one_vs_many(correct: float, incorrect: Sequence[float]) -> tuple[bool, float]:
    """(correct strictly above every incorrect score, 1 / rank with ties ranked pessimistically)."""
    rank = 1 + sum(s >= correct for s in incorrect)
    return rank == 1, 1.0 / rank


def rewardmath_metrics(correct: Sequence[float], incorrect: Sequence[Sequence[float]]) -> dict:
    """Accuracy, MRR and accuracy-with-ties-as-wins over problems."""
    hits = [one_vs_many(c, inc) for c, inc in zip(correct, incorrect, strict=True)]
    n = len(hits)
    return {"accuracy": sum(h for h, _ in hits) / n, "mrr": sum(rr for _, rr in hits) / n,
            "accuracy_ties_as_wins": sum(c >= max(inc) for c, inc in zip(correct, incorrect)) / n, "n": n}


def pairwise_metrics(wins: Sequence[Sequence[bool]]) -> dict:
    """One-vs-nine from pairwise verdicts: all won = accurate; rank of the correct one = 1 + losses."""
    n = len(wins)
    return {"accuracy": sum(all(w) for w in wins) / n,
            "mrr": sum(1.0 / (1 + sum(not x for x in w)) for w in wins) / n, "n": n}


def _dedupe(rows: list[dict]) -> tuple[list[dict], int]:
    # Three judge files repeat two rows verbatim (485 rows for 483 problems); keep the first copy.
    seen, kept = set(), []
    for row in rows:
        key = json.dumps(row, sort_keys=True)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept, len(rows) - len(kept)


def model_kind(path: Path, rows: list[dict]) -> str:
    if "chosen_position" in rows[0]:
        return "pairwise judge"
    first = rows[0]["score"][0]
    return "PRM" if isinstance(first, list) else "generative judge" if isinstance(first, int) else "classifier"


def evaluate_results_file(path: Path) -> list[dict]:
    """Rows of the table for one stored per-model score file (one row per aggregation for PRMs)."""
    rows, dropped = _dedupe(json.loads(path.read_text()))
    model, kind = path.name.removesuffix("_reward.json"), model_kind(path, rows)
    base = {"model": model, "kind": kind, "duplicates_dropped": dropped}
    if kind == "pairwise judge":
        wins = [[s == pos for s, pos in zip(r["score"], r["chosen_position"])] for r in rows]
        return [{**base, "aggregation": "pairwise", **pairwise_metrics(wins)}]
    out = []
    for how in (PRM_AGGREGATIONS + EXTRA_PRM_AGGREGATIONS if kind == "PRM" else ("score",)):
        correct, incorrect = [], []
        for r in rows:
            vals = [AGGREGATIONS[how](s) if how != "score" else s for s in r["score"]]
            i = r["solution_reference"].index(CORRECT_REF)
            correct.append(vals[i])
            incorrect.append(vals[:i] + vals[i + 1 :])
        out.append({**base, "aggregation": how, "extra": how in EXTRA_PRM_AGGREGATIONS, **rewardmath_metrics(correct, incorrect)})
    return out


def rewardmath_table(data_root: Path) -> list[dict]:
    """The table over every stored model in rewardmath/results/RewardMATH."""
    files = sorted((data_root / RESULTS_DIR).glob("*_reward.json"))
    if not files:
        raise FileNotFoundError(f"no *_reward.json files under {data_root / RESULTS_DIR}")
    return [row for f in files for row in evaluate_results_file(f)]


def sample_items(data_root: Path) -> tuple[list[ScoreItem], list[dict]]:
    """The shipped sample of the benchmark itself (2 problems x 10 solutions), keyed by its `id`."""
    rows = json.loads((data_root / SAMPLE_FILE).read_text())
    items = [ScoreItem(str(r["id"]), Problem(str(r["problem_id"]), r["problem"], str(r["answer"]), "rewardmath", {}),
                       tuple(r["eval_solution"])) for r in rows]
    return items, rows


def evaluate_sample(rows: list[dict], scores: dict[str, StepScores]) -> dict:
    groups: dict[int, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["problem_id"], []).append(r)
    res = {}
    for how in ("outcome",) + PRM_AGGREGATIONS:
        correct, incorrect = [], []
        for g in groups.values():
            vals = {r["id"]: aggregate(scores[str(r["id"])], how) for r in g}
            correct.append(next(vals[r["id"]] for r in g if r["solution_reference"] == CORRECT_REF))
            incorrect.append([vals[r["id"]] for r in g if r["solution_reference"] != CORRECT_REF])
        res[how] = rewardmath_metrics(correct, incorrect)
    return res


def run_rewardmath(out: Path, *, data_root: Path, scores: Path | None = None, scorer: Scorer | None = None,
                   threshold: float | None = None, critic=None) -> dict:
    """Without scores: the table over all stored models. With a scores file or Scorer: the shipped sample."""
    items, rows = sample_items(data_root)
    step_scores, source = resolve_scores(items, scores=scores, scorer=scorer)
    notes = [f"Metric as defined by {PAPER}: accuracy = correct strictly above all nine; MRR with ties ranked "
             "pessimistically; PRMs aggregated by prod and geo_mean (the paper's two), min/mean/last as extras."]
    if step_scores is not None:
        res = evaluate_sample(rows, step_scores)
        results = {"benchmark": "rewardmath", "paper": PAPER, "source": source, "sample": res}
        table = [[how, 100 * r["accuracy"], 100 * r["mrr"], r["n"]] for how, r in res.items()]
        notes.append("Only a 20-solution sample of the benchmark ships with the data: these numbers are a smoke test.")
        write_report(out, "RewardMATH (sample)", results, [("RewardMATH sample (%)", ["aggregation", "accuracy", "MRR", "problems"], table)], notes)
        return results
    table = rewardmath_table(data_root)
    results = {"benchmark": "rewardmath", "paper": PAPER, "source": f"stored per-model scores in {RESULTS_DIR}", "models": table}
    main = [r for r in table if not r.get("extra")]
    fmt = lambda rs: [[r["model"], r["kind"], r["aggregation"], 100 * r["accuracy"], 100 * r["mrr"], r["n"]] for r in rs]
    headers = ["model", "kind", "aggregation", "accuracy", "MRR", "problems"]
    tables = [("RewardMATH (%)", headers, fmt(main)), ("PRMs, other aggregations (%)", headers, fmt([r for r in table if r.get("extra")]))]
    write_report(out, "RewardMATH", results, tables, notes)
    save_bars(out / "rewardmath.png", [f"{r['model']} ({r['aggregation']})" for r in main],
              {"accuracy": [r["accuracy"] for r in main], "MRR": [r["mrr"] for r in main]},
              ylabel="fraction", title="RewardMATH: one correct vs nine incorrect")
    return results
