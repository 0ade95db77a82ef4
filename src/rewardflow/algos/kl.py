"""Per-token estimators of KL(pi || pi_ref) from samples of pi (Schulman 2020, "Approximating KL divergence"),
used either as a loss term (kl_penalty_loss) or folded into the reward (kl_shaped_rewards)."""
from __future__ import annotations

import torch

from .losses import aggregate_tokens


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Tokens were sampled from pi. With log r = ref_logp - logp:
    k1 = -log r (unbiased, high variance, can be negative); k2 = (log r)^2 / 2 (biased, low variance);
    k3 = (r - 1) - log r (unbiased, always >= 0; used by GRPO, DeepSeekMath eq. 4). Shapes: [N, T] -> [N, T].
    """
    log_ratio = ref_logp - logp  # [N, T]
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        return torch.exp(log_ratio) - 1 - log_ratio
    raise ValueError(f"unknown KL estimator {kind!r}; valid: k1, k2, k3")


def exact_kl(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The exact per-position KL over the vocabulary, no sampling: KL_t = sum_v pi(v) (log pi(v) - log pi_ref(v)),
    pi = softmax(logits), pi_ref = softmax(ref_logits). The OREO recipe's regulariser (Wang, Hao et al. 2024)
    uses this rather than a sampled estimate (kl_estimate k1/k3 on the taken token only).

    logits, ref_logits: [N, T, V] (the reference is detached); mask: [N, T] or None. Returns [N, T], 0 on padding.
    Differentiable in the policy logits; >= 0 up to rounding.
    """
    logp = torch.log_softmax(logits, dim=-1)  # [N, T, V]
    ref_logp = torch.log_softmax(ref_logits.detach(), dim=-1)  # [N, T, V]
    kl = (logp.exp() * (logp - ref_logp)).sum(dim=-1)  # [N, T]
    return kl if mask is None else kl * mask.to(kl.dtype)


def kl_penalty_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    kind: str = "k3",
    coef: float = 1.0,
    agg: str = "token-mean",
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """KL as a loss term: coef * aggregate(k(logp, ref_logp)) (GRPO, DeepSeekMath eq. 3, k3 by default).

    Aggregate with the same agg/normalizer as the policy loss so micro-batches and ranks add up.
    """
    kl = kl_estimate(logp, ref_logp, kind)  # [N, T]
    loss = coef * aggregate_tokens(kl, mask, agg, normalizer)
    with torch.no_grad():
        m = mask.bool()
        stats = {"kl/ref": kl[m].mean().item() if m.any() else 0.0}
    return loss, stats


def kl_shaped_rewards(outcome: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, *, beta: float) -> torch.Tensor:
    """KL folded into the reward (Ouyang et al. 2022 eq. 2; REINFORCE++, Hu 2025, sec. 3):
    r_t = -beta * KL_t on every valid token, plus the outcome reward r(x, y) on the last valid token.

    outcome: [N]; kl: [N, T] per-token estimate (treated as a constant: detached); returns [N, T].
    """
    m = mask.to(kl.dtype)
    token_rewards = -beta * kl.detach() * m  # [N, T]
    positions = torch.arange(kl.shape[1], device=kl.device)  # [T]
    last = (positions * m).argmax(dim=1)  # [N] index of each row's last valid token
    has_tokens = m.sum(dim=1) > 0  # [N]
    bonus = torch.where(has_tokens, outcome.to(kl.dtype), torch.zeros_like(outcome, dtype=kl.dtype))  # [N]
    return token_rewards.scatter_add(1, last[:, None], bonus[:, None])
