"""The verifier as a Scorer: outcome 1.0 when the final answer is right, else 0.0."""
from __future__ import annotations

from ..data.problem import Problem
from ..data.steps import join_steps
from .base import StepScores


class VerifierScorer:
    def __init__(self, verifier=None, *, timeout_s: float = 5.0):
        from ..verify import Verifier

        self.verifier = verifier or Verifier(timeout_s=timeout_s)

    def score(self, problems: list[Problem], solutions: list[list[str]]) -> list[StepScores]:
        results = self.verifier.verify(problems, [join_steps(s) for s in solutions])
        return [StepScores(steps=[], outcome=float(r.correct)) for r in results]

    def score_texts(self, problems: list[Problem], texts: list[str]):
        """Full verdicts (answer, status) on raw completion texts; the RL loop and evaluation use this."""
        return self.verifier.verify(problems, texts)
