"""Online algorithms as two parts each: `prepare` (once per rollout batch, no gradient: advantages, keep-masks,
critic targets) and `loss` (per micro-batch, with gradient). ALGORITHMS is the one registry `algo.name` is
looked up in; every advantage estimator of algos.ADVANTAGES runs as a clipped policy gradient, and the named
methods of PRESETS (DAPO, GSPO, dual-clip, D3S) run the GRPO estimator with their papers' settings.

The shared preparation applies what every algorithm can use: DAPO's overlong filter, the reference
logprobs, KL folded into the reward (REINFORCE++) and D3S down-sampling; the normaliser is the whole
batch's, computed after every mask is final, so micro-batches (and ranks) add up to the full-batch loss.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.nn.utils.rnn import pad_sequence

from ..algos import (
    ADVANTAGES,
    GROUP_ADVANTAGES,
    TOKEN_ADVANTAGES,
    POLICY_LOSSES,
    clipped_value_loss,
    d3s_keep_ratio,
    d3s_sample_mask,
    d3s_token_mask,
    dense_advantages,
    dr_grpo_advantages,
    gae,
    keep_correct,
    kl_estimate,
    kl_shaped_rewards,
    masked_whiten,
    overlong_filter_mask,
    prime_rloo_advantages,
    raft_keep_best,
    raft_loss,
    raft_pp_loss,
    reinforce_pp_token_advantages,
    reinforce_rej_keep,
    reinforce_rej_loss,
    returns_to_go,
    rover_loss,
    rover_next_q_mean,
    vocab_mean_logprob,
)
from ..policy.forward import forward, pad_ends, step_token_ends


@dataclass
class Prepared:
    batch: object  # TokenBatch of the rollout
    mask: torch.Tensor  # [N, T] loss mask after filters, keep-masks and D3S
    old_logp: torch.Tensor  # [N, T] at sampling time
    ref_logp: torch.Tensor | None  # [N, T] under the reference (when kl_coef > 0)
    adv: torch.Tensor | None = None  # [N] or [N, T]
    norm: float = 1.0  # the full batch's denominator for algo.agg
    rows: torch.Tensor | None = None  # sequences that get a forward pass
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OnlineAlgorithm:
    prepare: Callable  # (p, rollout, cfg, ctx) -> None: fills p.adv / p.mask / p.extra
    loss: Callable  # (fw, p, mb, cfg, ctx) -> (loss, stats)
    logits: bool = False  # loss needs full logits
    hidden: bool = False  # loss needs hidden states (shared value head)
    critic: bool = False  # train_rl builds a Critic (train/ppo.py)
    all_rows: bool = False  # zero-advantage sequences still carry loss (value / Q regression)
    needs_group: bool = False  # compares a sample with its group: rollout.group_size >= 2
    greedy_baseline: bool = False  # the rollout also decodes each prompt greedily and scores it (ReMax's baseline)
    needs_scorer: bool = False  # reads a learned scorer of reward.scorers (PRIME's implicit PRM)
    token_weights: bool = True  # the loss weights tokens by p.adv, so truncated IS (algo.tis_cap) can scale them


# Inputs each advantage estimator takes besides the rewards (one table, looked up once per step).
ADVANTAGE_INPUTS = {
    "grpo": lambda ro, cfg: {"scale": cfg.algo.scale},
    "remax": lambda ro, cfg: {"baseline": ro.baseline},
    "seed_grpo": lambda ro, cfg: {"answers": ro.answers},
    "grpo_unlikely": lambda ro, cfg: {"seq_logp": ro.seq_logp, "scale": cfg.algo.scale},
}

# KL folded into the reward: estimators with their own token-level form; the rest add the KL penalty's
# return-to-go, -beta * sum_{i >= t} KL_i, to their sequence advantage.
KL_REWARD_ADVANTAGES = {
    "reinforce_pp": lambda ro, kl, mask, a: reinforce_pp_token_advantages(ro.rewards.reshape(-1), kl, mask, beta=a.kl_coef),
}


def _kl_return(adv, kl, mask, a):
    """algo.kl_placement=after (the default): the KL penalty's return-to-go is added to the normalised advantage."""
    return (adv[:, None] if adv.dim() == 1 else adv) - returns_to_go(a.kl_coef * kl, mask)  # [N, T]


def _policy_loss(fw, p, mb, cfg):
    a = cfg.algo
    return POLICY_LOSSES[a.loss](fw.logp, p.old_logp[mb], p.adv[mb], p.mask[mb], eps_low=a.eps_low, eps_high=a.eps_high, agg=a.agg, normalizer=p.norm)


# ---------------------------------------------------------------- policy gradient (every ADVANTAGES entry)


def _pg_prepare(estimator: str):
    def prepare(p, ro, cfg, ctx):
        a = cfg.algo
        kl = kl_estimate(p.old_logp, p.ref_logp, a.kl_estimator) if a.kl_mode == "reward" and p.ref_logp is not None else None  # [N, T]
        own_kl = kl is not None and estimator in KL_REWARD_ADVANTAGES  # REINFORCE++: the KL is part of its token reward
        rewards = ro.rewards
        if kl is not None and a.kl_placement == "before" and not own_kl:  # verl: r - beta * sum_t KL_t enters the estimator
            rewards = rewards - a.kl_coef * (kl * p.mask).sum(1).view_as(rewards)  # [B, G]
        if own_kl:
            adv = KL_REWARD_ADVANTAGES[estimator](ro, kl, p.mask, a)  # [N, T]
        elif estimator in TOKEN_ADVANTAGES:  # whitened over valid tokens (OpenRLHF)
            adv = TOKEN_ADVANTAGES[estimator](rewards, p.mask)  # [N, T]
        else:
            adv = ADVANTAGES[estimator](rewards, **ADVANTAGE_INPUTS.get(estimator, lambda ro, cfg: {})(ro, cfg)).reshape(-1)  # [N]
        if kl is not None and a.kl_placement == "after" and not own_kl:
            adv = _kl_return(adv, kl, p.mask, a)  # [N, T]
        if a.dense.coef > 0 and ro.step_rewards is not None:
            adv = _with_dense(adv, ro, p, ctx, a)
        p.adv = adv
    return prepare


def _with_dense(adv, ro, p, ctx, a):
    """The dense hook: per-step rewards of each sample (Rollout.step_rewards) placed on its steps' tokens."""
    T = p.mask.shape[1]
    ends = pad_ends([step_token_ends(ctx["tokenizer"], c.token_ids, c.text) for c in ro.completions])  # [N, S]
    dense = dense_advantages(ro.step_rewards, ends, T, mode=a.dense.mode, group_size=ro.rewards.shape[1])  # [N, T]
    return (adv[:, None] if adv.dim() == 1 else adv) + a.dense.coef * dense * p.mask


def _pg_loss(fw, p, mb, cfg, ctx):
    return _policy_loss(fw, p, mb, cfg)


# ---------------------------------------------------------------- PPO with a learned critic


def _ppo_prepare(p, ro, cfg, ctx):
    """Token rewards: the outcome on the last token (minus kl_coef * KL_t when kl_mode=reward, Ouyang et al.
    2022 eq. 2), then GAE(gamma, lambda) against the critic's values at rollout time; advantages whitened."""
    a, critic = cfg.algo, ctx["critic"]
    with torch.no_grad():
        old_values = torch.cat([_values(critic, ctx["policy"], p.batch.select(mb), cfg) for mb in torch.arange(len(p.mask)).split(cfg.trainer.micro_batch_size)])  # [N, T]
    kl = torch.zeros_like(p.old_logp)
    if a.kl_mode == "reward" and p.ref_logp is not None:
        kl = kl_estimate(p.old_logp, p.ref_logp, a.kl_estimator)  # [N, T]
    token_rewards = kl_shaped_rewards(ro.rewards.reshape(-1), kl, p.mask, beta=a.kl_coef)  # [N, T]
    adv, returns = gae(token_rewards, old_values, p.mask, gamma=a.ppo.gamma, lam=a.ppo.lam)  # [N, T]
    p.adv = masked_whiten(adv, p.mask)
    p.extra.update(old_values=old_values, returns=returns)


def _values(critic, policy, batch, cfg):
    hidden = forward(policy.model, batch, cfg.rollout.temperature, hidden=True).hidden if critic.shared else None
    return critic.values(batch, hidden)  # [n, T]


def _ppo_loss(fw, p, mb, cfg, ctx):
    a = cfg.algo
    loss, stats = _policy_loss(fw, p, mb, cfg)
    values = ctx["critic"].values(p.batch.select(mb), fw.hidden)  # [n, T]
    v_loss, v_stats = clipped_value_loss(values, p.extra["old_values"][mb], p.extra["returns"][mb], p.mask[mb],
                                         clip_eps=a.ppo.value_clip, agg=a.agg, normalizer=p.norm)
    stats.update(v_stats, **{"loss/value": v_loss.item()})
    return loss + a.ppo.vf_coef * v_loss, stats


# ---------------------------------------------------------------- RAFT, RAFT++, Reinforce-Rej

RAFT_KEEP = {"correct": keep_correct, "best": lambda r: raft_keep_best(r, min_reward=1.0)}


def _keep_prepare(keep_fn):
    def prepare(p, ro, cfg, ctx):
        keep = keep_fn(ro.outcome, cfg).reshape(-1)  # [N] bool, chosen on the verifier's verdicts
        p.mask = p.mask * keep[:, None].to(p.mask.dtype)  # only kept samples carry loss (and count in the normaliser)
        # Reinforce-Rej (Xiong et al. 2025) uses the verifier's +1/-1 as advantage (never shaped rewards), so
        # wrong samples are pushed down
        p.adv = 2 * ro.outcome.reshape(-1) - 1  # [N]
        p.extra["keep"] = keep
    return prepare


def _raft_loss(fw, p, mb, cfg, ctx):
    return raft_loss(fw.logp, p.mask[mb], p.extra["keep"][mb], agg=cfg.algo.agg, normalizer=p.norm)


def _raft_pp_loss(fw, p, mb, cfg, ctx):
    a = cfg.algo
    return raft_pp_loss(fw.logp, p.old_logp[mb], p.mask[mb], p.extra["keep"][mb], eps_low=a.eps_low, eps_high=a.eps_high, agg=a.agg, normalizer=p.norm)


def _reinforce_rej_loss(fw, p, mb, cfg, ctx):
    a = cfg.algo
    return reinforce_rej_loss(fw.logp, p.old_logp[mb], p.adv[mb], p.mask[mb], p.extra["keep"][mb], eps_low=a.eps_low, eps_high=a.eps_high, agg=a.agg, normalizer=p.norm)


# ---------------------------------------------------------------- PRIME


def _prime_prepare(p, ro, cfg, ctx):
    """PRIME (Cui et al. 2025, sec. 3.3): RLOO on the implicit PRM's token rewards q_t = beta log pi_phi/pi_ref
    (returns-to-go of each token's reward minus the group's other responses' mean) plus RLOO on the outcome.
    The implicit PRM is the first of reward.scorers that gives token rewards; it reads the policy's own tokens,
    so it must share the policy's tokenizer (PRIME starts both from the SFT model)."""
    prms = [s for s in ctx["scorers"] if hasattr(s, "token_rewards")]
    if not prms:
        raise ValueError("algo.name=prime needs an implicit PRM in reward.scorers (rewardflow rm train --kind implicit)")
    vocab = lambda m: m.get_input_embeddings().num_embeddings
    if vocab(prms[0].policy.model) != vocab(ctx["policy"].model):
        raise ValueError("algo.name=prime: the implicit PRM's vocabulary differs from the policy's; start both from one checkpoint")
    q = prms[0].token_rewards(p.batch, p.mask)  # [N, T]
    p.adv = prime_rloo_advantages(q, p.mask, ro.rewards.shape[1], outcome=ro.rewards)  # [N, T]


# ---------------------------------------------------------------- ROVER


def _rover_prepare(p, ro, cfg, ctx):
    """Centred reward r - mean_group (paper sec. 3) and pi_old's vocabulary-mean logprob for the successor term."""
    p.adv = dr_grpo_advantages(ro.rewards).reshape(-1)  # [N]
    with torch.no_grad():
        p.extra["old_mean_logp"] = torch.cat([
            vocab_mean_logprob(forward(ctx["policy"].model, p.batch.select(mb), cfg.rollout.temperature, logits=True).logits)
            for mb in torch.arange(len(p.mask)).split(cfg.trainer.micro_batch_size)])  # [N, T]


def _rover_loss(fw, p, mb, cfg, ctx):
    a = cfg.algo
    next_q = rover_next_q_mean(vocab_mean_logprob(fw.logits), p.extra["old_mean_logp"][mb], p.mask[mb], rho=a.rover.rho)  # [n, T]
    return rover_loss(fw.logp, p.old_logp[mb], next_q, p.adv[mb], p.mask[mb], rho=a.rover.rho, agg=a.agg, normalizer=p.norm)


def _policy_gradient(estimator: str) -> OnlineAlgorithm:
    return OnlineAlgorithm(_pg_prepare(estimator), _pg_loss, needs_group=estimator in GROUP_ADVANTAGES, greedy_baseline=estimator == "remax")


# Named methods: the settings each name implies (its paper's), applied by the config loader under the user's YAML
# and overrides (so each can still be changed). The estimator is GRPO's unless the name is an estimator itself.
PRESETS: dict[str, dict[str, object]] = {
    "dr_grpo": {"algo.agg": "seq-mean-token-sum"},  # Liu et al. 2025 eq. 3: token sum over a constant N * L_max
    "gspo": {"algo.loss": "gspo", "algo.eps_low": 3e-4, "algo.eps_high": 4e-4, "algo.agg": "seq-mean-token-mean"},  # Zheng et al. 2025 sec. 4
    "dual_clip": {"algo.loss": "dual_clip"},  # Ye et al. 2020: a lower bound c = 3 on negative-advantage ratios
    "dapo": {"algo.dapo.dynamic_sampling": True, "algo.eps_high": 0.28, "algo.dapo.overlong_cache": 16, "algo.agg": "token-mean"},  # Yu et al. 2025
    "d3s": {"algo.d3s.mode": "both"},  # Wang et al. 2025: sample- and token-level down-sampling
    "reinforce_pp": {"algo.kl_coef": 0.01, "algo.kl_mode": "reward", "algo.kl_estimator": "k1"},  # Hu 2025: k1 KL in the token reward
}

ALGORITHMS: dict[str, OnlineAlgorithm] = {
    **{name: _policy_gradient(name) for name in ADVANTAGES},
    **{name: _policy_gradient("grpo") for name in ("gspo", "dual_clip", "dapo", "d3s")},
    "ppo": OnlineAlgorithm(_ppo_prepare, _ppo_loss, hidden=True, critic=True, all_rows=True),
    # RAFT's loss ignores p.adv: every kept row trains (the mask already holds only kept rows)
    "raft": OnlineAlgorithm(_keep_prepare(lambda r, cfg: RAFT_KEEP[cfg.algo.raft.keep](r)), _raft_loss, all_rows=True, token_weights=False),
    "raft_pp": OnlineAlgorithm(_keep_prepare(lambda r, cfg: RAFT_KEEP[cfg.algo.raft.keep](r)), _raft_pp_loss, all_rows=True,
                           token_weights=False),
    "reinforce_rej": OnlineAlgorithm(_keep_prepare(lambda r, cfg: reinforce_rej_keep(r)), _reinforce_rej_loss),
    "rover": OnlineAlgorithm(_rover_prepare, _rover_loss, logits=True, all_rows=True, needs_group=True, token_weights=False),
    "prime": OnlineAlgorithm(_prime_prepare, _pg_loss, needs_group=True, needs_scorer=True),
}


# ---------------------------------------------------------------- the shared preparation


def _normalizer(agg: str, mask: torch.Tensor, max_new_tokens: int) -> float:
    """Denominator of the whole batch, so micro-batches (and ranks) add up to the full-batch loss. seq-mean-token-sum
    is Dr.GRPO's constant N * L_max (Liu et al. 2025 eq. 3: 1/G per group over B groups, tokens summed up to L_max)."""
    seqs = int((mask.sum(1) > 0).sum().item())
    return {"token-mean": mask.sum().item(), "seq-mean-token-mean": seqs, "seq-mean-token-sum": mask.shape[0] * max_new_tokens}[agg]


def prepare(policy, ref_policy, rollout, cfg, *, step: int = 0, critic=None, scorers=()) -> tuple[Prepared, OnlineAlgorithm]:
    a, algo = cfg.algo, ALGORITHMS[cfg.algo.name]
    batch = policy.token_batch(rollout.prompt_ids, [c.token_ids for c in rollout.completions])
    mask = batch.completion_mask.clone()  # [N, T]
    T = mask.shape[1]
    if a.dapo.overlong_filter:  # DAPO sec. 3.4: truncated samples carry no loss
        truncated = torch.tensor([c.finish_reason == "length" for c in rollout.completions])
        mask = mask * overlong_filter_mask(truncated)[:, None].to(mask.dtype)
    old_logp = pad_sequence([c.logprobs for c in rollout.completions], batch_first=True)[:, :T]  # [N, T] from sampling
    ref_logp = None
    if a.kl_coef > 0:
        with torch.no_grad():
            ref_logp = ref_policy.logprobs(batch, temperature=cfg.rollout.temperature).logprobs  # [N, T]
    p = Prepared(batch, mask, old_logp, ref_logp)
    algo.prepare(p, rollout, cfg, {"policy": policy, "critic": critic, "tokenizer": getattr(policy, "tokenizer", None), "scorers": scorers})
    if a.d3s.mode != "none":
        p.mask = p.mask * d3s_mask(policy, p, rollout.rewards.shape, cfg, step).to(p.mask.dtype)
    p.norm = _normalizer(a.agg, p.mask, cfg.rollout.max_new_tokens)
    has_tokens = p.mask.sum(1) > 0  # [N]
    # Without a KL or entropy term, a sequence with zero advantage has exactly zero gradient: skip its forward.
    only_adv = not algo.all_rows and not (a.kl_coef > 0 and a.kl_mode == "loss") and a.entropy_coef == 0 and p.adv is not None
    if only_adv:
        has_tokens &= (p.adv.reshape(len(has_tokens), -1) != 0).any(1)
    p.rows = torch.nonzero(has_tokens).flatten()
    return p, algo


def d3s_mask(policy, p: Prepared, shape, cfg, step: int) -> torch.Tensor:
    """D3S (Wang et al. 2025): sample-level max-variance subsets and/or top |A|*H tokens, at the scheduled ratio."""
    a = cfg.algo
    ratio = d3s_keep_ratio(step, cfg.trainer.steps, start=a.d3s.start, end=a.d3s.end, schedule=a.d3s.schedule)
    seq_adv = p.adv if p.adv.dim() == 1 else (p.adv * p.mask).sum(1) / p.mask.sum(1).clamp(min=1)  # [N]
    keep = torch.ones_like(p.mask, dtype=torch.bool)  # [N, T]
    if a.d3s.mode in ("sample", "both"):
        keep &= d3s_sample_mask(seq_adv.reshape(shape), ratio, scope=a.d3s.scope).reshape(-1, 1)
    if a.d3s.mode in ("token", "both"):
        with torch.no_grad():
            entropy = policy.logprobs(p.batch, temperature=cfg.rollout.temperature, with_entropy=True).entropy  # [N, T]
        keep &= d3s_token_mask(p.adv, entropy, p.mask * keep, ratio)
    p.extra["d3s/keep_ratio"] = ratio
    return keep
