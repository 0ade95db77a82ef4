"""Which samples (and tokens) to train on: DAPO dynamic sampling, D3S down-sampling, RAFT / Reinforce-Rej
filters. Every function returns boolean keep-masks (or indices); the losses apply them as loss masks."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import torch

Item = TypeVar("Item")


def dynamic_sampling_keep(rewards: torch.Tensor) -> torch.Tensor:
    """DAPO dynamic sampling (Yu et al. 2025, sec. 3.2; the constraint 0 < |{correct}| < G of the DAPO objective): keep a group only if
    its rewards are not all equal (an all-equal group has zero advantage and no gradient). [B, G] -> [B] bool."""
    return rewards.max(dim=1).values != rewards.min(dim=1).values


def refill_batch(
    pool: Sequence[Item], pool_rewards: torch.Tensor, batch_size: int, batch: Sequence[Item] = ()
) -> tuple[list[Item], list[Item]]:
    """DAPO's batch refill (Yu et al. 2025, Algorithm 1): append the pool's informative groups to
    `batch` until it holds batch_size groups; over-sampling beyond that is returned as leftover.

    pool: B' groups (any objects); pool_rewards: [B', G]. Returns (batch, leftover informative groups).
    Call again with a fresh pool while len(batch) < batch_size.
    """
    keep = dynamic_sampling_keep(pool_rewards).tolist()  # [B'] bools
    informative = [g for g, k in zip(pool, keep) if k]
    room = max(0, batch_size - len(batch))
    return list(batch) + informative[:room], informative[room:]


def max_variance_subset(values: torch.Tensor, k: int) -> torch.Tensor:
    """The size-k subset of `values` [G] with the largest (population) variance, as a [G] bool mask.

    A maximum-variance subset is always some j largest plus k-j smallest values, so trying j = 0..k on the
    sorted values is exact. Ties: the smallest j wins among equally good splits; among equal values a stable
    sort ranks the lower index as smaller, so the smallest values are taken earliest-first and the largest
    latest-first (torch's default sort is not stable beyond 16 elements, so this needs stable=True).
    """
    G = values.numel()
    k = max(0, min(k, G))
    order = values.argsort(stable=True)  # ascending
    best_j, best_var = 0, -math.inf
    for j in range(k + 1):
        chosen = torch.cat([order[: k - j], order[G - j :]])  # k-j smallest, j largest
        var = values[chosen].var(unbiased=False).item() if k > 1 else 0.0
        if var > best_var + 1e-12:
            best_j, best_var = j, var
    keep = torch.zeros(G, dtype=torch.bool)
    keep[torch.cat([order[: k - best_j], order[G - best_j :]])] = True
    return keep


def d3s_sample_mask(adv: torch.Tensor, keep_ratio: float, *, scope: str = "batch") -> torch.Tensor:
    """D3S sample-level down-sampling (Wang et al. 2025, "Learning More with Less", sample level): keep the subset
    of rollouts whose advantages have the largest variance Var(A), which bounds the policy-gradient norm.

    adv: [B, G] (computed on the full group). scope="batch" (the paper's main method, selection across
    groups): keep ceil(keep_ratio * B * G) over the whole batch, so a group may keep all or none of its
    samples; "group" (the paper's intra-group variant, D3S-I): keep ceil(keep_ratio * G) per group.
    Returns [B, G] bool.
    """
    B, G = adv.shape
    if scope == "group":
        k = math.ceil(keep_ratio * G)
        return torch.stack([max_variance_subset(adv[b], k) for b in range(B)])
    if scope == "batch":
        return max_variance_subset(adv.reshape(-1), math.ceil(keep_ratio * B * G)).reshape(B, G)
    raise ValueError(f"unknown D3S scope {scope!r}; valid: group, batch")


def d3s_token_mask(adv: torch.Tensor, entropy: torch.Tensor, mask: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    """D3S token-level down-sampling (Wang et al. 2025, token level): among valid tokens of the batch keep the
    ceil(keep_ratio * n_valid) with the largest |A_it| * H_it (uncertain and impactful tokens).

    adv: [N] or [N, T]; entropy, mask: [N, T]. Returns a [N, T] bool mask (a subset of mask).
    """
    if adv.dim() == 1:
        adv = adv[:, None]  # [N, 1]
    valid = mask.bool()
    score = torch.where(valid, adv.abs() * entropy, torch.full_like(entropy, -math.inf)).reshape(-1)  # [N*T]
    k = math.ceil(keep_ratio * int(valid.sum()))
    keep = torch.zeros_like(score, dtype=torch.bool)
    keep[score.topk(k).indices] = True
    return keep.reshape(mask.shape) & valid


def d3s_keep_ratio(
    step: int, total_steps: int, *, start: float = 0.25, end: float = 1.0, schedule: str = "linear"
) -> float:
    """D3S dynamic schedule (Wang et al. 2025, dynamic down-sampling schedule): aggressive down-sampling early, relaxed over training.

    The keep ratio moves from `start` to `end` over total_steps, linearly or along a half cosine.
    (The paper gives the curriculum's shape in words; the exact curve and endpoints here are our choice.)
    """
    progress = min(max(step / max(1, total_steps), 0.0), 1.0)
    if schedule == "linear":
        return start + (end - start) * progress
    if schedule == "cosine":
        return start + (end - start) * 0.5 * (1 - math.cos(math.pi * progress))
    raise ValueError(f"unknown D3S schedule {schedule!r}; valid: linear, cosine")


def raft_keep_best(rewards: torch.Tensor, *, min_reward: float | None = None) -> torch.Tensor:
    """RAFT (Dong et al. 2023, "RAFT: Reward rAnked FineTuning", Algorithm 1 step 2): keep each prompt's
    highest-reward sample (first on ties), optionally only if its reward >= min_reward. [B, G] -> [B, G] bool."""
    keep = torch.zeros_like(rewards, dtype=torch.bool)
    keep.scatter_(1, rewards.argmax(dim=1, keepdim=True), True)
    if min_reward is not None:
        keep &= rewards >= min_reward
    return keep


def keep_correct(rewards: torch.Tensor, *, threshold: float = 1.0) -> torch.Tensor:
    """Rejection sampling as in RAFT / RAFT++ (Xiong et al. 2025, "A Minimalist Approach to LLM Reasoning"):
    keep every sample whose reward >= threshold (the correct ones). [B, G] -> [B, G] bool."""
    return rewards >= threshold


def reinforce_rej_keep(rewards: torch.Tensor) -> torch.Tensor:
    """Reinforce-Rej (Xiong et al. 2025): drop prompts whose samples are all correct or all wrong
    (all-equal rewards), keep every sample of the others. [B, G] -> [B, G] bool."""
    return dynamic_sampling_keep(rewards)[:, None].expand_as(rewards).clone()
