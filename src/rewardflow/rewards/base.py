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
    """Scorers that run a model also keep `flops_spent`, the running total of their forward FLOPs (2 * params *
    tokens read, and generation for scorers that sample), so search books what scoring really cost; one without
    it is booked 2 * `num_params` * tokens scored (0 without either: the verifier)."""

    def score(self, problems: list[Problem], solutions: list[list[str]]) -> list[StepScores]:
        """solutions[i] is a step list answering problems[i]; returns one StepScores per pair."""
        ...


def forward_flops(params: int, attention_mask) -> float:
    """2 * params * real (unpadded) tokens of a batch: the usual forward-pass estimate."""
    return 2.0 * params * float(attention_mask.sum())


def _geo_mean(xs: list[float]) -> float:
    # Geometric mean of step probabilities: the second PRM reduction reported by RewardMATH (Kim et al. 2024,
    # Table 2 "geo mean"); 0 when any step scores <= 0, where the logarithm is undefined.
    if any(x <= 0 for x in xs):
        return 0.0
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


# Reductions of per-step scores to one number (PRM literature: min and prod from Lightman et al. 2023 /
# Wang et al. 2024 Math-Shepherd; last from Snell et al. 2024; geo_mean from Kim et al. 2024 RewardMATH).
# The one table every consumer reads: RL rewards, search, benchmarks and reward-model evaluation.
AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "min": min,
    "prod": math.prod,
    "last": lambda xs: xs[-1],
    "mean": lambda xs: sum(xs) / len(xs),
    "geo_mean": _geo_mean,
}


def aggregate(scores: StepScores, how: str = "outcome") -> float:
    """One number per solution: the outcome score, or `how` (an AGGREGATIONS key) over the step scores. A solution
    without step scores (an outcome-only scorer, a scores-file row with only "outcome_score") keeps its outcome
    whatever `how` says, so one aggregation serves PRMs and ORMs alike."""
    if how != "outcome" and how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; valid: outcome, {', '.join(AGGREGATIONS)}")
    if how == "outcome" or not scores.steps:
        return scores.outcome
    return AGGREGATIONS[how](list(scores.steps))
