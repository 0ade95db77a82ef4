"""OREO (Wang, Hao et al. 2024, "Offline Reinforcement Learning for LLM Multi-Step Reasoning", arXiv 2412.16145).

KL-regularised RL with a sparse terminal reward R has an optimal policy and value that satisfy the soft
Bellman equation (path consistency, Nachum et al. 2017):
    V(s_t) - V(s_{t+1}) = r(s_t, a_t) - beta * log pi(a_t | s_t) / pi_ref(a_t | s_t).
Telescoping to the terminal state (V = 0 after the last action, reward only at the end):
    V(s_t) = R - beta * sum_{i >= t} log pi(a_i | s_i) / pi_ref(a_i | s_i).
OREO fits a value model and the policy to this consistency on offline trajectories, successful or not:
  value loss  : 1/T sum_t ( V_phi(s_t) - R + beta * sum_{i >= t} sg[log pi_theta / pi_ref](i) )^2
  policy loss : 1/T sum_t ( sg[V_phi(s_t)] - R + beta * log pi_theta / pi_ref (t)
                           + beta * sum_{i > t} sg[log pi_theta / pi_ref](i) )^2  (+ alpha * KL regulariser)
In the policy loss only action t carries gradient in residual t (the paper's variance-reduction choice).
Token level: actions are tokens, pass [N, T] tensors. Step level: actions are reasoning steps; pass [N, S]
step log-probs (dense.step_sums of token logps), values at the start of each step, and the step mask.
The KL regulariser: the official recipe adds alpha * KL(pi_theta || pi_ref) with the exact per-position KL over
the vocabulary; pass kl=kl.exact_kl(logits, ref_logits, mask) [N, T] (alpha = 0.01 there). A sampled estimate
(kl_estimate) also fits the `kl` argument but is not the recipe. Assumption (ours): the default beta is a
placeholder to be tuned, not the paper's value.
"""
from __future__ import annotations

import torch

from .losses import aggregate_tokens


def _reverse_cumsum(x: torch.Tensor) -> torch.Tensor:
    """sum_{i >= t} x_i along the last dim."""
    return x.flip(-1).cumsum(-1).flip(-1)


def oreo_value_loss(
    values: torch.Tensor,
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    reward: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float = 0.03,
    agg: str = "seq-mean-token-mean",
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """OREO value objective: regress V_phi(s_t) onto R - beta * sum_{i >= t} log pi_theta/pi_ref (policy frozen).

    values: [N, T] V_phi(s_t), the state before action t; logp, ref_logp, mask: [N, T]; reward: [N].
    Default agg = 1/T per trajectory, then mean over trajectories, as in the paper.
    """
    log_ratio = (logp - ref_logp).detach() * mask  # [N, T]
    target = reward[:, None] - beta * _reverse_cumsum(log_ratio)  # [N, T]
    per_token = (values - target) ** 2  # [N, T]
    loss = aggregate_tokens(per_token, mask, agg, normalizer)
    with torch.no_grad():
        m = mask.bool()
        stats = {"oreo/value_mean": values[m].mean().item() if m.any() else 0.0}
    return loss, stats


def oreo_policy_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    values: torch.Tensor,
    reward: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float = 0.03,
    agg: str = "seq-mean-token-mean",
    normalizer: float | None = None,
    kl: torch.Tensor | None = None,
    alpha: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """OREO policy objective: squared soft-Bellman residual with the value frozen and the future actions'
    log-ratios stop-gradient, so each residual only moves pi_theta(a_t | s_t).

    A successful trajectory (R above V) raises log pi_theta of its actions; a failed one lowers them.
    kl: optional [N, T] per-position KL to pi_ref, added as alpha * aggregate(kl): exact_kl(logits, ref_logits,
    mask) as in the OREO recipe (alpha 0.01), or a sampled estimate such as kl_estimate(logp, ref_logp, "k3").
    """
    m = mask.to(logp.dtype)
    log_ratio = (logp - ref_logp) * m  # [N, T], carries gradient at t
    future = _reverse_cumsum(log_ratio.detach()) - log_ratio.detach()  # [N, T] sum_{i > t}
    residual = values.detach() - reward[:, None] + beta * log_ratio + beta * future  # [N, T]
    loss = aggregate_tokens(residual**2, mask, agg, normalizer)
    if kl is not None and alpha != 0.0:
        loss = loss + alpha * aggregate_tokens(kl, mask, agg, normalizer)
    with torch.no_grad():
        valid = mask.bool()
        stats = {"oreo/residual_mean": residual[valid].mean().item() if valid.any() else 0.0}
    return loss, stats
