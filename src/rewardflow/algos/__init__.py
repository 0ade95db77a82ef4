"""The mathematics only: advantage estimators, policy losses, KL estimators. Pure functions of tensors."""
from .advantages import ADVANTAGES, grpo_advantages
from .kl import kl_estimate
from .losses import POLICY_LOSSES, aggregate_tokens, clipped_policy_loss

__all__ = ["ADVANTAGES", "POLICY_LOSSES", "aggregate_tokens", "clipped_policy_loss", "grpo_advantages", "kl_estimate"]
