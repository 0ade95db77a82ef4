"""Policy-gradient losses: pure functions of tensors, returning (loss, stats)."""
from __future__ import annotations

import torch


def aggregate_tokens(per_token: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean", normalizer: float | None = None) -> torch.Tensor:
    """Reduce a per-token loss [N, T] to a scalar.

    token-mean: sum over all tokens / number of tokens (DAPO, Yu et al. 2025, eq. 8).
    seq-mean-token-mean: mean over sequences of each sequence's token mean (GRPO, Shao et al. 2024, eq. 3).
    seq-mean-token-sum: sum over tokens / constant (Dr.GRPO, Liu et al. 2025: normaliser = max length).
    `normalizer` overrides the denominator so that micro-batches and ranks sum to the full-batch loss:
    pass the full batch's token count (token-mean), sequence count (seq-mean-*), or the constant.
    """
    mask = mask.to(per_token.dtype)
    if mode == "token-mean":
        denom = mask.sum() if normalizer is None else normalizer
        return (per_token * mask).sum() / denom
    if mode == "seq-mean-token-mean":
        seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # [N]
        return seq.sum() / (seq.numel() if normalizer is None else normalizer)
    if mode == "seq-mean-token-sum":
        if normalizer is None:
            raise ValueError("seq-mean-token-sum needs a constant normalizer (e.g. max completion length)")
        return (per_token * mask).sum() / normalizer
    raise ValueError(f"unknown loss aggregation {mode!r}; valid: token-mean, seq-mean-token-mean, seq-mean-token-sum")


def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    agg: str = "token-mean",
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-clip surrogate (Schulman et al. 2017, eq. 7), with DAPO's decoupled clip range eps_low/eps_high.

    logp, old_logp, mask: [N, T]; adv: [N] or [N, T]. Minimising -min(ratio*A, clip(ratio)*A).
    """
    if adv.dim() == 1:
        adv = adv[:, None]  # [N, 1] broadcast over tokens
    ratio = torch.exp(logp - old_logp)  # [N, T]
    clipped_ratio = ratio.clamp(1 - eps_low, 1 + eps_high)  # [N, T]
    per_token = -torch.minimum(ratio * adv, clipped_ratio * adv)  # [N, T]
    loss = aggregate_tokens(per_token, mask, agg, normalizer)
    with torch.no_grad():
        m = mask.bool()
        was_clipped = (ratio * adv != clipped_ratio * adv) & (per_token == -clipped_ratio * adv)
        stats = {
            "clip_frac": was_clipped[m].float().mean().item() if m.any() else 0.0,
            "ratio_mean": ratio[m].mean().item() if m.any() else 1.0,
        }
    return loss, stats


POLICY_LOSSES = {
    "clip": clipped_policy_loss,
}
