"""Reward-model ensembles (Coste et al. 2024, "Reward Model Ensembles Help Mitigate Overoptimization").

Every member scores the same solutions; outcome scores, and step scores position by position, are reduced over
the members by one rule of ENSEMBLE_REDUCTIONS. The conservative rules (min, mean minus a spread penalty) score
a sample low where the members disagree, which is where a policy would otherwise exploit one member's errors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..data.problem import Problem
from .base import Scorer, StepScores

# Reductions over the member axis: scores [M, ...] -> [...]. Coste et al. 2024: mean; worst-case optimisation
# (WCO) = min; uncertainty-weighted optimisation (UWO) = mean - lam * Var (variance across members, 1/M).
# mean_minus_std penalises the standard deviation instead, in the reward's own units.
ENSEMBLE_REDUCTIONS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "mean": lambda x, lam: x.mean(0),
    "min": lambda x, lam: x.min(0).values,
    "mean_minus_var": lambda x, lam: x.mean(0) - lam * x.var(0, unbiased=False),
    "mean_minus_std": lambda x, lam: x.mean(0) - lam * x.std(0, unbiased=False),
}


class EnsembleScorer:
    """Member-wise reduction of several Scorers' outcome and step scores. Members that return no step scores
    (outcome-only: verifiers, ORMs) take part in the outcome only; the step scores reduce the process members'."""

    def __init__(self, scorers: list[Scorer], how: str = "mean", lam: float = 1.0):
        if how not in ENSEMBLE_REDUCTIONS:
            raise ValueError(f"unknown ensemble reduction {how!r}; valid: {', '.join(ENSEMBLE_REDUCTIONS)}")
        if not scorers:
            raise ValueError("EnsembleScorer needs at least one member")
        self.scorers, self.how, self.lam = list(scorers), how, lam
        self.reduce = ENSEMBLE_REDUCTIONS[how]

    @property
    def flops_spent(self) -> float:
        """Scorer contract: what the members spent (members without a model, such as the verifier, spend 0)."""
        return sum(getattr(s, "flops_spent", 0.0) for s in self.scorers)

    @classmethod
    def load(cls, path: str | Path) -> "EnsembleScorer":
        """A directory whose scorer.json is {"kind": "ensemble", "members": [load_scorer specs], "how": ..., "lam": ...};
        relative member paths are relative to the directory and stay inside it (registry.resolve_inside)."""
        from .registry import NAMED_SCORERS, load_scorer, read_meta, resolve_inside

        path = Path(path)
        meta = read_meta(path)
        listed = meta.get("members")
        if not isinstance(listed, list) or not listed:
            raise ValueError(f"{path / 'scorer.json'}: members must be a non-empty list of scorer specs, got {listed!r}")
        members = [m if isinstance(m, str) and m in NAMED_SCORERS else str(resolve_inside(path, m, field=f"members[{i}]")) for i, m in enumerate(listed)]
        return cls([load_scorer(m) for m in members], how=meta.get("how", "mean"), lam=meta.get("lam", 1.0))

    def score(self, problems: list[Problem], solutions: list[list[str]]) -> list[StepScores]:
        per_member = [s.score(problems, solutions) for s in self.scorers]  # [M][N]
        out = []
        for n in range(len(problems)):
            outcome = self.reduce(torch.tensor([m[n].outcome for m in per_member], dtype=torch.float64), self.lam)  # [M] -> ()
            steps = [m[n].steps for m in per_member if m[n].steps]
            if len({len(s) for s in steps}) > 1:
                raise ValueError(f"ensemble members disagree on the number of steps of solution {n}: {[len(s) for s in steps]}")
            reduced = self.reduce(torch.tensor(steps, dtype=torch.float64), self.lam).tolist() if steps else []  # [M, S] -> [S]
            out.append(StepScores(steps=reduced, outcome=float(outcome)))
        return out
