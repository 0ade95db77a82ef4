"""The optimiser: `make_optimizer` builds AdamW and its schedule, `optimizer_step` takes one step. Every training
loop (SFT, RL, PPO's critic, preference, OREO, reward models, the data-parallel step) steps through
`optimizer_step`, so clipping, the finiteness check and the order of operations are the same everywhere."""
from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch

LOW_PRECISION = (torch.bfloat16, torch.float16)


class NonFiniteError(ValueError):
    """A loss or gradient norm is nan or inf; raised before the optimiser step, so the weights are still finite."""


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    """What trains: every parameter that requires a gradient (with LoRA only the adapters)."""
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(model, lr: float, weight_decay: float, warmup_steps: int, total_steps: int, schedule: str = "constant"):
    # only what trains: with LoRA the frozen base gets no AdamW moments (two fp32 copies of 135M weights saved)
    params = trainable_parameters(model)
    if not params:
        raise ValueError("the model has no trainable parameters (every weight is frozen)")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99))

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def check_finite(values: dict[str, float], *, step: int | None = None) -> None:
    """Raise NonFiniteError naming the first value that is nan or inf (a loss term or a gradient norm)."""
    for name, value in values.items():
        if not math.isfinite(value):
            what = "gradient norm" if name.endswith("grad_norm") else "loss"
            where = f"step {step}: " if step is not None else ""
            raise NonFiniteError(f"{where}{what} is {value} ({name}); no checkpoint written — lower the learning rate "
                                 "or check the rewards/labels")


def optimizer_step(model: torch.nn.Module, opt, sched, *, max_grad_norm: float, step: int | None = None,
                   losses: dict[str, float] | None = None, allreduce: Callable[[torch.nn.Module], None] | None = None,
                   name: str = "train/grad_norm") -> float:
    """One step on the gradients accumulated in `model`: (all-reduce) -> finite? -> clip -> step -> schedule -> zero.

    `losses` are the step's loss terms (python floats) and `name` labels the gradient norm, both only for the
    error message; `step` numbers it. `allreduce(model)` sums gradients over data-parallel ranks first, so every
    rank checks, clips and steps on the same full-batch gradient. `sched` may be None (no schedule).
    Returns the gradient norm before clipping."""
    if not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
        raise ValueError(f"max_grad_norm must be a positive finite number, got {max_grad_norm}")
    if allreduce is not None:
        allreduce(model)
    check_finite(losses or {}, step=step)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm).item()
    # a nan/inf norm has already written nan into the clipped gradients: stop before they reach the weights
    check_finite({name: grad_norm}, step=step)
    opt.step()
    if sched is not None:
        sched.step()
    opt.zero_grad(set_to_none=True)
    return grad_norm


def mixed_precision(model: torch.nn.Module, dtype: str | torch.dtype | None = None):
    """Mixed precision as it is usually meant: fp32 master weights and optimiser state, forwards under autocast.

    `dtype` (default: the dtype the weights were loaded in) is the compute dtype. Weights loaded in bfloat16 or
    float16 are upcast to float32 in place first, so AdamW's update and its moments are fp32 (an update smaller
    than bf16's spacing near a weight, 2^-8 of it, would otherwise round away). Returns the autocast context to
    run forwards (sampling, teacher forcing, backward) in; a no-op context for float32."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    weights = next(model.parameters()).dtype
    dtype = dtype or weights
    if weights in LOW_PRECISION:
        model.float()
    if dtype not in LOW_PRECISION:
        return contextlib.nullcontext()
    return autocast(next(model.parameters()).device.type, dtype)


def autocast(device_type: str, dtype: torch.dtype):
    """torch.autocast without its weight cache. The cache keeps the low-precision copy of each trainable weight
    until the context exits, and our contexts span many optimizer steps (a whole run): with it, every forward in
    grad or no-grad mode would read the weights of the first step."""
    return torch.autocast(device_type=device_type, dtype=dtype, cache_enabled=False)
