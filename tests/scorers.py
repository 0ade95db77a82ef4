"""Scorers shared by the RL tests (not a test module: pytest collects only test_*.py)."""
from dataclasses import dataclass


@dataclass
class Verdict:  # module level, so a verdict pickles back from a rollout worker process
    correct: bool
    pred: str | None = None


class DigitScorer:
    """A random tiny model is rarely right: reward "wrote a digit" so that advantages are non-zero."""

    def score_texts(self, problems, texts):
        return [Verdict(any(ch.isdigit() for ch in t)) for t in texts]
