"""Advantage estimators: rewards of G samples per prompt -> one advantage per sample.

Every estimator in ADVANTAGES maps rewards [B, G] (plus keyword arguments) to advantages [B, G]; the loop
broadcasts them over tokens. TOKEN_ADVANTAGES holds the estimators whose reference normalises over tokens and so
needs the loss mask: (rewards [B, G], mask [N, T], **kw) -> [N, T]. Other token-level estimators (REINFORCE++
with a KL-shaped reward, GAE in ppo.py, dense step rewards in dense.py) return [N, T] and are called directly.
Estimators that compare a sample with its group raise a ValueError when G < 2 (`require_group`).
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

from .kl import kl_shaped_rewards
from .shaping import seed_scale, unlikeliness_reward


def require_group(rewards: torch.Tensor, name: str) -> None:
    """A group baseline (mean, std or leave-one-out over G samples of one prompt) needs G >= 2: with G = 1 the
    advantage is identically 0 (or 0/0 for a std). Fail loudly instead of training on nothing."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"{name} compares samples of the same prompt: rewards must be [B, G] with G >= 2, "
                         f"got shape {tuple(rewards.shape)}")


def grpo_advantages(rewards: torch.Tensor, *, scale: str = "group", eps: float = 1e-6) -> torch.Tensor:
    """GRPO (Shao et al. 2024, DeepSeekMath, eq. 3 outcome supervision): A_i = (r_i - mean_group) / std.

    scale="group": divide by the group's std (the paper); "batch": by the whole batch's std;
    "none": no division (Dr.GRPO, Liu et al. 2025, sec. 3.2, removes this question-level bias).
    std is the unbiased sample std, as in the reference implementations.
    """
    require_group(rewards, "GRPO")
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # [B, G]
    if scale == "group":
        return centred / (rewards.std(dim=1, keepdim=True) + eps)  # [B, G]
    if scale == "batch":
        return centred / (rewards.std() + eps)
    if scale == "none":
        return centred
    raise ValueError(f"unknown GRPO scale {scale!r}; valid: group, batch, none")


def dr_grpo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Dr.GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", sec. 3.2): A_i = r_i - mean_group, no std.

    Pair it with the constant-normaliser aggregation (aggregate_tokens "seq-mean-token-sum"), which removes
    GRPO's length bias; together they are the paper's unbiased objective.
    """
    require_group(rewards, "Dr.GRPO")
    return rewards - rewards.mean(dim=1, keepdim=True)  # [B, G]


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO (Kool et al. 2019; Ahmadian et al. 2024, "Back to Basics", the RLOO estimator): leave-one-out baseline.

    A_i = r_i - 1/(G-1) sum_{j != i} r_j  =  G/(G-1) (r_i - mean_group). Needs G >= 2.
    """
    require_group(rewards, "RLOO")
    G = rewards.shape[1]
    others_mean = (rewards.sum(dim=1, keepdim=True) - rewards) / (G - 1)  # [B, G]
    return rewards - others_mean


def remax_advantages(rewards: torch.Tensor, *, baseline: torch.Tensor) -> torch.Tensor:
    """ReMax (Li et al. 2023, "ReMax", its greedy-decoding baseline): A_i = r_i - r(greedy response of the same prompt).

    baseline: [B], the reward of each prompt's greedy (argmax-decoded) completion.
    """
    return rewards - baseline.reshape(-1, 1).to(rewards.dtype)  # [B, G]


def reinforce_pp_advantages(rewards: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """REINFORCE++ (Hu 2025, arXiv 2501.03262, sec. 3, "advantage normalization"): no per-prompt baseline;
    the advantages are normalised over the global batch, A = (r - mean_batch) / std_batch.

    Every sample is weighted once here; the reference (OpenRLHF, REINFORCE++'s implementation) whitens over
    all valid tokens, which weighs a sample by its length: that form is reinforce_pp_outcome_token_advantages
    (TOKEN_ADVANTAGES), which the loop should use when it has the mask. With the token-level KL penalty folded
    into the reward, use reinforce_pp_token_advantages. std is the unbiased sample std.
    """
    return (rewards - rewards.mean()) / (rewards.std() + eps)  # [B, G]


def reinforce_pp_baseline_advantages(rewards: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """REINFORCE++-baseline (Hu 2025, sec. 3): subtract the group mean, then normalise over the global batch.

    A' = r - mean_group(r);  A = (A' - mean_batch(A')) / std_batch(A').  (KL goes in the loss, k2 in the paper.)
    Per-sample whitening; the reference's token-weighted form is reinforce_pp_baseline_token_advantages.
    """
    require_group(rewards, "REINFORCE++-baseline")
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # [B, G]
    return (centred - centred.mean()) / (centred.std() + eps)


def returns_to_go(token_rewards: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0) -> torch.Tensor:
    """G_t = sum_{i >= t} gamma^(i-t) r_i over the valid tokens of each row; 0 on padding. [N, T] -> [N, T].

    Masked positions inside a row (e.g. tool output) are skipped: the running return passes through them.
    """
    m = mask.to(token_rewards.dtype)
    out = torch.zeros_like(token_rewards)  # [N, T]
    running = torch.zeros_like(token_rewards[:, 0])  # [N]
    for t in reversed(range(token_rewards.shape[1])):
        updated = token_rewards[:, t] + gamma * running  # [N]
        running = m[:, t] * updated + (1 - m[:, t]) * running
        out[:, t] = m[:, t] * updated
    return out


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, *, eps: float = 1e-6, unbiased: bool = True) -> torch.Tensor:
    """(x - mean) / std over the valid entries of the whole batch; 0 on padding. unbiased=False: the population
    std (divide by the number of valid entries), as OpenRLHF whitens REINFORCE++ advantages."""
    m = mask.bool()
    valid = values[m]
    return torch.where(m, (values - valid.mean()) / (valid.std(unbiased=unbiased) + eps), torch.zeros_like(values))


def reinforce_pp_outcome_token_advantages(rewards: torch.Tensor, mask: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """REINFORCE++ outcome-only, as its reference implementation (OpenRLHF, Hu 2025 sec. 3) computes it: the
    return of a terminal reward (gamma = 1) is r_i on every token of sample i, and the advantages are whitened
    over all valid tokens of the batch (token-weighted mean, population variance), so long samples weigh more
    than in the per-sample reinforce_pp_advantages. rewards: [B, G]; mask: [N, T], N = B * G. Returns [N, T]."""
    per_token = rewards.reshape(-1, 1) * mask.to(rewards.dtype)  # [N, T]
    return masked_whiten(per_token, mask, eps=eps, unbiased=False)


def reinforce_pp_baseline_token_advantages(rewards: torch.Tensor, mask: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """REINFORCE++-baseline as OpenRLHF computes it: subtract the group mean from each reward (Hu 2025 sec. 3),
    put it on every valid token, then whiten over all valid tokens of the batch (population variance).
    rewards: [B, G]; mask: [N, T]. Returns [N, T]."""
    require_group(rewards, "REINFORCE++-baseline")
    return reinforce_pp_outcome_token_advantages(rewards - rewards.mean(dim=1, keepdim=True), mask, eps=eps)


def reinforce_pp_token_advantages(
    outcome: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, *, beta: float, gamma: float = 1.0, eps: float = 1e-6
) -> torch.Tensor:
    """REINFORCE++ with its token-level KL penalty (Hu 2025, sec. 3, eqs. for r(s_t, a_t) and A_t):

    r_t = 1[t = last] * r(x, y) - beta * KL_t;   A_t = sum_{i >= t} gamma^(i-t) r_i;   then whiten over all
    valid tokens of the batch with the population variance, as OpenRLHF does. kl: [N, T] per-token estimate,
    e.g. kl_estimate(old_logp, ref_logp, "k1") (the paper's KL_t = log pi_old / pi_SFT). outcome: [N].
    Returns [N, T].
    """
    token_rewards = kl_shaped_rewards(outcome, kl, mask, beta=beta)  # [N, T]
    return masked_whiten(returns_to_go(token_rewards, mask, gamma=gamma), mask, eps=eps, unbiased=False)


def seed_grpo_advantages(
    rewards: torch.Tensor,
    *,
    answers: Sequence[Sequence[Hashable]],
    alpha: float = 1.0,
    seq_logp: torch.Tensor | None = None,
    scale: str = "none",
) -> torch.Tensor:
    """SEED-GRPO (Chen et al. 2025, arXiv 2505.12346, sec. 3): A_hat_i = A_i * f(alpha * SE(q) / SE_max(q)),
    f(x) = 1 - x (linear), SE = semantic entropy of the group's final answers (shaping.semantic_entropy).

    answers: per prompt, the G final answers (ids or normalised strings; equal means same meaning).
    A_i = r_i - mean_group (the paper's base advantage; scale="group" gives std-scaled GRPO instead).
    """
    require_group(rewards, "SEED-GRPO")
    return grpo_advantages(rewards, scale=scale) * seed_scale(answers, alpha=alpha, seq_logp=seq_logp)[:, None]


def grpo_unlikely_advantages(
    rewards: torch.Tensor, *, seq_logp: torch.Tensor, beta_rank: float = 0.25, scale: str = "group"
) -> torch.Tensor:
    """GRPO on the unlikeliness reward (He et al. 2025, "Rewarding the Unlikely", unlikeliness reward): correct samples
    the policy already ranks likely get less reward, then the usual group normalisation. seq_logp: [B, G]."""
    require_group(rewards, "GRPO-unlikely")
    return grpo_advantages(unlikeliness_reward(rewards, seq_logp, beta_rank=beta_rank), scale=scale)


ADVANTAGES = {
    "grpo": grpo_advantages,
    "dr_grpo": dr_grpo_advantages,
    "rloo": rloo_advantages,
    "remax": remax_advantages,
    "reinforce_pp": reinforce_pp_advantages,
    "reinforce_pp_baseline": reinforce_pp_baseline_advantages,
    "seed_grpo": seed_grpo_advantages,
    "grpo_unlikely": grpo_unlikely_advantages,
}

# Estimators whose reference normalises over tokens: (rewards [B, G], mask [N, T], **kw) -> [N, T]. The loop
# prefers these over the ADVANTAGES entry of the same name when it has the loss mask.
TOKEN_ADVANTAGES = {
    "reinforce_pp": reinforce_pp_outcome_token_advantages,
    "reinforce_pp_baseline": reinforce_pp_baseline_token_advantages,
}

# Estimators that need G >= 2 samples per prompt (they raise otherwise).
GROUP_ADVANTAGES = frozenset({"grpo", "dr_grpo", "rloo", "reinforce_pp_baseline", "seed_grpo", "grpo_unlikely"})
