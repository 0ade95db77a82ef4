"""Robustness probes for any Scorer, after Shen et al. 2025 ("Reward Models Identify Consistency, Not
Causality"): perturb the input in ways that should matter (drop the question, change its numbers, shuffle
or truncate the steps) and measure how the reward moves. A reward model that tracks causality should
drop its score and re-rank solutions; one that tracks surface consistency barely moves.

Per perturbation: mean change of the score (perturbed - original), mean absolute change, and the
fraction of within-problem solution pairs whose order flips (sign of the score difference changes;
sign(0) = 0, so a tie that becomes an order, or the reverse, counts as a flip). Solutions a
perturbation cannot apply to (one-step solutions for shuffling and truncation, questions without
numbers) are left out of that row. All randomness comes from one seeded generator.
"""
from __future__ import annotations

import random
import re
from dataclasses import replace
from itertools import combinations
from typing import Callable, Hashable, Sequence

from ...data.problem import Problem
from ...rewards.base import Scorer, aggregate
from .report import write_report
from .rewardbench import load_pairs, rewardbench_items

Perturbation = Callable[[Problem, list[str], random.Random], "tuple[Problem, list[str]] | None"]


def drop_question(problem: Problem, steps: list[str], rng: random.Random):
    return replace(problem, prompt=""), steps


def change_numbers(problem: Problem, steps: list[str], rng: random.Random):
    if not re.search(r"\d", problem.prompt):
        return None
    # every run of digits moves by 1-9, so the question is well-formed but the solution no longer fits it
    prompt = re.sub(r"\d+", lambda m: str(int(m.group()) + rng.randint(1, 9)), problem.prompt)
    return replace(problem, prompt=prompt), steps


def shuffle_steps(problem: Problem, steps: list[str], rng: random.Random):
    if len(steps) < 2:
        return None
    order = list(range(len(steps)))
    while order == sorted(order):
        rng.shuffle(order)
    return problem, [steps[i] for i in order]


def drop_first_step(problem: Problem, steps: list[str], rng: random.Random):
    return (problem, steps[1:]) if len(steps) >= 2 else None


def drop_last_step(problem: Problem, steps: list[str], rng: random.Random):
    return (problem, steps[:-1]) if len(steps) >= 2 else None


PERTURBATIONS: dict[str, Perturbation] = {
    "question_removed": drop_question,
    "numbers_changed": change_numbers,
    "steps_shuffled": shuffle_steps,
    "first_step_truncated": drop_first_step,
    "last_step_truncated": drop_last_step,
}


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def rank_flip_fraction(original: Sequence[float], perturbed: Sequence[float], pairs: Sequence[tuple[int, int]]) -> float:
    """Fraction of pairs (i, j) whose score order differs between the two score lists."""
    if not pairs:
        return float("nan")
    flips = sum(_sign(original[i] - original[j]) != _sign(perturbed[i] - perturbed[j]) for i, j in pairs)
    return flips / len(pairs)


def within_group_pairs(groups: Sequence[Hashable], keep: Sequence[bool]) -> list[tuple[int, int]]:
    """All pairs of kept solutions that answer the same problem."""
    members: dict[Hashable, list[int]] = {}
    for i, (g, ok) in enumerate(zip(groups, keep)):
        if ok:
            members.setdefault(g, []).append(i)
    return [pair for idx in members.values() for pair in combinations(idx, 2)]


def probe_table(scorer: Scorer, problems: Sequence[Problem], solutions: Sequence[list[str]], *, how: str = "min",
                seed: int = 0, perturbations: Sequence[str] = tuple(PERTURBATIONS)) -> list[dict]:
    """One row per perturbation; solutions[i] answers problems[i]; pairs are formed within a problem id."""
    base = [aggregate(s, how) for s in scorer.score(list(problems), [list(s) for s in solutions])]
    groups = [p.id for p in problems]
    rows = []
    for name in perturbations:
        rng = random.Random(seed)
        changed = [PERTURBATIONS[name](p, list(s), rng) for p, s in zip(problems, solutions)]
        idx = [i for i, c in enumerate(changed) if c is not None]
        scored = scorer.score([changed[i][0] for i in idx], [changed[i][1] for i in idx]) if idx else []
        after = list(base)
        for i, s in zip(idx, scored):
            after[i] = aggregate(s, how)
        deltas = [after[i] - base[i] for i in idx]
        pairs = within_group_pairs(groups, [c is not None for c in changed])
        rows.append({"perturbation": name, "n": len(idx), "pairs": len(pairs),
                     "mean_change": sum(deltas) / len(deltas) if deltas else float("nan"),
                     "mean_abs_change": sum(abs(d) for d in deltas) / len(deltas) if deltas else float("nan"),
                     "rank_flip_fraction": rank_flip_fraction(base, after, pairs)})
    return rows


def run_probes(out, *, data_root, scores=None, scorer: Scorer | None = None, threshold=None, critic=None,
               limit: int | None = None, how: str = "min", seed: int = 0) -> dict:
    """Probe a Scorer on the RewardBench math-prm pairs (both sides of each pair answer the same problem)."""
    if scorer is None:
        raise ValueError("probes re-score perturbed inputs, so they need a model (--model), not a scores file")
    if type(scorer).__name__ == "VerifierScorer":  # it needs gold answers, and the math-prm pairs ship none
        raise ValueError("probes run on RewardBench math-prm pairs, which have no gold answers, so the verifier would score "
                         "every solution 0; give a reward model (--model DIR)")
    items = rewardbench_items(load_pairs(data_root))[: None if limit is None else 2 * limit]
    rows = probe_table(scorer, [it.problem for it in items], [list(it.steps) for it in items], how=how, seed=seed)
    results = {"benchmark": "probes", "paper": "Shen et al. 2025, Reward Models Identify Consistency, Not Causality",
               "source": f"scorer {type(scorer).__name__} on RewardBench math-prm pairs", "aggregation": how,
               "seed": seed, "n_solutions": len(items), "perturbations": rows}
    table = [[r["perturbation"], r["n"], r["mean_change"], r["mean_abs_change"], r["pairs"], 100 * r["rank_flip_fraction"]] for r in rows]
    notes = [f"Score = {how} over step scores (the outcome when a scorer gives no steps). Change = perturbed - original.",
             "A flip: the two solutions of a problem swap order (or a tie appears or breaks) after the perturbation."]
    write_report(out, "Robustness probes", results,
                 [("Score change per perturbation", ["perturbation", "n", "mean change", "mean |change|", "pairs", "flipped %"], table)], notes)
    return results
