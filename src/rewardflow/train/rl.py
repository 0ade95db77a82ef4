"""Online RL with verifiable rewards: rollout -> reward -> advantage -> clipped policy loss -> AdamW.

The loop only wires parts together; the mathematics lives in algos/. Every random choice of step s is
seeded from (seed, s), so a run resumed from a checkpoint repeats exactly what the straight run did.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

from ..algos import ADVANTAGES, POLICY_LOSSES, aggregate_tokens, kl_estimate
from ..config import Config, to_dict
from ..policy.base import SamplingParams
from .checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from .optim import make_optimizer


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 17) % (2**31 - 1)


@dataclass
class Rollout:
    problems: list  # [N] problem of each sequence (prompt-major: G consecutive rows per prompt)
    prompt_ids: list[list[int]]  # [N]
    completions: list  # [N] Completion
    rewards: torch.Tensor  # [B, G]
    answers: list[list]  # [B][G] extracted final answers (None when there is none)
    baseline: torch.Tensor | None = None  # [B] reward of the greedy rollout (ReMax)

    @property
    def seq_logp(self) -> torch.Tensor:
        """Mean token logprob of each sample, [B, G]: how likely the policy found it."""
        B, G = self.rewards.shape
        return torch.stack([c.logprobs.mean() for c in self.completions]).view(B, G)


# Inputs each advantage estimator takes besides the rewards (one table, looked up once per step).
ADVANTAGE_INPUTS = {
    "grpo": lambda ro, cfg: {"scale": cfg.algo.scale},
    "remax": lambda ro, cfg: {"baseline": ro.baseline},
    "seed_grpo": lambda ro, cfg: {"answers": ro.answers},
    "grpo_unlikely": lambda ro, cfg: {"seq_logp": ro.seq_logp, "scale": cfg.algo.scale},
}


def collect_rollout(policy, scorer, problems, cfg: Config, seed: int) -> tuple[Rollout, float]:
    r = cfg.rollout
    params = SamplingParams(n=r.group_size, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k, max_new_tokens=r.max_new_tokens, seed=seed)
    t0 = time.perf_counter()
    groups = policy.generate([p.prompt for p in problems], params)
    gen_seconds = time.perf_counter() - t0
    completions = [c for g in groups for c in g]
    flat = [p for p in problems for _ in range(r.group_size)]
    verdicts = scorer.score_texts(flat, [c.text for c in completions])
    rewards = torch.tensor([float(v.correct) for v in verdicts]).view(len(problems), r.group_size)  # [B, G]
    answers = [[v.pred for v in verdicts[i * r.group_size : (i + 1) * r.group_size]] for i in range(len(problems))]
    prompt_ids = [ids for ids in policy.encode_prompts([p.prompt for p in problems]) for _ in range(r.group_size)]
    baseline = None
    if cfg.algo.name == "remax":  # ReMax (Li et al. 2024, Alg. 1): the greedy rollout's reward is the baseline
        greedy = policy.generate([p.prompt for p in problems], SamplingParams(n=1, temperature=0.0, max_new_tokens=r.max_new_tokens))
        baseline = torch.tensor([float(v.correct) for v in scorer.score_texts(problems, [g[0].text for g in greedy])])  # [B]
    return Rollout(flat, prompt_ids, completions, rewards, answers, baseline), gen_seconds


def _normalizer(agg: str, mask: torch.Tensor, max_new_tokens: int) -> float:
    """Denominator of the whole batch, so micro-batches (and ranks) add up to the full-batch loss."""
    return {"token-mean": mask.sum().item(), "seq-mean-token-mean": mask.shape[0], "seq-mean-token-sum": max_new_tokens}[agg]


def optimise(policy, ref_policy, rollout: Rollout, cfg: Config, opt, sched) -> dict:
    """algo.epochs optimiser steps on one rollout batch, accumulating gradients over micro-batches."""
    a = cfg.algo
    adv_kwargs = ADVANTAGE_INPUTS.get(a.name, lambda ro, cfg: {})(rollout, cfg)
    adv = ADVANTAGES[a.name](rollout.rewards, **adv_kwargs).reshape(-1)  # [N]
    batch = policy.token_batch(rollout.prompt_ids, [c.token_ids for c in rollout.completions])
    mask = batch.completion_mask  # [N, T]
    T = mask.shape[1]
    old_logp = pad_sequence([c.logprobs for c in rollout.completions], batch_first=True)[:, :T]  # [N, T] from sampling
    ref_logp = None
    if a.kl_coef > 0:
        with torch.no_grad():
            ref_logp = ref_policy.logprobs(batch, temperature=cfg.rollout.temperature).logprobs  # [N, T]
    norm = _normalizer(a.agg, mask, cfg.rollout.max_new_tokens)
    # Without a KL term, a sequence with zero advantage has exactly zero gradient: skip its forward pass.
    rows = torch.arange(len(adv)) if a.kl_coef > 0 else torch.nonzero(adv != 0).flatten()
    loss_fn = POLICY_LOSSES[a.loss]
    stats = {"loss/policy": 0.0, "kl/ref": 0.0, "clip_frac": 0.0, "grad_norm": 0.0}
    trained_tokens = 0
    for _ in range(a.epochs):
        for mb in rows.split(cfg.trainer.micro_batch_size) if len(rows) else []:
            out = policy.logprobs(batch.select(mb), temperature=cfg.rollout.temperature)
            loss, st = loss_fn(out.logprobs, old_logp[mb], adv[mb], mask[mb], eps_low=a.eps_low, eps_high=a.eps_high, agg=a.agg, normalizer=norm)
            stats["loss/policy"] += loss.item() / a.epochs
            if ref_logp is not None:
                kl = aggregate_tokens(kl_estimate(out.logprobs, ref_logp[mb], a.kl_estimator), mask[mb], a.agg, norm)
                loss = loss + a.kl_coef * kl
                stats["kl/ref"] += kl.item() / a.epochs
            stats["clip_frac"] += st["clip_frac"] * len(mb) / max(1, len(rows)) / a.epochs
            loss.backward()
            trained_tokens += int(mask[mb].sum().item())
        stats["grad_norm"] += torch.nn.utils.clip_grad_norm_(policy.model.parameters(), cfg.trainer.max_grad_norm).item() / a.epochs
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    stats["trained_tokens"] = trained_tokens
    return stats


def rollout_metrics(rollout: Rollout, gen_seconds: float) -> dict:
    r = rollout.rewards  # [B, G]
    lengths = torch.tensor([len(c.token_ids) for c in rollout.completions], dtype=torch.float)
    sampled_logp = torch.cat([c.logprobs for c in rollout.completions])
    return {
        "reward/mean": r.mean().item(),
        "reward/std": r.std().item(),
        "reward/zero_var_frac": (r.std(dim=1) == 0).float().mean().item(),
        # -E[log pi(sampled token)] is an unbiased estimate of the per-token entropy
        "entropy": -sampled_logp.mean().item(),
        "rollout/len": lengths.mean().item(),
        "rollout/truncated_frac": sum(c.finish_reason == "length" for c in rollout.completions) / len(rollout.completions),
        "perf/gen_tok_per_s": lengths.sum().item() / gen_seconds,
    }


def train_rl(cfg: Config, policy, ref_policy, source, scorer, run_dir: Path, *, log, resume: bool = False, evaluate=None, progress=None) -> int:
    """Run cfg.trainer.steps RL steps; `source.train_problems(indices)` supplies prompts; `evaluate(step)`
    (optional) returns held-out metrics to log. Returns the number of steps run in this call."""
    tr, B = cfg.trainer, cfg.rollout.prompts_per_step
    opt, sched = make_optimizer(policy.model, tr.lr, tr.weight_decay, tr.warmup_steps, tr.steps * cfg.algo.epochs, tr.lr_schedule)
    start = 0
    ckpt = latest_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        from transformers import AutoModelForCausalLM

        policy.model.load_state_dict(AutoModelForCausalLM.from_pretrained(ckpt).state_dict())
        start = load_trainer_state(ckpt, opt, sched)["step"]
    policy.model.train()
    for step in range(start + 1, tr.steps + 1):
        t0 = time.perf_counter()
        problems = source.train_problems(range((step - 1) * B, step * B))
        rollout, gen_seconds = collect_rollout(policy, scorer, problems, cfg, step_seed(tr.seed, step))
        t1 = time.perf_counter()
        stats = optimise(policy, ref_policy, rollout, cfg, opt, sched)
        train_seconds = time.perf_counter() - t1
        metrics = rollout_metrics(rollout, gen_seconds)
        metrics["perf/train_tok_per_s"] = stats.pop("trained_tokens") / train_seconds
        metrics.update(stats)
        metrics.update({"lr": sched.get_last_lr()[0], "time/step_s": time.perf_counter() - t0})
        if evaluate is not None and tr.eval_every and (step % tr.eval_every == 0 or step == tr.steps):
            policy.model.eval()
            metrics.update({f"eval/{k}": v for k, v in evaluate(step).items()})
            policy.model.train()
        log.log(step, metrics)
        if (tr.save_every and step % tr.save_every == 0) or step == tr.steps:
            save_checkpoint(run_dir, step, policy, opt, sched, to_dict(cfg))
        if progress is not None:
            progress(1, reward=metrics["reward/mean"])
    policy.model.eval()
    return tr.steps - start
