"""Preference optimisation loops: offline DPO-family training on a pairs JSONL, and the online iterative DPO
of "RLHF Workflow: From Reward Modeling to Online RLHF" (Dong et al. 2024, sec. 3 / Algorithm 1): each
iteration samples K completions per prompt from the current policy, scores them, pairs the best against the
worst (ties give no pair), trains DPO on the pairs, and optionally makes the policy the new reference.
The losses are algos.PREFERENCE_LOSSES, looked up by `preference.loss`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..algos import PREFERENCE_LOSSES
from ..data.jsonl import read_rows
from ..data.problem import DataError
from ..data.steps import split_steps
from ..optim import make_optimizer, mixed_precision, optimizer_step
from ..policy.base import SamplingParams
from ..policy.lora import is_lora
from .batches import shuffled_batches


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str


def _pair(row: dict) -> Pair:
    values = [row[k] for k in ("prompt", "chosen", "rejected")]
    if not all(isinstance(v, str) and v.strip() for v in values):
        raise TypeError("prompt, chosen and rejected must be non-empty strings")
    return Pair(*values)


def load_pairs(path: str | Path) -> list[Pair]:
    """Rows {"prompt", "chosen", "rejected"} (non-empty strings); a bad row is a DataError naming file:line."""
    pairs = [pair for _, pair in read_rows(path, _pair, what="preference pair")]
    if not pairs:
        raise DataError(f"{path}: no preference pairs")
    return pairs


# Loss-specific options (one table; every loss also takes beta and the completion lengths).
LOSS_KWARGS = {
    "cdpo": lambda pc: {"label_smoothing": pc.label_smoothing},
    "simpo": lambda pc: {"gamma": pc.simpo_gamma},
    "rpo": lambda pc: {"alpha": pc.rpo_alpha},
}


def sequence_logps(policy, prompts: list[str], completions: list[str], *, grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log pi(completion + eos | prompt) [B] and completion lengths in tokens [B]."""
    batch = policy.token_batch(policy.encode_prompts(prompts), policy.completion_ids(completions))
    with torch.set_grad_enabled(grad):
        logp = policy.logprobs(batch).logprobs  # [B, T]
        mask = batch.completion_mask  # [B, T]
        return (logp * mask).sum(-1), mask.sum(-1)


def preference_step(policy, ref_policy, pairs: list[Pair], pc, *, normalizer: float) -> tuple[torch.Tensor, dict]:
    """The loss of one micro-batch of pairs (chosen and rejected scored in one forward each)."""
    prompts = [p.prompt for p in pairs]
    chosen_logp, chosen_len = sequence_logps(policy, prompts, [p.chosen for p in pairs], grad=True)  # [B]
    rejected_logp, rejected_len = sequence_logps(policy, prompts, [p.rejected for p in pairs], grad=True)  # [B]
    ref_c = ref_r = None
    if pc.loss != "simpo":  # SimPO is reference-free
        ref_c, _ = sequence_logps(ref_policy, prompts, [p.chosen for p in pairs], grad=False)
        ref_r, _ = sequence_logps(ref_policy, prompts, [p.rejected for p in pairs], grad=False)
    extra = LOSS_KWARGS.get(pc.loss, lambda pc: {})(pc)
    return PREFERENCE_LOSSES[pc.loss](chosen_logp, rejected_logp, ref_c, ref_r, beta=pc.beta, chosen_len=chosen_len,
                                      rejected_len=rejected_len, normalizer=normalizer, **extra)


def pairs_backward(policy, ref_policy, batch: list[Pair], pc, micro_batch_size: int | None) -> dict:
    """Accumulate one batch's preference-loss gradient over micro-batches of `micro_batch_size` pairs (default:
    all at once); the loss is divided by the whole batch's size, so the micro-batches add up to its mean."""
    size = micro_batch_size or len(batch)
    stats: dict = {"loss/pref": 0.0}
    for m in range(0, len(batch), size):
        loss, st = preference_step(policy, ref_policy, batch[m : m + size], pc, normalizer=len(batch))
        loss.backward()
        stats["loss/pref"] += loss.item()
        for k, v in st.items():
            stats[k] = stats.get(k, 0.0) + v * len(batch[m : m + size]) / len(batch)
    return stats


def train_pairs(policy, ref_policy, pairs: list[Pair], pc, *, seed: int = 0, log=None, step0: int = 0, progress=None,
                max_grad_norm: float = 1.0, micro_batch_size: int | None = None) -> list[dict]:
    """preference.epochs passes over `pairs` in shuffled batches of preference.batch_size, each run forward and
    backward in micro-batches of `micro_batch_size` pairs (default: the whole batch); returns per-step stats."""
    steps_per_epoch = -(-len(pairs) // pc.batch_size)
    autocast = mixed_precision(policy.model)  # fp32 master weights; bf16 forwards when the model was loaded in bf16
    opt, sched = make_optimizer(policy.model, pc.lr, 0.0, 0, steps_per_epoch * pc.epochs)
    policy.model.train()
    history = []
    for batch in shuffled_batches(pairs, pc.batch_size, pc.epochs, seed):
        with autocast:
            stats = pairs_backward(policy, ref_policy, batch, pc, micro_batch_size)
        step = step0 + len(history) + 1
        stats["train/grad_norm"] = optimizer_step(policy.model, opt, sched, max_grad_norm=max_grad_norm, step=step,
                                                  losses={"loss/pref": stats["loss/pref"]})
        history.append(stats)
        if log is not None:
            log.log(step, stats, phase="preference")
        if progress is not None:
            progress(1, loss=stats["loss/pref"])
    policy.model.eval()
    return history


def best_worst_pairs(problems, texts: list[list[str]], rewards: torch.Tensor) -> list[Pair]:
    """RLHF Workflow's pairing: per prompt the highest-reward completion vs the lowest (first on ties);
    prompts whose K rewards are all equal give no pair. rewards: [B, K]."""
    pairs = []
    for b, problem in enumerate(problems):
        best, worst = int(rewards[b].argmax()), int(rewards[b].argmin())
        if rewards[b, best] > rewards[b, worst]:
            pairs.append(Pair(problem.prompt, texts[b][best], texts[b][worst]))
    return pairs


def online_iterative_dpo(policy, ref_policy, source, scorer, cfg, *, log=None, progress=None) -> list[dict]:
    """preference.iterations rounds of: sample K per prompt -> score -> best-vs-worst pairs -> train -> (refresh ref)."""
    pc, r = cfg.preference, cfg.rollout
    if pc.refresh_ref and ref_policy is not None and is_lora(policy.model):
        raise ValueError("preference.refresh_ref=true needs a second copy of the policy as the reference; with model.lora.rank > 0 "
                         "the reference is the frozen base: set preference.refresh_ref=false")
    history, step0 = [], 0
    for it in range(pc.iterations):
        problems = source.train_problems(range(it * pc.prompts_per_iter, (it + 1) * pc.prompts_per_iter))
        params = SamplingParams(n=pc.group_size, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
                                max_new_tokens=r.max_new_tokens, seed=cfg.trainer.seed * 7919 + it)
        policy.model.eval()
        groups = policy.generate([p.prompt for p in problems], params)
        texts = [[c.text for c in g] for g in groups]
        flat = [p for p in problems for _ in range(pc.group_size)]
        scores = scorer.score(flat, [split_steps(t) for g in texts for t in g])
        rewards = torch.tensor([s.outcome for s in scores], dtype=torch.float).view(len(problems), -1)  # [B, K]
        pairs = best_worst_pairs(problems, texts, rewards)
        stats = {"reward/mean": rewards.mean().item(), "pref/pairs": len(pairs), "iteration": it + 1}
        if pairs:
            steps = train_pairs(policy, ref_policy, pairs, pc, seed=cfg.trainer.seed + it, log=log, step0=step0,
                                max_grad_norm=cfg.trainer.max_grad_norm, micro_batch_size=cfg.trainer.micro_batch_size)
            step0 += len(steps)
            stats.update({k: sum(s[k] for s in steps) / len(steps) for k in steps[0]})
        if pc.refresh_ref and ref_policy is not None:  # the next iteration's reference is this iteration's policy
            ref_policy.model.load_state_dict(policy.model.state_dict())
        history.append(stats)
        if log is not None:
            log.log(it + 1, stats, phase="online_dpo")
        if progress is not None:
            progress(1, reward=stats["reward/mean"], pairs=len(pairs))
    return history
