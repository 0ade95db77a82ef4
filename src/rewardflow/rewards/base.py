"""One Scorer contract for everything that scores reasoning: verifiers, ORMs, PRMs, judges, ensembles."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

from ..data.problem import Problem


@dataclass
class StepScores:
    steps: list[float] = field(default_factory=list)  # one score per step (empty for outcome-only scorers)
    outcome: float = 0.0  # one score for the whole solution


class Scorer(Protocol):
    def score(self, problems: list[Problem], solutions: list[list[str]]) -> list[StepScores]:
        """solutions[i] is a step list answering problems[i]; returns one StepScores per pair."""
        ...


def _prod(xs: list[float]) -> float:
    return math.prod(xs)


# Reductions of per-step scores to one number (PRM literature: min and prod from Lightman et al. 2023 /
# Wang et al. 2024 Math-Shepherd; last from Snell et al. 2024).
AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "min": min,
    "prod": _prod,
    "last": lambda xs: xs[-1],
    "mean": lambda xs: sum(xs) / len(xs),
}


def aggregate(scores: StepScores, how: str = "outcome") -> float:
    """One number per solution: the outcome score, or a reduction of the step scores."""
    if how == "outcome" or not scores.steps:
        return scores.outcome
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; valid: outcome, {', '.join(AGGREGATIONS)}")
    return AGGREGATIONS[how](scores.steps)
