"""Offline preference losses on (chosen, rejected) pairs.

Every entry of PREFERENCE_LOSSES has the signature
    (policy_chosen_logp [B], policy_rejected_logp [B], ref_chosen_logp [B], ref_rejected_logp [B], *, beta,
     chosen_len=None, rejected_len=None, normalizer=None, ...) -> (loss, stats)
where the logps are summed sequence log-probabilities of the completions. chosen_len / rejected_len [B] are
completion lengths (used by SimPO and RPO, ignored by the others, so the loop can always pass them); the
reference logps are ignored by SimPO (pass None). The loss is sum over pairs / (normalizer or B): pass the
full batch's pair count so micro-batches and ranks add up to the full-batch loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _reduce(per_pair: torch.Tensor, normalizer: float | None) -> torch.Tensor:
    return per_pair.sum() / (per_pair.numel() if normalizer is None else normalizer)


def _stats(chosen_reward: torch.Tensor, rejected_reward: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        margin = chosen_reward - rejected_reward  # [B]
        return {
            "pref/chosen_reward": chosen_reward.mean().item(),
            "pref/rejected_reward": rejected_reward.mean().item(),
            "pref/margin": margin.mean().item(),
            "pref/accuracy": (margin > 0).float().mean().item(),
        }


def dpo_loss(
    policy_chosen_logp: torch.Tensor,
    policy_rejected_logp: torch.Tensor,
    ref_chosen_logp: torch.Tensor,
    ref_rejected_logp: torch.Tensor,
    *,
    beta: float = 0.1,
    chosen_len: torch.Tensor | None = None,
    rejected_len: torch.Tensor | None = None,
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """DPO (Rafailov et al. 2023, eq. 7): -log sigmoid(beta [log pi/pi_ref (y_w) - log pi/pi_ref (y_l)]).

    Stats report the implicit rewards beta * log pi/pi_ref (sec. 5) of chosen and rejected, their margin, and
    the fraction of pairs where the chosen reward is higher.
    """
    chosen_reward = beta * (policy_chosen_logp - ref_chosen_logp)  # [B]
    rejected_reward = beta * (policy_rejected_logp - ref_rejected_logp)  # [B]
    loss = _reduce(-F.logsigmoid(chosen_reward - rejected_reward), normalizer)
    return loss, _stats(chosen_reward, rejected_reward)


def cdpo_loss(
    policy_chosen_logp: torch.Tensor,
    policy_rejected_logp: torch.Tensor,
    ref_chosen_logp: torch.Tensor,
    ref_rejected_logp: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.1,
    chosen_len: torch.Tensor | None = None,
    rejected_len: torch.Tensor | None = None,
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences"): labels flipped with
    probability eps, so the loss is -(1-eps) log sigmoid(z) - eps log sigmoid(-z), z the DPO logit."""
    chosen_reward = beta * (policy_chosen_logp - ref_chosen_logp)  # [B]
    rejected_reward = beta * (policy_rejected_logp - ref_rejected_logp)  # [B]
    z = chosen_reward - rejected_reward  # [B]
    per_pair = -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)  # [B]
    return _reduce(per_pair, normalizer), _stats(chosen_reward, rejected_reward)


def ipo_loss(
    policy_chosen_logp: torch.Tensor,
    policy_rejected_logp: torch.Tensor,
    ref_chosen_logp: torch.Tensor,
    ref_rejected_logp: torch.Tensor,
    *,
    beta: float = 0.1,
    chosen_len: torch.Tensor | None = None,
    rejected_len: torch.Tensor | None = None,
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """IPO (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from
    Human Preferences", sec. 5, the sampled IPO loss): (h - 1/(2 tau))^2 with
    h = log [pi(y_w) pi_ref(y_l)] / [pi(y_l) pi_ref(y_w)] and tau = beta (the regularisation strength).
    Summed sequence logps, as in the paper."""
    h = (policy_chosen_logp - ref_chosen_logp) - (policy_rejected_logp - ref_rejected_logp)  # [B]
    loss = _reduce((h - 1 / (2 * beta)) ** 2, normalizer)
    return loss, _stats(beta * (policy_chosen_logp - ref_chosen_logp), beta * (policy_rejected_logp - ref_rejected_logp))


def simpo_loss(
    policy_chosen_logp: torch.Tensor,
    policy_rejected_logp: torch.Tensor,
    ref_chosen_logp: torch.Tensor | None = None,
    ref_rejected_logp: torch.Tensor | None = None,
    *,
    beta: float = 2.0,
    gamma: float = 1.0,
    chosen_len: torch.Tensor | None = None,
    rejected_len: torch.Tensor | None = None,
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """SimPO (Meng et al. 2024, eq. 6): -log sigmoid(beta/|y_w| log pi(y_w) - beta/|y_l| log pi(y_l) - gamma).

    Length-normalised reward, target margin gamma, no reference model (ref logps are ignored).
    chosen_len, rejected_len: [B] completion lengths, required.
    """
    if chosen_len is None or rejected_len is None:
        raise ValueError("simpo_loss needs chosen_len and rejected_len (completion lengths in tokens)")
    chosen_reward = beta * policy_chosen_logp / chosen_len  # [B]
    rejected_reward = beta * policy_rejected_logp / rejected_len  # [B]
    loss = _reduce(-F.logsigmoid(chosen_reward - rejected_reward - gamma), normalizer)
    return loss, _stats(chosen_reward, rejected_reward)


def rpo_loss(
    policy_chosen_logp: torch.Tensor,
    policy_rejected_logp: torch.Tensor,
    ref_chosen_logp: torch.Tensor,
    ref_rejected_logp: torch.Tensor,
    *,
    beta: float = 0.1,
    alpha: float = 1.0,
    chosen_len: torch.Tensor | None = None,
    rejected_len: torch.Tensor | None = None,
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """RPO / DPO+NLL (Pang et al. 2024, "Iterative Reasoning Preference Optimization", sec. 2):
    L_DPO + alpha * L_NLL, with L_NLL = -log pi(y_w | x) / |y_w| the length-normalised NLL of the chosen
    completion. chosen_len: [B], required (the paper counts prompt and completion tokens: pass what you
    scored)."""
    if chosen_len is None:
        raise ValueError("rpo_loss needs chosen_len (length used to normalise the chosen NLL)")
    dpo, stats = dpo_loss(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, beta=beta, normalizer=normalizer)
    nll = _reduce(-policy_chosen_logp / chosen_len, normalizer)
    stats["pref/nll"] = nll.item()
    return dpo + alpha * nll, stats


PREFERENCE_LOSSES = {
    "dpo": dpo_loss,
    "cdpo": cdpo_loss,
    "ipo": ipo_loss,
    "simpo": simpo_loss,
    "rpo": rpo_loss,
}
