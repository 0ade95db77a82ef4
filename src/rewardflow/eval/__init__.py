"""Metrics (pass@k, maj@k, intervals), the policy evaluation runner, reports; `eval.rm` scores reward models."""
from .metrics import maj_at_k, majority, mean_ci, pass_at_k, wilson_ci
from .runner import evaluate_policy

__all__ = ["evaluate_policy", "maj_at_k", "majority", "mean_ci", "pass_at_k", "wilson_ci"]
