"""Supervised fine-tuning: negative log-likelihood on completion tokens only (prompt tokens are context).

The loss is `algos.sft_nll_loss` (token-mean NLL), the one SFT loss of the package: the data-parallel SFT step
(distributed/ddp.py) and RAFT use it too."""
from __future__ import annotations

import time
from typing import Callable

import torch

from ..algos import sft_nll_loss
from ..optim import make_optimizer, mixed_precision, optimizer_step


def sft_loss(policy, prompt_ids: list[list[int]], completion_ids: list[list[int]], *,
             normalizer: float | None = None) -> tuple[torch.Tensor, int]:
    """(NLL of the completion tokens, their count). `normalizer` (default: this batch's token count) is the
    whole batch's token count when this is one micro-batch of it, so the micro-batch losses add up to its mean."""
    batch = policy.token_batch(prompt_ids, completion_ids)
    logp = policy.logprobs(batch).logprobs  # [N, T]
    mask = batch.completion_mask  # [N, T]
    n_tokens = int(mask.sum().item())
    loss, _ = sft_nll_loss(logp, mask, normalizer=n_tokens if normalizer is None else normalizer)
    return loss, n_tokens


def sft_backward(policy, pairs: list[tuple[str, str]], micro_batch_size: int | None) -> tuple[float, int]:
    """Accumulate the gradient of one batch's NLL over micro-batches; returns (loss, completion tokens)."""
    prompt_ids = policy.encode_prompts([p for p, _ in pairs])
    completion_ids = policy.completion_ids([c for _, c in pairs])
    n_tokens = sum(len(c) for c in completion_ids)  # the completion mask's sum over the whole batch
    size = micro_batch_size or len(pairs)
    total = 0.0
    for lo in range(0, len(pairs), size):
        loss, _ = sft_loss(policy, prompt_ids[lo : lo + size], completion_ids[lo : lo + size], normalizer=n_tokens)
        loss.backward()
        total += loss.item()
    return total, n_tokens


def run_sft(policy, examples: Callable[[int], list[tuple[str, str]]], *, steps: int, lr: float, warmup_steps: int = 0,
            weight_decay: float = 0.0, max_grad_norm: float = 1.0, micro_batch_size: int | None = None, log=None,
            progress=None, backward=None) -> list[float]:
    """`examples(step)` returns that step's (prompt, completion) pairs; deterministic in `step`. `backward` (default
    sft_backward; train/packing.py's packed_backward packs them) turns them into an accumulated gradient. Each step's batch
    runs forward/backward in micro-batches of `micro_batch_size` pairs (default: the whole batch at once).
    A model loaded in bfloat16 trains with fp32 master weights under bf16 autocast (optim.mixed_precision)."""
    autocast = mixed_precision(policy.model)
    policy.model.train()
    opt, sched = make_optimizer(policy.model, lr, weight_decay, warmup_steps, steps, schedule="cosine")
    losses = []
    for step in range(steps):
        t0 = time.perf_counter()
        with autocast:
            loss, n_tokens = (backward or sft_backward)(policy, examples(step), micro_batch_size)
        grad_norm = optimizer_step(policy.model, opt, sched, max_grad_norm=max_grad_norm, step=step, losses={"loss/sft": loss})
        losses.append(loss)
        if log is not None:
            dt = time.perf_counter() - t0
            log.log(step, {"loss/sft": loss, "train/grad_norm": grad_norm, "train/lr": sched.get_last_lr()[0],
                           "perf/train_tok_per_s": n_tokens / dt}, phase="sft")
        if progress is not None:
            progress(1, loss=loss)
    policy.model.eval()
    return losses
