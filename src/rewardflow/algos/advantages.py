"""Advantage estimators: rewards of G samples per prompt -> one advantage per sample.

Every estimator maps rewards [B, G] to advantages [B, G]; the loop broadcasts them over tokens.
"""
from __future__ import annotations

import torch


def grpo_advantages(rewards: torch.Tensor, *, scale: str = "group", eps: float = 1e-6) -> torch.Tensor:
    """GRPO (Shao et al. 2024, DeepSeekMath, eq. 3 outcome supervision): A_i = (r_i - mean_group) / std.

    scale="group": divide by the group's std (the paper); "batch": by the whole batch's std;
    "none": no division (Dr.GRPO, Liu et al. 2025, sec. 3.2, removes this question-level bias).
    std is the unbiased sample std, as in the reference implementations.
    """
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # [B, G]
    if scale == "group":
        return centred / (rewards.std(dim=1, keepdim=True) + eps)  # [B, G]
    if scale == "batch":
        return centred / (rewards.std() + eps)
    if scale == "none":
        return centred
    raise ValueError(f"unknown GRPO scale {scale!r}; valid: group, batch, none")


ADVANTAGES = {
    "grpo": grpo_advantages,
}
