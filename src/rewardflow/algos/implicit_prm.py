"""Implicit process rewards from an outcome-trained log-ratio (Yuan et al. 2024; Cui et al. 2025, PRIME).

Yuan et al. 2024, "Free Process Rewards without Process Labels" (arXiv 2412.01981), Sec. 3: parameterise the
outcome reward of a response y as r(y) = beta * log pi_theta(y) / pi_ref(y). Trained on outcome labels only,
its partial sums q_t = sum_{i <= t} beta * log pi_theta(y_i | y_<i) / pi_ref(y_i | y_<i) are a Q-function of the
prefix (their Proposition 3.1), so the process reward of step k is q_{t_k} - q_{t_{k-1}}: the sum of the
token-level rewards over the tokens of step k. PRIME (Cui et al. 2025, "Process Reinforcement through Implicit
Rewards", arXiv 2502.01456, Sec. 3) takes the token-level rewards r(y_t) = beta * log pi_phi(y_t|.)/pi_ref(y_t|.)
as dense rewards and updates pi_phi online with the same cross-entropy loss on each RL step's rollouts and
their verifier outcomes.

Shapes: N sequences, T completion tokens, S steps; steps are given as `step_token_ends` [N, S] in the
convention of `algos.dense` (exclusive end token of each step, padded steps <= 0).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .dense import step_sums


def implicit_token_rewards(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, *, beta: float) -> torch.Tensor:
    """Token-level implicit rewards q_t = beta * (log pi_theta(y_t|.) - log pi_ref(y_t|.)), 0 on padding.

    logp, ref_logp, mask: [N, T] -> [N, T]. (PRIME Sec. 3, the token-level implicit process reward.)
    """
    return beta * (logp - ref_logp) * mask  # [N, T]


def implicit_step_rewards(token_rewards: torch.Tensor, step_token_ends: torch.Tensor) -> torch.Tensor:
    """Process reward of each step: the sum of the token rewards inside it, i.e. q_{t_k} - q_{t_{k-1}} of the
    partial sums at the step boundaries (Yuan et al. 2024, Sec. 3). [N, T], [N, S] -> [N, S] (padded steps 0)."""
    return step_sums(token_rewards, step_token_ends)  # [N, S]


def implicit_outcome_ce_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    *,
    beta: float,
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on outcome labels with the implicit outcome reward as the logit (Yuan et al. 2024, the CE
    objective of Sec. 3; PRIME Sec. 3.1, the online PRM loss):

        L = -[ l * log sigmoid(r(y)) + (1 - l) * log(1 - sigmoid(r(y))) ],   r(y) = beta * sum_t (logp - ref_logp)

    logp, ref_logp, mask: [N, T]; labels: [N] in [0, 1] (1 = correct). The loss is the sum over sequences
    divided by `normalizer` (default N): pass the full batch size so micro-batches add up to the batch loss.
    """
    reward = implicit_token_rewards(logp, ref_logp, mask, beta=beta).sum(-1)  # [N] r(y)
    labels = labels.to(reward.dtype)  # [N]
    # -[l log sigmoid(r) + (1 - l) log sigmoid(-r)], computed stably from the logit r
    per_seq = F.binary_cross_entropy_with_logits(reward, labels, reduction="none")  # [N]
    loss = per_seq.sum() / (per_seq.numel() if normalizer is None else normalizer)
    with torch.no_grad():
        stats = {
            "loss/implicit_ce": loss.item(),
            "prm/reward_mean": reward.mean().item(),
            # a sequence is classified right when sigmoid(r) is on the label's side of 1/2
            "prm/accuracy": ((reward > 0) == (labels > 0.5)).float().mean().item(),
        }
    return loss, stats
