"""Metrics (pass@k, maj@k, intervals), the policy evaluation runner, reports; `eval.rm` scores reward models."""
from .metrics import best_of_n, maj_at_k, majority, mean_ci, pass_at_k, top_scored, vote, weighted_vote, wilson_ci
from .runner import evaluate_policy

__all__ = ["best_of_n", "evaluate_policy", "maj_at_k", "majority", "mean_ci", "pass_at_k", "top_scored", "vote", "weighted_vote",
           "wilson_ci"]
