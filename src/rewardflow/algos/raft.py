"""Rejection-sampling fine-tuning and its policy-gradient cousins: RAFT (Dong et al. 2023), RAFT++ and
Reinforce-Rej (Xiong et al. 2025, "A Minimalist Approach to LLM Reasoning: from Rejection Sampling to
Reinforce"). The keep-masks come from selection.py (raft_keep_best, keep_correct, reinforce_rej_keep)."""
from __future__ import annotations

import torch

from .losses import clipped_policy_loss, sft_nll_loss


def _kept_tokens(mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return mask * keep.reshape(-1, 1).to(mask.dtype)  # [N, T]


def raft_loss(
    logp: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor, *, agg: str = "token-mean", normalizer: float | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """RAFT (Dong et al. 2023, Algorithm 1, the fine-tuning step): supervised NLL on the kept samples only.

    logp, mask: [N, T]; keep: [N] bool (e.g. raft_keep_best(rewards).reshape(-1)).
    """
    loss, stats = sft_nll_loss(logp, _kept_tokens(mask, keep), agg=agg, normalizer=normalizer)
    stats["raft/keep_frac"] = keep.float().mean().item()
    return loss, stats


def raft_pp_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    mask: torch.Tensor,
    keep: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    agg: str = "token-mean",
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """RAFT++ (Xiong et al. 2025, "RAFT++"): RAFT with importance sampling and clipping, i.e. the PPO-clip
    surrogate with advantage 1 on the kept (correct) samples and nothing on the rest:
    -min(ratio, clip(ratio, 1-eps_low, 1+eps_high)) on kept tokens. keep: [N] bool."""
    adv = torch.ones(logp.shape[0], dtype=logp.dtype, device=logp.device)  # [N]
    # the same clipped surrogate on kept samples as Reinforce-Rej, with every kept advantage equal to 1
    return reinforce_rej_loss(logp, old_logp, adv, mask, keep, eps_low=eps_low, eps_high=eps_high, agg=agg, normalizer=normalizer)


def reinforce_rej_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    rewards: torch.Tensor,
    mask: torch.Tensor,
    keep: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    agg: str = "token-mean",
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Reinforce-Rej (Xiong et al. 2025, "Reinforce-Rej"): REINFORCE with the raw reward as the advantage (no baseline),
    PPO-style clipping, on the samples of prompts kept by reinforce_rej_keep (not all correct, not all wrong).

    rewards: [N] used directly as advantages, so give wrong answers a negative reward (e.g. +1 / -1);
    with 0 / 1 rewards the wrong samples would get no gradient. keep: [N] bool.
    """
    loss, stats = clipped_policy_loss(
        logp, old_logp, rewards, _kept_tokens(mask, keep), eps_low=eps_low, eps_high=eps_high, agg=agg, normalizer=normalizer
    )
    stats["raft/keep_frac"] = keep.float().mean().item()
    return loss, stats
