"""Dense (per-step) credit: place step rewards, returns or advantages on the tokens of each step.

Steps are described by `step_token_ends` [N, S]: the exclusive end token index of each step, so step s covers
tokens [end_{s-1}, end_s) with end_{-1} = 0. Padded steps have end <= 0 (e.g. -1). This is the hook where
PRM step scores or PAV progress (Setlur et al. 2024) enter the policy loss.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .advantages import require_group, returns_to_go, rloo_advantages
from .ragged import pad_ragged


def _pad_steps(
    step_rewards: torch.Tensor | Sequence[torch.Tensor], step_token_ends: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (rewards [N, S], ends [N, S] long, valid [N, S] bool) from a padded tensor or a list of [S_i]."""
    ends = torch.as_tensor(step_token_ends).long()  # [N, S]
    valid = ends > 0  # [N, S]
    if isinstance(step_rewards, torch.Tensor):
        rewards = step_rewards.to(torch.get_default_dtype()) if not step_rewards.is_floating_point() else step_rewards
    else:
        rewards, listed = pad_ragged(step_rewards, width=ends.shape[1])  # [N, S], [N, S]
        valid &= listed
    return rewards * valid, ends, valid


def step_returns(step_rewards: torch.Tensor, valid: torch.Tensor, *, gamma: float = 1.0) -> torch.Tensor:
    """Return-to-go over steps, G_s = sum_{k >= s} gamma^(k-s) r_k, 0 on padded steps. [N, S] -> [N, S]."""
    out = torch.zeros_like(step_rewards)
    running = torch.zeros_like(step_rewards[:, 0])  # [N]
    for s in reversed(range(step_rewards.shape[1])):
        running = torch.where(valid[:, s], step_rewards[:, s] + gamma * running, running)
        out[:, s] = running * valid[:, s]
    return out


def normalize_step_rewards(step_rewards: torch.Tensor, valid: torch.Tensor, group_size: int, *,
                           eps: float = 1e-6) -> torch.Tensor:
    """DeepSeekMath process supervision (Shao et al. 2024, sec. 4.1.3): r~ = (r - mean(R)) / std(R), where R is
    the set of all step rewards of the G outputs of one question. Rows n*G .. n*G + G-1 form a group (N = B*G).
    std is the unbiased sample std, as in grpo_advantages. step_rewards, valid: [N, S] -> [N, S], 0 on padding."""
    N, S = step_rewards.shape
    r = step_rewards.reshape(N // group_size, group_size * S)  # [B, G*S]
    v = valid.reshape(r.shape).to(r.dtype)  # [B, G*S]
    count = v.sum(dim=1, keepdim=True)  # [B, 1]
    mean = (r * v).sum(dim=1, keepdim=True) / count.clamp(min=1)
    var = ((r - mean) ** 2 * v).sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)
    return ((r - mean) / (var.sqrt() + eps) * v).reshape(N, S)


# How per-step values become per-token advantages (see dense_advantages).
DENSE_MODES = ("process", "return", "step", "last")


def dense_advantages(
    step_rewards: torch.Tensor | Sequence[torch.Tensor],
    step_token_ends: torch.Tensor,
    T: int,
    *,
    mode: str = "return",
    gamma: float = 1.0,
    group_size: int | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Per-step values -> per-token [N, T].

    mode="process": process-supervised GRPO as DeepSeekMath sec. 4.1.3 defines it: normalise the step rewards
      over each group of group_size outputs (`normalize_step_rewards`), then each token t gets the sum of the
      normalised rewards of the steps ending at or after t, A_t = sum_{index(j) >= t} r~_j (gamma = 1 there;
      eps guards the std).
    mode="return": each token of step s gets the step return-to-go G_s = sum_{k >= s} gamma^(k-s) r_k of the
      step rewards as given (no normalisation: "process" without its first half).
    mode="step": each token of step s gets r_s itself (pass ready-made per-step advantages, e.g. PAV's
      progress A_mu of Setlur et al. 2024, "Rewarding Progress", added to the outcome advantage by the caller).
    mode="last": r_s is placed on the last token of step s only (token-level rewards for GAE / returns_to_go).
    step_rewards: padded [N, S] or a list of N tensors [S_i]. Tokens after the last step get 0.
    """
    rewards, ends, valid = _pad_steps(step_rewards, step_token_ends)
    N, S = ends.shape
    if mode == "process":
        if group_size is None:
            raise ValueError("dense mode 'process' normalises over each group: pass group_size")
        rewards = normalize_step_rewards(rewards, valid, group_size, eps=eps)
        mode = "return"
    if mode == "return":
        per_step = step_returns(rewards, valid, gamma=gamma)  # [N, S]
    elif mode in ("step", "last"):
        per_step = rewards
    else:
        raise ValueError(f"unknown dense mode {mode!r}; valid: process, return, step, last")
    if mode == "last":
        out = torch.zeros(N, T, dtype=per_step.dtype)
        last_token = (ends - 1).clamp(0, T - 1)  # [N, S]
        return out.scatter_add(1, last_token, per_step * valid)
    # sorted ends with padding pushed past T, so searchsorted finds the step each token belongs to
    sort_ends = torch.where(valid, ends, torch.full_like(ends, T + 1)).contiguous()  # [N, S]
    tokens = torch.arange(T).expand(N, T).contiguous()  # [N, T]
    step_of_token = torch.searchsorted(sort_ends, tokens, right=True)  # [N, T], = number of steps ended at or before t
    in_a_step = step_of_token < valid.sum(dim=1, keepdim=True)  # [N, T]
    gathered = per_step.gather(1, step_of_token.clamp(max=S - 1))  # [N, T]
    return torch.where(in_a_step, gathered, torch.zeros_like(gathered))


def step_sums(token_values: torch.Tensor, step_token_ends: torch.Tensor) -> torch.Tensor:
    """Sum token values within each step (e.g. token logprobs -> step logprobs for step-level OREO).

    token_values: [N, T]; step_token_ends: [N, S] (padded steps, end <= 0, get 0). Returns [N, S].
    """
    ends = torch.as_tensor(step_token_ends).long()  # [N, S]
    valid = ends > 0
    cumsum = torch.cat([torch.zeros_like(token_values[:, :1]), token_values.cumsum(dim=1)], dim=1)  # [N, T+1]
    safe_ends = torch.where(valid, ends, torch.zeros_like(ends))  # [N, S]
    starts = torch.cat([torch.zeros_like(safe_ends[:, :1]), safe_ends[:, :-1]], dim=1)  # [N, S]
    sums = cumsum.gather(1, safe_ends) - cumsum.gather(1, starts)  # [N, S]
    return sums * valid


def prime_rloo_advantages(token_rewards: torch.Tensor, mask: torch.Tensor, group_size: int, *,
                          outcome: torch.Tensor | None = None, gamma: float = 1.0) -> torch.Tensor:
    """PRIME's advantage (Cui et al. 2025, arXiv 2502.01456, sec. 3.3, RLOO with implicit process rewards):

        A^i_t = sum_{s >= t} gamma^(s-t) [ r_phi(y^i_s) - 1/(K-1) sum_{j != i} r_phi(y^j) ]
                + r_o(y^i) - 1/(K-1) sum_{j != i} r_o(y^j),

    r_phi(y^i_s): the implicit process reward of token s (implicit_prm.implicit_token_rewards); r_phi(y^j): the
    average of response j's implicit rewards over its tokens (the paper's leave-one-out baseline uses the
    average); r_o: the outcome reward, whose RLOO term is added to every token. K = group_size samples per
    prompt, rows grouped as in N = B*K. token_rewards, mask: [N, T]; outcome: [B, K] or None. Returns [N, T].
    """
    m = mask.to(token_rewards.dtype)
    mean_reward = (token_rewards * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)  # [N] r_phi(y^j)
    grouped = mean_reward.reshape(-1, group_size)  # [B, K]
    require_group(grouped, "PRIME's leave-one-out baseline")
    others = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)  # [B, K]
    adv = returns_to_go((token_rewards - others.reshape(-1, 1)) * m, mask, gamma=gamma)  # [N, T]
    if outcome is not None:
        adv = adv + rloo_advantages(outcome).reshape(-1, 1).to(adv.dtype) * m
    return adv
