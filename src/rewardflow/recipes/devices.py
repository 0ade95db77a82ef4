"""`--device` and `--dtype` for the verbs that only run models (eval, search, rm label, rm score): one definition
of the flags, one way to load a policy with them, one way to move a loaded scorer.

Inference verbs cast the weights to --dtype (nothing trains, so there are no master weights to keep); the
training verbs read model.device / model.dtype from their config instead, where bfloat16 means fp32 master
weights with bf16 autocast (optim.mixed_precision)."""
from __future__ import annotations

import argparse

DTYPES = ("float32", "bfloat16", "float16")


def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device of the models: cpu, cuda, cuda:1, mps (default: cpu)")
    p.add_argument("--dtype", default="float32", choices=DTYPES,
                   help="weights dtype of the models (inference only: bfloat16 halves memory; default float32)")
    p.add_argument("--backend", default="hf", choices=("hf", "vllm"), help="engine that samples: hf (transformers) or vllm (the vllm extra, GPU)")


def check_device(device: str) -> str:
    import torch

    try:
        torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, mps)") from e
    return device


def load_policy(path, args, backend: str | None = None, **kw):
    """The policy of `path` on args.device in args.dtype, sampled by args.backend (policy/backends.py; `backend`
    overrides it, e.g. hf for a speculative draft); `kw` go to HFPolicy, e.g. use_chat_template."""
    import torch

    from ..policy.backends import load_policy as load_backend

    return load_backend(path, backend or getattr(args, "backend", "hf"), device=check_device(args.device), dtype=getattr(torch, args.dtype), **kw)


def place_scorer(scorer, device: str, dtype: str = "float32"):
    """Move a loaded scorer's models to `device` / `dtype`: a reward model (an nn.Module), the policies inside
    implicit PRMs, judges, PAV provers and OREO values (HFPolicy attributes), and the members of an ensemble.
    Rule-based scorers (the verifier) have nothing to move and come back as they are."""
    import torch

    check_device(device)
    torch_dtype = getattr(torch, dtype)
    if isinstance(scorer, torch.nn.Module):
        return scorer.to(device=device, dtype=torch_dtype)
    for member in getattr(scorer, "scorers", []) or []:  # an ensemble
        place_scorer(member, device, dtype)
    for value in list(vars(scorer).values()):
        if hasattr(value, "model") and hasattr(value, "device") and isinstance(value.model, torch.nn.Module):  # an HFPolicy
            value.model.to(device=device, dtype=torch_dtype)
            value.device = device
        elif isinstance(value, torch.nn.Module):  # a value head beside its policy
            value.to(device=device, dtype=torch_dtype)
    return scorer
