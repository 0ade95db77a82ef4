"""Checkpoints: weights loadable by transformers + optimizer + scheduler + RNG + step + config.

Written to a temporary directory and renamed into place, so a crash never leaves a half checkpoint;
`latest` is replaced atomically after the rename.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path, write_text


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def save_checkpoint(run_dir: Path, step: int, policy, optimizer, scheduler, config: dict, extra: dict | None = None) -> Path:
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step:06d}"
    with atomic_path(final) as tmp:  # re-saving the same step (e.g. after a resume) replaces it whole
        policy.model.save_pretrained(tmp)
        policy.tokenizer.save_pretrained(tmp)
        torch.save(
            {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state(), "extra": extra or {}},
            tmp / "trainer_state.pt",
        )
        (tmp / "run_config.json").write_text(json.dumps(config, indent=2))
    write_text(ckpt_root / "latest", final.name)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if (path / "trainer_state.pt").exists() else None


def load_trainer_state(ckpt: Path, optimizer, scheduler) -> dict:
    """Restore optimizer, scheduler and RNG from `ckpt` (weights are loaded with the policy); returns
    {"step", "extra"}."""
    state = torch.load(Path(ckpt) / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return {"step": state["step"], "extra": state["extra"]}
