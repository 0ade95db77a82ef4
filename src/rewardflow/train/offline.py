"""OREO (Wang, Hao et al. 2024, "Offline Reinforcement Learning for LLM Multi-Step Reasoning", sec. 3 / Alg. 1)
as an offline loop: trajectories sampled once from the SFT policy and verified, then joint training of the
policy and a separate value model by soft Bellman consistency (algos.oreo_value_loss / oreo_policy_loss).
The value model is saved next to the policy (with scorer.json, kind "oreo_value") so search can use it
later: `rewards.load_scorer(dir)` gives rewards.oreo_value.OREOValueScorer, V(state after each step)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..algos import exact_kl, oreo_policy_loss, oreo_value_loss
from ..optim import make_optimizer, mixed_precision, optimizer_step
from ..policy.base import SamplingParams
from ..policy.forward import forward
from ..policy.lora import is_lora, merged_state_dict
from .batches import shuffled_batches
from .ppo import Critic


def sample_trajectories(policy, scorer, problems, *, k: int, max_new_tokens: int, temperature: float = 1.0, seed: int = 0, chunk: int = 16) -> list[dict]:
    """k verified completions per problem from `policy`: {"prompt", "text", "token_ids", "reward"} each."""
    out = []
    for c, start in enumerate(range(0, len(problems), chunk)):
        batch = problems[start : start + chunk]
        groups = policy.generate([p.prompt for p in batch], SamplingParams(n=k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed + c))
        flat = [p for p, g in zip(batch, groups) for _ in g]
        completions = [x for g in groups for x in g]
        verdicts = scorer.score_texts(flat, [x.text for x in completions])
        out += [{"prompt": p.prompt, "text": x.text, "token_ids": x.token_ids, "reward": float(v.correct)} for p, x, v in zip(flat, completions, verdicts)]
    return out


def oreo_step(policy, ref_policy, value: Critic, trajs: list[dict], oc, *, normalizer: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(policy loss, value loss, stats) on one micro-batch of trajectories (token-level OREO)."""
    batch = policy.token_batch(policy.encode_prompts([t["prompt"] for t in trajs]), [t["token_ids"] for t in trajs])
    mask = batch.completion_mask  # [n, T]
    reward = torch.tensor([t["reward"] for t in trajs], device=mask.device)  # [n]
    with_kl = oc.kl_alpha > 0
    with torch.no_grad():
        if with_kl:  # the exact KL needs the reference's full logits, aligned as the policy's (same forward, temperature 1)
            ref = forward(ref_policy.model, batch, logits=True)
            ref_logp, ref_logits = ref.logp, ref.logits  # [n, T], [n, T, V]
        else:
            ref_logp, ref_logits = ref_policy.logprobs(batch).logprobs, None  # [n, T]
    fw = forward(policy.model, batch, logits=with_kl)
    logp = fw.logp  # [n, T]
    values = value.values(batch)  # [n, T] V(s_t) of the separate value model
    v_loss, v_stats = oreo_value_loss(values, logp, ref_logp, reward, mask, beta=oc.beta, normalizer=normalizer)
    # OREO's recipe regularises with the exact per-position KL over the vocabulary, not a sampled estimate
    kl = exact_kl(fw.logits, ref_logits, mask) if with_kl else None  # [n, T]
    p_loss, p_stats = oreo_policy_loss(logp, ref_logp, values, reward, mask, beta=oc.beta, normalizer=normalizer, kl=kl, alpha=oc.kl_alpha)
    return p_loss, v_loss, {**v_stats, **p_stats}


def oreo_backward(policy, ref_policy, value: Critic, batch: list[dict], oc, micro_batch_size: int | None) -> dict:
    """Accumulate one batch's policy and value gradients over micro-batches of `micro_batch_size` trajectories
    (default: all at once); both losses are divided by the whole batch's size, so micro-batches add up."""
    size = micro_batch_size or len(batch)
    stats = {"loss/policy": 0.0, "loss/value": 0.0}
    for m in range(0, len(batch), size):
        part = batch[m : m + size]
        p_loss, v_loss, st = oreo_step(policy, ref_policy, value, part, oc, normalizer=len(batch))
        (p_loss + v_loss).backward()  # disjoint parameters: each loss only reaches its own model
        stats["loss/policy"] += p_loss.item()
        stats["loss/value"] += v_loss.item()
        for k, v in st.items():  # micro-batch means, weighted by their share of the batch
            stats[k] = stats.get(k, 0.0) + v * len(part) / len(batch)
    return stats


def train_oreo(policy, ref_policy, trajs: list[dict], oc, *, seed: int = 0, log=None, progress=None, max_grad_norm: float = 1.0,
               micro_batch_size: int | None = None) -> tuple[Critic, list[dict]]:
    """offline.epochs passes over the trajectories in shuffled batches of offline.batch_size, each run in
    micro-batches of `micro_batch_size` (default: the whole batch); returns the trained value model and per-step stats."""
    autocast = mixed_precision(policy.model)  # fp32 master weights; bf16 forwards when the model was loaded in bf16
    # a copy of the policy (with its adapters, when it has LoRA: the value model then trains adapters and head)
    value = Critic(policy.model, mode="model", lr=oc.value_lr, max_grad_norm=max_grad_norm)
    steps_per_epoch = -(-len(trajs) // oc.batch_size)
    opt, sched = make_optimizer(policy.model, oc.lr, 0.0, 0, steps_per_epoch * oc.epochs)
    policy.model.train()
    history = []
    for batch in shuffled_batches(trajs, oc.batch_size, oc.epochs, seed):
        with autocast:
            stats = oreo_backward(policy, ref_policy, value, batch, oc, micro_batch_size)
        step = len(history) + 1
        losses = {k: stats[k] for k in ("loss/policy", "loss/value")}
        stats["train/grad_norm"] = optimizer_step(policy.model, opt, sched, max_grad_norm=max_grad_norm, step=step, losses=losses)
        stats["value/grad_norm"] = value.step(step=step)
        history.append(stats)
        if log is not None:
            log.log(step, stats, phase="oreo")
        if progress is not None:
            progress(1, loss=stats["loss/policy"])
    policy.model.eval()
    return value, history


def save_value(value: Critic, tokenizer, path: str | Path, *, beta: float) -> Path:
    """The value model as a directory: transformers backbone + head.pt + scorer.json (kind oreo_value)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    backbone = value.backbone
    # a LoRA value model is saved with its adapters merged: the directory loads as a plain transformers model
    backbone.save_pretrained(path, state_dict=merged_state_dict(backbone) if is_lora(backbone) else None)
    tokenizer.save_pretrained(path)
    torch.save(value.head.state_dict(), path / "head.pt")
    (path / "scorer.json").write_text(json.dumps({"kind": "oreo_value", "beta": beta}))
    return path
