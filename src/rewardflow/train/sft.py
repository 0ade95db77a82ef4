"""Supervised fine-tuning: negative log-likelihood on completion tokens only (prompt tokens are context)."""
from __future__ import annotations

import time
from typing import Callable

import torch

from .optim import make_optimizer


def sft_loss(policy, prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> tuple[torch.Tensor, int]:
    batch = policy.token_batch(prompt_ids, completion_ids)
    logp = policy.logprobs(batch).logprobs  # [N, T]
    mask = batch.completion_mask  # [N, T]
    n_tokens = int(mask.sum().item())
    return -(logp * mask).sum() / n_tokens, n_tokens


def run_sft(policy, examples: Callable[[int], list[tuple[str, str]]], *, steps: int, lr: float, warmup_steps: int = 0,
            weight_decay: float = 0.0, max_grad_norm: float = 1.0, log=None, progress=None) -> list[float]:
    """`examples(step)` returns that step's (prompt, completion) pairs; deterministic in `step`."""
    policy.model.train()
    opt, sched = make_optimizer(policy.model, lr, weight_decay, warmup_steps, steps, schedule="cosine")
    losses = []
    for step in range(steps):
        t0 = time.perf_counter()
        pairs = examples(step)
        prompt_ids = policy.encode_prompts([p for p, _ in pairs])
        completion_ids = policy.completion_ids([c for _, c in pairs])
        loss, n_tokens = sft_loss(policy, prompt_ids, completion_ids)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.model.parameters(), max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if log is not None:
            dt = time.perf_counter() - t0
            log.log(step, {"loss/sft": losses[-1], "grad_norm": grad_norm.item(), "lr": sched.get_last_lr()[0],
                           "perf/train_tok_per_s": n_tokens / dt}, phase="sft")
        if progress is not None:
            progress(1, loss=losses[-1])
    policy.model.eval()
    return losses
