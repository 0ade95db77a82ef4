"""PPO with a critic: generalised advantage estimation and the clipped value loss."""
from __future__ import annotations

import torch

from .losses import aggregate_tokens


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, "High-Dimensional Continuous Control Using GAE",
    eqs. 11-16): delta_t = r_t + gamma V(s_{t+1}) - V(s_t);  A_t = delta_t + gamma lam A_{t+1};  R_t = A_t + V(s_t).

    rewards, values, mask: [N, T] (token rewards, e.g. the outcome on the last token minus a KL penalty).
    The state after a row's last valid token is terminal (V = 0). Masked positions inside a row are skipped,
    so the recursion links each valid token to the next valid one. Returns (advantages, returns), both [N, T],
    0 on padding, not whitened (whiten with advantages.masked_whiten if wanted), and detached.
    """
    with torch.no_grad():
        m = mask.to(values.dtype)
        advantages = torch.zeros_like(values)  # [N, T]
        next_value = torch.zeros_like(values[:, 0])  # [N]
        next_adv = torch.zeros_like(values[:, 0])  # [N]
        for t in reversed(range(values.shape[1])):
            delta = rewards[:, t] + gamma * next_value - values[:, t]  # [N]
            adv_t = delta + gamma * lam * next_adv  # [N]
            next_value = m[:, t] * values[:, t] + (1 - m[:, t]) * next_value
            next_adv = m[:, t] * adv_t + (1 - m[:, t]) * next_adv
            advantages[:, t] = m[:, t] * adv_t
        returns = (advantages + values) * m
    return advantages, returns


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    agg: str = "token-mean",
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped value loss (PPO as released in OpenAI baselines ppo2; Andrychowicz et al. 2021, sec. 3.2 "value
    function loss clipping"): 0.5 * max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2).

    values (trainable), old_values (at rollout time), returns: [N, T].
    """
    clipped_values = old_values + (values - old_values).clamp(-clip_eps, clip_eps)  # [N, T]
    unclipped_err = (values - returns) ** 2  # [N, T]
    clipped_err = (clipped_values - returns) ** 2  # [N, T]
    per_token = 0.5 * torch.maximum(unclipped_err, clipped_err)  # [N, T]
    loss = aggregate_tokens(per_token, mask, agg, normalizer)
    with torch.no_grad():
        m = mask.bool()
        stats = {
            "value/clip_frac": (clipped_err > unclipped_err)[m].float().mean().item() if m.any() else 0.0,
            "value/mean": values[m].mean().item() if m.any() else 0.0,
        }
    return loss, stats
