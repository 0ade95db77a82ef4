"""Shaping learned rewards for RL: per-step Clip and Delta, the log-sigmoid transform and its sum, PAV progress.

Pure functions of tensors. Per-step functions take padded step rewards [N, S] with a `valid` mask [N, S] (valid
steps first in each row; padding comes back as 0), or a list of N tensors [S_i] (and then return a list).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..algos.ragged import pad_ragged

StepTensors = torch.Tensor | Sequence[torch.Tensor]


def _padded(rewards: StepTensors, valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, list[int] | None]:
    """-> (rewards [N, S] zero on padding, valid [N, S] bool, row lengths when the input was a list else None)."""
    if isinstance(rewards, torch.Tensor):
        valid = torch.ones_like(rewards, dtype=torch.bool) if valid is None else valid.bool()
        return rewards * valid, valid, None
    padded, mask = pad_ragged(rewards)  # [N, S], [N, S]
    return padded, mask, [len(r) for r in rewards]


def _unpadded(out: torch.Tensor, lengths: list[int] | None) -> StepTensors:
    return out if lengths is None else [out[n, :k] for n, k in enumerate(lengths)]


def clip_rewards(step_rewards: StepTensors, valid: torch.Tensor | None = None, *, eta: float) -> StepTensors:
    """Clip mechanism (Gao et al. 2024, "On Designing Effective RL Reward at Training Time for LLM Reasoning"):
    r~_k = min(r_k - eta, 0). Every step reward is <= 0, so a policy cannot raise its return by adding steps
    (with raw PRM scores in (0, 1), each extra step adds a positive reward: the length hack the paper reports)."""
    rewards, mask, lengths = _padded(step_rewards, valid)
    return _unpadded(torch.clamp(rewards - eta, max=0.0) * mask, lengths)  # [N, S]


def delta_rewards(step_rewards: StepTensors, valid: torch.Tensor | None = None) -> StepTensors:
    """Delta mechanism (Gao et al. 2024): r~_k = r_k - r_{k+1} for k < K, r~_K = r_K. The return from step k
    telescopes, sum_{j >= k} r~_j = r_k, so it stays bounded by one step score however many steps follow."""
    rewards, mask, lengths = _padded(step_rewards, valid)
    # r_{k+1} on valid steps, 0 past each row's last step (rewards are already 0 on padding)
    following = torch.cat([rewards[:, 1:], torch.zeros_like(rewards[:, :1])], dim=1)  # [N, S]
    return _unpadded((rewards - following) * mask, lengths)  # [N, S]


def logsigmoid_transform(rewards: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Transformed reward of Wang et al. 2024 ("Transforming and Combining Rewards for Aligning Large Language Models"):
    u(x, y) = log sigmoid(r(x, y) - r_ref(x)), the Bradley-Terry log-probability that y beats the reference.
    Improving an already-good sample (r >> r_ref) earns almost nothing, improving a bad one earns a lot. rewards [B, G]; reference [B] (per prompt, e.g. a quantile of reference
    samples' rewards, or the reward of a reference response). Returns [B, G], always < 0."""
    return F.logsigmoid(rewards - reference[:, None])


def combine_transformed(rewards: Sequence[torch.Tensor], references: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor:
    """Sum of transformed rewards (Wang et al. 2024): sum_i w_i log sigmoid(r_i - r_ref,i). The sum of
    log-sigmoids is the log-probability that the sample is good under every reward at once (a logical AND),
    so one reward far above its reference cannot make up for another below its own. Each [B, G]; returns [B, G]."""
    weights = [1.0] * len(rewards) if weights is None else weights
    if not len(rewards) == len(references) == len(weights):
        raise ValueError(f"combine_transformed: {len(rewards)} rewards, {len(references)} references, {len(weights)} weights")
    return sum(w * logsigmoid_transform(r, ref) for r, ref, w in zip(rewards, references, weights))


def group_quantile(rewards: torch.Tensor, q: float) -> torch.Tensor:
    """Per-prompt reference reward: the q-quantile (linear interpolation) of each group's rewards. [B, G] -> [B]."""
    return torch.quantile(rewards, q, dim=1)


def pav_progress(q_prefix: StepTensors, q_empty: torch.Tensor, valid: torch.Tensor | None = None) -> StepTensors:
    """Process advantage of Setlur et al. 2024 ("Rewarding Progress"): the progress of step k is
    A_k = Q(prefix_k) - Q(prefix_{k-1}), with Q a prover's estimated success rate from a prefix and
    Q(prefix_0) = q_empty, the estimate from the question alone. Sums of progress telescope to Q(prefix_k) - Q_0.
    q_prefix: [N, S] (with valid) or a list of [S_i]; q_empty: [N]."""
    q, mask, lengths = _padded(q_prefix, valid)
    previous = torch.cat([torch.as_tensor(q_empty, dtype=q.dtype)[:, None], q[:, :-1]], dim=1)  # [N, S] Q(prefix_{k-1})
    return _unpadded((q - previous) * mask, lengths)  # [N, S]


# Per-step shaping of the dense rewards (Gao et al. 2024): (list of [S_i], clip eta) -> list of [S_i].
SHAPINGS: dict[str, Callable[[list[torch.Tensor], float], list[torch.Tensor]]] = {
    "none": lambda steps, eta: steps,
    "clip": lambda steps, eta: clip_rewards(steps, eta=eta),
    "delta": lambda steps, eta: delta_rewards(steps),
}

# Transform of each learned reward before weighting (Wang et al. 2024), [B, G] -> [B, G]. The reference r_ref of a
# prompt is a quantile of its own group's rewards: the group stands in for the paper's reference samples.
# (rewards [B, G], reference quantile) -> [B, G].
TRANSFORMS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "none": lambda r, q: r,
    "logsigmoid": lambda r, q: logsigmoid_transform(r, group_quantile(r, q)),
}
