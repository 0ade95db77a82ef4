"""How often our verifier agrees with stored grader verdicts on real model outputs.

Two sources in ../shared/data (see its README):
- qwen25_math_eval/eval_rm_maj_example/math_cot_100.jsonl: 100 MATH problems x 8 Qwen2.5-Math style
  responses (`code`), judged by the Qwen2.5-Math grader (`score`). We compare against the raw MATH
  gold (`answer`, e.g. "\\text{4:30 p.m.}"), not the grader's pre-cleaned `gt`, so our own
  normalisation is what gets tested.
- gsm8k/example_model_solutions.jsonl: 1319 GSM8K test problems x 4 GPT-3 solutions, each with the
  dataset authors' `is_correct`; the gold is the last line ("A: 18") of `ground_truth`.
- processbench/{gsm8k,math}.json: model step lists with human `final_answer_correct`. ProcessBench
  stores no gold answer, so we join on the problem text with gsm8k/test.jsonl and math500/test.jsonl;
  every GSM8K item joins, 112 of the 1000 MATH items do (the rest are outside MATH-500).

Run as ``python -m rewardflow.verify.agreement [path/to/shared/data]``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..data.problem import Problem
from .extract import extract_answer
from .verifier import Verifier

MATH_FILE = "qwen25_math_eval/eval_rm_maj_example/math_cot_100.jsonl"
GSM8K_FILE = "gsm8k/example_model_solutions.jsonl"
GSM8K_TEST = "gsm8k/test.jsonl"
MATH500 = "math500/test.jsonl"
GSM8K_MODELS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _math_items(path: Path) -> list[tuple[Problem, str, bool]]:
    items = []
    for row in _read_jsonl(path):
        for j, (text, verdict) in enumerate(zip(row["code"], row["score"])):
            problem = Problem(f"{row['idx']}/{j}", row["question"], row["answer"], "math")
            items.append((problem, text, bool(verdict)))
    return items


def _gsm8k_items(path: Path) -> list[tuple[Problem, str, bool]]:
    items = []
    for k, row in enumerate(_read_jsonl(path)):
        gold = extract_answer(row["ground_truth"])
        for model in GSM8K_MODELS:
            sol = row[model]
            problem = Problem(f"{k}/{model}", row["question"], gold, "gsm8k")
            items.append((problem, sol["solution"], bool(sol["is_correct"])))
    return items


def _processbench_items(path: Path, golds: dict[str, str], task: str) -> list[tuple[Problem, str, bool]]:
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)
    items = []
    for row in rows:
        gold = golds.get(row["problem"].strip())
        if gold is not None:
            problem = Problem(row["id"], row["problem"], gold, task)
            items.append((problem, "\n\n".join(row["steps"]), bool(row["final_answer_correct"])))
    return items


def _agreement(items: list[tuple[Problem, str, bool]], verifier: Verifier, n_examples: int) -> dict:
    problems, texts, labels = zip(*items)
    results = verifier.verify(list(problems), list(texts))
    confusion = {"ours_T_label_T": 0, "ours_T_label_F": 0, "ours_F_label_T": 0, "ours_F_label_F": 0}
    statuses: dict[str, int] = {}
    disagreements = []
    for problem, text, label, res in zip(problems, texts, labels, results):
        confusion[f"ours_{'T' if res.correct else 'F'}_label_{'T' if label else 'F'}"] += 1
        statuses[res.status] = statuses.get(res.status, 0) + 1
        if res.correct != label:
            disagreements.append({
                "id": problem.id, "gold": problem.answer, "pred": res.pred, "status": res.status,
                "ours": res.correct, "label": label, "tail": text[-300:],
            })
    agree = len(items) - len(disagreements)
    return {
        "n": len(items), "agree": agree, "rate": agree / len(items), "confusion": confusion,
        "statuses": statuses, "n_disagree": len(disagreements), "examples": disagreements[:n_examples],
    }


def agreement_report(shared_data: Path, n_examples: int = 10, timeout_s: float = 5.0) -> dict:
    """Per source: n, agree, rate, confusion (ours vs label), statuses and disagreement examples."""
    root = Path(shared_data)
    gsm8k_golds = {r["question"].strip(): extract_answer(r["answer"]) for r in _read_jsonl(root / GSM8K_TEST)}
    math_golds = {r["problem"].strip(): r["answer"] for r in _read_jsonl(root / MATH500)}
    sources = {
        "math_cot_100": _math_items(root / MATH_FILE),
        "gsm8k_solutions": _gsm8k_items(root / GSM8K_FILE),
        "processbench_gsm8k": _processbench_items(root / "processbench/gsm8k.json", gsm8k_golds, "gsm8k"),
        "processbench_math500": _processbench_items(root / "processbench/math.json", math_golds, "math"),
    }
    with Verifier(timeout_s=timeout_s) as verifier:
        return {name: _agreement(items, verifier, n_examples) for name, items in sources.items()}


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data")
    print(json.dumps(agreement_report(root, n_examples=1000), indent=1))
