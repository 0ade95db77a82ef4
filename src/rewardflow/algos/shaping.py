"""Reward shaping and advantage modulation: DAPO's overlong punishment, the unlikeliness reward, and
SEED-GRPO's semantic-entropy scaling. Pure functions of tensors (and of answer lists, for SEED)."""
from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import torch


def overlong_penalty(lengths: torch.Tensor, *, max_len: int, cache_len: int) -> torch.Tensor:
    """DAPO soft overlong punishment (Yu et al. 2025, eq. 13), added to the task reward:

    R_length(y) = 0                                   if |y| <= L_max - L_cache
                = ((L_max - L_cache) - |y|) / L_cache   if L_max - L_cache < |y| <= L_max
                = -1                                  if |y| > L_max
    lengths: [N] completion lengths in tokens; returns [N] (float).
    """
    lengths = lengths.to(torch.float64)
    soft_start = max_len - cache_len
    ramp = (soft_start - lengths) / cache_len  # [N]
    out = torch.where(lengths <= soft_start, torch.zeros_like(lengths), ramp)
    out = torch.where(lengths > max_len, torch.full_like(lengths, -1.0), out)
    return out.to(torch.get_default_dtype())


def overlong_filter_mask(truncated: torch.Tensor) -> torch.Tensor:
    """DAPO overlong filtering (Yu et al. 2025, sec. 3.4): truncated samples get no loss. [N] bool -> [N] keep."""
    return ~truncated.bool()


def unlikeliness_reward(rewards: torch.Tensor, seq_logp: torch.Tensor, *, beta_rank: float = 0.25) -> torch.Tensor:
    """Unlikeliness reward (He, Fried & Welleck 2025, "Rewarding the Unlikely", sec. "Unlikeliness reward"):

    r_i = R(x, y_i) * (1 - beta_rank * (G - rank(y_i)) / G),
    rank 1 = the sample the policy finds most likely within its group, rank G = the least likely. So the
    most likely correct sample keeps 1 - beta_rank (G-1)/G of its reward and the least likely keeps all of it;
    zero rewards stay zero. rewards, seq_logp: [B, G]; seq_logp is the sequence log-probability under the
    sampling policy (the authors' release ranks by the length-mean token logprob: pass whichever you rank by).
    Ties are broken by position (an earlier sample counts as less likely): a stable sort, which torch's default
    is not beyond 16 elements.
    """
    G = rewards.shape[1]
    # ascending order: the least likely gets 0, the most likely gets G-1, i.e. G - rank(y_i)
    likelihood_order = seq_logp.argsort(dim=1, stable=True).argsort(dim=1).to(rewards.dtype)  # [B, G]
    return rewards * (1 - beta_rank * likelihood_order / G)


def semantic_entropy(answers: Sequence[Sequence[Hashable]], seq_logp: torch.Tensor | None = None) -> torch.Tensor:
    """Semantic entropy of each group's answers (Kuhn et al. 2023; SEED-GRPO, Chen et al. 2025, sec. 3):

    SE(q) ~= -1/K sum_k log p(C_k | q) over the K meaning clusters C_k, where two answers share a cluster
    iff they are equal (math final answers; pass normalised strings or ids). p(C_k | q) is the fraction of the
    group in C_k, or, with seq_logp [B, G], the group-normalised probability mass sum_{i in C_k} pi(o_i|q) /
    sum_j pi(o_j|q). With frequencies SE <= log G, reached when all G answers differ. Returns [B].
    """
    out = []
    for b, group in enumerate(answers):
        ids: dict[Hashable, int] = {}
        cluster = torch.tensor([ids.setdefault(a, len(ids)) for a in group])  # [G]
        if seq_logp is None:
            weights = torch.full((len(group),), 1.0 / len(group), dtype=torch.float64)  # [G]
        else:
            weights = torch.softmax(seq_logp[b].to(torch.float64), dim=0)  # [G]
        p_cluster = torch.zeros(len(ids), dtype=torch.float64).index_add(0, cluster, weights)  # [K]
        out.append(-p_cluster.log().mean())
    return torch.stack(out).to(torch.get_default_dtype())


def seed_scale(answers: Sequence[Sequence[Hashable]], *, alpha: float = 1.0, seq_logp: torch.Tensor | None = None) -> torch.Tensor:
    """SEED-GRPO advantage multiplier (Chen et al. 2025, sec. 3, linear f): f(alpha * SE / SE_max) with
    f(x) = 1 - x and SE_max = log G. Confident groups (one answer) keep their full advantage; maximal
    disagreement scales it by 1 - alpha. The normalised entropy is clamped to [0, 1] (only the probability-
    weighted estimate can exceed log G). Returns [B]."""
    G = len(answers[0])
    if G < 2:
        return torch.ones(len(answers))
    normalised = (semantic_entropy(answers, seq_logp) / math.log(G)).clamp(0.0, 1.0)  # [B]
    return 1 - alpha * normalised
