"""Data-parallel training with torch.distributed: every rank holds the whole model and the whole global
batch description, computes gradients on its own contiguous shard of rows, and the gradients are summed
across ranks before one identical optimiser step everywhere.

Launch with `torchrun --nproc_per_node K ...` (gloo on CPU, nccl on GPU); without an initialised process
group every function here is the single-process step, so one code path serves both.

Why an explicit all-reduce instead of wrapping the model in `DistributedDataParallel`: the RL loop skips
the forward/backward of rows whose advantage is zero, so ranks run different numbers of backward passes
per step, and DDP's per-backward gradient hooks would deadlock on the uneven count. One all-reduce of the
flattened gradients after the micro-batch loop is the same mathematics as DDP with `no_sync()` on all but
the last micro-batch, and it works for any number of local backward passes (including none).

`data_parallel_step` is that step for one loss function; the RL loop (`train/rl.py:optimise`) runs its own
micro-batch loop, because its algorithms add KL, entropy and value terms per micro-batch. Both end in
`train/optim.py:optimizer_step` with `allreduce=allreduce_gradients`: one optimiser step for every loop.

Losses are normalised by the *global* batch's denominator (tokens, sequences, or the token budget; see
`train/rl.py:_normalizer`), so the per-rank losses add up to the full-batch loss and the summed gradients
equal the full-batch gradient. DDP's default averaging would divide by the world size on top.
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Callable

import torch
import torch.distributed as dist

from ..algos import sft_nll_loss
from ..optim import optimizer_step, trainable_parameters


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when no process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str = "cpu", timeout_s: float = 6 * 3600) -> tuple[int, int]:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, MASTER_ADDR, ...):
    nccl for CUDA devices, gloo otherwise. Returns (rank, world). A no-op (0, 1) when WORLD_SIZE is unset;
    idempotent, so the pipeline and the RL loop may both call it.

    The timeout is long because in `rewardflow train` the other ranks wait at a barrier while rank 0 alone
    runs the SFT warm-start and the first evaluation; torch's 30-minute default would end a real-sized run.
    A rank that crashes does not leave the rest hanging that long: torchrun stops the whole group."""
    if "WORLD_SIZE" not in os.environ:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return rank_world()


def device_for_rank(device: str) -> str:
    """`cuda` becomes `cuda:LOCAL_RANK` under torchrun; other devices are unchanged."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{os.environ['LOCAL_RANK']}"
    return device


def shard_rows(n_rows: int, rank: int, world: int) -> torch.Tensor:
    """Row indices of this rank's contiguous block of the global batch (sizes differ by at most one)."""
    start, stop = n_rows * rank // world, n_rows * (rank + 1) // world
    return torch.arange(start, stop)


def broadcast_parameters(model: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s weights to every rank, so all replicas start identical."""
    if rank_world()[1] == 1:
        return
    with torch.no_grad():
        for p in model.parameters():
            dist.broadcast(p.data, src)


def allreduce_gradients(model: torch.nn.Module) -> None:
    """Sum every parameter's gradient over ranks (a missing gradient counts as zeros), in one collective.

    A gradient that is missing on *every* rank stays None, as in one process: AdamW skips such a parameter
    (no moment decay, no weight decay), where a zero gradient would still move it. One flag per parameter
    rides along in the same all-reduce and counts the ranks that had a gradient."""
    if rank_world()[1] == 1:
        return
    params = trainable_parameters(model)
    if not params:
        return
    present = torch.tensor([float(p.grad is not None) for p in params], dtype=params[0].dtype, device=params[0].device)  # [P]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params] + [present])  # [sum numel + P]
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    for p, ranks_with_grad in zip(params, flat[offset:].tolist()):
        if ranks_with_grad == 0:
            p.grad = None


def allreduce_sum(value: float, device: str = "cpu") -> float:
    if rank_world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.item()


def allreduce_stats(stats: dict) -> dict:
    """Sum per-rank statistics over ranks, key by key (a key a rank lacks counts as 0). For sums whose terms
    are already divided by the global batch's normaliser (losses, row-weighted means, token counts) the
    result is the full-batch value. Python objects, not tensors: ranks may hold different keys."""
    if rank_world()[1] == 1:
        return stats
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, stats)
    keys = list(dict.fromkeys(k for part in parts for k in part))  # first-seen order, rank 0's first
    return {k: sum(part.get(k, 0) for part in parts) for k in keys}


def data_parallel_step(model: torch.nn.Module, opt, sched, loss_of_rows: Callable[[torch.Tensor], torch.Tensor], n_rows: int, *,
                       micro_batch_size: int, max_grad_norm: float, rows: torch.Tensor | None = None) -> dict:
    """One optimiser step over a global batch of `n_rows` rows, sharded over the ranks.

    `loss_of_rows(idx)` returns the loss of the rows `idx` (global indices) already divided by the global
    normaliser, so that summing it over all micro-batches of all ranks gives the full-batch loss. `rows`
    (global indices, default all) lets a caller skip rows, e.g. zero-advantage ones; each rank takes its
    share of them. Returns {"loss", "train/grad_norm", "train/rows"} with the loss summed over ranks; a non-finite
    loss or gradient norm raises NonFiniteError before the step.
    """
    rank, world = rank_world()
    rows = torch.arange(n_rows) if rows is None else rows
    mine = rows[shard_rows(len(rows), rank, world)]
    local_loss = 0.0
    for mb in mine.split(micro_batch_size):
        loss = loss_of_rows(mb)
        loss.backward()
        local_loss += loss.item()
    # after the all-reduce every rank holds the same gradients, so clipping and the step agree everywhere
    grad_norm = optimizer_step(model, opt, sched, max_grad_norm=max_grad_norm, losses={"loss": local_loss}, allreduce=allreduce_gradients)
    device = next(model.parameters()).device.type
    return {"loss": allreduce_sum(local_loss, "cuda" if device == "cuda" else "cpu"), "train/grad_norm": grad_norm, "train/rows": len(mine)}


def rl_loss_of_rows(policy, batch, old_logp: torch.Tensor, adv: torch.Tensor, *, loss_fn, normalizer: float, temperature: float = 1.0,
                    agg: str = "token-mean", eps_low: float = 0.2, eps_high: float = 0.2) -> Callable[[torch.Tensor], torch.Tensor]:
    """The RL loop's clipped policy loss (any `algos.POLICY_LOSSES` entry) on a subset of rows, normalised by
    the global batch's `normalizer` (see `train/rl.py:_normalizer`)."""
    mask = batch.completion_mask  # [N, T]

    def loss_of_rows(idx: torch.Tensor) -> torch.Tensor:
        logp = policy.logprobs(batch.select(idx), temperature=temperature).logprobs  # [n, T]
        loss, _ = loss_fn(logp, old_logp[idx], adv[idx], mask[idx], eps_low=eps_low, eps_high=eps_high, agg=agg, normalizer=normalizer)
        return loss

    return loss_of_rows


def sft_loss_of_rows(policy, batch) -> Callable[[torch.Tensor], torch.Tensor]:
    """The SFT loss (algos.sft_nll_loss, as train/sft.py) of a subset of rows, divided by the global batch's token count."""
    mask = batch.completion_mask  # [N, T]
    n_tokens = float(mask.sum().item())

    def loss_of_rows(idx: torch.Tensor) -> torch.Tensor:
        logp = policy.logprobs(batch.select(idx)).logprobs  # [n, T]
        return sft_nll_loss(logp, mask[idx], normalizer=n_tokens)[0]

    return loss_of_rows


def generate_sharded(policy, prompts: list[str], params, prefixes: list[str] | None = None) -> list:
    """Each rank samples its contiguous share of the prompts and every rank receives all the groups.

    Sampling is seeded per prompt (`policy.hf.derive_prompt_seeds`), so the union equals what one process
    sampling the whole batch returns; each rank then holds the global batch (advantages and the loss
    normaliser need it) while generation work is split K ways.
    """
    from ..policy.hf import derive_prompt_seeds

    rank, world = rank_world()
    seeds = derive_prompt_seeds(params.seed, len(prompts))
    idx = shard_rows(len(prompts), rank, world).tolist()
    mine = policy.generate([prompts[i] for i in idx], params, [prefixes[i] for i in idx] if prefixes else None,
                           prompt_seeds=[seeds[i] for i in idx]) if idx else []
    if world == 1:
        return mine
    parts: list = [None] * world
    dist.all_gather_object(parts, mine)
    return [group for part in parts for group in part]


class ShardedGeneration:
    """A policy whose `generate` is `generate_sharded`; everything else is the wrapped policy's. Lets the RL
    loop's `collect_rollout(policy, ...)` split generation over ranks without changing it."""

    def __init__(self, policy):
        self.policy = policy

    def generate(self, prompts, params, prefixes=None):
        return generate_sharded(self.policy, prompts, params, prefixes)

    def __getattr__(self, name):
        return getattr(self.policy, name)
