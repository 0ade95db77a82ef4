"""Policy-gradient losses: pure functions of tensors, returning (loss, stats).

Every entry of POLICY_LOSSES has the signature
    (logp [N, T], old_logp [N, T], adv [N] or [N, T], mask [N, T], *, eps_low, eps_high, agg, normalizer)
    -> (loss, stats)
so the training loop looks the loss up once and calls it the same way.
"""
from __future__ import annotations

import torch


def aggregate_tokens(per_token: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean", normalizer: float | None = None) -> torch.Tensor:
    """Reduce a per-token loss [N, T] to a scalar.

    token-mean: sum over all tokens / number of tokens (DAPO, Yu et al. 2025, eq. 8).
    seq-mean-token-mean: mean over sequences of each sequence's token mean (GRPO, Shao et al. 2024, eq. 3).
    seq-mean-token-sum: sum over tokens / constant (Dr.GRPO, Liu et al. 2025: normaliser = max length).
    `normalizer` overrides the denominator so that micro-batches and ranks sum to the full-batch loss:
    pass the full batch's token count (token-mean), sequence count (seq-mean-*), or the constant.
    """
    mask = mask.to(per_token.dtype)
    if mode == "token-mean":
        denom = mask.sum().clamp(min=1) if normalizer is None else normalizer
        return (per_token * mask).sum() / denom
    if mode == "seq-mean-token-mean":
        seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # [N]
        return seq.sum() / (seq.numel() if normalizer is None else normalizer)
    if mode == "seq-mean-token-sum":
        if normalizer is None:
            raise ValueError("seq-mean-token-sum needs a constant normalizer (e.g. max completion length)")
        return (per_token * mask).sum() / normalizer
    raise ValueError(f"unknown loss aggregation {mode!r}; valid: token-mean, seq-mean-token-mean, seq-mean-token-sum")


def _clip_stats(
    ratio: torch.Tensor, clipped_ratio: torch.Tensor, adv: torch.Tensor, per_token: torch.Tensor, mask: torch.Tensor
) -> dict[str, float]:
    with torch.no_grad():
        m = mask.bool()
        was_clipped = (ratio * adv != clipped_ratio * adv) & (per_token == -clipped_ratio * adv)  # [N, T]
        return {
            "loss/clip_frac": was_clipped[m].float().mean().item() if m.any() else 0.0,
            "ratio_mean": ratio.expand_as(mask)[m].mean().item() if m.any() else 1.0,
        }


def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    agg: str = "token-mean",
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-clip surrogate (Schulman et al. 2017, eq. 7), with DAPO's decoupled clip range eps_low/eps_high
    (Yu et al. 2025, DAPO, sec. 3.1 "clip-higher").

    logp, old_logp, mask: [N, T]; adv: [N] or [N, T]. Minimising -min(ratio*A, clip(ratio)*A).
    """
    if adv.dim() == 1:
        adv = adv[:, None]  # [N, 1] broadcast over tokens
    ratio = torch.exp(logp - old_logp)  # [N, T]
    clipped_ratio = ratio.clamp(1 - eps_low, 1 + eps_high)  # [N, T]
    per_token = -torch.minimum(ratio * adv, clipped_ratio * adv)  # [N, T]
    loss = aggregate_tokens(per_token, mask, agg, normalizer)
    return loss, _clip_stats(ratio, clipped_ratio, adv, per_token, mask)


def dual_clip_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    agg: str = "token-mean",
    normalizer: float | None = None,
    dual_clip_c: float = 3.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Dual-clip PPO (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep RL", AAAI, the
    dual-clip objective): for A < 0 the
    objective is max(min(ratio*A, clip(ratio)*A), c*A), so a huge ratio on a bad token cannot blow the
    loss up; for A >= 0 it is plain PPO-clip. c > 1 (the paper uses 3)."""
    if adv.dim() == 1:
        adv = adv[:, None]  # [N, 1]
    ratio = torch.exp(logp - old_logp)  # [N, T]
    clipped_ratio = ratio.clamp(1 - eps_low, 1 + eps_high)  # [N, T]
    ppo = -torch.minimum(ratio * adv, clipped_ratio * adv)  # [N, T]
    # Loss of the lower bound c*A; only binds for negative advantages.
    per_token = torch.where(adv < 0, torch.minimum(ppo, -dual_clip_c * adv), ppo)  # [N, T]
    loss = aggregate_tokens(per_token, mask, agg, normalizer)
    stats = _clip_stats(ratio, clipped_ratio, adv, ppo, mask)
    with torch.no_grad():
        m = mask.bool()
        dual = ((adv < 0) & (ppo > -dual_clip_c * adv)).expand_as(mask)  # [N, T]
        stats["loss/dual_clip_frac"] = dual[m].float().mean().item() if m.any() else 0.0
    return loss, stats


def gspo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 3e-4,
    eps_high: float = 4e-4,
    agg: str = "seq-mean-token-mean",
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization", sec. 4): the importance ratio
    is the sequence's length-normalised likelihood ratio s_i = exp(mean_t (logp - old_logp)), clipped at the
    sequence level: -min(s_i A_i, clip(s_i, 1-eps_low, 1+eps_high) A_i).

    Written in the paper's GSPO-token form s_it = sg[s_i] * pi(y_t) / sg[pi(y_t)]: equal in value to s_i, and
    with adv [N] and agg="seq-mean-token-mean" (the default) its gradient is exactly GSPO's.
    adv [N, T] gives GSPO-token. The paper's clip range is tiny (3e-4, 4e-4): pass it, not PPO's 0.2.
    """
    if adv.dim() == 1:
        adv = adv[:, None]  # [N, 1]
    m = mask.to(logp.dtype)
    log_seq_ratio = ((logp - old_logp) * m).sum(-1) / m.sum(-1).clamp(min=1)  # [N]
    ratio = torch.exp(log_seq_ratio.detach()[:, None] + logp - logp.detach())  # [N, T], value s_i everywhere
    clipped_ratio = ratio.clamp(1 - eps_low, 1 + eps_high)  # [N, T]
    per_token = -torch.minimum(ratio * adv, clipped_ratio * adv)  # [N, T]
    loss = aggregate_tokens(per_token, mask, agg, normalizer)
    stats = _clip_stats(ratio, clipped_ratio, adv, per_token, mask)
    stats["loss/seq_ratio_mean"] = torch.exp(log_seq_ratio).mean().item()
    return loss, stats


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) per position: H = logsumexp(z) - sum_v p_v z_v. [N, T, V] -> [N, T]."""
    probs = torch.softmax(logits, dim=-1)  # [N, T, V]
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)


def entropy_bonus(
    entropy: torch.Tensor, mask: torch.Tensor, *, coef: float, agg: str = "token-mean", normalizer: float | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Entropy bonus (Schulman et al. 2017, eq. 9, the c2 * S term): loss = -coef * aggregate(H).

    Add it to the policy loss; minimising it raises the entropy. entropy: [N, T] (entropy_from_logits).
    """
    loss = -coef * aggregate_tokens(entropy, mask, agg, normalizer)
    with torch.no_grad():
        m = mask.bool()
        stats = {"entropy/mean": entropy[m].mean().item() if m.any() else 0.0}
    return loss, stats


def sft_nll_loss(
    logp: torch.Tensor, mask: torch.Tensor, *, agg: str = "token-mean", normalizer: float | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Negative log-likelihood of the given tokens (supervised fine-tuning; RAFT's update, Dong et al. 2023,
    Algorithm 1). logp, mask: [N, T]; rows with an all-zero mask contribute nothing."""
    loss = aggregate_tokens(-logp, mask, agg, normalizer)
    with torch.no_grad():
        m = mask.bool()
        stats = {"nll/token": (-logp[m]).mean().item() if m.any() else 0.0}
    return loss, stats


def truncated_is_weights(
    prox_logp: torch.Tensor, behav_logp: torch.Tensor, mask: torch.Tensor, *, cap: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token importance weights from the behaviour policy (the one that sampled) to the proximal policy (the
    trainer's weights before this update), truncated at `cap`: w_t = min(pi_prox(y_t) / pi_behav(y_t), cap).

    Two systems use exactly this weight. Truncated importance sampling (Yao et al. 2025, "Your efficient RL
    framework secretly brings you off-policy RL training"; verl and TRL): the inference engine's logprobs differ
    from the trainer's, so the clipped surrogate is taken against the trainer's recomputed logprobs and each token
    is weighted by w_t. Decoupled PPO (Fu et al. 2025, AReaL, eq. 5): samples generated by stale weights, the clip
    trust region centred on pi_prox, and the behaviour weight pi_prox / pi_behav in front.
    Truncation bounds the variance; the weight is a constant (no gradient). Padding gets weight 0.

    prox_logp, behav_logp, mask: [N, T]. Returns (w [N, T], stats)."""
    with torch.no_grad():
        m = mask.bool()
        raw = torch.exp(prox_logp - behav_logp)  # [N, T]
        weight = raw.clamp(max=cap) * m  # [N, T]
        if not m.any():
            return weight, {"tis/weight_mean": 1.0, "tis/capped_frac": 0.0, "tis/behav_kl": 0.0}
        # one host sync for the three statistics; behav_kl: k1 estimate of KL(behav || prox) per token
        means = torch.stack([weight[m].mean(), (raw[m] > cap).float().mean(), (behav_logp - prox_logp)[m].mean()]).tolist()
        stats = dict(zip(("tis/weight_mean", "tis/capped_frac", "tis/behav_kl"), means))
    return weight, stats


def importance_weighted_advantages(adv: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """adv [N] or [N, T] times the importance weight [N, T] -> [N, T].

    Every surrogate of POLICY_LOSSES is positively homogeneous in the advantage for a fixed non-negative w:
    -min(r * wA, clip(r) * wA) = w * -min(r * A, clip(r) * A) (and dual-clip's bound c * wA likewise), so weighting
    the advantage weights each token's loss by w_t without a new loss signature."""
    if adv.dim() == 1:
        adv = adv[:, None]  # [N, 1]
    return adv * weight  # [N, T]


POLICY_LOSSES = {
    "clip": clipped_policy_loss,
    "dual_clip": dual_clip_policy_loss,
    "gspo": gspo_loss,
}
