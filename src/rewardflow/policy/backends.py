"""One registry of generating engines: `model.backend` -> the loader of a Policy over a local checkpoint.

    policy = load_policy(cfg)                          # cfg.model.path, cfg.model.backend, device, dtype
    policy = load_policy("runs/q/sft", backend="vllm") # a path and a backend name

Every verb that generates asks this module for its policy, so `model.backend=vllm` (or `--backend vllm`) reaches
all of them. Both backends train the same transformers weights: `hf` samples with them directly; `vllm` samples
on a vLLM engine and keeps a transformers copy for teacher-forced logprobs and training (policy/vllm.py), and the
trainer pushes its updates into the engine after each step (`load_weights`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch


def _load_hf(path, *, device: str, dtype: torch.dtype | None, behaviour_logprobs: bool, **hf_kwargs):
    from .hf import HFPolicy

    # the hf sampler's logprobs are the trainer's own: behaviour and teacher forcing agree, nothing to choose
    return HFPolicy.from_pretrained(path, device=device, dtype=dtype, **hf_kwargs)


def _load_vllm(path, *, device: str, dtype: torch.dtype | None, behaviour_logprobs: bool, **hf_kwargs):
    from .resolve import resolve_model
    from .vllm import VLLMPolicy

    path = resolve_model(path)  # the engine needs a transformers directory, not a name or a .gguf (HFPolicy resolves its own)

    # With truncated importance sampling on (algo.tis_cap > 0) the engine's own logprobs are kept as the behaviour
    # policy's and the trainer corrects the mismatch; without it they are made exact by teacher forcing when needed.
    return VLLMPolicy.from_pretrained(path, device=device, dtype=dtype, logprob_source="engine" if behaviour_logprobs else "auto",
                                      hf_kwargs=hf_kwargs)


# name -> loader(path, *, device, dtype, behaviour_logprobs, **HFPolicy options) -> Policy
BACKENDS: dict[str, Callable] = {"hf": _load_hf, "vllm": _load_vllm}


def load_policy(cfg_or_path, backend: str | None = None, *, device: str | None = None, dtype: torch.dtype | str | None = None,
                behaviour_logprobs: bool | None = None, **hf_kwargs):
    """A Policy over a checkpoint. `cfg_or_path` is a Config (its model.path, model.backend, model.device,
    model.dtype and algo.tis_cap give the defaults) or a checkpoint path / known model name (backend hf, cpu,
    float32 by default). Explicit arguments win over the config's; `hf_kwargs` (e.g. use_chat_template) go to the
    transformers policy (for vllm: its transformers copy, which templates the prompts)."""
    if hasattr(cfg_or_path, "model"):
        cfg = cfg_or_path
        if cfg.model.path is None:
            raise ValueError("model.path is null: give the checkpoint to load (the tiny model is built by the train recipe, not loaded)")
        path, backend = cfg.model.path, backend or cfg.model.backend
        device, dtype = device or cfg.model.device, dtype or cfg.model.dtype
        behaviour_logprobs = cfg.algo.tis_cap > 0 if behaviour_logprobs is None else behaviour_logprobs
        hf_kwargs.setdefault("compile_decode", cfg.model.compile_decode)
    else:
        path, backend = cfg_or_path, backend or "hf"
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not a policy backend; choose one of: {', '.join(BACKENDS)}")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return BACKENDS[backend](str(path) if isinstance(path, Path) else path, device=device or "cpu", dtype=dtype,
                             behaviour_logprobs=bool(behaviour_logprobs), **hf_kwargs)
